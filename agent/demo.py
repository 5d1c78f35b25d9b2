"""``signalpath demo``: the embedded lab plus an agent watching it, with a fault tour.

Starts the lab (studio → ingest → transcode → origin → two edges, all on loopback),
generates the agent config for it, runs the agent, and plays the scripted fault tour
(agent/lab/tour.py), printing each fault as it starts and every state change the
agent reports, so you see a fault appear at the right stage/component and clear.
``--chronic`` runs the lab with chronic conditions from the start (the lowest rendition
over its declared bitrate, publish jitter, an edge slow now and then; agent/lab/chronic.py):
the over-bitrate shows as a standing P3 finding and the tour's faults play on top of it.
Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from agent.errors import SignalpathError
from agent.lab.control import DEFAULT_CONTROL_PORT


def lab_agent_config(lab: Any, listen: str = "127.0.0.1:9321", site: str = "demo", *,
                     webrtc: bool = False, ingest_monitor: bool = True,
                     incidents_path: str | None = None, protocol: str = "hls") -> dict[str, Any]:
    """The agent config (DESIGN.md contract) that watches a running lab.

    ``incidents_path``: the SQLite incident store; by default a fresh temporary folder, so a
    demo, a benchmark or a test never writes into the current folder (the checkout) and never
    starts with the open incidents of an earlier run.

    ``ingest_monitor`` (on by default) watches the ingest's playback side (HTTP-FLV,
    agent/lab/ingest_live.py) (kept open, a report every 0.5 s; probes/ingest_monitor.py): the ingest stage gets
    its own latency and the latency probe's transcode figure excludes it. Off, the
    transcode figure is capture-to-origin (ingest + transcode + packaging).

    ``protocol``: ``hls`` watches the lab's HLS playlists, ``llhls`` its Low-Latency HLS playlists
    (parts, blocking reload), ``dash`` the same segments through its MPD (agent/lab/packager.py),
    at the origin and through every edge. For ``hls`` and ``dash`` the origin's other manifest
    of the same encode (its MPD, or for ``dash`` its HLS master) is compared with it
    (``streams[].compare``, probes/compare.py): a DASH side that stops while HLS goes on is the
    origin's, not a transcoder's. Not for ``llhls``: the lab's LL-HLS view closes a segment
    part-way when the encode stalls (agent/lab/packager.py ``ll_close``), a segment its MPD never
    lists, so a stalled transcoder would read as the MPD behind.

    ``webrtc=True`` adds a WHIP publish (ingest/whip) and a WHEP playback (playback/whep)
    test of the lab's WebRTC endpoint at the probes' default interval (30 s, 3 s of media).
    Measured cost (tests/perf/lab_webrtc_cpu.py, 2-core dev box): lab + endpoint + both
    probe peers 13.7 % of one core against 12.4 % without the probes. Off by default: a
    30-s WHEP verdict lags an upstream fault's end (e.g. ``encoder_stop``) by up to 30 s.
    The WHIP entry also checks the signalling every 2 s between publishes (probes/whip.py
    ``check_interval_s``): 0.3-0.4 % of one core more for the agent and 0.3 % for the
    endpoint (tests/perf/whip_check_cpu.py).
    """
    urls = {"hls": lambda via: lab.origin_url() if via is None else lab.edge_url(via),
            "llhls": lambda via: lab.ll_url(via), "dash": lambda via: lab.dash_url(via)}
    if protocol not in urls:
        raise ValueError(f"protocol {protocol!r}: the lab serves {', '.join(urls)}")
    url = urls[protocol]
    stream = lab.config.stream
    if incidents_path is None:
        incidents_path = str(Path(tempfile.mkdtemp(prefix="signalpath-lab-")) / "incidents.db")
    conf: dict[str, Any] = {
        "agent": {"listen": listen, "site": site},
        "incidents": {"path": incidents_path},
        "streams": [{
            "name": stream,
            "origin": url(None),
            "edges": [{"name": e, "url": url(e)} for e in lab.edges],
            "ingest": {"stat": [{"name": "ingest", "url": f"{lab.control_url}/ingest/stat.xml", "key": stream}]},
            "encoders": [{"name": "encoder", "url": f"{lab.control_url}/studio/stat"}],
        }],
    }
    if protocol != "llhls" and hasattr(lab, "dash_url"):  # the origin's other manifest (probes/compare.py)
        conf["streams"][0]["compare"] = {"url": lab.origin_url() if protocol == "dash" else lab.dash_url(None)}
    if ingest_monitor and hasattr(lab, "ingest_live_url"):
        conf["streams"][0]["ingest"]["monitor"] = [{"name": "ingest", "url": lab.ingest_live_url(), "interval_s": 0.5}]
    if webrtc and getattr(lab, "webrtc", None) is not None:
        loop: dict[str, Any] = {"ice_host_addresses": [lab.config.host]}
        token = lab.config.webrtc_token
        if token is not None:  # a secret: goes through the environment, never the file
            loop["bearer_token"] = "${SIGNALPATH_LAB_WEBRTC_TOKEN}"
        s = conf["streams"][0]
        s["ingest"]["whip"] = [{"name": "whip", "url": lab.whip_url(), **loop}]
        s["whep"] = [{"name": "whep", "url": lab.whep_url(), **loop}]
    return conf


def _say(line: str) -> None:
    print(line, flush=True)


async def _watch(agent: Any, say: Any, every: float = 1.0) -> None:
    """Print every change of a stage/component state the agent reports."""
    seen: dict[tuple[str, str, str], str] = {}
    while True:
        for stream in agent.board.streams():
            for c in agent.board.cells(stream):
                key = (stream, c.stage, c.component)
                state = str(c.state)
                if seen.get(key) != state:
                    if key in seen or state != "unknown":
                        why = f" — {c.reasons[0]}" if c.reasons else ""
                        say(f"[{time.strftime('%H:%M:%S')}] agent: {stream} {c.stage}/{c.component} is "
                            f"{state.upper()}{why}")
                    seen[key] = state
        await asyncio.sleep(every)


async def run_demo(args: argparse.Namespace) -> None:
    chronic = bool(getattr(args, "chronic", False))
    _say("signalpath demo: starting the embedded lab (encoder, ingest, transcoder, origin, 2 edges"
         f"{', chronic conditions on' if chronic else ''})…")
    wanted = getattr(args, "lab_control_port", DEFAULT_CONTROL_PORT)
    control_port = _lab_control_port(wanted) if wanted else 0
    if args.db:  # kept: `signalpath report --db FILE` / `incidents --db FILE` after the demo
        kept = Path(args.db).expanduser().resolve()  # noqa: ASYNC240 - once, at start-up
        await _demo(args, chronic, wanted, control_port, str(kept))
        _say(f"signalpath demo: incidents and history kept in {args.db} (signalpath report --db {args.db} --from=-1h)")
        return
    # else the demo's incident store lives as long as the demo: a temporary folder it removes on exit
    with tempfile.TemporaryDirectory(prefix="signalpath-demo-") as store:
        await _demo(args, chronic, wanted, control_port, str(Path(store) / "incidents.db"))
    _say("signalpath demo: stopped; the lab released its ports")


async def _demo(args: argparse.Namespace, chronic: bool, wanted: int, control_port: int, store: str) -> None:
    from agent.app import Agent
    from agent.cli import run_until_signal
    from agent.config import parse_config
    from agent.lab import Lab, LabConfig
    from agent.lab.tour import DEFAULT_TOUR, run_tour

    async with Lab(LabConfig(chronic=chronic, control_port=control_port)) as lab:
        conf = lab_agent_config(lab, args.listen, webrtc=True, incidents_path=store)
        if args.config_out:
            Path(args.config_out).write_text(yaml.safe_dump(conf, sort_keys=False))  # noqa: ASYNC240 - once, at start-up, a few hundred bytes
            _say(f"agent config written to {args.config_out}")
        cfg = parse_config(conf, "demo config")
        tasks: list[asyncio.Task[Any]] = []

        def ready(agent: Any) -> None:
            _say(f"lab origin     {lab.origin_url()}")
            for e in lab.edges:
                _say(f"lab {e:10s} {lab.edge_url(e)}")
            if control_port == DEFAULT_CONTROL_PORT:
                _say(f"lab control    {lab.control_url}  (signalpath lab faults; signalpath lab fault NAME)")
            else:
                _say(f"lab control    {lab.control_url}  (port {wanted} was taken: "
                     f"signalpath lab faults --control {lab.control_url})")
            if chronic:
                for c in lab.chronic()["conditions"]:
                    where = f"{c['stage']}/{c['component']}" if c["component"] else c["stage"]
                    expect = f"expect a {c['severity']} {c['finding']}" if c["finding"] else "below every threshold"
                    _say(f"lab chronic    {c['name']} at {where}: {expect}")
            _say(f"status page    {agent.url}/")
            _say(f"metrics        {agent.url}/metrics")
            _say(f"status JSON    {agent.url}/api/v1/status")
            _say("Ctrl-C stops everything.")
            tasks.append(asyncio.ensure_future(_watch(agent, _say)))
            if not args.no_faults:
                tasks.append(asyncio.ensure_future(run_tour(lab, DEFAULT_TOUR, _say)))

        try:
            await run_until_signal(lambda: Agent(cfg), ready)
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.cli import _run_loop

    try:
        _run_loop(run_demo(args))
    except SignalpathError as exc:
        print(f"signalpath demo: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"signalpath demo: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


_DESCRIPTION = """\
Run the embedded lab (encoder, ingest, transcoder, origin, two CDN edges, all on
loopback) and an agent watching it, then play a scripted fault tour: healthy for
60 s, edge-b stale, the 180p rendition stalling, silent audio, origin errors. Each
fault is printed as it starts, with every state change the agent reports.

The status page, /metrics and /api/v1/status are printed at start. The lab's control
API listens on port {port} (another free port when that one is taken; the start-up
lines say which), so `signalpath lab faults` and `signalpath lab fault NAME` reach it.
--chronic adds the chronic conditions of a real chain (an over-bitrate rendition shows
as a standing P3). Ctrl-C stops everything and releases every port.
"""


def _lab_control_port(port: int) -> int:
    """``port`` when it is free on loopback, else 0 (any free port): a second demo, or a test
    running beside one, still starts; the start-up lines print the URL either way."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the embedded lab and an agent watching it, with a scripted fault tour",
        description=_DESCRIPTION.format(port=DEFAULT_CONTROL_PORT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  signalpath demo                 # then open http://127.0.0.1:9321/\n"
               "  signalpath demo --no-faults --config-out lab.yaml\n"
               "  signalpath demo --chronic       # the tour on top of chronic imperfections\n"
               "  signalpath demo --db demo.db    # then, after Ctrl-C: signalpath report --db demo.db --from=-1h")
    p.add_argument("--no-faults", action="store_true", help="run healthy, no fault tour")
    p.add_argument("--chronic", action="store_true",
                   help="run the lab with chronic conditions: the lowest rendition over its declared bitrate (a "
                        "standing P3), publish jitter, an edge slow now and then")
    p.add_argument("--config-out", metavar="FILE", help="write the generated agent config (YAML) to FILE")
    p.add_argument("--db", metavar="FILE", help="keep the incident database (incidents, history, complaints) in "
                   "FILE for `signalpath report --db FILE` after the demo (default: a temporary one, removed)")
    p.add_argument("--listen", default="127.0.0.1:9321", help="the agent's HOST:PORT (default %(default)s)")
    p.add_argument("--lab-control-port", type=int, default=DEFAULT_CONTROL_PORT, metavar="PORT",
                   help="the lab's control API port, where `signalpath lab faults` looks (default %(default)s; "
                        "0 picks a free one)")
    p.set_defaults(func=cmd_demo)
