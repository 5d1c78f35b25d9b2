"""The lab's WebRTC endpoint: a WHIP ingest (RFC 9725) and a WHEP server, on aiortc + aiohttp.

``POST /whip/<stream>`` (``application/sdp`` offer) → ``201 Created``, the answer and
``Location: /resource/<id>``; the published video track is consumed (frames counted,
the latency beacon read) and relayed. ``POST /whep/<stream>`` (a recvonly offer) →
``201`` with an answer sending video: the stream's :class:`FrameFeed` if it has one
(the embedded lab's studio), else the track published on ``/whip/<stream>`` if one is
live, else a synthetic beacon-stamped pattern.
``DELETE /resource/<id>`` ends a session (``204``; ``404`` if unknown). With a
``token`` set, POSTs need ``Authorization: Bearer <token>``.

Faults (:meth:`WebRtcEndpoint.set_faults`, all off by default):

- ``refuse``: POSTs answer ``403``;
- ``stall``: media stops: a WHIP session's incoming RTP is discarded (so no receiver
  report is ever sent) and the WHEP source stops producing frames;
- ``drop``: a fraction (0-1) of RTP packets is discarded — incoming on WHIP sessions,
  outgoing on WHEP sessions (seeded, reproducible);
- ``ice_fail``: the answer carries no ICE candidate, so connectivity checks cannot succeed;
- ``delay_s``: every incoming RTP/RTCP packet of a WHIP session, and every outgoing
  RTP packet of a WHEP session, is handed on ``delay_s`` later.

There is no netem in this kernel (ENVIRONMENT.md), so the faults act inside the
endpoint, on each session's DTLS transport: its ``_handle_rtp_data`` /
``_handle_rtcp_data`` (packets after SRTP decryption) and ``_send_rtp`` (before SRTP
encryption) are wrapped *per instance*. That is this module's documented seam into
aiortc 1.16 internals; nothing global is patched.

Inside the embedded lab (:class:`agent.lab.Lab` with ``LabConfig.webrtc``) the WHEP
source of the lab's stream is a :class:`FrameFeed` the lab's studio pushes its camera
frames into (beacon-stamped when the lab stamps beacons, stopped by ``encoder_stop``),
and the faults come from the lab's fault book per side (``faults_for("whip"|"whep")``,
evaluated on every packet, so a fault's start and end are the book's exact times).
A feed costs nothing while no WHEP session plays it (:attr:`FrameFeed.wanted`).

Host ICE candidates are ``ice_host_addresses`` (default 127.0.0.1: aioice skips
loopback, see :func:`probes.webrtc.ice_host_addresses`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from probes.core import beacon
from probes.core.frames import luma_plane as _luma
from probes.net.webrtc_session import close_peer, ice_host_addresses
from probes.net.webrtc_session import make_beacon_track as _make_beacon_track

DELETED_KEPT = 16
"""Ended sessions the endpoint keeps for tests (``WebRtcEndpoint.deleted``)."""


@dataclass(slots=True)
class WebRtcFaults:
    refuse: bool = False
    stall: bool = False
    drop: float = 0.0
    delay_s: float = 0.0
    ice_fail: bool = False


@dataclass(slots=True)
class Session:
    id: str
    kind: str  # whip | whep
    stream: str
    pc: Any
    created: float
    frames: int = 0
    beacon_latency_s: list[float] = field(default_factory=list)
    deleted: bool = False
    tasks: set = field(default_factory=set)
    connected: asyncio.Event = field(default_factory=asyncio.Event)  # ICE and DTLS done (connectionState)


_FEED_QUEUE = 2  # frames a slow WHEP session may lag before the oldest is dropped (live, not buffered)


class FrameFeed:
    """Raw I420 frames pushed by a live source (the lab's studio), fanned out to WHEP sessions.

    ``push`` is called on the event loop; each subscribed track keeps at most
    ``_FEED_QUEUE`` frames and drops the oldest, like a live source that does not wait.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._queues: set[asyncio.Queue] = set()
        self.frames_in = 0
        self._t0: float | None = None

    @property
    def wanted(self) -> bool:
        """True while at least one WHEP session plays this feed (else pushing is pointless)."""
        return bool(self._queues)

    def push(self, i420: np.ndarray, capture_wall: float) -> None:
        """One frame: a ``(height * 3 / 2, width)`` uint8 I420 array and its capture wall time."""
        self.frames_in += 1
        if self._t0 is None:
            self._t0 = capture_wall
        for q in self._queues:
            if q.full():
                q.get_nowait()
            q.put_nowait((i420, capture_wall))

    def track(self) -> Any:
        import av
        from aiortc import MediaStreamTrack

        feed = self
        queue: asyncio.Queue = asyncio.Queue(_FEED_QUEUE)
        self._queues.add(queue)

        class FeedTrack(MediaStreamTrack):
            kind = "video"

            async def recv(self) -> Any:
                img, capture = await queue.get()
                frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
                frame.pts = int(round((capture - (feed._t0 or capture)) * 90_000))
                frame.time_base = fractions.Fraction(1, 90_000)
                return frame

            def stop(self) -> None:
                feed._queues.discard(queue)
                super().stop()

        return FeedTrack()


class _StallableTrack:
    """Wraps a source track: while the endpoint's ``stall`` fault is on, no frame comes out."""

    def __new__(cls, source: Any, endpoint: WebRtcEndpoint) -> Any:
        from aiortc import MediaStreamTrack

        class Stallable(MediaStreamTrack):
            kind = "video"

            async def recv(self) -> Any:
                while True:
                    frame = await source.recv()
                    if not endpoint.faults_of("whep").stall:
                        return frame

            def stop(self) -> None:
                super().stop()
                source.stop()

        return Stallable()


class WebRtcEndpoint:
    """A standalone WHIP + WHEP server: ``async with WebRtcEndpoint() as ep: ep.whip_url()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 ice_host_addresses: tuple[str, ...] = ("127.0.0.1",), width: int = 320, height: int = 180,
                 fps: int = 15, seed: int = 1, wall=time.time,
                 faults_for: Callable[[str], WebRtcFaults] | None = None) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.ice_addresses = tuple(ice_host_addresses)
        self.width, self.height, self.fps = width, height, fps
        self.faults = WebRtcFaults()
        self._faults_for = faults_for
        self.feeds: dict[str, FrameFeed] = {}
        self.sessions: dict[str, Session] = {}
        # the last sessions ended, for tests to read (bounded: a peer connection holds ~200 kB, and
        # a lab answering a WHEP probe every 30 s kept every one of them — a soak found it)
        self.deleted: collections.deque[Session] = collections.deque(maxlen=DELETED_KEPT)
        self._rng = random.Random(seed)
        self._wall = wall
        self._runner: web.AppRunner | None = None
        self._relays: dict[str, tuple[Any, Any]] = {}  # stream -> (MediaRelay, published track)

    # -- lifecycle
    async def start(self) -> WebRtcEndpoint:
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_post("/whip/{stream}", self._whip)
        app.router.add_post("/whep/{stream}", self._whep)
        app.router.add_delete("/resource/{id}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for sid in list(self.sessions):
            await self._end(sid)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebRtcEndpoint:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def whip_url(self, stream: str = "main") -> str:
        return f"{self.base_url()}/whip/{stream}"

    def whep_url(self, stream: str = "main") -> str:
        return f"{self.base_url()}/whep/{stream}"

    def faults_of(self, kind: str) -> WebRtcFaults:
        """The faults in effect now for ``kind`` (``whip`` or ``whep``)."""
        return self._faults_for(kind) if self._faults_for is not None else self.faults

    def add_feed(self, stream: str, width: int, height: int) -> FrameFeed:
        """Make WHEP sessions of ``stream`` play frames pushed into the returned feed."""
        feed = self.feeds[stream] = FrameFeed(width, height)
        return feed

    def set_faults(self, **changes: Any) -> None:
        """E.g. ``set_faults(drop=0.2)``; ``set_faults()`` with no argument clears every fault."""
        if not changes:
            self.faults = WebRtcFaults()
            return
        for k, v in changes.items():
            if not hasattr(self.faults, k):
                raise KeyError(f"unknown WebRTC fault {k!r}")
            setattr(self.faults, k, v)

    # -- HTTP
    def _check(self, request: web.Request, kind: str) -> web.Response | None:
        if self.faults_of(kind).refuse:
            return web.Response(status=403, text="refused (lab fault)")
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="bearer token required",
                                headers={"WWW-Authenticate": 'Bearer realm="lab"'})
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="application/sdp expected")
        return None

    async def _negotiate(self, request: web.Request, kind: str) -> web.Response:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        refused = self._check(request, kind)
        if refused is not None:
            return refused
        offer = await request.text()
        stream = request.match_info["stream"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sess = Session(uuid.uuid4().hex, kind, stream, pc, time.monotonic())
        self.sessions[sess.id] = sess
        pc.on("connectionstatechange", lambda: sess.connected.set() if pc.connectionState == "connected" else None)
        try:
            if kind == "whip":
                pc.on("track", lambda track: self._consume(sess, track))
                await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            else:
                await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                pc.addTrack(_StallableTrack(self._source(stream), self))
            with ice_host_addresses(self.ice_addresses):
                await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, AssertionError, KeyError) as exc:
            await self._end(sess.id)
            return web.Response(status=400, text=f"bad offer: {type(exc).__name__}")
        self._install_faults(sess)
        sdp = pc.localDescription.sdp
        if self.faults_of(kind).ice_fail:
            sdp = "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith("a=candidate:"))
        return web.Response(status=201, body=sdp.encode(), content_type="application/sdp",
                            headers={"Location": f"/resource/{sess.id}"})

    async def _whip(self, request: web.Request) -> web.Response:
        return await self._negotiate(request, "whip")

    async def _whep(self, request: web.Request) -> web.Response:
        return await self._negotiate(request, "whep")

    async def _delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.sessions:
            return web.Response(status=404)
        await self._end(sid)
        return web.Response(status=204)

    async def _end(self, sid: str) -> None:
        sess = self.sessions.pop(sid, None)
        if sess is None:
            return
        sess.deleted = True
        self.deleted.append(sess)
        for t in list(sess.tasks):
            t.cancel()
        await asyncio.gather(*sess.tasks, return_exceptions=True)
        relay = self._relays.get(sess.stream)
        if sess.kind == "whip" and relay is not None and getattr(relay[1], "_signalpath_session", None) == sid:
            self._relays.pop(sess.stream, None)
        await close_peer(sess.pc)

    # -- media
    def _source(self, stream: str) -> Any:
        feed = self.feeds.get(stream)
        if feed is not None:
            return feed.track()
        relay = self._relays.get(stream)
        if relay is not None:
            return relay[0].subscribe(relay[1], buffered=False)
        return _make_beacon_track(self.width, self.height, self.fps, self._wall)

    def _consume(self, sess: Session, track: Any) -> None:
        if track.kind != "video":
            return

        async def drain() -> None:
            from aiortc.contrib.media import MediaRelay
            from aiortc.mediastreams import MediaStreamError

            # relayed and read once connected: aiortc ends a received track only after its receiver
            # started, so a relay of a session that never connects (a WHIP signalling check, an ICE
            # failure) waited forever and was destroyed pending ("Task was destroyed but it is pending")
            await sess.connected.wait()
            relay = MediaRelay()
            track._signalpath_session = sess.id
            self._relays[sess.stream] = (relay, track)
            sink = relay.subscribe(track, buffered=False)
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await sink.recv()
                    sess.frames += 1
                    if sess.frames % 5 == 1:
                        captured = beacon.read(_luma(frame))
                        if captured is not None:
                            sess.beacon_latency_s.append(self._wall() - captured)

        self._spawn(sess, drain())

    def _spawn(self, sess: Session, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        sess.tasks.add(task)
        task.add_done_callback(sess.tasks.discard)

    # -- faults (per-instance wrappers on the session's DTLS transport; see the module docstring)
    def _install_faults(self, sess: Session) -> None:
        dtls = None
        for tr in sess.pc.getTransceivers():
            dtls = tr.receiver.transport if sess.kind == "whip" else tr.sender.transport
            if dtls is not None:
                break
        if dtls is None:
            return
        kind = sess.kind

        def later(coro_fn: Any, *args: Any) -> None:
            async def run() -> None:
                await asyncio.sleep(self.faults_of(kind).delay_s)
                with contextlib.suppress(Exception):
                    await coro_fn(*args)
            self._spawn(sess, run())

        if sess.kind == "whip":
            rtp_in, rtcp_in = dtls._handle_rtp_data, dtls._handle_rtcp_data

            async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
                f = self.faults_of("whip")
                if f.stall or (f.drop and self._rng.random() < f.drop):
                    return
                if f.delay_s > 0:
                    later(rtp_in, data, arrival_time_ms + int(f.delay_s * 1000))
                    return
                await rtp_in(data, arrival_time_ms)

            async def handle_rtcp(data: bytes) -> None:
                if self.faults_of("whip").delay_s > 0:
                    later(rtcp_in, data)
                    return
                await rtcp_in(data)

            dtls._handle_rtp_data = handle_rtp
            dtls._handle_rtcp_data = handle_rtcp
        else:
            send = dtls._send_rtp

            async def send_rtp(data: bytes) -> None:
                is_rtcp = len(data) > 1 and 192 <= data[1] <= 223
                if not is_rtcp:
                    f = self.faults_of("whep")
                    if f.drop and self._rng.random() < f.drop:
                        return
                    if f.delay_s > 0:
                        later(send, data)
                        return
                await send(data)

            dtls._send_rtp = send_rtp
