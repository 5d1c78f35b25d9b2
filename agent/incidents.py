"""The incident store: SQLite in WAL mode, so history survives a restart and a kill -9.

Every localizer event (opened / updated / resolved) is one small upsert committed in its
own transaction; with ``journal_mode=WAL`` and ``synchronous=NORMAL`` a committed
transaction survives the process being killed (SQLite documentation, "Write-Ahead
Logging": only a power loss may roll back the last transactions under NORMAL).

:class:`IncidentStore` is synchronous and thread-safe (one connection, one lock);
:class:`AsyncIncidentStore` runs it on one dedicated worker thread so the event loop never
waits on the disk: each call is one bounded statement.

Alert deliveries: what each alert sink has been told (``alert_deliveries``: sink key,
incident, severity, resolved), so that a restart sends a sink only what it missed
(:meth:`IncidentStore.undelivered`), never the same notification again. The timeline keeps
the reason of a change the evidence did not make ("removed from config").

Metric helpers (the registry belongs to ``agent/metrics.py``):
:func:`open_incident_samples` gives the values of
``signalpath_incidents_open{stream,stage,component,fault,severity}`` and
:func:`time_to_localize_observations` the observations of the
``signalpath_time_to_localize_seconds`` histogram.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.complaints import Complaint, ComplaintType
from agent.errors import AgentError
from agent.localize import Incident, IncidentEvent
from probes.base import Sample

StateFilter = Literal["open", "resolved", "all"]

INCIDENTS_OPEN_METRIC = "signalpath_incidents_open"
TIME_TO_LOCALIZE_METRIC = "signalpath_time_to_localize_seconds"
TIME_TO_LOCALIZE_BUCKETS = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
"""Histogram buckets: the target is p95 <= 15 s (DESIGN.md "Targets"), the seed's limit 5 min."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id           TEXT PRIMARY KEY,
    stream       TEXT NOT NULL,
    stage        TEXT NOT NULL,
    component    TEXT NOT NULL,
    fault        TEXT NOT NULL,
    severity     TEXT NOT NULL,
    started_at   REAL NOT NULL,
    localized_at REAL NOT NULL,
    resolved_at  REAL,
    summary      TEXT NOT NULL DEFAULT '',
    evidence     TEXT NOT NULL DEFAULT '[]',
    runbook      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (resolved_at);
CREATE INDEX IF NOT EXISTS incidents_started ON incidents (started_at);
CREATE TABLE IF NOT EXISTS incident_changes (
    incident_id  TEXT NOT NULL,
    at           REAL NOT NULL,
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    summary      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incident_changes_id ON incident_changes (incident_id, at);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    sink         TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    severity     TEXT NOT NULL,
    resolved     INTEGER NOT NULL,
    at           REAL NOT NULL,
    PRIMARY KEY (sink, incident_id)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_pending ON alert_deliveries (sink) WHERE resolved = 0;
CREATE TABLE IF NOT EXISTS complaints (
    id           TEXT PRIMARY KEY,
    at           REAL NOT NULL,
    stream       TEXT NOT NULL,
    type         TEXT NOT NULL,
    edge         TEXT,
    region       TEXT,
    device       TEXT,
    player       TEXT,
    note         TEXT NOT NULL DEFAULT '',
    explained_by TEXT,
    seen         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS complaints_at ON complaints (at);
CREATE TABLE IF NOT EXISTS schedule_entries (
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
"""
# columns added after a store was first created: (table, column, definition)
_MIGRATIONS = (("incident_changes", "reason", "TEXT NOT NULL DEFAULT ''"),
               ("incidents", "related", "TEXT NOT NULL DEFAULT '[]'"),
               ("incidents", "maintenance", "TEXT NOT NULL DEFAULT ''"),
               ("alert_deliveries", "fired_at", "REAL"))  # first firing delivery (drills: agent/drill.py)

_COLUMNS = (
    "id, stream, stage, component, fault, severity, started_at, localized_at, "
    "resolved_at, summary, evidence, runbook, related, maintenance"
)


class IncidentStoreSettings(BaseModel):
    """YAML ``incidents:``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field("signalpath-incidents.db", description="SQLite file; its folder is created")
    max_list: int = Field(500, ge=1, le=100_000, description="most incidents one list returns (newest first)")


def _row_to_incident(row: tuple) -> Incident:
    (id_, stream, stage, component, fault, severity, started, localized, resolved, summary, evidence, runbook,
     related, maintenance) = row
    return Incident(
        id=id_, stream=stream, stage=stage, component=component, fault=fault, severity=severity,
        started_at=started, localized_at=localized, resolved_at=resolved, summary=summary,
        evidence=_json_list(evidence), runbook=runbook, related=_json_list(related), maintenance=maintenance,
    )


def _json_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """The agent's SQLite file at ``path`` (its folder created), in WAL mode, autocommit, 5-s busy
    timeout, usable from the store's one thread, with ``schema`` applied. Raises OSError or
    sqlite3.Error; its callers say which store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db


class IncidentStore:
    """Synchronous SQLite store of incidents (see the module docstring)."""

    def __init__(self, path: str | Path, *, max_list: int = 500) -> None:
        self.path = Path(path)
        self.max_list = max_list
        self._lock = threading.Lock()
        try:
            self._db = open_database(self.path, _SCHEMA)
            for table, column, definition in _MIGRATIONS:
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        except (OSError, sqlite3.Error) as exc:
            raise AgentError(f"incident store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -----------------------------------------------------------------

    def apply(self, event: IncidentEvent, now: float | None = None) -> None:
        """Record one localizer event: the incident's current state and a row of its timeline."""
        inc = event.incident
        at = {"opened": inc.localized_at, "resolved": inc.resolved_at}.get(event.kind)
        self.upsert(inc)
        with self._lock:
            self._db.execute("INSERT INTO incident_changes (incident_id, at, kind, severity, summary, reason) "
                             "VALUES (?,?,?,?,?,?)", (inc.id, at if at is not None else (now or time.time()),
                                                      event.kind, inc.severity, inc.summary, event.reason))

    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        """Every recorded change of one incident, oldest first: ``{at, kind, severity, summary, reason}``."""
        with self._lock:
            rows = self._db.execute("SELECT at, kind, severity, summary, reason FROM incident_changes "
                                    "WHERE incident_id=? ORDER BY at, rowid", (incident_id,)).fetchall()
        return [{"at": at, "kind": kind, "severity": sev, "summary": summary, "reason": reason}
                for at, kind, sev, summary, reason in rows]

    # -- alert deliveries (what each alert sink has been told; never a URL or a secret) --

    def record_delivery(self, sink: str, event: IncidentEvent, now: float | None = None) -> None:
        """``sink`` (an :attr:`agent.alerts.AlertSink.key`) received ``event``."""
        inc = event.incident
        with self._lock:
            at = now or time.time()
            fired = None if inc.resolved_at is not None else at
            self._db.execute(
                "INSERT INTO alert_deliveries (sink, incident_id, severity, resolved, at, fired_at) "
                "VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(sink, incident_id) DO UPDATE SET severity=excluded.severity, "
                "resolved=MAX(resolved, excluded.resolved), at=excluded.at, "
                "fired_at=COALESCE(alert_deliveries.fired_at, excluded.fired_at)",
                (sink, inc.id, inc.severity, int(inc.resolved_at is not None), at, fired))

    def deliveries(self, incident_id: str) -> list[dict[str, Any]]:
        """What each alert sink was told of one incident: ``{sink, fired_at, resolved, at}`` (epoch s;
        ``fired_at`` the first firing delivery, None when only its resolution reached the sink)."""
        with self._lock:
            rows = self._db.execute("SELECT sink, fired_at, resolved, at FROM alert_deliveries WHERE incident_id=? "
                                    "ORDER BY sink", (incident_id,)).fetchall()
        return [{"sink": sink, "fired_at": fired, "resolved": bool(res), "at": at} for sink, fired, res, at in rows]

    def undelivered(self, sink: str, *, firing: bool = True) -> list[IncidentEvent]:
        """What ``sink`` has not been told yet, as the events to send it (bounded by ``max_list``).

        An open incident it never heard of (``opened``) or heard of at a lower severity
        (``updated``) — only with ``firing`` —, and an incident it heard of open that has since
        been resolved (``resolved``, with the reason of that change). An incident resolved
        before the sink heard of it is never sent: old history is not news."""
        cols = ", ".join("i." + c.strip() for c in _COLUMNS.split(","))
        with self._lock:
            # two indexed reads, whatever the length of the history: the open incidents
            # (incidents_open) and the sink's deliveries not yet resolved (few)
            rows = self._db.execute(
                f"SELECT {cols}, d.severity FROM incidents i LEFT JOIN alert_deliveries d "
                "ON d.sink = ? AND d.incident_id = i.id WHERE i.resolved_at IS NULL "
                "AND (d.incident_id IS NULL OR d.severity != i.severity) ORDER BY i.started_at, i.id LIMIT ?",
                (sink, self.max_list)).fetchall() if firing else []
            out = [IncidentEvent("opened" if row[-1] is None else "updated", _row_to_incident(row[:-1]))
                   for row in rows]
            rows = self._db.execute(
                f"SELECT {cols}, (SELECT c.reason FROM incident_changes c WHERE c.incident_id = i.id "
                "ORDER BY c.at DESC, c.rowid DESC LIMIT 1) FROM alert_deliveries d JOIN incidents i "
                "ON i.id = d.incident_id WHERE d.sink = ? AND d.resolved = 0 AND i.resolved_at IS NOT NULL "
                "ORDER BY i.started_at, i.id LIMIT ?", (sink, self.max_list)).fetchall()
            out += [IncidentEvent("resolved", _row_to_incident(row[:-1]), row[-1] or "") for row in rows]
        return out

    def upsert(self, inc: Incident) -> None:
        values = (
            inc.id, inc.stream, inc.stage, inc.component, inc.fault, inc.severity,
            inc.started_at, inc.localized_at, inc.resolved_at, inc.summary,
            json.dumps(inc.evidence[:200]), inc.runbook, json.dumps(inc.related[:50]), inc.maintenance,
        )
        with self._lock:
            self._db.execute(
                f"INSERT INTO incidents ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                # an incident's cause (stream, stage, component, fault) and onset are fixed when it
                # opens: the store never rewrites them, whatever a caller sends
                "ON CONFLICT(id) DO UPDATE SET severity=excluded.severity, "
                "resolved_at=excluded.resolved_at, summary=excluded.summary, "
                "evidence=excluded.evidence, runbook=excluded.runbook, maintenance=excluded.maintenance",
                values,
            )

    # -- reads ------------------------------------------------------------------

    def list(self, state: StateFilter = "all", *, stream: str | None = None, limit: int | None = None) -> list[Incident]:
        """Incidents, newest first; ``state`` is ``open``, ``resolved`` or ``all``."""
        if state not in ("open", "resolved", "all"):
            raise ValueError(f"state must be open, resolved or all, not {state!r}")
        where: list[str] = []
        args: list[object] = []
        if state == "open":
            where.append("resolved_at IS NULL")
        elif state == "resolved":
            where.append("resolved_at IS NOT NULL")
        if stream is not None:
            where.append("stream = ?")
            args.append(stream)
        sql = f"SELECT {_COLUMNS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id LIMIT ?"
        args.append(min(limit or self.max_list, self.max_list))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row_to_incident(r) for r in rows]

    def overlapping(self, start: float, end: float, *, streams: Iterable[str] | None = None,
                    limit: int = 100_000) -> builtins.list[Incident]:
        """Incidents that were open at some time in ``[start, end)`` (open ones too), oldest first;
        at most ``limit`` (the report's, not ``max_list``: a 24-hour broadcast may have many)."""
        sql = f"SELECT {_COLUMNS} FROM incidents WHERE started_at < ? AND (resolved_at IS NULL OR resolved_at >= ?)"
        args: list[object] = [end, start]
        names = None if streams is None else sorted(set(streams))
        if names is not None:
            sql += f" AND stream IN ({','.join('?' * len(names))})"
            args += names
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY started_at, id LIMIT ?", [*args, limit]).fetchall()
        return [_row_to_incident(r) for r in rows]

    def get(self, incident_id: str) -> Incident | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return _row_to_incident(row) if row else None

    def counts_by_fault(self, *, since: float | None = None) -> dict[str, int]:
        """How many incidents per fault type (the most frequent faults of a broadcast first)."""
        sql = "SELECT fault, COUNT(*) AS n FROM incidents"
        args: list = []
        if since is not None:
            sql += " WHERE started_at >= ?"
            args.append(since)
        sql += " GROUP BY fault ORDER BY n DESC, fault"
        with self._lock:
            return {fault: n for fault, n in self._db.execute(sql, args).fetchall()}


    # -- viewer complaints (agent/complaints.py) ---------------------------------------

    def add_complaint(self, c: Complaint, *, max_kept: int = 10_000) -> None:
        """Store ``c``; beyond ``max_kept`` complaints the oldest go (bounded size)."""
        with self._lock:
            self._db.execute(
                f"INSERT INTO complaints ({_COMPLAINT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (c.id, c.at, c.stream, str(c.type), c.edge, c.region, c.device, c.player, c.note, c.explained_by,
                 json.dumps(c.seen)))
            self._db.execute("DELETE FROM complaints WHERE id IN (SELECT id FROM complaints ORDER BY at DESC, id "
                             "LIMIT -1 OFFSET ?)", (max_kept,))

    def complaints(self, *, stream: str | None = None, since: float | None = None,
                   limit: int | None = None) -> builtins.list[Complaint]:
        """Complaints, newest first (at most ``max_list``)."""
        where: list[str] = ["1=1"]
        args: list[object] = []
        if stream is not None:
            where.append("stream = ?")
            args.append(stream)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        args.append(min(limit or self.max_list, self.max_list))
        with self._lock:
            rows = self._db.execute(f"SELECT {_COMPLAINT_COLUMNS} FROM complaints WHERE {' AND '.join(where)} "
                                    "ORDER BY at DESC, id LIMIT ?", args).fetchall()
        return [_row_to_complaint(r) for r in rows]

    def streams(self) -> builtins.list[str]:
        """Every stream with an incident stored."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT stream FROM incidents ORDER BY stream")]

    def complaints_between(self, start: float, end: float, *, limit: int = 100_000) -> builtins.list[Complaint]:
        """Complaints recorded in ``[start, end)``, oldest first (the report's window)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COMPLAINT_COLUMNS} FROM complaints WHERE at >= ? AND at < ? "
                                    "ORDER BY at, id LIMIT ?", (start, end, limit)).fetchall()
        return [_row_to_complaint(r) for r in rows]

    def resolved_since(self, since: float, *, stream: str) -> builtins.list[Incident]:
        """Incidents of ``stream`` resolved at or after ``since`` (what viewers may still complain of)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE stream = ? AND resolved_at >= ? "
                                    "ORDER BY resolved_at DESC LIMIT ?", (stream, since, self.max_list)).fetchall()
        return [_row_to_incident(r) for r in rows]


    # -- broadcasts and maintenance windows added through the API (agent/schedule_book.py) --

    def schedule_entries(self) -> builtins.list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT kind, name, body FROM schedule_entries ORDER BY kind, name").fetchall()
        out = []
        for kind, name, body in rows:
            try:
                value = json.loads(body)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append((kind, name, value))
        return out

    def put_schedule_entry(self, kind: str, name: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO schedule_entries (kind, name, body) VALUES (?,?,?)",
                             (kind, name, json.dumps(body)))

    def delete_schedule_entry(self, kind: str, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM schedule_entries WHERE kind = ? AND name = ?", (kind, name))
        return cur.rowcount > 0


_COMPLAINT_COLUMNS = "id, at, stream, type, edge, region, device, player, note, explained_by, seen"


def _row_to_complaint(row: tuple) -> Complaint:
    id_, at, stream, kind, edge, region, device, player, note, explained_by, seen = row
    try:
        seen_v = json.loads(seen)
    except ValueError:
        seen_v = {}
    try:
        ctype = ComplaintType(kind)
    except ValueError:
        ctype = ComplaintType.OTHER
    return Complaint(id=id_, at=at, stream=stream, type=ctype, edge=edge, region=region, device=device,
                     player=player, note=note, explained_by=explained_by,
                     seen=seen_v if isinstance(seen_v, dict) else {})


class AsyncIncidentStore:
    """:class:`IncidentStore` on one dedicated thread: the event loop never touches the disk."""

    def __init__(self, path: str | Path, *, max_list: int = 500) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="incident-store")
        self._path = path
        self._max_list = max_list
        self.store: IncidentStore | None = None

    @classmethod
    def from_settings(cls, settings: IncidentStoreSettings) -> AsyncIncidentStore:
        return cls(settings.path, max_list=settings.max_list)

    async def _run(self, fn, *args, **kw):
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(10.0):
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kw))

    async def open(self) -> None:
        self.store = await self._run(IncidentStore, self._path, max_list=self._max_list)

    async def close(self) -> None:
        if self.store is not None:
            await self._run(self.store.close)
            self.store = None
        self._executor.shutdown(wait=False)

    async def apply(self, event: IncidentEvent) -> None:
        await self._run(self._s().apply, event)

    async def apply_all(self, events: Iterable[IncidentEvent]) -> None:
        events = list(events)
        if events:
            await self._run(self._apply_all, events)

    def _apply_all(self, events: list[IncidentEvent]) -> None:
        for e in events:
            self._s().apply(e)

    async def record_delivery(self, sink: str, event: IncidentEvent) -> None:
        await self._run(self._s().record_delivery, sink, event)

    async def add_complaint(self, c: Complaint, *, max_kept: int = 10_000) -> None:
        await self._run(self._s().add_complaint, c, max_kept=max_kept)

    async def complaints(self, *, stream: str | None = None, since: float | None = None,
                         limit: int | None = None) -> list[Complaint]:
        return await self._run(self._s().complaints, stream=stream, since=since, limit=limit)

    async def resolved_since(self, since: float, *, stream: str) -> list[Incident]:
        return await self._run(self._s().resolved_since, since, stream=stream)

    async def schedule_entries(self) -> list[tuple[str, str, dict[str, Any]]]:
        return await self._run(self._s().schedule_entries)

    async def put_schedule_entry(self, kind: str, name: str, body: dict[str, Any]) -> None:
        await self._run(self._s().put_schedule_entry, kind, name, body)

    async def delete_schedule_entry(self, kind: str, name: str) -> bool:
        return await self._run(self._s().delete_schedule_entry, kind, name)

    async def undelivered(self, sink: str, *, firing: bool = True) -> list[IncidentEvent]:
        return await self._run(self._s().undelivered, sink, firing=firing)

    async def list(self, state: StateFilter = "all", *, stream: str | None = None, limit: int | None = None) -> list[Incident]:
        return await self._run(self._s().list, state, stream=stream, limit=limit)

    async def detail(self, incident_id: str) -> tuple[Incident | None, builtins.list[dict[str, Any]], builtins.list[dict[str, Any]]]:
        """One incident with its timeline and alert deliveries (``GET /api/v1/incidents/{id}``)."""
        s = self._s()
        return await self._run(lambda: (s.get(incident_id), s.timeline(incident_id), s.deliveries(incident_id)))

    async def counts_by_fault(self, *, since: float | None = None) -> dict[str, int]:
        return await self._run(self._s().counts_by_fault, since=since)


    def _s(self) -> IncidentStore:
        if self.store is None:
            raise AgentError("incident store is not open")
        return self.store


# ---------------------------------------------------------------------------
# metric values


def open_incident_samples(incidents: Iterable[Incident], extra_labels: dict[str, str] | None = None) -> list[Sample]:
    """``signalpath_incidents_open`` gauge values: open incidents per label set."""
    counts: dict[tuple, int] = {}
    for inc in incidents:
        if not inc.open:
            continue
        key = (inc.stream, inc.stage, inc.component, inc.fault, inc.severity)
        counts[key] = counts.get(key, 0) + 1
    out = []
    for (stream, stage, component, fault, severity), n in sorted(counts.items()):
        labels = dict(extra_labels or {})
        labels.update(stream=stream, stage=stage, component=component, fault=fault, severity=severity)
        out.append(Sample(INCIDENTS_OPEN_METRIC, labels, float(n)))
    return out


def time_to_localize_observations(events: Iterable[IncidentEvent]) -> list[float]:
    """Seconds from a fault's onset to its localization, one per ``opened`` event."""
    return [e.incident.time_to_localize_s for e in events if e.kind == "opened"]
