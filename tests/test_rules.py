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
