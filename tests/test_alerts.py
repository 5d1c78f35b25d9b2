"""Alert sinks against real receivers: an aiohttp webhook server and a real Alertmanager."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import socket
import subprocess
import time

import httpx
import pytest
from _require import require_binary
from aiohttp import web
from pydantic import ValidationError

from agent.alerts import (
    AlertDispatcher,
    AlertmanagerSettings,
    AlertmanagerSink,
    AlertSettings,
    WebhookSettings,
    WebhookSink,
)
from agent.localize import Incident, IncidentEvent

SECRET = "s3cret-hook-key"


def incident(resolved_at=None, fault="stale_playlist", severity="P2", iid="main-abc") -> Incident:
    now = time.time()
    return Incident(
        id=iid, stream="main", stage="cdn", component="edge-b", fault=fault, severity=severity,
        started_at=now - 30, localized_at=now - 26, resolved_at=resolved_at,
        summary="edge-b stopped updating the 360p playlist; origin and edge-a are fine.",
        evidence=["cdn/edge-b 360p: stale_playlist: media sequence 1842 unchanged for 12 s"],
        runbook="Fail viewers over to edge-a; open a CDN ticket.",
    )


async def wait_for(cond, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond() if asyncio.iscoroutinefunction(cond) else cond():
            return True
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class Receiver:
    """A real webhook receiver on 127.0.0.1:0 that fails the first ``fail`` requests with 500."""

    def __init__(self, fail=0, status_after=200, delay=0.0):
        self.fail = fail
        self.status_after = status_after
        self.delay = delay
        self.requests: list[tuple[dict, bytes]] = []
        self.times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        self.times.append(time.monotonic())
        if self.delay:
            try:  # released on exit so the server shuts down at once
                await asyncio.wait_for(self.release.wait(), timeout=self.delay)
            except TimeoutError:
                pass
        if len(self.requests) <= self.fail:
            return web.Response(status=500)
        return web.Response(status=self.status_after)

    async def __aenter__(self):
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook?token=tok123"
        return self

    async def __aexit__(self, *exc):
        self.release.set()
        await self.runner.cleanup()


def hook_settings(url, **kw) -> WebhookSettings:
    kw.setdefault("backoff_initial_s", 0.05)
    kw.setdefault("backoff_max_s", 0.2)
    kw.setdefault("timeout_s", 2.0)
    return WebhookSettings(url=url, secret=SECRET, **kw)


async def test_webhook_signed_and_retried_after_500s():
    async with Receiver(fail=2) as rx:
        sink = WebhookSink(hook_settings(rx.url), site="studio-a")
        await sink.start()
        try:
            sink.submit(IncidentEvent("opened", incident()))
            await wait_for(lambda: sink.sent == 1)
        finally:
            await sink.stop()
    assert len(rx.requests) == 3 and sink.retries == 2 and sink.failed == 0
    # backoff between attempts grows
    gaps = [b - a for a, b in itertools.pairwise(rx.times)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04
    deliveries = set()
    for headers, body in rx.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Signalpath-Signature"], expected)
        assert headers["X-Signalpath-Event"] == "opened"
        deliveries.add(headers["X-Signalpath-Delivery"])
    assert len(deliveries) == 1  # retries of one event share its delivery id
    doc = json.loads(rx.requests[-1][1])
    assert doc["event"] == "opened" and doc["site"] == "studio-a"
    assert doc["incident"]["component"] == "edge-b" and doc["incident"]["started_at"].endswith("Z")
    assert SECRET not in rx.requests[-1][1].decode()


async def test_webhook_gives_up_after_max_attempts_and_not_on_4xx():
    async with Receiver(fail=100) as rx:
        sink = WebhookSink(hook_settings(rx.url, max_attempts=3), site="s")
        await sink.start()
        try:
            sink.submit(IncidentEvent("opened", incident()))
            await wait_for(lambda: sink.failed == 1)
        finally:
            await sink.stop()
        assert len(rx.requests) == 3 and sink.sent == 0
    async with Receiver(status_after=400) as rx:
        sink = WebhookSink(hook_settings(rx.url), site="s")
        await sink.start()
        try:
            sink.submit(IncidentEvent("opened", incident()))
            await wait_for(lambda: sink.failed == 1)
        finally:
            await sink.stop()
        assert len(rx.requests) == 1  # a 400 is final


async def test_queue_drops_oldest_and_submit_never_blocks():
    async with Receiver(delay=0.3) as rx:
        sink = WebhookSink(hook_settings(rx.url, queue_size=2), site="s")
        t0 = time.perf_counter()
        for i in range(5):
            sink.submit(IncidentEvent("opened", incident(iid=f"i{i}")))
        assert time.perf_counter() - t0 < 0.05
        assert sink.dropped == 3 and sink.pending == 2
        await sink.start()
        try:
            await wait_for(lambda: sink.sent == 2)
        finally:
            await sink.stop()
        ids = [json.loads(body)["incident"]["id"] for _, body in rx.requests]
        assert ids == ["i3", "i4"]


async def test_stop_is_bounded_when_receiver_hangs():
    async with Receiver(delay=30) as rx:
        sink = WebhookSink(hook_settings(rx.url, timeout_s=20), site="s")
        await sink.start()
        sink.submit(IncidentEvent("opened", incident()))
        await wait_for(lambda: len(rx.requests) == 1)
        t0 = time.monotonic()
        await sink.stop(drain_timeout_s=0.3)
        assert time.monotonic() - t0 < 3


def test_settings_are_strict_and_hide_secret():
    s = WebhookSettings(url="http://127.0.0.1:1/x", secret="abc")
    assert "abc" not in repr(s)
    with pytest.raises(ValidationError, match="not an http"):
        WebhookSettings(url="ftp://x", secret="abc")
    with pytest.raises(ValidationError, match="extra_forbidden"):
        AlertSettings(webhooks=[], pagers=[])


# ---------------------------------------------------------------------------
# a real Alertmanager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path):
    binary = require_binary("prometheus-alertmanager")
    cfg = tmp_path / "am.yml"
    cfg.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    port = _free_port()
    with open(tmp_path / "am.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("alertmanager did not start: " + (tmp_path / "am.log").read_text()[-2000:])
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


async def _am_alerts(client: httpx.AsyncClient, base: str) -> list[dict]:
    resp = await client.get(base + "/api/v2/alerts")
    resp.raise_for_status()
    return [a for a in resp.json() if a["labels"].get("alertname") == "SignalpathIncident"]


async def test_alertmanager_firing_then_resolved(alertmanager):
    sink = AlertmanagerSink(AlertmanagerSettings(url=alertmanager, backoff_initial_s=0.1), site="studio-a")
    dispatcher = AlertDispatcher([sink])
    await dispatcher.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            opened = incident()
            dispatcher.submit(IncidentEvent("opened", opened))
            seen: list[dict] = []

            async def firing():
                seen[:] = await _am_alerts(client, alertmanager)
                return len(seen) == 1

            await wait_for(firing, timeout=10, interval=0.1)
            (alert,) = seen
            assert alert["labels"] == {
                "alertname": "SignalpathIncident", "stream": "main", "stage": "cdn", "component": "edge-b",
                "fault": "stale_playlist", "severity": "P2", "site": "studio-a",
            }
            assert alert["annotations"]["summary"].startswith("edge-b stopped updating")
            assert alert["annotations"]["runbook"].startswith("Fail viewers over")
            assert alert["status"]["state"] == "active"

            # escalation: same incident, new severity -> the old label set is ended
            dispatcher.submit(IncidentEvent("updated", incident(severity="P1")))

            async def escalated():
                seen[:] = await _am_alerts(client, alertmanager)
                return [a["labels"]["severity"] for a in seen] == ["P1"]

            await wait_for(escalated, timeout=10, interval=0.1)

            dispatcher.submit(IncidentEvent("resolved", incident(severity="P1", resolved_at=time.time())))

            async def resolved():
                return await _am_alerts(client, alertmanager) == []

            await wait_for(resolved, timeout=10, interval=0.1)
        assert sink.sent == 3 and sink.failed == 0
    finally:
        await dispatcher.stop()


async def test_alertmanager_resends_firing_alerts(alertmanager):
    sink = AlertmanagerSink(AlertmanagerSettings(url=alertmanager, resend_interval_s=0.2), site="s")
    await sink.start()
    try:
        sink.submit(IncidentEvent("opened", incident()))
        await wait_for(lambda: sink.sent >= 3, timeout=5)  # the event, then periodic re-sends
    finally:
        await sink.stop()
