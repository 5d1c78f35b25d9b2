"""From probe cycles to incidents: localizer → SQLite store → alerts → metrics.

A :class:`~agent.runner.CycleSink`: after each cycle of a stream, the localizer
reads that stream's whole evidence from the status board (never the probes) and
returns opened/updated/resolved events. Events go, in order, through one owned
writer task with a bounded queue to the store (off the event loop) and the alert
dispatcher (which never blocks). The open-incident gauge and the time-to-localize
histogram are updated here.

State follows config: an open incident whose place is no longer in the config (its stream,
an edge, a probe's component: :func:`in_config`) is resolved with the reason
"removed from config" — at start (left open by an earlier run) and at a reload
(:meth:`IncidentSink.reconfigure`). Alert sinks are told at start only what they missed
(the store keeps what each was told); Alertmanager's firing alerts are re-asserted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from agent.alerts import AlertDispatcher, AlertSink
from agent.diagnosis import fault_of, is_bad
from agent.incidents import (
    TIME_TO_LOCALIZE_BUCKETS,
    TIME_TO_LOCALIZE_METRIC,
    AsyncIncidentStore,
    open_incident_samples,
    time_to_localize_observations,
)
from agent.localize import Incident, IncidentEvent, Localizer
from agent.metrics import MetricStore
from agent.runner import Cycle, Job
from agent.schedule import Schedule, on_air_evidence
from agent.selfwatch import AGENT_COMPONENT, AGENT_STREAM, SelfReport
from agent.status import StatusBoard
from probes.base import Evidence, State
from probes.faults import AGENT_STAGE, Fault

log = logging.getLogger("signalpath.incidents")

HEARTBEAT = "hls"
STARTUP_WAIT_S = 15.0
"""The longest the localizer waits for a stream's first complete picture (longer than any
probe deadline by default, shorter than the slowest probe interval, WHEP's 10 s + deadline)."""
SOURCE = "incidents"  # the status-board source of root-cause cells (never fed back to the localizer)
SCHEDULE_SOURCE = "schedule"  # the status-board source of not_live evidence (agent/schedule.py)

Places = dict[str, set[tuple[str, str]]]
"""stream -> the (stage, component) places its config names."""


def alertable(events: list[IncidentEvent]) -> list[IncidentEvent]:
    """The events alert sinks get: none of an incident opened in a maintenance window while it
    is marked so (agent/schedule.py); it is alerted when the window ends and it is still open."""
    return [e for e in events if not e.incident.maintenance]


def config_places(jobs: list[Job]) -> Places:
    """Every place the config names: each probe target's, the origin, the CDN as a whole
    when the stream has an edge; and the agent itself (agent/selfwatch.py)."""
    out: Places = {AGENT_STREAM: {(AGENT_STAGE, AGENT_COMPONENT)}}
    for job in jobs:
        places = out.setdefault(job.stream, {("origin", "origin")})
        for t in job.targets:
            places.add((t.stage, t.component))
            if t.stage == "cdn":
                places.add(("cdn", "cdn"))
    return out


def in_config(inc: Incident, places: Places) -> bool:
    """Is ``inc``'s place still in the config? Its stream must be; a transcode component (the
    transcoder, a rendition) and the studio's source are found in the origin's ladder and
    content, not named in the config, so they last as long as their stream."""
    mine = places.get(inc.stream)
    if mine is None:
        return False
    if inc.stage == "transcode" or (inc.stage, inc.component) == ("studio", "source"):
        return True
    return (inc.stage, inc.component) in mine


@dataclass(frozen=True, slots=True)
class _Delivered:
    """An alert sink delivered an event: recorded in the store (what a restart must not re-send)."""

    sink: str
    event: IncidentEvent


class IncidentSink:
    """Feeds the localizer one cycle per stream heartbeat, once the stream has been seen whole.

    Start-up rule (an agent that starts mid-stream): no incident is opened on evidence
    gathered before every target of every job of the stream (``expected``: stream ->
    {(probe, component)}) has finished its first attempt; until then a missing probe's
    silence could read as health, or one probe's first impression as a cause. A target
    that has not answered within :data:`STARTUP_WAIT_S` of the stream's first cycle is not
    waited for any longer (its deadline has long passed; its silence is then evidence).
    """

    def __init__(self, localizer: Localizer, store: AsyncIncidentStore, dispatcher: AlertDispatcher,
                 board: StatusBoard, metrics: MetricStore, queue_size: int = 1000,
                 expected: dict[str, set[tuple[str, str]]] | None = None, places: Places | None = None,
                 schedule: Schedule | None = None) -> None:
        self.localizer = localizer
        self.schedule = schedule or Schedule()
        self.store = store
        self.dispatcher = dispatcher
        self.board = board
        self.metrics = metrics
        self.metrics.define_histogram(TIME_TO_LOCALIZE_METRIC, TIME_TO_LOCALIZE_BUCKETS)
        self._queue: asyncio.Queue[list[IncidentEvent] | _Delivered] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._ladders: dict[str, list[str]] = {}  # stream -> the origin's renditions, last known
        self._expected = {stream: set(targets) for stream, targets in (expected or {}).items()}
        self._waiting = {stream: set(targets) for stream, targets in self._expected.items()}
        self._first_cycle: dict[str, float] = {}
        self._beat_at: dict[str, float] = {}  # stream -> end of the cycle that last ran the localizer
        self.places = places  # None: every place counts as configured (a sink built without a config)

    async def start(self) -> None:
        await self.store.open()
        restored = await self.store.list("open")
        self.localizer.restore(restored)
        gone = self._retire()  # left open by an earlier run whose config named its place
        await self.store.apply_all(gone)
        self._log(gone)
        for stream in {i.stream for i in self.localizer.open_incidents()} - {AGENT_STREAM}:
            self._show_roots(stream)
        self.dispatcher.on_delivered(self._delivered)
        await self.dispatcher.start()
        # tell each sink what it missed (an event of the last run it never got), never again what it got
        closed_now = {e.incident.id for e in gone}
        for sink in self.dispatcher.sinks:
            for e in alertable(await self.store.undelivered(sink.key, firing=not sink.reasserts_firing)):
                if e.incident.id not in closed_now:
                    sink.submit(e)
        # Alertmanager forgets a firing alert it is not told again: re-assert what is still open
        self.dispatcher.restore_firing([i for i in self.localizer.open_incidents() if not i.maintenance])
        self.dispatcher.submit_all(alertable(gone))
        self._publish_gauge()
        self._task = asyncio.ensure_future(self._writer())

    async def stop(self) -> None:
        if self._task is not None:
            await self._drain()  # queued events: stored and handed to the alert sinks
            await self.dispatcher.stop()
            await self._drain()  # what the sinks delivered meanwhile: recorded
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        else:
            await self.dispatcher.stop()
        await self.store.close()

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(3.0):
                await self._queue.join()
        except TimeoutError:
            log.warning("incident writer did not drain in 3 s; %d batches dropped", self._queue.qsize())

    def reconfigure(self, expected: dict[str, set[tuple[str, str]]], places: Places) -> list[IncidentEvent]:
        """A config reload: open incidents whose place left the config are resolved ("removed
        from config"); a removed stream's localizer state is dropped; a new stream, and a new
        target of a stream that remains, is waited for (start-up rule) before anything opens.
        Streams that remain keep their open incidents, history and localizer state."""
        gone_streams = ({i.stream for i in self.localizer.open_incidents()} | set(self._expected)) - set(places)
        self.places = places
        events: list[IncidentEvent] = []
        for stream in gone_streams:
            events += self.localizer.forget(stream)
            for state in (self._ladders, self._waiting, self._first_cycle, self._expected, self._beat_at):
                state.pop(stream, None)
        events += self._retire()
        for stream, targets in expected.items():
            new = targets - self._expected.get(stream, set())
            if new:
                self._waiting.setdefault(stream, set()).update(new)
                self._first_cycle.pop(stream, None)
            self._expected[stream] = set(targets)
        for stream in {e.incident.stream for e in events} - gone_streams - {AGENT_STREAM}:
            self._show_roots(stream)
        self._publish_gauge()
        self._log(events)
        if events:
            self._enqueue(events)
        return events

    def _retire(self) -> list[IncidentEvent]:
        """Resolve every open incident whose place is not in the config."""
        if self.places is None:
            return []
        out = []
        for inc in self.localizer.open_incidents():
            if not in_config(inc, self.places):
                event = self.localizer.forget_incident(inc.id)
                if event is not None:
                    out.append(event)
        return out

    def _delivered(self, sink: AlertSink, event: IncidentEvent) -> None:
        try:
            self._queue.put_nowait(_Delivered(sink.key, event))
        except asyncio.QueueFull:
            log.error("incident queue full: delivery of %s %s to %s not recorded", event.kind, event.incident.id,
                      sink.kind)

    def _enqueue(self, events: list[IncidentEvent]) -> None:
        try:
            self._queue.put_nowait(events)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("incident queue full: %d events not stored", len(events))

    @staticmethod
    def _log(events: list[IncidentEvent]) -> None:
        for e in events:
            log.info("incident %s %s: %s/%s %s (%s) — %s", e.incident.id, e.kind, e.incident.stage,
                     e.incident.component, e.incident.fault, e.incident.severity, e.reason or e.incident.summary)

    def on_cycle(self, cycle: Cycle) -> None:
        # the stream's playlist cycle is its heartbeat: one localizer cycle per HLS cycle
        # (every second by default), reading the latest evidence of every probe. Observing
        # after every job's cycle would count "2 cycles" of hysteresis in a fraction of a
        # second, and judge one probe's fresh evidence before the others have spoken.
        stream = cycle.job.stream
        waiting = self._waiting.get(stream)
        if waiting:
            waiting.difference_update((cycle.job.probe, a.target.component) for a in cycle.attempts)
            first = self._first_cycle.setdefault(stream, cycle.start_wall)
            if cycle.end_wall - first > STARTUP_WAIT_S:
                log.warning("stream %s: no first answer from %s within %.0f s; localizing without waiting",
                            stream, ", ".join(sorted(f"{p}/{c}" for p, c in waiting)), STARTUP_WAIT_S)
                waiting.clear()
        if (cycle.job.probe != HEARTBEAT or cycle.recheck) and not waiting and not cycle.late:
            # another probe's fresh attempt, or the heartbeat probe's asked-for one between two
            # heartbeats (a playlist at its stale threshold): its renewed findings only, never a cycle
            # of the whole stream (the players' and effects' waits count heartbeats)
            self._confirm(cycle, start=cycle.recheck)
            return
        if cycle.job.probe != HEARTBEAT or waiting:
            return
        # a late cycle (a playlist answered after the job's next tick: agent/runner.py) beats
        # only when no heartbeat came for a whole interval: every playlist slow, no extra counts
        last = self._beat_at.get(stream)
        if cycle.late and last is not None and cycle.end_wall - last < cycle.job.interval:
            return
        self._beat_at[stream] = cycle.end_wall
        origin = cycle.latest.get("origin")
        if origin is not None and origin.figures.get("renditions"):
            self._ladders[stream] = sorted(origin.figures["renditions"])
        ladder = self._ladders.get(stream)
        now = cycle.end_wall
        # broadcasts (agent/schedule.py): a stream of a broadcast on air must be live; one off air
        # (outside every pre-roll..end of its broadcasts) is not judged: its end is no incident
        not_live, samples = on_air_evidence(self.schedule, stream, self.board.evidence(stream, exclude=(
            SOURCE, SCHEDULE_SOURCE)), now)
        self.board.update(stream, SCHEDULE_SOURCE, not_live)
        self.metrics.replace(f"{SCHEDULE_SOURCE}/{stream}", samples)
        watched = self.schedule.watched(stream, now)
        evidence = self.board.evidence(stream, exclude=(SOURCE,)) if watched else []
        events = self.localizer.observe(stream, evidence, ladder=ladder)
        events += self.localizer.maintenance_over(stream)
        self._show_roots(stream)  # every beat: an incident begins or ends resolving without an event
        self._emit(stream, events)

    def _confirm(self, cycle: Cycle, *, start: bool = False) -> None:
        """Another probe's fresh bad evidence may be a finding's next observation
        (:meth:`~agent.localize.Localizer.confirm`)."""
        results = [a.result for a in cycle.attempts] + ([cycle.combined] if cycle.combined is not None else [])
        renewed = {(e.stage, e.component, e.rendition, str(fault_of(e)))
                   for r in results for e in r.evidence if is_bad(e)}
        if not renewed:
            return
        stream = cycle.job.stream
        if not self.schedule.watched(stream, cycle.end_wall):
            return
        evidence = self.board.evidence(stream, exclude=(SOURCE,))
        self._emit(stream, self.localizer.confirm(stream, evidence, renewed, cycle.start_wall, cycle.end_wall,
                                                  ladder=self._ladders.get(stream), start=start))
        self._show_roots(stream)

    def on_self(self, report: SelfReport) -> None:
        """The agent's own evidence (agent/selfwatch.py), every second: its incidents are those of
        the stream :data:`~agent.selfwatch.AGENT_STREAM`, never shown on a stream's board."""
        self._emit(AGENT_STREAM, self.localizer.observe(AGENT_STREAM, report.evidence))

    def _emit(self, stream: str, events: list[IncidentEvent]) -> None:
        if not events:
            return
        for seconds in time_to_localize_observations(events):
            self.metrics.observe(TIME_TO_LOCALIZE_METRIC, {"stream": stream, "stage": events[0].incident.stage},
                                 seconds)
        self._publish_gauge()
        self._log(events)
        self._enqueue(events)

    def _show_roots(self, stream: str) -> None:
        """Put each open incident's root cause on the status board at its own stage/component
        (e.g. ``transcode/180p``), so the status API and page show WHERE, not only symptoms.
        Only while its cause's evidence is there: an incident resolving (its evidence gone for less
        than ``resolve_after_s``) leaves its place to what the probes measure — healthy again —
        so the board, ``signalpath_stage_healthy`` and the history (availability) do not count
        the resolve hysteresis as downtime."""
        resolving = self.localizer.resolving(stream)
        evs = [Evidence(i.stage, i.component, State.DOWN if i.severity == "P1" else State.DEGRADED, Fault(i.fault),
                        i.summary) for i in self.localizer.open_incidents(stream) if i.id not in resolving]
        self.board.update(stream, SOURCE, evs)

    def _publish_gauge(self) -> None:
        self.metrics.replace("incidents", open_incident_samples(self.localizer.open_incidents()))

    async def _writer(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Delivered):
                    await self.store.record_delivery(item.sink, item.event)
                else:
                    await self.store.apply_all(item)
                    self.dispatcher.submit_all(alertable(item))
            except Exception:
                log.exception("storing incident events failed")
            finally:
                self._queue.task_done()

    async def list(self, state: Any = "all") -> list[dict[str, Any]]:
        return [i.to_api() for i in await self.store.list(state)]
