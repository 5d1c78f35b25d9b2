"""The WebRTC peer session the WHIP and WHEP probes share (probes/whip.py,
probes/whep.py), over aiortc + httpx: signalling (POST an SDP offer,
``application/sdp``, ``Authorization: Bearer`` when a token is configured → the SDP
answer and a ``Location``, the session resource), the peer connection and its phases,
and the DELETE of the resource at the end — always, also after a failure (RFC 9725
§4.2). Phases, each a span (and at stage ``ingest`` a
``signalpath_ingest_connect_seconds{phase}`` value):

- ``signal``: POST → answer;
- ``ice``: answer applied → ICE connected (RFC 8445);
- ``dtls``: ICE connected → DTLS handshake done (``connectionState`` ``connected``, RFC 8827).

Failure reasons: a 401/403 is ``Failure.AUTH_REFUSED`` (fault ``auth_refused``), another
non-2xx ``HTTP_ERROR`` (``http_error``), no HTTP connection ``CONNECTION_REFUSED`` /
``CONNECTION_FAILED`` (``unreachable``), ICE failed ``CONNECTION_FAILED`` and ICE not
connected in time ``TIMEOUT`` (``ice_failed``), DTLS failed ``TLS_ERROR``
(``dtls_failed``); each probe adds its own media failure (``no_rtcp``, ``no_media``).

Loopback seam: aioice never offers 127.0.0.1 as a host candidate. ``ice_host_addresses``
(e.g. ``["127.0.0.1"]`` for a loopback target) replaces the interface enumeration for
the peer connections these probes make, through :func:`ice_host_addresses`, a context
variable consulted by a wrapper installed once around ``aioice.ice.get_host_addresses``;
other peer connections in the process are unaffected.

Also here: the metric names both probes report, the config fields they share
(:class:`WebRtcCommon`, :class:`WebRtcEndpointSettings`) and the synthetic video track
the WHIP probe publishes (:func:`make_beacon_track`: a moving pattern with the latency
beacon of :mod:`probes.core.beacon` stamped on every frame).

The bearer token is a secret: it is masked in every detail and span (tested with a
canary); URLs shown are :func:`probes.core.redact.redact_url`'d.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import numpy as np
from pydantic import Field, SecretStr, field_validator, model_validator

from probes.base import (
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
from probes.core import beacon
from probes.core.config import StrictModel
from probes.core.frames import pad_plane
from probes.core.redact import redact_text, redact_url
from probes.core.thresholds import RTT_FAULT_S
from probes.core.webrtc_stats import VIDEO_CLOCK_RATE
from probes.faults import Fault

METRIC_CONNECT = "signalpath_ingest_connect_seconds"
METRIC_UPLOAD = "signalpath_ingest_upload_bits_per_second"
METRIC_RTT = "signalpath_webrtc_rtt_seconds"
METRIC_JITTER = "signalpath_webrtc_jitter_seconds"
METRIC_LOST = "signalpath_webrtc_packets_lost_total"
METRIC_FREEZES = "signalpath_webrtc_freezes_total"
METRIC_TTFF = "signalpath_webrtc_time_to_first_frame_seconds"
METRICS = (METRIC_CONNECT, METRIC_UPLOAD, METRIC_RTT, METRIC_JITTER, METRIC_LOST, METRIC_FREEZES, METRIC_TTFF)

SDP_TYPE = "application/sdp"
MAX_SDP_BYTES = 256 * 1024

# ----------------------------------------------------------------------------- config


class WebRtcCommon(StrictModel):
    """The fields the WHIP and WHEP probe configs share."""

    bearer_token: SecretStr | None = Field(default=None, description="RFC 6750 bearer token; a secret: use ${ENV}")
    seconds: float = Field(default=3.0, gt=0, le=60, description="media seconds measured once connected")
    ice_host_addresses: tuple[str, ...] = Field(
        default=(), description="host ICE candidates to offer; empty: every interface (aioice skips loopback, "
                                "so a 127.0.0.1 target needs ['127.0.0.1'])")
    verify_tls: bool = True
    rtt_fault_seconds: float = Field(default=RTT_FAULT_S, gt=0, description="THRESHOLDS.md: RTT red from 200 ms (XSplit)")
    loss_fault_ratio: float = Field(default=0.01, gt=0, le=1, description="THRESHOLDS.md: loss < 1 % (Twilio)")


class WebRtcEndpointSettings(StrictModel):
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
    def _deadline(self) -> WebRtcEndpointSettings:
        if self.timeout_s < self.seconds + 2:  # type: ignore[attr-defined]
            raise ValueError(f"timeout_s {self.timeout_s:g} must exceed seconds + 2 s")
        return self


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


# ----------------------------------------------------------------------------- errors


async def close_peer(pc: Any, timeout_s: float = 2.0) -> None:
    """Close an aiortc ``RTCPeerConnection`` within ``timeout_s``, never raising.

    ``close()`` is shielded from our deadline: aiortc closes a connection itself when ICE
    fails (a task of its own), and a second ``close()`` awaits the first one's future —
    cancelling that wait cancels the shared future, so aiortc's own close then fails with
    ``InvalidStateError`` ("Task exception was never retrieved" in the log). Past the
    deadline the close goes on by itself."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(pc.close())


class WebRtcError(Exception):
    """A failed step, already mapped to a :class:`Failure`, a fault and a secret-free detail."""

    def __init__(self, failure: Failure, detail: str, fault: Fault) -> None:
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


def make_beacon_track(width: int, height: int, fps: int, wall=time.time):
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
            frame.planes[0].update(pad_plane(self._y, frame.planes[0].line_size))
            for p in frame.planes[1:]:
                p.update(bytes([128]) * p.buffer_size)
            frame.pts = self._n * (VIDEO_CLOCK_RATE // fps)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
            self._n += 1
            return frame

    return BeaconTrack()


# ----------------------------------------------------------------------------- the attempt


class Session:
    """One WHIP/WHEP attempt: signalling, peer connection, phases, cleanup."""

    def __init__(self, target: ProbeTarget, ctx: ProbeContext, cfg: WebRtcCommon, stage: str, kind: str) -> None:
        self.t = target
        self.ctx = ctx
        self.cfg = cfg
        self.stage = stage
        self.kind = kind
        self.labels = {"stream": target.stream, "stage": stage, "component": target.component}
        self.result = ProbeResult()
        self.token = cfg.bearer_token.get_secret_value() if cfg.bearer_token else None
        self.secrets = [self.token] if self.token else []
        self.deadline = own_deadline(ctx)  # room to DELETE the session and report after a timeout
        self.resource: str | None = None
        self.http: httpx.AsyncClient | None = None
        self.tls: ssl.SSLContext | None = None  # a TLS context made earlier (``verify_tls`` applied), else one is made
        self.pc: Any = None
        self.ice_done = asyncio.Event()
        self.dtls_done = asyncio.Event()
        self.failed = asyncio.Event()
        self.fail_reason = ""
        self.ice_at: float | None = None
        self.dtls_at: float | None = None

    def rebind(self, ctx: ProbeContext) -> None:
        """A session kept open across attempts (probes/whep.py ``keep_open``) reports into each
        attempt's own result, under that attempt's deadline."""
        self.ctx = ctx
        self.result = ProbeResult()
        self.deadline = own_deadline(ctx)

    # -- helpers
    def safe(self, text: str) -> str:
        return redact_text(text, self.secrets)

    def remaining(self) -> float:
        return max(0.01, self.deadline - self.ctx.clock())

    def phase(self, name: str, t0: float, t1: float, error: str | None = None,
              attrs: Mapping[str, Any] | None = None) -> None:
        seconds = max(0.0, t1 - t0)
        if error is None and self.stage == "ingest":
            self.result.samples.append(Sample(METRIC_CONNECT, {**self.labels, "phase": name}, seconds))
        if error is None:
            self.result.figures[f"{name}_seconds"] = round(seconds, 6)
        wall_start = self.ctx.wall() - (self.ctx.clock() - t0)
        self.result.spans.append(SpanRecord(
            name=f"{self.kind} {name}", start_ns=int(wall_start * 1e9), end_ns=int((wall_start + seconds) * 1e9),
            attributes={"signalpath.stage": self.stage, "signalpath.phase": name, **(attrs or {})},
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
                raise WebRtcError(Failure.TLS_ERROR, "DTLS handshake failed", Fault.DTLS_FAILED)
            raise WebRtcError(Failure.CONNECTION_FAILED, "ICE failed: no candidate pair worked", Fault.ICE_FAILED)
        if what == "ice":
            raise WebRtcError(Failure.TIMEOUT, "ICE did not connect in time", Fault.ICE_FAILED)
        raise WebRtcError(Failure.TIMEOUT, f"timed out waiting for {what}", Fault.DTLS_FAILED)

    # -- signalling
    async def offer(self, url: str) -> str:
        """POST the local offer; returns the SDP answer and sets ``self.resource``."""
        pc = self.pc
        with ice_host_addresses(self.cfg.ice_host_addresses):
            async with asyncio.timeout(self.remaining()):
                await pc.setLocalDescription(await pc.createOffer())
        verify = self.tls if self.tls is not None else self.cfg.verify_tls
        self.http = httpx.AsyncClient(verify=verify, follow_redirects=False, trust_env=False)
        t0 = self.ctx.clock()
        try:
            resp = await self.http.post(url, content=pc.localDescription.sdp.encode(), headers=self.headers(),
                                        timeout=self.remaining())
        except httpx.ConnectError as exc:
            self.phase("signal", t0, self.ctx.clock(), error="connect failed")
            refused = _caused_by(exc, ConnectionRefusedError)
            raise WebRtcError(Failure.CONNECTION_REFUSED if refused else Failure.CONNECTION_FAILED,
                              f"cannot connect to {redact_url(url)}", Fault.UNREACHABLE) from None
        except httpx.TimeoutException:
            self.phase("signal", t0, self.ctx.clock(), error="timeout")
            raise WebRtcError(Failure.TIMEOUT, "no answer to the SDP offer in time", Fault.UNREACHABLE) from None
        except httpx.HTTPError as exc:
            self.phase("signal", t0, self.ctx.clock(), error=type(exc).__name__)
            raise WebRtcError(Failure.CONNECTION_FAILED, f"HTTP exchange failed: {type(exc).__name__}",
                              Fault.UNREACHABLE) from None
        t1 = self.ctx.clock()
        location = resp.headers.get("location")
        if location:
            self.resource = urljoin(str(resp.request.url), location)
        if resp.status_code in (401, 403):
            self.phase("signal", t0, t1, error=f"HTTP {resp.status_code}", attrs={"http.status_code": resp.status_code})
            raise WebRtcError(Failure.AUTH_REFUSED, f"the endpoint refused the session (HTTP {resp.status_code})",
                              Fault.AUTH_REFUSED)
        if resp.status_code != 201 and not (200 <= resp.status_code < 300 and self.kind == "whep"):
            self.phase("signal", t0, t1, error=f"HTTP {resp.status_code}", attrs={"http.status_code": resp.status_code})
            raise WebRtcError(Failure.HTTP_ERROR, f"the endpoint answered HTTP {resp.status_code}, not 201",
                              Fault.HTTP_ERROR)
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        body = resp.content
        if ctype != SDP_TYPE or not body or len(body) > MAX_SDP_BYTES or not location:
            self.phase("signal", t0, t1, error="bad answer")
            what = "no Location header" if not location else f"answer is not {SDP_TYPE}"
            raise WebRtcError(Failure.PROTOCOL_ERROR, f"malformed answer: {what}", Fault.PROTOCOL_ERROR)
        self.phase("signal", t0, t1, attrs={"http.status_code": resp.status_code})
        return body.decode("utf-8", "replace")

    async def answer(self, sdp: str) -> float:
        from aiortc import RTCSessionDescription

        try:
            async with asyncio.timeout(self.remaining()):
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
        except TimeoutError:
            raise WebRtcError(Failure.TIMEOUT, "applying the SDP answer timed out", Fault.ICE_FAILED) from None
        except (ValueError, AssertionError) as exc:
            raise WebRtcError(Failure.PROTOCOL_ERROR, f"unusable SDP answer: {type(exc).__name__}",
                              Fault.PROTOCOL_ERROR) from None
        return self.ctx.clock()

    async def connect_phases(self, t_answer: float) -> float:
        """Wait for ICE, then DTLS; returns when DTLS completed."""
        try:
            await self.wait_phase(self.ice_done, "ice")
        except WebRtcError as exc:
            self.phase("ice", t_answer, self.ctx.clock(), error=exc.detail)
            raise
        ice_at = self.ice_at
        assert ice_at is not None  # the state callback sets it before it sets ice_done
        self.phase("ice", t_answer, ice_at)
        try:
            await self.wait_phase(self.dtls_done, "dtls")
        except WebRtcError as exc:
            self.phase("dtls", ice_at, self.ctx.clock(), error=exc.detail)
            raise
        dtls_at = self.dtls_at
        assert dtls_at is not None  # likewise before dtls_done
        self.phase("dtls", ice_at, dtls_at)
        return dtls_at

    async def close(self) -> None:
        """DELETE the resource (RFC 9725 §4.2, within 2 s) and close the peer connection; never
        raises but for the caller's own cancellation — the peer connection and the HTTP client
        are closed then too."""
        try:
            if self.resource and self.http is not None:
                t0 = self.ctx.clock()
                try:
                    h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                    async with asyncio.timeout(2.0):
                        resp = await self.http.delete(self.resource, headers=h, timeout=2.0)
                    self.result.figures["delete_status"] = resp.status_code
                    self.phase("delete", t0, self.ctx.clock(), attrs={"http.status_code": resp.status_code})
                except (TimeoutError, httpx.HTTPError) as exc:
                    self.phase("delete", t0, self.ctx.clock(), error=f"DELETE failed: {type(exc).__name__}")
        finally:
            if self.pc is not None:
                await close_peer(self.pc)
            if self.http is not None:
                with contextlib.suppress(Exception):
                    await self.http.aclose()

    def fail(self, exc: WebRtcError) -> None:
        self.result.failure = exc.failure
        self.result.detail = self.safe(exc.detail)
        self.result.evidence.insert(0, Evidence(self.stage, self.t.component, State.DOWN, exc.fault,
                                                self.safe(f"{self.kind.upper()} {redact_url(self.t.url or '')}: "
                                                          f"{exc.detail}")))


async def stats(obj: Any, kind: str) -> dict[str, Any] | None:
    """The first statistics entry of type ``kind`` in ``obj.getStats()`` (a sender or receiver), as a dict."""
    report = await obj.getStats()
    for s in report.values():
        if getattr(s, "type", None) == kind:
            return dict(vars(s))
    return None
