"""The packager: keeps a sliding window of MPEG-TS segments and renders HLS playlists.

Playlists follow RFC 8216: a master playlist with one EXT-X-STREAM-INF per rendition
(BANDWIDTH = the peak segment bit rate seen, §4.3.4.2; CODECS per RFC 6381), and per
rendition a live media playlist (no EXT-X-ENDLIST) with EXT-X-TARGETDURATION,
EXT-X-MEDIA-SEQUENCE, EXT-X-DISCONTINUITY-SEQUENCE and an EXT-X-PROGRAM-DATE-TIME
on every segment (§4.3.2.6) giving the capture wall time of its first frame, so
``now - PDT`` is the true glass-to-origin latency.

``overshoot`` (the lab's chronic mode, agent/lab/chronic.py) understates a rendition's
BANDWIDTH on purpose: its measured peak / (1 + overshoot), so its segments measure that
share above what the master playlist declares. That figure is learned over the rendition's
first :data:`OVERSHOOT_SETTLE_SEGMENTS` segments and then fixed, as a packager configured
with the encoder's target declares it: a fault's odd segment (a long GOP, a burst after a
still picture) must not raise the declared figure and end the chronic condition.

URIs (relative, so they work the same through every edge):
``/live/<stream>.m3u8`` (master) → ``<stream>/<rendition>.m3u8`` →
``<rendition>/<seq>.ts``; the same segments as MPEG-DASH at ``/live/<stream>.mpd`` (:meth:`Packager.mpd`).

The same encode as Low-Latency HLS (draft-pantos-hls-rfc8216bis) at ``/ll/<stream>.m3u8`` →
``<stream>/<rendition>.m3u8`` → ``<rendition>/<msn>.ts`` and parts ``<rendition>/<msn>.<i>.ts``
(:meth:`Packager.ll_playlist`): the transcoder's parts as they are cut (agent/lab/transcoder.py),
EXT-X-SERVER-CONTROL with CAN-BLOCK-RELOAD, PART-HOLD-BACK = 3 part targets (§4.4.3.8: at least
2; 3 is what the spec's examples and Apple's tools use) and CAN-SKIP-UNTIL = 6 target durations
(§4.4.3.8's minimum), EXT-X-PART tags for the segments within 3 target durations of the end
(§4.4.4.9), a PRELOAD-HINT for the next part and a RENDITION-REPORT per sibling. LL-HLS numbers
its segments on its own: a segment whose encode stopped half-way (``transcoder_stall``) has had
parts listed, so it is kept where classic HLS drops it: closed at the stall with the frames of
those parts muxed as one segment (:meth:`Packager.ll_close`; a segment's first part arriving while
another is open closes that one with its parts concatenated, a fallback).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .config import LabConfig
from .faults import _iso

AAC_LC = "mp4a.40.2"  # RFC 6381 AAC-LC
DASH_MIN_BUFFER_S = 0.5  # the MPD's minBufferTime: what its @bandwidth is declared over
OVERSHOOT_SETTLE_SEGMENTS = 5  # segments whose peak sets an overshooting rendition's declared BANDWIDTH
PART_HOLD_BACK_PARTS = 3  # EXT-X-SERVER-CONTROL PART-HOLD-BACK, in part targets (module docstring)
SKIP_TARGETS = 6  # CAN-SKIP-UNTIL, in target durations (RFC 8216bis §4.4.3.8's minimum)
PART_LIST_TARGETS = 3  # EXT-X-PART tags kept for the segments this many target durations from the end


@dataclass(slots=True)
class Segment:
    seq: int
    rendition: str
    data: bytes
    duration_s: float
    pdt_wall: float
    discontinuity: bool
    published_wall: float
    corrupted: bool = False


def corrupt_ts(data: bytes, seed: int) -> bytes:
    """Keep the first two TS packets (PAT/PMT), overwrite the rest with noise."""
    keep = 188 * 2
    out = bytearray(data)
    x = (seed * 2654435761 + 1) & 0xFFFFFFFF
    for i in range(keep, len(out)):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


@dataclass(slots=True)
class Part:
    data: bytes
    duration_s: float
    independent: bool
    published_wall: float


@dataclass(slots=True)
class LlSegment:
    """A segment of the LL-HLS view: its parts as cut, then (once complete) the whole segment."""

    msn: int
    pdt_wall: float
    discontinuity: bool
    parts: list[Part]
    data: bytes | None = None  # set when complete
    duration_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.data is not None


class _Rendition:
    def __init__(self) -> None:
        self.segments: collections.deque[Segment] = collections.deque()
        self.next_seq = 0
        self.disc_seq = 0
        self.playlist: bytes | None = None
        self.peak_bps = 0
        self.codecs: str | None = None
        self.width = 0
        self.height = 0
        self.overshoot = 0.0  # segments run this share above the declared BANDWIDTH (chronic mode)
        self.fixed_bps: int | None = None  # the declared figure once learned (chronic mode)
        self.ll: collections.deque[LlSegment] = collections.deque()  # LL-HLS view, the newest maybe open
        self.ll_next = 0
        self.ll_disc_seq = 0
        self.ll_cache: dict[bool, bytes] = {}  # rendered LL playlist, by "skip"

    @property
    def declared_bps(self) -> int:
        if not self.overshoot:
            return self.peak_bps
        if self.fixed_bps is not None:
            return self.fixed_bps
        return int(self.peak_bps / (1.0 + self.overshoot)) // 1000 * 1000


class Packager:
    """Segment store and playlist renderer for one stream (runs on the event loop)."""

    def __init__(self, cfg: LabConfig, wall: Callable[[], float] = time.time, *,
                 overshoot: Mapping[str, float] | None = None) -> None:
        self.cfg = cfg
        self.wall = wall
        self._r: dict[str, _Rendition] = {}
        for r in cfg.renditions:
            st = _Rendition()
            st.width, st.height = r.width, r.height
            st.peak_bps = r.bitrate_kbps * 1000
            st.overshoot = (overshoot or {}).get(r.name, 0.0)
            self._r[r.name] = st
        self._keep = cfg.window + max(6, math.ceil(cfg.segment_max_age_s / cfg.segment_s))
        self._master: bytes | None = None
        self._ast: float | None = None  # DASH availabilityStartTime, fixed at the first segment
        self._mpd: bytes | None = None  # rendered once per publish
        self._ll_changed: asyncio.Event | None = None  # set (and replaced) at every part or segment
        self.holding = True  # False once the lab stops: held requests are answered at once (stop_holding)

    @property
    def renditions(self) -> tuple[str, ...]:
        return tuple(self._r)

    def set_codecs(self, rendition: str, codecs: str | None) -> None:
        st = self._r[rendition]
        if codecs and st.codecs != codecs:
            st.codecs = codecs
            self._master = None

    def publish(self, rendition: str, data: bytes, duration_s: float, pdt_wall: float,
                discontinuity: bool, corrupt: bool = False) -> Segment:
        st = self._r[rendition]
        if corrupt:
            data = corrupt_ts(data, st.next_seq)
        seg = Segment(st.next_seq, rendition, data, duration_s, pdt_wall, discontinuity,
                      self.wall(), corrupt)
        st.next_seq += 1
        st.segments.append(seg)
        while len(st.segments) > self._keep:
            if st.segments.popleft().discontinuity:
                st.disc_seq += 1
        bps = int(len(data) * 8 / max(duration_s, 0.04))
        audio_video_peak = int(math.ceil(bps / 10_000) * 10_000)
        if audio_video_peak > st.peak_bps:
            st.peak_bps = audio_video_peak
            self._master = None
        if st.overshoot and st.fixed_bps is None and st.next_seq >= OVERSHOOT_SETTLE_SEGMENTS:
            st.fixed_bps = st.declared_bps  # learned: fixed from now on (module docstring)
        st.playlist = self._render(st)
        self._mpd = None
        open_ll = st.ll[-1] if st.ll and not st.ll[-1].complete else None
        if open_ll is not None:  # its parts were this segment's (the transcoder cuts parts, then the segment)
            open_ll.data, open_ll.duration_s = seg.data, seg.duration_s
            self._ll_published()
        return seg

    # -- LL-HLS ----------------------------------------------------------------
    def publish_part(self, rendition: str, data: bytes, duration_s: float, first: bool, pdt_wall: float,
                     discontinuity: bool) -> tuple[int, int]:
        """Add one part to ``rendition``'s open LL-HLS segment; (msn, index) of the part. A
        segment's first part while another is open (its encode stopped half-way) completes
        that one with the parts it had (module docstring)."""
        st = self._r[rendition]
        open_ll = st.ll[-1] if st.ll and not st.ll[-1].complete else None
        if open_ll is not None and first:
            open_ll.data = b"".join(p.data for p in open_ll.parts)
            open_ll.duration_s = sum(p.duration_s for p in open_ll.parts)
            open_ll = None
        if open_ll is None:
            open_ll = LlSegment(st.ll_next, pdt_wall, discontinuity, [])
            st.ll_next += 1
            st.ll.append(open_ll)
            while len(st.ll) > self._keep:
                if st.ll.popleft().discontinuity:
                    st.ll_disc_seq += 1
        open_ll.parts.append(Part(data, duration_s, first, self.wall()))
        self._ll_published()
        return open_ll.msn, len(open_ll.parts) - 1

    def ll_close(self, rendition: str, data: bytes, duration_s: float) -> None:
        """Complete ``rendition``'s open LL-HLS segment with ``data`` (its encode stopped after
        the parts it listed: agent/lab/transcoder.py ``PartsClosed``)."""
        st = self._r[rendition]
        if st.ll and not st.ll[-1].complete:
            st.ll[-1].data, st.ll[-1].duration_s = data, duration_s
            self._ll_published()

    def _ll_published(self) -> None:
        for other in self._r.values():  # rendition reports name every sibling's newest part
            other.ll_cache.clear()
        if self._ll_changed is not None:
            ev, self._ll_changed = self._ll_changed, None
            ev.set()

    def ll_has(self, rendition: str, msn: int, part: int | None) -> bool:
        """Whether ``rendition``'s LL playlist holds segment ``msn`` complete, or its part ``part``
        (RFC 8216bis §6.2.5.2: what a blocking reload waits for; a part index past a complete
        segment's last asks for the next segment's first part)."""
        st = self._r[rendition]
        if not st.ll:
            return False
        if part is None:
            newest = st.ll[-1]
            return msn < newest.msn or (msn == newest.msn and newest.complete)
        msn, part, seg = self._ll_part(rendition, msn, part)
        if seg is None:
            return msn < st.ll[0].msn  # slid out of the window: it was there
        return part < len(seg.parts)

    def _ll_part(self, rendition: str, msn: int, part: int) -> tuple[int, int, LlSegment | None]:
        """(msn, part, its segment) a request names: a part index past a complete segment's last
        is the next segment's first (RFC 8216bis §6.2.5.2)."""
        seg = self.ll_segment(rendition, msn)
        if seg is not None and seg.complete and part >= len(seg.parts):
            msn, part = msn + 1, 0
            seg = self.ll_segment(rendition, msn)
        return msn, part, seg

    def ll_published(self, rendition: str, msn: int, part: int | None) -> float | None:
        """Wall time part ``part`` of segment ``msn`` (its last part when None) was published."""
        if part is None:
            seg = self.ll_segment(rendition, msn)
            return seg.parts[-1].published_wall if seg is not None and seg.parts else None
        _, part, seg = self._ll_part(rendition, msn, part)
        return seg.parts[part].published_wall if seg is not None and part < len(seg.parts) else None

    def ll_last_msn(self, rendition: str) -> int | None:
        st = self._r[rendition]
        return st.ll[-1].msn if st.ll else None

    def stop_holding(self) -> None:
        """The lab stops: every held request wakes and is answered now (``holding`` False), so no
        server shuts down under a request it still holds (aiohttp then leaves its socket open)."""
        self.holding = False
        if self._ll_changed is not None:
            ev, self._ll_changed = self._ll_changed, None
            ev.set()

    async def ll_wait(self, timeout_s: float) -> None:
        """Until the next part or segment of any rendition, at most ``timeout_s``."""
        if not self.holding:
            return
        if self._ll_changed is None:
            self._ll_changed = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for (tests/test_layout.py: bpo-42130)
                await self._ll_changed.wait()
        except TimeoutError:
            pass

    def ll_segment(self, rendition: str, msn: int) -> LlSegment | None:
        st = self._r.get(rendition)
        if st is None or not st.ll:
            return None
        idx = msn - st.ll[0].msn
        return st.ll[idx] if 0 <= idx < len(st.ll) else None

    def ll_playlist(self, rendition: str, skip: bool = False) -> bytes | None:
        """``rendition``'s LL-HLS media playlist (module docstring); ``skip``: the delta update
        a ``_HLS_skip=YES`` request gets (EXT-X-SKIP for the segments older than CAN-SKIP-UNTIL).
        None before its first part."""
        st = self._r.get(rendition)
        if st is None or not st.ll:
            return None
        body = st.ll_cache.get(skip)
        if body is None:
            body = st.ll_cache[skip] = self._render_ll(rendition, st, skip)
        return body

    def _render_ll(self, rendition: str, st: _Rendition, skip: bool) -> bytes:
        cfg = self.cfg
        target = cfg.segment_s
        window = [s for s in st.ll if s.complete][-cfg.window:]
        newest = st.ll[-1]
        shown = window + ([newest] if not newest.complete else [])
        first = shown[0]
        # the first segment's number counts its own discontinuity (its tag is left out)
        disc_seq = st.ll_disc_seq + sum(1 for s in st.ll if s.msn <= first.msn and s.discontinuity)
        part_target = cfg.part_target_s
        skip_until = SKIP_TARGETS * target
        lines = ["#EXTM3U", "#EXT-X-VERSION:9", f"#EXT-X-TARGETDURATION:{target}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first.msn}", f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}",
                 f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until:.1f},"
                 f"PART-HOLD-BACK={PART_HOLD_BACK_PARTS * part_target:.3f}",
                 f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}"]
        total = sum(s.duration_s for s in window) + sum(p.duration_s for p in newest.parts if not newest.complete)
        skipped = 0
        if skip:  # whole segments starting more than CAN-SKIP-UNTIL before the end
            start = 0.0
            for s in window:
                if total - start > skip_until and not s.discontinuity:
                    skipped += 1
                    start += s.duration_s
                else:
                    break
            if skipped:
                lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        end = sum(s.duration_s for s in window[:skipped])
        parts_from = total - PART_LIST_TARGETS * target
        for s in shown[skipped:]:
            if s.discontinuity and s is not first:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(s.pdt_wall)}")
            if not s.complete or end + s.duration_s > parts_from:
                for i, p in enumerate(s.parts):
                    flag = ",INDEPENDENT=YES" if p.independent else ""
                    lines.append(f'#EXT-X-PART:DURATION={p.duration_s:.3f}{flag},URI="{rendition}/{s.msn}.{i}.ts"')
            if s.complete:
                lines.append(f"#EXTINF:{s.duration_s:.3f},")
                lines.append(f"{rendition}/{s.msn}.ts")
            end += s.duration_s
        nxt_msn, nxt_part = (newest.msn + 1, 0) if newest.complete else (newest.msn, len(newest.parts))
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{rendition}/{nxt_msn}.{nxt_part}.ts"')
        for name, other in self._r.items():
            if name == rendition or not other.ll:
                continue
            o = other.ll[-1]  # its newest part (of a complete segment: the last)
            lines.append(f'#EXT-X-RENDITION-REPORT:URI="{name}.m3u8",LAST-MSN={o.msn},LAST-PART={len(o.parts) - 1}')
        return ("\n".join(lines) + "\n").encode()

    def _window(self, st: _Rendition) -> list[Segment]:
        return list(st.segments)[-self.cfg.window:]

    def _render(self, st: _Rendition) -> bytes:
        window = self._window(st)
        # discontinuities that slid out of the window count in DISCONTINUITY-SEQUENCE
        first_seq = window[0].seq
        disc_seq = sum(1 for s in st.segments if s.seq <= first_seq and s.discontinuity)  # the first's own too
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{self.cfg.segment_s}",
            f"#EXT-X-MEDIA-SEQUENCE:{first_seq}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{st.disc_seq + disc_seq}",
        ]
        for s in window:
            if s.discontinuity and s is not window[0]:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(s.pdt_wall)}")
            lines.append(f"#EXTINF:{s.duration_s:.3f},")
            lines.append(f"{s.rendition}/{s.seq}.ts")
        return ("\n".join(lines) + "\n").encode()

    def media_playlist(self, rendition: str) -> bytes | None:
        st = self._r.get(rendition)
        return None if st is None else st.playlist

    def master_playlist(self) -> bytes:
        if self._master is None:
            lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
            for name, st in self._r.items():
                codecs = f',CODECS="{st.codecs},{AAC_LC}"' if st.codecs else ""
                lines.append(
                    f"#EXT-X-STREAM-INF:BANDWIDTH={st.declared_bps},RESOLUTION={st.width}x{st.height}"
                    f",FRAME-RATE={self.cfg.fps:.3f}{codecs},NAME=\"{name}\"")
                lines.append(f"{self.cfg.stream}/{name}.m3u8")
            self._master = ("\n".join(lines) + "\n").encode()
        return self._master

    def mpd(self) -> bytes:
        """The same segments as MPEG-DASH (ISO/IEC 23009-1, MPEG-2 TS simple profile): one
        dynamic MPD, an AdaptationSet of the renditions, each a Representation whose
        SegmentTimeline lists the window its HLS playlist lists (``$Number$`` = the media
        sequence, ``startNumber`` the first listed; S@t = the segment's capture time since
        availabilityStartTime, ms). availabilityStartTime is the first segment's capture time;
        @bandwidth the declared BANDWIDTH over a ``DASH_MIN_BUFFER_S`` minBufferTime (as tight as
        the HLS peak: a chronic overshoot shows in both); UTCTiming names ``/time`` (http-iso)."""
        if self._mpd is None:
            self._mpd = self._render_mpd()
        return self._mpd

    def _render_mpd(self) -> bytes:
        starts = [st.segments[0].pdt_wall for st in self._r.values() if st.segments]
        if self._ast is None and starts:
            self._ast = math.floor(min(starts) * 1000) / 1000
        ast = self._ast if self._ast is not None else self.wall()
        published = max((st.segments[-1].published_wall for st in self._r.values() if st.segments), default=ast)
        seg_s = self.cfg.segment_s
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:mp2t-simple:2011" '
                 f'type="dynamic" availabilityStartTime="{_iso(ast)}" publishTime="{_iso(published)}" '
                 f'minimumUpdatePeriod="PT{seg_s}S" timeShiftBufferDepth="PT{self.cfg.window * seg_s}S" '
                 f'maxSegmentDuration="PT{seg_s}S" minBufferTime="PT{DASH_MIN_BUFFER_S}S">',
                 '<Period id="0" start="PT0S">',
                 '<AdaptationSet contentType="video" mimeType="video/mp2t" segmentAlignment="true" startWithSAP="1">']
        for name, st in self._r.items():
            window = self._window(st)
            codecs = f' codecs="{st.codecs},{AAC_LC}"' if st.codecs else ""
            lines.append(f'<Representation id="{name}" bandwidth="{st.declared_bps}" width="{st.width}" '
                         f'height="{st.height}" frameRate="{self.cfg.fps:g}"{codecs}>')
            first = window[0].seq if window else st.next_seq
            lines.append(f'<SegmentTemplate timescale="1000" startNumber="{first}" '
                         f'media="{self.cfg.stream}/$RepresentationID$/$Number$.ts"><SegmentTimeline>')
            for s in window:
                lines.append(f'<S t="{round((s.pdt_wall - ast) * 1000)}" d="{round(s.duration_s * 1000)}"/>')
            lines.append("</SegmentTimeline></SegmentTemplate></Representation>")
        lines += ["</AdaptationSet>", "</Period>",
                  '<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="/time"/>', "</MPD>"]
        return ("\n".join(lines) + "\n").encode()

    def declared_bps(self, rendition: str) -> int:
        """The BANDWIDTH the master playlist declares for ``rendition`` now."""
        return self._r[rendition].declared_bps

    def segment(self, rendition: str, seq: int) -> Segment | None:
        st = self._r.get(rendition)
        if st is None or not st.segments:
            return None
        idx = seq - st.segments[0].seq
        if 0 <= idx < len(st.segments):
            return st.segments[idx]
        return None

    def latest(self, rendition: str) -> Segment | None:
        st = self._r[rendition]
        return st.segments[-1] if st.segments else None

    def ready(self) -> bool:
        return all(st.segments for st in self._r.values())
