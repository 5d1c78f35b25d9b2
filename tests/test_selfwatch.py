"""The agent watching itself (agent/selfwatch.py): lag, the behind judgement, what is not
evidence while it is behind, shedding in the stated order, and its own incident."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.localize import Localizer, LocalizerSettings
from agent.runner import Cycle, Job, Runner
from agent.selfwatch import (
    AGENT_STREAM,
    BEHIND_SHARE,
    CALM_S,
    ESCALATE_S,
    LAG_FLOOR_S,
    SHED_ORDER,
    STARTUP_GRACE_S,
    LoopWatch,
    SelfWatch,
    shed_evidence,
    unmeasured,
)
from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, State
from probes.faults import AGENT_STAGE, CATALOG, Fault


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_loop_watch_sums_lateness_past_timer_jitter_and_keeps_stalls():
    clock = Clock()
    w = LoopWatch(clock)
    w.woke(1000.0, 1000.002)  # jitter: nothing lost
    assert w.lost_s() == 0.0 and not w.stalls
    w.woke(1000.1, 1000.13)  # 30 ms late: 20 ms lost, not a stall
    assert w.lost_s() == pytest.approx(0.02) and not w.stalls
    w.woke(1000.2, 1000.6)  # 400 ms late: a stall
    assert w.lost_s() == pytest.approx(0.02 + 0.39) and w.longest(1000.0, 1001.0) == pytest.approx(0.4)
    clock.t = 1000.6
    assert w.lag.value(clock.t) == pytest.approx(0.4)
    clock.t = 1030.0  # two windows later the lag is forgotten
    assert w.lag.value(clock.t) == 0.0


def _load(sw: SelfWatch, clock: Clock, seconds: int, lost_per_s: float) -> list:
    """``seconds`` one-second looks at itself, the loop losing ``lost_per_s`` each second."""
    reports = []
    for _ in range(seconds):
        clock.t += 1.0
        if lost_per_s:
            sw.loop.woke(clock.t - lost_per_s - LAG_FLOOR_S, clock.t)
        reports.append(sw.tick())
    return reports


def test_behind_is_a_share_of_time_lost_and_one_blip_is_not():
    clock = Clock()
    sw = SelfWatch(clock, lambda: 1.7e9)
    r = _load(sw, clock, int(STARTUP_GRACE_S) + 2, 0.0)[-1]
    assert not r.behind and r.evidence[0].state is State.OK and r.level == 0
    clock.t += 1.0
    sw.loop.woke(clock.t - 0.31, clock.t)  # one blocking call of 0.3 s: 3 % of the window
    r = _load(sw, clock, 5, 0.0)[-1]
    assert not r.behind and r.evidence[0].state is State.OK
    names = {s.name for s in r.samples}
    assert {"signalpath_agent_loop_lag_seconds", "signalpath_agent_shed_level"} <= names
    assert r.figures["loop_lag_s"] == pytest.approx(0.31)


def test_behind_sheds_in_the_stated_order_and_comes_back_when_calm():
    clock = Clock()
    sw = SelfWatch(clock, lambda: 1.7e9)
    _load(sw, clock, int(STARTUP_GRACE_S) + 2, 0.0)
    reports = _load(sw, clock, int(3 * ESCALATE_S) + 5, 2 * BEHIND_SHARE)
    levels = [r.level for r in reports]
    first_behind = next(i for i, r in enumerate(reports) if r.behind)
    # one level more every ESCALATE_S while behind, never past the last
    assert levels[first_behind] == 0 and max(levels) == len(SHED_ORDER)
    ups = [i for i in range(1, len(levels)) if levels[i] > levels[i - 1]]
    assert [b - a for a, b in zip(ups, ups[1:], strict=False)] == [int(ESCALATE_S)] * (len(SHED_ORDER) - 1)
    assert not sw.sheds("hls") and not sw.sheds("rtmp")  # freshness checks are never shed
    assert sw.sheds("media") and sw.sheds("playback") and sw.sheds("whep")
    ev = reports[-1].evidence[0]
    assert (ev.stage, ev.component, ev.state, ev.fault) == (AGENT_STAGE, "agent", State.DEGRADED, Fault.OVERLOADED)
    assert "virtual players" in ev.detail and ev.figures["loop_lost_ratio"] >= BEHIND_SHARE
    # calm: one level less every CALM_S, still DEGRADED (shedding) until the last level is back
    calm = _load(sw, clock, int(len(SHED_ORDER) * CALM_S) + 30, 0.0)
    assert [r.level for r in calm][-1] == 0
    caught_up = next(i for i, r in enumerate(calm) if not r.behind)  # the lost time left the window
    assert caught_up <= 11
    assert calm[caught_up + int(CALM_S) - 1].level == len(SHED_ORDER)
    first_down = calm[caught_up + int(CALM_S)]
    assert first_down.level == len(SHED_ORDER) - 1 and first_down.evidence[0].state is State.DEGRADED
    assert "caught up, still shedding" in first_down.evidence[0].detail
    assert calm[-1].evidence[0].state is State.OK and not calm[-1].behind


def test_a_start_is_busy_by_design_and_sheds_nothing_and_states_nothing():
    """50 streams starting at once on 2 cores lose over 10 % of their first 20 s (tests/perf/
    scale_bench.py): that is no overload to shed for three minutes afterwards."""
    clock = Clock()
    sw = SelfWatch(clock, lambda: 1.7e9)
    first = _load(sw, clock, int(STARTUP_GRACE_S) - 1, 4 * BEHIND_SHARE)
    assert all(r.behind for r in first[2:]) and all(r.level == 0 for r in first)
    assert {r.evidence[0].state for r in first} == {State.UNKNOWN} and "starting" in first[-1].evidence[0].detail
    after = _load(sw, clock, int(ESCALATE_S) + 3, 4 * BEHIND_SHARE)  # still behind once started: judged
    assert after[-1].level == 1 and after[-1].evidence[0].fault is Fault.OVERLOADED


def test_timed_measurements_of_an_attempt_the_agent_was_late_for_are_not_evidence():
    timeout = Evidence("cdn", "edge-a", State.DOWN, Fault.TIMEOUT, "no complete answer within 5 s")
    slow = Evidence("cdn", "edge-a", State.DEGRADED, Fault.SLOW_SEGMENT, "segment at 0.4x real time", "360p")
    stale = Evidence("cdn", "edge-a", State.DOWN, Fault.STALE_PLAYLIST, "no new segment for 14 s", "360p")
    error = Evidence("cdn", "edge-a", State.DOWN, Fault.HTTP_ERROR, "HTTP 503")
    assert unmeasured([timeout], 0.02, 5.0) is None  # jitter
    assert unmeasured([timeout], 0.3, 5.0) is None  # 6 % of the attempt: the target's
    out = unmeasured([timeout, slow, stale, error], 1.2, 5.0)
    assert out is not None
    assert [(e.state, e.fault) for e in out] == [(State.UNKNOWN, Fault.TIMEOUT), (State.UNKNOWN, Fault.SLOW_SEGMENT),
                                                 (State.DOWN, Fault.STALE_PLAYLIST), (State.DOWN, Fault.HTTP_ERROR)]
    assert out[0].detail.startswith("not measured: the agent itself was behind")
    # while the agent is behind, even an attempt that lost nothing itself (a download it followed
    # across attempts) measured on a late clock
    late = unmeasured([slow, error], 0.0, 0.2, behind=True)
    assert late is not None and [e.state for e in late] == [State.UNKNOWN, State.DOWN]
    # a viewer that gives up on a playlist the agent was too late to read (seen starving the agent)
    assert {f for f, spec in CATALOG.items() if spec.timed} >= {"timeout", "slow_segment", "stalls", "latency_high",
                                                                "playback_failed"}
    assert not any(CATALOG[f].timed for f in ("stale_playlist", "segment_missing", "http_error", "unreachable"))


def test_a_shed_target_shows_unknown_naming_what_it_last_reported():
    stall = Evidence("playback", "edge-b", State.DEGRADED, Fault.STALLS, "the 360p viewer stalled", "360p")
    fine = Evidence("playback", "edge-b", State.OK, None, "the 180p viewer plays", "180p")
    out = shed_evidence("playback", "edge-b", [stall, fine])
    # an incident open on the stall stays open while the players are shed (not measured is not healed)
    assert [(e.state, e.fault, e.rendition) for e in out] == [(State.UNKNOWN, Fault.STALLS, "360p")]
    assert out[0].detail.startswith("not measured: shed") and "stalled" in out[0].detail
    only = shed_evidence("playback", "edge-b", [fine])
    assert [(e.state, e.fault, e.component) for e in only] == [(State.UNKNOWN, None, "edge-b")]


def _target(timeout: float, probe: str = "hls", stage: str = "cdn", component: str = "edge-a") -> ProbeTarget:
    return ProbeTarget(probe=probe, stream="main", stage=stage, component=component, config=None, url=None,
                       timeout=timeout)


async def _hangs(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    await asyncio.sleep(30)
    return ProbeResult()


async def test_a_timeout_while_the_loop_was_blocked_is_the_agents_not_the_targets():
    runner = Runner([], [])
    await runner.start()
    try:
        await asyncio.sleep(0.1)
        control = await runner.attempt(_hangs, _target(timeout=1.0))
        assert control.result.failure is Failure.TIMEOUT
        assert [(e.state, e.fault) for e in control.result.evidence] == [(State.DOWN, Fault.TIMEOUT)]

        async def block_soon() -> None:
            await asyncio.sleep(0.2)
            time.sleep(0.5)  # a blocking call in the agent: its loop cannot run  # noqa: ASYNC251

        blocker = asyncio.ensure_future(block_soon())
        a = await runner.attempt(_hangs, _target(timeout=1.0))
        await blocker
        assert a.result.failure is Failure.AGENT_BEHIND
        assert [(e.state, e.fault) for e in a.result.evidence] == [(State.UNKNOWN, Fault.TIMEOUT)]
        assert "not measured" in a.result.evidence[0].detail
    finally:
        await runner.stop()


class Collect:
    def __init__(self) -> None:
        self.cycles: list[Cycle] = []
        self.selves: list = []

    def on_cycle(self, cycle: Cycle) -> None:
        self.cycles.append(cycle)

    def on_self(self, report) -> None:
        self.selves.append(report)


async def _until(cond, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_shed_job_shows_unknown_and_its_probes_start_afresh():
    runs: list[tuple[str, bool]] = []

    async def counting(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
        runs.append((t.probe, "seen" in ctx.state))
        ctx.state["seen"] = True
        return ProbeResult(evidence=[Evidence(t.stage, t.component, State.OK)])

    jobs = [Job("hls", "main", counting, [_target(1.0)], 0.05),
            Job("playback", "main", counting, [_target(1.0, "playback", "playback")], 0.05)]
    sink = Collect()
    runner = Runner(jobs, [sink])
    await runner.start()
    try:
        await _until(lambda: ("playback", True) in runs)
        runner.selfwatch.level = len(SHED_ORDER)  # behind: every optional job shed
        await _until(lambda: any(c.job.probe == "playback" and c.attempts[0].result.failure is Failure.AGENT_BEHIND
                                 for c in sink.cycles))
        shed = next(c for c in sink.cycles if c.job.probe == "playback" and not c.attempts[0].result.ok)
        assert [(e.state, e.stage) for e in shed.attempts[0].result.evidence] == [(State.UNKNOWN, "playback")]
        n_hls, n_play = sum(p == "hls" for p, _ in runs), sum(p == "playback" for p, _ in runs)
        await asyncio.sleep(0.3)
        assert sum(p == "playback" for p, _ in runs) == n_play  # not run while shed
        assert sum(p == "hls" for p, _ in runs) > n_hls  # the freshness check goes on
        runner.selfwatch.level = 0
        await _until(lambda: sum(p == "playback" for p, _ in runs) > n_play)
        first_back = [fresh for p, fresh in runs if p == "playback"][n_play]
        assert first_back is False  # its state was cleared: a new session
        await _until(lambda: len(sink.selves) >= 1, 3.0)
        assert sink.selves[0].evidence[0].stage == AGENT_STAGE
    finally:
        await runner.stop()


def test_the_agents_own_incident_is_its_own_stream_and_explains_nothing():
    clock = Clock(1.7e9)
    loc = Localizer(LocalizerSettings(), clock=clock)
    over = Evidence(AGENT_STAGE, "agent", State.DEGRADED, Fault.OVERLOADED, "the agent is behind")
    events = []
    for _ in range(4):
        clock.t += 1
        events += loc.observe(AGENT_STREAM, [over])
        events += loc.observe("main", [Evidence("cdn", "edge-a", State.DOWN, Fault.TIMEOUT, "no answer")])
    opened = {(e.incident.stream, e.incident.stage, e.incident.fault) for e in events if e.kind == "opened"}
    assert opened == {(AGENT_STREAM, "agent", "overloaded"), ("main", "cdn", "timeout")}
    assert next(e.incident.severity for e in events if e.incident.fault == "overloaded") == "P3"
