"""The hot-path HTTP client against real servers on loopback: raw asyncio servers that
answer exactly as written (chunked, close-delimited, keep-alive then idle close,
garbage), an aiohttp server, and TLS with a self-signed certificate."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl

import pytest
from aiohttp import web

from probes.base import Failure
from probes.net.httpfetch import Fetcher


async def raw_server(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def fetcher():
    async with Fetcher(max_per_host=4) as f:
        yield f


async def test_chunked_and_close_delimited_bodies(fetcher):
    async def handler(reader, writer):
        req = await read_request(reader)
        if b"/chunked" in req:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            await writer.drain()
            await read_request(reader)  # keep-alive: a second request on the same connection
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        else:
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    server, base = await raw_server(handler)
    async with server:
        r = await fetcher.get(base + "/chunked", max_bytes=1000)
        assert r.ok and r.body == b"hello world" and r.connect_s > 0
        r2 = await fetcher.get(base + "/chunked", max_bytes=1000)
        assert r2.ok and r2.body == b"abc" and r2.connect_s == 0  # reused the kept-alive connection
        r3 = await fetcher.get(base + "/close", max_bytes=1000)
        assert r3.ok and r3.body == b"until the end" and r3.headers["content-type"] == "text/plain"


async def test_idle_connection_closed_by_server_is_retried_once(fetcher):
    served = []

    async def handler(reader, writer):
        await read_request(reader)
        served.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive promised, but the server closes while idle

    server, base = await raw_server(handler)
    async with server:
        assert (await fetcher.get(base + "/a", max_bytes=100)).ok
        await asyncio.sleep(0.05)
        r = await fetcher.get(base + "/a", max_bytes=100)
        assert r.ok and r.body == b"ok" and len(served) == 2


async def test_garbage_truncation_and_caps(fetcher):
    async def handler(reader, writer):
        req = await read_request(reader)
        if b"/garbage" in req:
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        elif b"/short" in req:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        elif b"/big" in req:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        else:  # chunked body that grows past the cap
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(10):
                writer.write(b"3e8\r\n" + b"y" * 1000 + b"\r\n")
        await writer.drain()
        writer.close()

    server, base = await raw_server(handler)
    async with server:
        g = await fetcher.get(base + "/garbage", max_bytes=1000)
        assert g.failure is Failure.PROTOCOL_ERROR
        s = await fetcher.get(base + "/short", max_bytes=1000)
        assert s.failure is Failure.READ_FAILED
        b = await fetcher.get(base + "/big", max_bytes=1000)
        assert b.failure is Failure.BODY_TOO_LARGE and "Content-Length 5000" in b.detail
        c = await fetcher.get(base + "/chunky", max_bytes=3000)
        assert c.failure is Failure.BODY_TOO_LARGE and c.body == b""


async def test_refused_dns_and_redirects(fetcher):
    app = web.Application()
    async def loop(req: web.Request) -> web.Response:
        raise web.HTTPFound(f"/r/{int(req.match_info['n']) + 1}")

    async def to_ok(req: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def ok(req: web.Request) -> web.Response:
        return web.Response(text="fine", headers={"X-Cache": "HIT", "Age": "3"})

    app.router.add_get("/r/{n}", loop)
    app.router.add_get("/to-ok", to_ok)
    app.router.add_get("/ok", ok)
    runner, base = await app_server(app)
    try:
        fine = await fetcher.get(base + "/to-ok", max_bytes=100)
        assert fine.ok and fine.body == b"fine" and fine.redirects == 1 and fine.headers["x-cache"] == "HIT"
        # a fragment is never sent, and a Location without one inherits it (RFC 9110 §10.2.2):
        # a DASH Representation's URI is the MPD's URL with "#dash=NAME"
        frag = await fetcher.get(base + "/to-ok#dash=180p", max_bytes=100)
        assert frag.ok and frag.body == b"fine" and frag.final_url == base + "/ok#dash=180p"
        looped = await fetcher.get(base + "/r/0", max_bytes=100, max_redirects=5)
        assert looped.failure is Failure.REDIRECT_LOOP and looped.redirects == 5
    finally:
        await runner.cleanup()
    refused = await fetcher.get(base + "/ok", max_bytes=100)
    assert refused.failure is Failure.CONNECTION_REFUSED
    dns = await fetcher.get("http://no-such-host.invalid/x", max_bytes=100)
    assert dns.failure is Failure.DNS_ERROR and dns.detail == "host name not resolved"  # one wording everywhere


async def test_cancellation_drops_the_connection(fetcher):
    dropped = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        await reader.read()  # never answers; returns when the client drops the connection
        dropped.set()
        writer.close()

    server, base = await raw_server(handler)
    async with server:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await fetcher.get(base + "/hang", max_bytes=100)
        await asyncio.wait_for(dropped.wait(), 5)


async def test_tls_verification(tmp_path, fetcher):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address(
                "127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")

    async def handler(reader, writer):
        try:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    async with server:
        bad = await fetcher.get(url, max_bytes=100)
        assert bad.failure is Failure.TLS_ERROR and "certificate" in bad.detail
        good = await fetcher.get(url, max_bytes=100, verify_tls=False)
        assert good.ok and good.body == b"secure"


# -- the HTTP layer behaves as players do ---------------------------------------------------

MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n"
MEDIA = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n"
         + "".join(f"#EXTINF:2.0,\nseg{i}.ts\n" for i in range(7, 12)))


@contextlib.asynccontextmanager
async def serve_raw(handler):
    """A raw server for keep-alive handlers that loop over requests; at exit every connection
    is closed and its handler has returned (3.11's ``wait_closed`` leaves them open)."""
    writers: list[asyncio.StreamWriter] = []
    tasks: list[asyncio.Task] = []

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server, base = await raw_server(wrapped)
    try:
        yield base
    finally:
        server.close()
        for w in writers:
            w.close()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        await server.wait_closed()


def answer(make):
    """An aiohttp handler that answers ``make()`` (aiohttp wants coroutines)."""
    async def handler(req: web.Request) -> web.StreamResponse:
        return make()
    return handler


async def app_server(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


async def test_relative_uris_resolve_against_the_final_url(fetcher):
    """RFC 3986 §5.1.3: an entry that answers 302 to a cache node → its playlists and segments
    are asked of the node, as Safari, shaka and video.js do."""
    from probes.core.playlist import MasterPlaylist, MediaPlaylist, parse

    node = web.Application()
    node.router.add_get("/cache/live/main.m3u8", answer(lambda: web.Response(text=MASTER)))
    node.router.add_get("/cache/live/360p/index.m3u8", answer(lambda: web.Response(text=MEDIA)))
    node_runner, node_base = await app_server(node)
    entry = web.Application()

    async def to_node(req: web.Request) -> web.Response:
        raise web.HTTPFound(f"{node_base}/cache/live/main.m3u8?token=s3cret")

    async def to_nowhere(req: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/nowhere")

    entry.router.add_get("/live/main.m3u8", to_node)
    entry.router.add_get("/gone", to_nowhere)
    entry_runner, entry_base = await app_server(entry)
    try:
        fr = await fetcher.get(entry_base + "/live/main.m3u8", max_bytes=10_000)
        assert fr.ok and fr.redirects == 1 and fr.url == entry_base + "/live/main.m3u8"
        assert fr.final_url == f"{node_base}/cache/live/main.m3u8?token=s3cret"
        master = parse(fr.body.decode(), fr.final_url)
        assert isinstance(master, MasterPlaylist)
        assert master.variants[0].uri == f"{node_base}/cache/live/360p/index.m3u8"
        media_fr = await fetcher.get(master.variants[0].uri, max_bytes=10_000)
        assert media_fr.final_url == media_fr.url  # no redirect: the URL asked is the URL that answered
        media = parse(media_fr.body.decode(), media_fr.final_url)
        assert isinstance(media, MediaPlaylist)
        assert media.segments[0].uri == f"{node_base}/cache/live/360p/seg7.ts"
        # a redirect to a node that refuses: the failure names where it happened (redacted in the detail)
        gone = await fetcher.get(entry_base + "/gone", max_bytes=100)
        assert gone.failure is Failure.CONNECTION_REFUSED and gone.final_url == "http://127.0.0.1:9/nowhere"
    finally:
        await entry_runner.cleanup()
        await node_runner.cleanup()


async def test_gzip_and_deflate_bodies_are_decoded(fetcher):
    import gzip
    import zlib

    text = MEDIA.encode() * 20
    gz = gzip.compress(text)
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = raw_deflate.compress(text) + raw_deflate.flush()
    seen: list[bytes] = []

    async def handler(reader, writer):
        while True:
            req = await read_request(reader)
            seen.append(req)
            if b"/gzip-chunked" in req:  # in 7-byte chunks: the decoder is fed in pieces
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(gz), 7):
                    writer.write(b"%x\r\n%s\r\n" % (len(gz[i:i + 7]), gz[i:i + 7]))
                writer.write(b"0\r\n\r\n")
            elif b"/gzip" in req:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(gz), gz))
            elif b"/zlib" in req:
                body = zlib.compress(text)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
            elif b"/raw-deflate" in req:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(raw), raw))
            elif b"/truncated" in req:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(gz) - 9, gz[:-9]))
            elif b"/brotli" in req:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc")
            elif b"/not-gzip" in req:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello")
            else:  # an error page in gzip: an HTTP error, its body not decoded
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope")
            await writer.drain()

    async with serve_raw(handler) as base:
        for path in ("/gzip", "/gzip-chunked", "/zlib", "/raw-deflate"):
            r = await fetcher.get(base + path, max_bytes=len(text))
            assert r.ok, (path, r.detail)
            assert r.body == text and r.decoded_size == len(text), path
            assert r.size < len(text) // 5, path  # the bytes on the wire
        assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in seen[0]
        assert r.headers["content-encoding"] == "deflate"
        r = await fetcher.get(base + "/gzip", max_bytes=len(text), keep_body=False)
        assert r.ok and r.body == b"" and (r.size, r.decoded_size) == (len(gz), len(text))
        t = await fetcher.get(base + "/truncated", max_bytes=len(text))
        assert t.failure is Failure.PROTOCOL_ERROR and "truncated" in t.detail
        b = await fetcher.get(base + "/brotli", max_bytes=100)
        assert b.failure is Failure.PROTOCOL_ERROR and "'br'" in b.detail
        n = await fetcher.get(base + "/not-gzip", max_bytes=100)
        assert n.failure is Failure.PROTOCOL_ERROR and "cannot decode the gzip body" in n.detail
        e = await fetcher.get(base + "/missing", max_bytes=100)
        assert e.failure is Failure.HTTP_ERROR and e.status == 404


async def test_a_gzip_bomb_stops_at_the_cap_and_unkept_bodies_are_not_buffered(fetcher):
    import gzip
    import tracemalloc

    bomb = gzip.compress(bytes(64 * 1024 * 1024), 9)  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 100_000

    async def handler(reader, writer):
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb))
            writer.write(bomb)
            await writer.drain()

    async with serve_raw(handler) as base:
        for keep in (True, False):
            r = await fetcher.get(base + "/bomb", max_bytes=1_000_000, keep_body=keep)
            assert r.failure is Failure.BODY_TOO_LARGE and "decoded body over the 1000000-byte cap" in r.detail
            assert r.body == b""
        # the whole 64 MiB decoded (under a cap that allows it) without being kept: a few 64-KiB steps in memory
        tracemalloc.start()
        try:
            r = await fetcher.get(base + "/bomb", max_bytes=128 * 1024 * 1024, keep_body=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert r.ok and r.decoded_size == 64 * 1024 * 1024 and r.size == len(bomb) and r.body == b""
        assert peak < 4 * 1024 * 1024, peak


async def test_429_and_503_carry_retry_after(fetcher):
    from probes.net.httpfetch import retry_after_seconds

    app = web.Application()
    app.router.add_get("/429", answer(lambda: web.Response(status=429, headers={"Retry-After": "12"})))
    app.router.add_get("/503", answer(lambda: web.Response(status=503, headers={
        "Date": "Wed, 25 Nov 2026 03:00:00 GMT", "Retry-After": "Wed, 25 Nov 2026 03:01:30 GMT"})))
    app.router.add_get("/503-bare", answer(lambda: web.Response(status=503)))
    app.router.add_get("/500", answer(lambda: web.Response(status=500, headers={"Retry-After": "5"})))
    runner, base = await app_server(app)
    try:
        r = await fetcher.get(base + "/429", max_bytes=1000)
        assert (r.failure, r.status, r.retry_after_s) == (Failure.HTTP_ERROR, 429, 12.0)
        assert r.detail == "rate limited (HTTP 429), Retry-After 12 s"
        r = await fetcher.get(base + "/503", max_bytes=1000)
        assert (r.failure, r.status, r.retry_after_s) == (Failure.HTTP_ERROR, 503, 90.0)  # against the Date
        assert r.detail == "unavailable (HTTP 503), Retry-After 90 s"
        r = await fetcher.get(base + "/503-bare", max_bytes=1000)
        assert (r.retry_after_s, r.detail) == (None, "unavailable (HTTP 503)")
        r = await fetcher.get(base + "/500", max_bytes=1000)
        assert (r.retry_after_s, r.detail) == (None, "HTTP 500")
    finally:
        await runner.cleanup()
    assert retry_after_seconds("Wed, 25 Nov 2026 03:00:10 GMT", None, now=1795575600.0) == 10.0
    assert retry_after_seconds("Wed, 25 Nov 2026 02:00:00 GMT", "Wed, 25 Nov 2026 03:00:00 GMT") == 0.0
    for junk in (None, "", "-5", "1.5", "soon", "Wed, 99 Nov 2026 03:00:00 GMT"):
        assert retry_after_seconds(junk) is None, junk


async def test_byte_ranges(tmp_path, fetcher):
    data = bytes(range(256)) * 40  # 10,240 bytes
    (tmp_path / "single.ts").write_bytes(data)
    app = web.Application()
    app.router.add_get("/single.ts", answer(lambda: web.FileResponse(tmp_path / "single.ts")))
    runner, base = await app_server(app)
    try:
        r = await fetcher.get(base + "/single.ts", max_bytes=1000, byte_range=(1000, 4096))
        assert r.ok and r.status == 206 and r.body == data[4096:5096] and not r.range_ignored
        assert r.size == r.decoded_size == 1000 and r.headers["content-range"] == "bytes 4096-5095/10240"
        r = await fetcher.get(base + "/single.ts", max_bytes=1000, byte_range=(1000, 9240), keep_body=False)
        assert r.ok and r.status == 206 and r.body == b"" and r.size == 1000
        r = await fetcher.get(base + "/single.ts", max_bytes=1000, byte_range=(100, 20_000))
        assert r.failure is Failure.HTTP_ERROR and r.status == 416
    finally:
        await runner.cleanup()

    seen: list[bytes] = []

    async def handler(reader, writer):  # servers that get Range wrong, each in its own way
        while True:
            req = await read_request(reader)
            seen.append(req)
            if b"/ignores" in req:  # the whole body, in chunks: the slice spans several of them
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(0, len(data), 1000):
                    writer.write(b"%x\r\n%s\r\n" % (len(data[i:i + 1000]), data[i:i + 1000]))
                writer.write(b"0\r\n\r\n")
            elif b"/short" in req:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + data[:3000])
            elif b"/wrong-range" in req:
                writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99/10240\r\n"
                             b"Content-Length: 100\r\n\r\n" + data[:100])
            else:  # a 206 whose body is shorter than the range it claims
                writer.write(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-199/10240\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n32\r\n" + data[100:150] + b"\r\n0\r\n\r\n")
            await writer.drain()

    async with serve_raw(handler) as raw:
        r = await fetcher.get(raw + "/ignores", max_bytes=5000, byte_range=(1500, 2500))
        assert r.ok and r.status == 200 and r.range_ignored and r.body == data[2500:4000]
        assert r.size == r.decoded_size == 1500 and "ignored Range" in r.detail  # only the slice is counted
        assert b"\r\nRange: bytes=2500-3999\r\n" in seen[-1] and b"\r\nAccept-Encoding: identity\r\n" in seen[-1]
        r = await fetcher.get(raw + "/ignores", max_bytes=5000, byte_range=(1500, 8000))  # would read 9,500 bytes
        assert r.failure is Failure.BODY_TOO_LARGE and "ignored Range" in r.detail
        r = await fetcher.get(raw + "/short", max_bytes=5000, byte_range=(1500, 2500))
        assert r.failure is Failure.PROTOCOL_ERROR and "ends before byte 3999" in r.detail
        r = await fetcher.get(raw + "/wrong-range", max_bytes=5000, byte_range=(100, 100))
        assert r.failure is Failure.PROTOCOL_ERROR and "bytes 0-99/10240" in r.detail
        r = await fetcher.get(raw + "/partial-206", max_bytes=5000, byte_range=(100, 100))
        assert r.failure is Failure.PROTOCOL_ERROR and "50-byte body for a 100-byte range" in r.detail
        r = await fetcher.get(raw + "/plain-ok", max_bytes=5000)  # a plain GET after all that: no Range sent
        assert b"Range:" not in seen[-1] and b"\r\nAccept-Encoding: gzip, deflate\r\n" in seen[-1]


async def test_a_body_too_slow_to_end_in_time_is_given_up_as_soon_as_its_rate_shows_it(fetcher):
    """``finish_within_s``: 100 kB sent at 20 kB/s would take 5 s; with 2 s allowed the client
    gives up once 0.3 s of it shows the rate (not at 2 s), with the projection. The same body at
    ~80 kB/s (1.25 s) arrives whole; so does one with no Content-Length (nothing to project)."""
    handlers: list[asyncio.Task] = []

    async def handler(reader, writer):
        handlers.append(asyncio.current_task())
        req = await read_request(reader)
        per_tick = 8_400 if b"/fast" in req else 2_000
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" if b"/chunked" in req else \
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        writer.write(head)
        sent = 0
        try:
            with contextlib.suppress(ConnectionError):
                while sent < 100_000 and not writer.is_closing():  # the server's own pace: a tick every 0.1 s
                    n = min(per_tick, 100_000 - sent)
                    writer.write(b"%x\r\n" % n + b"x" * n + b"\r\n" if b"/chunked" in req else b"x" * n)
                    await writer.drain()
                    sent += n
                    await asyncio.sleep(0.1)
                if b"/chunked" in req:
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
        finally:
            writer.close()

    server, base = await raw_server(handler)
    async with server:
        r = await fetcher.get(base + "/slow", max_bytes=1 << 20, keep_body=False, finish_within_s=2.0)
        assert r.failure is Failure.TIMEOUT and r.projected_s is not None
        assert 3.0 < r.projected_s < 6.5 and "would take" in r.detail  # 5 s: optimistic by one read
        assert 0.25 < r.total_s < 1.0  # judged from 0.3 s of the body on, long before the 2-s allowance
        ok = await fetcher.get(base + "/fast", max_bytes=1 << 20, keep_body=False, finish_within_s=2.0)
        assert ok.ok and ok.size == 100_000 and ok.projected_s is None
        unknown = await asyncio.wait_for(fetcher.get(base + "/chunked/fast", max_bytes=1 << 20, keep_body=False,
                                                     finish_within_s=0.5), 10)
        assert unknown.ok and unknown.size == 100_000  # no Content-Length: the caller's own timer decides
        # the handler of the body given up sends on until it sees the connection gone: it ends
        # here, its writer closed (else it would be collected with this test's loop, unclosed)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def test_a_body_speeding_up_like_tcp_slow_start_is_not_given_up(fetcher):
    """A connection in slow start doubles its rate every round trip: 300 kB arriving 2, 4, 8 ...
    kB per 0.1 s ends in ~0.8 s, within 1 s allowed. A projection from its first reads (~30 kB
    in 0.3 s: 3 s) would call it slow; a rate still rising gives no verdict."""
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n")
        sent, n = 0, 2_000
        try:
            with contextlib.suppress(ConnectionError):
                while sent < 300_000:  # the server's own pace: a tick every 0.1 s, twice as much each time
                    k = min(n, 300_000 - sent)
                    writer.write(b"x" * k)
                    await writer.drain()
                    sent, n = sent + k, 2 * n
                    await asyncio.sleep(0.1)
        finally:
            writer.close()

    server, base = await raw_server(handler)
    async with server:
        r = await fetcher.get(base + "/ramp", max_bytes=1 << 20, keep_body=False, finish_within_s=1.0)
        assert r.ok and r.size == 300_000 and r.projected_s is None, (r.failure, r.detail)
        assert r.total_s < 1.25
