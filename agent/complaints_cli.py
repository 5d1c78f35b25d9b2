"""``signalpath complaint add`` (to a running agent) and ``signalpath complaints`` (the stored list).

``complaint add`` posts to the agent's ``POST /api/v1/complaints`` — only the running agent
knows what it sees now, which is what a complaint is judged against. With ``--user`` the
password comes from ``$SIGNALPATH_PASSWORD`` or is asked (never an argument: it would sit
in the shell history and the process list). ``complaints`` reads the incident database
like ``signalpath incidents`` does (``-c CONFIG`` or ``--db FILE``), newest first.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.request

from agent.complaints import LABELS, ComplaintType
from probes.core.redact import redact_url


def cmd_complaint_add(args: argparse.Namespace) -> int:
    body = {k: v for k, v in {"stream": args.stream, "type": args.type, "edge": args.edge, "region": args.region,
                              "device": args.device, "player": args.player, "note": args.note}.items()
            if v is not None}
    base = args.agent if "://" in args.agent else "http://" + args.agent  # host:port alone is fine
    url = base.rstrip("/") + "/api/v1/complaints"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if args.user:
        password = os.environ.get("SIGNALPATH_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
        token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=args.timeout) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            why = json.load(exc).get("error") or exc.reason
        except ValueError:
            why = exc.reason
        print(f"signalpath complaint add: the agent at {redact_url(url)} refused it ({exc.code}): {why}",
              file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"signalpath complaint add: cannot reach the agent at {redact_url(url)}: {reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(_line(answer))
    return 0


def _line(c: dict) -> str:
    where = f" via {c['edge']}" if c.get("edge") else ""
    why = f"explained by incident {c['explained_by']}" if c.get("explained_by") else "unexplained"
    cause = next((i for i in (c.get("seen") or {}).get("incidents", []) if i.get("id") == c.get("explained_by")), None)
    if cause is not None:
        why += f" ({cause['severity']} {cause['stage']}/{cause['component']} {cause['fault']}" + (
            ", open)" if cause.get("open") else ", resolved shortly before)")
    return f"{c['id']}  {c['stream']}{where}  {c.get('label', c['type'])}: {why}"


def cmd_complaints(args: argparse.Namespace) -> int:
    from agent.incidents import IncidentStore
    from agent.incidents_cli import store_path

    path, rc = store_path(args, "complaints")
    if path is None:
        return rc
    store = IncidentStore(path)
    try:
        found = store.complaints(stream=args.stream, limit=args.limit)
    finally:
        store.close()
    if args.type:
        found = [c for c in found if c.type == args.type]
    if args.json:
        print(json.dumps([c.to_api() for c in found], indent=2))
        return 0
    if not found:
        print(f"no complaints in {path}")
        return 0
    for c in found:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.at))
        print(f"{when}  {_line(c.to_api())}")
        if c.note:
            print(f"           {c.note}")
    counts: dict[str, list[int]] = {}
    for c in found:
        n = counts.setdefault(LABELS[c.type], [0, 0])
        n[0 if c.explained_by else 1] += 1
    print("\nby type (explained / unexplained):")
    for label, (ex, un) in sorted(counts.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {ex + un:5d}  {label} ({ex} / {un})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    types = [t.value for t in ComplaintType]
    kinds = ", ".join(f"{t.value} ({LABELS[t]})" for t in ComplaintType)
    p = sub.add_parser(
        "complaint", help="record a viewer complaint with the running agent",
        description="Record a viewer complaint (tech support). The running agent stores it with what it sees "
                    "now — open incidents, stage states — and says which incident explains it, or that none "
                    f"does. Types: {kinds}. Needs a write user (agent.web.basic_auth.write) or "
                    "complaints.enabled: true in the agent's config.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  signalpath complaint add --stream main --type stutter --edge edge-b "
               "--region 'Lyon' --note 'buffering every minute since 20:05'")
    add_sub = p.add_subparsers(dest="action", metavar="add", required=True)
    a = add_sub.add_parser("add", help="record one complaint",
                           description="Record one complaint with the agent at --agent.")
    a.add_argument("--agent", default="http://127.0.0.1:9321", metavar="URL",
                   help="the agent's address, its agent.listen (http://HOST:PORT, or HOST:PORT; default "
                        "http://127.0.0.1:9321)")
    a.add_argument("--stream", required=True, help="the stream's name in the agent's config")
    a.add_argument("--type", required=True, choices=types, help="what the viewer says")
    a.add_argument("--edge", help="the CDN edge the viewer used, when known (a configured edge name)")
    a.add_argument("--region", help="the viewer's region")
    a.add_argument("--device", help="the viewer's device (phone, TV, ...)")
    a.add_argument("--player", help="the viewer's player or app")
    a.add_argument("--note", help="what the viewer said, in a sentence (at most 500 characters are kept)")
    a.add_argument("--user", help="a write user of agent.web.basic_auth (password from $SIGNALPATH_PASSWORD "
                                  "or asked)")
    a.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the agent (default 10)")
    a.add_argument("--json", action="store_true", help="print the stored complaint as JSON")
    a.set_defaults(func=cmd_complaint_add)

    q = sub.add_parser(
        "complaints", help="list recorded viewer complaints, explained or not",
        description="List the viewer complaints the agent stored (incidents.path in the config), newest first, "
                    "each with the incident that explains it or 'unexplained'; then counts per type.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  signalpath complaints -c signalpath.yaml --stream main")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", metavar="FILE", help="the agent's YAML config (reads incidents.path)")
    src.add_argument("--db", metavar="FILE", help="the incident database file itself (never created)")
    q.add_argument("--stream", help="only this stream")
    q.add_argument("--type", choices=types, help="only this type")
    q.add_argument("--limit", type=int, default=100, metavar="N", help="at most N, newest first (default 100)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_complaints)
