"""signalpath on live MPEG-DASH written by a packager we did not write: ffmpeg's dash muxer in
real time (``-re``) into a temporary folder, served by a plain static file server on 127.0.0.1
port 0 (tests/test_real_packagers.py's), with SegmentTimeline addressing (ffmpeg's default)
and with ``$Number$`` templates computed from the clock (``-use_timeline 0``).

What is proven: the agent reads the MPD as the stream (each Representation a rendition: the
video ladder and the audio as an alternative), stays healthy for 6 s with every probe on
(availability, content analysis of the fMP4 segments, the virtual players, latency), reads
figures from the real segments; and when the packager dies (SIGKILL: the MPD stays ``dynamic``
and stops growing, or, for computed addressing, the segments it promises never come), the
origin's renditions are stale and an incident opens upstream of the origin (computed addressing
that stops: on a server written here that serves segments exactly when the MPD makes them
available). GStreamer's
dashsink is read too, and its one real fault (a false @bandwidth) is the one incident.
nginx-rtmp's ``dash on`` through two caching edges: tests/test_agent_reallab.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _require import require_binary
from aiohttp import web
from attempt import call_probe
from localserver import LocalServer
from test_real_packagers import ENCODE, SOURCE, healthy_for, incidents_within, packager, static_server, stop
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from probes.base import ProbeContext, ProbeTarget
from probes.core.mpd import parse_mpd, views
from probes.hls import HlsSettings, _too_long
from probes.hls import probe as hls_probe
from probes.net.httpfetch import Fetcher

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]


def ffmpeg_dash(folder: Path, *, timeline: bool, seconds: int = 120) -> list[str]:
    """ffmpeg's dash muxer: 2-s segments, a window of 5, video and audio in two AdaptationSets."""
    return [require_binary("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re", *SOURCE, "-t", str(seconds),
            *ENCODE, "-f", "dash", "-seg_duration", "2", "-window_size", "5", "-extra_window_size", "2",
            "-use_timeline", "1" if timeline else "0", "-adaptation_sets", "id=0,streams=v id=1,streams=a",
            str(folder / "live.mpd")]


def origin_cell(agent: Agent) -> Any:
    return next(c for c in agent.board.cells("main") if (c.stage, c.component) == ("origin", "origin"))


async def mpd_ready(folder: Path, segments: int = 2, timeout: float = 30) -> None:
    def ready() -> bool:
        return len(list(folder.glob("chunk-stream0-*.m4s"))) >= segments and (folder / "live.mpd").exists()
    await wait_for(ready, timeout, f"{segments} DASH segments from ffmpeg")


async def test_ffmpeg_dash_is_watched_healthy_then_its_death_is_an_upstream_incident(tmp_path: Path) -> None:
    """SegmentTimeline addressing (ffmpeg's default); computed ``$Number$`` addressing dying:
    test_a_computed_template_whose_segments_stop_coming_is_stale below."""
    async with packager(ffmpeg_dash(tmp_path, timeline=True)) as proc, \
            static_server(tmp_path) as url:
        url = url.replace("index.m3u8", "live.mpd")
        await mpd_ready(tmp_path)
        cfg = {"agent": {"listen": "127.0.0.1:0", "site": "test"},
               "incidents": {"path": str(tmp_path / "incidents.db")},
               "streams": [{"name": "main", "origin": url}]}
        async with Agent(parse_config(cfg)) as agent:
            opened = await healthy_for(agent, 6)
            assert opened == [], [(i.stage, i.component, i.fault, i.summary) for i in opened]
            figs = origin_cell(agent).figures
            assert set(figs["renditions"]) == {"180p"}, figs
            assert set(figs["alternates"]) == {"audio-1"}, figs
            for f in (figs["renditions"]["180p"], figs["alternates"]["audio-1"]):
                assert f["target_duration_s"] == pytest.approx(2.0, abs=0.1) and f["age_s"] < 3.0, f
                # a small audio fragment over loopback can take under 1 ms: 0.0 at the figure's 3 decimals
                assert 0 <= f["download_ratio"] < 0.5 and -0.5 < f["live_latency_s"] < 4.0, f
            stop(proc, crash=True)

            def upstream() -> list[tuple[str, str, str]]:
                return [(i.stage, i.component, i.fault) for i in agent.incidents.localizer.open_incidents()]
            opened_after = await wait_for(upstream, 20, "an incident after the packager died")
            # the MPD stays dynamic and stops growing (timeline), or the segments it promises never
            # come (computed $Number$): every rendition stale at the origin that still answers
            assert opened_after == [("transcode", "transcoder", "stale_playlist")]


async def test_gstreamer_dashsink_is_read_and_its_false_bandwidth_is_the_one_finding(tmp_path: Path) -> None:
    """GStreamer 1.22's dashsink (``$Number$`` template, MPEG-TS segments; its mp4 muxer stops
    after the first fragment here) declares @bandwidth 80375 bit/s whatever the encoder sends
    (about 360 kbit/s at x264 bitrate=300): that lie, which misleads every ABR player, is the
    one incident; the stream itself (availability from a whole-second availabilityStartTime,
    freshness, playback) is healthy for 6 s."""
    cmd = [require_binary("gst-launch-1.0"), "-q", "videotestsrc", "is-live=true", "!",
           "video/x-raw,width=320,height=180,framerate=25/1", "!", "x264enc", "tune=zerolatency",
           "speed-preset=ultrafast", "key-int-max=50", "bitrate=300", "!", "h264parse", "!", "dashsink",
           "mpd-filename=live.mpd", "target-duration=2", "dynamic=true", "muxer=ts", f"mpd-root-path={tmp_path}"]
    async with packager(cmd), static_server(tmp_path) as url:
        await wait_for(lambda: len(list(tmp_path.glob("video_0_*.ts"))) >= 2, 30, "2 segments from dashsink")
        cfg = {"agent": {"listen": "127.0.0.1:0", "site": "test"},
               "incidents": {"path": str(tmp_path / "incidents.db")},
               "streams": [{"name": "main", "origin": url.replace("index.m3u8", "live.mpd"),
                            "latency": {"enabled": False}}]}
        async with Agent(parse_config(cfg)) as agent:
            # not healthy_for(): the origin cell is degraded by the finding as soon as a segment is analysed
            await wait_for(lambda: origin_cell(agent).figures.get("renditions"), 20, "the origin read")
            opened = await incidents_within(agent, 6)
            origin = origin_cell(agent)
    assert [(i.stage, i.component, i.fault) for i in opened] == [("transcode", "180p", "bitrate_over_declared")]
    f = origin.figures["renditions"]["180p"]
    assert f["age_s"] < 3.0 and "stale" not in f, f
    assert origin.figures["declared_bandwidth_bps"] == 80375.0


async def test_segment_availability_is_computed_on_the_clock_utctiming_names() -> None:
    """An MPD whose segments (``$Number$``, computed from the clock) are served exactly when
    ISO/IEC 23009-1 makes them available, read by an agent whose clock is 30 s ahead: without
    UTCTiming the probe asks for a segment 15 numbers in the future (404: ``segment_missing``);
    with ``urn:mpeg:dash:utc:http-iso:2014`` it measures the offset (-30 s, shown as
    ``clock_offset_s``) and reads the stream healthy."""
    ast = time.time() - 21.0  # at the attempts (within a second): 10 segments out (the grace is 0.5 s)

    def mpd_body(utc: str) -> str:
        timing = f'<UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="{utc}"/>' if utc else ""
        start = datetime.fromtimestamp(ast, UTC).isoformat().replace("+00:00", "Z")
        return (f'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
                f'availabilityStartTime="{start}" minimumUpdatePeriod="PT2S" maxSegmentDuration="PT2S">'
                '<Period start="PT0S"><AdaptationSet contentType="video"><SegmentTemplate timescale="1000" '
                'duration="2000" startNumber="1" media="seg-$Number$.m4s" initialization="init.m4s"/>'
                f'<Representation id="v" bandwidth="300000" width="320" height="180"/></AdaptationSet></Period>{timing}</MPD>')

    async def manifest(req: web.Request) -> web.Response:
        utc = str(req.url.with_path("/time").with_query("")) if req.query.get("utc") else ""
        return web.Response(text=mpd_body(utc), content_type="application/dash+xml")

    async def now_iso(_req: web.Request) -> web.Response:
        return web.Response(text=datetime.now(UTC).isoformat().replace("+00:00", "Z"))

    async def segment(req: web.Request) -> web.Response:
        n = int(req.match_info["n"])
        if ast + n * 2.0 > time.time():  # segment n ends at AST + 2n s: not yet available
            raise web.HTTPNotFound()
        return web.Response(body=b"\0" * 1000)

    app = web.Application()
    app.router.add_get("/live.mpd", manifest)
    app.router.add_get("/time", now_iso)
    app.router.add_get("/seg-{n}.m4s", segment)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        async def attempt(query: str) -> Any:
            target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(), f"{server.url}/live.mpd{query}",
                                 1.0, 5.0)
            return await call_probe(hls_probe, target, ProbeContext(state={}, http=http, wall=lambda: time.time() + 30))

        blind = await attempt("")
        synced = await attempt("?utc=1")
    missing = [e for e in blind.evidence if e.fault == "segment_missing"]
    assert missing and missing[0].http_status == 404 and missing[0].media_sequence in (25, 26), blind.evidence  # 30 s ahead: 15 numbers
    assert "clock_offset_s" not in blind.figures
    assert [e.fault for e in synced.evidence] == [None], synced.evidence
    assert synced.figures["clock_offset_s"] == pytest.approx(-30.0, abs=0.5)
    assert synced.figures["renditions"]["180p"]["last_seq"] in (10, 11)


async def test_a_time_addressed_timeline_keeps_its_numbers_steady_from_view_to_view() -> None:
    """``$Time$`` without ``$Number$`` (Unified-style audio: 96256, 96256, 96256, 95232 at 48 kHz):
    a view numbers its first segment by start time in nominal durations, which drifts; two
    successive MPDs whose windows start at segments 188 and 189 give both first segments the same
    time-derived number. The probe numbers the later view as the earlier one where they share
    segments, so the newest number advances by exactly one (before: it stood still, a false
    'not advancing'), and no continuity anomaly is read."""
    ds = [96256, 96256, 96256, 95232] * 60
    starts = [sum(ds[:i]) for i in range(len(ds) + 1)]

    def body(first: int) -> str:
        ss = f'<S t="{starts[first]}" d="{ds[first]}"/>' + "".join(f'<S d="{d}"/>' for d in ds[first + 1:first + 6])
        return ('<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
                'availabilityStartTime="2020-01-01T00:00:00Z" maxSegmentDuration="PT2.006S"><Period start="PT0S">'
                '<AdaptationSet contentType="audio" lang="en"><SegmentTemplate timescale="48000" media="a-$Time$.m4s">'
                f'<SegmentTimeline>{ss}</SegmentTimeline></SegmentTemplate><Representation id="a" bandwidth="64000"/>'
                '</AdaptationSet></Period></MPD>')

    served = [188]

    async def manifest(_req: web.Request) -> web.Response:
        return web.Response(text=body(served[0]), content_type="application/dash+xml")

    app = web.Application()
    app.router.add_get("/a.mpd", manifest)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(fetch_segments=False),
                             f"{server.url}/a.mpd", 1.0, 5.0)
        ctx = ProbeContext(state={}, http=http)
        first = await call_probe(hls_probe, target, ctx)
        served[0] = 189
        second = await call_probe(hls_probe, target, ctx)
    a, b = first.figures["renditions"]["audio-en"], second.figures["renditions"]["audio-en"]
    assert b["last_seq"] == a["last_seq"] + 1, (a, b)
    assert [e.fault for e in second.evidence] == [None], second.evidence


def test_a_dash_segment_is_too_long_only_past_max_segment_duration() -> None:
    """DASH durations are exact: 2.56-s segments under no @maxSegmentDuration, or under 2.56, are
    lawful (HLS's EXTINF rounding against the unrounded target read them as too long)."""
    for extra in ("", ' maxSegmentDuration="PT2.56S"'):
        body = ('<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
                f'availabilityStartTime="2020-01-01T00:00:00Z"{extra}><Period start="PT0S"><AdaptationSet '
                'contentType="video"><SegmentTemplate timescale="1000" duration="2560" media="$Number$.m4s"/>'
                '<Representation id="v" bandwidth="1000000" height="360" width="640"/></AdaptationSet></Period></MPD>')
        (_rep, v), = views(parse_mpd(body.encode(), "http://127.0.0.1/a.mpd"), time.time())
        assert not _too_long(v, v.segments[-1].duration, v.target_duration)
        assert _too_long(v, 6.0, v.target_duration)
    # ffmpeg's audio: 2.02 s under maxSegmentDuration 2.0 (AAC frames do not divide 2 s): lawful enough
    (_rep, v), = [x for x in views(parse_mpd((Path(__file__).parent / "fixtures" / "dash" / "ffmpeg-timeline-live.mpd")
                                             .read_bytes(), "http://127.0.0.1/a.mpd"), time.time()) if x[0].name == "audio-1"]
    assert v.target_duration == 2.0 and not _too_long(v, 2.0213, 2.0) and _too_long(v, 2.1, 2.0)


async def test_a_computed_template_whose_segments_stop_coming_is_stale() -> None:
    """``$Number$`` with ``@duration``: the view advances with the clock whatever the packager
    does, so the probe fetches the newest segment due; 1-s segments served as 23009-1 makes them
    available until the packager dies, then 404: the rendition is stale 1.5 segments after the
    last one that answered (and each missing one is segment_missing), not fresh for ever."""
    ast = time.time() - 10.0
    dead_at: list[float] = [math.inf]

    async def manifest(_req: web.Request) -> web.Response:
        start = datetime.fromtimestamp(ast, UTC).isoformat().replace("+00:00", "Z")
        return web.Response(content_type="application/dash+xml", text=(
            f'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
            f'availabilityStartTime="{start}" maxSegmentDuration="PT1S"><Period start="PT0S"><AdaptationSet '
            'contentType="video"><SegmentTemplate timescale="1000" duration="1000" startNumber="1" '
            'media="s-$Number$.m4s"/><Representation id="v" bandwidth="300000" height="180" width="320"/>'
            '</AdaptationSet></Period></MPD>'))

    async def segment(req: web.Request) -> web.Response:
        end = ast + int(req.match_info["n"]) * 1.0
        if end > min(time.time(), dead_at[0]):
            raise web.HTTPNotFound()
        return web.Response(body=b"\0" * 500)

    app = web.Application()
    app.router.add_get("/live.mpd", manifest)
    app.router.add_get("/s-{n}.m4s", segment)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(), f"{server.url}/live.mpd", 0.3, 5.0)
        ctx = ProbeContext(state={}, http=http)
        healthy = []
        for _ in range(6):
            healthy.append(await call_probe(hls_probe, target, ctx))
            await asyncio.sleep(0.3)
        dead_at[0] = time.time()
        stale: list[Any] = []

        async def attempt() -> bool:
            r = await call_probe(hls_probe, target, ctx)
            stale[:] = [e for e in r.evidence if e.fault == "stale_playlist"]
            await asyncio.sleep(0.3)
            return bool(stale)
        await wait_for(attempt, 10, "the rendition stale", every=0)
        took = time.time() - dead_at[0]
    assert all([e.fault for e in r.evidence] == [None] for r in healthy), [r.evidence for r in healthy]
    assert stale[0].state.value == "down" and took < 1.5 * 1.0 + 1.0 + 0.6, took
    assert "no segment after number" in stale[0].detail and "in the MPD" in stale[0].detail, stale[0].detail
