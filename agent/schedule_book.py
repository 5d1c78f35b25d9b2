"""Broadcasts and maintenance windows added through the API, beside the config's.

``POST /api/v1/broadcasts`` and ``POST /api/v1/maintenance`` (the shapes of ``broadcasts[]``
and ``maintenance[]`` in the config, agent/schedule.py) add one entry; ``DELETE
/api/v1/broadcasts/{name}`` and ``/api/v1/maintenance/{name}`` remove one added so. They are
kept in the incident database (table ``schedule_entries``), so they survive a restart; the
config's own entries are changed in the config (a reload applies them) and cannot be
deleted through the API. A name is unique across both.

Writes: with ``agent.web.basic_auth.write`` users they need one of them (agent/webguard.py);
with no login configured they are off unless ``schedule_api: {enabled: true}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError

from agent.incidents import AsyncIncidentStore, IncidentStore
from agent.schedule import Broadcast, MaintenanceWindow, Schedule, place_problem
from probes.core.config import StrictModel

KINDS: dict[str, type[Broadcast] | type[MaintenanceWindow]] = {"broadcast": Broadcast,
                                                                "maintenance": MaintenanceWindow}


class ScheduleApiSettings(StrictModel):
    """``schedule_api:``."""

    enabled: bool | None = Field(None, description="None: on when write users exist; true/false: forced")


class ScheduleError(ValueError):
    """A schedule change refused; ``status`` is the HTTP status that says why (400, 403, 404, 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ScheduleBook:
    def __init__(self, config: Any, store: AsyncIncidentStore, *, write_users: bool) -> None:
        self.config = config  # the agent's Config: streams, broadcasts, maintenance (replaced on reload)
        self.store = store
        s = config.schedule_api
        self.enabled = s.enabled if s.enabled is not None else write_users
        self.added: dict[tuple[str, str], Broadcast | MaintenanceWindow] = {}

    async def load(self) -> None:
        """The entries added before (a restart keeps them); one the config no longer allows is skipped."""
        for kind, name, body in await self.store.schedule_entries():
            try:
                entry = self._valid(kind, body, replacing=name)
            except (ScheduleError, ValidationError):
                continue
            self.added[(kind, name)] = entry

    def schedule(self) -> Schedule:
        broadcasts = [*self.config.broadcasts, *(e for (k, _), e in self.added.items() if k == "broadcast")]
        maintenance = [*self.config.maintenance, *(e for (k, _), e in self.added.items() if k == "maintenance")]
        return Schedule(broadcasts, maintenance)

    async def add(self, kind: str, data: Mapping[str, Any]) -> Broadcast | MaintenanceWindow:
        if not self.enabled:
            raise ScheduleError(403, "changing the schedule through the API is off: add a write user "
                                     "(agent.web.basic_auth.write) or set schedule_api.enabled: true")
        try:
            entry = self._valid(kind, dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ())) or kind
            why = str(first.get("msg", "invalid")).removeprefix("Value error, ")
            raise ScheduleError(400, f"{where}: {why}") from None
        await self.store.put_schedule_entry(kind, entry.name, entry.model_dump())
        self.added[(kind, entry.name)] = entry
        return entry

    async def remove(self, kind: str, name: str) -> None:
        if not self.enabled:
            raise ScheduleError(403, "changing the schedule through the API is off")
        if (kind, name) not in self.added:
            if any(e.name == name for e in self._configured(kind)):
                raise ScheduleError(409, f"{kind} {name!r} is defined in the config: change it there")
            raise ScheduleError(404, f"no {kind} {name!r} added through the API")
        await self.store.delete_schedule_entry(kind, name)
        del self.added[(kind, name)]

    def _configured(self, kind: str) -> list[Any]:
        return list(self.config.broadcasts if kind == "broadcast" else self.config.maintenance)

    def _valid(self, kind: str, data: dict[str, Any], replacing: str | None = None) -> Broadcast | MaintenanceWindow:
        entry = KINDS[kind].model_validate(data)
        taken = {e.name for e in self._configured(kind)} | {n for (k, n) in self.added if k == kind}
        if entry.name in taken and entry.name != replacing:
            raise ScheduleError(409, f"name: a {kind} named {entry.name!r} exists")
        edges = {s.name: [e.name for e in s.edges] for s in self.config.streams}
        if isinstance(entry, Broadcast):
            for i, stream in enumerate(entry.streams):
                if stream not in edges:
                    raise ScheduleError(400, f"streams[{i}]: {stream!r} is not a configured stream")
        else:
            problem = place_problem(entry, edges)
            if problem is not None:
                raise ScheduleError(400, problem)
        return entry


__all__ = ["ScheduleApiSettings", "ScheduleBook", "ScheduleError"]


def stored_broadcasts(db: str) -> list[Broadcast]:
    """Broadcasts added through the API, read from the incident database ``db`` by a command
    that is not the agent (``preflight --broadcast``, ``report --broadcast``); [] when the file
    does not exist (never created here). An entry that no longer validates is skipped."""
    from pathlib import Path

    if not Path(db).expanduser().is_file():
        return []
    store = IncidentStore(db)
    try:
        entries = store.schedule_entries()
    finally:
        store.close()
    out = []
    for kind, _name, body in entries:
        if kind == "broadcast":
            try:
                out.append(Broadcast.model_validate(body))
            except ValueError:
                continue
    return out

