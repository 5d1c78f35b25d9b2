"""The status board: per stream, per stage/component, the current state and since when.

Fed with the evidence of each probe target's latest result; read by
``GET /api/v1/status`` and the status page. It keeps no history (incidents do).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.figure_words import figure_lines
from probes.base import STAGES, Evidence, State, worst

_STAGE_ORDER = {s: i for i, s in enumerate(STAGES)}


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Cell:
    stage: str
    component: str
    state: State = State.UNKNOWN
    since: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


class StatusBoard:
    """Cells keyed by (stream, stage, component); sources (probe targets) feed evidence."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._streams: dict[str, dict[tuple[str, str], Cell]] = {}
        self._by_source: dict[str, dict[str, list[Evidence]]] = {}  # stream -> source -> evidence
        self._figures: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}  # cell -> source -> figures
        # streams updated since their cells were last computed, with the wall time of the first such
        # update: cells are computed when read, once per probe cycle instead of once per target
        self._dirty: dict[str, float] = {}

    def declare(self, stream: str, stage: str, component: str) -> None:
        cells = self._streams.setdefault(stream, {})
        cells.setdefault((stage, component), Cell(stage, component))

    def update(self, stream: str, source: str, evidence: list[Evidence],
               figures: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self._by_source.setdefault(stream, {})[source] = evidence
        for (stage, comp), figs in (figures or {}).items():
            # per source: two probes of one cell (HLS and media at the origin) never clobber each other
            self._figures.setdefault((stream, stage, comp), {})[source] = figs
        self._dirty.setdefault(stream, self._wall())

    def forget(self, stream: str, *, sources: Iterable[str] = (), cells: Iterable[tuple[str, str]] = (),
               everything: bool = False) -> None:
        """What left the config (a reload): the whole stream (``everything``), or these sources
        (probe targets) and cells, also as other sources spoke of them."""
        if everything:
            self._dirty.pop(stream, None)
            self._streams.pop(stream, None)
            self._by_source.pop(stream, None)
            for key in [k for k in self._figures if k[0] == stream]:
                del self._figures[key]
            return
        gone_sources, gone_cells = set(sources), set(cells)
        by_source = self._by_source.get(stream, {})
        for src in gone_sources:
            by_source.pop(src, None)
        for src, evs in by_source.items():
            by_source[src] = [e for e in evs if (e.stage, e.component) not in gone_cells]
        for stage, comp in gone_cells:
            self._streams.get(stream, {}).pop((stage, comp), None)
            self._figures.pop((stream, stage, comp), None)
        for (name, _stage, _comp), figs in self._figures.items():
            if name == stream:
                for src in gone_sources:
                    figs.pop(src, None)
        self._dirty.setdefault(stream, self._wall())

    def _settle(self, stream: str) -> None:
        since = self._dirty.pop(stream, None)
        if since is not None:
            self._recompute(stream, since)

    def _recompute(self, stream: str, now: float) -> None:
        cells = self._streams.setdefault(stream, {})
        grouped: dict[tuple[str, str], list[Evidence]] = {}
        for evs in self._by_source.get(stream, {}).values():
            for e in evs:
                grouped.setdefault((e.stage, e.component), []).append(e)
        for key, evs in grouped.items():
            cell = cells.setdefault(key, Cell(*key))
            state = worst(e.state for e in evs)
            if state != cell.state:
                cell.state, cell.since = state, now
            cell.reasons = [e.detail for e in evs if e.state not in (State.OK, State.UNKNOWN) and e.detail]
            if state is State.UNKNOWN:  # never "unknown" without the reason the probe gave
                cell.reasons = [e.detail for e in evs if e.detail]
            figs: dict[str, Any] = {}
            for e in evs:
                figs.update(e.figures)
            for src_figs in self._figures.get((stream, *key), {}).values():
                figs.update(src_figs)
            cell.figures = figs
        for key, cell in cells.items():
            if key not in grouped and cell.state is not State.UNKNOWN:
                # only an incident ever spoke of this cell (e.g. transcode/180p) and it has resolved
                cell.state, cell.since, cell.reasons = State.OK, now, []

    def cells(self, stream: str) -> list[Cell]:
        self._settle(stream)
        cells = self._streams.get(stream, {})
        return sorted(cells.values(), key=lambda c: (_STAGE_ORDER.get(c.stage, 99), c.component))

    def state_of(self, stream: str, stage: str, component: str) -> State:
        self._settle(stream)
        cell = self._streams.get(stream, {}).get((stage, component))
        return cell.state if cell else State.UNKNOWN

    def evidence(self, stream: str, exclude: tuple[str, ...] = ()) -> list[Evidence]:
        return [e for src, evs in self._by_source.get(stream, {}).items() if src not in exclude for e in evs]

    def streams(self) -> list[str]:
        for stream in list(self._dirty):
            self._settle(stream)
        return list(self._streams)

    def as_json(self) -> dict[str, Any]:
        return {"streams": [
            {"name": name, "stages": [
                {"stage": c.stage, "component": c.component, "state": str(c.state), "since": rfc3339(c.since),
                 "figures": c.figures, "lines": figure_lines(c.figures), "reasons": c.reasons}
                for c in self.cells(name)]}
            for name in self.streams()]}
