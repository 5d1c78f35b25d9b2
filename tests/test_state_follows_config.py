"""State follows config (issue 15 item 7).

- An incident left open by an earlier run whose place (stream, edge, probe) is no longer in
  the config is resolved at start as "removed from config": in its timeline, off /metrics.
- Alert receivers are not told again at start what they were told in an earlier run (a real
  webhook receiver and a real Alertmanager); an incident closed as removed is one resolve.
- ``Agent.reload``: streams that remain keep their open incidents (same ids) and probe state,
  removed streams and components are resolved, new streams start probing.
- ``signalpath run`` re-reads its config file on SIGHUP; an invalid file is one error line
  with the key path and the agent goes on.

Real parts throughout: the in-process live HLS origin and edges (conftest ``live``), the
agent's HTTP API, SQLite, an aiohttp webhook receiver, prometheus-alertmanager, and a
``signalpath run`` child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from test_alerts import SECRET, Receiver, _am_alerts, alertmanager  # noqa: F401  (alertmanager: a fixture)
from waiting import wait_for

from agent.app import Agent
from agent.cli import main as cli_main
from agent.config import parse_config
from agent.incidents import IncidentStore
from agent.localize import REMOVED_FROM_CONFIG, Incident, IncidentEvent
from agent.runner import Cycle

LIGHT = {"playback": {"enabled": False}, "media": {"enabled": False}, "latency": {"enabled": False}}
"""HLS only: the other probes add nothing here and cost CPU on a shared machine."""


def stream(live: Any, name: str, edges: tuple[str, ...] = ("edge-a", "edge-b")) -> dict[str, Any]:
    return {"name": name, "origin": live.origin.master_url,
            "edges": [{"name": n, "url": live.edges[n].master_url} for n in edges],
            "hls": {"interval_s": 0.5, "timeout_s": 3.0}, **LIGHT}


def config(tmp_path: Path, streams: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"agent": {"listen": "127.0.0.1:0", "site": "test"},
            "incidents": {"path": str(tmp_path / "incidents.db")},
            "localize": {"resolve_after_s": 2.0}, "streams": streams, **extra}


def seeded(db: Path, *places: tuple[str, str, str, str, str]) -> list[Incident]:
    """Open incidents as an earlier run left them: (stream, stage, component, fault, severity)."""
    store = IncidentStore(db)
    now = time.time()
    out = []
    try:
        for n, (name, stage, comp, fault, sev) in enumerate(places):
            inc = Incident(id=f"{name}-seed{n}", stream=name, stage=stage, component=comp, fault=fault,
                           severity=sev, started_at=now - 60, localized_at=now - 58, summary=f"{comp} {fault}")
            store.apply(IncidentEvent("opened", inc))
            out.append(inc)
    finally:
        store.close()
    return out


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        body = await r.text()
        return r.status, json.loads(body) if r.content_type == "application/json" else body


def open_series(metrics_text: str) -> list[str]:
    return [line for line in metrics_text.splitlines() if line.startswith("signalpath_incidents_open{")]


class HlsCycles:
    """An extra sink: counts each stream's HLS cycles (how far the agent got, without sleeping)."""

    def __init__(self) -> None:
        self.n: dict[str, int] = {}

    def on_cycle(self, cycle: Cycle) -> None:
        if cycle.job.probe == "hls":
            self.n[cycle.job.stream] = self.n.get(cycle.job.stream, 0) + 1


# ---------------------------------------------------------------- (a) at start


async def test_incidents_of_a_removed_stream_or_edge_are_resolved_at_start(live, tmp_path):
    db = tmp_path / "incidents.db"
    gone, edge_gone, kept = seeded(db, ("gone", "origin", "origin", "http_error", "P1"),
                                   ("main", "cdn", "edge-c", "stale_playlist", "P1"),
                                   ("main", "transcode", "360p", "stale_playlist", "P2"))
    conf = config(tmp_path, [stream(live, "main")], localize={"resolve_after_s": 600.0})
    async with Agent(parse_config(conf)) as agent:
        _s, still_open = await get(agent.url + "/api/v1/incidents?state=open")
        assert [i["id"] for i in still_open] == [kept.id]  # transcode/360p: its stream remains
        _s, text = await get(agent.url + "/metrics")
        series = open_series(text)
        assert not [s for s in series if 'stream="gone"' in s or 'component="edge-c"' in s], series
        assert [s for s in series if 'component="360p"' in s]
        _s, status = await get(agent.url + "/api/v1/status")
        assert [s["name"] for s in status["streams"]] == ["main"]
    store = IncidentStore(db)
    try:
        for inc in (gone, edge_gone):
            now = store.get(inc.id)
            assert now is not None and now.resolved_at is not None
            last = store.timeline(inc.id)[-1]
            assert (last["kind"], last["reason"]) == ("resolved", REMOVED_FROM_CONFIG)
    finally:
        store.close()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["incidents", "--db", str(db), "--show", gone.id]) == 0
    assert f"resolved P1  ({REMOVED_FROM_CONFIG})" in out.getvalue()


# ---------------------------------------------------------------- (b) alerts across restarts


def test_the_store_says_what_a_sink_missed(tmp_path):
    store = IncidentStore(tmp_path / "i.db")
    try:
        told, untold, old, closed = (Incident(id=f"main-{n}", stream="main", stage="cdn", component="edge-b",
                                              fault="stale_playlist", severity="P2", started_at=100.0 + n,
                                              localized_at=101.0 + n) for n in range(4))
        for inc in (told, untold, old, closed):
            store.apply(IncidentEvent("opened", inc))
        for inc in (told, closed):
            store.record_delivery("webhook:x", IncidentEvent("opened", inc))
        old.resolved_at = closed.resolved_at = 200.0
        store.apply(IncidentEvent("resolved", old))
        store.apply(IncidentEvent("resolved", closed, REMOVED_FROM_CONFIG))
        told.severity = "P1"
        store.apply(IncidentEvent("updated", told))
        missed = [(e.kind, e.incident.id, e.reason) for e in store.undelivered("webhook:x")]
        # the escalation and the never-told open one; the resolve of one it heard open; never 'old'
        assert missed == [("updated", "main-0", ""), ("opened", "main-1", ""),
                          ("resolved", "main-3", REMOVED_FROM_CONFIG)]
        assert [e.kind for e in store.undelivered("webhook:x", firing=False)] == ["resolved"]
        assert [e.incident.id for e in store.undelivered("alertmanager:y")] == ["main-0", "main-1"]
        for e in store.undelivered("webhook:x"):
            store.record_delivery("webhook:x", e)
        assert store.undelivered("webhook:x") == []
    finally:
        store.close()



async def test_alert_receivers_are_not_told_old_incidents_again(live, tmp_path, alertmanager):  # noqa: F811
    async with Receiver() as hook, httpx.AsyncClient(timeout=5) as am:
        alerts = {"webhooks": [{"url": hook.url, "secret": SECRET, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}],
                  "alertmanagers": [{"url": alertmanager, "backoff_initial_s": 0.1}]}

        def hooks() -> list[dict[str, Any]]:
            return [json.loads(body) for _h, body in hook.requests]

        async def am_ids() -> set[str]:
            return {a["annotations"]["incident_id"] for a in await _am_alerts(am, alertmanager)}

        # resolve_after_s long: a restarted agent's playlist age starts from what it has seen
        slow = {"resolve_after_s": 600.0}
        with_main = parse_config(config(tmp_path, [stream(live, "main")], alerts=alerts, localize=slow))
        # run 1: edge-b stops updating -> one incident, told once to each receiver
        async with Agent(with_main) as agent:
            await wait_for(lambda: agent.board.state_of("main", "cdn", "edge-b").value == "ok", 10, "edge-b ok")
            live.edges["edge-b"].knobs.freeze_all = True
            (opened,) = await wait_for(lambda: [b for b in hooks() if b["event"] == "opened"], 15, "opened hook")
            iid = opened["incident"]["id"]
            await wait_for(lambda: _has(am_ids(), iid), 10, "firing in Alertmanager")
        assert len(hook.requests) == 1

        # run 2, same config, the cause still there: Alertmanager is re-asserted, the webhook hears nothing
        cycles = HlsCycles()
        async with Agent(with_main, extra_sinks=[cycles]) as agent:
            (am_sink,) = [s for s in agent.incidents.dispatcher.sinks if s.kind == "alertmanager"]
            await wait_for(lambda: am_sink.sent >= 1 and cycles.n.get("main", 0) >= 6, 15, "re-asserted, 3 s run")
            assert [i.id for i in agent.incidents.localizer.open_incidents()] == [iid]
            assert iid in await am_ids()
        assert len(hook.requests) == 1, hooks()

        # run 3: the stream left the config -> one resolve to each receiver, with the reason
        with_other = parse_config(config(tmp_path, [stream(live, "other", ("edge-a",))], alerts=alerts, localize=slow))
        async with Agent(with_other):
            await wait_for(lambda: _lacks(am_ids(), iid), 10, "resolved in Alertmanager")
        mine = [b for b in hooks() if b["incident"]["id"] == iid]
        assert [(b["event"], b.get("reason")) for b in mine] == [("opened", None), ("resolved", REMOVED_FROM_CONFIG)]

        # run 4: nothing about it again
        cycles = HlsCycles()
        async with Agent(with_other, extra_sinks=[cycles]) as agent:
            await wait_for(lambda: cycles.n.get("other", 0) >= 6, 15, "3 s of the other stream")
        assert len([b for b in hooks() if b["incident"]["id"] == iid]) == 2
        assert iid not in await am_ids()
        deliveries = {h["X-Signalpath-Delivery"] for h, _b in hook.requests}
        assert len(deliveries) == len(hook.requests)  # one id per notification


async def _has(ids: Any, iid: str) -> bool:
    return iid in await ids


async def _lacks(ids: Any, iid: str) -> bool:
    return iid not in await ids


# ---------------------------------------------------------------- (c) Agent.reload


async def test_reload_keeps_what_remains_and_resolves_what_left(live, tmp_path):
    cycles = HlsCycles()
    before = config(tmp_path, [stream(live, "keep"), stream(live, "drop", ("edge-b",)), stream(live, "trim")])
    async with Agent(parse_config(before), extra_sinks=[cycles]) as agent:
        names = ("keep", "drop", "trim")
        await wait_for(lambda: all(agent.board.state_of(n, "cdn", "edge-b").value == "ok" for n in names), 10,
                       "edge-b ok")
        live.edges["edge-b"].knobs.freeze_all = True

        def by_stream() -> dict[str, Incident]:
            return {i.stream: i for i in agent.incidents.localizer.open_incidents()}

        opened = await wait_for(lambda: (lambda d: d if set(d) == set(names) else None)(by_stream()), 15,
                                "edge-b incidents on three streams")
        assert {(i.stage, i.component) for i in opened.values()} == {("cdn", "edge-b")}

        after = config(tmp_path, [stream(live, "keep"), stream(live, "trim", ("edge-a",)), stream(live, "new")])
        assert await agent.reload(parse_config(after)) == []
        seen = dict(cycles.n)
        # 3 s of cycles (resolve_after_s is 2 s): an incident that lost its evidence would have resolved
        await wait_for(lambda: cycles.n.get("keep", 0) >= seen["keep"] + 6 and cycles.n.get("new", 0) >= 2, 15,
                       "3 s of cycles after the reload")
        assert [i.id for i in agent.incidents.localizer.open_incidents()] == [opened["keep"].id]

        _s, status = await get(agent.url + "/api/v1/status")
        cells = {s["name"]: {(c["stage"], c["component"]) for c in s["stages"]} for s in status["streams"]}
        assert set(cells) == {"keep", "trim", "new"}
        assert ("cdn", "edge-b") in cells["keep"] and ("cdn", "edge-b") not in cells["trim"]
        _s, text = await get(agent.url + "/metrics")
        series = open_series(text)
        assert len(series) == 1 and 'stream="keep"' in series[0], series
        _s, resolved = await get(agent.url + "/api/v1/incidents?state=resolved")
        assert {i["id"] for i in resolved} == {opened["drop"].id, opened["trim"].id}
    store = IncidentStore(tmp_path / "incidents.db")
    try:
        for name in ("drop", "trim"):
            assert store.timeline(opened[name].id)[-1]["reason"] == REMOVED_FROM_CONFIG
        assert store.get(opened["keep"].id).resolved_at is None  # type: ignore[union-attr]
    finally:
        store.close()
    tasks = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not [n for n in tasks if n.startswith(("job ", "cycle ", "loop watch", "alerts-"))], tasks


async def test_reload_reports_what_needs_a_restart(live, tmp_path):
    conf = config(tmp_path, [stream(live, "main")])
    async with Agent(parse_config(conf)) as agent:
        url = agent.url
        moved = {**conf, "agent": {"listen": "127.0.0.1:1", "site": "test"},
                 "incidents": {"path": str(tmp_path / "elsewhere.db")}}
        assert await agent.reload(parse_config(moved)) == ["agent.listen", "incidents.path"]
        status, _body = await get(url + "/api/v1/status")  # still where it was
        assert status == 200 and agent.config.agent.listen == "127.0.0.1:0"
    assert not (tmp_path / "elsewhere.db").exists()


# ---------------------------------------------------------------- (d) SIGHUP to `signalpath run`


async def test_sighup_rereads_the_config_file(live, tmp_path):
    port = _free_port()
    path = tmp_path / "signalpath.yaml"

    def write(streams: list[dict[str, Any]], **extra: Any) -> None:
        conf = config(tmp_path, streams, **extra)
        conf["agent"]["listen"] = f"127.0.0.1:{port}"
        path.write_text(yaml.safe_dump(conf))

    write([stream(live, "a", ("edge-a",)), stream(live, "b", ("edge-a",))])
    log = tmp_path / "run.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "-c", str(path)],
                                stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"

    async def streams() -> list[str] | None:
        try:
            _s, body = await get(base + "/api/v1/status")
        except aiohttp.ClientError:
            return None
        return sorted(s["name"] for s in body["streams"])

    try:
        assert await wait_for(streams, 20, "the agent's API") == ["a", "b"]
        write([stream(live, "a", ("edge-a",)), stream(live, "c", ("edge-a",))],
              incidents={"path": str(tmp_path / "moved.db")})
        proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _equal(streams(), ["a", "c"]), 15, "streams a and c after SIGHUP")
        await wait_for(lambda: b"incidents.path changed: needs a restart" in log.read_bytes(), 5, "restart note")
        assert not (tmp_path / "moved.db").exists()

        bad = yaml.safe_load(path.read_text())
        bad["streams"][1]["edges"][0]["url"] = "http://127.0.0.1:99999/live/main.m3u8"  # no such port
        path.write_text(yaml.safe_dump(bad))
        proc.send_signal(signal.SIGHUP)
        line = await wait_for(lambda: [x for x in log.read_text().splitlines() if "config reload refused" in x],
                              10, "the refusal")
        assert len(line) == 1 and "streams[1].edges[0].url" in line[0], line
        assert proc.poll() is None and await streams() == ["a", "c"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


async def _equal(got: Any, want: list[str]) -> bool:
    return await got == want


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
