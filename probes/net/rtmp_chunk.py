"""The RTMP chunk stream and its URLs (Adobe "RTMP Specification 1.0", 2012: §5.3
chunking, §5.4 protocol control messages, §7.1 message types): whole messages in and
out of an asyncio stream pair, :class:`RtmpError` (a failed step already mapped to a
:class:`~probes.base.Failure`, a fault and a secret-free detail) and
:func:`parse_rtmp_url`. The handshake (§5.2) and the command sequence are the RTMP
probe's (probes/rtmp.py).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from probes.base import Failure
from probes.core.redact import redact_url
from probes.faults import Fault
from probes.net.amf0 import amf0_encode

HANDSHAKE_SIZE = 1536

# RTMP message types (spec §5.4, §7.1)
MSG_SET_CHUNK_SIZE = 1
MSG_ABORT = 2
MSG_ACK = 3
MSG_USER_CONTROL = 4
MSG_WINDOW_ACK_SIZE = 5
MSG_SET_PEER_BW = 6
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_DATA_AMF0 = 18
MSG_COMMAND_AMF3 = 17
MSG_COMMAND_AMF0 = 20


# ----------------------------------------------------------------------------- errors


class RtmpError(Exception):
    """A failed step, already mapped to a :class:`Failure` and a secret-free detail."""

    def __init__(self, failure: Failure, detail: str, fault: Fault = Fault.UNREACHABLE) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail
        self.fault = fault


# ----------------------------------------------------------------------------- chunk stream


@dataclass(slots=True)
class Message:
    type: int
    stream_id: int
    timestamp: int
    payload: bytes


@dataclass(slots=True)
class _InChunkStream:
    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type: int = 0
    stream_id: int = 0
    extended: bool = False
    buf: bytearray = field(default_factory=bytearray)


class ChunkConnection:
    """RTMP chunk stream over an asyncio stream pair (spec §5.3): whole messages in and out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.in_chunk_size = 128
        self.out_chunk_size = 128
        self.in_streams: dict[int, _InChunkStream] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.peer_window = 0  # we acknowledge after this many bytes in (server's Window Ack Size)
        self.last_ack_sent = 0
        self.acked_by_peer = 0  # sequence number of the peer's last Acknowledgement

    async def _read(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.bytes_in += n
        return data

    def send(self, csid: int, msg_type: int, payload: bytes, stream_id: int = 0, timestamp: int = 0) -> None:
        """Queue one message as fmt-0 + fmt-3 chunks (2 <= csid <= 63)."""
        ts = min(timestamp, 0xFFFFFF)
        ext = struct.pack(">I", timestamp & 0xFFFFFFFF) if timestamp >= 0xFFFFFF else b""
        header = (bytes((csid & 0x3F,)) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big")
                  + bytes((msg_type,)) + struct.pack("<I", stream_id) + ext)
        out = bytearray(header)
        for i in range(0, max(len(payload), 1), self.out_chunk_size):
            if i:
                out.append(0xC0 | (csid & 0x3F))
                out += ext
            out += payload[i:i + self.out_chunk_size]
        self.writer.write(out)
        self.bytes_out += len(out)

    def set_chunk_size(self, size: int) -> None:
        self.send(2, MSG_SET_CHUNK_SIZE, struct.pack(">I", size))
        self.out_chunk_size = size

    def command(self, name: str, txn: float, *args: Any, stream_id: int = 0, csid: int = 3) -> None:
        self.send(csid, MSG_COMMAND_AMF0, amf0_encode(name, txn, *args), stream_id=stream_id)

    async def read_message(self) -> Message:
        """The next complete message; handles protocol control messages on the way."""
        while True:
            msg = await self._read_one()
            if msg is None:
                continue
            if msg.type == MSG_SET_CHUNK_SIZE and len(msg.payload) >= 4:
                self.in_chunk_size = max(1, struct.unpack_from(">I", msg.payload)[0] & 0x7FFFFFFF)
            elif msg.type == MSG_WINDOW_ACK_SIZE and len(msg.payload) >= 4:
                self.peer_window = struct.unpack_from(">I", msg.payload)[0]
            elif msg.type == MSG_ACK and len(msg.payload) >= 4:
                self.acked_by_peer = struct.unpack_from(">I", msg.payload)[0]
            elif msg.type == MSG_ABORT and len(msg.payload) >= 4:
                self.in_streams.pop(struct.unpack_from(">I", msg.payload)[0], None)
            if self.peer_window and self.bytes_in - self.last_ack_sent >= self.peer_window:
                self.last_ack_sent = self.bytes_in
                self.send(2, MSG_ACK, struct.pack(">I", self.bytes_in & 0xFFFFFFFF))
            return msg

    async def _read_one(self) -> Message | None:
        b0 = (await self._read(1))[0]
        fmt, csid = b0 >> 6, b0 & 0x3F
        if csid == 0:
            csid = 64 + (await self._read(1))[0]
        elif csid == 1:
            b = await self._read(2)
            csid = 64 + b[0] + 256 * b[1]
        cs = self.in_streams.setdefault(csid, _InChunkStream())
        fresh = not cs.buf
        if fmt == 0:
            h = await self._read(11)
            ts = int.from_bytes(h[0:3], "big")
            cs.length, cs.type = int.from_bytes(h[3:6], "big"), h[6]
            cs.stream_id = struct.unpack_from("<I", h, 7)[0]
            cs.extended = ts == 0xFFFFFF
            if cs.extended:
                ts = struct.unpack(">I", await self._read(4))[0]
            cs.timestamp, cs.delta = ts, 0
        elif fmt in (1, 2):
            h = await self._read(7 if fmt == 1 else 3)
            delta = int.from_bytes(h[0:3], "big")
            if fmt == 1:
                cs.length, cs.type = int.from_bytes(h[3:6], "big"), h[6]
            cs.extended = delta == 0xFFFFFF
            if cs.extended:
                delta = struct.unpack(">I", await self._read(4))[0]
            cs.delta = delta
            cs.timestamp = (cs.timestamp + delta) & 0xFFFFFFFF
        else:  # fmt 3: same header; a new message repeats the previous delta
            if cs.extended:
                await self._read(4)
            if fresh:
                cs.timestamp = (cs.timestamp + cs.delta) & 0xFFFFFFFF
        want = min(self.in_chunk_size, cs.length - len(cs.buf))
        if want > 0:
            cs.buf += await self._read(want)
        if len(cs.buf) < cs.length:
            return None
        msg = Message(cs.type, cs.stream_id, cs.timestamp, bytes(cs.buf))
        cs.buf = bytearray()
        return msg

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError):
            pass


# ----------------------------------------------------------------------------- URLs


@dataclass(slots=True)
class RtmpUrl:
    scheme: str
    host: str
    port: int
    app: str
    key: str | None
    tc_url: str  # contains no key: rtmp://host:port/app


def parse_rtmp_url(url: str) -> RtmpUrl:
    """Split ``rtmp[s]://host[:port]/app[/inst]/KEY``; ``RtmpError`` on anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RtmpError(Failure.PROTOCOL_ERROR, "unparseable RTMP URL", Fault.PROTOCOL_ERROR) from None
    scheme = parts.scheme.lower()
    if scheme not in ("rtmp", "rtmps") or not parts.hostname:
        raise RtmpError(Failure.PROTOCOL_ERROR, f"not an rtmp(s) URL (scheme {scheme[:10]!r})", Fault.PROTOCOL_ERROR)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments:
        raise RtmpError(Failure.PROTOCOL_ERROR, f"no application in {redact_url(url)}", Fault.PROTOCOL_ERROR)
    key = segments[-1] if len(segments) >= 2 else None
    app = "/".join(segments[:-1] if key else segments)
    if key and parts.query:
        key = f"{key}?{parts.query}"  # query-token style keys travel with the stream name
    port = port or (443 if scheme == "rtmps" else 1935)
    return RtmpUrl(scheme, parts.hostname, port, app, key, f"{scheme}://{parts.hostname}:{port}/{app}")
