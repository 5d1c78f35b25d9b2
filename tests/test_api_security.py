"""The agent's endpoint as a stranger meets it (issue 15 item 6): a real agent on 127.0.0.1
port 0, real TLS handshakes with a certificate made here, raw sockets for what a polite
client never sends, ``signalpath run`` in a subprocess with few descriptors for the idle
connections, ``signalpath check-config`` for every web-config error with its key path.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from aiohttp import web

from agent import lograte
from agent.app import Agent
from agent.config import parse_config
from agent.errors import AgentError
from agent.webguard import LOGINS

SP = [sys.executable, "-m", "agent.cli"]
CLI_ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout, from any cwd
COST = 4  # the cheapest bcrypt cost: tests check logins, not bcrypt's speed
READ_PW, WRITE_PW = "reader-pass", "writer-pass"
READ_HASH = bcrypt.hashpw(READ_PW.encode(), bcrypt.gensalt(COST)).decode()
WRITE_HASH = bcrypt.hashpw(WRITE_PW.encode(), bcrypt.gensalt(COST)).decode()


def make_cert(folder: Path, name: str = "agent") -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def agent_config(tmp_path: Path, **web: Any) -> Any:
    return parse_config({"agent": {"listen": "127.0.0.1:0", "web": web},
                         "incidents": {"path": str(tmp_path / "incidents.db")}})


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def echo(req: web.Request) -> web.Response:
    return web.json_response({"got": (await req.read()).decode()})


def with_write_route(agent: Agent) -> Agent:
    """The agent with a write route of the kind ``extra_routes`` adds (the complaint endpoint's shape)."""
    agent.extra_routes = lambda: [("POST", "/api/v1/echo", echo)]  # type: ignore[attr-defined]
    return agent


async def raw(port: int, data: bytes, timeout: float = 5.0, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 20), timeout)
    finally:
        writer.close()
        await writer.wait_closed()


def port_of(agent: Agent) -> int:
    return int(agent.url.rsplit(":", 1)[1])


# ---------------------------------------------------------------- TLS


async def test_tls_handshake_and_min_version(tmp_path):
    cert, key = make_cert(tmp_path)
    config = agent_config(tmp_path, tls={"cert_file": str(cert), "key_file": str(key), "min_version": "TLS13"},
                          header_timeout_s=1)
    async with Agent(config) as agent:
        assert agent.url.startswith("https://127.0.0.1:")
        # a client that never starts its handshake is closed after the header timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(agent))
        t0 = time.monotonic()
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()
            await writer.wait_closed()
        assert time.monotonic() - t0 < 2.5
        trust = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trust, timeout=5) as client:
            r = await client.get(agent.url + "/api/v1/status")
        body = r.json()
        agent_itself = body.pop("agent")  # agent/selfwatch.py: null until its first look, a second after start
        assert r.status_code == 200 and body == {"streams": [], "broadcast": None, "last_broadcast": None}
        assert agent_itself is None or agent_itself["state"] in ("ok", "unknown")  # unknown: its first 30 s

        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionResetError)):  # an alert, or the reset after it
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port_of(agent), ssl=old,
                                                           server_hostname="localhost"), 5)

        # plain HTTP on the TLS port: refused, and the agent goes on serving
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError, OSError)):
            out = await raw(port_of(agent), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert not out.startswith(b"HTTP/1.1 200"), out
            raise ConnectionError("closed")
        async with httpx.AsyncClient(verify=trust, timeout=5) as client:
            assert (await client.get(agent.url + "/metrics")).status_code == 200


async def test_tls_files_that_cannot_be_used_stop_the_start_with_one_line(tmp_path):
    cert, _ = make_cert(tmp_path, "one")
    _, other_key = make_cert(tmp_path, "two")
    config = agent_config(tmp_path, tls={"cert_file": str(cert), "key_file": str(other_key)})
    with pytest.raises(AgentError, match="cannot use .*one.crt with .*two.key"):
        async with Agent(config):
            pass


# ---------------------------------------------------------------- basic auth


async def test_basic_auth_read_and_write_users(tmp_path):
    config = agent_config(tmp_path, basic_auth={"read": {"prom": READ_HASH}, "write": {"ops": WRITE_HASH}})
    async with with_write_route(Agent(config)) as agent, httpx.AsyncClient(timeout=10) as client:
        url = agent.url
        r = await client.get(url + "/metrics")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert (await client.get(url + "/metrics", headers=basic("prom", "wrong"))).status_code == 401
        assert (await client.get(url + "/metrics", headers=basic("nobody", READ_PW))).status_code == 401
        assert (await client.get(url + "/", headers={"Authorization": "Basic !!!"})).status_code == 401
        assert (await client.get(url + "/", headers={"Authorization": "Bearer x"})).status_code == 401
        too_long = "x" * 73  # bcrypt reads 72 bytes: a longer password never logs in
        assert (await client.get(url + "/", headers=basic("prom", READ_PW + too_long))).status_code == 401

        for path in ("/metrics", "/api/v1/status", "/api/v1/incidents", "/"):
            assert (await client.get(url + path, headers=basic("prom", READ_PW))).status_code == 200, path
            assert (await client.get(url + path, headers=basic("ops", WRITE_PW))).status_code == 200, path
        assert (await client.head(url + "/metrics", headers=basic("prom", READ_PW))).status_code == 200

        assert (await client.post(url + "/api/v1/echo", content=b"hi")).status_code == 401
        r = await client.post(url + "/api/v1/echo", content=b"hi", headers=basic("prom", READ_PW))
        assert r.status_code == 403 and "write user" in r.text
        r = await client.post(url + "/api/v1/echo", content=b"hi", headers=basic("ops", WRITE_PW))
        assert r.status_code == 200 and r.json() == {"got": "hi"}
        # any method but GET/HEAD needs the write user, on every route
        assert (await client.delete(url + "/api/v1/status", headers=basic("prom", READ_PW))).status_code == 403


async def test_bcrypt_runs_once_per_login_not_per_scrape(tmp_path):
    config = agent_config(tmp_path, basic_auth={"read": {"prom": READ_HASH}})
    async with Agent(config) as agent, httpx.AsyncClient(timeout=10) as client:
        logins = agent._server.app[LOGINS]
        for _ in range(20):
            assert (await client.get(agent.url + "/metrics", headers=basic("prom", READ_PW))).status_code == 200
        await asyncio.gather(*(client.get(agent.url + "/metrics", headers=basic("prom", READ_PW))
                               for _ in range(10)))
        assert logins.bcrypt_runs == 1
        for _ in range(5):
            assert (await client.get(agent.url + "/metrics", headers=basic("prom", "guess"))).status_code == 401
        assert logins.bcrypt_runs == 2  # a failure is cached too


async def test_unknown_user_costs_a_bcrypt_check_like_a_known_one(tmp_path):
    config = agent_config(tmp_path, basic_auth={"read": {"prom": READ_HASH}})
    async with Agent(config) as agent, httpx.AsyncClient(timeout=10) as client:
        logins = agent._server.app[LOGINS]
        assert (await client.get(agent.url + "/metrics", headers=basic("nobody", "x"))).status_code == 401
        assert logins.bcrypt_runs == 1


# ---------------------------------------------------------------- Host, Origin, body


async def test_host_header_checked_on_loopback(tmp_path):
    async with Agent(agent_config(tmp_path)) as agent, httpx.AsyncClient(timeout=5) as client:
        port = port_of(agent)
        for host in (f"127.0.0.1:{port}", "localhost", f"LOCALHOST.:{port}", f"[::1]:{port}"):
            r = await client.get(agent.url + "/api/v1/status", headers={"Host": host})
            assert r.status_code == 200, host
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "[::2]", "a b"):
            r = await client.get(agent.url + "/api/v1/status", headers={"Host": host})
            assert r.status_code == 421 and "Host" in r.text, host
        # HTTP/1.0 without Host: let through (browsers always send one)
        out = await raw(port, b"GET /api/v1/status HTTP/1.0\r\n\r\n")
        assert out.startswith(b"HTTP/1.0 200"), out[:80]


async def test_allowed_hosts_configured(tmp_path):
    config = agent_config(tmp_path, allowed_hosts=["monitor.studio.example", "::1"])
    async with Agent(config) as agent, httpx.AsyncClient(timeout=5) as client:
        # the loopback names stay answered beside the configured ones (a local scraper uses them)
        ok = {"monitor.studio.example:9321": 200, "[::1]": 200, "127.0.0.1": 200, "localhost": 200,
              "evil.example": 421, "127.0.0.2": 421}
        for host, status in ok.items():
            r = await client.get(agent.url + "/metrics", headers={"Host": host})
            assert r.status_code == status, host
    config = agent_config(tmp_path, allowed_hosts=["*"])
    async with Agent(config) as agent, httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(agent.url + "/metrics", headers={"Host": "any.example"})).status_code == 200


async def test_cross_origin_write_refused(tmp_path):
    async with with_write_route(Agent(agent_config(tmp_path))) as agent, httpx.AsyncClient(timeout=5) as client:
        url = agent.url
        r = await client.post(url + "/api/v1/echo", content=b"x", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = await client.post(url + "/api/v1/echo", content=b"x", headers={"Origin": url})
        assert r.status_code == 200
        assert (await client.post(url + "/api/v1/echo", content=b"x")).status_code == 200  # curl sends no Origin


async def test_body_timeout(tmp_path):
    config = agent_config(tmp_path, body_timeout_s=0.5)
    async with with_write_route(Agent(config)) as agent:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(agent))
        try:
            writer.write(b"POST /api/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nhalf")
            await writer.drain()
            t0 = time.monotonic()
            out = await asyncio.wait_for(reader.read(1 << 16), 5)
            assert out.startswith(b"HTTP/1.1 408"), out[:80]
            assert await asyncio.wait_for(reader.read(), 5) == b""  # and the connection is closed
            assert time.monotonic() - t0 < 2
        finally:
            writer.close()
            await writer.wait_closed()


# ---------------------------------------------------------------- banner, malformed requests


def _headers(response: bytes) -> str:
    return response.split(b"\r\n\r\n", 1)[0].decode("latin-1")


async def test_no_version_banner_anywhere(tmp_path):
    async with Agent(agent_config(tmp_path)) as agent:
        port = port_of(agent)
        answers = [await raw(port, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
                   await raw(port, b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
                   await raw(port, b"GET / HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n"),
                   await raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n"),
                   await raw(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")]
    for out in answers:
        head = _headers(out)
        assert head.startswith("HTTP/1."), out[:80]
        for word in ("aiohttp", "Python", "3.1"):
            assert word not in head, head


async def test_malformed_request_logs_one_line_not_a_traceback(tmp_path, caplog):
    api_log = logging.getLogger("signalpath.api")
    for f in [f for f in api_log.filters if isinstance(f, lograte.RepeatFilter)]:
        api_log.removeFilter(f)  # a fresh rate limiter: another test's line must not count here
    caplog.set_level(logging.DEBUG)
    async with Agent(agent_config(tmp_path)) as agent:
        port = port_of(agent)
        for _ in range(5):
            out = await raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
            assert out.startswith(b"HTTP/1.") and out[9:12] == b"400", out[:80]
            out = await raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03secret-ish\r\n\r\n")
            assert out.startswith(b"HTTP/1.") and out[9:12] == b"400", out[:80]
        async with httpx.AsyncClient(timeout=5) as client:  # still serving
            assert (await client.get(agent.url + "/api/v1/status")).status_code == 200
    lines = [r for r in caplog.records if r.name == "signalpath.api" and "malformed" in r.getMessage()]
    assert len(lines) == 2, [r.getMessage() for r in lines]  # one per kind; repeats rate-limited
    assert {r.getMessage().rsplit("(", 1)[1] for r in lines} == {"LineTooLong)", "BadHttpMethod)"}
    for r in caplog.records:
        assert r.exc_info is None, (r.name, r.getMessage())
        assert "secret-ish" not in r.getMessage() and "aaaa" not in r.getMessage()


# ---------------------------------------------------------------- idle connections


IDLE = 300
FD_LIMIT = 256
HEADER_TIMEOUT = 2.0


async def _hold(i: int, port: int, opened: list[Any]) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
    except (OSError, TimeoutError):
        return
    if i % 3 == 1:
        writer.write(b"GET /metr")  # half a request line
    elif i % 3 == 2:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # half a header
    opened.append((reader, writer))


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (end of stream or a reset)."""
    try:
        while await reader.read(1 << 16):
            pass
    except OSError:
        pass
    return True


def test_idle_connections_cannot_lock_new_clients_out(tmp_path):
    """``signalpath run`` with 256 descriptors; 300 connections that send nothing, half a request
    line or half a header; a new client is still served within the header timeout (plus the
    1 s the event loop waits after running out of descriptors), and the server closes the idle
    ones. Before the header timeout, aiohttp kept them for 3,630 s."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
agent: {{listen: "127.0.0.1:0", web: {{header_timeout_s: {HEADER_TIMEOUT}}}}}
incidents: {{path: "{tmp_path / 'incidents.db'}"}}
streams: [{{name: main, origin: "http://127.0.0.1:9/live/main.m3u8"}}]
""")
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(["sh", "-c", f'ulimit -n {FD_LIMIT} && exec "$0" "$@"', *SP, "run", "-c", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path, env=CLI_ENV)
    try:
        deadline = time.monotonic() + 30
        url = ""
        while not url:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            for line in err.read_text().splitlines():
                if "status http://" in line:
                    url = line.split("status ", 1)[1].split()[0].rstrip("/")
            time.sleep(0.05)
        port = int(url.rsplit(":", 1)[1])
        asyncio.run(_idle_against(port, url))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _idle_against(port: int, url: str) -> None:
    opened: list[Any] = []
    await asyncio.gather(*(_hold(i, port, opened) for i in range(IDLE)))
    t0 = time.monotonic()
    assert len(opened) > FD_LIMIT, f"only {len(opened)} idle connections opened"
    try:
        served_after = None
        async with httpx.AsyncClient(timeout=1) as client:
            deadline = t0 + HEADER_TIMEOUT + 3
            while time.monotonic() < deadline:
                try:
                    if (await client.get(url + "/api/v1/status")).status_code == 200:
                        served_after = time.monotonic() - t0
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        assert served_after is not None, (f"a new client was not served within {HEADER_TIMEOUT + 3:g} s "
                                          f"while {len(opened)} idle connections were open")
        closed = await asyncio.wait_for(asyncio.gather(*(_closed_by_server(r) for r, _ in opened)),
                                        HEADER_TIMEOUT + 5)
        print(f"{len(opened)} idle connections, {FD_LIMIT} descriptors: new client served after "
              f"{served_after:.2f} s; all idle closed by the server within {time.monotonic() - t0:.2f} s")
        assert all(closed)
    finally:
        for _, w in opened:
            w.close()
        await asyncio.gather(*(w.wait_closed() for _, w in opened), return_exceptions=True)


# ---------------------------------------------------------------- check-config


def run_cli(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SP, *args], capture_output=True, text=True, timeout=60, cwd=cwd, input=stdin,
                          env=CLI_ENV)


STREAMS = 'streams: [{name: main, origin: "http://127.0.0.1:8080/live/main.m3u8"}]\n'


def test_check_config_web_model_errors_with_their_paths(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f"""
agent:
  web:
    tls: {{cert_file: a.crt, key_file: a.key, min_version: TLS11}}
    basic_auth:
      read: {{prom: "plain-text-password", "a:b": "{READ_HASH}"}}
      write: {{ops: "$2b$12$tooshort"}}
    allowed_hosts: ["http://x.example/"]
    header_timeout_s: 0
{STREAMS}""")
    r = run_cli("check-config", str(f))
    assert r.returncode == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    expected = [f"{f}: agent.web.tls.min_version: unknown TLS version 'TLS11' (one of TLS12, TLS13)",
                f"{f}: agent.web.basic_auth.read: user 'prom': not a bcrypt hash (make one with: "
                "signalpath hash-password)",
                f"{f}: agent.web.basic_auth.write: user 'ops': not a bcrypt hash (make one with: "
                "signalpath hash-password)"]
    for line in expected:
        assert line in lines, (line, lines)
    assert any(ln.startswith(f"{f}: agent.web.allowed_hosts: 'http://x.example") and "(entry 0) is not a host" in ln
               for ln in lines), lines
    assert any(ln.startswith(f"{f}: agent.web.header_timeout_s: ") for ln in lines), lines
    assert "plain-text-password" not in r.stderr and "Traceback" not in r.stderr


def test_check_config_read_and_write_user_of_one_name(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f'agent: {{web: {{basic_auth: {{read: {{ops: "{READ_HASH}"}}, write: {{ops: "{WRITE_HASH}"}}}}}}}}\n'
                 + STREAMS)
    r = run_cli("check-config", str(f))
    assert r.returncode == 2
    assert f"{f}: agent.web.basic_auth: 'ops' is both a read and a write user" in r.stderr, r.stderr


@pytest.mark.parametrize("case,path,words", [
    ("missing", "agent.web.tls.cert_file", "no such file"),
    ("key is a folder", "agent.web.tls.key_file", "is not a regular file"),
    ("cert not PEM", "agent.web.tls.cert_file", "is not a PEM certificate"),
    ("key not PEM", "agent.web.tls.key_file", "is not a PEM private key"),
    ("key of another cert", "agent.web.tls.key_file", "cannot use"),
])
def test_check_config_tls_file_errors_with_their_paths(tmp_path, case, path, words):
    cert, key = make_cert(tmp_path, "a")
    _, other = make_cert(tmp_path, "b")
    if case == "missing":
        cert.unlink()
    elif case == "key is a folder":
        key.unlink()
        key.mkdir()
    elif case == "cert not PEM":
        cert.write_text("hello")
    elif case == "key not PEM":
        key.write_bytes(b"\x00\x01")
    elif case == "key of another cert":
        key.write_bytes(other.read_bytes())
    f = tmp_path / "c.yaml"
    f.write_text("agent: {web: {tls: {cert_file: a.crt, key_file: a.key}}}\n" + STREAMS)  # relative to the file
    r = run_cli("check-config", str(f), cwd=Path("/"))
    assert r.returncode == 2, r.stdout
    line = r.stderr.strip().splitlines()[0]
    assert line.startswith(f"{f}: {path}: ") and words in line, r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_accepts_tls_files_beside_the_config(tmp_path):
    make_cert(tmp_path, "a")
    f = tmp_path / "c.yaml"
    f.write_text(f'agent: {{web: {{tls: {{cert_file: a.crt, key_file: a.key, min_version: TLS13}}, '
                 f'basic_auth: {{read: {{prom: "{READ_HASH}"}}}}}}}}\n' + STREAMS)
    r = run_cli("check-config", str(f), cwd=Path("/"))
    assert r.returncode == 0, r.stderr


def test_hash_password_reads_stdin_and_never_prints_it():
    r = run_cli("hash-password", "--cost", "10", stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    hashed = r.stdout.strip()
    assert bcrypt.checkpw(b"correct horse", hashed.encode())
    assert "correct horse" not in r.stdout + r.stderr
    r = run_cli("hash-password", stdin="x" * 73)
    assert r.returncode == 2 and "72 bytes" in r.stderr


@pytest.mark.parametrize("listen,configured,expected", [
    ("127.0.0.1", None, {"localhost", "127.0.0.1", "::1"}),
    ("127.0.0.2", None, {"localhost", "127.0.0.1", "::1", "127.0.0.2"}),
    ("::1", None, {"localhost", "127.0.0.1", "::1"}),
    ("localhost", None, {"localhost", "127.0.0.1", "::1"}),
    ("0.0.0.0", None, None),  # every address: the names are unknown, Host not checked (said at start)
    ("::", None, None),
    ("10.0.0.5", None, None),
    ("0.0.0.0", ["Monitor.Example.", "[::1]"], {"monitor.example", "localhost", "127.0.0.1", "::1"}),
    ("127.0.0.1", ["*"], None),
])
def test_allowed_hosts_defaults(listen, configured, expected):
    from agent.webguard import WebSettings, allowed_hosts

    got = allowed_hosts(WebSettings(allowed_hosts=configured), listen)
    assert (set(got) if got is not None else None) == expected


def test_an_empty_allowed_hosts_is_a_config_error():
    """A fresh user's find: `allowed_hosts: []` passed check-config, then every request got 421."""
    from pydantic import ValidationError

    from agent.webguard import WebSettings

    with pytest.raises(ValidationError, match="empty list would answer no request"):
        WebSettings(allowed_hosts=[])
