"""Alternative renditions and keys on a live server (tests/livehls.py, 1-s segments, port 0).

A master with demuxed audio (EXT-X-MEDIA TYPE=AUDIO, GROUP-ID "aud", variants AUDIO="aud"), an
I-frame playlist and encrypted media playlists (EXT-X-KEY with a token in the key URI's query,
rotating): the HLS probe watches the alternatives like variants at every endpoint, requests each
key URI once and never shows the key or its query; the virtual players play the audio they
would play; the localizer puts a frozen audio rendition at its own component and a failing key
at the place that serves it.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from livehls import KEY_BYTES, KEY_TOKEN
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from probes.base import ProbeContext, ProbeResult, ProbeTarget, State
from probes.core.playlist import MasterPlaylist, parse
from probes.hls import HlsSettings, key_shown, watch_list
from probes.hls import probe as hls_probe
from probes.net.httpfetch import Fetcher
from probes.playback import PlaybackSettings
from probes.playback import probe as playback_probe

FIXTURES = Path(__file__).parent / "fixtures" / "hls"


def fixture_master(name: str) -> MasterPlaylist:
    pl = parse((FIXTURES / f"{name}.m3u8").read_text(), "http://127.0.0.1/live/index.m3u8")
    assert isinstance(pl, MasterPlaylist)
    return pl


def test_what_is_watched_beside_the_variants():
    """Real masters: ffmpeg lists its lone audio rendition as a variant too (one poll, not two);
    audio before subtitles before I-frame playlists; closed captions have nothing to poll; the cap
    leaves the rest named."""
    agroup = fixture_master("ffmpeg51-agroup-master")
    watched, left = watch_list(agroup, 8)
    assert [(w.name, w.segments, w.drift) for w in watched] == [
        ("360p", True, True), ("180p", True, True), ("70k", True, True)] and left == []
    full = fixture_master("ffmpeg51-renditions-master")
    watched, left = watch_list(full, 8)
    assert [(w.name, w.segments, w.drift) for w in watched] == [
        ("360p", True, True), ("180p", True, True), ("audio-en", True, True), ("audio-de", True, True),
        ("subs-1", True, False)]
    watched, left = watch_list(full, 1)
    assert [w.name for w in watched] == ["360p", "180p", "audio-en"] and left == ["audio-de", "subs-1"]
    iframes = fixture_master("rfc8216-8.5-master-iframes")
    watched, _ = watch_list(iframes, 8)
    assert [(w.name, w.segments, w.drift) for w in watched if w.name.startswith("iframe")] == [
        ("iframe-86k", False, False), ("iframe-150k", False, False), ("iframe-550k", False, False)]
    assert len(watch_list(iframes, 0)[0]) == len(iframes.variants)


def test_a_key_uri_is_shown_without_its_query():
    assert key_shown("https://keys.example/k/7.bin?token=abc&exp=9#x") == "https://keys.example/k/7.bin"
    assert key_shown("https://user:pw@keys.example/k.bin") == "https://***@keys.example/k.bin"


def demuxed(live: Any, audio: tuple[str, ...] = ("en", "de"), **knobs: Any) -> None:
    """Every endpoint serves demuxed audio, an I-frame playlist, and whatever else ``knobs`` say."""
    for ep in [live.origin, *live.edges.values()]:
        ep.knobs.audio = audio
        ep.knobs.iframes = True
        for k, val in knobs.items():
            setattr(ep.knobs, k, val)


async def run_probe(probe: Any, target: ProbeTarget, seconds: float, interval: float = 0.5) -> list[ProbeResult]:
    results = []
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            results.append(await probe(target, ctx))
            await asyncio.sleep(interval)
    return results


def hls_target(url: str, **settings: Any) -> ProbeTarget:
    return ProbeTarget("hls", "main", "origin", "origin", HlsSettings(**settings), url, 0.5, 3.0)


def bad(evidence: list[Any]) -> list[tuple[str, str, str | None, Any, str]]:
    return [(e.stage, e.component, e.rendition, e.fault, e.detail) for e in evidence
            if e.state not in (State.OK, State.UNKNOWN)]


async def test_audio_and_iframe_playlists_are_watched_like_variants(live):
    demuxed(live)
    origin = live.origin
    results = await run_probe(hls_probe, hls_target(origin.master_url), 4.0)
    last = results[-1]
    # the variant ladder apart from the alternatives (the localizer reads "renditions" as the ladder)
    assert set(last.figures["renditions"]) == {"360p", "180p"}
    alternates = last.figures["alternates"]
    assert set(alternates) == {"audio-en", "audio-de", "iframe-360p"}
    assert bad(last.evidence) == []
    for name in ("audio-en", "audio-de", "iframe-360p"):
        labels = {s.labels.get("rendition") for s in last.samples if s.name == "signalpath_playlist_age_seconds"}
        assert name in labels
        assert alternates[name]["age_s"] < 1.5
    # audio segments are fetched and timed; the I-frame playlist's byte ranges are not fetched
    assert origin.audio_segments_requested
    assert "download_ratio" in alternates["audio-en"]
    assert "download_ratio" not in alternates["iframe-360p"]
    segment_spans = [c for r in results for s in r.spans for c in s.children if c.name.startswith("segment ")]
    assert not [c for c in segment_spans if c.attributes.get("signalpath.rendition") == "iframe-360p"]
    assert {"audio_en", "audio_de", "360p_iframes"} <= set(origin.playlists_requested)


async def test_alternates_past_the_cap_are_named_not_polled(live):
    demuxed(live)
    results = await run_probe(hls_probe, hls_target(live.origin.master_url, max_alternates=1), 1.5)
    last = results[-1]
    assert set(last.figures["renditions"]) == {"360p", "180p"}
    assert set(last.figures["alternates"]) == {"audio-en"}  # AUDIO first, the default in order
    assert last.figures["alternates_unwatched"] == 2
    master = [s for r in results for s in r.spans if s.name == "playlist master"][0]
    assert master.attributes["signalpath.alternates_unwatched"] == "audio-de,iframe-360p"
    assert "audio_de" not in live.origin.playlists_requested


async def test_frozen_audio_is_stale_at_its_own_rendition_only(live):
    demuxed(live)
    target = hls_target(live.origin.master_url)
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        await hls_probe(target, ctx)
        live.origin.knobs.frozen_at["audio_en"] = live.tl.newest()
        end = time.monotonic() + 6
        stale: list[Any] = []
        while time.monotonic() < end and not stale:
            await asyncio.sleep(0.5)
            r = await hls_probe(target, ctx)
            stale = [e for e in r.evidence if e.fault == "stale_playlist"]
    assert [(e.rendition, e.state) for e in stale] == [("audio-en", State.DEGRADED)]
    assert [e for e in bad(r.evidence) if e[2] != "audio-en"] == []


async def test_keys_are_requested_once_per_uri_and_rotation_is_no_discontinuity(live):
    demuxed(live, encrypted=True, key_rotate_every=2)
    results = await run_probe(hls_probe, hls_target(live.origin.master_url), 5.0)
    requested = live.origin.keys_requested
    assert len(requested) >= 3 and len(requested) == len(set(requested)), requested  # one request per URI
    assert all(bad(r.evidence) == [] for r in results), [bad(r.evidence) for r in results]
    assert not [s for r in results for s in r.samples if s.name == "signalpath_playlist_anomalies_total"]
    keys = [c for r in results for s in r.spans for c in s.children if c.name == "key"]
    assert keys and all(c.error is None and c.attributes["http.response.status_code"] == 200 for c in keys)
    assert all("?" not in c.attributes["signalpath.key_url"] for c in keys)
    assert results[-1].figures["keys"]["failing"] == 0
    shown = repr([(r.evidence, r.spans, r.samples, r.figures, r.detail) for r in results])
    assert KEY_TOKEN not in shown and KEY_BYTES.decode() not in shown


async def test_a_key_of_the_wrong_length_or_too_slow_is_the_key_fault_not_a_hung_endpoint(live):
    """An AES-128 key is 16 octets (RFC 8216 §5.2); a key server that takes longer than 2 target
    durations is a key fault while the playlists are measured as usual."""
    demuxed(live, encrypted=True, key_body=b"<html>login</html>")
    results = await run_probe(hls_probe, hls_target(live.origin.master_url), 1.0)
    ev = [e for e in results[-1].evidence if e.fault == "key_unavailable"]
    assert ev and "18 bytes where AES-128 needs 16" in ev[0].detail and ev[0].state is State.DOWN
    live.origin.knobs.key_body, live.origin.knobs.key_delay_s = None, 3.0
    start = time.monotonic()
    results = await run_probe(hls_probe, hls_target(live.origin.master_url), 1.0)
    assert time.monotonic() - start < 3.5  # each attempt waited at most 2 s for its keys
    ev = [e for e in results[-1].evidence if e.fault == "key_unavailable"]
    assert ev and "no answer within 2.0 s" in ev[0].detail
    assert [e for e in bad(results[-1].evidence) if e[3] != "key_unavailable"] == []
    assert results[-1].figures["alternates"]["audio-en"]["age_s"] < 1.5


async def test_viewers_fetch_the_audio_rendition_they_would_play(live):
    edge = live.edges["edge-a"]
    demuxed(live)
    t = ProbeTarget("playback", "main", "playback", "edge-a", PlaybackSettings(interval_s=0.5), edge.master_url,
                    0.5, 30.0)
    results = await run_probe(playback_probe, t, 5.0, interval=0.05)
    last = results[-1]
    assert {(e.rendition, e.state) for e in last.evidence} == {("360p", State.OK), ("180p", State.OK)}
    assert last.figures["playback"]["360p"]["audio_buffer_s"] > 0.5
    # the DEFAULT=YES rendition of group "aud", never the other language; one audio per viewer
    assert "audio_en" in edge.playlists_requested and "audio_de" not in edge.playlists_requested
    assert edge.audio_segments_requested
    audio = [s for r in results for s in r.spans if s.name.startswith("play audio-en segment")]
    assert audio and all(s.error is None for s in audio)


async def test_a_frozen_or_missing_audio_playlist_stalls_or_fails_the_viewer(live):
    """hls.js plays the intersection of its audio and video buffers: audio that stops coming stalls
    the picture too, and a 404 audio playlist (after its retries) is a fatal error. Both are
    evidence on the audio rendition, not on the variant the viewer watches."""
    edge = live.edges["edge-a"]
    demuxed(live, audio=("en",))
    settings = PlaybackSettings(interval_s=0.5, renditions=["180p"])
    t = ProbeTarget("playback", "main", "playback", "edge-a", settings, edge.master_url, 0.5, 30.0)
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        await wait_for_result(t, ctx, lambda r: r.figures.get("playback", {}).get("180p", {}).get("state")
                              == "playing", 8)
        edge.knobs.frozen_at["audio_en"] = live.tl.newest()
        r = await wait_for_result(t, ctx, lambda r: any(e.fault == "stalls" for e in r.evidence), 10)
        ev = [e for e in r.evidence if e.fault == "stalls"]
        assert [e.rendition for e in ev] == ["audio-en"] and "waiting for its audio" in ev[0].detail
        assert r.figures["playback"]["180p"]["audio_buffer_s"] == 0
        edge.knobs.gone.add("audio_en")
        r = await wait_for_result(t, ctx, lambda r: any(e.fault == "playback_failed" for e in r.evidence), 15)
        ev = [e for e in r.evidence if e.fault == "playback_failed"]
        assert [e.rendition for e in ev] == ["audio-en"] and "audio-en playlist: HTTP 404" in ev[0].detail


async def wait_for_result(t: ProbeTarget, ctx: ProbeContext, ok: Any, seconds: float) -> ProbeResult:
    end = time.monotonic() + seconds
    while True:
        r = await playback_probe(t, ctx)
        if ok(r):
            return r
        if time.monotonic() > end:
            raise AssertionError(f"not within {seconds} s: {bad(r.evidence)} {r.figures}")
        await asyncio.sleep(0.05)


def agent_config(live: Any) -> dict[str, Any]:
    conf = live.config()
    conf["streams"][0]["latency"] = {"enabled": False}
    return conf


async def test_a_healthy_demuxed_encrypted_stream_has_no_fault_anywhere(live):
    demuxed(live, encrypted=True, key_rotate_every=3)
    async with Agent(parse_config(agent_config(live))) as agent:
        await wait_for(lambda: agent.board.state_of("main", "playback", "edge-b").value == "ok", 15, "viewers ok")
        end = time.monotonic() + 8
        seen: list[Any] = []
        while time.monotonic() < end:
            seen += bad(agent.board.evidence("main"))
            await asyncio.sleep(0.25)
        assert seen == [] and agent.incidents.localizer.open_incidents() == []
        origin = agent.board.as_json()["streams"][0]["stages"]
        figs = [c["figures"] for c in origin if c["stage"] == "origin"][0]
        assert {"audio-en", "audio-de", "iframe-360p"} == set(figs["alternates"])
        async with aiohttp.ClientSession() as s:
            async with s.get(agent.url + "/metrics") as resp:
                metrics = await resp.text()
            async with s.get(agent.url + "/api/v1/status") as resp:
                status = await resp.text()
    assert 'rendition="audio-en"' in metrics and 'rendition="iframe-360p"' in metrics
    for ep in [live.origin, *live.edges.values()]:  # each key URI once per endpoint
        assert ep.keys_requested and len(ep.keys_requested) == len(set(ep.keys_requested))
        assert ep.audio_segments_requested
    assert KEY_TOKEN not in metrics + status and KEY_BYTES.decode() not in metrics + status


async def test_audio_frozen_at_the_packager_is_one_incident_at_the_audio_rendition(live):
    """The audio playlist stops advancing at the origin and so at every edge, video fresh: one
    stale_playlist incident at transcode/audio-en — not at a video rendition, not 'every
    rendition stopped' — and the viewers' stalls (waiting for audio) are its evidence."""
    demuxed(live, audio=("en",))
    conf = agent_config(live)
    async with Agent(parse_config(conf)) as agent:
        await wait_for(lambda: agent.board.state_of("main", "playback", "edge-b").value == "ok", 15, "viewers ok")
        newest = live.tl.newest()
        for ep in [live.origin, *live.edges.values()]:
            ep.knobs.frozen_at["audio_en"] = newest
        opened = await wait_for(lambda: agent.incidents.localizer.open_incidents("main"), 10, "an incident")
        # the viewers run dry (3 s of hold-back) and stall on the audio: evidence, not incidents
        stalls = await wait_for(lambda: [e for e in agent.board.evidence("main", exclude=("incidents",))
                                         if e.fault == "stalls"], 12, "viewers stalling")
        await asyncio.sleep(4)  # past the players' open cycles
        opened = agent.incidents.localizer.open_incidents("main")
    assert [(i.stage, i.component, i.fault) for i in opened] == [("transcode", "audio-en", "stale_playlist")], \
        [(i.stage, i.component, i.fault, i.summary) for i in opened]
    assert {e.rendition for e in stalls} == {"audio-en"}
    assert "every rendition" not in opened[0].summary and "audio-en" in opened[0].summary
    assert any("edge-a" in line and "stalls" in line for line in opened[0].evidence), opened[0].evidence


async def test_every_video_rendition_stale_while_the_audio_flows_is_still_the_transcoder(live):
    """The audio rendition is no member of the video ladder: every variant's playlist stopping is
    'every rendition stopped' (one transcode/transcoder incident) although the audio advances."""
    demuxed(live, audio=("en",))
    async with Agent(parse_config(agent_config(live))) as agent:
        await wait_for(lambda: agent.board.state_of("main", "origin", "origin").value == "ok", 15, "origin ok")
        newest = live.tl.newest()
        for ep in [live.origin, *live.edges.values()]:
            ep.knobs.frozen_at.update({"360p": newest, "180p": newest})
        opened = await wait_for(lambda: [i for i in agent.incidents.localizer.open_incidents("main")
                                         if i.fault == "stale_playlist"], 10, "a stale_playlist incident")
        await asyncio.sleep(2)
        opened = [i for i in agent.incidents.localizer.open_incidents("main") if i.fault == "stale_playlist"]
    assert [(i.stage, i.component) for i in opened] == [("transcode", "transcoder")], \
        [(i.stage, i.component, i.summary) for i in opened]


async def test_a_key_uri_answering_404_is_the_key_fault(live):
    demuxed(live, encrypted=True)
    for ep in [live.origin, *live.edges.values()]:
        ep.knobs.key_status = 404
    async with Agent(parse_config(agent_config(live))) as agent:
        opened = await wait_for(lambda: agent.incidents.localizer.open_incidents("main"), 12, "an incident")
        ev = [e for e in agent.board.evidence("main", exclude=("incidents",)) if e.fault == "key_unavailable"]
        async with aiohttp.ClientSession() as s:
            async with s.get(agent.url + "/api/v1/incidents?state=all") as resp:
                incidents = await resp.json()
    assert [(i.stage, i.component, i.fault, i.severity) for i in opened] == [
        ("origin", "origin", "key_unavailable", "P1")], [(i.stage, i.component, i.fault) for i in opened]
    assert ev and all(e.http_status == 404 and e.url_role == "key" for e in ev)
    assert {e.component for e in ev} == {"origin", "edge-a", "edge-b"}
    shown = json.dumps(incidents) + repr(ev)
    assert "keys/0.bin" in shown and KEY_TOKEN not in shown and "?token" not in shown
    for ep in [live.origin, *live.edges.values()]:  # retried at most once per target duration
        assert len(ep.keys_requested) <= 20
