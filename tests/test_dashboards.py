"""Dashboards and catalog against real software.

- dashboards/README.md's catalog table equals agent.metrics.CATALOG (generator output);
- the committed dashboard JSON equals gen_dashboards.py's output and has the variables;
- a real Prometheus (1-s scrapes, the rules loaded) scrapes TWO in-process agents (sites
  site-a, site-b) watching the embedded lab (agent/lab: studio, ingest, transcoder, origin,
  edge-a, edge-b, WHIP/WHEP). Both run HLS, ingest stat, encoder status, playback, media and
  latency (agent.demo.lab_agent_config); site-a also runs the WebRTC probes and a studio
  section (host from recorded /proc and /sys trees, GPU from a recorded NVML file, a feed —
  the origin's own program playlist — and a recorded capture device, network against
  loopback peers: the lab's control port, an upload endpoint, an NTP responder). edge-b
  answers 404 to segments, then goes down, so segment errors, probe failures and incidents
  exist. Then: every catalog metric but the allow-listed is in a real scrape, nothing
  outside the catalog is, every metric a dashboard names is scraped, every dashboard panel
  query (variables substituted) returns data from Prometheus's query_range API over the
  test's window (what Grafana asks), and every rule loads and evaluates.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from _require import require_binary
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from promserver import start_prometheus
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from agent.metrics import CATALOG
from tests.test_network import NtpResponder

ROOT = Path(__file__).resolve().parent.parent
DASH = ROOT / "dashboards"
sys.path.insert(0, str(DASH))
import gen_catalog  # noqa: E402
import gen_dashboards  # noqa: E402

# Catalog metrics a scrape may lack, and why. Anything else in CATALOG must be scraped.
EMITTED_ONLY_ON_EVENTS: dict[str, str] = {
    "signalpath_playlist_anomalies_total": "counted only after a continuity anomaly (sequence gap/regression, "
                                           "discontinuity, segment too long); no lab fault makes one, and no "
                                           "panel charts it",
    "signalpath_broadcast_live": "set only while a scheduled broadcast is on air (tests/test_broadcasts_agent.py "
                                 "checks it)",
    "signalpath_complaints_total": "counted only once tech support records a viewer complaint "
                                   "(tests/test_complaints_agent.py checks its values)",
}

# Panels that may show no data in this test, and why. Empty: every panel has data.
PANELS_WITHOUT_DATA: dict[str, str] = {}

PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes")
FIX = Path(__file__).resolve().parent / "fixtures"

METRIC_RE = re.compile(r"\bsignalpath_[a-z0-9_]+")
ANY_METRIC_RE = re.compile(r"\b(?:signalpath|process)_[a-z0-9_]+")


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


def named_metrics(expr: str) -> set[str]:
    return {base_name(n) for n in ANY_METRIC_RE.findall(expr)}


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


# -- real Prometheus, two agents, the embedded lab -----------------------------------------

async def scrape(url: str) -> dict[str, str]:
    """Family name (counters with ``_total``) -> type, every family of one scrape."""
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name + "_total" if fam.type == "counter" else fam.name] = fam.type
    return out


def counter_seen(agent: Agent, name: str) -> bool:
    return bool(agent.store.snapshot()[1].get(name))


def gauge_seen(agent: Agent, name: str) -> bool:
    return any(smp.name == name for samples in agent.store.snapshot()[0].values() for smp in samples)


def site_config(lab: Lab, site: str, tmp: Path, *, studio: dict | None) -> dict:
    conf = lab_agent_config(lab, "127.0.0.1:0", site, webrtc=studio is not None)
    conf["incidents"] = {"path": str(tmp / f"{site}.db")}
    if studio is not None:
        conf["streams"][0]["studio"] = studio
    return conf


def studio_section(lab: Lab, tmp: Path, upload_port: int, ntp: str) -> dict:
    host = FIX / "host"
    program = lab.origin_url().removesuffix(".m3u8") + "/180p.m3u8"  # the lowest rendition as a feed
    control = lab.control_url.split("//", 1)[1].split("/", 1)[0]
    return {
        "interval_s": 3.0, "timeout_s": 10.0,
        "host": {"proc_root": str(host / "t0" / "proc"), "proc_root_later": str(host / "t1_idle" / "proc"),
                 "sys_root": str(host / "sys"), "nics": ["eth0"], "encoder_processes": ["obs"],
                 "recording_path": str(tmp), "disk_min_free_bytes": 1024, "cpu_sample_s": 0.05},
        "gpu": {"recorded": str(FIX / "nvml-h200.json")},
        "sources": [{"name": "program", "url": program, "sample_s": 1.0, "expect_audio": True},
                    {"name": "webcam", "device": "HD Pro Webcam C920"}],
        "network": {"ingest": control, "rtt_samples": 3, "rtt_spacing_s": 0.01,
                    "upload_url": f"http://127.0.0.1:{upload_port}/upload", "upload_bytes": 20_000,
                    "target_bitrate": 10_000, "ntp_server": ntp, "connect_timeout_s": 2},
        "video4linux_root": str(host / "sys" / "class" / "video4linux"),
    }


@pytest.mark.timeout(150)
async def test_real_prometheus_scrapes_two_agents_on_the_lab_and_every_panel_has_data(tmp_path):
    t0 = time.monotonic()
    require_binary("prometheus")
    loop = asyncio.get_running_loop()
    ntp_transport, _ = await loop.create_datagram_endpoint(lambda: NtpResponder(0.0), local_addr=("127.0.0.1", 0))
    ntp = f"127.0.0.1:{ntp_transport.get_extra_info('sockname')[1]}"

    async def upload(req: web.Request) -> web.Response:
        await req.read()
        return web.Response(text="ok")

    app = web.Application(client_max_size=1_000_000)
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    upload_port = runner.addresses[0][1]
    agents: list[Agent] = []
    proc = None
    try:
        async with Lab(LabConfig()) as lab:
            try:
                studio = studio_section(lab, tmp_path, upload_port, ntp)
                for site, st in (("site-a", studio), ("site-b", None)):
                    agent = Agent(parse_config(site_config(lab, site, tmp_path, studio=st), "test"))
                    await agent.start()
                    agents.append(agent)
                proc, prom = start_prometheus(tmp_path, [a.url.removeprefix("http://") for a in agents])
                start = time.time()
                seen: dict[str, str] = {}

                async def scrape_all() -> None:
                    for a in agents:
                        seen.update(await scrape(a.url))

                async with aiohttp.ClientSession() as http:
                    async def ready() -> bool:
                        try:
                            async with http.get(prom + "/-/ready") as r:
                                return r.status == 200
                        except aiohttp.ClientError:
                            return False

                    async def query_range(q: str) -> list:
                        params = {"query": q, "start": f"{start:.3f}", "end": f"{time.time():.3f}", "step": "1"}
                        async with http.get(prom + "/api/v1/query_range", params=params) as r:
                            body = await r.json()
                        assert body["status"] == "success", (q, body)
                        return body["data"]["result"]

                    await wait_for(ready, 20, "prometheus ready", every=0.2)
                    # edge-b: segments 404 (segment errors), then down (probe failures, an incident)
                    await lab.inject("edge_404_segments", "edge-b", for_s=20)
                    await wait_for(lambda: all(counter_seen(a, "signalpath_segment_errors_total") for a in agents),
                                   20, "segment errors counted at both sites")
                    await lab.inject("edge_down", "edge-b", for_s=60)
                    await wait_for(lambda: all(counter_seen(a, "signalpath_probe_failures_total") for a in agents)
                                   and any(gauge_seen(a, "signalpath_incidents_open") for a in agents),
                                   20, "probe failures at both sites and an open incident")
                    await scrape_all()

                    # every panel query returns data over the test's window (WebRTC: first result ~30 s)
                    queries = [(d, t, substitute(e)) for d, t, e in panel_queries()
                               if t not in PANELS_WITHOUT_DATA]
                    pending = dict.fromkeys(queries)

                    async def all_have_data() -> bool:
                        await scrape_all()
                        for key in list(pending):
                            if await query_range(key[2]):
                                del pending[key]
                        return not pending

                    try:
                        await wait_for(all_have_data, 60, "data for every panel", every=1.0)
                    except AssertionError:
                        raise AssertionError(f"panels without data: {list(pending)}") from None
                    sites = {r["metric"]["site"] for r in await query_range("signalpath_stage_healthy")}
                    assert sites == {"site-a", "site-b"}

                    # the catalog against the real scrapes (union over the test)
                    ours = {n: t for n, t in seen.items() if n.startswith("signalpath_")}
                    assert set(ours) - set(CATALOG) == set(), "scraped metrics missing from the catalog"
                    for name, typ in ours.items():
                        assert CATALOG[name].type == typ, (name, typ)
                    missing = set(CATALOG) - set(ours) - set(EMITTED_ONLY_ON_EVENTS)
                    assert missing == set(), f"catalog metrics never scraped (add to EMITTED_ONLY_ON_EVENTS " \
                                             f"with a reason if they are event-only): {sorted(missing)}"
                    assert set(PROCESS_METRICS) <= set(seen), "the agent registers the process collector"
                    named = set().union(*(named_metrics(e) for _, _, e in panel_queries()),
                                        *(named_metrics(e) for e in rule_exprs()))
                    assert named - set(seen) == set(), "dashboards or rules name metrics no scrape has"

                    # the rules load and evaluate; cross-site counts see both sites per edge
                    n_rules = sum(len(g["rules"]) for f in (DASH / "rules").glob("*.yml")
                                  for g in yaml.safe_load(f.read_text())["groups"])

                    async def rules_ok() -> bool:
                        async with http.get(prom + "/api/v1/rules") as r:
                            groups = (await r.json())["data"]["groups"]
                        rules = [x for g in groups for x in g["rules"]]
                        return len(rules) == n_rules and all(x["health"] == "ok" for x in rules)

                    await wait_for(rules_ok, 10, "every rule evaluated with health ok", every=0.5)
                    counts = await query_range('signalpath:component_sites:count{stage="cdn"}')
                    assert {r["metric"]["component"]: float(r["values"][-1][1]) for r in counts} == \
                        {"edge-a": 2.0, "edge-b": 2.0}
                    assert await query_range("signalpath:stage_availability:ratio_avg5m")
            finally:
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=5)
                for a in agents:
                    await a.stop()
    finally:
        await runner.cleanup()
        ntp_transport.close()
    elapsed = time.monotonic() - t0
    print(f"real-Prometheus dashboard test: {elapsed:.1f} s")
    assert elapsed < 90
