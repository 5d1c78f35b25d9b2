"""The lab's HTTP control API (JSON).

- ``POST /faults`` ``{"name", "target"?, "for_s"?, "params"?}`` → 201 the fault record;
  400 ``{"error": "..."}`` for an unknown name or target, a bad parameter, a conflict.
- ``GET /faults`` → ``{"now", "active": [...], "history": [...]}``; every record has
  ``started_at`` / ``ended_at`` (epoch seconds, exact) and ``end_reason``.
- ``DELETE /faults/<id>`` → the ended record (404 if unknown); ``DELETE /faults`` ends all.
- ``GET /catalog`` → the fault catalog with targets and parameters.
- ``GET /truth`` → true per-stage state and delays now (ground truth for tests/benchmarks).
- ``GET /chronic`` → the chronic conditions of ``LabConfig.chronic`` (background, never in
  ``/faults``): each with its stage/component and the finding it should raise
  (agent/lab/chronic.py); ``{"enabled": false, ...}`` when the lab runs without them.
- ``GET /ingest/stat``, ``GET /studio/stat`` → what the ingest server's stat page and the
  encoder's status API would show (observable, unlike /truth).
- ``GET /ingest/live/<stream>.flv`` → the ingest's playback side as HTTP-FLV
  (agent/lab/ingest_live.py).
- ``GET /`` → the lab's URLs.

A bad request never takes the lab down: every handler error becomes a JSON answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web

from .errors import FaultNotFound, FaultRequestError, LabError

if TYPE_CHECKING:
    from .lab import Lab

log = logging.getLogger("signalpath.lab")

_MAX_BODY = 64 * 1024


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=1))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, f"{exc.reason}: {request.method} {request.path}")
        raise
    except FaultRequestError as exc:
        return _error(400, str(exc))
    except FaultNotFound as exc:
        return _error(404, str(exc))
    except LabError as exc:
        return _error(409, str(exc))
    except Exception as exc:  # never crash on a bad control request
        log.exception("lab control API error")
        return _error(500, f"internal error: {type(exc).__name__}")


def control_app(lab: Lab) -> web.Application:
    async def post_fault(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return _error(400, "request body too large")
        raw = await request.read()
        if len(raw) > _MAX_BODY:
            return _error(400, "request body too large")
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, f"request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, 'request body must be a JSON object like {"name": "edge_stale", '
                               '"target": "edge-b", "for_s": 30}')
        unknown = set(body) - {"name", "target", "for_s", "params"}
        if unknown:
            return _error(400, f"unknown field(s) {', '.join(sorted(unknown))}; "
                               "allowed: name, target, for_s, params")
        rec = await lab.inject(str(body.get("name") or ""), body.get("target"), body.get("for_s"), body.get("params"))
        return _json(rec.to_json(), status=201)

    async def list_faults(request: web.Request) -> web.Response:
        return _json(lab.faults())

    async def delete_fault(request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        try:
            fid = int(raw)
        except ValueError:
            return _error(400, f"fault id must be an integer, got {raw!r}")
        rec = await lab.clear(fid)
        return _json(rec.to_json())

    async def delete_all(request: web.Request) -> web.Response:
        recs = await lab.clear_all()
        return _json({"cleared": [r.to_json() for r in recs]})

    async def catalog(request: web.Request) -> web.Response:
        return _json(lab.book.catalog())

    async def truth(request: web.Request) -> web.Response:
        return _json(lab.truth())

    async def chronic(request: web.Request) -> web.Response:
        return _json(lab.chronic())

    async def ingest_stat(request: web.Request) -> web.Response:
        return _json({"stream": lab.config.stream, **lab.ingest_stats()})

    async def ingest_stat_xml(request: web.Request) -> web.Response:
        """The same, in nginx-rtmp's ``rtmp_stat`` XML shape, so ingest probes read lab and
        nginx-rtmp alike (probes/ingest_stat.py)."""
        st = lab.ingest_stats()
        name = xml_escape(lab.config.stream)
        client = "<client><id>1</id><publishing/><active/><dropped>0</dropped></client>" if st.get("publishing") else ""
        body = ("<?xml version=\"1.0\" encoding=\"utf-8\" ?><rtmp><server><application><name>live</name><live>"
                f"<stream><name>{name}</name><bw_in>{int(st.get('bitrate_bps') or 0)}</bw_in>"
                f"<bytes_in>{int(st.get('bytes_in') or 0)}</bytes_in>{client}"
                f"{'<publishing/><active/>' if st.get('publishing') else ''}<nclients>{1 if client else 0}</nclients>"
                "</stream></live></application></server></rtmp>")
        return web.Response(text=body, content_type="text/xml")

    async def studio_stat(request: web.Request) -> web.Response:
        return _json({"stream": lab.config.stream, **lab.studio_stats()})

    async def index(request: web.Request) -> web.Response:
        return _json(lab.urls())

    app = web.Application(middlewares=[_errors], client_max_size=_MAX_BODY)
    app.router.add_get("/", index)
    app.router.add_post("/faults", post_fault)
    app.router.add_get("/faults", list_faults)
    app.router.add_delete("/faults", delete_all)
    app.router.add_delete("/faults/{id}", delete_fault)
    app.router.add_get("/catalog", catalog)
    app.router.add_get("/truth", truth)
    app.router.add_get("/chronic", chronic)
    app.router.add_get("/ingest/stat", ingest_stat)
    app.router.add_get("/ingest/stat.xml", ingest_stat_xml)
    app.router.add_get("/studio/stat", studio_stat)
    app.router.add_get("/ingest/live/{name}.flv", lab.ingest_live.handle)
    return app
