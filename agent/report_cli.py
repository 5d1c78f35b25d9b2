"""``signalpath report``: the post-broadcast report of a broadcast or a time window.

Reads the agent's incident database (incidents, complaints, virtual viewers, and the history
of agent/history.py) or, with ``report.prometheus``, the figures from that Prometheus;
writes one self-contained HTML file (agent/report_html.py) or prints JSON. :func:`build`
is shared with the status page's ``/report``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.errors import AgentError, ConfigError
from agent.history import HistorySettings
from agent.report import Report, ReportInput, ReportSettings, analyse
from agent.schedule import Broadcast, _parse_time

EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2
SETTINGS_ENV = "SIGNALPATH_REPORT_SETTINGS"  # JSON {"report": ..., "history": ...} from the agent (serve)


@dataclass(slots=True)
class Window:
    title: str
    start: float
    end: float
    streams: list[str] | None  # None: every stream with history or incidents in the window


def build(db: str, window: Window, settings: ReportSettings, step_s: float) -> Report:
    """The report of ``window`` from the database ``db`` (and ``settings.prometheus`` when set).

    Raises AgentError (agent/report_prom.ReportSourceError) when the Prometheus cannot answer."""
    from agent.history import HistoryStore
    from agent.incidents import IncidentStore

    store = IncidentStore(db)
    history = HistoryStore(db)
    try:
        streams = window.streams
        if streams is not None:
            known = set(history.streams()) | set(store.streams())
            unknown = [s for s in streams if s not in known]
            if unknown and known:
                raise AgentError(f"no stream {', '.join(map(repr, unknown))} in {db} (it has: {', '.join(sorted(known))})")
        if streams is None:
            found = {s.stream for s in history.steps(window.start, window.end)}
            found |= {i.stream for i in store.overlapping(window.start, window.end)}
            streams = sorted(found)
        incidents = store.overlapping(window.start, window.end, streams=streams)
        complaints = [c for c in store.complaints_between(window.start, window.end) if c.stream in streams]
        sessions = [s for s in history.sessions(window.start, window.end) if s.stream in streams]
        if settings.prometheus:
            from agent.report_prom import prometheus_steps

            steps = prometheus_steps(settings.prometheus, streams, window.start, window.end, step_s,
                                     timeout_s=settings.timeout_s) if streams else []
            source = "Prometheus (query_range)"
        else:
            steps = [s for s in history.steps(window.start, window.end) if s.stream in streams]
            source = "the agent's history"
    finally:
        history.close()
        store.close()
    return analyse(ReportInput(
        window.title, window.start, window.end, streams, steps, incidents, complaints, sessions, source,
        objective=settings.objective, target_s=settings.target_s, startup_target_s=settings.startup_target_s,
        rebuffer_target=settings.rebuffer_target))


def _time(text: str, now: float) -> float:
    """RFC 3339, epoch seconds, or ``-1d`` / ``-2h`` / ``-30m`` / ``-90s`` / ``now``."""
    t = text.strip()
    if t == "now":
        return now
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    if t.startswith("-") and t[-1:] in units and t[1:-1].replace(".", "", 1).isdigit():
        return now - float(t[1:-1]) * units[t[-1]]
    try:
        return _parse_time(float(t) if t.replace(".", "", 1).isdigit() else t)
    except ValueError as exc:  # its message names the value
        raise argparse.ArgumentTypeError(f"{exc}; or epoch seconds, or -1d / -2h / -30m / now") from None


def cmd_report(args: argparse.Namespace) -> int:
    now = time.time()
    sections: dict[str, Any] = {}
    if args.config:
        from agent.config import config_sections

        try:
            sections = config_sections(args.config, ("broadcasts", "report", "history"))
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE
    db = args.db or sections.get("incidents_path")
    if not db or not Path(db).expanduser().is_file():
        where = f"--db {db}" if args.db else f"incidents.path of {args.config} ({db})"
        print(f"signalpath report: {where}: no such file (the agent creates it when it first runs)", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = ReportSettings.model_validate(sections.get("report") or {})
        history = HistorySettings.model_validate(sections.get("history") or {})
        broadcasts = [Broadcast.model_validate(b) for b in sections.get("broadcasts") or []]
    except ValueError as exc:
        print(f"signalpath report: {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    given_text = args.settings or os.environ.get(SETTINGS_ENV)
    if given_text:  # the agent's own report: and history: (serve), never on a command line others can read
        try:
            given = json.loads(given_text)
            settings = ReportSettings.model_validate(given.get("report") or {})
            history = HistorySettings.model_validate(given.get("history") or {})
        except ValueError as exc:
            print(f"signalpath report: --settings: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.prometheus:
        try:
            settings = ReportSettings.model_validate({**settings.model_dump(), "prometheus": args.prometheus})
        except ValidationError as exc:
            why = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            print(f"signalpath report: --prometheus {args.prometheus!r}: {why}", file=sys.stderr)
            return EXIT_USAGE
    if args.broadcast:
        from agent.schedule_book import stored_broadcasts

        known = broadcasts + stored_broadcasts(db)
        b = next((x for x in known if x.name == args.broadcast), None)
        if b is None:
            names = ", ".join(repr(x.name) for x in known) or "none"
            print(f"signalpath report: --broadcast {args.broadcast!r}: no such broadcast (broadcasts: {names})",
                  file=sys.stderr)
            return EXIT_USAGE
        if b.start >= now:
            print(f"signalpath report: broadcast {b.name!r} has not begun", file=sys.stderr)
            return EXIT_NOTHING
        window = Window(b.name, b.start, min(b.end, now), args.stream or list(b.streams))
    else:
        start = _time(args.start, now)
        end = _time(args.end, now) if args.end else now
        if end <= start:
            print("signalpath report: --to must be after --from", file=sys.stderr)
            return EXIT_USAGE
        window = Window(args.title or "signalpath report", start, end, args.stream or None)
    try:
        report = build(db, window, settings, history.step_s)
    except AgentError as exc:
        print(f"signalpath report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        text = json.dumps(report.to_json(), indent=2)
        if args.output and args.output != "-":
            Path(args.output).write_text(text + "\n")
        else:
            print(text)
        return EXIT_OK
    from agent.report_html import render

    page = render(report)
    if args.output == "-":
        sys.stdout.write(page)
        return EXIT_OK
    out = Path(args.output or "report.html")
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"signalpath report: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{out}: {report.summary}")
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write the post-broadcast report (HTML with plots, or JSON)",
        description="The post-broadcast report of a broadcast (--broadcast NAME, from the config's broadcasts or "
                    "those added through the API) or of a time window (--from, --to): a plain-words summary; the "
                    "signal path as swimlanes over time with the incidents; stage latency and glass-to-glass; "
                    "each edge's segment download ratio; availability against the objective; time to localize "
                    "and resolve each incident against the five-minute target; fault and complaint types; the "
                    "virtual viewers' funnel. One self-contained HTML file (no network assets: it opens offline, "
                    "prints, and reads on a phone). Figures come from the agent's own history (history: in the "
                    "config) or, with report.prometheus / --prometheus, from that Prometheus.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  signalpath report -c signalpath.yaml --broadcast 'Evening news' -o news.html\n"
               "  signalpath report -c signalpath.yaml --from=-2h --stream main --json\n"
               "  signalpath report --db /var/lib/signalpath/incidents.db --from 2026-12-01T19:00:00Z "
               "--to 2026-12-01T21:00:00Z -o report.html")
    src = p.add_argument_group("where the data is (one at least)")
    src.add_argument("-c", "--config", metavar="FILE", help="the agent's YAML config (incidents.path, broadcasts, "
                                                             "report:, history:)")
    src.add_argument("--db", metavar="FILE", help="the incident database itself (never created)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--broadcast", metavar="NAME", help="a scheduled broadcast: its streams, start to end (or now)")
    what.add_argument("--from", dest="start", metavar="TIME",
                      help="window start: RFC 3339 (2026-12-01T19:00:00Z), epoch seconds, or --from=-1d / -2h / -30m "
                           "(with '=': a value starting with - is read as an option otherwise)")
    p.add_argument("--to", dest="end", metavar="TIME", help="window end (default now); same forms as --from")
    p.add_argument("--stream", action="append", metavar="NAME",
                   help="only this stream (repeat for more; default: the broadcast's, or every stream seen)")
    p.add_argument("--title", help="the report's title for a --from window")
    p.add_argument("--prometheus", metavar="URL", help="read the figures from this Prometheus (overrides "
                                                        "report.prometheus)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="where to write (default report.html; - for stdout; with --json, stdout)")
    p.add_argument("--settings", help=argparse.SUPPRESS)  # the agent's report:/history: as JSON (serve)
    p.add_argument("--json", action="store_true", help="the report's figures as JSON")
    p.set_defaults(func=_checked)


def _checked(args: argparse.Namespace) -> int:
    if not args.config and not args.db:
        print("signalpath report: give -c CONFIG or --db FILE (where the agent keeps its incidents)", file=sys.stderr)
        return EXIT_USAGE
    if args.end and not args.start:
        print("signalpath report: --to goes with --from", file=sys.stderr)
        return EXIT_USAGE
    try:
        return cmd_report(args)
    except argparse.ArgumentTypeError as exc:
        print(f"signalpath report: {exc}", file=sys.stderr)
        return EXIT_USAGE


REPORT_TIMEOUT_S = 120.0


async def serve(agent: Any, query: Mapping[str, str], streams: list[str]) -> tuple[int, str, bytes]:
    """``GET /report`` and ``/api/v1/report``: (status, content type, body).

    ``broadcast=NAME`` or ``from=T[&to=T]`` (RFC 3339 or epoch seconds), ``stream=S``
    (repeatable), ``format=json``. Built by a ``signalpath report`` child process with a deadline
    (:data:`REPORT_TIMEOUT_S`): plotting a day of history takes seconds of CPU that the
    agent's probes must not wait for (one GIL); one report at a time."""
    import asyncio

    def error(status: int, text: str) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps({"error": text}).encode()

    now = agent.wall()
    if query.get("broadcast"):
        b = agent.schedule.by_name(query["broadcast"])
        if b is None:
            names = ", ".join(x.name for x in agent.schedule.broadcasts) or "none"
            return error(404, f"no such broadcast {query['broadcast'][:80]!r} (broadcasts: {names[:400]})")
        if b.start >= now:
            return error(409, f"broadcast {b.name!r} has not begun")
        title, start, end, chosen = b.name, b.start, min(b.end, now), streams or list(b.streams)
    elif query.get("from"):
        try:
            start = _time(query["from"], now)
            end = _time(query["to"], now) if query.get("to") else now
        except argparse.ArgumentTypeError as exc:
            return error(400, str(exc))
        if end <= start:
            return error(400, "to must be after from")
        title, chosen = query.get("title", "signalpath report")[:120], streams
    else:
        return error(400, "give broadcast=NAME, or from=TIME (and to=TIME): RFC 3339, epoch seconds, or -2h / -30m")
    cfg = agent.config
    argv = [sys.executable, "-m", "agent.cli", "report", "--db", str(cfg.incidents.path), "--from", repr(start),
            "--to", repr(end), "--title", title, "-o", "-"]
    # report.prometheus may carry a password: in the child's environment, not its command line (ps)
    env = {**os.environ, SETTINGS_ENV: json.dumps({"report": cfg.report.model_dump(),
                                                   "history": cfg.history.model_dump()})}
    for s in chosen:
        argv += ["--stream", s]
    if query.get("format") == "json":
        argv.append("--json")
    try:
        async with asyncio.timeout(REPORT_TIMEOUT_S), agent.report_lock:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, env=env)
            try:
                out, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    except TimeoutError:
        return error(503, f"the report took over {REPORT_TIMEOUT_S:g} s (or another is being built): try a "
                          "shorter window, or signalpath report on the command line")
    if proc.returncode != 0:
        return error(500, err.decode(errors="replace").strip()[-500:] or f"report exited {proc.returncode}")
    kind = "application/json" if query.get("format") == "json" else "text/html"
    return 200, kind, out
