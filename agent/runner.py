"""The scheduler: runs each probe on its interval under a deadline it owns.

blackbox_exporter's handler habit: the runner, not the probe, applies the deadline
(``asyncio.timeout``) and records the envelope — success, duration, failures by
reason. A probe that raises or hangs becomes a failure with a reason
(``probe_error`` / ``timeout``) and never stops the others.

A :class:`Job` is one probe kind over one stream's targets (e.g. HLS over the origin
and every edge). Every ``interval`` a job starts a *cycle*: one attempt per target
that is not still busy with the previous one, all concurrently. When a cycle's
attempts end, its results go to the sinks (metrics store, status board, tracer,
evidence listeners) together with the job's cross-target ``combine`` figures.

One slow target never holds the others back: a target is free for its next attempt as
soon as its own attempt ends, and a cycle publishes what has ended by its job's next tick
(``interval`` after it started); an attempt still running then (a straggler: an edge
answering after 3 s, a throttled segment) is published on its own when it ends, as a
*late* cycle (``Cycle.late``), and never after a newer attempt of its target. Before
this, one edge that answered slowly kept every other target of its job waiting — the
other edges' playlists unpolled, their virtual viewers unfed (they stalled), and the
localizer's heartbeat (the HLS cycle) held until the slow edge answered.
Every task is owned: :meth:`Runner.stop` cancels and awaits all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.selfwatch import SHED_DETAIL, SelfReport, SelfWatch, shed_evidence, unmeasured
from probes.base import (
    ATTEMPT_SLOT_WAIT,
    Evidence,
    Failure,
    ProbeContext,
    ProbeResult,
    ProbeTarget,
    Sample,
    SlotWait,
    SpanRecord,
    State,
)
from probes.core.playlist import PlaylistCache
from probes.faults import Fault

log = logging.getLogger("signalpath.runner")

ProbeFn = Callable[[ProbeTarget, ProbeContext], Awaitable[ProbeResult]]
CombineFn = Callable[[dict[str, ProbeResult], str], ProbeResult]


@dataclass(slots=True)
class Job:
    probe: str
    stream: str
    fn: ProbeFn
    targets: list[ProbeTarget]
    interval: float
    combine: CombineFn | None = None


@dataclass(slots=True)
class Attempt:
    target: ProbeTarget
    result: ProbeResult
    start_wall: float
    duration: float


@dataclass(slots=True)
class Cycle:
    job: Job
    attempts: list[Attempt]
    start_wall: float
    end_wall: float
    combined: ProbeResult | None = None
    latest: dict[str, ProbeResult] = field(default_factory=dict)
    late: bool = False  # stragglers of an earlier cycle, published when they ended
    recheck: bool = False  # an attempt a result asked for between two ticks (ProbeResult.recheck_at)


class CycleSink(Protocol):
    def on_cycle(self, cycle: Cycle) -> None: ...


SELF_PERIOD_S = 1.0  # how often the agent looks at itself (agent/selfwatch.py)

RECHECK_GAP = 0.3
"""x the job's interval: an attempt asked for by a result (``ProbeResult.recheck_at``) starts at
that time, or this long after the cycle that asked is published when it falls sooner (but not
before that cycle began: that was its attempts' to see), provided that is at least this long
before the job's next tick; else the tick serves. A freshness threshold crossed
between two ticks is seen when crossed (or a gap after), not up to an interval later (the HLS
probe's stale rule at a 1-s poll: a poll locked in phase with the segments dates each one on a
tick, so its threshold falls just after one), and two looks at it are at least this far apart
(the localizer's hysteresis counts them)."""


def target_key(t: ProbeTarget) -> str:
    return f"{t.probe}/{t.stream}/{t.stage}/{t.component}"


class Runner:
    """Owns every probe task. ``async with Runner(...)`` or start()/stop()."""

    def __init__(self, jobs: list[Job], sinks: list[CycleSink], *, http: Any = None, site: str = "",
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 cpu_pool: Executor | None = None) -> None:
        self.jobs = jobs
        self.cpu_pool = cpu_pool  # ProbeContext.cpu_pool (agent/cpupool.py); the caller owns it
        self.sinks = sinks
        self.http = http
        self.site = site
        self.clock = clock
        self.wall = wall
        self._tasks: set[asyncio.Task[Any]] = set()
        # target key -> the cycle that holds it: one attempt per target at a time, freed only by
        # its holder (a cycle that ends late must not free a target a newer cycle has taken)
        self._busy: dict[str, object] = {}
        self._ctx: dict[str, ProbeContext] = {}
        self._latest: dict[tuple[str, str], dict[str, ProbeResult]] = {}
        self._published: dict[str, int] = {}  # target key -> start order of its newest published attempt
        self._started = 0
        self._stopping = False
        self.selfwatch = SelfWatch(clock, wall)
        self.loop_watch = self.selfwatch.loop
        self._shed_jobs: set[int] = set()  # ids of the jobs shed now (agent/selfwatch.py)
        self._next_tick: dict[int, float] = {}  # job id -> clock time of its next tick
        self._rechecking: set[int] = set()  # ids of the jobs with an asked-for attempt pending
        self.playlists = PlaylistCache()  # one parse per playlist body across every probe (ProbeContext.playlists)

    def context(self, t: ProbeTarget) -> ProbeContext:
        key = target_key(t)
        ctx = self._ctx.get(key)
        if ctx is None:
            ctx = self._ctx[key] = ProbeContext(state={}, http=self.http, site=self.site, clock=self.clock,
                                                wall=self.wall, agent_stall=self.loop_watch.longest,
                                                agent_stalled_s=self.loop_watch.stalled_s,
                                                shed_level=lambda: self.selfwatch.level,
                                                playlists=self.playlists, cpu_pool=self.cpu_pool)
        return ctx

    def adopt(self, old: Runner) -> None:
        """Take over ``old``'s per-target probe state for every target both run unchanged (a
        config reload: a stream that remains goes on from what its probes knew). ``old`` is
        stopped (``release=False``); what it still holds after this is for ``old.release()``."""
        mine = {target_key(t): t for job in self.jobs for t in job.targets}
        for job in old.jobs:
            for t in job.targets:
                key = target_key(t)
                ctx = old._ctx.get(key)
                if ctx is not None and mine.get(key) == t:
                    del old._ctx[key]  # this runner's now: ``old.release()`` leaves it open
                    ctx.agent_stall = self.loop_watch.longest
                    ctx.agent_stalled_s = self.loop_watch.stalled_s
                    ctx.playlists = self.playlists
                    ctx.cpu_pool = self.cpu_pool
                    ctx.shed_level = lambda: self.selfwatch.level
                    self._ctx[key] = ctx
        self.selfwatch.level = old.selfwatch.level  # the load is the same agent's

    async def __aenter__(self) -> Runner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._spawn(self.loop_watch.run(), "loop watch")
        self._spawn(self._watch_self(), "self watch")
        n = len(self.jobs)
        for i, job in enumerate(self.jobs):
            # spread the jobs' first ticks over one interval: no thundering herd of polls each second
            self._spawn(self._loop(job, offset=job.interval * i / n), f"job {job.probe}/{job.stream}")

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, timeout: float = 5.0, *, release: bool = True) -> None:
        """Cancel every job loop and in-flight attempt, and wait for them (bounded); then, with
        ``release``, :meth:`release` what the probes hold open. A reload stops with
        ``release=False``: the next runner adopts what it keeps, then releases the rest."""
        self._stopping = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                log.warning("task %s did not stop within %.1f s", t.get_name(), timeout)
        if release:
            await self.release()

    async def release(self, timeout: float = 5.0) -> None:
        """Close what probes hold open between attempts (:func:`close_held`) for every target."""
        states = [ctx.state for ctx in self._ctx.values()]
        self._ctx.clear()
        await close_held(states, timeout)

    async def _watch_self(self) -> None:
        """Every :data:`SELF_PERIOD_S`: the agent's own figures and evidence to the sinks that
        take them (``on_self``: metrics, incidents, status)."""
        while True:
            await asyncio.sleep(SELF_PERIOD_S)
            report = self.selfwatch.tick()
            for sink in self.sinks:
                on_self: Callable[[SelfReport], None] | None = getattr(sink, "on_self", None)
                if on_self is None:
                    continue
                try:
                    on_self(report)
                except Exception:
                    log.exception("sink %s failed", type(sink).__name__)

    def _is_shed(self, job: Job) -> bool:
        """Is ``job`` shed now (agent/selfwatch.py)? Its targets are published UNKNOWN once when it
        stops; when it comes back its probes start afresh (their state is from before the gap)."""
        shed = self.selfwatch.sheds(job.probe)
        if shed and id(job) not in self._shed_jobs:
            self._shed_jobs.add(id(job))
            # a kept-open session (WHEP) costs CPU while it stays open: shedding closes it
            self._spawn(close_held([self.context(t).state for t in job.targets]), f"release {job.probe}/{job.stream}")
            now = self.wall()
            latest = self._latest.get((job.probe, job.stream), {})
            self._publish(job, [(self._next_order(), Attempt(t, ProbeResult(
                failure=Failure.AGENT_BEHIND, detail=SHED_DETAIL,
                evidence=shed_evidence(t.stage, t.component, latest[t.component].evidence
                                       if t.component in latest else [])), now, 0.0))
                                for t in job.targets], now, late=False)
        elif not shed and id(job) in self._shed_jobs:
            self._shed_jobs.discard(id(job))
            states = [self.context(t).state for t in job.targets]
            # what an attempt in flight opened after the shedding began is closed, not dropped
            held = take_held(states)
            for state in states:
                state.clear()
            if held:
                self._spawn(close_all(held), f"release {job.probe}/{job.stream}")
        return shed

    def _next_order(self) -> int:
        self._started += 1
        return self._started

    async def _loop(self, job: Job, offset: float = 0.0) -> None:
        if offset:
            await asyncio.sleep(offset)
        next_at = self.clock()
        while True:
            self.selfwatch.note_tick(job.probe, self.clock() - next_at)
            idle = [] if self._is_shed(job) else [t for t in job.targets if target_key(t) not in self._busy]
            if idle:
                holder = object()
                for t in idle:
                    self._busy[target_key(t)] = holder
                self._spawn(self._cycle(job, idle, holder), f"cycle {job.probe}/{job.stream}")
            next_at += job.interval
            now = self.clock()
            if next_at < now:  # overran: skip the missed ticks rather than bursting
                next_at = now + job.interval
            self._next_tick[id(job)] = next_at
            await asyncio.sleep(next_at - now)

    def _maybe_recheck(self, job: Job, attempts: list[Attempt], began: float) -> None:
        """Start one attempt of the targets whose results asked for it (``recheck_at``) at that
        time (a gap after now, when the cycle is published, at the soonest), when that falls within
        the window :data:`RECHECK_GAP` allows; one pending per job. A time before the cycle
        ``began`` (runner clock) was its attempts' to see; one after it may have come while a
        sibling's attempt kept the cycle open, unseen."""
        asks = [(a.result.recheck_at, a.target) for a in attempts if a.result.recheck_at is not None]
        # (shedding is the loop's and the recheck task's to see: not inside a publish)
        if not asks or id(job) in self._rechecking or self._stopping or id(job) in self._shed_jobs:
            return
        now, gap = self.clock(), RECHECK_GAP * job.interval
        asked = min(x for x, _ in asks)
        at = max(asked, now + gap) if asked >= began else asked
        if not now + gap <= at <= self._next_tick.get(id(job), now) - gap:
            return
        targets = [t for x, t in asks if x - asked < gap]
        self._rechecking.add(id(job))
        self._spawn(self._recheck(job, targets, at), f"recheck {job.probe}/{job.stream}")

    async def _recheck(self, job: Job, targets: list[ProbeTarget], at: float) -> None:
        try:
            await asyncio.sleep(max(0.0, at - self.clock()))
            idle = [t for t in targets if target_key(t) not in self._busy]
            if not idle or self._is_shed(job):
                return
            holder = object()
            for t in idle:
                self._busy[target_key(t)] = holder
            self._spawn(self._cycle(job, idle, holder, recheck=True), f"recheck cycle {job.probe}/{job.stream}")
        finally:
            self._rechecking.discard(id(job))

    def _free(self, t: ProbeTarget, holder: object) -> None:
        key = target_key(t)
        if self._busy.get(key) is holder:
            del self._busy[key]

    async def _cycle(self, job: Job, targets: list[ProbeTarget], holder: object, *, recheck: bool = False) -> None:
        start_wall, began = self.wall(), self.clock()
        tasks = [asyncio.ensure_future(self._attempt_then_free(job.fn, t, holder)) for t in targets]
        try:
            done, pending = await asyncio.wait(tasks, timeout=job.interval)
            self._publish(job, [d.result() for d in tasks if d in done], start_wall, late=False, recheck=recheck,
                          began=began)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                self._publish(job, [d.result() for d in tasks if d in done], start_wall, late=True, recheck=recheck)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in targets:  # (an attempt cancelled before it started never freed its target)
                self._free(t, holder)

    async def _attempt_then_free(self, fn: ProbeFn, t: ProbeTarget, holder: object) -> tuple[int, Attempt]:
        n = self._next_order()  # the order attempts started in (a wall clock may step back)
        try:
            return n, await self.attempt(fn, t)
        finally:
            self._free(t, holder)  # free for the job's next tick, whatever the others do

    def _publish(self, job: Job, ended: list[tuple[int, Attempt]], start_wall: float, *, late: bool,
                 recheck: bool = False, began: float | None = None) -> None:
        """Hand ended attempts to the sinks as one cycle; an attempt older than one already
        published for its target is dropped (results reach the sinks in order per target)."""
        fresh = []
        for n, a in ended:
            key = target_key(a.target)
            if n > self._published.get(key, 0):
                self._published[key] = n
                fresh.append(a)
        if not fresh:
            return
        latest = self._latest.setdefault((job.probe, job.stream), {})
        for a in fresh:
            latest[a.target.component] = a.result
        cycle = Cycle(job, fresh, start_wall, self.wall(), latest=latest, late=late, recheck=recheck)
        if not late:
            self._maybe_recheck(job, fresh, self.clock() if began is None else began)
        if job.combine is not None:
            try:
                cycle.combined = job.combine(latest, job.stream)
            except Exception:  # a bug in combine must not stop probing
                log.exception("combine of %s/%s failed", job.probe, job.stream)
        for sink in self.sinks:
            try:
                sink.on_cycle(cycle)
            except Exception:
                log.exception("sink %s failed", type(sink).__name__)

    async def attempt(self, fn: ProbeFn, t: ProbeTarget) -> Attempt:
        """One attempt under the runner's deadline; never raises (but for cancellation).

        The probe is told the deadline (``ctx.deadline``, on the runner's clock) so that it
        budgets by the time left instead of re-deriving it from ``t.timeout``."""
        ctx = self.context(t)
        start_wall = self.wall()
        t0 = time.perf_counter()
        lost0 = self.loop_watch.lost_s()
        ctx.deadline = self.clock() + t.timeout
        queued = SlotWait()
        token = ATTEMPT_SLOT_WAIT.set(queued)
        deadline_hit = False
        try:
            async with asyncio.timeout(t.timeout):
                result = await fn(t, ctx)
        except TimeoutError:
            deadline_hit = True
            result = ProbeResult(failure=Failure.TIMEOUT, detail=f"no result within the {t.timeout:g}-s deadline")
            result.evidence = _down(t, Fault.TIMEOUT, f"{t.component}: no complete answer within {t.timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("probe %s on %s/%s raised %s (a bug; reported as probe_error)", t.probe, t.stream,
                      t.component, exc.__class__.__name__, exc_info=log.isEnabledFor(logging.DEBUG))
            result = ProbeResult(failure=Failure.PROBE_ERROR, detail=f"internal error: {exc.__class__.__name__}")
            result.evidence = _down(t, None, f"{t.component}: the {t.probe} probe failed internally", State.UNKNOWN)
        finally:
            ATTEMPT_SLOT_WAIT.reset(token)
        duration = time.perf_counter() - t0
        # the agent's own lateness is not the target's: timings of an attempt the loop was late
        # for are not evidence, nor a deadline the attempt ran into after one of its requests
        # queued for the agent's own connection slots (agent/selfwatch.py; a request's own budget
        # counts from when it was sent: probes/net/leanhttp.py answer_within_s)
        judged = unmeasured(result.evidence, self.loop_watch.lost_s() - lost0, duration, self.selfwatch.behind(),
                            queued_s=queued.longest if deadline_hit else 0.0,
                            cpu_wait_s=queued.cpu_wait_s if deadline_hit else 0.0)
        if judged is not None and judged != result.evidence:
            result.evidence = judged
            if result.failure is Failure.TIMEOUT:
                result.failure = Failure.AGENT_BEHIND
        return Attempt(t, result, start_wall, duration)


def take_held(states: list[dict[str, Any]]) -> list[Any]:
    """Take what probes hold open between attempts out of these ``ProbeContext.state`` dicts:
    every value with an ``aclose()`` coroutine (a kept-open WHEP session, probes/whep.py)."""
    held = []
    for state in states:
        for key in [k for k, v in state.items() if callable(getattr(v, "aclose", None))]:
            held.append(state.pop(key))
    return held


async def close_held(states: list[dict[str, Any]], timeout: float = 5.0) -> None:
    """:func:`take_held` and :func:`close_all` them."""
    await close_all(take_held(states), timeout)


async def close_all(held: list[Any], timeout: float = 5.0) -> None:
    """``aclose()`` every one at once, within ``timeout`` seconds (never raises)."""
    if not held:
        return
    closing = [asyncio.ensure_future(v.aclose()) for v in held]
    done, pending = await asyncio.wait(closing, timeout=timeout)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("closing a probe's open session failed: %s", type(task.exception()).__name__)
    if pending:
        log.warning("%d probe session(s) did not close within %.1f s", len(pending), timeout)


def _down(t: ProbeTarget, fault: Fault | None, detail: str, state: State = State.DOWN) -> list[Evidence]:
    return [Evidence(t.stage, t.component, state, fault, detail)]


def envelope(a: Attempt) -> list[Sample]:
    """The runner's own figures for one attempt."""
    t = a.target
    labels = {"stream": t.stream, "stage": t.stage, "component": t.component, "probe": t.probe}
    out = [Sample("signalpath_probe_success", labels, 1.0 if a.result.ok else 0.0),
           Sample("signalpath_probe_duration_seconds", labels, a.duration)]
    if not a.result.ok:
        out.append(Sample("signalpath_probe_failures_total", {**labels, "reason": str(a.result.failure)}, 1.0,
                          "inc"))
    return out


def attempt_span(a: Attempt) -> SpanRecord:
    t = a.target
    r = a.result
    return SpanRecord(
        name=f"{t.stage} {t.component}",
        start_ns=int(a.start_wall * 1e9),
        end_ns=int((a.start_wall + a.duration) * 1e9),
        attributes={"signalpath.stream": t.stream, "signalpath.stage": t.stage,
                    "signalpath.component": t.component, "signalpath.probe": t.probe},
        error=f"{r.failure}: {r.detail}" if r.failure else None,
        children=list(r.spans),
    )
