"""Viewer complaints in a running agent watching the embedded lab: recorded through the API,
the CLI and the status page's form (headless Chromium over CDP), each judged against what
the agent saw — linked to the lab fault's incident while it lasts, "unexplained" when
healthy — counted on /metrics, listed by ``signalpath complaints``, and a cluster of
unexplained complaints on one edge opening its own P3 incident. Writes need a write user
when logins are configured; without any, recording is off unless enabled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from _require import require_binary
from chromium import Browser
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).parent.parent


def conf_for(lab: Lab, tmp_path: Path, **complaints: Any) -> dict[str, Any]:
    conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(tmp_path / "incidents.db"))
    conf["complaints"] = {"enabled": True, **complaints}
    return conf


async def open_incident(client: httpx.AsyncClient, url: str, stage: str, component: str, fault: str
                        ) -> dict[str, Any] | None:
    for i in (await client.get(url + "/api/v1/incidents?state=open")).json():
        if (i["stage"], i["component"], i["fault"]) == (stage, component, fault):
            return i
    return None


async def test_complaints_are_linked_to_the_fault_they_fall_in_and_clusters_open_an_incident(tmp_path):
    chromium = require_binary("chromium")
    async with Lab(LabConfig(webrtc=False)) as lab:
        async with Agent(parse_config(conf_for(lab, tmp_path))) as agent, \
                httpx.AsyncClient(timeout=10) as client:
            api = agent.url + "/api/v1/complaints"
            await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-b").value == "ok", 30, "edge-b ok")

            # healthy: nothing explains a stutter on edge-b
            r = await client.post(api, json={"stream": "main", "type": "stutter", "edge": "edge-b",
                                             "region": "Lyon", "note": "buffering since 20:05"})
            assert r.status_code == 201, r.text
            calm = r.json()
            assert calm["explained"] is False and calm["explained_by"] is None and calm["label"] == "stutter / buffering"
            assert {(s["stage"], s["component"]) for s in calm["seen"]["stages"]} >= {("cdn", "edge-b"),
                                                                                     ("origin", "origin")}

            # a lab fault at edge-b: once its incident is open, edge-b's viewers' complaint is linked to it
            await lab.inject("edge_404_segments", "edge-b")
            inc = await wait_for(lambda: open_incident(client, agent.url, "cdn", "edge-b", "segment_missing"), 30,
                                 "the edge-b incident")
            r = await client.post(api, json={"stream": "main", "type": "stutter", "edge": "edge-b"})
            linked = r.json()
            assert r.status_code == 201 and linked["explained_by"] == inc["id"], linked
            assert any(i["id"] == inc["id"] and i["open"] for i in linked["seen"]["incidents"])
            # ... and not edge-a's: the fault is edge-b's
            r = await client.post(api, json={"stream": "main", "type": "stutter", "edge": "edge-a"})
            assert r.json()["explained"] is False
            # the CLI, as tech support types it, to the running agent
            cli = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "agent.cli", "complaint", "add", "--agent", agent.url,
                                 "--stream", "main", "--type", "cannot_start", "--edge", "edge-b"],
                capture_output=True, text=True, timeout=30, cwd=ROOT)
            assert cli.returncode == 0, cli.stderr
            assert f"explained by incident {inc['id']}" in cli.stdout and "cannot start" in cli.stdout
            await lab.clear_all()

            # bad input: a clear error naming the field, nothing stored
            r = await client.post(api, json={"stream": "main", "type": "laggy"})
            assert r.status_code == 400 and r.json()["error"].startswith("type:")
            r = await client.post(api, json={"stream": "main", "type": "stutter", "edge": "edge-z"})
            assert r.status_code == 400 and r.json()["error"].startswith("edge:")
            r = await client.post(api, content=b"{nope", headers={"Content-Type": "application/json"})
            assert r.status_code == 400
            # JSON sent as a form (curl -d's default type) is read as JSON, not as an empty form
            r = await client.post(api, content=b'{"stream": "main", "type": "other", "edge": "edge-a"}',
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert r.status_code == 201 and r.json()["type"] == "other"

            # three unexplained "A/V out of sync" on edge-a within 15 min: a finding of its own (P3)
            for _ in range(3):
                r = await client.post(api, json={"stream": "main", "type": "av_sync", "edge": "edge-a"})
                assert r.json()["explained"] is False
            cluster = await wait_for(lambda: open_incident(client, agent.url, "playback", "edge-a",
                                                           "viewer_complaints"), 30, "the complaints incident")
            assert cluster["severity"] == "P3" and any("3 unexplained 'A/V out of sync'" in e
                                                       for e in cluster["evidence"]), cluster

            # the status page's form (headless Chromium): the operator records one, the page says the verdict
            async with Browser(chromium, tmp_path / "profile") as browser:
                page = await browser.open(agent.url + "/")
                await page.wait("!!document.querySelector('#complaint-form select[name=edge] option[value=\"edge-b\"]')")
                await page.eval("""(() => { const f = document.getElementById('complaint-form');
                    f.elements.type.value = 'high_delay'; f.elements.edge.value = 'edge-b';
                    f.elements.note.value = 'far behind the radio'; f.requestSubmit(); })()""")
                said = await page.wait("(() => { const t = document.getElementById('complaint-result').textContent;"
                                       " return t.startsWith('Recorded') ? t : ''; })()")
                assert "unexplained" in said
                await page.wait("document.querySelectorAll('#complaints li').length >= 5")
                await page.screenshots(tmp_path, "complaints")

            listed = (await client.get(api)).json()
            assert len(listed) == 9 and listed[0]["type"] == "high_delay" and listed[0]["note"] == "far behind the radio"
            for kind, n in (("stutter", 3), ("av_sync", 3), ("cannot_start", 1), ("high_delay", 1)):
                assert agent.registry.get_sample_value("signalpath_complaints_total",
                                                       {"site": "demo", "stream": "main", "type": kind}) == n, kind
    # the stored list in the terminal
    out = subprocess.run([sys.executable, "-m", "agent.cli", "complaints", "--db", str(tmp_path / "incidents.db")],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert f"explained by incident {inc['id']}" in out.stdout and "stutter / buffering (1 / 2)" in out.stdout


async def test_recording_needs_a_write_user_or_an_explicit_enable(live, tmp_path):
    write_hash = bcrypt.hashpw(b"ops-password-1", bcrypt.gensalt(4)).decode()
    read_hash = bcrypt.hashpw(b"ro-password-22", bcrypt.gensalt(4)).decode()
    body = {"stream": "main", "type": "other"}
    # no login configured, not enabled: off, and the answer says how to turn it on
    conf = live.config()
    async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
        r = await client.post(agent.url + "/api/v1/complaints", json=body)
        assert r.status_code == 403 and "complaints.enabled" in r.json()["error"]
        assert (await client.get(agent.url + "/api/v1/complaints")).json() == []
    # write users configured: on for them, refused for a reader and for no one
    conf = live.config()
    conf["agent"]["web"] = {"basic_auth": {"read": {"viewer": read_hash}, "write": {"ops": write_hash}}}
    async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
        url = agent.url + "/api/v1/complaints"
        assert (await client.post(url, json=body)).status_code == 401
        assert (await client.post(url, json=body, auth=("viewer", "ro-password-22"))).status_code == 403
        r = await client.post(url, json=body, auth=("ops", "ops-password-1"))
        assert r.status_code == 201, r.text
        env = {**os.environ, "SIGNALPATH_PASSWORD": "ops-password-1"}
        started = time.monotonic()
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent.cli", "complaint", "add", "--agent", agent.url,
                             "--stream", "main", "--type", "no_audio", "--user", "ops"],
            capture_output=True, text=True, timeout=30, cwd=ROOT, env=env)
        assert cli.returncode == 0 and "no audio: unexplained" in cli.stdout, cli.stderr
        assert "ops-password-1" not in cli.stdout + cli.stderr and time.monotonic() - started < 30
        env["SIGNALPATH_PASSWORD"] = "wrong"
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent.cli", "complaint", "add", "--agent", agent.url,
                             "--stream", "main", "--type", "no_audio", "--user", "ops"],
            capture_output=True, text=True, timeout=30, cwd=ROOT, env=env)
        assert cli.returncode == 2 and "refused it (401)" in cli.stderr
