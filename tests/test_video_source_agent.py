"""The studio stage under ``signalpath run`` shows what ``signalpath preflight`` finds.

An in-process Agent with a ``streams[].studio`` section: two RTSP cameras from the real
GStreamer RTSP server (tests/rtsp_server.py; one black), two capture devices looked up in
a recorded ``/sys/class/video4linux`` (``studio.video4linux_root``: one present, one not —
with the OS's own root, absent on this machine, both would be missing), the encoder host
from recorded /proc and /sys trees, and the network against a real chronyd. The same
config then goes through preflight's checklist (agent/preflight.py ``run_checks``): for
every studio component the board's evidence has the state, fault and detail that
:func:`probes.core.studio.evidence_from` makes of preflight's findings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.incident_sink import SOURCE as INCIDENTS
from agent.preflight import run_checks
from probes.base import State
from probes.core.studio import evidence_from
from tests.rtsp_server import RtspServer
from tests.test_network import Chronyd

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

FIX = Path(__file__).parent / "fixtures" / "host"
COMPONENTS = ("host", "cam-ok", "cam-black", "webcam", "capture-card", "network")


def studio_config(live, cam: RtspServer, ntp: str, tmp: Path) -> dict:
    conf = live.config()
    conf["incidents"] = {"path": str(tmp / "inc.db")}
    feed = {"expected_fps": 25, "expected_width": 320, "expected_height": 180, "expect_audio": True, "sample_s": 2.5}
    conf["streams"][0]["studio"] = {
        "interval_s": 4.0, "timeout_s": 15.0,
        "host": {"proc_root": str(FIX / "t0" / "proc"), "proc_root_later": str(FIX / "t1_idle" / "proc"),
                 "sys_root": str(FIX / "sys"), "nics": ["eth0"], "encoder_processes": ["obs"],
                 "recording_path": str(tmp), "disk_min_free_bytes": 1024, "cpu_sample_s": 0.05},
        "sources": [{"name": "cam-ok", "url": cam.url("ok"), **feed},
                    {"name": "cam-black", "url": cam.url("black"), **feed},
                    {"name": "webcam", "device": "HD Pro Webcam C920"},
                    {"name": "capture-card", "device": "DeckLink Mini Recorder 4K"}],
        "network": {"ingest": f"127.0.0.1:{cam.port}", "rtt_samples": 3, "rtt_spacing_s": 0.01,
                    "ntp_server": ntp, "connect_timeout_s": 2},
        "video4linux_root": str(FIX / "sys" / "class" / "video4linux"),
    }
    return conf


def _shape(detail: str) -> str:
    """A detail without its numbers (two measurements of one feed differ in the decimals)."""
    return re.sub(r"[-+]?\d+(\.\d+)?", "#", detail)


async def test_studio_stage_under_run_matches_preflight(live, tmp_path):
    async with RtspServer() as cam, Chronyd(tmp_path / "chrony") as chrony:
        config = parse_config(studio_config(live, cam, chrony.server, tmp_path))
        async with Agent(config) as agent:
            def measured():
                return all(agent.board.state_of("main", "studio", c) is not State.UNKNOWN for c in COMPONENTS)

            await wait_for(measured, 40, "every studio component measured under run")
            # the probes' own evidence (the incident sink adds its incidents' evidence to the board too)
            board = {e.component: e for e in agent.board.evidence("main", exclude=(INCIDENTS,)) if e.stage == "studio"}
            cells = {c: agent.board.state_of("main", "studio", c) for c in COMPONENTS}
            lab = {"site": "test", "stream": "main", "stage": "studio"}

            def metric(name: str, component: str) -> float | None:
                return agent.registry.get_sample_value(name, {**lab, "component": component})

            present = {c: metric("signalpath_source_present", c) for c in COMPONENTS[1:5]}
            fps = metric("signalpath_source_frame_rate", "cam-ok")
            clock = metric("signalpath_clock_offset_seconds", "network")
        outcome = await run_checks(config)

    # what run shows
    assert (board["cam-ok"].state, board["cam-ok"].fault) == (State.OK, None), board["cam-ok"]
    assert (board["cam-black"].state, board["cam-black"].fault) == (State.DEGRADED, "black_video")
    assert board["cam-black"].detail.startswith("cam-black picture: black for ")
    assert (board["webcam"].state, board["webcam"].fault) == (State.OK, None)  # found under video4linux_root
    assert (board["capture-card"].state, board["capture-card"].fault) == (State.DOWN, "device_missing")
    assert (board["host"].state, board["network"].state) == (State.OK, State.OK)
    assert cells == {c: board[c].state for c in COMPONENTS}  # the status board's cells say the same
    assert present == {"cam-ok": 1.0, "cam-black": 1.0, "webcam": 1.0, "capture-card": 0.0}
    assert fps is not None and abs(fps - 25) < 0.5
    assert clock is not None and abs(clock) < 0.02
    assert board["cam-ok"].figures["frame_rate"] == pytest.approx(25, abs=0.5)

    # the same evidence as preflight's findings make
    findings = outcome.reports[0].findings
    for c in COMPONENTS:
        pre = evidence_from(findings, c)
        got = board[c]
        assert (got.stage, got.state, got.fault) == (pre.stage, pre.state, pre.fault), (c, got, pre)
        assert _shape(got.detail) == _shape(pre.detail), (c, got.detail, pre.detail)
    assert outcome.verdict == "NOT READY (2)"
    fails = sorted((f.component, f.fault) for f in findings if f.status.value == "fail")
    assert fails == [("cam-black", "black_video"), ("capture-card", "device_missing")]
