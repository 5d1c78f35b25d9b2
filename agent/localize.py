"""Fault localization: from per-stage health evidence to root-cause incidents.

Pure and clock-injected (STYLE.md 5): :class:`Localizer` is fed, once per cycle and
per stream, the latest :class:`probes.base.Evidence` of every probe of that stream and
returns :class:`IncidentEvent` s (``opened``/``updated``/``resolved``) for the store and
the alert sinks. It never performs I/O and never reads a probe.

The principle (DESIGN.md "Localization principle"): a fault is explained by the most
upstream stage whose own evidence is bad while the stages above it are good; symptoms
downstream of it are evidence on that one incident, never incidents of their own.
The signal path is ``studio -> ingest -> transcode -> origin -> cdn (edges) -> playback``.

How one cycle is read (:func:`diagnose`, stateless):

- origin server refusing / timing out / answering 5xx -> ``origin``/<component>; every
  edge and player symptom is evidence on it (except an edge's own connection failure,
  fault ``unreachable``, which an origin cannot cause);
- origin playlists stale (or gone: 4xx, ``playlist_missing``) for every rendition while
  the server answers -> upstream of the origin: the most upstream bad stage among
  studio / ingest / transcode (e.g. ``ingest`` when the ingest probe says no input,
  ``studio`` when the encoder host or device is bad), else ``transcode``/``transcoder``;
- frozen / black / silent content at every rendition -> the most upstream bad stage, else
  ``studio``/``source``; in only some renditions -> ``transcode``/<rendition>;
- one rendition stale at the origin while its siblings are fresh -> ``transcode``/<rendition>;
- an edge bad while the origin is good -> ``cdn``/<edge>; every edge bad (two or more
  edges seen) -> ``cdn``/``cdn`` (the CDN as a whole);
- a player symptom on an edge that is itself bad is evidence on that edge's incident;
  otherwise ``playback``/<component>.

Fault types are data: :data:`DEFAULT_FAULTS` maps a snake_case fault to its kind (how it
propagates), its severity when every viewer is affected and its plain-words phrase; an
unknown fault is accepted as a ``degraded`` P2 fault of its component, so new probes can
report new kinds without a change here. Severity is the emergency-response triple
``P1`` off air, ``P2`` viewers degraded, ``P3`` at risk; an incident limited to part of
the audience (one edge of several, one rendition of several, one player) is at most P2.

Hysteresis (:class:`Localizer`): a root cause opens an incident after it was found in
``open_cycles`` consecutive cycles (default 2); it resolves after it has been absent for
``resolve_after_s`` (default 10 s). An incident that comes back within that window is the
same incident, still open: a flapping edge yields one incident, not ten.
``started_at`` is the first bad evidence of the incident (so time to localize, i.e.
``localized_at - started_at``, is measured from the fault's onset as the probes saw it);
``resolved_at`` is when its evidence first came back good.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from agent.runbooks import Runbooks
from probes.base import STAGES, Evidence, State

SEVERITY_ORDER = {"P1": 1, "P2": 2, "P3": 3}
STAGE_ORDER = {s: i for i, s in enumerate(STAGES)}

FaultKind = Literal["server", "freshness", "content", "performance", "resource"]
"""How a fault propagates down the signal path.

- ``server``: the probed server itself fails (refused, timeout, 5xx);
- ``freshness``: content stops flowing (stale playlist, missing segments, no input);
- ``content``: content flows but is wrong (frozen, black, silent, out of sync);
- ``performance``: content flows too slowly (slow segments, stalls, latency);
- ``resource``: equipment at risk (device missing, host overload).
"""


class FaultSpec(BaseModel):
    """What the localizer knows about one fault type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind = "performance"
    severity: Literal["P1", "P2", "P3"] = "P2"
    phrase: str = ""
    own: bool = Field(
        False,
        description="the probed component's own connection failed: never a symptom of an upstream fault",
    )


def _f(kind: str, severity: str, phrase: str, own: bool = False) -> FaultSpec:
    return FaultSpec(kind=kind, severity=severity, phrase=phrase, own=own)


# {playlist} -> "the 360p playlist" / "the playlist"; {of} -> " (360p)" / "".
DEFAULT_FAULTS: dict[str, FaultSpec] = {
    "unreachable": _f("server", "P1", "is not answering (connection refused or timed out)", own=True),
    "timeout": _f("server", "P1", "answers too slowly to finish within the probe deadline", own=True),
    "http_error": _f("server", "P1", "answers with HTTP errors{of}"),
    "stale_playlist": _f("freshness", "P1", "stopped updating {playlist}"),
    "playlist_missing": _f("freshness", "P1", "lost {playlist}"),
    "segment_missing": _f("freshness", "P2", "is missing segments{of}"),
    "no_input": _f("freshness", "P1", "receives no input"),
    "encoder_down": _f("freshness", "P1", "encoder is not running"),
    "low_input": _f("performance", "P2", "receives less input than the stream needs"),
    "dropped_frames": _f("performance", "P3", "drops frames"),
    "upload_slow": _f("performance", "P2", "cannot upload at the stream's bitrate"),
    "frozen_video": _f("content", "P1", "shows frozen video{of}"),
    "black_video": _f("content", "P1", "shows black video{of}"),
    "silent_audio": _f("content", "P2", "has silent audio{of}"),
    "av_desync": _f("content", "P2", "has audio and video out of sync{of}"),
    "decode_errors": _f("content", "P2", "delivers corrupt segments{of}"),
    "keyframe_interval_long": _f("content", "P3", "has key frames too far apart{of}"),
    "timestamp_gap": _f("content", "P3", "has gaps in its timestamps{of}"),
    "audio_clipping": _f("content", "P3", "has clipping audio{of}"),
    "bitrate_over_declared": _f("content", "P3", "exceeds its declared bitrate{of}"),
    "playback_failed": _f("performance", "P1", "players cannot play{of}"),
    "slow_segment": _f("performance", "P2", "delivers segments slower than real time{of}"),
    "stalls": _f("performance", "P2", "players stall{of}"),
    "latency_high": _f("performance", "P3", "is far behind live{of}"),
    "variant_drift": _f("freshness", "P3", "falls behind its sibling renditions{of}"),
    "protocol_error": _f("server", "P1", "serves malformed playlists{of}"),
    "device_missing": _f("resource", "P3", "is missing"),
    "host_overload": _f("resource", "P3", "is overloaded"),
    "clock_offset": _f("resource", "P3", "has a clock offset"),
    "disk_low": _f("resource", "P3", "is running out of recording space"),
    "nic_down": _f("resource", "P2", "lost its network link"),
    "nic_errors": _f("resource", "P3", "is losing network packets"),
    # WebRTC (probes/webrtc.py): WHIP at ingest, WHEP at playback
    "auth_refused": _f("server", "P1", "refuses the session (authorization){of}"),
    "ice_failed": _f("server", "P1", "cannot be reached over ICE{of}"),
    "dtls_failed": _f("server", "P1", "fails the DTLS handshake{of}"),
    "no_rtcp": _f("freshness", "P1", "receives no media (no RTCP receiver report){of}"),
    "no_media": _f("freshness", "P1", "sends no video{of}"),
    "packet_loss": _f("performance", "P2", "loses packets{of}"),
    "rtt_high": _f("performance", "P3", "has a high round-trip time{of}"),
    "jitter_high": _f("performance", "P3", "has high jitter{of}"),
    "video_freezes": _f("performance", "P2", "video freezes{of}"),
    "host_overheat": _f("resource", "P3", "is overheating"),
    "on_battery": _f("resource", "P3", "runs on battery"),
    "gpu_overload": _f("resource", "P3", "GPU encoder is saturated"),
    "source_gone": _f("freshness", "P2", "feed is gone"),
    "frame_rate_low": _f("content", "P2", "delivers too few frames per second"),
    "resolution_mismatch": _f("content", "P3", "sends the wrong resolution"),
    "audio_clipping": _f("content", "P3", "has clipping audio{of}"),
    "audio_quiet": _f("content", "P3", "has very quiet audio"),
    "rtt_high": _f("performance", "P3", "has a slow path to the ingest"),
    "jitter_high": _f("performance", "P3", "has an unsteady path to the ingest"),
    "uplink_low": _f("performance", "P2", "uplink is too slow for the bitrate"),
}

ENCODED_FAULTS = frozenset({"decode_errors", "keyframe_interval_long", "bitrate_over_declared"})
"""Content faults of an encoded rendition (made by its encoder/packager, not by the source).
Timestamp gaps are not among them: a gap is as often an ingest or source hiccup."""

UNKNOWN_FAULT = FaultSpec(kind="performance", severity="P2", phrase="")


class LocalizerSettings(BaseModel):
    """Localizer config (YAML ``localize:``); defaults per DESIGN.md "Localization principle"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    open_cycles: int = Field(2, ge=1, le=100, description="cycles a root cause must persist before it opens")
    playback_open_cycles: int = Field(
        6, ge=1, le=100, description="cycles before a playback-stage cause opens: players are the last stage, so "
        "their stalls usually have an upstream cause whose own evidence (latency, media) needs a few seconds")
    resolve_after_s: float = Field(10.0, ge=0, le=3600, description="seconds a cause must be gone before it resolves")
    faults: dict[str, FaultSpec] = Field(default_factory=dict, description="extra or overridden fault types")
    runbooks: dict[str, str] = Field(default_factory=dict, description="runbook overrides: '<stage>/<fault>' or '<fault>'")


# ---------------------------------------------------------------------------
# incidents and events


def rfc3339(ts: float | None) -> str | None:
    """Epoch seconds -> RFC 3339 UTC with milliseconds (``2026-11-03T14:03:07.123Z``)."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
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

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    @property
    def time_to_localize_s(self) -> float:
        return max(0.0, self.localized_at - self.started_at)

    def copy(self) -> "Incident":
        return dataclasses.replace(self, evidence=list(self.evidence))

    def to_api(self) -> dict:
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
        }


EventKind = Literal["opened", "updated", "resolved"]


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A change the store and the alert sinks follow; ``incident`` is a snapshot copy."""

    kind: EventKind
    incident: Incident


# ---------------------------------------------------------------------------
# one cycle: evidence -> root causes (stateless)

_URL_SECRET_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?:[^/@\s]*@)?(?P<rest>[^\s?#]*)(?:[?#][^\s]*)?", re.I)


def _scrub(text: str) -> str:
    """Drop userinfo and query strings from URLs (stream keys, tokens) in free text."""
    return _URL_SECRET_RE.sub(lambda m: m.group("scheme") + m.group("rest"), text)


@dataclass(slots=True)
class Finding:
    """A root cause found in one cycle, with the evidence it explains."""

    stage: str
    component: str
    fault: str
    own: list[Evidence] = field(default_factory=list)  # the root's own bad evidence
    symptoms: list[Evidence] = field(default_factory=list)  # downstream evidence it explains
    scope: str = "all"  # "all" viewers, or "partial"
    note: str = ""  # a plain-words clause saying why this stage (inferred roots)
    fine: list[str] = field(default_factory=list)  # siblings seen healthy, for the summary
    wide: bool = False  # explains every downstream symptom (origin server / origin-wide)
    rendition: str | None = None  # rendition-scoped root (transcode/<rendition>)

    @property
    def key(self) -> tuple[str, str]:
        return (self.stage, self.component)

    @property
    def all_evidence(self) -> list[Evidence]:
        return self.own + self.symptoms


_HTTP_STATUS_RE = re.compile(r"\bHTTP (\d{3})\b")


def _natural(name: str) -> tuple:
    """Sort renditions by their number: 360p < 720p < 1080p."""
    digits = re.match(r"\d+", name)
    return (int(digits.group()) if digits else 1 << 30, name)


def _is_bad(e: Evidence) -> bool:
    return e.state in (State.DEGRADED, State.DOWN)


def _fault_of(e: Evidence) -> str:
    if e.fault:
        return e.fault
    return "unreachable" if e.state is State.DOWN else "degraded"


class _Diagnoser:
    def __init__(self, faults: Mapping[str, FaultSpec]):
        self.faults = faults

    def spec(self, fault: str) -> FaultSpec:
        return self.faults.get(fault, UNKNOWN_FAULT)

    def kind(self, e: Evidence) -> str:
        fault = _fault_of(e)
        spec = self.spec(fault)
        if spec.kind == "server" and fault == "http_error":
            status = e.figures.get("http_status") or e.figures.get("status")
            if status is None:
                m = _HTTP_STATUS_RE.search(e.detail or "")
                status = int(m.group(1)) if m else None
            if status is not None and 400 <= status < 500:
                return "freshness"  # server answers; the content is gone
        return spec.kind

    def severity_of(self, f: Finding) -> str:
        best = 3
        for e in f.all_evidence:
            best = min(best, SEVERITY_ORDER[self.spec(_fault_of(e)).severity])
        if f.scope == "partial":
            best = max(best, 2)
        return {1: "P1", 2: "P2", 3: "P3"}[best]

    def root_fault(self, evs: Sequence[Evidence]) -> str:
        """The fault of the worst (most severe, then most upstream-kind) evidence."""
        order = {"server": 0, "freshness": 1, "content": 2, "performance": 3, "resource": 4}
        best = min(
            evs,
            key=lambda e: (
                SEVERITY_ORDER[self.spec(_fault_of(e)).severity],
                0 if e.state is State.DOWN else 1,
                order.get(self.kind(e), 5),
            ),
        )
        return _fault_of(best)

    # -- the walk ----------------------------------------------------------

    def diagnose(self, evidence: Iterable[Evidence], ladder: Sequence[str] | None = None) -> list[Finding]:
        evs = [e for e in evidence if e.stage in STAGE_ORDER]
        bad = [e for e in evs if _is_bad(e)]
        if not bad:
            return []
        by_stage: dict[str, list[Evidence]] = {s: [] for s in STAGES}
        for e in bad:
            by_stage[e.stage].append(e)

        findings: dict[tuple[str, str], Finding] = {}

        def root(stage: str, component: str, fault: str = "", **kw) -> Finding:
            f = findings.get((stage, component))
            if f is None:
                f = findings[(stage, component)] = Finding(stage, component, fault, **kw)
            return f

        # 1. studio / ingest / transcode own evidence, each absorbed by a bad stage above it
        upstream: list[Finding] = []
        for stage in ("studio", "ingest", "transcode"):
            for e in by_stage[stage]:
                spec = self.spec(_fault_of(e))
                above = [f for f in upstream if STAGE_ORDER[f.stage] < STAGE_ORDER[stage]]
                if above and not spec.own and self.kind(e) != "resource":
                    above[0].symptoms.append(e)
                    continue
                f = root(stage, e.component)
                f.own.append(e)
                if stage == "transcode" and e.component not in ("transcoder", "transcode"):
                    f.rendition = e.rendition or e.component
                if f not in upstream:
                    upstream.append(f)

        # 2. origin
        origin_evs = [e for e in evs if e.stage == "origin"]
        # the ladder: what the caller knows, plus renditions named by healthy evidence
        ok_named = {e.rendition for e in origin_evs if e.rendition and e.state is State.OK}
        ladder_known = bool(ladder) or bool(ok_named)
        renditions = sorted(
            set(ladder or ()) | {e.rendition for e in origin_evs if e.rendition}, key=_natural
        )
        server_bad = [e for e in by_stage["origin"] if self.kind(e) == "server"]
        wide_fresh = [e for e in by_stage["origin"] if self.kind(e) == "freshness"]
        wide_content = [e for e in by_stage["origin"] if self.kind(e) == "content"]
        other_origin = [e for e in by_stage["origin"] if self.kind(e) in ("performance", "resource")]
        # renditions whose content was analysed: a content verdict, bad or OK, names them
        analysed = {e.rendition for e in origin_evs if e.rendition
                    and (self.kind(e) == "content" or (e.state is State.OK and e.fault is None))}

        def is_wide(group: list[Evidence], kind: str) -> bool:
            """Does this origin symptom hit every rendition?"""
            bad_r = {e.rendition for e in group if e.rendition}
            if any(e.rendition is None for e in group):
                return True
            if kind == "content" and group and all(_fault_of(e) in ENCODED_FAULTS for e in group):
                # faults of the encoded rendition itself (corrupt segments, GOP,
                # bitrate) are made where the rendition is encoded and packaged: the transcoder
                # of that rendition, never the camera
                return False
            if kind == "content" and analysed:
                # content is analysed in some renditions only (probes/media_probe.py): "every
                # rendition" means every analysed one
                return bad_r >= analysed
            if ladder_known:
                return bad_r >= set(renditions)
            # no ladder: trust the probe's verdict. The HLS probe marks a stale rendition
            # DOWN when every rendition is stale and DEGRADED when its siblings advance.
            stale = [e for e in group if _fault_of(e) == "stale_playlist"]
            if stale:
                return any(e.state is State.DOWN for e in stale)
            if kind == "content":
                return True  # content analysed in one rendition only: favour the source
            return len(bad_r) >= 2

        def split(group: list[Evidence], kind: str) -> tuple[list[Evidence], dict[str, list[Evidence]]]:
            """(origin-wide evidence, {rendition: evidence}) for one kind of origin symptom."""
            if not group:
                return [], {}
            if is_wide(group, kind):
                return list(group), {}
            part: dict[str, list[Evidence]] = {}
            for e in group:
                part.setdefault(e.rendition, []).append(e)
            return [], part

        fresh_all, fresh_part = split(wide_fresh, "freshness")
        content_all, content_part = split(wide_content, "content")
        wide: Finding | None = None
        # an upstream stage that is itself failing (not merely at risk) explains every
        # origin symptom, one rendition or all; one merely at risk only explains all
        failing_upstream = [
            f for f in upstream
            if f.rendition is None and any(self.kind(e) != "resource" for e in f.own + f.symptoms)
        ]
        if failing_upstream and (fresh_part or content_part):
            for evs_r in list(fresh_part.values()) + list(content_part.values()):
                fresh_all.extend(e for e in evs_r if self.kind(e) == "freshness")
                content_all.extend(e for e in evs_r if self.kind(e) == "content")
            fresh_part, content_part = {}, {}

        if server_bad:
            comp = server_bad[0].component or "origin"
            wide = root("origin", comp)
            wide.own.extend(server_bad)
            wide.symptoms.extend(wide_fresh + wide_content + other_origin)
            wide.wide = True
            fresh_all, content_all, fresh_part, content_part, other_origin = [], [], {}, {}, []
        elif fresh_all or content_all:
            source = failing_upstream or [f for f in upstream if f.rendition is None]
            if source:
                wide = source[0]  # most upstream bad stage explains the origin-wide symptom
                wide.symptoms.extend(fresh_all + content_all)
                if fresh_all:
                    wide.note = "the origin playlists stopped updating"
                else:
                    wide.note = "every rendition at the origin is affected"
            elif fresh_all:
                wide = root("transcode", "transcoder")
                wide.symptoms.extend(fresh_all + content_all)
                wide.note = (
                    "every rendition's playlist stopped updating at the origin while the origin "
                    "server answers"
                )
            else:
                wide = root("studio", "source")
                wide.symptoms.extend(content_all)
                wide.note = "in every rendition at the origin"
            wide.wide = True
            if fresh_all:  # a content symptom of a rendition is explained by the stale origin
                for evs_r in content_part.values():
                    wide.symptoms.extend(evs_r)
                content_part = {}

        for r, evs_r in list(fresh_part.items()) + list(content_part.items()):
            f = root("transcode", r, rendition=r, scope="partial")
            f.rendition = r
            f.scope = "all" if ladder_known and len(renditions) == 1 else "partial"
            f.symptoms.extend(evs_r)
            f.fine = [x for x in renditions if x not in fresh_part and x not in content_part]
            stale_or = "stopped updating" if r in fresh_part else "is bad"
            f.note = f"the {r} rendition {stale_or} at the origin"
        if other_origin:
            comp = other_origin[0].component or "origin"
            f = root("origin", comp)
            f.own.extend(other_origin)

        rendition_roots = {f.rendition: f for f in findings.values() if f.rendition}
        origin_perf = findings.get(("origin", other_origin[0].component or "origin")) if other_origin else None

        # 3. CDN edges
        edges = sorted({e.component for e in evs if e.stage == "cdn" and e.state is not State.UNKNOWN})
        edge_left: dict[str, list[Evidence]] = {}
        for e in by_stage["cdn"]:
            spec = self.spec(_fault_of(e))
            kind = self.kind(e)
            if wide is not None and not spec.own:
                wide.symptoms.append(e)
            elif (
                e.rendition in rendition_roots
                and kind in ("freshness", "content", "performance")
            ):
                rendition_roots[e.rendition].symptoms.append(e)
            elif origin_perf is not None and any(_fault_of(o) == _fault_of(e) for o in origin_perf.own):
                origin_perf.symptoms.append(e)
            else:
                edge_left.setdefault(e.component, []).append(e)
        edge_roots: dict[str, Finding] = {}
        # the CDN as a whole only when every edge shows the SAME fault: two edges with two
        # different faults (one stale, one missing segments) are two causes, not one
        common: set[str] = set()
        if len(edges) >= 2 and set(edge_left) >= set(edges):
            common = set.intersection(*({_fault_of(e) for e in edge_left[n]} for n in edges))
        if common:
            f = root("cdn", "cdn")
            for name in edges:
                f.own.extend(e for e in edge_left[name] if _fault_of(e) in common)
                edge_roots[name] = f
                edge_left[name] = [e for e in edge_left[name] if _fault_of(e) not in common]
            f.fine = ["the origin"]
        bad_edges = {n for n, evs_e in edge_left.items() if evs_e}
        for name in sorted(bad_edges):
            f = root("cdn", name, scope="partial" if len(edges) > 1 else "all")
            f.own.extend(edge_left[name])
            f.fine = ["origin"] + [x for x in edges if x not in bad_edges and not common]
            edge_roots.setdefault(name, f)

        # 4. playback
        for e in by_stage["playback"]:
            target = edge_roots.get(e.component) or edge_roots.get(e.component.removeprefix("player-"))
            if target is None and wide is not None:
                target = wide
            if target is None and rendition_roots:
                target = rendition_roots.get(e.rendition) or (
                    next(iter(rendition_roots.values())) if e.rendition is None else None
                )
            if target is None and ("cdn", "cdn") in findings:
                target = findings[("cdn", "cdn")]
            if target is None and failing_upstream and not self.spec(_fault_of(e)).own:
                # players stalling while the studio, ingest or transcoder is failing: a symptom
                # of that cause (an ingest delay stalls every viewer), not a cause of its own
                target = failing_upstream[0]
            if target is not None:
                target.symptoms.append(e)
            else:
                f = root("playback", e.component, scope="partial")
                f.own.append(e)

        out = sorted(findings.values(), key=lambda f: (STAGE_ORDER[f.stage], f.component))
        for f in out:
            f.fault = self.root_fault(f.own or f.symptoms)
        return out


def diagnose(
    evidence: Iterable[Evidence],
    faults: Mapping[str, FaultSpec] | None = None,
    ladder: Sequence[str] | None = None,
) -> list[Finding]:
    """One stateless read of one stream's evidence: the root causes it shows now.

    ``ladder`` names the stream's renditions when the caller knows them (e.g. from the
    origin's master playlist); without it, healthy per-rendition evidence and the probe's
    own DOWN/DEGRADED verdict tell "every rendition" from "some".
    """
    table = dict(DEFAULT_FAULTS)
    table.update(faults or {})
    return _Diagnoser(table).diagnose(evidence, ladder)


# ---------------------------------------------------------------------------
# plain words


def _subject(stage: str, component: str) -> str:
    if stage == "cdn":
        return "Every CDN edge" if component == "cdn" else f"CDN {component}"
    if stage == "origin":
        return "The origin" if component == "origin" else f"The origin ({component})"
    if stage == "transcode":
        return "The transcoder" if component in ("transcoder", "transcode") else f"The {component} transcode"
    if stage == "ingest":
        return "The ingest" if component == "ingest" else f"Ingest {component}"
    if stage == "studio":
        return "The studio source" if component == "source" else f"Studio {component}"
    return f"Playback via {component}"


def _phrase(spec: FaultSpec, fault: str, rendition: str | None) -> str:
    text = spec.phrase or ("reports " + fault.replace("_", " "))
    playlist = f"the {rendition} playlist" if rendition else "the playlist"
    of = f" ({rendition})" if rendition else ""
    return text.replace("{playlist}", playlist).replace("{of}", of)


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _evidence_line(e: Evidence) -> str:
    where = f"{e.stage}/{e.component}" + (f" {e.rendition}" if e.rendition else "")
    text = f"{where}: {_fault_of(e)}"
    if e.detail:
        text += f": {e.detail}"
    return _scrub(text)


def _summary(f: Finding, diag: _Diagnoser) -> str:
    """One plain-words sentence: what broke where, what it explains, what is fine."""
    spec = diag.spec(f.fault)
    base = f.own or f.symptoms
    renditions = sorted({e.rendition for e in base if e.rendition and _fault_of(e) == f.fault})
    rendition = renditions[0] if len(renditions) == 1 else None
    if f.stage == "cdn":
        subject = f.component if f.component != "cdn" else "Every CDN edge (" + ", ".join(
            sorted({e.component for e in f.own})) + ")"
    else:
        subject = _subject(f.stage, f.component)
    if f.own:
        text = f"{subject} {_phrase(spec, f.fault, rendition)}"
        if f.note:
            text += f"; {f.note}"
    elif f.stage == "transcode" and f.rendition is None:
        text = f"{subject} stopped producing: {f.note}" if f.note else f"{subject} stopped producing"
    elif f.stage == "transcode":
        what = _phrase(spec, f.fault, None).replace("the playlist", "its playlist")
        text = f"The {f.rendition} rendition {what} at the origin"
        if f.fine:
            text += f"; {_join(f.fine)} {'is' if len(f.fine) == 1 else 'are'} fine"
        return _scrub(text + f": the {f.rendition} transcode is at fault.")
    else:
        text = f"{subject} {_phrase(spec, f.fault, None)}"
        if f.note:
            text += f" {f.note}" if f.note.startswith("in ") else f"; {f.note}"
    if f.fine:
        text += f"; {_join(f.fine)} {'is' if len(f.fine) == 1 else 'are'} fine"
    downstream = sorted(
        {e.stage for e in f.symptoms if STAGE_ORDER[e.stage] > STAGE_ORDER[f.stage]},
        key=STAGE_ORDER.__getitem__,
    )
    if f.own and downstream:
        text += f" (symptoms at {_join(downstream)})"
    return _scrub(text + ".")


# ---------------------------------------------------------------------------
# hysteresis


@dataclass(slots=True)
class _Track:
    cycles: int
    last_seen: float
    gone_since: float | None = None
    incident: Incident | None = None
    signature: tuple = ()


def _default_id() -> str:
    return uuid.uuid4().hex[:16]


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
    ) -> None:
        self.settings = settings or LocalizerSettings()
        table = dict(DEFAULT_FAULTS)
        table.update(self.settings.faults)
        self._diag = _Diagnoser(table)
        self._clock = clock
        self._new_id = new_id
        self._runbooks = runbooks or Runbooks(self.settings.runbooks)
        self._tracks: dict[str, dict[tuple[str, str], _Track]] = {}
        self._bad_since: dict[str, dict[tuple, float]] = {}

    # -- queries --------------------------------------------------------------

    def open_incidents(self, stream: str | None = None) -> list[Incident]:
        out = []
        for name, tracks in self._tracks.items():
            if stream is not None and name != stream:
                continue
            out.extend(t.incident.copy() for t in tracks.values() if t.incident is not None)
        return sorted(out, key=lambda i: (SEVERITY_ORDER[i.severity], i.started_at))

    def restore(self, incidents: Iterable[Incident], now: float | None = None) -> None:
        """Adopt incidents left open by a previous run (from the store).

        They count as seen now: confirmed by the next cycles, or resolved after
        ``resolve_after_s`` if their cause is gone.
        """
        now = self._clock() if now is None else now
        for inc in incidents:
            if not inc.open:
                continue
            tracks = self._tracks.setdefault(inc.stream, {})
            key = (inc.stage, inc.component)
            if key in tracks and tracks[key].incident is not None:
                continue
            tracks[key] = _Track(
                cycles=self.settings.open_cycles,
                last_seen=now,
                gone_since=now,
                incident=inc.copy(),
                signature=(inc.fault, inc.severity),
            )

    # -- one cycle ------------------------------------------------------------

    def observe(
        self,
        stream: str,
        evidence: Iterable[Evidence],
        now: float | None = None,
        *,
        ladder: Sequence[str] | None = None,
    ) -> list[IncidentEvent]:
        """One cycle of one stream; ``ladder``: its rendition names when known (see :func:`diagnose`)."""
        now = self._clock() if now is None else now
        evidence = list(evidence)
        findings = self._diag.diagnose(evidence, ladder)
        since = self._update_bad_since(stream, evidence, now)
        tracks = self._tracks.setdefault(stream, {})
        events: list[IncidentEvent] = []
        seen: set[tuple[str, str]] = set()

        for f in findings:
            seen.add(f.key)
            t = tracks.get(f.key)
            if t is None:
                t = tracks[f.key] = _Track(cycles=0, last_seen=now)
            t.cycles += 1
            t.last_seen = now
            t.gone_since = None
            severity = self._diag.severity_of(f)
            lines = sorted({_evidence_line(e) for e in f.all_evidence})
            summary = _summary(f, self._diag)
            signature = (f.fault, severity)
            if t.incident is None:
                need = self.settings.open_cycles
                if f.stage == "playback" and self._diag.spec(f.fault).kind == "performance":
                    # stalls and freezes wait for upstream evidence; a player that gets no
                    # media at all (no_media, a freshness fault) opens after open_cycles
                    need = max(need, self.settings.playback_open_cycles)
                if t.cycles < need:
                    continue
                started = min((since.get(_ev_key(e), now) for e in f.all_evidence), default=now)
                t.incident = Incident(
                    id=f"{stream}-{self._new_id()}",
                    stream=stream,
                    stage=f.stage,
                    component=f.component,
                    fault=f.fault,
                    severity=severity,
                    started_at=min(started, now),
                    localized_at=now,
                    summary=summary,
                    evidence=lines,
                    runbook=self._runbooks.hint(stream=stream, stage=f.stage, component=f.component, fault=f.fault),
                )
                t.signature = signature
                events.append(IncidentEvent("opened", t.incident.copy()))
                continue
            inc = t.incident
            inc.evidence = lines
            inc.summary = summary
            if signature != t.signature:
                t.signature = signature
                if inc.fault != f.fault:
                    inc.fault = f.fault
                    inc.runbook = self._runbooks.hint(
                        stream=stream, stage=f.stage, component=f.component, fault=f.fault
                    )
                inc.severity = severity
                events.append(IncidentEvent("updated", inc.copy()))

        for key in list(tracks):
            if key in seen:
                continue
            t = tracks[key]
            if t.incident is None:
                del tracks[key]  # a candidate must persist for consecutive cycles
                continue
            if t.gone_since is None:
                t.gone_since = now
            t.cycles = 0
            if now - t.gone_since >= self.settings.resolve_after_s:
                inc = t.incident
                inc.resolved_at = t.gone_since
                events.append(IncidentEvent("resolved", inc.copy()))
                del tracks[key]
        return events

    def forget(self, stream: str) -> list[IncidentEvent]:
        """A stream left the config: resolve its open incidents now."""
        now = self._clock()
        events = []
        for t in self._tracks.pop(stream, {}).values():
            if t.incident is not None:
                t.incident.resolved_at = now
                events.append(IncidentEvent("resolved", t.incident.copy()))
        self._bad_since.pop(stream, None)
        return events

    def _update_bad_since(self, stream: str, evidence: list[Evidence], now: float) -> dict[tuple, float]:
        prev = self._bad_since.get(stream, {})
        cur: dict[tuple, float] = {}
        for e in evidence:
            if _is_bad(e):
                k = _ev_key(e)
                cur[k] = min(prev.get(k, now), cur.get(k, now))
        self._bad_since[stream] = cur
        return cur


def _ev_key(e: Evidence) -> tuple:
    return (e.stage, e.component, e.rendition, _fault_of(e))
