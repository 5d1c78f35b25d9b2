"""CPU per request of the agent's HTTP client beside aiohttp's, in the same run, on one nginx.

The agent's requests go through :class:`probes.net.httpfetch.Fetcher` (probes/net/leanhttp.py:
httptools, keep-alive pools, bounded bodies). This measures what one GET costs it — a live
playlist-sized body (~2.4 kB, 30 segments) and a 2-s 180p segment (~150 kB, H.264/AAC made with ffmpeg) —
beside ``aiohttp.ClientSession`` (keep-alive, body read), both on uvloop, ``--concurrency``
requests in flight, process CPU over ``--requests`` requests. What the agent spends per request
beyond this is the probes' own work on the answer (parse, checks, figures, evidence).

    .venv/bin/python tests/perf/http_client_cost.py [--requests 4000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aiohttp
from poll_cost import start_nginx  # (a sibling script: serves ROOT/www on a free port, keep-alive)

from probes.net.httpfetch import Fetcher


async def ours(url: str, n: int, conc: int) -> float:
    async with Fetcher() as f:
        await f.get(url, max_bytes=1 << 22)  # the connections warm, as on the agent's hot path

        async def worker(k: int) -> None:
            for _ in range(k):
                r = await f.get(url, max_bytes=1 << 22)
                assert r.failure is None, r.detail

        t = time.process_time()
        await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
        return (time.process_time() - t) / (n // conc * conc)


async def peer(url: str, n: int, conc: int) -> float:
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            await r.read()

        async def worker(k: int) -> None:
            for _ in range(k):
                async with s.get(url) as r:
                    assert r.status == 200
                    await r.read()

        t = time.process_time()
        await asyncio.gather(*(worker(n // conc) for _ in range(conc)))
        return (time.process_time() - t) / (n // conc * conc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000, help="requests per client and body (default 4000)")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is printed (default 3)")
    args = ap.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory(prefix="signalpath-httpcost-") as d:
        root = Path(d)
        www = root / "www"
        www.mkdir()
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:100"]
        for i in range(100, 130):
            lines += [f"#EXT-X-PROGRAM-DATE-TIME:2026-12-03T21:{i % 60:02d}:00.000Z", "#EXTINF:2.000,", f"seg/{i}.ts"]
        (www / "live.m3u8").write_text("\n".join(lines) + "\n")
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi",
                        "-i", "sine=frequency=440:sample_rate=48000", "-t", "2", "-c:v", "libx264", "-preset",
                        "ultrafast", "-b:v", "400k", "-c:a", "aac", "-f", "mpegts", str(www / "seg.ts")],
                       check=True, timeout=120)
        nginx, port = start_nginx(root)
        try:
            print(f"one nginx on loopback, uvloop, {args.concurrency} in flight, {args.requests} requests per "
                  f"figure, median of {args.rounds} alternating rounds; {os.cpu_count()} cores")
            print(f"{'body':28s}{'signalpath (us)':>18s}{'aiohttp (us)':>15s}{'ratio':>8s}")
            for name in ("live.m3u8", "seg.ts"):
                url = f"http://127.0.0.1:{port}/{name}"
                size = (www / name).stat().st_size
                a, b = [], []
                for _ in range(args.rounds):
                    a.append(uvloop.run(ours(url, args.requests, args.concurrency)))
                    b.append(uvloop.run(peer(url, args.requests, args.concurrency)))
                ma, mb = sorted(a)[len(a) // 2], sorted(b)[len(b) // 2]
                print(f"{name + f' ({size / 1000:.1f} kB)':28s}{ma * 1e6:18.1f}{mb * 1e6:15.1f}{ma / mb:8.2f}")
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)


if __name__ == "__main__":
    main()
