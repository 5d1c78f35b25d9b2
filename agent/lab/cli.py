"""``signalpath lab ...``: run the embedded lab, inject and list faults.

``register(subparsers)`` adds the ``lab`` command to the main parser; every leaf sets
``func(args) -> int`` (exit code: 0 ok, 1 runtime failure, 2 a bad request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from .control import DEFAULT_CONTROL_PORT, ENV_CONTROL_URL, clear, default_control_url, inject, list_faults
from .errors import LabControlError, LabError
from .faults import CATALOG


def _fault_table() -> str:
    """Each lab fault: the stage it breaks, what it targets, what it does, its parameters."""
    lines = ["faults (stage, --target, what it does; --param KEY=VALUE default [range]):"]
    for name in sorted(CATALOG):
        spec = CATALOG[name]
        lines.append(f"  {name:22s} {spec.stage}, {spec.targets}: {spec.doc}")
        for key, p in spec.params.items():
            lines.append(f"  {'':22s}   {key}={p.kind(p.default)} [{p.kind(p.low)}-{p.kind(p.high)}] {p.doc}")
    return "\n".join(lines)


def _epilog(example: str) -> str:
    return f"example:\n  {example}"


def register(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser(
        "lab", help="run the embedded live lab and inject faults into it",
        description="The embedded live pipeline (studio → ingest → transcode → origin → CDN edges) "
                    "on loopback, with fault injection and ground truth.",
        epilog=_epilog("signalpath lab run --stream main"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = lab.add_subparsers(dest="lab_command", metavar="{run,fault,faults,clear}")
    lab.set_defaults(func=lambda args: (lab.print_help(), 2)[1])

    run = sub.add_parser(
        "run", help="run the lab in the foreground and print its URLs (Ctrl-C stops it)",
        description="Run the lab in the foreground; prints the origin, edge and control URLs.",
        epilog=_epilog(f"signalpath lab run --stream main --control-port {DEFAULT_CONTROL_PORT} [--chronic]"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--stream", default="main", help="stream name (default: main)")
    run.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT,
                     help=f"control API port (default {DEFAULT_CONTROL_PORT}; 0 picks a free one)")
    run.add_argument("--json", action="store_true", help="print the URLs as one JSON line")
    run.add_argument("--chronic", action="store_true",
                     help="run with chronic conditions from the start: the lowest rendition 50-60 %% over its declared "
                          "BANDWIDTH, up to 0.4 s publish jitter, an edge slow for a few seconds every 30-60 s "
                          "(background, not faults: GET /chronic lists them)")
    run.add_argument("--chronic-seed", type=int, default=1, metavar="N",
                     help="seed of the chronic conditions' random draws (default 1)")
    run.set_defaults(func=_cmd_run)

    control_help = f"control API URL (default: ${ENV_CONTROL_URL} or http://127.0.0.1:{DEFAULT_CONTROL_PORT})"
    fault = sub.add_parser(
        "fault", help="inject a fault into a running lab",
        description="Inject a fault into a running lab (the list below; every fault the agent must localize).",
        epilog=_fault_table() + "\n\n" + _epilog("signalpath lab fault edge_stale --target edge-b --for 45"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fault.add_argument("name", help="fault name (see the list below)")
    fault.add_argument("--target", help="component: encoder, ingest, transcoder, origin, a rendition "
                                        "(360p) or an edge (edge-a); defaults when there is only one")
    fault.add_argument("--for", dest="for_s", type=float, help="seconds until it ends by itself")
    fault.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="fault parameter, e.g. ms=2000 (repeatable)")
    fault.add_argument("--control", default=None, help=control_help)
    fault.set_defaults(func=_cmd_fault)

    faults = sub.add_parser(
        "faults", help="list active faults and their history (exact start/end times)",
        description="List the lab's active faults and history.",
        epilog=_epilog("signalpath lab faults --json"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    faults.add_argument("--control", default=None, help=control_help)
    faults.add_argument("--json", action="store_true", help="print the raw JSON")
    faults.set_defaults(func=_cmd_faults)

    clr = sub.add_parser(
        "clear", help="end one fault (by id) or all active faults",
        description="End a fault by id, or every active fault.",
        epilog=_epilog("signalpath lab clear --id 3"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    clr.add_argument("--id", dest="fault_id", type=int, help="fault id (default: all active)")
    clr.add_argument("--control", default=None, help=control_help)
    clr.set_defaults(func=_cmd_clear)


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LabControlError(f"--param {item!r}: expected KEY=VALUE, e.g. ms=2000")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _fmt(rec: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                      for k, v in rec.get("params", {}).items())
    end = rec.get("ended_at_iso") or (f"until {rec['ends_at_iso']}" if rec.get("ends_at_iso")
                                      else "until cleared")
    reason = f" ({rec['end_reason']})" if rec.get("end_reason") else ""
    return (f"#{rec['id']:<4} {rec['name']:<22} {rec['target']:<10} {params:<18} "
            f"{rec['started_at_iso']} → {end}{reason}")


def _cmd_fault(args: argparse.Namespace) -> int:
    try:
        params = _parse_params(args.param)
    except LabControlError as exc:
        print(f"signalpath lab fault: {exc}", file=sys.stderr)
        return 2
    try:
        rec = inject(args.control or default_control_url(), args.name, args.target, args.for_s, params)
    except LabControlError as exc:
        print(f"signalpath lab fault: {exc}", file=sys.stderr)
        return 2 if exc.status == 400 else 1
    print(f"injected {_fmt(rec)}")
    return 0


def _cmd_faults(args: argparse.Namespace) -> int:
    try:
        data = list_faults(args.control or default_control_url())
    except LabControlError as exc:
        print(f"signalpath lab faults: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(f"active ({len(data['active'])}):")
    for rec in data["active"]:
        print("  " + _fmt(rec))
    ended = [r for r in data["history"] if not r["active"]]
    print(f"history ({len(ended)} ended):")
    for rec in ended[-20:]:
        print("  " + _fmt(rec))
    return 0


def _cmd_clear(args: argparse.Namespace) -> int:
    try:
        recs = clear(args.control or default_control_url(), args.fault_id)
    except LabControlError as exc:
        print(f"signalpath lab clear: {exc}", file=sys.stderr)
        return 2 if exc.status in (400, 404) else 1
    if not recs:
        print("no active fault")
    for rec in recs:
        print(f"cleared {_fmt(rec)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .config import ChronicConfig, LabConfig

    try:
        cfg = LabConfig(stream=args.stream, control_port=args.control_port, chronic=args.chronic,
                        chronic_settings=ChronicConfig(seed=args.chronic_seed))
    except ValidationError as exc:
        err = exc.errors()[0]
        print(f"signalpath lab run: {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(cfg, args.json))
    except LabError as exc:
        print(f"signalpath lab run: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"signalpath lab run: cannot listen: {exc.strerror or exc}; "
              "try another --control-port (0 picks a free one)", file=sys.stderr)
        return 1
    return 0


async def _run(cfg: Any, as_json: bool) -> None:
    from .lab import Lab

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
            pass
    print("starting the lab (first segments take a few seconds)...", file=sys.stderr, flush=True)
    async with Lab(cfg) as lab:
        urls = lab.urls()
        if as_json:
            print(json.dumps(urls), flush=True)
        else:
            print(f"stream   {urls['stream']}")
            print(f"origin   {urls['origin']}")
            for r, u in urls["renditions"].items():
                print(f"  {r:<6} {u}")
            for e, u in urls["edges"].items():
                print(f"{e:<8} {u}")
            print(f"control  {urls['control']}   (signalpath lab fault NAME --control {urls['control']})")
            if cfg.chronic:
                print(f"chronic  {', '.join(c['name'] for c in lab.chronic()['conditions'])}   "
                      f"({urls['control']}/chronic)")
            print("Ctrl-C stops the lab.", flush=True)
        await stop.wait()
    print("lab stopped; every port released.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m agent.lab``) until the main CLI registers ``lab``."""
    parser = argparse.ArgumentParser(prog="signalpath")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args))
