"""HTTP GET for probes: per-phase timing, a body cap, one-path redirects, failures as data.

Every HTTP probe (playlists, segments, ingest statistics, encoder status) goes through
one shared :class:`Fetcher`: keep-alive pools with a bound on requests in flight per
host, over :mod:`probes.net.leanhttp` — a small asyncio + httptools client, because the
polling loop is the agent's hot path (hundreds of playlists a second; see
tests/perf/poll_cost.py for its CPU per poll beside aiohttp's, httpx's and the Go
blackbox_exporter's). httpx stays the client for the cold paths (alerts, WHIP/WHEP).

Phases follow blackbox_exporter's split: ``connect`` (TCP + TLS, 0 on a reused
connection), ``first_byte`` (request written → first response byte), ``transfer``
(first byte → last body byte, on the wire). Bodies larger than the cap stop the read:
``body_too_large``. The response head is bounded too (leanhttp: 64 KiB, 100 fields, complete
within ``headers_timeout_s`` once begun), and a URL that cannot be requested (a redirect's Location with
bad IPv6 brackets or a port out of range) is a ``protocol_error``, never an exception. No retries beyond leanhttp's one retry of a keep-alive connection
the server had already closed.

The HTTP layer behaves as players do:

- Redirects are followed by hand, at most ``max_redirects`` times (a loop is a
  ``redirect_loop`` failure), and ``FetchResult.final_url`` is the URL that answered:
  relative URIs in a playlist resolve against it (RFC 3986 §5.1.3, "base URI from the
  retrieval URI" — the URI of the last redirect; Safari, shaka and video.js do so), so an
  entry that answers 302 to a cache node has its media playlists and segments asked of
  that node. It may carry the node's token: show it only through ``redact_url``, and
  never as a metric label (one node per label value would be unbounded).
- ``Accept-Encoding: gzip, deflate`` is sent and the body decoded (leanhttp): ``body``
  is the decoded body, ``size`` the bytes on the wire, ``decoded_size`` the decoded ones;
  the cap holds for both, so a gzip bomb ends ``body_too_large``.
- 429 and 503 stay ``http_error`` with their status; ``Retry-After`` (delay-seconds or
  an HTTP-date, RFC 9110 §10.2.3; a date is taken against the response's ``Date``, so a
  skewed local clock does not count) becomes ``retry_after_s`` and the detail reads
  "rate limited (HTTP 429), Retry-After 12 s".
- ``byte_range=(length, offset)`` (EXT-X-BYTERANGE order) asks for a slice: a 206 with
  the matching Content-Range is the answer; a 200 is accepted with ``range_ignored`` set
  and only the slice kept and counted (``size``, ``decoded_size``: the figures measure the
  segment, not the whole resource the server sent); 416 is an ``http_error``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from probes.base import Failure
from probes.core.redact import redact_url
from probes.net.leanhttp import HEADERS_TIMEOUT_S, AnswerTimeout, LeanClient, LeanHttpError, TooSlow

KEEP_HEADERS = ("age", "x-cache", "via", "cache-control", "content-type", "content-length", "last-modified", "etag",
                "location", "transfer-encoding", "content-encoding", "content-range", "retry-after", "date")
_REDIRECTS = (301, 302, 303, 307, 308)
_THROTTLED = {429: "rate limited", 503: "unavailable"}


@dataclass(slots=True)
class FetchResult:
    url: str
    status: int = 0
    body: bytes = b""
    size: int = 0  # body bytes on the wire (an ignored Range: the slice's bytes)
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
    final_url: str = ""  # the URL that answered, after redirects: the base for relative URIs (unredacted)
    decoded_size: int = 0  # body bytes after Content-Encoding decoding (= size when none)

    @property
    def document(self) -> tuple[str, bytes]:
        """(final URL, body): what a parsed playlist depends on. The same bytes from another node
        after a redirect resolve to other absolute URIs, so a cached parse is keyed on both."""
        return (self.final_url, self.body)
    retry_after_s: float | None = None  # a 429/503's Retry-After, in seconds from the response
    range_ignored: bool = False  # a byte_range answered 200: ``body`` is the slice cut from the whole
    projected_s: float | None = None  # finish_within_s: given up early, the whole body's projected time
    answer_timeout: bool = False  # answer_within_s passed (counted from the request, not the slot wait)

    def __post_init__(self) -> None:
        if not self.final_url:
            self.final_url = self.url

    @property
    def ok(self) -> bool:
        return self.failure is None


def retry_after_seconds(value: str | None, date: str | None = None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).

    A date counts from the response's ``Date`` when it has a readable one, else from
    ``now`` (the local clock); a date in the past is 0. Anything unreadable is None.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    base = _http_date(date) if date else None
    return max(0.0, when - (base if base is not None else (time.time() if now is None else now)))


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class Fetcher:
    """One shared keep-alive client. ``async with Fetcher(...) as f: await f.get(url, max_bytes=...)``."""

    def __init__(self, *, max_per_host: int = 8, user_agent: str = "signalpath/0.1") -> None:
        self._max_per_host = max_per_host
        self._ua = user_agent
        self._client: LeanClient | None = None

    async def __aenter__(self) -> Fetcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._client = LeanClient(max_per_host=self._max_per_host, user_agent=self._ua, keep_headers=KEEP_HEADERS)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def get(self, url: str, *, max_bytes: int, max_redirects: int = 5, keep_body: bool = True,
                  verify_tls: bool = True, byte_range: tuple[int, int] | None = None,
                  headers_timeout_s: float = HEADERS_TIMEOUT_S, finish_within_s: float | None = None,
                  answer_within_s: float | None = None) -> FetchResult:
        """Fetch ``url`` (``byte_range=(length, offset)``: that slice); never raises for network or
        HTTP trouble (see ``FetchResult.failure``), nor for a URL that cannot be requested
        (``protocol_error``). A response head that has begun must be complete within
        ``headers_timeout_s`` of the request, with at most leanhttp's ``MAX_HEADER_BYTES`` and
        ``MAX_HEADER_FIELDS``. ``finish_within_s``: a body arriving too slowly to end that long
        after its request is given up early (leanhttp's ``TooSlow``): ``timeout`` with
        ``projected_s`` set. ``answer_within_s``: no complete answer that long after the request was
        sent (a hop's; the wait for the agent's own connection slot not counted) is ``timeout``
        with ``answer_timeout`` set.

        Cancellation (the runner's deadline) propagates; the connection in use is dropped.
        """
        assert self._client is not None, "Fetcher.start() first"
        res = FetchResult(url=url, start_wall=time.time())
        t0 = time.perf_counter()
        current = url
        try:
            for hop in range(max_redirects + 1):
                resp = await self._client.get(current, max_bytes=max_bytes, keep_body=keep_body,
                                              verify_tls=verify_tls, byte_range=byte_range,
                                              headers_timeout_s=headers_timeout_s, finish_within_s=finish_within_s,
                                              answer_within_s=answer_within_s)
                res.connect_s += resp.connect_s
                res.first_byte_s += resp.first_byte_s
                res.transfer_s += resp.transfer_s
                res.status = resp.status
                if resp.status in _REDIRECTS and "location" in resp.headers:
                    if hop == max_redirects:
                        res.redirects = hop
                        res.failure, res.detail = Failure.REDIRECT_LOOP, f"more than {max_redirects} redirects"
                        return res
                    try:  # a Location with bad IPv6 brackets or an out-of-range port is the server's error
                        current = urljoin(current, resp.headers["location"])
                        if "#" in url and "#" not in current:  # RFC 9110 §10.2.2: the fragment carries over
                            current += url[url.index("#"):]
                        urlsplit(current).port  # noqa: B018 - raises ValueError when out of range
                    except ValueError as exc:
                        res.failure, res.detail = Failure.PROTOCOL_ERROR, f"unusable redirect Location ({exc})"[:120]
                        return res
                    res.final_url = current
                    res.redirects = hop + 1
                    continue
                res.headers = resp.headers
                res.size, res.decoded_size = resp.size, resp.decoded_size
                if resp.status >= 400:
                    res.failure, res.detail = Failure.HTTP_ERROR, f"HTTP {resp.status}"
                    if resp.status in _THROTTLED:
                        res.retry_after_s = retry_after_seconds(resp.headers.get("retry-after"),
                                                                resp.headers.get("date"))
                        res.detail = f"{_THROTTLED[resp.status]} (HTTP {resp.status})" + (
                            "" if res.retry_after_s is None else f", Retry-After {res.retry_after_s:.0f} s")
                    return res
                if resp.range_ignored:
                    res.range_ignored, res.size = True, resp.decoded_size
                    res.detail = "the server ignored Range: answered 200, the slice was cut from the whole body"
                res.body = resp.body
                return res
        except LeanHttpError as exc:
            res.failure, res.detail = exc.failure, exc.detail
            if isinstance(exc, TooSlow):
                res.projected_s = exc.projected_s
            res.answer_timeout = isinstance(exc, AnswerTimeout)
        finally:
            res.total_s = time.perf_counter() - t0
            res.end_wall = time.time()
            if res.detail and "://" in res.detail:  # never let a URL with a secret through
                res.detail = redact_url(res.detail)
        return res
