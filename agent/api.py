"""HTTP API on ``agent.listen``: /metrics, /api/v1/status, /api/v1/incidents,
/api/v1/complaints (GET the list, POST one: agent/complaint_desk.py), /api/v1/broadcasts (the
schedule: agent/schedule.py), /api/v1/thumbnails (pictures: agent/thumbnails.py), the post-broadcast report at /report
and /api/v1/report (agent/report_cli.py), the status page at /.

JSON, times RFC 3339 UTC (DESIGN.md "HTTP API"). Every request passes the guard of
``agent.web`` first (agent/webguard.py: Host check, basic auth with read and write users,
body timeout); the server applies its connection limits and TLS. GET and HEAD are reads;
every other method, on any route (``agent.extra_routes()`` included), needs a write user.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent import webguard
from agent.localize import rfc3339
from agent.webguard import WebSettings

if TYPE_CHECKING:
    from agent.app import Agent

_FALLBACK_PAGE = """<!doctype html><meta charset=utf-8><title>signalpath</title>
<p>signalpath agent. See <a href=/api/v1/status>/api/v1/status</a> and <a href=/metrics>/metrics</a>."""


def _page() -> bytes:
    try:
        return resources.files("agent").joinpath("web/index.html").read_bytes()
    except (FileNotFoundError, OSError):
        return _FALLBACK_PAGE.encode()


_KINDS = {"broadcasts": "broadcast", "maintenance": "maintenance"}  # URL segment -> agent/schedule_book.py kind


def make_app(agent: Agent, web_settings: WebSettings | None = None, listen_host: str = "127.0.0.1"
             ) -> web.Application:
    settings = web_settings or WebSettings()
    logins = webguard.Logins(settings.basic_auth)
    app = web.Application(client_max_size=64 * 1024,
                          middlewares=[webguard.guard_middleware(settings, listen_host, logins)])
    app[webguard.LOGINS] = logins

    async def metrics(_req: web.Request) -> web.Response:
        # in a worker thread: at 200 streams the exposition is ~0.2 s of pure Python, a stall of the
        # event loop on every scrape otherwise (the metric store snapshots under its lock)
        agent.metrics_sink.publish_health()  # the stage health of the latest cycles (agent/app.py MetricsSink)
        body = await asyncio.to_thread(generate_latest, agent.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_req: web.Request) -> web.Response:
        return web.json_response(agent.status_json())

    async def incidents(req: web.Request) -> web.Response:
        state = req.query.get("state", "all")
        if state not in ("open", "resolved", "all"):
            return web.json_response({"error": f"state must be open, resolved or all (got {state[:20]!r})"},
                                     status=400)
        wanted = req.query.get("severity")
        levels = set(wanted.split(",")) if wanted else {"P1", "P2", "P3"}
        if not levels <= {"P1", "P2", "P3"}:
            return web.json_response({"error": f"severity is a comma list of P1, P2, P3 (got {(wanted or '')[:20]!r})"},
                                     status=400)
        return web.json_response([i for i in await agent.incidents.list(state) if i["severity"] in levels])

    async def incident(req: web.Request) -> web.Response:
        inc, timeline, deliveries = await agent.incidents.store.detail(req.match_info["id"])
        if inc is None:
            return web.json_response({"error": "no such incident"}, status=404)
        return web.json_response({
            **inc.to_api(),
            "timeline": [{**c, "at": rfc3339(c["at"])} for c in timeline],
            "deliveries": [{**d, "fired_at": rfc3339(d["fired_at"]), "at": rfc3339(d["at"])} for d in deliveries]})

    async def broadcasts(_req: web.Request) -> web.Response:
        from agent.schedule import broadcast_json

        now = agent.wall()
        sched = agent.schedule
        added = agent.schedule_book.added

        def source(kind: str, name: str) -> str:
            return "api" if (kind, name) in added else "config"

        return web.json_response({
            "broadcasts": [{**broadcast_json(b), "state": "on_air" if b.on_air(now) else "preroll" if b.watched(now)
                            else "ended" if now >= b.end else "scheduled", "source": source("broadcast", b.name)}
                           for b in sched.broadcasts],
            "maintenance": [{"name": m.name, "stream": m.stream, "stage": m.stage, "component": m.component,
                             "start": rfc3339(m.start), "end": rfc3339(m.end), "active": m.start <= now < m.end,
                             "source": source("maintenance", m.name)}
                            for m in sched.maintenance]})

    async def schedule_add(req: web.Request) -> web.Response:
        from agent.schedule import broadcast_json
        from agent.schedule_book import ScheduleError

        kind = req.match_info["kind"]
        try:
            data = await req.json()
        except ValueError:
            return web.json_response({"error": "the body is not valid JSON"}, status=400)
        if not isinstance(data, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        try:
            entry = await agent.schedule_book.add(_KINDS[kind], data)
        except ScheduleError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        agent.apply_schedule()
        body = broadcast_json(entry) if _KINDS[kind] == "broadcast" else {  # type: ignore[arg-type]
            **entry.model_dump(), "start": rfc3339(entry.start), "end": rfc3339(entry.end)}
        return web.json_response(body, status=201)

    async def schedule_remove(req: web.Request) -> web.Response:
        from agent.schedule_book import ScheduleError

        try:
            await agent.schedule_book.remove(_KINDS[req.match_info["kind"]], req.match_info["name"])
        except ScheduleError as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        agent.apply_schedule()
        return web.Response(status=204)

    async def thumbnails(_req: web.Request) -> web.Response:
        return web.json_response(agent.thumbnails.index(), headers={"Cache-Control": "no-store"})

    async def thumbnail(req: web.Request) -> web.Response:
        m = req.match_info
        th = agent.thumbnails.get(m["stream"], m["rendition"], m.get("fault"))
        if th is None:
            return web.json_response({"error": "no such picture (yet): see /api/v1/thumbnails"}, status=404)
        return web.Response(body=th.jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def complaints_list(req: web.Request) -> web.Response:
        stream = req.query.get("stream") or None
        try:
            since = float(req.query["since"]) if req.query.get("since") else None
            limit = int(req.query["limit"]) if req.query.get("limit") else None
        except ValueError:
            return web.json_response({"error": "since is epoch seconds, limit a whole number"}, status=400)
        if limit is not None and limit < 1:
            return web.json_response({"error": "limit must be at least 1"}, status=400)
        found = await agent.complaints.list(stream=stream, since=since, limit=limit)
        return web.json_response([c.to_api() for c in found])

    async def complaints_add(req: web.Request) -> web.Response:
        from agent.complaint_desk import ComplaintsOff
        from agent.complaints import ComplaintError

        try:
            raw = await req.read()
            if req.content_type == "application/json" or raw.lstrip()[:1] == b"{":
                data = json.loads(raw)  # JSON, whatever a client (curl -d) called it
            else:  # a plain HTML form (application/x-www-form-urlencoded)
                data = dict(await req.post())
        except ValueError:
            return web.json_response({"error": "the body is not valid JSON"}, status=400)
        if not isinstance(data, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        try:
            c = await agent.complaints.record(data)
        except ComplaintsOff as exc:
            return web.json_response({"error": str(exc)}, status=403)
        except ComplaintError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(c.to_api(), status=201)

    async def report(req: web.Request) -> web.Response:
        from agent.report_cli import serve

        query = dict(req.query)
        if req.path.startswith("/api/"):  # the API answers JSON; /report is the page (format=json for its figures)
            query.setdefault("format", "json")
        status, kind, body = await serve(agent, query, req.query.getall("stream", []))
        return web.Response(status=status, body=body, content_type=kind,
                            charset="utf-8", headers={"Cache-Control": "no-store"})

    async def index(_req: web.Request) -> web.Response:
        return web.Response(body=_page(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/incidents", incidents)
    app.router.add_get("/api/v1/incidents/{id}", incident)
    app.router.add_get("/api/v1/broadcasts", broadcasts)
    app.router.add_post(r"/api/v1/{kind:broadcasts|maintenance}", schedule_add)
    app.router.add_delete(r"/api/v1/{kind:broadcasts|maintenance}/{name}", schedule_remove)
    app.router.add_get("/api/v1/thumbnails", thumbnails)
    app.router.add_get(r"/api/v1/thumbnails/{stream}/{rendition}.jpg", thumbnail)
    app.router.add_get(r"/api/v1/thumbnails/{stream}/{rendition}/{fault}.jpg", thumbnail)
    app.router.add_get("/api/v1/complaints", complaints_list)
    app.router.add_post("/api/v1/complaints", complaints_add)
    app.router.add_get("/report", report)
    app.router.add_get("/api/v1/report", report)
    app.router.add_get("/", index)
    for route in getattr(agent, "extra_routes", lambda: [])():
        app.router.add_route(*route)
    return app


async def start_server(agent: Agent, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve the API on ``host:port`` with ``agent.config.agent.web``; OSError when it cannot
    listen, AgentError when the TLS files cannot be used."""
    settings = agent.config.agent.web
    ssl_context = webguard.tls_context(settings.tls) if settings.tls else None
    webguard.hide_server_banner()
    runner = web.AppRunner(make_app(agent, settings, host), handle_signals=False,
                           **webguard.runner_options(settings))
    await runner.setup()
    site = webguard.GuardedSite(runner, host, port, ssl_context=ssl_context,
                                handshake_timeout=settings.header_timeout_s)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    webguard.describe(settings, host)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal in a URL goes in brackets
    return runner, f"{'https' if ssl_context else 'http'}://{shown}:{site.port}"
