"""WHEP playback probe (stage ``playback``; draft-ietf-wish-whep).

A session: POST a recvonly offer, time to the first decoded frame
(``signalpath_webrtc_time_to_first_frame_seconds``), frames received, freezes by the W3C
webrtc-stats ``freezeCount`` rule (an inter-frame gap ≥ max(3 × average frame duration,
average + 150 ms); :class:`~probes.core.webrtc_stats.FreezeCounter`), jitter in seconds
(aiortc reports RTP clock units: ÷ 90,000 for video), packets lost; DELETE at the end.

Two ways to run it (``keep_open``):

- kept open (the agent's default, :class:`WhepPlayback`): one session held across attempts,
  as a viewer watches. The attempt that opens it reports the setup and the time to first
  frame; every later one (each ``interval_s``, default :data:`KEPT_INTERVAL_S` 1 s) reports
  what arrived since the previous report: frames, fps, the freezes that ended in the window
  and one going on now (a viewer sees a picture stand still before the next frame ends the
  gap, so a stall is evidence at the first report after ``visible_freeze_seconds`` of it:
  within one interval), loss (judged over the last ``LOSS_WINDOW_S``, 2 s: at 1-s reports one
  lost packet of ~100 would be 1 %) and received packets as differences of the cumulative
  ``inbound-rtp`` counters (lost: from its high-water mark — aiortc's count goes down when a
  NACK repairs a packet), the current jitter. A session that broke (ICE consent or DTLS lost,
  the track ended) has its last window reported (the picture stands still from its last frame)
  and is replaced at the next attempt; one ``renew_s`` old (300 s; at least two intervals) is
  reported, then renewed while frames flow, so setup is measured again — and a server that
  refuses new sessions (which a kept viewer does not notice) is seen within ``renew_s``. An
  opening that fails is tried again after 2, 4, 8, 16, then every 30 s (its verdict repeated
  meanwhile), not at every interval. Before the W3C rule has its five gaps, a picture standing
  still for ``visible_freeze_seconds`` is a freeze. The
  runner closes (DELETEs) the session at shutdown, on a reload that drops the endpoint and
  when the agent sheds its virtual players (agent/runner.py ``close_held``). Cost: see
  tests/perf/lab_webrtc_cpu.py ``--compare-whep`` (the closing figures are in the README).
- a session per attempt (``keep_open: false``; interval 30 s): open, measure ``seconds`` of
  media, DELETE.

Signalling, the peer connection, the ``signal``/``ice``/``dtls`` phases, the
failure reasons they share and the clean-up are the session's
(probes/net/webrtc_session.py); no frame once connected is ``Failure.MEDIA_ERROR``
(fault ``no_media``; ``packet_loss`` when RTP packets arrived with at least
``NO_FRAME_LOSS_RATIO`` of them lost after retransmission: likely the path, not the server). RTX is not offered by the WHEP probe: aiortc keys ``inbound-rtp``
per receiver, so the RTX stream's statistics would overwrite the media stream's
(ENVIRONMENT.md) and hide the network's loss. aiortc's receivers always send NACKs for
video and its senders always retransmit, so "packets lost" is the RFC 3550 §6.4.1 count:
loss that retransmission did not repair (a repaired packet counts as received). WHEP
gives no RTT in aiortc (a receiver has no remote-inbound-rtp).

Thresholds (THRESHOLDS.md "WebRTC"): loss ≥ 1 % is ``packet_loss`` and jitter ≥ 30 ms
is ``jitter_high`` (Twilio preflight "optimal" ends there); freezes a viewer sees are
``video_freezes``: one of at least ``visible_freeze_seconds`` (0.5 s, Agora's
``totalFrozenTime`` rule: two renderable frames more than 500 ms apart), or W3C freezes
adding up to that within the attempt (a stutter). A shorter W3C freeze is counted
(``freezes``, ``signalpath_webrtc_freezes_total``) but is no fault. A freeze half covered
by a stall of the agent's own event loop (``ProbeContext.agent_stall``: its CPU starved, a
blocking call) measures the agent, not the stream, and is not counted either (the figures'
``agent_freezes``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core import beacon
from probes.core.frames import luma_plane
from probes.core.webrtc_stats import VISIBLE_FREEZE_S, FreezeCounter, jitter_seconds
from probes.faults import Fault
from probes.net.webrtc_session import (
    METRIC_FREEZES,
    METRIC_JITTER,
    METRIC_LOST,
    METRIC_TTFF,
    Session,
    WebRtcCommon,
    WebRtcEndpointSettings,
    WebRtcError,
    stats,
)

__all__ = ["WhepPlayback", "WhepProbeConfig", "probe"]


class WhepProbeConfig(WebRtcCommon):
    """A WHEP playback test."""

    jitter_fault_seconds: float = Field(default=0.03, gt=0, description="THRESHOLDS.md: jitter < 30 ms (Twilio)")
    visible_freeze_seconds: float = Field(
        default=VISIBLE_FREEZE_S, gt=0, le=10,
        description="a freeze (or freezes together) at least this long is video_freezes (Agora: 500 ms)")
    keep_open: bool = Field(
        default=False, description="hold one session open across attempts, each reporting what it received "
                                   "since the previous one (false: a new session each attempt, `seconds` long)")
    renew_s: float = Field(
        default=300.0, ge=10, le=86_400, description="kept open: a session this old is closed and a new one "
                                                    "opened (setup and time to first frame measured again), "
                                                    "when frames flow")


class WhepPlayback(WebRtcEndpointSettings, WhepProbeConfig):
    """A WHEP endpoint to test-play from (stage ``playback``): one session kept open,
    reported every ``interval_s`` (default 1 s; 30 s with ``keep_open: false``)."""

    name: str = Field(default="whep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    keep_open: bool = Field(
        default=True, description="hold one session open and report every interval_s what it received (as a "
                                  "viewer watching); false: a new `seconds`-long session every interval_s")

    @model_validator(mode="after")
    def _interval_default(self) -> WhepPlayback:
        # after parsing: ``keep_open: "${KEEP}"`` arrives as a string and is a bool only now
        if "interval_s" not in self.model_fields_set:
            object.__setattr__(self, "interval_s", KEPT_INTERVAL_S if self.keep_open else SESSION_INTERVAL_S)
        return self


KEPT_INTERVAL_S = 1.0
"""Seconds between reports of a kept-open session: a freeze a viewer sees (0.5 s) is evidence
within one interval of its start, the agent's localization cycle (a report reads the receiver's
statistics, nothing more: the session's cost is the decode that runs between reports)."""
LOSS_WINDOW_S = 2.0
"""Seconds of a kept session's reports its loss ratio is judged over (at least the last report)."""
RETRY_FIRST_S = 2.0
"""Seconds before a failed opening is tried again the first time (doubling up to
``SESSION_INTERVAL_S``)."""
SESSION_INTERVAL_S = 30.0
STATS_TIMEOUT_S = 0.5
"""Seconds the receiver's statistics may take when no frame came (local: milliseconds)."""
NO_FRAME_LOSS_RATIO = 0.1
"""Share of RTP packets lost after NACK repair above which a session that decoded no frame is
``packet_loss`` rather than ``no_media``. Our choice, no standard behind it: ten times the 1 %
``loss_fault_ratio`` (Twilio), so that a keyframe problem with a little loss beside it (a long
GOP, a PLI unanswered) stays the server's ``no_media``."""


# ----------------------------------------------------------------------------- the attempt


def _recvonly_codecs() -> list[Any]:
    from aiortc import RTCRtpReceiver

    caps = RTCRtpReceiver.getCapabilities("video")
    assert caps is not None  # None only for a kind aiortc does not know
    return [c for c in caps.codecs if c.mimeType.lower() != "video/rtx"]


class _Viewer:
    """One WHEP session's receiving side: the peer connection and a task reading its frames
    (arrival times into a :class:`FreezeCounter`, a beacon read from every fifth)."""

    def __init__(self, s: Session) -> None:
        self.s = s
        self.frames = FreezeCounter()
        self.beacon: deque[tuple[float, float]] = deque(maxlen=64)  # (arrival, latency s)
        self.reader: asyncio.Task[None] | None = None
        self.first_frame = asyncio.Event()
        self.ended = False  # the remote track ended (the server closed it)
        self.tr: Any = None
        self.closing = False

    async def open(self, url: str) -> float:
        """Signalling, ICE, DTLS and the first frame, within the session's deadline; returns the
        time to first frame (s). Raises :class:`WebRtcError`."""
        s = self.s
        t_start = s.ctx.clock()
        pc = s.new_pc()
        self.tr = tr = pc.addTransceiver("video", direction="recvonly")
        tr.setCodecPreferences(_recvonly_codecs())
        tracks: list[Any] = []
        got_track = asyncio.Event()

        @pc.on("track")
        def _on_track(track: Any) -> None:
            if track.kind == "video" and not tracks:
                tracks.append(track)
                got_track.set()

        async def read_frames() -> None:
            from aiortc.mediastreams import MediaStreamError

            await got_track.wait()
            track = tracks[0]
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    self.ended = True
                    return
                now = s.ctx.clock()
                self.frames.frame(now)
                if not self.first_frame.is_set():
                    self.first_frame.set()
                if self.frames.frames % 5 == 1:
                    captured = beacon.read(luma_plane(frame))
                    if captured is not None:
                        self.beacon.append((now, s.ctx.wall() - captured))

        answer = await s.offer(url)
        t_answer = await s.answer(answer)
        self.reader = asyncio.ensure_future(read_frames())
        await s.connect_phases(t_answer)
        try:
            async with asyncio.timeout(s.remaining()):
                await self.first_frame.wait()
        except TimeoutError:
            s.phase("first_frame", t_start, s.ctx.clock(), error="no frame")
            raise await self._no_frame() from None
        first = self.frames.first
        assert first is not None  # read_frames counts the frame before it sets first_frame
        s.phase("first_frame", t_start, first)
        return first - t_start

    async def _no_frame(self) -> WebRtcError:
        """Why no frame came. RTP packets arriving with at least ``NO_FRAME_LOSS_RATIO`` of them
        lost after retransmission is ``packet_loss`` (likely the path: a keyframe of a few packets
        did not get through whole in a few tries); else (nothing arrived, or little was lost: a
        keyframe never sent, a codec the viewer cannot decode) ``no_media``. The receiver's
        statistics get at most half the time left before the deadline; without them, ``no_media``."""
        inbound: dict[str, Any] | None = None
        with contextlib.suppress(Exception):  # the statistics are a detail: the verdict stands without them
            async with asyncio.timeout(min(STATS_TIMEOUT_S, max(0.0, self.s.remaining()) / 2)):
                inbound = await stats(self.tr.receiver, "inbound-rtp") or {}
        if inbound is None:
            return WebRtcError(Failure.MEDIA_ERROR, "connected, but no video frame arrived (the receiver's "
                               "statistics were unavailable)", Fault.NO_MEDIA)
        lost = max(0, int(inbound.get("packetsLost") or 0))
        received = int(inbound.get("packetsReceived") or 0)
        ratio = lost / max(1, lost + received)
        if received and ratio >= NO_FRAME_LOSS_RATIO:
            return WebRtcError(Failure.MEDIA_ERROR, f"connected, {received} RTP packet(s) arrived but {ratio:.0%} "
                               f"were lost after retransmission: no video frame could be decoded", Fault.PACKET_LOSS)
        got = f" ({received} RTP packet(s) arrived, {ratio:.0%} lost, none decodable)" if received else \
            " (no RTP packet arrived)"
        return WebRtcError(Failure.MEDIA_ERROR, f"connected, but no video frame arrived{got}", Fault.NO_MEDIA)

    def broken(self) -> str | None:
        """Why the session can no longer deliver, or None."""
        pc = self.s.pc
        if self.s.failed.is_set() or (pc is not None and pc.connectionState in ("failed", "closed")):
            return "the peer connection failed (ICE consent or DTLS lost)"
        if self.ended:
            return "the server ended the video track"
        return None

    async def aclose(self) -> None:
        """DELETE the session, close the peer connection, stop reading (bounded; never raises
        but for the caller's own cancellation, after which the peer connection is closed too)."""
        self.closing = True
        try:
            await self.s.close()
        finally:
            if self.reader is not None:
                self.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait({self.reader}, timeout=1.0)


@dataclass(slots=True)
class _Kept:
    """A session held open across attempts (``keep_open``) and where its last report ended."""

    viewer: _Viewer
    opened_at: float
    reported_at: float
    ttff: float  # the session's time to first frame (s): repeated in each report, as the gauge's value
    frames: int = 0
    lost: int = 0  # high-water mark of the cumulative packetsLost (a NACK repair lowers aiortc's count)
    received: int = 0
    recent: deque[tuple[float, int, int]] = field(default_factory=deque)  # (report time, lost, received)
    renew: str | None = None  # why the next attempt closes it and opens a new one (its window reported first)

    async def aclose(self) -> None:  # agent/runner.py Runner.release: at shutdown, reload, shedding
        await self.viewer.aclose()


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One WHEP playback attempt against ``target.url`` (see the module docstring)."""
    cfg: WhepProbeConfig = target.config if target.config is not None else WhepProbeConfig()
    if cfg.keep_open:
        return await _kept_attempt(target, ctx, cfg)
    s = Session(target, ctx, cfg, "playback", "whep")
    v = _Viewer(s)
    t_start = ctx.clock()
    try:
        ttff = await v.open(target.url or "")
        t_media0 = ctx.clock()
        await asyncio.sleep(max(0.0, min(cfg.seconds, s.remaining() - 0.1)))
        t_end = ctx.clock()
        v.frames.finish(t_end)
        # a freeze the agent itself made (its event loop could not run) is not the stream's
        agent_freezes = v.frames.discount(ctx.agent_stall)
        fc = v.frames
        s.phase("playback", t_media0, t_end, attrs={"frames": fc.frames, "freezes": fc.freezes,
                                                    "agent_freezes": agent_freezes})
        inbound = await stats(v.tr.receiver, "inbound-rtp") or {}
        _whep_figures(s, cfg, _Window(frames=fc.frames, seconds=(fc.last or t_end) - (fc.first or t_end),
                                      freezes=list(fc.spans), agent_freezes=agent_freezes,
                                      lost=max(0, int(inbound.get("packetsLost") or 0)),
                                      received=int(inbound.get("packetsReceived") or 0),
                                      jitter=jitter_seconds(inbound.get("jitter") or 0),
                                      beacon=[lat for _, lat in v.beacon]), ttff)
        s.result.figures["total_seconds"] = round(ctx.clock() - t_start, 6)
    except WebRtcError as exc:
        s.fail(exc)
    finally:
        await v.aclose()
    return s.result


async def _kept_attempt(target: ProbeTarget, ctx: ProbeContext, cfg: WhepProbeConfig) -> ProbeResult:
    """``keep_open``: report the window since the previous report of the session held; open one
    when none is held. A session that broke, or is due for renewal, has its last window reported
    first and is replaced at the next attempt; a failed opening is tried again after a back-off."""
    kept: _Kept | None = ctx.state.get("whep")
    now = ctx.clock()
    if kept is not None and kept.renew is not None:
        del ctx.state["whep"]
        prior = f"previous session closed: {kept.renew}"
        await kept.aclose()
        return await _open(target, ctx, cfg, prior)
    if kept is None:
        retry: _Retry | None = ctx.state.get("whep_retry")
        if retry is not None and now < retry.at:
            # a failing endpoint is not asked again every interval: its verdict stands until the retry
            return retry.repeat(now)
        return await _open(target, ctx, cfg, None)
    v = kept.viewer
    v.s.rebind(ctx)
    why = v.broken()
    result = await _report_window(kept, ctx, cfg, why)
    if why is not None:
        kept.renew = why
    elif v.frames.last is not None and now - v.frames.last < cfg.visible_freeze_seconds \
            and now - kept.opened_at >= max(cfg.renew_s, 2 * target.interval):
        kept.renew = f"renewed after {now - kept.opened_at:.0f} s (setup measured again)"
    return result


@dataclass(slots=True)
class _Retry:
    """When a kept session may be tried again after failed openings, and the last verdict."""

    at: float
    failures: int
    result: ProbeResult

    def repeat(self, now: float) -> ProbeResult:
        r = self.result
        return ProbeResult(failure=r.failure, detail=f"{r.detail} (tried again in {self.at - now:.0f} s)",
                           evidence=list(r.evidence))


async def _open(target: ProbeTarget, ctx: ProbeContext, cfg: WhepProbeConfig, prior: str | None) -> ProbeResult:
    """Open the kept session; a failure backs off (``RETRY_FIRST_S`` doubling up to
    ``SESSION_INTERVAL_S``) before the next try."""
    s = Session(target, ctx, cfg, "playback", "whep")
    v = _Viewer(s)
    try:
        ttff = await v.open(target.url or "")
    except WebRtcError as exc:
        s.fail(exc)
        await v.aclose()
        last: _Retry | None = ctx.state.get("whep_retry")
        failures = (last.failures if last is not None else 0) + 1
        wait = min(SESSION_INTERVAL_S, RETRY_FIRST_S * 2 ** min(failures - 1, 16))
        ctx.state["whep_retry"] = _Retry(ctx.clock() + wait, failures, s.result)
        return s.result
    except BaseException:
        await v.aclose()
        raise
    ctx.state.pop("whep_retry", None)
    at = ctx.clock()
    ctx.state["whep"] = _Kept(v, opened_at=at, reported_at=at, ttff=ttff, frames=v.frames.frames)
    s.result.samples += [Sample(METRIC_TTFF, s.labels, ttff), Sample(METRIC_FREEZES, s.labels, 0.0, "inc"),
                         Sample(METRIC_LOST, s.labels, 0.0, "inc")]  # the counters exist from the start
    s.result.figures.update(time_to_first_frame_seconds=round(ttff, 6), session_age_seconds=0.0)
    detail = "; ".join([f"WHEP session opened: first frame after {ttff:.2f} s", *([prior] if prior else [])])
    s.result.detail = detail
    figures = {k: float(x) for k, x in s.result.figures.items() if isinstance(x, (int, float))}
    s.result.evidence.insert(0, Evidence("playback", target.component, State.OK, None, detail, None, figures))
    return s.result


async def _report_window(kept: _Kept, ctx: ProbeContext, cfg: WhepProbeConfig, broken: str | None) -> ProbeResult:
    """What a viewer of the kept session saw since its previous report; ``broken``: why the
    session can deliver no more (its picture stands still from its last frame on)."""
    v, s = kept.viewer, kept.viewer.s
    fc = v.frames
    agent_freezes = fc.discount(ctx.agent_stall)
    now = ctx.clock()
    since = kept.reported_at
    spans = [(a, b) for a, b in fc.spans if b > since]
    # a freeze going on now: the viewer sees it although no frame has ended it yet (before the W3C
    # rule has its 5 gaps, or with the session broken: from the visible-freeze length on)
    limit = fc.threshold() if broken is None else None
    limit = cfg.visible_freeze_seconds if limit is None else limit
    last = fc.last if fc.last is not None else kept.opened_at
    if now - last >= limit and ctx.agent_stall(last, now) < 0.5 * (now - last):
        spans.append((last, now))  # as long as it lasts so far (it may have begun before this window)
    inbound: dict[str, Any] | None = None
    with contextlib.suppress(Exception):  # a peer connection closing under us (shutdown) has none
        inbound = await stats(v.tr.receiver, "inbound-rtp")
    lost = max(0, int((inbound or {}).get("packetsLost") or 0))
    received = int((inbound or {}).get("packetsReceived") or 0)
    d_lost = max(0, lost - kept.lost) if inbound is not None else 0
    d_received = max(0, received - kept.received) if inbound is not None else 0
    w = _Window(frames=fc.frames - kept.frames, seconds=now - since, freezes=spans, agent_freezes=agent_freezes,
                lost=d_lost, received=d_received, jitter=jitter_seconds((inbound or {}).get("jitter") or 0),
                beacon=[lat for at, lat in v.beacon if at > since], ongoing=bool(spans) and spans[-1][1] == now,
                completed=sum(1 for _, b in fc.spans if since < b), windowed=True)
    kept.reported_at, kept.frames = now, fc.frames
    if inbound is not None:
        kept.lost, kept.received = max(kept.lost, lost), max(kept.received, received)
    # loss is judged over the last LOSS_WINDOW_S (a 1-s report of ~100 packets makes one lost
    # packet 1 %): this report's counts and the earlier ones within the window
    kept.recent.append((now, d_lost, d_received))
    while kept.recent and now - kept.recent[0][0] >= LOSS_WINDOW_S:
        kept.recent.popleft()
    w.judged_lost = sum(x[1] for x in kept.recent) + (0 if kept.recent else d_lost)
    w.judged_received = sum(x[2] for x in kept.recent) + (0 if kept.recent else d_received)
    s.phase("playback", since, now, attrs={"frames": w.frames, "freezes": len(spans), "agent_freezes": agent_freezes})
    s.result.figures["session_age_seconds"] = round(now - kept.opened_at, 3)
    _whep_figures(s, cfg, w, kept.ttff)
    if broken is not None:
        s.result.detail = f"{s.result.detail}; the session ended: {broken} (a new one at the next attempt)"
        s.result.evidence[0].detail = s.result.detail
    if v.closing:  # the agent closed it meanwhile (shutdown, shedding): nothing measured about the stream
        s.result = ProbeResult(failure=Failure.AGENT_BEHIND, detail="the session was closed by the agent")
    return s.result


@dataclass(slots=True)
class _Window:
    """What the viewer received over ``seconds``: frame count, freezes as (start, end) arrival
    times, RTP packets lost and received, the current jitter (s), beacon latencies (s)."""

    frames: int
    seconds: float
    freezes: list[tuple[float, float]]
    agent_freezes: int
    lost: int
    received: int
    jitter: float
    beacon: list[float]
    ongoing: bool = False  # the last freeze is still going on
    completed: int | None = None  # freezes that ended in the window (None: all of ``freezes``)
    windowed: bool = False  # a kept session's report window (fps over the window), else one session's media
    judged_lost: int | None = None  # loss judged over LOSS_WINDOW_S (a kept session), else this window's
    judged_received: int | None = None

    @property
    def freeze_seconds(self) -> float:
        return sum(b - a for a, b in self.freezes)

    @property
    def longest(self) -> float:
        return max((b - a for a, b in self.freezes), default=0.0)


def _whep_figures(s: Session, cfg: WhepProbeConfig, w: _Window, ttff: float) -> None:
    r = s.result
    lost = w.lost if w.judged_lost is None else w.judged_lost
    received = w.received if w.judged_received is None else w.judged_received
    loss_ratio = lost / max(1, lost + received)
    if w.windowed:
        fps = w.frames / w.seconds if w.seconds > 0 else 0.0
    else:
        fps = (w.frames - 1) / w.seconds if w.frames > 1 and w.seconds > 0 else 0.0
    counted = len(w.freezes) if w.completed is None else w.completed
    r.samples += [Sample(METRIC_JITTER, s.labels, w.jitter), Sample(METRIC_LOST, s.labels, float(w.lost), "inc"),
                  Sample(METRIC_FREEZES, s.labels, float(counted), "inc")]
    r.samples.append(Sample(METRIC_TTFF, s.labels, ttff))  # a kept session's: when it opened
    r.figures["time_to_first_frame_seconds"] = round(ttff, 6)
    r.figures.update(frames=w.frames, fps=round(fps, 2), freezes=len(w.freezes),
                     freeze_seconds=round(w.freeze_seconds, 4), longest_freeze_seconds=round(w.longest, 4),
                     jitter_seconds=round(w.jitter, 6), packets_received=w.received, packets_lost=w.lost,
                     loss_ratio=round(loss_ratio, 4), agent_freezes=w.agent_freezes)
    if w.beacon:
        r.figures["beacon_latency_seconds"] = round(sorted(w.beacon)[len(w.beacon) // 2], 4)
    mine = w.agent_freezes
    brief = (f"{len(w.freezes)} brief freeze(s), {w.freeze_seconds:.2f} s in all, under the "
             f"{cfg.visible_freeze_seconds:g}-s a viewer sees" if w.freezes else "no freeze")
    state, fault, detail = State.OK, None, f"WHEP playback: {w.frames} frames at {fps:.1f} fps, {brief}" + (
        f" ({mine} pause(s) of the agent's own not counted)" if mine else "")
    if w.freezes and (w.longest >= cfg.visible_freeze_seconds or w.freeze_seconds >= cfg.visible_freeze_seconds):
        state, fault = State.DEGRADED, Fault.VIDEO_FREEZES
        if w.ongoing and w.frames == 0:
            detail = f"WHEP playback: no frame for {w.longest:.1f} s (the picture stands still)"
        else:
            detail = (f"WHEP playback froze {len(w.freezes)} time(s), {w.freeze_seconds:.1f} s in all "
                      f"(longest {w.longest:.1f} s{', going on' if w.ongoing else ''})")
    elif loss_ratio >= cfg.loss_fault_ratio:
        state, fault = State.DEGRADED, Fault.PACKET_LOSS
        detail = f"{loss_ratio:.1%} of the played packets lost"
    elif w.jitter >= cfg.jitter_fault_seconds:
        state, fault = State.DEGRADED, Fault.JITTER_HIGH
        detail = f"jitter {w.jitter * 1000:.0f} ms"
    r.detail = detail
    figures = {k: float(v) for k, v in r.figures.items() if isinstance(v, (int, float))}
    r.evidence.insert(0, Evidence("playback", s.t.component, state, fault, detail, None, figures))
