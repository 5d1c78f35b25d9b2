"""Diagnosis: one cycle of one stream's evidence -> its root causes (pure, stateless).

The principle (DESIGN.md "Localization principle"): a fault is explained by the most
upstream stage whose own evidence is bad while the stages above it are good; symptoms
downstream of it are evidence on that one cause, never causes of their own — but only
where the fault catalog (probes/faults.py, ``explains``) says the cause can produce the
symptom. A bitrate overshoot explains no stale playlist; a symptom no cause explains is
placed on its own, as if the unrelated cause were not there.

The signal path is ``studio -> ingest -> transcode -> origin -> cdn (edges) -> playback``.
How one cycle is read (:func:`diagnose`):

- studio / ingest / transcode evidence: its own cause, unless a cause above it explains it;
- origin server refusing / timing out / answering 5xx -> ``origin``/<component>; edge
  and player symptoms it explains are evidence on it (an edge's own connection failure,
  ``own`` in the catalog, never is);
- origin playlists stale (or gone: HTTP 4xx) for every rendition while the server answers
  -> the most upstream failing stage that explains it (``ingest`` when the ingest has no
  input, ``studio`` when the encoder is down), else ``transcode``/``transcoder``; listed
  segments missing (4xx) in every rendition while the playlists advance -> ``origin``/``origin``
  (it lists what it does not serve), not a transcoder that stopped;
- frozen / black / silent content at every analysed rendition -> the most upstream cause
  that explains it, else ``studio``/``source``; in only some renditions, or a fault of the
  encoded rendition itself (corrupt segments, GOP, bitrate) -> ``transcode``/<rendition>;
- one rendition stale at the origin while its siblings are fresh -> ``transcode``/<rendition>;
- an edge bad while the origin is good -> ``cdn``/<edge>; every edge with the same fault
  (two or more edges seen) -> ``cdn``/``cdn``; but an edge whose stale playlist lists all the
  origin's lists (``edge_lag_segments`` 0, probes/hls.py ``combine``) is not behind the
  origin: while a studio, ingest or transcode cause that explains it is found, it is that
  cause's symptom (the origin, late too, still within its own rule; the edge's lawful cache
  lag on top). So is one that lacks only segments the origin listed late and less than the
  edge's stale threshold before (``behind_origin_s`` <= ``stale_after_s``: the edge follows within
  its lawful lag, as when an upstream stall ends). With no such cause, neither is a cause at all:
  the edge is not behind through a fault of its own (the origin, once stale by its own rule,
  is the cause that explains it);
- a player symptom: on the cause that explains it (its edge, the origin, a rendition, an
  upstream stage), otherwise ``playback``/<component>.

Severity (:meth:`Diagnoser.severity_of`): the worst catalog severity of the evidence, at
most P2 when only part of the audience is affected (one edge of several, one rendition,
one player).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from probes.base import Evidence, State
from probes.faults import (
    CATALOG,
    SEVERITY_RANK,
    STAGE_RANK,
    STAGES,
    WHOLE_TRANSCODER,
    Fault,
    FaultCatalog,
    FaultClass,
    FaultSpec,
)

ENCODED_FAULTS = frozenset({Fault.DECODE_ERRORS, Fault.KEYFRAME_INTERVAL_LONG, Fault.BITRATE_OVER_DECLARED,
                            Fault.SEGMENT_TOO_LONG})
"""Content faults of an encoded rendition (made by its encoder/packager, not by the source):
in one rendition its transcode, in every rendition the transcoder — never the camera.
Timestamp gaps are not among them: a gap is as often an ingest or source hiccup."""

_CLASS_ORDER = {FaultClass.SERVER: 0, FaultClass.FRESHNESS: 1, FaultClass.CONTENT: 2,
                FaultClass.PERFORMANCE: 3, FaultClass.RESOURCE: 4}


@dataclass(slots=True)
class Finding:
    """A root cause found in one cycle, with the evidence it explains."""

    stage: str
    component: str
    fault: Fault | None = None
    own: list[Evidence] = field(default_factory=list)  # the root's own bad evidence
    symptoms: list[Evidence] = field(default_factory=list)  # downstream evidence it explains
    scope: str = "all"  # "all" viewers, or "partial"
    note: str = ""  # a plain-words clause saying why this stage (inferred roots)
    fine: list[str] = field(default_factory=list)  # siblings MEASURED healthy, for the summary
    wide: bool = False  # explains downstream symptoms of every rendition (origin server / origin-wide)
    rendition: str | None = None  # rendition-scoped root (transcode/<rendition>)

    @property
    def key(self) -> tuple[str, str]:
        return (self.stage, self.component)

    @property
    def all_evidence(self) -> list[Evidence]:
        return self.own + self.symptoms

    @property
    def causes(self) -> list[Evidence]:
        """The evidence that names the cause: its own, or (inferred roots) what it was inferred
        from — the symptoms nearest it, not the players' downstream of them (a transcoder
        inferred from long segments at the origin is a long GOP, whatever viewers it stalls)."""
        if self.own:
            return self.own
        top = min((STAGE_RANK[e.stage] for e in self.symptoms), default=0)
        return [e for e in self.symptoms if STAGE_RANK[e.stage] == top]


def is_bad(e: Evidence) -> bool:
    return e.state in (State.DEGRADED, State.DOWN)


def fault_of(e: Evidence) -> Fault:
    """The evidence's fault; bad evidence without one reads as its probe's verdict."""
    if e.fault is not None:
        return e.fault
    return Fault.UNREACHABLE if e.state is State.DOWN else Fault.CHECK_FAILED


def symptom_of(e: Evidence) -> Fault:
    """The fault as a downstream symptom: an HTTP 4xx (``http_status``) is content that is
    gone — a missing segment or playlist — not a server failing."""
    fault = fault_of(e)
    if fault is Fault.HTTP_ERROR and _content_gone(e.http_status):
        return Fault.SEGMENT_MISSING if e.url_role == "segment" else Fault.PLAYLIST_MISSING
    return fault


def _content_gone(status: int | None) -> bool:
    """A 4xx that says the content is not there (404, 410, 403...), not a server turning requests
    away (429 is rate limiting: catalog rate_limited) or a bad range request (416)."""
    return status is not None and 400 <= status < 500 and status not in (416, 429)


def natural(name: str) -> tuple[int, str]:
    """Sort renditions by their number: 360p < 720p < 1080p."""
    digits = re.match(r"\d+", name)
    return (int(digits.group()) if digits else 1 << 30, name)


class Diagnoser:
    """The rules over one cycle's evidence, with a fault catalog (default: the catalog)."""

    def __init__(self, catalog: FaultCatalog = CATALOG) -> None:
        self.catalog = catalog

    def spec(self, fault: Fault) -> FaultSpec:
        return self.catalog[fault]

    def kind(self, e: Evidence) -> FaultClass:
        """The fault's class; an HTTP 4xx is content gone (freshness), not a failing server."""
        fault = fault_of(e)
        if fault is Fault.HTTP_ERROR and _content_gone(e.http_status):
            return FaultClass.FRESHNESS
        return self.spec(fault).cls

    def explains(self, f: Finding, e: Evidence) -> bool:
        """Can finding ``f`` cause evidence ``e`` (catalog ``explains``)? Never an ``own`` failure."""
        symptom = symptom_of(e)
        if self.spec(symptom).own and e.stage != f.stage:
            return False
        # everything placed on f speaks for its cause: a stalled transcoder shows as late
        # (latency_high) and as stale playlists, and explains what either can cause
        return any(self.catalog.explains(fault_of(c), symptom) for c in f.all_evidence)

    def severity_of(self, f: Finding) -> str:
        best = min((SEVERITY_RANK[self.spec(fault_of(e)).severity] for e in f.all_evidence), default=3)
        if f.scope == "partial":
            best = max(best, 2)
        return f"P{best}"

    def naming(self, f: Finding) -> list[Evidence]:
        """The evidence that names ``f``'s fault: its causes; for a transcoder whose own evidence
        is lateness only (the latency probe's bound on a segment not at the origin yet) while the
        origin playlists it writes are stale, those too: a transcoder that stopped shows both, and
        is named by the stop (its severity and runbook), not as one far behind live."""
        if f.stage != "transcode" or not f.own or any(self.kind(e) is not FaultClass.PERFORMANCE for e in f.own):
            return f.causes
        return f.own + [e for e in f.symptoms if e.stage == "origin" and self.kind(e) is FaultClass.FRESHNESS]

    def root_fault(self, evs: Sequence[Evidence]) -> Fault:
        """The fault of the worst (most severe, then DOWN, then most upstream-class) evidence,
        among content faults that no other content fault present explains (a long GOP, not the
        long segments it makes)."""
        faults = {fault_of(e) for e in evs if self.kind(e) is FaultClass.CONTENT}
        heads = [e for e in evs if fault_of(e) not in faults
                 or not any(y is not fault_of(e) and self.catalog.explains(y, fault_of(e)) for y in faults)]
        best = min(heads or evs, key=lambda e: (SEVERITY_RANK[self.spec(fault_of(e)).severity],
                                                0 if e.state is State.DOWN else 1, _CLASS_ORDER[self.kind(e)]))
        return fault_of(best)

    def diagnose(self, evidence: Iterable[Evidence], ladder: Sequence[str] | None = None) -> list[Finding]:
        evs = [e for e in evidence if e.stage in STAGE_RANK]
        if not any(is_bad(e) for e in evs):
            return []
        # facts the agent states at a fixed place (catalog ``placed``): findings there, never walked
        placed = [e for e in evs if is_bad(e) and self.spec(fault_of(e)).placed]
        evs = [e for e in evs if not (is_bad(e) and self.spec(fault_of(e)).placed)]
        walk = _Walk(self, evs, ladder)
        walk.upstream()
        walk.origin()
        walk.edges()
        walk.playback()
        out = [g for f in walk.findings.values() for g in self.separate(f)]
        out += [Finding(e.stage, e.component, own=[e]) for e in placed]
        out.sort(key=lambda f: (STAGE_RANK[f.stage], f.component))
        for f in out:
            f.fault = self.root_fault(self.naming(f))
        return out

    def separate(self, f: Finding) -> list[Finding]:
        """One finding per content fault at a place: a different fault at the same place is its
        own cause (a long GOP beside a chronic bitrate overshoot in one rendition; a rendition
        gone stale beside it), unless the catalog says one causes the other (a desync's
        timestamp jump, a black picture that is also still, the frozen picture of a stale
        rendition). The first keeps every other piece of evidence (downstream symptoms)."""
        content = [e for e in f.causes if self.kind(e) is FaultClass.CONTENT]
        faults = list(dict.fromkeys(map(fault_of, content)))
        heads = [x for x in faults if not any(y is not x and self.catalog.explains(y, x) for y in faults)]
        first = self.root_fault(f.causes)
        if first in faults:
            if len(heads) < 2 or first not in heads:
                return [f]
            others = [x for x in heads if x is not first]
        else:
            # the cause is not a content fault (a stale rendition): a content fault there that it
            # cannot make (a chronic bitrate overshoot, not a frozen picture) stays its own
            others = [x for x in heads if not self.catalog.explains(first, x)]
            if not others:
                return [f]
        out = [f]
        for x in others:
            mine = [e for e in content if fault_of(e) is x or
                    (self.catalog.explains(x, fault_of(e)) and not self.catalog.explains(first, fault_of(e)))]
            out.append(Finding(f.stage, f.component, own=[e for e in f.own if e in mine],
                               symptoms=[e for e in f.symptoms if e in mine], scope=f.scope,
                               note=f.note if first in faults else "",  # "stopped updating" is not its reason
                               fine=list(f.fine), rendition=f.rendition))
            f.own = [e for e in f.own if e not in mine]
            f.symptoms = [e for e in f.symptoms if e not in mine]
        return out


class _Walk:
    """One diagnosis down the signal path; each step places its stage's bad evidence."""

    def __init__(self, d: Diagnoser, evs: list[Evidence], ladder: Sequence[str] | None) -> None:
        self.d = d
        self.evs = evs
        self.ladder = ladder
        self.bad: dict[str, list[Evidence]] = {s: [] for s in STAGES}
        for e in evs:
            if is_bad(e):
                self.bad[e.stage].append(e)
        self.findings: dict[tuple[str, str], Finding] = {}
        self.upstream_roots: list[Finding] = []  # studio / ingest / transcode causes, upstream first
        self.wide: Finding | None = None  # the cause of every rendition's origin symptom
        self.rendition_roots: dict[str, Finding] = {}
        self.origin_perf: Finding | None = None
        self.edge_roots: dict[str, Finding] = {}

    def root(self, stage: str, component: str) -> Finding:
        f = self.findings.get((stage, component))
        if f is None:
            f = self.findings[(stage, component)] = Finding(stage, component)
        return f

    def explaining(self, candidates: Iterable[Finding | None], e: Evidence) -> Finding | None:
        """The first candidate cause that explains ``e``."""
        for f in candidates:
            if f is not None and self.d.explains(f, e):
                return f
        return None

    # -- 1. studio, ingest, transcode ---------------------------------------------------

    def upstream(self) -> None:
        for stage in ("studio", "ingest", "transcode"):
            for e in self.bad[stage]:
                above = [f for f in self.upstream_roots if STAGE_RANK[f.stage] < STAGE_RANK[stage]]
                host = self.explaining(above, e)
                if host is not None:
                    host.symptoms.append(e)
                    continue
                f = self.root(stage, e.component)
                f.own.append(e)
                if stage == "transcode" and e.component not in WHOLE_TRANSCODER:
                    f.rendition = e.rendition or e.component
                if f not in self.upstream_roots:
                    self.upstream_roots.append(f)

    def failing_upstream(self) -> list[Finding]:
        """Stage-wide upstream causes that are failing, not merely at risk (resource)."""
        return [f for f in self.upstream_roots
                if f.rendition is None and any(self.d.kind(e) is not FaultClass.RESOURCE for e in f.all_evidence)]

    # -- 2. origin ----------------------------------------------------------------------

    def origin(self) -> None:
        bad = self.bad["origin"]
        server = [e for e in bad if self.d.kind(e) is FaultClass.SERVER]
        if server:
            # the origin server itself fails: every origin symptom it can cause is its evidence
            self.wide = f = self.root("origin", server[0].component or "origin")
            f.own.extend(server)
            f.wide = True
            rest = [e for e in bad if e not in server]
            f.symptoms.extend(e for e in rest if self.d.explains(f, e))
            bad = [e for e in rest if not self.d.explains(f, e)]
        fresh = [e for e in bad if self.d.kind(e) is FaultClass.FRESHNESS]
        content = [e for e in bad if self.d.kind(e) is FaultClass.CONTENT]
        other = [e for e in bad if self.d.kind(e) in (FaultClass.PERFORMANCE, FaultClass.RESOURCE)]
        ladder = _Ladder(self.d, [e for e in self.evs if e.stage == "origin"], self.ladder)
        fresh_all, fresh_part = ladder.split(fresh, FaultClass.FRESHNESS)
        content_all, content_part = ladder.split(content, FaultClass.CONTENT)
        for e in list(content_all):  # a frozen picture that the rendition's own corrupt segments explain
            own = content_part.get(e.rendition or "", [])
            if any(self.d.catalog.explains(fault_of(c), fault_of(e)) for c in own):
                content_all.remove(e)
                own.append(e)
        # a failing upstream stage explains the origin symptoms it can cause, one rendition or all
        failing = self.failing_upstream()
        for part, every in ((fresh_part, fresh_all), (content_part, content_all)):
            for r, evs_r in list(part.items()):
                taken = [e for e in evs_r if self.explaining(failing, e) is not None]
                every.extend(taken)
                part[r] = [e for e in evs_r if e not in taken]
                if not part[r]:
                    del part[r]
        if content_all and all(fault_of(e) in ENCODED_FAULTS for e in content_all):
            # a rendition's own measurement that explains what every rendition shows is the wide
            # cause's name (a long GOP measured in the analysed rendition, long segments in all)
            for r in list(content_part):
                named = [e for e in content_part[r]
                         if all(self.d.catalog.explains(fault_of(e), fault_of(w)) for w in content_all)]
                content_all.extend(named)
                content_part[r] = [e for e in content_part[r] if e not in named]
                if not content_part[r]:
                    del content_part[r]
        if fresh_all or content_all:
            self.origin_wide(fresh_all, content_all, content_part)
        self.origin_renditions(ladder, fresh_part, content_part)
        if other:
            f = self.root("origin", other[0].component or "origin")
            f.own.extend(other)
            self.origin_perf = f
        self.rendition_roots = {f.rendition: f for f in self.findings.values() if f.rendition}

    def origin_wide(self, fresh_all: list[Evidence], content_all: list[Evidence],
                    content_part: dict[str, list[Evidence]]) -> None:
        """Symptoms at every rendition of the origin: an upstream cause, else an inferred one."""
        group = fresh_all + content_all
        upstream = self.failing_upstream() or [f for f in self.upstream_roots if f.rendition is None]
        source = next((f for f in upstream if all(self.d.explains(f, e) for e in group)), None)
        stopped = any(symptom_of(e) in (Fault.STALE_PLAYLIST, Fault.PLAYLIST_MISSING) for e in fresh_all)
        if source is not None:
            source.note = ("the origin playlists stopped updating" if stopped
                           else "every rendition at the origin is affected")
        elif fresh_all and all(symptom_of(e) is Fault.SEGMENT_MISSING for e in fresh_all):
            # the playlists advance but the segments they list are not served (a packager that lists
            # before it writes, a cleanup too eager): the origin serves what it does not have
            source = self.root("origin", "origin")
            source.note = "its playlists list segments it does not serve, in every rendition"
        elif fresh_all:
            source = self.root("transcode", "transcoder")
            source.note = ("every rendition's playlist stopped updating at the origin while the origin server answers"
                           if stopped else "every rendition at the origin is affected")
        elif all(fault_of(e) in ENCODED_FAULTS for e in content_all):
            source = self.root("transcode", "transcoder")  # the encoding of every rendition: the transcoder
            source.note = "in every rendition at the origin"
        else:
            source = self.root("studio", "source")
            source.note = "in every rendition at the origin"
        source.symptoms.extend(group)
        source.wide = True
        self.wide = self.wide or source
        if fresh_all:  # a content symptom of one rendition that the stale origin can cause is its
            for r in list(content_part):  # (a frozen picture, a timestamp jump; never a bitrate overshoot)
                taken = [e for e in content_part[r] if self.d.explains(source, e)]
                source.symptoms.extend(taken)
                content_part[r] = [e for e in content_part[r] if e not in taken]
                if not content_part[r]:
                    del content_part[r]

    def origin_renditions(self, ladder: _Ladder, fresh_part: dict[str, list[Evidence]],
                          content_part: dict[str, list[Evidence]]) -> None:
        """Symptoms at some renditions only: that rendition's transcode."""
        for r, evs_r in list(fresh_part.items()) + list(content_part.items()):
            f = self.root("transcode", r)
            f.rendition = r
            f.scope = "all" if ladder.known and len(ladder.renditions) == 1 else "partial"
            f.symptoms.extend(evs_r)
            # siblings named fine only when they were measured: fresh playlists for a stale one,
            # analysed content for a content fault (an unanalysed rendition is not "fine")
            measured = ladder.fresh_ok if r in fresh_part else ladder.analysed_ok
            f.fine = [x for x in ladder.renditions
                      if x in measured and x not in fresh_part and x not in content_part]
            f.note = f"the {r} rendition {'stopped updating' if r in fresh_part else 'is bad'} at the origin"

    # -- 3. CDN edges -------------------------------------------------------------------

    def edges(self) -> None:
        edges = sorted({e.component for e in self.evs if e.stage == "cdn" and e.state is not State.UNKNOWN})
        left: dict[str, list[Evidence]] = {}
        upstream = self.failing_upstream() or [f for f in self.upstream_roots if f.rendition is None]
        for e in self.bad["cdn"]:
            host = self.explaining([self.wide, self.rendition_roots.get(e.rendition or ""), self.origin_perf], e)
            lawful = _lawfully_behind(e)
            if host is None and lawful:
                host = self.explaining(upstream, e)  # level with the origin, or following it: late upstream
                if host is None:
                    continue  # it lists what the origin listed, or follows within its own lag: no cause of its own
            if host is not None:
                host.symptoms.append(e)
            else:
                left.setdefault(e.component, []).append(e)
        # the CDN as a whole only when every edge shows the SAME fault: two edges with two
        # different faults (one stale, one missing segments) are two causes, not one
        common: set[Fault] = set()
        if len(edges) >= 2 and set(left) >= set(edges):
            common = set.intersection(*({fault_of(e) for e in left[n]} for n in edges))
        if common:
            f = self.root("cdn", "cdn")
            for name in edges:
                f.own.extend(e for e in left[name] if fault_of(e) in common)
                self.edge_roots[name] = f
                left[name] = [e for e in left[name] if fault_of(e) not in common]
            f.fine = ["the origin"] if self._origin_measured_ok() else []
        bad_edges = {n for n, evs_e in left.items() if evs_e}
        ok_edges = {e.component for e in self.evs if e.stage == "cdn" and e.state is State.OK}
        for name in sorted(bad_edges):
            f = self.root("cdn", name)
            f.scope = "partial" if len(edges) > 1 else "all"
            f.own.extend(left[name])
            fine = ["origin"] if self._origin_measured_ok() else []
            f.fine = fine + [x for x in edges if x not in bad_edges and x in ok_edges and not common]
            self.edge_roots.setdefault(name, f)

    def _origin_measured_ok(self) -> bool:
        return any(e.stage == "origin" and e.state is State.OK for e in self.evs) and not self.bad["origin"]

    # -- 4. playback ----------------------------------------------------------------------

    def playback(self) -> None:
        # the HLS viewers play from the origin or an edge; a player of another path (WHEP plays
        # the WebRTC relay of the WHIP ingest) is reached by the studio and ingest only, never by
        # an HLS rendition, the origin or a CDN edge
        hls_endpoints = {e.component for e in self.evs if e.stage in ("cdn", "origin")}
        for e in self.bad["playback"]:
            renditions = self.rendition_roots
            by_rendition = renditions.get(e.rendition) if e.rendition else (
                next(iter(renditions.values())) if renditions else None)
            candidates = [self.edge_roots.get(e.component), self.wide, by_rendition,
                          self.findings.get(("cdn", "cdn"))]
            if e.rendition is None and e.component not in hls_endpoints:
                candidates = []
            host = self.explaining(candidates, e)
            if host is None and not self.d.spec(fault_of(e)).own:
                # players stalling while the studio, ingest or transcoder is failing: a symptom
                # of that cause (an ingest delay stalls every viewer), not a cause of its own
                host = self.explaining(self.failing_upstream(), e)
            if host is not None:
                host.symptoms.append(e)
            else:
                f = self.root("playback", e.component)
                f.scope = "partial"
                f.own.append(e)


class _Ladder:
    """The origin's renditions as this cycle knows them, and which were measured healthy."""

    def __init__(self, d: Diagnoser, origin_evs: list[Evidence], ladder: Sequence[str] | None) -> None:
        self.d = d
        ok = [e for e in origin_evs if e.rendition and e.state is State.OK]
        self.known = bool(ladder) or bool(ok)
        self.renditions = sorted(set(ladder or ()) | {e.rendition for e in origin_evs if e.rendition}, key=natural)
        # renditions whose content was analysed: a content verdict, bad or OK, names them
        self.analysed = {e.rendition for e in origin_evs if e.rendition and e.state is not State.UNKNOWN
                         and (self.d.kind(e) is FaultClass.CONTENT or (e.state is State.OK and e.fault is None))}
        self.fresh_ok = {e.rendition for e in ok}
        self.analysed_ok = {e.rendition for e in ok if e.fault is None} & self.analysed

    def is_wide(self, group: list[Evidence], kind: FaultClass) -> bool:
        """Does this origin symptom hit every rendition?"""
        bad_r = {e.rendition for e in group if e.rendition}
        if any(e.rendition is None for e in group):
            return True
        if kind is FaultClass.CONTENT and group and all(fault_of(e) in ENCODED_FAULTS for e in group):
            # faults of the encoded renditions themselves (corrupt segments, GOP, bitrate, segment
            # length) are the transcoder's only when seen in every rendition of a known ladder;
            # one analysed rendition says nothing of the others
            return self.known and len(self.renditions) > 1 and bad_r >= set(self.renditions)
        if kind is FaultClass.CONTENT and self.analysed:
            # content is analysed in some renditions only (probes/media.py): "every rendition"
            # means every analysed one
            return bad_r >= self.analysed
        if self.known:
            return bad_r >= set(self.renditions)
        # no ladder: trust the probe's verdict. The HLS probe marks a stale rendition DOWN
        # when every rendition is stale and DEGRADED when its siblings advance.
        stale = [e for e in group if fault_of(e) is Fault.STALE_PLAYLIST]
        if stale:
            return any(e.state is State.DOWN for e in stale)
        if kind is FaultClass.CONTENT:
            return True  # content analysed in one rendition only: favour the source
        return len(bad_r) >= 2

    def split(self, group: list[Evidence], kind: FaultClass) -> tuple[list[Evidence], dict[str, list[Evidence]]]:
        """(origin-wide evidence, {rendition: evidence}) for one class of origin symptom.

        Content is judged fault by fault: a frozen picture in every rendition is the source's,
        while a bitrate overshoot in one rendition beside it stays that rendition's own."""
        if not group:
            return [], {}
        faults = [group] if kind is not FaultClass.CONTENT else \
            [[e for e in group if fault_of(e) is x] for x in dict.fromkeys(map(fault_of, group))]
        wide: list[Evidence] = []
        part: dict[str, list[Evidence]] = {}
        for same in faults:
            if self.is_wide(same, kind):
                wide.extend(same)
                continue
            for e in same:
                part.setdefault(e.rendition or "", []).append(e)
        return wide, part


def diagnose(evidence: Iterable[Evidence], catalog: FaultCatalog | None = None,
             ladder: Sequence[str] | None = None) -> list[Finding]:
    """One stateless read of one stream's evidence: the root causes it shows now.

    ``ladder`` names the stream's renditions when the caller knows them (e.g. from the
    origin's master playlist); without it, healthy per-rendition evidence and the probe's
    own DOWN/DEGRADED verdict tell "every rendition" from "some".
    """
    return Diagnoser(catalog or CATALOG).diagnose(evidence, ladder)


__all__ = ["Diagnoser", "ENCODED_FAULTS", "Finding", "diagnose", "fault_of", "is_bad", "natural"]


def _lawfully_behind(e: Evidence) -> bool:
    """An edge's ``stale_playlist`` that lists exactly what the origin lists (``edge_lag_segments``
    0), or lacks only segments the origin listed late and less than the edge's own stale threshold
    before (``behind_origin_s`` <= ``stale_after_s``; probes/hls.py ``combine``). An edge AHEAD
    of the origin (a negative lag: the origin restarted its numbering, the edge still serves the
    old playlist) is not comparable, so not excused: frozen on the old numbering it would
    otherwise go unblamed until the origin's numbers pass it."""
    if fault_of(e) != Fault.STALE_PLAYLIST:
        return False
    if e.figures.get("edge_lag_segments", 1) == 0:
        return True
    behind, limit = e.figures.get("behind_origin_s"), e.figures.get("stale_after_s")
    return behind is not None and limit is not None and behind <= limit
