"""The hot-path HTTP client against real servers on loopback: raw asyncio servers that
answer exactly as written (chunked, close-delimited, keep-alive then idle close,
garbage), an aiohttp server, and TLS with a self-signed certificate."""

from __future__ import annotations

import asyncio
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
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    try:
        ok = await fetcher.get(base + "/to-ok", max_bytes=100)
        assert ok.ok and ok.body == b"fine" and ok.redirects == 1 and ok.headers["x-cache"] == "HIT"
        loop = await fetcher.get(base + "/r/0", max_bytes=100, max_redirects=5)
        assert loop.failure is Failure.REDIRECT_LOOP and loop.redirects == 5
    finally:
        await runner.cleanup()
    refused = await fetcher.get(base + "/ok", max_bytes=100)
    assert refused.failure is Failure.CONNECTION_REFUSED
    dns = await fetcher.get("http://no-such-host.invalid/x", max_bytes=100)
    assert dns.failure is Failure.DNS_ERROR


async def test_cancellation_drops_the_connection(fetcher):
    async def handler(reader, writer):
        await read_request(reader)
        await asyncio.sleep(30)

    server, base = await raw_server(handler)
    async with server:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await fetcher.get(base + "/hang", max_bytes=100)


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
