"""Prometheus rules in dashboards/rules/: promtool check + unit tests, and test coverage per alert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from _require import require_binary

RULES = Path(__file__).resolve().parent.parent / "dashboards" / "rules"


def alert_names() -> set[str]:
    names = set()
    for f in RULES.glob("*.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            names |= {r["alert"] for r in g["rules"] if "alert" in r}
    return names


def test_promtool_check_rules():
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in RULES.glob("*.yml"))
    assert len(files) == 2
    r = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == 2


def test_promtool_unit_tests_pass():
    promtool = require_binary("promtool")
    files = sorted(str(p) for p in (RULES / "tests").glob("*.yml"))
    assert files
    r = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True, timeout=60,
                       cwd=RULES / "tests")
    assert r.returncode == 0 and "FAILED" not in r.stdout, r.stdout + r.stderr


def test_every_alert_has_a_firing_and_a_not_firing_case():
    firing: set[str] = set()
    silent: set[str] = set()
    for f in (RULES / "tests").glob("*.yml"):
        for t in yaml.safe_load(f.read_text())["tests"]:
            for case in t.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = alert_names()
    assert len(names) >= 7
    assert names - firing == set(), "alerts without a firing unit test"
    assert names - silent == set(), "alerts without a not-firing unit test"


def test_every_alert_has_severity_summary_and_runbook():
    for f in RULES.glob("*.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                if "alert" not in r:
                    assert r["record"].startswith("signalpath:"), r["record"]
                    continue
                sev = r["labels"]["severity"]
                assert sev in ("P1", "P2", "P3") or ("P1" in sev and "P2" in sev), (r["alert"], sev)
                assert r["annotations"]["summary"] and r["annotations"]["runbook"], r["alert"]


# ---- dashboards/alertmanager.yml: one page per fault ---------------------------------------

AM_CONFIG = RULES.parent / "alertmanager.yml"


def test_alertmanager_example_routes_each_source_once():
    """amtool's own routing test: the agent's P1/P2 incidents page, its P3 and every per-symptom rule
    go to chat, the SLO burn rates keep their notify routing."""
    amtool = require_binary("amtool")
    r = subprocess.run([amtool, "check-config", str(AM_CONFIG)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    cases = {
        ("alertname=SignalpathIncident", "severity=P1", "stream=main"): "crew-pager",
        ("alertname=SignalpathIncident", "severity=P2", "stream=main"): "crew-pager",
        ("alertname=SignalpathIncident", "severity=P3", "stream=main"): "crew-chat",
        ("alertname=SignalpathEdgeStale", "severity=P2", "stream=main"): "crew-chat",
        ("alertname=SignalpathIncidentP1Open", "severity=P1", "stream=main"): "crew-chat",
        ("alertname=SignalpathAvailabilityFastBurn", "notify=page", "severity=P2"): "sre-pager",
        ("alertname=SignalpathAvailabilitySlowBurn", "notify=ticket", "severity=P3"): "sre-tickets",
    }
    for labels, receiver in cases.items():
        r = subprocess.run([amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == receiver, (labels, r.stdout, r.stderr)
    every_alert = alert_names()
    routed = {labels[0].removeprefix("alertname=") for labels in cases}
    assert routed - {"SignalpathIncident"} <= every_alert


async def test_alertmanager_example_holds_back_the_rules_while_the_agent_has_an_incident(tmp_path):
    """A real Alertmanager with the example config: the agent's incident (sent by the agent's own sink)
    inhibits the rules' symptom alert of the same stream, not another stream's nor the SLO page."""
    import asyncio
    import time

    import httpx

    from agent.alerts import AlertmanagerSettings, AlertmanagerSink
    from agent.localize import Incident, IncidentEvent
    from tests.test_alerts import _free_port

    binary = require_binary("prometheus-alertmanager")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "am.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={AM_CONFIG}", f"--storage.path={tmp_path / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=log, stderr=subprocess.STDOUT)
    sink = AlertmanagerSink(AlertmanagerSettings(url=base, backoff_initial_s=0.1), site="studio-a")
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await client.get(base + "/-/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "am.log").read_text()
                await asyncio.sleep(0.1)
            now = time.time()
            await sink.start()
            sink.submit(IncidentEvent("opened", Incident(
                id="main-1", stream="main", stage="cdn", component="edge-b", fault="stale_playlist", severity="P2",
                started_at=now - 30, localized_at=now - 26, resolved_at=None, summary="edge-b stopped updating",
                evidence=[], runbook="Fail viewers over to edge-a.")))
            rules = [
                {"alertname": "SignalpathEdgeStale", "severity": "P2", "stream": "main", "site": "studio-b"},
                {"alertname": "SignalpathEdgeStale", "severity": "P2", "stream": "backup", "site": "studio-b"},
                {"alertname": "SignalpathAvailabilityFastBurn", "severity": "P2", "notify": "page", "stream": "main"},
            ]
            resp = await client.post(base + "/api/v2/alerts", json=[{"labels": labels} for labels in rules])
            assert resp.status_code == 200, resp.text

            state: dict[tuple[str, str], bool] = {}
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                alerts = (await client.get(base + "/api/v2/alerts")).json()
                state = {(a["labels"]["alertname"], a["labels"].get("stream", "")): bool(a["status"]["inhibitedBy"])
                         for a in alerts}
                if len(state) == 4 and state[("SignalpathEdgeStale", "main")]:
                    break
                await asyncio.sleep(0.1)
            assert state == {("SignalpathIncident", "main"): False, ("SignalpathEdgeStale", "main"): True,
                             ("SignalpathEdgeStale", "backup"): False,
                             ("SignalpathAvailabilityFastBurn", "main"): False}, state
    finally:
        await sink.stop()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
