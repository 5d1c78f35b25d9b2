"""No secret leaves the agent (issue 15 item 5): canaries in every secret-bearing field, grepped
in every output.

The end-to-end test runs ``signalpath run --log-level debug`` (its own process: the real CLI,
every logger at DEBUG, stdout and stderr into one file) against the embedded lab with faults
injected so incidents open and alerts go out, a real Alertmanager, an aiohttp webhook receiver
and the real ``rotel`` OTLP collector. Each secret is a distinct canary, given through the
environment as the docs say (``${VAR}``):

- URL userinfo: the origin's and edge-a's ``http://user:PW@…`` and Alertmanager's basic-auth
  password;
- query tokens: edge-b ``?token=``, the ingest stat page, the ingest monitor, the encoder page,
  the webhook URL;
- an RTMP stream key in the path (``rtmp://127.0.0.1:PORT/live/KEY``, nothing listens there:
  a failure, the likeliest place for a URL to be printed);
- the WHIP/WHEP bearer token (the lab's endpoint requires it), the webhook signing secret,
  OTLP headers (``Authorization: Bearer …``).

Then every canary (and the base64 of each ``user:password``, as a Basic header would carry it)
must be absent from: the DEBUG log, ``/metrics``, ``/api/v1/status``, ``/api/v1/incidents``,
the status page, the SQLite store (file, WAL, SHM), Alertmanager's ``/api/v2/alerts``, what the
webhook receiver got (body and headers but the signature), what rotel received, ``preflight
--json`` / ``--junit`` (and its stderr), the ``incidents`` report (table, ``--json``, ``--show``;
there is no ``report`` command yet) and ``check-config`` on a broken file full of canaries.

The fast test drives :mod:`agent.logsafe` directly: each third-party logger at each level, with
``msg % args`` and a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _require import require_binary
from aiohttp import web
from waiting import wait_for

from agent import logsafe

C = {  # distinct, none a substring of another
    "origin_password": "CANARYORIGINPW",
    "edge_token": "CANARYEDGETOKEN",
    "edge_a_password": "CANARYEDGEAPW",
    "stat_token": "CANARYSTATTOKEN",
    "monitor_token": "CANARYMONITORKEY",
    "encoder_sig": "CANARYENCODERSIG",
    "rtmp_key": "CANARYRTMPKEY",
    "webrtc_bearer": "CANARYWEBRTCBEARER",
    "hook_token": "CANARYHOOKTOKEN",
    "hook_secret": "CANARYHOOKSECRET",
    "am_password": "CANARYAMPASSWORD",
    "otlp_bearer": "CANARYOTLPBEARER",
}
ENV = {
    "SP_ORIGIN_PW": C["origin_password"], "SP_EDGE_TOKEN": C["edge_token"], "SP_EDGE_A_PW": C["edge_a_password"], "SP_STAT_TOKEN": C["stat_token"],
    "SP_MONITOR_KEY": C["monitor_token"], "SP_ENCODER_SIG": C["encoder_sig"], "SP_RTMP_KEY": C["rtmp_key"],
    "SIGNALPATH_LAB_WEBRTC_TOKEN": C["webrtc_bearer"], "SP_HOOK_TOKEN": C["hook_token"],
    "SP_HOOK_SECRET": C["hook_secret"], "SP_AM_PASSWORD": C["am_password"], "SP_OTLP_BEARER": C["otlp_bearer"],
}


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


NEEDLES = {**C, "origin_basic": _b64("viewer", C["origin_password"]), "am_basic": _b64("am", C["am_password"]),
           "edge_a_basic": _b64("cdnuser", C["edge_a_password"])}


def leaks(outputs: dict[str, bytes | str]) -> dict[str, list[str]]:
    """output name -> the canaries found in it."""
    found: dict[str, list[str]] = {}
    for where, text in outputs.items():
        blob = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
        hits = [name for name, needle in NEEDLES.items() if needle.encode() in blob]
        if hits:
            found[where] = hits
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- the fast test

THIRD_PARTY = ("httpx", "httpcore.http11", "urllib3.connectionpool", "aiohttp.access", "aiohttp.client",
               "aiohttp.server", "aioice.ice", "aiortc.rtcpeerconnection", "opentelemetry.exporter",
               "signalpath.runner", "some.library")
LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def test_filter_redacts_every_logger_at_every_level(caplog: pytest.LogCaptureFixture) -> None:
    secret = "LITERALCANARY"
    logsafe.install([secret])
    caplog.set_level(logging.DEBUG)
    for name in THIRD_PARTY:
        lg = logging.getLogger(name)
        for level in LEVELS:
            # the shapes the libraries write (httpx, urllib3, aiohttp.access), userinfo, a bearer
            lg.log(level, 'HTTP Request: %s %s "%s %d %s"', "POST",
                   httpx.URL("http://am:AMPASSCANARY@127.0.0.1:9093/api/v2/alerts?token=TOKCANARY"),
                   "HTTP/1.1", 200, "OK")
            lg.log(level, '%s://%s:%s "%s %s %s" %s %s', "http", "127.0.0.1", 80, "POST",
                   "/hook?token=PATHTOKCANARY&x=1", "HTTP/1.1", 200, 2)
            lg.log(level, '127.0.0.1 "GET /live/x.m3u8?sig=SIGCANARY HTTP/1.1" 200 "-" %s', "curl")
            lg.log(level, "headers %r", {"Authorization": "Bearer BEARERCANARY", "x": "1"})
            lg.log(level, "basic %s", "Authorization: Basic " + _b64("u", "BASICPWCANARY"))
            lg.log(level, "publish to rtmp://127.0.0.1:1935/live/RTMPKEYCANARY refused")
            lg.log(level, "the key %s was refused", secret)
            try:
                raise ValueError(f"cannot open https://u:EXCPWCANARY@h/x?key=EXCKEYCANARY ({secret})")
            except ValueError:
                lg.log(level, "failed", exc_info=True)
    assert len(caplog.records) == len(THIRD_PARTY) * len(LEVELS) * 8
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for canary in ("AMPASSCANARY", "TOKCANARY", "PATHTOKCANARY", "SIGCANARY", "BEARERCANARY", "BASICPWCANARY",
                   "RTMPKEYCANARY", secret, "EXCPWCANARY", "EXCKEYCANARY", _b64("u", "BASICPWCANARY")):
        assert canary not in text, canary
    # what is not a secret stays readable
    assert "HTTP Request: POST http://***@127.0.0.1:9093/api/v2/alerts?token=***" in text
    assert '"POST /hook?token=***&x=*** HTTP/1.1" 200 2' in text
    assert "Traceback" in text and "ValueError: cannot open https://***@h/x?key=***" in text


def test_filter_costs_nothing_for_dropped_levels() -> None:
    """A record below the logger's level is never built, so never scanned."""
    logsafe.install()
    lg = logging.getLogger("signalpath.test.cheap")
    lg.setLevel(logging.WARNING)
    calls = []

    class Spy:
        def __str__(self) -> str:
            calls.append(1)
            return "x"

    lg.debug("%s", Spy())
    assert calls == []


def test_agent_construction_installs_the_filter_with_its_secrets(caplog: pytest.LogCaptureFixture,
                                                                tmp_path: Path) -> None:
    from agent.app import Agent
    from agent.config import parse_config

    conf = {
        "agent": {"listen": "127.0.0.1:0"},
        "incidents": {"path": str(tmp_path / "inc.db")},
        "streams": [{"name": "main", "origin": "http://127.0.0.1:9/live/main.m3u8",
                     "ingest": {"whip": [{"url": "http://127.0.0.1:9/whip", "bearer_token": "AGENTBEARERCANARY"}]}}],
        "alerts": {"webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": "AGENTHOOKSECRETCANARY"}]},
        "exporters": {"otlp": {"endpoint": "http://127.0.0.1:9", "headers": {"x-api-key": "AGENTOTLPKEYCANARY"}}},
    }
    agent = Agent(parse_config(conf))
    try:
        caplog.set_level(logging.DEBUG)
        for name in ("aiortc.rtcpeerconnection", "opentelemetry.exporter.otlp", "aiohttp.client"):
            logging.getLogger(name).debug("sent %s / %s / %s", "AGENTBEARERCANARY", "AGENTHOOKSECRETCANARY",
                                          "AGENTOTLPKEYCANARY")
    finally:
        assert agent.trace_sink is not None
        agent.trace_sink.shutdown()
    assert "CANARY" not in caplog.text and caplog.text.count("***") == 9


def test_config_secrets_finds_every_kind_and_no_name(tmp_path: Path) -> None:
    from agent.config import parse_config

    conf = {
        "agent": {"site": "main"},
        "incidents": {"path": str(tmp_path / "inc.db")},
        "streams": [{
            "name": "main", "origin": "http://viewer:ORIGINPW@127.0.0.1:8080/live/main.m3u8?token=EDGETOK&v=1",
            "edges": [{"name": "edge-a", "url": "https://TOKENASUSER@cdn.example/x.m3u8?hdnts=AKAMAI1"}],
            "ingest": {"rtmp": [{"url": "rtmp://127.0.0.1:1935/live/RTMPKEY1"}],
                       "stat": [{"url": "http://127.0.0.1:8080/stat", "key": "main"}],
                       "whip": [{"url": "http://127.0.0.1:9/whip", "bearer_token": "WHIPBEARER"}]},
        }],
        "alerts": {"webhooks": [{"url": "http://127.0.0.1:9/hook?token=HOOKTOK", "secret": "HOOKSECRET"}],
                   "alertmanagers": [{"url": "http://am:AMPASS@127.0.0.1:9093"}]},
        "exporters": {"otlp": {"endpoint": "http://127.0.0.1:4318", "headers": {"Authorization": "Bearer OTLPTOK"}}},
    }
    found = logsafe.config_secrets(parse_config(conf))
    assert found >= {"ORIGINPW", _b64("viewer", "ORIGINPW"), "EDGETOK", "TOKENASUSER", "AKAMAI1", "RTMPKEY1",
                     "WHIPBEARER", "HOOKTOK", "HOOKSECRET", "AMPASS", _b64("am", "AMPASS"), "Bearer OTLPTOK",
                     "OTLPTOK"}
    assert "main" not in found and "1" not in found  # a stat key equal to the stream's name; v=1 is no secret


async def test_alert_sinks_send_userinfo_as_basic_auth_not_in_the_logged_url(caplog: pytest.LogCaptureFixture) -> None:
    """At the source: Alertmanager's ``user:password@`` goes out as an Authorization header; the
    URL httpx logs has no userinfo at all (the filter would have shown ``***@``)."""
    from agent.alerts import AlertDispatcher, AlertmanagerSettings, AlertmanagerSink, WebhookSettings, WebhookSink
    from agent.localize import Incident, IncidentEvent

    hook = Hook()
    hook_app_paths = ("/hook", "/api/v2/alerts")
    app = web.Application()
    for path in hook_app_paths:
        app.router.add_post(path, hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caplog.set_level(logging.DEBUG)
    dispatcher = AlertDispatcher([
        AlertmanagerSink(AlertmanagerSettings(url=f"http://am:SRCAMPASS@127.0.0.1:{port}"), site="s"),
        WebhookSink(WebhookSettings(url=f"http://hk:SRCHOOKPW@127.0.0.1:{port}/hook", secret="x" * 8), site="s"),
    ])
    now = time.time()
    inc = Incident(id="main-1", stream="main", stage="cdn", component="edge-b", fault="stale_playlist",
                   severity="P2", started_at=now - 5, localized_at=now - 4, resolved_at=None, summary="s",
                   evidence=[], runbook="r")
    await dispatcher.start()
    try:
        dispatcher.submit(IncidentEvent("opened", inc))
        await wait_for(lambda: len(hook.got) == 2, 10, "both deliveries")
    finally:
        await dispatcher.stop()
        await runner.cleanup()
    auth = sorted(h["Authorization"] for h, _ in hook.got)
    assert auth == sorted(["Basic " + _b64("am", "SRCAMPASS"), "Basic " + _b64("hk", "SRCHOOKPW")])
    sent = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert f"http://127.0.0.1:{port}/api/v2/alerts" in " ".join(sent) and "@" not in " ".join(sent), sent


# ----------------------------------------------------------------------------- end to end


class Hook:
    """A real webhook receiver on 127.0.0.1:0."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _listening(port: int) -> bool:
    try:
        _r, w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    w.close()
    return True


def _agent_config(lab: Any, listen: str, store: Path, hook_url: str, am_port: int, otlp_port: int,
                  dead_port: int) -> dict[str, Any]:
    from agent.demo import lab_agent_config

    conf = lab_agent_config(lab, listen, site="canary", webrtc=True, incidents_path=str(store))
    s = conf["streams"][0]
    s["origin"] = s["origin"].replace("http://", "http://viewer:${SP_ORIGIN_PW}@", 1)
    for e in s["edges"]:
        if e["name"] == "edge-b":
            e["url"] += "?token=${SP_EDGE_TOKEN}"
        else:
            e["url"] = e["url"].replace("http://", "http://cdnuser:${SP_EDGE_A_PW}@", 1)
    s["hls"] = {"interval_s": 1.0}
    s["ingest"]["stat"][0]["url"] += "?token=${SP_STAT_TOKEN}"
    s["ingest"]["monitor"][0]["url"] += "?key=${SP_MONITOR_KEY}"
    s["encoders"][0]["url"] += "?sig=${SP_ENCODER_SIG}"
    s["ingest"]["rtmp"] = [{"name": "rtmp", "url": f"rtmp://127.0.0.1:{dead_port}/live/${{SP_RTMP_KEY}}",
                            "interval_s": 2.0, "timeout_s": 2.0}]
    for w in (*s["ingest"]["whip"], *s["whep"]):
        w.update(interval_s=4.0, seconds=1.0, timeout_s=3.5)
    conf["localize"] = {"resolve_after_s": 3}
    conf["alerts"] = {
        "webhooks": [{"url": hook_url + "?token=${SP_HOOK_TOKEN}", "secret": "${SP_HOOK_SECRET}",
                      "backoff_initial_s": 0.1}],
        "alertmanagers": [{"url": f"http://am:${{SP_AM_PASSWORD}}@127.0.0.1:{am_port}", "backoff_initial_s": 0.1}],
    }
    conf["exporters"] = {"otlp": {"endpoint": f"http://127.0.0.1:{otlp_port}",
                                  "headers": {"Authorization": "Bearer ${SP_OTLP_BEARER}"}}}
    return conf


BROKEN_CONFIG = """\
agent: {listen: "127.0.0.1:9321"}
exporters:
  otlp: {endpoint: "http://otlp:CANARYOTLPBEARER@127.0.0.1:99999/?token=CANARYOTLPBEARER",
         headers: {Authorization: [CANARYOTLPBEARER]}}
alerts:
  webhooks:
    - {url: "ftp://127.0.0.1/CANARYHOOKTOKEN?token=CANARYHOOKTOKEN", secret: [CANARYHOOKSECRET]}
  alertmanagers:
    - {url: "http://am:CANARYAMPASSWORD@[::1:9093", timeout_s: CANARYAMPASSWORD}
streams:
  - name: main
    origin: "http://viewer:CANARYORIGINPW@127.0.0.1:0/live.m3u8"
    edges:
      - {name: edge-b, url: "gopher://127.0.0.1/x?token=CANARYEDGETOKEN"}
      - {name: edge-c, url: "http://127.0.0.1:8082/x?token=CANARYSTATTOKEN", extra: CANARYMONITORKEY}
    ingest:
      rtmp:
        - {url: "http://127.0.0.1:1935/live/CANARYRTMPKEY", publish_seconds: CANARYRTMPKEY}
      stat:
        - {url: "http://127.0.0.1:8080/stat?sig=CANARYENCODERSIG", key: [CANARYENCODERSIG]}
      whip:
        - {url: "file:///CANARYWEBRTCBEARER", bearer_token: 12, seconds: CANARYWEBRTCBEARER}
"""


@pytest.mark.lab
@pytest.mark.timeout(240)
async def test_no_canary_reaches_any_output(tmp_path: Path) -> None:
    from test_tracing import _rotel_binary

    from agent.lab import Lab, LabConfig

    am_bin = require_binary("prometheus-alertmanager")
    rotel_bin = _rotel_binary()
    env = {**os.environ, **ENV}
    began = time.time()
    procs: list[subprocess.Popen[bytes]] = []
    hook = Hook()
    await hook.start()
    try:
        am_port, otlp_port, otlp_grpc, agent_port, dead_port = (_free_port() for _ in range(5))
        (tmp_path / "am.yml").write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
        procs.append(_start([am_bin, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
                             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                            tmp_path / "am.log"))
        rotel_log = tmp_path / "rotel.log"
        procs.append(_start([rotel_bin, "start", "--otlp-http-endpoint", f"127.0.0.1:{otlp_port}",
                             "--otlp-grpc-endpoint", f"127.0.0.1:{otlp_grpc}", "--exporter", "blackhole",
                             "--debug-log", "traces", "--debug-log-verbosity", "detailed",
                             "--pid-file", str(tmp_path / "rotel.pid")], rotel_log))
        await wait_for(lambda: _listening(am_port), 20, "alertmanager listening")
        await wait_for(lambda: _listening(otlp_port), 20, "rotel listening")

        async with Lab(LabConfig(webrtc_token=C["webrtc_bearer"])) as lab:
            store = tmp_path / "store" / "incidents.db"
            store.parent.mkdir()
            conf = _agent_config(lab, f"127.0.0.1:{agent_port}", store, hook.url, am_port, otlp_port, dead_port)
            cfg_file = tmp_path / "signalpath.yaml"
            cfg_file.write_text(yaml.safe_dump(conf, sort_keys=False))
            assert "CANARY" not in cfg_file.read_text()  # the file names variables; the secrets are in env
            agent_log = tmp_path / "agent.log"
            with agent_log.open("wb") as out:
                agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(cfg_file),
                                          "--log-level", "debug"], stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=tmp_path)
            procs.append(agent)
            base = f"http://127.0.0.1:{agent_port}"
            async with httpx.AsyncClient(timeout=5) as client:
                async def up() -> bool:
                    assert agent.poll() is None, agent_log.read_text(errors="replace")[-3000:]
                    return await _listening(agent_port)

                await wait_for(up, 30, "the agent listening")

                async def edge_b_ok() -> bool:
                    cells = (await client.get(base + "/api/v1/status")).json()["streams"][0]["stages"]
                    return any(c["component"] == "edge-b" and c["state"] == "ok" for c in cells)

                await wait_for(edge_b_ok, 30, "edge-b ok first")
                await lab.inject("edge_404_segments", "edge-b")
                await lab.inject("edge_down", "edge-a")  # refused: the error path names the URL
                await lab.inject("webrtc_refuse", "whip")

                async def am_alerts() -> list[dict[str, Any]]:
                    resp = await client.get(f"http://127.0.0.1:{am_port}/api/v2/alerts")
                    return [a for a in resp.json() if a["labels"].get("alertname") == "SignalpathIncident"]

                await wait_for(lambda: hook.got, 60, "a webhook delivery")
                await wait_for(am_alerts, 30, "an alert in Alertmanager")
                await wait_for(lambda: "stream main" in rotel_log.read_text(errors="replace"), 30, "spans in rotel")
                outputs: dict[str, bytes | str] = {
                    "/metrics": (await client.get(base + "/metrics")).text,
                    "/api/v1/status": (await client.get(base + "/api/v1/status")).text,
                    "/api/v1/incidents": (await client.get(base + "/api/v1/incidents?state=all")).text,
                    "status page /": (await client.get(base + "/")).text,
                    "alertmanager /api/v2/alerts": json.dumps(await am_alerts()),
                }
                incidents = json.loads(outputs["/api/v1/incidents"])
                assert incidents, "no incident opened"
                await lab.clear_all()
            _stop(agent)
            assert agent.returncode == 0, agent_log.read_text(errors="replace")[-3000:]

        preflight_junit = tmp_path / "preflight.xml"
        pre = subprocess.run([sys.executable, "-m", "agent.cli", "preflight", "-c", str(cfg_file), "--json",
                              "--junit", str(preflight_junit)], capture_output=True, env=env, timeout=60)
        assert pre.returncode == 2 and json.loads(pre.stdout)["checks"], pre.stderr  # the RTMP ingest is down
        reports = {}  # what the store's readers print: incidents, the post-broadcast report
        page = tmp_path / "report.html"
        window = ["--from", str(began), "--to", str(time.time())]
        for cmd, args in (("incidents", ["--json"]), ("incidents", []), ("incidents", ["--show", incidents[0]["id"]]),
                          ("report", [*window, "--json"]), ("report", [*window, "-o", str(page)])):
            rep = subprocess.run([sys.executable, "-m", "agent.cli", cmd, "-c", str(cfg_file), *args],
                                 capture_output=True, env=env, timeout=120)
            assert rep.returncode == 0 and rep.stdout, rep.stderr
            reports[" ".join([cmd, *args])] = rep.stdout + rep.stderr
        reports["report HTML"] = page.read_bytes()
        from agent.history import HistoryStore

        history = HistoryStore(store)  # its blocks are zlib: read as the report does, not as raw bytes
        try:
            steps = history.steps(began - 60, time.time() + 60)
            assert steps, "no history was stored"
            reports["history (decompressed)"] = json.dumps(
                [[st.stream, st.series] for st in steps] + [repr(v) for v in history.sessions(0, 1e12)]).encode()
        finally:
            history.close()
        broken = tmp_path / "broken.yaml"
        broken.write_text(BROKEN_CONFIG)
        check = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(broken)],
                               capture_output=True, env=env, timeout=60)
        assert check.returncode == 2 and b"edges[0].url" in check.stderr, check.stderr
        log_text = agent_log.read_bytes()
        assert b"DEBUG" in log_text and b"httpx" in log_text and b"aiortc" in log_text  # every logger wrote
        outputs.update({
            "agent log (DEBUG)": log_text,
            **{f"store {p.name}": p.read_bytes() for p in store.parent.iterdir()},
            "webhook bodies": b"\n".join(body for _, body in hook.got),
            "webhook headers": json.dumps([{k: v for k, v in h.items() if k != "X-Signalpath-Signature"}
                                           for h, _ in hook.got]),
            "rotel (spans received)": rotel_log.read_bytes(),
            "preflight --json": pre.stdout, "preflight stderr": pre.stderr,
            "preflight --junit": preflight_junit.read_bytes(),
            "check-config stdout+stderr": check.stdout + check.stderr,
            **reports,
        })
        found = leaks(outputs)
        assert found == {}, found
    finally:
        for p in reversed(procs):
            _stop(p)
        await hook.stop()
