"""The ingest monitor (probes/ingest_monitor.py) against the embedded lab's ingest playback side.

- pure: the per-stream share (nearest / covering window), strict settings, no key in errors;
- the probe on the lab's HTTP-FLV (agent/lab/ingest_live.py): healthy ingest latency is
  small and agrees with the lab's truth (capture -> hand-on); a wrong stream is no_input,
  a closed port unreachable;
- the agent: ingest delayed by 2 s shows at ingest (+2 s) and not at transcode (the latency
  probe subtracts the monitor's figure), and the localizer opens latency_high at ingest/ingest.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from reallab import free_port
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from agent.runner import close_held
from probes.base import Evidence, ProbeContext, ProbeResult, ProbeTarget, State
from probes.core.latency_core import Baseline, IngestLatencyShare, IngestWindow
from probes.ingest_monitor import IngestMonitorSettings, MonitorTargetConfig, WatchResult, _judge, _State, probe

SEGMENT_S = 2.0


def test_share_prefers_a_window_covering_the_segment_end():
    share = IngestLatencyShare(wait_s=5)
    assert share.latest() is None and not share.covers(100.0) and share.near(100.0, 30) is None
    share.add(IngestWindow("ingest", 0.1, 98.0, 99.5, 100.0))  # before the step
    share.add(IngestWindow("ingest", 2.1, 103.0, 104.5, 106.0))  # after it
    assert share.covers(100.0) and not share.covers(105.0)
    assert share.near(100.0, 30).latency_s == 2.1  # nearer pre-step window not used: one covers 100
    assert share.near(99.0, 30).latency_s == 0.1  # inside the first window
    assert share.near(110.0, 30).latency_s == 2.1 and share.near(200.0, 30) is None
    assert share.latest().latency_s == 2.1


def test_settings_are_strict_and_keep_the_key_out_of_errors():
    IngestMonitorSettings(url="rtmp://127.0.0.1/live/k")
    with pytest.raises(Exception) as info:  # the agent's loader: no input values in its messages
        parse_config({"streams": [{"name": "m", "origin": "http://127.0.0.1/a.m3u8", "ingest": {
            "monitor": [{"url": "rtmp://127.0.0.1/live/sk-Secret1", "timeout_s": 1}]}}]}, "t")
    assert "sk-Secret1" not in str(info.value) and "timeout_s" in str(info.value)
    with pytest.raises(ValueError, match="not an rtmp"):
        IngestMonitorSettings(url="ftp://127.0.0.1/live/x")
    with pytest.raises(ValueError, match="timeout_s"):
        IngestMonitorSettings(url="http://127.0.0.1/x.flv", timeout_s=2)
    with pytest.raises(ValueError):
        IngestMonitorSettings(url="http://127.0.0.1/x.flv", nope=1)  # type: ignore[call-arg]
    with pytest.raises(Exception, match="not a valid name"):
        parse_config({"streams": [{"name": "m", "origin": "http://127.0.0.1/a.m3u8",
                                   "ingest": {"monitor": [{"name": "bad name", "url": "rtmp://h/a/k"}]}}]}, "t")


def test_a_window_the_agent_stalled_through_is_not_judged_high_and_a_short_gap_repeats_the_verdict():
    """Pure: the kept watch's windows. A late window measured while the agent's own event loop
    stood still (its CPU starved: the thread timing arrivals starved too) is no latency_high;
    the same window with the loop running is; a pause shorter than first_frame_s repeats the
    last verdict, never a fresh OK or a DOWN."""
    tc = MonitorTargetConfig(IngestMonitorSettings(url="http://127.0.0.1/x.flv", baseline_min_samples=3))
    t = ProbeTarget("ingest_monitor", "main", "ingest", "ingest", tc, None, 1.0, 8.0)
    ctx = ProbeContext(state={})
    st = _State(Baseline(300, 3, 1.0, 0.5))
    now = time.time()
    for _ in range(3):
        r = _judge(t, ctx, tc, st, WatchResult(frames=25, stamps=[(now, now - 0.05)]), 0.0)
        assert r.evidence[0].state is State.OK
    late = WatchResult(frames=25, stamps=[(now, now - 2.05)])
    stalled = _judge(t, ctx, tc, st, late, 0.6)
    assert stalled.evidence[0].state is State.OK and stalled.figures["agent_stall_s"] == 0.6
    high = _judge(t, ctx, tc, st, late, 0.0)
    assert high.evidence[0].fault == "latency_high"
    st.last = list(high.evidence)
    gap = _judge(t, ctx, tc, st, WatchResult(gap_s=1.2), 0.0)
    assert gap.evidence[0].fault == "latency_high" and "no frame in the last 1.2 s" in gap.evidence[0].detail
    assert _judge(t, ctx, tc, _State(Baseline(300, 3, 1.0, 0.5)), WatchResult(gap_s=0.4), 0.0).evidence[0].state \
        is State.UNKNOWN  # nothing measured yet


def _target(url: str, name: str = "ingest", share: IngestLatencyShare | None = None, **settings) -> ProbeTarget:
    return ProbeTarget("ingest_monitor", "main", "ingest", name,
                       MonitorTargetConfig(IngestMonitorSettings(name=name, url=url, **settings), share), None, 5.0, 8.0)


async def _once(t: ProbeTarget) -> ProbeResult:
    """One attempt on a fresh context; what it holds open (a kept watch) is closed after."""
    ctx = ProbeContext(state={})
    try:
        return await probe(t, ctx)
    finally:
        await close_held([ctx.state])


def _watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "signalpath-ingest-monitor"]


@pytest.mark.lab
@pytest.mark.parametrize("keep_open", [True, False], ids=["kept", "per-attempt"])
async def test_probe_on_the_lab_ingest_matches_truth_and_reports_failures(keep_open: bool):
    async with Lab(LabConfig(webrtc=False)) as lab:
        share = IngestLatencyShare()
        t = _target(lab.ingest_live_url(), share=share, keep_open=keep_open)
        r = await _once(t)
        truth = lab.truth()["ingest"]["capture_to_handoff_s"]
        assert r.ok, r.detail
        lat = r.figures["latency_s"]
        print(f"ingest latency {lat * 1000:.1f} ms (median {r.figures['median_s'] * 1000:.1f} ms), truth "
              f"{truth * 1000:.1f} ms, {r.figures['frames']} frames, decode {r.figures['decode_cpu_ms']} ms CPU")
        assert 0 < lat < 0.1 and abs(lat - truth) < 0.05
        assert r.figures["beacons"] == r.figures["frames"] >= 30  # 1.5 s at 25 fps
        assert [s.labels for s in r.samples] == [{"stream": "main", "stage": "ingest", "component": "ingest",
                                                 "method": "beacon"}]
        assert r.evidence[0].state is State.OK and share.latest() is not None

        wrong = await _once(_target(lab.control_url + "/ingest/live/other.flv", keep_open=keep_open))
        assert wrong.evidence[0].fault == "no_input" and wrong.evidence[0].state is State.DOWN
    port = free_port()
    gone = await _once(_target(f"rtmp://127.0.0.1:{port}/live/sk-Secret1", keep_open=keep_open))
    assert gone.failure is not None and gone.evidence[0].fault == "unreachable"
    assert "sk-Secret1" not in repr(gone)
    assert not _watch_threads(), "a kept watch outlived close_held"


@pytest.mark.lab
async def test_kept_watch_shows_a_latency_step_during_the_pause_before_the_delayed_frames():
    """Kept open, each report judges the frames that arrived since the last one: a 2-s delay
    added at the ingest holds the frames back, and once the pause makes the next frame's
    latency certainly over the limit (now - the newest frame's capture: about a second after
    the onset), it is latency_high, before the delayed frames arrive; the pause before that
    repeats the last verdict instead of calling the ingest down; the delayed frames then
    measure the step (2 s); only keyframes are decoded."""
    interval = 0.5
    async with Lab(LabConfig(webrtc=False)) as lab:
        t = _target(lab.ingest_live_url(), baseline_min_samples=3, interval_s=interval)
        ctx = ProbeContext(state={})
        try:
            reports = [await probe(t, ctx)]
            for _ in range(4):  # the baseline
                await asyncio.sleep(interval)  # the runner's cadence
                reports.append(await probe(t, ctx))
            assert all(r.evidence[0].state is State.OK for r in reports), [r.evidence for r in reports]
            lat0 = reports[-1].figures["latency_s"]
            assert 0 < lat0 < 0.1
            # one keyframe a second is decoded, not 25 frames: well under 25 ms of CPU per second
            assert reports[-1].figures["decode_cpu_ms"] < 25 * interval, reports[-1].figures
            t0 = time.monotonic()
            await lab.inject("ingest_latency", "ingest", for_s=60, params={"ms": 2000})
            during: list = []

            async def flagged() -> bool:
                await asyncio.sleep(interval)
                during.append(r := await probe(t, ctx))
                return r.evidence[0].fault == "latency_high"
            await wait_for(flagged, 8.0, "latency_high from the kept watch")
            took = time.monotonic() - t0
            print(f"latency_high {took:.2f} s after a 2-s ingest delay began ({len(during)} reports)")
            assert 1.0 <= took < 1.0 + 2 * interval + 0.5, took
            first = during[-1].evidence[0]
            assert "no frame from the ingest" in first.detail and first.figures["latency_at_least_s"] > lat0 + 1.0
            before = [r for r in during[:-1] if "gap_s" in r.figures]
            assert all(r.evidence[0].state is State.OK and "no frame in the last" in r.evidence[0].detail
                       for r in before), [r.evidence for r in before]

            async def measured() -> bool:
                await asyncio.sleep(interval)
                during.append(r := await probe(t, ctx))
                return "latency_s" in r.evidence[0].figures
            await wait_for(measured, 6.0, "the delayed frames")
            last = during[-1].evidence[0]
            assert last.fault == "latency_high" and last.figures["latency_s"] == pytest.approx(lat0 + 2.0, abs=0.1)
        finally:
            await close_held([ctx.state])
    assert not _watch_threads()


async def _relay_server(handler) -> tuple[web.AppRunner, int]:
    """``handler`` served at ``/live.flv`` on 127.0.0.1 (port 0): the runner (clean it up) and its port."""
    app = web.Application()
    app.router.add_get("/live.flv", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest.mark.lab
async def test_kept_watch_rides_over_a_connection_the_server_ends():
    """A playback server that ends the stream (a restart, a subscriber dropped) is a pause
    while the watch connects again (1 s later), not the ingest down: a relay in front of the
    lab's HTTP-FLV ends its first response after 1.5 s and relays the second in full."""
    connections: list[float] = []

    async def relay(request: web.Request) -> web.StreamResponse:
        connections.append(time.monotonic())
        first = len(connections) == 1
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await resp.prepare(request)
        async with aiohttp.ClientSession() as client, client.get(upstream) as up:
            t0 = time.monotonic()
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
                if first and time.monotonic() - t0 > 1.5:
                    break  # the server ends this response
        return resp

    async with Lab(LabConfig(webrtc=False)) as lab:
        upstream = lab.ingest_live_url()
        runner, port = await _relay_server(relay)
        t = _target(f"http://127.0.0.1:{port}/live.flv", interval_s=0.5)
        ctx = ProbeContext(state={})
        try:
            reports = [await probe(t, ctx)]

            async def back_with_frames() -> bool:
                await asyncio.sleep(0.5)  # the runner's cadence
                reports.append(r := await probe(t, ctx))
                return len(connections) >= 2 and r.figures.get("frames", 0) > 0
            await wait_for(back_with_frames, 10, "frames over a second connection")
        finally:
            await close_held([ctx.state])
            await runner.cleanup()
        states = [(r.evidence[0].state, r.evidence[0].fault) for r in reports]
        print(f"{len(connections)} connections; reports {states}")
        assert all(state is State.OK for state, _ in states), states
        assert any("gap_s" in r.figures for r in reports), "the pause between the connections was reported as one"


@pytest.mark.lab
async def test_kept_watch_is_not_fooled_by_a_gop_cache_replayed_on_every_reconnect():
    """A publisher that hangs behind a server with a GOP cache: each new connection gets the
    same cached frames again, then nothing. Those frames are no sign of life: the watch says
    no_input once first_frame_s passed without a new frame, and stays down (before: each
    reconnect's replay made the ingest look alive for a while)."""
    recorded = bytearray()
    connections: list[float] = []

    async def relay(request: web.Request) -> web.StreamResponse:
        connections.append(time.monotonic())
        resp = web.StreamResponse(headers={"Content-Type": "video/x-flv"})
        await resp.prepare(request)
        if len(connections) == 1:  # the live stream for 2 s, recorded
            async with aiohttp.ClientSession() as client, client.get(upstream) as up:
                t0 = time.monotonic()
                async for chunk in up.content.iter_any():
                    recorded.extend(chunk)
                    await resp.write(chunk)
                    if time.monotonic() - t0 > 2.0:
                        break
        else:  # the cache replayed, then the hung publisher: nothing more until the client leaves
            await resp.write(bytes(recorded))
            await asyncio.sleep(30)
        return resp

    async with Lab(LabConfig(webrtc=False)) as lab:
        upstream = lab.ingest_live_url()
        runner, port = await _relay_server(relay)
        t = _target(f"http://127.0.0.1:{port}/live.flv", interval_s=0.5, first_frame_s=2.0, timeout_s=4.0)
        ctx = ProbeContext(state={})
        reports = []
        try:
            reports.append(await probe(t, ctx))
            assert reports[0].evidence[0].state is State.OK

            async def down_after_a_replay() -> bool:
                await asyncio.sleep(0.5)  # the runner's cadence
                reports.append(r := await probe(t, ctx))
                return len(connections) >= 3 and r.evidence[0].state is State.DOWN
            await wait_for(down_after_a_replay, 30, "no_input with the cache replayed at each reconnect")
            for _ in range(6):  # ~3 s more, across more reconnects and replays: never alive again
                await asyncio.sleep(0.5)
                reports.append(await probe(t, ctx))
        finally:
            await close_held([ctx.state])
            await runner.cleanup()
        tail = reports[-6:]
        print(f"{len(connections)} connections; last states {[str(r.evidence[0].state) for r in tail]}")
        assert all(r.evidence[0].state is not State.OK and "gap_s" not in r.figures for r in tail), \
            [(r.evidence[0].state, r.evidence[0].detail) for r in tail]


def _stage(agent: Agent, stage: str, component: str) -> float | None:
    for fam in text_string_to_metric_families(generate_latest(agent.registry).decode()):
        for s in fam.samples:
            if (s.name == "signalpath_stage_latency_seconds" and s.labels["stage"] == stage
                    and s.labels["component"] == component):
                return s.value
    return None


@pytest.mark.lab
async def test_ingest_delay_shows_at_ingest_not_transcode_and_opens_an_ingest_incident():
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0")
        s = conf["streams"][0]
        s["ingest"].pop("stat")
        s.pop("encoders", None)
        s["playback"] = {"enabled": False}
        s["media"] = {"enabled": False}
        s["hls"] = {"fetch_segments": False}
        s["latency"] = {"baseline_min_samples": 3}
        s["ingest"]["monitor"][0]["baseline_min_samples"] = 3
        conf["incidents"] = {"path": os.path.join(tempfile.mkdtemp(prefix="sp-im-"), "incidents.db")}
        async with Agent(parse_config(conf, "test")) as agent:
            def healthy():
                i, tx = _stage(agent, "ingest", "ingest"), _stage(agent, "transcode", "transcoder")
                n = len(agent.incidents.localizer.open_incidents())
                return (i, tx) if i is not None and tx is not None and n == 0 else None
            await wait_for(healthy, 30, "ingest and transcode figures, no incident")
            # three ingest windows for the baseline
            share = next(t.config.share for j in agent_jobs(agent) for t in j.targets if t.probe == "ingest_monitor")
            await wait_for(lambda: len(share._windows) >= 3, 30, "three ingest windows")
            ing0, tx0 = _stage(agent, "ingest", "ingest"), _stage(agent, "transcode", "transcoder")
            truth = lab.truth()
            r180 = truth["transcode"]["renditions"]["180p"]
            print(f"healthy: ingest {ing0:.4f} s (truth {truth['ingest']['capture_to_handoff_s']:.4f}), "
                  f"transcode {tx0:.4f} s (truth {r180['transcode_delay_s'] + r180['packaging_delay_s']:.4f})")
            assert 0 < ing0 < 0.1 and 0 < tx0 < 1.0

            t0 = time.time()
            await lab.inject("ingest_latency", "ingest", for_s=60, params={"ms": 2000})
            await wait_for(lambda: (_stage(agent, "ingest", "ingest") or 0) >= ing0 + 1.8,
                           2.0 + 3 * SEGMENT_S + 6.0, "ingest +2 s")
            print(f"ingest +2 s shown {time.time() - t0:.1f} s after the injection")
            # transcode does not take the 2 s: watch it over a few segments
            worst = 0.0
            end = time.monotonic() + 4 * SEGMENT_S
            while time.monotonic() < end:
                worst = max(worst, _stage(agent, "transcode", "transcoder") or 0.0)
                await asyncio.sleep(0.2)  # sampling a gauge, not waiting on a condition
            print(f"transcode worst {worst:.3f} s during the ingest delay (healthy {tx0:.3f} s)")
            assert worst < tx0 + 1.0

            def ingest_incident():
                return [i for i in agent.incidents.localizer.open_incidents()
                        if (i.stage, i.component, i.fault) == ("ingest", "ingest", "latency_high")]
            await wait_for(ingest_incident, 15, "a latency_high incident at ingest/ingest")
            assert not [i for i in agent.incidents.localizer.open_incidents() if i.stage == "transcode"]


def agent_jobs(agent: Agent):
    return agent.jobs


@pytest.mark.lab
@pytest.mark.parametrize("fault, frames, within", [
    ("silent_audio", "all", 2.0 + 3 * 0.5 + 0.5), ("frozen_video", "all", 2.0 + 2 * 0.5 + 0.5),
    ("frozen_video", "key", 4.5), ("black_video", "all", 2.0 + 2 * 0.5 + 0.5)])
async def test_kept_watch_sees_a_silent_frozen_or_black_source_as_soon_as_its_two_seconds_have_arrived(
        fault: str, frames: str, within: float):
    """The kept watch also measures what the ingest receives as the media probe measures a
    segment: its audio decoded, its pictures (every one, or key pictures only). A source gone
    silent, frozen or black is studio/source evidence at the first report after 2 s of it arrived
    (with key pictures only, from key frame to key frame: the lab's GOP is 1 s, so up to a second
    later), not once a segment holding them is published, fetched and decoded."""
    interval = 0.5
    async with Lab(LabConfig(webrtc=False)) as lab:
        t = _target(lab.ingest_live_url(), interval_s=interval, video_frames=frames)
        ctx = ProbeContext(state={})
        try:
            def source(r: ProbeResult) -> list[Evidence]:
                return [e for e in r.evidence if (e.stage, e.component) == ("studio", "source")]

            first = await probe(t, ctx)
            for _ in range(3):  # a few key pictures: a moving picture is no still one
                await asyncio.sleep(interval)  # the runner's cadence
                first = await probe(t, ctx)
            [heard] = source(first)
            assert heard.state is State.OK, first.evidence
            assert -30 < heard.figures["audio_rms_dbfs"] < -5  # the lab's tone (-23 dBFS)
            assert heard.figures["mean_luma"] > 20 and heard.figures["frozen_s"] < 1.0
            assert first.evidence[0].stage == "ingest" and first.evidence[0].state is State.OK
            t0 = time.monotonic()
            await lab.inject(fault, "encoder", for_s=60)
            seen: list[Evidence] = []

            async def found() -> bool:
                await asyncio.sleep(interval)  # the runner's cadence
                evs = source(await probe(t, ctx))
                seen.extend(evs)
                return any(e.fault == fault for e in evs)
            await wait_for(found, 8.0, f"{fault} from the kept watch")
            took = time.monotonic() - t0
            hit = next(e for e in seen if e.fault == fault)
            print(f"{fault} {took:.2f} s after the onset: {hit.detail}")
            assert 2.0 <= took < within
            assert hit.state is State.DEGRADED
            assert hit.figures["silence_s" if fault == "silent_audio" else
                               "frozen_s" if fault == "frozen_video" else "black_s"] >= 2.0
            assert all(e.state is State.OK for e in seen if e is not hit and e.fault is None) and \
                {e.fault for e in seen} <= {None, fault}
        finally:
            await close_held([ctx.state])
    assert not _watch_threads()


@pytest.mark.lab
async def test_the_lab_feed_stays_open_when_an_av_desync_moves_the_audio_back():
    """The lab's HTTP-FLV carries the audio; the end of an av_desync moves the studio's audio
    timestamps back, which FLV cannot carry: those packets are dropped, the connection stays."""
    interval = 0.5
    async with Lab(LabConfig(webrtc=False)) as lab:
        t = _target(lab.ingest_live_url(), interval_s=interval)
        ctx = ProbeContext(state={})
        try:
            await probe(t, ctx)
            rec = await lab.inject("av_desync", "encoder", params={"ms": 400})
            for _ in range(3):
                await asyncio.sleep(interval)  # the runner's cadence
                await probe(t, ctx)
            await lab.clear(rec.id)
            reports = []
            for _ in range(4):
                await asyncio.sleep(interval)
                reports.append(await probe(t, ctx))
            assert ctx.state["ingest_watch"].connects == 1  # never cut off and opened again
            assert all(r.evidence[0].state is State.OK and "gap_s" not in r.figures for r in reports[1:]), \
                [(r.evidence, r.figures) for r in reports]
        finally:
            await close_held([ctx.state])


@pytest.mark.lab
async def test_every_picture_falls_back_to_key_pictures_when_it_costs_more_than_its_budget(monkeypatch):
    """``video_frames: all`` decodes every picture while that keeps up: past
    ALL_PICTURES_CPU_BUDGET of real time (here a budget of nothing, so the lab's 640x360 exceeds
    it) the watch decodes key pictures only, and says so in its figures."""
    import probes.ingest_monitor as im

    monkeypatch.setattr(im, "ALL_PICTURES_CPU_BUDGET", 0.0)
    async with Lab(LabConfig(webrtc=False)) as lab:
        t = _target(lab.ingest_live_url(), interval_s=0.5, video_frames="all")
        ctx = ProbeContext(state={})
        try:
            first = await probe(t, ctx)
            assert first.figures["video_frames"] == "all", first.figures
            modes: list[str] = []

            async def fell_back() -> bool:
                await asyncio.sleep(0.5)  # the runner's cadence
                modes.append((await probe(t, ctx)).figures.get("video_frames", ""))
                return modes[-1] == "key"
            await wait_for(fell_back, 4 * im.ALL_PICTURES_CHECK_S, "key pictures only")
            assert set(modes) <= {"all", "key"}
        finally:
            await close_held([ctx.state])
    assert not _watch_threads()
