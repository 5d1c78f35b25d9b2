"""Decode one media segment (MPEG-TS, or anything PyAV reads) into what the checks need.

What comes out is small and analysis-ready (:class:`DecodedSegment`):

- video: every decoded frame as a downscaled luma picture (default 64x36, uint8) with its
  presentation time in seconds and its key-frame flag; nothing else of the picture is
  kept (frozen and black detection, A/V offset, gaps and GOP need no more);
- audio: samples as float32 ``(channels, n)`` in [-1, 1] plus each decoded chunk's
  presentation time and length (silence, clipping, level, gaps, A/V offset);
- packet sizes per stream (measured bitrate), decode errors counted;
- with ``thumbnail_width`` set, the segment's last picture as a small JPEG (PyAV's MJPEG
  encoder, aspect kept, a few kB at 160 px wide) for the status page; with ``last_picture_width``
  that picture scaled, as a plain array (``last_picture``: it crosses a process boundary), for
  a caller that decides after analysis whether it is worth a JPEG (:func:`jpeg_thumbnail`).

Decoding is CPU-bound and blocking: :func:`decode_segment` is a plain function for a worker
under a bound the caller owns (STYLE.md 10). In the agent that worker is its CPU pool
(``ProbeContext.run_cpu``, agent/cpupool.py: a process, so what goes in and comes out is
pickled); :func:`decode_segment_bounded` is the recipe with a thread instead. It never
raises on bad input: a corrupt or unreadable segment comes back with ``decode_errors``
counted and ``error`` set ("failures are data", STYLE.md 2).

Decode errors counted: packets the demuxer flags corrupt (MPEG-TS continuity errors set
``AV_PKT_FLAG_CORRUPT``), frames the decoder flags corrupt (``AV_FRAME_FLAG_CORRUPT``),
and packets the decoder rejects (``InvalidDataError`` and friends).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np
from pydantic import Field

from probes.core.config import StrictModel
from probes.core.frames import small_luma, time_base_parts, to_float_planar

__all__ = ["MAX_SEGMENT_SPAN_S", "DecodeOptions", "DecodedSegment", "decode_segment", "decode_segment_bounded",
           "decodable_packets", "jpeg_thumbnail", "open_segment", "picture_array", "place_pictures"]


class DecodeOptions(StrictModel):
    """What to decode. Decoding only what the checks need keeps a 2-s 360p segment
    under 5 % of its duration on one core (DESIGN.md target)."""

    video: bool = True
    audio: bool = True
    luma_width: int = Field(64, ge=2, le=1920)
    luma_height: int = Field(36, ge=2, le=1080)
    format: str | None = Field(None, description="demuxer name, e.g. 'mpegts'; None lets FFmpeg probe")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1, description="larger inputs are refused, not decoded")
    max_video_frames: int = Field(3_000, ge=1)
    decoder_threads: int = Field(1, ge=0, description="FFmpeg decoder threads (0 = auto)")
    skip_loop_filter: bool = Field(
        True, description="skip H.264/HEVC deblocking: ~15 % less decode CPU, invisible at 64x36"
    )
    thumbnail_width: int = Field(0, ge=0, le=640, description="the last picture as a JPEG this wide (0: none)")
    last_picture_width: int = Field(0, ge=0, le=640, description="the last picture this wide as a yuvj420p array "
                                    "(DecodedSegment.last_picture; 0: none)")
    keep_last_frame: bool = Field(
        False, description="keep the last picture unscaled (DecodedSegment.last_frame, an av.VideoFrame: not "
        "picklable, for the process that decoded it) so that it is scaled only when wanted "
        "(picture_array: ~0.8 ms of a 2-s 180p segment's ~4.6 ms, key frames only)")
    video_frames: Literal["all", "key"] = Field(
        "all", description="'all': decode every picture; 'key': decode key frames only (FFmpeg skip_frame=nonkey), "
        "every frame still timed from its packet: ~1/GOP of the video decode cost (the media probe at scale)")


@dataclass(slots=True)
class DecodedSegment:
    """One segment, decoded. Times are seconds on the segment's own timeline (PTS)."""

    size_bytes: int = 0
    video_present: bool = False
    audio_present: bool = False
    frame_rate: float | None = None  # the stream's declared average rate
    video_pts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    video_key: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    video_luma: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0), np.uint8))
    video_luma_index: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """For each picture in ``video_luma``, its frame's index in ``video_pts``: every frame when all
    were decoded, the key frames only with ``DecodeOptions.video_frames='key'``."""
    video_packet_bytes: int = 0
    video_packets: int = 0
    sample_rate: int = 0
    channels: int = 0
    audio_samples: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    audio_chunk_pts: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    audio_chunk_len: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    audio_packet_bytes: int = 0
    audio_packets: int = 0
    decode_errors: int = 0
    error: str | None = None
    thumbnail: bytes = b""  # JPEG of the last picture (DecodeOptions.thumbnail_width), or empty
    last_picture: np.ndarray | None = None
    """The last picture, scaled (``DecodeOptions.last_picture_width``): planar yuvj420p, uint8
    ``(height * 3 // 2, width)`` (PyAV's ``to_ndarray`` layout), for :func:`jpeg_thumbnail`."""
    last_frame: Any = None
    """The last picture as decoded (``DecodeOptions.keep_last_frame``; an ``av.VideoFrame``, or
    None): :func:`picture_array` scales it. Set it to None before pickling the segment."""

    @property
    def video_frames(self) -> int:
        return int(self.video_pts.size)

    @property
    def audio_start(self) -> float | None:
        return float(self.audio_chunk_pts[0]) if self.audio_chunk_pts.size else None

    @property
    def audio_end(self) -> float | None:
        if not self.audio_chunk_pts.size or not self.sample_rate:
            return None
        return float(self.audio_chunk_pts[-1] + self.audio_chunk_len[-1] / self.sample_rate)

    @property
    def video_start(self) -> float | None:
        return float(self.video_pts[0]) if self.video_pts.size else None


def decode_segment(data: bytes, options: DecodeOptions | None = None) -> DecodedSegment:
    """Decode ``data`` (one segment's bytes). Blocking; never raises on bad media."""
    opts = options or DecodeOptions()
    out = DecodedSegment(size_bytes=len(data))
    if len(data) > opts.max_bytes:
        out.error = f"segment of {len(data)} bytes exceeds the {opts.max_bytes}-byte limit"
        out.decode_errors = 1
        return out
    if not data:
        out.error = "empty segment"
        out.decode_errors = 1
        return out
    try:
        container = open_segment(data, opts.format, key_frames_only=opts.video_frames == "key" or not opts.video)
    except (av.FFmpegError, ValueError, OSError) as exc:
        out.error = f"unreadable segment: {_short(exc)}"
        out.decode_errors = 1
        return out
    try:
        _decode(container, opts, out)
    except (av.FFmpegError, ValueError, OSError, RuntimeError) as exc:
        out.error = f"demux failed: {_short(exc)}"
        out.decode_errors += 1
    finally:
        container.close()
    return out


_PROBE_WITHOUT_PICTURES = [{"skip_frame": "all"}] * 8


def open_segment(data: bytes, format: str | None = None, *, key_frames_only: bool = False):
    """``data`` opened for demuxing (an ``av.InputContainer``; the caller closes it). Raises
    what ``av.open`` raises.

    ``key_frames_only`` (the caller decodes key frames alone, or no picture): the stream probe
    (FFmpeg's ``avformat_find_stream_info``) is told to decode no picture (``skip_frame=all``),
    so the first picture is decoded once, by the caller's decoder, not twice: ~0.35 ms less a
    2-s 180p H.264 segment (a third of the open). Not when every frame is decoded: the probe's
    decoding is where FFmpeg learns an H.264 stream's reorder delay when its SPS does not state
    it (some hardware encoders), and a decoder started without it loses the first B-frames.
    A container whose streams appear only while probing (MPEG-PS, a transport stream without
    its PMT up front) refuses per-stream options: it is opened again plainly.
    """
    if not key_frames_only:
        return av.open(io.BytesIO(data), "r", format=format)
    try:
        # PyAV's stub types stream_options as list[str]; it takes one dict per stream
        return av.open(io.BytesIO(data), "r", format=format,
                       stream_options=_PROBE_WITHOUT_PICTURES)  # type: ignore[call-overload]
    except ValueError:
        return av.open(io.BytesIO(data), "r", format=format)


async def decode_segment_bounded(
    data: bytes, options: DecodeOptions | None, semaphore: asyncio.Semaphore
) -> DecodedSegment:
    """:func:`decode_segment` in a worker thread, at most ``semaphore``'s worth at once."""
    async with semaphore:
        return await asyncio.to_thread(decode_segment, data, options)


def _decode(container, opts: DecodeOptions, out: DecodedSegment) -> None:
    vstream = next((s for s in container.streams if s.type == "video"), None)
    astream = next((s for s in container.streams if s.type == "audio"), None)
    out.video_present = vstream is not None
    out.audio_present = astream is not None
    wanted = [s for s in (vstream, astream) if s is not None]
    if not wanted:
        out.error = "no audio or video stream"
        out.decode_errors += 1
        return
    if vstream is not None:
        if vstream.average_rate:
            out.frame_rate = float(vstream.average_rate)
        vstream.codec_context.thread_count = opts.decoder_threads
        vstream.codec_context.thread_type = "AUTO" if opts.decoder_threads != 1 else "SLICE"
        if opts.skip_loop_filter:
            vstream.codec_context.options = {"skip_loop_filter": "all"}
        if opts.video_frames == "key":
            vstream.codec_context.skip_frame = "NONKEY"
    if astream is not None:
        out.sample_rate = int(astream.codec_context.sample_rate or 0)

    v_pts: list[float] = []
    v_key: list[bool] = []
    v_luma: list[np.ndarray] = []
    a_pts: list[float] = []
    a_len: list[int] = []
    a_chunks: list[np.ndarray] = []
    w, h = opts.luma_width, opts.luma_height
    errors: list[str] = []

    last: list = [None, -1.0]  # the picture with the latest time, for the thumbnail
    key_only = opts.video_frames == "key"
    p_pts: list[float] = []  # key-only: every video packet's time and key flag (frames not decoded)
    p_key: list[bool] = []
    v_tb = time_base_parts(vstream)  # read once per stream (frames.time_base_parts)
    a_tb = time_base_parts(astream)

    def take_video(frame) -> None:
        if frame.is_corrupt:
            out.decode_errors += 1
        if len(v_pts) >= opts.max_video_frames or frame.pts is None or v_tb is None:
            return
        t = frame.pts * v_tb[0] / v_tb[1]
        if (opts.thumbnail_width or opts.last_picture_width or opts.keep_last_frame) and t >= last[1]:
            last[0], last[1] = frame, t
        v_pts.append(t)
        v_key.append(bool(frame.key_frame))
        v_luma.append(small_luma(frame, w, h))

    def take_audio(frame) -> None:
        if frame.is_corrupt:
            out.decode_errors += 1
        if frame.pts is None or a_tb is None:
            return
        arr = frame.to_ndarray()
        arr = to_float_planar(arr, frame.format.name, len(frame.layout.channels))
        a_pts.append(frame.pts * a_tb[0] / a_tb[1])
        a_len.append(arr.shape[1])
        a_chunks.append(arr)
        if not out.sample_rate:
            out.sample_rate = int(frame.sample_rate)

    for packet in container.demux(*wanted):
        stream = packet.stream
        is_video = stream is vstream
        if packet.size:
            if is_video:
                out.video_packet_bytes += packet.size
                out.video_packets += 1
                # (a corrupt packet too: FFmpeg outputs its frame, flagged, as a full decode counts it)
                if key_only and packet.pts is not None and v_tb is not None and len(p_pts) < opts.max_video_frames:
                    p_pts.append(packet.pts * v_tb[0] / v_tb[1])
                    p_key.append(bool(packet.is_keyframe))
            else:
                out.audio_packet_bytes += packet.size
                out.audio_packets += 1
            if packet.is_corrupt:
                out.decode_errors += 1
        if (is_video and not opts.video) or (not is_video and not opts.audio):
            continue
        try:
            frames = packet.decode()  # a size-0 packet flushes the decoder
        except (av.FFmpegError, ValueError) as exc:
            out.decode_errors += 1
            if len(errors) < 3:
                errors.append(_short(exc))
            continue
        for frame in frames:
            (take_video if is_video else take_audio)(frame)

    if key_only:
        p_pts, p_key = decodable_packets(p_pts, p_key)
    if key_only and p_pts:
        place_pictures(out, p_pts, p_key, v_pts, v_luma)
    elif v_pts:
        order = np.argsort(np.asarray(v_pts), kind="stable")
        out.video_pts = np.asarray(v_pts, np.float64)[order]
        out.video_key = np.asarray(v_key, bool)[order]
        out.video_luma = np.stack(v_luma)[order]
        out.video_luma_index = np.arange(out.video_pts.size, dtype=np.int64)
    if a_pts:
        out.channels = max(c.shape[0] for c in a_chunks)
        chunks = [c if c.shape[0] == out.channels else np.resize(c, (out.channels, c.shape[1])) for c in a_chunks]
        out.audio_samples = np.concatenate(chunks, axis=1)
        out.audio_chunk_pts = np.asarray(a_pts, np.float64)
        out.audio_chunk_len = np.asarray(a_len, np.int64)
    if last[0] is not None:
        if opts.keep_last_frame:
            out.last_frame = last[0]
        if opts.thumbnail_width:
            out.thumbnail = jpeg_thumbnail(last[0], opts.thumbnail_width)
        if opts.last_picture_width:
            out.last_picture = picture_array(last[0], opts.last_picture_width)
    if errors:
        out.error = "decode error: " + "; ".join(errors)
    elif out.decode_errors:
        out.error = f"{out.decode_errors} corrupt packet(s) or frame(s)"


MAX_SEGMENT_SPAN_S = 600.0
"""A video packet timed further than this from its segment's first key frame carries a damaged
timestamp (no segment lasts ten minutes; the 33-bit MPEG-TS clock wraps at 26.5 h): it is not
counted as a frame (:func:`decodable_packets`)."""


def decodable_packets(pts: list[float], keys: list[bool]) -> tuple[list[float], list[bool]]:
    """Key-frames-only reads (the frames counted and timed from their packets, not decoded): the
    video packets (``pts`` s in decode order, ``keys`` their key flags) that a full decode shows as
    frames: from the first key frame on — those before it cannot be decoded (a segment cut
    mid-GOP; FFmpeg's decoders output nothing until a key frame) — and none timed more than
    :data:`MAX_SEGMENT_SPAN_S` from that key frame (a damaged packet's PTS). Nothing without a
    key frame. Packets flagged corrupt are counted (a full decode outputs their frames, flagged):
    leaving out a corrupt key packet would drop its whole GOP."""
    first = next((i for i, k in enumerate(keys) if k), None)
    if first is None:
        return [], []
    t0 = pts[first]
    kept = [(t, k) for t, k in zip(pts[first:], keys[first:], strict=True) if abs(t - t0) <= MAX_SEGMENT_SPAN_S]
    return [t for t, _ in kept], [k for _, k in kept]


def place_pictures(out: DecodedSegment, pts: list[float], keys: list[bool], pic_pts: list[float],
                   pics: list[np.ndarray]) -> None:
    """Key frames only: every frame of ``out`` from its packet (``pts`` s, ``keys``), and the decoded
    pictures (``pics`` at ``pic_pts``) placed at their packets' times; a picture whose time no
    packet has is dropped (a frame of a packet not counted)."""
    order = np.argsort(np.asarray(pts), kind="stable")
    out.video_pts = np.asarray(pts, np.float64)[order]
    out.video_key = np.asarray(keys, bool)[order]
    if not pic_pts:
        return
    lorder = np.argsort(np.asarray(pic_pts), kind="stable")
    at = np.asarray(pic_pts, np.float64)[lorder]
    idx = np.searchsorted(out.video_pts, at)
    keep = (idx < out.video_pts.size) & (np.abs(out.video_pts[np.minimum(idx, out.video_pts.size - 1)] - at) < 1e-6)
    out.video_luma = np.stack(pics)[lorder][keep]
    out.video_luma_index = idx[keep].astype(np.int64)


def picture_array(frame, width: int) -> np.ndarray | None:
    """``frame`` (an ``av.VideoFrame``) scaled to ``width`` (:func:`_scaled`) as PyAV's yuvj420p
    ndarray (:attr:`DecodedSegment.last_picture`'s layout), or None when it cannot be converted."""
    try:
        return _scaled(frame, width).to_ndarray()
    except (av.FFmpegError, ValueError, AssertionError):  # PyAV asserts on shapes it cannot convert
        return None


def _scaled(frame, width: int):
    """``frame`` at ``width`` rounded down to even (4:2:0 needs it; aspect kept, even height) in
    full-range YUV 4:2:0 (``yuvj420p``)."""
    width = max(2, width // 2 * 2)
    height = max(2, round(width * frame.height / max(1, frame.width) / 2) * 2)
    return frame.reformat(width=width, height=height, format="yuvj420p")


def jpeg_thumbnail(picture, width: int) -> bytes:
    """``picture`` (an ``av.VideoFrame``, or a :attr:`DecodedSegment.last_picture` array) scaled
    to ``width`` (aspect kept, even height) as a baseline JPEG (FFmpeg's MJPEG encoder, full-range
    YUV 4:2:0; ~0.15 ms at 160 px): bytes, empty when the encoder refuses it."""
    from fractions import Fraction

    try:
        if isinstance(picture, np.ndarray):
            picture = av.VideoFrame.from_ndarray(picture, format="yuvj420p")
        small = picture if (picture.width, picture.format.name) == (width // 2 * 2, "yuvj420p") \
            else _scaled(picture, width)
        cc = av.CodecContext.create("mjpeg", "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = small.width, small.height, "yuvj420p", Fraction(1, 25)
        cc.thread_count = 1  # FFmpeg's default starts and joins a thread per CPU for each picture
        return b"".join(bytes(p) for p in [*cc.encode(small), *cc.encode(None)])
    except (av.FFmpegError, ValueError, AssertionError):
        return b""


def _short(exc: BaseException) -> str:
    """A short, secret-free message: FFmpeg's reason without paths or URLs."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)[:200]
