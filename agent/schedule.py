"""Broadcasts and maintenance windows: when a stream must be live, and when findings are muted.

The crew works in broadcasts, not endless streams. ``broadcasts:`` names each one — its
streams, its start and end (RFC 3339), an optional pre-roll — and ``maintenance:`` the windows
in which a stream, a stage or one component is worked on. Pure: every query takes the time.

A stream named by at least one broadcast is *scheduled*: it is watched from each broadcast's
pre-roll (``start - preroll_s``) to its ``end``, and *off air* outside those windows — its
probes go on (the status page shows what they see) but no incident opens for it, so an
``EXT-X-ENDLIST`` or a publisher that stops at or after the scheduled end is a normal end, not
an incident. From a broadcast's start to its end each of its streams must be live: when it is
not, evidence ``not_live`` (P1) at origin/origin says so (agent/incident_sink.py). A stream no
broadcast names is watched all the time, as before.

Inside a maintenance window findings are recorded as usual — incidents open, resolve, and are
stored — but an incident that opens there is marked with the window and no alert is sent for
it; if it is still open when the window ends, it is alerted then (the work is over and the
fault is still there). The status page and the API say "maintenance".
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from probes.base import STAGES, Evidence, Sample, State
from probes.core.config import StrictModel
from probes.faults import CATALOG, Fault, FaultClass


def _parse_time(v: object) -> float:
    """RFC 3339 with an offset (``2026-12-01T20:00:00Z``, ``...+01:00``) or epoch seconds -> epoch seconds."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            raise ValueError("a time needs its UTC offset (e.g. 2026-12-01T20:00:00Z)")
        return v.timestamp()
    if not isinstance(v, str):
        raise ValueError("a time is RFC 3339 text, e.g. 2026-12-01T20:00:00Z")
    try:
        t = _dt.datetime.fromisoformat(v.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{v[:40]!r} is not an RFC 3339 time (e.g. 2026-12-01T20:00:00Z)") from None
    if t.tzinfo is None:
        raise ValueError(f"{v[:40]!r} has no UTC offset: add Z or +HH:MM")
    return t.timestamp()


class Broadcast(StrictModel):
    """``broadcasts[]``: one scheduled broadcast."""

    name: str = Field(min_length=1, max_length=80)
    streams: list[str] = Field(min_length=1)
    start: float
    end: float
    preroll_s: float = Field(0.0, ge=0, le=86_400, description="watched this long before start (the crew's "
                             "rehearsal); being not live then is no fault yet")

    _v_times = field_validator("start", "end", mode="before")(classmethod(lambda cls, v: _parse_time(v)))

    @model_validator(mode="after")
    def _order(self) -> Broadcast:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def watched(self, t: float) -> bool:
        return self.start - self.preroll_s <= t < self.end

    def on_air(self, t: float) -> bool:
        return self.start <= t < self.end


class MaintenanceWindow(StrictModel):
    """``maintenance[]``: findings at these places are recorded without alerts."""

    name: str = Field(min_length=1, max_length=80, description="what is done (shown and stored)")
    start: float
    end: float
    stream: str | None = Field(None, description="one stream; None: every stream")
    stage: str | None = Field(None, description="one stage; None: every stage")
    component: str | None = Field(None, description="one component of that stage; None: all of them")

    _v_times = field_validator("start", "end", mode="before")(classmethod(lambda cls, v: _parse_time(v)))

    @field_validator("stage")
    @classmethod
    def _v_stage(cls, v: str | None) -> str | None:
        if v is not None and v not in STAGES:
            raise ValueError(f"{v!r} is not a stage ({', '.join(STAGES)})")
        return v

    @model_validator(mode="after")
    def _order(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.component is not None and self.stage is None:
            raise ValueError("component needs its stage")
        return self

    def covers(self, stream: str, stage: str, component: str, t: float) -> bool:
        """At ``t``, this stream, stage and component — a CDN edge's window covers its viewers
        (playback/<edge>) too: working on an edge is felt by the players it serves."""
        if not (self.start <= t < self.end and self.stream in (None, stream)):
            return False
        if self.stage == "cdn" and self.component is not None and stage == "playback":
            return component == self.component
        return self.stage in (None, stage) and self.component in (None, component)


def place_problem(m: MaintenanceWindow, edges: Mapping[str, list[str]]) -> str | None:
    """Why ``m`` names a place the config does not have (``key: message``), or None.
    ``edges``: stream -> its edge names. A CDN or playback component must be an edge of the
    stream (of some stream, without one) — a typo would leave the real edge unmuted; the
    origin's component is ``origin``; other stages' components (renditions, devices) are not
    known before the probes run and are taken as given."""
    if m.stream is not None and m.stream not in edges:
        return f"stream: {m.stream!r} is not a configured stream ({', '.join(sorted(edges)) or 'none'})"
    if m.component is None or m.stage not in ("cdn", "playback", "origin"):
        return None
    if m.stage == "origin":
        allowed = {"origin"}
    else:
        allowed = {e for s, es in edges.items() if m.stream in (None, s) for e in es} | (
            {"cdn"} if m.stage == "cdn" else set())
    if m.component not in allowed:
        return (f"component: {m.component!r} is not a {m.stage} component of {m.stream or 'any stream'} "
                f"({', '.join(sorted(allowed)) or 'none'})")
    return None


@dataclass(frozen=True, slots=True)
class StreamSchedule:
    """Where one stream stands at one time (the API's ``schedule`` of a stream)."""

    state: str  # "unscheduled", "off_air", "preroll", "on_air"
    broadcast: Broadcast | None = None  # the current one, or the next
    maintenance: tuple[MaintenanceWindow, ...] = ()


class Schedule:
    """The configured broadcasts and maintenance windows (pure queries)."""

    def __init__(self, broadcasts: Iterable[Broadcast] = (), maintenance: Iterable[MaintenanceWindow] = ()) -> None:
        self.broadcasts = sorted(broadcasts, key=lambda b: b.start)
        self.maintenance = sorted(maintenance, key=lambda m: m.start)
        self._scheduled = {s for b in self.broadcasts for s in b.streams}

    def scheduled(self, stream: str) -> bool:
        return stream in self._scheduled

    def stream_at(self, stream: str, t: float) -> StreamSchedule:
        windows = tuple(m for m in self.maintenance if m.start <= t < m.end and m.stream in (None, stream))
        if stream not in self._scheduled:
            return StreamSchedule("unscheduled", None, windows)
        mine = [b for b in self.broadcasts if stream in b.streams]
        now = next((b for b in mine if b.watched(t)), None)
        if now is not None:
            return StreamSchedule("on_air" if now.on_air(t) else "preroll", now, windows)
        upcoming = next((b for b in mine if b.start - b.preroll_s > t), None)
        return StreamSchedule("off_air", upcoming, windows)

    def watched(self, stream: str, t: float) -> bool:
        """Is ``stream`` judged at ``t`` (unscheduled, or within a broadcast's pre-roll..end)?"""
        return self.stream_at(stream, t).state != "off_air"

    def must_be_live(self, t: float) -> list[tuple[Broadcast, str]]:
        """(broadcast, stream) pairs on air at ``t``."""
        return [(b, s) for b in self.broadcasts if b.on_air(t) for s in b.streams]

    def maintenance_for(self, stream: str, stage: str, component: str, t: float) -> MaintenanceWindow | None:
        return next((m for m in self.maintenance if m.covers(stream, stage, component, t)), None)

    def by_name(self, name: str) -> Broadcast | None:
        return next((b for b in self.broadcasts if b.name == name), None)

    def current_or_next(self, t: float) -> Broadcast | None:
        on = [b for b in self.broadcasts if b.watched(t)]
        if on:
            return on[0]
        return next((b for b in self.broadcasts if b.start - b.preroll_s > t), None)


def broadcast_json(b: Broadcast) -> dict[str, object]:
    """A broadcast in the API (times RFC 3339 UTC)."""
    def iso(t: float) -> str:  # as every other time of the API (agent.localize.rfc3339)
        return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return {"name": b.name, "streams": list(b.streams), "start": iso(b.start), "end": iso(b.end),
            "preroll_s": b.preroll_s}


LIVE_METRIC = "signalpath_broadcast_live"
_NOT_FLOWING = (FaultClass.SERVER, FaultClass.FRESHNESS)


def is_live(evidence: Iterable[Evidence]) -> bool | None:
    """Is the stream live at its origin, by the origin's evidence (probes/hls.py, probes/media.py)?
    False: the origin answers nothing or nothing new (DOWN evidence of class server or freshness:
    refused, 404, stale, ``EXT-X-ENDLIST``); None: not measured (no origin evidence that is not
    UNKNOWN); True otherwise (degraded is still live)."""
    mine = [e for e in evidence if e.stage == "origin" and e.component == "origin"
            and e.fault is not Fault.NOT_LIVE]
    if any(e.state is State.DOWN and e.fault is not None and CATALOG[e.fault].cls in _NOT_FLOWING for e in mine):
        return False
    if not any(e.state is not State.UNKNOWN for e in mine):
        return None
    return True


def on_air_evidence(schedule: Schedule, stream: str, evidence: list[Evidence], t: float
                    ) -> tuple[list[Evidence], list[Sample]]:
    """For ``stream`` at ``t``: ``not_live`` evidence (origin/origin, DOWN) for each broadcast on
    air whose stream is not live, and ``signalpath_broadcast_live{broadcast,stream}`` (1 live,
    0 not live or not measured) for each broadcast on air. Nothing outside broadcasts."""
    evs: list[Evidence] = []
    samples: list[Sample] = []
    for b, s in schedule.must_be_live(t):
        if s != stream:
            continue
        live = is_live(evidence)
        samples.append(Sample(LIVE_METRIC, {"broadcast": b.name, "stream": stream}, 1.0 if live else 0.0))
        if live is False:
            at = _dt.datetime.fromtimestamp(b.start, _dt.UTC).strftime("%H:%M:%S UTC")
            evs.append(Evidence("origin", "origin", State.DOWN, Fault.NOT_LIVE,
                                f"{stream} is not live at the origin while {b.name!r} is on air "
                                f"(scheduled from {at})"))
    return evs, samples


__all__ = ["LIVE_METRIC", "Broadcast", "broadcast_json", "place_problem", "MaintenanceWindow", "Schedule", "StreamSchedule", "is_live",
           "on_air_evidence"]
