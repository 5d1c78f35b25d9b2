"""Latency accuracy: the latency probe's per-stage figures vs the embedded lab's truth.

    .venv/bin/python tests/perf/latency_accuracy.py [--seconds 60] [--faults] [--protocol hls|llhls]

Runs the lab (beacon on) and an agent with only the HLS and latency probes, collects
every per-segment latency trace, and compares per segment:

- upstream (transcode/transcoder): measured origin first-seen - capture of the last frame,
  vs the packager's publish time of that segment - the capture time of its last frame
  (PDT + (frames - 1) / fps);
- cdn per edge: measured edge first-seen - origin first-seen, vs the time the edge first
  held a playlist listing the segment (its cache's version history, plus any injected
  ``edge_delay``) - the packager's publish time.

``--protocol llhls`` watches the lab's LL-HLS playlists: the probe times each part by a blocking
reload waiting for it (one request per part), and the truth is per part (its publish time - the
capture time of its last frame; an edge holding the same blocking reload has the part when the
origin has it, plus any injected delay).

``--faults`` adds ingest_latency 2000 ms and edge-b edge_delay 1500 ms for the second
half of the run. Prints median and p95 absolute error per stage (targets: median <= one
frame interval, 40 ms at 25 fps; p95 <= 100 ms), the decode CPU per analysed segment and the
latency probe's playlist polls per stream-second.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from probes.core.latency_core import SEPARATE_TRACE_ATTR


class Collect:
    def __init__(self) -> None:
        self.traces = []
        self.polls = 0
        self.poll_s = 0.0

    def on_cycle(self, cycle) -> None:
        for a in cycle.attempts:
            self.traces += [s for s in a.result.spans if s.attributes.get(SEPARATE_TRACE_ATTR)]
            if a.target.probe == "latency" and "playlist_polls" in a.result.figures:
                self.polls += a.result.figures["playlist_polls"]
                self.poll_s += a.duration


def edge_first_held(lab: Lab, edge: str, rendition: str, seq: int, mono_to_wall: float) -> float | None:
    """Wall time the edge first stored a playlist version listing ``seq`` (cache history)."""
    versions = lab._edges[edge]._versions.get(f"/live/{lab.config.stream}/{rendition}.m3u8", [])
    pat = re.compile(rf"^{re.escape(rendition)}/{seq}\.ts$", re.M)
    for stored, entry in versions:
        if pat.search(entry.body.decode()):
            return stored + mono_to_wall
    return None


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def main(seconds: float, faults: bool, protocol: str = "hls") -> None:
    col = Collect()
    mono_to_wall = time.time() - time.monotonic()
    store = tempfile.TemporaryDirectory(prefix="sp-lat-")  # removed when the script ends
    async with Lab(LabConfig()) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=store.name + "/i.db", protocol=protocol)
        s = conf["streams"][0]
        s.pop("ingest", None)
        s.pop("encoders", None)
        s["playback"] = {"enabled": False}
        s["media"] = {"enabled": False}
        c0 = time.process_time()
        async with Agent(parse_config(conf, "perf"), extra_sinks=[col]):
            if faults:
                await asyncio.sleep(seconds / 2)
                await lab.inject("ingest_latency", "ingest", for_s=seconds, params={"ms": 2000})
                await lab.inject("edge_delay", "edge-b", for_s=seconds, params={"ms": 1500})
                t_fault = time.time()
                await asyncio.sleep(seconds / 2)
            else:
                t_fault = None
                await asyncio.sleep(seconds)
        cpu_total = time.process_time() - c0
        errs: dict[str, list[float]] = {}
        cpu: list[float] = []
        fps = lab.config.fps
        for tr in col.traces:
            a = tr.attributes
            rend, seq = a["signalpath.rendition"], a["signalpath.segment.sequence"]
            if "signalpath.decode.cpu_s" in a:
                cpu.append(a["signalpath.decode.cpu_s"])
            part = a.get("signalpath.segment.part")
            if part is not None:  # LL-HLS: the part's own truth
                ll = lab.packager.ll_segment(rend, seq)
                if ll is None or part >= len(ll.parts):
                    continue
                frames = round(sum(p.duration_s for p in ll.parts[:part + 1]) * fps)
                seg = SimpleNamespace(published_wall=ll.parts[part].published_wall)
                cap_last = ll.pdt_wall + (frames - 1) / fps
            else:
                seg = lab.packager.segment(rend, seq)
                if seg is None:
                    continue
                frames = round(seg.duration_s * fps)
                cap_last = seg.pdt_wall + (frames - 1) / fps
            kids = {c.name: c for c in tr.children}
            if "ingest+transcode" in kids:
                o_seen = kids["origin"].start_ns / 1e9
                measured = o_seen - kids["ingest+transcode"].start_ns / 1e9
                errs.setdefault("transcode/transcoder", []).append(measured - (seg.published_wall - cap_last))
                for e in lab.edges:
                    k = kids.get(f"cdn {e}")
                    held = seg.published_wall if part is not None else edge_first_held(lab, e, rend, seq, mono_to_wall)
                    if k is None or held is None:
                        continue
                    delayed = 1.5 if (faults and e == "edge-b" and t_fault and seg.published_wall > t_fault) else 0.0
                    true_cdn = max(held + delayed, seg.published_wall) - seg.published_wall
                    errs.setdefault(f"cdn/{e}", []).append((k.end_ns - k.start_ns) / 1e9 - true_cdn)
        print(f"latency accuracy over {seconds:.0f} s ({'with' if faults else 'without'} faults), "
              f"{len(col.traces)} segment traces; targets: median <= {1000 / fps:.0f} ms, p95 <= 100 ms")
        for stage, xs in sorted(errs.items()):
            ab = [abs(x) for x in xs]
            print(f"  {stage:22s} n={len(xs):3d}  median |err| {1000 * statistics.median(ab):6.1f} ms  "
                  f"p95 |err| {1000 * pct(ab, 0.95):6.1f} ms  mean err {1000 * statistics.fmean(xs):+6.1f} ms")
        if cpu:
            print(f"  decode CPU per analysed segment: median {1000 * statistics.median(cpu):.1f} ms, "
                  f"p95 {1000 * pct(cpu, 0.95):.1f} ms (2-s {lab.renditions[-1]} segment)")
        print(f"  process CPU (lab + agent) {cpu_total:.1f} s over {seconds:.0f} s")
        endpoints = 1 + len(lab.edges)
        print(f"  latency probe playlist polls: {col.polls / max(col.poll_s, 1e-9):.1f} per stream-second "
              f"({endpoints} endpoints, the lowest rendition; {col.polls} in {col.poll_s:.0f} s of attempts)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--faults", action="store_true")
    ap.add_argument("--protocol", choices=("hls", "llhls"), default="hls")
    args = ap.parse_args()
    asyncio.run(main(args.seconds, args.faults, args.protocol))
