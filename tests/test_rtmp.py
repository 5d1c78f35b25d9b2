"""RTMP ingest probe against a real nginx-rtmp (RealLab), plus its pure parts.

The canary stream keys must never appear in any result field (``str(result)``).
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from _require import require_binary
from aiohttp import web
from attempt import call_probe
from pydantic import ValidationError
from reallab import RealLab, free_port

from probes.base import Failure, ProbeContext, ProbeTarget, State
from probes.core.nginx_stat import parse_stat
from probes.net.amf0 import amf0_decode, amf0_encode
from probes.net.rtmp_chunk import RtmpError, parse_rtmp_url
from probes.rtmp import METRIC_CONNECT, METRIC_UPLOAD, RtmpProbeConfig, probe

ALLOWED_CANARY = "canaryOKk3y7Q"
REFUSED_CANARY = "canaryNOk3y9Z"
PHASES = ["tcp", "handshake", "connect", "create_stream"]


def _target(url: str, **cfg) -> ProbeTarget:
    return ProbeTarget(probe="rtmp", stream="main", stage="ingest", component="nginx-rtmp",
                       config=RtmpProbeConfig(**cfg), url=url, timeout=8.0)


def _no_secret(result, *secrets: str) -> None:
    text = str(result)
    for secret in secrets:
        assert secret not in text


def _ingest_evidence(result):
    return [e for e in result.evidence if e.stage == "ingest" and e.component == "nginx-rtmp"]


@pytest.fixture
async def auth_server():
    """An on_publish hook (nginx-rtmp POSTs name=...): 403 for REFUSED_CANARY, else 200."""
    seen: list[str] = []

    async def on_publish(request: web.Request) -> web.Response:
        name = (await request.post()).get("name", "")
        seen.append(str(name))
        return web.Response(status=403 if name == REFUSED_CANARY else 200)

    app = web.Application()
    app.router.add_post("/on_publish", on_publish)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/on_publish", seen
    finally:
        await runner.cleanup()


@pytest.mark.lab
async def test_probe_against_nginx_rtmp(tmp_path, auth_server):
    require_binary("nginx")
    require_binary("ffmpeg")
    hook_url, seen = auth_server
    async with RealLab(tmp_path / "lab", on_publish_url=hook_url) as lab:
        # 1. connect + createStream only, /stat shows the lab's ffmpeg publisher.
        result = await call_probe(probe, _target(lab.rtmp_url, stat_url=lab.stat_url))
        assert result.failure is None, result.detail
        phases = {s.labels["phase"]: s for s in result.samples if s.name == METRIC_CONNECT}
        assert sorted(phases) == sorted(PHASES)
        for s in phases.values():
            assert s.labels["stream"] == "main" and s.labels["stage"] == "ingest"
            assert s.labels["component"] == "nginx-rtmp"
            assert 0 < s.value < 2
        assert [sp.name for sp in result.spans[:4]] == [f"rtmp {p}" for p in PHASES]
        assert all(sp.end_ns >= sp.start_ns and sp.error is None for sp in result.spans)
        ev = _ingest_evidence(result)
        assert [e.state for e in ev] == [State.OK, State.OK]
        assert ev[1].figures["publisher_present"] == 1.0
        assert abs(ev[1].figures["av_sync_seconds"]) < 0.2
        assert ev[1].figures["dropped_frames"] == 0
        assert "main" in seen  # the lab's own publisher went through the hook

        # 2. a short real publish to an allowed (canary) key: accepted and acknowledged.
        result = await call_probe(probe, _target(f"{lab.rtmp_base}/{ALLOWED_CANARY}", publish=True,
                                                 publish_seconds=1.5, target_bitrate=300_000, stat_url=lab.stat_url))
        assert result.failure is None, result.detail
        assert ALLOWED_CANARY in seen
        assert "publish" in {s.labels["phase"] for s in result.samples if s.name == METRIC_CONNECT}
        (upload,) = [s for s in result.samples if s.name == METRIC_UPLOAD]
        assert 100_000 < upload.value < 3_000_000
        assert result.figures["acknowledged_bytes"] > 0.5 * result.figures["sent_bytes"] > 0
        assert result.figures["upload_ratio"] > 0.8
        # /stat read mid-publish lists our own publisher under the canary key
        assert result.figures["stat_publisher_present"] == 1.0
        assert [(e.state, e.fault) for e in _ingest_evidence(result)] == [(State.OK, None)] * 2
        _no_secret(result, ALLOWED_CANARY)

        # 3. the hook refuses this key: AUTH_REFUSED, and the key is nowhere in the result.
        result = await call_probe(probe, _target(f"rtmp://user:pw@127.0.0.1:{lab.rtmp_port}/live/{REFUSED_CANARY}"
                                                 f"?token={REFUSED_CANARY}", publish=True, publish_seconds=1.0,
                                                 stat_url=lab.stat_url))
        assert result.failure is Failure.AUTH_REFUSED, result.detail
        assert REFUSED_CANARY in seen
        ev = _ingest_evidence(result)
        assert ev[0].state is State.DOWN and ev[0].fault == "auth_refused"
        assert any(sp.error for sp in result.spans if sp.name == "rtmp publish")
        _no_secret(result, REFUSED_CANARY, "user:pw")

        # 4. the publisher is dropped: connect still works, /stat says no input.
        await lab.drop_publisher()
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            result = await call_probe(probe, _target(lab.rtmp_url, stat_url=lab.stat_url))
            ev = _ingest_evidence(result)
            if ev[-1].fault == "no_input" or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert result.failure is None
        assert ev[-1].state is State.DOWN and ev[-1].fault == "no_input"
        assert ev[-1].figures["publisher_present"] == 0.0


async def test_connection_refused_is_data():
    port = free_port()
    result = await call_probe(probe, _target(f"rtmp://127.0.0.1:{port}/live/{REFUSED_CANARY}"))
    assert result.failure is Failure.CONNECTION_REFUSED
    (ev,) = result.evidence
    assert ev.state is State.DOWN and ev.fault == "unreachable"
    assert [sp.name for sp in result.spans] == ["rtmp tcp"] and result.spans[0].error
    assert not [s for s in result.samples if s.name == METRIC_CONNECT]
    _no_secret(result, REFUSED_CANARY)


async def test_wrong_rtmp_version_and_silent_server_are_protocol_failures():
    """A real TCP server that is not RTMP: answers version 6, or closes at once."""
    behaviour = {"mode": "v6"}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1537)
        if behaviour["mode"] == "v6":
            writer.write(b"\x06" + bytes(1536))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"rtmp://127.0.0.1:{port}/live/{REFUSED_CANARY}"
        result = await call_probe(probe, _target(url))
        assert result.failure is Failure.PROTOCOL_ERROR and "version 6" in result.detail
        behaviour["mode"] = "close"
        result = await call_probe(probe, _target(url))
        assert result.failure is Failure.READ_FAILED
        _no_secret(result, REFUSED_CANARY)
    finally:
        server.close()
        await server.wait_closed()


def test_amf0_round_trip():
    values = ["connect", 1.0, {"app": "live", "n": 2.5, "ok": True, "nested": {"x": None}}, None, "é"]
    assert amf0_decode(amf0_encode(*values)) == values
    # ECMA array and strict array as servers send them
    ecma = b"\x08" + struct.pack(">I", 1) + b"\x00\x01k" + b"\x02\x00\x01v" + b"\x00\x00\x09"
    strict = b"\x0a" + struct.pack(">I", 2) + b"\x05\x01\x01"
    assert amf0_decode(ecma + strict) == [{"k": "v"}, [None, True]]
    with pytest.raises(ValueError):
        amf0_decode(b"\x02\x00\x05ab")


STAT_XML = """<?xml version="1.0" encoding="utf-8" ?><rtmp><server><application><name>live</name><live>
<stream><name>main</name><time>2046</time><bw_in>812000</bw_in><bytes_in>111153</bytes_in>
<client><id>3</id><address>127.0.0.1</address><dropped>4</dropped><avsync>-350</avsync>
<publishing/><active/></client><client><id>5</id><dropped>0</dropped><avsync>0</avsync></client>
<meta><video><codec>H264</codec></video><audio><codec>AAC</codec></audio></meta><nclients>2</nclients><publishing/><active/></stream>
<stream><name>other</name><bw_in>0</bw_in><nclients>1</nclients><client><dropped>0</dropped>
<avsync>-9000</avsync><publishing/></client><meta><video><codec>H264</codec></video></meta></stream>
<stream><name>idle</name><bw_in>0</bw_in><nclients>0</nclients></stream></live></application></server></rtmp>"""


def test_parse_stat():
    view = parse_stat(STAT_XML, "live", "main")
    assert view.stream_found and view.publisher
    assert (view.bw_in_bits_per_second, view.dropped_frames, view.av_sync_seconds, view.clients) == \
        (812000.0, 4.0, -0.35, 2)
    video_only = parse_stat(STAT_XML, "live", "other")  # no audio track: no A/V sync figure
    assert video_only.publisher and video_only.av_sync_seconds is None and video_only.dropped_frames == 0
    idle = parse_stat(STAT_XML, "live", "idle")
    assert idle.stream_found and not idle.publisher and idle.dropped_frames is None
    assert not parse_stat(STAT_XML, "live", "absent").stream_found
    assert not parse_stat(STAT_XML, "vod", "main").stream_found
    with pytest.raises(ValueError):
        parse_stat("<rtmp><server>", "live", "main")


def test_parse_rtmp_url_and_config():
    u = parse_rtmp_url("rtmp://h/app/inst/KEY")
    assert (u.host, u.port, u.app, u.key, u.tc_url) == ("h", 1935, "app/inst", "KEY", "rtmp://h:1935/app/inst")
    assert parse_rtmp_url("rtmps://h/app").key is None and parse_rtmp_url("rtmps://h/app").port == 443
    with pytest.raises(RtmpError) as info:
        parse_rtmp_url("http://h/app/SECRETKEY")
    assert info.value.failure is Failure.PROTOCOL_ERROR and "SECRETKEY" not in info.value.detail
    with pytest.raises(ValidationError):
        RtmpProbeConfig(publish=True, bogus=1)  # type: ignore[call-arg]
    cfg = RtmpProbeConfig()
    assert (cfg.publish, cfg.stat_url) == (False, None)
    with pytest.raises(ValidationError):
        cfg.publish = True  # type: ignore[misc]


async def test_stat_evidence_av_desync_and_dropped_frames():
    """/stat served by a real HTTP server (recorded nginx-rtmp XML); the RTMP port is closed."""
    body = {"xml": STAT_XML}

    async def stat(_request: web.Request) -> web.Response:
        return web.Response(text=body["xml"], content_type="text/xml")

    app = web.Application()
    app.router.add_get("/stat", stat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        ctx = ProbeContext(state={})
        target = _target(f"rtmp://127.0.0.1:{free_port()}/live/main", stat_url=f"http://127.0.0.1:{port}/stat")
        result = await call_probe(probe, target, ctx)
        assert result.failure is Failure.CONNECTION_REFUSED
        stat_ev = result.evidence[-1]
        assert (stat_ev.state, stat_ev.fault) == (State.DEGRADED, "av_desync")  # -350 ms > 200 ms
        assert stat_ev.figures["av_sync_seconds"] == -0.35

        body["xml"] = STAT_XML.replace("<avsync>-350</avsync>", "<avsync>-20</avsync>")
        result = await call_probe(probe, target, ctx)
        assert (result.evidence[-1].state, result.evidence[-1].fault) == (State.OK, None)
        body["xml"] = body["xml"].replace("<dropped>4</dropped>", "<dropped>9</dropped>")
        result = await call_probe(probe, target, ctx)  # 5 more frames dropped since the last attempt
        assert (result.evidence[-1].state, result.evidence[-1].fault) == (State.DEGRADED, "dropped_frames")
    finally:
        await runner.cleanup()
