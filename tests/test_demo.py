"""`signalpath demo` as a user runs it, and its fault tour as the agent sees it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from agent.lab.tour import DEFAULT_TOUR
from probes.playback import PlaybackSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_command_runs_healthy_and_stops_cleanly(tmp_path):
    port = free_port()
    out = tmp_path / "lab.yaml"
    scratch = tmp_path / "tmp"  # the demo's own temporary folders land here, and must be gone after it
    scratch.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "agent.cli", "demo", "--no-faults", "--listen", f"127.0.0.1:{port}",
                          "--config-out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + 60
        cells = []
        while time.monotonic() < deadline:
            try:
                body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status", timeout=2).read())
                cells = body["streams"][0]["stages"]
                wanted = {("origin", "origin"), ("cdn", "edge-a"), ("cdn", "edge-b"), ("ingest", "ingest"),
                          ("studio", "encoder")}
                if wanted <= {(c["stage"], c["component"]) for c in cells if c["state"] == "ok"}:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"demo never became healthy: {cells}")
        assert out.exists() and "edge-b" in out.read_text()
        p.send_signal(signal.SIGINT)
        text, _ = p.communicate(timeout=30)
        assert p.returncode == 0, text
        assert f"http://127.0.0.1:{port}/" in text and "stopped" in text and "Traceback" not in text
        with socket.socket() as s:  # nothing listens on the agent's port any more
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
        # the incident store it used (a temporary folder) went with it, and nothing was written in cwd
        assert [x.name for x in scratch.iterdir()] == [] and not list(tmp_path.glob("*.db")), list(scratch.iterdir())
    finally:
        if p.poll() is None:
            p.kill()


async def test_each_tour_fault_shows_at_its_stage_and_component(tmp_path):
    """The scripted tour, compressed: each fault is visible in /api/v1/status where the tour says,
    and the tour ends as it says, healthy: no stage degraded or down, no incident open."""
    steps = [s for s in DEFAULT_TOUR if s.fault]
    async with Lab(LabConfig()) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", site="demo")
        conf["incidents"] = {"path": str(tmp_path / "inc.db")}
        # short for a quick tour, yet longer than the media probe lags the ingest monitor on the same
        # source fault (a silent studio: the ingest hears its end seconds before the last silent
        # segment is analysed; a shorter window resolves and opens the incident again)
        conf["localize"] = {"resolve_after_s": 8}
        async with Agent(parse_config(conf)) as agent:
            await wait_for(lambda: all(c.state.value == "ok" for c in agent.board.cells("main")
                                       if (c.stage, c.component) in {("origin", "origin"), ("cdn", "edge-b")}),
                           30, "healthy first")
            for step in steps:
                rec = await lab.inject(step.fault, step.target, None, dict(step.params) or None)
                cell = (step.expect_stage, step.expect_component)
                await wait_for(lambda cell=cell: agent.board.state_of("main", *cell).value in ("degraded", "down"), 20,
                               f"{step.fault} visible at {cell}")
                # and its incident open before the fault ends: a source fault shows at the ingest seconds
                # before the media probe analyses the segments that hold it, and those later findings
                # belong to this incident, not to one that opens during the next step
                await wait_for(lambda cell=cell: any((i.stage, i.component) == cell
                                                     for i in agent.incidents.localizer.open_incidents()), 20,
                               f"{step.fault}'s incident at {cell}")
                await lab.clear(rec.id)
                await wait_for(lambda: not agent.incidents.localizer.open_incidents(), 40, f"{step.fault} resolved")
                await wait_for(lambda cell=cell: agent.board.state_of("main", *cell).value == "ok", 20, f"{cell} ok again")
            # the tour ends "healthy again": every stage, not only the ones it faulted, and no incident
            def not_ok() -> list[tuple[str, str, str, list[str]]]:
                return [(c.stage, c.component, c.state.value, c.reasons) for c in agent.board.cells("main")
                        if c.state.value in ("degraded", "down")]

            try:
                # a viewer that stalled as the last fault ended reports it for its stall window
                # (probes/playback.py stall_window_s, 20 s) after the stall ended
                await wait_for(lambda: not not_ok(), PlaybackSettings().stall_window_s + 15,
                               "every stage ok at the tour's end")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; not ok: {not_ok()}") from None
            assert not agent.incidents.localizer.open_incidents(), [(i.fault, i.started_at, i.localized_at, i.evidence) for i in agent.incidents.localizer.open_incidents()]
