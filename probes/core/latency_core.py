"""Pure core of the latency probe: first-seen brackets, per-segment stage latencies,
baselines, the clock rule and the per-segment trace. No I/O, no clock of its own:
every time is passed in (epoch seconds), so tests feed it made-up observations.

Definitions (all per segment, per rendition; "capture" times come from the picture's
beacon, or from EXT-X-PROGRAM-DATE-TIME, RFC 8216 §4.3.2.6, when there is none):

- first seen at an endpoint: the agent polls the endpoint's media playlist; a segment
  appears between the last poll that did not list it and the first that did. Each poll
  is placed at the middle of its request (``(sent + answered) / 2``, the best estimate
  of when the server built the answer) and the segment's first-seen time is the middle
  of that bracket; half the bracket is its uncertainty. A segment already listed in the
  first poll of an endpoint has no bracket and is not timed there.
- upstream (stage ``transcode``, component ``transcoder``): origin first-seen minus the
  capture time of the segment's LAST frame = ingest + transcode + packaging. The
  localizer's principle puts unexplained upstream trouble at ``transcode`` unless the
  ingest or studio evidence is bad (agent/localize.py); an ingest probe that timestamps
  the stream itself would be needed to split ingest from transcode (not available:
  nginx-rtmp's /stat and the lab's in-process ingest carry no timestamps).
- cdn (stage ``cdn``, component = edge): edge first-seen minus origin first-seen.
- glass-to-glass (per edge): edge first-seen minus the capture time of the last frame.

Baseline rule (``latency_high``): a value is high when it exceeds the median of the
values of the last ``baseline_s`` seconds by more than ``max(high_abs_s, high_ratio x
median)`` (defaults 300 s, 1 s, 50 %), once ``min_samples`` values are known.

Clock rule (THRESHOLDS.md "clock offset": < 100 ms for sub-second latency figures;
chrony documentation): capture times come from the studio clock and first-seen times
from the agent's. With an NTP server configured, the agent measures its own offset;
when that offset is unknown (server silent) or at least ``max_offset_s`` (0.1 s), figures
are reported in whole seconds only (``precision="s"``). Without an NTP server the host
clock is trusted (``clock="unchecked"``), but a capture time more than 0.1 s after the
end of the origin first-seen bracket (a negative upstream latency) proves a skew and also drops the figures to
whole seconds.

Ingest share (:class:`IngestLatencyShare`): the latest ingest-latency windows of one
stream, written by its ingest monitor(s) (probes/ingest_monitor.py) and read by its
latency probe (probes/latency.py), which subtracts the ingest latency of the frames
nearest in capture time from its upstream figure; one object per stream, created by
agent/jobs.py and put in both targets' configs.
"""

from __future__ import annotations

import bisect
import collections
import math
import statistics
from dataclasses import dataclass, field

from probes.base import SpanRecord
from probes.core.thresholds import CLOCK_OFFSET_MAX_S

SEPARATE_TRACE_ATTR = "signalpath.trace.separate"
"""A SpanRecord in ``ProbeResult.spans`` carrying this attribute (True) is exported as a
trace of its own (agent/tracing.py), not nested under the cycle's trace."""

UPSTREAM = ("transcode", "transcoder")
SKEW_TOLERANCE_S = 0.1

# Defaults of the baseline rule (``latency_high``, module docstring), shared by the latency
# probe and the ingest monitor. Our choice, no standard behind them: five minutes of values
# absorb a packager's slow drift but not a step, and a rise of 1 s or 50 % of the median
# (whichever is larger) is one a viewer notices, far above the measurement's one-frame error.
BASELINE_S = 300.0
BASELINE_MIN_SAMPLES = 5
HIGH_ABS_S = 1.0
HIGH_RATIO = 0.5


PART_KEY = 1000
"""LL-HLS: a part's unit number is its media sequence x 1000 + its index, so parts sort in
playlist order (more than 1000 parts to one segment is refused: ``part_units``)."""


@dataclass(slots=True)
class Seen:
    at: float  # epoch seconds (agent clock), bracket middle
    half_width: float

    def not_before(self, other: Seen) -> Seen:
        """This bracket cut to start no earlier than ``other``'s start: an edge cannot list a
        segment before the origin it pulls from did, so the edge's bracket (opened by a slow
        poll long before) starts where the origin's does. Assumes the edge pulls from the
        origin watched; one fed by another origin that lists a segment inside this origin's
        bracket is timed up to half its own bracket late (a bracket wholly before the
        origin's is left as measured)."""
        lo, hi = max(self.at - self.half_width, other.at - other.half_width), self.at + self.half_width
        return self if lo <= self.at - self.half_width or lo >= hi else Seen((lo + hi) / 2.0, (hi - lo) / 2.0)


@dataclass(slots=True)
class SegmentTiming:
    """What is known about one segment of one rendition."""

    rendition: str
    seq: int
    duration: float
    pdt: float | None = None
    capture_first: float | None = None
    capture_last: float | None = None
    method: str | None = None  # "beacon" | "pdt"
    seen: dict[str, Seen] = field(default_factory=dict)
    listed_at: float = 0.0  # epoch seconds the agent first heard of it (any endpoint)
    decode_cpu_s: float | None = None
    ingest_s: float | None = None  # ingest latency from an ingest monitor (probes/ingest_monitor.py), when known
    part: int | None = None  # LL-HLS: this is part ``part`` of segment ``seq`` (EXT-X-PART), not the whole segment
    backlog: set[str] = field(default_factory=set)  # endpoints that first listed it together with a later one
    horizon_s: float | None = None  # a part: its segment's target duration (how long it is waited for)
    target_s: float | None = None  # its playlist's EXT-X-TARGETDURATION (the next segment lasts at most that)

    @property
    def unit(self) -> int:
        """Its number among the units the tracker orders: the media sequence, or for a part
        ``seq x PART_KEY + part`` (parts and segments of one playlist are never mixed)."""
        return self.seq if self.part is None else self.seq * PART_KEY + self.part

    @property
    def label(self) -> str:
        """``12`` for segment 12, ``12.3`` for its part 3 (RFC 8216bis §6.2.5.2 numbering)."""
        return str(self.seq) if self.part is None else f"{self.seq}.{self.part}"

    def upstream(self, origin: str = "origin") -> float | None:
        o = self.seen.get(origin)
        if o is None or self.capture_last is None:
            return None
        return o.at - self.capture_last

    def cdn(self, edge: str, origin: str = "origin") -> float | None:
        o, e = self.seen.get(origin), self.seen.get(edge)
        return None if o is None or e is None else e.at - o.at

    def glass_to_glass(self, endpoint: str) -> float | None:
        e = self.seen.get(endpoint)
        return None if e is None or self.capture_last is None else e.at - self.capture_last


@dataclass(slots=True)
class _PollMemory:
    last_mid: float | None = None
    last_seq: int | None = None
    expected_at: float | None = None  # epoch seconds the next segment is due
    arrived_at: float | None = None  # epoch seconds the newest segment appeared (its bracket's middle)
    lags: collections.deque[float] = field(default_factory=lambda: collections.deque((0.0,), maxlen=LAG_MEMORY))
    """An edge: how long after the origin it listed its last few segments (s)."""
    errors: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=ARRIVAL_MEMORY))
    """Arrival minus prediction (s) of the last few segments timed by polls, one at a time."""


LAG_MEMORY = 5  # an edge's lags behind the origin remembered (FirstSeenTracker.behind)
ARRIVAL_MEMORY = 6  # arrivals whose error against prediction places the next window (FirstSeenTracker.windows)


class FirstSeenTracker:
    """Brackets of first appearance per (endpoint, rendition)."""

    def __init__(self) -> None:
        self._mem: dict[tuple[str, str], _PollMemory] = {}

    def observe(self, endpoint: str, rendition: str, segments: list[tuple[int, float]], sent: float,
                answered: float) -> list[tuple[int, Seen | None]]:
        """One successful poll listing ``segments`` as (seq, duration); returns the new ones.

        Each new sequence number comes with its :class:`Seen` bracket, or None when the
        endpoint had no earlier poll to bracket it with (listed before the agent looked).
        """
        mem = self._mem.setdefault((endpoint, rendition), _PollMemory())
        mid = (sent + answered) / 2.0
        new: list[tuple[int, Seen | None]] = []
        newest = max((s for s, _ in segments), default=None)
        if newest is not None and (mem.last_seq is None or newest > mem.last_seq):
            for seq, _dur in segments:
                if mem.last_seq is not None and seq <= mem.last_seq:
                    continue
                if mem.last_seq is None and seq != newest:
                    continue  # the backlog of the first poll is not news
                if mem.last_seq is None or mem.last_mid is None:
                    new.append((seq, None))
                else:
                    new.append((seq, Seen((mem.last_mid + mid) / 2.0, (mid - mem.last_mid) / 2.0)))
            last_dur = next((d for s, d in segments if s == newest), 0.0)
            arrival = new[-1][1].at if new and new[-1][1] is not None else mid
            if len(new) == 1 and new[0][1] is not None and mem.expected_at is not None:
                mem.errors.append(arrival - mem.expected_at)
            mem.expected_at = arrival + last_dur
            mem.arrived_at = arrival
            mem.last_seq = newest
        elif newest is not None and mem.last_seq is not None and newest < mem.last_seq:
            mem.last_seq = newest  # restarted sequence: follow it
        mem.last_mid = mid
        return new

    def observe_at(self, endpoint: str, rendition: str, units: list[int],
                   seen: Seen | None) -> list[tuple[int, Seen | None]]:
        """An answer to a blocking reload (LL-HLS): the new ``units`` appeared at ``seen`` (the
        server held the request until the part existed, so the answer is the arrival), not
        bracketed by polls; None: not timed (an answer at once after a failed one). The first
        answer's backlog is not news, as in :meth:`observe`."""
        mem = self._mem.setdefault((endpoint, rendition), _PollMemory())
        newest = max(units, default=None)
        new: list[tuple[int, Seen | None]] = []
        if newest is not None and (mem.last_seq is None or newest > mem.last_seq):
            first = mem.last_seq is None
            new = [(u, None if first else seen) for u in sorted(units)
                   if (u == newest if first else u > (mem.last_seq or 0))]
            mem.last_seq = newest
        elif newest is not None and mem.last_seq is not None and newest < mem.last_seq:
            mem.last_seq = newest  # restarted numbering: follow it
        mem.last_mid, mem.expected_at = seen.at if seen is not None else None, None  # no fast polls for it
        return new

    def newest(self, endpoint: str, rendition: str) -> tuple[int, float] | None:
        """(the newest unit — media sequence, or part unit — ``endpoint`` listed for
        ``rendition``, the middle of the poll that last answered, epoch s); None when the last
        poll failed (what it would have listed is not known) or none answered."""
        mem = self._mem.get((endpoint, rendition))
        if mem is None or mem.last_seq is None or mem.last_mid is None:
            return None
        return mem.last_seq, mem.last_mid

    def failed(self, endpoint: str, rendition: str) -> None:
        """A failed poll: the next appearance cannot be bracketed."""
        mem = self._mem.get((endpoint, rendition))
        if mem is not None:
            mem.last_mid = None
            mem.arrived_at = None  # nor can the edges go by it (FirstSeenTracker.behind)

    def expected(self, endpoint: str | None = None) -> list[float]:
        """Epoch seconds the next segments are due (at ``endpoint``, or anywhere): the newest
        segment's arrival plus its EXTINF, the publish cadence (RFC 8216 §6.2.1: a live
        server adds a segment when the one before has been completely published)."""
        return [m.expected_at for (e, _), m in self._mem.items()
                if m.expected_at is not None and (endpoint is None or e == endpoint)]

    def windows(self, endpoint: str, lead_s: float, fast_s: float) -> list[tuple[float, float]]:
        """(opens, due) of each next arrival at ``endpoint`` (epoch s): it is due as
        :meth:`expected` says, and the fast polls start one ``fast_s`` before the earliest of
        the last :data:`ARRIVAL_MEMORY` arrivals' errors against their prediction would place
        it — at ``due - lead_s`` at the earliest, and until errors are known (a packager that
        publishes on time is polled a poll or two before its arrival, not ``lead_s``)."""
        out = []
        for (e, _), m in self._mem.items():
            if m.expected_at is None or e != endpoint:
                continue
            due = m.expected_at
            opens = due + min(m.errors) - fast_s if m.errors else due - lead_s
            out.append((max(opens, due - lead_s), due))
        return out

    def behind(self, endpoint: str, reference: str, now: float, within_s: float,
               lead_s: float = 0.0) -> tuple[float, float] | None:
        """When to look at ``endpoint`` for a segment ``reference`` (the origin) lists and it
        does not, on a rendition both are watched on: (seconds until, seconds past) the window
        that opens ``lead_s`` before the shortest of the endpoint's recent lags behind the
        reference after the reference listed it and closes ``within_s`` after the longest
        (an edge a constant few seconds behind is polled fast around its own arrivals, not
        for all of them) — of the soonest such window; ``(inf, inf)`` when it lists all the
        reference lists; None when the two have no rendition in common whose arrivals the
        reference times by polls (it failed, or it is timed by blocking reloads): the
        endpoint then goes by its own window."""
        common = False
        soonest = (math.inf, math.inf)
        for (e, rendition), ref in self._mem.items():
            mine = self._mem.get((endpoint, rendition))
            if e != reference or ref.last_seq is None or ref.arrived_at is None or ref.expected_at is None \
                    or mine is None or mine.last_seq is None:
                continue
            common = True
            if mine.last_seq < ref.last_seq:
                since = now - ref.arrived_at
                look = (min(mine.lags) - lead_s - since, since - max(mine.lags) - within_s)
                if (look[0] <= 0 and look[1] <= 0) or look[0] < soonest[0]:
                    soonest = look
                    if look[0] <= 0 and look[1] <= 0:
                        break
        return soonest if common else None

    def note_lag(self, endpoint: str, reference: str, rendition: str) -> None:
        """After ``endpoint`` listed a new segment: its lag behind ``reference`` for that segment."""
        mine, ref = self._mem.get((endpoint, rendition)), self._mem.get((reference, rendition))
        if mine is not None and ref is not None and mine.last_seq == ref.last_seq \
                and mine.arrived_at is not None and ref.arrived_at is not None:
            mine.lags.append(max(0.0, mine.arrived_at - ref.arrived_at))


CAUGHT_UP_POLL_S = 5.0  # an edge listing all the origin lists is polled this often (its wake is the origin's arrival)


def edge_poll_delay(now: float, tracker: FirstSeenTracker, edge: str, slow_s: float, fast_s: float,
                    lead_s: float, lag_s: float) -> float:
    """Seconds to an edge's next poll, driven by the origin: ``fast_s`` while the origin lists a
    segment the edge does not list yet, from one ``fast_s`` before the shortest of the edge's
    recent lags behind the origin (a learned window, as the origin's; the probe's poll when the
    origin's arrival wakes the edge bounds the bracket of an edge quicker than that) until
    ``lag_s`` past the longest (an edge a constant delay behind stays fast around its own
    arrivals, and sleeps until that window), ``slow_s`` while it is behind past that;
    an edge that lists all the origin lists waits for the origin's next arrival (the probe
    wakes the edge's schedule when the origin lists a new segment; at most
    :data:`CAUGHT_UP_POLL_S`). A pull-through edge lists a segment when a request finds its
    copy expired, so an edge polled slowly while it is behind would be timed late by the
    polls; an edge is not polled fast before the origin lists the segment (it cannot have
    it). With no arrival at the origin to go by (the origin failing): its own windows, as the
    origin's."""
    look = tracker.behind(edge, "origin", now, lag_s, fast_s)
    if look is None:
        return next_poll_delay(now, tracker.windows(edge, lead_s, fast_s), slow_s, fast_s, lead_s, lag_s)
    opens_in, closed_for = look
    if opens_in == math.inf:
        return CAUGHT_UP_POLL_S
    if opens_in <= 0 and closed_for <= 0:
        return fast_s
    return opens_in if opens_in > 0 else slow_s


GUARD_MARGIN = 0.01  # s: a poll this close to its guard time is the guard poll (timers fire a little off)


def next_poll_delay(now: float, windows: list[tuple[float, float]], slow_s: float, fast_s: float, lead_s: float,
                    lag_s: float) -> float:
    """Seconds to the next poll, for an endpoint's next arrivals as (opens, due) windows
    (:meth:`FirstSeenTracker.windows`): ``fast_s`` from an opening until ``lag_s`` past its due
    time; before that, none until the opening but one guard poll at ``due - lead_s`` when the
    window opens later (a segment earlier than the learned errors is then bracketed within
    ``lead_s``, not by the last poll of the arrival before); ``slow_s`` past every window or
    with none (a late segment, a first poll)."""
    delay = math.inf
    for opens, due in windows:
        if opens <= now <= due + lag_s:
            return fast_s
        if now < opens:
            guard = due - lead_s
            at = guard if now < guard - GUARD_MARGIN and opens - guard > fast_s else opens
            delay = min(delay, max(fast_s, at - now))
    return slow_s if delay == math.inf else delay


class Baseline:
    """Values of the last ``window_s`` seconds; ``high(value)`` applies the baseline rule."""

    def __init__(self, window_s: float, min_samples: int, high_abs_s: float, high_ratio: float) -> None:
        self.window_s, self.min_samples = window_s, min_samples
        self.high_abs_s, self.high_ratio = high_abs_s, high_ratio
        self._t: list[float] = []
        self._v: list[float] = []

    def add(self, t: float, value: float) -> None:
        i = bisect.bisect_right(self._t, t)
        self._t.insert(i, t)
        self._v.insert(i, value)
        cut = bisect.bisect_left(self._t, t - self.window_s)
        if cut:
            del self._t[:cut], self._v[:cut]

    def median(self) -> float | None:
        return statistics.median(self._v) if len(self._v) >= self.min_samples else None

    def limit(self) -> float | None:
        m = self.median()
        return None if m is None else m + max(self.high_abs_s, self.high_ratio * abs(m))

    def judge(self, t: float, value: float, uncertainty: float = 0.0) -> tuple[bool, float | None]:
        """(is high, baseline median) for ``value``, judged before it joins the baseline; high
        only when even ``value - uncertainty`` (the measurement's lower bound) is over the limit."""
        m, lim = self.median(), self.limit()
        self.add(t, value)
        return (lim is not None and value - uncertainty > lim), m


@dataclass(frozen=True, slots=True)
class ClockVerdict:
    clock: str  # "synced" | "offset" | "unknown" | "unchecked" | "skewed"
    precision: str  # "ms" | "s"
    offset_s: float | None = None

    def value(self, v: float) -> float:
        return float(round(v)) if self.precision == "s" else round(v, 4)


def clock_verdict(ntp_configured: bool, offset_s: float | None, max_offset_s: float = CLOCK_OFFSET_MAX_S,
                  skew_seen: bool = False) -> ClockVerdict:
    """The clock rule (module docstring)."""
    if ntp_configured:
        if offset_s is None:
            return ClockVerdict("unknown", "s", None)
        if abs(offset_s) >= max_offset_s:
            return ClockVerdict("offset", "s", offset_s)
        if skew_seen:
            return ClockVerdict("skewed", "s", offset_s)
        return ClockVerdict("synced", "ms", offset_s)
    return ClockVerdict("skewed", "s") if skew_seen else ClockVerdict("unchecked", "ms")


def segment_trace(stream: str, t: SegmentTiming, origin: str, edges: list[str], clock: ClockVerdict) -> SpanRecord:
    """One trace per segment: capture -> ingest/transcode -> origin -> each edge, timed by
    the measured timestamps (capture times from the beacon or PDT, first-seen times)."""
    ns = lambda s: int(s * 1e9)  # noqa: E731
    base = {"signalpath.stream": stream, "signalpath.rendition": t.rendition}
    o = t.seen.get(origin)
    cap0 = t.capture_first if t.capture_first is not None else (t.capture_last or 0.0)
    cap1 = t.capture_last if t.capture_last is not None else cap0
    ends = [s.at for s in t.seen.values()] + [cap1]
    root_attrs = {**base, SEPARATE_TRACE_ATTR: True, "signalpath.latency.method": t.method or "none",
                  "signalpath.segment.sequence": t.seq, "signalpath.segment.duration_s": t.duration,
                  **({} if t.part is None else {"signalpath.segment.part": t.part}),
                  "signalpath.clock": clock.clock, "signalpath.latency.precision": clock.precision}
    if t.decode_cpu_s is not None:
        root_attrs["signalpath.decode.cpu_s"] = round(t.decode_cpu_s, 5)
    if clock.offset_s is not None:
        root_attrs["signalpath.clock.offset_s"] = round(clock.offset_s, 4)
    children = [SpanRecord("capture", ns(cap0), ns(cap1),
                           {"signalpath.stage": "studio", "signalpath.component": "camera",
                            "signalpath.capture.first": cap0, "signalpath.capture.last": cap1})]
    if o is not None and t.ingest_s is not None:  # split by an ingest monitor: ingest, then transcode
        up = t.upstream(origin)
        at_ingest = cap1 + max(0.0, t.ingest_s)
        children.append(SpanRecord("ingest", ns(cap1), ns(at_ingest),
                                   {"signalpath.stage": "ingest", "signalpath.component": "ingest",
                                    "signalpath.latency_s": clock.value(t.ingest_s)}))
        children.append(SpanRecord("transcode", ns(at_ingest), ns(max(o.at, at_ingest)),
                                   {"signalpath.stage": UPSTREAM[0], "signalpath.component": UPSTREAM[1],
                                    "signalpath.latency_s": clock.value(up - t.ingest_s) if up is not None else None}))
    elif o is not None:
        up = t.upstream(origin)
        children.append(SpanRecord("ingest+transcode", ns(cap1), ns(o.at),
                                   {"signalpath.stage": UPSTREAM[0], "signalpath.component": UPSTREAM[1],
                                    "signalpath.latency_s": clock.value(up) if up is not None else None}))
        children.append(SpanRecord("origin", ns(o.at), ns(o.at),
                                   {"signalpath.stage": "origin", "signalpath.component": origin,
                                    "signalpath.first_seen.uncertainty_s": round(o.half_width, 4),
                                    "signalpath.first_seen.backlog": origin in t.backlog}))
    for e in edges:
        s = t.seen.get(e)
        if s is None:
            continue
        g2g = t.glass_to_glass(e)
        cdn = t.cdn(e, origin)
        children.append(SpanRecord(f"cdn {e}", ns(o.at if o is not None else cap1), ns(s.at),
                                   {"signalpath.stage": "cdn", "signalpath.component": e,
                                    "signalpath.latency_s": clock.value(cdn) if cdn is not None else None,
                                    "signalpath.glass_to_glass_s": clock.value(g2g) if g2g is not None else None,
                                    "signalpath.first_seen.uncertainty_s": round(s.half_width, 4),
                                    "signalpath.first_seen.backlog": e in t.backlog}))
    return SpanRecord(f"latency {t.rendition}/{t.label}", ns(cap0), ns(max(ends)), root_attrs, children=children)


# ----------------------------------------------------------------- the ingest share


@dataclass(frozen=True, slots=True)
class IngestWindow:
    """One attempt's figure: ingest latency of frames captured between ``capture_first`` and ``capture_last``."""

    component: str
    latency_s: float
    capture_first: float
    capture_last: float
    at: float  # epoch seconds the attempt ended


class IngestLatencyShare:
    """The latest ingest latencies of one stream, shared by its ingest monitor(s) and its
    latency probe (one object per stream, created by agent/jobs.py and put in both
    targets' configs). Written and read on the agent's event loop only."""

    def __init__(self, keep: int = 64, wait_s: float = 6.0) -> None:
        self._windows: collections.deque[IngestWindow] = collections.deque(maxlen=keep)
        self.wait_s = wait_s  # how long the latency probe may hold a segment for a covering window

    def add(self, window: IngestWindow) -> None:
        self._windows.append(window)

    def latest(self) -> IngestWindow | None:
        return self._windows[-1] if self._windows else None

    def covers(self, capture: float, slack_s: float = 0.2) -> bool:
        """Has any window seen frames captured at or after ``capture`` (less ``slack_s``)?"""
        return any(w.capture_last >= capture - slack_s for w in self._windows)

    def near(self, capture: float, max_gap_s: float, slack_s: float = 0.2) -> IngestWindow | None:
        """The window whose frames are nearest in capture time to ``capture``, within ``max_gap_s``;
        among windows that saw frames captured at or after ``capture`` (less ``slack_s``) when any
        did: a latency step between two windows is then charged to the segments after it."""
        covering = [w for w in self._windows if w.capture_last >= capture - slack_s]
        best, gap = None, max_gap_s
        for w in covering or self._windows:
            d = 0.0 if w.capture_first <= capture <= w.capture_last else min(abs(capture - w.capture_first),
                                                                             abs(capture - w.capture_last))
            if d <= gap:
                best, gap = w, d
        return best
