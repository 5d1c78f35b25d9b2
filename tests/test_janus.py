"""The WHIP probe against a WebRTC peer the project did not write: Janus 1.1 (Debian
``janus``) and its echotest plugin, run in a network namespace.

Janus only offers non-loopback ICE candidates (ENVIRONMENT.md), so it runs in its own
namespace on a veth pair (198.51.100.1 host side, 198.51.100.2 in the namespace). Janus
has no native WHIP: :class:`JanusWhip` is a small adapter on 127.0.0.1 that speaks WHIP
to the probe and Janus's HTTP JSON API (create session → attach echotest → message with
the JSEP offer → long-poll the event carrying the answer; DELETE → destroy session) to
Janus. The media path (ICE, DTLS, SRTP, RTCP receiver reports) is Janus's own.

Needs root (``ip netns``) and ``janus``: skipped without them unless
SIGNALPATH_REQUIRE_LAB=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
from _require import require_binary
from aiohttp import web
from attempt import call_probe
from waiting import wait_for

from probes.base import ProbeTarget, State
from probes.whip import WhipProbeConfig
from probes.whip import probe as whip_probe

pytestmark = pytest.mark.timeout(90)

HOST_IP, NS_IP = "198.51.100.1", "198.51.100.2"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


@pytest.fixture
def janus_netns(tmp_path: Path):
    """Janus in a fresh network namespace; yields its HTTP API URL; tears everything down."""
    janus = require_binary("janus")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
            pytest.fail("test_janus needs root and iproute2 (ip netns)")
        pytest.skip("needs root and iproute2 (ip netns)")
    tag = uuid.uuid4().hex[:6]
    ns, veth_host, veth_ns = f"spj{tag}", f"spjh{tag}", f"spjn{tag}"
    conf = tmp_path / "janus"
    conf.mkdir()
    (conf / "janus.jcfg").write_text(
        'general: { configs_folder = "%s" log_to_stdout = true debug_level = 4 }\n'  # noqa: UP031 - %-format: the text is full of { }
        'media: { rtp_port_range = "20000-20200" }\n'
        'nat: { nice_debug = false ice_enforce_list = "%s" }\n'
        'plugins: { disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_lua.so,libjanus_nosip.so,'
        'libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,'
        'libjanus_videoroom.so,libjanus_voicemail.so" }\n'
        'transports: { disable = "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,'
        'libjanus_rabbitmq.so" }\n'
        'events: { broadcast = false }\n'
        'loggers: { disable = "libjanus_jsonlog.so" }\n' % (conf, veth_ns))
    (conf / "janus.transport.http.jcfg").write_text(
        'general: { json = "indented" base_path = "/janus" http = true port = 8088 https = false }\n'
        'admin: { admin_http = false }\n')
    (conf / "janus.plugin.echotest.jcfg").write_text("general: { }\n")
    proc = None
    log = (tmp_path / "janus.log").open("wb")
    try:
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth_host, "type", "veth", "peer", "name", veth_ns)
        _run("ip", "link", "set", veth_ns, "netns", ns)
        _run("ip", "addr", "add", f"{HOST_IP}/24", "dev", veth_host)
        _run("ip", "link", "set", veth_host, "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{NS_IP}/24", "dev", veth_ns)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", veth_ns, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, janus, "-C", str(conf / "janus.jcfg"),
                                 "-F", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        yield f"http://{NS_IP}:8088/janus", proc, tmp_path / "janus.log"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        subprocess.run(["ip", "link", "del", veth_host], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class JanusWhip:
    """WHIP (RFC 9725) on 127.0.0.1 in front of Janus's echotest plugin (HTTP JSON API)."""

    def __init__(self, janus_url: str) -> None:
        self.janus = janus_url
        self.sessions: dict[str, int] = {}
        self.destroyed: list[int] = []
        self.http: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> JanusWhip:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application()
        app.router.add_post("/whip", self.post)
        app.router.add_delete("/whip/{id}", self.delete)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/whip"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()
        await self.http.close()

    async def call(self, path: str, body: dict) -> dict:
        body = {**body, "transaction": uuid.uuid4().hex}
        async with self.http.post(self.janus + path, json=body) as r:
            return await r.json(content_type=None)

    async def post(self, request: web.Request) -> web.Response:
        offer = await request.text()
        sid = (await self.call("", {"janus": "create"}))["data"]["id"]
        hid = (await self.call(f"/{sid}", {"janus": "attach", "plugin": "janus.plugin.echotest"}))["data"]["id"]
        ack = await self.call(f"/{sid}/{hid}", {"janus": "message", "body": {"audio": False, "video": True},
                                                "jsep": {"type": "offer", "sdp": offer}})
        assert ack["janus"] in ("ack", "event"), ack
        jsep = ack.get("jsep")
        for _ in range(10):
            if jsep is not None:
                break
            async with self.http.get(f"{self.janus}/{sid}?maxev=1") as r:
                ev = await r.json(content_type=None)
            for e in ev if isinstance(ev, list) else [ev]:
                jsep = e.get("jsep") or jsep
        assert jsep is not None and jsep["type"] == "answer"
        rid = uuid.uuid4().hex
        self.sessions[rid] = sid
        return web.Response(status=201, body=jsep["sdp"].encode(), content_type="application/sdp",
                            headers={"Location": f"/whip/{rid}"})

    async def delete(self, request: web.Request) -> web.Response:
        sid = self.sessions.pop(request.match_info["id"], None)
        if sid is None:
            return web.Response(status=404)
        await self.call(f"/{sid}", {"janus": "destroy"})
        self.destroyed.append(sid)
        return web.Response(status=204)


async def test_whip_probe_against_janus_echotest(janus_netns):
    janus_url, proc, log = janus_netns

    async def janus_up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"janus exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as s:
                async with s.get(janus_url + "/info") as r:
                    return r.status == 200 and "janus.plugin.echotest" in await r.text()
        except (TimeoutError, aiohttp.ClientError):
            return False

    await wait_for(janus_up, 30, "Janus HTTP API with echotest")
    async with JanusWhip(janus_url) as adapter:
        cfg = WhipProbeConfig(seconds=2.0, ice_host_addresses=(HOST_IP,))
        target = ProbeTarget("whip", "main", "ingest", "janus", cfg, adapter.url, 10.0, 12.0)
        r = await call_probe(whip_probe, target)
        assert r.ok, (r.failure, r.detail, log.read_text()[-3000:])
        f = r.figures
        for phase in ("signal", "ice", "dtls", "first_rtcp"):
            assert 0 < f[f"{phase}_seconds"] < 5, (phase, f)
        assert f["packets_sent"] > 20 and f["packets_lost"] == 0
        assert f["upload_bits_per_second"] > 10_000
        assert "rtt_seconds" in f and 0 <= f["rtt_seconds"] < 0.1  # Janus's RRs echo our SRs
        assert r.evidence[0].state is State.OK
        print("janus figures", {k: f[k] for k in ("ice_seconds", "dtls_seconds", "first_rtcp_seconds",
                                                     "rtt_seconds", "upload_bits_per_second")})
        assert f["delete_status"] == 204 and len(adapter.destroyed) == 1 and not adapter.sessions

