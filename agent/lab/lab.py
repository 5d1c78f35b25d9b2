"""The lab: studio → ingest → transcoder → packager/origin → edges, plus the control API.

One process, loopback only, every port bound as port 0 unless configured. Use::

    async with Lab(LabConfig()) as lab:
        print(lab.origin_url(), lab.edge_url("edge-a"), lab.control_url)
        rec = await lab.inject("edge_stale", "edge-b", for_s=45)

WebRTC (``LabConfig.webrtc``, on by default): a WHIP/WHEP endpoint
(:class:`agent.lab.webrtc.WebRtcEndpoint`) at ``lab.whip_url()`` / ``lab.whep_url()``;
WHEP plays the studio's own camera frames (after the ``stamp`` hook, so beacon-stamped
when the lab stamps beacons; downscaled by ``webrtc_downscale``), copied only while a
WHEP session plays; the ``webrtc_*`` faults of the catalog act on it per side.

Chronic mode (``LabConfig.chronic``, agent/lab/chronic.py): from the start and for good,
the lowest rung's segments run 50-60 % above the BANDWIDTH declared for it, the ingest
hands frames on with up to 0.4 s of random jitter, and every 30-60 s one edge sends
segments slowly for a few seconds. They are background, not faults: the fault book
never records them; ``chronic()`` (``GET /chronic``, and ``truth()["chronic"]``) lists
them with where they act and the finding the agent should raise for each.

Lifecycle: ``start()`` starts the servers, then the tasks (studio, ingest delivery,
transcoder, fault reconciler) and, by default, waits for the first segment of every
rendition. ``stop()`` cancels and awaits every task, closes every socket and shuts
the two codec worker threads down.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .api import control_app
from .chronic import ChronicConditions
from .config import LabConfig
from .errors import FaultRequestError, LabError
from .faults import FaultBook, FaultRecord
from .ingest import Ingest
from .ingest_live import LiveFlv
from .packager import Packager
from .servers import Edge, Listener, origin_app
from .studio import MediaPacket, Stamp, StudioEncoder, StudioFaults
from .transcoder import LadderTranscoder, PartOut, PartsClosed, SegmentOut, TranscodeControl
from .webrtc import FrameFeed, WebRtcEndpoint, WebRtcFaults

log = logging.getLogger("signalpath.lab")

_MAX_BATCH_FRAMES = 25  # catching up after transcoder_slow: at most 1 s of video per thread call
STOP_TIMEOUT_S = 5.0  # the most stop() waits for its cancelled tasks


class Lab:
    """The embedded live pipeline with fault injection and ground truth."""

    def __init__(self, config: LabConfig | None = None, *, stamp: Stamp | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config or LabConfig()
        self._stamp = stamp
        self._wall = wall
        cfg = self.config
        self.book = FaultBook(renditions=[r.name for r in cfg.renditions], edges=cfg.edges, clock=wall,
                              webrtc=cfg.webrtc)
        # chronic conditions (background, never in the book); their schedule starts at start()
        self._chronic = ChronicConditions(cfg) if cfg.chronic else None
        self.packager = Packager(cfg, wall=wall, overshoot=self._chronic.overshoot if self._chronic else None)
        self._origin = Listener(
            origin_app(self.packager, self.book, cfg.stream, cfg.playlist_max_age_s, cfg.segment_max_age_s),
            cfg.host, cfg.origin_port)
        ports = cfg.edge_ports or (0,) * len(cfg.edges)
        self._edges = {name: Edge(name, cfg.host, port, lambda: self._origin.url, self.book, wall=wall,
                                  slow=self._slow_edge(name) if self._chronic else None)
                       for name, port in zip(cfg.edges, ports, strict=True)}
        # the ingest's playback side (HTTP-FLV on the control port), see agent/lab/ingest_live.py
        self.ingest_live = LiveFlv(cfg.stream, cfg.width, cfg.height, cfg.fps, sample_rate=cfg.sample_rate)
        self._control = Listener(control_app(self), cfg.host, cfg.control_port)
        self._webrtc: WebRtcEndpoint | None = None
        self._feed: FrameFeed | None = None
        self._tapped: tuple[np.ndarray, float] | None = None
        if cfg.webrtc:
            self._webrtc = WebRtcEndpoint(
                cfg.host, cfg.webrtc_port, ice_host_addresses=(cfg.host,), wall=wall, faults_for=self._webrtc_faults,
                token=cfg.webrtc_token.get_secret_value() if cfg.webrtc_token is not None else None)
            self._feed = self._webrtc.add_feed(cfg.stream, cfg.width // cfg.webrtc_downscale,
                                               cfg.height // cfg.webrtc_downscale)
        self._tasks: list[asyncio.Task[None]] = []
        self._studio_ex: concurrent.futures.ThreadPoolExecutor | None = None
        self._tx_ex: concurrent.futures.ThreadPoolExecutor | None = None
        self._encoder: StudioEncoder | None = None
        self._transcoder: LadderTranscoder | None = None
        self._ingest: Ingest | None = None
        self._tq: asyncio.Queue[tuple[float, list[MediaPacket]]] | None = None
        self._changed: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._reconcile_lock: asyncio.Lock | None = None
        self._last_segments: dict[str, SegmentOut] = {}
        self._encoder_running = False
        self._errors = 0
        self._started = False

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            raise LabError("lab already started")
        self._started = True
        cfg = self.config
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._reconcile_lock = asyncio.Lock()
        self._tq = asyncio.Queue()
        try:
            self._studio_ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"lab-{cfg.stream}-studio")
            self._tx_ex = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"lab-{cfg.stream}-transcode")
            loop = asyncio.get_running_loop()
            stamp = self._stamp_and_tap if self._feed is not None else self._stamp
            self._encoder = await loop.run_in_executor(self._studio_ex, StudioEncoder, cfg, stamp)
            self._transcoder = await loop.run_in_executor(self._tx_ex, LadderTranscoder, cfg, self._wall)
            if self._chronic is not None:
                self._chronic.start(self._wall())
            self._ingest = Ingest(self.book, self._to_transcoder, wall=self._wall,
                                  jitter=self._chronic.jitter if self._chronic else None)
            self._ingest.listeners.append(self.ingest_live.offer)
            await self._origin.start()
            for edge in self._edges.values():
                await edge.start()
            await self._control.start()
            if self._webrtc is not None:
                await self._webrtc.start()
            for name, coro in (("studio", self._studio_loop()), ("ingest", self._ingest.run()),
                               ("transcode", self._transcode_loop()), ("faults", self._fault_loop())):
                self._tasks.append(asyncio.create_task(coro, name=f"lab-{name}"))
            if cfg.wait_ready:
                await self.wait_ready(cfg.ready_timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until every rendition has published a segment."""
        assert self._ready is not None
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            raise LabError(f"the lab published no segment of every rendition within {timeout:g} s") from None

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            if stuck:  # a task that ignores its cancellation is a bug: name it, never hang on it
                log.error("lab: %d task(s) did not stop within %g s: %s", len(stuck), STOP_TIMEOUT_S,
                          ", ".join(sorted(t.get_name() for t in stuck)))
        if self._webrtc is not None:
            await self._webrtc.stop()
        self.packager.stop_holding()  # held LL-HLS requests answered before their servers stop
        self.ingest_live.close()
        await self._control.stop()
        for edge in self._edges.values():
            await edge.stop()
        await self._origin.stop()
        for ex in (self._studio_ex, self._tx_ex):
            if ex is not None:
                ex.shutdown(wait=True, cancel_futures=True)
        self._studio_ex = self._tx_ex = None
        self._encoder = None
        self._transcoder = None
        self.book.clear_all("stopped")

    # -- URLs ------------------------------------------------------------------
    def _check_stream(self, stream: str | None) -> str:
        stream = stream or self.config.stream
        if stream != self.config.stream:
            raise LabError(f"unknown stream {stream!r}; this lab serves {self.config.stream!r}")
        return stream

    def origin_url(self, stream: str | None = None) -> str:
        """The master playlist at the origin."""
        return f"{self._origin.url}/live/{self._check_stream(stream)}.m3u8"

    def dash_url(self, via: str | None = None, stream: str | None = None) -> str:
        """The same stream as MPEG-DASH (one MPD), at the origin or through edge ``via``."""
        base = self._origin.url if via is None else self._edge(via).url
        return f"{base}/live/{self._check_stream(stream)}.mpd"

    def media_url(self, rendition: str, via: str | None = None, stream: str | None = None) -> str:
        base = self._origin.url if via is None else self._edge(via).url
        return f"{base}/live/{self._check_stream(stream)}/{rendition}.m3u8"

    def ll_url(self, via: str | None = None, stream: str | None = None) -> str:
        """The same stream as Low-Latency HLS (master playlist), at the origin or through edge ``via``."""
        base = self._origin.url if via is None else self._edge(via).url
        return f"{base}/ll/{self._check_stream(stream)}.m3u8"

    def edge_url(self, name: str, stream: str | None = None) -> str:
        """The master playlist through edge ``name``."""
        return f"{self._edge(name).url}/live/{self._check_stream(stream)}.m3u8"

    def _edge(self, name: str) -> Edge:
        try:
            return self._edges[name]
        except KeyError:
            raise LabError(f"unknown edge {name!r}; edges: {', '.join(self._edges)}") from None

    def _endpoint(self) -> WebRtcEndpoint:
        if self._webrtc is None:
            raise LabError("this lab runs no WebRTC endpoint (LabConfig webrtc=true)")
        return self._webrtc

    def whip_url(self, stream: str | None = None) -> str:
        """WHIP (RFC 9725) publish URL of the stream at the lab's WebRTC endpoint."""
        return self._endpoint().whip_url(self._check_stream(stream))

    def whep_url(self, stream: str | None = None) -> str:
        """WHEP playback URL: plays the studio's camera."""
        return self._endpoint().whep_url(self._check_stream(stream))

    @property
    def webrtc(self) -> WebRtcEndpoint | None:
        return self._webrtc

    def ingest_live_url(self, stream: str | None = None) -> str:
        """The ingest's playback side: the contribution stream as HTTP-FLV (after the ingest's faults)."""
        return f"{self._control.url}/ingest/live/{self._check_stream(stream)}.flv"

    @property
    def control_url(self) -> str:
        return self._control.url

    @property
    def origin_base(self) -> str:
        return self._origin.url

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(self._edges)

    @property
    def renditions(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.config.renditions)

    def ports(self) -> list[int]:
        """The HTTP pipeline's ports (origin, control, edges); the WebRTC endpoint's is ``webrtc.port``."""
        return [self._origin.port, self._control.port] + [e.listener.port for e in self._edges.values()]

    def urls(self) -> dict[str, Any]:
        s = self.config.stream
        return {
            "stream": s,
            "origin": self.origin_url(),
            "renditions": {r: self.media_url(r) for r in self.renditions},
            "edges": {e: self.edge_url(e) for e in self._edges},
            "dash": {"origin": self.dash_url(), **{e: self.dash_url(e) for e in self._edges}},
            "control": self.control_url,
            "ingest_live": self.ingest_live_url(),
            **({"whip": self.whip_url(), "whep": self.whep_url()} if self._webrtc is not None else {}),
        }

    # -- faults ----------------------------------------------------------------
    async def inject(self, name: str, target: str | None = None, for_s: float | None = None,
                     params: dict[str, Any] | None = None) -> FaultRecord:
        """Start a fault; raises FaultRequestError for a bad or conflicting request.

        When this returns the fault is in effect (sockets closed for *_down faults).
        """
        rec = self.book.inject(name, target, for_s, params)
        await self._reconcile()
        return rec

    async def clear(self, fault_id: int) -> FaultRecord:
        rec = self.book.clear(fault_id)
        await self._reconcile()
        return rec

    async def clear_all(self) -> list[FaultRecord]:
        recs = self.book.clear_all()
        await self._reconcile()
        return recs

    def faults(self) -> dict[str, Any]:
        return self.book.snapshot()

    async def _reconcile(self) -> None:
        assert self._reconcile_lock is not None and self._changed is not None
        async with self._reconcile_lock:
            want_origin = self.book.active("origin_down", "origin") is None
            if want_origin != self._origin.is_up:
                await (self._origin.up() if want_origin else self._origin.down())
            for name, edge in self._edges.items():
                want = self.book.active("edge_down", name) is None
                if want != edge.listener.is_up:
                    await (edge.up() if want else edge.down())
        self._changed.set()

    def _webrtc_faults(self, side: str) -> WebRtcFaults:
        """The WebRTC endpoint's faults for ``side`` (whip|whep), read from the book as it acts."""
        b = self.book
        drop = b.active("webrtc_drop", side)
        delay = b.active("webrtc_delay", side)
        return WebRtcFaults(refuse=b.active("webrtc_refuse", side) is not None,
                            stall=b.active("webrtc_stall", side) is not None,
                            drop=float(drop.params["fraction"]) if drop is not None else 0.0,
                            delay_s=delay.params["ms"] / 1000.0 if delay is not None else 0.0,
                            ice_fail=b.active("webrtc_ice_fail", side) is not None)

    async def _fault_loop(self) -> None:
        assert self._changed is not None
        while True:
            nxt = self.book.next_expiry()
            timeout = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self._wall()))
            self._changed.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass
            try:
                await self._reconcile()
            except OSError as exc:  # e.g. the port was taken while down: retry next round
                log.warning("lab: could not reopen a port: %s", exc)
            self._changed.clear()

    # -- chronic conditions ----------------------------------------------------
    def _slow_edge(self, name: str) -> Callable[[], float | None]:
        def rate() -> float | None:
            return self._chronic.edge_rate(name, self._wall()) if self._chronic is not None else None
        return rate

    def chronic(self) -> dict[str, Any]:
        """Ground truth of the chronic conditions (agent/lab/chronic.py); ``{"enabled": false}`` when off."""
        if self._chronic is None:
            return {"enabled": False, "conditions": []}
        r = self._chronic.rendition
        pub = self.packager.latest(r)
        last_bps = int(len(pub.data) * 8 / pub.duration_s) if pub is not None and pub.duration_s > 0 else None
        return self._chronic.state(self._wall(), self.packager.declared_bps(r), last_bps)

    # -- pipeline --------------------------------------------------------------
    def _studio_faults(self) -> StudioFaults:
        b = self.book
        desync = b.active("av_desync", "encoder")
        return StudioFaults(
            frozen=b.active("frozen_video", "encoder") is not None,
            black=b.active("black_video", "encoder") is not None,
            silent=b.active("silent_audio", "encoder") is not None,
            desync_ms=int(desync.params["ms"]) if desync is not None else 0)

    async def _studio_loop(self) -> None:
        assert self._encoder is not None and self._ingest is not None
        loop = asyncio.get_running_loop()
        period = 1.0 / self.config.fps
        mono0, wall0 = loop.time(), self._wall()
        n = 0
        stopped = False
        while True:
            delay = mono0 + n * period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:  # starved of CPU for a second: skip ahead like a live source
                n = int((loop.time() - mono0) / period)
                self._encoder.restart()
            capture = wall0 + n * period
            if self.book.active("encoder_stop", "encoder") is not None:
                if not stopped:
                    stopped = True
                    self._encoder_running = False
                    self._ingest.unpublish()
                n += 1
                continue
            if stopped:
                stopped = False
                self._encoder.restart()
            try:
                packets = await loop.run_in_executor(
                    self._studio_ex, self._encoder.encode, n, capture, self._studio_faults(), self._wall)
            except Exception:  # a codec error must not kill the lab
                self._note_error("studio")
                self._encoder.restart()
                n += 1
                continue
            self._encoder_running = True
            self._ingest.push(packets)
            tapped, self._tapped = self._tapped, None
            if tapped is not None and self._feed is not None:
                self._feed.push(*tapped)
            n += 1

    def _stamp_and_tap(self, y: np.ndarray, capture_wall: float) -> None:
        """The studio's stamp hook (worker thread): the caller's stamp, then a downscaled copy
        of the stamped frame for the WebRTC feed, only while a WHEP session plays it."""
        if self._stamp is not None:
            self._stamp(y, capture_wall)
        if self._feed is None or not self._feed.wanted:
            return
        k = self.config.webrtc_downscale
        h, w = y.shape
        full = y.base if isinstance(y.base, np.ndarray) and y.base.shape == (h * 3 // 2, w) else None
        ys = y[::k, ::k]
        if full is not None:  # I420 below the luma: the U plane then the V plane, each (h/2, w/2)
            chroma = full[h:].reshape(2, h // 2, w // 2)
            u, v = chroma[0][::k, ::k], chroma[1][::k, ::k]
        else:  # no chroma at hand: neutral grey
            u = v = np.full((h // 2 // k, w // 2 // k), 128, np.uint8)
        hs, ws = ys.shape
        out = np.empty((hs * 3 // 2, ws), np.uint8)
        out[:hs] = ys
        out[hs:].reshape(-1)[:u.size] = u.reshape(-1)
        out[hs:].reshape(-1)[u.size:] = v.reshape(-1)
        self._tapped = (out, capture_wall)

    def _to_transcoder(self, packets: list[MediaPacket], delivered_mono: float) -> None:
        assert self._tq is not None
        self._tq.put_nowait((delivered_mono, packets))

    def _transcode_control(self) -> TranscodeControl:
        b = self.book
        kf = b.active("keyframe_interval", "transcoder")
        return TranscodeControl(
            stall_all=b.active("transcoder_stall", "transcoder") is not None,
            stalled=frozenset(r for r in self.renditions if b.active("rendition_stall", r) is not None),
            gop_s=int(kf.params["gop_s"]) if kf is not None else None)

    async def _transcode_loop(self) -> None:
        assert self._tq is not None and self._transcoder is not None
        loop = asyncio.get_running_loop()
        tq = self._tq
        while True:
            delivered, batch = await tq.get()
            slow = self.book.active("transcoder_slow", "transcoder")
            if slow is not None:
                t0 = loop.time() - (self._wall() - slow.started_at)
                due = t0 + (max(delivered, t0) - t0) / slow.params["speed"]
                while slow is not None and due > loop.time():
                    await asyncio.sleep(min(0.2, due - loop.time()))
                    slow = self.book.active("transcoder_slow", "transcoder")
            else:
                frames = sum(1 for p in batch if p.kind == "video")
                while not tq.empty() and frames < _MAX_BATCH_FRAMES:
                    _, more = tq.get_nowait()
                    batch = batch + more
                    frames += sum(1 for p in more if p.kind == "video")
            try:
                segs = await loop.run_in_executor(
                    self._tx_ex, self._transcoder.process, batch, self._transcode_control())
            except Exception:
                self._note_error("transcode")
                continue
            for seg in segs:
                if isinstance(seg, PartOut):
                    self.packager.publish_part(seg.rendition, seg.data, seg.duration_s, seg.first, seg.pdt_wall,
                                               seg.discontinuity)
                elif isinstance(seg, PartsClosed):
                    self.packager.ll_close(seg.rendition, seg.data, seg.duration_s)
                else:
                    self._publish(seg)

    def _publish(self, seg: SegmentOut) -> None:
        assert self._transcoder is not None and self._ready is not None
        self.packager.set_codecs(seg.rendition, self._transcoder.codecs.get(seg.rendition))
        rec = self.book.active("corrupt_segment", seg.rendition)
        published = self.packager.publish(seg.rendition, seg.data, seg.duration_s, seg.pdt_wall,
                                          seg.discontinuity, corrupt=rec is not None)
        if rec is not None:
            self.book.fire(rec, rendition=seg.rendition, sequence=published.seq,
                           uri=f"{seg.rendition}/{published.seq}.ts")
        self._last_segments[seg.rendition] = seg
        if not self._ready.is_set() and self.packager.ready():
            self._ready.set()

    def _note_error(self, stage: str) -> None:
        self._errors += 1
        if self._errors <= 5 or self._errors % 100 == 0:
            log.warning("lab: %s error (%d so far)", stage, self._errors, exc_info=True)

    # -- observation -----------------------------------------------------------
    def studio_stats(self) -> dict[str, Any]:
        enc = self._encoder
        return {"running": self._encoder_running and self.book.active("encoder_stop", "encoder") is None,
                "frames_out": enc.frames_out if enc else 0, "bytes_out": enc.bytes_out if enc else 0,
                "width": self.config.width, "height": self.config.height, "fps": self.config.fps}

    def ingest_stats(self) -> dict[str, Any]:
        return self._ingest.stats() if self._ingest is not None else {}

    def _webrtc_truth(self) -> dict[str, Any]:
        ep = self._webrtc
        if ep is None:
            return {"enabled": False}
        sides = {}
        for side in ("whip", "whep"):
            f = self._webrtc_faults(side)
            sides[side] = {"sessions": sum(1 for s in list(ep.sessions.values()) if s.kind == side),
                           "refuse": f.refuse, "stall": f.stall, "drop": f.drop, "delay_s": f.delay_s,
                           "ice_fail": f.ice_fail}
        return {"enabled": True, "frames_fed": self._feed.frames_in if self._feed else 0, **sides}

    def truth(self) -> dict[str, Any]:
        """The lab's true state and per-stage delays right now (seconds, epoch wall times)."""
        now = self._wall()
        b = self.book
        ing = self._ingest
        lat = b.active("ingest_latency", "ingest")
        starve = b.active("ingest_starve", "ingest")
        injected_ingest = lat.params["ms"] / 1000.0 if lat else 0.0
        if starve is not None:
            injected_ingest = (now - starve.started_at) * (1 / starve.params["rate"] - 1)
        tx = self._transcoder
        slow = b.active("transcoder_slow", "transcoder")
        renditions = {}
        for r in self.renditions:
            seg = self._last_segments.get(r)
            pub = self.packager.latest(r)
            renditions[r] = {
                "stalled": b.active("rendition_stall", r) is not None
                or b.active("transcoder_stall", "transcoder") is not None,
                "last_sequence": pub.seq if pub else None,
                "last_published_at": pub.published_wall if pub else None,
                "last_pdt": pub.pdt_wall if pub else None,
                "last_duration_s": pub.duration_s if pub else None,
                "transcode_delay_s": (seg.last_encoded_wall - seg.last_delivered_wall) if seg else None,
                "packaging_delay_s": (pub.published_wall - seg.last_encoded_wall) if (seg and pub) else None,
                # the newest segment's last frame, from its capture to its publication at the origin:
                # what a capture-to-origin latency measures (studio encode and ingest included)
                "capture_to_origin_s": (pub.published_wall - seg.last_capture_wall) if (seg and pub) else None,
                # wall time the newest media at the origin was captured, vs now
                "origin_latency_s": (now - (pub.pdt_wall + pub.duration_s)) if pub else None,
            }
        o5 = b.active("origin_5xx", "origin")
        edges = {}
        for name, e in self._edges.items():
            delay = b.active("edge_delay", name)
            edges[name] = {
                "up": e.listener.is_up,
                "stale": b.active("edge_stale", name) is not None,
                "injected_delay_s": delay.params["ms"] / 1000.0 if delay else 0.0,
                "playlist_max_age_s": float(self.config.playlist_max_age_s),
                "propagation_s": dict(e.last_propagation_s),
                "hits": e.hits, "misses": e.misses,
            }
        sf = self._studio_faults()
        return {
            "now": now,
            "stream": self.config.stream,
            "studio": {"running": self.studio_stats()["running"], "frozen": sf.frozen, "black": sf.black,
                       "silent": sf.silent, "av_offset_ms": sf.desync_ms},
            "ingest": {"publishing": ing.publishing() if ing else False,
                       "delay_s": ing.last_delay_s if ing else None,
                       # newest video frame: handed on by the ingest - captured (what an ingest monitor measures)
                       "capture_to_handoff_s": ing.last_capture_to_handoff_s if ing else None,
                       "live_clients": self.ingest_live.clients,
                       "injected_delay_s": injected_ingest},
            "transcode": {
                "delay_s": (tx.last_encoded_wall - tx.last_delivered_wall) if tx and tx.last_encoded_wall else None,
                "slow_speed": slow.params["speed"] if slow else None,
                "gop_s": self._transcode_control().gop_s or self.config.segment_s,
                "renditions": renditions,
            },
            "origin": {"up": self._origin.is_up, "status": int(o5.params["status"]) if o5 else 200},
            "edges": edges,
            "webrtc": self._webrtc_truth(),
            "chronic": self.chronic(),
            "active_faults": [r.to_json() for r in b.active_records()],
        }


__all__ = ["Lab", "LabConfig", "FaultRequestError"]
