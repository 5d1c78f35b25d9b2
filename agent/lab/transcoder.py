"""The transcoder: decode the contribution H.264, re-encode a ladder, cut MPEG-TS segments.

Every rung is encoded with libx264 (zero-latency tuning, one output packet per input
frame) and gets an IDR forced on the first frame of each segment period, computed
from the source timestamp, so keyframes are aligned across renditions (the HLS
authoring spec asks for aligned IDRs across variants). Segments are cut only at
keyframes, as packagers do: under the ``keyframe_interval`` fault the GOP grows and
the segments stretch with it (EXTINF > EXT-X-TARGETDURATION, RFC 8216 §4.3.3.1).

Audio is passed through (AAC from the studio, wrapped in ADTS for MPEG-TS); each
segment is muxed in its own MPEG-TS container, starting with PAT/PMT and an IDR.

LL-HLS partial segments (RFC 8216bis §4.4.4.9) are cut as the frames come: every
``LabConfig.part_frames`` frames of an open segment are muxed into their own small MPEG-TS
(with PAT/PMT, as LL-HLS allows for TS parts; the first of a segment starts at its IDR and is
INDEPENDENT), with the audio captured before the next frame, once that frame is encoded and
is no key frame. The segment's last part holds what is left at the cut and comes out with it. The whole segment is still muxed once at its end (the classic
HLS and DASH views serve that).

Synchronous; runs in one worker thread. Control comes as a :class:`TranscodeControl`
snapshot per call.
"""

from __future__ import annotations

import fractions
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av

from .config import LabConfig, RenditionConfig, adts_rate_index
from .studio import TS_HZ, MediaPacket

_TB = fractions.Fraction(1, TS_HZ)
GAP_TICKS = TS_HZ  # a jump of more than 1 s in source pts is a discontinuity


@dataclass(frozen=True, slots=True)
class TranscodeControl:
    stall_all: bool = False
    stalled: frozenset[str] = frozenset()
    gop_s: int | None = None  # keyframe_interval fault


@dataclass(slots=True)
class SegmentOut:
    rendition: str
    data: bytes
    duration_s: float
    pdt_wall: float          # capture wall time of the first frame
    first_pts: int
    discontinuity: bool
    frames: int
    last_capture_wall: float
    last_delivered_wall: float
    last_encoded_wall: float
    cut_wall: float = 0.0


@dataclass(slots=True)
class PartOut:
    """One LL-HLS partial segment of ``rendition``'s open segment (module docstring)."""

    rendition: str
    data: bytes
    duration_s: float
    first: bool              # the segment's first part: starts at its IDR (INDEPENDENT=YES)
    pdt_wall: float          # capture wall time of the segment's first frame
    discontinuity: bool      # the segment starts after a discontinuity


@dataclass(slots=True)
class PartsClosed:
    """A rendition's encode stopped half-way through a segment: the parts it had cut, as one
    segment (LL-HLS keeps the segment whose parts it listed; classic HLS never had it)."""

    rendition: str
    data: bytes
    duration_s: float


@dataclass(slots=True)
class _Open:
    first_pts: int
    pdt_wall: float
    discontinuity: bool
    video: list[tuple[int, bytes, bool]] = field(default_factory=list)
    audio: list[tuple[int, bytes, float]] = field(default_factory=list)  # (pts, ADTS, capture wall)
    last_capture: float = 0.0
    last_delivered: float = 0.0
    last_encoded: float = 0.0
    part_video_i: int = 0   # the first frame not yet in a part
    part_audio_i: int = 0   # the first audio frame not yet in a part


class _Rung:
    def __init__(self, cfg: LabConfig, r: RenditionConfig) -> None:
        self.r = r
        self.cfg = cfg
        self.enc = self._open()
        self.open: _Open | None = None
        self.last_period: int | None = None
        self.force = True
        self.discontinuity = False
        self.codecs: str | None = None
        self.stalled = False
        self.pending_audio: list[tuple[int, bytes, float]] = []

    def _open(self) -> av.VideoCodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.r.width, self.r.height, "yuv420p"
        ctx.time_base = _TB
        ctx.framerate = fractions.Fraction(self.cfg.fps, 1)
        ctx.bit_rate = self.r.bitrate_kbps * 1000
        ctx.options = {
            "preset": self.cfg.x264_preset, "tune": "zerolatency",
            # keyframes only where we force them (segment boundaries)
            "x264-params": "keyint=infinite:scenecut=0:forced-idr=1:threads=1:repeat-headers=1",
        }
        ctx.open()
        return ctx


def _adts(payload: bytes, rate_index: int, channels: int = 1) -> bytes:
    n = len(payload) + 7
    return bytes((0xFF, 0xF1, (1 << 6) | (rate_index << 2) | (channels >> 2),
                  ((channels & 3) << 6) | (n >> 11), (n >> 3) & 0xFF, ((n & 7) << 5) | 0x1F,
                  0xFC)) + payload


def h264_codecs_tag(annexb: bytes) -> str | None:
    """RFC 6381 ``avc1.PPCCLL`` from the first SPS in an Annex B access unit."""
    i = annexb.find(b"\x00\x00\x01")
    while i != -1:
        j = i + 3
        if j + 3 < len(annexb) and annexb[j] & 0x1F == 7:
            return f"avc1.{annexb[j + 1]:02X}{annexb[j + 2]:02X}{annexb[j + 3]:02X}"
        i = annexb.find(b"\x00\x00\x01", j)
    return None


def mux_ts(video: list[tuple[int, bytes, bool]], audio: list[tuple[int, bytes]],
           width: int, height: int, fps: int, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mpegts")
    try:
        vs = out.add_mux_stream("h264", rate=fps, width=width, height=height)
        vs.time_base = _TB
        a_s = out.add_mux_stream("aac", rate=sample_rate) if audio else None
        if a_s is not None:
            a_s.time_base = _TB
        items: list[tuple[int, int, bytes, bool]] = [(p, 0, d, k) for p, d, k in video]
        items += [(p, 1, d, False) for p, d in audio]
        items.sort(key=lambda x: (x[0], x[1]))
        for pts, kind, data, key in items:
            pkt = av.Packet(data)
            pkt.pts = pkt.dts = pts
            pkt.time_base = _TB
            stream = vs if kind == 0 else a_s
            assert stream is not None, "audio packets only when the ladder has audio"
            pkt.stream = stream
            if key:
                pkt.is_keyframe = True
            out.mux(pkt)
    finally:
        out.close()
    return buf.getvalue()


class LadderTranscoder:
    """Decode once, scale and encode per rung, cut segments at forced IDRs."""

    def __init__(self, cfg: LabConfig, wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.wall = wall
        self.rungs = [_Rung(cfg, r) for r in cfg.renditions]
        self._dec = av.CodecContext.create("h264", "r")
        self._need_key = True
        self._last_src_pts: int | None = None
        self._rate_index = adts_rate_index(cfg.sample_rate)
        self._frame_ticks = TS_HZ // cfg.fps
        self._period_ticks = cfg.segment_s * TS_HZ
        self.frames_in = 0
        self.last_delivered_wall = 0.0
        self.last_encoded_wall = 0.0
        self.last_capture_wall = 0.0

    @property
    def codecs(self) -> dict[str, str | None]:
        return {g.r.name: g.codecs for g in self.rungs}

    def process(self, packets: list[MediaPacket], ctl: TranscodeControl) -> list[SegmentOut | PartOut | PartsClosed]:
        """Segments and parts completed by ``packets``, in the order they were cut (a segment's
        last part before the segment)."""
        out: list[SegmentOut | PartOut | PartsClosed] = []
        for g in self.rungs:
            stalled = ctl.stall_all or g.r.name in ctl.stalled
            if stalled and not g.stalled:
                if g.open is not None and g.open.part_video_i:
                    out.append(self._parts_closed(g))
                g.open = None  # the hung encoder's partial segment is lost (to classic HLS and DASH)
                g.pending_audio = []
            if not stalled and g.stalled:
                g.force = True
                g.discontinuity = True
            g.stalled = stalled
        for m in packets:
            if m.kind == "audio":
                data = _adts(m.data, self._rate_index)
                for g in self.rungs:
                    if g.open is not None and not g.stalled:
                        g.open.audio.append((m.pts, data, m.capture_wall))
                continue
            self._video(m, ctl, out)
        return out

    def flush_all(self) -> list[SegmentOut | PartOut]:
        """Close every open segment (the input ended)."""
        out: list[SegmentOut | PartOut] = []
        for g in self.rungs:
            if g.open is not None and g.open.video:
                out.extend(self._finish(g, g.open.video[-1][0] + self._frame_ticks, None))
            g.open = None
            g.pending_audio = []
            g.force = True
            g.discontinuity = True
        return out

    def _video(self, m: MediaPacket, ctl: TranscodeControl, out: list[SegmentOut | PartOut | PartsClosed]) -> None:
        if self._last_src_pts is not None and not (0 < m.pts - self._last_src_pts <= GAP_TICKS):
            # the input jumped: a new publish, a drop, a stall upstream
            out.extend(self.flush_all())
            self._dec = av.CodecContext.create("h264", "r")
            self._need_key = True
        self._last_src_pts = m.pts
        if self._need_key and not m.keyframe:
            return
        self._need_key = False
        self.last_delivered_wall = m.delivered_wall
        self.last_capture_wall = m.capture_wall
        pkt = av.Packet(m.data)
        pkt.pts = pkt.dts = m.pts
        pkt.time_base = _TB
        try:
            frames = self._dec.decode(pkt)
        except av.error.FFmpegError:
            self._need_key = True
            return
        for frame in frames:
            self.frames_in += 1
            pts = frame.pts if frame.pts is not None else m.pts
            if ctl.stall_all:
                continue
            period_ticks = (ctl.gop_s * TS_HZ) if ctl.gop_s else self._period_ticks
            period = pts // period_ticks
            for g in self.rungs:
                if g.stalled:
                    continue
                key = g.force or period != g.last_period
                g.last_period = period
                g.force = False
                if g.r.width == frame.width and g.r.height == frame.height:
                    f = frame
                else:
                    f = frame.reformat(width=g.r.width, height=g.r.height, format="yuv420p")
                f.pts = pts
                f.time_base = _TB
                f.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
                for p in g.enc.encode(f):
                    data = bytes(p)
                    is_key = bool(p.is_keyframe)
                    ppts = int(p.pts)  # type: ignore[arg-type]  # PyAV types pts Optional; an encoder's packets carry one
                    if is_key and g.codecs is None:
                        g.codecs = h264_codecs_tag(data)
                    if is_key and g.open is not None and g.open.video:
                        out.extend(self._finish(g, ppts, m.capture_wall))
                    if g.open is None:
                        if not is_key:
                            continue
                        g.open = _Open(first_pts=ppts, pdt_wall=m.capture_wall,
                                       discontinuity=g.discontinuity,
                                       audio=g.pending_audio)
                        g.pending_audio = []
                        g.discontinuity = False
                    g.open.video.append((ppts, data, is_key))
                    g.open.last_capture = m.capture_wall
                    g.open.last_delivered = m.delivered_wall
                    g.open.last_encoded = self.wall()
                    if len(g.open.video) - g.open.part_video_i > self.cfg.part_frames:
                        # a part is cut once the frame after it is encoded and is no key frame:
                        # a segment's last part always comes out with the segment (_finish), so the
                        # audio up to the cut is in a part and no part is hinted that never comes
                        out.append(self._part(g, ppts, m.capture_wall, upto=len(g.open.video) - 1))
        self.last_encoded_wall = self.wall()

    def _parts_closed(self, g: _Rung) -> PartsClosed:
        """The frames and audio of ``g``'s open segment that went out in parts, muxed as one
        segment: what LL-HLS lists for a segment whose encode stopped half-way."""
        seg = g.open
        assert seg is not None
        video = seg.video[:seg.part_video_i]
        data = mux_ts(video, [(p, d) for p, d, _ in seg.audio[:seg.part_audio_i]], g.r.width, g.r.height,
                      self.cfg.fps, self.cfg.sample_rate)
        return PartsClosed(g.r.name, data, (video[-1][0] + self._frame_ticks - video[0][0]) / TS_HZ)

    def _part(self, g: _Rung, end_pts: int, cut_capture: float | None, upto: int | None = None) -> PartOut:
        """The frames of ``g``'s open segment not yet in a part (up to index ``upto``, excluded;
        all when None), ending at ``end_pts``, with the audio captured before ``cut_capture``
        (None: all of it), as one LL-HLS part."""
        seg = g.open
        assert seg is not None
        upto = len(seg.video) if upto is None else upto
        video = seg.video[seg.part_video_i:upto]
        j = seg.part_audio_i
        while j < len(seg.audio) and (cut_capture is None or seg.audio[j][2] < cut_capture - 1e-6):
            j += 1
        audio = [(p, d) for p, d, _ in seg.audio[seg.part_audio_i:j]]
        first = seg.part_video_i == 0
        seg.part_video_i, seg.part_audio_i = upto, j
        data = mux_ts(video, audio, g.r.width, g.r.height, self.cfg.fps, self.cfg.sample_rate)
        return PartOut(rendition=g.r.name, data=data, duration_s=(end_pts - video[0][0]) / TS_HZ, first=first,
                       pdt_wall=seg.pdt_wall, discontinuity=seg.discontinuity)

    def _finish(self, g: _Rung, end_pts: int, cut_capture: float | None = None) -> list[SegmentOut | PartOut]:
        """Close ``g``'s open segment at the key frame ``end_pts`` (captured at ``cut_capture``):
        its last part (when frames are left that no part holds), then the segment.

        Audio is cut by capture time, not by its timestamp: the audio captured together
        with the segment's frames stays in the segment even when its PTS is shifted
        (``av_desync``), as an encoder with a wrong audio delay delivers it, so the skew
        shows inside the segment as an A/V offset rather than as a gap at the cut.
        """
        seg = g.open
        assert seg is not None
        last: list[SegmentOut | PartOut] = []
        if seg.part_video_i < len(seg.video):
            last.append(self._part(g, end_pts, cut_capture))
        if cut_capture is None:  # input ended: everything captured so far belongs here
            audio, rest = seg.audio, []
        else:
            audio = [a for a in seg.audio if a[2] < cut_capture - 1e-6]
            rest = [a for a in seg.audio if a[2] >= cut_capture - 1e-6]
        data = mux_ts(seg.video, [(p, d) for p, d, _ in audio], g.r.width, g.r.height, self.cfg.fps,
                      self.cfg.sample_rate)
        g.open = None
        result = SegmentOut(
            rendition=g.r.name, data=data, duration_s=(end_pts - seg.first_pts) / TS_HZ,
            pdt_wall=seg.pdt_wall, first_pts=seg.first_pts, discontinuity=seg.discontinuity,
            frames=len(seg.video), last_capture_wall=seg.last_capture,
            last_delivered_wall=seg.last_delivered, last_encoded_wall=seg.last_encoded,
            cut_wall=self.wall())
        # audio that belongs after the cut waits for the next segment
        g.pending_audio = rest
        return [*last, result]
