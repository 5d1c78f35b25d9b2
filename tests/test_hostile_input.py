"""Hostile servers and hostile playlists: every read is bounded in bytes and time, and every
value read from a playlist or a redirect is validated (issue 15, items 1 and 2).

The servers are tests/hostile.py's raw asyncio servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import time

import pytest

from probes.base import Failure
from probes.net.httpfetch import Fetcher
from probes.net.leanhttp import MAX_HEADER_BYTES
from tests.hostile import HostileServer


@pytest.fixture
async def fetcher():
    async with Fetcher(max_per_host=4) as f:
        yield f


@pytest.mark.parametrize(("kind", "failure", "words"), [
    ("endless_header", Failure.PROTOCOL_ERROR, "response headers over 65536 bytes"),
    ("endless_lines", Failure.PROTOCOL_ERROR, "more than 100 header fields"),
    ("endless_trailer", Failure.PROTOCOL_ERROR, "bytes of chunk framing or trailers for a 2-byte body"),
])
async def test_an_endless_head_or_trailer_is_a_protocol_error_after_a_bounded_read(fetcher, kind, failure, words):
    async with HostileServer(kind) as hs:
        t0 = time.perf_counter()
        r = await fetcher.get(hs.base + "/live.m3u8", max_bytes=4 << 20)
        took = time.perf_counter() - t0
        assert r.failure is failure and words in r.detail, r.detail
        assert took < 2.0
        # what the server managed to write before the client hung up: the limit, one read and the
        # socket buffers (a few hundred KiB on loopback), never megabytes
        await asyncio.sleep(0.05)
        assert hs.sent < MAX_HEADER_BYTES + 4 * 1024 * 1024, hs.sent


async def test_a_slowloris_head_times_out(fetcher):
    async with HostileServer("slowloris", interval_s=0.1) as hs:
        t0 = time.perf_counter()
        r = await fetcher.get(hs.base + "/live.m3u8", max_bytes=1 << 20, headers_timeout_s=0.6)
        took = time.perf_counter() - t0
    assert r.failure is Failure.TIMEOUT and "response headers not complete within 0.6 s" in r.detail, r.detail
    assert 0.5 < took < 2.0


async def test_a_healthy_response_with_a_large_head_and_body_in_one_read_passes(fetcher):
    """The head limit counts head bytes only: a body in the same read as the head is no head."""
    body = b"#EXTM3U\n" + b"#" * 300_000

    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 500) for i in range(90))
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        r = await fetcher.get(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/a", max_bytes=1 << 20)
    assert r.ok and r.body == body


@pytest.mark.parametrize(("location", "words"), [
    ("http://[::1/x.m3u8", "unusable redirect Location"),
    ("http://127.0.0.1:99999/x.m3u8", "unusable redirect Location"),
])
async def test_an_unusable_redirect_is_a_protocol_error(fetcher, location, words):
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode() + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        r = await fetcher.get(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/a", max_bytes=1000)
    assert r.failure is Failure.PROTOCOL_ERROR and words in r.detail, r.detail


@pytest.mark.parametrize("url", ["http://[::1/x.m3u8", "http://127.0.0.1:99999/x", "http://127.0.0.1:-1/x",
                                 "http://127.0.0.1/a b", "http://127.0.0.1/a\r\nX: y"])
async def test_an_unusable_url_is_a_protocol_error(fetcher, url):
    r = await fetcher.get(url, max_bytes=1000)
    assert r.failure is Failure.PROTOCOL_ERROR, (r.failure, r.detail)
