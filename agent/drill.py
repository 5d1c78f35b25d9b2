"""Fault drills: ``signalpath drill --plan drill.yaml``.

A drill proves, step by step, that signalpath finds and the crew fixes each fault in time.
A step is a lab fault (injected and cleared through the lab's fault API, agent/lab/control.py)
or a timed manual step for a real pipeline ("pull camera 1 now": the operator presses Enter
when it is done, and again when it is restored). For each step the drill records, from the
running agent's API (``/api/v1/incidents``, ``/api/v1/incidents/{id}``):

- injected: when the fault began (the lab's record, or the operator's Enter);
- localized: the first incident opened after it, at the expected stage/component or not;
- response start: injection to that incident (target ``response_s``, 30 s: the crew can
  begin only once signalpath says where);
- resolved: injection to the incident's resolution after the fault is cleared; the
  locate-and-fix target is ``target_s`` (five minutes, the mission's);
- alert: whether an alert sink received the incident (``deliveries``; a pass criterion
  only with ``require_alert``).

A step passes when it was localized at the right place within ``response_s`` and resolved
within ``target_s`` (and alerted, when required). The report is HTML and JUnit XML (a CI
system's test report: one test case per step, the failure naming the step and why).
Times are epoch seconds; the agent's clock and this one are assumed the same machine or
NTP-synchronised (a drill on one host, or ``preflight`` checks the clock).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from pydantic import Field, field_validator, model_validator

from agent.errors import AgentError
from probes.base import STAGES
from probes.core.config import StrictModel
from probes.core.redact import redact_text, redact_url

RESPONSE_S = 30.0
TARGET_S = 300.0


class Expect(StrictModel):
    stage: str
    component: str = Field(min_length=1)

    @field_validator("stage")
    @classmethod
    def _a_stage(cls, v: str) -> str:
        if v not in STAGES:
            raise ValueError(f"{v!r} is not a stage of the signal path ({', '.join(STAGES)})")
        return v


class DrillStep(StrictModel):
    """One step: ``fault`` (a lab fault) or ``manual`` (what the operator does)."""

    name: str = Field(min_length=1, max_length=120)
    fault: str | None = Field(None, description="a lab fault (signalpath lab faults lists them)")
    target: str | None = Field(None, description="the lab fault's target (edge-b, 180p, encoder...)")
    params: dict[str, Any] = Field(default_factory=dict, description="the lab fault's parameters")
    manual: str | None = Field(None, description="the instruction for the operator, who presses Enter when done")
    restore: str | None = Field(None, description="manual steps: how to undo it (Enter when done)")
    expect: Expect
    hold_s: float = Field(20.0, ge=0, le=3600, description="seconds the fault lasts after it is localized")
    detect_s: float | None = Field(None, gt=0, le=3600, description="how long to wait for an incident "
                                   "(default: the plan's response_s)")

    @model_validator(mode="after")
    def _one_kind(self) -> DrillStep:
        if (self.fault is None) == (self.manual is None):
            raise ValueError("a step has either fault: (a lab fault) or manual: (an instruction), not both")
        return self


class DrillPlan(StrictModel):
    """``drill.yaml``: the agent to watch, the lab (for fault steps), the steps."""

    name: str = Field(min_length=1, max_length=120)
    agent: str = Field("http://127.0.0.1:9321", description="the running agent's address (its agent.listen)")
    lab: str | None = Field(None, description="the lab's control URL, for fault steps")
    stream: str = Field(min_length=1)
    response_s: float = Field(RESPONSE_S, gt=0, le=3600, description="injection to the incident, at most")
    target_s: float = Field(TARGET_S, gt=0, le=86_400, description="injection to resolution, at most")
    require_alert: bool = Field(False, description="a step passes only if an alert sink got its incident")
    quiet_s: float = Field(120.0, ge=0, le=3600, description="wait this long at most for no open P1/P2 first")
    steps: list[DrillStep] = Field(min_length=1)

    @field_validator("agent", "lab")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        """HOST:PORT as the agent's own ``agent.listen`` is written: http:// is meant."""
        return v if v is None or "://" in v else "http://" + v

    @model_validator(mode="after")
    def _lab_for_faults(self) -> DrillPlan:
        if any(s.fault for s in self.steps) and not self.lab:
            raise ValueError("fault steps need lab: (the lab's control URL)")
        return self


@dataclass(slots=True)
class StepResult:
    step: DrillStep
    injected_at: float
    incident: dict[str, Any] | None = None  # the first incident after the injection
    localized_s: float | None = None
    right_place: bool = False
    resolved_s: float | None = None
    alerted: bool | None = None  # None: the incident never came
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


class AgentApi:
    """The running agent's incidents over HTTP (stdlib: the drill runs where only Python is).
    A ``user:password@`` in the URL is sent as Basic auth (a read user of agent.web.basic_auth)
    and never printed."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self._auth: dict[str, str] = {}
        if parts.username is not None:
            token = base64.b64encode(f"{urllib.parse.unquote(parts.username)}:"
                                     f"{urllib.parse.unquote(parts.password or '')}".encode()).decode()
            self._auth = {"Authorization": f"Basic {token}"}
        self.timeout_s = timeout_s

    def _get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers=self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.load(r)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AgentError(f"agent {redact_url(self.url)}: {redact_text(str(getattr(exc, 'reason', exc)))}"
                             ) from None

    def incidents(self, state: str = "all") -> list[dict[str, Any]]:
        return list(self._get(f"/api/v1/incidents?state={state}"))

    def incident(self, incident_id: str) -> dict[str, Any]:
        return dict(self._get("/api/v1/incidents/" + urllib.parse.quote(incident_id)))

    def status(self) -> dict[str, Any]:
        return dict(self._get("/api/v1/status"))


def _epoch(v: str | None) -> float | None:
    return None if v is None else _dt.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


class Drill:
    """Runs a plan (the module docstring). ``inject``/``clear`` act on the lab, ``ask`` waits for
    the operator (Enter); ``clock``, ``sleep`` and ``say`` are injected for tests."""

    def __init__(self, plan: DrillPlan, *, api: AgentApi | None = None, ask: Callable[[str], object] = input,
                 say: Callable[[str], None] = print, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.5) -> None:
        self.plan = plan
        self.api = api or AgentApi(plan.agent)
        self.ask, self.say, self.clock, self.sleep, self.poll_s = ask, say, clock, sleep, poll_s

    def check(self) -> list[str]:
        """What is wrong with the plan against the running agent and lab, before anything is
        injected: the stream the agent watches, each lab fault and target the lab knows."""
        from agent.lab import control

        problems = []
        try:
            status = self.api.status()
        except AgentError as exc:
            return [str(exc)]
        streams = [s.get("name") for s in status.get("streams", [])]
        if self.plan.stream not in streams:
            problems.append(f"stream: the agent does not watch {self.plan.stream!r} (it watches: "
                            f"{', '.join(map(str, streams)) or 'nothing'})")
        if any(s.fault for s in self.plan.steps):
            assert self.plan.lab is not None
            try:
                known = {c["name"]: c.get("targets", []) for c in control.catalog(self.plan.lab)}
            except control.LabControlError as exc:
                return [*problems, f"lab {redact_url(self.plan.lab)}: {exc}"]
            for i, st in enumerate(self.plan.steps):
                if st.fault is None:
                    continue
                if st.fault not in known:
                    problems.append(f"steps[{i}].fault: the lab has no fault {st.fault!r} (signalpath lab faults "
                                    "lists them)")
                elif st.target is not None and known[st.fault] and st.target not in known[st.fault]:
                    problems.append(f"steps[{i}].target: {st.target!r} is not a target of {st.fault} "
                                    f"({', '.join(known[st.fault])})")
        return problems

    def run(self) -> list[StepResult]:
        """Every step in turn; a step's lab fault is cleared however the step ends (Ctrl-C too)."""
        out: list[StepResult] = []
        for i, s in enumerate(self.plan.steps, 1):
            out.append(self.run_step(i, s))
        return out

    def _stream_incidents(self, state: str = "all") -> list[dict[str, Any]]:
        return [i for i in self.api.incidents(state) if i["stream"] == self.plan.stream]

    def _wait_quiet(self) -> None:
        deadline = self.clock() + self.plan.quiet_s
        said = False
        while self.clock() < deadline:
            still = [i for i in self._stream_incidents("open") if i["severity"] != "P3"]
            if not still:
                return
            if not said:
                self.say(f"  waiting (at most {self.plan.quiet_s:g} s) for {len(still)} open P1/P2 incident(s) to "
                         "resolve before the next step")
                said = True
            self.sleep(self.poll_s)
        self.say(f"  (still an open P1/P2 after {self.plan.quiet_s:g} s: going on)")

    def run_step(self, n: int, step: DrillStep) -> StepResult:
        from agent.lab import control

        self._wait_quiet()
        before = {i["id"] for i in self._stream_incidents()}
        self.say(f"step {n}: {step.name}")
        lab_id = None
        if step.fault:
            assert self.plan.lab is not None
            # a deadline on the fault itself: a drill stopped mid-step (Ctrl-C) leaves no lab faulted for long
            rec = control.inject(self.plan.lab, step.fault, step.target, (step.detect_s or self.plan.response_s)
                                 + step.hold_s + self.plan.target_s, step.params or None)
            lab_id, injected = rec["id"], float(rec["started_at"])
        else:
            self.ask(f"  NOW: {step.manual} — press Enter when done ")
            injected = self.clock()
        try:
            return self._follow(step, injected, before, lab_id)
        finally:
            if lab_id is not None:
                with contextlib.suppress(control.LabControlError):
                    control.clear(self.plan.lab or "", lab_id)  # already cleared: the lab says so, nothing to do

    def _follow(self, step: DrillStep, injected: float, before: set[str], lab_id: int | None) -> StepResult:
        from agent.lab import control

        res = StepResult(step, injected)
        detect = step.detect_s or self.plan.response_s
        # the first incident after the injection; wrong place is recorded, and the wait goes on a
        # little for the right one (the detect deadline)
        found_at = None
        while self.clock() < injected + detect:
            new = sorted((i for i in self._stream_incidents() if i["id"] not in before),
                         key=lambda i: i["localized_at"])
            if new:
                if res.incident is None:
                    res.incident = new[0]
                right = [i for i in new if (i["stage"], i["component"]) == (step.expect.stage, step.expect.component)]
                if right:
                    res.incident, res.right_place = right[0], True
                    break
            self.sleep(self.poll_s)
        inc = res.incident
        if inc is not None:
            localized = _epoch(inc["localized_at"]) or injected
            res.localized_s = max(0.0, localized - injected)
            found_at = localized
            self.say(f"  localized {inc['stage']}/{inc['component']} {inc['fault']} after {res.localized_s:.1f} s")
        else:
            self.say(f"  nothing localized within {detect:g} s")
        # the fault lasts hold_s after it was found (or after the wait), then is undone
        self.sleep(max(0.0, (found_at or self.clock()) + step.hold_s - self.clock()))
        if step.fault:
            assert self.plan.lab is not None
            control.clear(self.plan.lab, lab_id)
        else:
            self.ask(f"  RESTORE: {step.restore or 'undo the step'} — press Enter when done ")
        if inc is not None:
            deadline = injected + self.plan.target_s
            while True:
                detail = self.api.incident(inc["id"])
                if detail.get("resolved_at"):
                    res.resolved_s = max(0.0, (_epoch(detail["resolved_at"]) or injected) - injected)
                    break
                if self.clock() >= deadline:
                    break
                self.sleep(self.poll_s)
            res.alerted = any(d.get("fired_at") for d in detail.get("deliveries", []))
        self._judge(res, detect)
        self.say("  " + ("PASS" if res.passed else "FAIL: " + "; ".join(res.problems)))
        return res

    def _judge(self, res: StepResult, detect: float) -> None:
        step, plan = res.step, self.plan
        want = f"{step.expect.stage}/{step.expect.component}"
        inc = res.incident
        if inc is None:
            res.problems.append(f"not detected: no incident within {detect:g} s")
            return
        if not res.right_place:
            res.problems.append(f"localized at {inc['stage']}/{inc['component']}, expected {want}")
        if res.localized_s is not None and res.localized_s > plan.response_s:
            res.problems.append(f"response start {res.localized_s:.1f} s > {plan.response_s:g} s")
        if res.resolved_s is None:
            res.problems.append(f"not resolved within {plan.target_s:g} s of the injection")
        elif res.resolved_s > plan.target_s:
            res.problems.append(f"located and fixed in {res.resolved_s:.0f} s > {plan.target_s:g} s")
        if plan.require_alert and not res.alerted:
            res.problems.append("no alert was delivered")


def junit_xml(plan: DrillPlan, results: list[StepResult]) -> str:
    """JUnit XML: one testsuite (the plan), one testcase per step; a failure names the step and why."""
    suite = ET.Element("testsuite", name=plan.name, tests=str(len(results)),
                       failures=str(sum(not r.passed for r in results)), errors="0",
                       time=f"{sum((r.resolved_s or r.localized_s or 0.0) for r in results):.1f}")
    for i, r in enumerate(results, 1):
        case = ET.SubElement(suite, "testcase", classname=f"drill.{plan.stream}", name=f"step {i}: {r.step.name}",
                             time=f"{(r.resolved_s or r.localized_s or 0.0):.1f}")
        if not r.passed:
            fail = ET.SubElement(case, "failure", message=f"step {i} ({r.step.name}): " + "; ".join(r.problems))
            fail.text = json.dumps(_row(r), indent=1)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def _row(r: StepResult) -> dict[str, Any]:
    inc = r.incident or {}
    return {"step": r.step.name, "kind": "lab fault" if r.step.fault else "manual",
            "fault": r.step.fault or r.step.manual, "expected": f"{r.step.expect.stage}/{r.step.expect.component}",
            "incident": inc.get("id"), "localized_at": f"{inc['stage']}/{inc['component']}" if inc else None,
            "incident_fault": inc.get("fault"), "right_place": r.right_place, "response_s": r.localized_s,
            "resolved_s": r.resolved_s, "alerted": r.alerted, "passed": r.passed, "problems": r.problems}


def report_html(plan: DrillPlan, results: list[StepResult], started: float) -> str:
    """The drill report: verdict, one row per step (self-contained, no network assets)."""
    e = html.escape
    passed = sum(r.passed for r in results)
    stamp = _dt.datetime.fromtimestamp(started, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def secs(v: float | None) -> str:
        return "—" if v is None else f"{v:.1f} s"

    rows = "".join(
        f"<tr class='{'pass' if r.passed else 'fail'}'><td>{i}</td><td>{e(r.step.name)}</td>"
        f"<td>{e(_row(r)['fault'] or '')}</td><td>{e(_row(r)['expected'])}</td>"
        f"<td>{e(_row(r)['localized_at'] or 'nothing')}</td><td>{secs(r.localized_s)}</td><td>{secs(r.resolved_s)}</td>"
        f"<td>{'—' if r.alerted is None else 'yes' if r.alerted else 'no'}</td>"
        f"<td>{'PASS' if r.passed else 'FAIL: ' + e('; '.join(r.problems))}</td></tr>"
        for i, r in enumerate(results, 1))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{e(plan.name)}: drill</title><style>"
        "body{font:15px/1.45 system-ui,sans-serif;max-width:1000px;margin:0 auto;padding:12px}"
        "table{border-collapse:collapse;width:100%;font-size:.85em}td,th{border-bottom:1px solid #ddd;padding:4px;"
        "text-align:left;vertical-align:top}.pass td:last-child{color:#1e7a44}.fail td:last-child{color:#b3261e;"
        "font-weight:600}.verdict{font-size:1.2em;font-weight:600}</style></head><body>"
        f"<h1>{e(plan.name)}</h1><p>{e(stamp)} · stream {e(plan.stream)} · targets: response start ≤ "
        f"{plan.response_s:g} s, located and fixed ≤ {plan.target_s:g} s"
        f"{', alert required' if plan.require_alert else ''}</p>"
        f"<p class='verdict' id='verdict'>{passed} of {len(results)} steps passed</p>"
        "<table><tr><th>#</th><th>step</th><th>fault</th><th>expected</th><th>localized</th><th>response</th>"
        f"<th>resolved</th><th>alert</th><th>verdict</th></tr>{rows}</table></body></html>")


def load_plan(path: str) -> DrillPlan:
    """``path`` as a :class:`DrillPlan`; ConfigError naming each problem's place."""
    from pathlib import Path

    from pydantic import ValidationError

    from agent.config import load_yaml
    from agent.errors import ConfigError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [("", f"cannot read: {exc.__class__.__name__}: {exc}")]) from None
    data = load_yaml(text, path)
    try:
        return DrillPlan.model_validate(data)
    except ValidationError as exc:
        problems = [(".".join(str(x) for x in err["loc"]), str(err["msg"]).removeprefix("Value error, "))
                    for err in exc.errors()]
        raise ConfigError(path, problems) from None


def cmd_drill(args: Any) -> int:
    import sys
    from pathlib import Path

    from agent.errors import ConfigError

    try:
        plan = load_plan(args.plan)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    update = {k: v for k, v in (("agent", args.agent), ("lab", args.lab)) if v}
    if update:
        plan = DrillPlan.model_validate({**plan.model_dump(), **update})
    started = time.time()
    drill = Drill(plan)
    problems = drill.check()
    if problems:
        print(f"signalpath drill: {args.plan}: nothing was injected:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    print(f"drill {plan.name!r}: {len(plan.steps)} step(s) on stream {plan.stream!r}, "
          f"agent {redact_url(plan.agent)}")
    from agent.lab.control import LabControlError

    try:
        results = drill.run()
    except (AgentError, LabControlError) as exc:
        print(f"signalpath drill: stopped: {exc}", file=sys.stderr)
        return 2
    except EOFError:
        print("signalpath drill: no operator input (stdin closed) for a manual step", file=sys.stderr)
        return 2
    Path(args.output).write_text(report_html(plan, results, started), encoding="utf-8")
    Path(args.junit).write_text(junit_xml(plan, results), encoding="utf-8")
    passed = sum(r.passed for r in results)
    print(f"{passed} of {len(results)} steps passed; report {args.output}, JUnit {args.junit}")
    for i, r in enumerate(results, 1):
        if not r.passed:
            print(f"FAILED step {i} ({r.step.name}): " + "; ".join(r.problems))
    return 0 if passed == len(results) else 1


def register(sub: Any) -> None:
    import argparse

    p = sub.add_parser(
        "drill", help="run a fault drill and write its report (HTML and JUnit XML)",
        description="Run the fault drill of a plan against a running agent: each step injects a lab fault "
                    "(through the lab's fault API) or asks the operator to do something on a real pipeline "
                    "(Enter when done, Enter again once restored), then records when signalpath localized it, "
                    "where, when it resolved and whether an alert went out. A step passes when found at the "
                    "expected stage/component within response_s (30 s) and located-and-fixed within target_s "
                    "(5 min). Exit status 0 when every step passed, 1 when one failed, 2 for a bad plan or an "
                    "unreachable agent. examples/drill-lab-quarterly.yaml is the lab's full-link plan.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples (with `signalpath demo` running: the lab and an agent watching it):\n"
               "  signalpath drill --plan examples/drill-lab-quarterly.yaml -o drill.html --junit drill.xml\n"
               "  signalpath drill --plan studio-drill.yaml --agent http://10.0.0.5:9321")
    p.add_argument("--plan", required=True, metavar="FILE", help="the drill plan (YAML)")
    p.add_argument("--agent", metavar="URL", help="the agent's address (overrides the plan's agent:)")
    p.add_argument("--lab", metavar="URL", help="the lab's control URL (overrides the plan's lab:)")
    p.add_argument("-o", "--output", default="drill.html", metavar="FILE", help="HTML report (default drill.html)")
    p.add_argument("--junit", default="drill.xml", metavar="FILE", help="JUnit XML report (default drill.xml)")
    p.set_defaults(func=cmd_drill)
