"""The ingest's playback side: the live stream as HTTP-FLV, as real ingests offer it.

Real ingest servers let a monitor pull the stream they receive: nginx-rtmp over
``rtmp://host/app/key``, nginx-http-flv-module, SRS and node-media-server also over
HTTP-FLV (``GET /live/<key>.flv``). The lab's in-process ingest (agent/lab/ingest.py)
offers the same at ``GET /ingest/live/<stream>.flv`` on the control port, so an ingest
monitor (probes/ingest_monitor.py) can time frames *at the ingest*, after the
``ingest_latency`` / ``ingest_starve`` delay and before the transcoder.

What a client gets: an FLV stream (PyAV's bundled FFmpeg ``flv`` muxer, written packet
by packet, flushed after each one) of the contribution H.264 exactly as the ingest hands
it on, starting at the next keyframe (no GOP cache, like nginx-rtmp: a monitor sees
real-time frames only), with the contribution's AAC audio beside it (the monitor times the
picture's beacon and measures the audio's level). The AAC stream's AudioSpecificConfig is
the one an encoder of the studio's settings writes (AAC-LC, its sample rate, mono), so the
studio's packets pass through unchanged. FFmpeg's muxer interleaves by timestamp: a video
frame waits for audio at least as late, and the AAC encoder's delay (~43 ms) would hold each
frame back until the next one's audio arrived, adding 40 ms to the ingest latency the monitor
times. So the audio's timestamps are moved ``AUDIO_LAG_S`` (0.1 s) later in this feed: each
video frame leaves the moment it arrives, and the monitor (which measures the audio's level and
silence, not A/V sync) hears the same samples 0.1 s later on the media timeline.

Cost: nothing while no client is connected (:meth:`LiveFlv.offer` returns at once);
with a client, one FLV mux per packet on the event loop (a memory copy; the frames are
already encoded). Each client has a bounded queue (``queue_batches``, ~4 s at 25 fps):
a client that does not read fast enough is disconnected rather than buffered without
bound. :meth:`LiveFlv.close` ends every response, so the control server stops promptly.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from .studio import TS_HZ, MediaPacket

if TYPE_CHECKING:
    import av

log = logging.getLogger("signalpath.lab")

_TB = fractions.Fraction(1, TS_HZ)
_END = None  # queue sentinel: the response ends
AUDIO_LAG_S = 0.1
"""The audio's timestamps in this feed are this much later than the video's (module docstring)."""
_AUDIO_LAG = int(AUDIO_LAG_S * TS_HZ)


class _Writer:
    """A write-only, non-seekable sink for the muxer: chunks collected until drained."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out, self.chunks = b"".join(self.chunks), []
        return out


class _FlvMuxer:
    """FLV muxing of Annex B H.264 packets; ``feed`` returns the bytes to send."""

    def __init__(self, width: int, height: int, fps: int, sample_rate: int = 48_000) -> None:
        import av

        self._sink = _Writer()
        self._out: av.container.OutputContainer = av.open(self._sink, "w", format="flv",
                                                          options={"flush_packets": "1"})
        self._vs = self._out.add_mux_stream("h264", rate=fps, width=width, height=height)
        self._vs.time_base = _TB
        # an AAC encoder stream only for its AudioSpecificConfig: the studio's packets are muxed as they are
        self._as = self._out.add_stream("aac", rate=sample_rate, layout="mono")
        self._as.time_base = _TB
        self._t0: int | None = None
        self._last_audio = -1

    def feed(self, p: MediaPacket) -> bytes:
        import av

        if self._t0 is None:
            self._t0 = p.pts
        pts = p.pts if p.kind == "video" else p.pts + _AUDIO_LAG
        if pts < self._t0:
            return b""  # audio of the moment before the first keyframe
        if p.kind != "video":
            # FLV timestamps only go forward: audio moved back (the end of an av_desync fault, whose
            # shift the studio writes into the timestamps) is dropped until it passes the last one
            if pts <= self._last_audio:
                return b""
            self._last_audio = pts
        pkt = av.Packet(p.data)
        pkt.pts = pkt.dts = pts - self._t0
        pkt.time_base = _TB
        pkt.stream = self._vs if p.kind == "video" else self._as
        if p.keyframe:
            pkt.is_keyframe = True
        self._out.mux(pkt)
        return self._sink.drain()

    def close(self) -> None:
        try:
            self._out.close()
        except Exception:
            pass


class LiveFlv:
    """Fan-out of the ingest's hand-on to HTTP-FLV clients (one bounded queue each)."""

    def __init__(self, stream: str, width: int, height: int, fps: int, *, sample_rate: int = 48_000,
                 queue_batches: int = 100, max_clients: int = 8) -> None:
        self.stream = stream
        self._size = (width, height, fps, sample_rate)
        self._queue_batches = queue_batches
        self._max_clients = max_clients
        self._clients: set[asyncio.Queue[list[MediaPacket] | None]] = set()
        self._closed = False
        self.clients_served = 0
        self.clients_dropped = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def offer(self, packets: list[MediaPacket]) -> None:
        """The ingest handed ``packets`` on (called by :class:`agent.lab.ingest.Ingest`)."""
        if not self._clients:
            return
        if not packets:
            return
        for q in list(self._clients):
            try:
                q.put_nowait(packets)
            except asyncio.QueueFull:  # a slow reader: cut it off, keep the others live
                self._clients.discard(q)
                self.clients_dropped += 1
                _force(q, _END)

    def close(self) -> None:
        """End every response (lab stop)."""
        self._closed = True
        for q in list(self._clients):
            _force(q, _END)
        self._clients.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name != self.stream:
            raise web.HTTPNotFound(reason=f"no live stream {name!r}")
        if self._closed or len(self._clients) >= self._max_clients:
            raise web.HTTPServiceUnavailable(reason="too many live clients")
        q: asyncio.Queue[list[MediaPacket] | None] = asyncio.Queue(self._queue_batches)
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv", "Cache-Control": "no-cache"})
        self._clients.add(q)
        self.clients_served += 1
        mux: _FlvMuxer | None = None
        try:
            await resp.prepare(request)
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        batch = await q.get()
                except TimeoutError:
                    if self._closed or request.transport is None or request.transport.is_closing():
                        break
                    continue  # no publisher right now: keep the connection, as a live server does
                if batch is _END:
                    break
                out = []
                for p in batch:
                    if mux is None:
                        if p.kind != "video" or not p.keyframe:
                            continue  # start at a video keyframe
                        mux = _FlvMuxer(*self._size)
                    out.append(mux.feed(p))
                data = b"".join(out)
                if data:
                    await resp.write(data)
        except ConnectionError:
            pass  # the client went away
        finally:
            self._clients.discard(q)
            if mux is not None:
                mux.close()
        return resp


def _force(q: asyncio.Queue[list[MediaPacket] | None], item: list[MediaPacket] | None) -> None:
    """Put ``item`` even into a full queue (dropping the oldest batch)."""
    while True:
        try:
            q.put_nowait(item)
            return
        except asyncio.QueueFull:
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                pass
