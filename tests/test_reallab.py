"""The real-software lab comes up, and each of its fault helpers changes what is observed.

Real nginx-rtmp + nginx proxy_cache edges + ffmpeg (Debian), on loopback.
Skipped without the binaries, failed instead under SIGNALPATH_REQUIRE_LAB=1.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import psutil
import pytest
from _require import require_binary
from reallab import RealLab, parse_media_playlist

pytestmark = pytest.mark.lab


@pytest.fixture
async def lab(tmp_path):
    require_binary("nginx")
    require_binary("ffmpeg")
    if RealLab.missing_binaries():
        require_binary("ngx_rtmp_module (libnginx-mod-rtmp)")
    async with RealLab(tmp_path / "lab") as running:
        yield running
        pids = running.pids()
    # The fixture's exit stopped the lab: nothing it started may survive.
    assert pids, "the lab reported no processes while running"
    assert not [p for p in pids if _alive(p)], "processes leaked after stop()"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _publisher_present(lab: RealLab) -> bool:
    xml = await lab.stat_xml()
    return "<publishing/>" in xml


async def _until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {timeout} s: {what}")


async def test_lab_comes_up_playlist_advances_and_edges_cache(lab: RealLab):
    _seq0, segs0 = await lab.playlist()
    last0 = await lab.last_segment()
    assert segs0 and all(s.endswith(".ts") for s in segs0)
    status, headers, body = await lab.fetch(lab.origin_url)
    assert status == 200 and headers["Cache-Control"] == "max-age=1"
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    # Debian's nginx-rtmp writes no program date time (the beacon exists for this).
    assert b"#EXT-X-PROGRAM-DATE-TIME" not in body

    last1 = await lab.wait_playlist(after_last=last0, timeout=6)
    assert last1 > last0

    for edge, url in lab.edge_urls.items():
        _seq, segs = await lab.playlist(url)
        seg_url = url.rsplit("/", 1)[0] + "/" + segs[-1]
        s1, h1, b1 = await lab.fetch(seg_url)
        s2, h2, b2 = await lab.fetch(seg_url)
        assert (s1, s2) == (200, 200), edge
        assert h1["X-Cache"] == "MISS" and h2["X-Cache"] == "HIT", (edge, h1, h2)
        assert h2["Cache-Control"] == "max-age=60"
        assert b1 == b2 and b1[:1] == b"\x47"  # an MPEG-TS sync byte

    assert await _publisher_present(lab)
    cfg = lab.config_dict()
    assert cfg["agent"] == {"listen": "127.0.0.1:0", "site": "lab"}
    (stream,) = cfg["streams"]
    assert stream["origin"] == lab.origin_url
    assert [e["name"] for e in stream["edges"]] == ["edge-a", "edge-b"]
    assert [e["url"] for e in stream["edges"]] == [lab.edge_url("edge-a"), lab.edge_url("edge-b")]


async def test_drop_publisher_and_kill_restart_ffmpeg(lab: RealLab):
    answer = await lab.drop_publisher()
    assert answer.strip() == "1"  # nginx-rtmp: number of dropped clients
    await _until(lambda: _not(_publisher_present(lab)), 5, "stat shows no publisher")
    await _until(lambda: _sync(not lab.ffmpeg_running()), 10, "ffmpeg exits once dropped")
    last_dropped = await lab.last_segment()
    await asyncio.sleep(lab.segment_seconds * 1.5)  # a live playlist would advance here
    assert await lab.last_segment() == last_dropped

    await lab.start_ffmpeg()
    await _until(lambda: _publisher_present(lab), 10, "publisher back")
    await lab.wait_playlist(after_last=last_dropped, timeout=10)

    await lab.kill_ffmpeg()
    assert not lab.ffmpeg_running()
    await _until(lambda: _not(_publisher_present(lab)), 5, "stat shows no publisher after kill")


async def test_edge_stale_heal_and_kill(lab: RealLab):
    await lab.make_edge_stale("edge-a")
    frozen = await lab.last_segment(lab.edge_url("edge-a"))
    origin_last = await lab.wait_playlist(after_last=frozen, timeout=6)
    await asyncio.sleep(1.2)  # longer than the playlist TTL of a healthy edge (max-age=1)
    stale_last = await lab.last_segment(lab.edge_url("edge-a"))
    fresh_last = await lab.wait_playlist(lab.edge_url("edge-b"), after_last=frozen, timeout=3)
    assert stale_last == frozen < origin_last  # edge-a serves the old playlist
    assert fresh_last > frozen  # edge-b follows the origin

    await lab.heal_edge("edge-a")
    assert await lab.last_segment(lab.edge_url("edge-a")) > frozen

    await lab.kill_edge("edge-b")
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await lab.fetch(lab.edge_url("edge-b"))
    assert isinstance(info.value.os_error, ConnectionRefusedError)
    status, _h, _b = await lab.fetch(lab.edge_url("edge-a"))  # the other edge is unaffected
    assert status == 200
    await lab.start_edge("edge-b")
    status, headers, _b = await lab.fetch(lab.edge_url("edge-b"))
    assert status == 200 and headers["X-Cache"] in {"MISS", "HIT", "EXPIRED"}


def test_parse_media_playlist():
    text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.0,\nmain-7.ts\n#EXTINF:2.0,\nmain-8.ts\n"
    assert parse_media_playlist(text) == (7, ["main-7.ts", "main-8.ts"])


async def _not(coro) -> bool:
    return not await coro


async def _sync(value: bool) -> bool:
    return value
