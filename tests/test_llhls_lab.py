"""The embedded lab as Low-Latency HLS (agent/lab/packager.py, agent/lab/servers.py): one encode
served as HLS, LL-HLS and DASH at once; the LL-HLS side cut into parts by the transcoder.

- the server side as RFC 8216bis §6.2.5 asks: a blocking reload is held until its part is cut
  (answered within a part target of it, holding it), one more than two segments ahead is 400, the
  preload hint is held until its part exists, a delta update (``_HLS_skip``) is the full playlist
  less what it skips, rendition reports agree with the sibling's playlist, and an edge forwards
  the directives (it holds too);
- the agent on ``protocol="llhls"``: healthy (blocking reloads answered when the part is cut,
  rendition reports as fresh as the siblings, delta updates agreeing with the full playlist), then a transcoder that stops is stale at part
  granularity within three part targets of its last part and is the transcoder's incident; an edge
  that answers blocking reloads at once is that edge's ``reload_not_blocked``.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from probes.core.playlist import MediaPlaylist, parse

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]


def _media(text: str, url: str) -> MediaPlaylist:
    pl = parse(text, url)
    assert isinstance(pl, MediaPlaylist), text[:200]
    return pl


def _uris(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


async def test_the_labs_low_latency_side_holds_blocks_and_agrees_with_itself() -> None:
    # 1-s segments: the playlist is longer than CAN-SKIP-UNTIL (6 target durations) sooner
    async with Lab(LabConfig(webrtc=False, segment_s=1)) as lab, httpx.AsyncClient(timeout=15) as http:
        part_target = lab.config.part_target_s
        url = lab.ll_url().rsplit(".", 1)[0] + "/180p.m3u8"
        await wait_for(lambda: lab.packager.ll_last_msn("180p") is not None, 10, "the first part")
        pl = _media((await http.get(url)).text, url)
        assert pl.can_block_reload and pl.part_target == pytest.approx(part_target, abs=1e-3)
        assert pl.part_hold_back == pytest.approx(3 * part_target, abs=1e-3)
        assert pl.newest_part is not None and pl.preload_hint is not None

        # a blocking reload for the next part is held until it is cut, then holds it
        msn, part = pl.newest_part[0], pl.newest_part[1] + 1
        t0 = time.monotonic()
        r = await http.get(url, params={"_HLS_msn": msn, "_HLS_part": part})
        took = time.monotonic() - t0
        got = _media(r.text, url)
        assert r.status_code == 200 and got.newest_part is not None
        # that part, or (a part index past a complete segment's last, §6.2.5.2) the next segment's first
        assert got.newest_part >= (msn, part) or got.newest_part[0] > msn, (got.newest_part, msn, part)
        assert took < 2 * part_target + 0.5
        # ... as the edges do: they forward the directives and hold as well
        ahead = (got.newest_part[0], got.newest_part[1] + 1)
        for edge in lab.edges:
            eurl = lab.ll_url(edge).rsplit(".", 1)[0] + "/180p.m3u8"
            e = _media((await http.get(eurl, params={"_HLS_msn": ahead[0], "_HLS_part": ahead[1]})).text, eurl)
            assert e.newest_part is not None and (e.newest_part >= ahead or e.newest_part[0] > ahead[0]), \
                (edge, e.newest_part)
        far = await http.get(url, params={"_HLS_msn": got.newest_part[0] + 3})
        assert far.status_code == 400

        # the preload hint is answered once its part exists, with that part
        fresh = _media((await http.get(url)).text, url)
        assert fresh.preload_hint is not None
        t0 = time.monotonic()
        hinted = await http.get(fresh.preload_hint)
        assert hinted.status_code == 200 and hinted.content[:1] == b"\x47"
        assert time.monotonic() - t0 < 2 * part_target + 0.5

        # the delta update is the full playlist less the segments it skips; the same request
        # (blocking on one part) so both describe the same moment
        async def delta_and_full() -> tuple[str, str, re.Match[str]] | None:
            nxt = _media((await http.get(url)).text, url)
            assert nxt.newest_part is not None
            q = {"_HLS_msn": nxt.newest_part[0], "_HLS_part": nxt.newest_part[1]}
            full, delta = (await http.get(url, params=q)).text, (await http.get(url, params={**q, "_HLS_skip": "YES"})).text
            m = re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", delta)
            same_moment = _media(full, url).newest_part == _media(delta, url).newest_part  # no part cut between
            return (full, delta, m) if m is not None and same_moment else None
        full, delta, m = await wait_for(delta_and_full, 20, "a playlist longer than CAN-SKIP-UNTIL", every=0.3)
        assert _uris(delta) == _uris(full)[int(m.group(1)):]
        assert "#EXT-X-SKIP" not in full

        # rendition reports: what 180p says of 360p is what 360p's own playlist holds (a part later at most)
        report = {u.rsplit("/", 1)[-1]: (rm, rp) for u, rm, rp in _media((await http.get(url)).text, url).rendition_reports}
        assert set(report) == {"360p.m3u8"}
        sib = _media((await http.get(url.replace("180p", "360p"))).text, url)
        assert sib.newest_part is not None and sib.newest_part >= report["360p.m3u8"]
        n_parts = lab.config.frames_per_segment // lab.config.part_frames + 1
        behind = (sib.newest_part[0] - report["360p.m3u8"][0]) * n_parts + sib.newest_part[1] - report["360p.m3u8"][1]
        assert behind <= n_parts, (sib.newest_part, report)


async def test_the_agent_on_low_latency_hls_finds_parts_stopping_and_an_edge_not_blocking() -> None:
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, listen="127.0.0.1:0", protocol="llhls", ingest_monitor=False)
        part_target = lab.config.part_target_s
        async with Agent(parse_config(conf)) as agent:
            board = agent.board
            stream = lab.config.stream

            def state(stage: str, component: str) -> str:
                return str(board.state_of(stream, stage, component).value)

            def incident(stage: str, component: str) -> object:
                return next((i for i in agent.incidents.localizer.open_incidents()
                             if (i.stage, i.component) == (stage, component)), None)

            await wait_for(lambda: all(state(s, c) == "ok" for s, c in (("origin", "origin"), ("cdn", "edge-a"),
                                                                       ("cdn", "edge-b"), ("transcode", "transcoder"))),
                           30, "the LL-HLS stream watched healthy")
            await asyncio.sleep(4)  # healthy for a while: blocking reloads answered, nothing opened
            assert [(i.stage, i.component, i.fault, i.summary) for i in agent.incidents.localizer.open_incidents()] == []
            figs = next(c.figures for c in board.cells(stream) if (c.stage, c.component) == ("origin", "origin"))
            for r in lab.renditions:  # what the probe measured on the way (RFC 8216bis §6.2.5)
                f = figs["renditions"][r]
                assert f["blocking_reload_s"] < 2 * part_target, f  # held for one part, answered when cut
                assert -1 <= f["rendition_report_lag_parts"] <= 2, f  # reports as fresh as the sibling
                assert "delta_skipped_segments" in f, f  # a delta update compared, and agreed (no incident)

            rec = lab.book.inject("transcoder_stall", "transcoder")
            seen: dict[str, float] = {}

            def origin_down() -> bool:
                if state("origin", "origin") == "down" and "t" not in seen:
                    seen["t"] = time.time()
                return "t" in seen
            await wait_for(origin_down, 10, "the origin's renditions stale at part granularity")
            last_part = max(seg.parts[-1].published_wall for r in lab.renditions
                            if (seg := lab.packager.ll_segment(r, lab.packager.ll_last_msn(r) or 0)) is not None
                            and seg.parts)
            after = seen["t"] - last_part
            print(f"part-level stale {after:.2f} s after the last part (part target {part_target:.2f} s, "
                  f"{after / part_target:.1f} targets); fault at +{last_part - rec.started_at:.2f} s")
            assert after <= 3 * part_target + 0.4  # the rule, + the cycle reaching the board
            inc = await wait_for(lambda: incident("transcode", "transcoder"), 10, "the transcoder's incident")
            assert inc.fault == "stale_playlist"
            lab.book.clear(rec.id)
            await wait_for(lambda: not agent.incidents.localizer.open_incidents(), 40, "the stall's incident resolved")

            lab.book.inject("edge_no_block", "edge-b")
            inc = await wait_for(lambda: incident("cdn", "edge-b"), 15, "edge-b's incident")
            assert inc.fault == "reload_not_blocked"
            assert all(i.component == "edge-b" for i in agent.incidents.localizer.open_incidents())


async def test_latency_on_low_latency_hls_is_timed_part_by_part_with_one_request_each() -> None:
    """The latency probe on the lab's LL-HLS playlists: one blocking reload waiting per endpoint
    (the answer is the part's arrival), so each part is timed (beacon-anchored) with about one
    request per part instead of fast polls; the held requests end when the runner closes them."""
    from probes.base import ProbeContext, ProbeTarget
    from probes.latency import LatencySettings, LatencyTargetConfig
    from probes.latency import probe as latency_probe
    from probes.net.httpfetch import Fetcher

    async with Lab(LabConfig(webrtc=False)) as lab, Fetcher() as http:
        await wait_for(lambda: lab.packager.ll_last_msn("180p") is not None, 10, "the first part")
        tc = LatencyTargetConfig(LatencySettings(), lab.ll_url(), tuple((e, lab.ll_url(e)) for e in lab.edges))
        target = ProbeTarget("latency", "main", "origin", "origin", tc, lab.ll_url(), 1.0, 10.0)
        ctx = ProbeContext(state={}, http=http)
        values: dict[tuple[str, str], list[float]] = {}
        methods: set[str] = set()
        polls: list[float] = []
        parts: set[str] = set()
        for _ in range(10):
            ctx.deadline = ctx.clock() + 10.0
            r = await latency_probe(target, ctx)
            polls.append(r.figures["playlist_polls"])
            for s in r.samples:
                if s.name == "signalpath_stage_latency_seconds":
                    values.setdefault((s.labels["stage"], s.labels["component"]), []).append(s.value)
                    methods.add(s.labels["method"])
            parts |= {sp.name for sp in r.spans if sp.name.startswith("latency 180p/")}
        watch = ctx.state["latency_ll"]
        assert watch.loops and all(not t.done() for t in watch.loops.values())
        await watch.aclose()
        assert all(t.done() for t in watch.loops.values()) or not watch.loops
    per_s = sum(polls[3:]) / len(polls[3:])  # about 1.9 parts a second x 3 endpoints
    assert 3.0 < per_s < 9.0, polls
    assert methods == {"beacon"}
    up = sorted(values[("transcode", "transcoder")])
    assert 0.0 < up[len(up) // 2] < 0.2, up  # a part is published once the frame after it is encoded
    for edge in lab.edges:
        assert max(values[("cdn", edge)]) < 0.1, values  # the edges hold the same reload: at once
    assert any(re.fullmatch(r"latency 180p/\d+\.[1-9]", n) for n in parts), parts  # parts, not segments
