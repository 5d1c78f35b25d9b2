"""Scale: one agent watching many live streams, and a fair peer measured in the same run.

One nginx serves every stream's origin and two edges (three server blocks on one root); a
writer in this process publishes every stream's live playlists (3 renditions, 2-s segments,
PDT, a 6-segment window) at each segment boundary — one set of playlists behind per-stream
symlinks, so the writer costs nothing per stream. The segments are real H.264/AAC (ffmpeg,
once) so the media probe decodes what it would in production.

For each ``--streams`` count, the agent runs as its own process (`signalpath run`, as in
production) with its defaults — HLS, virtual players, latency, media analysis on the lowest
rendition — and the run prints, over ``--seconds`` after ``--warmup``: agent CPU (cores, its
decoding worker processes included), RSS (summed likewise), its own event-loop lag and probe
schedule lag (the agent's metrics, sampled
every 5 s: each sample is the largest of the last 10-20 s), the shed level, incidents by
place and fault, cells not ok, and requests per second as nginx logged them.

The peer: Debian's prometheus-blackbox-exporter, its ``http`` module probing the same media
playlists (``/probe?module=http_2xx&target=...``), driven as Prometheus would — each playlist
once per second, as our HLS probe polls it. Both are measured the same way: process CPU
(/proc) over the requests nginx logged for each (user agent). Ours runs HLS-only for that
comparison (players, latency and media off): CPU per playlist poll against CPU per probe.

    .venv/bin/python tests/perf/scale_bench.py --streams 50,200 --seconds 60 [--breakdown 50]
    (apt-get install prometheus-blackbox-exporter for the peer; --no-peer without it)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
SEG_S = 2.0
WINDOW = 6
RENDITIONS = {"180p": (320, 180), "360p": (640, 360), "720p": (1280, 720)}  # all served from the 180p encode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start on port {port}")


def _tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every process under it (the agent's decoding workers: agent/cpupool.py)."""
    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and the processes under it now, and of those that
    ended and were waited for (a decoding worker replaced)."""
    total = 0.0
    for i, p in enumerate(_tree(pid)):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + (t.children_user + t.children_system if i == 0 else 0.0)
    return total


def memory_mib(pid: int) -> tuple[float, float, float]:
    """(RSS summed, PSS summed, RSS of ``pid`` alone) over ``pid`` and the processes under it, MiB.
    Summed RSS counts the pages they share (libraries) in each; PSS (proportional set size,
    /proc/PID/smaps_rollup) splits each shared page between them: the tree's own memory."""
    rss = pss = main = 0
    for i, p in enumerate(_tree(pid)):
        with contextlib.suppress(psutil.Error):
            full = p.memory_full_info()
            rss += full.rss
            pss += full.pss
            main = full.rss if i == 0 else main
    return rss / 2**20, pss / 2**20, main / 2**20


# ---------------------------------------------------------------- the live streams

def encode_segments(www: Path, minutes: float) -> tuple[int, int]:
    """Real 2-s segments (H.264 + AAC, 180p) for ``minutes``; (how many, peak bits per second)."""
    seg = www / "seg"
    seg.mkdir(parents=True)
    n = int(minutes * 60 / SEG_S) + WINDOW + 2
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(n * SEG_S),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
                    "-b:v", "300k", "-maxrate", "300k", "-bufsize", "600k", "-c:a", "aac", "-b:a", "64k",
                    "-f", "segment", "-segment_time", str(SEG_S), "-segment_format", "mpegts",
                    str(seg / "%d.ts")], check=True, timeout=600)
    sizes = [p.stat().st_size for p in seg.glob("*.ts")]
    return len(sizes), int(max(sizes) * 8 / SEG_S)


class Publisher:
    """Writes the live playlists at every segment boundary (atomic renames), in a thread."""

    def __init__(self, www: Path, streams: int, segments: int, peak_bps: int) -> None:
        self.live = www / "live"
        self.common = self.live / "_common"
        self.common.mkdir(parents=True)
        for i in range(streams):
            (self.live / f"s{i:03d}").symlink_to(self.common, target_is_directory=True)
        self.segments = segments
        self.t0 = time.time() - WINDOW * SEG_S
        bw = {"180p": int(peak_bps * 1.3), "360p": int(peak_bps * 2.6), "720p": int(peak_bps * 5.2)}
        master = ["#EXTM3U", "#EXT-X-VERSION:3"]
        for name, (w, h) in RENDITIONS.items():
            master += [f'#EXT-X-STREAM-INF:BANDWIDTH={bw[name]},RESOLUTION={w}x{h},CODECS="avc1.42c00d,mp4a.40.2"',
                       f"{name}.m3u8"]
        (self.common / "master.m3u8").write_text("\n".join(master) + "\n")
        self._stop = threading.Event()
        self.write()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def newest(self) -> int:
        return int((time.time() - self.t0) / SEG_S) - 1

    def write(self) -> None:
        last = min(self.newest(), self.segments - 1)
        first = max(0, last - WINDOW + 1)
        for name in RENDITIONS:
            lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(SEG_S)}",
                     f"#EXT-X-MEDIA-SEQUENCE:{first}"]
            for k in range(first, last + 1):
                pdt = dt.datetime.fromtimestamp(self.t0 + k * SEG_S, dt.UTC).isoformat(timespec="milliseconds")
                lines += [f"#EXT-X-PROGRAM-DATE-TIME:{pdt.replace('+00:00', 'Z')}", f"#EXTINF:{SEG_S:.3f},",
                          f"../../seg/{k}.ts"]
            tmp = self.common / f".{name}.tmp"
            tmp.write_text("\n".join(lines) + "\n")
            tmp.rename(self.common / f"{name}.m3u8")

    def _run(self) -> None:
        while not self._stop.is_set():
            nxt = self.t0 + (self.newest() + 2) * SEG_S
            if self._stop.wait(max(0.0, nxt - time.time())):
                return
            self.write()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def start_nginx(root: Path) -> tuple[subprocess.Popen, list[int]]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ports = [free_port() for _ in range(3)]
    run = root / "run"
    (run / "tmp").mkdir(parents=True)
    servers = "\n".join(f"  server {{ listen 127.0.0.1:{p}; root {root}/www; location ~ \\.m3u8$ {{ "
                        f"add_header Cache-Control no-cache; }} }}" for p in ports)
    (run / "nginx.conf").write_text(f"""
worker_processes 1; daemon off; pid {run}/nginx.pid; error_log {run}/error.log warn; user root;
events {{ worker_connections 8192; }}
http {{ log_format ua '$msec $http_user_agent|$uri'; access_log {run}/access.log ua buffer=256k flush=1s;
  client_body_temp_path {run}/tmp; proxy_temp_path {run}/tmp; fastcgi_temp_path {run}/tmp;
  uwsgi_temp_path {run}/tmp; scgi_temp_path {run}/tmp; keepalive_requests 1000000; open_file_cache off;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
{servers}
}}
""")
    p = subprocess.Popen([nginx, "-c", str(run / "nginx.conf"), "-p", str(run)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for port in ports:
        wait_port(port, "nginx")
    return p, ports


def requests_by_client(log: Path, t0: float, t1: float) -> dict[str, collections.Counter[str]]:
    """client ('signalpath' | 'blackbox' | other) -> Counter of 'playlist' / 'segment' requests in [t0, t1)."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in log.read_text(errors="replace").splitlines():
        at, _, rest = line.partition(" ")
        try:
            t = float(at)
        except ValueError:
            continue
        if not t0 <= t < t1:
            continue
        ua, _, uri = rest.rpartition("|")
        client = "blackbox" if "Blackbox" in ua else "signalpath" if "signalpath" in ua.lower() else "other"
        out[client]["playlist" if uri.endswith(".m3u8") else "segment"] += 1
    return out


# ---------------------------------------------------------------- the agent

OPTIONAL = ("playback", "latency", "media")  # every default probe but HLS, in the --breakdown order


def agent_config(ports: list[int], streams: int, scratch: Path, listen: str, *, off: frozenset[str]) -> Path:
    def url(port: int, i: int) -> str:
        return f"http://127.0.0.1:{port}/live/s{i:03d}/master.m3u8"

    disabled = {name: {"enabled": False} for name in sorted(off)}
    conf = {"agent": {"listen": listen, "site": "scale"},
            "incidents": {"path": str(scratch / "incidents.db")},
            "history": {"max_mb": 64},
            "streams": [{"name": f"s{i:03d}", "origin": url(ports[0], i),
                         "edges": [{"name": "edge-a", "url": url(ports[1], i)},
                                   {"name": "edge-b", "url": url(ports[2], i)}], **disabled}
                        for i in range(streams)]}
    path = scratch / "agent.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def metric_max(text: str, name: str) -> float:
    vals = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")]
    return max(vals, default=float("nan"))


def run_agent(ports: list[int], streams: int, scratch: Path, warmup: float, seconds: float, log: Path,
              *, off: frozenset[str] = frozenset(), profile: Path | None = None) -> dict[str, object]:
    port = free_port()
    cfg = agent_config(ports, streams, scratch, f"127.0.0.1:{port}", off=off)
    out = open(scratch / "agent.log", "wb")
    # --profile: the agent's event-loop thread under cProfile (its decoding worker process is not
    # profiled; written when it exits on SIGTERM; the profiler's own cost inflates every figure of
    # that run: read it for where time goes, not how much)
    prof = ["-m", "cProfile", "-o", str(profile / f"agent-{streams}{''.join('-no-' + o for o in sorted(off))}.prof")] \
        if profile is not None else []
    proc = subprocess.Popen([sys.executable, *prof, "-m", "agent.cli", "run", "-c", str(cfg)], cwd=ROOT,
                            stdout=out, stderr=out)
    try:
        wait_port(port, "the agent", 60)
        time.sleep(warmup)
        base = f"http://127.0.0.1:{port}"
        c0, t0, rss, pss, main_rss = cpu_s(proc.pid), time.time(), 0.0, 0.0, 0.0
        loop_lag, sched_lag, shed = [], [], 0.0
        while time.time() - t0 < seconds:
            time.sleep(5)
            with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
                text = r.read().decode()
            loop_lag.append(metric_max(text, "signalpath_agent_loop_lag_seconds"))
            sched_lag.append(metric_max(text, "signalpath_probe_schedule_lag_seconds"))
            shed = max(shed, metric_max(text, "signalpath_agent_shed_level"))
            mem = memory_mib(proc.pid)
            rss, pss, main_rss = max(rss, mem[0]), max(pss, mem[1]), max(main_rss, mem[2])
        c1, t1 = cpu_s(proc.pid), time.time()
        status = get_json(base + "/api/v1/status")
        incidents = get_json(base + "/api/v1/incidents?state=all")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
    assert isinstance(status, dict) and isinstance(incidents, list)
    cells = [c for s in status["streams"] for c in s["stages"]]
    time.sleep(1.5)  # nginx flushes its log every second
    reqs = requests_by_client(log, t0, t1)["signalpath"]
    by_place = collections.Counter(f"{i['stage']}/{i['component']} {i['fault']} {i['severity']}"
                                   for i in incidents)  # every stream's together
    return {"cores": (c1 - c0) / (t1 - t0), "rss_mib": rss, "pss_mib": pss, "main_rss_mib": main_rss, "loop_lag": loop_lag, "sched_lag": sched_lag,
            "shed": shed, "cells": len(cells), "not_ok": sum(c["state"] != "ok" for c in cells),
            "unknown": sum(c["state"] == "unknown" for c in cells), "incidents": by_place,
            "playlists_s": reqs["playlist"] / (t1 - t0), "segments_s": reqs["segment"] / (t1 - t0),
            "cpu_s": c1 - c0, "agent": status.get("agent")}


# ---------------------------------------------------------------- the peer

async def drive_blackbox(bb: int, urls: list[str], seconds: float) -> int:
    """Each URL probed once a second through blackbox_exporter, as Prometheus scrapes it; probes done."""
    done = 0
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=10)) as http:
        async def one(url: str) -> None:
            nonlocal done
            async with http.get(f"http://127.0.0.1:{bb}/probe", params={"module": "http_2xx", "target": url}) as r:
                await r.read()
                done += r.status == 200
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            await asyncio.gather(*(one(u) for u in urls), return_exceptions=True)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    return done


def run_blackbox(ports: list[int], streams: int, scratch: Path, warmup: float, seconds: float, log: Path
                 ) -> dict[str, object]:
    exe = shutil.which("prometheus-blackbox-exporter")
    if exe is None:
        raise SystemExit("prometheus-blackbox-exporter not found: apt-get install prometheus-blackbox-exporter "
                         "(or --no-peer)")
    cfg = scratch / "blackbox.yml"
    cfg.write_text(yaml.safe_dump({"modules": {"http_2xx": {"prober": "http", "timeout": "5s", "http": {
        "method": "GET", "valid_status_codes": [200], "preferred_ip_protocol": "ip4"}}}}))
    bb = free_port()
    proc = subprocess.Popen([exe, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{bb}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    urls = [f"http://127.0.0.1:{p}/live/s{i:03d}/{r}.m3u8" for i in range(streams) for p in ports for r in RENDITIONS]
    try:
        wait_port(bb, "blackbox_exporter")
        asyncio.run(drive_blackbox(bb, urls, warmup))
        c0, t0 = cpu_s(proc.pid), time.time()
        probes = asyncio.run(drive_blackbox(bb, urls, seconds))
        c1, t1 = cpu_s(proc.pid), time.time()
        rss = memory_mib(proc.pid)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    time.sleep(1.5)
    reqs = requests_by_client(log, t0, t1)["blackbox"]
    return {"cores": (c1 - c0) / (t1 - t0), "probes": probes, "requests": reqs["playlist"], "cpu_s": c1 - c0,
            "rss_mib": rss, "per_s": reqs["playlist"] / (t1 - t0)}


# ---------------------------------------------------------------- report

def print_breakdown(n: int, parts: dict[str, dict[str, object]]) -> None:
    """What each optional probe costs at ``n`` streams: the whole agent less the agent without it."""
    whole = parts["every default probe"]
    print(f"\nbreakdown at {n} streams (each row its own run; a probe's cost = every default probe - without it)")
    print(f"{'run':26s}{'cores':>8s}{'probe costs':>13s}{'mcores/stream':>15s}{'playlists/s':>13s}"
          f"{'segments/s':>12s}{'shed':>6s}")
    for name, r in parts.items():
        cost = "" if name == "every default probe" else f"{whole['cores'] - r['cores']:.3f}"
        if name == "HLS alone":
            cost = f"HLS {r['cores']:.3f}"
        per = (whole["cores"] - r["cores"]) if name.startswith("without") else r["cores"]
        print(f"{name:26s}{r['cores']:8.3f}{cost:>13s}{1000 * per / n:15.2f}{r['playlists_s']:13.0f}"
              f"{r['segments_s']:12.0f}{r['shed']:6.0f}")
    if "HLS alone" in parts:
        print(f"every default probe less HLS alone: {whole['cores'] - parts['HLS alone']['cores']:.3f} cores (what "
              "several probes share, as the decoding worker of media and latency, shows in no single row; "
              "single runs vary by a few hundredths of a core)")


def pct(values: list[float], q: float) -> float:
    vals = sorted(v for v in values if v == v)
    return vals[min(len(vals) - 1, int(round(q * (len(vals) - 1))))] if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="50,200", help="comma-separated stream counts (default 50,200)")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (default 60)")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring (default 30)")
    ap.add_argument("--peer-streams", type=int, default=50, help="streams for the blackbox_exporter comparison")
    ap.add_argument("--no-peer", action="store_true", help="skip the blackbox_exporter comparison")
    ap.add_argument("--breakdown", type=int, metavar="N",
                    help="also run N streams with each optional probe (players, latency, media) off in turn, and "
                         "HLS alone, and print what each costs (its marginal CPU); pick N the agent keeps up with "
                         "(shed level 0), or shedding blurs the difference")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run each agent under cProfile, writing DIR/agent-STREAMS.prof (read with python -m pstats)")
    args = ap.parse_args()
    if not args.no_peer and shutil.which("prometheus-blackbox-exporter") is None:
        # said before the runs, not after ten minutes of them
        ap.error("prometheus-blackbox-exporter not found: apt-get install prometheus-blackbox-exporter "
                 "(or --no-peer)")
    counts = [int(x) for x in args.streams.split(",")]
    runs = len(counts) + (0 if args.no_peer else 2) + (0 if args.breakdown is None else 5)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="signalpath-scale-") as d:
        root = Path(d)
        minutes = runs * (args.seconds + args.warmup + 20) / 60 + 1
        segments, peak = encode_segments(root / "www", minutes)
        pub = Publisher(root / "www", max(counts + [args.peer_streams, args.breakdown or 0]), segments, peak)
        nginx, ports = start_nginx(root)
        log = root / "run" / "access.log"
        results = {}
        try:
            for n in counts:
                scratch = Path(tempfile.mkdtemp(dir=d))
                print(f"... {n} streams, every default probe", file=sys.stderr, flush=True)
                results[n] = run_agent(ports, n, scratch, args.warmup, args.seconds, log, profile=args.profile)
            parts: dict[str, dict[str, object]] = {}
            if args.breakdown is not None:
                n = args.breakdown
                variants = [("every default probe", frozenset()), *((f"without {o}", frozenset({o})) for o in OPTIONAL),
                            ("HLS alone", frozenset(OPTIONAL))]
                for name, off in variants:
                    if not off and n in results:
                        parts[name] = results[n]
                        continue
                    print(f"... breakdown: {n} streams, {name}", file=sys.stderr, flush=True)
                    parts[name] = run_agent(ports, n, Path(tempfile.mkdtemp(dir=d)), args.warmup, args.seconds, log,
                                            off=off, profile=args.profile)
            if not args.no_peer:
                n = args.peer_streams
                print(f"... {n} streams, HLS probe only, then blackbox_exporter", file=sys.stderr, flush=True)
                ours = run_agent(ports, n, Path(tempfile.mkdtemp(dir=d)), args.warmup / 2, args.seconds, log,
                                 off=frozenset(OPTIONAL), profile=args.profile)
                peer = run_blackbox(ports, n, Path(tempfile.mkdtemp(dir=d)), 5, args.seconds, log)
        finally:
            pub.stop()
            nginx.terminate()
            nginx.wait(timeout=10)
    print(f"\nscale: streams x (origin + 2 edges) x 3 renditions, 2-s segments, one nginx; agent as its own process "
          f"(`signalpath run`), defaults (HLS, players on highest+lowest, latency, media on the lowest); "
          f"{args.seconds:g} s measured after {args.warmup:g} s; {os.cpu_count()} cores")
    print(f"{'streams':34s}" + "".join(f"{n:>14d}" for n in counts))
    rows = [
        ("agent CPU (cores; target <= 1)", lambda r: f"{r['cores']:.2f}"),
        ("agent RSS (MiB, summed; target <= 300)", lambda r: f"{r['rss_mib']:.0f}"),
        ("  PSS summed / main process RSS (MiB)", lambda r: f"{r['pss_mib']:.0f}/{r['main_rss_mib']:.0f}"),
        ("schedule lag p99 / max (s)", lambda r: f"{pct(r['sched_lag'], .99):.2f}/{pct(r['sched_lag'], 1):.2f}"),
        ("event-loop lag median / max (s)", lambda r: f"{pct(r['loop_lag'], .5):.2f}/{pct(r['loop_lag'], 1):.2f}"),
        ("shed level (max)", lambda r: f"{r['shed']:.0f}"),
        ("playlist requests / s", lambda r: f"{r['playlists_s']:.0f}"),
        ("segment requests / s", lambda r: f"{r['segments_s']:.0f}"),
        ("cells not ok (unknown) / all", lambda r: f"{r['not_ok']}({r['unknown']})/{r['cells']}"),
        ("incidents opened", lambda r: f"{sum(r['incidents'].values())}"),
    ]
    for label, f in rows:
        print(f"{label:34s}" + "".join(f"{f(results[n]):>14s}" for n in counts))
    for n in counts:
        inc = results[n]["incidents"]
        print(f"incidents at {n}: " + (", ".join(f"{k} x{v}" for k, v in inc.most_common(8)) or "none"))
        print(f"the agent at {n}: {results[n]['agent']}")
    if parts:
        print_breakdown(args.breakdown, parts)
    if not args.no_peer:
        per_ours = ours["cpu_s"] / max(1.0, ours["playlists_s"] * args.seconds + ours["segments_s"] * args.seconds)
        per_peer = peer["cpu_s"] / max(1, peer["requests"])
        print(f"\npeer, {args.peer_streams} streams x 3 endpoints x 3 renditions, each playlist once a second:")
        print(f"  signalpath HLS probe only: {ours['cores']:.2f} cores for {ours['playlists_s']:.0f} playlist + "
              f"{ours['segments_s']:.0f} segment requests/s -> {1e6 * per_ours:.0f} us CPU per request "
              f"(playlist fetched, parsed, checked; newest segment timed)")
        print(f"  blackbox_exporter http_2xx: {peer['cores']:.2f} cores for {peer['per_s']:.0f} probes/s -> "
              f"{1e6 * per_peer:.0f} us CPU per probe (fetch, status check), RSS {peer['rss_mib']:.0f} MiB")
        print(f"  ratio (ours / blackbox per request): {per_ours / per_peer:.2f}")


if __name__ == "__main__":
    main()
