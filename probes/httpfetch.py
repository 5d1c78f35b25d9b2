"""HTTP GET with per-phase timing, a body cap and one-path redirects.

The polling loop is signalpath's hot path (hundreds of playlists a second), so this
is a thin layer on one shared ``aiohttp`` connection pool with keep-alive: on this
machine aiohttp costs ~100-150 µs of client CPU per keep-alive request against
~600-2,000 µs for httpx (ENVIRONMENT.md "HTTP client cost"). httpx stays the client
for the cold paths (alerts, WHIP).

Phases follow blackbox_exporter's split: ``connect`` (TCP + TLS, 0 on a reused
connection), ``first_byte`` (request sent → response headers), ``transfer`` (headers →
last body byte). Redirects are followed by hand, at most ``max_redirects`` times,
so a loop is a ``redirect_loop`` failure, not an exception. Bodies larger than the
cap stop the read: ``body_too_large``. No retries: one attempt, one path.

Errors are data: every lower-layer exception maps to a ``probes.base.Failure``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import aiohttp
import yarl

from probes.base import Failure
from probes.redact import redact_url

_CHUNK = 64 * 1024
KEEP_HEADERS = ("age", "x-cache", "cache-control", "content-type", "content-length", "last-modified", "etag")


@dataclass(slots=True)
class FetchResult:
    url: str
    status: int = 0
    body: bytes = b""
    size: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    connect_s: float = 0.0
    first_byte_s: float = 0.0
    transfer_s: float = 0.0
    total_s: float = 0.0
    start_wall: float = 0.0
    end_wall: float = 0.0
    redirects: int = 0
    failure: Failure | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


async def _on_conn_start(session: Any, ctx: Any, params: Any) -> None:
    ctx.trace_request_ctx["c0"] = time.perf_counter()


async def _on_conn_end(session: Any, ctx: Any, params: Any) -> None:
    rc = ctx.trace_request_ctx
    rc["connect"] = rc.get("connect", 0.0) + time.perf_counter() - rc.get("c0", time.perf_counter())


class Fetcher:
    """One shared keep-alive pool with a bound on requests in flight per host.

    Use as ``async with Fetcher(...) as f: await f.get(url, max_bytes=...)``.
    """

    def __init__(self, *, max_per_host: int = 8, user_agent: str = "signalpath/0.1") -> None:
        self._max_per_host = max_per_host
        self._ua = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}

    async def __aenter__(self) -> "Fetcher":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_start.append(_on_conn_start)
        trace.on_connection_create_end.append(_on_conn_end)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._max_per_host, ttl_dns_cache=60,
                                         enable_cleanup_closed=False)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=None),
            headers={"User-Agent": self._ua},
            trace_configs=[trace],
            auto_decompress=True,
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),  # a monitor keeps no cookies; saves a jar walk per request
        )

    def _url(self, url: str) -> yarl.URL:
        """Parsed URLs, cached: the same few hundred playlist URLs are fetched every second."""
        u = self._urls.get(url)
        if u is None:
            if len(self._urls) > 10_000:  # bounded: segment URLs pass through once each
                self._urls.clear()
            u = self._urls[url] = yarl.URL(url)
        return u

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, max_bytes: int, max_redirects: int = 5, keep_body: bool = True,
                  verify_tls: bool = True, first_byte_timeout: float | None = None) -> FetchResult:
        """Fetch ``url``; never raises for network or HTTP trouble (see ``FetchResult.failure``)."""
        assert self._session is not None, "Fetcher.start() first"
        res = FetchResult(url=url, start_wall=time.time())
        t0 = time.perf_counter()
        current = url
        ssl_arg: Any = None if verify_tls else False
        try:
            for hop in range(max_redirects + 1):
                rc: dict[str, float] = {}
                h0 = time.perf_counter()
                request = self._session.get(self._url(current), allow_redirects=False, ssl=ssl_arg,
                                            trace_request_ctx=rc)
                if first_byte_timeout is not None:
                    async with asyncio.timeout(first_byte_timeout):
                        resp = await request
                else:
                    resp = await request
                try:
                    h1 = time.perf_counter()
                    res.connect_s += rc.get("connect", 0.0)
                    res.first_byte_s += max(0.0, h1 - h0 - rc.get("connect", 0.0))
                    if resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                        if hop == max_redirects:
                            res.status = resp.status
                            res.redirects = hop
                            res.failure = Failure.REDIRECT_LOOP
                            res.detail = f"more than {max_redirects} redirects"
                            return res
                        current = urljoin(current, resp.headers["location"])
                        res.redirects = hop + 1
                        continue
                    res.status = resp.status
                    hdrs = resp.headers
                    res.headers = {k: hdrs[k] for k in KEEP_HEADERS if k in hdrs}
                    clen = resp.content_length
                    if clen is not None and clen > max_bytes:
                        res.failure = Failure.BODY_TOO_LARGE
                        res.detail = f"Content-Length {clen} bytes is over the {max_bytes}-byte cap"
                        return res
                    if resp.status >= 400:
                        res.failure = Failure.HTTP_ERROR
                        res.detail = f"HTTP {resp.status}"
                        return res
                    await self._read_body(resp, res, max_bytes, keep_body)
                    res.transfer_s = time.perf_counter() - h1
                    return res
                finally:
                    resp.release()
            return res  # pragma: no cover - loop always returns
        except TimeoutError:
            res.failure = Failure.TIMEOUT
            res.detail = "no response headers in time"
        except aiohttp.ClientConnectorCertificateError as exc:
            res.failure, res.detail = Failure.TLS_ERROR, f"TLS certificate: {exc.certificate_error}"
        except aiohttp.ClientConnectorSSLError as exc:
            res.failure, res.detail = Failure.TLS_ERROR, f"TLS: {exc.__class__.__name__}"
        except aiohttp.ClientSSLError as exc:
            res.failure, res.detail = Failure.TLS_ERROR, f"TLS: {exc.__class__.__name__}"
        except aiohttp.ClientConnectorDNSError:
            res.failure, res.detail = Failure.DNS_ERROR, "host name does not resolve"
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                res.failure, res.detail = Failure.CONNECTION_REFUSED, "connection refused"
            else:
                res.failure = Failure.CONNECTION_FAILED
                res.detail = f"cannot connect: {exc.os_error.strerror or exc.os_error.__class__.__name__}"
        except aiohttp.InvalidURL:
            res.failure, res.detail = Failure.PROTOCOL_ERROR, "invalid URL"
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                ConnectionResetError) as exc:
            res.failure, res.detail = Failure.READ_FAILED, f"connection dropped: {exc.__class__.__name__}"
        except aiohttp.ClientResponseError as exc:
            res.failure, res.detail = Failure.PROTOCOL_ERROR, f"bad HTTP response: {exc.message[:80]}"
        except aiohttp.ClientError as exc:
            res.failure, res.detail = Failure.CONNECTION_FAILED, f"{exc.__class__.__name__}"
        finally:
            res.total_s = time.perf_counter() - t0
            res.end_wall = time.time()
            if res.detail and "://" in res.detail:  # never let a URL with a secret through
                res.detail = redact_url(res.detail)
        return res

    @staticmethod
    async def _read_body(resp: aiohttp.ClientResponse, res: FetchResult, max_bytes: int, keep_body: bool) -> None:
        if keep_body:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    res.failure = Failure.BODY_TOO_LARGE
                    res.detail = f"body over the {max_bytes}-byte cap"
                    res.size = size
                    return
                chunks.append(chunk)
            res.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            res.size = size
        else:
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    res.failure = Failure.BODY_TOO_LARGE
                    res.detail = f"body over the {max_bytes}-byte cap"
                    break
            res.size = size
