"""Incident tracking: from each cycle's root causes to incidents that never rewrite themselves.

Pure and clock-injected (STYLE.md 5): :class:`Localizer` is fed, once per cycle and per
stream, the latest :class:`probes.base.Evidence` of every probe of that stream and returns
:class:`IncidentEvent` s (``opened``/``updated``/``resolved``) for the store and the alert
sinks. It never performs I/O and never reads a probe. The rules that find root causes
live in :mod:`agent.diagnosis`, the sentences in :mod:`agent.wording`, the fault
vocabulary in :mod:`probes.faults`.

An incident is one cause (DESIGN.md "Localization principle"): its stream, stage,
component and fault are fixed when it opens. Evidence is appended, severity may escalate
(an ``updated`` event records it); a different fault at the same place is a different
incident. A root cause that an open incident upstream can explain (catalog ``explains``,
within that incident's reach) is evidence on it, not an incident of its own — so players
that stall for a few seconds after the origin came back stay on the origin's incident.

Hysteresis: a root cause opens an incident after it was found in ``open_cycles``
consecutive cycles (default 2; ``playback_open_cycles`` (6) for stalls at the players, whose
upstream cause needs a few seconds to show; ``realtime_open_cycles`` (3) for a WebRTC viewer's
freezes, whose upstream probes report every second; ``effect_open_cycles`` for a fault
whose usual cause a slower probe names at the same place, catalog ``awaits``); it resolves when its own
evidence has been gone for ``resolve_after_s`` (default 10 s; ``at_risk_resolve_after_s``,
60 s, for a P3 "at risk" finding, so that a chronic condition dipping below its threshold
for a few segments stays one incident), whatever else happens in the same stage. An incident that comes back within that window is the same incident,
still open: a flapping edge yields one incident, not ten. ``started_at`` is the first bad
evidence of the incident (so time to localize, ``localized_at - started_at``, is measured
from the fault's onset as the probes saw it); ``resolved_at`` is when its evidence first
came back good.

A cycle is the stream's heartbeat (its HLS probe's attempt, every second). The cycle that would
open a finding may also be a fresh measurement of another probe (:meth:`Localizer.confirm`):
one that started after the heartbeat that last counted the finding and renews the finding's own
evidence (the comparison probe reading the MPD still behind, the latency probe a segment still
late) is that finding's next observation, without waiting up to a second for the heartbeat;
nothing else happens then (no finding starts, none resolves).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.diagnosis import Diagnoser, Finding, fault_of, is_bad
from agent.runbooks import Runbooks
from agent.wording import evidence_line, summary
from probes.base import Evidence, State
from probes.core.config import StrictModel
from probes.core.thresholds import STALE_FACTOR
from probes.faults import (
    CATALOG,
    SEVERITY_RANK,
    STAGE_RANK,
    WHOLE_TRANSCODER,
    Fault,
    FaultCatalog,
    FaultClass,
    Severity,
)

EventKind = Literal["opened", "updated", "resolved"]


class FaultOverride(StrictModel):
    """An operator's change to one catalog fault (YAML ``localize.faults.<fault>``)."""

    severity: Severity | None = None
    phrase: str | None = None


class LocalizerSettings(StrictModel):
    """Localizer config (YAML ``localize:``); defaults per DESIGN.md "Localization principle"."""

    open_cycles: int = Field(2, ge=1, le=100, description="cycles a root cause must persist before it opens")
    playback_open_cycles: int = Field(
        6, ge=1, le=100, description="cycles before a playback-stage cause opens: players are the last stage, so "
        "their stalls usually have an upstream cause whose own evidence (latency, media) needs a few seconds")
    realtime_open_cycles: int = Field(
        3, ge=1, le=100, description="cycles before a real-time player's video_freezes opens (WHEP): its picture "
        "stands still within a frame time of an upstream cause, and the probes that name one (the ingest's, WHIP's) "
        "report every second, so one cycle more than open_cycles is their time")
    effect_open_cycles: int = Field(
        10, ge=1, le=100, description="cycles before a fault opens whose usual cause a slower probe measures at "
        "the same place (catalog 'awaits': long segments show in the playlist at once, their GOP in the content "
        "probe seconds later: the segment's fetch and decode, 7 s in one loaded benchmark run; only P3 faults "
        "await, so the wait costs no viewer-facing time)")
    gop_limit_s: float = Field(
        4.0, gt=0, le=600, description="a long segment waits effect_open_cycles for the content probe's GOP "
        "finding only when it lasts longer than this (the media probe's keyframe_max_s default, YouTube Live's "
        "4-s limit: a shorter segment cannot hold a GOP over it)")
    resolve_after_s: float = Field(10.0, ge=0, le=3600, description="seconds a cause must be gone before it resolves")
    leaves_slack_s: float = Field(
        6.0, ge=0, le=600, description="what a cause's end leaves (catalog 'leaves': the overshoot as a still "
        "picture ends) may show this long before the cause's own evidence is gone: the segment in which the cause "
        "ends carries both (one 6-s segment, the common HLS target duration)")
    symptom_window_s: float = Field(
        20.0, ge=0, le=3600, description="how long a viewer symptom is still reported after it happened (the "
        "virtual players report a stall for their stall_window_s, 20 s by default, probes/playback.py): a symptom "
        "an incident explained stays explained this long plus resolve_after_s after the last explanation, unless "
        "it says when its latest occurrence began (a viewer's stall: Evidence.latest_onset), then while that "
        "began within resolve_after_s of the last explanation")
    at_risk_resolve_after_s: float = Field(
        60.0, ge=0, le=3600, description="the same for a P3 ('at risk') incident: a chronic finding measured per "
        "segment (a bitrate overshoot) dips below its threshold now and then (silent audio, an encoder's first "
        "segments after a restart) and must not close and reopen with each dip")
    faults: dict[str, FaultOverride] = Field(
        default_factory=dict, description="severity or phrase overrides of catalog faults (probes/faults.py)")
    runbooks: dict[str, str] = Field(default_factory=dict, description="runbook overrides: '<stage>/<fault>' or '<fault>'")

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, v: dict[str, FaultOverride]) -> dict[str, FaultOverride]:
        unknown = sorted(k for k in v if k not in CATALOG)
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; the catalog is in probes/faults.py")
        return v

    def catalog(self) -> FaultCatalog:
        """The fault catalog with this config's overrides applied."""
        if not self.faults:
            return CATALOG
        specs = []
        for name, spec in CATALOG.items():
            o = self.faults.get(name)
            if o is not None:
                phrase = o.phrase if o.phrase is not None else spec.phrase
                spec = dataclasses.replace(spec, severity=o.severity or spec.severity, phrase=phrase,
                                           stage_phrases={} if o.phrase is not None else spec.stage_phrases)
            specs.append(spec)
        return FaultCatalog(specs)


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds -> RFC 3339 UTC with milliseconds (``2026-11-03T14:03:07.123Z``)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Incident:
    """One root cause (DESIGN.md "HTTP API" incident shape). Times are epoch seconds."""

    id: str
    stream: str
    stage: str
    component: str
    fault: str
    severity: str
    started_at: float
    localized_at: float
    resolved_at: float | None = None
    summary: str = ""
    evidence: list[str] = field(default_factory=list)
    runbook: str = ""
    related: list[str] = field(default_factory=list)
    """Ids of the incidents at the same place open when this one opened, or resolved less than
    2 x ``resolve_after_s`` before: a different fault at one place is its own incident, linked
    (a transcoder's stale playlists, then its long GOP in one rendition). One place: the same
    stage and component, or a stage-wide one (transcoder, cdn) and one of its parts. A fact the
    agent states at a fixed place (catalog ``placed``: ``not_live`` while a broadcast is on
    air) is linked with the open P1/P2 incidents at or above its stage — the candidates for why
    — and such an incident opening while that fact is open is linked with it."""
    maintenance: str = ""
    """The maintenance window (agent/schedule.py) it opened in, by name: recorded, not alerted;
    cleared (an ``updated`` event, reason ``maintenance ended``) if it outlasts the window."""

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    @property
    def time_to_localize_s(self) -> float:
        return max(0.0, self.localized_at - self.started_at)

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity of its cause: (stage, component, fault)."""
        return (self.stage, self.component, str(self.fault))

    def copy(self) -> Incident:
        return dataclasses.replace(self, evidence=list(self.evidence), related=list(self.related))

    def to_api(self) -> dict[str, Any]:
        """The JSON shape of ``GET /api/v1/incidents`` (times RFC 3339 UTC)."""
        return {
            "id": self.id,
            "stream": self.stream,
            "stage": self.stage,
            "component": self.component,
            "fault": self.fault,
            "severity": self.severity,
            "started_at": rfc3339(self.started_at),
            "localized_at": rfc3339(self.localized_at),
            "resolved_at": rfc3339(self.resolved_at),
            "summary": self.summary,
            "evidence": list(self.evidence),
            "runbook": self.runbook,
            "related": list(self.related),
            "maintenance": self.maintenance or None,
        }


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A change the store and the alert sinks follow; ``incident`` is a snapshot copy.

    ``reason``: why it changed when the evidence did not say it (e.g. :data:`REMOVED_FROM_CONFIG`)."""

    kind: EventKind
    incident: Incident
    reason: str = ""


REMOVED_FROM_CONFIG = "removed from config"
MAINTENANCE_ENDED = "maintenance ended"
"""The reason an incident is resolved when its stream or component left the config."""


MAX_EVIDENCE_LINES = 50
"""Evidence lines kept per incident: one per place and fault, the newest detail of each."""


@dataclass(slots=True)
class _Track:
    cycles: int
    last_seen: float
    gone_since: float | None = None
    incident: Incident | None = None
    sources: frozenset[tuple[str, str, str | None, str]] = frozenset()  # evidence keys of the last finding


def _default_id() -> str:
    return uuid.uuid4().hex[:16]


TrackKey = tuple[str, str, str]


class Localizer:
    """Root-cause incidents with hysteresis, for every stream (pure; clock injected).

    ``observe(stream, evidence)`` is called once per cycle per stream with the latest
    evidence of all probes of that stream; it returns the events of that cycle.
    """

    def __init__(
        self,
        settings: LocalizerSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = _default_id,
        runbooks: Runbooks | None = None,
        maintenance: Callable[[str, str, str, float], str] = lambda stream, stage, component, t: "",
    ) -> None:
        self.settings = settings or LocalizerSettings()
        self._maintenance = maintenance  # (stream, stage, component, t) -> the window's name, or ""
        self.catalog = self.settings.catalog()
        self._diag = Diagnoser(self.catalog)
        self._clock = clock
        self._new_id = new_id
        self._runbooks = runbooks or Runbooks(self.settings.runbooks, self.catalog)
        self._tracks: dict[str, dict[TrackKey, _Track]] = {}
        self._bad_since: dict[str, dict[tuple[str, str, str | None, str], float]] = {}
        # stream -> (stage, component, fault) -> since when that fault has been seen there without a
        # break, whatever rendition or detail each cycle's evidence named (an incident's start)
        self._fault_since: dict[str, dict[tuple[str, str, str], float]] = {}
        # viewer symptoms once explained by an incident, with their onset: stay explained while they
        # last (a player's stall window outlasts its cause). Only the players': evidence at the
        # stages of the signal path is re-read every cycle, lest a chronic finding be swallowed
        # stream -> incidents resolved lately, with when: their viewers' symptoms may outlast them
        self._recent: dict[str, list[tuple[Incident, float]]] = {}
        # stream -> evidence key -> (its onset, when an incident last explained it)
        self._explained: dict[str, dict[tuple[str, str, str | None, str], tuple[float, float]]] = {}

    # -- queries --------------------------------------------------------------

    def open_incidents(self, stream: str | None = None) -> list[Incident]:
        out: list[Incident] = []
        for name, tracks in self._tracks.items():
            if stream is not None and name != stream:
                continue
            out.extend(t.incident.copy() for t in tracks.values() if t.incident is not None)
        return sorted(out, key=lambda i: (SEVERITY_RANK[i.severity], i.started_at))

    def resolving(self, stream: str) -> set[str]:
        """Ids of ``stream``'s open incidents whose evidence is gone: resolving, not yet resolved
        (``resolve_after_s``). Their place is measured healthy again in the meantime."""
        return {t.incident.id for t in self._tracks.get(stream, {}).values()
                if t.incident is not None and t.gone_since is not None}

    def restore(self, incidents: Iterable[Incident], now: float | None = None) -> None:
        """Adopt incidents left open by a previous run (from the store).

        They count as seen now: confirmed by the next cycles, or resolved after
        ``resolve_after_s`` if their cause is gone.
        """
        now = self._clock() if now is None else now
        for inc in incidents:
            if not inc.open or inc.fault not in self.catalog:
                continue
            tracks = self._tracks.setdefault(inc.stream, {})
            if inc.key in tracks and tracks[inc.key].incident is not None:
                continue
            tracks[inc.key] = _Track(cycles=self.settings.open_cycles, last_seen=now, gone_since=now,
                                     incident=inc.copy())

    # -- one cycle ------------------------------------------------------------

    def observe(self, stream: str, evidence: Iterable[Evidence], now: float | None = None, *,
                ladder: Sequence[str] | None = None) -> list[IncidentEvent]:
        """One cycle of one stream; ``ladder``: its rendition names when known (see :func:`agent.diagnosis.diagnose`)."""
        now = self._clock() if now is None else now
        evidence = list(evidence)
        findings = self._diag.diagnose(evidence, ladder)
        since = self._update_bad_since(stream, evidence, now)
        tracks = self._tracks.setdefault(stream, {})
        explained = self._explained.setdefault(stream, {})
        if explained:
            self._forget_explained(explained, evidence, since, now)
        events: list[IncidentEvent] = []
        seen: set[TrackKey] = set()
        found = {(f.stage, f.component, str(f.fault)) for f in findings}
        for f in findings:
            key = (f.stage, f.component, str(f.fault))
            t = tracks.get(key)
            if t is None or t.incident is None:
                host = self._continued(tracks, found, f, since)
                if host is not None:
                    # the evidence left over when the cause's own evidence ended, already on it
                    tracks.pop(key, None)
                    key, t = host
                    assert t.incident is not None
                    t.last_seen, t.gone_since = now, None
                    t.sources = frozenset(map(_ev_key, f.all_evidence))
                    seen.add(key)
                    event = self._update(t.incident, f)
                    self._remember(stream, f.all_evidence, since, now)
                    if event is not None:
                        events.append(event)
                    continue
            seen.add(key)
            if t is None:
                t = tracks[key] = _Track(cycles=max(self._widened_from(tracks, found, f),
                                                    self._named_anew_from(tracks, found, f)), last_seen=now)
            t.cycles += 1
            t.last_seen = now
            t.gone_since = None
            t.sources = frozenset(map(_ev_key, f.all_evidence))
            if t.incident is None:
                event = self._maybe_open(stream, f, t, since, now)
            else:
                event = self._update(t.incident, f)
            if t.incident is not None:
                self._remember(stream, f.symptoms, since, now)
            if event is not None:
                events.append(event)
        # a check its probe could not make this cycle (evidence UNKNOWN naming the fault, e.g. the
        # content probe without media while the origin is down): not measured is not healed
        unmeasured = {_ev_key(e) for e in evidence if e.state is State.UNKNOWN and e.fault is not None}
        events += self._resolve_gone(stream, tracks, seen, unmeasured, now)
        return events

    def confirm(self, stream: str, evidence: Iterable[Evidence], renewed: set[tuple[str, str, str | None, str]],
                measured_from: float, now: float | None = None, *, ladder: Sequence[str] | None = None,
                start: bool = False) -> list[IncidentEvent]:
        """A probe's fresh attempt between two heartbeats (module docstring): a finding whose
        evidence key (stage, component, rendition, fault) is in ``renewed`` (that attempt's bad
        evidence: its own, or with ``start`` what it was inferred from too), that opens after the
        plain ``open_cycles`` and was last counted before ``measured_from`` (when that attempt
        began), counts this as its next cycle: it opens when that was its last one short; with
        ``start`` (the heartbeat probe's own asked-for attempt: a playlist at its stale threshold)
        its first cycle may be counted too. A finding that needs more cycles (players, effects)
        waits for the heartbeats; nothing resolves here."""
        tracks = self._tracks.setdefault(stream, {})
        if not renewed or not (start or any(t.incident is None and t.cycles == self.settings.open_cycles - 1
                                            for t in tracks.values())):
            return []
        now = self._clock() if now is None else now
        evidence = list(evidence)
        since = self._update_bad_since(stream, evidence, now)  # (onsets as a heartbeat dates them)
        events: list[IncidentEvent] = []
        for f in self._diag.diagnose(evidence, ladder):
            key = (f.stage, f.component, str(f.fault))
            t = tracks.get(key)
            basis = f.causes if start else f.own
            if (t is not None and (t.incident is not None or t.last_seen >= measured_from)) \
                    or (t is None and not start) or (t is not None and not start
                                                     and t.cycles != self.settings.open_cycles - 1) \
                    or not any(_ev_key(e) in renewed for e in basis) \
                    or self._need(stream, f) != self.settings.open_cycles:
                continue
            if t is None:
                t = tracks[key] = _Track(cycles=0, last_seen=now)
            t.cycles, t.last_seen, t.gone_since = t.cycles + 1, now, None
            t.sources = frozenset(map(_ev_key, f.all_evidence))
            event = self._maybe_open(stream, f, t, since, now)
            if t.incident is not None:
                self._remember(stream, f.symptoms, since, now)
            if event is not None:
                events.append(event)
        return events

    def _named_anew_from(self, tracks: dict[TrackKey, _Track], found: set[TrackKey], f: Finding) -> int:
        """Cycles a finding carries over from a finding at the same place found last cycle and not
        now, whose fault its own explains (catalog ``explains``): one condition named anew as more
        evidence came (a transcoder late by the latency probe's bound, then its playlists stale:
        it stopped), not a new one whose hysteresis starts again. At most ``open_cycles - 1``."""
        fault = str(f.fault)
        return min(self.settings.open_cycles - 1, max(
            (t.cycles for (stage, comp, flt), t in tracks.items()
             if stage == f.stage and comp == f.component and flt != fault and t.incident is None
             and (stage, comp, flt) not in found and self.catalog.explains(fault, flt)), default=0))

    def _widened_from(self, tracks: dict[TrackKey, _Track], found: set[TrackKey], f: Finding) -> int:
        """Cycles a new stage-wide finding (the transcoder, the CDN) carries over from the same
        fault at its parts (a rendition, an edge) found last cycle and not now: one condition
        that widened — the renditions of a transcoder that stops cross the stale rule a poll apart —
        not a new one whose hysteresis starts again (it did, and opened a second later). At most
        ``open_cycles - 1``: the wide finding is seen once itself before it opens."""
        if f.component not in _STAGE_WIDE:
            return 0
        fault = str(f.fault)
        return min(self.settings.open_cycles - 1, max(
            (t.cycles for (stage, comp, flt), t in tracks.items()
             if stage == f.stage and flt == fault and comp not in _STAGE_WIDE and t.incident is None
             and (stage, comp, flt) not in found), default=0))

    def _forget_explained(self, explained: dict[tuple[str, str, str | None, str], tuple[float, float]],
                          evidence: list[Evidence], since: dict[Any, float], now: float) -> None:
        """Drop the viewer symptoms no incident explains any more: those that ended or began anew
        (another onset), and those whose latest occurrence began more than ``resolve_after_s``
        after an incident last explained them (a buffer running dry after its cause is its
        effect; a stall that begins later is not). A stall going on when its cause ended stays
        its effect until it ends, however long the player takes to recover, and the player
        reports it for its stall window after. Evidence that does not say when its latest
        occurrence began stays explained ``resolve_after_s + symptom_window_s`` after the last
        explanation."""
        latest = {_ev_key(e): e.latest_onset for e in evidence if e.latest_onset is not None and is_bad(e)}
        after = self.settings.resolve_after_s
        linger = after + self.settings.symptom_window_s
        for k in [k for k, (onset, at) in explained.items()
                  if since.get(k) != onset or (latest[k] > at + after if k in latest else now - at > linger)]:
            del explained[k]

    def _need(self, stream: str, f: Finding) -> int:
        """Cycles ``f`` must be found in before it opens (module docstring, hysteresis)."""
        need = self.settings.open_cycles
        if f.stage == "playback" and self.catalog[str(f.fault)].cls is FaultClass.PERFORMANCE:
            # stalls and freezes wait for upstream evidence; a player that gets no media at all
            # (no_media, a freshness fault) opens after open_cycles
            need = max(need, self.settings.realtime_open_cycles if f.fault == Fault.VIDEO_FREEZES
                       else self.settings.playback_open_cycles)
        if self.catalog[str(f.fault)].awaits and self._cause_may_follow(f):
            need = max(need, self.settings.effect_open_cycles)  # its usual cause shows seconds later
        if self._left_by_present(stream, f):
            # what the end of a cause still there would leave (the overshoot of the segment in which a
            # still picture ends): a few cycles to see whether that cause ends with it
            need = max(need, self.settings.effect_open_cycles)
        return need

    def _cause_may_follow(self, f: Finding) -> bool:
        """Whether the slower probe could still name ``f``'s usual cause (catalog ``awaits``). Long
        segments no longer than ``gop_limit_s`` cannot hold a GOP over it: the content probe will
        not name a long GOP from them (the segment cut as a GOP grows, 2.96 s at a 2-s target
        duration, came 5 s before the first GOP reading in the benchmark), so they open after
        ``open_cycles`` — and a long GOP found later is its own incident, linked. Evidence of the
        fault without the figure (another source), or none with it: it waits as the catalog says."""
        lengths = [e.figures.get("segment_duration_s") for e in f.all_evidence if fault_of(e) == f.fault]
        return not lengths or any(x is None or x > self.settings.gop_limit_s for x in lengths)

    def _maybe_open(self, stream: str, f: Finding, t: _Track, since: dict[Any, float], now: float
                    ) -> IncidentEvent | None:
        """Open ``f`` once it persisted long enough, unless an open incident explains it."""
        # the onset is that of the evidence nearest the cause (its own stage, else the most upstream
        # one): a downstream symptom left over from an earlier fault (a player still reporting the
        # stall of a stale edge) does not date a new cause before it began
        top = min((STAGE_RANK[e.stage] for e in f.all_evidence), default=0)
        # dated by its fault at its place (fault_since): the first cycle may name each rendition, the
        # next the whole edge — one condition, begun at the first
        fault_since = self._fault_since.get(stream, {})
        started = min((min(since.get(_ev_key(e), now), fault_since.get((e.stage, e.component, str(fault_of(e))), now))
                       for e in f.all_evidence if STAGE_RANK[e.stage] == top), default=now)
        explained = self._explained.get(stream, {})
        keys = [_ev_key(e) for e in f.all_evidence]
        if all(k in explained and explained[k][0] == since.get(k) for k in keys):
            return None  # the same symptoms an earlier cause explained, still lasting: not a new cause
        if self._explained_by_recent(stream, f, started, now):
            # the viewers of a cause that just resolved, still reporting its stall; the artefacts
            # of its end (an encoder's restart) that took longer than its resolution to show
            self._remember(stream, f.all_evidence, since, now)
            return None
        host = self._explaining_incident(stream, f, started)
        if host is not None:
            # a lingering symptom of an upstream cause that just went away: evidence on that incident
            assert host.incident is not None
            host.incident.evidence = _merge(host.incident.evidence, [evidence_line(e) for e in f.all_evidence])
            self._remember(stream, f.all_evidence, since, now)
            return None
        if _part_gap_only(f):
            return None
        if t.cycles < self._need(stream, f):
            return None
        fault = str(f.fault)
        t.incident = Incident(
            id=f"{stream}-{self._new_id()}", stream=stream, stage=f.stage, component=f.component, fault=fault,
            severity=self._diag.severity_of(f), started_at=min(started, now), localized_at=now,
            summary=summary(f, self.catalog), evidence=sorted({evidence_line(e) for e in f.all_evidence}),
            runbook=self._runbooks.hint(stream=stream, stage=f.stage, component=f.component, fault=fault),
            related=self._related(stream, f, now), maintenance=self._maintenance(stream, f.stage, f.component, now))
        return IncidentEvent("opened", t.incident.copy())

    def _left_by_present(self, stream: str, f: Finding) -> bool:
        """An open incident whose cause is still there, reaching ``f``, whose end leaves ``f``'s fault."""
        return any(t.incident is not None and t.gone_since is None
                   and STAGE_RANK[t.incident.stage] <= STAGE_RANK[f.stage] and _reaches(t.incident, f)
                   and self.catalog.leaves(t.incident.fault, str(f.fault))
                   for t in self._tracks.get(stream, {}).values())

    def _related(self, stream: str, f: Finding, now: float) -> list[str]:
        """Incidents at ``f``'s place, open or resolved within 2 x ``resolve_after_s`` (see :attr:`Incident.related`)."""
        linger = 2 * self.settings.resolve_after_s
        ids = [t.incident.id for t in self._tracks.get(stream, {}).values()
               if t.incident is not None and _same_place(t.incident, f)]
        ids += [inc.id for inc, at in self._recent.get(stream, []) if now - at <= linger and _same_place(inc, f)]
        opened = [t.incident for t in self._tracks.get(stream, {}).values() if t.incident is not None]
        if self.catalog[str(f.fault)].placed:
            ids += [i.id for i in opened if i.severity != "P3" and STAGE_RANK[i.stage] <= STAGE_RANK[f.stage]]
        elif self._diag.severity_of(f) != "P3":
            ids += [i.id for i in opened if self.catalog[i.fault].placed and STAGE_RANK[f.stage] <= STAGE_RANK[i.stage]]
        return sorted(set(ids))

    def _update(self, inc: Incident, f: Finding) -> IncidentEvent | None:
        """Append this cycle's evidence; a severity escalation is an ``updated`` event.

        Fault, place and summary stay as they were when the incident opened."""
        inc.evidence = _merge(inc.evidence, [evidence_line(e) for e in f.all_evidence])
        severity = self._diag.severity_of(f)
        if SEVERITY_RANK[severity] < SEVERITY_RANK[inc.severity]:
            inc.severity = severity
            return IncidentEvent("updated", inc.copy())
        return None

    def _continued(self, tracks: dict[TrackKey, _Track], found: set[TrackKey], f: Finding,
                   since: dict[Any, float]) -> tuple[TrackKey, _Track] | None:
        """The open incident ``f`` continues: one whose own finding is gone this cycle, that had
        every piece of ``f``'s own evidence on it at its last sighting (bad since, or back within
        its resolve time) — or, at its very place, whose fault explains ``f``'s, begun after it —
        at ``f``'s stage (the same component, or a stage-wide one reaching it: the transcoder and
        a rendition), and whose fault is ``f``'s, or explains it and
        began before that evidence (an effect, not a condition that was there beside it).

        An edge that jumps back to an older playlist (sequence_regression) stays behind live
        (latency_high) after the jump has aged out; a transcoder's long GOP is still in the
        lowest rendition's analysed segment after its long segments ended. Both are the same
        cause's evidence, already placed on its incident: the incident goes on (its fault and
        place unchanged) until that evidence is gone too, instead of a second incident opening
        for what is left of the first."""
        own = {_ev_key(e) for e in f.causes}
        if not own:
            return None
        for key, t in tracks.items():
            inc = t.incident
            if inc is None or key in found:
                continue
            if not own <= t.sources and not (
                    # or, at its very place, an effect of its fault begun after it (a transcoder that
                    # fell behind: its playlists late, then its late segments' latency once they came)
                    (inc.stage, inc.component) == (f.stage, f.component) and inc.fault != str(f.fault)
                    and self.catalog.explains(inc.fault, str(f.fault))
                    and all(since.get(k, t.last_seen) > inc.started_at for k in own)):
                continue
            if inc.stage != f.stage or ((inc.component != f.component) and not _reaches(inc, f)):
                # its own stage only: symptoms downstream (a viewer's stall window) outlast a cause
                # as lingering symptoms (_explaining_incident, _explained), never by keeping it open
                continue
            # evidence gone for a cycle or two and back while the incident is still open (within its
            # resolve time) is a flap: the same incident (module docstring); once it resolved, what
            # comes back is a new episode (the incident is no longer open, so never continued here)
            onsets = [since.get(k, t.last_seen) for k in own]
            if inc.fault != str(f.fault) and not (self.catalog.explains(inc.fault, str(f.fault))
                                                  and all(o > inc.started_at for o in onsets)) \
                    and not all(k[3] == inc.fault for k in own):
                # (its own evidence all of the incident's fault: the same cause, named anew as symptoms
                # joined it — a late transcoder whose playlists then go stale, agent/diagnosis.py naming)
                continue  # another fault, there when the cause began or not its effect: a condition of its own
            return key, t
        return None

    def _explaining_incident(self, stream: str, f: Finding, onset: float) -> _Track | None:
        """An open incident whose cause just went away and that explains ``f``: a lingering symptom.

        While a cause's evidence is present, :mod:`agent.diagnosis` decides what it explains.
        Once it is gone (resolution pending), symptoms that began while it was active and that
        it can cause (catalog ``explains``, within its reach, upstream of them) stay its
        evidence — players stall for a few seconds after the origin came back: their buffers
        run dry after the cause, so a symptom that begins up to ``resolve_after_s`` after the
        cause ended is still its effect; one that began before the cause is not. A symptom
        once placed on an incident stays explained while it lasts (same onset), even after
        that incident resolved."""
        for t in self._tracks.get(stream, {}).values():
            if t.incident is not None and t.gone_since is not None \
                    and self._caused_by(t.incident, f, onset, t.gone_since):
                return t
        return None

    def _explained_by_recent(self, stream: str, f: Finding, onset: float, now: float) -> bool:
        """Symptoms of a cause resolved within the last 2 x ``resolve_after_s``: a player reports
        a stall for its stall window (20 s, probes/playback.py) after it, longer than the
        cause's own resolution takes; a restarted encoder's first segments reach the content
        probe after a pipeline's delay. Same rules as a lingering symptom: it began while the
        cause was active or up to ``resolve_after_s`` after, within its reach, and the catalog
        says the cause can produce it."""
        linger = 2 * self.settings.resolve_after_s
        recent = [(inc, at) for inc, at in self._recent.get(stream, []) if now - at <= linger]
        self._recent[stream] = recent
        return any(self._caused_by(inc, f, onset, inc.resolved_at if inc.resolved_at is not None else now)
                   for inc, _ in recent)

    def _caused_by(self, inc: Incident, f: Finding, onset: float, ended: float) -> bool:
        """Is ``f`` an effect of ``inc``'s cause, which ended at ``ended``? At or below its stage, within
        its reach, begun while the cause was active (below its stage) or up to ``resolve_after_s``
        after it (not before it), and every piece of ``f``'s evidence a symptom the catalog says the cause can
        produce (never another server's own failure)."""
        if STAGE_RANK[inc.stage] > STAGE_RANK[f.stage] or not _reaches(inc, f):
            return False  # a cause explains its own stage and those below it, within its reach
        # at its own stage only what its end left behind (an encoder's restart artefacts, the
        # timestamp jump as a desync ends): a condition that began beside it and lasts is its own
        earliest = ended if STAGE_RANK[inc.stage] == STAGE_RANK[f.stage] else inc.started_at
        if onset > ended + self.settings.resolve_after_s:
            return False  # began after the cause had long ended: not its effect
        during = earliest <= onset  # not before the cause (at its own stage: not before its end)
        # begun as it ended: in the segment where its evidence ends (leaves_slack_s), or after
        as_it_ended = onset >= max(inc.started_at, ended - self.settings.leaves_slack_s)
        # what it can cause, or what its end leaves behind (catalog ``leaves``)
        return all(((during and self.catalog.explains(inc.fault, fault_of(e)))
                    or (as_it_ended and self.catalog.leaves(inc.fault, fault_of(e))))
                   and not (self.catalog[fault_of(e)].own and e.stage != inc.stage) for e in f.all_evidence)

    def _remember(self, stream: str, evidence: list[Evidence], since: dict[Any, float], now: float) -> None:
        """Viewer symptoms placed on an incident, with their onset (see ``_explained``)."""
        explained = self._explained.setdefault(stream, {})
        explained.update((k, (since[k], now)) for k in map(_ev_key, evidence) if k in since and k[0] == "playback")

    def _resolve_gone(self, stream: str, tracks: dict[TrackKey, _Track], seen: set[TrackKey],
                      unmeasured: set[tuple[str, str, str | None, str]], now: float) -> list[IncidentEvent]:
        """Resolve incidents whose evidence has been gone ``resolve_after_s``; one whose every
        source is unmeasured this cycle stays open as it was (its resolve clock restarts)."""
        events = []
        for key in list(tracks):
            if key in seen:
                continue
            t = tracks[key]
            if t.incident is None:
                del tracks[key]  # a candidate must persist for consecutive cycles
                continue
            if t.sources and t.sources <= unmeasured:
                t.gone_since = None
                continue
            if t.gone_since is None:
                t.gone_since = now
            t.cycles = 0
            after = (self.settings.at_risk_resolve_after_s if t.incident.severity == "P3"
                     else self.settings.resolve_after_s)
            if now - t.gone_since >= after:
                t.incident.resolved_at = t.gone_since
                events.append(IncidentEvent("resolved", t.incident.copy()))
                self._recent.setdefault(stream, []).append((t.incident.copy(), now))
                del tracks[key]
        return events

    def maintenance_over(self, stream: str, now: float | None = None) -> list[IncidentEvent]:
        """Open incidents of ``stream`` opened in a maintenance window that is over (the
        ``maintenance`` callable no longer names one for their place): unmarked, as ``updated``
        events with reason ``maintenance ended`` (they are alerted now)."""
        now = self._clock() if now is None else now
        events = []
        for t in self._tracks.get(stream, {}).values():
            inc = t.incident
            if inc is not None and inc.maintenance and not self._maintenance(stream, inc.stage, inc.component, now):
                inc.maintenance = ""
                events.append(IncidentEvent("updated", inc.copy(), MAINTENANCE_ENDED))
        return events

    def forget(self, stream: str, reason: str = REMOVED_FROM_CONFIG) -> list[IncidentEvent]:
        """A stream left the config: resolve its open incidents now, with ``reason``."""
        now = self._clock()
        events = []
        for t in self._tracks.pop(stream, {}).values():
            if t.incident is not None:
                t.incident.resolved_at = now
                events.append(IncidentEvent("resolved", t.incident.copy(), reason))
        self._bad_since.pop(stream, None)
        self._fault_since.pop(stream, None)
        self._explained.pop(stream, None)
        self._recent.pop(stream, None)
        return events

    def forget_incident(self, incident_id: str, reason: str = REMOVED_FROM_CONFIG) -> IncidentEvent | None:
        """An open incident whose place left the config (an edge, a probe): resolved now, with ``reason``."""
        for tracks in self._tracks.values():
            for key, t in list(tracks.items()):
                if t.incident is not None and t.incident.id == incident_id:
                    t.incident.resolved_at = self._clock()
                    del tracks[key]
                    return IncidentEvent("resolved", t.incident.copy(), reason)
        return None

    def _update_bad_since(self, stream: str, evidence: list[Evidence], now: float
                          ) -> dict[tuple[str, str, str | None, str], float]:
        prev = self._bad_since.get(stream, {})
        prev_fault = self._fault_since.get(stream, {})
        cur: dict[tuple[str, str, str | None, str], float] = {}
        cur_fault: dict[tuple[str, str, str], float] = {}
        for e in evidence:
            if is_bad(e):
                k = _ev_key(e)
                # the probe's own onset when it knows one (a stall episode's first stall): a blip in
                # the evidence (an attempt that timed out) does not date the condition anew
                known = e.onset if e.onset is not None and e.onset <= now else now
                cur[k] = min(prev.get(k, now), cur.get(k, now), known)
                pk = (e.stage, e.component, k[3])
                cur_fault[pk] = min(prev_fault.get(pk, now), cur_fault.get(pk, now), cur[k])
        self._bad_since[stream] = cur
        self._fault_since[stream] = cur_fault
        return cur


_STAGE_WIDE = WHOLE_TRANSCODER | {"origin", "cdn", "ingest", "studio"}


def _same_place(inc: Incident, f: Finding) -> bool:
    """One place for :attr:`Incident.related`: the same stage and component, or a stage-wide
    component (the transcoder, the CDN) and one of its parts (a rendition, an edge)."""
    return inc.stage == f.stage and (inc.component == f.component
                                     or inc.component in _STAGE_WIDE or f.component in _STAGE_WIDE)


def _reaches(inc: Incident, f: Finding) -> bool:
    """Is ``f`` within the reach of ``inc``'s place (an edge reaches itself and its own players
    only, a rendition's transcode that rendition only, a stage-wide cause everything below it)?"""
    if inc.stage == "cdn" and inc.component != "cdn":
        return f.stage in ("cdn", "playback") and f.component == inc.component
    if inc.stage == "transcode" and inc.component not in WHOLE_TRANSCODER:
        return all(e.rendition == inc.component for e in f.all_evidence)
    return True


def _merge(lines: list[str], new: list[str]) -> list[str]:
    """Evidence appended: the newest line of each (place, fault), earlier ones kept; bounded."""
    by_key = {_line_key(x): x for x in lines}
    by_key.update((_line_key(x), x) for x in new)
    return [by_key[k] for k in sorted(by_key)][:MAX_EVIDENCE_LINES]


def _line_key(line: str) -> str:
    """``stage/component [rendition]: fault`` of an evidence line (agent.wording.evidence_line)."""
    where, _, rest = line.partition(": ")
    return where + ": " + rest.partition(":")[0]


def _ev_key(e: Evidence) -> tuple[str, str, str | None, str]:
    return (e.stage, e.component, e.rendition, str(fault_of(e)))


__all__ = ["REMOVED_FROM_CONFIG", "EventKind", "FaultOverride", "Incident", "IncidentEvent", "Localizer",
           "LocalizerSettings", "rfc3339", "Fault"]


def _part_gap_only(f: Finding) -> bool:
    """An inferred transcoder stall seen only as LL-HLS parts late at every rendition, for less
    than classic HLS's stale rule (STALE_FACTOR x the target duration, RFC 8216 §6.3.4): a pause
    upstream (an ingest that hands on 2 s late from one moment) stops the parts just as long, and
    the ingest's own probes measure it seconds later; the transcoder is named once the gap is as
    long as a classic playlist's stale rule, or at once when an upstream cause is found instead."""
    if (f.stage, f.component) != ("transcode", "transcoder") or f.own or not f.causes:
        return False
    return all(e.figures.get("part_stale") and e.figures.get("age_s", 0.0)
               < STALE_FACTOR * e.figures.get("target_duration_s", float("inf")) for e in f.causes)
