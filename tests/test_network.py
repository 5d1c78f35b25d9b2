"""Network probe against real loopback peers: a TCP listener (RTT), an aiohttp upload
endpoint (uplink), and a tiny UDP NTP responder (chrony is not installed here: the
responder speaks the real NTPv3 wire format, RFC 1305, with a chosen clock offset)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from aiohttp import web

from probes.network import NetworkConfig, measure
from probes.studio import Status

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
