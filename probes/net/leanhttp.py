"""A lean HTTP/1.1 GET client for the polling hot path: asyncio protocol + httptools.

Why not a general client: the agent polls hundreds of playlists a second and each poll
is one small GET on a kept-alive connection. aiohttp spends ~100-150 µs of CPU per such
request on this machine and httpx ~600-2,000 µs (ENVIRONMENT.md "HTTP client cost");
this client does only what a poll needs — write one request, parse the response with
the C parser from ``httptools`` (the one uvicorn uses), hand the connection back —
and measures its phases precisely as a side effect:

- ``connect``: TCP (+TLS) set-up, 0 on a reused connection;
- ``first_byte``: request written → first response byte;
- ``transfer``: first byte → last body byte.

Scope, on purpose: GET only, HTTP/1.1, identity encoding (we send no
Accept-Encoding), Content-Length or chunked bodies, ``http``/``https``. Redirects are
the caller's (probes/net/httpfetch.py counts them). A pooled connection the server closed
while idle is retried once on a fresh one, but only when not one byte of the response
arrived (the usual idempotent-request rule); nothing else is retried.

Errors raise :class:`LeanHttpError` subclasses that carry a ``probes.base.Failure``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

from probes.base import Failure

_CRLF = b"\r\n"


class LeanHttpError(Exception):
    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class BodyTooLarge(LeanHttpError):
    pass


@dataclass(slots=True)
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    size: int = 0
    connect_s: float = 0.0
    first_byte_s: float = 0.0
    transfer_s: float = 0.0
    keep_alive: bool = True


class _Conn(asyncio.Protocol):
    """One connection; one request at a time."""

    # per request, set by start()
    parser: Any  # httptools.HttpResponseParser: the C parser ships no type information
    clen: int | None  # Content-Length, None when absent or unreadable

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.done: asyncio.Future[None] | None = None
        self.got_bytes = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionResetError("connection closed by the server"))

    def eof_received(self) -> bool | None:
        self.closed = True
        if self.done is not None and not self.done.done():
            if self.headers_done and self.clen is None and not self.chunked:
                # a close-delimited body (no Content-Length, not chunked): EOF ends it
                self.resp.keep_alive = False
                self.done.set_result(None)
            else:
                self.done.set_exception(ConnectionResetError("connection closed before the response ended"))
        return None

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            self.closed = True  # unsolicited bytes: this connection is unusable
            return
        if not self.got_bytes:
            self.got_bytes = True
            self.t_first = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.done.set_exception(LeanHttpError(Failure.PROTOCOL_ERROR, "unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            if not self.done.done():
                self.done.set_exception(LeanHttpError(Failure.PROTOCOL_ERROR, f"bad HTTP response ({exc})"[:120]))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-length":
            try:
                self.clen = int(value)
            except ValueError:
                self.clen = None
        elif n == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        if n in self.header_names:
            self.resp.headers[n.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.resp.status = self.parser.get_status_code()
        self.headers_done = True
        if self.clen is not None and self.clen > self.max_bytes:
            self._fail(BodyTooLarge(Failure.BODY_TOO_LARGE,
                                    f"Content-Length {self.clen} bytes is over the {self.max_bytes}-byte cap"))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_bytes:
            self._fail(BodyTooLarge(Failure.BODY_TOO_LARGE, f"body over the {self.max_bytes}-byte cap"))
        elif self.keep_body:
            self.chunks.append(body)

    def _fail(self, exc: LeanHttpError) -> None:
        """Callbacks must not raise (httptools would wrap it): fail the request, drop the connection."""
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.resp.keep_alive = self.parser.should_keep_alive()
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    def start(self, request: bytes, max_bytes: int, keep_body: bool, header_names: frozenset[bytes]) -> None:
        self.resp = Response()
        self.chunks: list[bytes] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.keep_body = keep_body
        self.header_names = header_names
        self.got_bytes = False
        self.t_first = 0.0
        self.clen = None
        self.chunked = False
        self.headers_done = False
        self.done = self.loop.create_future()
        self.parser = httptools.HttpResponseParser(self)
        assert self.transport is not None
        self.transport.write(request)


class LeanClient:
    """Keep-alive pools per (scheme, host, port), at most ``max_per_host`` requests in flight each."""

    def __init__(self, *, max_per_host: int = 8, user_agent: str = "signalpath/0.1",
                 keep_headers: tuple[str, ...] = (), max_idle_per_host: int = 16) -> None:
        self.max_per_host = max_per_host
        self.user_agent = user_agent
        self.header_names = frozenset(h.lower().encode() for h in keep_headers)
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, str, int], deque[_Conn]] = {}
        self._sems: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        self._ssl = ssl.create_default_context()
        self._ssl_noverify: ssl.SSLContext | None = None
        self._parsed: dict[str, tuple[tuple[str, str, int], bytes]] = {}

    def _target(self, url: str) -> tuple[tuple[str, str, int], bytes]:
        hit = self._parsed.get(url)
        if hit is not None:
            return hit
        p = urlsplit(url)
        scheme = p.scheme.lower()
        if scheme not in ("http", "https") or not p.hostname:
            raise LeanHttpError(Failure.PROTOCOL_ERROR, "not an http(s) URL")
        port = p.port or (443 if scheme == "https" else 80)
        host_hdr = p.hostname if p.port is None else f"{p.hostname}:{p.port}"
        if ":" in p.hostname:
            host_hdr = f"[{p.hostname}]" + (f":{p.port}" if p.port else "")
        path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        req = (f"GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\nUser-Agent: {self.user_agent}\r\n"
               "Accept: */*\r\n\r\n").encode("latin-1", "replace")
        hit = ((scheme, p.hostname, port), req)
        if len(self._parsed) > 10_000:
            self._parsed.clear()
        self._parsed[url] = hit
        return hit

    async def _connect(self, key: tuple[str, str, int], verify_tls: bool) -> _Conn:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        ctx = None
        if scheme == "https":
            if verify_tls:
                ctx = self._ssl
            else:
                if self._ssl_noverify is None:
                    self._ssl_noverify = ssl.create_default_context()
                    self._ssl_noverify.check_hostname = False
                    self._ssl_noverify.verify_mode = ssl.CERT_NONE
                ctx = self._ssl_noverify
        try:
            _t, proto = await loop.create_connection(lambda: _Conn(loop), host, port, ssl=ctx,
                                                     server_hostname=host if ctx else None)
        except ConnectionRefusedError:
            raise LeanHttpError(Failure.CONNECTION_REFUSED, "connection refused") from None
        except socket.gaierror:
            raise LeanHttpError(Failure.DNS_ERROR, "host name does not resolve") from None
        except ssl.SSLCertVerificationError as exc:
            raise LeanHttpError(Failure.TLS_ERROR, f"TLS certificate: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise LeanHttpError(Failure.TLS_ERROR, f"TLS: {exc.reason or exc.__class__.__name__}") from None
        except OSError as exc:
            raise LeanHttpError(Failure.CONNECTION_FAILED,
                                f"cannot connect: {exc.strerror or exc.__class__.__name__}") from None
        sock = _t.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return proto

    async def get(self, url: str, *, max_bytes: int, keep_body: bool = True, verify_tls: bool = True) -> Response:
        key, request = self._target(url)
        sem = self._sems.get(key)
        if sem is None:
            sem = self._sems[key] = asyncio.Semaphore(self.max_per_host)
        async with sem:
            for attempt in (0, 1):
                idle = self._idle.get(key)
                conn = None
                while idle:
                    c = idle.pop()
                    if not c.closed:
                        conn = c
                        break
                connect_s = 0.0
                reused = conn is not None
                if conn is None:
                    c0 = time.perf_counter()
                    conn = await self._connect(key, verify_tls)
                    connect_s = time.perf_counter() - c0
                t0 = time.perf_counter()
                conn.start(request, max_bytes, keep_body, self.header_names)
                try:
                    await conn.done  # type: ignore[misc]
                except ConnectionResetError as exc:
                    self._discard(conn)
                    if reused and attempt == 0 and not conn.got_bytes:
                        continue  # the server closed an idle connection: one fresh try
                    raise LeanHttpError(Failure.READ_FAILED, f"connection dropped: {exc}") from None
                except BaseException:
                    self._discard(conn)
                    raise
                t2 = time.perf_counter()
                resp = conn.resp
                resp.connect_s = connect_s
                resp.first_byte_s = (conn.t_first or t2) - t0
                resp.transfer_s = t2 - (conn.t_first or t2)
                resp.size = conn.size
                if keep_body:
                    resp.body = conn.chunks[0] if len(conn.chunks) == 1 else b"".join(conn.chunks)
                if resp.keep_alive and not conn.closed:
                    pool = self._idle.setdefault(key, deque())
                    if len(pool) < self.max_idle:
                        pool.append(conn)
                    else:
                        self._discard(conn)
                else:
                    self._discard(conn)
                return resp
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _discard(conn: _Conn) -> None:
        conn.closed = True
        if conn.transport is not None:
            conn.transport.close()

    async def close(self) -> None:
        for pool in self._idle.values():
            for c in pool:
                self._discard(c)
        self._idle.clear()
        await asyncio.sleep(0)  # let transports close
