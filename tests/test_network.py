"""Network probe against real loopback peers: a TCP listener (RTT), an aiohttp upload
endpoint (uplink), a real chronyd serving NTP on loopback (the in-sync clock, and a server
that goes away), and a tiny UDP NTP responder for the offset fault.

Why both NTP peers: chronyd (``-x``: never touches the system clock; ``local stratum 10``;
its own port, pid and drift files under the test's tmp dir) serves this host's own clock,
so the offset it shows is ~0 — the real-interop case. A clock that is *off* needs a server
that lies: making chronyd serve a shifted clock means stepping its clock (``manual`` +
``chronyc settime``), which on a shared machine we will not risk; the responder speaks the
real NTPv3 wire format (RFC 1305) with a chosen offset instead."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import time
from pathlib import Path

import pytest
from aiohttp import web

from probes.core.studio import Status
from probes.net.ntp import ntp_offset
from probes.network import NetworkConfig, measure

NTP_EPOCH = 2208988800


class NtpResponder(asyncio.DatagramProtocol):
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        def ts(t: float) -> bytes:
            t += NTP_EPOCH
            return struct.pack("!II", int(t), int((t % 1) * 2**32))
        now = time.time() + self.offset
        orig = data[40:48]  # the client's transmit time becomes our originate time
        pkt = bytes([0x1C, 1, 0, 0xEC]) + b"\0" * 8 + b"LOCL" + ts(now) + orig + ts(now) + ts(time.time() + self.offset)
        self.transport.sendto(pkt, addr)


def require_chronyd() -> str:
    """chronyd's path, or skip (fail under SIGNALPATH_REQUIRE_LAB=1; the tests/_require.py rule)."""
    path = shutil.which("chronyd") or ("/usr/sbin/chronyd" if os.access("/usr/sbin/chronyd", os.X_OK) else None)
    if path:
        return path
    msg = "required binary 'chronyd' not found; install the Debian package: apt-get install chrony"
    if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
        pytest.fail(msg + " (SIGNALPATH_REQUIRE_LAB=1 makes this a failure)", pytrace=False)
    pytest.skip(msg)
    raise AssertionError("unreachable")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Chronyd:
    """A real chronyd as a local NTP server on 127.0.0.1:``port`` (``async with Chronyd(tmp) as c``).

    ``-x`` (no control of the system clock), ``-d`` (foreground), ``cmdport 0`` (no
    command socket), ``local stratum 10`` (answers at once, with no upstream); ready when
    it answers an NTP request (deadline 10 s); stopped by PID (SIGTERM, SIGKILL after 5 s).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> Chronyd:
        chronyd = require_chronyd()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_udp_port()
        conf = self.root / "chrony.conf"
        conf.write_text(f"port {self.port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 10\n"
                        f"cmdport 0\npidfile {self.root}/chronyd.pid\ndriftfile {self.root}/drift\n")
        args = [chronyd, "-d", "-x", "-f", str(conf)] + (["-u", "root"] if os.geteuid() == 0 else ["-U"])
        with open(self.root / "chronyd.log", "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (await asyncio.to_thread(ntp_offset, self.server, 0.5))[0] is None:
            if self.proc.returncode is not None or loop.time() > deadline:
                log = (self.root / "chronyd.log").read_text(errors="replace")[-1500:]
                await self.stop()
                raise RuntimeError(f"chronyd did not answer NTP on {self.server}: {log}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def servers(offset: float = 0.5):
    loop = asyncio.get_running_loop()
    tcp = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    received = []

    async def upload(req: web.Request) -> web.Response:
        received.append(len(await req.read()))
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/upload", upload)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]
    ntp, _ = await loop.create_datagram_endpoint(lambda: NtpResponder(offset), local_addr=("127.0.0.1", 0))
    ports = (tcp.sockets[0].getsockname()[1], http_port, ntp.get_extra_info("sockname")[1])
    return tcp, runner, ntp, ports, received


async def test_rtt_uplink_and_clock_against_loopback_peers():
    tcp, runner, ntp, (tp, hp, np_), received = await servers(offset=0.5)
    try:
        cfg = NetworkConfig(ingest=f"rtmp://127.0.0.1:{tp}/live/SECRETKEY", rtt_samples=4, rtt_spacing_s=0.01,
                            upload_url=f"http://127.0.0.1:{hp}/upload", upload_bytes=1_000_000,
                            target_bitrate=1_000_000, ntp_server=f"127.0.0.1:{np_}")
        findings, v = await measure(cfg)
        f = {x.check: x for x in findings}
        assert f["network.rtt"].status is Status.PASS and 0 < v["rtt"] < 0.1
        assert f["network.jitter"].status is Status.PASS
        assert received == [1_000_000] and v["uplink"] > 1.5e6 and f["network.uplink"].status is Status.PASS
        clock = f["network.clock"]
        assert clock.status is Status.WARN and clock.fault == "clock_offset" and abs(v["clock"] - 0.5) < 0.05
        assert all("SECRETKEY" not in x.measured + x.fix for x in findings)
    finally:
        tcp.close()
        ntp.close()
        await runner.cleanup()


async def test_uplink_too_slow_gives_the_fix_and_dead_ingest_fails():
    tcp, runner, ntp, (tp, hp, np_), _ = await servers(offset=0.0)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    try:
        cfg = NetworkConfig(ingest=f"127.0.0.1:{dead}", rtt_samples=2, rtt_spacing_s=0,
                            upload_url=f"http://127.0.0.1:{hp}/upload", upload_bytes=200_000,
                            target_bitrate=50_000_000_000, ntp_server=f"127.0.0.1:{np_}")
        findings, _ = await measure(cfg)
        f = {x.check: x for x in findings}
        assert f["network.rtt"].status is Status.FAIL and f["network.rtt"].fault == "unreachable"
        up = f["network.uplink"]
        assert up.status is Status.FAIL and up.fix.startswith("close other uploads or lower the bitrate: ")
        assert "Mbit/s measured, 75000.0 Mbit/s needed" in up.fix
        assert f["network.clock"].status is Status.PASS
    finally:
        tcp.close()
        ntp.close()
        await runner.cleanup()


async def test_clock_offset_against_a_real_chronyd_then_it_stops(tmp_path):
    async with Chronyd(tmp_path / "chrony") as chrony:
        cfg = NetworkConfig(ntp_server=chrony.server, connect_timeout_s=2)
        findings, v = await measure(cfg)
        (clock,) = findings
        # chronyd serves this host's own clock: in sync, a few ms at most (loopback, 2 busy cores)
        assert clock.check == "network.clock" and clock.status is Status.PASS, clock
        assert abs(v["clock"]) < 0.02 and clock.fix == "" and clock.measured.endswith(" ms")
        await chrony.stop()
        findings, v = await measure(NetworkConfig(ntp_server=chrony.server, connect_timeout_s=0.5))
    (clock,) = findings
    assert "clock" not in v and clock.status is Status.WARN and clock.measured == "not measured (no answer)"
    assert clock.fix.startswith("the NTP server does not answer")
