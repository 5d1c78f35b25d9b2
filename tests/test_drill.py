"""``signalpath drill`` against the embedded lab and an agent watching it (a webhook receiver
for its alerts): a plan of lab faults passes, with each step's localization, resolution and
alert recorded in the HTML and JUnit XML reports; a plan with an undetectable manual step
(the operator presses Enter, nothing was pulled) fails, the step named. The example plan
validates."""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from localserver import LocalServer
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.drill import load_plan
from agent.errors import AgentError, ConfigError
from agent.lab import Lab, LabConfig

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).parent.parent


async def drill(tmp_path: Path, plan: dict, name: str, stdin: bytes = b"") -> tuple[int, str, Path, Path]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan))
    html, junit = tmp_path / f"{name}.html", tmp_path / f"{name}.xml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "drill", "--plan", str(path), "-o", str(html), "--junit", str(junit),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
    async with asyncio.timeout(240):
        out, _ = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(), html, junit


async def test_a_lab_drill_passes_and_an_undetectable_step_fails_named(tmp_path):
    hooks: list[dict] = []

    async def receive(req: web.Request) -> web.Response:
        hooks.append(await req.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    receiver = await LocalServer.start(app)
    try:
        async with Lab(LabConfig(webrtc=False)) as lab:
            conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(tmp_path / "agent.db"))
            conf["alerts"] = {"webhooks": [{"url": receiver.url + "/hook", "secret": "drill-secret-123"}]}
            async with Agent(parse_config(conf)) as agent:
                await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-b").value == "ok", 40, "edge-b ok")
                base = {"name": "lab drill", "agent": agent.url, "lab": lab.control_url, "stream": "main",
                        "require_alert": True}
                plan = {**base, "steps": [
                    {"name": "edge-b goes down", "fault": "edge_down", "target": "edge-b", "hold_s": 3,
                     "expect": {"stage": "cdn", "component": "edge-b"}},
                    {"name": "the origin answers 5xx", "fault": "origin_5xx", "target": "origin", "hold_s": 3,
                     "expect": {"stage": "origin", "component": "origin"}}]}
                rc, out, html, junit = await drill(tmp_path, plan, "pass")
                assert rc == 0, out
                assert "2 of 2 steps passed" in out
                suite = ET.parse(junit).getroot()
                assert suite.get("tests") == "2" and suite.get("failures") == "0"
                assert [c.get("name") for c in suite] == ["step 1: edge-b goes down", "step 2: the origin answers 5xx"]
                page = html.read_text()
                assert "2 of 2 steps passed" in page and page.count(">PASS<") == 2
                assert ">yes<" in page  # the alert column: the webhook got each incident
                assert {h.get("incident", {}).get("component") for h in hooks} >= {"edge-b", "origin"}

                # a plan the agent or the lab cannot run: said before anything is injected
                before = len(lab.book.snapshot()["history"])
                wrong = {**base, "stream": "mian", "steps": [
                    {"name": "typo", "fault": "edge_stael", "target": "edge-b",
                     "expect": {"stage": "cdn", "component": "edge-b"}},
                    {"name": "no such edge", "fault": "edge_down", "target": "edge-z",
                     "expect": {"stage": "cdn", "component": "edge-z"}}]}
                rc, out, _, _ = await drill(tmp_path, wrong, "wrong")
                assert rc == 2, out
                assert "nothing was injected" in out and "does not watch 'mian' (it watches: main)" in out
                assert "steps[0].fault: the lab has no fault 'edge_stael'" in out
                assert "steps[1].target: 'edge-z' is not a target of edge_down" in out
                assert len(lab.book.snapshot()["history"]) == before

                plan = {**base, "require_alert": False, "steps": [
                    {"name": "pull camera 1", "manual": "pull the HDMI cable of camera 1", "restore": "plug it back",
                     "detect_s": 8, "hold_s": 0, "expect": {"stage": "studio", "component": "camera-1"}}]}
                rc, out, html, junit = await drill(tmp_path, plan, "fail", stdin=b"\n\n")
                assert rc == 1, out
                assert "FAILED step 1 (pull camera 1): not detected: no incident within 8 s" in out
                case = ET.parse(junit).getroot()[0]
                failure = case.find("failure")
                assert failure is not None and failure.get("message", "").startswith("step 1 (pull camera 1)")
                assert "FAIL: not detected" in html.read_text()
    finally:
        await receiver.stop()


def test_the_example_plan_is_valid_and_bad_plans_say_where(tmp_path):
    plan = load_plan(str(ROOT / "examples" / "drill-lab-quarterly.yaml"))
    assert plan.agent == "http://127.0.0.1:9321"
    assert len(plan.steps) >= 7 and {s.expect.stage for s in plan.steps} >= {"studio", "ingest", "transcode",
                                                                             "origin", "cdn"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "stream": "main", "steps": [
        {"name": "both", "fault": "edge_down", "manual": "pull it", "expect": {"stage": "cdn", "component": "e"}}]}))
    with pytest.raises(ConfigError) as err:
        load_plan(str(bad))
    assert "steps.0" in str(err.value) and "not both" in str(err.value)
    bad.write_text(yaml.safe_dump({"name": "x", "stream": "main", "agent": "127.0.0.1:9321", "steps": [
        {"name": "stage typo", "manual": "pull it", "expect": {"stage": "cdnn", "component": "edge-a"}}]}))
    with pytest.raises(ConfigError) as err:
        load_plan(str(bad))
    assert "steps.0.expect.stage" in str(err.value) and "'cdnn' is not a stage" in str(err.value)


async def test_the_agent_api_sends_a_urls_userinfo_as_basic_auth_and_never_prints_it():
    from agent.drill import AgentApi

    seen: list[str] = []

    async def incidents(req: web.Request) -> web.Response:
        seen.append(req.headers.get("Authorization", ""))
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/api/v1/incidents", incidents)
    server = await LocalServer.start(app)
    try:
        api = AgentApi(server.url.replace("http://", "http://ops:s3cret-pw@"))
        assert await asyncio.to_thread(api.incidents) == []
        assert seen == ["Basic b3BzOnMzY3JldC1wdw=="]  # ops:s3cret-pw
        assert "s3cret" not in api.url
    finally:
        await server.stop()
    with pytest.raises(AgentError) as err:
        await asyncio.to_thread(AgentApi(server.url.replace("http://", "http://ops:s3cret-pw@")).incidents)
    assert "s3cret" not in str(err.value) and "ops" not in str(err.value)
