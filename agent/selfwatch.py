"""The agent watching itself: event-loop lag, schedule lag, overload, shedding (pure; clock injected).

An agent that cannot keep up must not blame the network. Watched with 200 streams on 1.17
cores, the first version opened 400 P1 "the origin answers too slowly" incidents while the
servers were idle: its own event loop was late, so its timings were. It now measures itself:

- **event-loop lag** (:class:`LoopWatch`): a task sleeps :attr:`LoopWatch.PERIOD_S` and notes
  how late it wakes. Lateness past :data:`LAG_FLOOR_S` (timer jitter) is time the loop could
  not run on time — CPU starved, a blocking call, too much work per turn — summed as
  :meth:`LoopWatch.lost_s`; wake-ups later than :attr:`LoopWatch.STALL_S` are stalls
  (:meth:`LoopWatch.longest`, which the WHEP probe and the virtual viewers discount).
  ``signalpath_agent_loop_lag_seconds``: the latest wake-up lateness at most
  :data:`WINDOW_S` old, the largest of them.
- **schedule lag** (:meth:`SelfWatch.note_tick`): how late each job's tick ran against its
  schedule. ``signalpath_probe_schedule_lag_seconds{probe}``: the largest in the window.
  Deadline misses per target are ``signalpath_probe_failures_total{reason="timeout"}`` (the
  runner's envelope), and ``reason="agent_behind"`` counts attempts not judged (below).
- **behind** (:meth:`SelfWatch.behind`): the loop lost at least :data:`BEHIND_SHARE` of the
  last :data:`WINDOW_S` (one blocking call of 0.3 s is 3 %, not behind; a saturated loop is).

While behind, and while it still sheds:

1. A timed measurement (catalog ``timed``: a timeout, a slow segment, a stall, a viewer giving up, latency)
   made while the agent is behind, or by an attempt during which the loop lost at least
   :data:`ATTEMPT_SHARE` of the attempt's duration (and at least :data:`LAG_FLOOR_S` x 5; the
   onset of a starvation, before the window shows it), or that ran into its deadline after one of its
   requests waited as long for a connection slot of the agent's own HTTP client (its per-host
   bound: the agent's queue, not the server; probes/base.py ``SlotWait``; a request's own budget
   counts from when it was sent), is not evidence against its target: the runner
   turns it into UNKNOWN naming the fault ("not measured"), so no incident opens on it and
   none resolves for it (:func:`unmeasured`). Freshness (a playlist that stopped
   advancing) and server answers (an HTTP 5xx) are facts whatever the agent's load: kept.
2. Optional work is shed in a stated order (not in the first :data:`STARTUP_GRACE_S` of a
   start, which is busy by design), one level more every :data:`ESCALATE_S` while
   behind, one less after :data:`CALM_S` without: :data:`SHED_ORDER` — the latency probe's
   fast polls (it polls every ``poll_s`` only), then media analysis, then the virtual players
   (HLS and WHEP). The freshness checks (the HLS, RTMP, ingest and studio probes) are never
   shed. A shed job's targets show UNKNOWN ("not measured: shed"), never their last result;
   when it comes back its probes start afresh (a viewer's session is new).
3. The agent's own evidence ``agent``/``agent`` ``overloaded`` (DEGRADED, with the figures)
   goes to the localizer as the stream :data:`AGENT_STREAM`: an incident of the agent, not of
   any stream, with the hysteresis, store, alerts and API of every incident.

``signalpath_agent_shed_level`` is the level (0: nothing shed). Thresholds: the design target
of a probe cycle lag below 250 ms at the 99th percentile (DESIGN.md, agent cost) bounds
:data:`BEHIND_SHARE` (a loop losing 10 % of its time runs late by more than that every few
seconds); the escalation and calm times are chosen so that one level's relief shows before
the next (a shed job's next cycle is at most 10 s away, WHEP's interval) and a recovered agent
does not flap.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from probes.base import Evidence, Sample, State
from probes.faults import AGENT_STAGE, CATALOG, Fault

AGENT_STREAM = "*"
"""The stream name of the agent's own incidents: every stream it watches (no configured stream
can be called that: names start with a letter or digit, agent/config.py)."""
AGENT_COMPONENT = "agent"
WINDOW_S = 10.0
LAG_FLOOR_S = 0.01
"""Lateness of a wake-up below this is timer jitter (measured here: < 2 ms on an idle loop)."""
BEHIND_SHARE = 0.10
ATTEMPT_SHARE = 0.10
ESCALATE_S = 10.0
CALM_S = 60.0
STARTUP_GRACE_S = 30.0
"""An agent starting every probe of every stream at once is busy by design (measured: 50 streams
on 2 cores lose more than 10 % of their first 20 s): it sheds nothing and states no
``overloaded`` for this long (its state is UNKNOWN, "starting"); its timings are judged as ever."""
SHED_ORDER: tuple[tuple[str, frozenset[str]], ...] = (
    ("latency fast polls", frozenset()),  # the latency probe reads SelfWatch.level itself
    ("media analysis", frozenset({"media"})),
    ("virtual players", frozenset({"playback", "whep"})),
)
"""(what, the probe kinds whose jobs stop) for levels 1, 2, 3."""


class RollingMax:
    """The largest value noted within the last ``window_s`` to ``2 x window_s`` (two buckets)."""

    __slots__ = ("window_s", "_start", "_cur", "_prev")

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._start = -math.inf
        self._cur = self._prev = 0.0

    def note(self, t: float, v: float) -> None:
        self._roll(t)
        if v > self._cur:
            self._cur = v

    def value(self, t: float) -> float:
        self._roll(t)
        return max(self._cur, self._prev)

    def _roll(self, t: float) -> None:
        if t - self._start >= self.window_s:
            self._prev = self._cur if t - self._start < 2 * self.window_s else 0.0
            self._cur = 0.0
            self._start = t


class LoopWatch:
    """The agent's own event-loop lateness: a task that sleeps ``PERIOD_S`` and notes how late
    each wake-up is (see the module docstring). Keeps the last ``KEEP`` stalls."""

    PERIOD_S = 0.05
    STALL_S = 0.05  # shorter delays are ordinary scheduling
    KEEP = 256

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.stalls: collections.deque[tuple[float, float]] = collections.deque(maxlen=self.KEEP)
        self.lag = RollingMax()
        self._stalled_s = 0.0  # every stall's overrun, in all
        self._lost_s = 0.0  # every wake-up's lateness past LAG_FLOOR_S, in all
        self._due = math.inf  # when the watch should wake next

    async def run(self) -> None:
        while True:
            due = self._due = self.clock() + self.PERIOD_S
            await asyncio.sleep(self.PERIOD_S)
            self.woke(due, self.clock())

    def woke(self, due: float, now: float) -> None:
        """One wake-up, due at ``due``, at ``now``."""
        self._due = math.inf
        late = now - due
        self.lag.note(now, late)
        if late > LAG_FLOOR_S:
            self._lost_s += late - LAG_FLOOR_S
        if late > self.STALL_S:
            self.stalls.append((due, now))
            self._stalled_s += late

    def _overdue(self) -> float:
        return self.clock() - self._due  # -inf while the watch is asleep on time

    def stalled_s(self) -> float:
        """Seconds the loop could not run since the watch started, the stall going on now
        included (the watch is past due): :attr:`probes.base.ProbeContext.agent_stalled_s`."""
        late = self._overdue()
        return self._stalled_s + (late if late > self.STALL_S else 0.0)

    def lost_s(self) -> float:
        """Seconds of lateness past :data:`LAG_FLOOR_S`, in all, the wake-up overdue now included."""
        late = self._overdue()
        return self._lost_s + (late - LAG_FLOOR_S if late > LAG_FLOOR_S else 0.0)

    def longest(self, t0: float, t1: float) -> float:
        """Seconds of the longest stall overlapping [t0, t1]."""
        return max((min(b, t1) - max(a, t0) for a, b in self.stalls if a < t1 and b > t0), default=0.0)


@dataclass(slots=True)
class SelfReport:
    """One look of the agent at itself (every second): its evidence and metric samples."""

    at: float
    evidence: list[Evidence]
    samples: list[Sample]
    behind: bool
    level: int
    figures: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        """``agent`` in ``GET /api/v1/status``."""
        return {"state": str(self.evidence[0].state), "behind": self.behind, "shed_level": self.level,
                "shed": [what for what, _ in SHED_ORDER[:self.level]], "figures": self.figures,
                "reasons": [self.evidence[0].detail]}


class SelfWatch:
    """Loop and schedule lag, the behind judgement and the shed level (module docstring).

    ``clock``: monotonic seconds (the runner's); ``wall``: epoch seconds for evidence times."""

    def __init__(self, clock: Callable[[], float], wall: Callable[[], float]) -> None:
        self.clock, self.wall = clock, wall
        self.loop = LoopWatch(clock)
        self.level = 0
        self._schedule: dict[str, RollingMax] = {}
        self._lost: collections.deque[tuple[float, float]] = collections.deque(maxlen=int(WINDOW_S) + 2)
        self._behind_since: float | None = None
        self._calm_since: float | None = None
        self._changed_at = -math.inf
        self._started = clock()

    # -- the runner's notes ---------------------------------------------------------------

    def note_tick(self, probe: str, late_s: float) -> None:
        """A job's tick ran ``late_s`` after it was due."""
        r = self._schedule.get(probe)
        if r is None:
            r = self._schedule[probe] = RollingMax()
        r.note(self.clock(), max(0.0, late_s))

    def sheds(self, probe: str) -> bool:
        """Is the job of this probe kind shed at the current level?"""
        return any(probe in kinds for _, kinds in SHED_ORDER[:self.level])

    # -- every second -----------------------------------------------------------------------

    def lost_share(self) -> float:
        """Share of the last :data:`WINDOW_S` (or of what was watched) the loop lost."""
        if len(self._lost) < 2:
            return 0.0
        (t0, l0), (t1, l1) = self._lost[0], self._lost[-1]
        return (l1 - l0) / (t1 - t0) if t1 > t0 else 0.0

    def behind(self) -> bool:
        return self.lost_share() >= BEHIND_SHARE

    def tick(self) -> SelfReport:
        """Look at itself now: update the shed level; the evidence and samples to publish."""
        now = self.clock()
        self._lost.append((now, self.loop.lost_s()))
        while len(self._lost) > 2 and now - self._lost[1][0] >= WINDOW_S:
            self._lost.popleft()
        behind = self.behind()
        starting = now - self._started < STARTUP_GRACE_S
        if behind and starting:
            pass  # busy starting up: no shedding, no verdict yet (STARTUP_GRACE_S)
        elif behind:
            self._calm_since = None
            if self._behind_since is None:
                self._behind_since = now
            if self.level < len(SHED_ORDER) and now - max(self._behind_since, self._changed_at) >= ESCALATE_S:
                self.level += 1
                self._changed_at = now
        else:
            self._behind_since = None
            if self._calm_since is None:
                self._calm_since = now
            if self.level > 0 and now - max(self._calm_since, self._changed_at) >= CALM_S:
                self.level -= 1
                self._changed_at = now
        lag = self.loop.lag.value(now)
        sched = {probe: r.value(now) for probe, r in sorted(self._schedule.items())}
        figures = {"loop_lag_s": round(lag, 3), "loop_lost_ratio": round(self.lost_share(), 3),
                   "schedule_lag_s": round(max(sched.values(), default=0.0), 3), "shed_level": float(self.level)}
        samples = [Sample("signalpath_agent_loop_lag_seconds", {}, lag),
                   Sample("signalpath_agent_shed_level", {}, float(self.level))]
        samples += [Sample("signalpath_probe_schedule_lag_seconds", {"probe": p}, v) for p, v in sched.items()]
        if starting and not self.level:
            ev = Evidence(AGENT_STAGE, AGENT_COMPONENT, State.UNKNOWN, None,
                          f"the agent is starting: its event loop lost {figures['loop_lost_ratio']:.0%} so far "
                          f"(judged after its first {STARTUP_GRACE_S:g} s)", figures=figures)
        elif behind or self.level:
            shed = ", ".join(what for what, _ in SHED_ORDER[:self.level]) or "nothing yet"
            state = "is behind" if behind else "caught up, still shedding"
            detail = (f"the agent {state}: its event loop lost {figures['loop_lost_ratio']:.0%} of the last "
                      f"{WINDOW_S:g} s (longest lag {lag:.2f} s, probe schedule lag {figures['schedule_lag_s']:.2f} s);"
                      f" shed: {shed}")
            ev = Evidence(AGENT_STAGE, AGENT_COMPONENT, State.DEGRADED, Fault.OVERLOADED, detail, figures=figures)
        else:
            ev = Evidence(AGENT_STAGE, AGENT_COMPONENT, State.OK, None,
                          f"the agent keeps up: longest event-loop lag {lag:.2f} s in the last {WINDOW_S:g} s",
                          figures=figures)
        return SelfReport(self.wall(), [ev], samples, behind, self.level, figures)


SHED_DETAIL = "not measured: shed while the agent is behind (agent/agent overloaded)"


def shed_evidence(stage: str, component: str, previous: list[Evidence]) -> list[Evidence]:
    """What a shed job's target shows: UNKNOWN, naming each fault its last result reported, so
    an incident open on it stays open (not measured is not healed), never its last result."""
    out = [replace(e, state=State.UNKNOWN, detail=f"{SHED_DETAIL}; it last read: {e.detail}")
           for e in previous if e.fault is not None and e.state in (State.DEGRADED, State.DOWN)]
    return out or [Evidence(stage, component, State.UNKNOWN, None, f"{component}: {SHED_DETAIL}")]


def unmeasured(evidence: list[Evidence], lost_s: float, duration_s: float, behind: bool = False, *,
               queued_s: float = 0.0, cpu_wait_s: float = 0.0) -> list[Evidence] | None:
    """The evidence of an attempt during which the agent's loop lost ``lost_s`` of its
    ``duration_s``, one of whose requests waited ``queued_s`` for a connection slot of the agent's
    own HTTP client and one of whose decodes ``cpu_wait_s`` for the agent's CPU pool
    (probes/base.py ``SlotWait``), ``behind`` (:meth:`SelfWatch.behind`) or not:
    None when none of it matters (the agent keeps up, and lost or queued too little of this
    attempt: each under :data:`ATTEMPT_SHARE` of it or 5 x :data:`LAG_FLOOR_S`), else every bad
    timed measurement turned UNKNOWN naming its fault ("not measured"), the rest as it was.
    ``behind`` covers what a probe measured across attempts (a segment download it follows from
    one to the next)."""
    def small(s: float) -> bool:
        return s < 5 * LAG_FLOOR_S or s < ATTEMPT_SHARE * duration_s

    if not behind and small(lost_s) and small(queued_s) and small(cpu_wait_s):
        return None
    why = "it is behind" if behind else (
        f"its event loop lost {lost_s:.1f} s of the {duration_s:.1f}-s attempt" if not small(lost_s) else
        f"a request of the {duration_s:.1f}-s attempt waited {queued_s:.1f} s for one of its own connection slots"
        if not small(queued_s) else
        f"a decode of the {duration_s:.1f}-s attempt waited {cpu_wait_s:.1f} s for its own CPU pool")
    out = []
    for e in evidence:
        if e.fault is not None and e.state in (State.DEGRADED, State.DOWN) and CATALOG[e.fault].timed:
            e = replace(e, state=State.UNKNOWN, detail=f"not measured: the agent itself was behind ({why}); "
                                                       f"it read: {e.detail}")
        out.append(e)
    return out


__all__ = ["AGENT_COMPONENT", "AGENT_STREAM", "LoopWatch", "RollingMax", "SHED_DETAIL", "SHED_ORDER", "SelfReport",
           "SelfWatch", "shed_evidence", "unmeasured"]
