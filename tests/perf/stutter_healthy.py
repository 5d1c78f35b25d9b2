"""Healthy-lab playback and media-analysis figures (a benchmark, not a test).

Runs the embedded lab and an agent with its default playback and media probes for
``--seconds`` (default 60), then prints: stalls and rebuffer ratio per edge/rendition
(expected 0), media faults seen (expected none), startup times, and the media analysis
cost per segment in the agent (decode + analysis CPU seconds per analysed segment, as a
share of the segment's duration on one core; DESIGN.md target <= 5 %).

    .venv/bin/python tests/perf/stutter_healthy.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from probes.base import State


class Sink:
    def __init__(self) -> None:
        self.bad: list[tuple[str, str, str | None, str | None]] = []
        self.cpu: dict[int, float] = {}
        self.seg_s: dict[int, float] = {}

    def on_cycle(self, cycle) -> None:
        if cycle.job.probe not in ("playback", "media"):
            return
        for a in cycle.attempts:
            for e in a.result.evidence:
                if e.state is not State.OK:
                    self.bad.append((e.stage, e.component, e.rendition, e.fault))
            for s in a.result.spans:
                if s.name.startswith("media ") and "signalpath.media.cpu_s" in s.attributes:
                    seq = s.attributes["signalpath.sequence"]
                    self.cpu[seq] = s.attributes["signalpath.media.cpu_s"]
                    self.seg_s[seq] = s.attributes.get("signalpath.media.duration_s", 2.0)


async def main(seconds: float) -> None:
    store = tempfile.TemporaryDirectory(prefix="sp-stutter-")  # removed when the script ends
    async with Lab(LabConfig()) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", "bench", incidents_path=store.name + "/incidents.db")
        sink = Sink()
        async with Agent(parse_config(conf), extra_sinks=[sink]) as agent:
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            print(f"healthy lab, {seconds:.0f} s, {time.monotonic() - t0:.1f} s elapsed")
            for edge in lab.edges:
                for r in lab.renditions:
                    lab_ = {"site": "bench", "stream": "main", "stage": "playback", "component": edge, "rendition": r}
                    g = agent.registry.get_sample_value
                    print(f"  {edge} {r}: stalls {g('signalpath_playback_stalls_total', lab_):.0f}, "
                          f"stalled {g('signalpath_playback_stall_seconds_total', lab_):.2f} s, "
                          f"rebuffer ratio {g('signalpath_playback_rebuffer_ratio', lab_):.4f}, "
                          f"startup {g('signalpath_playback_startup_seconds', lab_):.2f} s")
            print(f"  non-OK playback/media evidence lines: {len(sink.bad)} {sorted(set(sink.bad))[:5]}")
            shares = [sink.cpu[k] / sink.seg_s[k] for k in sink.cpu]
            if shares:
                cpu = sorted(sink.cpu.values())
                print(f"  media analysis (180p, {lab.config.width}x{lab.config.height} source): {len(cpu)} segments, "
                      f"CPU per segment median {statistics.median(cpu) * 1000:.1f} ms, max {cpu[-1] * 1000:.1f} ms; "
                      f"median {statistics.median(shares):.2%} of the segment duration on one core")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    asyncio.run(main(ap.parse_args().seconds))
