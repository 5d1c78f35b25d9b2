"""The post-broadcast report: what broke, where, for how long, how fast it was found, what
viewers felt and what they complained about (pure: data in, figures out).

:class:`ReportInput` gathers one window's history (agent/history.py, or the same figures
read from a Prometheus, agent/report_prom.py), incidents, complaints and virtual viewers;
:func:`analyse` turns it into :class:`Report` — every figure the HTML (agent/report_html.py)
draws and ``--json`` prints. Definitions:

- Availability of a cell (stage/component) = ok seconds / measured seconds (ok, degraded,
  down; unknown — not measured — counts neither way). A stream is available in a step
  for the step less the most degraded-or-down seconds of any of its cells (a lower bound of
  their union: cells of one step are not aligned within it). Against ``objective`` (default
  99.9 %, the SLO of dashboards/rules/alerts.yml, shared/THRESHOLDS.md "Alerting practice").
- Time to localize = ``localized_at - started_at`` (the fault's first bad evidence to the
  incident, DESIGN.md); time to resolve = ``resolved_at - started_at``; target five minutes
  (``target_s``, the mission's).
- Viewer funnel over the virtual viewers that started in the window: attempts → started
  (first frame) → started within ``startup_target_s`` (2 s: the green median start time of
  Wowza Video's QoE benchmarks) → played without a stall → rebuffer ratio under
  ``rebuffer_target`` (1 %: Wowza's green 36 s of rebuffering per hour played).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from agent.complaints import LABELS, Complaint
from agent.history import STATES, HistoryStep, ViewerSession, split_key
from agent.localize import Incident, rfc3339
from agent.selfwatch import AGENT_STREAM
from probes.base import STAGES, State
from probes.core.config import StrictModel

OBJECTIVE = 0.999
TARGET_S = 300.0
STARTUP_TARGET_S = 2.0
REBUFFER_TARGET = 0.01
_STAGE_ORDER = {s: i for i, s in enumerate(STAGES)}
_BAD = (STATES.index(State.DEGRADED), STATES.index(State.DOWN))
_OK = STATES.index(State.OK)


class ReportSettings(StrictModel):
    """YAML ``report:`` (``signalpath report`` and the status page's ``/report``)."""

    prometheus: str | None = Field(None, description="read the figures from this Prometheus (query_range) "
                                   "instead of the agent's own history; incidents, complaints and viewers still "
                                   "come from the incident database")
    objective: float = Field(OBJECTIVE, gt=0, lt=1, description="availability objective (the alert rules' SLO)")
    target_s: float = Field(TARGET_S, gt=0, description="time-to-localize and -resolve target, seconds")
    startup_target_s: float = Field(STARTUP_TARGET_S, gt=0, description="a viewer's startup target, seconds")
    rebuffer_target: float = Field(REBUFFER_TARGET, gt=0, lt=1, description="rebuffer ratio target")
    timeout_s: float = Field(30.0, gt=0, le=600, description="deadline of each Prometheus query")

    @field_validator("prometheus")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("prometheus is the base URL of a Prometheus, e.g. http://127.0.0.1:9090")
        return v


@dataclass(slots=True)
class ReportInput:
    """One window of one or more streams (times epoch seconds)."""

    title: str
    start: float
    end: float
    streams: list[str]
    steps: list[HistoryStep]
    incidents: list[Incident]
    complaints: list[Complaint]
    sessions: list[ViewerSession]
    source: str = "the agent's history"
    objective: float = OBJECTIVE
    target_s: float = TARGET_S
    startup_target_s: float = STARTUP_TARGET_S
    rebuffer_target: float = REBUFFER_TARGET


@dataclass(slots=True)
class Availability:
    stream: str
    place: str  # "stream" (the whole path), a stage ("cdn": every component of it), or "stage/component"
    ratio: float | None  # None: never measured
    measured_s: float
    bad_s: float
    meets: bool | None


@dataclass(slots=True)
class IncidentRow:
    id: str
    stream: str
    stage: str
    component: str
    fault: str
    severity: str
    started_at: float
    localized_s: float
    resolved_s: float | None  # None: still open at the end of the window
    summary: str

    @property
    def place(self) -> str:
        return f"{self.stage}/{self.component}"


@dataclass(slots=True)
class Funnel:
    attempts: int = 0
    started: int = 0
    started_in_time: int = 0
    no_stall: int = 0
    rebuffer_ok: int = 0

    def steps(self, startup_target_s: float, rebuffer_target: float) -> list[tuple[str, int]]:
        return [("attempts", self.attempts), ("started", self.started),
                (f"started within {startup_target_s:g} s", self.started_in_time),
                ("played without a stall", self.no_stall),
                (f"rebuffer ratio under {rebuffer_target:.0%}", self.rebuffer_ok)]


@dataclass(slots=True)
class Lane:
    """One stage/component of one stream over the window: per step the state it was in longest
    (``states``) and, where a shorter spell was degraded or down for a second or more, that worst
    state (``blips``, else ""): a 4-s outage in a 10-s step is shown, not painted over 10 s."""

    stream: str
    stage: str
    component: str
    times: list[float] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    blips: list[str] = field(default_factory=list)
    bad_s: float = 0.0


@dataclass(slots=True)
class Report:
    input: ReportInput
    summary: str
    lanes: list[Lane]
    availability: list[Availability]
    incidents: list[IncidentRow]
    faults: list[tuple[str, int]]  # Pareto order
    complaints: list[tuple[str, int, int]]  # (type label, explained, unexplained), most first
    funnel: Funnel
    series: dict[str, dict[str, list[tuple[float, float, float]]]]  # figure -> "stream stage/component" -> (t, mean, max)

    def to_json(self) -> dict[str, Any]:
        i = self.input
        return {
            "title": i.title, "from": rfc3339(i.start), "to": rfc3339(i.end), "streams": i.streams,
            "source": i.source, "objective": i.objective, "target_s": i.target_s, "summary": self.summary,
            "availability": [asdict(a) for a in self.availability],
            "incidents": [{**asdict(r), "started_at": rfc3339(r.started_at)} for r in self.incidents],
            "degraded_s": {f"{ln.stream} {ln.stage}/{ln.component}": round(ln.bad_s, 1) for ln in self.lanes},
            "faults": dict(self.faults),
            "complaints": [{"type": t, "explained": e, "unexplained": u} for t, e, u in self.complaints],
            "funnel": dict(self.funnel.steps(i.startup_target_s, i.rebuffer_target)),
        }


def step_states(seconds: list[float]) -> tuple[State, State | None]:
    """A step's ``[ok, degraded, down, unknown]`` seconds: the measured state it was in longest
    (the worse on a tie; unknown when nothing was measured) and the worst other state that lasted
    a second or more, if any."""
    measured = [(seconds[STATES.index(st)], -i, st) for i, st in enumerate((State.DOWN, State.DEGRADED, State.OK))]
    longest = max(measured)
    main = longest[2] if longest[0] > 0 else State.UNKNOWN
    for st in (State.DOWN, State.DEGRADED):
        if st is not main and seconds[STATES.index(st)] >= 1.0 and (main is State.OK or st is State.DOWN):
            return main, st
    return main, None


def analyse(inp: ReportInput) -> Report:
    lanes: dict[tuple[str, str, str], Lane] = {}
    cell_s: dict[tuple[str, str], list[float]] = {}  # (stream, place) -> [measured_s, bad_s]
    series: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for st in sorted(inp.steps, key=lambda s: s.t):
        if not inp.start <= st.t < inp.end or st.stream not in inp.streams:
            continue
        worst_bad, measured = 0.0, 0.0
        per_stage: dict[str, list[float]] = {}  # stage -> [measured, bad] of its worst component this step
        for key, v in st.series.items():
            name, stage, comp, rendition = split_key(key)
            if name == "state":
                lane = lanes.get((st.stream, stage, comp))
                if lane is None:
                    lane = lanes[(st.stream, stage, comp)] = Lane(st.stream, stage, comp)
                lane.times.append(st.t)
                main, blip = step_states(v)
                lane.states.append(str(main))
                lane.blips.append("" if blip is None else str(blip))
                bad = v[_BAD[0]] + v[_BAD[1]]
                lane.bad_s += bad
                m = v[_OK] + bad
                acc = cell_s.setdefault((st.stream, f"{stage}/{comp}"), [0.0, 0.0])
                acc[0] += m
                acc[1] += bad
                worst_bad, measured = max(worst_bad, bad), max(measured, m)
                sv = per_stage.setdefault(stage, [0.0, 0.0])
                sv[0], sv[1] = max(sv[0], m), max(sv[1], bad)
            else:
                label = f"{st.stream} {stage}/{comp}" + (f" {rendition}" if rendition else "")
                # (t, mean, max); a counter's sum is both
                series.setdefault(name, {}).setdefault(label, []).append(
                    (st.t, v[1], v[2]) if len(v) == 3 else (st.t, v[0], v[0]))
        if measured:
            acc = cell_s.setdefault((st.stream, "stream"), [0.0, 0.0])
            acc[0] += measured
            acc[1] += worst_bad
        for stage, (m, bad) in per_stage.items():  # the alert rules' SLI: every component of the stage ok
            acc = cell_s.setdefault((st.stream, stage), [0.0, 0.0])
            acc[0] += m
            acc[1] += bad
    availability = []
    for (stream, place), (m, bad) in sorted(cell_s.items(), key=lambda kv: (kv[0][0], _avail_order(kv[0][1]))):
        ratio = None if m <= 0 else max(0.0, (m - bad) / m)
        availability.append(Availability(stream, place, ratio, round(m, 1), round(bad, 1),
                                         None if ratio is None else ratio >= inp.objective))
    rows = incident_rows(inp.incidents, inp.start, inp.end, inp.streams)
    for x in rows:  # a place only an incident speaks of (transcode/180p): a lane for its bar
        lanes.setdefault((x.stream, x.stage, x.component), Lane(x.stream, x.stage, x.component))
    faults = Counter(r.fault for r in rows).most_common()
    by_type: dict[str, list[int]] = {}
    for c in inp.complaints:
        if inp.start <= c.at < inp.end and c.stream in inp.streams:
            counts = by_type.setdefault(LABELS[c.type], [0, 0])
            counts[0 if c.explained_by else 1] += 1
    complaints = sorted(((t, e, u) for t, (e, u) in by_type.items()), key=lambda x: -(x[1] + x[2]))
    funnel = viewer_funnel(inp.sessions, inp)
    ordered = sorted(lanes.values(), key=lambda ln: (inp.streams.index(ln.stream) if ln.stream in inp.streams else 0,
                                                     _STAGE_ORDER.get(ln.stage, 99), ln.component))
    report = Report(inp, "", ordered, availability, rows, faults, complaints, funnel, series)
    report.summary = summarise(report)
    return report


def _avail_order(place: str) -> tuple[int, int, str]:
    """The whole path first, then the stages in path order, then the components."""
    if place == "stream":
        return 0, 0, ""
    stage, _, comp = place.partition("/")
    return (2 if comp else 1), _STAGE_ORDER.get(stage, 99), comp


def incident_rows(incidents: Iterable[Incident], start: float, end: float, streams: list[str]) -> list[IncidentRow]:
    """Incidents of ``streams`` that overlap ``[start, end)``, oldest first; one still open counts
    to ``end``. The agent's own (stream ``*``: it was behind, agent/selfwatch.py) are in every
    report: what it did not measure in that time is part of the broadcast's story."""
    out = []
    for inc in incidents:
        if (inc.stream not in streams and inc.stream != AGENT_STREAM) or inc.started_at >= end:
            continue
        if inc.resolved_at is not None and inc.resolved_at < start:
            continue
        out.append(IncidentRow(
            inc.id, inc.stream, inc.stage, inc.component, inc.fault, inc.severity, inc.started_at,
            max(0.0, inc.localized_at - inc.started_at),
            None if inc.resolved_at is None else max(0.0, inc.resolved_at - inc.started_at), inc.summary))
    return sorted(out, key=lambda r: r.started_at)


def viewer_funnel(sessions: Iterable[ViewerSession], inp: ReportInput) -> Funnel:
    f = Funnel()
    for s in sessions:
        if not inp.start <= s.started_at < inp.end or s.stream not in inp.streams:
            continue
        f.attempts += 1
        if s.startup_s is None:
            continue
        f.started += 1
        if s.startup_s <= inp.startup_target_s:
            f.started_in_time += 1
        if s.stalls == 0:
            f.no_stall += 1
        if s.rebuffer_ratio <= inp.rebuffer_target:
            f.rebuffer_ok += 1
    return f


def duration_words(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def summarise(r: Report) -> str:
    """A few plain sentences: incidents, the longest degraded places, availability, time to
    localize, complaints, viewers."""
    inp = r.input
    parts: list[str] = []
    if not r.incidents:
        parts.append("no incident")
    else:
        by_sev = Counter(x.severity for x in r.incidents)
        sev = ", ".join(f"{n} {s}" for s, n in sorted(by_sev.items()))
        parts.append(f"{len(r.incidents)} incident{'s' if len(r.incidents) != 1 else ''} ({sev})")
    worst = sorted((ln for ln in r.lanes if ln.bad_s >= 1.0), key=lambda ln: -ln.bad_s)[:3]
    for ln in worst:
        where = ln.component if ln.stage == "cdn" else f"{ln.stage}/{ln.component}"
        parts.append(f"{duration_words(ln.bad_s)} degraded or down on {where}"
                     + (f" ({ln.stream})" if len(inp.streams) > 1 else ""))
    whole = [a for a in r.availability if a.place == "stream" and a.ratio is not None]
    for a in whole:
        stages = [x for x in r.availability if x.stream == a.stream and "/" not in x.place and x.place != "stream"
                  and x.ratio is not None]
        missed = [x for x in stages if not x.meets]
        if missed:
            low = ", ".join(f"{x.place} {x.ratio:.2%}" for x in missed)
            parts.append(f"{a.stream} below the {inp.objective:.1%} objective at {low} "
                         f"(every stage ok {a.ratio:.2%} of the time)")
        else:
            parts.append(f"{a.stream}: every stage met the {inp.objective:.1%} objective")
    if not whole:
        parts.append("availability not measured in this window (no history)")
    ttl = [x.localized_s for x in r.incidents]
    if ttl:
        parts.append(f"median time to localize {statistics.median(ttl):.1f} s, longest {max(ttl):.1f} s")
    still = [x for x in r.incidents if x.resolved_s is None]
    if still:
        parts.append(f"{len(still)} still open at the end")
    n = sum(e + u for _, e, u in r.complaints)
    if n:
        explained = sum(e for _, e, _u in r.complaints)
        parts.append(f"{n} viewer complaint{'s' if n != 1 else ''}, {explained} explained by an incident")
    if r.funnel.attempts:
        never = r.funnel.attempts - r.funnel.started
        parts.append(f"{r.funnel.no_stall} of {r.funnel.attempts} virtual viewers played without a stall"
                     + (f" ({never} never started)" if never else ""))
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."
