"""Incidents end to end in a running agent: localized, stored, listed, restored after a
restart, on /metrics, and on the status page in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from _require import require_binary
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config


async def get_json(url: str):
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as r:
            return r.status, await r.json()


async def test_stale_edge_opens_one_incident_that_survives_restart_and_resolves(live, tmp_path):
    conf = live.config()
    conf["incidents"] = {"path": str(tmp_path / "inc.db")}
    conf["localize"] = {"resolve_after_s": 2.0}
    async with Agent(parse_config(conf)) as agent:
        await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-b").value == "ok", 10, "edge-b ok")
        live.edges["edge-b"].knobs.freeze_all = True

        async def open_incidents():
            status, body = await get_json(agent.url + "/api/v1/incidents?state=open")
            assert status == 200
            return body

        body = await wait_for(open_incidents, 8, "an open incident")
        assert len(body) == 1, body
        inc = body[0]
        assert (inc["stream"], inc["stage"], inc["component"], inc["fault"]) == ("main", "cdn", "edge-b",
                                                                                 "stale_playlist")
        assert inc["severity"] in ("P1", "P2") and inc["runbook"] and "edge-b" in inc["summary"]
        assert inc["started_at"] <= inc["localized_at"] and inc["resolved_at"] is None
        gauge = agent.registry.get_sample_value("signalpath_incidents_open", {
            "site": "test", "stream": "main", "stage": "cdn", "component": "edge-b", "fault": "stale_playlist",
            "severity": inc["severity"]})
        assert gauge == 1
        assert agent.registry.get_sample_value("signalpath_time_to_localize_seconds_count",
                                               {"site": "test", "stream": "main", "stage": "cdn"}) == 1
        # the root cause shows on the status board at its own stage/component
        assert agent.board.state_of("main", "cdn", "edge-b").value == "down"
        status, bad = await get_json(agent.url + "/api/v1/incidents?state=nonsense")
        assert status == 400 and "state must be" in bad["error"]
    # restart: the same incident is still open, not duplicated
    async with Agent(parse_config(conf)) as agent:
        await asyncio.sleep(0)  # started: restored from SQLite
        status, body = await get_json(agent.url + "/api/v1/incidents?state=open")
        assert [i["id"] for i in body] == [inc["id"]]
        await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-b").value == "down", 8, "still down")
        live.edges["edge-b"].knobs.freeze_all = False
        live.edges["edge-b"].knobs.frozen_at.clear()

        async def resolved():
            _s, b = await get_json(agent.url + "/api/v1/incidents?state=resolved")
            return b

        body = await wait_for(resolved, 10, "incident resolved")
        assert body[0]["id"] == inc["id"] and body[0]["resolved_at"]
        _s, all_ = await get_json(agent.url + "/api/v1/incidents?state=all")
        assert len(all_) == 1
    # and the terminal view reads the same store
    r = subprocess.run([sys.executable, "-m", "agent.cli", "incidents", "--db", str(tmp_path / "inc.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "cdn/edge-b stale_playlist" in r.stdout and "most frequent faults" in r.stdout


async def test_status_page_shows_a_fault_in_headless_chromium(live, tmp_path):
    chromium = require_binary("chromium")
    async with Agent(parse_config(live.config())) as agent:
        await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-a").value == "ok", 10, "edge-a ok")
        live.edges["edge-a"].knobs.segment_status = 404
        live.edges["edge-b"].knobs.freeze_all = True
        await wait_for(lambda: len(agent.incidents.localizer.open_incidents()) >= 1, 10, "incident open")
        await asyncio.sleep(2.5)  # the page refreshes itself within 2 s; give it one refresh
        shots = {}
        for name, size in (("laptop", "1280,800"), ("phone", "390,844")):
            png = tmp_path / f"status-{name}.png"
            profile = tempfile.mkdtemp(prefix="chromium-")
            cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                   "--virtual-time-budget=4000", f"--window-size={size}", f"--screenshot={png}",
                   agent.url + "/"]
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)
            await asyncio.wait_for(proc.wait(), 60)
            assert png.exists() and png.stat().st_size > 5000
            shots[name] = png
        # the rendered DOM names the faulty edge and the incident text
        profile = tempfile.mkdtemp(prefix="chromium-")
        proc = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=4000", "--dump-dom", agent.url + "/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        dom = out.decode(errors="replace")
        assert "edge-b" in dom and "edge-a" in dom
        assert "P1" in dom or "P2" in dom
        keep = os.environ.get("SIGNALPATH_SCREENSHOTS")
        if keep:
            for png in shots.values():
                Path(keep).mkdir(parents=True, exist_ok=True)
                Path(keep, png.name).write_bytes(png.read_bytes())


async def test_at_risk_findings_are_listed_apart_from_active_incidents(live):
    """A chronic P3 (a rendition whose content runs late: variant drift) and a P2 (edge-a 404s):
    the API filters by severity and the page shows the P2 under "Open incidents" and the P3
    under "At risk", in that order (headless Chromium's rendered DOM)."""
    chromium = require_binary("chromium")
    async with Agent(parse_config(live.config())) as agent:
        await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-a").value == "ok", 10, "edge-a ok")
        live.origin.knobs.lag_segments["180p"] = 4
        for e in live.edges.values():
            e.knobs.lag_segments["180p"] = 4
        live.edges["edge-a"].knobs.segment_status = 404
        await wait_for(lambda: {i.severity for i in agent.incidents.localizer.open_incidents()} >= {"P2", "P3"},
                       20, "a P2 and a P3 open")
        async with aiohttp.ClientSession() as http:
            async with http.get(agent.url + "/api/v1/incidents?state=open&severity=P3") as r:
                risk = await r.json()
            async with http.get(agent.url + "/api/v1/incidents?state=open&severity=P9") as r:
                assert r.status == 400
        assert risk and {i["severity"] for i in risk} == {"P3"}
        await asyncio.sleep(2.5)  # the page refreshes itself within 2 s; give it one refresh
        profile = tempfile.mkdtemp(prefix="chromium-")
        proc = await asyncio.create_subprocess_exec(
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=4000", "--dump-dom", agent.url + "/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        dom = out.decode(errors="replace")
        active, at_risk = dom.index('id="incidents"'), dom.index('id="at-risk"')
        p2 = dom.index('class="incident P2"')
        p3 = dom.index('class="incident P3"')
        assert active < p2 < at_risk < p3
