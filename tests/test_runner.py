"""The runner owns the deadline (STYLE.md 3) and hands it to the probe (``ctx.deadline``)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest
from waiting import wait_for

from agent.runner import Cycle, Job, Runner
from probes.base import RESULT_MARGIN_S, Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, State, own_deadline
from probes.faults import Fault
from probes.rtmp import RtmpProbeConfig
from probes.rtmp import probe as rtmp_probe


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _target(timeout: float, probe: str = "fake", config: object = None, url: str | None = None) -> ProbeTarget:
    return ProbeTarget(probe=probe, stream="main", stage="origin", component="origin", config=config, url=url,
                       timeout=timeout)


async def test_the_probe_sees_the_runners_deadline():
    clock = FakeClock(1000.0)
    seen: list[tuple[float, float]] = []

    async def probe(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        seen.append((ctx.deadline, ctx.deadline - ctx.clock()))
        clock.now += 1.5  # time passes on the runner's clock: the deadline stays put
        seen.append((ctx.deadline, ctx.deadline - ctx.clock()))
        return ProbeResult()

    runner = Runner([], [], clock=clock)
    a = await runner.attempt(probe, _target(timeout=7.0))
    assert a.result.ok
    assert seen == [(1007.0, 7.0), (1007.0, 5.5)]
    # the next attempt on the same target (same context) gets a fresh deadline
    await runner.attempt(probe, _target(timeout=7.0))
    assert seen[2] == (1001.5 + 7.0, 7.0)


async def test_an_attempt_past_its_deadline_is_a_timeout_failure():
    started = asyncio.Event()

    async def hangs(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        started.set()
        await asyncio.sleep(30)
        return ProbeResult()

    a = await Runner([], []).attempt(hangs, _target(timeout=0.05))
    assert started.is_set()
    assert a.result.failure is Failure.TIMEOUT
    [ev] = a.result.evidence
    assert (ev.stage, ev.component, ev.state, ev.fault) == ("origin", "origin", State.DOWN, Fault.TIMEOUT)
    assert a.duration < 5


def test_own_deadline_keeps_a_small_margin():
    clock = FakeClock(100.0)
    ctx = ProbeContext(state={}, clock=clock)
    assert own_deadline(ctx) == math.inf  # no runner, no deadline
    ctx.deadline = 105.0
    assert own_deadline(ctx) == pytest.approx(104.5)  # 10 % of the 5 s left
    ctx.deadline = 160.0
    assert own_deadline(ctx) == pytest.approx(160.0 - RESULT_MARGIN_S)  # at most RESULT_MARGIN_S
    ctx.deadline = 99.0
    assert own_deadline(ctx) == 99.0  # past: no margin to take


async def test_a_probe_budgets_by_the_deadline_and_reports_its_own_timeout():
    """An RTMP server that accepts and never answers the handshake: the probe's own,
    earlier deadline fires, so the result names the step (not the runner's bare timeout)."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t = _target(timeout=1.0, probe="rtmp", config=RtmpProbeConfig(), url=f"rtmp://127.0.0.1:{port}/live/sk-Secret9")
        a = await Runner([], []).attempt(rtmp_probe, t)
    finally:
        server.close()
        await server.wait_closed()
    assert a.result.failure is Failure.TIMEOUT
    assert a.result.detail == "timed out during handshake"
    assert a.result.evidence[0].fault == Fault.UNREACHABLE  # the probe's own verdict, not the runner's
    assert a.duration < 1.0  # 0.9 s: the deadline less its 10 % margin


class _Recorder:
    """A sink that keeps every cycle and wakes waiters on each."""

    def __init__(self) -> None:
        self.cycles: list[tuple[bool, list[tuple[str, int]]]] = []
        self.changed = asyncio.Event()

    def on_cycle(self, cycle: Cycle) -> None:
        self.cycles.append((cycle.late, [(a.target.component, a.result.figures["n"]) for a in cycle.attempts]))
        self.changed.set()

    async def wait_for(self, cond: Callable[[], bool], within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s):
            while not cond():
                self.changed.clear()
                await self.changed.wait()


async def test_a_slow_target_holds_back_neither_the_others_nor_the_jobs_cycles():
    """An edge that answers after seconds (edge_slow_first_byte) must not keep the job's
    other targets waiting: before, the whole cycle waited for it, so the other edges went
    unpolled, their virtual viewers stalled and the localizer's heartbeat stopped."""
    release = asyncio.Event()
    counts: dict[str, int] = {}

    async def probe(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        n = counts[t.component] = counts.get(t.component, 0) + 1
        if t.component == "edge-b" and n == 1:
            await release.wait()  # the slow edge: answers only when the test says so
        return ProbeResult(figures={"n": n})

    targets = [ProbeTarget(probe="hls", stream="main", stage="cdn", component=c, config=None, timeout=30.0)
               for c in ("edge-a", "edge-b")]
    rec = _Recorder()
    async with Runner([Job("hls", "main", probe, targets, interval=0.05)], [rec]):
        # edge-a keeps being probed and published, on time, while edge-b's first attempt hangs
        await rec.wait_for(lambda: sum(c == "edge-a" for late, seen in rec.cycles for c, _ in seen) >= 5)
        assert all(not late for late, _ in rec.cycles)
        assert all(c == "edge-a" for _, seen in rec.cycles for c, _ in seen)
        release.set()
        await rec.wait_for(lambda: any(c == "edge-b" for _, seen in rec.cycles for c, _ in seen))
        await rec.wait_for(lambda: sum(c == "edge-b" for _, seen in rec.cycles for c, _ in seen) >= 3)
    # the straggler came on its own, as a late cycle; every target's results in the order they started
    first_b = next(i for i, (_, seen) in enumerate(rec.cycles) if any(c == "edge-b" for c, _ in seen))
    assert rec.cycles[first_b] == (True, [("edge-b", 1)])
    for comp in ("edge-a", "edge-b"):
        ns = [n for _, seen in rec.cycles for c, n in seen if c == comp]
        assert ns == sorted(ns) and len(set(ns)) == len(ns)


async def test_a_target_never_has_two_attempts_at_once_when_an_older_cycle_ends_late():
    """One attempt per target at a time: probes keep state between attempts (the media
    probe's analyser, the HLS probe's last sequence). A cycle that ended after its target
    had already started again in a newer cycle used to mark that target free while its
    newer attempt still ran; the next tick then started a second attempt beside it, and two
    media attempts fed one analyser out of order — a 4-s "timestamp gap" the stream did not
    have (seen with the agent starved of CPU, tests/test_agent_overload.py)."""
    release_b = asyncio.Event()
    release_a2 = asyncio.Event()
    a2_started = asyncio.Event()
    counts: dict[str, int] = {}
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}

    async def probe(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        c = t.component
        n = counts[c] = counts.get(c, 0) + 1
        in_flight[c] = in_flight.get(c, 0) + 1
        most[c] = max(most.get(c, 0), in_flight[c])
        try:
            if c == "edge-b" and n == 1:
                await release_b.wait()  # keeps the first cycle open
            if c == "edge-a" and n == 2:
                a2_started.set()
                await release_a2.wait()  # edge-a's attempt in the second cycle, still running
            return ProbeResult(figures={"n": n})
        finally:
            in_flight[c] -= 1

    targets = [ProbeTarget(probe="media", stream="main", stage="cdn", component=c, config=None, timeout=30.0)
               for c in ("edge-a", "edge-b")]
    rec = _Recorder()
    async with Runner([Job("media", "main", probe, targets, interval=0.02)], [rec]):
        async with asyncio.timeout(10):
            await a2_started.wait()
        release_b.set()  # the first cycle ends now, while edge-a's second attempt runs
        await rec.wait_for(lambda: sum(c == "edge-b" for _, seen in rec.cycles for c, _ in seen) >= 5)
        assert counts["edge-a"] == 2 and most["edge-a"] == 1, (counts, most)
        release_a2.set()
        await rec.wait_for(lambda: sum(c == "edge-a" for _, seen in rec.cycles for c, _ in seen) >= 4)
    assert most == {"edge-a": 1, "edge-b": 1}


class _Held:
    """What a probe holds open between attempts (a kept WHEP session): closed once, by the runner."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self.closed = closed

    async def aclose(self) -> None:
        await asyncio.sleep(0.01)
        self.closed.append(self.name)


async def test_what_probes_hold_open_is_closed_at_stop_on_shedding_and_for_targets_a_reload_drops():
    closed: list[str] = []

    async def probe(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        ctx.state.setdefault("session", _Held(t.component, closed))
        return ProbeResult(figures={"n": 1})

    def whep(component: str) -> Job:
        t = ProbeTarget(probe="whep", stream="main", stage="playback", component=component, config=None, timeout=5.0)
        return Job("whep", "main", probe, [t], interval=0.02)

    rec = _Recorder()
    old = Runner([whep("kept"), whep("dropped")], [rec])
    await old.start()
    await rec.wait_for(lambda: {c for _, seen in rec.cycles for c, _ in seen} == {"kept", "dropped"})
    await old.stop(release=False)  # a reload: the next runner takes over what it keeps
    assert closed == []
    new = Runner([whep("kept")], [rec])
    new.adopt(old)
    await old.release()
    assert closed == ["dropped"]
    held = new.context(new.jobs[0].targets[0]).state["session"]
    assert held.name == "kept"  # the same session goes on
    async with new:
        new.selfwatch.level = 3  # behind: virtual players (WHEP among them) are shed, and their sessions closed
        await wait_for(lambda: closed == ["dropped", "kept"], 5, "the shed job's session closed", every=0.01)
        assert new.context(new.jobs[0].targets[0]).state == {}
        # an attempt in flight when the shedding began opens its session after it: closed when the
        # shedding ends, not dropped with the probe's state
        new.context(new.jobs[0].targets[0]).state["session"] = _Held("late", closed)
        new.selfwatch.level = 0
        await wait_for(lambda: "late" in closed, 5, "the session opened while shed closed", every=0.01)
        await wait_for(lambda: "session" in new.context(new.jobs[0].targets[0]).state, 5, "a new session",
                       every=0.01)
    assert closed == ["dropped", "kept", "late", "kept"]  # and the one opened after shedding, at stop


async def test_a_wait_for_the_agents_own_connection_slot_is_not_the_servers_slowness():
    """One slot per host (``max_in_flight_per_host: 1``): while a slow answer holds it, another
    request waits. A request's budget counts from when it was sent, so the queue does not spend
    it; an attempt that runs into its deadline after such a wait is not evidence against the
    server — unless that host's requests have been ending in trouble (then its slowness holds the
    slots). The server's own slowness (no queue) is evidence."""
    from aiohttp import web

    from probes.net.httpfetch import Fetcher

    slow_began = asyncio.Event()

    async def slow(_req: web.Request) -> web.Response:
        slow_began.set()
        await asyncio.sleep(0.6)  # the server's own behaviour: it answers 0.6 s late
        return web.Response(text="late")

    async def fast(_req: web.Request) -> web.Response:
        return web.Response(text="at once")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    runner_ = web.AppRunner(app)
    await runner_.setup()
    site = web.TCPSite(runner_, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"

    def fetching(path: str, within: float | None = None):
        async def probe(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
            fr = await ctx.http.get(base + path, max_bytes=1000, answer_within_s=within)
            r = ProbeResult()
            ok = fr.failure is None
            r.evidence = [Evidence("origin", t.component, State.OK if ok else State.DOWN,
                                   None if ok else Fault.TIMEOUT, fr.detail or "answered")]
            return r
        return probe

    try:
        async with Fetcher(max_per_host=1) as http:
            runner = Runner([], [], http=http)
            # 1. a budget counts from the request: 0.6 s queued, then answered at once, is in time
            holder = asyncio.create_task(runner.attempt(fetching("/slow"), _target(timeout=5.0)))
            await asyncio.wait_for(slow_began.wait(), 5)
            queued = await runner.attempt(fetching("/fast", within=0.3), _target(timeout=5.0))
            assert queued.result.evidence[0].state is State.OK, queued.result.evidence
            assert (await holder).result.evidence[0].state is State.OK
            # 2. a deadline reached while queued for the agent's own slot: not measured
            slow_began.clear()
            holder = asyncio.create_task(runner.attempt(fetching("/slow"), _target(timeout=5.0)))
            await asyncio.wait_for(slow_began.wait(), 5)
            cut = await runner.attempt(fetching("/fast"), _target(timeout=0.3))
            [ev] = cut.result.evidence
            assert ev.state is State.UNKNOWN and ev.fault is Fault.TIMEOUT, ev
            assert "connection slots" in ev.detail and cut.result.failure is Failure.AGENT_BEHIND
            await holder
            # 3. the server's own slowness, nothing queued: evidence, by the request's budget and by
            # the attempt's deadline
            own = await runner.attempt(fetching("/slow", within=0.3), _target(timeout=5.0))
            assert own.result.evidence[0].state is State.DOWN and "within 0.30 s" in own.result.evidence[0].detail
            late = await runner.attempt(fetching("/slow"), _target(timeout=0.3))
            assert late.result.evidence[0].state is State.DOWN and late.result.failure is Failure.TIMEOUT
            # 4. a host whose requests end in trouble (the timeouts above): a wait for its slots is its
            # slowness (a host that hangs holds every slot), so a deadline hit while queued is evidence
            slow_began.clear()
            holder = asyncio.create_task(runner.attempt(fetching("/slow"), _target(timeout=5.0)))
            await asyncio.wait_for(slow_began.wait(), 5)
            cut = await runner.attempt(fetching("/fast"), _target(timeout=0.3))
            assert cut.result.evidence[0].state is State.DOWN and cut.result.failure is Failure.TIMEOUT
            await holder
    finally:
        await runner_.cleanup()


async def _two_edges(answer: Callable[[int, float], ProbeResult], slow_b: float = 0.0,
                     ticks: int = 6) -> tuple[list[float], list[float]]:
    """When each attempt at edge-a and edge-b (one job, 1-s ticks) started, on the runner's
    clock, until edge-b had ``ticks``: edge-a's n-th attempt (1-based) answers
    ``answer(n, its start)``; edge-b's takes ``slow_b`` s."""
    import time

    starts: dict[str, list[float]] = {"edge-a": [], "edge-b": []}

    async def probe(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        now = ctx.clock()
        starts[t.component].append(now)
        if t.component == "edge-b":
            await asyncio.sleep(slow_b)
            return ProbeResult()
        return answer(len(starts["edge-a"]), now)

    targets = [ProbeTarget(probe="hls", stream="main", stage="cdn", component=c, config=None, timeout=5.0)
               for c in ("edge-a", "edge-b")]
    async with Runner([Job("hls", "main", probe, targets, interval=1.0)], [_Recorder()], clock=time.monotonic):
        await wait_for(lambda: len(starts["edge-b"]) >= ticks, 10, f"{ticks} ticks")
    return starts["edge-a"], starts["edge-b"]


async def test_a_result_that_asks_for_a_recheck_gets_an_attempt_then_between_two_ticks():
    """The HLS probe's stale threshold falls between two ticks: its result asks for an attempt at
    that time (``recheck_at``) and the runner starts one then, for that target only, besides the
    regular ticks; a time too near the asking attempt is taken a gap (RECHECK_GAP) after it, and one
    too near the next tick is not taken (the tick serves)."""
    asked: list[float] = []

    def answer(n: int, now: float) -> ProbeResult:
        if n == 2:
            asked.append(now + 0.5)  # mid-way to the next tick: taken
            return ProbeResult(recheck_at=now + 0.5)
        if n == 4:
            asked.append(now + 0.3)  # too near the asking attempt: a gap after it
            return ProbeResult(recheck_at=now + 0.05)
        if n == 6:
            return ProbeResult(recheck_at=now + 0.9)  # too near the next tick: the tick serves
        return ProbeResult()

    a, b = await _two_edges(answer)
    assert len(a) == len(b) + 2, (a, b)  # two extra attempts, edge-a's
    for extra, want in zip((a[2], a[4]), asked, strict=True):
        assert extra == pytest.approx(want, abs=0.05), (a, asked)
        assert all(abs(extra - x) > 0.25 for x in b), (extra, b)  # between two ticks, not on one


async def test_a_recheck_asked_while_a_sibling_keeps_the_cycle_open_is_still_taken():
    """A cycle is published once every target's attempt has ended: a time an attempt asked for
    that passed while a slower sibling ran (its segment download) was seen by nobody, and is
    taken a gap after the cycle; one before the cycle began is not (its attempts saw it)."""

    def answer(n: int, now: float) -> ProbeResult:
        if n == 2:
            return ProbeResult(recheck_at=now + 0.05)  # passes while edge-b still runs
        if n == 5:
            return ProbeResult(recheck_at=now - 0.01)  # before the cycle began: seen, not taken
        return ProbeResult()

    a, b = await _two_edges(answer, slow_b=0.15)
    assert len(a) == len(b) + 1, (a, b)  # the one recheck
    assert a[2] - a[1] == pytest.approx(0.15 + 0.3, abs=0.1), a  # a gap after the cycle was published
