"""From probe cycles to incidents: localizer → SQLite store → alerts → metrics.

A :class:`~agent.runner.CycleSink`: after each cycle of a stream, the localizer
reads that stream's whole evidence from the status board (never the probes) and
returns opened/updated/resolved events. Events go, in order, through one owned
writer task with a bounded queue to the store (off the event loop) and the alert
dispatcher (which never blocks). The open-incident gauge and the time-to-localize
histogram are updated here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.alerts import AlertDispatcher
from agent.incidents import (
    TIME_TO_LOCALIZE_BUCKETS,
    TIME_TO_LOCALIZE_METRIC,
    AsyncIncidentStore,
    open_incident_samples,
    time_to_localize_observations,
)
from agent.localize import IncidentEvent, Localizer
from agent.metrics import MetricStore
from agent.runner import Cycle
from agent.status import StatusBoard
from probes.base import Evidence, State
from probes.faults import Fault

log = logging.getLogger("signalpath.incidents")

HEARTBEAT = "hls"
STARTUP_WAIT_S = 15.0
"""The longest the localizer waits for a stream's first complete picture (longer than any
probe deadline by default, shorter than the slowest probe interval, WHEP's 10 s + deadline)."""
SOURCE = "incidents"  # the status-board source of root-cause cells (never fed back to the localizer)


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
                 expected: dict[str, set[tuple[str, str]]] | None = None) -> None:
        self.localizer = localizer
        self.store = store
        self.dispatcher = dispatcher
        self.board = board
        self.metrics = metrics
        self.metrics.define_histogram(TIME_TO_LOCALIZE_METRIC, TIME_TO_LOCALIZE_BUCKETS)
        self._queue: asyncio.Queue[list[IncidentEvent]] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._ladders: dict[str, list[str]] = {}  # stream -> the origin's renditions, last known
        self._waiting = {stream: set(targets) for stream, targets in (expected or {}).items()}
        self._first_cycle: dict[str, float] = {}

    async def start(self) -> None:
        await self.store.open()
        restored = await self.store.list("open")
        self.localizer.restore(restored)
        for stream in {i.stream for i in restored}:
            self._show_roots(stream)
        await self.dispatcher.start()
        # re-announce what is still open so Alertmanager does not time it out
        self.dispatcher.submit_all(IncidentEvent("updated", i) for i in restored)
        self._publish_gauge()
        self._task = asyncio.ensure_future(self._writer())

    async def stop(self) -> None:
        if self._task is not None:
            # drain what is queued (bounded), then stop the writer
            try:
                async with asyncio.timeout(3.0):
                    await self._queue.join()
            except TimeoutError:
                log.warning("incident writer did not drain in 3 s; %d batches dropped", self._queue.qsize())
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.dispatcher.stop()
        await self.store.close()

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
        if cycle.job.probe != HEARTBEAT or waiting:
            return
        origin = cycle.latest.get("origin")
        if origin is not None and origin.figures.get("renditions"):
            self._ladders[stream] = sorted(origin.figures["renditions"])
        ladder = self._ladders.get(stream)
        events = self.localizer.observe(stream, self.board.evidence(stream, exclude=(SOURCE,)), ladder=ladder)
        if not events:
            return
        self._show_roots(stream)
        for seconds in time_to_localize_observations(events):
            self.metrics.observe(TIME_TO_LOCALIZE_METRIC, {"stream": stream, "stage": events[0].incident.stage},
                                 seconds)
        self._publish_gauge()
        for e in events:
            log.info("incident %s %s: %s/%s %s (%s) — %s", e.incident.id, e.kind, e.incident.stage,
                     e.incident.component, e.incident.fault, e.incident.severity, e.incident.summary)
        try:
            self._queue.put_nowait(events)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("incident queue full: %d events not stored", len(events))

    def _show_roots(self, stream: str) -> None:
        """Put each open incident's root cause on the status board at its own stage/component
        (e.g. ``transcode/180p``), so the status API and page show WHERE, not only symptoms."""
        evs = [Evidence(i.stage, i.component, State.DOWN if i.severity == "P1" else State.DEGRADED, Fault(i.fault),
                        i.summary) for i in self.localizer.open_incidents(stream)]
        self.board.update(stream, SOURCE, evs)

    def _publish_gauge(self) -> None:
        self.metrics.replace("incidents", open_incident_samples(self.localizer.open_incidents()))

    async def _writer(self) -> None:
        while True:
            events = await self._queue.get()
            try:
                await self.store.apply_all(events)
                self.dispatcher.submit_all(events)
            except Exception:
                log.exception("storing %d incident events failed", len(events))
            finally:
                self._queue.task_done()

    async def list(self, state: Any = "all") -> list[dict[str, Any]]:
        return [i.to_api() for i in await self.store.list(state)]
