"""WHIP publish and WHEP playback probes against the lab's aiortc WHIP/WHEP endpoint
(a real WebRTC peer on 127.0.0.1, agent/lab/webrtc.py), healthy and under each fault."""

from __future__ import annotations

import asyncio
import time

import pytest
from attempt import call_probe
from waiting import wait_for

from agent.lab.webrtc import WebRtcEndpoint
from agent.selfwatch import LoopWatch
from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, State
from probes.core.webrtc_stats import FreezeCounter, fraction_lost_ratio, jitter_seconds
from probes.whep import WhepProbeConfig
from probes.whep import probe as whep_probe
from probes.whip import WhipIngest, WhipProbeConfig
from probes.whip import probe as whip_probe

pytestmark = pytest.mark.timeout(60)

CANARY = "canary-tok-7f3a91"
LOOP = ("127.0.0.1",)


def whip_target(url: str, timeout: float = 8.0, **cfg) -> ProbeTarget:
    c = WhipProbeConfig(ice_host_addresses=LOOP, seconds=cfg.pop("seconds", 1.5), **cfg)
    return ProbeTarget("whip", "main", "ingest", "whip", c, url, 10.0, timeout)


def ingest_target(url: str, **cfg) -> ProbeTarget:
    """A WHIP endpoint as the agent's config gives it (:class:`WhipIngest`: publishes and checks)."""
    c = WhipIngest(url=url, ice_host_addresses=LOOP, seconds=cfg.pop("seconds", 1.0), timeout_s=cfg.pop("timeout_s", 6.0),
                   **cfg)
    return ProbeTarget("whip", "main", "ingest", "whip", c, url, c.job_interval_s, c.timeout_s)


def whep_target(url: str, timeout: float = 8.0, **cfg) -> ProbeTarget:
    c = WhepProbeConfig(ice_host_addresses=LOOP, seconds=cfg.pop("seconds", 1.5), **cfg)
    return ProbeTarget("whep", "main", "playback", "whep", c, url, 10.0, timeout)



def assert_no_secret(result, secret: str = CANARY) -> None:
    assert secret not in repr(result)


# ----------------------------------------------------------------------------- pure cores


def test_freeze_counter_w3c_rule():
    fc = FreezeCounter()
    t = 0.0
    for _ in range(20):  # 15 fps: average 66.7 ms, limit max(200 ms, 216.7 ms) = 216.7 ms
        fc.frame(t)
        t += 1 / 15
    assert fc.freezes == 0
    assert fc.threshold() == pytest.approx(1 / 15 + 0.150)
    t += 0.140  # a 206-ms gap: below the limit, not a freeze
    fc.frame(t)
    assert fc.freezes == 0
    t += 0.5
    assert fc.frame(t) is True
    assert fc.freezes == 1 and fc.freeze_seconds == pytest.approx(0.5)
    fc.finish(t + 1.0)  # still frozen at the end of the window: counts
    assert fc.freezes == 2


def test_freezes_the_observer_made_are_taken_out():
    fc = FreezeCounter()
    for i in range(20):
        fc.frame(i / 25)
    fc.frame(0.76 + 0.6)  # a 600-ms gap while the observer itself could not run
    fc.frame(1.4)
    fc.frame(1.4 + 0.5)  # a 500-ms gap of the stream's own
    assert fc.freezes == 2
    stalled = lambda t0, t1: 0.55 if t0 < 1.0 else 0.0  # noqa: E731  (the first gap: 550 of 600 ms)
    assert fc.discount(stalled) == 1
    assert fc.freezes == 1 and fc.freeze_seconds == pytest.approx(0.5)


def test_a_freeze_is_a_fault_once_a_viewer_sees_it():
    """W3C counts a 250-ms gap at 25 fps as a freeze; a viewer sees one from 500 ms (Agora's
    rule), or short ones adding up to that (a stutter)."""
    fc = FreezeCounter()
    for i in range(20):
        fc.frame(i / 25)
    t = 0.76 + 0.25
    fc.frame(t)  # a 250-ms hiccup: counted
    assert fc.freezes == 1 and fc.longest == pytest.approx(0.25)
    assert not fc.viewer_visible()
    for _ in range(10):
        t += 0.04
        fc.frame(t)
    t += 0.26
    fc.frame(t)  # a second one: 0.51 s frozen in all, a stutter a viewer sees
    assert fc.freezes == 2 and fc.viewer_visible()
    assert not fc.viewer_visible(0.6)

    one = FreezeCounter()
    for i in range(20):
        one.frame(i / 25)
    one.frame(0.76 + 0.7)  # one 700-ms freeze
    assert one.viewer_visible() and one.longest == pytest.approx(0.7)
    assert not FreezeCounter().viewer_visible()  # nothing counted, nothing seen

async def test_loop_watch_sees_the_agent_itself_stall():
    watch = LoopWatch(time.monotonic)
    task = asyncio.ensure_future(watch.run())
    try:
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        time.sleep(0.4)  # a blocking call in the event loop: the stall to see  # noqa: ASYNC251
        await asyncio.sleep(0.2)
        assert watch.longest(t0, time.monotonic()) >= 0.3
        assert watch.longest(t0 - 10, t0 - 5) == 0.0
    finally:
        task.cancel()


def test_freeze_counter_needs_history_and_30fps_rule():
    fc = FreezeCounter()
    assert fc.frame(0.0) is False and fc.frame(1.0) is False  # no average yet: no judgement
    fc = FreezeCounter()
    for i in range(31):
        fc.frame(i / 30)
    assert fc.threshold() == pytest.approx(1 / 30 + 0.150)  # avg + 150 ms beats 3 x 33 ms


def test_unit_conversions():
    assert jitter_seconds(900) == pytest.approx(0.01)
    assert fraction_lost_ratio(64) == pytest.approx(0.25)
    assert fraction_lost_ratio(300) == 1.0


# ----------------------------------------------------------------------------- WHIP


async def test_whip_healthy_publish_phases_and_delete():
    async with WebRtcEndpoint(token=CANARY) as ep:
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), bearer_token=CANARY))
        assert r.ok, r.detail
        f = r.figures
        for phase in ("signal", "ice", "dtls", "first_rtcp"):
            assert 0 < f[f"{phase}_seconds"] < 3, phase
        assert f["packets_sent"] > 20 and f["packets_lost"] == 0
        assert 0 <= f["rtt_seconds"] < 0.05
        assert 20_000 < f["upload_bits_per_second"] < 5_000_000
        assert f["delete_status"] == 204
        assert not ep.sessions and len(ep.deleted) == 1 and ep.deleted[0].frames > 10
        assert ep.deleted[0].beacon_latency_s and max(ep.deleted[0].beacon_latency_s) < 1.0
        phases = {s.labels.get("phase") for s in r.samples if s.name == "signalpath_ingest_connect_seconds"}
        assert {"ice", "dtls", "first_rtcp"} <= phases
        assert r.evidence[0].stage == "ingest" and r.evidence[0].state is State.OK
        assert [s.name for s in r.spans][:4] == ["whip signal", "whip ice", "whip dtls", "whip first_rtcp"]
        assert_no_secret(r)


async def test_whip_refused_and_wrong_token_are_auth_refused():
    async with WebRtcEndpoint(token=CANARY) as ep:
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), bearer_token="wrong-" + CANARY))
        assert r.failure is Failure.AUTH_REFUSED and "401" in r.detail
        assert r.evidence[0].fault == "auth_refused" and r.evidence[0].state is State.DOWN
        assert_no_secret(r)
        ep.set_faults(refuse=True)
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), bearer_token=CANARY))
        assert r.failure is Failure.AUTH_REFUSED and "403" in r.detail
        assert_no_secret(r)
        assert not ep.sessions


async def test_whip_http_error_and_unreachable():
    async with WebRtcEndpoint() as ep:
        r = await call_probe(whip_probe, whip_target(ep.base_url() + "/nope"))
        assert r.failure is Failure.HTTP_ERROR and r.evidence[0].fault == "http_error"
        port = ep.port
    r = await call_probe(whip_probe, whip_target(f"http://127.0.0.1:{port}/whip/main"))
    assert r.failure is Failure.CONNECTION_REFUSED and r.evidence[0].fault == "unreachable"


async def test_whip_stall_gives_no_rtcp_and_still_deletes():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(stall=True)
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), timeout=4.0))
        assert r.failure is Failure.MEDIA_ERROR and r.evidence[0].fault == "no_rtcp", r.detail
        assert "dtls_seconds" in r.figures  # it got that far
        assert r.figures["delete_status"] == 204 and not ep.sessions


async def test_whip_ice_failure():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(ice_fail=True)
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), timeout=4.0))
        assert r.failure in (Failure.CONNECTION_FAILED, Failure.TIMEOUT), r.detail
        assert r.evidence[0].fault == "ice_failed"
        assert "ice_seconds" not in r.figures
        assert not ep.sessions  # deleted despite the failure


async def test_whip_packet_drop_is_packet_loss():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(drop=0.3)
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), seconds=2.0))
        assert r.ok, r.detail
        assert r.figures["packets_lost"] > 0
        assert r.evidence[0].state is State.DEGRADED and r.evidence[0].fault == "packet_loss"
        lost = [s.value for s in r.samples if s.name == "signalpath_webrtc_packets_lost_total"]
        assert lost and lost[0] > 0


async def test_whip_delay_raises_rtt():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(delay_s=0.25)
        r = await call_probe(whip_probe, whip_target(ep.whip_url(), seconds=2.0))
        assert r.ok, r.detail
        assert 0.2 < r.figures["rtt_seconds"] < 0.6
        assert r.evidence[0].fault == "rtt_high"


def test_when_a_whip_publish_is_due_between_checks():
    """None yet; interval_s after the last one started (a tick a little early counts); at once
    after a signalling failure; 2, 4, 8, 16 s, then interval_s after a publish that failed later."""
    from probes.whip import _Publishes

    p = _Publishes()
    assert p.due(0.0, 30.0)
    p.published(ProbeResult(), 100.0, 104.0)
    assert not p.due(104.5, 30.0) and not p.due(129.0, 30.0) and p.due(129.9, 30.0)
    p.signal_failed = True
    assert p.due(104.5, 30.0)
    waits = []
    for _ in range(6):
        p.published(ProbeResult(failure=Failure.MEDIA_ERROR), 0.0, 0.0)
        waits.append(next(t for t in range(60) if p.due(float(t), 30.0)))
    assert waits == [2, 4, 8, 16, 30, 30]
    assert next(t for t in range(60) if p.due(float(t), 10.0)) == 10  # interval_s caps the back-off
    p.published(ProbeResult(), 50.0, 54.0)  # a good publish ends the back-off
    assert p.failures == 0 and not p.due(60.0, 30.0)
    p.failures = 5000  # ICE failing for days: the back-off stays interval_s (2 ** 4999 overflowed a float)
    assert not p.due(80.0, 30.0) and p.due(84.0, 30.0)
    p.published(None, 90.0, 91.0)  # a publish cut short (the deadline, an internal error) is a failure too
    assert p.failures == 5001 and not p.due(92.0, 30.0) and p.result is not None and p.result.ok
    kept = ProbeResult(evidence=[Evidence("ingest", "whip", State.OK)])
    p.published(kept, 100.0, 104.0)
    kept.evidence[0] = Evidence("ingest", "whip", State.UNKNOWN, None, "not measured: the agent was behind")
    assert p.result.evidence[0].state is State.OK  # what the runner edits afterwards is not what checks repeat


async def test_a_whip_check_sees_a_refusal_at_once_and_the_recovery_is_published_in_full():
    async with WebRtcEndpoint(token=CANARY) as ep:
        target = ingest_target(ep.whip_url(), bearer_token=CANARY)
        ctx = ProbeContext(state={})
        r = await call_probe(whip_probe, target, ctx)
        assert r.ok and "check_only" not in r.figures and "ice_seconds" in r.figures, r.detail
        ep.set_faults(refuse=True)
        r = await call_probe(whip_probe, target, ctx)  # no publish due for 30 s: a check
        assert r.figures.get("check_only") == 1, r.figures
        assert r.failure is Failure.AUTH_REFUSED and "403" in r.detail
        assert r.evidence[0].fault == "auth_refused" and r.evidence[0].state is State.DOWN
        assert [s.name for s in r.spans] == ["whip signal"]  # refused: no resource to DELETE
        ep.set_faults(refuse=False)
        r = await call_probe(whip_probe, target, ctx)  # after a signalling failure: a full publish at once
        assert r.ok and r.evidence[0].state is State.OK, r.detail
        assert "check_only" not in r.figures
        assert {"ice_seconds", "dtls_seconds", "first_rtcp_seconds", "upload_bits_per_second"} <= r.figures.keys()
        assert "measured" not in r.detail
        assert_no_secret(r)
        assert not ep.sessions and [s.connected.is_set() for s in ep.deleted] == [True, True]


async def test_a_whip_check_repeats_the_last_publish_verdict_without_connecting_and_deletes_its_session():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(delay_s=0.25)
        target = ingest_target(ep.whip_url(), seconds=1.5)
        ctx = ProbeContext(state={})
        pub = await call_probe(whip_probe, target, ctx)
        assert pub.ok and pub.evidence[0].fault == "rtt_high", (pub.detail, pub.figures)
        ep.set_faults()  # the path is fine again, but only the next publish measures it
        r = await call_probe(whip_probe, target, ctx)
        assert r.figures.get("check_only") == 1, r.figures
        assert r.ok and r.evidence[0].state is State.DEGRADED and r.evidence[0].fault == "rtt_high", r.detail
        assert "publish measured" in r.evidence[0].detail and "signalling checked now" in r.detail
        assert r.evidence[0].figures["rtt_seconds"] == pub.figures["rtt_seconds"]
        # the answer was not applied: no ICE, DTLS or media
        assert not {"ice_seconds", "dtls_seconds", "first_rtcp_seconds", "rtt_seconds"} & r.figures.keys()
        assert [s.name for s in r.spans] == ["whip signal", "whip delete"] and r.figures["delete_status"] == 204
        connect = {s.labels["phase"]: s.value for s in r.samples if s.name == "signalpath_ingest_connect_seconds"}
        # the signal phase measured now; the others are the publish's (figures are rounded to 1 µs)
        assert connect["signal"] == pytest.approx(r.figures["signal_seconds"], abs=1e-6) and connect["signal"] > 0
        assert connect["ice"] == pytest.approx(pub.figures["ice_seconds"], abs=1e-6)
        rtt = [s for s in pub.samples if s.name == "signalpath_webrtc_rtt_seconds"]
        assert rtt and [s for s in r.samples if s.name == "signalpath_webrtc_rtt_seconds"] == rtt  # the gauge holds
        assert not [s for s in r.samples if s.kind == "inc"]  # the publish's counters are not counted again
        assert not ep.sessions and len(ep.deleted) == 2  # DELETEd
        assert ep.deleted[0].connected.is_set() and not ep.deleted[1].connected.is_set()


async def test_after_a_publish_that_failed_past_signalling_checks_repeat_it_until_its_back_off_ends():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(stall=True)
        target = ingest_target(ep.whip_url(), timeout_s=4.0)
        ctx = ProbeContext(state={})
        r = await call_probe(whip_probe, target, ctx)
        assert r.failure is Failure.MEDIA_ERROR and r.evidence[0].fault == "no_rtcp", r.detail
        ep.set_faults()
        r = await call_probe(whip_probe, target, ctx)  # within the 2-s back-off: a check, never "OK"
        assert r.figures.get("check_only") == 1, r.figures
        # the check itself succeeded: no failure counted again (probe_failures_total), the verdict is the evidence's
        assert r.ok and r.evidence[0].fault == "no_rtcp" and r.evidence[0].state is State.DOWN, r.detail
        ctx.state["whip"].ended_at -= 2.0  # the back-off has passed
        r = await call_probe(whip_probe, target, ctx)
        assert r.ok and "check_only" not in r.figures and "first_rtcp_seconds" in r.figures, r.detail
        assert not ep.sessions


def test_whip_checks_set_the_job_interval_and_null_keeps_publishes_only():
    from agent.config import ConfigError, parse_config
    from agent.jobs import webrtc_jobs

    def job(**whip):
        conf = {"streams": [{"name": "main", "origin": "http://127.0.0.1:9/live/main.m3u8",
                             "ingest": {"whip": [{"url": "http://127.0.0.1:9/whip/main", **whip}]}}]}
        [j] = webrtc_jobs(parse_config(conf).streams[0])
        assert j.targets[0].interval == j.interval
        return j

    j = job()
    assert j.interval == 2.0 and j.targets[0].config.interval_s == 30.0  # checks every 2 s, a publish every 30
    assert job(check_interval_s=None).interval == 30.0  # null: the former schedule, a publish each time
    assert job(check_interval_s=None, interval_s=10).interval == 10.0
    assert job(interval_s=1).interval == 1.0 and job(check_interval_s=5, interval_s=60).interval == 5.0
    for bad in (0, -1, 3601):
        with pytest.raises(ConfigError, match="check_interval_s"):
            job(check_interval_s=bad)


# ----------------------------------------------------------------------------- WHEP


async def test_whep_healthy_playback():
    async with WebRtcEndpoint(token=CANARY) as ep:
        r = await call_probe(whep_probe, whep_target(ep.whep_url(), bearer_token=CANARY))
        assert r.ok, r.detail
        f = r.figures
        assert 0 < f["time_to_first_frame_seconds"] < 2
        assert f["frames"] >= 15 and 10 < f["fps"] < 20  # the lab sends 15 fps
        assert f["freezes"] == 0 and f["packets_lost"] == 0
        assert 0 <= f["jitter_seconds"] < 0.03
        assert 0 <= f["beacon_latency_seconds"] < 1.0  # the lab stamps its capture time
        assert f["delete_status"] == 204 and not ep.sessions
        names = {s.name for s in r.samples}
        assert {"signalpath_webrtc_time_to_first_frame_seconds", "signalpath_webrtc_freezes_total",
                "signalpath_webrtc_jitter_seconds", "signalpath_webrtc_packets_lost_total"} <= names
        assert all(s.labels["stage"] == "playback" for s in r.samples)
        assert_no_secret(r)


async def test_whep_refused():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(refuse=True)
        r = await call_probe(whep_probe, whep_target(ep.whep_url()))
        assert r.failure is Failure.AUTH_REFUSED and r.evidence[0].stage == "playback"


async def test_whep_stalled_from_start_is_no_media():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(stall=True)
        r = await call_probe(whep_probe, whep_target(ep.whep_url(), timeout=3.0))
        assert r.failure is Failure.MEDIA_ERROR and r.evidence[0].fault == "no_media", r.detail
        assert not ep.sessions


async def test_whep_stall_mid_stream_counts_a_freeze():
    async with WebRtcEndpoint() as ep:
        task = asyncio.ensure_future(call_probe(whep_probe, whep_target(ep.whep_url(), seconds=3.5, timeout=10.0)))

        async def sent_enough() -> bool:
            for s in list(ep.sessions.values()):
                for sender in s.pc.getSenders():
                    for st in (await sender.getStats()).values():
                        if st.type == "outbound-rtp" and st.packetsSent > 30:
                            return True
            return False

        await wait_for(sent_enough, 8.0, "the WHEP session to be playing")
        ep.set_faults(stall=True)
        await asyncio.sleep(1.0)  # the fault's duration
        ep.set_faults(stall=False)
        r = await asyncio.wait_for(task, 15)
        assert r.ok, r.detail
        assert r.figures["freezes"] >= 1 and r.figures["freeze_seconds"] >= 0.7
        assert r.evidence[0].fault == "video_freezes" and r.evidence[0].state is State.DEGRADED


async def test_a_freeze_the_agent_made_itself_is_not_the_streams():
    """The agent's own event loop blocked for 0.8 s mid-playback (its CPU starved, a blocking
    call): frames arrive late, but the stream did not freeze. Not a video_freezes fault."""
    watch = LoopWatch(time.monotonic)
    watcher = asyncio.ensure_future(watch.run())
    try:
        async with WebRtcEndpoint() as ep:
            ctx = ProbeContext(state={}, agent_stall=watch.longest)
            task = asyncio.ensure_future(call_probe(whep_probe, whep_target(ep.whep_url(), seconds=3.5, timeout=10.0),
                                                    ctx))
            await wait_for(lambda: any(s.pc.connectionState == "connected" for s in ep.sessions.values()), 8.0,
                           "the WHEP session to connect")
            await asyncio.sleep(1.2)  # playing
            time.sleep(0.8)  # noqa: ASYNC251  (the agent's own stall, on purpose)
            async with asyncio.timeout(15):
                r = await task
    finally:
        watcher.cancel()
    assert r.ok, r.detail
    assert r.figures["agent_freezes"] >= 1 and r.figures["freezes"] == 0, r.figures
    assert r.evidence[0].state is State.OK and "not counted" in r.evidence[0].detail


async def test_whep_drop_and_delay():
    async with WebRtcEndpoint() as ep:
        ep.set_faults(drop=0.7)
        r = await call_probe(whep_probe, whep_target(ep.whep_url(), seconds=3.0))
        # aiortc repairs loss by NACK/retransmission; what it cannot repair shows as
        # packets lost, frames missing and freezes
        assert r.evidence[0].state is State.DEGRADED, r.figures
        assert r.evidence[0].fault in ("video_freezes", "packet_loss")
        ep.set_faults()
        ep.set_faults(delay_s=0.4)
        r = await call_probe(whep_probe, whep_target(ep.whep_url(), seconds=1.0))
        assert r.ok, r.detail
        assert r.figures["time_to_first_frame_seconds"] >= 0.4


async def test_closing_a_peer_aiortc_is_closing_itself_leaves_its_close_intact():
    """aiortc closes a peer connection itself when ICE fails; a second close() awaits the first
    one's future. A deadline on that second close (the probe's, the lab's) used to cancel the
    shared future, and aiortc's own close then raised InvalidStateError in a task nobody
    awaited. close_peer shields it: the deadline passes, aiortc's close still completes."""
    from probes.net.webrtc_session import close_peer

    class Peer:  # aiortc RTCPeerConnection.close()'s own shape: one future, set by the first caller
        def __init__(self) -> None:
            self.closed: asyncio.Future[bool] | None = None

        async def close(self) -> None:
            if self.closed is not None:
                await self.closed
                return
            self.closed = asyncio.get_running_loop().create_future()
            await asyncio.sleep(0.3)  # stopping transports
            self.closed.set_result(True)

    pc = Peer()
    own = asyncio.ensure_future(pc.close())  # aiortc's task on ICE failure
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await close_peer(pc, timeout_s=0.05)  # our deadline is shorter than its close
    assert time.monotonic() - t0 < 0.25
    await asyncio.wait_for(own, 2)  # raised InvalidStateError before
    assert pc.closed is not None and pc.closed.result() is True


async def test_a_kept_session_whose_frames_stop_before_the_w3c_rule_can_judge_reports_the_freeze():
    """Two frames, then nothing: the W3C freeze rule needs five gaps before it has a threshold,
    so the kept session's report used to say "no freeze" for as long as the picture stood still.
    Without that threshold the visible-freeze length (0.5 s) applies."""
    from probes.net.webrtc_session import Session
    from probes.whep import _Kept, _report_window, _Viewer

    now = [100.0]
    ctx = ProbeContext(state={}, clock=lambda: now[0])
    cfg = WhepProbeConfig(keep_open=True)
    target = ProbeTarget("whep", "main", "playback", "whep", cfg, "http://127.0.0.1:9/whep", 2.0, 10.0)
    v = _Viewer(Session(target, ctx, cfg, "playback", "whep"))
    v.frames.frame(100.0)
    v.frames.frame(100.04)
    kept = _Kept(v, opened_at=99.8, reported_at=100.04, ttff=0.2, frames=2)
    now[0] = 102.0
    r = await _report_window(kept, ctx, cfg, None)
    assert r.evidence[0].state is State.DEGRADED and r.evidence[0].fault == "video_freezes", r.detail
    assert "no frame for 2.0 s" in r.detail and r.figures["frames"] == 0 and r.figures["fps"] == 0


async def test_a_session_that_decodes_no_frame_is_named_by_what_its_receiver_got():
    """No frame before the deadline: nothing arrived (or a packet, or little lost) is the server's
    no_media; packets arriving with at least NO_FRAME_LOSS_RATIO of them lost after repair is the
    path's packet_loss. Statistics that fail or hang leave no_media, within the deadline."""
    from types import SimpleNamespace

    from probes.net.webrtc_session import Session, WebRtcError
    from probes.whep import NO_FRAME_LOSS_RATIO, _Viewer

    cfg = WhepProbeConfig()
    target = ProbeTarget("whep", "main", "playback", "whep", cfg, "http://127.0.0.1:9/whep", 2.0, 10.0)

    class Receiver:
        def __init__(self, lost=0, received=0, fail=None):
            self.lost, self.received, self.fail = lost, received, fail

        async def getStats(self):  # aiortc's name
            if self.fail == "hang":
                await asyncio.sleep(3600)
            if self.fail == "raise":
                raise RuntimeError("closed")
            return {"a": SimpleNamespace(type="inbound-rtp", packetsLost=self.lost, packetsReceived=self.received)}

    async def verdict(receiver) -> WebRtcError:
        v = _Viewer(Session(target, ProbeContext(state={}), cfg, "playback", "whep"))
        v.tr = SimpleNamespace(receiver=receiver)
        return await v._no_frame()

    def just_over(ratio: float, received: int) -> int:  # lost packets for a ratio just over ``ratio``
        return int(ratio * received / (1 - ratio)) + 1

    e = await verdict(Receiver())
    assert e.fault == "no_media" and "no RTP packet arrived" in e.detail
    assert (await verdict(Receiver(lost=0, received=1))).fault == "no_media"  # one packet: no loss to count
    below = int(NO_FRAME_LOSS_RATIO * 100 / (1 - NO_FRAME_LOSS_RATIO)) - 1
    e = await verdict(Receiver(lost=below, received=100))
    assert e.fault == "no_media" and "100 RTP packet(s) arrived" in e.detail, e.detail
    e = await verdict(Receiver(lost=just_over(NO_FRAME_LOSS_RATIO, 100), received=100))
    assert e.fault == "packet_loss" and e.failure is Failure.MEDIA_ERROR and "were lost" in e.detail, e.detail
    assert (await verdict(Receiver(lost=300, received=12))).fault == "packet_loss"
    for fail in ("raise", "hang"):
        t0 = time.monotonic()
        e = await verdict(Receiver(lost=300, received=12, fail=fail))
        assert e.fault == "no_media" and "statistics were unavailable" in e.detail, (fail, e.detail)
        assert time.monotonic() - t0 < 1.0


async def test_a_kept_session_that_cannot_open_backs_off_instead_of_posting_every_interval():
    from agent.runner import close_held

    cfg = WhepProbeConfig(ice_host_addresses=LOOP, keep_open=True)
    dead = "http://127.0.0.1:9/whep/main"  # the discard port: nothing listens
    target = ProbeTarget("whep", "main", "playback", "whep", cfg, dead, 2.0, 5.0)
    ctx = ProbeContext(state={})
    r = await call_probe(whep_probe, target, ctx)
    assert r.failure is Failure.CONNECTION_REFUSED and r.evidence[0].fault == "unreachable", r.detail
    again = await call_probe(whep_probe, target, ctx)  # at once: within the 2-s back-off, not asked again
    assert again.failure is Failure.CONNECTION_REFUSED and "tried again in 2 s" in again.detail, again.detail
    assert [e.fault for e in again.evidence] == ["unreachable"] and "whep" not in ctx.state
    ctx.state["whep_retry"].at = 0.0  # the back-off has passed
    third = await call_probe(whep_probe, target, ctx)
    assert "tried again" not in third.detail and ctx.state["whep_retry"].failures == 2  # the next wait: 4 s
    await close_held([ctx.state])


def test_the_whep_interval_default_follows_keep_open_also_from_an_environment_string():
    from probes.whep import WhepPlayback

    url = "https://whep.example/whep/main"
    assert WhepPlayback(url=url).interval_s == 1.0
    assert WhepPlayback(url=url, keep_open="false").interval_s == 30.0  # ${KEEP} arrives as a string
    assert WhepPlayback(url=url, keep_open=False, interval_s=10).interval_s == 10.0
