"""RTMP ingest probe: can an encoder connect and publish to this ingest, and how fast?

One attempt against one ingest URL (``rtmp://host[:port]/app/STREAM_KEY``), in a
small pure-asyncio RTMP client (no librtmp), following Adobe's RTMP specification
(2012, "RTMP Specification 1.0": §5.2 handshake, §5.3 chunking, §5.4 protocol control
messages, §7.2 commands) and the AMF0 specification:

1. ``tcp``: TCP connect;
2. ``handshake``: C0+C1 → S0+S1+S2 → C2 (version 3, the plain handshake);
3. ``connect``: the ``connect`` command → ``_result`` (``NetConnection.Connect.Success``);
4. ``create_stream``: ``createStream`` → ``_result`` with the message stream id;
5. optionally ``publish``: ``publish(KEY, "live")`` → ``onStatus``
   ``NetStream.Publish.Start``; then ``publish_seconds`` of a real H.264 stream (PyAV's
   libx264 into PyAV's FLV muxer in memory, sent tag by tag as RTMP audio/video
   messages, paced in real time) at ``target_bitrate``, measuring the achieved upload
   rate and the bytes the server acknowledged (we announce a Window Acknowledgement
   Size, the server then sends Acknowledgement messages, spec §5.4.3-4);
6. ``deleteStream`` and close.

Each phase's round trip is ``signalpath_ingest_connect_seconds{phase}`` and a span.
A refused stream key (``onStatus`` ``NetStream.Publish.BadName``/``Rejected``, an
``_error`` reply, or the server closing the connection in answer to ``publish`` — what
nginx-rtmp does when its ``on_publish`` hook answers non-2xx) is
``Failure.AUTH_REFUSED``.

With ``stat_url`` (nginx-rtmp's ``rtmp_stat`` XML) the probe also reads, for the
stream named by the URL's key: publisher present, ``bw_in``, the publisher's dropped
frames and A/V sync, as ingest-stage evidence. No publisher is fault ``no_input``
(DOWN); |A/V sync| beyond ``av_sync_fault_seconds`` (200 ms, THRESHOLDS.md "A/V sync",
broadcast practice) is ``av_desync`` (DEGRADED); frames dropped since the previous
attempt are ``dropped_frames`` (DEGRADED).

Layers: the AMF0 codec (probes/net/amf0.py), the chunk stream, ``RtmpError`` and URL
parsing (probes/net/rtmp_chunk.py) and the FLV test stream (probes/net/flv.py) are the
protocol; reading ``/stat`` is probes/core/nginx_stat.py; this module is the attempt.

The stream key is a secret: it never appears in a result field. Every URL shown is
``probes.core.redact.redact_url``'d and every message also has the key masked literally.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field

from probes.base import (
    HOST_NOT_RESOLVED,
    Evidence,
    Failure,
    ProbeContext,
    ProbeResult,
    ProbeTarget,
    Sample,
    SpanRecord,
    State,
    own_deadline,
)
from probes.core.config import StrictModel
from probes.core.nginx_stat import STAT_MAX_BYTES, StatView, judge_stat, parse_stat
from probes.core.redact import redact_text, redact_url
from probes.core.thresholds import AV_SYNC_FAULT_S
from probes.faults import Fault
from probes.net.amf0 import amf0_decode
from probes.net.flv import encode_test_stream
from probes.net.rtmp_chunk import (
    HANDSHAKE_SIZE,
    MSG_COMMAND_AMF0,
    MSG_COMMAND_AMF3,
    MSG_VIDEO,
    MSG_WINDOW_ACK_SIZE,
    ChunkConnection,
    RtmpError,
    RtmpUrl,
    parse_rtmp_url,
)

STAGE = "ingest"
METRIC_CONNECT = "signalpath_ingest_connect_seconds"
METRIC_UPLOAD = "signalpath_ingest_upload_bits_per_second"
OUT_CHUNK_SIZE = 4096
FLASH_VER = "FMLE/3.0 (compatible; signalpath)"

_REFUSED_CODES = ("NetStream.Publish.BadName", "NetStream.Publish.Rejected", "NetStream.Publish.Denied",
                  "NetConnection.Connect.Rejected")


class RtmpProbeConfig(StrictModel):
    """What one RTMP ingest probe does (strict, frozen; defaults here)."""

    publish: bool = False
    publish_seconds: float = Field(default=2.0, gt=0, le=30)
    target_bitrate: int = Field(default=500_000, ge=50_000, le=50_000_000, description="bits/s of the test stream")
    stat_url: str | None = None
    av_sync_fault_seconds: float = Field(default=AV_SYNC_FAULT_S, gt=0, description="THRESHOLDS.md A/V sync fault (200 ms)")


# ----------------------------------------------------------------------------- the probe


class _Attempt:
    def __init__(self, target: ProbeTarget, ctx: ProbeContext) -> None:
        self.t = target
        self.ctx = ctx
        self.cfg: RtmpProbeConfig = target.config if target.config is not None else RtmpProbeConfig()
        self.labels = {"stream": target.stream, "stage": STAGE, "component": target.component}
        self.result = ProbeResult()
        self.secrets: list[str] = []
        self.deadline = own_deadline(ctx)  # room to close and report after a timed-out step
        self.stat_done = False  # with publish, /stat is read mid-publish (our publisher visible)

    # -- helpers
    def safe(self, text: str) -> str:
        return redact_text(text, self.secrets)

    def remaining(self) -> float:
        return max(0.01, self.deadline - self.ctx.clock())

    async def within(self, aw: Any, what: str) -> Any:
        try:
            async with asyncio.timeout(self.remaining()):
                return await aw
        except TimeoutError:
            raise RtmpError(Failure.TIMEOUT, f"timed out during {what}", Fault.UNREACHABLE) from None

    def phase(self, name: str, start_wall: float, t0: float, t1: float, error: str | None = None,
              attrs: Mapping[str, Any] | None = None) -> None:
        seconds = t1 - t0
        if error is None:
            self.result.samples.append(Sample(METRIC_CONNECT, {**self.labels, "phase": name}, seconds))
            self.result.figures[f"{name}_seconds"] = round(seconds, 6)
        self.result.spans.append(SpanRecord(
            name=f"rtmp {name}", start_ns=int(start_wall * 1e9), end_ns=int((start_wall + seconds) * 1e9),
            attributes={"signalpath.stage": STAGE, "signalpath.phase": name, **(attrs or {})},
            error=self.safe(error) if error else None))

    # -- the attempt
    async def run(self) -> ProbeResult:
        url = self.t.url or ""
        ingest_state = State.OK
        ingest_fault: Fault | None = None
        ingest_detail = "ingest accepted the connection"
        loose_key = _app_key_loose(url)[1]
        self.secrets = [loose_key] if loose_key else []  # whatever the scheme, the last segment is masked
        try:
            u = parse_rtmp_url(url)
            if u.key:
                self.secrets += [u.key, u.key.split("?", 1)[0]]
            await self.session(u)
            if self.cfg.publish:
                ingest_detail = self.result.detail or "ingest accepted a test publish"
        except RtmpError as exc:
            self.result.failure = exc.failure
            self.result.detail = self.safe(exc.detail)
            ingest_state, ingest_fault = State.DOWN, exc.fault
            ingest_detail = f"ingest {redact_url(url)}: {self.result.detail}"
            u = None
        if self.result.detail == "" and self.result.failure is None:
            self.result.detail = ingest_detail
        figures = {k: float(v) for k, v in self.result.figures.items() if isinstance(v, (int, float))}
        if self.result.figures.get("upload_ratio", 1.0) < 0.8 and ingest_state is State.OK:
            ingest_state, ingest_fault = State.DEGRADED, Fault.UPLOAD_SLOW
            ingest_detail = "the test publish could not keep up with real time"
        self.result.evidence.insert(0, Evidence(STAGE, self.t.component, ingest_state, ingest_fault,
                                             self.safe(ingest_detail), None, figures))
        if self.cfg.stat_url and not self.stat_done:
            app, key = (u.app, u.key) if u is not None else _app_key_loose(url)
            await self.stat(app, key)
        return self.result

    async def session(self, u: RtmpUrl) -> None:
        conn: ChunkConnection | None = None
        try:
            conn = await self.connect_tcp(u)
            await self.handshake(conn)
            conn.set_chunk_size(OUT_CHUNK_SIZE)
            if self.cfg.publish:
                window = max(16_384, self.cfg.target_bitrate // 8 // 4)
                conn.send(2, MSG_WINDOW_ACK_SIZE, struct.pack(">I", window))
            await self.rtmp_connect(conn, u)
            stream_id = await self.create_stream(conn)
            if self.cfg.publish:
                if not u.key:
                    raise RtmpError(Failure.PROTOCOL_ERROR, "publish needs a stream key in the URL",
                                    Fault.PROTOCOL_ERROR)
                await self.publish(conn, u, stream_id)
            conn.command("deleteStream", 0, None, stream_id)
            with _suppress_io():
                await self.within(conn.writer.drain(), "deleteStream")
        finally:
            if conn is not None:
                await conn.close()

    async def connect_tcp(self, u: RtmpUrl) -> ChunkConnection:
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        ssl_ctx = ssl.create_default_context() if u.scheme == "rtmps" else None
        try:
            reader, writer = await self.within(
                asyncio.open_connection(u.host, u.port, ssl=ssl_ctx, server_hostname=u.host if ssl_ctx else None),
                "TCP connect")
        except RtmpError as exc:
            self.phase("tcp", wall, t0, self.ctx.clock(), exc.detail)
            raise
        except ConnectionRefusedError:
            err = RtmpError(Failure.CONNECTION_REFUSED, "connection refused", Fault.UNREACHABLE)
        except socket.gaierror:
            err = RtmpError(Failure.DNS_ERROR, HOST_NOT_RESOLVED, Fault.UNREACHABLE)
        except ssl.SSLError as exc:
            err = RtmpError(Failure.TLS_ERROR, f"TLS: {exc.__class__.__name__}", Fault.UNREACHABLE)
        except OSError as exc:
            err = RtmpError(Failure.CONNECTION_FAILED, f"cannot connect: {exc.strerror or type(exc).__name__}",
                            Fault.UNREACHABLE)
        else:
            self.phase("tcp", wall, t0, self.ctx.clock(), attrs={"server.port": u.port})
            sock = writer.get_extra_info("socket")
            if sock is not None:  # small commands must not wait for delayed ACKs (Nagle)
                with _suppress_io():
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return ChunkConnection(reader, writer)
        self.phase("tcp", wall, t0, self.ctx.clock(), err.detail)
        raise err

    async def handshake(self, conn: ChunkConnection) -> None:
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        c1 = struct.pack(">II", int(time.monotonic() * 1000) & 0xFFFFFFFF, 0) + os.urandom(HANDSHAKE_SIZE - 8)
        try:
            conn.writer.write(b"\x03" + c1)
            s0s1 = await self.within(self._read_exact(conn, 1 + HANDSHAKE_SIZE), "handshake")
            if s0s1[0] != 3:
                raise RtmpError(Failure.PROTOCOL_ERROR, f"server RTMP version {s0s1[0]}, want 3",
                                Fault.PROTOCOL_ERROR)
            conn.writer.write(s0s1[1:])  # C2 echoes S1
            await self.within(self._read_exact(conn, HANDSHAKE_SIZE), "handshake")
        except RtmpError as exc:
            self.phase("handshake", wall, t0, self.ctx.clock(), exc.detail)
            raise
        self.phase("handshake", wall, t0, self.ctx.clock())

    @staticmethod
    async def _read_exact(conn: ChunkConnection, n: int) -> bytes:
        try:
            return await conn._read(n)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            raise RtmpError(Failure.READ_FAILED, "connection closed by the server", Fault.UNREACHABLE) from None

    async def await_reply(self, conn: ChunkConnection, what: str, txn: float | None,
                          on_close: RtmpError) -> list[Any]:
        """Read until a command answering ``txn`` (or, with None, an ``onStatus``)."""
        while True:
            try:
                msg = await self.within(conn.read_message(), what)
            except (asyncio.IncompleteReadError, ConnectionError):
                raise on_close from None
            if msg.type not in (MSG_COMMAND_AMF0, MSG_COMMAND_AMF3):
                continue
            payload = msg.payload[1:] if msg.type == MSG_COMMAND_AMF3 else msg.payload
            try:
                values = amf0_decode(payload)
            except ValueError:
                raise RtmpError(Failure.PROTOCOL_ERROR, f"malformed AMF0 reply to {what}", Fault.PROTOCOL_ERROR) \
                    from None
            if not values or not isinstance(values[0], str):
                continue
            name = values[0]
            if txn is None and name == "onStatus":
                return values
            if txn is not None and name in ("_result", "_error") and len(values) > 1 and values[1] == txn:
                return values

    async def rtmp_connect(self, conn: ChunkConnection, u: RtmpUrl) -> None:
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        conn.command("connect", 1, {"app": u.app, "type": "nonprivate", "flashVer": FLASH_VER, "tcUrl": u.tc_url})
        try:
            reply = await self.await_reply(conn, "connect", 1, RtmpError(
                Failure.AUTH_REFUSED, "the server closed the connection in answer to connect", Fault.AUTH_REFUSED))
            if reply[0] == "_error":
                code = _status_code(reply)
                failure = Failure.AUTH_REFUSED if code in _REFUSED_CODES else Failure.PROTOCOL_ERROR
                raise RtmpError(failure, f"connect refused: {code or 'error'}",
                                Fault.AUTH_REFUSED if failure is Failure.AUTH_REFUSED else Fault.PROTOCOL_ERROR)
        except RtmpError as exc:
            self.phase("connect", wall, t0, self.ctx.clock(), exc.detail)
            raise
        self.phase("connect", wall, t0, self.ctx.clock(), attrs={"rtmp.status": _status_code(reply) or ""})

    async def create_stream(self, conn: ChunkConnection) -> int:
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        conn.command("createStream", 2, None)
        try:
            reply = await self.await_reply(conn, "createStream", 2, RtmpError(
                Failure.READ_FAILED, "the server closed the connection in answer to createStream", Fault.UNREACHABLE))
            if reply[0] != "_result" or len(reply) < 4 or not isinstance(reply[3], float):
                raise RtmpError(Failure.PROTOCOL_ERROR, "createStream failed", Fault.PROTOCOL_ERROR)
        except RtmpError as exc:
            self.phase("create_stream", wall, t0, self.ctx.clock(), exc.detail)
            raise
        self.phase("create_stream", wall, t0, self.ctx.clock())
        return int(reply[3])

    async def publish(self, conn: ChunkConnection, u: RtmpUrl, stream_id: int) -> None:
        cfg = self.cfg
        cache_key = ("rtmp_test_stream", cfg.publish_seconds, cfg.target_bitrate)
        cached = self.ctx.state.get("test_stream")
        tags = cached[1] if cached and cached[0] == cache_key else None
        if tags is None:
            try:
                tags = await self.within(asyncio.to_thread(encode_test_stream, cfg.publish_seconds,
                                                           cfg.target_bitrate), "test-stream encoding")
            except (ValueError, OSError, ImportError) as exc:
                raise RtmpError(Failure.MEDIA_ERROR, f"cannot encode the test stream: {type(exc).__name__}",
                                Fault.PROTOCOL_ERROR) from None
            self.ctx.state["test_stream"] = (cache_key, tags)  # encoded once per target
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        conn.command("publish", 0, None, u.key, "live", stream_id=stream_id, csid=8)
        refused = RtmpError(Failure.AUTH_REFUSED, "stream key refused: the server closed the connection "
                            "in answer to publish", Fault.AUTH_REFUSED)
        try:
            reply = await self.await_reply(conn, "publish", None, refused)
            code = _status_code(reply)
            if code != "NetStream.Publish.Start":
                failure = Failure.AUTH_REFUSED if code in _REFUSED_CODES or "Publish" in (code or "") \
                    else Failure.PROTOCOL_ERROR
                raise RtmpError(failure, f"stream key refused: {code or 'no status code'}", Fault.AUTH_REFUSED
                                if failure is Failure.AUTH_REFUSED else Fault.PROTOCOL_ERROR)
        except RtmpError as exc:
            self.phase("publish", wall, t0, self.ctx.clock(), exc.detail)
            raise
        self.phase("publish", wall, t0, self.ctx.clock())
        await self.send_media(conn, u, stream_id, tags)

    async def send_media(self, conn: ChunkConnection, u: RtmpUrl, stream_id: int,
                         tags: list[tuple[int, int, bytes]]) -> None:
        """Send the tags paced at real time; read acknowledgements meanwhile; with
        ``stat_url``, read /stat half-way (the ingest should list this publisher)."""
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        start_out = conn.bytes_out
        payload_bytes = 0
        reader_task = asyncio.create_task(self._drain_incoming(conn))
        stat_task: asyncio.Task[None] | None = None
        half = (tags[-1][1] / 2000.0) if tags else 0.0
        error: str | None = None
        send_elapsed = 0.0
        try:
            for kind, ts, body in tags:
                if self.cfg.stat_url and stat_task is None and ts / 1000.0 >= half:
                    stat_task = asyncio.create_task(self.stat(u.app, u.key))
                lag = ts / 1000.0 - (self.ctx.clock() - t0)
                if lag > 0:
                    await asyncio.sleep(min(lag, self.remaining()))
                conn.send(6 if kind == MSG_VIDEO else 4, kind, body, stream_id=stream_id, timestamp=ts)
                payload_bytes += len(body)
                await self.within(conn.writer.drain(), "publish")
                if reader_task.done():
                    break
            send_elapsed = self.ctx.clock() - t0
            if stat_task is not None:
                await self.within(asyncio.shield(stat_task), "/stat fetch")
            conn.command("FCUnpublish", 0, None, stream_id=stream_id)
            await self.within(conn.writer.drain(), "publish")
            await asyncio.sleep(min(0.2, self.remaining()))  # let the last acknowledgement arrive
        except (ConnectionError, OSError):
            error = "connection dropped while publishing"
        finally:
            for task in (reader_task, stat_task):
                if task is not None and not task.done():
                    task.cancel()
            for task in (reader_task, stat_task):
                if task is not None:
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):
                        pass
            self.stat_done = bool(stat_task is not None and stat_task.done() and not stat_task.cancelled()
                                  and stat_task.exception() is None)
        elapsed = max(1e-6, send_elapsed or (self.ctx.clock() - t0))
        media_seconds = max(1e-3, (tags[-1][1] / 1000.0) if tags else 0.0)
        sent = conn.bytes_out - start_out
        upload = sent * 8 / elapsed
        encoded = payload_bytes * 8 / media_seconds
        self.result.samples.append(Sample(METRIC_UPLOAD, dict(self.labels), upload))
        self.result.figures.update({
            "upload_bits_per_second": round(upload, 1),
            "encoded_bits_per_second": round(encoded, 1),
            "target_bits_per_second": float(self.cfg.target_bitrate),
            "sent_bytes": float(sent),
            "acknowledged_bytes": float(conn.acked_by_peer),
            "upload_ratio": round(media_seconds / elapsed, 3),  # < 1: slower than real time
        })
        self.result.spans.append(SpanRecord(
            name="rtmp upload", start_ns=int(wall * 1e9), end_ns=int((wall + elapsed) * 1e9),
            attributes={"signalpath.stage": STAGE, "signalpath.bytes": sent,
                        "signalpath.acknowledged_bytes": conn.acked_by_peer},
            error=error))
        if error:
            raise RtmpError(Failure.READ_FAILED, error, Fault.UNREACHABLE)
        self.result.detail = (f"published {media_seconds:.1f} s at {upload / 1000:.0f} kbit/s; "
                              f"server acknowledged {conn.acked_by_peer} bytes")

    @staticmethod
    async def _drain_incoming(conn: ChunkConnection) -> None:
        while True:
            await conn.read_message()

    async def stat(self, app: str, key: str | None) -> None:
        """nginx-rtmp /stat → figures + ingest evidence (component ``<component>``)."""
        url = self.cfg.stat_url or ""
        wall, t0 = self.ctx.wall(), self.ctx.clock()
        stream_name = (key or "").split("?", 1)[0]
        body, err = await self._fetch_stat(url)
        view: StatView | None = None
        if err is None:
            try:
                view = parse_stat(body, app, stream_name)
            except ValueError as exc:
                err = str(exc)
        self.result.spans.append(SpanRecord(
            name="rtmp stat", start_ns=int(wall * 1e9), end_ns=int((wall + self.ctx.clock() - t0) * 1e9),
            attributes={"signalpath.stage": STAGE, "url.full": redact_url(url)},
            error=self.safe(err) if err else None))
        if view is None:
            self.result.evidence.append(Evidence(STAGE, self.t.component, State.UNKNOWN, None,
                                                 self.safe(f"ingest statistics unavailable: {err}")))
            return
        figures: dict[str, float] = {"publisher_present": 1.0 if view.publisher else 0.0,
                                     "bw_in_bits_per_second": view.bw_in_bits_per_second,
                                     "stat_clients": float(view.clients)}
        if view.dropped_frames is not None:
            figures["dropped_frames"] = view.dropped_frames
        if view.av_sync_seconds is not None:
            figures["av_sync_seconds"] = view.av_sync_seconds
        self.result.figures.update({f"stat_{k}" if not k.startswith("stat_") else k: v for k, v in figures.items()})
        prev_dropped = self.ctx.state.get("stat_dropped")
        self.ctx.state["stat_dropped"] = view.dropped_frames
        state, fault, detail = judge_stat(view, prev_dropped, self.cfg.av_sync_fault_seconds)
        self.result.evidence.append(Evidence(STAGE, self.t.component, state, fault, detail, None, figures))

    async def _fetch_stat(self, url: str) -> tuple[str, str | None]:
        http = self.ctx.http
        if http is None:
            from probes.net.httpfetch import Fetcher

            async with Fetcher() as fetcher:
                return await self._get_stat(fetcher, url)
        return await self._get_stat(http, url)

    async def _get_stat(self, http: Any, url: str) -> tuple[str, str | None]:
        try:
            fr = await self.within(http.get(url, max_bytes=STAT_MAX_BYTES), "/stat fetch")
        except RtmpError as exc:
            return "", exc.detail
        if fr.failure is not None:
            return "", f"{fr.failure}: {fr.detail}"
        return fr.body.decode("utf-8", "replace"), None


def _status_code(values: list[Any]) -> str | None:
    for v in values[2:]:
        if isinstance(v, dict) and isinstance(v.get("code"), str):
            return v["code"]
    return None


def _app_key_loose(url: str) -> tuple[str, str | None]:
    try:
        segments = [unquote(s) for s in urlsplit(url).path.split("/") if s]
    except ValueError:
        return "", None
    if len(segments) >= 2:
        return "/".join(segments[:-1]), segments[-1]
    return (segments[0] if segments else ""), None


class _suppress_io:
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: Any, ev: Any, tb: Any) -> bool:
        return et is not None and issubclass(et, (OSError, ConnectionError, RtmpError))


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One RTMP ingest attempt against ``target.url`` (see the module docstring)."""
    return await _Attempt(target, ctx).run()
