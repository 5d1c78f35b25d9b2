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

Scope, on purpose: GET only, HTTP/1.1, Content-Length, chunked or close-delimited
bodies, ``http``/``https``. Redirects are the caller's (probes/net/httpfetch.py counts
them). A pooled connection the server closed while idle is retried once on a fresh one,
but only when not one byte of the response arrived (the usual idempotent-request rule);
nothing else is retried.

Content-Encoding, as players meet it: every request says ``Accept-Encoding: gzip,
deflate``, as players' HTTP stacks do (browsers also offer ``br`` and ``zstd``: left out
because no decoder for them is among our dependencies), and a 2xx body in
``gzip``/``x-gzip``/``deflate`` (zlib, or raw deflate as some servers send it) is decoded
as it arrives with ``zlib.decompressobj``, in steps of at most 64 KiB. The ``max_bytes``
cap holds for the bytes on the wire AND for the decoded bytes, so a gzip bomb stops at
the cap (``body_too_large``). ``Response.size`` stays the bytes on the wire and the
phases are timed on the wire (last body byte = the last ``data_received``);
``Response.decoded_size`` is what the body came to. Any other coding on a 2xx is a
``protocol_error``; error and redirect bodies are not decoded (nobody reads them).

Byte ranges (RFC 9110 §14): ``byte_range=(length, offset)`` — EXT-X-BYTERANGE order —
sends ``Range: bytes=offset-(offset+length-1)`` with ``Accept-Encoding: identity`` (a
range of a gzip representation would not be the media bytes). A 206 must carry exactly
that ``Content-Range`` and length; a 200 (the server ignored Range) is read only up to
the end of the slice (the connection is then dropped), the slice alone kept and counted
in ``decoded_size`` (``size``: all that was read), with ``Response.range_ignored``; a 200
whose body ends before the slice does is a ``protocol_error``; 416 is left to the caller
(an HTTP error).

Bounded reads, whatever the server sends (blackbox_exporter's habit: a limit on everything
read). httptools buffers an unfinished status line, header field or trailer in Python until it
ends, so a server sending ``HTTP/1.1 200 OK\r\nX-Endless: `` and then bytes for ever would grow
the agent without bound; this client stops reading instead:

- the status line and header section may hold at most ``MAX_HEADER_BYTES`` (64 KiB, four
  times nginx's ``large_client_header_buffers`` 4 x 8k and Node's 16-KiB
  ``--max-http-header-size``) and ``MAX_HEADER_FIELDS`` (100, Apache httpd's
  ``LimitRequestFields``) fields: past either, ``protocol_error``;
- the whole response head must arrive within ``headers_timeout_s`` of the request
  (``HEADERS_TIMEOUT_S``, 10 s, by default; a slowloris server sending one byte a second never
  gets there): ``timeout``. The timer is armed only when a first read leaves the head
  incomplete (a poll's head comes in one read, and a timer per request costs ~10 % of the
  client's CPU); a server that sends nothing at all holds no memory and is bounded by the
  caller's deadline (every probe has one);
- after the head, the body by the cap (``max_bytes``: ``body_too_large``), and what is not body
  (chunk framing, trailers) to ``MAX_HEADER_BYTES`` plus 8 bytes per body byte (a chunk of one
  byte takes 6 of framing): a trailer that never ends is a ``protocol_error``.

Memory per connection is thus at most the cap plus one read (asyncio reads at most 256 KiB at a
time), and the connection is dropped as soon as a limit is passed.

Errors raise :class:`LeanHttpError` subclasses that carry a ``probes.base.Failure``.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools

from probes.base import ATTEMPT_SLOT_WAIT, HOST_NOT_RESOLVED, Failure

_CRLF = b"\r\n"
_ACCEPT_ENCODING = b"Accept-Encoding: gzip, deflate\r\n\r\n"
_ACCEPT_IDENTITY = b"Accept-Encoding: identity\r\n"
_SPECIAL = frozenset({b"content-length", b"transfer-encoding", b"content-encoding", b"content-range"})
_DECODE_STEP = 1 << 16  # decoded bytes per zlib call: bounds memory when the body is not kept
_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}

MAX_HEADER_BYTES = 64 * 1024
"""Most bytes of a response's status line and header section (module docstring)."""
MAX_HEADER_FIELDS = 100
"""Most header fields of one response (module docstring)."""
HEADERS_TIMEOUT_S = 10.0
"""Default bound on request written -> response head complete (module docstring)."""


class LeanHttpError(Exception):
    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class BodyTooLarge(LeanHttpError):
    pass


class TooSlow(LeanHttpError):
    """The body arrives too slowly to end within the caller's ``finish_within_s``: its rate so far
    projects ``projected_s`` (from the request) for the whole Content-Length."""

    def __init__(self, detail: str, projected_s: float) -> None:
        super().__init__(Failure.TIMEOUT, detail)
        self.projected_s = projected_s


class AnswerTimeout(LeanHttpError):
    """No complete answer within the caller's ``answer_within_s`` of the request (the wait for a
    connection slot, the agent's own queue, not counted)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(Failure.TIMEOUT, f"no complete answer within {seconds:.2f} s of the request")
        self.seconds = seconds


HOST_TROUBLE_S = 10.0
"""A wait for one of a host's connection slots is the agent's own queue only when no request at
that host ended in trouble (a timeout, a cut connection) during the wait or this long before it."""

PROJECT_AFTER_S = 0.25
"""``finish_within_s``: a body's rate is judged after it has been arriving this long (and for at
least :data:`PROJECT_AFTER_SHARE` of the allowance): a shorter sample is one burst."""
PROJECT_AFTER_SHARE = 0.15
PROJECT_STEP_S = 0.05
"""``finish_within_s``: the body's progress is sampled (and judged) at most this often."""
PROJECT_RISING = 1.3
"""``finish_within_s``: a second-half rate above this many times the first half's is still rising
(TCP slow start): no projection from it."""
PROJECT_MARGIN = 1.25
"""``finish_within_s``: a download is given up early only when its projection passes the allowance
by this factor (a rate that varies, a server that speeds up, cannot turn that into an answer in time)."""


@dataclass(slots=True)
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    size: int = 0  # body bytes read from the wire
    decoded_size: int = 0  # body bytes delivered: decoded, or the slice of an ignored Range (= size else)
    range_ignored: bool = False  # a Range request answered 200: ``body`` is the slice cut from it
    connect_s: float = 0.0
    first_byte_s: float = 0.0
    transfer_s: float = 0.0
    keep_alive: bool = True


class _Conn(asyncio.Protocol):
    """One connection; one request at a time."""

    # per request, set by start()
    parser: Any  # httptools.HttpResponseParser: the C parser ships no type information
    clen: int | None  # Content-Length, None when absent or unreadable
    dec: Any  # zlib.Decompress (no public type) while a coded body is decoded, else None
    inflate_seen: list[bytes] | None  # "deflate" bytes kept until they prove zlib-wrapped (else raw)
    rng: tuple[int, int] | None  # (length, offset) of a Range request
    cut: tuple[int, int] | None  # [start, end) of the slice to cut from a 200 that ignored Range
    head_timer: asyncio.TimerHandle | None  # fails the request if the response head is late

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.head_timer = None
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
                self._finish()
            else:
                self.done.set_exception(ConnectionResetError("connection closed before the response ended"))
        return None

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            self.closed = True  # unsolicited bytes: this connection is unusable
            return
        self.t_last = now = time.perf_counter()  # the phases are timed on the wire
        if not self.got_bytes:
            self.got_bytes = True
            self.t_first = now
        self.wire += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.done.set_exception(LeanHttpError(Failure.PROTOCOL_ERROR, "unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            if not self.done.done():
                self.done.set_exception(LeanHttpError(Failure.PROTOCOL_ERROR, f"bad HTTP response ({exc})"[:120]))
            return
        if self.done.done():
            return
        # what httptools may be holding: at most one read past each limit
        if not self.headers_done:
            if self.wire > MAX_HEADER_BYTES:
                self._fail(LeanHttpError(Failure.PROTOCOL_ERROR, f"response headers over {MAX_HEADER_BYTES} bytes "
                                         f"({self.fields} fields)"))
            elif self.head_timer is None:  # counted from the request: the time to this first read is spent
                left = self.head_timeout_s - (now - self.t_sent)
                self.head_timer = self.loop.call_later(max(0.0, left), self._head_timeout, self.head_timeout_s)
        elif self.wire - self.head_wire - self.size > MAX_HEADER_BYTES + 8 * self.size:
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR, f"{self.wire - self.head_wire - self.size} bytes of "
                                     f"chunk framing or trailers for a {self.size}-byte body"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields += 1
        if self.fields > MAX_HEADER_FIELDS:
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR, f"more than {MAX_HEADER_FIELDS} header fields"))
            return
        n = name.lower()
        if n in _SPECIAL:
            if n == b"content-length":
                try:
                    self.clen = int(value)
                except ValueError:
                    self.clen = None
            elif n == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif n == b"content-encoding":
                self.coding = value.decode("latin-1").strip().lower()
            else:
                self.crange = value.decode("latin-1").strip()
        if n in self.header_names:
            self.resp.headers[n.decode("latin-1")] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.resp.status = self.parser.get_status_code()
        self.headers_done = True
        self.head_wire = self.wire  # bytes read up to the end of the head (and maybe some body)
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        if 200 <= status < 300:  # only a body someone reads is decoded or cut
            if self.rng is not None and not self._range_headers(status):
                return
            if self.coding and self.coding != "identity" and not self._start_decoding():
                return
        wire = self.clen
        if wire is not None and self.cut is not None:
            wire = min(wire, self.cut[1])  # a Range the server ignored: read up to the slice's end only
        if wire is not None and wire > self.max_bytes:
            self._fail(BodyTooLarge(Failure.BODY_TOO_LARGE,
                                    f"Content-Length {self.clen} bytes is over the {self.max_bytes}-byte cap"
                                    + self._ignored_note()))

    def _range_headers(self, status: int) -> bool:
        """Check a 2xx answer to a Range request; False when it failed the request."""
        assert self.rng is not None
        length, offset = self.rng
        last = offset + length - 1
        if status == 206:
            got = _content_range(self.crange)
            if got is None or got[:2] != (offset, last):
                self._fail(LeanHttpError(Failure.PROTOCOL_ERROR,
                                         f"206 with Content-Range {self.crange or 'missing'!r} for bytes "
                                         f"{offset}-{last}"[:160]))
                return False
            if self.clen is not None and self.clen != length:
                self._fail(LeanHttpError(Failure.PROTOCOL_ERROR,
                                         f"206 with Content-Length {self.clen} for a {length}-byte range"))
                return False
        elif status == 200:
            self.resp.range_ignored = True
            self.cut = (offset, offset + length)
            if self.clen is not None and self.clen < offset + length:
                self._fail(LeanHttpError(Failure.PROTOCOL_ERROR,
                                         f"the server ignored Range and its {self.clen}-byte body ends "
                                         f"before byte {last}"))
                return False
        if self.coding and self.coding != "identity":
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR,
                                     f"Content-Encoding {self.coding!r} on a byte range"[:120]))
            return False
        return True

    def _start_decoding(self) -> bool:
        kind = _CODINGS.get(self.coding)
        if kind is None:
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR, f"unsupported Content-Encoding {self.coding!r}"[:120]))
            return False
        self.plain = False
        if kind == "gzip":
            self.dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:  # RFC 9110 §8.4.1.2: zlib-wrapped; some servers send raw deflate (tried on a header error)
            self.dec = zlib.decompressobj(zlib.MAX_WBITS)
            self.inflate_seen = []
        return True

    def _ignored_note(self) -> str:
        if self.cut is None:
            return ""
        return f" (the server ignored Range: the slice ends at byte {self.cut[1] - 1})"

    def on_body(self, body: bytes) -> None:
        if self.plain:  # the hot path: identity, no Range
            self.size += len(body)
            if self.size > self.max_bytes:
                self._fail(BodyTooLarge(Failure.BODY_TOO_LARGE, f"body over the {self.max_bytes}-byte cap"))
            elif self.keep_body:
                self.chunks.append(body)
            if self.finish_within is not None:
                self._project()
            return
        done = self.done
        if done is None or done.done():
            return
        pos = self.size
        self.size += len(body)
        if self.size > self.max_bytes:
            self._fail(BodyTooLarge(Failure.BODY_TOO_LARGE,
                                    f"body over the {self.max_bytes}-byte cap" + self._ignored_note()))
        elif self.cut is not None:
            start, end = self.cut
            piece = body[max(0, start - pos):max(0, end - pos)]
            self.decoded += len(piece)
            if piece and self.keep_body:
                self.chunks.append(piece)
            if self.size >= end:  # the slice is in: the rest of the whole body is not read
                self.resp.keep_alive = False
                self.closed = True
                done.set_result(None)
                if self.transport is not None:
                    self.transport.close()
        elif self.dec is not None:
            self._decode(body)
        else:  # identity on a Range request: a 206, or an error or redirect page
            self.decoded += len(body)
            if self.keep_body:
                self.chunks.append(body)

    def _decode(self, data: bytes) -> None:
        """Inflate ``data`` in steps of at most ``_DECODE_STEP`` bytes, the cap checked at each step."""
        while not self.dec.eof:  # bytes after the end marker are ignored, as browsers do
            if self.inflate_seen is not None:
                self.inflate_seen.append(data)
            try:
                out = self.dec.decompress(data, _DECODE_STEP)
            except zlib.error as exc:
                if self.inflate_seen is not None:  # "deflate" without the zlib wrapper: start again raw
                    data = b"".join(self.inflate_seen)
                    self.inflate_seen = None
                    self.dec = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                self._fail(LeanHttpError(Failure.PROTOCOL_ERROR, f"cannot decode the {self.coding} body ({exc})"[:120]))
                return
            if out:
                self.inflate_seen = None
                self.decoded += len(out)
                if self.decoded > self.max_bytes:
                    self._fail(BodyTooLarge(Failure.BODY_TOO_LARGE,
                                            f"decoded body over the {self.max_bytes}-byte cap ({self.coding}, "
                                            f"{self.size} bytes on the wire so far)"))
                    return
                if self.keep_body:
                    self.chunks.append(out)
            data = self.dec.unconsumed_tail
            if not data and len(out) < _DECODE_STEP:
                return  # all the input is in and zlib holds no more output

    def _project(self) -> None:
        """``finish_within_s``: give up as soon as the body's steady rate cannot deliver its
        Content-Length in time. The rate is the second half's of what arrived so far, and only a
        rate that is not rising counts: a connection in TCP slow start (a new one, or one idle for
        a segment duration) doubles its rate every round trip, and a projection from its first
        reads would call a download slow that ends in time. Checked at most every
        :data:`PROJECT_STEP_S`."""
        if self.clen is None or self.size >= self.clen or self.finish_within is None:
            return
        now = self.t_last
        if self.samples and now - self.samples[-1][0] < PROJECT_STEP_S:
            return
        self.samples.append((now, self.size))
        body_s = now - self.t_first
        if body_s < max(PROJECT_AFTER_S, PROJECT_AFTER_SHARE * self.finish_within) or len(self.samples) < 3:
            return
        t0, s0 = self.samples[0]
        half = t0 + (now - t0) / 2
        tm, sm = min(self.samples, key=lambda x: abs(x[0] - half))
        if not (t0 < tm < now) or sm <= s0:
            return
        early, late = (sm - s0) / (tm - t0), (self.size - sm) / (now - tm)
        if late <= 0 or late > PROJECT_RISING * early:
            return  # still speeding up (slow start), or nothing new: no verdict yet
        projected = (now - self.t_sent) + (self.clen - self.size) / late
        if projected > PROJECT_MARGIN * self.finish_within:
            self._fail(TooSlow(f"{self.size} of {self.clen} bytes in {now - self.t_sent:.2f} s: at "
                               f"{late / 1e3:.0f} kB/s the body would take {projected:.1f} s", projected))

    def _head_timeout(self, seconds: float) -> None:
        self.head_timer = None
        if not self.headers_done:
            self._fail(LeanHttpError(Failure.TIMEOUT, f"response headers not complete within {seconds:.1f} s "
                                     f"({self.wire} bytes received)"))

    def _fail(self, exc: LeanHttpError) -> None:
        """Callbacks must not raise (httptools would wrap it): fail the request, drop the connection."""
        self.closed = True
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.resp.keep_alive = self.parser.should_keep_alive()
        if self.plain:
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
        else:
            self._finish()

    def _finish(self) -> None:
        """The body has ended: check what only its end can show, then complete the request."""
        if self.done is None or self.done.done():
            return
        if self.dec is not None and not self.dec.eof and self.size:
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR, f"the {self.coding} body is truncated"))
        elif self.cut is not None:
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR,
                                     f"the server ignored Range and its {self.size}-byte body ends before "
                                     f"byte {self.cut[1] - 1}"))
        elif self.rng is not None and self.resp.status == 206 and self.size != self.rng[0]:
            self._fail(LeanHttpError(Failure.PROTOCOL_ERROR,
                                     f"206 with a {self.size}-byte body for a {self.rng[0]}-byte range"))
        else:
            self.done.set_result(None)

    def start(self, request: bytes, max_bytes: int, keep_body: bool, header_names: frozenset[bytes],
              rng: tuple[int, int] | None = None, headers_timeout_s: float = HEADERS_TIMEOUT_S,
              finish_within_s: float | None = None) -> None:
        self.resp = Response()
        self.finish_within = finish_within_s
        self.samples: deque[tuple[float, int]] = deque(maxlen=64)  # finish_within_s: (time, bytes) of the body
        self.wire = self.fields = 0
        self.head_wire = 0
        self.head_timeout_s = headers_timeout_s
        self.head_timer = None  # armed only if the first read leaves the head incomplete (the hot path never)
        self.chunks: list[bytes] = []
        self.size = 0
        self.decoded = 0
        self.max_bytes = max_bytes
        self.keep_body = keep_body
        self.header_names = header_names
        self.got_bytes = False
        self.t_first = self.t_last = 0.0
        self.clen = None
        self.chunked = False
        self.headers_done = False
        self.coding = self.crange = ""
        self.rng, self.cut, self.dec, self.inflate_seen = rng, None, None, None
        self.plain = rng is None
        self.done = self.loop.create_future()
        self.parser = httptools.HttpResponseParser(self)
        assert self.transport is not None
        self.t_sent = time.perf_counter()
        self.transport.write(request)


def _close_if_connected(task: asyncio.Future[_Conn]) -> None:
    """A connection that completed after its request was cancelled: close it."""
    if not task.cancelled() and task.exception() is None:
        LeanClient._discard(task.result())


def _content_range(value: str) -> tuple[int, int, int | None] | None:
    """``bytes first-last/complete`` (RFC 9110 §14.4) → (first, last, complete or None); None if not one."""
    unit, _, rest = value.partition(" ")
    span, _, complete = rest.strip().partition("/")
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not (first.isdigit() and last.isdigit()) or not (
            complete == "*" or complete.isdigit()):
        return None
    return int(first), int(last), None if complete == "*" else int(complete)


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
        self._trouble: dict[tuple[str, str, int], float] = {}  # host -> when a request there last ended in trouble
        self._ssl = ssl.create_default_context()
        self._ssl_noverify: ssl.SSLContext | None = None
        self._parsed: dict[str, tuple[tuple[str, str, int], bytes, bytes]] = {}

    def _target(self, url: str) -> tuple[tuple[str, str, int], bytes, bytes]:
        """(pool key, the whole GET, the GET's head without Accept-Encoding and the final CRLF)."""
        hit = self._parsed.get(url)
        if hit is not None:
            return hit
        try:  # a URL from a playlist or a Location header: bad IPv6 brackets, a port out of range...
            p = urlsplit(url)
            explicit_port = p.port
        except ValueError as exc:
            raise LeanHttpError(Failure.PROTOCOL_ERROR, f"not a usable URL ({exc})"[:120]) from None
        scheme = p.scheme.lower()
        if scheme not in ("http", "https") or not p.hostname:
            raise LeanHttpError(Failure.PROTOCOL_ERROR, "not an http(s) URL")
        if any(c in url for c in "\r\n\x00 "):  # would split or corrupt the request line
            raise LeanHttpError(Failure.PROTOCOL_ERROR, "a URL with a space or control character")
        port = explicit_port or (443 if scheme == "https" else 80)
        host_hdr = p.hostname if p.port is None else f"{p.hostname}:{p.port}"
        if ":" in p.hostname:
            host_hdr = f"[{p.hostname}]" + (f":{p.port}" if p.port else "")
        path = (p.path or "/") + (f"?{p.query}" if p.query else "")
        head = (f"GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\nUser-Agent: {self.user_agent}\r\n"
                "Accept: */*\r\n").encode("latin-1", "replace")
        hit = ((scheme, p.hostname, port), head + _ACCEPT_ENCODING, head)
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
            raise LeanHttpError(Failure.DNS_ERROR, HOST_NOT_RESOLVED) from None
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

    async def get(self, url: str, *, max_bytes: int, keep_body: bool = True, verify_tls: bool = True,
                  byte_range: tuple[int, int] | None = None,
                  headers_timeout_s: float = HEADERS_TIMEOUT_S, finish_within_s: float | None = None,
                  answer_within_s: float | None = None) -> Response:
        """One GET; ``byte_range=(length, offset)`` asks for those bytes only, ``headers_timeout_s``
        bounds the wait for the response head (see the module docstring). ``finish_within_s``: a
        body (identity, with a Content-Length) whose rate since its first byte projects its end
        past :data:`PROJECT_MARGIN` x that many seconds from the request raises :class:`TooSlow`
        as soon as :data:`PROJECT_AFTER_S` of it shows so; the caller bounds the rest (its own
        timeout: a first byte that never comes, a body that stops). ``answer_within_s``: the whole
        answer must be in that long after a connection slot was had, else :class:`AnswerTimeout`:
        a budget of the server's, which the agent's own queue for a slot does not spend."""
        key, request, head = self._target(url)
        if byte_range is not None:
            length, offset = byte_range
            if length <= 0 or offset < 0:
                raise ValueError(f"byte_range {byte_range}: the length must be > 0 and the offset >= 0")
            request = head + _ACCEPT_IDENTITY + f"Range: bytes={offset}-{offset + length - 1}\r\n\r\n".encode()
        sem = self._sems.get(key)
        if sem is None:
            sem = self._sems[key] = asyncio.Semaphore(self.max_per_host)
        q0 = time.perf_counter()
        try:
            await sem.acquire()
        finally:
            # the wait for a slot is the agent's own queue: noted for the runner (also when the
            # attempt's deadline cut it short), outside every timing — unless a request holding
            # one of this host's slots ended in trouble (a timeout, a cut connection) meanwhile or
            # in the HOST_TROUBLE_S before: then the slots are held by the server's slowness (a
            # host that hangs holds them all), and the wait is evidence of it
            waited = time.perf_counter() - q0
            if waited > 0.001 and self._trouble.get(key, -math.inf) < q0 - HOST_TROUBLE_S:
                acc = ATTEMPT_SLOT_WAIT.get()
                if acc is not None:
                    acc.note(waited)
        try:
            if answer_within_s is None:  # the hot path: no timer of its own
                return await self._exchange(key, request, max_bytes, keep_body, verify_tls, byte_range,
                                            headers_timeout_s, finish_within_s)
            budget = asyncio.timeout(answer_within_s)
            try:
                async with budget:
                    return await self._exchange(key, request, max_bytes, keep_body, verify_tls, byte_range,
                                                headers_timeout_s, finish_within_s)
            except TimeoutError:
                if not budget.expired():
                    raise
                raise AnswerTimeout(answer_within_s) from None
        except BaseException:
            self._trouble[key] = time.perf_counter()  # the slot was held by a request that did not end well
            raise
        finally:
            sem.release()

    async def _exchange(self, key: tuple[str, str, int], request: bytes, max_bytes: int, keep_body: bool,
                        verify_tls: bool, byte_range: tuple[int, int] | None, headers_timeout_s: float,
                        finish_within_s: float | None) -> Response:
        """One request on a pooled (or a new) connection; the caller holds the host's slot."""
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
                # shielded: a deadline that lands as the connection completes must not leave its
                # transport open and unowned (it is closed when the connect ends)
                connecting = asyncio.ensure_future(self._connect(key, verify_tls))
                try:
                    conn = await asyncio.shield(connecting)
                except asyncio.CancelledError:
                    connecting.add_done_callback(_close_if_connected)
                    raise
                connect_s = time.perf_counter() - c0
            t0 = time.perf_counter()
            conn.start(request, max_bytes, keep_body, self.header_names, byte_range, headers_timeout_s,
                       finish_within_s)
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
            resp.transfer_s = (conn.t_last or t2) - (conn.t_first or t2)
            resp.size = conn.size
            resp.decoded_size = conn.size if conn.plain else conn.decoded
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
        if conn.head_timer is not None:
            conn.head_timer.cancel()
            conn.head_timer = None
        if conn.transport is not None:
            conn.transport.close()

    async def close(self) -> None:
        for pool in self._idle.values():
            for c in pool:
                self._discard(c)
        self._idle.clear()
        await asyncio.sleep(0)  # let transports close
