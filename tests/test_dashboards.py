"""Dashboards and catalog against real software.

- dashboards/README.md's catalog table equals agent.metrics.CATALOG (generator output);
- the committed dashboard JSON equals gen_dashboards.py's output and has the variables;
- a real Prometheus (1-s scrapes, the rules loaded) scrapes TWO in-process agents
  (sites site-a, site-b) watching a live HLS origin + edge-a + edge-b; after a short
  fault on edge-b (segments 404, then playlists 503) every catalog metric the HLS probe
  produces is in a real scrape, nothing outside the catalog is, and every dashboard
  panel query (variables substituted) returns data from the Prometheus HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from _require import require_binary
from agent.app import Agent
from agent.config import parse_config
from agent.metrics import CATALOG
from waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
DASH = ROOT / "dashboards"
sys.path.insert(0, str(DASH))
import gen_catalog  # noqa: E402
import gen_dashboards  # noqa: E402

# Catalog metrics a scrape may lack, and why. Anything else in CATALOG must be scraped.
EMITTED_ONLY_ON_EVENTS: dict[str, str] = {
    "signalpath_playlist_anomalies_total": "counted only after a continuity anomaly (sequence gap/regression, "
                                           "discontinuity, segment too long); the live source has none",
    "signalpath_incidents_open": "a series exists only while an incident is open (incident sink)",
    "signalpath_time_to_localize_seconds": "observed only when an incident is localized",
}

METRIC_RE = re.compile(r"\bsignalpath_[a-z0-9_]+")


def produced_by_hls_agent() -> set[str]:
    """Catalog metrics the HLS probe, the runner's envelope and the agent's health sink write."""
    src = "".join((ROOT / f).read_text() for f in ("probes/hls.py", "agent/runner.py", "agent/app.py"))
    return {n for n in METRIC_RE.findall(src) if n in CATALOG}


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((DASH / "grafana").glob("*.json"))}


def panel_queries() -> list[tuple[str, str, str]]:
    return [(name, p["title"], t["expr"]) for name, d in dashboards().items()
            for p in d["panels"] for t in p["targets"]]


def rule_exprs() -> list[str]:
    out = []
    for f in (DASH / "rules").glob("*.yml"):
        for g in yaml.safe_load(f.read_text())["groups"]:
            out += [r["expr"] for r in g["rules"]]
    return out


def base_name(n: str) -> str:
    for suffix in ("_bucket", "_count", "_sum"):
        if n.removesuffix(suffix) in CATALOG:
            return n.removesuffix(suffix)
    return n


def substitute(expr: str) -> str:
    return (expr.replace("$site", ".*").replace("$stream", ".*").replace("$__rate_interval", "1m")
            .replace("$__range", "15m"))


# -- static checks ---------------------------------------------------------------------------

def test_readme_catalog_equals_catalog():
    text = (DASH / "README.md").read_text()
    assert gen_catalog.table_in(text) == gen_catalog.render_table(CATALOG), \
        "dashboards/README.md catalog is stale: run python dashboards/gen_catalog.py"
    assert gen_catalog.update_readme(text, CATALOG) == text
    rows = [ln for ln in gen_catalog.table_in(text).splitlines()[2:]]
    assert [r.split("`")[1] for r in rows] == list(CATALOG)


def test_unit_from_suffix():
    assert gen_catalog.unit_of("signalpath_probe_duration_seconds", "gauge") == "seconds"
    assert gen_catalog.unit_of("signalpath_segment_throughput_bytes_per_second", "gauge") == "bytes/s"
    assert gen_catalog.unit_of("signalpath_probe_failures_total", "counter") == "count"
    assert gen_catalog.unit_of("signalpath_segment_download_ratio", "gauge") == "ratio"
    with pytest.raises(gen_catalog.CatalogError):
        gen_catalog.update_readme("no markers here", CATALOG)


def test_dashboard_json_is_generated_and_well_formed():
    rendered = gen_dashboards.render()
    on_disk = {p.name: p.read_text() for p in (DASH / "grafana").glob("*.json")}
    assert on_disk == rendered, "dashboards/grafana is stale: run python dashboards/gen_dashboards.py"
    for name, d in dashboards().items():
        assert d["schemaVersion"] >= 39 and d["uid"].startswith("signalpath-"), name
        vars_ = {v["name"]: v for v in d["templating"]["list"]}
        assert vars_["datasource"]["type"] == "datasource" and vars_["datasource"]["query"] == "prometheus"
        for v in ("site", "stream"):
            assert vars_[v]["type"] == "query" and vars_[v]["definition"].startswith("label_values("), (name, v)
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), name
        for p in d["panels"]:
            assert p["title"].endswith("?"), (name, p["title"])
            assert p["datasource"]["uid"] == "${datasource}", (name, p["title"])
            assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


def test_every_named_metric_is_in_the_catalog():
    exprs = [e for _, _, e in panel_queries()] + rule_exprs()
    for d in dashboards().values():
        exprs += [v["definition"] for v in d["templating"]["list"] if v["type"] == "query"]
    named = {base_name(n) for e in exprs for n in METRIC_RE.findall(e)}
    assert named and named - set(CATALOG) == set()


# -- real Prometheus, two agents, live HLS ---------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_prometheus(tmp: Path, targets: list[str]) -> tuple[subprocess.Popen, str]:
    binary = require_binary("prometheus")
    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DASH / "rules" / "alerts.yml"), str(DASH / "rules" / "recording.yml")],
        "scrape_configs": [{"job_name": "signalpath", "static_configs": [{"targets": targets}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


async def scrape(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        if name.startswith("signalpath_"):
            out[name] = fam.type
    return out


def counter_seen(agent: Agent, name: str) -> bool:
    return bool(agent.store.snapshot()[1].get(name))


async def test_real_prometheus_scrapes_two_agents_and_every_panel_has_data(live, tmp_path):
    t0 = time.monotonic()
    require_binary("prometheus")
    agents = []
    try:
        for site in ("site-a", "site-b"):
            cfg = live.config()
            cfg["agent"]["site"] = site
            agent = Agent(parse_config(cfg))
            await agent.start()
            agents.append(agent)
        proc, prom = await start_prometheus(tmp_path, [a.url.removeprefix("http://") for a in agents])
        try:
            async with aiohttp.ClientSession() as http:
                async def ready() -> bool:
                    try:
                        async with http.get(prom + "/-/ready") as r:
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False

                async def query(q: str) -> list:
                    async with http.get(prom + "/api/v1/query", params={"query": q}) as r:
                        body = await r.json()
                    assert body["status"] == "success", (q, body)
                    return body["data"]["result"]

                await wait_for(ready, 20, "prometheus ready", every=0.2)
                # short fault on edge-b: segments 404 (segment errors), then playlists 503 (probe failures)
                edge_b = live.edges["edge-b"]
                edge_b.knobs.segment_status = 404
                await wait_for(lambda: all(counter_seen(a, "signalpath_segment_errors_total") for a in agents),
                               10, "segment errors counted at both sites")
                edge_b.knobs.segment_status = None
                edge_b.knobs.playlist_status = 503
                await wait_for(lambda: all(counter_seen(a, "signalpath_probe_failures_total") for a in agents),
                               10, "probe failures counted at both sites")
                edge_b.knobs.playlist_status = None

                # the catalog against a real scrape of each agent
                produced = produced_by_hls_agent()
                assert {"signalpath_stage_healthy", "signalpath_probe_failures_total",
                        "signalpath_segment_errors_total", "signalpath_playlist_age_seconds"} <= produced
                for a in agents:
                    scraped = await scrape(a.url)
                    assert set(scraped) - set(CATALOG) == set(), "scraped metrics missing from the catalog"
                    for name, typ in scraped.items():
                        assert CATALOG[name].type == typ, (name, typ)
                    missing = produced - set(scraped) - set(EMITTED_ONLY_ON_EVENTS)
                    assert missing == set(), f"catalog metrics not scraped (add to EMITTED_ONLY_ON_EVENTS " \
                                             f"with a reason if they are event-only): {sorted(missing)}"
                    named = {base_name(n) for _, _, e in panel_queries() for n in METRIC_RE.findall(e)}
                    assert named - set(scraped) == set(), "dashboards name metrics a scrape lacks"

                # every panel query returns data; both sites are in Prometheus
                queries = [(d, t, substitute(e)) for d, t, e in panel_queries()]
                pending = dict.fromkeys(queries)

                async def all_have_data() -> bool:
                    for key in list(pending):
                        if await query(key[2]):
                            del pending[key]
                    return not pending

                try:
                    await wait_for(all_have_data, 25, "data for every panel", every=0.5)
                except AssertionError:
                    raise AssertionError(f"panels without data: {list(pending)}") from None
                sites = {r["metric"]["site"] for r in await query("signalpath_stage_healthy")}
                assert sites == {"site-a", "site-b"}

                # the rules load and evaluate; cross-site counts see both sites per edge
                async def rules_ok() -> bool:
                    async with http.get(prom + "/api/v1/rules") as r:
                        groups = (await r.json())["data"]["groups"]
                    rules = [x for g in groups for x in g["rules"]]
                    return len(rules) == 17 and all(x["health"] == "ok" for x in rules)

                await wait_for(rules_ok, 10, "every rule evaluated with health ok", every=0.5)
                counts = await query('signalpath:component_sites:count{stage="cdn"}')
                assert {r["metric"]["component"]: float(r["value"][1]) for r in counts} == \
                    {"edge-a": 2.0, "edge-b": 2.0}
                assert await query("signalpath:stage_availability:ratio_avg5m")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    finally:
        for a in agents:
            await a.stop()
    assert time.monotonic() - t0 < 60
