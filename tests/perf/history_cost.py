"""History cost and report build time.

1. Bytes per stream-hour: an agent watches the embedded lab (the demo's config: origin, two
   edges, two renditions, players, latency, media) for ``--minutes`` with the default 10-s
   step; the stored steps' bytes (blob + row keys, agent/history.py ``bytes_stored``) and the
   database file's growth are scaled to one stream-hour.
2. A 24-hour broadcast of 10 streams: the steps recorded in (1) repeated over 24 h for 10
   streams (each step's figures jittered, a few faults' worth of degraded steps and
   incidents), written into a fresh database; then ``signalpath report --json`` and the HTML
   report of the whole broadcast are built and timed (the CLI as a process, as a user runs
   it), with the database size.

    .venv/bin/python tests/perf/history_cost.py [--minutes 3] [--streams 10] [--hours 24]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.history import HistoryStep, HistoryStore, ViewerSession
from agent.incidents import IncidentStore
from agent.lab import Lab, LabConfig
from agent.localize import Incident, IncidentEvent

ROOT = Path(__file__).resolve().parents[2]


async def record(minutes: float, db: Path) -> list[HistoryStep]:
    async with Lab(LabConfig()) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(db))
        async with Agent(parse_config(conf)):
            await asyncio.sleep(minutes * 60)
    store = HistoryStore(db)
    try:
        return store.steps(0, time.time() + 60, stream="main")
    finally:
        store.close()


def synthesize(template: list[HistoryStep], db: Path, streams: int, hours: float, start: float) -> None:
    rnd = random.Random(7)
    steps_per_stream = int(hours * 3600 / template[0].step)
    hist = HistoryStore(db)
    inc_store = IncidentStore(db)
    try:
        for s in range(streams):
            name = f"stream-{s:02d}"
            batch = []
            for i in range(steps_per_stream):
                src = template[i % len(template)]
                series = {}
                for k, v in src.series.items():
                    if k.startswith("state|"):
                        series[k] = list(v)
                    else:
                        series[k] = [round(x * rnd.uniform(0.9, 1.1), 4) for x in v]
                if i % 997 < 6:  # a degraded minute now and then
                    series["state|cdn|edge-b"] = [0.0, 10.0, 0.0, 0.0]
                batch.append(HistoryStep(name, start + i * src.step, src.step, series))
                if len(batch) == 2000:
                    hist.put(batch)
                    batch = []
            hist.put(batch, [ViewerSession(name, "edge-a", "360p", start + 5 + h * 3600, start + h * 3600 + 3600,
                                           1.2, h % 3, 0.5 * (h % 3), 3590.0, 0.0001 * (h % 3), "playing")
                             for h in range(int(hours))])
            for j in range(int(hours)):  # an incident an hour per stream
                t = start + j * 3600 + 997 * 10 * (j % 3)
                inc = Incident(id=f"{name}-{j}", stream=name, stage="cdn", component="edge-b",
                               fault="slow_segment", severity="P2", started_at=t, localized_at=t + 4.0,
                               resolved_at=t + 70.0, summary="edge-b delivers segments slower than real time",
                               evidence=[])
                inc_store.apply(IncidentEvent("opened", inc), now=t + 4)
    finally:
        hist.close()
        inc_store.close()


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="minutes of the live lab recording")
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--hours", type=float, default=24.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sp-history-") as tmp:
        live = Path(tmp) / "live.db"
        template = asyncio.run(record(args.minutes, live))
        if not template:
            raise SystemExit("no history was recorded")
        store = HistoryStore(live)
        stored = store.bytes_stored()
        store.close()
        hours = len(template) * template[0].step / 3600
        series = len(template[-1].series)
        print(f"live lab: {len(template)} steps of {template[0].step:g} s ({series} series a step), "
              f"{stored} bytes -> {stored / hours / 1024:.0f} KiB per stream-hour "
              f"({stored / len(template):.0f} bytes a step)")
        big = Path(tmp) / "day.db"
        start = float(int(time.time() // 86400 * 86400) - 86400 * 2)
        t0 = time.perf_counter()
        synthesize(template, big, args.streams, args.hours, start)
        write_s = time.perf_counter() - t0
        with sqlite3.connect(big) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = big.stat().st_size
        print(f"{args.streams} streams x {args.hours:g} h: database {size / 1e6:.1f} MB "
              f"({size / args.streams / args.hours / 1024:.0f} KiB per stream-hour with indexes and incidents); "
              f"written in {write_s:.1f} s")
        base = [sys.executable, "-m", "agent.cli", "report", "--db", str(big), "--from", str(start), "--to",
                str(start + args.hours * 3600)]
        js_s, js = timed(base + ["--json"])
        if js.returncode != 0:
            raise SystemExit(js.stderr)
        html = Path(tmp) / "day.html"
        html_s, out = timed(base + ["-o", str(html)])
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        print(f"report of the {args.hours:g}-hour broadcast of {args.streams} streams: --json {js_s:.1f} s, "
              f"HTML {html_s:.1f} s ({html.stat().st_size / 1e6:.1f} MB, every plot inline)")


if __name__ == "__main__":
    main()
