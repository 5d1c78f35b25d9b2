"""HTTP parts of the lab: a listener that can go down and come back on the same port,
the origin (serves the packager), and the caching CDN edges.

Origin cache headers: playlists ``Cache-Control: max-age=1`` (about half a target
duration, so a CDN refetches them at least as often as RFC 8216 §6.3.4 has players
reload), segments ``max-age=60`` (immutable once written). Content types from RFC
8216 §4: ``application/vnd.apple.mpegurl`` and ``video/mp2t``.

An edge caches like a CDN: it honours the origin's ``Cache-Control: max-age``,
collapses concurrent misses into one origin fetch (nginx ``proxy_cache_lock``), and
answers ``X-Cache: HIT|MISS`` with an ``Age`` header (RFC 9111 §5.1). ``slow`` (the
lab's chronic mode, agent/lab/chronic.py) paces a segment's body when it returns a rate.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .faults import FaultBook, _iso
from .packager import Packager

M3U8 = "application/vnd.apple.mpegurl"
MPD = "application/dash+xml"
TS = "video/mp2t"
MANIFESTS = (".m3u8", ".mpd")  # what an edge treats as a manifest (stale, delayed, propagation) rather than media
LL_HOLD_TARGETS = 3  # a blocking reload or preload-hint request is held at most this many target durations
_NO_STORE = {"Cache-Control": "no-store"}
PART_PUBLISHED_HEADER = "X-Lab-Part-Published"  # publish wall time of the part a blocking reload asked for
PUBLISHED_HEADER = "X-Lab-Published"  # origin publish wall time of a playlist (truth bookkeeping)


class Listener:
    """One aiohttp application on one loopback port.

    ``down()`` closes the listening socket and every open connection, so clients get
    "connection refused"; ``up()`` listens again on the same port.
    """

    def __init__(self, app: web.Application, host: str, port: int = 0) -> None:
        self._app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def is_up(self) -> bool:
        return self._site is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await self.up()

    async def up(self) -> None:
        if self._site is not None or self._runner is None:
            return
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server: Any = site._server  # an asyncio.Server (aiohttp types it AbstractServer)
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self._site = site

    async def down(self) -> None:
        if self._site is None or self._runner is None:
            return
        site, self._site = self._site, None
        await site.stop()
        server = self._runner.server
        if server is not None:
            for handler in server.connections:
                handler.force_close()

    async def stop(self) -> None:
        await self.down()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def _headers(ctype: str, max_age: int) -> dict[str, str]:
    return {"Content-Type": ctype, "Cache-Control": f"max-age={max_age}",
            "Access-Control-Allow-Origin": "*"}


def origin_app(packager: Packager, book: FaultBook, stream: str, playlist_max_age: int,
               segment_max_age: int) -> web.Application:
    """The origin: master, media playlists and segments of one stream."""

    def check(request: web.Request) -> web.Response | None:
        if request.match_info.get("stream") != stream:
            return web.Response(status=404, text=f"no stream {request.match_info.get('stream')!r}\n")
        f = book.active("origin_5xx", "origin")
        if f is not None:
            status = int(f.params["status"])
            return web.Response(status=status, text=f"origin error {status}\n",
                                headers={"Cache-Control": "no-store"})
        return None

    async def master(request: web.Request) -> web.Response:
        if (r := check(request)) is not None:
            return r
        if not packager.ready():
            return web.Response(status=404, text="stream not started\n",
                                headers={"Cache-Control": "no-store"})
        return web.Response(body=packager.master_playlist(), headers=_headers(M3U8, playlist_max_age))

    async def media(request: web.Request) -> web.Response:
        if (r := check(request)) is not None:
            return r
        rendition = request.match_info["rendition"]
        body = packager.media_playlist(rendition)
        if body is None:
            return web.Response(status=404, text=f"no rendition {rendition!r}\n",
                                headers={"Cache-Control": "no-store"})
        headers = _headers(M3U8, playlist_max_age)
        latest = packager.latest(rendition)
        if latest is not None:
            headers[PUBLISHED_HEADER] = f"{latest.published_wall:.6f}"
        return web.Response(body=body, headers=headers)

    async def segment(request: web.Request) -> web.Response:
        if (r := check(request)) is not None:
            return r
        seg = packager.segment(request.match_info["rendition"], int(request.match_info["seq"]))
        late = book.active("segment_late", "origin")
        if seg is None or (late is not None and packager.wall() - seg.published_wall < late.params["ms"] / 1000):
            return web.Response(status=404, text="no such segment\n",
                                headers={"Cache-Control": "no-store"})
        return web.Response(body=seg.data, headers=_headers(TS, segment_max_age))

    async def mpd(request: web.Request) -> web.Response:
        if (r := check(request)) is not None:
            return r
        if not packager.ready():
            return web.Response(status=404, text="stream not started\n", headers={"Cache-Control": "no-store"})
        stale = book.active("mpd_stale", "origin")
        if stale is not None:  # the MPD it had when its DASH packaging stopped (the HLS side goes on)
            body, published = frozen_mpd.setdefault(stale.id, (packager.mpd(), newest_published()))
        else:
            frozen_mpd.clear()
            body, published = packager.mpd(), newest_published()
        headers = _headers(MPD, playlist_max_age)
        if published is not None:
            headers[PUBLISHED_HEADER] = f"{published:.6f}"
        return web.Response(body=body, headers=headers)

    def newest_published() -> float | None:
        return max((p.published_wall for r in packager.renditions if (p := packager.latest(r)) is not None),
                   default=None)

    frozen_mpd: dict[int, tuple[bytes, float | None]] = {}  # mpd_stale: fault id -> what it serves

    hold_s = LL_HOLD_TARGETS * packager.cfg.segment_s

    async def ll_media(request: web.Request) -> web.Response:
        """LL-HLS media playlist; a blocking reload (``_HLS_msn``/``_HLS_part``) is held until the
        playlist holds that segment or part, at most 3 target durations (then 503), and one more
        than 2 segments ahead is 400 (RFC 8216bis §6.2.5.2); ``_HLS_skip`` gets the delta update."""
        if (r := check(request)) is not None:
            return r
        rendition = request.match_info["rendition"]
        if rendition not in packager.renditions or packager.ll_last_msn(rendition) is None:
            return web.Response(status=404, text=f"no rendition {rendition!r}\n", headers=_NO_STORE)
        q = request.query
        blocking = "_HLS_msn" in q
        try:
            msn = int(q["_HLS_msn"]) if blocking else 0
            part = int(q["_HLS_part"]) if "_HLS_part" in q else None
        except ValueError:
            return web.Response(status=400, text="_HLS_msn and _HLS_part must be integers\n", headers=_NO_STORE)
        if (part is not None and not blocking) or msn < 0 or (part is not None and part < 0):
            return web.Response(status=400, text="_HLS_part needs _HLS_msn; both >= 0\n", headers=_NO_STORE)
        if blocking:
            last = packager.ll_last_msn(rendition)
            if last is not None and msn > last + 2:
                return web.Response(status=400, text="_HLS_msn more than two segments ahead\n", headers=_NO_STORE)
            deadline = asyncio.get_running_loop().time() + hold_s
            while not packager.ll_has(rendition, msn, part):
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0 or not packager.holding:
                    return web.Response(status=503, text="part not produced in time\n", headers=_NO_STORE)
                await packager.ll_wait(left)
                if (r := check(request)) is not None:
                    return r
        body = packager.ll_playlist(rendition, skip=q.get("_HLS_skip", "").upper() in ("YES", "V2"))
        assert body is not None
        # a blocking answer holds what was asked for whenever it is served: cacheable (keyed on the query)
        headers = _headers(M3U8, 3 * packager.cfg.segment_s if blocking else playlist_max_age)
        newest = packager.ll_segment(rendition, packager.ll_last_msn(rendition) or 0)
        if newest is not None and newest.parts:
            headers[PUBLISHED_HEADER] = f"{newest.parts[-1].published_wall:.6f}"
        if blocking and (asked := packager.ll_published(rendition, msn, part)) is not None:
            headers[PART_PUBLISHED_HEADER] = f"{asked:.6f}"  # when what was asked for came out (edge_delay)
        return web.Response(body=body, headers=headers)

    async def ll_media_file(request: web.Request) -> web.Response:
        """An LL-HLS segment or part; the next part (the preload hint) is held until it is cut."""
        if (r := check(request)) is not None:
            return r
        rendition, msn = request.match_info["rendition"], int(request.match_info["msn"])
        idx = request.match_info.get("part")
        if rendition not in packager.renditions:
            return web.Response(status=404, text="no such rendition\n", headers=_NO_STORE)
        deadline = asyncio.get_running_loop().time() + hold_s
        while True:
            seg = packager.ll_segment(rendition, msn)
            if idx is None:
                if seg is not None and seg.data is not None:
                    return web.Response(body=seg.data, headers=_headers(TS, segment_max_age))
                break
            i = int(idx)
            if seg is not None and i < len(seg.parts):
                return web.Response(body=seg.parts[i].data, headers=_headers(TS, segment_max_age))
            nxt = packager.ll_segment(rendition, packager.ll_last_msn(rendition) or 0)
            due = nxt is not None and ((msn == nxt.msn and i == len(nxt.parts) and not nxt.complete)
                                       or (msn == nxt.msn + 1 and i == 0 and nxt.complete))
            left = deadline - asyncio.get_running_loop().time()
            if not due or left <= 0 or not packager.holding:
                break
            await packager.ll_wait(left)
        return web.Response(status=404, text="no such segment or part\n", headers=_NO_STORE)

    async def utc_time(_request: web.Request) -> web.Response:
        # the clock the MPD's UTCTiming names (urn:mpeg:dash:utc:http-iso:2014)
        return web.Response(text=_iso(packager.wall()), headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/time", utc_time)
    app.router.add_get("/live/{stream}.mpd", mpd)
    app.router.add_get("/live/{stream}.m3u8", master)
    app.router.add_get("/live/{stream}/{rendition}.m3u8", media)
    app.router.add_get(r"/live/{stream}/{rendition}/{seq:\d{1,12}}.ts", segment)
    app.router.add_get("/ll/{stream}.m3u8", master)
    app.router.add_get("/ll/{stream}/{rendition}.m3u8", ll_media)
    app.router.add_get(r"/ll/{stream}/{rendition}/{msn:\d{1,12}}.ts", ll_media_file)
    app.router.add_get(r"/ll/{stream}/{rendition}/{msn:\d{1,12}}.{part:\d{1,4}}.ts", ll_media_file)
    return app


_LL_DIRECTIVES = ("_HLS_msn", "_HLS_part", "_HLS_skip")  # RFC 8216bis §6.2.5: what an edge forwards
_LL_UPSTREAM_EXTRA_S = 8.0  # beyond the upstream timeout, for a blocking reload the origin holds
_MAX_AGE = re.compile(r"(?:^|[,\s])(?:s-maxage|max-age)=(\d+)")


@dataclass(slots=True)
class _Entry:
    status: int
    body: bytes
    ctype: str
    cache_control: str
    stored: float  # monotonic
    max_age: float
    published: float | None  # origin publish wall time (playlists)
    part_published: float | None = None  # LL-HLS blocking answers: when the part asked for came out


class Edge:
    """A caching reverse proxy in front of the origin: one CDN edge."""

    def __init__(self, name: str, host: str, port: int, origin_url: Callable[[], str],
                 book: FaultBook, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, upstream_timeout_s: float = 5.0,
                 slow: Callable[[], float | None] | None = None) -> None:
        self.name = name
        self._slow = slow  # bytes/s for a segment about to be sent, or None: full speed
        self._origin_url = origin_url
        self._book = book
        self._clock = clock
        self._wall = wall
        self._timeout = upstream_timeout_s
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._frozen: dict[str, _Entry] = {}
        self._versions: dict[str, list[tuple[float, _Entry]]] = {}
        self._served_published: dict[str, float] = {}
        self.last_propagation_s: dict[str, float] = {}
        self.hits = 0
        self.misses = 0
        self._session: aiohttp.ClientSession | None = None
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self.listener = Listener(app, host, port)

    @property
    def url(self) -> str:
        return self.listener.url

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=64, force_close=False),
            auto_decompress=False)
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def down(self) -> None:
        await self.listener.down()

    async def up(self) -> None:
        await self.listener.up()

    # -- cache -----------------------------------------------------------------
    async def _fetch(self, path: str) -> _Entry:
        assert self._session is not None
        url = self._origin_url() + path
        # a blocking reload is held by the origin (up to 3 target durations): wait for it longer
        # always a timeout (``timeout=None`` is no timeout at all to aiohttp, not the session's)
        timeout = aiohttp.ClientTimeout(total=self._timeout + (_LL_UPSTREAM_EXTRA_S if "?_HLS_" in path else 0.0))
        try:
            async with self._session.get(url, timeout=timeout) as resp:
                body = await resp.read()
                cc = resp.headers.get("Cache-Control", "")
                m = _MAX_AGE.search(cc)
                max_age = float(m.group(1)) if (m and resp.status == 200 and "no-store" not in cc) else 0.0
                pub, part_pub = resp.headers.get(PUBLISHED_HEADER), resp.headers.get(PART_PUBLISHED_HEADER)
                return _Entry(resp.status, body, resp.headers.get("Content-Type", "text/plain"), cc,
                              self._clock(), max_age, float(pub) if pub else None,
                              float(part_pub) if part_pub else None)
        except TimeoutError:
            return _Entry(504, b"edge: origin timed out\n", "text/plain", "no-store", self._clock(), 0, None)
        except aiohttp.ClientError as exc:
            return _Entry(502, f"edge: origin unreachable ({type(exc).__name__})\n".encode(), "text/plain",
                          "no-store", self._clock(), 0, None)

    async def _get(self, path: str) -> tuple[_Entry, str]:
        now = self._clock()
        entry = self._cache.get(path)
        if entry is not None and now - entry.stored < entry.max_age:
            self.hits += 1
            return entry, "HIT"
        fut = self._inflight.get(path)
        if fut is not None:  # collapse concurrent misses (proxy_cache_lock)
            entry = await asyncio.shield(fut)
            self.hits += 1
            return entry, "HIT"
        fut = asyncio.get_running_loop().create_future()
        self._inflight[path] = fut
        try:
            entry = await self._fetch(path)
            fut.set_result(entry)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._inflight.pop(path, None)
        self.misses += 1
        if entry.max_age > 0:
            self._cache[path] = entry
            if len(self._cache) > 256:
                self._purge()
            if path.endswith(MANIFESTS):
                self._remember(path, entry)
        return entry, "MISS"

    def _remember(self, path: str, entry: _Entry) -> None:
        """Keep the playlist versions of ``path`` as they came from the origin (``edge_delay``)."""
        versions = self._versions.setdefault(path, [])
        if not versions or (versions[-1][1].body != entry.body and entry.stored >= versions[-1][0]):
            versions.append((entry.stored, entry))
            del versions[:-150]

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._cache.items() if now - e.stored > e.max_age + 10]:
            del self._cache[key]

    async def _lookup(self, path: str, query: str = "") -> tuple[_Entry, str]:
        """``query``: the LL-HLS delivery directives (``_HLS_msn``, ``_HLS_part``, ``_HLS_skip``),
        normalized: forwarded to the origin and part of the cache key, as RFC 8216bis §6.2.5.2 asks
        of a CDN; other query strings are not forwarded (a cache keyed on the path)."""
        if not path.endswith(MANIFESTS):
            return await self._get(path)
        if query:
            return await self._ll_lookup(path, query)
        if self._book.active("edge_stale", self.name) is not None:
            snap = self._frozen.get(path)
            if snap is None:
                snap = self._cache.get(path)
                if snap is None:
                    snap, _ = await self._get(path)
                if snap.status == 200:
                    self._frozen[path] = snap
            return snap, "HIT"
        if self._frozen:
            self._frozen.clear()
        entry, xcache = await self._get(path)
        delay = self._book.active("edge_delay", self.name)
        if delay is not None and entry.status == 200:
            versions = self._versions.get(path) or [(entry.stored, entry)]
            cutoff = self._clock() - delay.params["ms"] / 1000.0
            chosen = versions[0][1]
            for first_seen, e in versions:
                if first_seen <= cutoff:
                    chosen = e
            if chosen is not entry:
                return chosen, "HIT"
        return entry, xcache

    async def _ll_lookup(self, path: str, query: str) -> tuple[_Entry, str]:
        """A playlist request with delivery directives: a stale edge holds it (it never learns
        of the part) and then serves the playlist it kept; a delayed edge answers when the part
        has been out at the origin for the delay (a propagation delay: parts come at their
        cadence, late), and its plain reads show the playlist as it was then."""
        if self._book.active("edge_stale", self.name) is not None:
            await asyncio.sleep(self._timeout)
            return await self._lookup(path)
        entry, xcache = await self._get(f"{path}?{query}")
        if entry.status == 200 and xcache == "MISS" and "_HLS_skip" not in query:
            self._remember(path, entry)  # the playlist as the origin had it then (edge_delay's history)
        delay = self._book.active("edge_delay", self.name)
        if delay is not None and entry.status == 200:
            # a part reaches this edge ``ms`` after the origin published it: the held request is
            # answered then (the origin's publish time travels in PUBLISHED_HEADER)
            published = entry.part_published if entry.part_published is not None else \
                entry.published if entry.published is not None else self._wall()
            wait = published + delay.params["ms"] / 1000.0 - self._wall()
            if wait > 0:
                await asyncio.sleep(wait)
        return entry, xcache

    # -- serving ---------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = ""
        if path.endswith(".m3u8") and self._book.active("edge_no_block", self.name) is None:
            query = urllib.parse.urlencode([(k, request.query[k]) for k in sorted(request.query) if k in _LL_DIRECTIVES])
        slow = self._book.active("edge_slow_first_byte", self.name)
        if slow is not None:
            await asyncio.sleep(slow.params["ms"] / 1000.0)
        if path.endswith(".ts") and self._book.active("edge_404_segments", self.name) is not None:
            return web.Response(status=404, text="edge: not found\n",
                                headers={"X-Cache": "MISS", "Cache-Control": "no-store",
                                         "Via": f"1.1 {self.name}"})
        entry, xcache = await self._lookup(path, query)
        headers = {"Content-Type": entry.ctype, "X-Cache": xcache, "Via": f"1.1 {self.name}",
                   "Age": str(int(max(0.0, self._clock() - entry.stored)))}
        if entry.cache_control:
            headers["Cache-Control"] = entry.cache_control
        if entry.status == 200 and entry.published is not None and path.endswith(MANIFESTS):
            # playlists only: one entry per segment path grew these maps without bound
            if self._served_published.get(path) != entry.published:
                self._served_published[path] = entry.published
                self.last_propagation_s[path] = max(0.0, self._wall() - entry.published)
        chronic = None
        if self._slow is not None and path.endswith(".ts") and entry.status == 200 and request.method != "HEAD":
            chronic = self._slow()  # one slow transfer, decided when it starts

        def rate_now() -> float | None:
            # the throttle is read again for every chunk, as a shaped link (tc) is: clearing it
            # speeds up the transfers already under way, not only the next ones
            throttle = self._book.active("edge_throttle", self.name)
            rate = float(throttle.params["bytes_per_s"]) if throttle is not None else None
            return chronic if rate is None else rate if chronic is None else min(rate, chronic)

        rate = rate_now()
        if rate is None or request.method == "HEAD":
            return web.Response(status=entry.status, body=entry.body, headers=headers)
        resp = web.StreamResponse(status=entry.status, headers=headers)
        resp.content_length = len(entry.body)
        try:
            await resp.prepare(request)  # the viewer may have given up during a slow first byte
            i = 0
            while i < len(entry.body):
                if rate is None:
                    await resp.write(entry.body[i:])
                    break
                part = entry.body[i:i + max(512, int(rate / 20))]
                await resp.write(part)
                i += len(part)
                await asyncio.sleep(len(part) / rate)
                rate = rate_now()
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the viewer gave up on a throttled segment (its deadline): not the lab's error to log
        return resp
