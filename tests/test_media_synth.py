"""Synthetic MPEG-TS segments made with PyAV, for the media-analysis tests and tests/perf.

``make_segment`` encodes a short H.264 + AAC segment in memory with the content a
test asks for: a moving pattern or a still/black picture, a tone or silence, an audio
timestamp shift (A/V desync), a GOP length. ``corrupt`` overwrites bytes in the middle
of a segment. The tests at the bottom hold the generator honest (the other tests rely
on its output being what it claims).
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

SAMPLE_RATE = 48_000
AUDIO_FRAME = 1024  # AAC frame size


def make_segment(
    *,
    seconds: float = 2.0,
    start_s: float = 0.0,
    width: int = 160,
    height: int = 96,
    fps: int = 25,
    video: str = "moving",  # moving | still | black | noise
    audio: str | None = "tone",  # tone | silence | clipped | None
    audio_shift_s: float = 0.0,
    gop: int | None = None,
    drop_frames: tuple[int, ...] = (),
    tone_amplitude: float = 0.3,
    bitrate: int | None = None,
    preset: str = "ultrafast",
) -> bytes:
    """Encode one MPEG-TS segment starting at media time ``start_s``; return its bytes.

    ``drop_frames`` lists frame indexes left out (a timestamp gap); ``audio_shift_s``
    moves every audio timestamp later by that much (desync); ``gop`` is the key-frame
    interval in frames (default: one key frame per segment, at its start).
    """
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mpegts")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    n_frames = int(round(seconds * fps))
    opts = {"preset": preset, "tune": "zerolatency", "bf": "0", "sc_threshold": "0"}
    g = gop if gop is not None else n_frames
    opts["g"] = str(g)
    opts["keyint_min"] = str(g)
    vs.options = opts
    if bitrate:
        vs.bit_rate = bitrate
    vs.codec_context.time_base = Fraction(1, fps)
    as_ = None
    if audio is not None:
        as_ = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        as_.codec_context.time_base = Fraction(1, SAMPLE_RATE)

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    start_frame = int(round(start_s * fps))
    still = ((xx * 3 + yy * 5) % 256).astype(np.uint8)
    for i in range(n_frames):
        k = start_frame + i
        if video == "moving":
            y = (((xx + 7 * k) // 8 + (yy + 3 * k) // 8) % 2 * 160 + 40).astype(np.uint8)
            y[(k * 4) % height : (k * 4) % height + 8, :] = 235
        elif video == "still":
            y = still
        elif video == "black":
            y = np.full((height, width), 16, np.uint8)
        else:
            y = rng.integers(16, 236, (height, width), dtype=np.uint8)
        if i in drop_frames:
            continue
        frame = _yuv_frame(y)
        frame.pts = k
        frame.time_base = Fraction(1, fps)
        for pkt in vs.encode(frame):
            out.mux(pkt)
    for pkt in vs.encode(None):
        out.mux(pkt)

    if as_ is not None:
        total = int(round(seconds * SAMPLE_RATE))
        first = int(round((start_s + audio_shift_s) * SAMPLE_RATE))
        t = (np.arange(total) + int(round(start_s * SAMPLE_RATE))) / SAMPLE_RATE
        if audio == "tone":
            mono = tone_amplitude * np.sin(2 * np.pi * 1000 * t)
        elif audio == "clipped":
            mono = np.clip(1.6 * np.sin(2 * np.pi * 200 * t), -1.0, 1.0)
        else:
            mono = np.zeros(total)
        samples = np.stack([mono, mono]).astype(np.float32)
        for off in range(0, total - AUDIO_FRAME + 1, AUDIO_FRAME):
            af = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, off : off + AUDIO_FRAME]), format="fltp", layout="stereo"
            )
            af.sample_rate = SAMPLE_RATE
            af.pts = first + off
            af.time_base = Fraction(1, SAMPLE_RATE)
            for pkt in as_.encode(af):
                out.mux(pkt)
        for pkt in as_.encode(None):
            out.mux(pkt)
    out.close()
    return buf.getvalue()


def _yuv_frame(y: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    yuv = np.empty((h * 3 // 2, w), np.uint8)
    yuv[:h] = y
    yuv[h:] = 128
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def corrupt(data: bytes, *, at: float = 0.3, length: int = 4096, seed: int = 1) -> bytes:
    """Overwrite ``length`` bytes from fraction ``at`` of the segment with random bytes."""
    rng = np.random.default_rng(seed)
    b = bytearray(data)
    start = int(len(b) * at)
    b[start : start + length] = rng.integers(0, 256, min(length, len(b) - start), dtype=np.uint8).tobytes()
    return bytes(b)


# --- the generator's own checks -------------------------------------------------


def test_segment_has_the_requested_streams_and_frames():
    data = make_segment(seconds=1.0, fps=25)
    with av.open(io.BytesIO(data), "r", format="mpegts") as c:
        kinds = sorted(s.type for s in c.streams)
        frames = sum(1 for _ in c.decode(video=0))
    assert kinds == ["audio", "video"]
    assert frames == 25


def test_audio_shift_moves_audio_timestamps():
    data = make_segment(seconds=1.0, audio_shift_s=0.3)
    with av.open(io.BytesIO(data), "r", format="mpegts") as c:
        v = next(c.decode(video=0)).time
    with av.open(io.BytesIO(data), "r", format="mpegts") as c:
        a = next(c.decode(audio=0)).time
    assert 0.25 < a - v < 0.35
