"""The ingest monitor against a real nginx-rtmp ingest, playing ``rtmp://`` with PyAV.

``signalpath beacon`` (agent/beacon_publish.py) publishes a beacon stream (320x180,
25 fps, a keyframe every second) into tests/reallab.py's nginx-rtmp started without
its own publisher; the monitor plays the same stream back from nginx-rtmp and times
the beacons: ingest latency small and positive.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from _require import require_binary
from reallab import RealLab
from waiting import wait_for

from agent import beacon_publish as bp
from agent.runner import close_held
from probes.base import ProbeContext, ProbeTarget, State
from probes.ingest_monitor import IngestMonitorSettings, MonitorTargetConfig, probe


@pytest.fixture
async def ingest(tmp_path, request):
    require_binary("nginx")
    if RealLab.missing_binaries():
        message = "nginx has no RTMP module: apt-get install libnginx-mod-rtmp"
        if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    # ``segment_seconds`` is also the lab ffmpeg's keyframe interval
    seconds = getattr(request, "param", 2)
    lab = RealLab(tmp_path / "lab", publish=False, stream="sk-Key123", segment_seconds=seconds)
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()
    assert not lab.pids(), "the lab left processes behind"


@pytest.mark.lab
async def test_monitor_plays_nginx_rtmp_and_times_the_beacon(ingest: RealLab):
    lab = ingest
    settings = bp.PublishSettings(seconds=12, width=320, height=180, fps=25, bitrate=300_000, gop_seconds=1)
    publisher = asyncio.ensure_future(bp.publish_async(lab.rtmp_url, settings))
    try:
        async def publishing() -> bool:
            return "<publishing/>" in await lab.stat_xml()
        await wait_for(publishing, 8, "the beacon publisher on nginx-rtmp")
        s = IngestMonitorSettings(name="nginx", url=lab.rtmp_url, seconds=1.5)
        t = ProbeTarget("ingest_monitor", "main", "ingest", "nginx", MonitorTargetConfig(s), None, 5.0, s.timeout_s)
        ctx = ProbeContext(state={})
        try:
            r = await probe(t, ctx)
        finally:
            await close_held([ctx.state])  # the watch is kept open by default: its thread ends here
        assert r.ok, (r.failure, r.detail)
        lat = r.figures["latency_s"]
        print(f"nginx-rtmp ingest latency {lat * 1000:.1f} ms (median {r.figures['median_s'] * 1000:.1f} ms), "
              f"{r.figures['frames']} frames, open {r.figures['open_s']} s, decode {r.figures['decode_cpu_ms']} ms CPU")
        assert 0 < lat < 0.5
        assert r.figures["beacons"] >= 0.9 * r.figures["frames"] >= 30
        assert r.evidence[0].state is State.OK and r.evidence[0].stage == "ingest"
        assert "sk-Key123" not in repr(r)  # the stream key
    finally:
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
    assert not [t for t in threading.enumerate() if t.name == "signalpath-ingest-monitor"], "a kept watch outlived its test"


@pytest.mark.lab
@pytest.mark.parametrize("audio, silent", [("sine=frequency=1000:sample_rate=44100", False),
                                           ("anullsrc=r=44100:cl=mono", True)], ids=["tone", "silence"])
async def test_kept_watch_measures_what_ffmpeg_sends_through_nginx_rtmp(ingest: RealLab, audio: str, silent: bool):
    """ffmpeg (testsrc2 + a lavfi audio source, AAC, into nginx-rtmp) played back kept open: the
    audio and key pictures are measured as the media probe does, on studio/source — a 1-kHz sine
    at FFmpeg's default amplitude (1/8: -21 dBFS RMS) is heard, digital silence is silent_audio
    once 2 s of it have arrived; testsrc2 moves, so it is never a still picture."""
    lab = ingest
    await lab.start_ffmpeg(audio=audio)

    async def publishing() -> bool:
        return "<publishing/>" in await lab.stat_xml()
    await wait_for(publishing, 8, "ffmpeg publishing to nginx-rtmp")
    s = IngestMonitorSettings(name="nginx", url=lab.rtmp_url, seconds=1.0, interval_s=0.5)
    t = ProbeTarget("ingest_monitor", "main", "ingest", "nginx", MonitorTargetConfig(s), None, 0.5, s.timeout_s)
    ctx = ProbeContext(state={})
    seen: list = []
    last_r: list = []
    try:
        async def measured() -> bool:
            r = await probe(t, ctx)
            src = [e for e in r.evidence if (e.stage, e.component) == ("studio", "source")]
            seen.extend(src)
            last_r[:] = [(r.failure, r.detail)]
            if silent:
                return any(e.fault == "silent_audio" for e in src)
            return any(e.state is State.OK and "frozen_s" in e.figures for e in src) and len(seen) >= 6
        try:
            await wait_for(measured, 15, "the source measured at the ingest", every=0.5)
        except AssertionError as e:  # say what the monitor reported instead
            raise AssertionError(f"{e}; source evidence {[(x.fault, x.detail) for x in seen[-4:]]}, "
                                 f"last result {last_r}") from None
    finally:
        await close_held([ctx.state])
    last = seen[-1]
    print(f"{audio.split('=')[0]} through nginx-rtmp: {last.detail} {last.figures}")
    if silent:
        assert last.state is State.DEGRADED and last.figures["silence_s"] >= 2.0
    else:
        assert all(e.state is State.OK for e in seen), [e.detail for e in seen]
        assert -23 < last.figures["audio_rms_dbfs"] < -19
        assert last.figures["mean_luma"] > 20 and last.figures["frozen_s"] < 1.0


@pytest.mark.lab
@pytest.mark.parametrize("ingest", [4], indirect=True, ids=["gop4s"])
async def test_a_monitor_joining_between_keyframes_of_a_long_gop_sees_the_video(ingest: RealLab):
    """nginx-rtmp sends a new player the audio at once and the video only from the next keyframe;
    with ffmpeg's keyframe every 4 s (the longest THRESHOLDS.md accepts) a 1-s probe at open
    usually sees audio alone, and PyAV never hands over a stream found later. Each of three
    kept watches opened one after another, whatever the GOP's phase, measures the video on its
    first connection: never "the ingest's output has no video"."""
    lab = ingest
    await lab.start_ffmpeg()

    async def publishing() -> bool:
        return "<publishing/>" in await lab.stat_xml()
    await wait_for(publishing, 8, "ffmpeg publishing to nginx-rtmp")
    for attempt in range(3):
        s = IngestMonitorSettings(name="nginx", url=lab.rtmp_url, seconds=1.0, interval_s=0.5)
        t = ProbeTarget("ingest_monitor", "main", "ingest", "nginx", MonitorTargetConfig(s), None, 0.5, s.timeout_s)
        ctx = ProbeContext(state={})
        results: list = []
        try:
            async def measured(t: ProbeTarget = t, ctx: ProbeContext = ctx, results: list = results) -> bool:
                r = await probe(t, ctx)
                results.append((r.failure, r.detail, r.figures.get("frames", 0)))
                return r.ok and r.figures.get("frames", 0) > 0
            await wait_for(measured, 15, f"watch {attempt}: video frames from the ingest", every=0.5)
        finally:
            await close_held([ctx.state])
        assert all(f is None for f, _d, _n in results), results
