"""MPEG-DASH MPD parsing (ISO/IEC 23009-1, DASH-IF IOP v5) over the ``mpegdash`` library, and
each Representation seen as the media playlist a live HLS client would have read.

Why ``mpegdash``: it is the maintained pure-Python MPD object model on PyPI (the alternatives
are an lxml binding with no live-profile model, or code of our own); we use its node classes only
and guard the two places where it is unsafe for a monitor that reads what any server sends:

- ``MPEGDASHParser.parse`` opens a URL or a file when its argument does not contain ``<MPD``:
  never called here; we parse the bytes with ``xml.dom.minidom`` ourselves (a document type
  declaration is refused first: no entity can expand, no external entity can be read) and hand
  the root to the library's node parser;
- its booleans are ``bool(text)`` (``"false"`` is true): the few we need
  (``availabilityTimeComplete``) are read from the element's attribute ourselves.
Durations (``PT2.0S``) go through ``isodate`` (xs:duration), date-times through
``datetime.fromisoformat`` (xs:dateTime; a zone-less one is UTC, DASH-IF IOP §4.2).

What is read, and how it maps onto :class:`probes.core.playlist.MediaPlaylist` so that the HLS
probe's checks (freshness, continuity, segment download ratio, latency, drift, edge lag) apply
to DASH unchanged (:func:`views`):

- MPD: ``type`` (static: a finished presentation, ``endlist``), ``availabilityStartTime``,
  ``minBufferTime`` (what a Representation's @bandwidth is declared over),
  ``publishTime``, ``minimumUpdatePeriod``, ``timeShiftBufferDepth``,
  ``suggestedPresentationDelay``, ``maxSegmentDuration``, ``UTCTiming`` (scheme and value; the
  clock segment availability is computed from, read by the probe);
- Period: ``id``, ``start`` (absent: the previous period's end, 23009-1 §5.3.2.1); the period a
  live client plays is the last one started (multi-Period: a period change is a discontinuity,
  the period's index is the discontinuity sequence);
- AdaptationSet: ``contentType`` (or the ``mimeType`` prefix): video sets are the ladder, audio
  and text sets the alternatives; each Representation is a rendition, named label-safe (``180p``,
  ``300k``, ``audio-en``, ``subs-1``; never from an id or URL);
- addressing, inherited Period → AdaptationSet → Representation (§5.3.9): SegmentTemplate with
  ``$Number$`` (``duration``/``startNumber``, computed from the clock), with SegmentTimeline
  (``S@t/d/r``, ``r="-1"`` repeating to the next S, the period's end or now; ``$Number$`` or
  ``$Time$``), SegmentList, and SegmentBase / a bare BaseURL (one segment: the whole file);
  ``initialization`` is the segment's init section (as EXT-X-MAP); ``presentationTimeOffset``;
  a segment's number (the media sequence of the view) is its position from ``startNumber``, or,
  for a ``$Time$`` template without ``$Number$``, its start time in nominal segment durations
  (the position is no identity there: a window that slides without ``startNumber``, as
  nginx-rtmp's, would keep its newest segment's number for ever);
  ``availabilityTimeOffset``; BaseURL chain MPD → Period → AdaptationSet → Representation;
  template identifiers ``$RepresentationID$``, ``$Number$``, ``$Time$``, ``$Bandwidth$`` with a
  ``%0Nd`` width, and ``$$``.

Segment availability (23009-1 §5.3.9.5.3, DASH-IF IOP §4.3.3): in a dynamic MPD a segment is
available from AST + Period@start + (its end - PTO) / timescale - availabilityTimeOffset when
``availabilityTimeComplete`` is true (the default); when it is false (low-latency DASH, chunks
sent while the segment is written) the whole segment is complete only at its end, and that is
when a monitor that downloads whole segments asks for it. The newest segment of a view is the
newest available at ``now`` (a listed segment not yet available is left out), plus
``AVAILABILITY_GRACE`` (a quarter segment, at most 0.5 s) for the packager's write and a clock
that differs by less than that; the clock is the one ``UTCTiming`` names when the probe could
read it. Each view lists at most ``WINDOW`` segments, the newest ones within
``timeShiftBufferDepth``. A segment's ``pdt`` is its wall-clock presentation start (AST +
Period@start + (t - PTO)/timescale), so the live latency of the HLS probe is now minus the
newest available segment's wall-clock end.

Not read: xlink (remote Periods), ``Location`` (MPD moves), EventStream/InbandEventStream,
ContentProtection (noted in nothing: a protected stream is fetched as any other), SubRepresentation,
``$SubNumber$``, ``endNumber`` past its use as a bound, ``Patch`` MPDs. :class:`MpdError` says
which, when one is the only way to read a Representation.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import math
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin
from xml.dom import minidom
from xml.parsers.expat import ExpatError

import isodate
from mpegdash.nodes import MPEGDASH
from mpegdash.utils import parse_child_nodes

from probes.core.playlist import (
    _PARSER,
    MAX_RESOLUTION,
    MAX_SEQUENCE,
    MAX_TARGET_DURATION_S,
    MAX_VARIANTS,
    PARSE_INLINE_MAX_BYTES,
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    MediaRendition,
    PlaylistError,
    Segment,
    Variant,
    _checked,
    _dedupe,
    _ladder_names,
)

WINDOW = 6
"""Segments listed per view: what the checks look at (the newest, and enough behind it for
continuity), bounded whatever the timeline holds."""
DASHJS_LIVE_DELAY_SEGMENTS = 4
"""dash.js plays a live stream this many segment durations behind the live edge when neither
the application nor the MPD (``suggestedPresentationDelay``) says otherwise (dash.js live
streaming guide: "the default delay of 4 segment durations"). A view's ``hold_back``."""
MAX_TIMELINE_ENTRIES = 10_000
"""S elements read per SegmentTimeline; more is refused (a hostile MPD could list millions)."""
MAX_REPRESENTATIONS = MAX_VARIANTS * 2
"""Representations kept per Period (video ladder and alternatives together)."""
AVAILABILITY_GRACE_FRACTION = 0.25
AVAILABILITY_GRACE_MAX_S = 0.5
"""A segment counts as available this long after its computed availability time: a quarter of
its duration, at most 0.5 s (the packager writes it as it ends; dash.js keeps a live delay of
several segments, so a viewer never asks this early)."""

_CONTENT = {"video": "video", "audio": "audio", "text": "text", "application": "text", "image": "image"}
DASH_CONTENT_TYPE = "application/dash+xml"


class MpdError(PlaylistError):
    """The body is not a usable MPD; the message says why and where (no URL in it)."""


@dataclass(frozen=True, slots=True)
class Addressing:
    """How one Representation's segments are found (inherited attributes already merged)."""

    kind: str  # "template" | "timeline" | "list" | "base"
    media: str | None = None  # SegmentTemplate@media (template, timeline)
    init: str | None = None  # initialization template or URL
    timescale: int = 1
    duration: int | None = None  # @duration, in timescale units (template, list)
    start_number: int = 1
    pto: int = 0  # presentationTimeOffset
    ato: float = 0.0  # availabilityTimeOffset, seconds
    atc: bool = True  # availabilityTimeComplete
    timeline: tuple[tuple[int | None, int, int], ...] = ()  # (t or None, d, r)
    urls: tuple[str, ...] = ()  # SegmentList media URLs (resolved), or the one SegmentBase URL


@dataclass(frozen=True, slots=True)
class Representation:
    name: str  # label-safe
    content: str  # video, audio, text, image
    rep_id: str  # @id, for template substitution only (never a label: it may be anything)
    bandwidth: int | None
    resolution: tuple[int, int] | None
    codecs: str | None
    lang: str | None
    base: str  # absolute BaseURL the templates resolve against
    addressing: Addressing


@dataclass(frozen=True, slots=True)
class Period:
    id: str | None
    start: float  # seconds from availabilityStartTime
    duration: float | None
    representations: tuple[Representation, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    dynamic: bool
    availability_start: float | None  # epoch seconds
    publish_time: float | None
    minimum_update_period: float | None  # seconds
    time_shift_buffer_depth: float | None
    suggested_presentation_delay: float | None
    max_segment_duration: float | None
    media_presentation_duration: float | None
    min_buffer_time: float | None
    utc_timing: tuple[tuple[str, str], ...]  # (schemeIdUri, value)
    periods: tuple[Period, ...]

    def period_at(self, now: float) -> tuple[int, Period]:
        """(index, the Period a live client plays at wall time ``now``): the last one started."""
        if not self.dynamic or self.availability_start is None:
            return 0, self.periods[0]
        rel = now - self.availability_start
        chosen = 0
        for i, p in enumerate(self.periods):
            if p.start <= rel:
                chosen = i
        return chosen, self.periods[chosen]


def looks_like_mpd(body: bytes, content_type: str | None) -> bool:
    """Whether a fetched manifest is an MPD: the ``application/dash+xml`` media type (23009-1
    Annex C), or an XML body whose root is MPD (servers often say ``text/xml`` or nothing)."""
    if content_type and DASH_CONTENT_TYPE in content_type.lower():
        return True
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<?xml") and b"<MPD" in body[:4096] or head.startswith(b"<MPD")


def _duration(v: str | None, where: str) -> float | None:
    if v is None:
        return None
    try:
        d = isodate.parse_duration(v.strip())
        s = d.total_seconds() if isinstance(d, _dt.timedelta) else d.totimedelta(start=_dt.datetime(2000, 1, 1)).total_seconds()
    except (isodate.ISO8601Error, ValueError, TypeError, OverflowError):
        raise MpdError(f"{where} is not an xs:duration") from None
    if not (math.isfinite(s) and 0 <= s <= 10 * 365 * 86400):
        raise MpdError(f"{where} is out of range")
    return s


def _datetime(v: str | None, where: str) -> float | None:
    if v is None:
        return None
    try:
        d = _dt.datetime.fromisoformat(v.strip())
    except ValueError:
        raise MpdError(f"{where} is not an xs:dateTime") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    return d.timestamp()


def _int(v: Any, where: str, lo: int = 0) -> int:
    if not isinstance(v, int) or not lo <= v <= MAX_SEQUENCE:
        raise MpdError(f"{where} is not an integer in range")
    return v


def parse_mpd(body: bytes, base_uri: str) -> Manifest:
    """Parse an MPD; raise MpdError (a PlaylistError) on anything unusable. Never opens a URL
    or file (the library's own ``parse`` would, for a body without ``<MPD``)."""
    if b"<!DOCTYPE" in body[:8192].upper() or b"<!ENTITY" in body.upper():
        raise MpdError("a document type declaration (entities are not read)")
    try:
        dom = minidom.parseString(body)
    except (ExpatError, ValueError) as exc:
        raise MpdError(f"not well-formed XML ({str(exc).split(':')[-1].strip()[:60]})") from None
    root = dom.documentElement
    if root is None or root.localName != "MPD":
        raise MpdError("the root element is not MPD")
    try:
        mpd = parse_child_nodes(dom, "MPD", MPEGDASH)[0]
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise MpdError(f"an attribute the MPD model cannot read ({exc.__class__.__name__})") from None
    dynamic = (mpd.type or "static") == "dynamic"
    ast = _datetime(mpd.availability_start_time, "MPD@availabilityStartTime")
    if dynamic and ast is None:
        raise MpdError("a dynamic MPD without availabilityStartTime")
    base = _base(base_uri, mpd.base_urls, "MPD BaseURL")
    periods_raw = list(mpd.periods or [])
    if not periods_raw:
        raise MpdError("the MPD lists no Period")
    el_periods = [e for e in root.childNodes if e.nodeType == e.ELEMENT_NODE and e.localName == "Period"]
    periods: list[Period] = []
    prev_end: float | None = 0.0
    for i, p in enumerate(periods_raw[:64]):
        where = f"Period {i + 1}"
        start = _duration(p.start, f"{where}@start")
        if start is None:
            if prev_end is None:
                if dynamic and periods:  # an Early Available Period (23009-1 §5.3.2.1): not begun
                    break
                raise MpdError(f"{where} has no start and the previous Period no duration")
            start = prev_end
        dur = _duration(p.duration, f"{where}@duration")
        pbase = _base(base, p.base_urls, f"{where} BaseURL")
        reps = _representations(p, el_periods[i] if i < len(el_periods) else None, pbase, where)
        periods.append(Period(p.id, start, dur, reps))
        prev_end = start + dur if dur is not None else None
    if dynamic is False and periods[-1].duration is None:
        mpdur = _duration(mpd.media_presentation_duration, "MPD@mediaPresentationDuration")
        if mpdur is not None:
            last = periods[-1]
            periods[-1] = Period(last.id, last.start, max(mpdur - last.start, 0.0), last.representations)
    return Manifest(
        dynamic=dynamic,
        availability_start=ast,
        publish_time=_datetime(mpd.publish_time, "MPD@publishTime"),
        minimum_update_period=_duration(mpd.minimum_update_period, "MPD@minimumUpdatePeriod"),
        time_shift_buffer_depth=_duration(mpd.time_shift_buffer_depth, "MPD@timeShiftBufferDepth"),
        suggested_presentation_delay=_duration(mpd.suggested_presentation_delay, "MPD@suggestedPresentationDelay"),
        max_segment_duration=_duration(mpd.max_segment_duration, "MPD@maxSegmentDuration"),
        media_presentation_duration=_duration(mpd.media_presentation_duration, "MPD@mediaPresentationDuration"),
        min_buffer_time=_duration(mpd.min_buffer_time, "MPD@minBufferTime"),
        utc_timing=tuple(_timing(u.scheme_id_uri or "", u.value or "", base_uri) for u in (mpd.utc_timings or [])[:8]),
        periods=tuple(periods),
    )


def _timing(scheme: str, value: str, base_uri: str) -> tuple[str, str]:
    """(scheme, value) of a UTCTiming; an HTTP scheme's URLs resolved against the MPD's."""
    if ":http-" in scheme:
        try:
            value = " ".join(_checked(urljoin(base_uri, v)) for v in value.split()[:4])
        except ValueError:
            value = ""
    return scheme, value


def _base(parent: str, base_urls: list[Any] | None, where: str) -> str:
    if not base_urls or not base_urls[0].base_url_value:
        return parent
    try:
        return _checked(urljoin(parent, base_urls[0].base_url_value.strip()))
    except ValueError as exc:
        raise MpdError(f"{where} is unusable ({exc})") from None


def _children(el: Any, name: str) -> list[Any]:
    return [e for e in (el.childNodes if el is not None else ()) if e.nodeType == e.ELEMENT_NODE and e.localName == name]


def _template_of(node: Any) -> Any | None:
    return (node.segment_templates or [None])[0]


def _representations(p: Any, pel: Any, pbase: str, where: str) -> tuple[Representation, ...]:
    video: list[tuple[Any, Any, Any, str, list[Any]]] = []
    other: list[tuple[str, str | None, Any, Any, Any, str, list[Any]]] = []
    as_els = _children(pel, "AdaptationSet")
    for ai, a in enumerate(p.adaptation_sets or []):
        ael = as_els[ai] if ai < len(as_els) else None
        content = a.content_type or (a.mime_type or "").split("/")[0]
        rep_els = _children(ael, "Representation")
        for ri, r in enumerate(a.representations or []):
            c = _CONTENT.get(content or (r.mime_type or "").split("/")[0], "video")
            chain = [p, a, r]
            els = [pel, ael, rep_els[ri] if ri < len(rep_els) else None]
            if c == "video":
                video.append((a, r, chain, f"{where} AdaptationSet {ai + 1} Representation {ri + 1}", els))
            else:
                other.append((c, a.lang, a, r, chain, f"{where} AdaptationSet {ai + 1} Representation "
                              f"{ri + 1}", els))
    out: list[Representation] = []
    vnames = _ladder_names([((r.width or a.width, r.height or a.height) if (r.height or a.height) else None,
                             r.bandwidth) for a, r, _c, _w, _e in video])
    for n, (a, r, chain, w, els) in zip(vnames, video, strict=True):
        out.append(_representation(n, "video", None, a, r, chain, els, pbase, w))
    counts: dict[str, int] = {}
    onames: list[str] = []
    for c, lang, *_ in other:
        prefix = {"audio": "audio", "text": "subs"}.get(c, c)
        counts[prefix] = counts.get(prefix, 0) + 1
        safe = re.sub(r"[^a-z0-9]+", "-", (lang or "").lower()).strip("-")[:16].strip("-")
        onames.append(f"{prefix}-{safe or counts[prefix]}")
    for n, (c, lang, a, r, chain, w, els) in zip(_dedupe(onames), other, strict=True):
        out.append(_representation(n, c, lang, a, r, chain, els, pbase, w))
    return tuple(out[:MAX_REPRESENTATIONS])


def _representation(name: str, content: str, lang: str | None, a: Any, r: Any, chain: list[Any], els: list[Any],
                    pbase: str, where: str) -> Representation:
    base = _base(_base(pbase, a.base_urls, f"{where} BaseURL"), r.base_urls, f"{where} BaseURL")
    height, width = r.height or a.height, r.width or a.width
    for what, value, top in (("@bandwidth", r.bandwidth, MAX_SEQUENCE), ("@height", height, MAX_RESOLUTION),
                             ("@width", width, MAX_RESOLUTION)):
        if value is not None and not (0 if what == "@bandwidth" else 1) <= value <= top:
            raise MpdError(f"{where} has a {what} out of range")
    res = (int(width or 0), int(height)) if height else None
    return Representation(name, content, str(r.id or ""), r.bandwidth, res, r.codecs or a.codecs, lang, base,
                          _addressing(chain, els, base, where))


def _inherit(nodes: list[Any], attr: str) -> Any:
    """The innermost value of ``attr`` among the SegmentTemplate/List/Base nodes (23009-1 §5.3.9.1)."""
    for n in reversed(nodes):
        v = getattr(n, attr, None)
        if v is not None:
            return v
    return None


def _addressing(chain: list[Any], els: list[Any], base: str, where: str) -> Addressing:
    templates = [t for t in (_template_of(n) for n in chain) if t is not None]
    t_els = [e for e in (next(iter(_children(el, "SegmentTemplate")), None) for el in els) if e is not None]
    if templates:
        media = _inherit(templates, "media")
        if not media:
            raise MpdError(f"{where}: a SegmentTemplate without @media (index-only addressing is not read)")
        timescale = _int(_inherit(templates, "timescale") or 1, f"{where} @timescale", 1)
        ato = sum(float(t.availability_time_offset or 0) for t in templates)  # cumulative (23009-1 §5.3.9.5.3)
        if not 0 <= ato < MAX_TARGET_DURATION_S:
            ato = 0.0  # "INF" (available whenever listed) or nonsense: judged by the segment's end
        atc_raw = next((e.getAttribute("availabilityTimeComplete") for e in reversed(t_els)
                        if e.hasAttribute("availabilityTimeComplete")), "true")
        start_number = _int(_inherit(templates, "start_number") if _inherit(templates, "start_number") is not None
                            else 1, f"{where} @startNumber")
        pto = _int(_inherit(templates, "presentation_time_offset") or 0, f"{where} @presentationTimeOffset")
        init = _inherit(templates, "initialization")
        timelines = next((t.segment_timelines for t in reversed(templates) if t.segment_timelines), None)
        if timelines:
            ss = timelines[0].Ss or []
            if len(ss) > MAX_TIMELINE_ENTRIES:
                raise MpdError(f"{where}: a SegmentTimeline of over {MAX_TIMELINE_ENTRIES} entries")
            tl: list[tuple[int | None, int, int]] = []
            for k, s in enumerate(ss):
                if s.d is None or not 0 < s.d <= MAX_SEQUENCE:
                    raise MpdError(f"{where}: SegmentTimeline S {k + 1} has no positive @d")
                r = s.r if s.r is not None else 0
                if not -1 <= r <= 1_000_000_000:
                    raise MpdError(f"{where}: SegmentTimeline S {k + 1} has an @r out of range")
                t = None if s.t is None else _int(s.t, f"{where}: SegmentTimeline S {k + 1} @t")
                tl.append((t, s.d, r))
            return Addressing("timeline", media, init, timescale, None, start_number, pto, ato,
                              atc_raw.strip().lower() != "false", tuple(tl))
        dur = _inherit(templates, "duration")
        if dur is None or not 0 < dur <= MAX_TARGET_DURATION_S * timescale:
            raise MpdError(f"{where}: a SegmentTemplate with neither @duration nor a SegmentTimeline")
        return Addressing("template", media, init, timescale, dur, start_number, pto, ato,
                          atc_raw.strip().lower() != "false")
    lists = [sl for sl in ((n.segment_lists or [None])[0] for n in chain) if sl is not None]
    if lists:
        sl = lists[-1]
        timescale = _int(_inherit(lists, "timescale") or 1, f"{where} @timescale", 1)
        dur = _inherit(lists, "duration")
        if dur is None or dur <= 0:
            raise MpdError(f"{where}: a SegmentList without @duration (a SegmentTimeline in a list is not read)")
        urls = tuple(_join(base, u.media or "", where) for u in (sl.segment_urls or [])[:MAX_TIMELINE_ENTRIES])
        inits = _inherit(lists, "initializations")
        init = inits[0].source_url if inits else None
        sn = _inherit(lists, "start_number")
        return Addressing("list", None, init, timescale, dur, 1 if sn is None else _int(sn, f"{where} @startNumber"),
                          0, 0.0, True,
                          (), urls)
    # SegmentBase, or a BaseURL only: the whole file is one segment (on-demand profile)
    return Addressing("base", None, None, 1, None, 1, 0, 0.0, True, (), (base,))


def _join(base: str, ref: str, where: str) -> str:
    try:
        return _checked(urljoin(base, ref))
    except ValueError as exc:
        raise MpdError(f"{where}: an unusable segment URL ({exc})"[:160]) from None


_IDENT = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(?:%0(\d{1,2})d)?\$|\$\$")
_TOKEN = re.compile(r"\$[^$]*\$")  # every $...$ of a template, known or not


def fill(template: str, rep: Representation, number: int | None = None, time: int | None = None) -> str:
    """A SegmentTemplate with its identifiers substituted (23009-1 §5.3.9.4.4, Table 16)."""
    def sub(m: re.Match[str]) -> str:
        ident, width = m.group(1), m.group(2)
        if ident is None:
            return "$"
        if ident == "RepresentationID":
            return rep.rep_id
        v = {"Number": number, "Time": time, "Bandwidth": rep.bandwidth}[ident]
        if v is None:
            raise MpdError(f"{rep.name}: the template names ${ident}$, which this addressing has no value for")
        return str(v).zfill(int(width)) if width else str(v)
    if any(not _IDENT.fullmatch(tok) for tok in _TOKEN.findall(template)):
        raise MpdError(f"{rep.name}: a template identifier this reader does not know "
                       "(23009-1 Table 16: $RepresentationID$, $Number$, $Time$, $Bandwidth$, $$)")
    return _IDENT.sub(sub, template)


def _grace(seconds: float) -> float:
    return min(AVAILABILITY_GRACE_FRACTION * seconds, AVAILABILITY_GRACE_MAX_S)


def view(m: Manifest, rep: Representation, period_index: int, period: Period, now: float,
         window: int = WINDOW) -> MediaPlaylist:
    """``rep`` as the media playlist a client would read at wall time ``now`` (epoch seconds,
    on the clock UTCTiming names): its newest ``window`` available segments (module docstring).
    ``media_sequence`` is the first listed segment's number, ``discontinuity_sequence`` the
    period's index, ``endlist`` true for a static MPD. Raises MpdError when a template cannot be
    filled."""
    a = rep.addressing
    ast = m.availability_start or 0.0
    p0 = ast + period.start
    period_end = p0 + period.duration if period.duration is not None else math.inf
    ts = a.timescale
    init = InitSection(_join(rep.base, fill(a.init, rep, a.start_number, 0), rep.name)) if a.init else None
    # a segment [s, e) (wall clock) is available from e - ato (complete) or e (atc false), + grace
    ato = a.ato if a.atc else 0.0
    segs: list[Segment] = []
    if a.kind == "timeline":
        ranges: list[tuple[int, int, int, int]] = []  # (first number, start t, d, count)
        t_next = a.pto
        number = a.start_number
        for k, (t, d, r) in enumerate(a.timeline):
            start = t if t is not None else t_next
            if r >= 0:
                count = r + 1
            else:  # repeat to the next S's @t, the period's end, or now
                nxt = a.timeline[k + 1][0] if k + 1 < len(a.timeline) else None
                if nxt is not None:
                    count = max((nxt - start) // d, 0)
                else:
                    until = min(period_end, now + ato) if m.dynamic else period_end
                    count = max(int(((until - p0) * ts + a.pto - start) // d), 0) if until < math.inf else 0
            ranges.append((number, start, d, count))
            number += count
            t_next = start + count * d
        # $Time$ without $Number$: the position is no identity (nginx-rtmp slides its window
        # without a startNumber, so the newest listed segment would keep one number for ever):
        # the timeline's first segment is numbered by its start time in nominal durations (the
        # duration most segments listed have, the latest S on a tie), the rest by position from
        # it, so numbers within a view are consecutive; the HLS probe keeps them steady across
        # views by the URIs two views share (probes/hls.py, _steady)
        by_time = "$Time" in (a.media or "") and "$Number" not in (a.media or "")
        if by_time and ranges:
            nominal = max(ranges, key=lambda x: (x[3], x[1]))[2]
            shift = round((ranges[0][1] - a.pto) / nominal) - (ranges[0][0] - a.start_number)
            ranges = [(first + shift, start, d, count) for first, start, d, count in ranges]
        for first, start, d, count in reversed(ranges):
            if count <= 0:
                continue
            top = count - 1  # the newest available of this S, computed, not walked to
            if m.dynamic:
                limit = (now + ato - _grace(d / ts) - p0) * ts + a.pto  # media time a segment must end by
                top = min(top, math.floor((limit - start) / d) - 1)
            for j in range(top, max(top - (window - len(segs)), -1), -1):
                t = start + j * d
                n = first + j
                uri = _join(rep.base, fill(a.media or "", rep, n, t), rep.name)
                segs.append(Segment(n, uri, d / ts, p0 + (t - a.pto) / ts if m.dynamic else None, False, init))
            if len(segs) >= window:
                break
        segs.reverse()
    elif a.kind == "template":
        assert a.duration is not None
        d_s = a.duration / ts
        if m.dynamic:
            # the newest complete segment: its end by now (+ ato - grace), and within the Period
            newest = math.floor((min(now + ato - _grace(d_s), period_end) - p0) / d_s + 1e-9) - 1
        else:
            newest = math.ceil((period.duration or 0) / d_s) - 1
        oldest = max(newest - window + 1, 0)
        if m.dynamic and m.time_shift_buffer_depth is not None:
            oldest = max(oldest, math.floor((now - p0 - m.time_shift_buffer_depth) / d_s))
        for i in range(oldest, newest + 1):
            n = a.start_number + i
            t = a.pto + i * a.duration
            uri = _join(rep.base, fill(a.media or "", rep, n, t), rep.name)
            segs.append(Segment(n, uri, d_s, p0 + i * d_s if m.dynamic else None, False, init))
    elif a.kind == "list":
        assert a.duration is not None
        d_s = a.duration / ts
        for i, uri in list(enumerate(a.urls))[-window:]:
            if m.dynamic and p0 + (i + 1) * d_s + _grace(d_s) > now:
                break
            segs.append(Segment(a.start_number + i, uri, d_s, p0 + i * d_s if m.dynamic else None, False, init))
    else:
        dur = period.duration or m.media_presentation_duration or 0.0
        segs.append(Segment(0, a.urls[0], dur, None, False, None))
    # the target duration is @maxSegmentDuration (a segment over it is too long, as one over
    # EXT-X-TARGETDURATION), else the longest listed; not rounded: DASH durations are exact
    target = m.max_segment_duration or max((s.duration for s in segs), default=0.0) or 1.0
    target = min(max(target, 0.1), MAX_TARGET_DURATION_S)
    return MediaPlaylist(
        media_sequence=segs[0].seq if segs else a.start_number,
        discontinuity_sequence=period_index,
        target_duration=target,
        segments=tuple(segs),
        endlist=not m.dynamic,
        independent_segments=True,
        listed=not (m.dynamic and a.kind == "template"),
        protocol="dash",
        # where a dash.js viewer plays: suggestedPresentationDelay, else 4 segments behind live
        hold_back=(m.suggested_presentation_delay if m.suggested_presentation_delay is not None
                   else DASHJS_LIVE_DELAY_SEGMENTS * target) if m.dynamic else None,
    )


def views(m: Manifest, now: float, window: int = WINDOW) -> list[tuple[Representation, MediaPlaylist]]:
    """Every Representation of the Period played at ``now``, as (representation, view)."""
    idx, period = m.period_at(now)
    return [(r, view(m, r, idx, period, now, window)) for r in period.representations]


VIEW_FRAGMENT = "#dash="
"""What a Representation's URI carries after the MPD's own URL: ``<mpd url>#dash=<name>``
(a fragment: never sent, RFC 9110 §4.2.4, and kept across redirects, §10.2.2)."""


@functools.lru_cache(maxsize=64)
def _parsed(body: bytes, base: str) -> Manifest:
    return parse_mpd(body, base)


def manifest(body: bytes, base_uri: str) -> Manifest:
    """:func:`parse_mpd` of a fetched body, the last 64 distinct (body, base) parses kept: every
    rendition of an attempt reads the same MPD."""
    return _parsed(body, base_uri.split("#", 1)[0])


def as_playlist(m: Manifest, base_uri: str, now: float) -> MasterPlaylist | MediaPlaylist:
    """The MPD as HLS's model (see :func:`probes.core.playlist.parse_body`)."""
    mpd_url, _, frag = base_uri.partition("#")
    if frag.startswith("dash="):
        name = frag[5:]
        idx, period = m.period_at(now)
        rep = next((r for r in period.representations if r.name == name), None)
        if rep is None:
            raise MpdError(f"the MPD has no Representation {name} in its current Period")
        v = view(m, rep, idx, period, now)
        if not v.segments and idx > 0:  # a Period just begun has no whole segment yet: the last one plays on
            prev = m.periods[idx - 1]
            before = next((r for r in prev.representations if r.name == name), None)
            if before is not None:
                return view(m, before, idx - 1, prev, now)
        return v
    _idx, period = m.period_at(now)
    reps = period.representations
    has_audio = any(r.content == "audio" for r in reps)
    mbt = m.min_buffer_time or 0.0
    variants = tuple(Variant(r.name, f"{mpd_url}{VIEW_FRAGMENT}{r.name}", r.bandwidth, r.resolution,
                             "dash-audio" if has_audio else None, r.codecs, mbt)
                     for r in reps if r.content == "video")[:MAX_VARIANTS]
    media = tuple(MediaRendition(r.name, "AUDIO" if r.content == "audio" else "SUBTITLES",
                                 "dash-audio" if r.content == "audio" else "dash-text", r.lang,
                                 i == 0, True, f"{mpd_url}{VIEW_FRAGMENT}{r.name}")
                  for i, r in enumerate(x for x in reps if x.content in ("audio", "text")))[:MAX_VARIANTS]
    if not variants:  # audio only: the audio Representations are the ladder
        variants = tuple(Variant(r.name, f"{mpd_url}{VIEW_FRAGMENT}{r.name}", r.bandwidth, None, None, r.codecs, mbt)
                         for r in reps if r.content == "audio")
        media = ()
    if not variants:
        raise MpdError("the current Period has no video or audio Representation")
    return MasterPlaylist(variants, media, (), True, None)


async def parse_body(body: bytes, base_uri: str, now: float | None = None) -> MasterPlaylist | MediaPlaylist:
    """An MPD body as HLS's model at wall time ``now`` (local clock when None); MpdError when
    unusable. A body over ``PARSE_INLINE_MAX_BYTES`` is parsed on the playlist parser's thread."""
    if len(body) <= PARSE_INLINE_MAX_BYTES:
        m = manifest(body, base_uri)
    else:
        m = await asyncio.get_running_loop().run_in_executor(_PARSER, manifest, body, base_uri)
    return as_playlist(m, base_uri, time.time() if now is None else now)
