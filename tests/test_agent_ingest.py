"""The RTMP ingest probe inside a running agent, against the real nginx-rtmp lab:
figures on /metrics, ingest-stage evidence on the status board, the stream key never shown."""

from __future__ import annotations

import logging

import aiohttp
from _require import require_binary
from reallab import RealLab
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config


async def test_rtmp_ingest_in_the_agent(tmp_path, caplog):
    require_binary("nginx")
    require_binary("ffmpeg")
    caplog.set_level(logging.DEBUG)
    key = "CANARYk3y8842"  # the stream key: must never be shown
    async with RealLab(tmp_path / "lab", stream=key) as lab:
        conf = lab.config_dict(listen="127.0.0.1:0", site="test")
        conf["streams"][0]["name"] = "main"
        conf["incidents"] = {"path": str(tmp_path / "inc.db")}
        conf["streams"][0]["ingest"] = {"rtmp": [{
            "name": "primary", "url": lab.rtmp_url, "interval_s": 1.0, "timeout_s": 5.0,
            "stat_url": lab.stat_url}]}
        async with Agent(parse_config(conf)) as agent:
            await wait_for(lambda: agent.board.state_of("main", "ingest", "primary").value == "ok", 15, "ingest ok")
            labels = {"site": "test", "stream": "main", "stage": "ingest", "component": "primary"}
            for phase in ("tcp", "handshake", "connect", "create_stream"):
                v = agent.registry.get_sample_value("signalpath_ingest_connect_seconds", {**labels, "phase": phase})
                assert v is not None and 0 <= v < 2, (phase, v)
            assert agent.registry.get_sample_value("signalpath_probe_success", {**labels, "probe": "rtmp"}) == 1

            await lab.drop_publisher()
            await wait_for(lambda: agent.board.state_of("main", "ingest", "primary").value == "down", 15,
                           "ingest down after the publisher dropped")
            evs = [e for e in agent.board.evidence("main") if e.stage == "ingest"]
            assert any(e.fault == "no_input" for e in evs), evs
            async with aiohttp.ClientSession() as s:
                async with s.get(agent.url + "/metrics") as r:
                    metrics = await r.text()
                async with s.get(agent.url + "/api/v1/status") as r:
                    status = await r.text()
                async with s.get(agent.url + "/api/v1/incidents?state=all") as r:
                    incidents = await r.text()
        assert key and len(key) >= 4
        for text in (metrics, status, incidents, caplog.text):
            assert key not in text
