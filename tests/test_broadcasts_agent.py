"""Broadcasts and maintenance in a running agent watching the embedded lab (agent/schedule.py).

1. A broadcast whose stream is not live at T-0: before the start the stream is off air and its
   stopped encoder opens nothing; at T-0 a P1 ``not_live`` opens at origin/origin and
   ``signalpath_broadcast_live`` is 0; once the encoder is back it resolves and the gauge is 1.
   The encoder stopping after the scheduled end opens nothing.
2. A maintenance window on edge-b: its fault is recorded (an incident marked with the window,
   in the store and the API) but a real Alertmanager receives no alert for it, while edge-a's
   fault outside the window reaches it.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from _require import require_binary
from chromium import Browser
from test_alerts import _am_alerts, alertmanager  # noqa: F401 - the fixture
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

pytestmark = pytest.mark.timeout(240)


async def incidents(client: httpx.AsyncClient, url: str, state: str = "all") -> list[dict[str, Any]]:
    return (await client.get(f"{url}/api/v1/incidents?state={state}")).json()


def live_gauge(agent: Agent) -> float | None:
    return agent.registry.get_sample_value("signalpath_broadcast_live",
                                           {"site": "demo", "broadcast": "Evening news", "stream": "main"})


async def down_for(agent: Agent, seconds: float, since: dict[str, float]) -> bool:
    """The origin's HLS evidence DOWN for ``seconds`` (a stopped encoder, seen by the probe)."""
    if agent.board.state_of("main", "origin", "origin").value != "down":
        since.clear()
        return False
    since.setdefault("t", time.monotonic())
    return time.monotonic() - since["t"] >= seconds


async def test_not_live_at_t0_is_a_p1_and_the_scheduled_end_opens_nothing(tmp_path):
    async with Lab(LabConfig(webrtc=False)) as lab:
        t0 = time.time()
        start, end = t0 + 35, t0 + 70
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(tmp_path / "incidents.db"))
        conf["broadcasts"] = [{"name": "Evening news", "streams": ["main"], "start": start, "end": end}]
        await lab.inject("encoder_stop")  # the crew has not started the encoder yet
        async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
            # off air before the start: the stopped stream is seen, and nothing opens
            seen: dict[str, float] = {}
            await wait_for(lambda: down_for(agent, 6, seen), 25, "the origin seen down")
            assert time.time() < start and await incidents(client, agent.url) == []
            status = (await client.get(agent.url + "/api/v1/status")).json()
            assert status["streams"][0]["schedule"]["state"] == "off_air"
            assert status["broadcast"]["name"] == "Evening news" and status["broadcast"]["on_air"] is False
            async with Browser(require_binary("chromium"), tmp_path / "profile") as browser:
                page = await browser.open(agent.url + "/")
                said = await page.wait("(() => { const t = document.getElementById('broadcast').textContent;"
                                       " return t.startsWith('Next: Evening news') ? t : ''; })()")
                assert "starts in" in said
                assert await page.eval("document.querySelector('.stream .sched').dataset.state") == "off_air"

            # T-0 and the stream is not live: P1 not_live at the origin
            async def not_live() -> dict[str, Any] | None:
                return next((i for i in await incidents(client, agent.url, "open") if i["fault"] == "not_live"), None)

            inc = await wait_for(not_live, start - time.time() + 15, "not_live at T-0")
            assert (inc["stage"], inc["component"], inc["severity"]) == ("origin", "origin", "P1")
            assert inc["localized_at"] >= _iso(start) and "'Evening news'" in " ".join(inc["evidence"])
            assert live_gauge(agent) == 0.0

            # the encoder starts: live, the incident resolves, the gauge says so
            await lab.clear_all()

            async def resolved() -> bool:
                return any(i["id"] == inc["id"] and i["resolved_at"] for i in await incidents(client, agent.url))

            await wait_for(resolved, 40, "not_live resolved")
            await wait_for(lambda: live_gauge(agent) == 1.0, 10, "broadcast_live 1")

            # the scheduled end, and the encoder stops after it: a normal end, no incident
            await wait_for(lambda: time.time() >= end, end - time.time() + 5, "the scheduled end")
            before = {i["id"] for i in await incidents(client, agent.url)}
            await lab.inject("encoder_stop")
            seen.clear()
            await wait_for(lambda: down_for(agent, 6, seen), 30, "the origin seen down after the end")
            after = await incidents(client, agent.url, "open")
            assert [i for i in after if i["id"] not in before] == [], after
            status = (await client.get(agent.url + "/api/v1/status")).json()
            assert status["streams"][0]["schedule"]["state"] == "off_air"
            assert live_gauge(agent) is None  # no broadcast on air: no series


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_a_maintenance_window_records_without_alerting(tmp_path, alertmanager):  # noqa: F811
    async with Lab(LabConfig(webrtc=False)) as lab:
        now = time.time()
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(tmp_path / "incidents.db"))
        conf["maintenance"] = [{"name": "edge-b cache swap", "start": now - 1, "end": now + 600,
                                "stream": "main", "stage": "cdn", "component": "edge-b"}]
        conf["alerts"] = {"alertmanagers": [{"url": alertmanager}]}
        async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
            await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-b").value == "ok", 30, "edge-b ok")
            status = (await client.get(agent.url + "/api/v1/status")).json()
            (m,) = status["streams"][0]["schedule"]["maintenance"]
            assert (m["name"], m["stage"], m["component"]) == ("edge-b cache swap", "cdn", "edge-b")

            await lab.inject("edge_404_segments", "edge-b")

            async def open_at(component: str) -> dict[str, Any] | None:
                return next((i for i in await incidents(client, agent.url, "open")
                             if (i["stage"], i["component"]) == ("cdn", component)), None)

            muted = await wait_for(lambda: open_at("edge-b"), 30, "edge-b's incident")
            assert muted["maintenance"] == "edge-b cache swap" and muted["fault"] == "segment_missing"
            await lab.clear_all()
            # edge-a outside the window: alerted. Alerts leave in order, so once edge-a's is at
            # Alertmanager, edge-b's would be there too had it been sent
            await lab.inject("edge_404_segments", "edge-a")
            control = await wait_for(lambda: open_at("edge-a"), 30, "edge-a's incident")
            assert control["maintenance"] is None

            async def at_am() -> list[dict[str, Any]]:
                alerts = await _am_alerts(client, alertmanager)
                return alerts if any(a["labels"].get("component") == "edge-a" for a in alerts) else []

            alerts = await wait_for(at_am, 30, "edge-a's alert at Alertmanager")
            assert not any(a["labels"].get("component") == "edge-b" for a in alerts), alerts
            # the history keeps it: the stored incident, with the window's name
            stored = [i for i in await incidents(client, agent.url) if i["id"] == muted["id"]]
            assert stored and stored[0]["maintenance"] == "edge-b cache swap"
            # the status page says "maintenance", at laptop and phone sizes
            async with Browser(require_binary("chromium"), tmp_path / "profile") as browser:
                page = await browser.open(agent.url + "/")
                banner = await page.wait("(() => { const m = document.querySelector('.maint');"
                                         " return m ? m.textContent : ''; })()")
                assert banner.startswith("MAINTENANCE (CDN edge-b): edge-b cache swap until") and "no alerts" in banner
                await page.screenshots(tmp_path, "maintenance")


async def test_broadcasts_and_maintenance_added_through_the_api_survive_a_restart(live, tmp_path):
    conf = live.config()
    conf["incidents"] = {"path": str(tmp_path / "incidents.db")}
    conf["broadcasts"] = [{"name": "Morning show", "streams": ["main"], "start": "2026-01-01T07:00:00Z",
                           "end": "2026-01-01T09:00:00Z"}]
    later = time.time() + 3600
    news = {"name": "Evening news", "streams": ["main"], "start": later, "end": later + 1800, "preroll_s": 300}
    async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
        r = await client.post(agent.url + "/api/v1/broadcasts", json=news)
        assert r.status_code == 403 and "schedule_api.enabled" in r.json()["error"]  # no write user: off
    conf["schedule_api"] = {"enabled": True}
    async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
        api = agent.url + "/api/v1"
        r = await client.post(api + "/broadcasts", json=news)
        assert r.status_code == 201, r.text
        assert r.json()["start"].endswith("Z") and r.json()["preroll_s"] == 300
        for bad, status, words in (({**news}, 409, "exists"),
                                   ({**news, "name": "x", "streams": ["nope"]}, 400, "'nope' is not a configured"),
                                   ({**news, "name": "y", "start": "tonight"}, 400, "start:"),
                                   ({**news, "name": "Morning show"}, 409, "exists")):
            r = await client.post(api + "/broadcasts", json=bad)
            assert r.status_code == status and words in r.json()["error"], (bad, r.text)
        r = await client.post(api + "/maintenance", json={"name": "typo", "start": time.time(), "end": time.time() + 60,
                                                          "stage": "cdn", "component": "edge-zz"})
        assert r.status_code == 400 and r.json()["error"].startswith("component: 'edge-zz' is not a cdn component")
        r = await client.post(api + "/maintenance", json={"name": "edge-a swap", "start": time.time() - 1,
                                                          "end": time.time() + 600, "stage": "cdn",
                                                          "component": "edge-a"})
        assert r.status_code == 201, r.text
        listed = (await client.get(api + "/broadcasts")).json()
        assert {(b["name"], b["source"], b["state"]) for b in listed["broadcasts"]} == {
            ("Morning show", "config", "ended"), ("Evening news", "api", "scheduled")}
        assert [(m["name"], m["active"]) for m in listed["maintenance"]] == [("edge-a swap", True)]
        status = (await client.get(api + "/status")).json()
        assert status["broadcast"]["name"] == "Evening news"
        assert (await client.delete(api + "/broadcasts/Morning%20show")).status_code == 409  # the config's
    async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
        api = agent.url + "/api/v1"
        listed = (await client.get(api + "/broadcasts")).json()  # kept across the restart
        assert {b["name"] for b in listed["broadcasts"]} == {"Morning show", "Evening news"}
        assert (await client.delete(api + "/broadcasts/Evening%20news")).status_code == 204
        assert (await client.delete(api + "/broadcasts/Evening%20news")).status_code == 404
        assert {b["name"] for b in (await client.get(api + "/broadcasts")).json()["broadcasts"]} == {"Morning show"}
        assert (await client.get(api + "/status")).json()["streams"][0]["schedule"]["state"] == "off_air"
