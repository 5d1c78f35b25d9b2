"""What an ingest monitor's content check costs: every picture decoded against key pictures only.

Plays the lab's ingest (640x360 at 25 fps, 1-s GOP) with one kept-open watch per phase
(``video_frames: key``, ``all``, twice each, alternating) and prints the watch's decoding CPU
per second of stream (the ``decode_cpu_ms`` figure the probe reports: the thread's CPU time for
demuxing, decoding and the 64x36 pictures). Usage: ``python tests/perf/ingest_content_cost.py
[--seconds 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from agent.lab.config import LabConfig
from agent.lab.lab import Lab
from agent.runner import close_held
from probes.base import ProbeContext, ProbeTarget
from probes.ingest_monitor import IngestMonitorSettings, MonitorTargetConfig, probe


async def main(seconds: int) -> None:
    async with Lab(LabConfig(webrtc=False)) as lab:
        for frames in ("key", "all", "key", "all"):
            settings = IngestMonitorSettings(url=lab.ingest_live_url(), interval_s=1.0, video_frames=frames)
            t = ProbeTarget("ingest_monitor", "main", "ingest", "ingest", MonitorTargetConfig(settings), None, 1.0, 8.0)
            ctx = ProbeContext(state={})
            try:
                await probe(t, ctx)
                await asyncio.sleep(1.0)
                cpu_ms, frames_n, t0 = 0.0, 0, time.monotonic()
                for _ in range(seconds):
                    await asyncio.sleep(1.0)
                    r = await probe(t, ctx)
                    cpu_ms += r.figures.get("decode_cpu_ms", 0.0)
                    frames_n += int(r.figures.get("frames", 0))
                took = time.monotonic() - t0
                print(f"video_frames {frames}: {cpu_ms / took:.1f} ms CPU per second of stream "
                      f"({cpu_ms / took / 10:.2f} % of a core), {frames_n / took:.1f} frames/s")
            finally:
                await close_held([ctx.state])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=15, help="seconds measured per phase")
    asyncio.run(main(ap.parse_args().seconds))
