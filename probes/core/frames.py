"""Picture and sample helpers shared by the probes that decode: the luma plane of a
decoded frame (for the latency beacon, probes/core/beacon.py), a downscaled full-range
luma picture (frozen / black detection, probes/core/media_analysis.py), PyAV audio as
float32 planar samples, and a luma plane padded to a frame's line size (the WebRTC
probes' synthetic track). Pure functions over PyAV frames and numpy arrays; one copy
of each, used by probes/latency.py, probes/ingest_monitor.py, probes/whep.py,
probes/core/segment_decode.py, probes/video_source.py and probes/net/webrtc_session.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["frame_time", "luma_plane", "pad_plane", "small_luma", "time_base_parts", "to_float_planar"]

_LUMA_8BIT = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray")


def frame_time(frame: Any) -> float | None:
    """A decoded frame's presentation time in seconds (``pts x time_base``); None when the
    frame carries no timestamp or no time base."""
    pts, time_base = frame.pts, frame.time_base
    if pts is None or time_base is None:
        return None
    return float(pts * time_base)


def time_base_parts(stream: Any) -> tuple[int, int] | None:
    """``(numerator, denominator)`` of a stream's time base, None when it has none (or there is
    no stream). Read it once per stream: PyAV makes a new ``Fraction`` at every read of a
    packet's or frame's ``time_base`` (a third of demuxing's Python time), and a demuxed packet
    and the frames decoded from it carry their stream's. ``pts * num / den`` is exactly
    ``float(pts * time_base)``: one correctly rounded division of the same integers."""
    tb = stream.time_base if stream is not None else None
    return (tb.numerator, tb.denominator) if tb else None


def luma_plane(frame: Any) -> Any:
    """The frame's luma (Y) plane as a ``height x width`` uint8 array: a view of the Y plane
    for 8-bit planar formats, swscale's ``gray`` conversion otherwise."""
    if frame.format.name in _LUMA_8BIT:
        p = frame.planes[0]
        return np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:frame.height, :frame.width]
    return frame.to_ndarray(format="gray")


def pad_plane(y: np.ndarray, line_size: int) -> bytes:
    """A ``height x width`` uint8 plane as the bytes of a plane ``line_size`` bytes wide."""
    h, w = y.shape
    if line_size == w:
        return y.tobytes()
    out = np.zeros((h, line_size), np.uint8)
    out[:, :w] = y
    return out.tobytes()


_PLANAR_8BIT = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "nv12", "nv21", "gray"}
)
_FULL_RANGE = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "gray"})
_LIMITED_TO_FULL = np.clip((np.arange(256) - 16) * 255.0 / 219.0 + 0.5, 0, 255).astype(np.uint8)


def small_luma(frame, w: int, h: int) -> np.ndarray:
    """The frame's luma, box-averaged down to ``h x w``, full range (0 black .. 255 white).

    8-bit formats take the Y plane directly and average blocks with numpy (~0.2 ms for
    360p; swscale's AREA path costs ~0.9 ms a frame here); others go through swscale.
    Limited-range ("TV", 16-235) luma is expanded to full range, so thresholds read like
    testrtc's, which works on full-range RGB.
    """
    fmt = frame.format.name
    fh, fw = frame.height, frame.width
    if fmt in _PLANAR_8BIT and fh >= h and fw >= w:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:fh, :fw]
        bh, bw = fh // h, fw // w
        rows = y[: bh * h, : bw * w].reshape(h, bh, bw * w).sum(axis=1, dtype=np.uint32)
        small = (rows.reshape(h, w, bw).sum(axis=2) // (bh * bw)).astype(np.uint8)
        full = fmt in _FULL_RANGE or int(getattr(frame, "color_range", 0) or 0) == 2
        return small if full else _LIMITED_TO_FULL[small]
    small = frame.reformat(width=w, height=h, format="gray", interpolation="AREA")
    return small.to_ndarray().reshape(h, w)


_INT_SCALE = {"s16": 32768.0, "s16p": 32768.0, "s32": 2147483648.0, "s32p": 2147483648.0, "u8": 128.0, "u8p": 128.0}


def to_float_planar(arr: np.ndarray, fmt: str, channels: int) -> np.ndarray:
    """PyAV's ndarray for any sample format -> float32 ``(channels, n)`` in [-1, 1]."""
    if not fmt.endswith("p"):  # packed: (1, n * channels) interleaved
        arr = arr.reshape(-1, channels).T
    if fmt in ("u8", "u8p"):
        return (arr.astype(np.float32) - 128.0) / 128.0
    if fmt in _INT_SCALE:
        return arr.astype(np.float32) / _INT_SCALE[fmt]
    return arr.astype(np.float32, copy=False)
