"""Localization benchmark: every lab fault, several times, against ground truth.

Runs the embedded lab and an agent watching it (the `signalpath demo` config), then for
each fault of the catalog: inject it, wait for the first new incident, compare its
stage/component with the expected root cause (DESIGN.md "Localization principle"), time
to localize = incident.localized_at - the lab's recorded fault start; clear the fault and
wait for every incident to resolve. Finally a healthy run counts false incidents.

``--agent-process`` runs the agent as its own process (`signalpath run`, read through its
API): the lab and the agent then do not compete for one event loop and one core.
``--chronic`` runs the lab in chronic mode (agent/lab/chronic.py: the lowest rendition over
its declared bitrate, publish jitter, an edge slow now and then). The bench first waits
(up to 60 s) until the findings the lab says its chronic conditions raise have opened,
records every incident then open as chronic, and injects each fault on top of them.

Per fault: correct (the first new incident, not a chronic one, is at the expected
stage/component), time to localize (median, p95), extra incidents (every other incident
first seen from the injection until the agent is quiet again after the clear and then
``--cooldown`` seconds: a second one at the expected place, one elsewhere, a chronic
finding opening again; "(after clear)" marks those the recovery opened), rewritten
incidents (any incident — chronic, new or older — whose fault, stage or component differs
from what it was first seen with, in `open_incidents()` snapshots every 0.25 s or the
incident store every 2 s; DESIGN.md: an incident's fault and place never change).
The healthy run counts P1/P2 incidents (target 0) apart from P3 findings.

    .venv/bin/python tests/perf/localize_bench.py --repeat 3 --healthy-minutes 10 [--chronic]
    .venv/bin/python tests/perf/localize_bench.py --only edge_stale,origin_5xx --repeat 1 --healthy-minutes 0

Target (DESIGN.md): all correct with one incident each, p95 <= 5 s at 2-s segments, also
with --chronic; zero false P1/P2 incidents; no incident ever rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

# fault -> (target, params, expected (stage, component))
CATALOG: dict[str, tuple[str | None, dict, tuple[str, str]]] = {
    "encoder_stop": ("encoder", {}, ("studio", "encoder")),
    "frozen_video": ("encoder", {}, ("studio", "source")),
    "black_video": ("encoder", {}, ("studio", "source")),
    "silent_audio": ("encoder", {}, ("studio", "source")),
    "av_desync": ("encoder", {"ms": 300}, ("studio", "source")),
    "ingest_drop": ("ingest", {}, ("ingest", "ingest")),
    "ingest_latency": ("ingest", {"ms": 2000}, ("ingest", "ingest")),
    "ingest_starve": ("ingest", {"rate": 0.5}, ("ingest", "ingest")),
    "transcoder_stall": ("transcoder", {}, ("transcode", "transcoder")),
    "rendition_stall": ("180p", {}, ("transcode", "180p")),
    "transcoder_slow": ("transcoder", {}, ("transcode", "transcoder")),
    "origin_5xx": ("origin", {}, ("origin", "origin")),
    "origin_down": ("origin", {}, ("origin", "origin")),
    "mpd_stale": ("origin", {}, ("origin", "origin")),  # seen through streams[].compare (PROTOCOL_ONLY)
    "segment_late": ("origin", {}, ("origin", "origin")),  # HLS and DASH (PROTOCOL_ONLY)
    "edge_down": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_stale": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_404_segments": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_slow_first_byte": ("edge-b", {"ms": 3000}, ("cdn", "edge-b")),
    "edge_throttle": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_delay": ("edge-b", {"ms": 5000}, ("cdn", "edge-b")),
    "corrupt_segment": ("180p", {}, ("transcode", "180p")),  # the analysed (lowest) rendition
    "keyframe_interval": ("transcoder", {}, ("transcode", "transcoder")),
    "edge_no_block": ("edge-b", {}, ("cdn", "edge-b")),  # LL-HLS only (PROTOCOL_ONLY)
    "webrtc_refuse": ("whip", {}, ("ingest", "whip")),
    "webrtc_stall": ("whep", {}, ("playback", "whep")),
}

PROTOCOL_ONLY = {"edge_no_block": {"llhls"},  # faults that exist only on some protocols
                 "segment_late": {"hls", "dash"},  # the lab's LL-HLS parts are served apart
                 "mpd_stale": {"hls", "dash"}}  # compared on those only (agent/demo.py lab_agent_config)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


class AgentView:
    """The incidents of the agent under test: in this process (the localizer's open incidents,
    the store's history) or, with ``--agent-process``, a `signalpath run` child through its
    API (``GET /api/v1/incidents``; times parsed back to epoch seconds)."""

    def __init__(self, agent: Agent | None = None, url: str = "") -> None:
        self.agent, self.url = agent, url

    async def open_incidents(self) -> list[Any]:
        if self.agent is not None:
            return self.agent.incidents.localizer.open_incidents()
        return await asyncio.to_thread(self._get, "open")

    async def all_incidents(self) -> list[Any]:
        if self.agent is not None:
            return await self.agent.incidents.store.list("all")
        return await asyncio.to_thread(self._get, "all")

    def _get(self, state: str) -> list[Any]:
        with urllib.request.urlopen(f"{self.url}/api/v1/incidents?state={state}", timeout=10) as r:
            rows = json.load(r)

        def epoch(v: str | None) -> float | None:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() if v else None

        return [SimpleNamespace(**{**i, "started_at": epoch(i["started_at"]), "localized_at": epoch(i["localized_at"]),
                                   "resolved_at": epoch(i["resolved_at"])}) for i in rows]


@contextlib.asynccontextmanager
async def agent_under_test(conf: dict[str, Any], own_process: bool, scratch: str) -> AsyncIterator[AgentView]:
    """The agent watching the lab: in this process, or a `signalpath run` child (its own CPU
    budget, as in production, where the agent never shares a process with the pipeline)."""
    if not own_process:
        async with Agent(parse_config(conf)) as agent:
            yield AgentView(agent)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf["agent"]["listen"] = f"127.0.0.1:{port}"
    cfg = Path(scratch) / "bench.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    log = open(Path(scratch) / "agent.log", "wb")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agent.cli", "run", "-c", str(cfg),
                                                stdout=log, stderr=log)
    view = AgentView(url=f"http://127.0.0.1:{port}")
    try:
        async with asyncio.timeout(60):
            while True:
                if proc.returncode is not None:
                    raise SystemExit(f"the agent exited with status {proc.returncode}: "
                                     + (Path(scratch) / "agent.log").read_text()[-2000:])
                try:
                    await view.open_incidents()
                    break
                except OSError:
                    await asyncio.sleep(0.3)
        yield view
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(20):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def describe(i: Any) -> str:
    return f"{i.stage}/{i.component} {i.fault}"


Key = tuple[str, str, str]  # (fault, stage, component)


@dataclass(slots=True)
class Rewrite:
    at: float
    id: str
    first: Key
    now: Key

    def __str__(self) -> str:
        return f"{self.id}: {self.first[1]}/{self.first[2]} {self.first[0]} -> {self.now[1]}/{self.now[2]} {self.now[0]}"


@dataclass(slots=True)
class Ledger:
    """Every incident id's first-seen fault/stage/component and when; any later change is a rewrite."""

    first: dict[str, Key] = field(default_factory=dict)
    first_at: dict[str, float] = field(default_factory=dict)
    incidents: dict[str, Any] = field(default_factory=dict)  # id -> the latest copy seen
    rewrites: list[Rewrite] = field(default_factory=list)
    _reported: set[tuple[str, Key]] = field(default_factory=set)

    def observe(self, incidents: list[Any]) -> None:
        now = time.time()
        for i in incidents:
            key = (i.fault, i.stage, i.component)
            self.incidents[i.id] = i
            first = self.first.setdefault(i.id, key)
            self.first_at.setdefault(i.id, now)
            if key != first and (i.id, key) not in self._reported:
                self._reported.add((i.id, key))
                self.rewrites.append(Rewrite(now, i.id, first, key))

    def new_since(self, t: float) -> list[Any]:
        return [self.incidents[i] for i, at in self.first_at.items() if at >= t]

    def rewrites_since(self, t: float) -> list[Rewrite]:
        return [r for r in self.rewrites if r.at >= t]


async def watch(agent: AgentView, ledger: Ledger) -> None:
    """Snapshots of the localizer (0.25 s) and of the incident store (2 s) into the ledger."""
    n = 0
    while True:
        ledger.observe(await agent.open_incidents())
        if n % 8 == 0:
            ledger.observe(await agent.all_incidents())
        n += 1
        await asyncio.sleep(0.25)


class Chronic:
    """The incidents that stand for the lab's chronic conditions."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.keys: set[Key] = set()

    def record(self, incidents: list[Any]) -> None:
        for i in incidents:
            self.ids.add(i.id)
            self.keys.add((i.fault, i.stage, i.component))

    def __contains__(self, i: Any) -> bool:
        return i.id in self.ids or (i.fault, i.stage, i.component) in self.keys


async def quiet(agent: AgentView, within_s: float, chronic: Chronic) -> bool:
    """Wait until no incident but the chronic ones is open."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not [i for i in await agent.open_incidents() if i not in chronic]:
            return True
        await asyncio.sleep(0.5)
    return False


async def wait_chronic(agent: AgentView, lab: Lab, within_s: float) -> tuple[list[Any], list[Key]]:
    """Wait until every finding the lab's chronic conditions should raise is an open incident."""
    expected = [(c["finding"], c["stage"], c["component"]) for c in lab.chronic()["conditions"] if c["finding"]]
    deadline = time.monotonic() + within_s
    while True:
        open_now = await agent.open_incidents()
        have = {(i.fault, i.stage, i.component) for i in open_now}
        missing = [k for k in expected if k not in have]
        if not missing or time.monotonic() > deadline:
            return open_now, missing
        await asyncio.sleep(0.5)


@dataclass(slots=True)
class Row:
    fault: str
    expected: str
    repeat: int
    correct: int = 0
    times: list[float] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    extra_evidence: list[str] = field(default_factory=list)  # what each extra incident stood on, to read why

    def timing(self) -> str:
        if not self.times:
            return "    -     -"
        return f"{statistics.median(self.times):5.1f} {pct(self.times, 0.95):5.1f}"


async def run_fault(agent: AgentView, lab: Lab, ledger: Ledger, chronic: Chronic, fault: str,
                    args: argparse.Namespace) -> Row:
    target, params, expected = CATALOG[fault]
    row = Row(fault, f"{expected[0]}/{expected[1]}", args.repeat)
    for _ in range(args.repeat):
        ledger.observe(await agent.open_incidents())
        seen_before = set(ledger.first)
        t0 = time.time()
        try:
            rec = await lab.inject(fault, target, None, params or None)
        except Exception as exc:  # the lab refused: report, go on
            row.found.append(f"refused: {exc}")
            break
        deadline = time.monotonic() + args.timeout
        hit = None
        while time.monotonic() < deadline and hit is None:
            new = [i for i in await agent.open_incidents()
                   if i.id not in seen_before and i not in chronic]
            if new:
                hit = min(new, key=lambda i: i.localized_at)
            else:
                await asyncio.sleep(0.2)
        ok = hit is not None and (hit.stage, hit.component) == expected
        if hit is None:
            row.found.append("none")
        else:
            row.found.append(describe(hit))
            if ok:
                row.correct += 1
                row.times.append(hit.localized_at - rec.started_at)
                print(f"  {fault}: first bad evidence {hit.started_at - rec.started_at:+.1f} s after the fault, "
                      f"opened {hit.localized_at - hit.started_at:.1f} s after that", flush=True)
        await asyncio.sleep(args.hold)  # let the fault last: later symptoms count too
        await lab.clear_all()
        t_clear = time.time()
        await quiet(agent, 90, chronic)
        await asyncio.sleep(args.cooldown)  # incidents the recovery opens late belong to this fault
        await quiet(agent, 90, chronic)
        ledger.observe(await agent.open_incidents())
        ledger.observe(await agent.all_incidents())
        for i in ledger.new_since(t0):
            if i.id in seen_before or (ok and hit is not None and i.id == hit.id):
                continue
            row.extra.append(describe(i) + (" (chronic again)" if i in chronic else "")
                             + (" (after clear)" if ledger.first_at[i.id] >= t_clear else "")
                             # a different fault at the fault's place, linked to its incident (Incident.related):
                             # still an extra incident, marked so
                             + (" (linked)" if hit is not None and hit.id in getattr(i, "related", []) else ""))
            # when, against the clear and the fault's own incident: a symptom that outlasted its cause
            # shows here as started after the clear and after that incident resolved
            when = f"started {i.started_at - t_clear:+.1f} s from the clear"
            if hit is not None and ok:
                done = next((j for j in await agent.all_incidents() if j.id == hit.id), hit)
                if done.resolved_at is not None:
                    when += f", the fault's incident resolved at {done.resolved_at - t_clear:+.1f} s"
            row.extra_evidence.append(f"{i.severity} {describe(i)} ({when}): "
                                      + " | ".join(list(getattr(i, "evidence", []))[:3]))
        row.rewritten.extend(str(r) for r in ledger.rewrites_since(t0))
    return row


async def run(args: argparse.Namespace) -> None:
    faults = [f for f in CATALOG if (not args.only or f in args.only.split(","))
              and args.protocol in PROTOCOL_ONLY.get(f, {args.protocol})]
    mode = "chronic" if args.chronic else "plain"
    rows: list[Row] = []
    ledger = Ledger()
    chronic = Chronic()
    chronic_missing: list[Key] = []
    healthy: dict[str, list[str]] = {}
    store = tempfile.TemporaryDirectory(prefix="sp-bench-")  # removed when the bench ends
    async with Lab(LabConfig(chronic=args.chronic)) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", site="bench", webrtc=True,
                                incidents_path=store.name + "/incidents.db", protocol=args.protocol)
        stream = conf["streams"][0]
        for entry in stream.get("ingest", {}).get("whip", []):
            entry["interval_s"] = args.webrtc_interval  # full publishes; refusals are seen by the 2-s checks
        # WHEP keeps its session open and reports every 1 s (probes/whep.py, the agent's default)
        async with agent_under_test(conf, args.agent_process, store.name) as agent:
            watcher = asyncio.create_task(watch(agent, ledger))
            try:
                await asyncio.sleep(args.settle)
                if args.chronic:
                    t = time.monotonic()
                    standing, chronic_missing = await wait_chronic(agent, lab, 60)
                    chronic.record(standing)
                    print(f"chronic incidents after {time.monotonic() - t + args.settle:.0f} s: "
                          f"{', '.join(f'{i.severity} {describe(i)}' for i in standing) or 'none'}"
                          f"{'; never opened: ' + ', '.join(f'{k[1]}/{k[2]} {k[0]}' for k in chronic_missing) if chronic_missing else ''}",
                          flush=True)
                if not await quiet(agent, 60, chronic):
                    print("the healthy lab has open incidents before the benchmark:", file=sys.stderr)
                for fault in faults:
                    row = await run_fault(agent, lab, ledger, chronic, fault, args)
                    rows.append(row)
                    print(f"{fault:22s} {row.expected:22s} {row.correct}/{row.repeat}  {row.timing()}  "
                          f"{sorted(set(row.found))}  other incidents: {sorted(set(row.extra)) or 'none'}"
                          f"  rewritten: {row.rewritten or 'none'}", flush=True)
                if args.healthy_minutes > 0:
                    t0 = time.time()
                    ledger.observe(await agent.all_incidents())
                    await asyncio.sleep(args.healthy_minutes * 60)
                    ledger.observe(await agent.all_incidents())
                    for i in ledger.new_since(t0):
                        sev = "P1/P2" if i.severity in ("P1", "P2") else "P3"
                        healthy.setdefault(sev, []).append(
                            f"{i.severity} {describe(i)}" + (" (chronic again)" if i in chronic else "")
                            + (f" [{' | '.join(list(getattr(i, 'evidence', []))[:2])}]" if sev == "P1/P2" else ""))
                    healthy["rewritten"] = [str(r) for r in ledger.rewrites_since(t0)]
                ledger.observe(await agent.all_incidents())
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    print()
    print(f"mode: {mode}, protocol: {args.protocol}" + (f" (chronic incidents: {', '.join(describe(ledger.incidents[i]) for i in sorted(chronic.ids))})"
                             if args.chronic else ""))
    print(f"{'fault':22s} {'expected':22s} ok    median p95 (s)  extra rewritten  other incidents (during the fault, after its clear)")
    all_times = [t for r in rows for t in r.times]
    for r in rows:
        print(f"{r.fault:22s} {r.expected:22s} {r.correct}/{r.repeat}  {r.timing()}   {len(r.extra):5d} {len(r.rewritten):9d}"
              f"  {', '.join(sorted(set(r.extra))) or '-'}")
    if all_times:
        print(f"all faults: {sum(r.correct for r in rows)}/{sum(r.repeat for r in rows)} correct; time to localize "
              f"median {statistics.median(all_times):.1f} s, p95 {pct(all_times, 0.95):.1f} s (target <= 5 s); "
              f"extra incidents {sum(len(r.extra) for r in rows)}; rewritten {sum(len(r.rewritten) for r in rows)}")
    details = [(r.fault, line) for r in rows for line in r.extra_evidence]
    if details:
        print("extra incidents, with their first evidence lines:")
        for fault, line in details:
            print(f"  during {fault}: {line}")
    if args.chronic and chronic_missing:
        print(f"chronic findings that never opened within 60 s: "
              f"{', '.join(f'{k[1]}/{k[2]} {k[0]}' for k in chronic_missing)}")
    if args.healthy_minutes > 0:
        p12, p3 = healthy.get("P1/P2", []), healthy.get("P3", [])
        print(f"false incidents in a {args.healthy_minutes:g}-minute healthy run ({mode}): P1/P2 {len(p12)} (target 0)"
              f"{': ' + ', '.join(p12) if p12 else ''}; P3 {len(p3)}{': ' + ', '.join(p3) if p3 else ''}; "
              f"rewritten {len(healthy.get('rewritten', []))}")
    print(f"incidents rewritten over the whole run: {len(ledger.rewrites)} (target 0)"
          + "".join(f"\n  {r}" for r in ledger.rewrites))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an incident")
    ap.add_argument("--healthy-minutes", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--webrtc-interval", type=float, default=30.0,
                    help="WHIP publish interval, s (the probe's default; signalling is checked every 2 s between)")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds a fault lasts after its first incident")
    ap.add_argument("--cooldown", type=float, default=8.0,
                    help="seconds to watch after the agent is quiet again following a clear (late recovery incidents "
                         "count as this fault's extras, not the next fault's)")
    ap.add_argument("--only", help="comma-separated fault names")
    ap.add_argument("--protocol", choices=("hls", "llhls", "dash"), default="hls",
                    help="what the agent reads: the lab's HLS playlists, its Low-Latency HLS playlists (parts, "
                         "blocking reload; adds the fault edge_no_block) or the same segments through its MPEG-DASH MPD")
    ap.add_argument("--agent-process", action="store_true",
                    help="run the agent as its own process (`signalpath run`), read through its API: the lab's "
                         "pipeline and the agent then do not share one process's event loop and CPU")
    ap.add_argument("--chronic", action="store_true",
                    help="run the lab with chronic conditions and inject every fault on top of them")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
