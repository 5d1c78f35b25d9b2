"""The embedded lab against real HTTP on loopback: one shared lab for the module."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import socket
import threading
import time

import aiohttp
import av
import m3u8
import numpy as np
import pytest
import pytest_asyncio
from waiting import wait_for

from agent.lab import Lab, LabConfig, control
from agent.lab.cli import main as lab_cli

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab():
    async with Lab(LabConfig()) as lab:
        yield lab


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module")
async def clean(lab):
    yield
    await lab.clear_all()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict, bytes]:
    async with http.get(url) as r:
        return r.status, dict(r.headers), await r.read()


async def media(http, url: str) -> m3u8.M3U8:
    status, _, body = await get(http, url)
    assert status == 200, (url, status, body[:200])
    return m3u8.loads(body.decode(), uri=url)


def last_seq(pl: m3u8.M3U8) -> int:
    return pl.media_sequence + len(pl.segments) - 1


def decode(data: bytes) -> tuple[list[av.VideoFrame], list[av.AudioFrame], dict]:
    with av.open(io.BytesIO(data), format="mpegts") as c:
        info = {s.type: s.codec_context.name for s in c.streams}
        video, audio = [], []
        for frame in c.decode(*c.streams):
            (video if isinstance(frame, av.VideoFrame) else audio).append(frame)
    return video, audio, info


async def test_master_lists_both_renditions(lab, http):
    status, headers, body = await get(http, lab.origin_url())
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert headers["Cache-Control"] == "max-age=1"
    master = m3u8.loads(body.decode())
    assert master.is_variant
    res = {p.stream_info.resolution: p for p in master.playlists}
    assert set(res) == {(640, 360), (320, 180)}
    for p in master.playlists:
        assert "avc1." in p.stream_info.codecs and "mp4a.40.2" in p.stream_info.codecs
        assert p.stream_info.bandwidth > 0
    assert {p.uri for p in master.playlists} == {"main/360p.m3u8", "main/180p.m3u8"}


async def test_media_playlist_advances_every_segment_with_pdt(lab, http):
    url = lab.media_url("360p")
    first = await media(http, url)
    assert first.target_duration == 2
    start = time.monotonic()
    await wait_for(lambda: _advanced(http, url, last_seq(first)), 5.0, "the 360p playlist to advance")
    assert time.monotonic() - start < 4.5
    pl = await media(http, url)
    assert len(pl.segments) in range(1, 7), len(pl.segments)
    pdts = [s.program_date_time for s in pl.segments]
    assert all(p is not None for p in pdts)
    for seg in pl.segments:
        assert seg.duration == pytest.approx(2.0, abs=0.05)
    for a, b in itertools.pairwise(pdts):
        assert (b - a).total_seconds() == pytest.approx(2.0, abs=0.05)
    # the newest segment was captured a segment or two ago (PDT is capture time)
    age = time.time() - pdts[-1].timestamp()
    assert age > 1.9 and age < 6.0, age


async def _advanced(http, url: str, seq: int) -> bool:
    return last_seq(await media(http, url)) > seq


async def test_segments_are_ts_h264_aac_at_right_size_with_aligned_keyframes(lab, http):
    pls = {r: await media(http, lab.media_url(r)) for r in lab.renditions}
    by_pdt = {r: {s.program_date_time: s for s in pl.segments} for r, pl in pls.items()}
    common = sorted(t for t in set(by_pdt["360p"]) & set(by_pdt["180p"])
                    if all(abs(by_pdt[r][t].duration - 2.0) < 0.01 for r in by_pdt))
    assert common, "renditions share no full segment start time"
    pdt = common[-1]
    sizes = {"360p": (640, 360), "180p": (320, 180)}
    first_pts = {}
    for r in lab.renditions:
        status, headers, data = await get(http, by_pdt[r][pdt].absolute_uri)
        assert status == 200
        assert headers["Content-Type"] == "video/mp2t"
        assert headers["Cache-Control"] == "max-age=60"
        assert data[0] == 0x47 and data[188] == 0x47
        video, audio, info = decode(data)
        assert info == {"video": "h264", "audio": "aac"}
        assert (video[0].width, video[0].height) == sizes[r]
        assert video[0].key_frame
        assert len(video) == 50
        first_pts[r] = video[0].pts
        samples = np.concatenate([f.to_ndarray().ravel() for f in audio[2:]])
        rms_dbfs = 20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        assert -26 < rms_dbfs < -20  # the -20 dBFS peak tone
        luma = video[len(video) // 2].to_ndarray(format="gray")
        assert luma.mean() > 40  # a picture, not black
    assert first_pts["360p"] == first_pts["180p"]  # IDRs aligned across the ladder


async def test_edge_caches_segments_and_playlists(lab, http):
    pl = await media(http, lab.media_url("180p", via="edge-b"))
    seg_url = pl.segments[-1].absolute_uri
    s1, h1, b1 = await get(http, seg_url)
    s2, h2, b2 = await get(http, seg_url)
    assert (s1, s2) == (200, 200) and b1 == b2
    assert h1["X-Cache"] == "MISS"
    assert h2["X-Cache"] == "HIT"
    assert int(h2["Age"]) >= 0
    assert h2["Cache-Control"] == "max-age=60"
    _, _, origin_body = await get(http, seg_url.replace(lab._edge("edge-b").url, lab.origin_base))
    assert origin_body == b1
    # playlists: cached for about max-age=1, then refetched
    url = lab.media_url("360p", via="edge-a")
    await get(http, url)
    _, h, _ = await get(http, url)
    assert h["X-Cache"] == "HIT"

    async def refetched() -> bool:
        _, hh, _ = await get(http, url)
        return hh["X-Cache"] == "MISS"

    await wait_for(refetched, 3.0, "edge-a to refetch the playlist after max-age")


async def test_edge_stale_keeps_old_playlist(lab, http, clean):
    rec = await lab.inject("edge_stale", "edge-b", for_s=30)
    stale_url = lab.media_url("360p", via="edge-b")
    frozen = last_seq(await media(http, stale_url))
    origin = lab.media_url("360p")
    await wait_for(lambda: _advanced(http, origin, frozen + 1), 7.0, "origin to advance two segments")
    assert last_seq(await media(http, stale_url)) == frozen
    assert last_seq(await media(http, lab.media_url("360p", via="edge-a"))) > frozen
    truth = lab.truth()
    assert truth["edges"]["edge-b"]["stale"] and not truth["edges"]["edge-a"]["stale"]
    ended = await lab.clear(rec.id)
    assert ended.end_reason == "cleared" and ended.ended_at >= ended.started_at
    await wait_for(lambda: _advanced(http, stale_url, frozen + 1), 3.0, "edge-b to catch up")


async def test_origin_5xx_and_edges_pass_it_on(lab, http, clean):
    await lab.inject("origin_5xx", params={"status": 503})
    status, headers, _ = await get(http, lab.origin_url())
    assert status == 503 and "max-age" not in headers.get("Cache-Control", "")

    async def edge_503() -> bool:
        s, _, _ = await get(http, lab.media_url("360p", via="edge-a"))
        return s == 503

    await wait_for(edge_503, 3.0, "edge-a to pass the 503 on once its copy expires")
    await lab.clear_all()
    status, _, _ = await get(http, lab.origin_url())
    assert status == 200


async def test_edge_down_refuses_connections_then_returns_on_same_port(lab, http, clean):
    port = lab._edge("edge-a").listener.port
    rec = await lab.inject("edge_down", "edge-a", for_s=1.5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(aiohttp.ClientConnectorError):
        await get(http, lab.edge_url("edge-a"))
    status, _, _ = await get(http, lab.edge_url("edge-b"))
    assert status == 200

    async def back() -> bool:
        try:
            return (await get(http, lab.edge_url("edge-a")))[0] == 200
        except aiohttp.ClientError:
            return False

    await wait_for(back, 4.0, "edge-a to listen again")
    assert lab._edge("edge-a").listener.port == port
    done = next(r for r in lab.faults()["history"] if r["id"] == rec.id)
    assert done["end_reason"] == "expired"
    assert done["ended_at"] == pytest.approx(done["started_at"] + 1.5, abs=1e-6)


async def test_origin_down_makes_edges_answer_502(lab, http, clean):
    await lab.inject("origin_down")
    with pytest.raises(aiohttp.ClientConnectorError):
        await get(http, lab.origin_url())

    async def edge_502() -> bool:
        s, _, _ = await get(http, lab.media_url("180p", via="edge-b"))
        return s == 502

    await wait_for(edge_502, 3.0, "edge-b to report the origin unreachable")
    await lab.clear_all()
    assert (await get(http, lab.origin_url()))[0] == 200


async def test_edge_404_segments(lab, http, clean):
    await lab.inject("edge_404_segments", "edge-a")
    pl = await media(http, lab.media_url("360p", via="edge-a"))
    status, _, _ = await get(http, pl.segments[-1].absolute_uri)
    assert status == 404
    other = pl.segments[-1].absolute_uri.replace(lab._edge("edge-a").url, lab._edge("edge-b").url)
    assert (await get(http, other))[0] == 200


async def test_mpd_stale_freezes_the_mpd_while_the_hls_playlists_advance(lab, http, clean):
    """The DASH side of one encode stops at the origin; its HLS side goes on (issue 18's "MPD
    not updated" fault)."""
    await lab.inject("mpd_stale", "origin")
    frozen = (await get(http, lab.dash_url(None)))[2]
    start = last_seq(await media(http, lab.media_url("180p")))

    async def hls_moved() -> bool:
        return last_seq(await media(http, lab.media_url("180p"))) >= start + 2

    await wait_for(hls_moved, 8.0, "the HLS playlist to advance two segments")
    assert (await get(http, lab.dash_url(None)))[2] == frozen
    assert (await get(http, lab.dash_url("edge-a")))[2] == frozen  # an edge passes the origin's on
    await lab.clear_all()
    assert (await get(http, lab.dash_url(None)))[2] != frozen


async def test_segment_late_lists_segments_before_they_answer(lab, http, clean):
    await lab.inject("segment_late", "origin", params={"ms": 3000})
    pl = await media(http, lab.media_url("180p"))
    newest, older = pl.segments[-1].absolute_uri, pl.segments[-3].absolute_uri  # < 2 s and > 4 s old
    assert (await get(http, newest))[0] == 404
    assert (await get(http, older))[0] == 200
    await lab.clear_all()
    assert (await get(http, newest))[0] == 200


async def test_clearing_a_throttle_speeds_up_transfers_under_way(lab, http, clean):
    """A shaped link (tc) slows every byte while it is on: clearing it frees the transfers
    already under way too, or a viewer's segment begun during the fault stays slow after it."""
    pl = await media(http, lab.media_url("360p", via="edge-a"))
    full = (await get(http, pl.segments[-1].absolute_uri))[2]
    rec = await lab.inject("edge_throttle", "edge-a", params={"bytes_per_s": 2000})
    t0 = time.monotonic()
    fetch = asyncio.create_task(get(http, pl.segments[-1].absolute_uri))
    await asyncio.sleep(1.0)
    assert not fetch.done()  # ~100 kB at 2 kB/s: under way for a minute if nothing changes
    await lab.clear(rec.id)
    status, _, body = await asyncio.wait_for(fetch, 5.0)
    assert status == 200 and body == full
    assert time.monotonic() - t0 < 4.0


async def test_rendition_stall_stops_one_rendition(lab, http, clean):
    rec = await lab.inject("rendition_stall", "180p")
    stalled = last_seq(await media(http, lab.media_url("180p")))
    ok = last_seq(await media(http, lab.media_url("360p")))
    await wait_for(lambda: _advanced(http, lab.media_url("360p"), ok + 1), 7.0, "360p to advance two segments")
    assert last_seq(await media(http, lab.media_url("180p"))) == stalled
    assert lab.truth()["transcode"]["renditions"]["180p"]["stalled"]
    await lab.clear(rec.id)
    await wait_for(lambda: _advanced(http, lab.media_url("180p"), stalled), 5.0, "180p to resume")
    pl = await media(http, lab.media_url("180p"))
    assert pl.segments[-1].discontinuity  # the resumed segment follows a gap


async def test_black_video_reaches_the_segments(lab, http, clean):
    rec = await lab.inject("black_video", for_s=5)
    url = lab.media_url("180p")

    async def black_segment():
        pl = await media(http, url)
        seg = pl.segments[-1]
        if seg.program_date_time.timestamp() < rec.started_at + 0.1:
            return None
        return seg

    seg = await wait_for(black_segment, 6.0, "a segment captured after the fault began")
    video, _, _ = decode((await get(http, seg.absolute_uri))[2])
    assert video[0].to_ndarray(format="gray").mean() < 20  # THRESHOLDS.md black frame


async def test_corrupt_segment_fires_once(lab, http, clean):
    rec = await lab.inject("corrupt_segment", "360p")

    def fired():
        return next((r for r in lab.faults()["history"] if r["id"] == rec.id and not r["active"]), None)

    done = await wait_for(fired, 5.0, "the corrupt_segment fault to fire")
    assert done["end_reason"] == "fired"
    uri = done["effect"]["uri"]
    _, _, data = await get(http, f"{lab.origin_base}/live/main/{uri}")
    try:
        video, _, _ = decode(data)
    except av.error.FFmpegError:
        video = []
    assert len(video) < 10


async def test_ingest_drop_shows_on_stat_page(lab, http, clean):
    await lab.inject("ingest_drop", for_s=10)

    async def not_publishing() -> bool:
        _, _, body = await get(http, lab.control_url + "/ingest/stat")
        return json.loads(body)["publishing"] is False

    await wait_for(not_publishing, 3.0, "the ingest stat page to show no publisher")
    assert lab.truth()["ingest"]["publishing"] is False
    await lab.clear_all()

    async def publishing() -> bool:
        _, _, body = await get(http, lab.control_url + "/ingest/stat")
        return json.loads(body)["publishing"] is True

    await wait_for(publishing, 3.0, "the publisher to come back")


@pytest.mark.parametrize("body, needle", [
    ({"name": "no_such_fault"}, "unknown fault"),
    ({"name": "edge_stale", "target": "edge-z"}, "unknown target"),
    ({"name": "edge_stale"}, "needs a target"),
    ({"name": "ingest_latency", "params": {"ms": "soon"}}, "must be int"),
    ({"name": "ingest_latency", "params": {"bogus": 1}}, "unknown parameter"),
    ({"name": "black_video", "for_s": -1}, "for_s"),
    ({"name": "black_video", "extra": 1}, "unknown field"),
    ([1, 2], "JSON object"),
])
async def test_bad_fault_requests_get_400(lab, http, clean, body, needle):
    async with http.post(lab.control_url + "/faults", json=body) as r:
        assert r.status == 400
        assert needle in (await r.json())["error"]


async def test_conflicts_bad_json_unknown_ids(lab, http, clean):
    async with http.post(lab.control_url + "/faults", json={"name": "edge_stale", "target": "edge-a"}) as r:
        assert r.status == 201
    async with http.post(lab.control_url + "/faults", json={"name": "edge_stale", "target": "edge-a"}) as r:
        assert r.status == 400 and "conflict" in (await r.json())["error"]
    async with http.post(lab.control_url + "/faults", data=b"{not json") as r:
        assert r.status == 400 and "JSON" in (await r.json())["error"]
    async with http.delete(lab.control_url + "/faults/999999") as r:
        assert r.status == 404
    async with http.delete(lab.control_url + "/faults/abc") as r:
        assert r.status == 400
    async with http.get(lab.control_url + "/truth") as r:  # still alive
        assert r.status == 200
        assert (await r.json())["edges"]["edge-a"]["stale"] is True


async def test_control_client_and_cli(lab, capsys, clean):
    url = lab.control_url
    rec = await asyncio.to_thread(control.inject, url, "edge_slow_first_byte", "edge-b", 30.0, {"ms": 50})
    assert rec["params"] == {"ms": 50} and rec["active"]
    listed = await asyncio.to_thread(control.list_faults, url)
    assert [r["id"] for r in listed["active"]] == [rec["id"]]
    with pytest.raises(control.LabControlError, match="unknown fault"):
        await asyncio.to_thread(control.inject, url, "nope")
    rc = await asyncio.to_thread(lab_cli, ["lab", "fault", "ingest_latency", "--param", "ms=300",
                                           "--for", "20", "--control", url])
    assert rc == 0
    assert "ingest_latency" in capsys.readouterr().out
    rc = await asyncio.to_thread(lab_cli, ["lab", "fault", "bogus", "--control", url])
    assert rc == 2
    assert "unknown fault" in capsys.readouterr().err
    rc = await asyncio.to_thread(lab_cli, ["lab", "clear", "--control", url])
    assert rc == 0
    assert lab.faults()["active"] == []


async def test_stop_releases_every_port_and_thread():
    lab = Lab(LabConfig(stream="other", wait_ready=False))
    await lab.start()
    ports = lab.ports()
    assert len(set(ports)) == 4
    await lab.stop()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    assert not [t.name for t in threading.enumerate() if t.name.startswith("lab-other-")]


async def test_tour_runs_steps_and_reports_refusals(lab, clean):
    from agent.lab.tour import DEFAULT_TOUR, TourStep, run_tour

    for step in DEFAULT_TOUR:  # the shipped tour fits the default lab
        if step.fault:
            lab.book.validate(step.fault, step.target, step.for_s, step.params)
    said: list[str] = []
    steps = [TourStep("healthy", 0.05),
             TourStep("stale", 0.3, fault="edge_stale", target="edge-b", for_s=0.1,
                      expect_stage="cdn", expect_component="edge-b"),
             TourStep("refused", 0.0, fault="no_such_fault")]
    recs = await run_tour(lab, steps, said.append)
    assert [r["name"] for r in recs] == ["edge_stale"]
    assert any("expect: cdn/edge-b" in s for s in said)
    assert any("edge_stale on edge-b ended" in s for s in said)
    assert any("could not inject no_such_fault" in s for s in said)
    assert said[-1].endswith("tour finished")
    assert lab.book.active("edge_stale", "edge-b") is None
