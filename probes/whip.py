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

Signalling checks between publishes (:class:`WhipIngest` ``check_interval_s``, default
:data:`CHECK_INTERVAL_S` 2 s; ``null`` turns them off). A full publish every ``interval_s``
(30 s) sees a server that starts refusing new sessions only at the next publish. So the agent
runs the probe every ``min(check_interval_s, interval_s)`` seconds (:attr:`WhipIngest.job_interval_s`);
an attempt that is not a due publish is a *check*: it starts as a publish does (a new peer
connection and track, the offer POSTed; ``201`` with an ``application/sdp`` answer and a
``Location`` validated by :meth:`Session.offer`), then DELETEs the resource without applying
the answer — no ICE, no DTLS, no media. A check reports

- its own ``signal`` phase (span, ``signal_seconds``, ``signalpath_ingest_connect_seconds{phase="signal"}``),
  the DELETE (``delete_status``), ``check_only: 1`` and ``publish_age_seconds`` (s since the
  last publish ended);
- a failure at once as a publish's signalling failure would be: 401/403 ``auth_refused``,
  another status ``http_error``, no connection ``unreachable``, a malformed answer
  ``protocol_error``;
- else the last publish's verdict repeated (its evidence, detail and gauges; not its failure:
  the check itself succeeded, so no failure or counter is counted again), with "(publish
  measured N s ago; signalling checked now)": a media verdict (``rtt_high``, ``packet_loss``,
  ``no_rtcp``…) stands until the next publish measures media again, and a check never says
  "OK" about media it did not measure. With no publish yet, the attempt publishes.

A publish is due when none was made yet; ``interval_s`` after the last one started; at the
attempt after one that failed at signalling (an endpoint that recovers is measured fully at
once: that attempt just goes on past the answer); and after a publish that failed later (ICE,
DTLS, RTCP, media), 2, 4, 8, 16 s, then ``interval_s`` after its end, as WHEP retries an
opening. The state is :class:`_Publishes` in ``ProbeContext.state``. A
:class:`WhipProbeConfig` used directly (preflight's single attempt, tests, the CPU bench) always
publishes.

Why 2 s: the WHEP viewer's report period (probes/whep.py ``KEPT_INTERVAL_S``); a refusal is
seen within one check interval, and the localizer opens the incident one or two 1-s cycles
later. Measured (tests/perf/localize_bench.py ``--only webrtc_refuse --repeat 8
--agent-process``, its 10-s publish interval, 2026-12-02): 8/8 at ingest/whip, median 3.8 s,
p95 5.8 s (6.9-11.5 s with publishes only). Not seen sooner: a refusal that begins while a
publish runs (about 4 s with ``seconds`` 3): the runner keeps one attempt per target at a time,
so no check runs then and the next one follows the publish — 40 % of the time at the bench's
10-s interval, 13 % at the default 30 s.

Cost (tests/perf/whip_check_cpu.py: the lab's endpoint in its own process, 2-core dev box,
two runs on 2026-12-02): a check is 10 ms of wall time, 6-8 ms of the agent's CPU and 6-8 ms
of the endpoint's — one POST and one DELETE, an offer and an answer made (an ECDSA key and host
ICE candidates on each side), nothing encoded; a 3-s publish is 4 s, 160-210 ms and 70-85 ms.
At the defaults (a publish and 14 checks per 30 s) the agent spends 0.8-1.1 % of one core per
WHIP entry (0.5-0.7 % with publishes only), the endpoint 0.5-0.6 % (0.2-0.3 %). The TLS
context is made once per target (:attr:`_Publishes.tls`): httpx loading the CA bundle for each
client was 27 of a check's 33 ms. A server that counts or logs sessions sees 15 short ones per
30 s instead of one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
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


CHECK_INTERVAL_S = 2.0
"""Seconds between signalling checks (a refusal is seen within one; see the module docstring)."""
RETRY_FIRST_S = 2.0
"""The first wait after a publish that failed after signalling; it doubles up to ``interval_s``."""
DUE_SLACK_S = 0.25
"""A publish is due this much before ``interval_s`` has passed: an attempt started a little
early on the runner's clock does not push the publish to the next check."""


class WhipIngest(WebRtcEndpointSettings, WhipProbeConfig):
    """A WHIP endpoint to test-publish to (stage ``ingest``): a full publish every ``interval_s``
    (default 30 s) and a signalling check every ``check_interval_s`` (2 s) between them."""

    name: str = Field(default="whip", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    interval_s: float = Field(default=30.0, gt=0, le=3600,
                              description="seconds between full publishes (offer, ICE, DTLS, RTCP, `seconds` of media)")
    check_interval_s: float | None = Field(
        default=CHECK_INTERVAL_S, gt=0, le=3600,
        description="seconds between signalling checks between publishes (the offer POSTed, the answer checked, "
                    "the session DELETEd: no ICE, DTLS or media): a server refusing new sessions is seen within "
                    "one; null: off (only the publishes, every interval_s)")

    @property
    def job_interval_s(self) -> float:
        """How often the agent runs the probe: every check, or every publish with checks off."""
        if self.check_interval_s is None:
            return self.interval_s
        return min(self.check_interval_s, self.interval_s)


@dataclass(slots=True)
class _Publishes:
    """A WHIP endpoint's publishes, as the checks between them need them (``ctx.state["whip"]``)."""

    result: ProbeResult | None = None  # the last publish that got past signalling: the verdict checks repeat
    started_at: float = 0.0  # when it started (clock s): the next is due interval_s later
    ended_at: float = 0.0  # when it ended (clock s)
    failures: int = 0  # publishes in a row that failed after signalling (ICE, DTLS, RTCP, media)
    signal_failed: bool = False  # the latest attempt failed at signalling: the next one publishes
    tls: ssl.SSLContext | None = None  # made once: loading the CA bundle was 27 of a check's 33 ms of CPU

    def due(self, now: float, interval_s: float) -> bool:
        """Is a full publish due at ``now``?"""
        if self.result is None or self.signal_failed:
            return True
        if self.failures:
            wait = min(interval_s, RETRY_FIRST_S * 2 ** min(self.failures - 1, 16))
            return now - self.ended_at >= wait - DUE_SLACK_S
        return now - self.started_at >= interval_s - DUE_SLACK_S

    def published(self, result: ProbeResult | None, started_at: float, ended_at: float) -> None:
        """A publish that got past signalling ended with ``result``; None: it was cut short (the
        runner's deadline, an internal error), a failure for the back-off, its verdict the
        runner's. A copy is kept: the runner edits the result it returns (agent/runner.py
        ``unmeasured``)."""
        if result is None:
            self.failures += 1
            if self.result is None:
                self.result = ProbeResult(failure=Failure.TIMEOUT, detail="the publish was cut short")
        else:
            self.result = dataclasses.replace(result, evidence=list(result.evidence), samples=list(result.samples),
                                              spans=[], figures=dict(result.figures))
            self.failures = 0 if result.ok else self.failures + 1
        self.started_at, self.ended_at = started_at, ended_at
        self.signal_failed = False

    def repeat(self, s: Session, now: float) -> None:
        """Into a check's result (its own signal phase, DELETE and figures in it already): the last
        publish's detail, evidence and gauges, noted as measured then."""
        last = self.result
        assert last is not None  # a check runs only after a publish
        age = max(0.0, now - self.ended_at)
        note = f"(publish measured {age:.0f} s ago; signalling checked now)"
        r = s.result
        # the check itself succeeded (probe_success 1, no failure counted again); the verdict is the evidence's
        r.detail = " ".join(x for x in (last.detail, note) if x)
        r.evidence = [dataclasses.replace(e, detail=f"{e.detail} {note}") for e in last.evidence]
        fresh = {(x.name, tuple(sorted(x.labels.items()))) for x in r.samples}
        # gauges hold their last measured value between publishes; counters are not counted twice
        r.samples += [x for x in last.samples
                      if x.kind == "set" and (x.name, tuple(sorted(x.labels.items()))) not in fresh]
        r.figures["publish_age_seconds"] = round(age, 3)


# ----------------------------------------------------------------------------- the attempt


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """One WHIP attempt against ``target.url``: a publish, or with :class:`WhipIngest`
    ``check_interval_s`` a signalling check when no publish is due (see the module docstring)."""
    cfg: WhipProbeConfig = target.config if target.config is not None else WhipProbeConfig()
    s = Session(target, ctx, cfg, "ingest", "whip")
    t_start = ctx.clock()
    pubs: _Publishes | None = None
    check = False
    if isinstance(cfg, WhipIngest) and cfg.check_interval_s is not None:
        pubs = ctx.state.setdefault("whip", _Publishes())
        check = not pubs.due(t_start, cfg.interval_s)
        if pubs.tls is None:
            pubs.tls = httpx.create_ssl_context(verify=cfg.verify_tls, trust_env=False)  # as httpx makes it
        s.tls = pubs.tls
    signalled = ended = False
    try:
        pc = s.new_pc()
        track = make_beacon_track(cfg.width, cfg.height, cfg.fps, ctx.wall)
        sender = pc.addTransceiver(track, direction="sendonly").sender
        if check:
            s.result.figures["check_only"] = 1
        answer = await s.offer(target.url or "")
        signalled = True
        if not check:
            await _publish(s, cfg, sender, answer, t_start)
        ended = True
    except WebRtcError as exc:
        s.fail(exc)
        ended = True
    finally:
        if pubs is not None:  # before the clean-up's awaits: kept also when the attempt is cut short
            if not signalled:
                pubs.signal_failed = pubs.signal_failed or ended
            elif check:
                if ended:
                    pubs.repeat(s, ctx.clock())
            else:
                pubs.published(s.result if ended else None, t_start, ctx.clock())
        await s.close()
    return s.result


async def _publish(s: Session, cfg: WhipProbeConfig, sender: Any, answer: str, t_start: float) -> None:
    """The publish past the answer: ICE, DTLS, the first RTCP report, ``seconds`` of media."""
    ctx = s.ctx
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
