"""Start-up: no incident from evidence gathered before every target of the stream answered once.

An agent that starts mid-stream sees one probe's first result before the others have
spoken; the incident sink holds the localizer until every (probe, component) of the stream
has finished its first attempt (or STARTUP_WAIT_S passed). Real localizer, board, metric
store and SQLite store; cycles are built as the runner builds them.
"""

from __future__ import annotations

from pathlib import Path

from agent.alerts import AlertDispatcher
from agent.incident_sink import STARTUP_WAIT_S, IncidentSink
from agent.incidents import AsyncIncidentStore
from agent.localize import Localizer, LocalizerSettings
from agent.metrics import MetricStore
from agent.runner import Attempt, Cycle, Job
from agent.status import StatusBoard
from probes.base import Evidence, ProbeResult, ProbeTarget, State
from probes.faults import Fault


def _cycle(job: Job, results: dict[str, ProbeResult], t: float) -> Cycle:
    attempts = [Attempt(tg, results[tg.component], t, 0.01) for tg in job.targets if tg.component in results]
    return Cycle(job, attempts, t, t + 0.01, latest=dict(results))


async def _noop(target: ProbeTarget, ctx: object) -> ProbeResult:  # never run: cycles are built by hand
    return ProbeResult()


def _job(probe: str, stage: str, components: list[str]) -> Job:
    targets = [ProbeTarget(probe, "main", stage, c, None) for c in components]
    return Job(probe, "main", _noop, targets, 1.0)


def _stale(stage: str, component: str) -> ProbeResult:
    return ProbeResult(evidence=[Evidence(stage, component, State.DOWN, Fault.STALE_PLAYLIST, "stale", r)
                                 for r in ("360p", "180p")])


async def test_no_incident_before_every_target_answered_once(tmp_path: Path) -> None:
    t = [1000.0]
    board = StatusBoard(wall=lambda: t[0])
    hls = _job("hls", "origin", ["origin"])
    ingest = _job("ingest_stat", "ingest", ["ingest"])
    sink = IncidentSink(Localizer(LocalizerSettings(open_cycles=1), clock=lambda: t[0]),
                        AsyncIncidentStore(tmp_path / "i.db"), AlertDispatcher([]), board, MetricStore(),
                        expected={"main": {("hls", "origin"), ("ingest_stat", "ingest")}})
    origin = _stale("origin", "origin")
    for _ in range(5):  # the origin looks stale, the ingest has not answered yet: nothing opens
        t[0] += 1
        board.update("main", "hls/origin", origin.evidence)
        sink.on_cycle(_cycle(hls, {"origin": origin}, t[0]))
    assert sink.localizer.open_incidents() == []
    # the ingest answers (no input): now the picture is whole and the cause is placed upstream
    t[0] += 1
    no_input = ProbeResult(evidence=[Evidence("ingest", "ingest", State.DOWN, Fault.NO_INPUT, "no publisher")])
    board.update("main", "ingest_stat/ingest", no_input.evidence)
    sink.on_cycle(_cycle(ingest, {"ingest": no_input}, t[0]))
    t[0] += 1
    sink.on_cycle(_cycle(hls, {"origin": origin}, t[0]))
    assert [(i.stage, i.fault) for i in sink.localizer.open_incidents()] == [("ingest", "no_input")]


async def test_a_target_that_never_answers_is_not_waited_for_forever(tmp_path: Path) -> None:
    t = [1000.0]
    board = StatusBoard(wall=lambda: t[0])
    hls = _job("hls", "origin", ["origin"])
    sink = IncidentSink(Localizer(LocalizerSettings(open_cycles=1), clock=lambda: t[0]),
                        AsyncIncidentStore(tmp_path / "i.db"), AlertDispatcher([]), board, MetricStore(),
                        expected={"main": {("hls", "origin"), ("whep", "whep")}})
    origin = _stale("origin", "origin")
    opened_at = None
    while opened_at is None and t[0] < 1000.0 + 3 * STARTUP_WAIT_S:
        t[0] += 1
        board.update("main", "hls/origin", origin.evidence)
        sink.on_cycle(_cycle(hls, {"origin": origin}, t[0]))
        if sink.localizer.open_incidents():
            opened_at = t[0]
    assert opened_at is not None and STARTUP_WAIT_S <= opened_at - 1000.0 <= STARTUP_WAIT_S + 2


async def test_a_late_cycle_beats_only_when_no_heartbeat_came_for_an_interval(tmp_path: Path) -> None:
    """A straggler's late cycle (agent/runner.py) must not add hysteresis counts between two
    on-time heartbeats; but when every playlist answers late, late cycles are the heartbeat."""
    t = [1000.0]
    board = StatusBoard(wall=lambda: t[0])
    hls = _job("hls", "origin", ["origin", "edge-b"])
    sink = IncidentSink(Localizer(LocalizerSettings(open_cycles=2), clock=lambda: t[0]),
                        AsyncIncidentStore(tmp_path / "i.db"), AlertDispatcher([]), board, MetricStore(),
                        expected={"main": {("hls", "origin"), ("hls", "edge-b")}})
    ok = ProbeResult(evidence=[Evidence("origin", "origin", State.OK, None, "fine")])
    stale = _stale("cdn", "edge-b")
    board.update("main", "hls/origin", ok.evidence)
    t[0] += 1
    sink.on_cycle(_cycle(hls, {"origin": ok, "edge-b": ok}, t[0]))  # the first answers: start-up over
    board.update("main", "hls/edge-b", stale.evidence)

    def late(at: float) -> Cycle:
        c = _cycle(hls, {"edge-b": stale}, at)
        c.late = True
        return c

    t[0] += 0.3
    sink.on_cycle(late(t[0]))  # 0.3 s after an on-time beat: one count, not two
    t[0] += 0.3
    sink.on_cycle(late(t[0]))
    assert sink.localizer.open_incidents() == []
    for _ in range(2):  # no on-time heartbeat for longer than the interval: late cycles beat
        t[0] += 1.5
        sink.on_cycle(late(t[0]))
    assert [(i.stage, i.component, i.fault) for i in sink.localizer.open_incidents()] == [
        ("cdn", "edge-b", "stale_playlist")]
