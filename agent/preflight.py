"""``signalpath preflight -c FILE``: the crew's equipment check before air.

Checks the host it runs on (CPU, memory, recording disk: ``preflight.host``, when no stream
has a ``studio.host``) and its clock (``preflight.ntp_server``, else the origin's HTTP Date);
every stream's delivery path — origin, edges, content — with the agent's own probes
(agent/preflight_path.py); WHIP ingests with one publish each (probes/whip.py); and runs, for
every stream with a ``studio:`` section and/or ``ingest.rtmp`` entries, the
same probes the studio stage runs under ``signalpath run`` (probes/core/studio.py findings):
encoder host, GPU, capture devices and feeds (backups included), network (RTT/jitter to
the ingest, uplink vs 1.5 x bitrate, NTP clock offset), and the ingest itself (RTMP
handshake + connect via probes/rtmp.py; with ``publish: true`` a short test push whose
achieved upload rate must keep up with the target bitrate). Key-frame interval (<= 4 s,
YouTube Live ``gopSizeLong``) is checked on the feeds (``sources[]``): the test push is
signalpath's own 2-s-GOP stream, so it proves the ingest accepts a stream and the rate,
not the crew encoder's GOP.

Output: a live progress line per check on stderr while it runs (plain lines; the same
on a TTY), then a table within 100 columns (✓ / ⚠ / ✗ / –, stream, check, measured, needed;
long cells wrapped), the fix for every ⚠ and ✗ in full below it, and the verdict as the
LAST line: ``READY``, ``READY WITH WARNINGS (n)`` or ``NOT READY (n)`` (shared/UX.md).
``--json`` prints one JSON document instead of the table (verdict inside; the verdict
line still goes to stderr); ``--junit FILE`` writes a JUnit XML report (a failure per
fail, ``<skipped>`` per skip, warnings as passing cases with a ``WARN`` system-out).
Exit: 0 all pass (warnings allowed), 1 warnings with ``--strict``, 2 any failure or a bad
config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from probes.base import HOST_NOT_RESOLVED, Failure, ProbeContext, ProbeTarget
from probes.core.studio import Finding, Status
from probes.faults import Fault

SYMBOL = {Status.PASS: "✓", Status.WARN: "⚠", Status.FAIL: "✗", Status.SKIP: "–"}
EXIT_OK, EXIT_WARN, EXIT_FAIL = 0, 1, 2

_RTMP_FIX = {
    Failure.AUTH_REFUSED: "the ingest refused the stream key: copy the key again from the platform's dashboard",
    Failure.CONNECTION_REFUSED: "nothing listens at the ingest address: check the URL/port, or use the backup ingest",
    Failure.TIMEOUT: "the ingest does not answer in time: check the firewall (TCP 1935) and the uplink",
    Failure.DNS_ERROR: f"{HOST_NOT_RESOLVED}: check the ingest URL's host name and the DNS settings",
}


@dataclass(slots=True)
class Report:
    stream: str
    findings: list[Finding] = field(default_factory=list)


@dataclass(slots=True)
class Outcome:
    reports: list[Report]
    elapsed_s: float

    @property
    def all(self) -> list[tuple[str, Finding]]:
        return [(r.stream, f) for r in self.reports for f in r.findings]

    def count(self, status: Status) -> int:
        return sum(1 for _, f in self.all if f.status is status)

    @property
    def verdict(self) -> str:
        fails, warns = self.count(Status.FAIL), self.count(Status.WARN)
        if fails:
            return f"NOT READY ({fails})"
        if warns:
            return f"READY WITH WARNINGS ({warns})"
        return "READY"

    def exit_code(self, strict: bool) -> int:
        if self.count(Status.FAIL):
            return EXIT_FAIL
        if strict and self.count(Status.WARN):
            return EXIT_WARN
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "elapsed_s": round(self.elapsed_s, 3),
                "counts": {str(s): self.count(s) for s in Status},
                "checks": [{"stream": st, **f.as_dict()} for st, f in self.all]}


# ------------------------------------------------------------------ running the checks


async def _ingest_findings(stream: str, r: Any) -> list[Finding]:
    """One ``ingest.rtmp`` entry: handshake/connect, and with publish the test push rate."""
    from probes import rtmp
    from probes.core.redact import redact_url

    t = ProbeTarget("rtmp", stream, "ingest", r.name, r, r.url, r.interval_s, r.timeout_s)
    ctx = ProbeContext(state={})
    ctx.deadline = ctx.clock() + r.timeout_s  # as agent/runner.py does: the probe budgets by it
    try:
        async with asyncio.timeout(r.timeout_s):
            res = await rtmp.probe(t, ctx)
    except TimeoutError:
        from probes.base import ProbeResult

        res = ProbeResult(Failure.TIMEOUT, f"no answer within {r.timeout_s:g} s")
    where = redact_url(r.url)
    src = "Adobe RTMP 1.0 §5.2 handshake, §7.2 connect/createStream"
    if res.failure is not None:
        return [Finding("ingest.rtmp", r.name, Status.FAIL, f"Ingest {r.name} (RTMP)", res.detail,
                        "handshake, connect and createStream succeed", src,
                        _RTMP_FIX.get(res.failure, f"the ingest {where} failed: {res.detail}"),
                        Fault.AUTH_REFUSED if res.failure is Failure.AUTH_REFUSED else Fault.UNREACHABLE)]
    fig = res.figures
    ms = sum(float(fig.get(f"{p}_seconds", 0.0)) for p in ("tcp", "handshake", "connect", "create_stream")) * 1000
    out = [Finding("ingest.rtmp", r.name, Status.PASS, f"Ingest {r.name} (RTMP)", f"connected in {ms:.0f} ms",
                   "handshake, connect and createStream succeed", src)]
    if r.publish:
        up, target = float(fig.get("upload_bits_per_second", 0.0)), float(r.target_bitrate)
        ratio = float(fig.get("upload_ratio", 0.0))
        st = Status.PASS if ratio >= 0.95 else Status.WARN if ratio >= 0.8 else Status.FAIL
        out.append(Finding("ingest.publish", r.name, st, f"Test push to {r.name}",
                           f"{up / 1e6:.2f} Mbit/s, {ratio:.2f} x real time",
                           f">= 0.95 x real time at {target / 1e6:.2f} Mbit/s",
                           "a live stream must upload at least as fast as it plays",
                           "" if st is Status.PASS else
                           f"close other uploads or lower the bitrate: the test push ran at {ratio:.2f} x real time",
                           None if st is Status.PASS else Fault.UPLOAD_SLOW, ratio, 0.95,
                           {"upload_bits_per_second": up}))
    return out


async def run_checks(config: Any, progress: Callable[[str], None] = lambda line: None,
                     v4l_root: str | None = None, observe_s: float | None = None) -> Outcome:
    """Every check of every stream; ``progress`` gets one line per finished check.

    Order: the host preflight runs on (when no stream has a ``studio.host``) and its clock;
    then per stream its studio, its ingest endpoints (RTMP, WHIP) and its delivery path
    (origin, edges, content: agent/preflight_path.py; every stream's path is watched in one
    window, started first, so the windows overlap the other checks)."""
    from agent import preflight_path as path
    from probes import gpu, host, network, video_source

    t0 = time.monotonic()
    reports: list[Report] = []
    settings = config.preflight
    observe_s = settings.observe_s if observe_s is None else observe_s

    def done(rep: Report, fs: list[Finding]) -> None:
        for f in fs:
            rep.findings.append(f)
            progress(f"  {SYMBOL[f.status]} {f.title}: {f.measured}")

    streams = list(config.streams)
    own: dict[str, Report] = {}
    watching = asyncio.ensure_future(path.watch_paths(streams, observe_s))
    try:
        studios = [s.studio for s in streams if getattr(s, "studio", None) is not None]
        ntp_known = any(st.network is not None and st.network.ntp_server for st in studios)
        here = Report("(this host)")
        if not any(st.host is not None for st in studios):
            progress("preflight this host:")
            progress("  … CPU, memory, disk")
            done(here, (await host.measure(settings.host, {}, time.monotonic))[0])
        if not ntp_known:
            if settings.ntp_server:
                done(here, (await network.measure(network.NetworkConfig(ntp_server=settings.ntp_server)))[0])
            elif streams:
                done(here, [await path.date_clock_finding([streams[0].origin, *(e.url for e in streams[0].edges)])])
        if here.findings:
            reports.append(here)
        for stream in streams:
            rep = own[stream.name] = Report(stream.name)
            reports.append(rep)
            studio = getattr(stream, "studio", None)
            progress(f"preflight {stream.name}:")
            if studio is not None:
                if studio.host is not None:
                    progress("  … encoder host")
                    fs, _ = await host.measure(studio.host, {}, time.monotonic)
                    done(rep, fs)
                if studio.gpu is not None:
                    progress("  … GPU")
                    done(rep, (await gpu.measure(studio.gpu))[0])
                if studio.sources:
                    progress(f"  … {len(studio.sources)} source(s)")
                    root = v4l_root or studio.video4linux_root
                    results = await asyncio.gather(*(video_source.measure(s, root) for s in studio.sources))
                    for fs, _ in results:
                        done(rep, fs)
                if studio.network is not None:
                    progress("  … network")
                    done(rep, (await network.measure(studio.network))[0])
            ingest = getattr(stream, "ingest", None)
            for r in (ingest.rtmp if ingest is not None else []):
                progress(f"  … ingest {r.name}" + (" (test push)" if r.publish else ""))
                done(rep, await _ingest_findings(stream.name, r))
            if ingest is not None and ingest.whip:
                progress(f"  … {len(ingest.whip)} WHIP ingest(s)")
                done(rep, await path.whip_findings(stream))
        progress(f"  … origin and edges of {len(streams)} stream(s) (watching up to {observe_s:g} s)")
        watch = await watching
    finally:
        watching.cancel()
    for stream in streams:
        done(own[stream.name], path.path_findings(stream, watch))
    return Outcome(reports, time.monotonic() - t0)


# ------------------------------------------------------------------ output


TABLE_WIDTH = 100  # columns: a laptop terminal, a CI log, a phone in landscape


def _fit(natural: list[int], budget: int, floor: list[int]) -> list[int]:
    """Column widths within ``budget``: the widest column (above its floor) gives way first."""
    widths = list(natural)
    while sum(widths) > budget:
        i = max(range(len(widths)), key=lambda k: widths[k] - floor[k])
        if widths[i] <= floor[i]:
            break
        widths[i] -= 1
    return widths


def render_table(out: Outcome, width: int = TABLE_WIDTH) -> str:
    """The table (one row per check, long cells wrapped within ``width``), then what to do for
    every warning and failure, in full, below it; the verdict is the last line."""
    header = ["", "stream", "check", "measured", "needed"]
    rows = [[SYMBOL[f.status], stream, f.title, f.measured, f.needed] for stream, f in out.all]
    gap = "  "
    natural = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    widths = _fit(natural, width - len(gap) * (len(header) - 1), floor=[1, 6, 14, 14, 14])
    lines = []
    for row in [header, *rows]:
        cells = [textwrap.wrap(text, w, break_on_hyphens=False) or [""] for text, w in zip(row, widths, strict=True)]
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths, strict=True)]
            lines.append(gap.join(parts).rstrip())
    todo = [(stream, f) for stream, f in out.all if f.status in (Status.WARN, Status.FAIL) and f.fix]
    if todo:
        several = len(out.reports) > 1
        lines += ["", "what to do:"]
        for stream, f in todo:
            lead = f"{SYMBOL[f.status]} {f.title}" + (f" ({stream})" if several else "") + ": "
            lines += textwrap.wrap(lead + f.fix, width, subsequent_indent="    ", break_on_hyphens=False)
    lines.append("")
    lines.append(out.verdict)
    return "\n".join(lines)


def junit_xml(out: Outcome) -> bytes:
    suite = ET.Element("testsuite", name="signalpath preflight", tests=str(len(out.all)),
                       failures=str(out.count(Status.FAIL)), skipped=str(out.count(Status.SKIP)),
                       errors="0", time=f"{out.elapsed_s:.3f}")
    for stream, f in out.all:
        case = ET.SubElement(suite, "testcase", classname=f"{stream}.{f.component}", name=f"{f.check}: {f.title}")
        text = f"measured {f.measured}; needed {f.needed}; source {f.source}"
        if f.status is Status.FAIL:
            ET.SubElement(case, "failure", message=f.fix or f.measured, type=f.fault or "fail").text = text
        elif f.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=f.measured)
        elif f.status is Status.WARN:
            ET.SubElement(case, "system-out").text = f"WARN: {f.fix}; {text}"
        else:
            ET.SubElement(case, "system-out").text = text
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def _added_broadcasts(cfg: Any) -> list[Any]:
    """Broadcasts added through the agent's API, from its incident database (agent/schedule_book.py)."""
    from agent.schedule_book import stored_broadcasts

    return stored_broadcasts(cfg.incidents.path)


def _timing(b: Any, now: float) -> Finding:
    """Where the broadcast stands: a preflight belongs before its start (and its pre-roll)."""
    from agent.localize import rfc3339

    title, needed, source = f"Broadcast {b.name}", "run before the start", "broadcasts[] in the config"
    if now < b.start:
        left = b.start - now
        when = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min"
        return Finding("broadcast.timing", "schedule", Status.PASS, title,
                       f"starts {rfc3339(b.start)} (in {when})", needed, source)
    return Finding("broadcast.timing", "schedule", Status.WARN, title,
                   f"on air since {rfc3339(b.start)} ({(now - b.start) / 60:.0f} min)", needed, source,
                   "the broadcast is on air: a failure below is a live fault, see the status page")


def cmd_preflight(args: argparse.Namespace) -> int:
    from agent.cli import load_agent_config
    from agent.errors import ConfigError

    try:
        cfg = load_agent_config(args.config)  # no streams: nothing to check is an error, not READY
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAIL
    from agent import logsafe

    broadcast = None
    if args.broadcast is not None:
        from agent.schedule import Schedule

        broadcast = Schedule([*cfg.broadcasts, *_added_broadcasts(cfg)]).by_name(args.broadcast)
        if broadcast is None:
            known = ", ".join(repr(b.name) for b in [*cfg.broadcasts, *_added_broadcasts(cfg)]) or "none"
            print(f"preflight: --broadcast {args.broadcast!r}: no such broadcast (broadcasts: {known})",
                  file=sys.stderr)
            return EXIT_FAIL
        if time.time() >= broadcast.end:
            print(f"preflight: broadcast {broadcast.name!r} has ended", file=sys.stderr)
            return EXIT_FAIL
        cfg = cfg.model_copy(update={"streams": [s for s in cfg.streams if s.name in broadcast.streams]})
    if args.observe is not None:
        if not 1 <= args.observe <= 300:
            print(f"preflight: --observe {args.observe:g}: must be between 1 and 300 seconds", file=sys.stderr)
            return EXIT_FAIL
    logsafe.install(logsafe.config_secrets(cfg))  # a probe library's warning names no key

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        out = asyncio.run(run_checks(cfg, progress, observe_s=args.observe))
        if broadcast is not None:
            out.reports.insert(0, Report(f"({broadcast.name})", [_timing(broadcast, time.time())]))
    except KeyboardInterrupt:
        print("preflight: interrupted; no verdict", file=sys.stderr)
        return 130
    if args.junit:
        with open(args.junit, "wb") as fh:
            fh.write(junit_xml(out))
    if args.json:
        print(json.dumps(out.as_dict(), indent=2, ensure_ascii=False))
        print(out.verdict, file=sys.stderr)
    else:
        print(render_table(out), flush=True)
    return out.exit_code(args.strict)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preflight", help="pre-air check of the whole path: host, studio, ingest, origin, edges, picture",
        description="Run the pre-air checklist once — this host (CPU, memory, recording disk, clock), each "
                    "stream's studio (encoder host, GPU, capture devices and feeds, network to the ingest), its "
                    "ingest endpoints (RTMP handshake and test push with publish: true, WHIP publish), and its "
                    "delivery path: the origin and every edge answer, every playlist advances, segments download "
                    "faster than real time, the origin's picture and sound are not black/frozen/silent — and "
                    "print pass/warn/fail per check with the measured value, the threshold, its source and a fix "
                    "(the fix of the place that is the cause, when a failure follows from another). "
                    "Exit 0 ready, 1 warnings with --strict, 2 not ready.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  signalpath preflight -c signalpath.yaml --junit preflight.xml")
    p.add_argument("-c", "--config", required=True, help="the YAML config (streams[].studio, streams[].ingest)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of the table")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check warns")
    p.add_argument("--broadcast", metavar="NAME",
                   help="check only the streams of this scheduled broadcast (broadcasts[] in the config), "
                        "and say how long until it starts")
    p.add_argument("--observe", type=float, metavar="S",
                   help="watch the origin and edges at most S seconds (default: preflight.observe_s, 20); "
                        "the watch ends sooner once every rendition advanced")
    p.set_defaults(func=cmd_preflight)
