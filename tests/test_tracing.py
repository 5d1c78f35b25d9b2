"""Traces: one per stream cycle, shaped like the signal path; exported by OTLP/HTTP to
the real ``rotel`` collector."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config


def _rotel_binary() -> str:
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    if path.exists():
        return str(path)
    found = shutil.which("rotel-agent")
    if found:
        return found
    if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
        pytest.fail("rotel-agent not found (pip install rotel, in the test extras)")
    pytest.skip("rotel-agent not found")


async def test_cycle_trace_follows_the_signal_path(live):
    exporter = InMemorySpanExporter()
    live.edges["edge-b"].knobs.segment_status = 404
    async with Agent(parse_config(live.config()), span_exporter=exporter) as agent:
        await wait_for(lambda: any(s.name.startswith("segment") and s.status.status_code == StatusCode.ERROR
                                   for s in exporter.get_finished_spans()), 10, "a failed segment span")
        agent.trace_sink.provider.force_flush()
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    roots = [s for s in spans if s.parent is None]
    assert roots and all(r.name == "stream main" for r in roots)
    root = roots[-1]
    children = [s for s in spans if s.parent and s.parent.span_id == root.context.span_id]
    assert {c.name for c in children} <= {"origin origin", "cdn edge-a", "cdn edge-b"}
    seg = next(s for s in spans if s.name.startswith("segment") and s.status.status_code == StatusCode.ERROR)
    assert seg.attributes["signalpath.component"] == "edge-b"
    assert seg.attributes["signalpath.stage"] == "cdn"
    assert seg.attributes["signalpath.rendition"] in ("360p", "180p")
    assert "http_error" in seg.status.description
    playlist = by_id[seg.parent.span_id]
    assert playlist.name.startswith("playlist ")
    endpoint = by_id[playlist.parent.span_id]
    assert endpoint.name == "cdn edge-b"
    assert endpoint.start_time <= playlist.start_time <= seg.start_time and seg.end_time <= endpoint.end_time + 1_000_000
    assert {s.context.trace_id for s in (seg, playlist, endpoint)} == {by_id[endpoint.parent.span_id].context.trace_id}


async def test_spans_reach_the_real_rotel_collector(live, tmp_path):
    binary = _rotel_binary()
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    log = tmp_path / "rotel.log"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [binary, "start", "--otlp-http-endpoint", f"127.0.0.1:{ports[0]}", "--otlp-grpc-endpoint",
             f"127.0.0.1:{ports[1]}", "--exporter", "blackhole", "--debug-log", "traces", "--debug-log-verbosity",
             "detailed", "--pid-file", str(tmp_path / "rotel.pid")],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        async def listening() -> bool:
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", ports[0])
                w.close()
                return True
            except OSError:
                return False

        await wait_for(listening, 20, "rotel listening")
        conf = live.config()
        conf["exporters"] = {"otlp": {"endpoint": f"http://127.0.0.1:{ports[0]}"}}
        conf["streams"][0]["edges"][0]["url"] += "?token=CANARYSECRET42"
        async with Agent(parse_config(conf)) as agent:
            await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-a").value == "ok", 10, "edge-a ok")
            await asyncio.to_thread(agent.trace_sink.provider.force_flush)
            await wait_for(lambda: "cdn edge-a" in log.read_text(errors="replace"), 15, "span in rotel log")
        text = log.read_text(errors="replace")
        assert "stream main" in text and "signalpath.rendition" in text
        assert "CANARYSECRET42" not in text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
