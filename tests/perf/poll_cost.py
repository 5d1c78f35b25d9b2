"""Agent cost on its hot path: CPU per playlist poll, probe cycle time, RSS.

Serves a master playlist with 3 renditions from a real nginx (a separate process, so
only the agent's CPU is counted) and runs the agent in this process against
``--streams`` streams x (origin + 2 edges) x 3 renditions, polling every
``--interval`` seconds. Prints polls per core-second beside the peers measured on
this machine (ENVIRONMENT.md "HTTP client cost"), the median probe cycle time of one
endpoint (master + 3 media playlists + new segments), and the agent's RSS.

    .venv/bin/python tests/perf/poll_cost.py --streams 50 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil
from prometheus_client import CollectorRegistry

from agent.app import Agent
from agent.config import parse_config

PEERS = [("Go blackbox_exporter /probe", "1,800-2,400"), ("httpx AsyncClient (as installed)", "450-1,300"),
         ("httpx on aiohttp transport", "2,900-3,500"), ("raw aiohttp keep-alive", "6,600-11,000")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(root: Path) -> tuple[subprocess.Popen | None, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    run = root / "run"
    (run / "tmp").mkdir(parents=True)
    conf = run / "nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {run}/nginx.pid; error_log {run}/error.log warn; user root;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {run}/tmp; proxy_temp_path {run}/tmp;
  fastcgi_temp_path {run}/tmp; uwsgi_temp_path {run}/tmp; scgi_temp_path {run}/tmp;
  keepalive_requests 1000000;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  server {{ listen 127.0.0.1:{port}; root {root}/www; }} }}
""")
    p = subprocess.Popen([nginx, "-c", str(conf), "-p", str(run)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise SystemExit("nginx did not start")


def write_playlists(www: Path) -> None:
    live = www / "live"
    live.mkdir(parents=True)
    lines = ["#EXTM3U"]
    for name, (w, h, bw) in {"720p": (1280, 720, 3000000), "360p": (640, 360, 800000),
                             "180p": (320, 180, 300000)}.items():
        lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={w}x{h}", f"{name}.m3u8"]
        seg = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:1000"]
        for i in range(6):
            seg += [f"#EXT-X-PROGRAM-DATE-TIME:2026-11-26T03:00:{i * 2:02d}.000Z", "#EXTINF:2.000,",
                    f"{name}/{1000 + i}.ts"]
        (live / f"{name}.m3u8").write_text("\n".join(seg) + "\n")
        (live / name).mkdir()
        (live / name / "1005.ts").write_bytes(b"\x47" + bytes(188 * 500 - 1))
    (live / "main.m3u8").write_text("\n".join(lines) + "\n")


async def measure(port: int, streams: int, interval: float, seconds: float, store: Path,
                  all_probes: bool = False) -> None:
    base = f"http://127.0.0.1:{port}/live/main.m3u8"
    conf = {"agent": {"listen": "127.0.0.1:0", "site": "perf", "max_in_flight_per_host": 64},
            "incidents": {"path": str(store)},  # the run's temporary folder, never the checkout
            "streams": [{"name": f"s{i}", "origin": base,
                         "edges": [{"name": "edge-a", "url": base}, {"name": "edge-b", "url": base}],
                         "hls": {"interval_s": interval, "timeout_s": 5},
                         **({} if all_probes else {"playback": {"enabled": False}, "media": {"enabled": False},
                                                   "latency": {"enabled": False}})}
                        for i in range(streams)]}
    cfg = parse_config(conf)
    agent = Agent(cfg, registry=CollectorRegistry())
    proc = psutil.Process()
    async with agent:
        await asyncio.sleep(3)  # warm-up: pools filled, masters cached
        runner = agent.runner
        polls0 = _polls(agent)
        cpu0, t0 = _cpu(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = _cpu(), time.monotonic()
        polls1 = _polls(agent)
        durations = [s.value for src in agent.store.snapshot()[0].values() for s in src
                     if s.name == "signalpath_probe_duration_seconds"]
        rss = proc.memory_info().rss
        del runner
    polls = polls1 - polls0
    cpu = cpu1 - cpu0
    print(f"streams x endpoints x renditions: {streams} x 3 x 3, poll interval {interval:g} s, {seconds:g} s, "
          f"{'every default probe on (playback, media, latency too)' if all_probes else 'HLS probe only'}")
    print(f"playlist polls: {polls} ({polls / (t1 - t0):.0f}/s), agent CPU {cpu:.2f} s "
          f"({100 * cpu / (t1 - t0):.0f}% of a core)")
    print(f"CPU per poll: {1e6 * cpu / max(polls, 1):.0f} µs  ->  {polls / max(cpu, 1e-9):,.0f} polls per core-second"
          "  (target >= 5,000)")
    print("peers on this machine (requests per core-second):")
    for name, fig in PEERS:
        print(f"  {name:36s} {fig}")
    print(f"probe cycle of one endpoint (master cached + 3 media playlists): median "
          f"{1000 * statistics.median(durations):.1f} ms, max {1000 * max(durations):.1f} ms")
    print(f"agent RSS: {rss / 2**20:.0f} MiB  (target <= 150 MiB at 50 x 3 x 3)")


def _polls(agent: Agent) -> int:
    # every media-playlist poll yields one playlist_fetch_seconds{phase="connect"} sample: count attempts instead
    n = 0
    for ctx in agent.runner._ctx.values():
        n += ctx.state.get("polls", 0)
    return n


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--all-probes", action="store_true",
                    help="keep playback, media and latency on (their defaults): whole-agent cost, not per poll")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop (as `signalpath run` does when installed)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_playlists(root / "www")
        nginx, port = start_nginx(root)
        try:
            if args.uvloop:
                import uvloop
                uvloop.run(measure(port, args.streams, args.interval, args.seconds, root / "incidents.db", args.all_probes))
            else:
                asyncio.run(measure(port, args.streams, args.interval, args.seconds, root / "incidents.db", args.all_probes))
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)


if __name__ == "__main__":
    main()
