"""WebRTC probes: WHIP publish (ingest) and WHEP playback, over aiortc + httpx.

WHIP publish (``whip_probe``, stage ``ingest``; RFC 9725 "WebRTC-HTTP Ingestion
Protocol"): POST an SDP offer (``application/sdp``, ``Authorization: Bearer`` when a
token is configured) → ``201 Created`` with the SDP answer and a ``Location`` (the
session resource); publish a synthetic video track (a moving pattern with the latency
beacon of :mod:`probes.core.beacon` stamped on every frame) for ``seconds``; DELETE the
resource at the end — always, also after a failure (RFC 9725 §4.2). Phases, each a
``signalpath_ingest_connect_seconds{phase}`` value and a span:

- ``signal``: POST → answer;
- ``ice``: answer applied → ICE connected (RFC 8445);
- ``dtls``: ICE connected → DTLS handshake done (``connectionState`` ``connected``, RFC 8827);
- ``first_rtcp``: DTLS done → the first RTCP receiver report about our stream
  (the sender's ``remote-inbound-rtp`` appears, RFC 3550 §6.4).

From the sender's ``remote-inbound-rtp`` (W3C webrtc-stats; aiortc fills it from the
receiver reports): round-trip time (``signalpath_webrtc_rtt_seconds``), cumulative
packets lost and fraction lost (RFC 3550 §6.4.1, the 0-255 fixed point reported as a
0-1 ratio); from ``outbound-rtp``: the achieved bitrate
(``signalpath_ingest_upload_bits_per_second``).

WHEP playback (``whep_probe``, stage ``playback``; draft-ietf-wish-whep): POST a
recvonly offer, time to the first decoded frame
(``signalpath_webrtc_time_to_first_frame_seconds``), frames received, freezes by the
W3C webrtc-stats ``freezeCount`` rule (an inter-frame gap ≥ max(3 × average frame
duration, average + 150 ms); :class:`FreezeCounter`), jitter in seconds (aiortc
reports RTP clock units: ÷ 90,000 for video), packets lost; DELETE at the end. RTX is
not offered by the WHEP probe: aiortc keys ``inbound-rtp`` per receiver, so the RTX
stream's statistics would overwrite the media stream's (ENVIRONMENT.md) and hide the
network's loss. aiortc's receivers always send NACKs for video and its senders always
retransmit, so "packets lost" is the RFC 3550 §6.4.1 count: loss that retransmission did
not repair (a repaired packet counts as received). WHEP gives no RTT in aiortc (a receiver has no remote-inbound-rtp).

Thresholds (THRESHOLDS.md "WebRTC"): RTT ≥ 200 ms is ``rtt_high`` (XSplit ingest
colours: red); loss ≥ 1 % is ``packet_loss`` and jitter ≥ 30 ms is ``jitter_high``
(Twilio preflight "optimal" ends there); any freeze is ``video_freezes``.

Failure reasons: a 401/403 is ``Failure.AUTH_REFUSED`` (fault ``auth_refused``), another
non-2xx ``HTTP_ERROR`` (``http_error``), no HTTP connection ``CONNECTION_REFUSED`` /
``CONNECTION_FAILED`` (``unreachable``), ICE failed ``CONNECTION_FAILED`` and ICE not
connected in time ``TIMEOUT`` (``ice_failed``), DTLS failed ``TLS_ERROR``
(``dtls_failed``), no receiver report ``MEDIA_ERROR`` (``no_rtcp``), no frame on WHEP
``MEDIA_ERROR`` (``no_media``).

Loopback seam: aioice never offers 127.0.0.1 as a host candidate. ``ice_host_addresses``
(e.g. ``["127.0.0.1"]`` for a loopback target) replaces the interface enumeration for
the peer connections this probe makes, through :func:`ice_host_addresses`, a context
variable consulted by a wrapper installed once around ``aioice.ice.get_host_addresses``;
other peer connections in the process are unaffected.

The bearer token is a secret: it is masked in every detail and span (tested with a
canary); URLs shown are :func:`probes.core.redact.redact_url`'d.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from probes.core import beacon
from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, SpanRecord, State
from probes.core.redact import redact_text, redact_url

METRIC_CONNECT = "signalpath_ingest_connect_seconds"
METRIC_UPLOAD = "signalpath_ingest_upload_bits_per_second"
METRIC_RTT = "signalpath_webrtc_rtt_seconds"
METRIC_JITTER = "signalpath_webrtc_jitter_seconds"
METRIC_LOST = "signalpath_webrtc_packets_lost_total"
METRIC_FREEZES = "signalpath_webrtc_freezes_total"
METRIC_TTFF = "signalpath_webrtc_time_to_first_frame_seconds"
METRICS = (METRIC_CONNECT, METRIC_UPLOAD, METRIC_RTT, METRIC_JITTER, METRIC_LOST, METRIC_FREEZES, METRIC_TTFF)

VIDEO_CLOCK_RATE = 90_000
SDP_TYPE = "application/sdp"
MAX_SDP_BYTES = 256 * 1024

# ----------------------------------------------------------------------------- config


class _WebRtcCommon(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bearer_token: SecretStr | None = Field(default=None, description="RFC 6750 bearer token; a secret: use ${ENV}")
    seconds: float = Field(default=3.0, gt=0, le=60, description="media seconds measured once connected")
    ice_host_addresses: tuple[str, ...] = Field(
        default=(), description="host ICE candidates to offer; empty: every interface (aioice skips loopback, "
                                "so a 127.0.0.1 target needs ['127.0.0.1'])")
    verify_tls: bool = True
    rtt_fault_seconds: float = Field(default=0.2, gt=0, description="THRESHOLDS.md: RTT red from 200 ms (XSplit)")
    loss_fault_ratio: float = Field(default=0.01, gt=0, le=1, description="THRESHOLDS.md: loss < 1 % (Twilio)")


class WhipProbeConfig(_WebRtcCommon):
    """A WHIP publish test (RFC 9725)."""

    width: int = Field(default=320, ge=160, le=1920)
    height: int = Field(default=180, ge=90, le=1080)
    fps: int = Field(default=15, ge=1, le=60)


class WhepProbeConfig(_WebRtcCommon):
    """A WHEP playback test."""

    jitter_fault_seconds: float = Field(default=0.03, gt=0, description="THRESHOLDS.md: jitter < 30 ms (Twilio)")


class _Endpoint(BaseModel):
    """Where and how often (``streams[].ingest.whip[]`` / ``streams[].whep[]`` in the agent config)."""

    name: str = Field(default="webrtc", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: str
    interval_s: float = Field(default=30.0, gt=0, le=3600)
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="> seconds + 2 s (connect and clean-up)")

    @field_validator("url")
    @classmethod
    def _v_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{redact_url(v)!r} is not an http(s) URL")
        return v

    @model_validator(mode="after")
    def _deadline(self) -> "_Endpoint":
        if self.timeout_s < self.seconds + 2:  # type: ignore[attr-defined]
            raise ValueError(f"timeout_s {self.timeout_s:g} must exceed seconds + 2 s")
        return self


class WhipIngest(_Endpoint, WhipProbeConfig):
    """A WHIP endpoint to test-publish to (stage ``ingest``)."""

    name: str = Field(default="whip", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class WhepPlayback(_Endpoint, WhepProbeConfig):
    """A WHEP endpoint to test-play from (stage ``playback``)."""

    name: str = Field(default="whep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


# ----------------------------------------------------------------------------- loopback seam

_HOST_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "signalpath_ice_host_addresses", default=None)


def _install_host_address_seam() -> None:
    import aioice.ice

    current = aioice.ice.get_host_addresses
    if getattr(current, "_signalpath_seam", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        forced = _HOST_ADDRESSES.get()
        return list(forced) if forced else current(use_ipv4, use_ipv6)

    get_host_addresses._signalpath_seam = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def ice_host_addresses(addresses: tuple[str, ...] | list[str]) -> Iterator[None]:
    """Within this context (and tasks started in it) peer connections gather host
    candidates on ``addresses`` only; empty means every interface (aioice's default)."""
    _install_host_address_seam()
    token = _HOST_ADDRESSES.set(tuple(addresses) or None)
    try:
        yield
    finally:
        _HOST_ADDRESSES.reset(token)


# ----------------------------------------------------------------------------- pure cores


@dataclass(slots=True)
class FreezeCounter:
    """W3C webrtc-stats ``freezeCount``: a frame is "frozen" when the gap since the
    previous frame is ≥ max(3 × average frame duration, average + 150 ms); the average
    is over the last ``window`` inter-frame gaps that were not freezes (libwebrtc's
    30). No judgement before ``min_frames`` gaps are known. Fed arrival times (s)."""

    window: int = 30
    min_frames: int = 5
    freezes: int = 0
    freeze_seconds: float = 0.0
    frames: int = 0
    first: float | None = None
    last: float | None = None
    _gaps: deque = field(default_factory=lambda: deque(maxlen=30))

    def threshold(self) -> float | None:
        if len(self._gaps) < self.min_frames:
            return None
        avg = sum(self._gaps) / len(self._gaps)
        return max(3 * avg, avg + 0.150)

    def frame(self, t: float) -> bool:
        """Record a frame at ``t``; True when it ended a freeze."""
        self.frames += 1
        if self.first is None:
            self.first = self.last = t
            return False
        gap = t - self.last
        self.last = t
        limit = self.threshold()
        if limit is not None and gap >= limit:
            self.freezes += 1
            self.freeze_seconds += gap
            return True
        self._gaps.append(gap)
        return False

    def finish(self, t: float) -> None:
        """End of observation at ``t``: a freeze still going on counts too."""
        limit = self.threshold()
        if self.last is not None and limit is not None and t - self.last >= limit:
            self.freezes += 1
            self.freeze_seconds += t - self.last
            self.last = t

    @property
    def fps(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.frames - 1) / (self.last - self.first)


def jitter_seconds(rtp_units: float, clock_rate: int = VIDEO_CLOCK_RATE) -> float:
    """RFC 3550 §6.4.1 interarrival jitter, given in RTP timestamp units, in seconds."""
    return float(rtp_units) / clock_rate


def fraction_lost_ratio(fixed_point: float) -> float:
    """RFC 3550 §6.4.1 ``fraction lost`` (8-bit fixed point, /256) as 0-1."""
    return max(0.0, min(1.0, float(fixed_point) / 256.0))


# ----------------------------------------------------------------------------- errors


class WebRtcError(Exception):
    """A failed step, already mapped to a :class:`Failure`, a fault and a secret-free detail."""

    def __init__(self, failure: Failure, detail: str, fault: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail
        self.fault = fault


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind) or (isinstance(seen, OSError) and seen.errno == 111 and kind is ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# ----------------------------------------------------------------------------- the synthetic track


def _make_beacon_track(width: int, height: int, fps: int, wall=time.time):
    """A video track: a moving luma gradient with the beacon (capture wall time) stamped."""
    import av
    from aiortc import MediaStreamTrack

    class BeaconTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._n = 0
            self._start: float | None = None
            x = np.arange(width, dtype=np.uint16)
            self._ramp = ((x * 219 // max(1, width - 1)) + 16).astype(np.uint8)
            self._y = np.empty((height, width), np.uint8)

        async def recv(self):
            if self._start is None:
                self._start = time.monotonic()
            due = self._start + self._n / fps
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = av.VideoFrame(width, height, "yuv420p")
            self._y[:] = np.roll(self._ramp, self._n * 4)[None, :]
            beacon.stamp(self._y, wall())
            frame.planes[0].update(_pad(self._y, frame.planes[0].line_size))
            for p in frame.planes[1:]:
                p.update(bytes([128]) * p.buffer_size)
            frame.pts = self._n * (VIDEO_CLOCK_RATE // fps)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
            self._n += 1
            return frame

    return BeaconTrack()


def _pad(y: np.ndarray, line_size: int) -> bytes:
    h, w = y.shape
    if line_size == w:
        return y.tobytes()
    out = np.zeros((h, line_size), np.uint8)
    out[:, :w] = y
    return out.tobytes()


def _luma(frame: Any) -> np.ndarray:
    plane = frame.planes[0]
    buf = np.frombuffer(bytes(plane), np.uint8).reshape(frame.height, plane.line_size)
    return buf[:, : frame.width]


# ----------------------------------------------------------------------------- the attempt


class _Session:
    """One WHIP/WHEP attempt: signalling, peer connection, phases, cleanup."""

    def __init__(self, target: ProbeTarget, ctx: ProbeContext, cfg: _WebRtcCommon, stage: str, kind: str) -> None:
        self.t = target
        self.ctx = ctx
        self.cfg = cfg
        self.stage = stage
        self.kind = kind
        self.labels = {"stream": target.stream, "stage": stage, "component": target.component}
        self.result = ProbeResult()
        self.token = cfg.bearer_token.get_secret_value() if cfg.bearer_token else None
        self.secrets = [self.token] if self.token else []
        self.deadline = ctx.clock() + max(1.0, target.timeout * 0.9)
        self.resource: str | None = None
        self.http: httpx.AsyncClient | None = None
        self.pc: Any = None
        self.ice_done = asyncio.Event()
        self.dtls_done = asyncio.Event()
        self.failed = asyncio.Event()
        self.fail_reason = ""
        self.ice_at: float | None = None
        self.dtls_at: float | None = None

    # -- helpers
    def safe(self, text: str) -> str:
        return redact_text(text, self.secrets)

    def remaining(self) -> float:
        return max(0.01, self.deadline - self.ctx.clock())

    def phase(self, name: str, t0: float, t1: float, error: str | None = None, **attrs: Any) -> None:
        seconds = max(0.0, t1 - t0)
        if error is None and self.stage == "ingest":
            self.result.samples.append(Sample(METRIC_CONNECT, {**self.labels, "phase": name}, seconds))
        if error is None:
            self.result.figures[f"{name}_seconds"] = round(seconds, 6)
        wall_start = self.ctx.wall() - (self.ctx.clock() - t0)
        self.result.spans.append(SpanRecord(
            name=f"{self.kind} {name}", start_ns=int(wall_start * 1e9), end_ns=int((wall_start + seconds) * 1e9),
            attributes={"signalpath.stage": self.stage, "signalpath.phase": name, **attrs},
            error=self.safe(error) if error else None))

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": SDP_TYPE, "Accept": SDP_TYPE}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    # -- peer connection
    def new_pc(self) -> Any:
        from aiortc import RTCConfiguration, RTCPeerConnection

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @pc.on("iceconnectionstatechange")
        def _ice() -> None:
            st = pc.iceConnectionState
            if st in ("connected", "completed") and self.ice_at is None:
                self.ice_at = self.ctx.clock()
                self.ice_done.set()
            elif st == "failed":
                self.fail_reason = "ice"
                self.failed.set()

        @pc.on("connectionstatechange")
        def _conn() -> None:
            st = pc.connectionState
            if st == "connected" and self.dtls_at is None:
                self.dtls_at = self.ctx.clock()
                self.dtls_done.set()
            elif st == "failed":
                self.fail_reason = self.fail_reason or ("dtls" if self.ice_at is not None else "ice")
                self.failed.set()

        self.pc = pc
        return pc

    async def wait_phase(self, event: asyncio.Event, what: str) -> None:
        """Wait for ``event`` or a failure, within the attempt's deadline."""
        waiter = asyncio.ensure_future(event.wait())
        failer = asyncio.ensure_future(self.failed.wait())
        try:
            done, _ = await asyncio.wait({waiter, failer}, timeout=self.remaining(),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (waiter, failer):
                f.cancel()
            await asyncio.gather(waiter, failer, return_exceptions=True)
        if event.is_set():
            return
        if self.failed.is_set():
            if self.fail_reason == "dtls":
                raise WebRtcError(Failure.TLS_ERROR, "DTLS handshake failed", "dtls_failed")
            raise WebRtcError(Failure.CONNECTION_FAILED, "ICE failed: no candidate pair worked", "ice_failed")
        if what == "ice":
            raise WebRtcError(Failure.TIMEOUT, "ICE did not connect in time", "ice_failed")
        raise WebRtcError(Failure.TIMEOUT, f"timed out waiting for {what}", "dtls_failed")

    # -- signalling
    async def offer(self, url: str) -> str:
        """POST the local offer; returns the SDP answer and sets ``self.resource``."""
        pc = self.pc
        with ice_host_addresses(self.cfg.ice_host_addresses):
            await asyncio.wait_for(pc.setLocalDescription(await pc.createOffer()), self.remaining())
        self.http = httpx.AsyncClient(verify=self.cfg.verify_tls, follow_redirects=False, trust_env=False)
        t0 = self.ctx.clock()
        try:
            resp = await self.http.post(url, content=pc.localDescription.sdp.encode(), headers=self.headers(),
                                        timeout=self.remaining())
        except httpx.ConnectError as exc:
            self.phase("signal", t0, self.ctx.clock(), error="connect failed")
            refused = _caused_by(exc, ConnectionRefusedError)
            raise WebRtcError(Failure.CONNECTION_REFUSED if refused else Failure.CONNECTION_FAILED,
                              f"cannot connect to {redact_url(url)}", "unreachable") from None
        except httpx.TimeoutException:
            self.phase("signal", t0, self.ctx.clock(), error="timeout")
            raise WebRtcError(Failure.TIMEOUT, "no answer to the SDP offer in time", "unreachable") from None
        except httpx.HTTPError as exc:
            self.phase("signal", t0, self.ctx.clock(), error=type(exc).__name__)
            raise WebRtcError(Failure.CONNECTION_FAILED, f"HTTP exchange failed: {type(exc).__name__}",
                              "unreachable") from None
        t1 = self.ctx.clock()
        location = resp.headers.get("location")
        if location:
            self.resource = urljoin(str(resp.request.url), location)
        if resp.status_code in (401, 403):
            self.phase("signal", t0, t1, error=f"HTTP {resp.status_code}", **{"http.status_code": resp.status_code})
            raise WebRtcError(Failure.AUTH_REFUSED, f"the endpoint refused the session (HTTP {resp.status_code})",
                              "auth_refused")
        if resp.status_code != 201 and not (200 <= resp.status_code < 300 and self.kind == "whep"):
            self.phase("signal", t0, t1, error=f"HTTP {resp.status_code}", **{"http.status_code": resp.status_code})
            raise WebRtcError(Failure.HTTP_ERROR, f"the endpoint answered HTTP {resp.status_code}, not 201",
                              "http_error")
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        body = resp.content
        if ctype != SDP_TYPE or not body or len(body) > MAX_SDP_BYTES or not location:
            self.phase("signal", t0, t1, error="bad answer")
            what = "no Location header" if not location else f"answer is not {SDP_TYPE}"
            raise WebRtcError(Failure.PROTOCOL_ERROR, f"malformed answer: {what}", "protocol_error")
        self.phase("signal", t0, t1, **{"http.status_code": resp.status_code})
        return body.decode("utf-8", "replace")

    async def answer(self, sdp: str) -> float:
        from aiortc import RTCSessionDescription

        try:
            await asyncio.wait_for(self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer")),
                                   self.remaining())
        except asyncio.TimeoutError:
            raise WebRtcError(Failure.TIMEOUT, "applying the SDP answer timed out", "ice_failed") from None
        except (ValueError, AssertionError) as exc:
            raise WebRtcError(Failure.PROTOCOL_ERROR, f"unusable SDP answer: {type(exc).__name__}",
                              "protocol_error") from None
        return self.ctx.clock()

    async def connect_phases(self, t_answer: float) -> None:
        try:
            await self.wait_phase(self.ice_done, "ice")
        except WebRtcError as exc:
            self.phase("ice", t_answer, self.ctx.clock(), error=exc.detail)
            raise
        self.phase("ice", t_answer, self.ice_at)
        try:
            await self.wait_phase(self.dtls_done, "dtls")
        except WebRtcError as exc:
            self.phase("dtls", self.ice_at, self.ctx.clock(), error=exc.detail)
            raise
        self.phase("dtls", self.ice_at, self.dtls_at)

    async def close(self) -> None:
        """DELETE the resource (RFC 9725 §4.2) and close the peer connection; never raises."""
        if self.resource and self.http is not None:
            t0 = self.ctx.clock()
            try:
                h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                resp = await self.http.delete(self.resource, headers=h, timeout=2.0)
                self.result.figures["delete_status"] = resp.status_code
                self.phase("delete", t0, self.ctx.clock(), **{"http.status_code": resp.status_code})
            except (httpx.HTTPError, asyncio.TimeoutError) as exc:
                self.phase("delete", t0, self.ctx.clock(), error=f"DELETE failed: {type(exc).__name__}")
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 2.0)
        if self.http is not None:
            with contextlib.suppress(Exception):
                await self.http.aclose()

    def fail(self, exc: WebRtcError) -> None:
        self.result.failure = exc.failure
        self.result.detail = self.safe(exc.detail)
        self.result.evidence.insert(0, Evidence(self.stage, self.t.component, State.DOWN, exc.fault,
                                                self.safe(f"{self.kind.upper()} {redact_url(self.t.url or '')}: "
                                                          f"{exc.detail}")))


# ----------------------------------------------------------------------------- WHIP


async def _stats(obj: Any, kind: str) -> dict[str, Any] | None:
    report = await obj.getStats()
    for s in report.values():
        if getattr(s, "type", None) == kind:
            return dict(vars(s))
    return None


async def whip_probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One WHIP publish attempt against ``target.url`` (see the module docstring)."""
    cfg: WhipProbeConfig = target.config if target.config is not None else WhipProbeConfig()
    s = _Session(target, ctx, cfg, "ingest", "whip")
    t_start = ctx.clock()
    try:
        pc = s.new_pc()
        track = _make_beacon_track(cfg.width, cfg.height, cfg.fps, ctx.wall)
        sender = pc.addTransceiver(track, direction="sendonly").sender
        answer = await s.offer(target.url or "")
        t_answer = await s.answer(answer)
        await s.connect_phases(t_answer)
        # first RTCP receiver report about our stream
        first = None
        while s.remaining() > 0.02:
            first = await _stats(sender, "remote-inbound-rtp")
            if first is not None:
                break
            await asyncio.sleep(0.02)
        if first is None:
            s.phase("first_rtcp", s.dtls_at, ctx.clock(), error="no receiver report")
            raise WebRtcError(Failure.MEDIA_ERROR, "the endpoint sent no RTCP receiver report for our stream",
                              "no_rtcp")
        t_rtcp = ctx.clock()
        s.phase("first_rtcp", s.dtls_at, t_rtcp)
        out0 = await _stats(sender, "outbound-rtp") or {}
        t_media0 = ctx.clock()
        await asyncio.sleep(max(0.0, min(cfg.seconds, s.remaining() - 0.1)))
        out1 = await _stats(sender, "outbound-rtp") or {}
        remote = await _stats(sender, "remote-inbound-rtp") or first
        # RTT needs a receiver report that echoes one of our sender reports (RFC 3550
        # §6.4.1 LSR/DLSR); RTCP intervals are ~1 s, so a short window may end before one
        rtt_by = ctx.clock() + min(2.5, s.remaining() - 0.5)
        while remote.get("roundTripTime") is None and ctx.clock() < rtt_by:
            await asyncio.sleep(0.05)
            remote = await _stats(sender, "remote-inbound-rtp") or remote
        elapsed = max(1e-3, ctx.clock() - t_media0)
        s.phase("publish", t_media0, ctx.clock())
        _whip_figures(s, cfg, out0, out1, remote, elapsed)
        s.result.figures["total_seconds"] = round(ctx.clock() - t_start, 6)
    except WebRtcError as exc:
        s.fail(exc)
    finally:
        await s.close()
    return s.result


def _whip_figures(s: _Session, cfg: WhipProbeConfig, out0: dict, out1: dict, remote: dict, elapsed: float) -> None:
    r = s.result
    bits = 8 * (out1.get("bytesSent", 0) - out0.get("bytesSent", 0)) / elapsed
    sent = int(out1.get("packetsSent", 0))
    lost = max(0, int(remote.get("packetsLost") or 0))
    frac = fraction_lost_ratio(remote.get("fractionLost") or 0)
    loss_ratio = lost / max(1, sent)
    rtt = remote.get("roundTripTime")
    r.samples.append(Sample(METRIC_UPLOAD, s.labels, bits))
    r.samples.append(Sample(METRIC_LOST, s.labels, float(lost), "inc"))
    r.figures.update(upload_bits_per_second=round(bits, 1), packets_sent=sent, packets_lost=lost,
                     fraction_lost=round(frac, 4), loss_ratio=round(loss_ratio, 4))
    if rtt is not None:
        r.samples.append(Sample(METRIC_RTT, s.labels, float(rtt)))
        r.figures["rtt_seconds"] = round(float(rtt), 6)
    if remote.get("jitter") is not None:
        j = jitter_seconds(remote["jitter"])
        r.samples.append(Sample(METRIC_JITTER, s.labels, j))
        r.figures["jitter_seconds"] = round(j, 6)
    state, fault, detail = State.OK, None, "WHIP publish accepted; the endpoint reports receiving our stream"
    if max(frac, loss_ratio) >= cfg.loss_fault_ratio:
        state, fault = State.DEGRADED, "packet_loss"
        detail = f"{max(frac, loss_ratio):.1%} of the published packets lost on the way to the endpoint"
    elif rtt is not None and rtt >= cfg.rtt_fault_seconds:
        state, fault = State.DEGRADED, "rtt_high"
        detail = f"round-trip time to the WHIP endpoint is {rtt * 1000:.0f} ms"
    r.detail = detail
    figures = {k: float(v) for k, v in r.figures.items() if isinstance(v, (int, float))}
    r.evidence.insert(0, Evidence("ingest", s.t.component, state, fault, detail, None, figures))


# ----------------------------------------------------------------------------- WHEP


def _recvonly_codecs() -> list[Any]:
    from aiortc import RTCRtpReceiver

    caps = RTCRtpReceiver.getCapabilities("video")
    return [c for c in caps.codecs if c.mimeType.lower() != "video/rtx"]


async def whep_probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One WHEP playback attempt against ``target.url`` (see the module docstring)."""
    cfg: WhepProbeConfig = target.config if target.config is not None else WhepProbeConfig()
    s = _Session(target, ctx, cfg, "playback", "whep")
    t_start = ctx.clock()
    frames = FreezeCounter()
    beacon_lat: list[float] = []
    reader: asyncio.Task | None = None
    first_frame = asyncio.Event()
    tracks: list[Any] = []
    try:
        pc = s.new_pc()
        tr = pc.addTransceiver("video", direction="recvonly")
        tr.setCodecPreferences(_recvonly_codecs())
        got_track = asyncio.Event()

        @pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video" and not tracks:
                tracks.append(track)
                got_track.set()

        async def read_frames() -> None:
            await got_track.wait()
            track = tracks[0]
            while True:
                frame = await track.recv()
                now = ctx.clock()
                frames.frame(now)
                if not first_frame.is_set():
                    first_frame.set()
                if frames.frames % 5 == 1:
                    captured = beacon.read(_luma(frame))
                    if captured is not None:
                        beacon_lat.append(ctx.wall() - captured)

        answer = await s.offer(target.url or "")
        t_answer = await s.answer(answer)
        reader = asyncio.ensure_future(read_frames())
        await s.connect_phases(t_answer)
        try:
            await asyncio.wait_for(first_frame.wait(), s.remaining())
        except asyncio.TimeoutError:
            s.phase("first_frame", t_start, ctx.clock(), error="no frame")
            raise WebRtcError(Failure.MEDIA_ERROR, "connected, but no video frame arrived", "no_media") from None
        ttff = frames.first - t_start
        s.phase("first_frame", t_start, frames.first)
        t_media0 = ctx.clock()
        await asyncio.sleep(max(0.0, min(cfg.seconds, s.remaining() - 0.1)))
        t_end = ctx.clock()
        frames.finish(t_end)
        s.phase("playback", t_media0, t_end, frames=frames.frames, freezes=frames.freezes)
        inbound = await _stats(tr.receiver, "inbound-rtp") or {}
        _whep_figures(s, cfg, frames, ttff, inbound, beacon_lat)
        s.result.figures["total_seconds"] = round(ctx.clock() - t_start, 6)
    except WebRtcError as exc:
        s.fail(exc)
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        await s.close()
    return s.result


def _whep_figures(s: _Session, cfg: WhepProbeConfig, fc: FreezeCounter, ttff: float, inbound: dict,
                  beacon_lat: list[float]) -> None:
    r = s.result
    lost = max(0, int(inbound.get("packetsLost") or 0))
    received = int(inbound.get("packetsReceived") or 0)
    loss_ratio = lost / max(1, lost + received)
    jitter = jitter_seconds(inbound.get("jitter") or 0)
    r.samples += [Sample(METRIC_TTFF, s.labels, ttff), Sample(METRIC_JITTER, s.labels, jitter),
                  Sample(METRIC_LOST, s.labels, float(lost), "inc"),
                  Sample(METRIC_FREEZES, s.labels, float(fc.freezes), "inc")]
    r.figures.update(time_to_first_frame_seconds=round(ttff, 6), frames=fc.frames, fps=round(fc.fps, 2),
                     freezes=fc.freezes, freeze_seconds=round(fc.freeze_seconds, 4), jitter_seconds=round(jitter, 6),
                     packets_received=received, packets_lost=lost, loss_ratio=round(loss_ratio, 4))
    if beacon_lat:
        r.figures["beacon_latency_seconds"] = round(sorted(beacon_lat)[len(beacon_lat) // 2], 4)
    state, fault, detail = State.OK, None, f"WHEP playback: {fc.frames} frames at {fc.fps:.1f} fps, no freeze"
    if fc.freezes:
        state, fault = State.DEGRADED, "video_freezes"
        detail = f"WHEP playback froze {fc.freezes} time(s), {fc.freeze_seconds:.1f} s in all"
    elif loss_ratio >= cfg.loss_fault_ratio:
        state, fault = State.DEGRADED, "packet_loss"
        detail = f"{loss_ratio:.1%} of the played packets lost"
    elif jitter >= cfg.jitter_fault_seconds:
        state, fault = State.DEGRADED, "jitter_high"
        detail = f"jitter {jitter * 1000:.0f} ms"
    r.detail = detail
    figures = {k: float(v) for k, v in r.figures.items() if isinstance(v, (int, float))}
    r.evidence.insert(0, Evidence("playback", s.t.component, state, fault, detail, None, figures))
