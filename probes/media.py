"""Media probe: look inside the segments the origin serves, for what HTTP checks miss.

One attempt on one stream's origin: the master playlist (refreshed every
``MASTER_REFRESH_S``), the media playlist of each analysed rendition, and every segment
that appeared since the previous attempt, fetched once, decoded in the agent's CPU pool (a worker process) under
a bound (``probes.core.segment_decode``, STYLE.md 10) and fed, in order, to one
:class:`probes.core.media_analysis.MediaAnalyser` per rendition (frozen / black video, silence,
clipping, A/V offset, timestamp gaps, decode errors, key-frame interval, bitrate; the
thresholds and their sources are in ``probes/core/media_analysis.py``).

Which renditions (``MediaSettings.renditions``): ``lowest`` (default: the rendition every
viewer can fall back to, and the cheapest to decode), ``all``, or a list of names.

What comes out, per analysed rendition (stage ``origin``, component ``origin``, label
``rendition``): the media gauges of the newest analysed segment, the decode-error counter,
one span per analysed segment with its findings, and Evidence (a DEGRADED one per
content fault, else OK). Content faults describe the source or the transcode, not the
origin server: the localizer (agent/localize.py) puts a fault seen in every analysed
rendition on ``studio`` and one seen in some renditions only on ``transcode``/<rendition>.

Sampling at scale (``MediaSettings.sampling``; issue 19: 200 streams on one agent): decoding a
2-s 180p segment costs ~7.5 ms of a core (key frames and audio), so analysing every segment of
200 streams' lowest renditions would take ~0.75 core by itself. ``auto`` analyses every segment
while the agent analyses at most :data:`ALL_SEGMENTS_MAX_STREAMS` (50) streams; beyond, one
stretch in ``ceil(streams / 50)`` (200 streams: 1 in 4). A stretch is a run of consecutive
segments covering at least :data:`SAMPLE_RUN_S` (4 s) of media, at least two segments (2 at 2-s
segments): twice the 2-s duration of the freeze, black and silence checks, and two key frames of a
2-s GOP, so every check that spans segment boundaries still sees its whole window inside one run
(the analyser is reset at the start of each run: a skipped stretch is a hole in what was
analysed, not a gap in the stream). Streams are staggered (the phase is a CRC-32 of the stream's
name), so their runs do not start together. Skipped segments are not fetched. While a content
fault is reported on a rendition, every segment is analysed, so its course and its end are seen
segment by segment. The cost: a fault that begins in a skipped stretch is found at the next run,
up to ``(N - 1)`` runs later (200 streams, 2-s segments: up to 12 s more); the alternative at that
scale was shedding media analysis altogether (agent/selfwatch.py). Each analysed segment's span
says ``signalpath.media.sampled`` (``1/4``), and the attempt's figures ``sampling`` (N).

Catching up: on the first attempt only the newest segment is analysed; afterwards every
new segment in order, at most ``max_backlog`` per attempt. When more were missed, the
analyser is reset before the newest (a hole in what was analysed must not read as a
timestamp gap in the stream). A rendition whose playlist did not advance for
``3 x`` its target duration keeps no content evidence: the HLS probe reports the stale
playlist; stale findings must not outlive the media they describe.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
import zlib
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, SpanRecord, State, Thumbnail
from probes.core.config import StrictModel
from probes.core.media_analysis import MediaAnalyser, MediaConfig, MediaFindings
from probes.core.playlist import (
    MASTER_REFRESH_S,
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    Variant,
    choose_renditions,
    reusable,
)
from probes.core.segment_decode import DecodeOptions, decode_segment, jpeg_thumbnail, picture_array
from probes.faults import Fault
from probes.net.httpfetch import FetchResult

__all__ = ["ALL_FRAMES_MAX_STREAMS", "ALL_SEGMENTS_MAX_STREAMS", "SAMPLE_RUN_S", "MediaSettings", "probe",
           "resolve_sampling", "resolve_video_frames"]

STALE_FINDINGS_TD = 3.0  # target durations without a new segment before findings are dropped
ALL_FRAMES_MAX_STREAMS = 10
"""``video_frames: auto`` decodes every picture while the agent analyses at most this many
streams, key frames only beyond. Measured here (one core of this machine, a 2-s segment with
audio): every frame 22 ms at 180p, 37 ms at 360p; key frames only 10 and 15 ms (half of it the
demuxer's stream probe and the audio), so every frame costs 1-2 % of a core per stream: 10
streams stay under a fifth of a core (tests/perf/scale_bench.py watches 200)."""


ALL_SEGMENTS_MAX_STREAMS = 50
"""``sampling: auto`` analyses every segment while the agent analyses at most this many streams:
~0.19 core of decoding at 2-s segments (7.5 ms each, tests/perf/scale_bench.py), one in
``ceil(streams / this)`` stretches beyond, so the decoding stays about that (module docstring)."""
SAMPLE_RUN_S = 4.0
"""Media seconds in one sampled run (at least two segments): twice the 2-s windows of the freeze,
black and silence checks (module docstring)."""


def resolve_sampling(settings: MediaSettings, streams: int) -> MediaSettings:
    """``settings`` with ``sampling: auto`` made 'all' or N for an agent analysing ``streams``
    streams (:data:`ALL_SEGMENTS_MAX_STREAMS`)."""
    if settings.sampling != "auto":
        return settings
    n = math.ceil(streams / ALL_SEGMENTS_MAX_STREAMS)
    return settings.model_copy(update={"sampling": "all" if n <= 1 else n})


_Frames = TypeVar("_Frames", bound=StrictModel)


def resolve_video_frames(settings: _Frames, streams: int) -> _Frames:
    """``settings`` (any settings with a ``video_frames`` field: the media probe's, an ingest
    monitor's) with ``video_frames: auto`` made 'all' or 'key' for an agent decoding
    ``streams`` streams (:data:`ALL_FRAMES_MAX_STREAMS`)."""
    if getattr(settings, "video_frames", None) != "auto":
        return settings
    return settings.model_copy(update={"video_frames": "all" if streams <= ALL_FRAMES_MAX_STREAMS else "key"})


class MediaSettings(StrictModel):
    """``streams[].media``: content analysis of the origin's segments."""

    enabled: bool = True
    renditions: Literal["lowest", "all"] | list[str] = Field(
        "lowest", description="'lowest' (default), 'all', or rendition names, e.g. ['360p']")
    interval_s: float = Field(1.0, gt=0, le=60, description="media playlist poll interval")
    timeout_s: float = Field(10.0, gt=0, le=120, description="deadline of one attempt (fetch + decode)")
    max_concurrent_decodes: int = Field(1, ge=1, le=16, description="decodes in the CPU pool at once, per stream")
    max_backlog: int = Field(3, ge=1, le=30, description="new segments analysed per rendition per attempt")
    segment_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    playlist_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    verify_tls: bool = True
    transient_hold_s: float = Field(10.0, ge=0, le=600, description="a one-segment fault (decode errors) stays "
                                    "evidence this long, so the localizer's hysteresis can see it")
    video_frames: Literal["auto", "all", "key"] = Field(
        "auto", description="pictures decoded: 'all' (a still or black picture found in the segment where its "
        "2 s end), 'key' (key frames only, every frame still timed: 40-50 % of the decode CPU, a still or black "
        "picture found up to one GOP later), 'auto' ('all' while the agent analyses at most "
        f"{ALL_FRAMES_MAX_STREAMS} streams, 'key' beyond)")
    sampling: Literal["auto", "all"] | Annotated[int, Field(ge=2, le=100)] = Field(
        "auto", description="segments analysed: 'all'; N (2-100): one run of consecutive segments (at least "
        f"{SAMPLE_RUN_S:g} s, two segments) in N, and every segment while a content fault is reported; 'auto' "
        f"('all' while the agent analyses at most {ALL_SEGMENTS_MAX_STREAMS} streams, one in ceil(streams / "
        f"{ALL_SEGMENTS_MAX_STREAMS}) beyond)")
    checks: MediaConfig = Field(default_factory=MediaConfig)
    decode: DecodeOptions = Field(default_factory=DecodeOptions)
    thumbnail_width: int = Field(160, ge=0, le=640, description="an analysed segment's last picture as a JPEG "
                                 "this wide for the status page, kept in memory only (0: none)")
    thumbnail_every_s: float = Field(
        6.0, ge=0, le=300, description="a new picture at most this often per rendition, and at once when a "
        "segment's content faults differ from the last picture's (a black or frozen picture is shown from its "
        "first segment): a JPEG costs ~0.2 ms on the event loop (0: every segment)")


@dataclass(slots=True)
class _Rendition:
    analyser: MediaAnalyser
    last_seq: int | None = None
    advanced_at: float | None = None
    findings: MediaFindings | None = None
    findings_seq: int | None = None
    target_duration: float = 2.0
    cpu_s: float = 0.0  # decode + analysis CPU of the newest segment
    held: Evidence | None = None  # a transient fault (a corrupt segment) kept visible for a while
    held_until: float = 0.0
    document: tuple[str, bytes] | None = None  # FetchResult.document of the last parsed playlist
    playlist: MediaPlaylist | None = None
    init: tuple[InitSection, bytes] | None = None  # EXT-X-MAP fetched once per URI (and byte range)
    reported: frozenset[Fault] = frozenset()  # the faults of the last verdict given
    thumbnail: Thumbnail | None = None  # the newest picture made (thumbnail_every_s)
    thumbnail_clock: float = 0.0  # when it was made, on ProbeContext.clock
    analysed_seq: int | None = None  # the newest segment fed to the analyser


@dataclass(slots=True)
class _StreamState:
    semaphore: asyncio.Semaphore
    renditions: dict[str, _Rendition] = field(default_factory=dict)
    master: MasterPlaylist | None = None
    master_at: float = -1e9
    analysed: int = 0
    phase: int = 0  # sampling: where this stream's runs fall (a CRC-32 of its name)


def _decode_and_analyse(data: bytes, options: DecodeOptions, analyser: MediaAnalyser, size_bytes: int,
                        feed: dict[str, Any], picture: bool | tuple[str, ...], picture_width: int
                        ) -> tuple[MediaFindings, MediaAnalyser, np.ndarray | None, float]:
    """The CPU pool's job (agent/cpupool.py: a worker process by default): decode ``data`` and
    feed it to ``analyser`` (``feed``: its keyword arguments). Returns the findings, the
    analyser as it is after them (the caller keeps it for the next segment), the segment's last
    picture ``picture_width`` wide when ``picture`` is True or names content faults other than the
    segment's (scaled only then: ``options.keep_last_frame``), and the CPU seconds it all took.
    The samples stay in the worker: what comes back is a few kB."""
    t0 = time.thread_time()
    decoded = decode_segment(data, options)
    decoded.size_bytes = size_bytes  # figures (bitrate) count the segment, not its init section
    frame, decoded.last_frame = decoded.last_frame, None
    findings = analyser.feed(decoded, **feed)
    wanted = picture is True or picture != _fault_names(findings)
    last = picture_array(frame, picture_width) if wanted and frame is not None and picture_width else None
    return findings, analyser, last, time.thread_time() - t0


def _fault_names(findings: MediaFindings) -> tuple[str, ...]:
    return tuple(sorted(str(f) for f in findings.fault_names))


def _jpeg_and_measure(picture: np.ndarray, width: int) -> tuple[bytes, float]:
    t0 = time.thread_time()
    jpeg = jpeg_thumbnail(picture, width)
    return jpeg, time.thread_time() - t0


class _Attempt:
    def __init__(self, target: ProbeTarget, ctx: ProbeContext) -> None:
        if target.url is None:  # a bug in the job builder, which gives every media target its master URL
            raise ValueError("the media probe needs target.url")
        self.t = target
        self.url: str = target.url
        self.ctx = ctx
        self.cfg: MediaSettings = target.config
        self.result = ProbeResult()
        st = ctx.state.get("media")
        if st is None:
            st = ctx.state["media"] = _StreamState(asyncio.Semaphore(self.cfg.max_concurrent_decodes),
                                                   phase=zlib.crc32(target.stream.encode()))
        self.st: _StreamState = st

    def labels(self, rendition: str) -> dict[str, str]:
        return {"stream": self.t.stream, "stage": self.t.stage, "component": self.t.component,
                "rendition": rendition}

    async def fetch(self, url: str, max_bytes: int, byte_range: tuple[int, int] | None = None) -> FetchResult:
        return await self.ctx.http.get(url, max_bytes=max_bytes, verify_tls=self.cfg.verify_tls,
                                       byte_range=byte_range)

    async def run(self) -> ProbeResult:
        st, cfg = self.st, self.cfg
        now = self.ctx.clock()
        if st.master is None or now - st.master_at >= MASTER_REFRESH_S:
            fr = await self.fetch(self.url, cfg.playlist_max_bytes)
            if fr.failure:
                # availability is the HLS probe's to report; without media there is no content verdict
                return self.failed(fr.failure, f"master playlist: {fr.detail}")
            try:
                pl = await self.ctx.playlists.parse(fr.body, fr.final_url)
            except PlaylistError as exc:
                return self.failed(Failure.PROTOCOL_ERROR, f"malformed master playlist: {exc}")
            if isinstance(pl, MasterPlaylist):
                st.master = pl
            else:
                st.master = MasterPlaylist((Variant(name="main", uri=self.url, bandwidth=None, resolution=None),))
            st.master_at = now
        chosen = choose_renditions(st.master.variants, cfg.renditions)
        for gone in set(st.renditions) - {v.name for v in chosen}:
            del st.renditions[gone]
        await asyncio.gather(*(self.rendition(v) for v in chosen))
        self.result.thumbnails = {name: rs.thumbnail for name, rs in st.renditions.items() if rs.thumbnail is not None}
        sampling = {"sampling": cfg.sampling} if isinstance(cfg.sampling, int) else {}
        self.result.figures["media"] = {
            name: {**(rs.findings.figures() if rs.findings else {}), "cpu_s": round(rs.cpu_s, 5), **sampling}
            for name, rs in st.renditions.items()
        }
        return self.result

    def failed(self, failure: Failure, detail: str) -> ProbeResult:
        self.st.master = None
        self.result.failure, self.result.detail = failure, detail
        for name, rs in self.st.renditions.items():
            self.unmeasured(name, rs, "the master playlist could not be read")
        return self.result

    def unmeasured(self, name: str, rs: _Rendition, why: str) -> None:
        """No content verdict this attempt: the faults last reported are not measured, which is
        not healed. Evidence ``UNKNOWN`` with the fault (:mod:`agent.localize` keeps their
        incidents open instead of resolving them on absent evidence)."""
        rs.findings = None
        self.result.evidence.extend(
            Evidence(self.t.stage, self.t.component, State.UNKNOWN, fault, f"{name}: {fault} not measured: {why}",
                     rendition=name) for fault in sorted(rs.reported))

    async def rendition(self, v: Variant) -> None:
        cfg, st = self.cfg, self.st
        rs = st.renditions.get(v.name)
        if rs is None:
            rs = st.renditions[v.name] = _Rendition(MediaAnalyser(cfg.checks))
        fr = await self.fetch(v.uri, cfg.playlist_max_bytes)
        now = self.ctx.clock()
        if fr.failure:
            return self.unmeasured(v.name, rs, "its media playlist could not be read")  # no verdict without media
        if reusable(fr.document, rs.document) and rs.playlist is not None:
            pl = rs.playlist
        else:
            try:
                parsed = await self.ctx.playlists.parse(fr.body, fr.final_url)
            except PlaylistError:
                return self.unmeasured(v.name, rs, "its media playlist is malformed")
            if not isinstance(parsed, MediaPlaylist):
                return self.unmeasured(v.name, rs, "its URI is not a media playlist")
            pl, rs.document, rs.playlist = parsed, fr.document, parsed
        rs.target_duration = pl.target_duration or rs.target_duration
        if rs.last_seq is not None and pl.last_seq < rs.last_seq:
            # the media sequence went back: the encoder or packager restarted. Its content starts a
            # new timeline: analyse the newest segment afresh (a restart is not a timestamp gap);
            # the HLS probe reports the regression itself
            rs.last_seq = None
            rs.analyser = MediaAnalyser(cfg.checks)
        new = [s for s in pl.segments if rs.last_seq is None or s.seq > rs.last_seq]
        if rs.last_seq is None:
            new = new[-1:]
        if len(new) > cfg.max_backlog:
            rs.analyser = MediaAnalyser(cfg.checks)  # a hole in what we analysed is not a gap in the stream
            new = new[-1:]
        elif new and rs.last_seq is not None and new[0].seq != rs.last_seq + 1:
            # segments that left the playlist's window before we read it (a poll later than the
            # window is long: an agent that was behind): the same hole, not a gap in the stream
            rs.analyser = MediaAnalyser(cfg.checks)
        if pl.segments and (rs.last_seq is None or pl.last_seq > rs.last_seq):
            rs.advanced_at = now
        for seg in new:
            if seg.discontinuity:
                # EXT-X-DISCONTINUITY (RFC 8216 §4.3.2.3): timestamps and encoding may change here (an
                # encoder restarted): a new timeline, no GOP, gap or A/V comparison across it
                rs.analyser = MediaAnalyser(cfg.checks)
            if seg.gap:  # EXT-X-GAP: no content to fetch; what follows starts a new timeline
                rs.analyser = MediaAnalyser(cfg.checks)
            elif seg.key_method is not None:
                # EXT-X-KEY: encrypted content is not analysed (we never fetch or hold keys): named
                # unsupported, never misread as corrupt segments
                rs.findings, rs.reported, rs.analyser = None, frozenset(), MediaAnalyser(cfg.checks)
                self.result.spans.append(SpanRecord(
                    name=f"media {v.name} {seg.seq}", start_ns=time.time_ns(), end_ns=time.time_ns(),
                    attributes={"signalpath.rendition": v.name, "signalpath.sequence": seg.seq,
                                "signalpath.media.skipped": f"encrypted ({seg.key_method}): not analysed"}))
            elif not self.sampled_out(rs, seg.seq):
                await self.segment(v, rs, seg)
            rs.last_seq = seg.seq
        if rs.advanced_at is not None and now - rs.advanced_at > STALE_FINDINGS_TD * rs.target_duration:
            return self.unmeasured(v.name, rs, "no new segment to analyse")
        self.report(v.name, rs)

    def sampled_out(self, rs: _Rendition, seq: int) -> bool:
        """Is segment ``seq`` left out by ``sampling`` (module docstring)? Never the first, nor
        while a content fault is reported."""
        n = self.cfg.sampling
        if not isinstance(n, int) or rs.analysed_seq is None or rs.reported or (
                rs.held is not None and self.ctx.clock() < rs.held_until):
            return False
        run = max(2, math.ceil(SAMPLE_RUN_S / rs.target_duration))
        return (seq + self.st.phase) % (n * run) >= run

    async def segment(self, v: Variant, rs: _Rendition, seg) -> None:
        cfg = self.cfg
        if rs.analysed_seq is not None and seg.seq != rs.analysed_seq + 1:
            # the segment before was not analysed (sampled out, unreadable, a gap, encrypted, out
            # of the window): a hole in what we saw, not a gap in the stream's timestamps
            rs.analyser = MediaAnalyser(cfg.checks)
        w0 = time.time()
        fr = await self.fetch(seg.uri, cfg.segment_max_bytes, seg.byterange)
        span = SpanRecord(name=f"media {v.name} {seg.seq}", start_ns=int(w0 * 1e9), end_ns=0,
                          attributes={"signalpath.rendition": v.name, "signalpath.sequence": seg.seq,
                                      "signalpath.bytes": fr.size, "http.response.status_code": fr.status})
        init = await self.init_section(rs, seg.init) if seg.init is not None else b""
        if fr.failure or init is None:
            span.end_ns = int(time.time() * 1e9)
            span.error = f"{fr.failure}: {fr.detail}" if fr.failure else "init section (EXT-X-MAP) not fetched"
            self.result.spans.append(span)
            # the HLS probe reports missing segments; the next one is analysed afresh: a segment we
            # could not fetch is a hole in what we saw, not a gap in the stream's timestamps
            rs.analyser = MediaAnalyser(cfg.checks)
            return
        frames = "key" if cfg.video_frames == "key" else "all"  # 'auto' is resolved by the job builder
        want = (0, 0, bool(cfg.thumbnail_width), frames)
        options = cfg.decode if (cfg.decode.thumbnail_width, cfg.decode.last_picture_width, cfg.decode.keep_last_frame,
                                 cfg.decode.video_frames) == want else cfg.decode.model_copy(
                update={"thumbnail_width": 0, "last_picture_width": 0, "keep_last_frame": bool(cfg.thumbnail_width),
                        "video_frames": frames})
        try:
            async with self.st.semaphore:
                # fMP4/CMAF: the init section (moov) and the fragment (moof+mdat) decode as one file
                # the job's analyser is a copy (a worker in a thread would otherwise go on feeding
                # ours after a cancelled attempt): the one it hands back is the next segment's
                analyser = rs.analyser if self.ctx.cpu_copies else copy.deepcopy(rs.analyser)
                last = rs.thumbnail
                due = last is None or self.ctx.clock() - rs.thumbnail_clock >= cfg.thumbnail_every_s
                findings, rs.analyser, picture, cpu = await self.ctx.run_cpu(
                    _decode_and_analyse, init + fr.body, options, analyser, fr.size,
                    {"segment_duration": seg.duration, "declared_bandwidth": v.bandwidth,
                     "bandwidth_buffer_s": v.bandwidth_buffer_s, "target_duration": rs.target_duration},
                    True if due or last is None else last.faults, cfg.thumbnail_width)
        except BrokenExecutor:  # a worker process died running this decode (agent/cpupool.py)
            span.end_ns = int(time.time() * 1e9)
            span.error = "the decoding worker process died while decoding this segment: not analysed"
            self.result.spans.append(span)
            rs.analyser = MediaAnalyser(cfg.checks)
            return
        rs.cpu_s = cpu
        rs.findings, rs.findings_seq, rs.analysed_seq = findings, seg.seq, seg.seq
        if picture is not None and cfg.thumbnail_width:
            rs.cpu_s += self.thumbnail(rs, picture, seg.seq, _fault_names(findings))
        self.st.analysed += 1
        span.end_ns = int(time.time() * 1e9)
        span.attributes.update({f"signalpath.media.{k}": round(val, 6) for k, val in findings.figures().items()})
        span.attributes["signalpath.media.cpu_s"] = round(rs.cpu_s, 6)
        if isinstance(cfg.sampling, int):
            span.attributes["signalpath.media.sampled"] = f"1/{cfg.sampling}"
        faults = sorted(findings.fault_names)
        warnings = sorted(findings.warning_names)
        span.attributes["signalpath.media.faults"] = ",".join(faults)
        if warnings:
            span.attributes["signalpath.media.warnings"] = ",".join(warnings)
        if faults:
            span.error = "; ".join(f.detail for f in findings.faults if f.severity == "fault")
        self.result.spans.append(span)
        # counters count once, when the segment is analysed
        self.result.samples.extend(s for s in findings.samples(self.labels(v.name)) if s.kind == "inc")

    def thumbnail(self, rs: _Rendition, picture: np.ndarray, seq: int, faults: tuple[str, ...]) -> float:
        """The rendition's picture for the status page from the scaled ``picture`` the job sent
        back when one was due (``thumbnail_every_s`` on the agent's clock, or content faults other
        than the last picture's); the CPU seconds it took. Encoded here: ~0.2 ms, less than the
        trip to the pool."""
        jpeg, cpu = _jpeg_and_measure(picture, self.cfg.thumbnail_width)
        if jpeg:
            rs.thumbnail = Thumbnail(jpeg, self.ctx.wall(), seq, faults)
            rs.thumbnail_clock = self.ctx.clock()
        return cpu

    async def init_section(self, rs: _Rendition, init: InitSection) -> bytes | None:
        """The EXT-X-MAP bytes, fetched once per URI and byte range (RFC 8216 §4.3.2.5: a player
        loads it when it changes); None when it cannot be fetched."""
        if rs.init is not None and rs.init[0] == init:
            return rs.init[1]
        fr = await self.fetch(init.uri, self.cfg.segment_max_bytes, init.byterange)
        if fr.failure:
            return None
        rs.init = (init, fr.body)
        return fr.body

    def report(self, name: str, rs: _Rendition) -> None:
        """The newest analysed segment's gauges and evidence (repeated until the next one)."""
        if rs.findings is None:
            return
        labels = self.labels(name)
        self.result.samples.extend(s for s in rs.findings.samples(labels) if s.kind != "inc")
        evs: list[Evidence] = rs.findings.evidence(self.t.stage, self.t.component, name)
        for e in evs:
            e.figures["segment_seq"] = float(rs.findings_seq or 0)
        now = self.ctx.clock()
        for e in evs:
            if e.fault == Fault.DECODE_ERRORS:
                rs.held, rs.held_until = e, now + self.cfg.transient_hold_s
        if rs.held is not None and now < rs.held_until and all(e.fault != rs.held.fault for e in evs):
            evs = [e for e in evs if e.fault is not None] + [rs.held]  # the held fault, not an "ok" beside it
        # a fault reported before that this segment cannot judge (the bitrate of a still picture)
        # is not measured, not healed
        kept = rs.reported & rs.findings.unjudged
        evs += [Evidence(self.t.stage, self.t.component, State.UNKNOWN, fault,
                         f"{name}: {fault} not measured: this segment cannot judge it", rendition=name)
                for fault in sorted(kept)]
        rs.reported = frozenset(e.fault for e in evs if e.fault is not None)
        self.result.evidence.extend(evs)


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Analyse the new segments of one stream's origin; ``target.config`` is MediaSettings."""
    return await _Attempt(target, ctx).run()
