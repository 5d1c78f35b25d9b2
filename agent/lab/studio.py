"""The studio: a synthetic camera and tone, encoded to H.264 + AAC with PyAV.

The picture is a moving pattern (sliding colour bars and a bouncing box, so freeze
detectors see motion) with the wall clock burned in as readable digits
(``HH:MM:SS.mmm``, UTC, the capture time of the frame). The sound is a steady tone
(default 1 kHz at -20 dBFS, the usual line-up tone level of EBU R68 is -18 dBFS).

A ``stamp`` hook, ``stamp(y_plane, capture_wall_s)``, is applied to every encoded
frame (frozen and black ones included: it stands for an inserter downstream of the
camera) before encoding; ``y_plane`` is the writable luma plane (uint8, height x width).
Before the hook, the camera burns in the latency beacon (:func:`probes.beacon.stamp`,
``LabConfig.beacon``, on by default; ``beacon=False`` turns it off) into every *moving* picture: a frozen or black
camera picture carries no fresh beacon (the beacon stands for the camera's own time
code, and a stamp that changes every frame would make a frozen picture move), so the
latency probe falls back to EXT-X-PROGRAM-DATE-TIME while those faults last.

Studio faults arrive as a :class:`StudioFaults` snapshot per frame; this class is
synchronous and meant to run in one worker thread.
"""

from __future__ import annotations

import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from probes.core import beacon as _beacon

from .config import LabConfig

Stamp = Callable[[np.ndarray, float], None]

TS_HZ = 90_000  # MPEG-TS clock (ISO/IEC 13818-1)
AAC_FRAME = 1024
PTS_ORIGIN_S = 10  # first pts is 10 s, so audio priming never goes negative


@dataclass(slots=True)
class MediaPacket:
    """One encoded access unit; ``pts`` in 1/90,000 s; wall times in epoch seconds."""

    kind: str  # "video" | "audio"
    data: bytes
    pts: int
    keyframe: bool
    capture_wall: float
    produced_wall: float = 0.0
    delivered_wall: float = 0.0


@dataclass(frozen=True, slots=True)
class StudioFaults:
    frozen: bool = False
    black: bool = False
    silent: bool = False
    desync_ms: int = 0


# 5x7 bitmap font for the clock (rows top to bottom, 5 bits each, MSB left).
_FONT = {
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E), "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F), "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02), "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E), "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E), "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    ":": (0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00), ".": (0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C),
    " ": (0, 0, 0, 0, 0, 0, 0),
}


def _glyphs(scale: int) -> dict[str, np.ndarray]:
    out = {}
    for ch, rows in _FONT.items():
        bits = np.array([[(r >> (4 - c)) & 1 for c in range(5)] for r in rows], dtype=bool)
        out[ch] = np.kron(bits, np.ones((scale, scale), dtype=bool))
    return out


def clock_text(wall: float) -> str:
    ms = int((wall - math.floor(wall)) * 1000)
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{ms:03d}"


class SyntheticCamera:
    """Builds I420 frames (a (h*3/2, w) uint8 array) for a capture time."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        self.w, self.h, self.fps = width, height, fps
        period = 160
        x = np.arange(width + period)
        bars = (60 + 140 * ((x // (period // 4)) % 4) / 3).astype(np.uint8)
        grad = np.linspace(0, 40, height, dtype=np.float32)[:, None]
        self._bg = np.clip(bars[None, :].astype(np.float32) + grad, 16, 235).astype(np.uint8)
        self._period = period
        cw, ch = width // 2, height // 2
        u = np.tile(((np.arange(cw) * 4 // cw) * 40 + 68).astype(np.uint8), (ch, 1))
        v = np.tile(((np.arange(ch)[:, None] * 3 // ch) * 50 + 78).astype(np.uint8), (1, cw))
        self._chroma = np.concatenate([u, v]).reshape(-1, width)  # u then v, as I420 rows
        self._scale = max(2, height // 90)
        self._glyph = _glyphs(self._scale)
        self._last: np.ndarray | None = None

    def frame(self, n: int, wall: float, faults: StudioFaults) -> np.ndarray:
        h, w = self.h, self.w
        if faults.black:
            img = np.empty((h * 3 // 2, w), np.uint8)
            img[:h] = 16
            img[h:] = 128
        elif faults.frozen and self._last is not None:
            img = self._last.copy()
        else:
            img = np.empty((h * 3 // 2, w), np.uint8)
            off = (n * 4) % self._period
            img[:h] = self._bg[:, off:off + w]
            img[h:] = self._chroma
            # a bouncing box
            bs = h // 6
            span_x, span_y = w - bs, h - bs
            bx = abs((n * 7) % (2 * span_x) - span_x)
            by = abs((n * 5) % (2 * span_y) - span_y)
            img[by:by + bs, bx:bx + bs] = 235
            self._draw_clock(img, wall)
            self._last = img
            return img.copy()
        return img

    def _draw_clock(self, img: np.ndarray, wall: float) -> None:
        text = clock_text(wall)
        s = self._scale
        cw, chh = 6 * s, 7 * s
        x0, y0 = 2 * s, self.h - chh - 3 * s
        img[y0 - s:y0 + chh + s, x0 - s:x0 + cw * len(text) + s] = 16
        for i, ch in enumerate(text):
            g = self._glyph[ch]
            region = img[y0:y0 + chh, x0 + i * cw:x0 + i * cw + 5 * s]
            region[g] = 235


class StudioEncoder:
    """Camera + tone + H.264/AAC encoders. Not thread-safe: one worker thread."""

    def __init__(self, cfg: LabConfig, stamp: Stamp | None = None) -> None:
        self.cfg = cfg
        self.stamp = stamp
        min_h, min_w = _beacon.DEFAULT_LAYOUT.min_size()
        self.beacon = cfg.beacon and cfg.height >= min_h and cfg.width >= min_w
        self.camera = SyntheticCamera(cfg.width, cfg.height, cfg.fps)
        self._frame_ticks = TS_HZ // cfg.fps
        self._video = self._open_video()
        self._audio = self._open_audio()
        self._amp = 10 ** (cfg.tone_dbfs / 20)
        self._next_sample: int | None = None
        self.force_keyframe = True
        self.frames_out = 0
        self.bytes_out = 0

    def _open_video(self) -> av.VideoCodecContext:
        cfg = self.cfg
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = cfg.width, cfg.height, "yuv420p"
        ctx.time_base = fractions.Fraction(1, TS_HZ)
        ctx.framerate = fractions.Fraction(cfg.fps, 1)
        ctx.bit_rate = cfg.source_bitrate_kbps * 1000
        gop = cfg.frames_per_segment
        ctx.options = {
            "preset": cfg.x264_preset, "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:forced-idr=1:threads=1",
        }
        ctx.open()
        return ctx

    def _open_audio(self) -> av.AudioCodecContext:
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = self.cfg.sample_rate
        ctx.layout = "mono"
        ctx.format = "fltp"
        ctx.bit_rate = self.cfg.audio_bitrate_kbps * 1000
        ctx.time_base = fractions.Fraction(1, self.cfg.sample_rate)
        ctx.open()
        return ctx

    def restart(self) -> None:
        """Begin a new publish: the next frame is a keyframe, audio restarts at 'now'."""
        self.force_keyframe = True
        self._next_sample = None

    def encode(self, n: int, capture_wall: float, faults: StudioFaults,
               wall: Callable[[], float] = time.time) -> list[MediaPacket]:
        """Capture and encode video frame ``n`` (and the audio up to its time)."""
        cfg = self.cfg
        pts = (PTS_ORIGIN_S * cfg.fps + n) * self._frame_ticks
        img = self.camera.frame(n, capture_wall, faults)
        if self.beacon and not (faults.frozen or faults.black):
            _beacon.stamp(img[:cfg.height], capture_wall)
        if self.stamp is not None:
            self.stamp(img[:cfg.height], capture_wall)
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = pts
        frame.time_base = self._video.time_base
        if self.force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self.force_keyframe = False
        out: list[MediaPacket] = []
        for p in self._video.encode(frame):
            out.append(MediaPacket("video", bytes(p), int(p.pts), bool(p.is_keyframe),  # type: ignore[arg-type]  # PyAV: pts Optional, set by the encoder
                                   capture_wall))
        out.extend(self._encode_audio(n, capture_wall, faults))
        now = wall()
        for m in out:
            m.produced_wall = now
            self.bytes_out += len(m.data)
        self.frames_out += 1
        return out

    def _encode_audio(self, n: int, capture_wall: float, faults: StudioFaults) -> list[MediaPacket]:
        cfg = self.cfg
        rate = cfg.sample_rate
        # samples due by the end of this video frame
        due = (PTS_ORIGIN_S * cfg.fps + n + 1) * rate // cfg.fps
        if self._next_sample is None:
            start = (PTS_ORIGIN_S * cfg.fps + n) * rate // cfg.fps
            self._next_sample = start - start % AAC_FRAME
        out: list[MediaPacket] = []
        shift = faults.desync_ms * TS_HZ // 1000
        while self._next_sample + AAC_FRAME <= due:
            s0 = self._next_sample
            if faults.silent:
                samples = np.zeros((1, AAC_FRAME), np.float32)
            else:
                t = (s0 + np.arange(AAC_FRAME, dtype=np.float64)) / rate
                samples = (self._amp * np.sin(2 * np.pi * cfg.tone_hz * t)).astype(np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            af.sample_rate = rate
            af.pts = s0
            af.time_base = self._audio.time_base
            for p in self._audio.encode(af):
                assert p.pts is not None, "an encoder's packets carry a pts (PyAV types it Optional)"
                apts = int(p.pts) * TS_HZ // rate + shift
                # capture time of the block: the frame's capture time, offset by sample position
                cap = capture_wall + (int(p.pts) - (PTS_ORIGIN_S * cfg.fps + n) * rate // cfg.fps) / rate
                out.append(MediaPacket("audio", bytes(p), apts, True, cap))
            self._next_sample = s0 + AAC_FRAME
        return out

    def close(self) -> None:
        self._video = None  # type: ignore[assignment]
        self._audio = None  # type: ignore[assignment]
