"""WHEP playback probe (stage ``playback``; draft-ietf-wish-whep).

One attempt against ``target.url``: POST a recvonly offer, time to the first decoded
frame (``signalpath_webrtc_time_to_first_frame_seconds``), frames received, freezes by
the W3C webrtc-stats ``freezeCount`` rule (an inter-frame gap ≥ max(3 × average frame
duration, average + 150 ms); :class:`~probes.core.webrtc_stats.FreezeCounter`), jitter
in seconds (aiortc reports RTP clock units: ÷ 90,000 for video), packets lost; DELETE at
the end. Signalling, the peer connection, the ``signal``/``ice``/``dtls`` phases, the
failure reasons they share and the clean-up are the session's
(probes/net/webrtc_session.py); no frame once connected is ``Failure.MEDIA_ERROR``
(fault ``no_media``). RTX is not offered by the WHEP probe: aiortc keys ``inbound-rtp``
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
from typing import Any

from pydantic import Field

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


class WhepPlayback(WebRtcEndpointSettings, WhepProbeConfig):
    """A WHEP endpoint to test-play from (stage ``playback``)."""

    name: str = Field(default="whep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


# ----------------------------------------------------------------------------- the attempt


def _recvonly_codecs() -> list[Any]:
    from aiortc import RTCRtpReceiver

    caps = RTCRtpReceiver.getCapabilities("video")
    assert caps is not None  # None only for a kind aiortc does not know
    return [c for c in caps.codecs if c.mimeType.lower() != "video/rtx"]


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One WHEP playback attempt against ``target.url`` (see the module docstring)."""
    cfg: WhepProbeConfig = target.config if target.config is not None else WhepProbeConfig()
    s = Session(target, ctx, cfg, "playback", "whep")
    t_start = ctx.clock()
    frames = FreezeCounter()
    beacon_lat: list[float] = []
    reader: asyncio.Task[None] | None = None
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
                    captured = beacon.read(luma_plane(frame))
                    if captured is not None:
                        beacon_lat.append(ctx.wall() - captured)

        answer = await s.offer(target.url or "")
        t_answer = await s.answer(answer)
        reader = asyncio.ensure_future(read_frames())
        await s.connect_phases(t_answer)
        try:
            async with asyncio.timeout(s.remaining()):
                await first_frame.wait()
        except TimeoutError:
            s.phase("first_frame", t_start, ctx.clock(), error="no frame")
            raise WebRtcError(Failure.MEDIA_ERROR, "connected, but no video frame arrived", Fault.NO_MEDIA) from None
        first = frames.first
        assert first is not None  # read_frames counts the frame before it sets first_frame
        ttff = first - t_start
        s.phase("first_frame", t_start, first)
        t_media0 = ctx.clock()
        await asyncio.sleep(max(0.0, min(cfg.seconds, s.remaining() - 0.1)))
        t_end = ctx.clock()
        frames.finish(t_end)
        # a freeze the agent itself made (its event loop could not run) is not the stream's
        agent_freezes = frames.discount(ctx.agent_stall)
        s.phase("playback", t_media0, t_end, attrs={"frames": frames.frames, "freezes": frames.freezes,
                                                    "agent_freezes": agent_freezes})
        s.result.figures["agent_freezes"] = agent_freezes
        inbound = await stats(tr.receiver, "inbound-rtp") or {}
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


def _whep_figures(s: Session, cfg: WhepProbeConfig, fc: FreezeCounter, ttff: float, inbound: dict,
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
                     freezes=fc.freezes, freeze_seconds=round(fc.freeze_seconds, 4),
                     longest_freeze_seconds=round(fc.longest, 4), jitter_seconds=round(jitter, 6),
                     packets_received=received, packets_lost=lost, loss_ratio=round(loss_ratio, 4))
    if beacon_lat:
        r.figures["beacon_latency_seconds"] = round(sorted(beacon_lat)[len(beacon_lat) // 2], 4)
    mine = int(r.figures.get("agent_freezes", 0))
    brief = (f"{fc.freezes} brief freeze(s), {fc.freeze_seconds:.2f} s in all, under the "
             f"{cfg.visible_freeze_seconds:g}-s a viewer sees" if fc.freezes else "no freeze")
    state, fault, detail = State.OK, None, f"WHEP playback: {fc.frames} frames at {fc.fps:.1f} fps, {brief}" + (
        f" ({mine} pause(s) of the agent's own not counted)" if mine else "")
    if fc.viewer_visible(cfg.visible_freeze_seconds):
        state, fault = State.DEGRADED, Fault.VIDEO_FREEZES
        detail = (f"WHEP playback froze {fc.freezes} time(s), {fc.freeze_seconds:.1f} s in all "
                  f"(longest {fc.longest:.1f} s)")
    elif loss_ratio >= cfg.loss_fault_ratio:
        state, fault = State.DEGRADED, Fault.PACKET_LOSS
        detail = f"{loss_ratio:.1%} of the played packets lost"
    elif jitter >= cfg.jitter_fault_seconds:
        state, fault = State.DEGRADED, Fault.JITTER_HIGH
        detail = f"jitter {jitter * 1000:.0f} ms"
    r.detail = detail
    figures = {k: float(v) for k, v in r.figures.items() if isinstance(v, (int, float))}
    r.evidence.insert(0, Evidence("playback", s.t.component, state, fault, detail, None, figures))
