"""The lab's chronic mode: background imperfections, measured over real HTTP, never faults.

One chronic lab for the module (slow-edge episodes every 3-4 s instead of 30-60 s, so one
happens within the test); every wait polls a condition under a deadline.
"""

from __future__ import annotations

import random
import time

import aiohttp
import m3u8
import pytest
import pytest_asyncio
from pydantic import ValidationError
from waiting import wait_for

from agent.lab import Lab, LabConfig
from agent.lab.chronic import SlowEdgeSchedule
from agent.lab.config import ChronicConfig

in_lab = pytest.mark.asyncio(loop_scope="module")

SETTINGS = ChronicConfig(slow_edge_every_s=(3.0, 4.0), slow_edge_for_s=(2.0, 2.5))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab():
    async with Lab(LabConfig(chronic=True, chronic_settings=SETTINGS, webrtc=False)) as lab:
        yield lab


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def get(http: aiohttp.ClientSession, url: str) -> bytes:
    async with http.get(url) as r:
        assert r.status == 200, (url, r.status)
        return await r.read()


async def declared(http: aiohttp.ClientSession, lab: Lab) -> dict[str, int]:
    master = m3u8.loads((await get(http, lab.origin_url())).decode())
    return {p.uri.rsplit("/", 1)[-1].removesuffix(".m3u8"): p.stream_info.bandwidth for p in master.playlists}


async def newest(http: aiohttp.ClientSession, url: str) -> tuple[int, float, str]:
    """(sequence, EXTINF, absolute URI) of the newest segment of a media playlist."""
    pl = m3u8.loads((await get(http, url)).decode(), uri=url)
    seg = pl.segments[-1]
    return pl.media_sequence + len(pl.segments) - 1, seg.duration, seg.absolute_uri


@in_lab
async def test_overshooting_rendition_measures_over_its_declared_bandwidth(lab, http):
    over = lab.chronic()["conditions"][0]
    assert over["name"] == "bitrate_overshoot" and over["finding"] == "bitrate_over_declared"
    assert over["component"] == "180p"  # the lowest rung, the one the media probe analyses by default
    ratios: dict[str, dict[int, float]] = {r: {} for r in lab.renditions}

    async def measured() -> bool:
        bw = await declared(http, lab)
        for r in lab.renditions:
            seq, extinf, uri = await newest(http, lab.media_url(r))
            if seq not in ratios[r]:
                ratios[r][seq] = len(await get(http, uri)) * 8 / extinf / bw[r]
        return all(len(v) >= 3 for v in ratios.values())

    await wait_for(measured, 20, "three segments of each rendition measured", every=0.5)
    assert all(1.3 < x < 1.75 for x in ratios["180p"].values()), ratios  # 60 % over, as configured
    assert all(x <= 1.1 for x in ratios["360p"].values()), ratios  # the other rung stays within BANDWIDTH


@in_lab
async def test_playlists_keep_advancing_at_origin_and_every_edge(lab, http):
    urls = [lab.media_url(r, via=e) for r in lab.renditions for e in (None, *lab.edges)]
    first = {u: (await newest(http, u))[0] for u in urls}
    late: list[str] = []

    async def advanced() -> bool:
        late[:] = [u for u in urls if (await newest(http, u))[0] < first[u] + 2]
        return not late

    await wait_for(advanced, 12, "two new segments everywhere", every=0.5)


@in_lab
async def test_slow_edge_sends_segments_slower_but_within_real_time(lab, http):
    def episode():
        return lab.chronic()["conditions"][2]["active"]

    ep = await wait_for(lambda: (e := episode()) is not None and e["end"] - time.time() > 1.5 and e, 10,
                        "a slow-edge episode with 1.5 s left")
    seq, extinf, uri = await newest(http, lab.media_url("360p", via=ep["edge"]))
    t0 = time.monotonic()
    size = len(await get(http, uri))
    took = time.monotonic() - t0
    assert took >= 0.8 * size / SETTINGS.slow_edge_bytes_per_s, (size, took)
    assert took < extinf, (size, took, extinf)  # download ratio below 1: not a slow_segment
    assert episode() is None or episode()["segments"] >= 1


@in_lab
async def test_chronic_conditions_are_ground_truth_not_faults(lab, http):
    async def seen_enough() -> dict | None:  # run first (xdist), the lab may be a second old
        st = await (await http.get(lab.control_url + "/chronic")).json()
        return st if st["conditions"][1]["frames"] > 100 and st["conditions"][2]["episodes"] else None

    state = await wait_for(seen_enough, 15, "100 jittered frames and one slow-edge episode over", every=0.5)
    assert state["enabled"] and [c["name"] for c in state["conditions"]] == [
        "bitrate_overshoot", "publish_jitter", "slow_edge"]
    jitter = state["conditions"][1]
    assert jitter["frames"] > 100 and 0 < jitter["max_seen_s"] <= SETTINGS.jitter_max_s
    assert state["conditions"][2]["episodes"], "an episode has come and gone"
    assert lab.truth()["chronic"]["enabled"]
    faults = await (await http.get(lab.control_url + "/faults")).json()
    assert faults["active"] == [] and faults["history"] == []


def test_slow_edge_schedule_is_seeded_bounded_and_never_overlaps():
    def episodes(seed: int) -> list[tuple[str, float, float]]:
        s = SlowEdgeSchedule(("edge-a", "edge-b"), (30.0, 60.0), (3.0, 6.0), 250_000, random.Random(seed), 0.0,
                             keep=100)
        seen = [s.at(float(t)) for t in range(0, 3000)]
        assert sum(1 for x in seen if x is not None) > 0
        return [(e.edge, e.start, e.end) for e in s.past]

    a = episodes(7)
    assert a == episodes(7) and a != episodes(8)
    assert {e for e, _, _ in a} == {"edge-a", "edge-b"}
    starts = [s for _, s, _ in a]
    assert all(30 <= b - s <= 60 for s, b in zip([0.0, *starts[:-1]], starts, strict=True))
    assert all(3 <= end - s <= 6 for _, s, end in a)


def test_chronic_config_is_checked():
    with pytest.raises(ValidationError, match="overshoot_rendition"):
        LabConfig(chronic=True, chronic_settings=ChronicConfig(overshoot_rendition="1080p"))
    with pytest.raises(ValidationError, match="slow_edge_for_s"):
        ChronicConfig(slow_edge_every_s=(5, 10), slow_edge_for_s=(3, 6))
    assert LabConfig().chronic is False
    assert ChronicConfig().overshoot_target(LabConfig().renditions) == "180p"


def test_the_understated_bandwidth_is_learned_then_fixed():
    """The overshooting rendition's declared BANDWIDTH is learned over its first segments, then
    fixed: a fault's one huge segment (a long GOP, a burst after a still picture) raises the
    measured peak of every rendition, but not that declared figure — the chronic overshoot
    stays what it was instead of ending. A rendition without overshoot still declares its peak."""
    from agent.lab.packager import OVERSHOOT_SETTLE_SEGMENTS, Packager

    cfg = LabConfig()
    p = Packager(cfg, wall=lambda: 1_000.0, overshoot={"180p": 0.6})
    normal = {r: bytes(50_000) for r in p.renditions}  # 200 kbit/s over 2 s
    for i in range(OVERSHOOT_SETTLE_SEGMENTS + 1):
        for r in p.renditions:
            p.publish(r, normal[r], 2.0, 1_000.0 + 2 * i, False)
    learned = p.declared_bps("180p")
    assert 0 < learned < 200_000  # its segments measure over it (peak / 1.6)
    for r in p.renditions:
        p.publish(r, bytes(500_000), 2.0, 2_000.0, False)  # one 2-Mbit/s segment
    assert p.declared_bps("180p") == learned
    assert p.declared_bps("360p") == 2_000_000
