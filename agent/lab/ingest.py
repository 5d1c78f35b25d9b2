"""The ingest: an in-process hand-off from the studio encoder to the transcoder.

Choice (documented in ``agent/lab/__init__.py``): encoded packets pass through an
in-memory queue instead of a real RTMP connection. It fails the ways an ingest does:

- ``ingest_drop``: the server drops the publisher; packets are discarded, the stat
  page shows no publisher, the transcoder starves;
- ``ingest_latency``: every packet is handed on N ms late (order kept);
- ``ingest_starve``: input arrives at a fraction of real time (an uplink below the
  stream's bitrate), so the delay grows for as long as the fault lasts.

``jitter`` (the lab's chronic mode, agent/lab/chronic.py) adds a random delay to every
frame's hand-on, order kept; it is background, not a fault.

``stats()`` is what an ingest server's stat page (nginx-rtmp ``/stat``) would show.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from .faults import FaultBook
from .studio import MediaPacket

PUBLISH_TIMEOUT_S = 1.0  # no packet for this long: the publisher is considered gone


class Ingest:
    def __init__(self, book: FaultBook, deliver: Callable[[list[MediaPacket], float], None], *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 jitter: Callable[[], float] | None = None) -> None:
        self._book = book
        self._jitter = jitter
        self._deliver = deliver
        self._clock = clock
        self._wall = wall
        self._queue: collections.deque[tuple[float, list[MediaPacket]]] = collections.deque()
        self._wake = asyncio.Event()
        self._last_due = 0.0
        self._last_push = -1e9
        self._published = False
        self.bytes_in = 0
        self.packets_in = 0
        self.video_frames_in = 0
        self.dropped_packets = 0
        self.publishes = 0
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self.last_delay_s = 0.0
        self.last_capture_to_handoff_s: float | None = None  # newest video packet: hand-on - capture
        # called with every batch as it is handed on (the playback side, agent/lab/ingest_live.py)
        self.listeners: list[Callable[[list[MediaPacket]], None]] = []

    def unpublish(self) -> None:
        """The publisher disconnected (encoder stopped)."""
        self._published = False

    def push(self, packets: list[MediaPacket]) -> None:
        now = self._clock()
        if self._book.active("ingest_drop", "ingest") is not None:
            self.dropped_packets += len(packets)
            self._published = False
            return
        if not self._published:
            self._published = True
            self.publishes += 1
        self._last_push = now
        size = sum(len(p.data) for p in packets)
        self.bytes_in += size
        self.packets_in += len(packets)
        self.video_frames_in += sum(1 for p in packets if p.kind == "video")
        self._recent.append((now, size))
        while self._recent and now - self._recent[0][0] > 2.0:
            self._recent.popleft()
        due = now
        lat = self._book.active("ingest_latency", "ingest")
        if lat is not None:
            due = now + lat.params["ms"] / 1000.0
        starve = self._book.active("ingest_starve", "ingest")
        if starve is not None:
            t0 = now - (self._wall() - starve.started_at)
            due = t0 + (now - t0) / starve.params["rate"]
        if self._jitter is not None:
            due += self._jitter()
        due = max(due, self._last_due)
        self._last_due = due
        self._queue.append((due, packets))
        self._wake.set()

    async def run(self) -> None:
        """Deliver queued packets when due (a task owned by the lab)."""
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, packets = self._queue[0]
            wait = due - self._clock()
            if wait > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            self._queue.popleft()
            wall = self._wall()
            for p in packets:
                p.delivered_wall = wall
            if packets:
                self.last_delay_s = wall - packets[0].produced_wall
                video = [p for p in packets if p.kind == "video"]
                if video:
                    self.last_capture_to_handoff_s = wall - video[-1].capture_wall
            self._deliver(packets, self._clock())
            for listener in self.listeners:
                listener(packets)

    def publishing(self) -> bool:
        return self._published and self._clock() - self._last_push < PUBLISH_TIMEOUT_S

    def stats(self) -> dict:
        now = self._clock()
        window = sum(s for _, s in self._recent if now - _ <= 2.0)
        return {
            "publishing": self.publishing(),
            "publishes": self.publishes,
            "bytes_in": self.bytes_in,
            "packets_in": self.packets_in,
            "video_frames_in": self.video_frames_in,
            "bitrate_bps": int(window * 8 / 2.0),
            "last_packet_age_s": round(now - self._last_push, 3) if self.packets_in else None,
            "queued_packets": sum(len(p) for _, p in self._queue),
        }
