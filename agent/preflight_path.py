"""Preflight of the delivery path: the origin, every edge and the picture, as the agent sees them.

``signalpath preflight`` runs, for every stream, the agent's own probes — probes/hls.py on
the origin and on each edge, probes/media.py on the origin when ``media.enabled`` — under the
agent's own :class:`agent.runner.Runner` for one observation window, and reads their evidence
as checks, one row per endpoint and check:

- ``path.reachable``: the endpoint answers its master and media playlists (faults of class
  ``server``: refused, timed out, an HTTP error, a malformed playlist);
- ``path.fresh``: every rendition's playlist advanced while watched and nothing of class
  ``freshness`` was found (stale, segments missing, the sequence jumping or going back) —
  RFC 8216 §6.2.1: a live Media Playlist gets a new segment within 1.5 x
  EXT-X-TARGETDURATION of its previous version;
- ``path.segments``: segments download faster than real time (download time / EXTINF below 1
  for the slowest rendition, the probe's ``download_ratio``) and nothing of class
  ``performance``;
- ``path.content`` (the origin, media analysis on): the picture and the sound of a segment
  listed while watched (class ``content``: black, frozen, silent, out of sync, long GOP) —
  not only the newest at the start, which may predate what the crew just changed.

The window ends when every endpoint answered twice, each rendition advanced once and had a
segment downloaded, and the origin had a segment listed while watched analysed; at the latest 2 x the longest
target duration + 2 s after the first answer (by then a playlist that has not advanced is
stale by the probe's own rule, 1.5 x its cadence), and never later than ``observe_s``.

Status: DOWN evidence or a P1/P2 fault fails the check; a P3 fault (at risk) warns. A check
that fails because of another place (each edge answering 502 while the origin is down) says
so and gives that place's fix: the localizer's diagnosis (agent/diagnosis.py) decides which
place is the cause, the runbooks (agent/runbooks.py) what to do there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.diagnosis import Diagnoser, fault_of, is_bad
from agent.jobs import hls_jobs, media_jobs
from agent.runbooks import Runbooks
from agent.runner import Cycle, Runner
from probes.base import Evidence, ProbeResult, ProbeTarget, State
from probes.core.studio import Finding, Status
from probes.faults import CATALOG, FaultClass
from probes.net.httpfetch import Fetcher

REFRESH_SOURCE = "RFC 8216 §6.2.1: a new segment within 1.5 x EXT-X-TARGETDURATION"
SEGMENT_SOURCE = "a viewer's buffer drains when a segment downloads slower than it plays"
CONTENT_SOURCE = "probes/media.py (THRESHOLDS.md: black, frozen, silence, A/V offset, GOP)"
REACH_SOURCE = "the playlists a player loads first (RFC 8216 §4.3.4, §4.3.3)"
DEFAULT_TARGET_S = 6.0  # RFC 8216 §6.2.1 examples; Apple's authoring spec recommends 6-s segments

_CHECKS = {  # fault class -> the check its faults fail
    FaultClass.SERVER: "path.reachable",
    FaultClass.FRESHNESS: "path.fresh",
    FaultClass.PERFORMANCE: "path.segments",
    FaultClass.CONTENT: "path.content",
    FaultClass.RESOURCE: "path.reachable",
}


@dataclass(slots=True)
class _Seen:
    """What the window saw of one target (bounded: the latest result and per-rendition figures)."""

    target: ProbeTarget
    attempts: int = 0
    latest: ProbeResult | None = None
    first_answer: float | None = None
    first_seq: dict[str, float] = field(default_factory=dict)
    last_seq: dict[str, float] = field(default_factory=dict)
    ratio: dict[str, float] = field(default_factory=dict)  # slowest download_ratio seen per rendition
    target_s: float = 0.0  # the longest EXT-X-TARGETDURATION seen
    analysed: set[str] = field(default_factory=set)  # media: renditions with a segment analysed
    first_analysed: dict[str, float] = field(default_factory=dict)  # media: the first analysed segment's seq

    def advanced(self) -> bool:
        return bool(self.last_seq) and all(self.last_seq[n] > self.first_seq[n] for n in self.last_seq)

    def settled(self) -> bool:
        """Seen enough: a failure confirmed by a second attempt, or everything measured."""
        if self.latest is None or self.attempts < 2:
            return False
        if not self.latest.ok:
            return True
        if self.target.probe == "media":
            return bool(self.analysed)  # a segment listed while watched, not only the newest at the start
        return self.advanced() and set(self.ratio) >= set(self.last_seq)


class _Watch:
    """The runner's sink for the window: one :class:`_Seen` per target."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seen: dict[tuple[str, str, str, str], _Seen] = {}
        self.changed = asyncio.Event()

    def add(self, t: ProbeTarget) -> None:
        self.seen[(t.probe, t.stream, t.stage, t.component)] = _Seen(t)

    def on_cycle(self, cycle: Cycle) -> None:
        for a in cycle.attempts:
            t = a.target
            s = self.seen[(t.probe, t.stream, t.stage, t.component)]
            s.attempts += 1
            s.latest = a.result
            if a.result.ok and s.first_answer is None:
                s.first_answer = self.clock()
            figs = a.result.figures
            for group in ("renditions", "alternates"):
                for name, f in (figs.get(group) or {}).items():
                    if "last_seq" in f:
                        s.first_seq.setdefault(name, f["last_seq"])
                        s.last_seq[name] = f["last_seq"]
                    if "download_ratio" in f:
                        s.ratio[name] = max(s.ratio.get(name, 0.0), float(f["download_ratio"]))
                    s.target_s = max(s.target_s, float(f.get("target_duration_s", 0.0)))
            for e in a.result.evidence:  # media: the analysed segment's sequence number
                seq = e.figures.get("segment_seq")
                if seq is not None and e.rendition is not None:
                    first = s.first_analysed.setdefault(e.rendition, seq)
                    if seq > first:
                        s.analysed.add(e.rendition)
        self.changed.set()

    def deadline(self, start: float, observe_s: float) -> float:
        answers = [s.first_answer for s in self.seen.values() if s.first_answer is not None]
        longest = max((s.target_s for s in self.seen.values()), default=0.0) or DEFAULT_TARGET_S
        own = (min(answers) if answers else start) + 2 * longest + 2.0
        return min(start + observe_s, own)

    def settled(self) -> bool:
        return all(s.settled() for s in self.seen.values())


async def watch_paths(streams: list[Any], observe_s: float, *, clock: Callable[[], float] = time.monotonic) -> _Watch:
    """Run the origin/edge/media probes of ``streams`` until settled or the window ends."""
    jobs = [j for s in streams for j in (*hls_jobs(s), *media_jobs(s))]
    watch = _Watch(clock)
    for j in jobs:
        for t in j.targets:
            watch.add(t)
    if not jobs:
        return watch
    start = clock()
    async with Fetcher() as fetcher, Runner(jobs, [watch], http=fetcher, clock=clock):
        while not watch.settled():
            left = watch.deadline(start, observe_s) - clock()
            if left <= 0:
                break
            watch.changed.clear()
            try:
                async with asyncio.timeout(left):
                    await watch.changed.wait()  # the next cycle's results
            except TimeoutError:
                break
    return watch


def path_findings(stream: Any, watch: _Watch, runbooks: Runbooks | None = None) -> list[Finding]:
    """The path checks of one stream from what ``watch`` saw (module docstring)."""
    runbooks = runbooks or Runbooks()
    seen = [s for s in watch.seen.values() if s.target.stream == stream.name]
    evidence = [e for s in seen if s.latest is not None for e in s.latest.evidence]
    roots = Diagnoser(CATALOG).diagnose(evidence)

    def fix(e: Evidence) -> str:
        for f in roots:
            if any(x is e for x in f.all_evidence):
                hint = runbooks.hint(stream=stream.name, stage=f.stage, component=f.component,
                                     fault=str(f.fault or fault_of(e)))
                if (f.stage, f.component) != (e.stage, e.component):
                    return f"this follows from {f.stage}/{f.component} ({f.fault}): {hint}"
                return hint
        return runbooks.hint(stream=stream.name, stage=e.stage, component=e.component, fault=str(fault_of(e)))

    out: list[Finding] = []
    for s in seen:
        out += _endpoint(s, fix)
    return out


def _where(t: ProbeTarget) -> str:
    return "Origin" if t.stage == "origin" else f"Edge {t.component}"


def _endpoint(s: _Seen, fix: Callable[[Evidence], str]) -> list[Finding]:
    t, r = s.target, s.latest
    where = _where(t)
    comp = t.component
    if r is None:
        return [Finding("path.reachable", comp, Status.FAIL, f"{where} answers", "no attempt finished in the window",
                        "an answer", REACH_SOURCE, "check the URL and that the host is up", None)]
    bad: dict[str, list[Evidence]] = {}
    for e in r.evidence:
        if is_bad(e):
            bad.setdefault(_CHECKS[CATALOG[str(fault_of(e))].cls], []).append(e)
    checks = ["path.content"] if t.probe == "media" else ["path.reachable", "path.fresh", "path.segments"]
    if t.probe == "hls" and "path.content" in bad:
        checks.append("path.content")  # a content fault the playlist shows (a segment over the target duration)
    out = []
    for check in checks:
        title = {"path.reachable": f"{where} answers", "path.fresh": f"{where} playlists advance",
                 "path.segments": f"{where} segments in time", "path.content": f"{where} picture and sound"}[check]
        evs = bad.get(check)
        if evs:
            out.append(_failed(check, comp, title, evs, fix))
        else:
            out.append(_passed(check, comp, title, s, r))
    return out


def _failed(check: str, comp: str, title: str, evs: list[Evidence], fix: Callable[[Evidence], str]) -> Finding:
    def rank(e: Evidence) -> tuple[int, str]:
        return (0 if e.state is State.DOWN else 1, CATALOG[str(fault_of(e))].severity)

    worst = min(evs, key=rank)
    fault = fault_of(worst)
    failing = worst.state is State.DOWN or CATALOG[str(fault)].severity in ("P1", "P2")
    needed = {"path.reachable": "every playlist answers", "path.fresh": "every rendition advances",
              "path.segments": "download time < segment duration", "path.content": "picture and sound as sent"}[check]
    source = {"path.reachable": REACH_SOURCE, "path.fresh": REFRESH_SOURCE, "path.segments": SEGMENT_SOURCE,
              "path.content": CONTENT_SOURCE}[check]
    more = f" (+{len(evs) - 1} more)" if len(evs) > 1 else ""
    return Finding(check, comp, Status.FAIL if failing else Status.WARN, title, worst.detail + more, needed, source,
                   fix(worst), fault)


def _passed(check: str, comp: str, title: str, s: _Seen, r: ProbeResult) -> Finding:
    if check == "path.reachable":
        if not r.ok:  # a failure without evidence of its own (none known): say it, never "fine"
            return Finding(check, comp, Status.FAIL, title, r.detail or str(r.failure), "every playlist answers",
                           REACH_SOURCE, "check the URL and that the host is up", None)
        return Finding(check, comp, Status.PASS, title, f"{len(s.last_seq)} playlist(s) answered",
                       "every playlist answers", REACH_SOURCE)
    if not r.ok:
        return Finding(check, comp, Status.SKIP, title, "not measured: no answer", "", "")
    if check == "path.fresh":
        stuck = sorted(n for n in s.last_seq if s.last_seq[n] <= s.first_seq[n])
        if not s.last_seq or stuck:
            return Finding(check, comp, Status.WARN, title,
                           f"{', '.join(stuck) or 'no rendition'} not seen to advance while watched",
                           "every rendition advances", REFRESH_SOURCE,
                           "watch longer (--observe) or check the packager: the window ended first")
        return Finding(check, comp, Status.PASS, title, f"{len(s.last_seq)} rendition(s) advanced",
                       "every rendition advances", REFRESH_SOURCE)
    if check == "path.segments":
        if not s.ratio:
            return Finding(check, comp, Status.WARN, title, "no segment downloaded while watched",
                           "download time < segment duration", SEGMENT_SOURCE,
                           "watch longer (--observe): no segment finished in the window")
        name, worst = max(s.ratio.items(), key=lambda kv: kv[1])
        return Finding(check, comp, Status.PASS, title, f"slowest {name}: {worst:.2f} x its duration",
                       "download time < segment duration", SEGMENT_SOURCE, value=worst, threshold=1.0)
    if not s.analysed:
        return Finding(check, comp, Status.WARN, title, "no segment analysed while watched",
                       "picture and sound as sent", CONTENT_SOURCE,
                       "watch longer (--observe): no segment was analysed in the window")
    return Finding(check, comp, Status.PASS, title, f"{len(s.analysed)} rendition(s) analysed",
                   "picture and sound as sent", CONTENT_SOURCE)


__all__ = ["path_findings", "watch_paths"]


# ------------------------------------------------------------------ the host preflight runs on, WHIP


CLOCK_DATE_RESOLUTION_S = 1.0  # RFC 9110 §5.6.7: HTTP-date counts whole seconds


async def date_clock_finding(urls: list[str], *, timeout_s: float = 5.0,
                             wall: Callable[[], float] = time.time) -> Finding:
    """The local clock against the HTTP ``Date`` header (RFC 9110 §6.6.1) of the first of
    ``urls`` (the origin, then the edges) that answers: a coarse check (1-s resolution) for when
    no NTP server is configured. WARN above 1.5 s: latency figures (PDT against this clock) are
    off by as much."""
    from email.utils import parsedate_to_datetime

    from probes.core.redact import redact_url
    from probes.faults import Fault

    title, needed = "Clock offset (HTTP Date)", "|offset| <= 1.5 s (Date has 1-s resolution)"
    source = "RFC 9110 §6.6.1 Date; THRESHOLDS.md clock offset (< 100 ms needs preflight.ntp_server)"
    async with Fetcher() as f:
        for url in urls:
            t0 = wall()
            try:
                async with asyncio.timeout(timeout_s):
                    r = await f.get(url, max_bytes=1 << 20, keep_body=False)
            except TimeoutError:
                continue
            t1 = wall()
            date = r.headers.get("date") if r.ok else None
            try:
                server = parsedate_to_datetime(date).timestamp() if date else None
            except (TypeError, ValueError):
                server = None
            if server is None:
                continue
            # the server stamped a whole second somewhere in [t0, t1]: its clock read server .. server + 1
            offset = server + CLOCK_DATE_RESOLUTION_S / 2 - (t0 + t1) / 2
            ok = abs(offset) <= 1.5
            return Finding("host.clock", "host", Status.PASS if ok else Status.WARN, title,
                           f"{offset:+.1f} s against {redact_url(url)}", needed, source,
                           "" if ok else "this host's clock is off: enable NTP (chrony, systemd-timesyncd)",
                           None if ok else Fault.CLOCK_OFFSET, offset, 1.5)
    return Finding("host.clock", "host", Status.SKIP, title, "no origin or edge answered with a Date header",
                   needed, source, "set preflight.ntp_server for the clock check")


async def whip_findings(stream: Any) -> list[Finding]:
    """One WHIP publish attempt per ``ingest.whip`` entry (probes/whip.py), as the agent runs it."""
    from agent.jobs import webrtc_jobs

    out = []
    runner = Runner([], [])
    runbooks = Runbooks()
    for job in webrtc_jobs(stream):
        if job.probe != "whip":
            continue
        for t in job.targets:
            a = await runner.attempt(job.fn, t)
            bad = [e for e in a.result.evidence if is_bad(e)]
            title = f"Ingest {t.component} (WHIP)"
            needed, source = "the offer answered and media flowing", "RFC 9725 WHIP; probes/whip.py"
            if bad or not a.result.ok:
                e = bad[0] if bad else None
                fault = fault_of(e) if e is not None else None
                out.append(Finding("ingest.whip", t.component, Status.FAIL, title,
                                   e.detail if e is not None else a.result.detail, needed, source,
                                   runbooks.hint(stream=stream.name, stage="ingest", component=t.component,
                                                 fault=str(fault or "unreachable")), fault))
            else:
                out.append(Finding("ingest.whip", t.component, Status.PASS, title, a.result.detail, needed, source))
    return out
