"""Video sources: capture devices present, feeds live, and what their pictures show.

A source (``studio.sources[]``, :class:`probes.core.studio.SourceConfig`) is either

- a **capture device**, checked for presence by its name as the OS lists it (Linux:
  ``/sys/class/video4linux/video*/name``, root injectable for tests; the node name
  ``video0`` matches too). Not present: ``device_missing``. Its picture is not read
  here (PyAV's bundled FFmpeg has no v4l2 demuxer): point a ``url`` source at the
  encoder's preview/program output to check the content; or
- a **feed** (RTSP camera, an SRT/UDP/HTTP URL, a file): opened with PyAV and decoded for
  ``sample_s`` seconds. Measured: opens (else ``source_gone``), resolution (against
  ``expected_width/height``: ``resolution_mismatch``), frame rate from the presentation
  timestamps ((frames - 1) / PTS span) against ``expected_fps`` (more than
  ``fps_tolerance``, 10 %, below: ``frame_rate_low``), black and frozen pictures and the
  audio level / silence / clipping by :class:`probes.core.media_analysis.MediaAnalyser` (black: mean
  luma < 20 for >= 2 s, testrtc; frozen: near-identical frames >= 2 s, testrtc/FFmpeg
  freezedetect — see probes/core/media_analysis.py), and the key-frame interval when the sample holds
  two key frames (<= 4 s, YouTube Live ``gopSizeLong``). A feed that stops before
  ``sample_s`` is ``source_gone`` too.

Backups (``backup: true``) are checked the same way; a bad backup is a warning (you
can go on air, without a fallback), a bad main source a failure.

Decoding is blocking and CPU-bound: one capture runs in a worker thread, bounded by its
own wall-clock deadline (``open_timeout_s`` + ``sample_s`` + 2 s) (STYLE.md 10).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from probes.base import ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.audio import assess_audio
from probes.core.frames import frame_time, small_luma, to_float_planar
from probes.core.media_analysis import MediaAnalyser, MediaFindings
from probes.core.redact import redact_url
from probes.core.segment_decode import DecodedSegment
from probes.core.studio import STAGE, Finding, SourceConfig, Status, evidence_from
from probes.faults import Fault

# ------------------------------------------------------------------ devices


def list_devices(root: str | Path = "/sys/class/video4linux") -> dict[str, str]:
    """``{node: name}`` of the capture devices under ``root`` (empty when none / not Linux)."""
    base = Path(root)
    out: dict[str, str] = {}
    if not base.is_dir():
        return out
    for d in sorted(base.iterdir()):
        try:
            out[d.name] = (d / "name").read_text().strip()
        except OSError:
            out[d.name] = ""
    return out


def assess_device(src: SourceConfig, devices: dict[str, str]) -> list[Finding]:
    want = (src.device or "").strip()
    hit = next((node for node, name in devices.items() if want.lower() in (node.lower(), name.lower())), None)
    role = "Backup device" if src.backup else "Capture device"
    if hit is None:
        st = Status.WARN if src.backup else Status.FAIL
        seen = ", ".join(sorted(n for n in devices.values() if n)) or "none"
        return [Finding("source.device", src.name, st, f"{role} {src.name}", "not present",
                        f"'{want}' connected", "config studio.sources[].device",
                        f"reconnect '{want}' (cable, USB/PCIe slot, power) or select the backup in the encoder; "
                        f"devices seen: {seen}", Fault.DEVICE_MISSING)]
    return [Finding("source.device", src.name, Status.PASS, f"{role} {src.name}", f"present as /dev/{hit}",
                    f"'{want}' connected", "config studio.sources[].device")]


# ------------------------------------------------------------------ feeds


@dataclass(slots=True)
class FeedSample:
    """What a short capture of a feed returned (pure data)."""

    opened: bool = False
    error: str | None = None
    ended_early: bool = False
    width: int | None = None
    height: int | None = None
    declared_fps: float | None = None
    video_frames: int = 0
    measured_fps: float | None = None
    media_s: float = 0.0
    wall_s: float = 0.0
    open_s: float | None = None
    segment: DecodedSegment = field(default_factory=DecodedSegment)


def capture(url: str, sample_s: float, open_timeout_s: float, *, fmt: str | None = None,
            clock=time.monotonic) -> FeedSample:
    """Open ``url`` and decode ``sample_s`` seconds of media (blocking; never raises on bad input)."""
    out = FeedSample()
    opts: dict[str, str] = {}
    if url.startswith("rtsp://"):
        opts["rtsp_transport"] = "tcp"
    if url.startswith("alsa:"):
        fmt, url = "alsa", url[5:]
    t0 = clock()
    try:
        container = av.open(url, "r", format=fmt, options=opts, timeout=(open_timeout_s, open_timeout_s))
    except (av.FFmpegError, OSError, ValueError) as exc:
        out.error = _short(exc)
        return out
    out.opened = True
    out.open_s = clock() - t0
    seg = out.segment
    v_pts: list[float] = []
    v_key: list[bool] = []
    v_luma: list[np.ndarray] = []
    a_pts: list[float] = []
    a_len: list[int] = []
    a_chunks: list[np.ndarray] = []
    deadline = clock() + sample_s + open_timeout_s
    t_start = clock()
    try:
        vs = container.streams.video[0] if container.streams.video else None
        as_ = container.streams.audio[0] if container.streams.audio else None
        wanted: list[VideoStream | AudioStream] = [s for s in (vs, as_) if s is not None]
        if not wanted:
            out.error = "no audio or video stream"
            return out
        if vs is not None:
            out.width, out.height = vs.codec_context.width or None, vs.codec_context.height or None
            if vs.average_rate:
                out.declared_fps = float(vs.average_rate)
        if as_ is not None:
            seg.sample_rate = int(as_.codec_context.sample_rate or 0)
        first: float | None = None
        done = False
        for packet in container.demux(*wanted):
            if clock() > deadline:
                break
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError):
                seg.decode_errors += 1
                continue
            for frame in frames:
                t = frame_time(frame)
                if t is None:
                    continue
                if isinstance(frame, av.VideoFrame):  # a packet of vs (only vs and as_ are demuxed)
                    v_pts.append(t)
                    v_key.append(bool(frame.key_frame))
                    v_luma.append(small_luma(frame, 64, 36))
                    out.width, out.height = frame.width, frame.height
                elif isinstance(frame, av.AudioFrame):
                    arr = to_float_planar(frame.to_ndarray(), frame.format.name, len(frame.layout.channels))
                    a_pts.append(t)
                    a_len.append(arr.shape[1])
                    a_chunks.append(arr)
                    seg.sample_rate = seg.sample_rate or int(frame.sample_rate)
                first = t if first is None else min(first, t)
                if t - first >= sample_s:
                    done = True
            if done:
                break
        else:
            out.ended_early = True
    except (av.FFmpegError, OSError, ValueError) as exc:
        out.error = _short(exc)
        out.ended_early = True
    finally:
        container.close()
    out.wall_s = clock() - t_start
    if v_pts:
        order = np.argsort(np.asarray(v_pts), kind="stable")
        seg.video_pts = np.asarray(v_pts, np.float64)[order]
        seg.video_key = np.asarray(v_key, bool)[order]
        seg.video_luma = np.stack(v_luma)[order]
        seg.video_present = True
        out.video_frames = len(v_pts)
        span = float(seg.video_pts[-1] - seg.video_pts[0])
        if len(v_pts) > 1 and span > 0:
            out.measured_fps = (len(v_pts) - 1) / span
            seg.frame_rate = out.measured_fps
        out.media_s = span
    if a_pts:
        seg.channels = max(c.shape[0] for c in a_chunks)
        seg.audio_samples = np.concatenate(
            [c if c.shape[0] == seg.channels else np.resize(c, (seg.channels, c.shape[1])) for c in a_chunks], axis=1)
        seg.audio_chunk_pts = np.asarray(a_pts, np.float64)
        seg.audio_chunk_len = np.asarray(a_len, np.int64)
        seg.audio_present = True
        out.media_s = max(out.media_s, float(a_pts[-1] - a_pts[0]))
    return out


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact_url(str(text))[:160] if "://" in str(text) else str(text)[:160]


def assess_feed(src: SourceConfig, s: FeedSample, m: MediaFindings | None) -> list[Finding]:
    """Findings of one feed capture (pure)."""
    role = "Backup feed" if src.backup else "Feed"
    bad = Status.WARN if src.backup else Status.FAIL
    c = src.name
    where = redact_url(src.url or "")
    if not s.opened or (s.video_frames == 0 and not (src.audio_only and s.segment.audio_present)):
        why = s.error or ("the feed ended" if s.ended_early else "no frames")
        return [Finding("source.open", c, bad, f"{role} {c}", f"does not open ({why})", "opens and delivers frames",
                        "config studio.sources[].url",
                        f"the feed {where} is gone: check the camera/encoder power and network, or switch to the backup",
                        Fault.SOURCE_GONE)]
    out = [Finding("source.open", c, Status.PASS, f"{role} {c}",
                   f"opened in {s.open_s or 0:.2f} s", "opens and delivers frames", "config studio.sources[].url",
                   figures={"open_seconds": s.open_s or 0.0})]
    if s.ended_early:
        out.append(Finding("source.live", c, bad, f"{role} {c} stays live",
                           f"stopped after {s.media_s:.1f} s", f"{src.sample_s:g} s without a break",
                           "config studio.sources[].sample_s",
                           f"the feed {where} drops out: check its network link and power", Fault.SOURCE_GONE))
    if not src.audio_only:
        if src.expected_width and src.expected_height:
            ok = (s.width, s.height) == (src.expected_width, src.expected_height)
            out.append(Finding("source.resolution", c, Status.PASS if ok else bad, f"{c} resolution",
                               f"{s.width}x{s.height}", f"{src.expected_width}x{src.expected_height}",
                               "config studio.sources[].expected_width/height",
                               "" if ok else f"set the camera/encoder output to {src.expected_width}x"
                               f"{src.expected_height} (it sends {s.width}x{s.height})",
                               None if ok else Fault.RESOLUTION_MISMATCH))
        fps = s.measured_fps
        if src.expected_fps and fps is not None:
            low = fps < src.expected_fps * (1 - src.fps_tolerance)
            out.append(Finding("source.frame_rate", c, bad if low else Status.PASS, f"{c} frame rate",
                               f"{fps:.1f} fps", f">= {src.expected_fps * (1 - src.fps_tolerance):.1f} fps "
                               f"({src.expected_fps:g} expected)", "config studio.sources[].expected_fps",
                               f"the source delivers {fps:.1f} fps instead of {src.expected_fps:g}: set the camera's "
                               f"frame rate, check its shutter/exposure mode and the link bandwidth" if low else "",
                               Fault.FRAME_RATE_LOW if low else None, fps, src.expected_fps,
                               {"frame_rate": fps}))
        if m is not None:
            names = m.fault_names
            if Fault.BLACK_VIDEO in names:
                out.append(Finding("source.picture", c, bad, f"{c} picture", f"black for {m.black_s:.1f} s",
                                   "a picture (mean luma >= 20)", "testrtc videoframechecker.js (luma < 20)",
                                   "the picture is black: check the lens cap, the camera output and the switcher "
                                   "program bus", Fault.BLACK_VIDEO, m.black_s, 2.0, {"black_s": m.black_s}))
            elif Fault.FROZEN_VIDEO in names:
                out.append(Finding("source.picture", c, bad, f"{c} picture", f"frozen for {m.frozen_s:.1f} s",
                                   "a moving picture (no freeze >= 2 s)", "testrtc; FFmpeg freezedetect (2 s)",
                                   "the picture is frozen: check the camera/player output and restart the source",
                                   Fault.FROZEN_VIDEO, m.frozen_s, 2.0, {"frozen_s": m.frozen_s}))
            else:
                out.append(Finding("source.picture", c, Status.PASS, f"{c} picture",
                                   f"moving, mean luma {m.mean_luma or 0:.0f}", "not black, not frozen",
                                   "testrtc videoframechecker.js", figures={"mean_luma": m.mean_luma or 0.0}))
            if m.keyframe_interval_s is not None:
                k = m.keyframe_interval_s
                long = Fault.KEYFRAME_INTERVAL_LONG in names
                out.append(Finding("source.keyframes", c, bad if long else Status.PASS, f"{c} key-frame interval",
                                   f"{k:.1f} s", "<= 4 s (2 s recommended)", "YouTube Live gopSizeLong; Twitch",
                                   f"set the encoder's key-frame interval to 2 s (now {k:.1f} s)" if long else "",
                                   Fault.KEYFRAME_INTERVAL_LONG if long else None, k, 4.0,
                                   {"keyframe_interval_s": k}))
    out += assess_audio(m, c, expected=src.expect_audio or src.audio_only,
                        title=f"{'Backup ' if src.backup else ''}{c} audio")
    if src.backup:
        for f in out:
            if f.status is Status.FAIL:
                f.status = Status.WARN
    return out


async def measure(src: SourceConfig, v4l_root: str = "/sys/class/video4linux"
                  ) -> tuple[list[Finding], FeedSample | None]:
    if src.device is not None:
        return assess_device(src, await asyncio.to_thread(list_devices, v4l_root)), None
    bound = src.open_timeout_s + src.sample_s + 2.0
    try:
        async with asyncio.timeout(bound + src.open_timeout_s):
            s = await asyncio.to_thread(capture, src.url or "", src.sample_s, src.open_timeout_s)
    except TimeoutError:
        s = FeedSample(error=f"no media within {bound:.0f} s")
    m = MediaAnalyser().feed(s.segment) if (s.video_frames or s.segment.audio_present) else None
    return assess_feed(src, s, m), s


@dataclass(frozen=True, slots=True)
class SourceJob:
    """What a ``signalpath run`` job hands :func:`probe` (agent/jobs.py ``studio_jobs``): the
    source, and where this host lists its capture devices (``studio.video4linux_root``)."""

    source: SourceConfig
    video4linux_root: str = "/sys/class/video4linux"


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One source; evidence ``studio``/<source name>.

    ``target.config``: a :class:`SourceJob` (under run), or a bare :class:`SourceConfig`
    (devices then listed under ``ctx.shared["video4linux_root"]``, else the OS's).
    """
    if isinstance(target.config, SourceJob):
        src, root = target.config.source, target.config.video4linux_root
    else:
        src, root = target.config, ctx.shared.get("video4linux_root", "/sys/class/video4linux")
    findings, s = await measure(src, root)
    ev = evidence_from(findings, src.name)
    lab = {"stream": target.stream, "stage": STAGE, "component": src.name}
    samples: list[Sample] = []
    if src.device is not None:
        samples.append(Sample("signalpath_source_present", lab, 0.0 if ev.state is State.DOWN or ev.fault else 1.0))
    elif s is not None:
        samples.append(Sample("signalpath_source_present", lab, 1.0 if s.opened and not s.ended_early else 0.0))
        if s.measured_fps is not None:
            samples.append(Sample("signalpath_source_frame_rate", lab, s.measured_fps))
        for f in findings:
            if f.check == "source.audio" and f.value is not None:
                samples.append(Sample("signalpath_source_audio_level_dbfs", lab, f.value))
    return ProbeResult(None, ev.detail, samples, [ev], figures={"findings": findings})


__all__ = ["FeedSample", "SourceJob", "assess_device", "assess_feed", "capture", "list_devices", "measure", "probe"]
