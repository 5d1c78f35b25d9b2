"""``signalpath incidents``: the incident history in the terminal, and the most frequent faults."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ConfigError
from agent.localize import rfc3339

if TYPE_CHECKING:
    from agent.incidents import IncidentStore



def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a positive number (at least 1 incident)")
    return n

def _ago(ts: float, now: float) -> str:
    s = max(0, int(now - ts))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def _span(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h {s % 3600 // 60} min"


def store_path(args: argparse.Namespace, command: str) -> tuple[str | None, int]:
    """The incident database a read command opens (``--db`` or the config's ``incidents.path``),
    or None and the exit code after saying why. Reading never creates it: an empty database
    there would hide a typo in the path."""
    from agent.config import incidents_path

    try:
        path = args.db or incidents_path(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None, 2
    if not Path(path).expanduser().is_file():
        if args.db:
            print(f"signalpath {command}: --db {path}: no such file (the agent writes to incidents.path in "
                  "its config; give that file, or -c CONFIG)", file=sys.stderr)
            return None, 2
        print(f"signalpath {command}: no incident database at {path} yet: the agent creates it when it "
              f"first runs with {args.config}", file=sys.stderr)
        return None, 1
    return path, 0


def cmd_incidents(args: argparse.Namespace) -> int:
    from agent.incidents import IncidentStore

    path, rc = store_path(args, "incidents")
    if path is None:
        return rc
    store = IncidentStore(path)
    try:
        if args.show:
            return _show(store, args.show, args.json)
        incidents = store.list(args.state, limit=args.limit)
        counts = store.counts_by_fault()
    finally:
        store.close()
    if args.json:
        print(json.dumps({"incidents": [i.to_api() for i in incidents], "counts_by_fault": counts}, indent=2))
        return 0
    now = time.time()
    if not incidents:
        print(f"no {args.state if args.state != 'all' else ''} incidents in {path}".replace("  ", " "))
    for i in incidents:
        state = "OPEN    " if i.resolved_at is None else "resolved"
        took = f"localized in {i.time_to_localize_s:.1f} s"
        print(f"{state} {i.severity} {i.stream} {i.stage}/{i.component} {i.fault} — since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(i.started_at))} ({_ago(i.started_at, now)}), "
              f"{took}")
        print(f"         {i.summary}")
        ended = "" if i.resolved_at is None else (
            f"; resolved {time.strftime('%H:%M:%S', time.localtime(i.resolved_at))}, lasted "
            f"{_span(i.resolved_at - i.started_at)}")
        print(f"         id {i.id}{ended} (details: signalpath incidents --show {i.id})")
        if i.resolved_at is None and i.runbook:
            print(f"         do: {i.runbook}")
    if counts:
        print("\nmost frequent faults:")
        for fault, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:5d}  {fault}")
    return 0


def _show(store: IncidentStore, incident_id: str, as_json: bool) -> int:
    """One incident with its timeline (every state change the store kept)."""
    inc = store.get(incident_id)
    if inc is None:
        print(f"no incident {incident_id!r} in {store.path}", file=sys.stderr)
        return 1
    changes = store.timeline(incident_id)
    if as_json:
        print(json.dumps({"incident": inc.to_api(), "timeline": [
            {**c, "at": rfc3339(c["at"])} for c in changes]}, indent=2))
        return 0
    print(f"{inc.id}  {inc.severity} {inc.stream} {inc.stage}/{inc.component} {inc.fault}")
    print(f"  {inc.summary}")
    if inc.runbook:
        print(f"  do: {inc.runbook}")
    print("timeline:")
    for c in changes:
        why = f"  ({c['reason']})" if c["reason"] else ""
        print(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(c['at']))}  {c['kind']:<8} {c['severity']}{why}")
    if inc.related:
        print("related (a different fault at the same place, open when it opened or just before):")
        for rid in inc.related:
            other = store.get(rid)
            what = (f"{other.severity} {other.fault}, {'open' if other.open else 'resolved'}"
                    if other is not None else "no longer in the store")
            print(f"  {rid}  {what}")
    print("evidence:")
    for line in inc.evidence:
        print(f"  {line}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "incidents", help="list incidents (open, resolved, all) and the most frequent faults",
        description="List the incidents the agent stored (SQLite at incidents.path in the config), newest first, "
                    "with where, what, since when and the runbook line; then counts per fault type.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  signalpath incidents -c signalpath.yaml --state open\n"
               "  signalpath incidents -c signalpath.yaml --show main-3f2a9c0d1e2b4f56")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", metavar="FILE", help="the agent's YAML config (reads incidents.path)")
    src.add_argument("--db", metavar="FILE", help="the incident database file itself (never created: it must exist)")
    p.add_argument("--state", choices=["open", "resolved", "all"], default="all",
                   help="which incidents: still open, resolved, or all (default all)")
    p.add_argument("--limit", type=_positive, default=50, metavar="N",
                   help="at most N incidents, newest first (default 50)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--show", metavar="ID", help="one incident with its timeline (opened, escalations, resolved, "
                                                "and why when the agent closed it: 'removed from config')")
    p.set_defaults(func=cmd_incidents)
