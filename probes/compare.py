"""Manifest comparison probe: a stream's HLS and DASH manifests of one encode, side by side.

``streams[].compare.url`` names a second manifest of the encode ``streams[].origin`` serves (an
MPD beside an HLS master playlist, or an HLS master beside an MPD), both at the origin. Each
attempt reads both — the MPD once (each Representation's view: probes/core/mpd.py), the HLS
master every ``master_refresh_s`` and each variant's media playlist — pairs their video
renditions and lines them up (probes/core/compare.py). Evidence, at ``origin``/``origin``:

- ``manifest_behind`` (DOWN): one manifest's newest segment has not changed for more than one
  target duration + ``max_skew_s`` while the other's changed within that time (and, where the
  two can be lined up, lists media after it). One encode behind both, so the encode is running
  and the packaging of that format is not. Not judged against a DASH view computed from the
  clock (``$Number$`` without a timeline advances whatever the packager does: a stopped encode
  would read as the other manifest behind). Without this probe, a
  stopped MPD with HLS going on (or the reverse) reads as a transcoder that stopped: every
  rendition stale at the origin. The rule: a segment is due every target duration (RFC 8216
  §6.2.2, ISO/IEC 23009-1 §5.3.9.5 SegmentTimeline); the two formats are written at the same
  segment boundary by one packager (ffmpeg, a CMAF packager) or by two fed the same encode, so
  ``max_skew_s`` (0.5 s by default, a quarter of a 2-s segment) is what one may trail the other
  before it counts. It fires half a second before the availability probe's own stale rule
  (1.5 target durations) on a 2-s target, so the localizer sees the cause no later than the
  symptom. Once one side has stood still while the other moved on, the probe asks for an
  attempt at the moment it would be behind, and a second look ``CONFIRM_AFTER`` (0.4) of an
  interval after it first is (``ProbeResult.recheck_at``, as the HLS probe does for a stale
  playlist): not at the next attempt, up to an interval later;
- ``manifests_disagree`` (DEGRADED): a segment both list (by URI, else by wall-clock start)
  lasts more than ``duration_tolerance_s`` longer in one than in the other (0.1 s: EXTINF and
  SegmentTimeline durations are both exact to the millisecond when written from one encode), or
  the two place the same segments more than ``offset_tolerance_s`` apart on the wall clock
  (``EXT-X-PROGRAM-DATE-TIME`` against ``availabilityStartTime`` + segment time: a DASH player
  computes availability and latency on another timeline than an HLS player of the same stream).
  1 s, because packagers write PDT to the second: ffmpeg's dash muxer's HLS side writes
  ``...:42.000`` beside an availabilityStartTime of ``...:42.321`` (measured here: 0.32 and
  0.53 s apart in two runs), so a second is their precision and more is a timeline of its own;
  and, both advancing, one lists the same media more than ``offset_tolerance_s`` later than the
  other in each of the last ``LEAD_ATTEMPTS`` (5) attempts (a packager that lags the other; lined
  up by wall clock, a timeline shifted by more than half a segment reads as such a lead, not as
  an offset). An attempt whose two reads finished more than half ``offset_tolerance_s`` apart,
  or during which the agent's own loop stood still for 0.25 s (its CPU starved), judges no
  lead and no manifest behind (UNKNOWN, not measured): one side read late by the agent is no
  packager's lag;
- the compared manifest not answering, or not parsing, is ``manifest_behind`` too (that format
  is not there for its viewers while the other is); the origin's own manifest failing is the
  availability probe's to judge (UNKNOWN here); renditions that cannot be lined up are named in
  an UNKNOWN line, never called fine.

Figures: ``compare_lead_s`` and ``compare_lead_segments`` per pair (the second manifest's newest
segment ahead of the first's; negative: behind), ``compare_offset_s``, ``compare_matched``
(segments both list) and the mode (``uri``/``time``). Metric
``signalpath_manifest_lead_seconds{rendition}`` (rendition: the first manifest's name).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from probes.base import Evidence, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core import compare
from probes.core.config import StrictModel
from probes.core.mpd import AVAILABILITY_GRACE_MAX_S, looks_like_mpd
from probes.core.playlist import MasterPlaylist, MediaPlaylist, PlaylistError
from probes.core.redact import redact_url
from probes.core.thresholds import CONFIRM_AFTER, RECHECK_AFTER_S
from probes.faults import Fault

STAGE = "origin"
COMPONENT = "origin"
MAX_SKEW_S = 0.5
DURATION_TOLERANCE_S = 0.1
OFFSET_TOLERANCE_S = 1.0
LEAD_ATTEMPTS = 5  # a lead between two advancing manifests counts when it holds this many attempts in a row
UNTIMELY_STALL_S = 0.25  # an agent loop stall this long during an attempt: its lead is not judged


class CompareSettings(StrictModel):
    """``streams[].compare``: the second manifest of the origin's encode (module docstring)."""

    url: str = Field(description="an MPD beside an HLS origin, or an HLS master playlist beside an MPD origin")
    interval_s: float = Field(1.0, gt=0, le=300)
    timeout_s: float = Field(4.0, gt=0, le=120)
    max_skew_s: float = Field(MAX_SKEW_S, ge=0, le=60, description="how long one manifest may trail the other")
    duration_tolerance_s: float = Field(DURATION_TOLERANCE_S, gt=0, le=10)
    offset_tolerance_s: float = Field(OFFSET_TOLERANCE_S, gt=0, le=60)
    master_refresh_s: float = Field(10.0, gt=0, le=3600, description="how often an HLS master playlist is read again")
    max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    verify_tls: bool = True


@dataclass(slots=True)
class _Side:
    """One manifest's memory across attempts (in ctx.state)."""

    master: MasterPlaylist | None = None
    master_at: float = -1e18
    dash: bool = False  # the manifest is an MPD (read whole every attempt)
    newest: dict[str, tuple[tuple[str, tuple[int, int] | None], float]] = field(default_factory=dict)
    """rendition -> ((URI, byte range) of its newest segment, when first seen)"""


@dataclass(slots=True)
class _Read:
    label: str  # "HLS" / "DASH"
    playlists: dict[str, MediaPlaylist]
    sizes: dict[str, tuple[int, int] | None]
    bandwidths: dict[str, int | None]
    unread: dict[str, str] = field(default_factory=dict)  # rendition -> why it could not be read this time


class _Failed(Exception):
    """A manifest that did not answer or does not parse (``detail`` names it, redacted)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    cfg: CompareSettings = target.config
    res = ProbeResult()
    st = ctx.state
    sides = [st.setdefault("first", _Side()), st.setdefault("second", _Side())]
    urls = [target.url or "", cfg.url]
    t0 = ctx.clock()
    done: list[float] = []

    async def timed(u: str, s: _Side) -> _Read:
        try:
            return await _read(ctx, cfg, u, s)
        finally:
            done.append(ctx.clock())

    reads = await asyncio.gather(*(timed(u, s) for u, s in zip(urls, sides, strict=True)), return_exceptions=True)
    # the two reads finished far apart, or the agent's own loop stood still meanwhile (its CPU
    # starved): what one lists later may be the agent's lateness, so no lead is judged this time
    untimely = (max(done) - min(done) > cfg.offset_tolerance_s / 2
                or ctx.agent_stall(t0, ctx.clock()) >= UNTIMELY_STALL_S)
    for r in reads:
        if isinstance(r, BaseException) and not isinstance(r, _Failed):
            raise r
    first, second = reads
    if isinstance(first, _Failed):  # the origin's own manifest: the availability probe judges it
        res.evidence.append(Evidence(STAGE, COMPONENT, State.UNKNOWN, None, f"not compared: {first.detail}"))
        return res
    if isinstance(second, _Failed):  # that format is not there for its viewers while the other is
        res.evidence.append(Evidence(STAGE, COMPONENT, State.DOWN, Fault.MANIFEST_BEHIND, second.detail))
        return res
    assert isinstance(first, _Read) and isinstance(second, _Read)
    if first.label == second.label:
        first.label, second.label = f"the origin's {first.label}", f"the compared {second.label}"
    now = ctx.clock()
    for read, side in ((first, sides[0]), (second, sides[1])):
        for name, pl in read.playlists.items():
            newest = (pl.segments[-1].uri, pl.segments[-1].byterange) if pl.segments else None
            if newest is not None and (name not in side.newest or side.newest[name][0] != newest):
                side.newest[name] = (newest, now)
        for gone in set(side.newest) - set(read.playlists):
            del side.newest[gone]  # a rendition no longer listed
    pairs = compare.pair(first.playlists, second.playlists, _merged(first.sizes, second.sizes),
                         _merged(first.bandwidths, second.bandwidths))
    behind: list[str] = []
    disagree: list[str] = []
    unmatched: list[str] = [f"{n} ({why})" for n, why in (*first.unread.items(), *second.unread.items())]
    labels = {"stream": target.stream, "stage": STAGE, "component": COMPONENT}
    judged = 0  # pairs whose lag was judged
    recheck: list[float] = []  # when a side would be behind (look then, not at the next attempt)
    for n1, n2 in pairs:
        pl1, pl2 = first.playlists[n1], second.playlists[n2]
        m = compare.measure(n1, pl1, n2, pl2)
        figs = res.figures.setdefault(n1, {})
        figs.update(compare_mode=m.mode, compare_matched=m.matched, compare_with=n2)
        if m.lead_s is not None:
            figs.update(compare_lead_s=round(m.lead_s, 3) + 0.0, compare_lead_segments=m.lead_segments or 0)
            res.samples.append(Sample("signalpath_manifest_lead_seconds", {**labels, "rendition": n1}, m.lead_s))
        if m.offset_s is not None:
            figs["compare_offset_s"] = round(m.offset_s, 3) + 0.0
        td = max(pl1.target_duration or 0.0, pl2.target_duration or 0.0, 1.0)
        due = td + cfg.max_skew_s
        was_behind = len(behind)
        # both sides listed a new segment within their due time: the lead rule below is about two
        # formats that both advance (an encode that stopped leaves whatever lead it stopped at)
        both_advance = all(now - sides[i].newest.get(n, (None, -math.inf))[1] <= due for i, n in ((0, n1), (1, n2)))
        if not (pl1.listed and pl2.listed):
            # a DASH view computed from the clock ($Number$ without a timeline) advances whatever
            # the packager does: no lag is judged against it (a stopped encode would read as the
            # other manifest behind)
            unmatched.append(f"{n1}/{n2} (a view computed from the clock: lag not judged)")
        else:
            judged += 1
            ages = (now - sides[0].newest.get(n1, (None, now))[1], now - sides[1].newest.get(n2, (None, now))[1])
            for (read_l, name_l), (read_a, name_a), age_l, age_a, ahead in (
                    ((first, n1), (second, n2), ages[0], ages[1], m.lead_s),
                    ((second, n2), (first, n1), ages[1], ages[0], -m.lead_s if m.lead_s is not None else None)):
                # stood still past its due time while the other moved within it — and later than this
                # one did by more than the skew and one attempt (two formats of an encode that stops
                # show their last segment up to an attempt apart: nginx-rtmp's MPD view holds a
                # segment back until its availability time) — and, where the two can be lined up,
                # the other lists later media: one encode, one format stopped
                if age_l > due and age_a <= due and age_l - age_a > cfg.max_skew_s + target.interval \
                        and (ahead is None or ahead > 0):
                    lead = f" ({ahead:+.1f} s of media after it)" if ahead is not None else ""
                    behind.append(f"{read_l.label} {name_l} has not changed for {age_l:.1f} s while {read_a.label} "
                                  f"{name_a} of the same encode advances{lead}")
            # one side unchanged since the other moved on by more than the skew and an attempt: it is
            # behind the moment its age passes its due time unless it changes first — looked at then,
            # not at the next attempt up to an interval later (as the HLS probe's stale playlist)
            for (s_l, n_l), (s_a, n_a) in (((sides[0], n1), (sides[1], n2)), ((sides[1], n2), (sides[0], n1))):
                seen_l, seen_a = s_l.newest.get(n_l, (None, now))[1], s_a.newest.get(n_a, (None, now))[1]
                if seen_a - seen_l > cfg.max_skew_s + target.interval and now - seen_l <= due:
                    recheck.append(seen_l + due + RECHECK_AFTER_S)
            if m.mode == "none":
                unmatched.append(f"{n1}/{n2} (no shared segment, no wall-clock times: lag only by age)")
        if m.duration_mismatch is not None:
            _, d1, d2 = m.duration_mismatch
            if abs(d1 - d2) > cfg.duration_tolerance_s:
                disagree.append(f"{n1}: a segment both list lasts {d1:.3f} s in {first.label}, {d2:.3f} s in "
                                f"{second.label}")
        if m.offset_s is not None and abs(m.offset_s) > cfg.offset_tolerance_s:
            disagree.append(f"{n1}: {second.label} places its segments {m.offset_s:+.2f} s from where "
                            f"{first.label} does (wall clock)")
        leads = st.setdefault("leads", {}).setdefault(n1, deque(maxlen=LEAD_ATTEMPTS))
        leads.append(m.lead_s if m.lead_s is not None and len(behind) == was_behind and not untimely and both_advance
                     else None)
        if len(leads) == LEAD_ATTEMPTS and all(x is not None and abs(x) > cfg.offset_tolerance_s for x in leads) \
                and len({x > 0 for x in leads if x is not None}) == 1:
            # both advance, yet one lists the same media later (or, lined up by wall clock, at
            # another time: past half a segment a shifted timeline reads as a lead) in every one of
            # the last attempts, never just at a segment boundary
            near = min((x for x in leads if x is not None), key=abs)
            disagree.append(f"{n1}: {second.label} is {near:+.1f} s of media from {first.label} in each of the "
                            f"last {LEAD_ATTEMPTS} attempts while both advance (one lists segments later, or its "
                            "timeline is shifted)")
    paired = ({n1 for n1, _ in pairs}, {n2 for _, n2 in pairs})
    alone = sorted(set(first.playlists) - paired[0]) + sorted(set(second.playlists) - paired[1])
    if behind and untimely:
        # ages on the agent's own clock, read across a stall of its loop (its CPU starved): one side
        # read before it and one after is the agent's lateness, not a packager's (not measured)
        res.evidence.append(Evidence(STAGE, COMPONENT, State.UNKNOWN, Fault.MANIFEST_BEHIND,
                                     "not judged: the agent's own loop stood still during the reads; it read: "
                                     + "; ".join(behind)))
    elif behind:
        res.evidence.append(Evidence(STAGE, COMPONENT, State.DOWN, Fault.MANIFEST_BEHIND, "; ".join(behind)))
        if not st.get("behind"):  # newly behind: the second look the localizer opens on, soon
            recheck.append(now + CONFIRM_AFTER * target.interval)
    st["behind"] = bool(behind) and not untimely
    res.recheck_at = min(recheck, default=None)
    if disagree:
        res.evidence.append(Evidence(STAGE, COMPONENT, State.DEGRADED, Fault.MANIFESTS_DISAGREE, "; ".join(disagree)))
    if not pairs:
        res.evidence.append(Evidence(STAGE, COMPONENT, State.UNKNOWN, None, (
            f"not compared: {first.label} and {second.label} have no rendition in common (no shared segment, "
            "resolution or count)")))
    elif not behind and not disagree:
        extra = f"; not paired: {', '.join(alone)}" if alone else ""
        extra += f"; {'; '.join(unmatched)}" if unmatched else ""
        if judged:
            res.evidence.append(Evidence(STAGE, COMPONENT, State.OK, None,
                                         f"{first.label} and {second.label} agree ({len(pairs)} renditions paired{extra})"))
        else:  # nothing's lag could be judged: not called fine
            res.evidence.append(Evidence(STAGE, COMPONENT, State.UNKNOWN, None,
                                         f"not compared for lag: {first.label} and {second.label}{extra}"))
    return res


def _merged(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {**b, **a}


async def _read(ctx: ProbeContext, cfg: CompareSettings, url: str, side: _Side) -> _Read:
    """The video renditions of one manifest, as media playlists (an MPD: read every attempt, its
    ladder and each view at the wall clock now; HLS: the master every ``master_refresh_s``, each
    variant's media playlist every attempt). Raises :class:`_Failed` when the manifest itself
    fails; a rendition that fails alone is named in ``unread`` and left out of the comparison."""
    fr = None
    now = ctx.clock()
    if side.dash or side.master is None or now - side.master_at >= cfg.master_refresh_s:
        fr = await _get(ctx, cfg, url)
        parsed = await _parse(ctx, fr.body, fr.final_url or url, url)
        if isinstance(parsed, MediaPlaylist):  # a media playlist where a manifest belongs: one rendition
            return _Read("HLS", {"main": parsed}, {"main": None}, {"main": None})
        side.master, side.master_at = parsed, now
        side.dash = looks_like_mpd(fr.body, fr.headers.get("content-type"))
    master = side.master
    assert master is not None
    views: list[MediaPlaylist | MasterPlaylist | BaseException]
    if side.dash:
        assert fr is not None
        body, base = fr.body, (fr.final_url or url).split("#", 1)[0]
        # read half a second ahead, the reader's availability grace at most (probes/core/mpd.py):
        # whether the packager wrote a segment is the question here, not whether a player may ask
        # for it yet; with the grace, the lab's MPD listed each segment up to half a second after
        # the HLS playlists of the same encode, an attempt later at a 1-s interval, and a stopped
        # MPD was judged an attempt late (for segments under 2 s, whose grace is a quarter of
        # them, a timeline's segment may show up to 0.5 - d/4 s before its computed end: the
        # lead and behind rules' own margins, max_skew_s and an attempt, are wider)
        views = list(await asyncio.gather(*(_parse(ctx, body, base + v.uri[v.uri.index("#"):], url,
                                                   AVAILABILITY_GRACE_MAX_S)
                                            for v in master.variants), return_exceptions=True))
    else:
        async def one(uri: str) -> MediaPlaylist | MasterPlaylist:
            f = await _get(ctx, cfg, uri)
            return await _parse(ctx, f.body, f.final_url or uri, uri)
        views = list(await asyncio.gather(*(one(v.uri) for v in master.variants), return_exceptions=True))
    playlists: dict[str, MediaPlaylist] = {}
    unread: dict[str, str] = {}
    for v, p in zip(master.variants, views, strict=True):
        if isinstance(p, MediaPlaylist):
            playlists[v.name] = p
        elif isinstance(p, _Failed):
            unread[v.name] = p.detail
        elif isinstance(p, BaseException):
            raise p
    return _Read("DASH" if side.dash else "HLS", playlists, {v.name: v.resolution for v in master.variants},
                 {v.name: v.bandwidth for v in master.variants}, unread)


async def _get(ctx: ProbeContext, cfg: CompareSettings, url: str) -> Any:
    fr = await ctx.http.get(url, max_bytes=cfg.max_bytes, verify_tls=cfg.verify_tls)
    if fr.failure is not None:
        raise _Failed(f"{redact_url(url)}: {fr.detail}")
    return fr


async def _parse(ctx: ProbeContext, body: bytes, base: str, url: str,
                 ahead_s: float = 0.0) -> MasterPlaylist | MediaPlaylist:
    try:
        return await ctx.playlists.parse(body, base, ctx.wall() + ahead_s)
    except PlaylistError as exc:
        raise _Failed(f"{redact_url(url)} is malformed: {exc}") from None
