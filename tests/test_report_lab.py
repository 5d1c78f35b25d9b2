"""The post-broadcast report of a lab run with scripted faults: a broadcast of one minute,
edge-b down for 12 s, then edge-a stale for 10 s, watched by an agent (history every 2 s)
and scraped by a real Prometheus.

Checked against what the test computes itself: the incidents in the database (plain
sqlite3), the lab's record of each fault (its start and clear), and the availability those
imply; the HTML served at /report renders in headless Chromium with no request beyond the
page itself (Resource Timing), screenshots kept; the Prometheus-backed report (the CLI,
``--prometheus``) agrees with the embedded history within one downsampling step."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest
from _require import require_binary
from chromium import Browser
from promserver import start_prometheus
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]
ROOT = Path(__file__).parent.parent
STEP = 2.0
LENGTH = 48.0  # the broadcast's seconds: two 10-s faults with room around them


async def _until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.time()))


async def test_the_report_of_a_broadcast_with_scripted_faults_matches_the_store_and_the_lab(tmp_path):
    chromium = require_binary("chromium")
    require_binary("prometheus")
    db = tmp_path / "agent.db"
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(db))
        conf["history"] = {"step_s": STEP}
        start = float(int(time.time()) + 18)  # after the agent's first full cycles
        end = start + LENGTH
        conf["broadcasts"] = [{"name": "Drill night", "streams": ["main"], "start": start, "end": end}]
        async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=60) as client:
            prom, prom_url = start_prometheus(tmp_path, [agent.url.removeprefix("http://")], interval="500ms",
                                              rules=False)
            try:
                await wait_for(lambda: _ready(prom_url), 30, "prometheus ready", every=0.2)
                await _until(start + 4)
                down = await lab.inject("edge_down", "edge-b")
                await _until(start + 14)
                await lab.clear(down.id)
                await _until(start + 24)
                stale = await lab.inject("edge_stale", "edge-a")
                await _until(start + 34)
                await lab.clear(stale.id)
                await _until(end + 2 * STEP + 3)  # the last step stored

                async def quiet() -> bool:
                    return not [i for i in agent.incidents.localizer.open_incidents() if i.severity != "P3"]
                await wait_for(quiet, 40, "the faults' incidents resolved")

                r = await client.get(agent.url + "/report?broadcast=" + urllib.parse.quote("Drill night")
                                     + "&format=json")
                assert r.status_code == 200, r.text
                rep = r.json()

                # 1. the incidents, as the database has them (plain sqlite3, not the agent's code)
                with sqlite3.connect(db) as raw:
                    rows = raw.execute("SELECT id, stage, component, fault, started_at, resolved_at FROM incidents "
                                       "WHERE stream = 'main' AND started_at < ? AND "
                                       "(resolved_at IS NULL OR resolved_at >= ?)", (end, start)).fetchall()
                assert sorted(i["id"] for i in rep["incidents"]) == sorted(x[0] for x in rows)
                for i in rep["incidents"]:
                    row = next(x for x in rows if x[0] == i["id"])
                    assert i["resolved_s"] == pytest.approx(row[5] - row[4]) if row[5] else i["resolved_s"] is None

                # 2. against the lab's truth: one incident per fault, at its place, in its time
                for rec, place in ((down, ("cdn", "edge-b")), (stale, ("cdn", "edge-a"))):
                    mine = [x for x in rows if (x[1], x[2]) == place and rec.started_at - 1 <= x[4] <= rec.ended_at]
                    assert len(mine) == 1, (place, rows)
                    _, _, _, _, began, resolved = mine[0]
                    assert began - rec.started_at < 8.0
                    assert resolved is not None and rec.ended_at - 1 <= resolved <= rec.ended_at + 20

                # 3. availability: the seconds each edge was faulty, of the broadcast's LENGTH
                avail = {a["place"]: a for a in rep["availability"]}
                down_s = down.ended_at - down.started_at
                stale_s = stale.ended_at - stale.started_at
                b = avail["cdn/edge-b"]
                assert b["measured_s"] == pytest.approx(LENGTH, abs=2 * STEP)
                assert down_s - 4 <= b["bad_s"] <= down_s + 5, b
                assert b["ratio"] == pytest.approx(1 - down_s / LENGTH, abs=5 / LENGTH) and b["meets"] is False
                a = avail["cdn/edge-a"]
                assert stale_s - 7 <= a["bad_s"] <= stale_s + 5, a  # stale only after 1.5 target durations
                assert avail["origin/origin"]["ratio"] == 1.0
                assert rep["summary"].startswith(f"{len(rep['incidents'])} incident")

                # 4. the page, as a browser gets it: self-contained, every plot drawn
                async with Browser(chromium, tmp_path / "profile") as browser:
                    status = await browser.open(agent.url + "/")  # after the broadcast, the page links its report
                    link = await status.wait("(() => { const a = document.getElementById('report-link');"
                                             " return a && !a.hidden ? a.getAttribute('href') : ''; })()")
                    assert link == "/report?broadcast=Drill%20night"
                    page = await browser.open(agent.url + link)
                    await page.wait("document.readyState === 'complete' && !!document.getElementById('summary')")
                    assert await page.eval("performance.getEntriesByType('resource').map(e => e.name)") == []
                    assert await page.eval("document.querySelectorAll('svg').length") >= 6
                    text = await page.eval("document.getElementById('summary').textContent")
                    assert "edge-b" in text and "objective" in text
                    await page.screenshots(tmp_path, "report")

                # 5. the same window from Prometheus (the CLI): within one step of the embedded history
                out = subprocess.run(
                    [sys.executable, "-m", "agent.cli", "report", "--db", str(db), "--from", str(start), "--to",
                     str(end), "--stream", "main", "--prometheus", prom_url, "--json",
                     "--settings", json.dumps({"history": {"step_s": STEP}})],
                    capture_output=True, text=True, timeout=120, cwd=ROOT)
                assert out.returncode == 0, out.stderr
                from_prom = json.loads(out.stdout)
                assert from_prom["source"].startswith("Prometheus")
                prom_avail = {a["place"]: a for a in from_prom["availability"]}
                for place in ("cdn/edge-b", "cdn/edge-a", "origin/origin"):
                    assert prom_avail[place]["bad_s"] == pytest.approx(avail[place]["bad_s"], abs=STEP), place
                assert from_prom["incidents"] == rep["incidents"]  # the store's, either way
            finally:
                prom.terminate()
                prom.wait(10)


async def _ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            return (await c.get(url + "/-/ready")).status_code == 200
    except httpx.HTTPError:
        return False
