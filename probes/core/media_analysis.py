"""Media analysis of what viewers receive: pure checks on decoded frames and samples.

One :class:`MediaAnalyser` per rendition is fed that rendition's segments in order
(:class:`probes.core.segment_decode.DecodedSegment`); it keeps the state that spans segment
boundaries (a freeze that started in the previous segment, the last key frame, the last
timestamps) and returns one :class:`MediaFindings` per segment: the measured values and
the faults, named as in DESIGN.md. No I/O, no clock: time is the media's own
presentation timeline (seconds), unwrapped across the 33-bit MPEG-TS PTS wrap
(ISO/IEC 13818-1, 2^33 ticks of 90 kHz); a jump larger than ``discontinuity_s`` or
backwards is a new timeline (EXT-X-DISCONTINUITY, encoder restart) and resets the runs.

Checks and where their defaults come from (shared/THRESHOLDS.md):

- ``frozen_video``: consecutive near-identical frames for >= 2 s (testrtc
  ``videoframechecker.js``; broadcast practice; FFmpeg ``freezedetect`` d=2 s). A frame is
  "near-identical" when the mean absolute difference of its 64x36 luma from the freeze's
  reference frame is under ``freeze_mad`` (1.0 of 255, ~ -48 dB of full scale: looser
  than freezedetect's -60 dB because low-bitrate encodes drift while a picture stands
  still). A key frame is coded afresh, so it re-anchors the reference when its jump is
  under ``freeze_mad_keyframe`` (requantisation, not motion).
- ``black_video``: mean luma < 20 of 255 (testrtc ``videoframechecker.js``) for >= 2 s
  (FFmpeg ``blackdetect`` default d=2 s). A black picture is also a still one: while it
  is black, only ``black_video`` is reported.
- ``silent_audio``: RMS below -50 dBFS (AWS Elemental MediaLive audio-silence failover
  default) for >= 2 s (MediaLive's shortest silence threshold is 1 s; 2 s matches the
  video checks). dBFS here is 20·log10(RMS) of float samples in [-1, 1] (a full-scale
  sine reads -3 dBFS); digital silence reads ``floor_dbfs``.
- ``audio_clipping``: more than 6 consecutive samples at full scale (testrtc
  ``mictest.js``); "full scale" is ``clip_level`` 0.95 (-0.45 dBFS), because a lossy codec
  smears a clipped waveform instead of holding it at 1.0 (measured: after AAC, a hard-clipped
  200 Hz tone almost never stays >= 0.99 for 7 samples, but does stay >= 0.95); a signal
  that holds above -0.45 dBFS for 7 samples already breaks EBU R128's -1 dBTP maximum.
- ``av_desync``: audio start PTS minus video start PTS within the segment; warn beyond
  ±80 ms, fault beyond ±200 ms (broadcast practice; EBU R37 is tighter: +40/-60 ms).
  Positive means audio is late. This sees timestamp skew as delivered in a segment; an
  offset baked into the content with aligned timestamps needs a content marker (the
  beacon).
- ``timestamp_gap``: a video frame interval over ``gap_frames`` (1.5) nominal frame
  durations (a frame missing: its count goes to ``dropped_frames``) or an audio gap over
  ``audio_gap_s``.
- ``decode_errors``: corrupt packets/frames or undecodable data (any at all). Such a
  segment breaks the continuity checks: the next one is not blamed for its hole.
- ``keyframe_interval_long``: more than 4 s between key frames (YouTube Live rejects
  GOPs above 4 s, ``gopSizeLong``; Twitch Inspector; 2 s recommended). The open interval
  counts too, so a stream that stops sending key frames is caught before the next one.
- ``bitrate_over_declared``: a segment's bitrate above BANDWIDTH by more than 10 %
  (RFC 8216 §4.3.4.2: BANDWIDTH is the peak segment bitrate; Apple
  ``mediastreamvalidator`` flags measured peaks more than 10 % over it). A DASH @bandwidth is
  no peak: a segment of D s may carry @bandwidth x (D + @minBufferTime) bits (ISO/IEC 23009-1
  §5.3.5.2), and 10 % over that is the fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from probes.base import Evidence, Sample, State
from probes.core.config import StrictModel
from probes.core.segment_decode import DecodedSegment
from probes.faults import Fault

__all__ = ["MediaConfig", "MediaFault", "MediaFindings", "MediaAnalyser", "FAULTS"]

PTS_WRAP_S = (1 << 33) / 90_000.0
_EPS = 1e-3  # seconds: a 2.000-s run summed from 50 frame durations is 1.9999999

FAULTS = (
    Fault.FROZEN_VIDEO,
    Fault.BLACK_VIDEO,
    Fault.SILENT_AUDIO,
    Fault.AUDIO_CLIPPING,
    Fault.AV_DESYNC,
    Fault.TIMESTAMP_GAP,
    Fault.DECODE_ERRORS,
    Fault.KEYFRAME_INTERVAL_LONG,
    Fault.BITRATE_OVER_DECLARED,
)


class MediaConfig(StrictModel):
    """Thresholds of the media checks; the module docstring gives each one's source."""

    freeze_min_s: float = Field(2.0, gt=0)
    freeze_mad: float = Field(1.0, gt=0, le=255)
    freeze_mad_keyframe: float = Field(4.0, gt=0, le=255)
    black_luma: float = Field(20.0, ge=0, le=255)
    black_min_s: float = Field(2.0, gt=0)
    silence_dbfs: float = Field(-50.0, le=0)
    silence_min_s: float = Field(2.0, gt=0)
    clip_level: float = Field(0.95, gt=0, le=1.0)
    clip_min_samples: int = Field(7, ge=1, description="more than 6 consecutive (testrtc)")
    av_warn_s: float = Field(0.080, ge=0)
    av_fault_s: float = Field(0.200, ge=0)
    keyframe_max_s: float = Field(4.0, gt=0)
    gap_frames: float = Field(1.5, gt=1.0)
    audio_gap_s: float = Field(0.05, gt=0)
    discontinuity_s: float = Field(10.0, gt=0)
    bitrate_tolerance: float = Field(0.10, ge=0)
    floor_dbfs: float = Field(-120.0, lt=0)


@dataclass(frozen=True, slots=True)
class MediaFault:
    """One fault found in a segment. ``severity`` is ``fault`` or ``warn``."""

    fault: Fault
    severity: str
    detail: str
    value: float | None = None


@dataclass(slots=True)
class MediaFindings:
    """What one segment showed, with the state carried from the segments before it.

    Run lengths (``frozen_s``, ``black_s``, ``silence_s``) are the longest run seen up
    to the end of this segment that touches it, in seconds; None means "not measured"
    (no video, no audio, nothing to compare with yet).
    """

    start_s: float | None = None
    duration_s: float | None = None
    video_frames: int = 0
    frame_rate: float | None = None
    mean_luma: float | None = None
    frozen_s: float = 0.0
    black_s: float = 0.0
    audio_rms_dbfs: float | None = None
    audio_peak_dbfs: float | None = None
    silence_s: float = 0.0
    clipped_runs: int = 0
    av_offset_s: float | None = None
    dropped_frames: int = 0
    audio_gap_s: float = 0.0
    decode_errors: int = 0
    error: str | None = None
    keyframe_interval_s: float | None = None
    bitrate_bps: float | None = None
    declared_bandwidth_bps: float | None = None
    discontinuity: bool = False
    faults: list[MediaFault] = field(default_factory=list)
    unjudged: set[Fault] = field(default_factory=set)
    """Checks this segment cannot judge either way (a picture still or black for half the
    segment or more costs almost no bits: it says nothing of an encoder's peak bitrate)."""

    @property
    def fault_names(self) -> set[str]:
        """Names of the faults at ``fault`` severity (warnings left out)."""
        return {f.fault for f in self.faults if f.severity == "fault"}

    @property
    def warning_names(self) -> set[str]:
        return {f.fault for f in self.faults if f.severity == "warn"}

    def figures(self) -> dict[str, float]:
        """The numeric values, for ``Evidence.figures`` and span attributes."""
        names = (
            "duration_s", "video_frames", "frame_rate", "mean_luma", "frozen_s", "black_s",
            "audio_rms_dbfs", "audio_peak_dbfs", "silence_s", "clipped_runs", "av_offset_s",
            Fault.DROPPED_FRAMES, "audio_gap_s", Fault.DECODE_ERRORS, "keyframe_interval_s",
            "bitrate_bps", "declared_bandwidth_bps",
        )  # fmt: skip
        out: dict[str, float] = {}
        for name in names:
            v = getattr(self, name)
            if v is not None and math.isfinite(float(v)):
                out[name] = float(v)
        return out

    def evidence(self, stage: str, component: str, rendition: str | None = None) -> list[Evidence]:
        """One DEGRADED Evidence per fault, or one OK Evidence (warnings in its detail)."""
        figures = self.figures()
        bad = [f for f in self.faults if f.severity == "fault"]
        if bad:
            return [
                Evidence(stage, component, State.DEGRADED, fault=f.fault, detail=f.detail,
                         rendition=rendition, figures=dict(figures))
                for f in bad
            ]  # fmt: skip
        detail = "; ".join(f.detail for f in self.faults) or "media looks healthy"
        return [Evidence(stage, component, State.OK, detail=detail, rendition=rendition, figures=figures)]

    def samples(self, labels: Mapping[str, str]) -> list[Sample]:
        """Catalog metrics for this segment; ``labels`` come from the caller (vocabulary only)."""
        lab = dict(labels)
        out = [
            Sample("signalpath_video_frozen", lab, 1.0 if Fault.FROZEN_VIDEO in self.fault_names else 0.0),
            Sample("signalpath_video_black", lab, 1.0 if Fault.BLACK_VIDEO in self.fault_names else 0.0),
            Sample("signalpath_segment_decode_errors_total", lab, float(self.decode_errors), kind="inc"),
        ]
        if self.audio_rms_dbfs is not None:
            out.append(Sample("signalpath_audio_level_dbfs", lab, self.audio_rms_dbfs))
        if self.av_offset_s is not None:
            out.append(Sample("signalpath_av_sync_offset_seconds", lab, self.av_offset_s))
        if self.keyframe_interval_s is not None:
            out.append(Sample("signalpath_keyframe_interval_seconds", lab, self.keyframe_interval_s))
        return out


@dataclass(slots=True)
class _Run:
    """A run of consecutive qualifying frames/chunks on the media timeline."""

    start: float | None = None
    end: float = 0.0

    def extend(self, ok: bool, t: float, dur: float) -> float:
        if not ok:
            self.start = None
            return 0.0
        if self.start is None:
            self.start = t
        self.end = t + dur
        return self.end - self.start

    @property
    def length(self) -> float:
        return 0.0 if self.start is None else self.end - self.start


class MediaAnalyser:
    """Stateful analysis of one rendition's consecutive segments."""

    def __init__(self, config: MediaConfig | None = None):
        self.config = config or MediaConfig()
        self._reset()

    def _reset(self) -> None:
        self._ref: np.ndarray | None = None  # freeze reference luma (uint8)
        self._frozen = _Run()
        self._black = _Run()
        self._silence = _Run()
        self._clip_carry = 0  # clipped samples at the end of the previous segment
        self._last_video: float | None = None
        self._last_picture: float | None = None  # the time of the newest decoded picture
        self._frame_dur: float | None = None
        self._audio_end: float | None = None
        self._last_key: float | None = None
        self._wrap = 0.0
        self._last_t: float | None = None

    def feed(
        self,
        seg: DecodedSegment,
        *,
        segment_duration: float | None = None,
        declared_bandwidth: float | None = None,
        bandwidth_buffer_s: float = 0.0,
        target_duration: float | None = None,
    ) -> MediaFindings:
        """Analyse the next segment. ``segment_duration`` is its EXTINF (else measured);
        ``declared_bandwidth`` its variant's BANDWIDTH in bit/s (else not checked);
        ``bandwidth_buffer_s`` the buffer that bandwidth is declared over (DASH @minBufferTime;
        0 for HLS, whose BANDWIDTH is a peak); ``target_duration`` the playlist's: a segment shorter
        than half of it is not judged against BANDWIDTH alone (RFC 8216 §4.3.4.2: the peak segment
        bit rate is over contiguous segments lasting 0.5 to 1.5 target durations; a short segment
        cut at an encoder stall is mostly its key frame)."""
        cfg = self.config
        f = MediaFindings(decode_errors=seg.decode_errors, error=seg.error, declared_bandwidth_bps=declared_bandwidth)
        vpts, apts = self._timeline(seg, f)
        if seg.frame_rate and seg.frame_rate > 0:
            self._frame_dur = 1.0 / seg.frame_rate
        elif vpts.size > 1:
            self._frame_dur = float(np.median(np.diff(vpts)))
        f.frame_rate = (1.0 / self._frame_dur) if self._frame_dur else None
        f.video_frames = int(vpts.size)

        if vpts.size:
            self._video(seg, vpts, f)
        if apts.size and seg.sample_rate:
            self._audio(seg, apts, f)
        if vpts.size and apts.size:
            # the offset where the segment starts and where it ends: a skew of the timestamps holds
            # at both (the smaller one counts; none when they disagree in sign), while audio that
            # merely starts late in the first segment after a (re)start, or a packager's uneven cut,
            # shows at one end only
            start = float(apts[0] - vpts[0])
            end = start
            if seg.sample_rate and self._frame_dur:
                end = float(apts[-1] + seg.audio_chunk_len[-1] / seg.sample_rate - (vpts[-1] + self._frame_dur))
            if f.audio_gap_s > 0 or f.dropped_frames > 0:
                # a timestamp jump in one stream inside this segment (an encoder changing its audio
                # delay) shifts it against the other from there on: the offset at the end counts,
                # so the desync is named with the jump that made it
                f.av_offset_s = end if abs(end) > abs(start) else start
            else:
                f.av_offset_s = min(start, end, key=abs) if start * end > 0 else 0.0
            off = abs(f.av_offset_s)
            if off > cfg.av_fault_s or off > cfg.av_warn_s:
                sev = "fault" if off > cfg.av_fault_s else "warn"
                side = "late" if f.av_offset_s > 0 else "early"
                f.faults.append(
                    MediaFault(Fault.AV_DESYNC, sev, f"audio {side} by {off * 1000:.0f} ms against video", f.av_offset_s)
                )

        # duration and bitrate
        span_v = (vpts[-1] - vpts[0] + (self._frame_dur or 0.0)) if vpts.size else None
        span_a = (apts[-1] - apts[0] + seg.audio_chunk_len[-1] / seg.sample_rate) if apts.size and seg.sample_rate else None
        f.duration_s = segment_duration if segment_duration else (span_v or span_a)
        if f.duration_s and f.duration_s > 0 and seg.size_bytes:
            f.bitrate_bps = seg.size_bytes * 8 / f.duration_s
            # DASH's @bandwidth bounds a leaky bucket: a segment of D s may carry what arrives at
            # that rate in D + @minBufferTime s (ISO/IEC 23009-1 §5.3.5.2)
            allowed = declared_bandwidth * (1 + bandwidth_buffer_s / f.duration_s) if declared_bandwidth else 0.0
            if target_duration and f.duration_s < 0.5 * target_duration:
                f.unjudged.add(Fault.BITRATE_OVER_DECLARED)
            elif declared_bandwidth and f.bitrate_bps > allowed * (1 + cfg.bitrate_tolerance):
                f.faults.append(
                    MediaFault(
                        Fault.BITRATE_OVER_DECLARED, "fault",
                        f"segment at {f.bitrate_bps / 1e3:.0f} kbit/s, above the declared "
                        f"{declared_bandwidth / 1e3:.0f} kbit/s" + (
                            f" (over a {bandwidth_buffer_s:g}-s minBufferTime: {allowed / 1e3:.0f} kbit/s allowed)"
                            if bandwidth_buffer_s else ""),
                        f.bitrate_bps,
                    )
                )  # fmt: skip
            elif max(f.frozen_s or 0.0, f.black_s or 0.0) >= f.duration_s / 2:
                # mostly a still or black picture (also where it began mid-segment, before it is a
                # frozen_video fault): it costs almost no bits
                f.unjudged.add(Fault.BITRATE_OVER_DECLARED)
        if seg.decode_errors or seg.error:
            f.decode_errors = max(seg.decode_errors, 1)
            f.faults.append(
                MediaFault(Fault.DECODE_ERRORS, "fault", f"{f.decode_errors} decode error(s) in the segment", f.decode_errors)
            )
            # what was lost is unknown: the next segment's gap and GOP checks start afresh
            # instead of blaming the hole the corrupt segment left
            self._last_video = self._last_picture = self._audio_end = self._last_key = None
        return f

    # --- timeline -----------------------------------------------------------

    def _timeline(self, seg: DecodedSegment, f: MediaFindings) -> tuple[np.ndarray, np.ndarray]:
        """Unwrap PTS and detect discontinuities; returns video and audio times (s)."""
        vpts = seg.video_pts
        apts = seg.audio_chunk_pts
        firsts = [a[0] for a in (vpts, apts) if a.size]
        if not firsts:
            return vpts, apts
        first = min(firsts)
        if self._last_t is not None:
            t = first + self._wrap
            if t < self._last_t - PTS_WRAP_S / 2:
                self._wrap += PTS_WRAP_S
            t = first + self._wrap
            if t < self._last_t - self.config.discontinuity_s / 10 or t > self._last_t + self.config.discontinuity_s:
                f.discontinuity = True
                wrap = self._wrap
                self._reset()
                self._wrap = wrap
        vpts = vpts + self._wrap
        apts = apts + self._wrap
        lasts = [a[-1] for a in (vpts, apts) if a.size]
        self._last_t = max(lasts)
        f.start_s = float(first + self._wrap)
        return vpts, apts

    # --- video --------------------------------------------------------------

    def _video(self, seg: DecodedSegment, vpts: np.ndarray, f: MediaFindings) -> None:
        cfg = self.config
        dur = self._frame_dur or 0.0
        luma = seg.video_luma
        if luma.dtype != np.uint8:
            luma = np.clip(luma, 0, 255).astype(np.uint8)
        # the pictures decoded: every frame, or the key frames only (DecodeOptions.video_frames='key',
        # the media probe at scale): then a still or black run is one from key frame to key frame
        index = seg.video_luma_index
        if index.size != luma.shape[0]:
            index = np.arange(min(luma.shape[0], vpts.size))
        # integer sums: exact, and ~7x cheaper per frame than float32 copies (the hot path at scale)
        means = luma.reshape(luma.shape[0], -1).sum(axis=1, dtype=np.uint64) / max(1, luma[0].size) \
            if luma.shape[0] else np.empty(0)
        f.mean_luma = float(means.mean()) if means.size else None
        frozen_max = black_max = 0.0
        prev_t = self._last_picture
        for j in range(index.size):
            i = int(index[j])
            t = float(vpts[i])
            key = bool(seg.video_key[i])
            cur = luma[j]
            black = bool(means[j] < cfg.black_luma)
            black_max = max(black_max, self._black.extend(black, t, dur))
            still = False
            if self._ref is not None and self._ref.shape == cur.shape:  # a new frame size is a new picture
                d = np.maximum(cur, self._ref)
                d -= np.minimum(cur, self._ref)
                mad = int(d.sum(dtype=np.uint64)) / d.size
                still = mad < (cfg.freeze_mad_keyframe if key else cfg.freeze_mad)
            if still:
                if self._frozen.start is None:  # the run starts with the frame being repeated
                    self._frozen.start = prev_t if prev_t is not None else t
                self._frozen.end = t + dur
                if not black:
                    frozen_max = max(frozen_max, self._frozen.length)
            else:
                self._frozen.start = None
            if not still or key:
                self._ref = cur.copy()  # a new picture, or a key frame re-coding the same one (a copy: not the segment)
            prev_t = t
        if index.size:
            self._last_picture = prev_t
        f.frozen_s = frozen_max
        f.black_s = black_max
        if black_max >= cfg.black_min_s - _EPS:
            f.faults.append(MediaFault(Fault.BLACK_VIDEO, "fault", f"black picture for {black_max:.1f} s", black_max))
        if frozen_max >= cfg.freeze_min_s - _EPS:
            f.faults.append(MediaFault(Fault.FROZEN_VIDEO, "fault", f"picture frozen for {frozen_max:.1f} s", frozen_max))

        # timestamp gaps / dropped frames (against the previous segment's last frame too)
        prev = self._last_video
        times = vpts if prev is None else np.concatenate(([prev], vpts))
        if dur > 0 and times.size > 1:
            d = np.diff(times)
            gaps = d[(d > cfg.gap_frames * dur) & (d < cfg.discontinuity_s)]
            f.dropped_frames = int(np.sum(np.rint(gaps / dur) - 1))
            if f.dropped_frames > 0:
                f.faults.append(
                    MediaFault(Fault.TIMESTAMP_GAP, "fault",
                               f"{f.dropped_frames} video frame(s) missing (gap of {gaps.max() * 1000:.0f} ms)",
                               float(f.dropped_frames))
                )  # fmt: skip
        self._last_video = float(vpts[-1])

        # key-frame interval (completed intervals, and the open one)
        keys = vpts[seg.video_key]
        # frames after a hole in the video timestamps: an interval across a hole (an encoder that
        # stopped for a few seconds) is no GOP
        holes = times[1:][np.diff(times) > cfg.gap_frames * dur] if dur > 0 and times.size > 1 else times[:0]
        intervals = []
        for k in keys:
            if self._last_key is not None and k > self._last_key \
                    and not np.any((holes > self._last_key) & (holes <= k)):
                intervals.append(float(k - self._last_key))
            self._last_key = float(k)
        interval = max(intervals) if intervals else None
        if self._last_key is not None and np.any(holes > self._last_key):
            self._last_key = None  # the open interval runs across a hole: start afresh
        if self._last_key is not None:
            open_age = float(vpts[-1] + dur - self._last_key)
            if open_age > cfg.keyframe_max_s + _EPS and (interval is None or open_age > interval):
                interval = open_age
        f.keyframe_interval_s = interval
        if interval is not None and interval > cfg.keyframe_max_s + _EPS:
            f.faults.append(
                MediaFault(Fault.KEYFRAME_INTERVAL_LONG, "fault",
                           f"{interval:.1f} s between key frames (platforms reject > {cfg.keyframe_max_s:g} s)",
                           interval)
            )  # fmt: skip

    # --- audio --------------------------------------------------------------

    def _audio(self, seg: DecodedSegment, apts: np.ndarray, f: MediaFindings) -> None:
        cfg = self.config
        x = seg.audio_samples
        sr = seg.sample_rate
        n = x.shape[1]
        if n == 0:
            return
        power = np.square(x, dtype=np.float64).mean(axis=0)  # per sample, over channels
        rms = math.sqrt(float(power.mean()))
        peak = float(np.abs(x).max())
        f.audio_rms_dbfs = self._dbfs(rms)
        f.audio_peak_dbfs = self._dbfs(peak)

        # silence, chunk by chunk (one AAC frame is ~21 ms at 48 kHz)
        offsets = np.concatenate(([0], np.cumsum(seg.audio_chunk_len)[:-1]))
        lens = np.maximum(seg.audio_chunk_len, 1)
        chunk_rms = np.sqrt(np.add.reduceat(power, offsets) / lens)
        silent_lin = 10 ** (cfg.silence_dbfs / 20)
        silence_max = 0.0
        for i in range(apts.size):
            silence_max = max(
                silence_max, self._silence.extend(bool(chunk_rms[i] < silent_lin), float(apts[i]), seg.audio_chunk_len[i] / sr)
            )
        f.silence_s = silence_max
        if silence_max >= cfg.silence_min_s - _EPS:
            f.faults.append(
                MediaFault(Fault.SILENT_AUDIO, "fault", f"audio below {cfg.silence_dbfs:g} dBFS for {silence_max:.1f} s", silence_max)
            )

        # clipping: runs of full-scale samples in any channel
        clipped = (np.abs(x) >= cfg.clip_level).any(axis=0)
        runs = _run_lengths(clipped)
        if runs.size and clipped[0] and self._clip_carry:
            runs[0] += self._clip_carry
        f.clipped_runs = int(np.count_nonzero(runs >= cfg.clip_min_samples))
        self._clip_carry = int(runs[-1]) if runs.size and clipped[-1] else 0
        if f.clipped_runs:
            f.faults.append(
                MediaFault(Fault.AUDIO_CLIPPING, "fault",
                           f"{f.clipped_runs} clipped run(s) of more than {cfg.clip_min_samples - 1} full-scale samples",
                           float(f.clipped_runs))
            )  # fmt: skip

        # audio timestamp gaps
        ends = apts + seg.audio_chunk_len / sr
        starts = apts
        prev_end = self._audio_end
        expected = ends[:-1] if prev_end is None else np.concatenate(([prev_end], ends[:-1]))
        actual = starts[1:] if prev_end is None else starts
        gaps = actual - expected
        gaps = gaps[(gaps > cfg.audio_gap_s) & (gaps < cfg.discontinuity_s)]
        f.audio_gap_s = float(gaps.sum())
        if gaps.size:
            f.faults.append(
                MediaFault(Fault.TIMESTAMP_GAP, "fault", f"audio missing for {f.audio_gap_s * 1000:.0f} ms", f.audio_gap_s)
            )
        self._audio_end = float(ends[-1])

    def _dbfs(self, linear: float) -> float:
        if linear <= 0:
            return self.config.floor_dbfs
        return max(self.config.floor_dbfs, 20 * math.log10(linear))


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in ``mask``, in order."""
    if not mask.any():
        return np.empty(0, np.int64)
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return (edges[1::2] - edges[0::2]).astype(np.int64)
