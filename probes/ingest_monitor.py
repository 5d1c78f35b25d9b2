"""Ingest monitor: latency at the ingest, from the beacon of the stream the ingest serves back.

Real ingests let a monitor play what they receive: nginx-rtmp over
``rtmp://host/app/KEY``, nginx-http-flv-module / SRS / node-media-server (and the
embedded lab, agent/lab/ingest_live.py) over HTTP-FLV, some over MPEG-TS on HTTP. One
attempt opens that playback side with PyAV (its bundled FFmpeg reads RTMP, FLV and
MPEG-TS) in a worker thread, decodes the video for ``seconds`` after the first decoded
frame, reads each frame's latency beacon (probes/core/beacon.py: the capture wall time the
studio burned into the picture) and computes, per frame::

    ingest latency = arrival - capture

*arrival* is the agent's wall clock when the demuxer returned the frame's packet (the
whole packet was read off the socket). That is the "decode time minus a decode
allowance" of the brief, with the allowance measured instead of assumed: decoding
starts after that instant, and an H.264 stream without B-frames (``tune zerolatency``,
every live encoder's low-latency setting) leaves the decoder with no reorder delay, so
the packet's read time is the frame's arrival. Decoding is single-threaded for the
same reason (frame threading would hold frames back).

The figure of an attempt is the *minimum* over its frames: every disturbance on the
way to the agent (the demuxer's probing read-ahead at open, a server's GOP cache sent in
a burst, the agent's own scheduling on a busy host) only makes a frame look later, never
earlier, so the minimum is the path's own latency; the median is reported beside it.

Two ways to run it (``keep_open``):

- kept open (the default; :class:`_Watcher`): the playback side is held open in a thread
  and every attempt (each ``interval_s``, default 1 s; the lab agent 0.5 s) reports the frames
  that arrived since the previous one. Only keyframes are decoded: a keyframe's beacon gives
  the capture time of its timestamp, and every other frame's capture time is its timestamp
  moved by that offset (a timestamp jump of 5 s against arrival, an encoder restart, waits
  for the next keyframe). So a latency change is judged at the first report after the
  first late frame arrives — the physical limit: a 2-s delay added at the ingest is
  ``latency_high`` 2.2 s after its onset with 0.5-s reports (tests/test_ingest_monitor.py) —
  at ~3.5 ms of CPU per second of a 25-fps lab stream (one decode per GOP; all frames
  decoded for 1.5 s every 2 s: ~10 ms per second). A pause shorter than ``first_frame_s``
  (the frames held back at a latency step; a connection the server ended or broke, opened
  again after 1 s) repeats the last verdict, noting the gap — unless the frames after the
  newest one are already later than the baseline's limit (now - its capture time: their
  latency's lower bound), ``latency_high`` then, before the first late frame arrives (a
  latency step is the ingest's before the origin's playlists, which that pause leaves late,
  read as a transcoder that stopped); a longer one is ``no_input``,
  and a connection that cannot be opened again is reported at once. Frames captured no
  later than one already seen do not count (a server's GOP cache replaying a hung
  publisher's last GOP at every reconnect is no sign of life). A window during which the
  agent's own event loop stood still for 0.25 s or more (its CPU starved: the thread timing
  arrivals starved with it) is not judged high. The runner closes the watch at shutdown and
  when it sheds the job.
- one watch window per attempt (``keep_open: false``): open, decode ``seconds`` of video
  after the first frame, close; a step shows at the first attempt that starts after it.

Reported (stage ``ingest``, component = the monitor's name):

- ``signalpath_stage_latency_seconds{stage="ingest",method="beacon"}``;
- evidence OK with figures ``latency_s``, ``median_s``, ``frames``, ``beacons``,
  ``baseline_s``; ``latency_high`` (DEGRADED) when the figure jumps above its baseline
  (the baseline rule of probes/core/latency_core.py, :class:`~probes.core.latency_core.Baseline`:
  median of the last ``baseline_s`` + max(``high_abs_s``, ``high_ratio`` x median));
- ``no_input`` (DOWN) when the server answers but no video frame arrives within
  ``first_frame_s`` (4 s: THRESHOLDS.md accepts keyframe intervals up to 4 s, and a
  server without a GOP cache sends nothing decodable before the next keyframe);
  ``unreachable`` (DOWN) when the playback side refuses or drops the connection.
- the clock rule of probes/core/latency_core.py: a capture time after its arrival (beyond
  0.1 s) proves a skewed clock and drops figures to whole seconds.
- kept open, with ``content`` (default on): what the ingest receives is measured as the media
  probe measures a segment — its audio decoded, its pictures at 64x36 (``video_frames``: every
  picture while the agent watches at most 10 ingests, key pictures only beyond, as the media
  probe decides; key pictures are decoded for the beacon anyway), every frame timed from its
  packet — by the media
  probe's own analyser (probes/core/media_analysis.py: one per watch, so runs span reports; a
  report without a key picture keeps the last one's picture verdict): evidence on
  ``studio``/``source`` (the ingest relays what the encoder sends; every rendition's content
  fault is placed there too), OK with the figures (``audio_rms_dbfs``, ``mean_luma``,
  ``frozen_s``…), else ``silent_audio`` / ``frozen_video`` / ``black_video`` (DEGRADED) once 2 s
  of it have arrived (key pictures only: from key frame to key frame, up to a GOP later). With
  0.5-s reports: silence 2.2 s after the onset, a frozen or black picture 2.2 s with every picture
  and 3.3 s with key pictures only (the lab's 1-s GOP; tests/test_ingest_monitor.py),
  where the media probe must wait for a segment holding them to be published, fetched and
  decoded (4.7-5.8 s to localize in the benchmark). A timestamp gap or A/V offset seen here is not
  reported (it may be the ingest's own relaying). The AAC decode adds ~2.5 ms of CPU per second
  of audio; a picture ~0.1 ms per key frame. Measured (2026-12-02, the lab's 640x360 at 25 fps,
  tests/perf/ingest_content_cost.py): the watch's decoding 12-13 ms of CPU per second with key
  pictures, 24-25 ms with every picture (+1.2 % of a core per ingest).

The split with the latency probe (probes/latency.py): the job builder (agent/jobs.py)
gives both jobs of a stream one :class:`~probes.core.latency_core.IngestLatencyShare`
(a pure core, so neither probe imports the other). Every attempt adds its figure (with
the capture-time range of the frames it saw); the latency probe then reports its
"upstream of origin" figure minus the ingest latency of the frames nearest in capture
time, as stage ``transcode`` (transcode + packaging). Without a fresh ingest figure it
reports the unsplit figure, as it does with no monitor.

The URL carries the stream key: it never appears in a result (``redact_url``);
FFmpeg's error text (which repeats the URL) is never copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import Field, field_validator, model_validator

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core import beacon
from probes.core.config import StrictModel
from probes.core.frames import luma_plane, small_luma, to_float_planar
from probes.core.latency_core import (
    BASELINE_MIN_SAMPLES,
    BASELINE_S,
    HIGH_ABS_S,
    HIGH_RATIO,
    SKEW_TOLERANCE_S,
    Baseline,
    IngestLatencyShare,
    IngestWindow,
    clock_verdict,
)
from probes.core.media_analysis import MediaAnalyser, MediaConfig, MediaFindings
from probes.core.redact import not_a_url
from probes.core.segment_decode import DecodedSegment, place_pictures
from probes.faults import Fault

__all__ = ["IngestMonitorSettings", "MonitorTargetConfig", "WatchResult", "watch", "probe"]

log = logging.getLogger(__name__)
SCHEMES = ("rtmp", "rtmps", "http", "https")
SOURCE_STAGE, SOURCE_COMPONENT = "studio", "source"  # where the audio the ingest receives is reported
MAX_AUDIO_CHUNKS = 2_000  # decoded audio frames held between two reports (~40 s of AAC at 48 kHz)
MAX_VIDEO_PACKETS = 3_000  # video packets' times held between two reports (~2 min at 25 fps)
ALL_PICTURES_CPU_BUDGET = 0.25
"""``video_frames: all``: CPU seconds per second of media the pictures between key frames may take
before the watch decodes key pictures only (checked every ``ALL_PICTURES_CHECK_S`` of media; the
lab's 640x360 at 25 fps takes ~0.012: a 1080p60 or HEVC source on a slow core may not keep up)."""
ALL_PICTURES_CHECK_S = 5.0
MAX_PICTURES = 240  # pictures held between two reports (64x36: 2.3 kB each; ~10 s at 25 fps)
LUMA_W, LUMA_H = 64, 36  # the media probe's picture size (DecodeOptions)
_PICTURE_FAULTS = frozenset({Fault.FROZEN_VIDEO, Fault.BLACK_VIDEO})
_SOURCE_FAULTS = _PICTURE_FAULTS | {Fault.SILENT_AUDIO}
ONE_SHOT_INTERVAL_S = 5.0  # the interval_s default with keep_open false


class IngestMonitorSettings(StrictModel):
    """``streams[].ingest.monitor[]``: play the ingest's output and time the beacon."""

    name: str = "ingest"
    url: str = Field(description="the ingest's playback side: rtmp(s)://host/app/KEY, or an HTTP-FLV / "
                     "MPEG-TS URL; put the key in ${ENV}")
    keep_open: bool = Field(True, description="hold the playback side open and report every interval_s what "
                            "arrived since the last report (false: open, decode `seconds`, close, per attempt)")
    interval_s: float = Field(1.0, ge=0.25, le=3600, description="one report (kept open) or watch window per interval")
    timeout_s: float = Field(8.0, gt=0, le=120, description="deadline of one attempt")
    seconds: float = Field(1.5, gt=0, le=30, description="decode this long after the first frame (the first "
                           "report of a kept-open watch waits this long too)")
    first_frame_s: float = Field(4.5, gt=0, le=60, description="no decoded frame by then: no_input")
    connect_timeout_s: float = Field(3.0, gt=0, le=60)
    content: bool = Field(True, description="kept open: also measure what the ingest receives as the media probe "
                          "does — its audio decoded (silence), its key pictures (still, black) — and report a silent, "
                          "frozen or black source (studio/source) as soon as its 2 s have arrived, before any segment "
                          "holds them (the media checks' thresholds: probes/core/media_analysis.py)")
    video_frames: Literal["auto", "all", "key"] = Field(
        "auto", description="content: decode every picture ('all': a still or black picture is seen once its 2 s "
        "have arrived, to the frame) or key pictures only ('key': from key frame to key frame, up to a GOP later; "
        "cheaper); 'auto': all while the agent watches at most ALL_FRAMES_MAX_STREAMS (10) ingests, key beyond "
        "(resolve_video_frames)")
    baseline_s: float = Field(BASELINE_S, ge=10, le=86_400, description="latency_high baseline window")
    baseline_min_samples: int = Field(BASELINE_MIN_SAMPLES, ge=1, le=1000)
    high_abs_s: float = Field(HIGH_ABS_S, ge=0, le=600)
    high_ratio: float = Field(HIGH_RATIO, ge=0, le=100)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise ValueError(not_a_url(v, "rtmp(s):// or http(s)://"))
        return v

    @model_validator(mode="after")
    def _deadline(self) -> IngestMonitorSettings:
        if not self.keep_open and "interval_s" not in self.model_fields_set:
            object.__setattr__(self, "interval_s", ONE_SHOT_INTERVAL_S)  # a watch window costs a connection and decoding
        need = self.first_frame_s + self.seconds + 0.5
        if self.timeout_s < need:
            raise ValueError(f"timeout_s {self.timeout_s:g} must be at least first_frame_s + seconds + 0.5 "
                             f"({need:g})")
        return self


@dataclass(frozen=True, slots=True)
class MonitorTargetConfig:
    """What the job builder hands the probe: the settings and the stream's share (or None)."""

    settings: IngestMonitorSettings
    share: IngestLatencyShare | None = None


# ----------------------------------------------------------------- watching (blocking)


@dataclass(slots=True)
class WatchResult:
    failure: Failure | None = None
    fault: Fault | None = None  # UNREACHABLE | NO_INPUT with a failure
    detail: str = ""
    frames: int = 0
    # (arrival, capture) of each frame whose beacon was read
    stamps: list[tuple[float, float]] = field(default_factory=list)
    open_s: float | None = None
    cpu_s: float = 0.0
    gap_s: float | None = None  # kept open: no packet in this window, for less than first_frame_s
    content: MediaFindings | None = None  # kept open, ``content``: the window's audio and key pictures, measured
    video_frames: str = ""  # kept open, ``content``: the pictures decoded ('all' or 'key')
    # as the media probe measures a segment


def _open_options(url: str, probe_s: float = 1.0) -> tuple[dict[str, str], str | None]:
    # a small probe so the first keyframe is decoded as soon as it is read (not "fflags nobuffer":
    # it discards the packets read while probing, the keyframe among them)
    opts = {"probesize": "32", "analyzeduration": "0"}
    scheme = urlsplit(url).scheme
    if scheme.startswith("rtmp"):
        # nginx-rtmp announces no streams up front (FLV without a header flag): probe ``probe_s``
        # (1 s first) so the video stream exists at open; those frames arrive late, the minimum
        # ignores them
        opts.update({"rtmp_live": "live", "probesize": "1000000", "analyzeduration": str(int(probe_s * 1e6))})
        return opts, None
    return opts, ("flv" if urlsplit(url).path.endswith(".flv") else None)


def _open(settings: IngestMonitorSettings, out: WatchResult, read_timeout: float,
          video_by: float | None = None) -> Any:
    """The playback side opened with PyAV (a read waiting ``read_timeout`` s for data fails),
    or None with ``out``'s failure, fault and detail set.

    A live RTMP server sends a new player the audio at once but the video only from the next
    keyframe (nginx-rtmp), and PyAV drops the packets of a stream that appears after the open:
    an open whose 1-s probe saw audio and no video is made again, probing ``first_frame_s``
    (4.5 s: THRESHOLDS.md accepts keyframe intervals up to 4 s), or until ``video_by``
    (monotonic s, at least 1 s: a one-shot watch's deadline), so a 2-4 s GOP is not read as an
    output without video."""
    container = _open_once(settings, out, read_timeout, 1.0)
    if container is None or not urlsplit(settings.url).scheme.startswith("rtmp"):
        return container
    types = {st.type for st in container.streams}
    if "video" in types or "audio" not in types:
        return container
    container.close()
    probe_s = settings.first_frame_s if video_by is None else video_by - time.monotonic()
    return _open_once(settings, out, read_timeout, max(probe_s, 1.0))


def _open_once(settings: IngestMonitorSettings, out: WatchResult, read_timeout: float, probe_s: float) -> Any:
    import av

    opts, fmt = _open_options(settings.url, probe_s)
    try:
        return av.open(settings.url, "r", format=fmt, options=opts,
                       timeout=(settings.connect_timeout_s, read_timeout))
    except av.error.ConnectionRefusedError:
        out.failure, out.fault, out.detail = Failure.CONNECTION_REFUSED, Fault.UNREACHABLE, "connection refused"
    except av.error.HTTPNotFoundError:  # HTTP-FLV servers answer 404 while nobody publishes the stream
        out.failure, out.fault, out.detail = Failure.HTTP_ERROR, Fault.NO_INPUT, "no such live stream (HTTP 404)"
    except (av.error.HTTPError, av.error.HTTPClientError, av.error.HTTPServerError) as exc:
        out.failure, out.fault = Failure.HTTP_ERROR, Fault.HTTP_ERROR
        out.detail = f"the playback side answered HTTP {type(exc).__name__.removeprefix('HTTP').removesuffix('Error')}"
    except (av.error.ExitError, av.error.TimeoutError, TimeoutError):
        # the interrupt callback fired: nothing (decodable) came within the read timeout
        out.failure, out.fault, out.detail = Failure.TIMEOUT, Fault.NO_INPUT, "no stream from the ingest"
    except (av.FFmpegError, OSError, ValueError) as exc:
        out.failure, out.fault = Failure.CONNECTION_FAILED, Fault.UNREACHABLE
        out.detail = f"cannot play the ingest's output ({type(exc).__name__})"
    return None


def watch(settings: IngestMonitorSettings, stop: threading.Event | None = None,
          wall=time.time) -> WatchResult:
    """Open the playback side, decode ``seconds`` of video and read the beacons. Blocking
    (run it in a thread); bounded by the settings' timeouts; never raises on bad input."""
    import av

    out = WatchResult()
    c0 = time.thread_time()
    t0 = time.monotonic()
    container = _open(settings, out, min(settings.first_frame_s, 2.0), t0 + settings.first_frame_s)
    if container is None:
        return out
    out.open_s = time.monotonic() - t0
    try:
        vs = next((s for s in container.streams if s.type == "video"), None)
        if vs is None:
            out.failure, out.fault, out.detail = Failure.MEDIA_ERROR, Fault.NO_INPUT, "the ingest's output has no video"
            return out
        vs.codec_context.thread_count = 1
        vs.codec_context.thread_type = "NONE"
        first_frame_by = t0 + settings.first_frame_s
        end: float | None = None
        # every stream's packets, not demux(vs): a stream whose video stopped while its audio goes
        # on would never hand this loop a packet (nor time the read out), so it could not stop
        for packet in container.demux():
            arrival = wall()
            now = time.monotonic()
            if stop is not None and stop.is_set():
                break
            if packet.stream is vs and packet.size:
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError):
                    frames = []
                for fr in frames:
                    out.frames += 1
                    if end is None:
                        end = now + settings.seconds
                    t = beacon.read(luma_plane(fr))
                    if t is not None:
                        out.stamps.append((arrival, t))
            if end is not None and now >= end:
                break
            if end is None and now >= first_frame_by:
                break
    except (av.error.ExitError, av.error.TimeoutError, TimeoutError):
        pass  # the read timed out: judged below on what arrived
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        if not out.frames:
            out.failure, out.fault = Failure.READ_FAILED, Fault.UNREACHABLE
            out.detail = f"the ingest's output broke off ({type(exc).__name__})"
    finally:
        container.close()
        out.cpu_s = time.thread_time() - c0
    if not out.frames and out.failure is None:
        out.failure, out.fault = Failure.TIMEOUT, Fault.NO_INPUT
        out.detail = f"no video frame from the ingest within {settings.first_frame_s:g} s"
    return out


# ----------------------------------------------------------------- kept open (blocking thread)

MAX_STAMPS = 4096  # ~2.7 min of 25 fps between two reports: bounded memory if reports stop
DISCONTINUITY_S = 5.0  # timestamps that jump this much against arrival: the mapping waits for a keyframe
RECONNECT_S = (1.0, 8.0)  # back-off after a failed or broken connection: first, most


class _Watcher:
    """``keep_open``: the ingest's playback side held open in its own thread.

    Every video packet's arrival is timed; only keyframes are decoded (their beacon gives
    the capture time of their timestamp: ``offset = capture - pts``), and every packet's
    capture time is its timestamp plus the last keyframe's offset. So each frame is timed,
    as when all are decoded, at the decoding cost of one frame per GOP. Timestamps that jump
    against arrival by :data:`DISCONTINUITY_S` (an encoder restart) drop the offset until the
    next keyframe's beacon. A connection that fails or breaks is opened again after
    :data:`RECONNECT_S`. :meth:`take` hands the packets since the last call to a report.
    """

    def __init__(self, settings: IngestMonitorSettings, wall: Any = time.time) -> None:
        self.s = settings
        self.video_frames = settings.video_frames  # 'key' once every picture proved too costly
        self.wall = wall
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stamps: deque[tuple[float, float]] = deque(maxlen=MAX_STAMPS)
        self._packets = 0
        self._failure: WatchResult | None = None  # the last open/read failure; a packet clears it
        self._open_failed = False  # that failure was the connection's opening (else: it broke or ended)
        self._newest_capture = -math.inf  # the latest capture time seen, across connections
        self.first_packet: float | None = None  # monotonic
        self.last_packet: float | None = None
        self.open_s: float | None = None
        self.connects = 0
        self._cpu_s = 0.0
        # ``audio``: decoded audio chunks (pts s, float samples) since the last report, analysed at
        # take() by one MediaAnalyser (its silence run spans reports); bounded if reports stop
        self._audio: deque[tuple[float, np.ndarray, int]] = deque(maxlen=MAX_AUDIO_CHUNKS)
        self._audio_new_timeline = False  # a new connection: the next chunks start a new timeline
        # ``content``: every counted video packet's (pts s, key) and the decoded key pictures
        # (pts s, 64x36 luma) since the last report, for the same analyser (still / black runs)
        self._vpts: deque[tuple[float, bool]] = deque(maxlen=MAX_VIDEO_PACKETS)
        self._pics: deque[tuple[float, np.ndarray]] = deque(maxlen=MAX_PICTURES)
        self._fps: float | None = None
        self._picture: MediaFindings | None = None  # the last window that had a picture: its verdict holds
        self._analyser = MediaAnalyser(MediaConfig())
        self._loop = asyncio.get_running_loop()
        self.ready = asyncio.Event()  # set (from the thread) once `seconds` of packets came, or a failure
        self._signalled = False
        self._thread = threading.Thread(target=self._run, name="signalpath-ingest-monitor", daemon=True)
        self._thread.start()

    # -- the thread
    def _run(self) -> None:
        wait = RECONNECT_S[0]
        while not self._stop.is_set():
            got = self._session()
            wait = RECONNECT_S[0] if got else min(RECONNECT_S[1], 2 * wait)
            self._stop.wait(wait)

    def _fail(self, out: WatchResult) -> None:
        with self._lock:
            self._failure = out
        self._signal()

    def _signal(self) -> None:
        if not self._signalled:
            self._signalled = True
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                self._loop.call_soon_threadsafe(self.ready.set)

    def _session(self) -> bool:
        """One connection, until it breaks or :meth:`aclose`; True if it delivered a packet."""
        import av

        out = WatchResult()
        t0 = time.monotonic()
        # a pause of the stream is a window without packets, not a broken connection, until first_frame_s
        container = _open(self.s, out, self.s.first_frame_s)
        if container is None:
            self._open_failed = True
            self._fail(out)
            return False
        self._open_failed = False
        self.connects += 1
        self.open_s = time.monotonic() - t0
        got = False
        try:
            vs = next((st for st in container.streams if st.type == "video"), None)
            if vs is None:
                self._fail(WatchResult(Failure.MEDIA_ERROR, Fault.NO_INPUT, "the ingest's output has no video"))
                return False
            vs.codec_context.thread_count = 1
            vs.codec_context.thread_type = "NONE"
            aus = next((st for st in container.streams if st.type == "audio"), None) if self.s.content else None
            with self._lock:
                self._audio_new_timeline = True
                self._fps = float(vs.average_rate) if vs.average_rate else None
            tb = vs.time_base
            every_picture = self.s.content and self.video_frames == "all"
            picture_cpu, budget_from = 0.0, None  # CPU of the pictures between key frames, since (pts s)
            offset: float | None = None
            last: tuple[float, float] | None = None
            c0 = time.thread_time()
            for packet in container.demux():  # every stream's: see watch() (a video-less stream must stop)
                arrival = self.wall()
                if self._stop.is_set():
                    break
                if aus is not None and packet.stream is aus and packet.size:
                    self._take_audio(packet)
                    continue
                if packet.stream is not vs or not packet.size or packet.pts is None or tb is None:
                    continue
                pts_s = float(packet.pts * tb)
                if last is not None and abs((pts_s - last[0]) - (arrival - last[1])) > DISCONTINUITY_S:
                    # timestamps restarted or jumped: the next keyframe's beacon maps them again; the
                    # decoder drops what it holds (with B-frames it returns a keyframe a GOP or two
                    # late, and an old-timeline frame would map the new timeline with the old offset)
                    offset = None
                    vs.codec_context.flush_buffers()
                last = (pts_s, arrival)
                if packet.is_keyframe or every_picture:
                    p0 = time.thread_time()
                    try:
                        frames = packet.decode()
                    except (av.FFmpegError, ValueError):
                        frames = []
                    if every_picture and not packet.is_keyframe:
                        # every picture costs what the source's size and codec make it: past
                        # ALL_PICTURES_CPU_BUDGET of real time, key pictures only (the watch must
                        # keep up with the stream it times)
                        picture_cpu += time.thread_time() - p0
                        budget_from = pts_s if budget_from is None else budget_from
                        if pts_s - budget_from >= ALL_PICTURES_CHECK_S:
                            if picture_cpu / (pts_s - budget_from) > ALL_PICTURES_CPU_BUDGET:
                                every_picture, self.video_frames = False, "key"
                                log.warning("ingest monitor %s: every picture costs %.0f %% of real time; key "
                                            "pictures only", self.s.name,
                                            100 * picture_cpu / (pts_s - budget_from))
                            picture_cpu, budget_from = 0.0, None
                    for fr in frames:
                        if fr.key_frame or offset is None or not every_picture:  # the beacon: key frames
                            t = beacon.read(luma_plane(fr))
                            if t is not None and fr.pts is not None:
                                offset = t - float(fr.pts * tb)
                        if self.s.content and fr.pts is not None:
                            pic = small_luma(fr, LUMA_W, LUMA_H)
                            with self._lock:
                                self._pics.append((float(fr.pts * tb), pic))
                now, c1 = time.monotonic(), time.thread_time()
                capture = pts_s + offset if offset is not None else None
                if capture is not None and capture <= self._newest_capture:
                    # captured no later than a frame already seen: a server's GOP cache replayed on a
                    # reconnect (a hung publisher's last GOP, again and again), no sign of life
                    with self._lock:
                        self._cpu_s += c1 - c0
                    c0 = c1
                    continue
                got = True
                with self._lock:
                    self._cpu_s += c1 - c0
                    self._packets += 1
                    self._failure = None
                    self.first_packet = self.first_packet or now
                    self.last_packet = now
                    if capture is not None:
                        self._newest_capture = capture
                        self._stamps.append((arrival, capture))
                    if self.s.content:
                        self._vpts.append((pts_s, bool(packet.is_keyframe)))
                if now - self.first_packet >= self.s.seconds:
                    self._signal()
                c0 = c1
            else:
                self._fail(WatchResult(Failure.READ_FAILED, Fault.NO_INPUT, "the ingest ended the stream"))
        except (av.error.ExitError, av.error.TimeoutError, TimeoutError):
            self._fail(WatchResult(Failure.TIMEOUT, Fault.NO_INPUT, "no stream from the ingest"))
        except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
            self._fail(WatchResult(Failure.READ_FAILED, Fault.UNREACHABLE,
                                   f"the ingest's output broke off ({type(exc).__name__})"))
        finally:
            container.close()
        return got

    def _take_audio(self, packet: Any) -> None:
        """Decode one audio packet into float chunks for the next report (the thread's side)."""
        import av

        c0 = time.thread_time()
        try:
            frames = packet.decode()
        except (av.FFmpegError, ValueError):
            frames = []
        for fr in frames:
            if fr.pts is None or not fr.sample_rate:
                continue
            x = to_float_planar(fr.to_ndarray(), fr.format.name, len(fr.layout.channels))
            with self._lock:
                self._audio.append((float(fr.pts * fr.time_base), x, int(fr.sample_rate)))
        with self._lock:
            self._cpu_s += time.thread_time() - c0

    def _content_window(self, chunks: list[tuple[float, np.ndarray, int]], vpts: list[tuple[float, bool]],
                        pics: list[tuple[float, np.ndarray]], fps: float | None, new_timeline: bool
                        ) -> MediaFindings | None:
        """The report's audio and key pictures measured by the media probe's analyser, as a segment
        decoded with key frames only (the event loop's side)."""
        if new_timeline:
            self._analyser = MediaAnalyser(MediaConfig())
            self._picture = None
        if not chunks and not vpts:
            return None
        seg = DecodedSegment(frame_rate=fps)
        if vpts:
            seg.video_present = True
            place_pictures(seg, [p for p, _ in vpts], [k for _, k in vpts], [t for t, _ in pics], [x for _, x in pics])
        if chunks:
            rate = chunks[-1][2]
            chunks = [c for c in chunks if c[2] == rate]
            channels = max(c[1].shape[0] for c in chunks)
            seg.audio_present, seg.sample_rate, seg.channels = True, rate, channels
            seg.audio_samples = np.concatenate(
                [c[1] if c[1].shape[0] == channels else np.resize(c[1], (channels, c[1].shape[1])) for c in chunks],
                axis=1)
            seg.audio_chunk_pts = np.asarray([c[0] for c in chunks], np.float64)
            seg.audio_chunk_len = np.asarray([c[1].shape[1] for c in chunks], np.int64)
        m = self._analyser.feed(seg)
        if seg.video_luma_index.size:
            self._picture = m
        elif self._picture is not None:
            # no key picture in this window (a GOP is longer than a report): the last one's verdict holds
            m.frozen_s, m.black_s, m.mean_luma = self._picture.frozen_s, self._picture.black_s, self._picture.mean_luma
            m.faults = [f for f in m.faults if f.fault not in _PICTURE_FAULTS] + \
                [f for f in self._picture.faults if f.fault in _PICTURE_FAULTS]
        return m

    # -- the event loop's side
    def alive(self) -> bool:
        return self._thread.is_alive()

    def take(self, first_frame_s: float) -> WatchResult:
        """The packets since the last call, as one window: ``stamps`` (arrival, capture) of those
        whose capture time is known; a failure when none came (the connection's failure, or
        no packet for ``first_frame_s``); ``gap_s`` when none came for less."""
        now = time.monotonic()
        with self._lock:
            out = WatchResult(frames=self._packets, stamps=list(self._stamps), open_s=self.open_s, cpu_s=self._cpu_s,
                              video_frames=self.video_frames if self.s.content else "")
            self._packets, self._cpu_s = 0, 0.0
            self._stamps.clear()
            failure, last, open_failed = self._failure, self.last_packet, self._open_failed
            chunks, new_timeline = list(self._audio), self._audio_new_timeline
            vpts, pics, fps = list(self._vpts), list(self._pics), self._fps
            self._audio.clear()
            self._vpts.clear()
            self._pics.clear()
            self._audio_new_timeline = False
        out.content = self._content_window(chunks, vpts, pics, fps, new_timeline)
        if out.frames:
            return out
        quiet = now - (last if last is not None else self.started)
        if failure is not None and (open_failed or quiet >= first_frame_s):
            # a connection that broke or ended is a pause until it is opened again (RECONNECT_S);
            # the ingest is called down only when that fails or no frame came for first_frame_s
            out.failure, out.fault, out.detail = failure.failure, failure.fault, failure.detail
        elif quiet >= first_frame_s:
            out.failure, out.fault = Failure.TIMEOUT, Fault.NO_INPUT
            out.detail = f"no video from the ingest for {first_frame_s:g} s"
        else:
            out.gap_s = quiet
        return out

    async def aclose(self) -> None:
        """Stop the thread and wait for it (it ends within the read timeout, ``first_frame_s``)."""
        self._stop.set()
        # an opening may wait connect_timeout_s twice (the input, then its stream info) and may be
        # made twice (:func:`_open`), a read first_frame_s
        await asyncio.to_thread(self._thread.join, 4 * self.s.connect_timeout_s + 2 * self.s.first_frame_s + 1.0)


# ----------------------------------------------------------------- the probe


@dataclass(slots=True)
class _State:
    baseline: Baseline
    skew_seen_at: float | None = None
    last: list[Evidence] = field(default_factory=list)  # the last report's verdict (kept open: a gap repeats it)
    newest_capture: float | None = None  # wall capture time of the newest frame with a beacon (a gap's bound)
    window_from: float | None = None  # clock: where the kept-open window being reported began


async def _watch_async(settings: IngestMonitorSettings) -> WatchResult:
    """:func:`watch` in a worker thread; on cancellation the thread is told to stop and
    awaited (it ends within the read timeout, <= 2 s)."""
    stop = threading.Event()
    fut = asyncio.get_running_loop().run_in_executor(None, watch, settings, stop)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        stop.set()
        try:
            async with asyncio.timeout(settings.connect_timeout_s + 3.0):
                await asyncio.shield(fut)
        except BaseException:  # already cancelled: only make sure the thread is gone
            pass
        raise


async def _kept_window(ctx: ProbeContext, s: IngestMonitorSettings) -> WatchResult:
    """``keep_open``: what arrived since the previous report; the first report (a watch just
    opened) waits ``seconds`` after the first packet, a failure, or ``first_frame_s``."""
    w: _Watcher | None = ctx.state.get("ingest_watch")
    if w is not None and not w.alive():
        del ctx.state["ingest_watch"]
        w = None
    if w is None:
        w = ctx.state["ingest_watch"] = _Watcher(s, ctx.wall)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.first_frame_s + s.seconds):
                await w.ready.wait()
    return w.take(s.first_frame_s)


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One report of the ingest's playback side (kept open: the window since the previous
    report; else one watch window); ``target.config`` is :class:`MonitorTargetConfig`."""
    tc: MonitorTargetConfig = target.config
    s = tc.settings
    st: _State = ctx.state.setdefault("ingest_monitor", _State(Baseline(s.baseline_s, s.baseline_min_samples,
                                                                         s.high_abs_s, s.high_ratio)))
    t0 = ctx.clock()
    window_from = st.window_from if st.window_from is not None else t0
    w = await _kept_window(ctx, s) if s.keep_open else await _watch_async(s)
    st.window_from = ctx.clock()
    res = _judge(target, ctx, tc, st, w, ctx.agent_stall(window_from, ctx.clock()))
    if w.gap_s is None and w.failure is None:
        res.evidence.extend(_source_content(w.content, target.component))
    if w.gap_s is None:
        st.last = list(res.evidence)
    return res


def _source_content(m: MediaFindings | None, monitor: str) -> list[Evidence]:
    """What the ingest received in a report's window, as evidence on the studio's source
    (``studio``/``source``, where content faults of every rendition are placed: the ingest relays
    what the encoder sends). The media probe's rules (silence below -50 dBFS for 2 s; a picture
    still or black for 2 s, here from key frame to key frame; runs carried across reports), seen
    the moment their 2 s have arrived instead of once a segment holding them is published,
    fetched and decoded. Only these three faults: a timestamp gap or A/V offset here may be the
    ingest's own relaying."""
    if m is None or (m.audio_rms_dbfs is None and m.mean_luma is None):
        return []
    # figures only of what was measured: no audio, no silence figure; no key picture yet, no still one
    heard = [("audio_rms_dbfs", m.audio_rms_dbfs), ("silence_s", m.silence_s)] if m.audio_rms_dbfs is not None else []
    seen = [("mean_luma", m.mean_luma), ("frozen_s", m.frozen_s), ("black_s", m.black_s)] \
        if m.mean_luma is not None else []
    figs = {k: round(float(v), 2) for k, v in heard + seen if v is not None}
    bad = [f for f in m.faults if f.severity == "fault" and f.fault in _SOURCE_FAULTS]
    if bad:
        return [Evidence(SOURCE_STAGE, SOURCE_COMPONENT, State.DEGRADED, f.fault,
                         f"what the ingest receives ({monitor}): {f.detail}", None, dict(figs)) for f in bad]
    words = [f"audio {m.audio_rms_dbfs:.1f} dBFS" if m.audio_rms_dbfs is not None else "",
             f"picture luma {m.mean_luma:.0f}" if m.mean_luma is not None else ""]
    return [Evidence(SOURCE_STAGE, SOURCE_COMPONENT, State.OK, None,
                     f"at the ingest ({monitor}): " + ", ".join(x for x in words if x), None, figs)]


def _judge(target: ProbeTarget, ctx: ProbeContext, tc: MonitorTargetConfig, st: _State, w: WatchResult,
           stalled_s: float) -> ProbeResult:
    """A window's result: failures, the minimum latency judged against the baseline. A window
    during which the agent's own event loop stood still for ``stalled_s`` >= 0.25 s (its CPU
    starved: the thread that times arrivals starved with it) is not judged high."""
    s = tc.settings
    res = ProbeResult()
    if w.gap_s is not None:  # a pause shorter than first_frame_s: the last verdict stands
        res.figures["gap_s"] = round(w.gap_s, 3)
        if not st.last:
            res.evidence = [Evidence("ingest", target.component, State.UNKNOWN, None,
                                     f"ingest monitor: no frame yet ({w.gap_s:.1f} s)")]
            return res
        limit = st.baseline.limit()
        bound = ctx.wall() - st.newest_capture if st.newest_capture is not None else None
        if bound is not None and limit is not None and bound > limit and stalled_s < 0.25:
            # the frames after the newest one are late by at least this much whenever they come (an
            # ingest that holds them back: a latency step shows here, before its first late frame)
            figs = {"latency_at_least_s": round(bound, 3), "gap_s": round(w.gap_s, 3),
                    "baseline_s": round(st.baseline.median() or 0.0, 3)}
            res.evidence = [Evidence("ingest", target.component, State.DEGRADED, Fault.LATENCY_HIGH,
                                     f"no frame from the ingest for {w.gap_s:.1f} s: capture-to-ingest latency at "
                                     f"least {bound:.1f} s (limit {limit:.1f} s)", None, figs)]
            return res
        res.evidence = [dataclasses.replace(e, detail=f"{e.detail} (no frame in the last {w.gap_s:.1f} s)")
                        for e in st.last]
        return res
    comp = target.component
    res.figures.update({"frames": w.frames, "beacons": len(w.stamps), "decode_cpu_ms": round(1000 * w.cpu_s, 2)})
    if w.video_frames:
        res.figures["video_frames"] = w.video_frames
    if w.open_s is not None:
        res.figures["open_s"] = round(w.open_s, 3)
    if w.failure is not None:
        res.failure, res.detail = w.failure, w.detail
        res.evidence.append(Evidence("ingest", comp, State.DOWN, w.fault, f"ingest monitor: {w.detail}"))
        return res
    now = ctx.wall()
    if not w.stamps:
        res.evidence.append(Evidence("ingest", comp, State.OK, None,
                                     f"{w.frames} frames from the ingest, none with a latency beacon",
                                     None, {"frames": float(w.frames)}))
        return res
    lats = [a - c for a, c in w.stamps]
    value, median = min(lats), statistics.median(lats)
    if value < -SKEW_TOLERANCE_S:
        st.skew_seen_at = now
    verdict = clock_verdict(False, None, skew_seen=st.skew_seen_at is not None and now - st.skew_seen_at < s.baseline_s)
    if stalled_s >= 0.25:
        high, base = False, st.baseline.median()  # the agent's own stall, not the ingest's: not judged
        res.figures["agent_stall_s"] = round(stalled_s, 3)
    else:
        high, base = st.baseline.judge(now, value)
    caps = [c for _, c in w.stamps]
    st.newest_capture = max(caps) if st.newest_capture is None else max(st.newest_capture, max(caps))
    if tc.share is not None:
        # also a window the agent's stall inflated: the latency probe's own first-seen times of
        # the same moments are late by the same stall, and without a window covering its segments
        # it would charge the ingest's latency to the transcoder
        tc.share.add(IngestWindow(comp, value, min(caps), max(caps), now))
    shown = verdict.value(value)
    res.samples.append(Sample("signalpath_stage_latency_seconds",
                              {"stream": target.stream, "stage": "ingest", "component": comp, "method": "beacon"},
                              shown))
    figs = {"latency_s": shown, "median_s": verdict.value(median), "frames": float(w.frames),
            "beacons": float(len(w.stamps))}
    if base is not None:
        figs["baseline_s"] = verdict.value(base)
    res.figures.update({"latency_s": shown, "median_s": verdict.value(median), "clock": verdict.clock,
                        "precision": verdict.precision})
    if high:
        res.evidence.append(Evidence("ingest", comp, State.DEGRADED, Fault.LATENCY_HIGH,
                                     f"capture-to-ingest latency rose to {shown:g} s (baseline {figs['baseline_s']:g} s,"
                                     f" beacon, {len(w.stamps)} frames)", None, figs))
    else:
        res.evidence.append(Evidence("ingest", comp, State.OK, None,
                                     f"capture-to-ingest latency {shown:g} s (beacon, {len(w.stamps)} frames)",
                                     None, figs))
    return res
