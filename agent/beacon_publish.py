"""``signalpath beacon``: publish a beacon test stream into a real RTMP ingest.

The stream is a synthetic moving pattern (scrolling bars and a bouncing box, so no
freeze detector fires) with the latency beacon (:mod:`probes.core.beacon`) stamped on
every frame at the wall time the frame is made, H.264 (libx264, ``zerolatency``:
no lookahead, no B-frames, so a frame leaves the encoder as soon as it is stamped)
plus a 1 kHz AAC tone, muxed as FLV over RTMP by PyAV's bundled FFmpeg. Frames are
paced to the wall clock (a live source), a keyframe every ``gop_seconds`` so HLS
packagers cut segments on time. Pointing it at a production ingest makes the
per-stage latency measurement of the beacon probe work on that pipeline too.

Errors (a small tree, mapped at this boundary)::

    SignalpathError                       (agent/errors.py)
    └── BeaconPublishError                the stream could not be (fully) published
        ├── IngestUnreachable             no connection: refused, timed out, no such host
        └── IngestRefused                 connected, then the ingest rejected or dropped
                                          the stream (wrong application, stream key
                                          refused, publisher dropped)

Every message names the URL only in redacted form (:func:`redact_url`: no userinfo,
no query, the last path segment - the stream key - replaced by ``***``). FFmpeg's
own exception is *not* chained (``from None``): PyAV exceptions carry the full URL in
``filename``, and a chained traceback would print the key. Its errno is kept on the
error instead.

Note: ``av.open(url, "w")`` succeeds even for a dead URL; FFmpeg connects at the
first mux, which is where unreachable/refused shows up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno as errno_mod
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import av
import numpy as np
from pydantic import Field, ValidationError

from agent.config import expand_env
from agent.errors import SignalpathError
from probes.base import HOST_NOT_RESOLVED
from probes.core import beacon
from probes.core.config import StrictModel
from probes.core.redact import not_a_url, redact_url

__all__ = [
    "BeaconPublishError",
    "IngestUnreachable",
    "IngestRefused",
    "PublishSettings",
    "PublishProgress",
    "PublishResult",
    "redact_url",
    "publish",
    "publish_async",
    "register",
    "run_cli",
]


class BeaconPublishError(SignalpathError):
    """The beacon stream could not be published (or stopped early).

    ``url`` is the redacted URL; ``errno`` FFmpeg's error number when there was one;
    ``frames_sent`` how many video frames went out before the failure.
    """

    def __init__(self, message: str, *, url: str, errno: int | None = None, frames_sent: int = 0):
        super().__init__(message)
        self.url = url
        self.errno = errno
        self.frames_sent = frames_sent


class IngestUnreachable(BeaconPublishError):
    """No connection to the ingest (refused, timed out, unknown host)."""


class IngestRefused(BeaconPublishError):
    """The ingest accepted the connection, then refused or dropped the stream."""


class PublishSettings(StrictModel):
    """What to publish. ``seconds`` 0 means until stopped."""

    seconds: float = Field(default=0.0, ge=0.0)
    bitrate: int = Field(default=800_000, ge=50_000, le=50_000_000, description="video bit/s")
    width: int = Field(default=640, ge=160, le=3840, multiple_of=2)
    height: int = Field(default=360, ge=90, le=2160, multiple_of=2)
    fps: int = Field(default=30, ge=5, le=60)
    gop_seconds: float = Field(default=2.0, gt=0.0, le=10.0)
    audio_bitrate: int = Field(default=64_000, ge=16_000, le=320_000)
    tone_hz: float = Field(default=1000.0, gt=0.0, lt=20_000.0)


@dataclass(frozen=True, slots=True)
class PublishProgress:
    """A snapshot while publishing (handed to the ``progress`` callback about once a second)."""

    frames: int
    bytes: int
    seconds: float
    last_stamp: float


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What went out: video frames, audio frames, payload bytes muxed, wall seconds, beacon span."""

    frames: int
    audio_frames: int
    bytes: int
    seconds: float
    first_stamp: float | None
    last_stamp: float | None
    stopped: bool  # True when stopped early (stop event / cancellation), False when it ran its course


_AUDIO_RATE = 48_000
_AAC_FRAME = 1024


class _Pattern:
    """A cheap moving test picture: scrolling luma/chroma bars and a bouncing box."""

    def __init__(self, width: int, height: int) -> None:
        self.w, self.h = width, height
        xs = np.arange(2 * width)
        # Eight bars of smooth ramps, doubled in width so a scroll is a slice.
        bar = (xs * 8 // width) % 8
        ramp = (xs % (width // 8 or 1)) * 96 // max(width // 8, 1)
        self._luma = np.broadcast_to((40 + bar * 18 + ramp // 4).astype(np.uint8), (height, 2 * width))
        cxs = np.arange(width)  # chroma planes are width/2 wide, doubled
        self._u = np.broadcast_to((128 + 60 * np.sin(cxs * 2 * math.pi / width)).astype(np.uint8), (height // 2, width))
        self._v = np.broadcast_to((128 + 60 * np.cos(cxs * 2 * math.pi / width)).astype(np.uint8), (height // 2, width))
        self._box = max(height // 6, 8)
        lay = beacon.DEFAULT_LAYOUT
        self._code_chroma = (
            (int(lay.y0 * height) // 2, -(-round((lay.y0 + lay.rows * lay.cell_h) * height) // 2)),
            (int(lay.x0 * width) // 2, -(-round((lay.x0 + lay.cols * lay.cell_w) * width) // 2)),
        )

    def frame(self, i: int, wall_time: float) -> av.VideoFrame:
        w, h = self.w, self.h
        yuv = np.empty((h * 3 // 2, w), np.uint8)
        off = (i * 4) % w
        yuv[:h] = self._luma[:, off : off + w]
        coff = (i * 2) % (w // 2)
        u = self._u[:, coff : coff + w // 2]
        v = self._v[:, coff : coff + w // 2]
        # yuv420p as one array (PyAV's layout): Y, then U and V planes (h/2 x w/2) back to back.
        flat = yuv.reshape(-1)
        quarter = (w // 2) * (h // 2)
        flat[w * h : w * h + quarter] = u.ravel()
        flat[w * h + quarter :] = v.ravel()
        # Neutral chroma under the beacon: it reads as black/white on any player.
        (r0, r1), (c0, c1) = self._code_chroma
        for plane in (flat[w * h : w * h + quarter], flat[w * h + quarter :]):
            plane.reshape(h // 2, w // 2)[r0:r1, c0:c1] = 128
        b = self._box
        bx = int((w - b) * (0.5 + 0.5 * math.sin(i * 0.05)))
        by = int((h - b) * (0.5 + 0.5 * math.cos(i * 0.037)))
        yuv[by : by + b, bx : bx + b] = 235
        beacon.stamp(yuv[:h], wall_time)
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def _map_error(exc: Exception, safe_url: str, frames: int) -> BeaconPublishError:
    code = getattr(exc, "errno", None)
    unreachable = {errno_mod.ECONNREFUSED, errno_mod.ETIMEDOUT, errno_mod.EHOSTUNREACH, errno_mod.ENETUNREACH}
    if frames == 0 and code in unreachable:
        why = "refused the connection" if code == errno_mod.ECONNREFUSED else "did not answer"
        return IngestUnreachable(
            f"RTMP ingest {safe_url} {why}: check the host and port, and that the ingest is running",
            url=safe_url, errno=code, frames_sent=frames,
        )
    if frames == 0 and code == errno_mod.EIO and isinstance(exc, av.error.OSError) and not isinstance(
        exc, av.error.ConnectionResetError
    ):
        # FFmpeg's RTMP client reports "server said no" (connect/publish rejected) as EIO.
        return IngestRefused(
            f"RTMP ingest {safe_url} refused the stream: check the application name and the stream key",
            url=safe_url, errno=code, frames_sent=frames,
        )
    if frames == 0:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return IngestRefused(
            f"RTMP ingest {safe_url} closed the connection before the stream started ({reason}): "
            "check that this port is an RTMP ingest and that the application name and stream key are right",
            url=safe_url, errno=code, frames_sent=frames,
        )
    # strerror is FFmpeg's text for the code (never the URL, which PyAV keeps in ``filename``).
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return IngestRefused(
        f"RTMP ingest {safe_url} dropped the stream after {frames} frames ({reason}): "
        "the ingest closed the connection or refused the stream key",
        url=safe_url, errno=code, frames_sent=frames,
    )


def _resolve(url: str, safe_url: str) -> None:
    """Fail early and clearly on a host name that does not resolve (FFmpeg says only EIO)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 1935
    except ValueError:
        raise IngestUnreachable(f"{safe_url} is not a valid URL", url=safe_url) from None
    if not host:
        raise IngestUnreachable(f"{safe_url} names no host", url=safe_url)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise IngestUnreachable(
            f"RTMP ingest {safe_url}: {HOST_NOT_RESOLVED}; check the spelling and DNS", url=safe_url
        ) from None


def publish(
    url: str,
    settings: PublishSettings | None = None,
    *,
    stop: threading.Event | None = None,
    wall_clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    progress: Callable[[PublishProgress], None] | None = None,
) -> PublishResult:
    """Publish the beacon stream to ``url`` (blocking; run it in a thread).

    Runs ``settings.seconds`` (0: until ``stop`` is set). Each frame is stamped with
    ``wall_clock()`` at the moment it is made. Raises :class:`BeaconPublishError`
    (subclasses) when the ingest is unreachable or refuses/drops the stream.
    """
    s = settings or PublishSettings()
    stop = stop or threading.Event()
    safe_url = redact_url(url)
    pattern = _Pattern(s.width, s.height)
    frames = audio_frames = nbytes = 0
    first_stamp: float | None = None
    last_stamp: float | None = None
    _resolve(url, safe_url)
    t_start = monotonic()
    limit = int(round(s.seconds * s.fps)) if s.seconds > 0 else None
    try:
        container = av.open(url, "w", format="flv")
    except av.error.FFmpegError as exc:
        raise _map_error(exc, safe_url, 0) from None
    stopped = False
    try:
        video = container.add_stream("libx264", rate=s.fps)
        video.width, video.height, video.pix_fmt = s.width, s.height, "yuv420p"
        video.bit_rate = s.bitrate
        gop = max(1, int(round(s.gop_seconds * s.fps)))
        video.gop_size = gop
        video.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:"
            f"vbv-maxrate={s.bitrate // 1000}:vbv-bufsize={s.bitrate // 1000}",
        }
        audio = container.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
        audio.bit_rate = s.audio_bitrate
        tone_step = 2 * math.pi * s.tone_hz / _AUDIO_RATE
        samples_out = 0
        last_report = t_start
        i = 0
        while limit is None or i < limit:
            wait = t_start + i / s.fps - monotonic()
            if stop.wait(wait) if wait > 0 else stop.is_set():
                stopped = True
                break
            stamp_time = wall_clock()
            frame = pattern.frame(i, stamp_time)
            frame.pts = i
            for packet in video.encode(frame):
                nbytes += packet.size
                container.mux(packet)
            frames += 1
            first_stamp = stamp_time if first_stamp is None else first_stamp
            last_stamp = stamp_time
            # Audio up to the end of this video frame, in whole AAC frames.
            due = int((i + 1) * _AUDIO_RATE / s.fps)
            while samples_out < due:
                n = np.arange(samples_out, samples_out + _AAC_FRAME)
                pcm = (0.25 * np.sin(n * tone_step)).astype(np.float32).reshape(1, -1)
                aframe = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
                aframe.sample_rate = _AUDIO_RATE
                aframe.pts = samples_out
                samples_out += _AAC_FRAME
                for packet in audio.encode(aframe):
                    nbytes += packet.size
                    container.mux(packet)
                audio_frames += 1
            i += 1
            now = monotonic()
            if progress is not None and now - last_report >= 1.0:
                last_report = now
                progress(PublishProgress(frames, nbytes, now - t_start, stamp_time))
        for stream in (video, audio):
            for packet in stream.encode():
                nbytes += packet.size
                container.mux(packet)
        container.close()
    except av.error.FFmpegError as exc:
        with contextlib.suppress(Exception):
            container.close()
        raise _map_error(exc, safe_url, frames) from None
    except BaseException:
        with contextlib.suppress(Exception):
            container.close()
        raise
    return PublishResult(frames, audio_frames, nbytes, monotonic() - t_start, first_stamp, last_stamp, stopped)


async def publish_async(
    url: str,
    settings: PublishSettings | None = None,
    *,
    wall_clock: Callable[[], float] = time.time,
    progress: Callable[[PublishProgress], None] | None = None,
    stop_timeout_s: float = 10.0,
) -> PublishResult:
    """:func:`publish` in a worker thread; cancelling this coroutine stops the thread and awaits it.

    The thread is always joined before this returns or re-raises the cancellation
    (bounded by ``stop_timeout_s``). Known limit: PyAV opens output URLs without
    protocol options, so FFmpeg's ``rw_timeout`` cannot be set; a write to an ingest
    that keeps the TCP connection open but stops reading blocks until the kernel gives
    up on the connection. Past ``stop_timeout_s`` the (daemon) thread is left behind.
    """
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[PublishResult] = loop.create_future()

    def settle(result: PublishResult | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = publish(url, settings, stop=stop, wall_clock=wall_clock, progress=progress)
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    thread = threading.Thread(target=work, name="beacon-publish", daemon=True)
    thread.start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(stop_timeout_s):
                await asyncio.shield(done)
        raise
    finally:
        # ``done`` settles as the thread's last act: join it (returning, so microseconds; bounded
        # all the same) so that no publisher thread outlives this coroutine.
        if done.done():
            thread.join(timeout=1.0)


# ---- CLI -------------------------------------------------------------------------------

_DESCRIPTION = """\
Publish a moving test pattern with a machine-readable capture timestamp burned
into every frame (H.264 + AAC tone, FLV over RTMP), so the beacon probe can
measure glass-to-glass and per-stage latency on this pipeline.

The URL may name environment variables as ${NAME} (quote it so the shell leaves
it alone): the stream key then never appears on the command line or in `ps`.
Errors show the URL with its last path segment (the key), credentials and query
hidden. Ctrl-C stops cleanly and prints what was sent.
"""

_EXAMPLE = """\
example:
  STREAM_KEY=sk-123 signalpath beacon --rtmp 'rtmp://ingest.example:1935/live/${STREAM_KEY}' --seconds 120 --bitrate 1500k --size 1280x720
"""

def _expand_env(url: str) -> str:
    def missing(name: str) -> None:
        raise ValueError(f"environment variable {name} (named in --rtmp) is not set")

    return expand_env(url, os.environ, missing)


def _parse_bitrate(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:bit/s|bps)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a bitrate (e.g. 800k, 1.5M, 300000)")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    return int(value)


def _parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 640x360)")
    return int(m.group(1)), int(m.group(2))


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``beacon`` command to the CLI's subparsers; its handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser(
        "beacon",
        help="publish a latency-beacon test stream into an RTMP ingest",
        description=_DESCRIPTION,
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rtmp", required=True, metavar="URL", help="RTMP URL including the stream key")
    parser.add_argument("--seconds", type=float, default=0.0, help="how long to publish (default 0: until Ctrl-C)")
    parser.add_argument("--bitrate", type=_parse_bitrate, default=800_000, help="video bitrate (default 800k)")
    parser.add_argument("--size", type=_parse_size, default=(640, 360), help="frame size WxH (default 640x360)")
    parser.add_argument("--fps", type=int, default=30, help="frame rate (default 30)")
    parser.set_defaults(func=run_cli)
    return parser


def _human_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _utc(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"


class _StopSignals:
    """SIGINT / SIGTERM as data while publishing: the handler only records the signal.

    Not Python's default KeyboardInterrupt: an exception raised asynchronously in the main
    thread can land inside ``threading.Event.wait`` after its lock was taken and before the
    ``with`` that releases it (CPython bpo-29988), leaving the lock held or released twice: the
    publisher's ``finished.set()`` then blocks for ever and so does the next wait, and Ctrl-C
    hangs the command (a burst of SIGINTs reproduces it: "release unlocked lock"). The wait
    is bounded too: a write to an ingest that stopped reading never returns. Outside the main thread
    (tests calling :func:`run_cli`) signals are left as they are.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    @property
    def name(self) -> str:
        return "SIGTERM" if self.received and self.received[0] == signal.SIGTERM else "Ctrl-C"

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


STOP_TIMEOUT_S = 5.0  # after Ctrl-C: the encoders flush and the FLV trailer goes out well within this


def run_cli(
    args: argparse.Namespace,
    *,
    out=None,
    err=None,
    publisher: Callable[..., PublishResult] = publish,
    stop_timeout_s: float = STOP_TIMEOUT_S,
) -> int:
    """Run ``signalpath beacon``: 0 when it ran its course or was stopped by Ctrl-C, 1 on a publish error, 2 on bad input.

    Shutdown is bounded: the first SIGINT/SIGTERM asks the publisher to stop and waits at most
    ``stop_timeout_s`` for it; a second one, or that bound, ends the command (status 1) with the
    publisher thread (a daemon) left blocked. ``publisher`` is :func:`publish` (a seam for tests).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        url = _expand_env(args.rtmp)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if urlsplit(url).scheme not in ("rtmp", "rtmps", "rtmpt"):
        # not an RTMP URL, so redact_url cannot know where a key would sit: scheme and host only
        print(f"error: --rtmp: {not_a_url(url, 'rtmp://')}", file=err)
        return 2
    try:
        settings = PublishSettings(
            seconds=args.seconds, bitrate=args.bitrate, width=args.size[0], height=args.size[1], fps=args.fps
        )
    except ValidationError as exc:
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"])
            print(f"error: {field}: {e['msg']}", file=err)
        return 2
    safe = redact_url(url)
    how_long = f"{settings.seconds:g} s" if settings.seconds else "until Ctrl-C"
    print(f"publishing beacon stream {settings.width}x{settings.height}@{settings.fps} "
          f"{settings.bitrate // 1000} kbit/s to {safe} ({how_long})", file=err)

    def report(p: PublishProgress) -> None:
        if int(p.seconds) % 5 == 0:
            print(f"  {p.seconds:5.0f} s  {p.frames} frames  {_human_bytes(p.bytes)}  "
                  f"last beacon {_utc(p.last_stamp)}", file=err)

    stop = threading.Event()
    box: dict[str, PublishResult | BaseException] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            box["result"] = publisher(url, settings, stop=stop, progress=report)
        except BaseException as exc:  # reported below
            box["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=work, name="beacon-publish", daemon=True)
    with _StopSignals() as signals:
        thread.start()
        stopping_since: float | None = None
        while not finished.wait(timeout=0.2):
            if signals.received and stopping_since is None:
                stop.set()
                stopping_since = time.monotonic()
                print(f"stopping ({signals.name})...", file=err, flush=True)
            elif stopping_since is not None and (
                len(signals.received) > 1 or time.monotonic() - stopping_since >= stop_timeout_s
            ):
                why = (f"a second {signals.name}" if len(signals.received) > 1
                       else f"it did not stop within {stop_timeout_s:g} s: a write to the ingest is blocked")
                print(f"error: stopped without waiting for the publisher ({why}); "
                      "the ingest may not have seen the end of the stream", file=err, flush=True)
                return 1
    thread.join(timeout=stop_timeout_s)  # ``finished`` is set: it is returning
    error = box.get("error")
    if isinstance(error, BeaconPublishError):
        print(f"error: {error}", file=err)
        return 1
    if isinstance(error, BaseException):
        raise error  # a bug, not a user's mistake
    result = box["result"]
    assert isinstance(result, PublishResult)
    verb = f"stopped by {signals.name}" if signals.received else "done"
    print(f"{verb}: {result.frames} frames, {result.audio_frames} audio frames, "
          f"{_human_bytes(result.bytes)} in {result.seconds:.1f} s; beacons "
          f"{_utc(result.first_stamp)} .. {_utc(result.last_stamp)}", file=out)
    return 0
