"""probes/playback.py against a real live HLS server (tests/livehls.py, 1-s segments, port 0).

The buffer model itself is unit-tested in tests/test_player_model.py; here the network
side: join behind the live edge, playlist reloads, stalls on a slow server, a viewer that
gives up on missing segments or an unreachable edge.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from probes.base import ProbeContext, ProbeTarget, State
from probes.core.playlist import Variant
from probes.net.httpfetch import Fetcher
from probes.playback import PlaybackSettings, choose_renditions, probe


def v(name: str, bw: int | None, res: tuple[int, int] | None = None) -> Variant:
    return Variant(name=name, uri=f"http://127.0.0.1/{name}.m3u8", bandwidth=bw, resolution=res)


def test_choose_renditions():
    ladder = [v("720p", 3_000_000), v("180p", 300_000), v("360p", 800_000)]
    assert [x.name for x in choose_renditions(ladder, "highest_lowest")] == ["720p", "180p"]
    assert [x.name for x in choose_renditions(ladder[:1], "highest_lowest")] == ["720p"]
    assert [x.name for x in choose_renditions(ladder, "all")] == ["720p", "180p", "360p"]
    assert [x.name for x in choose_renditions(ladder, ["360p", "1080p"])] == ["360p"]
    assert choose_renditions([], "highest_lowest") == []


def test_settings_are_strict():
    with pytest.raises(ValueError):
        PlaybackSettings(renditions="middle")
    with pytest.raises(ValueError):
        PlaybackSettings(unknown=1)


async def run_for(url: str, settings: PlaybackSettings, seconds: float, until=None, interval: float = 0.5):
    """Advance one edge's viewers attempt after attempt; return every result."""
    t = ProbeTarget("playback", "main", "playback", "edge-a", settings, url, interval, settings.timeout_s)
    results = []
    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r = await probe(t, ctx)
            results.append(r)
            if until is not None and until(r):
                break
            await asyncio.sleep(0.05)
    return results


async def test_viewers_join_three_target_durations_behind_and_play(live):
    results = await run_for(live.edges["edge-a"].master_url, PlaybackSettings(interval_s=0.5), 4.0)
    last = results[-1]
    assert {(e.rendition, e.state, e.fault) for e in last.evidence} == {("360p", State.OK, None),
                                                                        ("180p", State.OK, None)}
    assert all(e.stage == "playback" and e.component == "edge-a" for e in last.evidence)
    first = [s for r in results for s in r.spans if s.name.startswith("play 180p")][0]
    newest_at_join = first.attributes["signalpath.sequence"]
    # the 5-segment window of 1-s segments: the join point is 3 s before the end -> newest - 2
    assert live.tl.newest() - newest_at_join >= 2
    figs = last.figures["playback"]["180p"]
    assert figs["state"] == "playing" and figs["stall_count"] == 0 and figs["buffer_s"] > 0.5
    names = {s.name for s in last.samples}
    assert {"signalpath_playback_startup_seconds", "signalpath_playback_rebuffer_ratio",
            "signalpath_playback_stalls_total", "signalpath_playback_stall_seconds_total"} <= names
    assert all(set(s.labels) == {"stream", "stage", "component", "rendition"} for s in last.samples)
    # segments are downloaded once each, in order
    seqs = [s.attributes["signalpath.sequence"] for r in results for s in r.spans if s.name.startswith("play 180p")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_slow_segments_stall_the_viewer(live):
    edge = live.edges["edge-a"]
    size = len((await asyncio.to_thread(__import__("livehls").segments_for, "180p", 1.0))[0])
    edge.knobs.segment_bytes_per_s = size / 2.5  # 1 s of media takes 2.5 s to arrive
    settings = PlaybackSettings(interval_s=0.5, renditions=["180p"])
    results = await run_for(edge.master_url, settings, 25.0,
                            until=lambda r: any(e.fault == "stalls" for e in r.evidence))
    ev = [e for e in results[-1].evidence if e.fault == "stalls"]
    assert ev and ev[0].state is State.DEGRADED and ev[0].rendition == "180p"
    stalls = sum(s.value for r in results for s in r.samples if s.name == "signalpath_playback_stalls_total")
    assert stalls >= 1
    assert ev[0].figures["rebuffer_ratio"] > 0
    # the episode and its latest stall are dated when the stall began, before it was reported
    assert ev[0].onset is not None and ev[0].latest_onset is not None
    assert ev[0].onset <= ev[0].latest_onset < time.time() - PlaybackSettings().player.stall_report_s


async def test_missing_segments_make_playback_fail(live):
    edge = live.edges["edge-a"]
    edge.knobs.segment_status = 404
    settings = PlaybackSettings(interval_s=0.5, renditions=["180p"], segment_retries=1)
    results = await run_for(edge.master_url, settings, 15.0,
                            until=lambda r: any(e.fault == "playback_failed" for e in r.evidence))
    ev = [e for e in results[-1].evidence if e.fault == "playback_failed"]
    assert ev and ev[0].state is State.DOWN and "404" in ev[0].detail
    errs = [s for r in results for s in r.spans if s.error]
    assert errs and "404" in errs[0].error


async def test_unreachable_edge_fails_the_viewer():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = PlaybackSettings(interval_s=0.2, manifest_retries=0)
    results = await run_for(f"http://127.0.0.1:{port}/live/main.m3u8", settings, 5.0,
                            until=lambda r: any(e.fault == "playback_failed" for e in r.evidence), interval=0.2)
    last = results[-1]
    assert [(e.state, e.fault) for e in last.evidence] == [(State.DOWN, "playback_failed")]
    assert "refused" in last.evidence[0].detail and not last.ok


async def test_a_viewer_rides_through_a_renumbering_and_rejoins_a_stream_live_again_after_its_end(live):
    """An encoder restart renumbers the playlist 50 lower (no append_list): the viewer re-syncs to
    the live edge instead of waiting for numbers that never come (it stalled for good and opened
    a false edge incident). The stream ends (#EXT-X-ENDLIST), then is live again: a viewer plays
    it again instead of staying 'ended' (and 'ok') while watching nothing."""
    settings = PlaybackSettings(interval_s=0.5, renditions=["180p"])
    t = ProbeTarget("playback", "main", "playback", "origin", settings, live.origin.master_url, 0.5, settings.timeout_s)

    def state(r) -> str:
        return r.figures.get("playback", {}).get("180p", {}).get("state", "")

    async with Fetcher() as http:
        ctx = ProbeContext(state={}, http=http)

        async def until(pred, seconds: float, what: str):
            deadline, seen = time.monotonic() + seconds, []
            while time.monotonic() < deadline:
                r = await probe(t, ctx)
                seen.append(r)
                if pred(r, seen):
                    return seen
                await asyncio.sleep(0.05)
            raise AssertionError(f"not within {seconds:g} s: {what}; last {seen[-1].figures if seen else None}")

        await until(lambda r, _: state(r) == "playing", 10, "playing")
        live.origin.knobs.seq_offset["180p"] = 50
        low = live.tl.newest() - 40
        seen = await until(lambda r, _: any(s.attributes.get("signalpath.sequence", 10**9) < low and not s.error
                                             for s in r.spans), 10, "a renumbered segment played")
        assert state(seen[-1]) in ("playing", "stalled")
        live.origin.knobs.freeze_all = live.origin.knobs.endlist = True  # an ended playlist stops growing
        await until(lambda r, _: state(r) == "ended", 20, "ended")
        live.origin.knobs.freeze_all = live.origin.knobs.endlist = False
        live.origin.knobs.frozen_at.clear()
        await until(lambda r, _: state(r) == "playing", 15, "playing again after the end")


@pytest.mark.parametrize("watched", [True, False])
async def test_a_viewer_does_not_stall_for_the_agents_own_frozen_loop(live, watched):
    """The agent's event loop frozen for 5 s (a blocking call, a starved CPU) is longer than
    the viewer's ~3-s buffer. Its downloads stopped for that time, not the stream's: with the
    runner's loop watch (ProbeContext.agent_stalled_s) the viewer's play-out clock leaves the
    frozen time out and no stall is reported; without it (control) the same freeze drains the
    buffer and reads as a stall."""
    from agent.selfwatch import LoopWatch

    watch = LoopWatch(time.monotonic)
    task = asyncio.ensure_future(watch.run())
    settings = PlaybackSettings(interval_s=0.5)
    t = ProbeTarget("playback", "main", "playback", "edge-a", settings, live.edges["edge-a"].master_url, 0.5,
                    settings.timeout_s)
    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, agent_stalled_s=watch.stalled_s if watched else (lambda: 0.0))

            async def play_until(done, within_s: float):
                deadline = time.monotonic() + within_s
                while time.monotonic() < deadline:
                    r = await probe(t, ctx)
                    if done(r):
                        return r
                    await asyncio.sleep(0.05)
                raise AssertionError(f"not within {within_s} s: {r.figures['playback']}")

            def figs(r):
                return r.figures["playback"]["180p"]

            await play_until(lambda r: figs(r)["state"] == "playing" and figs(r)["buffer_s"] > 1.5, 15)
            time.sleep(5.0)  # the agent's own loop frozen (server and viewer alike)  # noqa: ASYNC251
            t_end = time.monotonic() + 4
            stalls = 0
            while time.monotonic() < t_end:  # play on: the stall would be counted within a few attempts
                stalls = max(stalls, int(figs(await probe(t, ctx))["stall_count"]))
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (stalls == 0) if watched else (stalls >= 1)
    if watched:
        assert watch.stalled_s() >= 4.9
