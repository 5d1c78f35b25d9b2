"""HTTP API on ``agent.listen``: /metrics, /api/v1/status, the status page at /.

JSON, times RFC 3339 UTC (DESIGN.md "HTTP API").
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from agent.app import Agent

_FALLBACK_PAGE = """<!doctype html><meta charset=utf-8><title>signalpath</title>
<p>signalpath agent. See <a href=/api/v1/status>/api/v1/status</a> and <a href=/metrics>/metrics</a>."""


def _page() -> bytes:
    try:
        return resources.files("agent").joinpath("web/index.html").read_bytes()
    except (FileNotFoundError, OSError):
        return _FALLBACK_PAGE.encode()


def make_app(agent: Agent) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)

    async def metrics(_req: web.Request) -> web.Response:
        body = generate_latest(agent.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(_req: web.Request) -> web.Response:
        return web.json_response(agent.board.as_json())

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

    async def index(_req: web.Request) -> web.Response:
        return web.Response(body=_page(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/incidents", incidents)
    app.router.add_get("/", index)
    for route in getattr(agent, "extra_routes", lambda: [])():
        app.router.add_route(*route)
    return app


async def start_server(agent: Agent, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(make_app(agent), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    server: Any = site._server  # aiohttp types it AbstractServer; it is an asyncio.Server (has .sockets)
    sockets: Any = server.sockets if server else []  # the real port when port 0
    real_port = sockets[0].getsockname()[1] if sockets else port
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal in a URL goes in brackets
    return runner, f"http://{shown}:{real_port}"
