"""CPU share of the embedded lab at default settings (target: <= 50 % of one core).

Runs the lab in this process, waits for it to be warm, then measures this process's
CPU time (user + system, every thread: the codec workers included, via psutil) over
a wall-clock window. ``--players`` adds one simulated viewer per edge and rendition
(playlist every second, each new segment fetched), the load the agent puts on it.
``--chronic`` runs the lab in chronic mode (agent/lab/chronic.py).

    .venv/bin/python tests/perf/lab_cpu.py [--seconds 30] [--players] [--chronic]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import aiohttp
import psutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from agent.lab import Lab, LabConfig


async def viewer(lab: Lab, session: aiohttp.ClientSession, url: str) -> None:
    seen: set[str] = set()
    base = url.rsplit("/", 1)[0]
    while True:
        async with session.get(url) as r:
            text = await r.text()
        for line in text.splitlines():
            if line.endswith(".ts") and line not in seen:
                seen.add(line)
                async with session.get(f"{base}/{line}") as r:
                    await r.read()
        await asyncio.sleep(1.0)


async def main(seconds: float, players: bool, warmup: float, chronic: bool) -> None:
    proc = psutil.Process()
    async with Lab(LabConfig(chronic=chronic)) as lab, aiohttp.ClientSession() as session:
        tasks = []
        if players:
            for edge in lab.edges:
                for r in lab.renditions:
                    tasks.append(asyncio.create_task(viewer(lab, session, lab.media_url(r, via=edge))))
        await asyncio.sleep(warmup)
        c0, w0 = proc.cpu_times(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, w1 = proc.cpu_times(), time.monotonic()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        share = 100.0 * cpu / (w1 - w0)
        seqs = {r: lab.truth()["transcode"]["renditions"][r]["last_sequence"] for r in lab.renditions}
    cfg = LabConfig(chronic=chronic)
    print(f"lab CPU: {share:.1f} % of one core over {w1 - w0:.1f} s "
          f"({cfg.width}x{cfg.height}@{cfg.fps} source, ladder {', '.join(r.name for r in cfg.renditions)}, "
          f"{len(cfg.edges)} edges, viewers: {'yes' if players else 'no'}, chronic: {'yes' if chronic else 'no'}); segments: {seqs}; "
          f"target <= 50 %: {'PASS' if share <= 50 else 'FAIL'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--players", action="store_true")
    ap.add_argument("--chronic", action="store_true", help="the lab's chronic mode")
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.players, a.warmup, a.chronic))
