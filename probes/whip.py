"""WHIP publish probe (stage ``ingest``; RFC 9725 "WebRTC-HTTP Ingestion Protocol").

One attempt against ``target.url``: POST an SDP offer → ``201 Created`` with the SDP
answer and a ``Location`` (the session resource); publish a synthetic video track (a
moving pattern with the latency beacon of :mod:`probes.core.beacon` stamped on every
frame) for ``seconds``; DELETE the resource at the end — always, also after a failure
(RFC 9725 §4.2). Signalling, the peer connection, the ``signal``/``ice``/``dtls``
phases, the failure reasons they share and the clean-up are the session's
(probes/net/webrtc_session.py); this probe adds the phase

- ``first_rtcp``: DTLS done → the first RTCP receiver report about our stream
  (the sender's ``remote-inbound-rtp`` appears, RFC 3550 §6.4); none is
  ``Failure.MEDIA_ERROR`` (fault ``no_rtcp``).

From the sender's ``remote-inbound-rtp`` (W3C webrtc-stats; aiortc fills it from the
receiver reports): round-trip time (``signalpath_webrtc_rtt_seconds``), cumulative
packets lost and fraction lost (RFC 3550 §6.4.1, the 0-255 fixed point reported as a
0-1 ratio); from ``outbound-rtp``: the achieved bitrate
(``signalpath_ingest_upload_bits_per_second``).

Thresholds (THRESHOLDS.md "WebRTC"): RTT ≥ 200 ms is ``rtt_high`` (XSplit ingest
colours: red); loss ≥ 1 % is ``packet_loss`` (Twilio preflight "optimal" ends there).

A session per attempt, unlike WHEP's kept-open viewer (probes/whep.py): a WHIP session is a
publisher, and a test publisher held open would occupy the ingest for good (many WHIP
servers take one publisher per stream or key, and count it as a live input), and encode
video without pause; the broadcast's own publisher is watched by the ingest and studio probes.
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.webrtc_stats import fraction_lost_ratio, jitter_seconds
from probes.faults import Fault
from probes.net.webrtc_session import (
    METRIC_JITTER,
    METRIC_LOST,
    METRIC_RTT,
    METRIC_UPLOAD,
    Session,
    WebRtcCommon,
    WebRtcEndpointSettings,
    WebRtcError,
    make_beacon_track,
    stats,
)

__all__ = ["WhipIngest", "WhipProbeConfig", "probe"]


class WhipProbeConfig(WebRtcCommon):
    """A WHIP publish test (RFC 9725)."""

    width: int = Field(default=320, ge=160, le=1920)
    height: int = Field(default=180, ge=90, le=1080)
    fps: int = Field(default=15, ge=1, le=60)


class WhipIngest(WebRtcEndpointSettings, WhipProbeConfig):
    """A WHIP endpoint to test-publish to (stage ``ingest``)."""

    name: str = Field(default="whip", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


# ----------------------------------------------------------------------------- the attempt


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One WHIP publish attempt against ``target.url`` (see the module docstring)."""
    cfg: WhipProbeConfig = target.config if target.config is not None else WhipProbeConfig()
    s = Session(target, ctx, cfg, "ingest", "whip")
    t_start = ctx.clock()
    try:
        pc = s.new_pc()
        track = make_beacon_track(cfg.width, cfg.height, cfg.fps, ctx.wall)
        sender = pc.addTransceiver(track, direction="sendonly").sender
        answer = await s.offer(target.url or "")
        t_answer = await s.answer(answer)
        dtls_at = await s.connect_phases(t_answer)
        # first RTCP receiver report about our stream
        first = None
        while s.remaining() > 0.02:
            first = await stats(sender, "remote-inbound-rtp")
            if first is not None:
                break
            await asyncio.sleep(0.02)
        if first is None:
            s.phase("first_rtcp", dtls_at, ctx.clock(), error="no receiver report")
            raise WebRtcError(Failure.MEDIA_ERROR, "the endpoint sent no RTCP receiver report for our stream",
                              Fault.NO_RTCP)
        t_rtcp = ctx.clock()
        s.phase("first_rtcp", dtls_at, t_rtcp)
        out0 = await stats(sender, "outbound-rtp") or {}
        t_media0 = ctx.clock()
        await asyncio.sleep(max(0.0, min(cfg.seconds, s.remaining() - 0.1)))
        out1 = await stats(sender, "outbound-rtp") or {}
        remote = await stats(sender, "remote-inbound-rtp") or first
        # RTT needs a receiver report that echoes one of our sender reports (RFC 3550
        # §6.4.1 LSR/DLSR); RTCP intervals are ~1 s, so a short window may end before one
        rtt_by = ctx.clock() + min(2.5, s.remaining() - 0.5)
        while remote.get("roundTripTime") is None and ctx.clock() < rtt_by:
            await asyncio.sleep(0.05)
            remote = await stats(sender, "remote-inbound-rtp") or remote
        elapsed = max(1e-3, ctx.clock() - t_media0)
        s.phase("publish", t_media0, ctx.clock())
        _whip_figures(s, cfg, out0, out1, remote, elapsed)
        s.result.figures["total_seconds"] = round(ctx.clock() - t_start, 6)
    except WebRtcError as exc:
        s.fail(exc)
    finally:
        await s.close()
    return s.result


def _whip_figures(s: Session, cfg: WhipProbeConfig, out0: dict, out1: dict, remote: dict, elapsed: float) -> None:
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
        state, fault = State.DEGRADED, Fault.PACKET_LOSS
        detail = f"{max(frac, loss_ratio):.1%} of the published packets lost on the way to the endpoint"
    elif rtt is not None and rtt >= cfg.rtt_fault_seconds:
        state, fault = State.DEGRADED, Fault.RTT_HIGH
        detail = f"round-trip time to the WHIP endpoint is {rtt * 1000:.0f} ms"
    r.detail = detail
    figures = {k: float(v) for k, v in r.figures.items() if isinstance(v, (int, float))}
    r.evidence.insert(0, Evidence("ingest", s.t.component, state, fault, detail, None, figures))
