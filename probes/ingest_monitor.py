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
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core import beacon
from probes.core.config import StrictModel
from probes.core.frames import luma_plane
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
from probes.core.redact import not_a_url
from probes.faults import Fault

__all__ = ["IngestMonitorSettings", "MonitorTargetConfig", "WatchResult", "watch", "probe"]

SCHEMES = ("rtmp", "rtmps", "http", "https")


class IngestMonitorSettings(StrictModel):
    """``streams[].ingest.monitor[]``: play the ingest's output and time the beacon."""

    name: str = "ingest"
    url: str = Field(description="the ingest's playback side: rtmp(s)://host/app/KEY, or an HTTP-FLV / "
                     "MPEG-TS URL; put the key in ${ENV}")
    interval_s: float = Field(5.0, ge=0.5, le=3600, description="one watch window per interval")
    timeout_s: float = Field(8.0, gt=0, le=120, description="deadline of one attempt")
    seconds: float = Field(1.5, gt=0, le=30, description="decode this long after the first frame")
    first_frame_s: float = Field(4.5, gt=0, le=60, description="no decoded frame by then: no_input")
    connect_timeout_s: float = Field(3.0, gt=0, le=60)
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


def _open_options(url: str) -> tuple[dict[str, str], str | None]:
    # a small probe so the first keyframe is decoded as soon as it is read (not "fflags nobuffer":
    # it discards the packets read while probing, the keyframe among them)
    opts = {"probesize": "32", "analyzeduration": "0"}
    scheme = urlsplit(url).scheme
    if scheme.startswith("rtmp"):
        # nginx-rtmp announces no streams up front (FLV without a header flag): probe ~1 s so
        # the video stream exists at open; those frames arrive late, the minimum ignores them
        opts.update({"rtmp_live": "live", "probesize": "1000000", "analyzeduration": "1000000"})
        return opts, None
    return opts, ("flv" if urlsplit(url).path.endswith(".flv") else None)


def watch(settings: IngestMonitorSettings, stop: threading.Event | None = None,
          wall=time.time) -> WatchResult:
    """Open the playback side, decode ``seconds`` of video and read the beacons. Blocking
    (run it in a thread); bounded by the settings' timeouts; never raises on bad input."""
    import av

    out = WatchResult()
    c0 = time.thread_time()
    t0 = time.monotonic()
    opts, fmt = _open_options(settings.url)
    read_timeout = min(settings.first_frame_s, 2.0)
    try:
        container = av.open(settings.url, "r", format=fmt, options=opts,
                            timeout=(settings.connect_timeout_s, read_timeout))
    except av.error.ConnectionRefusedError:
        out.failure, out.fault, out.detail = Failure.CONNECTION_REFUSED, Fault.UNREACHABLE, "connection refused"
        return out
    except av.error.HTTPNotFoundError:  # HTTP-FLV servers answer 404 while nobody publishes the stream
        out.failure, out.fault, out.detail = Failure.HTTP_ERROR, Fault.NO_INPUT, "no such live stream (HTTP 404)"
        return out
    except (av.error.HTTPError, av.error.HTTPClientError, av.error.HTTPServerError) as exc:
        out.failure, out.fault = Failure.HTTP_ERROR, Fault.HTTP_ERROR
        out.detail = f"the playback side answered HTTP {type(exc).__name__.removeprefix('HTTP').removesuffix('Error')}"
        return out
    except (av.error.ExitError, av.error.TimeoutError, TimeoutError):
        # the interrupt callback fired: nothing (decodable) came within the read timeout
        out.failure, out.fault, out.detail = Failure.TIMEOUT, Fault.NO_INPUT, "no stream from the ingest"
        return out
    except (av.FFmpegError, OSError, ValueError) as exc:
        out.failure, out.fault = Failure.CONNECTION_FAILED, Fault.UNREACHABLE
        out.detail = f"cannot play the ingest's output ({type(exc).__name__})"
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
        for packet in container.demux(vs):
            arrival = wall()
            now = time.monotonic()
            if stop is not None and stop.is_set():
                break
            if packet.size:
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


# ----------------------------------------------------------------- the probe


@dataclass(slots=True)
class _State:
    baseline: Baseline
    skew_seen_at: float | None = None


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


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One watch window of the ingest's playback side; ``target.config`` is :class:`MonitorTargetConfig`."""
    tc: MonitorTargetConfig = target.config
    s = tc.settings
    st: _State = ctx.state.setdefault("ingest_monitor", _State(Baseline(s.baseline_s, s.baseline_min_samples,
                                                                         s.high_abs_s, s.high_ratio)))
    res = ProbeResult()
    w = await _watch_async(s)
    comp = target.component
    res.figures.update({"frames": w.frames, "beacons": len(w.stamps), "decode_cpu_ms": round(1000 * w.cpu_s, 2)})
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
    high, base = st.baseline.judge(now, value)
    caps = [c for _, c in w.stamps]
    if tc.share is not None:
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
