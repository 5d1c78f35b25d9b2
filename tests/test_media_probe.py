"""probes/media.py against a real live HLS server (tests/livehls.py: real H.264/AAC segments)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import zlib

import pytest
from _require import require_binary
from aiohttp import web
from localserver import LocalServer

from probes.base import ProbeContext, ProbeTarget, State
from probes.core.playlist import Variant, choose_renditions
from probes.media import MediaSettings, probe, resolve_sampling
from probes.net.httpfetch import Fetcher


def v(name: str, bw: int | None, res: tuple[int, int] | None = None) -> Variant:
    return Variant(name=name, uri=f"http://127.0.0.1/{name}.m3u8", bandwidth=bw, resolution=res)


def test_choose_renditions():
    ladder = [v("720p", 3_000_000), v("180p", 300_000), v("360p", 800_000)]
    assert [x.name for x in choose_renditions(ladder, "lowest")] == ["180p"]
    assert [x.name for x in choose_renditions(ladder, "all")] == ["720p", "180p", "360p"]
    assert [x.name for x in choose_renditions(ladder, ["720p"])] == ["720p"]
    # no BANDWIDTH: the smallest picture
    assert [x.name for x in choose_renditions([v("a", None, (640, 360)), v("b", None, (320, 180))],
                                              "lowest")] == ["b"]
    with pytest.raises(ValueError):
        MediaSettings(renditions="highest")


def target(url: str, settings: MediaSettings) -> ProbeTarget:
    return ProbeTarget("media", "main", "origin", "origin", settings, url, 0.5, settings.timeout_s)


async def test_new_segments_are_analysed_once_each_in_order(live):
    t = target(live.origin.master_url, MediaSettings())
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        results = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            results.append(await probe(t, ctx))
            await asyncio.sleep(0.3)
    spans = [s for r in results for s in r.spans]
    seqs = [s.attributes["signalpath.sequence"] for s in spans]
    assert len(seqs) >= 3 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # once each, in order
    assert all(s.attributes["signalpath.rendition"] == "180p" for s in spans)  # the lowest only
    assert all("signalpath.media.video_frames" in s.attributes and s.attributes["signalpath.media.cpu_s"] > 0
               for s in spans)
    last = results[-1]
    assert [(e.stage, e.component, e.rendition, e.state) for e in last.evidence] == [
        ("origin", "origin", "180p", State.OK)]
    gauges = {s.name: s for s in last.samples if s.kind == "set"}
    assert {"signalpath_video_frozen", "signalpath_video_black", "signalpath_audio_level_dbfs",
            "signalpath_av_sync_offset_seconds"} <= set(gauges)
    assert -25 < gauges["signalpath_audio_level_dbfs"].value < -10  # livehls: a 0.2-amplitude tone (-17 dBFS)
    assert gauges["signalpath_video_frozen"].labels == {"stream": "main", "stage": "origin",
                                                        "component": "origin", "rendition": "180p"}
    # the decode-error counter counts once per analysed segment, never repeated on a poll without news
    incs = [s for r in results for s in r.samples if s.name == "signalpath_segment_decode_errors_total"]
    assert len(incs) == len(spans) and all(s.value == 0 for s in incs)


async def test_a_backlog_beyond_the_limit_skips_to_the_newest(live):
    t = target(live.origin.master_url, MediaSettings(max_backlog=1, renditions="all"))
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        first = await probe(t, ctx)
        assert len(first.spans) == 2  # the newest of each rendition
        await asyncio.sleep(2.3)  # two 1-s segments appear
        second = await probe(t, ctx)
    per = {}
    for s in second.spans:
        per.setdefault(s.attributes["signalpath.rendition"], []).append(s.attributes["signalpath.sequence"])
    assert set(per) == {"360p", "180p"}
    assert all(len(x) == 1 for x in per.values())  # analyser reset, only the newest analysed
    assert all(e.fault != "timestamp_gap" for e in second.evidence)


async def test_segments_that_left_the_window_unread_are_a_hole_in_what_we_saw_not_a_gap(tmp_path):
    """The agent starved of CPU (tests/test_agent_overload.py) read the playlist after its window
    had slid past segments it never analysed: the next one starts a new timeline, never a
    timestamp gap of the stream (it opened studio/source timestamp_gap: '100 frames missing').
    Real 1-s segments with one continuous timeline (ffmpeg's segment muxer); the playlist lists
    segments 0-2, then 3, then 7."""
    ffmpeg = require_binary("ffmpeg")
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=48000", "-t", "9", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", "25", "-sc_threshold", "0", "-c:a", "aac", "-f", "segment",
                    "-segment_time", "1", "-segment_format", "mpegts", str(tmp_path / "%d.ts")], check=True, timeout=120)
    listed = [0, 1, 2]

    async def playlist(_req: web.Request) -> web.Response:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{listed[0]}"]
        for k in listed:
            lines += ["#EXTINF:1.000,", f"{k}.ts"]
        return web.Response(text="\n".join(lines) + "\n", content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    app.router.add_get("/live.m3u8", playlist)
    app.router.add_static("/", tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/live.m3u8"
    try:
        t = target(url, MediaSettings(max_backlog=30))
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http)
            first = await probe(t, ctx)
            assert [s.attributes["signalpath.sequence"] for s in first.spans] == [2]
            listed[:] = [3]  # read in order: the next segment continues the timeline
            assert all(e.fault != "timestamp_gap" for e in (await probe(t, ctx)).evidence)
            listed[:] = [7]  # 4-6 left the window unread
            second = await probe(t, ctx)
    finally:
        await runner.cleanup()
    assert [s.attributes["signalpath.sequence"] for s in second.spans] == [7]
    assert "timestamp_gap" not in second.spans[0].attributes.get("signalpath.media.faults", "")
    assert all(e.fault != "timestamp_gap" for e in second.evidence), second.evidence


async def test_unreachable_origin_gives_no_content_verdict(live):
    live.origin.knobs.playlist_status = 503
    t = target(live.origin.master_url, MediaSettings())
    async with Fetcher() as http:
        r = await probe(t, ProbeContext(state={}, http=http))
    assert not r.ok and r.evidence == [] and "503" in r.detail


async def test_a_fault_it_can_no_longer_measure_is_reported_unmeasured_not_healed(live):
    """A content fault (here: the tone counts as silence under a -10 dBFS floor), then the origin
    answers 503: the probe says the fault is not measured (UNKNOWN naming it), never "ok"."""
    settings = MediaSettings.model_validate({"checks": {"silence_dbfs": -10.0, "silence_min_s": 0.5}})
    t = target(live.origin.master_url, settings)
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        first = await probe(t, ctx)
        assert [(e.state, e.fault) for e in first.evidence] == [(State.DEGRADED, "silent_audio")]
        live.origin.knobs.playlist_status = 503
        r = await probe(t, ctx)
    assert [(e.state, e.fault, e.rendition) for e in r.evidence] == [(State.UNKNOWN, "silent_audio", "180p")]
    assert "not measured" in r.evidence[0].detail


async def test_analysis_goes_on_after_the_media_sequence_goes_back(live):
    """An encoder restart renumbers the playlist lower: the content probe keeps analysing the
    newest segments (it used to wait for numbers above the last it had seen: blind)."""
    t = target(live.origin.master_url, MediaSettings())
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        await probe(t, ctx)
        live.origin.knobs.seq_offset["180p"] = 50
        seqs: list[int] = []
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and len(seqs) < 2:
            r = await probe(t, ctx)
            seqs += [s.attributes["signalpath.sequence"] for s in r.spans]
            await asyncio.sleep(0.3)
    assert len(seqs) >= 2, "no segment analysed after the media sequence went back"
    assert all(s < live.tl.newest() - 40 for s in seqs)  # the renumbered ones


async def test_a_segment_that_could_not_be_fetched_is_no_timestamp_gap(live):
    t = target(live.origin.master_url, MediaSettings())
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        await probe(t, ctx)
        live.origin.knobs.segment_status = 404
        failed = []
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and not failed:
            r = await probe(t, ctx)
            failed = [s for s in r.spans if s.error]
            await asyncio.sleep(0.2)
        assert failed, "no segment answered 404"
        live.origin.knobs.segment_status = None
        results = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            results.append(await probe(t, ctx))
            await asyncio.sleep(0.3)
    analysed = [s for r in results for s in r.spans if not s.error]
    assert analysed and all(e.fault != "timestamp_gap" for r in results for e in r.evidence)


async def test_encrypted_segments_are_named_unsupported_never_corrupt(live):
    """EXT-X-KEY AES-128: the content probe does not fetch keys, so it does not analyse: a span
    says so, and no decode_errors (or any content verdict) is reported."""
    live.origin.knobs.encrypted = True
    t = target(live.origin.master_url, MediaSettings())
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        results = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            results.append(await probe(t, ctx))
            await asyncio.sleep(0.3)
    spans = [s for r in results for s in r.spans]
    assert spans and all("encrypted" in s.attributes.get("signalpath.media.skipped", "") for s in spans)
    assert not [e for r in results for e in r.evidence if e.fault is not None]


def test_sampling_auto_analyses_every_segment_up_to_50_streams_and_one_run_in_n_beyond():
    assert [resolve_sampling(MediaSettings(), n).sampling for n in (1, 50, 51, 100, 101, 200)] == [
        "all", "all", 2, 2, 3, 4]
    assert resolve_sampling(MediaSettings(sampling=6), 1).sampling == 6  # stated, kept
    assert resolve_sampling(MediaSettings(sampling="all"), 500).sampling == "all"
    with pytest.raises(ValueError):
        MediaSettings(sampling=1)


async def test_sampled_analysis_fetches_only_its_runs_and_follows_a_fault_segment_by_segment(tmp_path):
    """``sampling: 2`` on real 1-s segments (ffmpeg; black pictures from 9 s on): runs of 4
    consecutive segments (4 s of media) in every 8, placed by the stream's phase; the others are
    never requested; the black picture that starts in a skipped stretch is found at the next run,
    and from then on every segment is analysed; a run's start is no timestamp gap."""
    ffmpeg = require_binary("ffmpeg")
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=160x90:rate=25,drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='gte(t,9)'",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "30", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "25", "-sc_threshold", "0", "-c:a", "aac", "-f", "segment",
                    "-segment_time", "1", "-segment_format", "mpegts", str(tmp_path / "%d.ts")], check=True, timeout=120)
    listed: list[int] = []
    fetched: list[int] = []

    async def playlist(_req: web.Request) -> web.Response:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{listed[0]}"]
        for k in listed:
            lines += ["#EXTINF:1.000,", f"{k}.ts"]
        return web.Response(text="\n".join(lines) + "\n", content_type="application/vnd.apple.mpegurl")

    async def segment(req: web.Request) -> web.FileResponse:
        fetched.append(int(req.match_info["n"]))
        return web.FileResponse(tmp_path / f"{req.match_info['n']}.ts")

    app = web.Application()
    app.router.add_get("/live.m3u8", playlist)
    app.router.add_get("/{n:[0-9]+}.ts", segment)
    analysed: list[int] = []
    black_at: int | None = None
    async with await LocalServer.start(app) as server, Fetcher() as http:
        t = target(f"{server.url}/live.m3u8", MediaSettings(sampling=2))
        ctx = ProbeContext(state={}, http=http)
        for k in range(29):
            listed[:] = list(range(max(0, k - 2), k + 1))
            r = await probe(t, ctx)
            analysed += [s.attributes["signalpath.sequence"] for s in r.spans]
            assert all(s.attributes["signalpath.media.sampled"] == "1/2" for s in r.spans)
            assert r.figures["media"]["main"]["sampling"] == 2
            assert all(e.fault != "timestamp_gap" for e in r.evidence), (k, r.evidence)
            if black_at is None and any(e.fault == "black_video" and e.state == State.DEGRADED
                                        for e in r.evidence):
                black_at = k
    assert sorted(fetched) == analysed  # skipped segments are never requested
    phase, run, period = zlib.crc32(b"main") % 8, 4, 8
    assert black_at is not None, analysed
    sampled = [0] + [k for k in range(1, black_at + 1) if (k + phase) % period < run]
    assert [k for k in analysed if k <= black_at] == sampled  # the first segment, then the runs
    assert black_at <= 9 + period + 2  # at the next run into the black: 2 s of it, within one period
    assert [k for k in analysed if k > black_at] == list(range(black_at + 1, 29))  # then every one
    assert len(sampled) < black_at  # some were left out before it
