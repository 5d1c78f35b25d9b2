"""Streams sharded across agents (agent/shard.py): the choice, the config, the CLI, and three
agents of one site behind a real Prometheus whose rules aggregate across them unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from promserver import start_prometheus
from waiting import wait_for

from agent.app import Agent
from agent.config import ConfigError, parse_config
from agent.shard import parse_shard, shard_of, sharded
from agent.tracing import make_provider

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"stream-{i:03d}" for i in range(300)]


def test_a_shard_is_written_i_of_n():
    assert parse_shard("2/3") == (2, 3) and parse_shard(" 1/1 ") == (1, 1)
    for bad, why in (("0/3", "not a shard"), ("4/3", "does not exist"), ("2/3/4", "not a shard"), ("a/b", "not a shard"),
                     ("1/2000", "at most 1024"), ("", "not a shard")):
        with pytest.raises(ValueError, match=why):
            parse_shard(bad)


def test_every_stream_has_exactly_one_shard_spread_evenly_and_growing_moves_only_to_the_new_one():
    by3 = {name: shard_of(name, 3) for name in NAMES}
    counts = [sum(1 for s in by3.values() if s == i) for i in (1, 2, 3)]
    assert sum(counts) == len(NAMES) and all(70 <= c <= 130 for c in counts), counts  # 100 each, give or take
    by4 = {name: shard_of(name, 4) for name in NAMES}
    moved = [name for name in NAMES if by4[name] != by3[name]]
    assert all(by4[name] == 4 for name in moved)  # rendezvous hashing: only to the new agent
    assert 40 <= len(moved) <= 110, len(moved)  # about a quarter
    assert all(shard_of(name, 1) == 1 for name in NAMES)


def test_the_choice_is_the_same_in_every_process():
    """hash() is salted per process; the shard must not be (three agents, three processes)."""
    code = "from agent.shard import shard_of; print([shard_of(f'stream-{i:03d}', 5) for i in range(50)])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1 and json.loads(outs.pop()) == [shard_of(f"stream-{i:03d}", 5) for i in range(50)]


def _fleet_config(names: list[str], shard: str | None = None) -> dict:
    conf: dict = {"agent": {"listen": "127.0.0.1:0", "site": "site-a", **({"shard": shard} if shard else {})},
                  "streams": [{"name": n, "origin": f"http://127.0.0.1:1/{n}/master.m3u8"} for n in names]}
    conf["broadcasts"] = [{"name": "evening", "streams": names[:4], "start": "2026-12-01T18:00:00Z",
                           "end": "2026-12-01T19:00:00Z"}]
    conf["maintenance"] = [{"name": f"swap {n}", "stream": n, "start": "2026-12-01T10:00:00Z",
                            "end": "2026-12-01T11:00:00Z"} for n in names] + [
        {"name": "everything", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z"}]
    return conf


def test_a_sharded_config_keeps_its_streams_and_what_names_them():
    names = NAMES[:12]
    full = parse_config(_fleet_config(names))
    assert sharded(full) is full  # no shard: every stream
    seen: list[str] = []
    for i in (1, 2, 3):
        mine = sharded(parse_config(_fleet_config(names, f"{i}/3")))
        streams = [s.name for s in mine.streams]
        assert streams == [n for n in names if shard_of(n, 3) == i]
        seen += streams
        # broadcasts keep this shard's streams (a broadcast with none of them is not this agent's)
        for b in mine.broadcasts:
            assert b.streams and set(b.streams) <= set(streams)
        assert {m.stream for m in mine.maintenance} == set(streams) | {None}
        # its own incident store: an agent resolves at start the open incidents its config does not name
        assert mine.incidents.path == f"signalpath-incidents.shard-{i}-of-3.db"
    assert sorted(seen) == sorted(names)  # every stream on exactly one agent


def test_a_bad_shard_is_a_config_error_with_its_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse_config(_fleet_config(NAMES[:2], "3/2"))
    assert "agent.shard" in str(err.value) and "does not exist" in str(err.value)
    cfg = tmp_path / "fleet.yaml"
    cfg.write_text(yaml.safe_dump(_fleet_config(NAMES[:6])))
    out = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(cfg), "--shard", "2/3"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    mine = [n for n in NAMES[:6] if shard_of(n, 3) == 2]
    assert out.returncode == 0, out.stderr
    assert f"shard 2/3 watches {len(mine)} of 6 stream(s): " in out.stdout
    assert all(n in out.stdout.splitlines()[-1] for n in mine)
    bad = subprocess.run([sys.executable, "-m", "agent.cli", "run", "-c", str(cfg), "--shard", "7/3"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "--shard" in bad.stderr and "does not exist" in bad.stderr


def test_traces_say_which_agent_made_them():
    provider = make_provider("site-a", InMemorySpanExporter(), shard="2/3")
    attrs = dict(provider.resource.attributes)
    assert attrs["service.instance.id"] == "site-a/2/3" and attrs["signalpath.shard"] == "2/3"
    assert dict(make_provider("site-a").resource.attributes)["service.instance.id"] == "site-a"


@pytest.mark.lab
@pytest.mark.timeout(120)
async def test_three_agents_of_a_site_share_its_streams_behind_one_prometheus(live, tmp_path):
    names = ["news", "sport", "music", "kids", "docs", "weather"]
    base = live.config()
    one = base["streams"][0]
    streams = [{**one, "name": n, "playback": {"enabled": False}, "media": {"enabled": False},
                "latency": {"enabled": False}} for n in names]
    exporter = InMemorySpanExporter()
    agents: list[Agent] = []
    proc = None
    try:
        for i in (1, 2, 3):
            conf = {**base, "agent": {**base["agent"], "site": "site-a", "shard": f"{i}/3"}, "streams": streams,
                    "incidents": {"path": str(tmp_path / f"agent{i}.db")}}
            agent = Agent(parse_config(conf), span_exporter=exporter if i == 2 else None)
            await agent.start()
            agents.append(agent)
        # each agent watches its shard and only it; together every stream once
        watched = [[s.name for s in a.config.streams] for a in agents]
        assert sorted(sum(watched, [])) == sorted(names)
        assert all(w == [n for n in names if shard_of(n, 3) == i] for i, w in enumerate(watched, 1))
        proc, prom = start_prometheus(tmp_path, [a.url.removeprefix("http://") for a in agents])
        async with aiohttp.ClientSession() as http:
            async def query(q: str) -> list:
                try:
                    async with http.get(prom + "/api/v1/query", params={"query": q}) as r:
                        body = await r.json()
                except aiohttp.ClientError:
                    return []
                return body["data"]["result"] if body.get("status") == "success" else []

            # every stream's origin healthy, from exactly one agent, and the recording rule per stream
            def per_stream(rows: list) -> dict[str, float]:
                return {r["metric"]["stream"]: float(r["value"][1]) for r in rows}

            async def all_streams_seen() -> bool:
                return sorted(per_stream(await query('count by (stream) (signalpath_stage_healthy{stage="origin"})'))
                              ) == sorted(names)

            await wait_for(all_streams_seen, 60, "every stream's origin scraped", every=1.0)
            counts = per_stream(await query('count by (stream) (signalpath_stage_healthy{stage="origin"})'))
            assert set(counts.values()) == {1.0}, counts
            info = await query("signalpath_agent_info")
            assert sorted(r["metric"]["shard"] for r in info) == ["1/3", "2/3", "3/3"]
            assert {r["metric"]["site"] for r in info} == {"site-a"}

            async def recorded(rule: str) -> dict[str, float] | None:
                got = per_stream(await query(f'{rule}{{stage="origin"}}'))
                return got if sorted(got) == sorted(names) else None

            rec = await wait_for(lambda: recorded("signalpath:stage_healthy:min"), 30,
                                 "the recording rule over every stream", every=1.0)
            assert set(rec.values()) == {1.0}, rec
            sites = await wait_for(lambda: recorded("signalpath:component_sites:count"), 30,
                                   "the cross-site count over every stream", every=1.0)
            assert sites == dict.fromkeys(names, 1.0)  # one site watches each, however many agents it runs

            async def rules_healthy() -> bool:
                async with http.get(prom + "/api/v1/rules") as r:
                    groups = (await r.json())["data"]["groups"]
                rules = [x for g in groups for x in g["rules"]]
                return bool(rules) and all(x["health"] == "ok" for x in rules)

            await wait_for(rules_healthy, 20, "every rule evaluated without error across the three agents", every=1.0)
        # agent 2's traces carry its identity
        await wait_for(lambda: exporter.get_finished_spans(), 20, "a trace from agent 2")
        span = exporter.get_finished_spans()[0]
        assert span.resource.attributes["service.instance.id"] == "site-a/2/3"
        assert span.attributes.get("signalpath.stream") in {n for n in names if shard_of(n, 3) == 2} | {None}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        for a in agents:
            await a.stop()
