"""RealLab: a live pipeline built from real software, on loopback, for tests.

What runs (each its own process, its own prefix/config/data folder under ``root``):

- **origin**: nginx (Debian) with ``libnginx-mod-rtmp`` — RTMP ingest on
  ``rtmp_url``, HLS packager (2-s fragments, 10-s window) served at ``origin_url`` and its
  MPEG-DASH packager (``dash on``, same fragments and window) at ``dash_url``,
  ``/stat`` XML at ``stat_url`` and ``/control`` (drop publisher). The origin sends
  ``Cache-Control: max-age=60`` on segments and ``max-age=1`` on playlists (the
  ``map`` recipe of shared/ENVIRONMENT.md), like a real origin in front of a CDN.
- **edge-a, edge-b**: one nginx process each, ``proxy_cache`` in front of the origin,
  honouring the origin's Cache-Control, answering ``X-Cache: MISS|HIT|EXPIRED``.
  One process per edge so an edge can be killed or reconfigured without touching
  the origin (``nginx -s reload`` of an RTMP process blinds ``/stat``).
- **ffmpeg** (Debian): pushes ``testsrc2`` + ``sine`` (H.264 ultrafast, AAC,
  keyframe every 2 s so segments are 2 s) to ``rtmp_url``.

Debian's nginx-rtmp (1.1.4, and 1.2.2 in Debian 12) writes NO ``EXT-X-PROGRAM-DATE-TIME``.
``RealLab(hls_continuous=True|False)`` writes ``hls_continuous on|off;`` (left out by default:
nginx-rtmp 1.2.2 then continues the numbering across a publisher restart, as with ``on``).

Faults (each one changes what a client observes; tests/test_reallab.py proves it):

- :meth:`RealLab.drop_publisher` — ``/control/drop/publisher``: the origin drops the
  RTMP publisher (ffmpeg then exits); ``/stat`` shows no publisher, the playlist stops.
- :meth:`RealLab.kill_ffmpeg` / :meth:`RealLab.start_ffmpeg` — the encoder dies / comes back.
- :meth:`RealLab.make_edge_stale` — the edge keeps serving an old playlist. How, honestly:
  the edge is reconfigured (its own nginx process, SIGHUP) to ignore the origin's
  ``Cache-Control`` and cache playlists for an hour — the classic CDN TTL
  misconfiguration. The first playlist it fetches after the change is the one it
  serves from then on; segments stay cached as before. Cache keys of the stale mode
  carry a ``stale:`` prefix, so :meth:`RealLab.heal_edge` goes back to fresh playlists
  at once. The response header ``X-Lab-Mode: stale`` marks the mode (tests use it to
  know the reload finished; the agent must not rely on it).
- :meth:`RealLab.kill_edge` / :meth:`RealLab.start_edge` — the edge's nginx is stopped:
  connections to its port are refused; start brings it back on the same port.

Lifecycle: ``async with RealLab(tmp_dir) as lab:`` — ``start()`` returns once the
origin playlist lists a segment (deadline ``ready_timeout``); ``stop()`` stops every
child by PID (SIGTERM, then SIGKILL after a bound, nginx workers included) and waits.
``lab.pids()`` lists every live process the lab started (the tests check none leaks).

Runs as root (``user root;``) or as an ordinary user (the directive is left out).
This module needs no pytest; tests call ``tests/_require.py`` for the binaries
(:data:`BINARIES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

BINARIES = ("nginx", "ffmpeg")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
EDGE_NAMES = ("edge-a", "edge-b")


class LabError(RuntimeError):
    """The lab could not start or a fault could not be applied (with the log tail)."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1: bind port 0, read it, close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@dataclass
class _Proc:
    name: str
    argv: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = None
    known: dict[int, psutil.Process] = field(default_factory=dict)


class RealLab:
    """nginx-rtmp origin + two nginx proxy_cache edges + an ffmpeg publisher."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        stream: str = "main",
        app: str = "live",
        video_size: str = "320x180",
        fps: int = 15,
        segment_seconds: int = 2,
        on_publish_url: str | None = None,
        publish: bool = True,
        ready_timeout: float = 25.0,
        hls_continuous: bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.stream = stream
        self.app = app
        self.video_size = video_size
        self.fps = fps
        self.segment_seconds = segment_seconds
        self.on_publish_url = on_publish_url
        self.publish = publish
        self.ready_timeout = ready_timeout
        self.hls_continuous = hls_continuous  # None: the directive is left out (nginx-rtmp's default)
        self.nginx = shutil.which("nginx") or "nginx"
        self.ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
        self.origin_http_port = 0
        self.rtmp_port = 0
        self.edge_ports: dict[str, int] = {}
        self.edge_stale: dict[str, bool] = {}
        self._procs: dict[str, _Proc] = {}
        self._session: aiohttp.ClientSession | None = None

    # ---- what a test or the agent points at -------------------------------------------

    @staticmethod
    def missing_binaries() -> list[str]:
        """Binaries (or the RTMP module) this machine lacks; empty when the lab can run."""
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if not RTMP_MODULE.exists() and "nginx" not in missing:
            missing.append("nginx")  # nginx without libnginx-mod-rtmp
        return missing

    @property
    def origin_base(self) -> str:
        return f"http://127.0.0.1:{self.origin_http_port}"

    @property
    def origin_url(self) -> str:
        """The HLS media playlist at the origin."""
        return f"{self.origin_base}/hls/{self.stream}.m3u8"

    @property
    def dash_url(self) -> str:
        """nginx-rtmp's own MPEG-DASH of the same stream at the origin (``dash on``: SegmentTimeline
        with ``$Time$``, video and audio apart)."""
        return f"{self.origin_base}/dash/{self.stream}.mpd"

    def dash_edge_url(self, edge: str) -> str:
        return f"http://127.0.0.1:{self.edge_ports[edge]}/dash/{self.stream}.mpd"

    def edge_url(self, edge: str) -> str:
        return f"http://127.0.0.1:{self.edge_ports[edge]}/hls/{self.stream}.m3u8"

    @property
    def edge_urls(self) -> dict[str, str]:
        return {name: self.edge_url(name) for name in self.edge_ports}

    @property
    def rtmp_base(self) -> str:
        """``rtmp://127.0.0.1:PORT/APP`` (no stream key)."""
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{self.app}"

    @property
    def rtmp_url(self) -> str:
        """Where the lab's ffmpeg publishes (stream key = ``stream``)."""
        return f"{self.rtmp_base}/{self.stream}"

    @property
    def stat_url(self) -> str:
        return f"{self.origin_base}/stat"

    def config_dict(self, *, listen: str = "127.0.0.1:0", site: str = "lab") -> dict[str, Any]:
        """An agent config (shared/DESIGN.md shape) monitoring this lab."""
        return {
            "agent": {"listen": listen, "site": site},
            "incidents": {"path": str(self.root / "incidents.db")},  # never the checkout
            "streams": [
                {
                    "name": self.stream,
                    "origin": self.origin_url,
                    "edges": [{"name": n, "url": u} for n, u in self.edge_urls.items()],
                }
            ],
        }

    def pids(self) -> set[int]:
        """Every live process this lab started (masters, nginx workers, ffmpeg)."""
        alive: set[int] = set()
        for p in self._procs.values():
            self._remember_children(p)
            for pid, proc in p.known.items():
                with contextlib.suppress(psutil.Error):
                    # is_running() compares creation time: a reused PID is not ours.
                    if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                        alive.add(pid)
        return alive

    # ---- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> RealLab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        missing = self.missing_binaries()
        if missing:
            raise LabError(f"missing binaries: {', '.join(missing)}")
        self.root.mkdir(parents=True, exist_ok=True)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        try:
            self.origin_http_port = free_port()
            self.rtmp_port = free_port()
            self.edge_ports = {name: free_port() for name in EDGE_NAMES}
            self.edge_stale = {name: False for name in EDGE_NAMES}
            self._write_origin_conf()
            await self._start_nginx("origin", self.origin_http_port)
            for name in EDGE_NAMES:
                await self.start_edge(name)
            if self.publish:
                await self.start_ffmpeg()
                await self.wait_playlist(min_segments=1, timeout=self.ready_timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every child by PID (ffmpeg first), SIGKILL after a bound, and wait."""
        for name in ["ffmpeg", *[n for n in self._procs if n != "ffmpeg"]]:
            if name in self._procs:
                await self._stop_proc(self._procs[name])
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- faults ------------------------------------------------------------------------

    async def drop_publisher(self) -> str:
        """Ask the origin to drop the RTMP publisher; returns nginx-rtmp's answer body."""
        url = f"{self.origin_base}/control/drop/publisher?app={self.app}&name={self.stream}"
        async with self._http().get(url) as resp:
            return await resp.text()

    async def start_ffmpeg(self, audio: str = "sine=frequency=1000:sample_rate=44100") -> None:
        """Start (or restart) the ffmpeg publisher; ``audio`` is its lavfi audio source (``anullsrc``:
        digital silence)."""
        if "ffmpeg" in self._procs:
            await self._stop_proc(self._procs["ffmpeg"])
        argv = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size={self.video_size}:rate={self.fps}",
            "-f", "lavfi", "-i", audio,
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-b:v", "300k",
            "-g", str(self.fps * self.segment_seconds),
            "-keyint_min", str(self.fps * self.segment_seconds), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", "64k", "-f", "flv", self.rtmp_url,
        ]
        proc = _Proc("ffmpeg", argv, self.root / "ffmpeg.log")
        self._procs["ffmpeg"] = proc
        await self._spawn(proc)

    async def kill_ffmpeg(self) -> None:
        """Kill the publisher (SIGKILL: an encoder crash, no clean RTMP close)."""
        proc = self._procs.get("ffmpeg")
        if proc is not None:
            await self._stop_proc(proc, sig=signal.SIGKILL)

    def ffmpeg_running(self) -> bool:
        proc = self._procs.get("ffmpeg")
        return bool(proc and proc.proc and proc.proc.returncode is None)

    async def start_edge(self, edge: str) -> None:
        """Start the edge's nginx (again) on its port, in its current mode."""
        if edge in self._procs:
            await self._stop_proc(self._procs[edge])
        self._write_edge_conf(edge)
        await self._start_nginx(edge, self.edge_ports[edge])

    async def kill_edge(self, edge: str) -> None:
        """Stop the edge's nginx: its port refuses connections until :meth:`start_edge`."""
        await self._stop_proc(self._procs[edge], sig=signal.SIGKILL)

    async def make_edge_stale(self, edge: str, timeout: float = 10.0) -> None:
        """Reconfigure the edge to cache playlists for an hour (see module docstring)."""
        await self._reconfigure_edge(edge, stale=True, timeout=timeout)

    async def heal_edge(self, edge: str, timeout: float = 10.0) -> None:
        """Back to honouring the origin's Cache-Control."""
        await self._reconfigure_edge(edge, stale=False, timeout=timeout)

    # ---- observation helpers (for tests) ------------------------------------------------

    async def fetch(self, url: str) -> tuple[int, dict[str, str], bytes]:
        async with self._http().get(url) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def playlist(self, url: str | None = None) -> tuple[int, list[str]]:
        """(EXT-X-MEDIA-SEQUENCE, segment URIs) of a media playlist (origin by default)."""
        status, _headers, body = await self.fetch(url or self.origin_url)
        if status != 200:
            raise LabError(f"playlist answered HTTP {status}")
        return parse_media_playlist(body.decode(errors="replace"))

    async def last_segment(self, url: str | None = None) -> int:
        """Media sequence number of the playlist's newest segment (-1 when empty)."""
        seq, segs = await self.playlist(url)
        return seq + len(segs) - 1

    async def wait_playlist(
        self, url: str | None = None, *, min_segments: int = 1, after_last: int | None = None,
        timeout: float = 20.0,
    ) -> int:
        """Wait until the playlist lists ``min_segments`` and its newest segment's sequence
        number exceeds ``after_last``; return that number.

        (nginx-rtmp appends segments without moving EXT-X-MEDIA-SEQUENCE until its
        window is full, so "advancing" is measured on the newest segment.)
        """
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            try:
                seq, segs = await self.playlist(url)
                last = seq + len(segs) - 1
                if len(segs) >= min_segments and (after_last is None or last > after_last):
                    return last
                last_error = f"newest segment {last}, {len(segs)} segments"
            except (TimeoutError, aiohttp.ClientError, LabError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.2)
        raise LabError(
            f"playlist not ready within {timeout:.0f} s ({last_error}); ffmpeg log: "
            f"{_tail(self.root / 'ffmpeg.log', 600)!r}; origin log: "
            f"{_tail(self.root / 'origin' / 'error.log', 600)!r}"
        )

    async def stat_xml(self) -> str:
        async with self._http().get(self.stat_url) as resp:
            return await resp.text()

    # ---- internals ---------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise LabError("lab not started")
        return self._session

    def _common_head(self, run: Path) -> str:
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (
            f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\n"
            f"pid {run}/nginx.pid;\nerror_log {run}/error.log info;\n"
            "events { worker_connections 256; }\n"
        )

    @staticmethod
    def _http_head(run: Path) -> str:
        return (
            f"  access_log {run}/access.log;\n"
            f"  client_body_temp_path {run}/tmp/body; proxy_temp_path {run}/tmp/proxy;\n"
            f"  fastcgi_temp_path {run}/tmp/fastcgi; uwsgi_temp_path {run}/tmp/uwsgi;\n"
            f"  scgi_temp_path {run}/tmp/scgi;\n"
        )

    def _prepare(self, name: str) -> Path:
        run = self.root / name
        (run / "tmp").mkdir(parents=True, exist_ok=True)
        return run

    def _write_origin_conf(self) -> None:
        run = self._prepare("origin")
        (run / "hls").mkdir(exist_ok=True)
        (run / "dash").mkdir(exist_ok=True)
        on_publish = f"    on_publish {self.on_publish_url};\n" if self.on_publish_url else ""
        conf = (
            f"load_module {RTMP_MODULE};\n" + self._common_head(run)
            + "rtmp { server {\n"
            f"  listen 127.0.0.1:{self.rtmp_port}; chunk_size 4096;\n"
            f"  application {self.app} {{\n    live on; record off;\n{on_publish}"
            f"    hls on; hls_path {run}/hls; hls_fragment {self.segment_seconds}s;\n"
            "    hls_playlist_length 10s; hls_cleanup on;\n"
            f"    dash on; dash_path {run}/dash; dash_fragment {self.segment_seconds}s; dash_playlist_length 10s;\n"
            + ("" if self.hls_continuous is None else f"    hls_continuous {'on' if self.hls_continuous else 'off'};\n")
            + "  }\n} }\n"
            "http {\n" + self._http_head(run)
            + '  map $uri $hls_cache { ~\\.ts$ "max-age=60"; ~\\.m4[av]$ "max-age=60"; default "max-age=1"; }\n'
            f"  server {{ listen 127.0.0.1:{self.origin_http_port};\n"
            "    location /hls { types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n"
            f"      alias {run}/hls; add_header Cache-Control $hls_cache; }}\n"
            "    location /dash { types { application/dash+xml mpd; video/mp4 m4v; audio/mp4 m4a; }\n"
            f"      alias {run}/dash; add_header Cache-Control $hls_cache; }}\n"
            "    location /stat { rtmp_stat all; }\n"
            "    location /control { rtmp_control all; }\n  }\n}\n"
        )
        (run / "nginx.conf").write_text(conf)

    def _write_edge_conf(self, edge: str) -> None:
        run = self._prepare(edge)
        (run / "cache").mkdir(exist_ok=True)
        if self.edge_stale[edge]:
            mode = (
                "      proxy_ignore_headers Cache-Control Expires;\n"
                "      proxy_cache_valid 200 1h;\n"
                '      proxy_cache_key "stale:$scheme$proxy_host$request_uri";\n'
                "      add_header X-Lab-Mode stale;\n"
            )
        else:
            mode = "      proxy_cache_valid 200 1s;\n      add_header X-Lab-Mode fresh;\n"
        conf = (
            self._common_head(run) + "http {\n" + self._http_head(run)
            + f"  proxy_cache_path {run}/cache keys_zone=edge:1m max_size=100m inactive=60s;\n"
            f"  server {{ listen 127.0.0.1:{self.edge_ports[edge]};\n"
            "    location / {\n"
            f"      proxy_pass {self.origin_base}; proxy_cache edge; proxy_cache_lock on;\n"
            + mode
            + "      add_header X-Cache $upstream_cache_status;\n    }\n  }\n}\n"
        )
        (run / "nginx.conf").write_text(conf)

    async def _reconfigure_edge(self, edge: str, *, stale: bool, timeout: float) -> None:
        proc = self._procs.get(edge)
        if proc is None or proc.proc is None or proc.proc.returncode is not None:
            raise LabError(f"{edge} is not running")
        self.edge_stale[edge] = stale
        self._write_edge_conf(edge)
        proc.proc.send_signal(signal.SIGHUP)
        want = "stale" if stale else "fresh"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._remember_children(proc)
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                status, headers, _ = await self.fetch(self.edge_url(edge))
                if headers.get("X-Lab-Mode") == want:
                    return
            await asyncio.sleep(0.1)
        raise LabError(f"{edge} did not switch to {want} mode within {timeout} s")

    async def _start_nginx(self, name: str, http_port: int) -> None:
        run = self.root / name
        conf = run / "nginx.conf"
        argv = [self.nginx, "-e", str(run / "error.log"), "-p", f"{run}/", "-c", str(conf)]
        check = await asyncio.create_subprocess_exec(
            *argv, "-t", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await asyncio.wait_for(check.communicate(), 10)
        if check.returncode != 0:
            raise LabError(f"nginx -t failed for {name}: {err.decode(errors='replace')[-800:]}")
        proc = _Proc(name, argv, run / "stderr.log")
        self._procs[name] = proc
        await self._spawn(proc)
        await self._wait_port(proc, http_port)

    async def _spawn(self, proc: _Proc) -> None:
        with open(proc.log, "ab") as log:
            proc.proc = await asyncio.create_subprocess_exec(
                *proc.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        proc.known = {}
        with contextlib.suppress(psutil.Error):
            proc.known[proc.proc.pid] = psutil.Process(proc.proc.pid)

    async def _wait_port(self, proc: _Proc, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.proc is not None and proc.proc.returncode is not None:
                break
            try:
                _r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
            except (TimeoutError, OSError):
                await asyncio.sleep(0.05)
                continue
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            self._remember_children(proc)
            return
        raise LabError(
            f"{proc.name} did not listen on 127.0.0.1:{port} within {timeout} s: "
            f"{_tail(proc.log, 800)!r} {_tail(self.root / proc.name / 'error.log', 800)!r}"
        )

    @staticmethod
    def _remember_children(proc: _Proc) -> None:
        if proc.proc is None or proc.proc.returncode is not None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.proc.pid).children(recursive=True):
                proc.known.setdefault(child.pid, child)

    async def _stop_proc(self, proc: _Proc, sig: signal.Signals = signal.SIGTERM,
                         grace: float = 5.0) -> None:
        """Signal the process, wait ``grace`` s, SIGKILL it and every known child, reap."""
        self._remember_children(proc)
        if proc.proc is not None and proc.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.proc.kill()
                await asyncio.wait_for(proc.proc.wait(), grace)
        # nginx workers outlive a SIGKILLed master: kill whatever of ours is left.
        leftovers = []
        for p in proc.known.values():
            with contextlib.suppress(psutil.Error):
                # psutil checks the creation time before signalling: never a reused PID.
                if p.is_running():
                    p.kill()
                    leftovers.append(p)
        if leftovers:
            await asyncio.to_thread(psutil.wait_procs, leftovers, grace)


def parse_media_playlist(text: str) -> tuple[int, list[str]]:
    """(EXT-X-MEDIA-SEQUENCE, segment URIs) of an HLS media playlist."""
    seq = 0
    segments: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(line.split(":", 1)[1])
        elif line and not line.startswith("#"):
            segments.append(line)
    return seq, segments
