"""The agent's complaint desk: records viewer complaints (agent/complaints.py) with what the
agent saw, counts them, and keeps clusters of unexplained ones on the status board.

``record(data)`` (the API's ``POST /api/v1/complaints``) parses and validates the complaint,
snapshots the stream's incidents (open, and resolved within ``lookback_s`` from the store)
and the state of every stage/component of the stream, decides which incident explains it,
stores it in the incident database (table ``complaints``, at most ``max_kept``), and counts
``signalpath_complaints_total{stream,type}``. Unexplained complaints of the last
``cluster_window_s`` live in memory (bounded by ``max_kept``); a task re-reads them every
:data:`REFRESH_S` and on every new complaint, and puts their clusters on the status board as
evidence of source ``complaints``: the localizer opens a ``viewer_complaints`` incident
(P3) at playback/<edge> like for any other evidence, and resolves it once the cluster ages out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from agent import complaints as cpl
from agent.complaints import Complaint, ComplaintSettings
from agent.incidents import AsyncIncidentStore
from agent.localize import Localizer
from agent.metrics import MetricStore
from agent.status import StatusBoard

log = logging.getLogger(__name__)

SOURCE = "complaints"  # the status board source of the cluster evidence
REFRESH_S = 15.0  # how often clusters are re-read (a cluster ages out within this of its window)
METRIC = "signalpath_complaints_total"


class ComplaintsOff(Exception):
    """Recording complaints is off (no write user and ``complaints.enabled`` not true)."""


class ComplaintDesk:
    def __init__(self, settings: ComplaintSettings, store: AsyncIncidentStore, localizer: Localizer,
                 board: StatusBoard, metrics: MetricStore, *, wall: Callable[[], float],
                 streams: Callable[[], Mapping[str, list[str]]], write_users: bool) -> None:
        self.settings = settings
        self.store = store
        self.localizer = localizer
        self.board = board
        self.metrics = metrics
        self.wall = wall
        self.streams = streams  # stream -> its edge names, as configured now (reloads included)
        self.enabled = settings.enabled if settings.enabled is not None else write_users
        self._recent: collections.deque[Complaint] = collections.deque(maxlen=settings.max_kept)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the unexplained complaints of the cluster window (an agent restart keeps its clusters)."""
        since = self.wall() - self.settings.cluster_window_s
        for c in reversed(await self.store.complaints(since=since, limit=self.settings.max_kept)):
            if c.explained_by is None:
                self._recent.append(c)
        self._refresh()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._task
            self._task = None

    async def record(self, data: Mapping[str, Any]) -> Complaint:
        """Record one complaint; :class:`ComplaintsOff` when off, :class:`agent.complaints.ComplaintError`
        (naming the field) when the complaint is not valid."""
        if not self.enabled:
            raise ComplaintsOff("recording complaints is off: add a write user (agent.web.basic_auth.write) "
                                "or set complaints.enabled: true")
        async with self._lock:
            now = self.wall()
            c = cpl.parse(data, streams=self.streams(), at=now, id_=cpl.new_id())
            open_now = self.localizer.open_incidents(c.stream)
            lately = await self.store.resolved_since(now - self.settings.lookback_s, stream=c.stream)
            cause = cpl.explain(c, [*open_now, *lately])
            c.explained_by = cause.id if cause is not None else None
            c.seen = {
                "incidents": [{"id": i.id, "stage": i.stage, "component": i.component, "fault": i.fault,
                               "severity": i.severity, "open": i.open, "summary": i.summary}
                              for i in [*open_now, *lately]][:50],
                "stages": [{"stage": cell.stage, "component": cell.component, "state": str(cell.state)}
                           for cell in self.board.cells(c.stream)],
            }
            await self.store.add_complaint(c, max_kept=self.settings.max_kept)
            self.metrics.inc(METRIC, {"stream": c.stream, "type": str(c.type)})
            if c.explained_by is None:
                self._recent.append(c)
            self._refresh()
        log.info("complaint %s on %s (%s%s): %s", c.id, c.stream, c.type, f", {c.edge}" if c.edge else "",
                 f"explained by {c.explained_by}" if c.explained_by else "unexplained")
        return c

    async def list(self, *, stream: str | None = None, since: float | None = None,
                   limit: int | None = None) -> list[Complaint]:
        return await self.store.complaints(stream=stream, since=since, limit=limit)

    def _refresh(self) -> None:
        now = self.wall()
        while self._recent and now - self._recent[0].at > self.settings.cluster_window_s:
            self._recent.popleft()
        found = cpl.clusters(self._recent, self.settings, now)
        for stream in self.streams():
            self.board.update(stream, SOURCE, found.get(stream, []))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                self._refresh()
            except Exception:  # a bug here must not end the desk
                log.exception("refreshing complaint clusters failed")


__all__ = ["ComplaintDesk", "ComplaintsOff", "SOURCE"]
