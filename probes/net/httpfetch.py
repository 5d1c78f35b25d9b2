"""HTTP GET for probes: per-phase timing, a body cap, one-path redirects, failures as data.

Every HTTP probe (playlists, segments, ingest statistics, encoder status) goes through
one shared :class:`Fetcher`: keep-alive pools with a bound on requests in flight per
host, over :mod:`probes.net.leanhttp` — a small asyncio + httptools client, because the
polling loop is the agent's hot path (hundreds of playlists a second; see
tests/perf/poll_cost.py for its CPU per poll beside aiohttp's, httpx's and the Go
blackbox_exporter's). httpx stays the client for the cold paths (alerts, WHIP/WHEP).

Phases follow blackbox_exporter's split: ``connect`` (TCP + TLS, 0 on a reused
connection), ``first_byte`` (request written → first response byte), ``transfer``
(first byte → last body byte). Redirects are followed by hand, at most
``max_redirects`` times, so a loop is a ``redirect_loop`` failure. Bodies larger than
the cap stop the read: ``body_too_large``. No retries beyond leanhttp's one retry of a
keep-alive connection the server had already closed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

from probes.base import Failure
from probes.core.redact import redact_url
from probes.net.leanhttp import LeanClient, LeanHttpError

KEEP_HEADERS = ("age", "x-cache", "cache-control", "content-type", "content-length", "last-modified", "etag",
                "location", "transfer-encoding")
_REDIRECTS = (301, 302, 303, 307, 308)


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
                  verify_tls: bool = True) -> FetchResult:
        """Fetch ``url``; never raises for network or HTTP trouble (see ``FetchResult.failure``).

        Cancellation (the runner's deadline) propagates; the connection in use is dropped.
        """
        assert self._client is not None, "Fetcher.start() first"
        res = FetchResult(url=url, start_wall=time.time())
        t0 = time.perf_counter()
        current = url
        try:
            for hop in range(max_redirects + 1):
                resp = await self._client.get(current, max_bytes=max_bytes, keep_body=keep_body,
                                              verify_tls=verify_tls)
                res.connect_s += resp.connect_s
                res.first_byte_s += resp.first_byte_s
                res.transfer_s += resp.transfer_s
                res.status = resp.status
                if resp.status in _REDIRECTS and "location" in resp.headers:
                    if hop == max_redirects:
                        res.redirects = hop
                        res.failure, res.detail = Failure.REDIRECT_LOOP, f"more than {max_redirects} redirects"
                        return res
                    current = urljoin(current, resp.headers["location"])
                    res.redirects = hop + 1
                    continue
                res.headers = resp.headers
                res.size = resp.size
                if resp.status >= 400:
                    res.failure, res.detail = Failure.HTTP_ERROR, f"HTTP {resp.status}"
                    return res
                res.body = resp.body
                return res
        except LeanHttpError as exc:
            res.failure, res.detail = exc.failure, exc.detail
        finally:
            res.total_s = time.perf_counter() - t0
            res.end_wall = time.time()
            if res.detail and "://" in res.detail:  # never let a URL with a secret through
                res.detail = redact_url(res.detail)
        return res
