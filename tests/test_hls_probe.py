"""The HLS probe inside a running agent, against real live HLS servers on loopback.

Each scenario breaks one thing at one endpoint and asserts what the agent reports:
the status JSON (stage/component/state/reasons), the metrics through the registry,
and (healthy case) a real scrape of /metrics checked by promtool.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from _require import require_binary
from aiohttp import web
from attempt import call_probe
from livehls import Endpoint, Timeline
from localserver import LocalServer
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.localize import Incident
from probes.base import Failure, ProbeContext, ProbeTarget, State
from probes.core.playlist import MASTER_REFRESH_S
from probes.hls import HlsSettings, cache_allowance
from probes.hls import probe as hls_probe
from probes.net.httpfetch import Fetcher


def cell(agent: Agent, stage: str, component: str) -> dict:
    for s in agent.board.as_json()["streams"][0]["stages"]:
        if s["stage"] == stage and s["component"] == component:
            return s
    raise AssertionError(f"no {stage}/{component} in status")


def value(agent: Agent, name: str, **labels: str) -> float | None:
    return agent.registry.get_sample_value(name, {"site": "test", "stream": "main", **labels})


def state_is(agent: Agent, stage: str, component: str, state: str):
    return lambda: cell(agent, stage, component)["state"] == state


async def test_healthy_stream_all_ok(live):
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        for stage, comp in (("origin", "origin"), ("cdn", "edge-a"), ("cdn", "edge-b"), ("playback", "edge-a"),
                            ("playback", "edge-b")):
            await wait_for(state_is(agent, stage, comp, "ok"), 10, f"{stage}/{comp} ok")
        # a segment has been fetched for each rendition at the origin
        await wait_for(lambda: value(agent, "signalpath_segment_download_ratio", stage="origin",
                                     component="origin", rendition="180p") is not None, 10, "segment ratio")
        for comp, stage in (("origin", "origin"), ("edge-a", "cdn")):
            for r in ("360p", "180p"):
                lab = dict(stage=stage, component=comp, rendition=r)
                age = value(agent, "signalpath_playlist_age_seconds", **lab)
                assert age is not None and 0 <= age < 1.5, age
                latency = value(agent, "signalpath_live_latency_seconds", **lab)
                assert latency is not None and -0.5 < latency < 2.5, latency
        ratio = value(agent, "signalpath_segment_download_ratio", stage="origin", component="origin",
                      rendition="360p")
        assert ratio is not None and 0 < ratio < 0.5
        lag = value(agent, "signalpath_edge_lag_segments", stage="cdn", component="edge-a", rendition="360p")
        assert lag is not None and abs(lag) <= 1
        assert value(agent, "signalpath_probe_success", stage="cdn", component="edge-b", probe="hls") == 1
        # published on the agent's 1-s self tick and before each scrape (agent/app.py MetricsSink)
        await wait_for(lambda: value(agent, "signalpath_stage_healthy", stage="origin", component="origin") == 1,
                       3, "origin healthy published")
        status = cell(agent, "origin", "origin")
        assert status["since"].endswith("Z") and status["reasons"] == []
        assert set(status["figures"]["renditions"]) == {"360p", "180p"}

        # the same through a real scrape, and promtool finds nothing to lint
        async with aiohttp.ClientSession() as s:
            async with s.get(agent.url + "/metrics") as r:
                assert r.status == 200
                text = await r.text()
            async with s.get(agent.url + "/api/v1/status") as r:
                body = await r.json()
        assert any(line.startswith("signalpath_playlist_age_seconds{") and 'component="edge-b"' in line
                   and 'site="test"' in line for line in text.splitlines())
        assert any(line.startswith("signalpath_stage_healthy{") and 'component="edge-b"' in line
                   and line.endswith(" 1.0") for line in text.splitlines())  # published before the scrape
        assert body["streams"][0]["name"] == "main"
        assert {c["state"] for c in body["streams"][0]["stages"]} == {"ok"}
        promtool = require_binary("promtool")
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=30)
        assert lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "", \
            lint.stdout + lint.stderr


async def test_one_edge_stale_is_localized_to_that_edge(live):
    conf = live.config()
    # this test reads the probe's own verdict on the cell; an opened incident would hold the cell
    # degraded for resolve_after_s after recovery (agent/incident_sink.py puts roots on the board),
    # and with several probe jobs per stream the localizer sees 2 cycles within a fraction of a second
    conf["localize"] = {"open_cycles": 100}
    cfg = parse_config(conf)
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "cdn", "edge-b", "ok"), 10, "edge-b ok first")
        live.edges["edge-b"].knobs.freeze_all = True
        # stale after 1.5 x 1-s target duration: reported within a few seconds
        await wait_for(state_is(agent, "cdn", "edge-b", "down"), 5, "edge-b down")
        c = cell(agent, "cdn", "edge-b")
        assert any("has not advanced" in r for r in c["reasons"]), c["reasons"]
        assert cell(agent, "origin", "origin")["state"] == "ok"
        assert cell(agent, "cdn", "edge-a")["state"] == "ok"
        await wait_for(lambda: (value(agent, "signalpath_edge_lag_segments", stage="cdn", component="edge-b",
                                      rendition="360p") or 0) >= 2, 5, "edge-b lag grows")
        await wait_for(lambda: value(agent, "signalpath_stage_healthy", stage="cdn", component="edge-b") == 0,
                       3, "edge-b unhealthy published")
        assert value(agent, "signalpath_stage_healthy", stage="cdn", component="edge-a") == 1
        # and recovers when the edge moves again
        live.edges["edge-b"].knobs.freeze_all = False
        live.edges["edge-b"].knobs.frozen_at.clear()
        await wait_for(state_is(agent, "cdn", "edge-b", "ok"), 5, "edge-b ok again")


async def test_origin_stale(live):
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "origin", "origin", "ok"), 10, "origin ok")
        live.origin.knobs.freeze_all = True
        await wait_for(state_is(agent, "origin", "origin", "down"), 5, "origin down")
        assert any("has not advanced" in r for r in cell(agent, "origin", "origin")["reasons"])


async def test_one_rendition_stale_is_degraded(live):
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "origin", "origin", "ok"), 10, "origin ok")
        live.origin.knobs.frozen_at["180p"] = live.tl.newest()
        await wait_for(state_is(agent, "origin", "origin", "degraded"), 5, "origin degraded")
        reasons = cell(agent, "origin", "origin")["reasons"]
        assert any(r.startswith("180p playlist has not advanced") for r in reasons), reasons
        ev = [e for e in agent.board.evidence("main") if e.fault == "stale_playlist"]
        assert ev and all(e.rendition == "180p" for e in ev)


async def test_a_stream_that_ended_is_an_off_air_p1_incident(live):
    """#EXT-X-ENDLIST at the origin: fault stream_ended (catalog P1), not a generic P2."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "origin", "origin", "ok"), 10, "origin ok")
        for ep in [live.origin, *live.edges.values()]:  # the packager closes the playlist: it stops growing
            ep.knobs.freeze_all = ep.knobs.endlist = True
        opened = await wait_for(lambda: [i for i in agent.incidents.localizer.open_incidents("main")
                                         if i.fault == "stream_ended"], 8, "stream_ended incident")
        assert [i.severity for i in opened] == ["P1"]
        ev = [e for e in agent.board.evidence("main") if e.fault == "stream_ended" and e.stage == "origin"]
        assert ev and all(e.url_role == "media_playlist" and e.media_sequence for e in ev)
        # viewers play out what is listed and end: no playback incident of their own
        def ended(edge: str) -> bool:
            return any("ended stream" in e.detail for e in agent.board.evidence("main")
                       if e.stage == "playback" and e.component == edge)

        try:
            await wait_for(lambda: ended("edge-a") and ended("edge-b"), 15, "viewers played to the end")
        except AssertionError:
            print([(e.component, e.state, e.detail) for e in agent.board.evidence("main") if e.stage == "playback"])
            raise
        assert [i.fault for i in agent.incidents.localizer.open_incidents("main")] == ["stream_ended"]


async def test_variant_drift_is_media_time_not_sequence_numbers(live):
    """A rendition numbered 17 lower but in step (a packager that restarted its count) is no
    drift; one whose content runs 4 segments late is, at its own rendition, while it lasts."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "origin", "origin", "ok"), 10, "origin ok")
        live.origin.knobs.seq_offset["180p"] = 17
        await wait_for(lambda: value(agent, "signalpath_playlist_media_sequence", stage="origin", component="origin",
                                     rendition="180p") == live.tl.newest() - 17, 5, "renumbered 180p seen")
        # the renumbering itself is a one-off sequence_regression; after it the origin is ok, no drift
        await wait_for(state_is(agent, "origin", "origin", "ok"), 5, "origin ok after the renumbering")
        assert not [e for e in agent.board.evidence("main") if e.fault == "variant_drift"]
        live.origin.knobs.lag_segments["180p"] = 4
        drift = await wait_for(lambda: [e for e in agent.board.evidence("main") if e.fault == "variant_drift"],
                               6, "variant drift")
        assert {e.rendition for e in drift} == {"180p"} and drift[0].figures["behind_s"] >= 3.0
        live.origin.knobs.lag_segments.clear()
        await wait_for(lambda: not [e for e in agent.board.evidence("main") if e.fault == "variant_drift"], 6,
                       "drift gone once in step again")


async def test_an_encoder_restart_is_one_incident_that_explains_the_players(live):
    """Every rendition's media sequence goes back (an encoder/packager restarted without
    append_list): one sequence_regression incident upstream of the origin, held long enough to
    open (3 target durations), and nothing at the edges or the players of its own."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "origin", "origin", "ok"), 10, "origin ok")
        for ep in [live.origin, *live.edges.values()]:
            for r in ep.renditions:
                ep.knobs.seq_offset[r] = 60
        opened = await wait_for(lambda: agent.incidents.localizer.open_incidents("main"), 8, "an incident")
        assert [(i.stage, i.component, i.fault) for i in opened] == [
            ("transcode", "transcoder", "sequence_regression")], opened
        assert "restarted its media sequence" in opened[0].summary and "stopped producing" not in opened[0].summary
        await wait_for(state_is(agent, "origin", "origin", "ok"), 10, "origin ok after the restart")
        assert [i.id for i in agent.incidents.localizer.open_incidents("main")] == [opened[0].id]


async def test_gap_segments_are_never_fetched_and_players_jump_over_them(live):
    """EXT-X-GAP on every 3rd segment (answering 404 if asked): no probe and no virtual player
    requests one, no segment_missing and no stall anywhere; the gap itself is content_gap
    evidence upstream of delivery (RFC 8216bis §4.4.4.7)."""
    for ep in [live.origin, *live.edges.values()]:
        ep.knobs.gap_every = 3
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        seen = await wait_for(lambda: [e for e in agent.board.evidence("main") if e.fault == "content_gap"], 10,
                              "content_gap evidence")
        assert all(e.stage in ("origin", "cdn") and e.media_sequence % 3 == 0 for e in seen)
        # a few more segment durations of play: viewers have met several gaps by then
        await wait_for(lambda: agent.board.state_of("main", "playback", "edge-a").value == "ok"
                       and len(live.edges["edge-a"].segments_requested) >= 15, 20, "viewers playing on")
        bad = [e for e in agent.board.evidence("main")
               if e.fault in ("segment_missing", "stalls", "playback_failed", "http_error")]
        assert bad == []
    requested = [q for ep in [live.origin, *live.edges.values()] for q in ep.segments_requested]
    assert requested and not [q for q in requested if q % 3 == 0]


async def test_an_edge_answering_429_is_rate_limiting_and_stays_so_after_recovery(live):
    """Field case: an edge answered 429 for 12 s. Its incident is rate_limited with the status and
    Retry-After as fields, and after recovery nothing rewrites it (it was rewritten to
    sequence_jump: the segments published while the probe could not read are no jump)."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "cdn", "edge-a", "ok"), 10, "edge-a ok")
        live.edges["edge-a"].knobs.playlist_status = 429
        start = live.tl.newest()
        opened = await wait_for(lambda: [i for i in agent.incidents.localizer.open_incidents("main")
                                         if i.stage == "cdn" and i.component == "edge-a"], 8, "edge-a incident")
        assert [i.fault for i in opened] == ["rate_limited"] and opened[0].severity == "P2"
        ev = [e for e in agent.board.evidence("main", exclude=("incidents",))
              if e.component == "edge-a" and e.fault == "rate_limited"]
        assert ev and all(e.http_status == 429 and e.figures.get("retry_after_s") == 12 for e in ev)
        # the outage lasts while 7 segments are published (more than sequence_jump's 5)
        await wait_for(lambda: live.tl.newest() >= start + 7, 12, "7 segments published during the outage")
        live.edges["edge-a"].knobs.playlist_status = None
        def measured_ok() -> bool:  # the probe's own evidence (the open incident stays until it resolves)
            evs = [e for e in agent.board.evidence("main", exclude=("incidents",))
                   if e.stage == "cdn" and e.component == "edge-a"]
            return bool(evs) and all(e.state.value == "ok" for e in evs)

        await wait_for(measured_ok, 8, "edge-a measured ok again")
        faults = {i.fault for i in agent.incidents.localizer.open_incidents("main")}
        assert "sequence_jump" not in faults
        assert not [e for e in agent.board.evidence("main") if e.fault == "sequence_jump"]


async def test_a_stale_edge_catching_up_is_no_sequence_jump(live):
    """edge-b stuck for 7 segments, then current again: it was stale (its own incident), and the
    catch-up over the segments published meanwhile is no sequence_jump (the bench's
    'edge-b sequence_jump (after clear)')."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "cdn", "edge-b", "ok"), 10, "edge-b ok")
        start = live.tl.newest()
        live.edges["edge-b"].knobs.freeze_all = True
        await wait_for(lambda: live.tl.newest() >= start + 7, 12, "7 segments published meanwhile")
        live.edges["edge-b"].knobs.freeze_all = False
        live.edges["edge-b"].knobs.frozen_at.clear()
        await wait_for(lambda: (agent.registry.get_sample_value(
            "signalpath_playlist_media_sequence", {"site": "test", "stream": "main", "stage": "cdn",
                                                   "component": "edge-b", "rendition": "360p"}) or 0)
                       >= live.tl.newest() - 1, 5, "edge-b caught up")
        assert not [e for e in agent.board.evidence("main") if e.fault == "sequence_jump"]
        assert "sequence_jump" not in {i.fault for i in agent.incidents.localizer.open_incidents("main")}


async def test_segment_404(live):
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        live.edges["edge-a"].knobs.segment_status = 404
        await wait_for(state_is(agent, "cdn", "edge-a", "degraded"), 6, "edge-a degraded")
        reasons = cell(agent, "cdn", "edge-a")["reasons"]
        assert any("answered HTTP 404" in r for r in reasons), reasons
        ev = [e for e in agent.board.evidence("main") if e.component == "edge-a" and e.fault == "segment_missing"]
        assert ev and all(e.http_status == 404 and e.url_role == "segment" and e.media_sequence for e in ev)
        assert cell(agent, "cdn", "edge-b")["state"] == "ok"
        assert (agent.registry.get_sample_value("signalpath_segment_errors_total", {
            "site": "test", "stream": "main", "stage": "cdn", "component": "edge-a", "rendition": "360p",
            "reason": "http_error"}) or 0) >= 1


async def test_segment_slower_than_real_time(live):
    cfg = parse_config(live.config())
    seg = len(__import__("livehls").segments_for("360p", 1.0)[0])
    live.edges["edge-b"].knobs.segment_bytes_per_s = seg / 1.6  # 1.6 s to fetch 1 s of media
    async with Agent(cfg) as agent:
        await wait_for(lambda: (value(agent, "signalpath_segment_download_ratio", stage="cdn", component="edge-b",
                                      rendition="360p") or 0) > 1.0, 10, "edge-b ratio > 1")
        await wait_for(state_is(agent, "cdn", "edge-b", "degraded"), 5, "edge-b degraded")
        assert any("ratio" in r for r in cell(agent, "cdn", "edge-b")["reasons"])
        # given up as soon as its rate shows it cannot end in 1.25 x its 1.05 x EXTINF budget (~0.25 s
        # into the download), not left running: the time is the projection from that rate
        assert any("would take" in r and "projected from its rate" in r for r in cell(agent, "cdn", "edge-b")["reasons"])
        assert 1.3 < (value(agent, "signalpath_segment_download_seconds", stage="cdn", component="edge-b",
                            rendition="360p") or 9) < 2.0
        assert (value(agent, "signalpath_segment_download_ratio", stage="cdn", component="edge-a",
                      rendition="360p") or 9) < 1


async def test_a_playlist_reload_slower_than_a_target_duration_is_a_timeout_at_once(live):
    """Issue 19 part 1: an edge whose first byte takes 2.5 s (target duration 1 s) is a timeout
    at 1 x the target duration after the request, not at the attempt's 5-s deadline."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "cdn", "edge-b", "ok"), 10, "edge-b ok")
        live.edges["edge-b"].knobs.playlist_delay_s = 2.5
        await wait_for(state_is(agent, "cdn", "edge-b", "down"), 6, "edge-b down")
        c = cell(agent, "cdn", "edge-b")
        assert any("no answer within 1.0 s" in r for r in c["reasons"]), c["reasons"]
        ev = [e for e in agent.board.evidence("main") if e.component == "edge-b" and e.fault == "timeout"]
        assert ev and all(e.url_role == "media_playlist" for e in ev), ev
        # each attempt ended at the budget: its duration is ~1 s, not the 5-s deadline
        dur = value(agent, "signalpath_probe_duration_seconds", stage="cdn", component="edge-b", probe="hls")
        assert dur is not None and dur < 2.0, dur
        assert cell(agent, "cdn", "edge-a")["state"] == "ok"
        live.edges["edge-b"].knobs.playlist_delay_s = 0.0
        await wait_for(state_is(agent, "cdn", "edge-b", "ok"), 6, "edge-b ok again")


@pytest.mark.parametrize("knob,reason,fault_text", [
    ({"playlist_status": 503}, "http_error", "HTTP 503"),
    ({"malformed": True}, "protocol_error", "malformed"),
    ({"huge_playlist": True}, "body_too_large", "cap"),
    ({"redirect_loop": True}, "redirect_loop", "redirects"),
])
async def test_edge_failures_are_reasons(live, knob, reason, fault_text):
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        for k, v in knob.items():
            setattr(live.edges["edge-a"].knobs, k, v)
        await wait_for(state_is(agent, "cdn", "edge-a", "down"), 6, "edge-a down")
        c = cell(agent, "cdn", "edge-a")
        assert any(fault_text in r for r in c["reasons"]), c["reasons"]
        await wait_for(lambda: (value(agent, "signalpath_probe_failures_total", stage="cdn", component="edge-a",
                                      probe="hls", reason=reason) or 0) >= 1, 5, f"failure reason {reason}")
        assert value(agent, "signalpath_probe_success", stage="cdn", component="edge-a", probe="hls") == 0
        assert cell(agent, "origin", "origin")["state"] == "ok"
        assert cell(agent, "cdn", "edge-b")["state"] == "ok"


async def test_connection_refused(live):
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        await wait_for(state_is(agent, "cdn", "edge-b", "ok"), 10, "edge-b ok")
        await live.edges["edge-b"].stop()
        await wait_for(state_is(agent, "cdn", "edge-b", "down"), 5, "edge-b down")
        assert any("refused" in r for r in cell(agent, "cdn", "edge-b")["reasons"])
        await wait_for(lambda: value(agent, "signalpath_probe_failures_total", stage="cdn", component="edge-b",
                                     probe="hls", reason="connection_refused"), 5, "refused counted")
        # playlist age keeps growing while the edge is gone
        a1 = value(agent, "signalpath_playlist_age_seconds", stage="cdn", component="edge-b", rendition="360p")
        await wait_for(lambda: (value(agent, "signalpath_playlist_age_seconds", stage="cdn", component="edge-b",
                                      rendition="360p") or 0) > (a1 or 0) + 0.4, 5, "age grows")


async def test_hung_server_is_a_timeout_and_others_keep_going(live):
    """A server that accepts but never answers: the runner's deadline makes it a timeout."""
    import asyncio

    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # never answers; returns when the agent drops the connection
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conf = live.config(timeout_s=1.0)
    conf["streams"][0]["edges"][1]["url"] = f"http://127.0.0.1:{port}/live/main.m3u8"
    try:
        async with Agent(parse_config(conf)) as agent:
            await wait_for(lambda: value(agent, "signalpath_probe_failures_total", stage="cdn", component="edge-b",
                                         probe="hls", reason="timeout"), 6, "timeout counted")
            assert cell(agent, "cdn", "edge-b")["state"] == "down"
            await wait_for(state_is(agent, "cdn", "edge-a", "ok"), 5, "edge-a ok")
            n = live.edges["edge-a"].requests
            await wait_for(lambda: live.edges["edge-a"].requests >= n + 4, 5, "edge-a still polled")
    finally:
        server.close()
        for w in writers:  # wait_closed does not close the connections of 3.11's handlers
            w.close()
        await server.wait_closed()


async def test_secrets_never_shown(live):
    """A token in an edge URL never appears in status, metrics, or failure details."""
    conf = live.config()
    canary = "CANARYtoken1234567890"
    conf["streams"][0]["edges"][0]["url"] = live.edges["edge-a"].master_url + f"?token={canary}"
    conf["streams"][0]["edges"][1]["url"] = f"http://user:{canary}@127.0.0.1:1/live/main.m3u8"
    async with Agent(parse_config(conf)) as agent:
        await wait_for(state_is(agent, "cdn", "edge-b", "down"), 6, "edge-b down")
        await wait_for(state_is(agent, "cdn", "edge-a", "ok"), 6, "edge-a ok")
        async with aiohttp.ClientSession() as s:
            async with s.get(agent.url + "/metrics") as r:
                text = await r.text()
            async with s.get(agent.url + "/api/v1/status") as r:
                status = await r.text()
        assert canary not in text and canary not in status


def test_cache_allowance_is_the_freshness_lifetime_capped_at_half_a_target_duration():
    """A cache may serve an unchanged playlist for its max-age (RFC 9111), so an edge behind such a
    cache is not stale until 1.5 x TD plus that; never more than TD/2 (RFC 8216 §6.3.4 retry)."""
    assert cache_allowance("max-age=1", 2.0) == 1.0
    assert cache_allowance("public, max-age=60", 2.0) == 1.0  # a long TTL is not excused
    assert cache_allowance("max-age=1", 6.0) == 1.0
    assert cache_allowance('s-maxage=0, max-age=5', 6.0) == 0.0  # a shared cache reads s-maxage
    assert cache_allowance("no-cache, max-age=1", 2.0) == 0.0
    assert cache_allowance("private", 2.0) == 0.0
    assert cache_allowance(None, 2.0) == 0.0


async def test_segments_listed_before_they_are_written_are_one_origin_segment_missing(live):
    """A packager that lists each segment before it has written it: every rendition's newest
    segment answers 404 for its first 2.5 s, then 200, at the origin and (a CDN passes the 404
    through) at every edge, for 12 s, while the playlists advance on time.

    What a monitor should say: the playlists are fresh, so nothing "stopped updating"; the
    origin lists segments it does not serve, so one P2 ``segment_missing`` at origin/origin, its
    summary saying so at the origin; the edges' 404s and any viewer trouble are its symptoms,
    and the content probe's unfetched segments are holes in what it saw, never a timestamp gap
    at the source. A listed segment that 404s is fetched again at the next poll (retrying is
    scheduling): one served by then leaves no evidence (the test below), so a segment late by
    less than a poll opens nothing (incidents open after 2 cycles); here each stays missing for
    2.5 s, over several polls, so the incident is due."""
    cfg = parse_config(live.config())
    async with Agent(cfg) as agent:
        for comp in ("origin", "edge-a", "edge-b"):
            await wait_for(state_is(agent, "origin" if comp == "origin" else "cdn", comp, "ok"), 10, f"{comp} ok")
        await wait_for(state_is(agent, "playback", "edge-a", "ok"), 10, "viewers playing")
        endpoints = [live.origin, *live.edges.values()]
        for ep in endpoints:
            ep.knobs.unwritten_s = 2.5
        seen: dict[str, Incident] = {}

        async def watch(seconds: float) -> None:
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                for i in agent.incidents.localizer.open_incidents("main"):
                    seen.setdefault(i.id, i)
                await asyncio.sleep(0.2)

        await watch(12)
        missing = [e for e in agent.board.evidence("main", exclude=("incidents",)) if e.fault == "segment_missing"]
        for ep in endpoints:
            ep.knobs.unwritten_s = 0.0
        await watch(8)
    opened = sorted((i.stage, i.component, i.fault) for i in seen.values())
    assert opened == [("origin", "origin", "segment_missing")], [(i.stage, i.component, i.fault, i.summary)
                                                                 for i in seen.values()]
    inc = next(iter(seen.values()))
    assert inc.severity == "P2", inc
    assert inc.summary.startswith("The origin is missing segments; its playlists list segments it does not serve"), \
        inc.summary
    assert "stopped" not in inc.summary and "transcoder" not in inc.summary, inc.summary
    assert "writes each segment before it lists it" in inc.runbook, inc.runbook
    assert missing and all(e.http_status == 404 for e in missing), [e for e in missing if e.http_status != 404]
    # a segment that answered 404 was asked again at a later poll, and then served
    assert any(live.origin.segments_requested.count(q) >= 2 for q in set(live.origin.segments_requested))


async def test_a_segment_written_a_moment_late_is_asked_again_and_clears() -> None:
    """One probe, one endpoint (2-s segments): the newest segment answers 404 (listed, not yet
    written); at the next attempt it is asked again and, written by then, served: no
    segment_missing is left (before, the probe never asked a segment twice and held the 404
    until the next segment was listed)."""
    ep = await Endpoint(Timeline(seg_dur=2.0), renditions=("180p",)).start()
    try:
        ep.knobs.unwritten_s = 1.5
        target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(), ep.master_url, 1.0, 5.0)
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http)
            missing: list[Any] = []
            for _ in range(20):
                r = await hls_probe(target, ctx)
                missing = [e for e in r.evidence if e.fault == "segment_missing"]
                if missing:
                    break
                await asyncio.sleep(0.2)
            assert missing and missing[0].http_status == 404
            late = missing[0].media_sequence
            ep.knobs.unwritten_s = 0.0  # written now
            r = await hls_probe(target, ctx)
    finally:
        await ep.stop()
    assert ep.segments_requested.count(late) == 2, ep.segments_requested
    assert not [e for e in r.evidence if e.fault is not None], r.evidence


_LADDER = {"180p": "BANDWIDTH=300000,RESOLUTION=320x180", "360p": "BANDWIDTH=800000,RESOLUTION=640x360"}
_M3U8 = "application/vnd.apple.mpegurl"


def pdt_lines(segs: list[tuple[int, float]], first: int | None = None) -> list[str]:
    """Media playlist lines for 2-s segments given as (media sequence, PDT end in epoch s), each
    with its EXT-X-PROGRAM-DATE-TIME; ``first``: the media sequence (default: the first listed)."""
    return [f"#EXT-X-MEDIA-SEQUENCE:{segs[0][0] if first is None else first}"] + [
        x for n, end in segs for x in (
            "#EXT-X-PROGRAM-DATE-TIME:" + datetime.fromtimestamp(end - 2.0, UTC).isoformat(timespec="milliseconds"),
            "#EXTINF:2.000,", f"s{n}.ts")]


async def scripted_hls(media: Callable[[str], list[str]], renditions: tuple[str, ...] = ("180p",),
                       asked: list[str] | None = None, cache_control: str | None = None,
                       headers: dict[str, str] | None = None) -> LocalServer:
    """A live HLS server whose media playlists the test writes: ``media(rendition)`` gives the
    lines after the header (#EXTM3U, version 3, target duration 2; raising an aiohttp HTTP
    exception answers that); master at /master.m3u8. ``asked`` collects the renditions whose
    playlist was requested; ``cache_control``: the media playlists' Cache-Control header,
    ``headers``: more of their headers."""

    async def master(_req: web.Request) -> web.Response:
        lines = ["#EXTM3U"] + [x for r in renditions for x in (f"#EXT-X-STREAM-INF:{_LADDER[r]}", f"{r}.m3u8")]
        return web.Response(text="\n".join(lines) + "\n", content_type=_M3U8)

    async def playlist(req: web.Request) -> web.Response:
        if asked is not None:
            asked.append(req.match_info["r"])
        body = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", *media(req.match_info["r"])]
        return web.Response(text="\n".join(body) + "\n", content_type=_M3U8,
                            headers={**({"Cache-Control": cache_control} if cache_control else {}), **(headers or {})})

    async def segment(_req: web.Request) -> web.Response:
        return web.Response(body=b"\x47" + b"\xff" * 187, content_type="video/mp2t")

    app = web.Application()
    app.router.add_get("/master.m3u8", master)
    app.router.add_get("/{r}.m3u8", playlist)
    app.router.add_get("/{seg}.ts", segment)
    return await LocalServer.start(app)


async def test_a_master_refresh_that_gets_no_answer_is_a_timeout_within_a_target_duration() -> None:
    """An edge that waits before every first byte (the lab's edge_slow_first_byte, 3 s): when the
    master playlist's refresh fell on it, the attempt waited for the master until its deadline
    and the edge was named 6.8 s after it began. A refresh gets a media playlist reload's budget
    (one target duration, here 2 s): a timeout then. A real server; the probe's clock is stepped."""
    slow = [0.0]
    segs = [(0, 2.0), (1, 2.0), (2, 2.0)]

    async def master(_req: web.Request) -> web.Response:
        await asyncio.sleep(slow[0])
        return web.Response(text=f"#EXTM3U\n#EXT-X-STREAM-INF:{_LADDER['180p']}\n180p.m3u8\n", content_type=_M3U8)

    async def playlist(_req: web.Request) -> web.Response:
        body = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{segs[0][0]}",
                *[x for n, d in segs for x in (f"#EXTINF:{d:.3f},", f"s{n}.ts")]]
        return web.Response(text="\n".join(body) + "\n", content_type=_M3U8)

    app = web.Application()
    app.router.add_get("/master.m3u8", master)
    app.router.add_get("/{r}.m3u8", playlist)
    server = await LocalServer.start(app)
    now = [100.0]
    target = ProbeTarget("hls", "main", "cdn", "edge-b", HlsSettings(fetch_segments=False),
                         server.url + "/master.m3u8", 1.0, 5.0)
    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0])
            assert (await call_probe(hls_probe, target, ctx)).ok
            slow[0] = 3.0
            now[0] += MASTER_REFRESH_S + 1
            t0 = time.monotonic()
            r = await call_probe(hls_probe, target, ctx)
            took = time.monotonic() - t0
            assert r.failure is Failure.TIMEOUT and "no answer within 2.0 s" in r.detail, r.detail
            assert r.evidence[0].fault == "timeout" and r.evidence[0].url_role == "master"
            assert 1.9 <= took < 4.0, took  # the 2-s budget, not the 5-s deadline (slack for a loaded machine)
    finally:
        await server.stop()


async def test_a_gop_longer_than_the_target_duration_is_no_stale_playlist_once_its_segments_show() -> None:
    """A packager cuts at key frames: under a 6-s GOP and a 2-s target duration each segment
    lasts 6 s and the playlist advances once per segment. Once such a segment is listed, the
    playlist is judged against its length (stale after 1.5 x 6 s, not 1.5 x 2 s): before, the
    GOP was a stale playlist every 6 s for as long as it lasted. A real server; the probe's
    clock is stepped."""
    segs = [(0, 2.0), (1, 2.0), (2, 2.0)]
    server = await scripted_hls(lambda _r: [f"#EXT-X-MEDIA-SEQUENCE:{segs[0][0]}"]
                                + [x for n, d in segs for x in (f"#EXTINF:{d:.3f},", f"s{n}.ts")])
    now = [100.0]
    target = ProbeTarget("hls", "main", "transcode", "transcoder", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)

    def faults(r: Any) -> set[str]:
        return {str(e.fault) for e in r.evidence if e.fault is not None}

    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0])
            assert "stale_playlist" not in faults(await call_probe(hls_probe, target, ctx))
            now[0] += 4.0  # a 2-s cadence: 4 s without a new segment is stale
            assert "stale_playlist" in faults(await call_probe(hls_probe, target, ctx))
            segs.append((3, 6.0))  # the long GOP's first segment is listed
            r = await call_probe(hls_probe, target, ctx)
            got = faults(r)
            assert "segment_too_long" in got and "stale_playlist" not in got, got
            # its length, for the localizer: could it hold a GOP over the content probe's limit?
            assert {e.figures.get("segment_duration_s") for e in r.evidence if e.fault == "segment_too_long"} == {6.0}
            now[0] += 5.0  # 5 s on: the next 6-s segment is being written, not late
            assert "stale_playlist" not in faults(await call_probe(hls_probe, target, ctx))
            segs.append((4, 6.0))
            await call_probe(hls_probe, target, ctx)
            now[0] += 9.5  # past 1.5 long segments: the packager is late after all
            assert "stale_playlist" in faults(await call_probe(hls_probe, target, ctx))
    finally:
        await server.stop()


async def test_freshness_counts_from_when_the_segment_was_due_by_its_pdt() -> None:
    """RFC 8216 §6.3.4 on the stream's schedule, not from when a 1-s poll happened to see a
    segment: one seen with a delay of 1.1 s behind its PDT end (the packager's usual delay is
    0.2 s) was due 0.9 s before it was seen, so 3.2 s after that the playlist is stale although
    the segment was first seen only 2.3 s before. A delay that moves by more than a cadence is a
    new PDT clock (an encoder restart), not a segment 5 s late: counted from when it was seen.
    A real server; the clocks are stepped."""
    segs: list[tuple[int, float]] = []  # (media sequence, PDT end, epoch s)
    server = await scripted_hls(lambda _r: pdt_lines(segs))
    now = [100.0]
    wall = lambda: now[0] + 1.7e9  # noqa: E731
    target = ProbeTarget("hls", "main", "transcode", "transcoder", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)

    def publish(n: int, delay_s: float) -> None:
        segs.append((n, wall() - delay_s))

    async def poll() -> tuple[set[str], float]:
        r = await call_probe(hls_probe, target, ctx)
        return {str(e.fault) for e in r.evidence if e.fault is not None}, r.figures["renditions"]["180p"]["age_s"]

    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0], wall=wall)
            for n in range(3):
                publish(n, 0.2 + 2.0 * (2 - n))
            await poll()
            for n in (3, 4, 5):  # seen 0.2 s behind their PDT end: the packager's delay
                now[0] += 2.0
                publish(n, 0.2)
                assert (await poll())[0] == set()
            now[0] += 2.9
            publish(6, 1.1)  # due 0.9 s ago
            faults, age = await poll()
            assert "stale_playlist" not in faults and age == pytest.approx(0.9, abs=0.05)
            now[0] += 1.9  # 1.9 s after it was seen, 2.8 s after it was due: not yet
            faults, age = await poll()
            assert "stale_playlist" not in faults and age == pytest.approx(2.8, abs=0.05), (faults, age)
            now[0] += 0.4  # 2.3 s after it was seen, 3.2 s after it was due: over 1.5 x 2 s
            faults, age = await poll()
            assert "stale_playlist" in faults and age == pytest.approx(3.2, abs=0.05), (faults, age)
            now[0] += 1.0
            publish(7, 5.2)  # 5 s more delay than usual: a new PDT clock
            faults, age = await poll()
            # not dated by it: half way back to the reload before (1 s ago), as without a PDT
            assert "stale_playlist" not in faults and age == pytest.approx(0.5, abs=0.01), (faults, age)
            now[0] += 2.0
            faults, age = await poll()
            assert "stale_playlist" not in faults and age == pytest.approx(2.5, abs=0.05), (faults, age)
    finally:
        await server.stop()


@pytest.mark.parametrize(("bracket", "shield"), [(0.1, False), (1.0, False), (1.0, True)])
async def test_an_origin_excuses_only_the_cache_lag_it_was_seen_to_have(bracket: float, shield: bool) -> None:
    """An origin answering ``max-age=1`` first-hand lists each segment at its usual delay: the
    cache lifetime is not added to its stale threshold (1.5 x 2 s after the segment was due, not
    a second later: a stopped transcoder waited that second more). One whose segments come at
    delays that vary by a second (a cache in front of it) keeps as much of the allowance as the
    reloads around each arrival show (never more than the header's): seen ``bracket`` s after a
    reload that did not list them, segments 1 s later than usual vary by at least 1 - bracket s.
    At a 1-s bracket that is nothing (a poll's phase: a 0.4-s jitter straddling a reload looks
    like a second) — unless the answers bear a cache's marks (``Age``, ``Via``: an origin
    shield), whose lag a 1-s poll cannot tell from its phase: it keeps the second seen. A real
    server; the clocks are stepped."""
    segs: list[tuple[int, float]] = []
    server = await scripted_hls(lambda _r: pdt_lines(segs), cache_control="max-age=1",
                                headers={"Age": "0", "Via": "1.1 shield"} if shield else None)
    now = [100.0]
    wall = lambda: now[0] + 1.7e9  # noqa: E731
    target = ProbeTarget("hls", "main", "transcode", "transcoder", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)

    async def stale_after(s: float) -> bool:
        now[0] += s
        r = await call_probe(hls_probe, target, ctx)
        return "stale_playlist" in {str(e.fault) for e in r.evidence if e.fault is not None}

    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0], wall=wall)
            segs.extend((n, wall() - 0.2 - 2.0 * (2 - n)) for n in range(3))
            await call_probe(hls_probe, target, ctx)
            for n in (3, 4, 5):  # listed at the packager's usual delay, 0.2 s behind the PDT end
                now[0] += 2.0
                segs.append((n, wall() - 0.2))
                assert not await stale_after(0.0)
            # each seen the moment it was written, dated half way back to the reload before (the
            # poll's phase, unknown: 0.5 s back), so stale 2.5 s after this last one was seen
            assert not await stale_after(2.4)
            assert await stale_after(0.2)  # 3.1 s: without the 1-s allowance
            now[0] += 1.0
            segs.append((6, wall() - 0.2))
            assert not await stale_after(0.0)
            for n, lag in ((7, 1.0), (8, 0.0), (9, 1.0)):  # twice (once is an upstream delay, not a cache)
                assert not await stale_after(2.0 - bracket)  # the reload that does not list the next one
                now[0] += bracket
                segs.append((n, wall() - 0.2 - lag))  # 1 s later than usual, listed `bracket` s after that reload
                assert not await stale_after(0.0)
            # the last one dated by its PDT, 1 s before it was seen: the next is due 2 s after that
            # and stale 1 s (the RFC 8216 6.3.4 retry) + the lag shown (1 - bracket) after that
            allowance = 1.0 if shield else 1.0 - bracket
            assert not await stale_after(1.9 + allowance)  # 2.9 s + the allowance after it was due
            assert await stale_after(0.2)  # 0.1 s past 3 s + the allowance
    finally:
        await server.stop()


async def test_a_playlist_not_yet_stale_asks_to_be_looked_at_again_when_it_would_be() -> None:
    """Between two attempts a playlist crosses its stale threshold: the result asks for an attempt
    just after it (``recheck_at``, the runner starts it: tests/test_runner.py), so a stopped
    packager is seen when it is stale, not up to an interval later. Newly stale, it asks for a
    confirming look 0.4 interval later (the localizer opens on two looks); nothing is asked once
    it was stale at the look before. A real server; the clocks are stepped."""
    segs: list[tuple[int, float]] = []
    server = await scripted_hls(lambda _r: pdt_lines(segs))
    now = [100.0]
    wall = lambda: now[0] + 1.7e9  # noqa: E731
    target = ProbeTarget("hls", "main", "transcode", "transcoder", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)
    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0], wall=wall)
            segs.extend((n, wall() - 0.2 - 2.0 * (2 - n)) for n in range(3))
            await call_probe(hls_probe, target, ctx)
            for n in (3, 4, 5, 6, 7):  # (none asked at a stream's start-up: its first segments)
                now[0] += 2.0
                segs.append((n, wall() - 0.2))
                r = await call_probe(hls_probe, target, ctx)
                assert (r.recheck_at is None) == (n < 6), (n, r.recheck_at)  # the 5th new segment on
            seen = now[0]
            # dated half way back to the reload before it (its poll's phase unknown): 0.5 s
            assert r.recheck_at == pytest.approx(seen - 0.5 + 3.0 + 0.05, abs=0.01), (r.recheck_at, seen)
            now[0] += 2.0
            r = await call_probe(hls_probe, target, ctx)
            assert r.recheck_at == pytest.approx(seen + 2.55, abs=0.01)
            now[0] = r.recheck_at
            r = await call_probe(hls_probe, target, ctx)
            assert "stale_playlist" in {str(e.fault) for e in r.evidence}, r.evidence
            assert r.recheck_at == pytest.approx(now[0] + 0.4, abs=0.01)
            now[0] = r.recheck_at
            r = await call_probe(hls_probe, target, ctx)
            assert "stale_playlist" in {str(e.fault) for e in r.evidence} and r.recheck_at is None, r.evidence
    finally:
        await server.stop()


async def test_an_edge_is_dated_by_its_own_arrivals_not_the_pdt() -> None:
    """An edge lists a segment up to its cache lifetime after the origin, lawfully and at random:
    dated by the PDT, that lag would read as lateness and every edge would go stale before the
    origin it follows (seen in the benchmark as cdn/cdn stale during an ingest starve). An edge's
    newest segment is dated by its first sighting: half way back to the reload before, whatever
    its PDT says. A real server; the clocks are stepped."""
    segs: list[tuple[int, float]] = []
    server = await scripted_hls(lambda _r: pdt_lines(segs))
    now = [100.0]
    wall = lambda: now[0] + 1.7e9  # noqa: E731
    target = ProbeTarget("hls", "main", "cdn", "edge-a", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)
    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0], wall=wall)
            segs.extend((n, wall() - 0.2 - 2.0 * (2 - n)) for n in range(3))
            await call_probe(hls_probe, target, ctx)
            for n, lag in ((3, 0.2), (4, 0.2), (5, 0.2), (6, 1.1)):
                now[0] += 2.0
                segs.append((n, wall() - lag))
                r = await call_probe(hls_probe, target, ctx)
                assert r.figures["renditions"]["180p"]["age_s"] == pytest.approx(0.5, abs=0.01), (n, r.figures)
    finally:
        await server.stop()


async def test_two_segments_late_by_as_much_are_a_new_schedule_not_two_late_segments() -> None:
    """A backup encoder with a longer pipeline (or the wall clock stepped): every segment from
    then on comes 0.8 s later behind its PDT. The first is dated by when it was due (0.8 s before
    it was seen); the second, late by as much, starts a new schedule (dated when seen), so the
    segments that follow on their regular cadence never read as stale. A segment later than that
    is dated by when it was due, even before the reload before it (which did not list it): a
    transcoder that falls behind is stale half a target duration after its next segment was due.
    A real server; the clocks are stepped."""
    segs: list[tuple[int, float]] = []
    server = await scripted_hls(lambda _r: pdt_lines(segs))
    now = [100.0]
    wall = lambda: now[0] + 1.7e9  # noqa: E731
    target = ProbeTarget("hls", "main", "transcode", "transcoder", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)

    async def step(n: int, delay_s: float) -> float:
        now[0] += 2.0
        segs.append((n, wall() - delay_s))
        r = await call_probe(hls_probe, target, ctx)
        assert not [e for e in r.evidence if e.fault is not None], r.evidence
        return r.figures["renditions"]["180p"]["age_s"]

    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0], wall=wall)
            segs.extend((n, wall() - 0.2 - 2.0 * (2 - n)) for n in range(3))
            await call_probe(hls_probe, target, ctx)
            for n in (3, 4, 5):
                # the poll's phase unknown (each delay the same): half way back to the reload before
                assert await step(n, 0.2) == pytest.approx(0.5, abs=0.01)
            assert await step(6, 1.0) == pytest.approx(0.8, abs=0.01)  # late: dated by when it was due
            assert await step(7, 1.0) == pytest.approx(0.5, abs=0.01)  # as late again: the new schedule
            assert await step(8, 1.0) == pytest.approx(0.5, abs=0.01)
            now[0] += 1.0
            await call_probe(hls_probe, target, ctx)  # nothing new: the reload before the next segment
            now[0] += 1.0
            segs.append((9, wall() - 2.5))  # 1.5 s later than usual, the reload 1 s ago did not list it
            r = await call_probe(hls_probe, target, ctx)
            # dated when it was due by its PDT, 1.5 s back (before that reload): the next one is
            # predicted from the PDT and the cadence, not from this one's late arrival
            assert r.figures["renditions"]["180p"]["age_s"] == pytest.approx(1.5, abs=0.01), r.figures
            now[0] += 1.4  # the next one was due 1.5 - 2.0 + 1.4 = 0.9 s ago: not yet stale
            r = await call_probe(hls_probe, target, ctx)
            assert "stale_playlist" not in {str(e.fault) for e in r.evidence if e.fault is not None}
            now[0] += 0.2  # 1.1 s after it was due: past the RFC 8216 6.3.4 retry (half the target duration)
            r = await call_probe(hls_probe, target, ctx)
            assert "stale_playlist" in {str(e.fault) for e in r.evidence if e.fault is not None}, r.figures
    finally:
        await server.stop()


async def test_a_rendition_whose_next_segment_is_not_due_is_not_reloaded_unless_another_fails() -> None:
    """Polled every second on 2-s segments, a rendition is reloaded when the first variant (asked
    every time, for the endpoint's health) lists a new segment, when its own next segment is
    overdue, and at least once a target duration (as a player reloads); its last answer is judged
    again in between — unless it is a segment behind the first variant (an edge's cache serving
    an older copy of it): then it is asked. When the first variant fails, the rendition not asked
    is not measured (UNKNOWN, never fine) and every rendition is asked at the next attempt. An
    edge (dated by its own arrivals); a real server; the clocks are stepped."""
    segs: list[tuple[int, float]] = []
    fail = [False]
    lagging: set[str] = set()  # renditions served without the newest segment (a cache's older copy)

    def media(r: str) -> list[str]:
        if fail[0]:
            raise web.HTTPServiceUnavailable()
        listed = segs[:-1] if r in lagging else segs
        return pdt_lines(listed, first=segs[0][0])
    asked: list[str] = []
    server = await scripted_hls(media, ("360p", "180p"), asked)
    now = [100.0]
    wall = lambda: now[0] + 1.7e9  # noqa: E731
    target = ProbeTarget("hls", "main", "cdn", "edge-a", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)

    async def poll() -> tuple[list[str], dict[str, Any]]:
        asked.clear()
        r = await call_probe(hls_probe, target, ctx)
        return sorted(asked), r

    try:
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http, clock=lambda: now[0], wall=wall)
            for n in range(3):
                segs.append((n, wall() - 0.2 - 2.0 * (2 - n)))
            assert (await poll())[0] == ["180p", "360p"]
            for n in (3, 4):
                now[0] += 1.0  # not due: the first variant only
                got, r = await poll()
                assert got == ["360p"] and r.figures["playlists_not_due"] == 1, got
                assert r.figures["renditions"]["180p"]["age_s"] > 0.5  # judged again: its age grows
                now[0] += 1.0  # due: both
                segs.append((n, wall() - 0.2))
                got, r = await poll()
                assert got == ["180p", "360p"], got
                assert {str(e.fault) for e in r.evidence if e.fault} == set(), r.evidence
            now[0] += 1.0  # a sibling served a segment behind the first variant is asked, not replayed
            await poll()
            for n in (5, 6):  # from now on 180p is served one segment behind (a cache's older copy)
                now[0] += 1.0
                lagging.add("180p")
                segs.append((n, wall() - 0.2))
                assert (await poll())[0] == ["180p", "360p"]
                now[0] += 1.0
                got, r = await poll()  # the first variant did not advance; 180p did, but is behind it
                assert got == ["180p", "360p"] and r.figures["playlists_not_due"] == 0, got
            lagging.clear()
            now[0] += 1.0
            segs.append((7, wall() - 0.2))
            assert (await poll())[0] == ["180p", "360p"]  # in step again
            now[0] += 1.0
            fail[0] = True  # the endpoint fails: the rendition not asked is not measured, not fine
            got, r = await poll()
            assert got == ["360p"] and r.failure is None, got  # one failed, one not asked: not "all failed"
            unasked = [e for e in r.evidence if e.rendition == "180p"]
            assert [e.state for e in unasked] == [State.UNKNOWN] and "not asked" in unasked[0].detail, unasked
            now[0] += 0.5  # and is asked at the next attempt
            got, r = await poll()
            assert got == ["180p", "360p"] and r.failure is not None, (got, r.failure)
    finally:
        await server.stop()


async def test_a_rendition_one_long_segment_behind_its_sibling_is_in_step() -> None:
    """Under a 6-s GOP (2-s target duration) an edge that has the 360p playlist's newest 6-s
    segment and not yet 180p's has the renditions 6 s of media apart: one segment, not a
    drift (3 x 2 s would have called it one). Three such segments apart is. A real server."""
    t0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    lag = {"180p": 1, "360p": 0}  # long segments behind the newest

    def media(r: str) -> list[str]:  # segments 0..5-lag, each 6 s
        return ["#EXT-X-MEDIA-SEQUENCE:0"] + [
            x for i in range(6 - lag[r])
            for x in (f"#EXT-X-PROGRAM-DATE-TIME:{(t0 + timedelta(seconds=6 * i)).isoformat()}", "#EXTINF:6.000,",
                      f"s{i}.ts")]

    async with await scripted_hls(media, ("180p", "360p")) as server, Fetcher() as http:
        target = ProbeTarget("hls", "main", "cdn", "edge-b", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)
        ctx = ProbeContext(state={}, http=http, clock=lambda: 100.0)
        r = await call_probe(hls_probe, target, ctx)
        assert not [e for e in r.evidence if e.fault == "variant_drift"], r.evidence
        assert "segment_too_long" in {str(e.fault) for e in r.evidence}
        lag["180p"] = 3  # 18 s of media behind: 3 of its own segments
        r = await call_probe(hls_probe, target, ctx)
        drift = [e for e in r.evidence if e.fault == "variant_drift"]
        assert [e.rendition for e in drift] == ["180p"] and drift[0].figures["behind_s"] == 18.0, r.evidence


async def test_a_sequence_jump_is_segments_never_listed_not_a_burst() -> None:
    """A packager catching up (after a starved input) lists six new segments at once, all of them:
    nothing skipped, no sequence_jump (the newest number alone said 'jumped by 6'). A packager
    that restarts its numbering 18 ahead skips segments no player ever saw listed: a jump."""
    window = [0, 5]  # first and last media sequence listed
    now = [100.0]
    server = await scripted_hls(lambda _r: [f"#EXT-X-MEDIA-SEQUENCE:{window[0]}"] + [
        x for n in range(window[0], window[1] + 1) for x in ("#EXTINF:2.000,", f"s{n}.ts")])
    async with server, Fetcher() as http:
        target = ProbeTarget("hls", "main", "cdn", "edge-a", HlsSettings(), server.url + "/master.m3u8", 1.0, 5.0)
        ctx = ProbeContext(state={}, http=http, clock=lambda: now[0])

        async def jumps() -> list[Any]:
            now[0] += 1.0
            r = await call_probe(hls_probe, target, ctx)
            return [e for e in r.evidence if e.fault == "sequence_jump"]

        assert not await jumps()
        window[:] = [6, 11]  # six new at once; 6 follows 5: every one listed
        assert not await jumps()
        window[:] = [30, 35]  # 12..29 never listed
        got = await jumps()
        assert got and "18 segments never listed" in got[0].detail, got


async def test_an_edge_following_an_origin_that_listed_late_is_dated_by_the_origins_listing() -> None:
    """After an upstream stall the origin lists its late segment and the edge, stale by its own
    clock, lists it a cache lag later: ``combine`` gives the edge's stale evidence
    ``behind_origin_s`` (how long the origin has listed what it lacks) for the localizer to weigh
    against ``stale_after_s``. Once the origin's next segment comes on time the edge, still
    behind, has no such excuse: the figure goes, also from evidence combined before. Real
    servers; the probes' clocks are stepped (2-s segments, a look every second)."""
    from probes.hls import combine

    origin_segs, edge_segs = list(range(3)), list(range(3))
    origin = await scripted_hls(lambda _r: ["#EXT-X-MEDIA-SEQUENCE:0"] + [x for n in origin_segs
                                                                          for x in ("#EXTINF:2.000,", f"s{n}.ts")])
    edge = await scripted_hls(lambda _r: ["#EXT-X-MEDIA-SEQUENCE:0"] + [x for n in edge_segs
                                                                        for x in ("#EXTINF:2.000,", f"s{n}.ts")])
    now = [100.0]
    settings = HlsSettings(fetch_segments=False)
    targets = {"origin": ProbeTarget("hls", "main", "origin", "origin", settings, origin.url + "/master.m3u8", 1.0,
                                     5.0),
               "edge-a": ProbeTarget("hls", "main", "cdn", "edge-a", settings, edge.url + "/master.m3u8", 1.0, 5.0)}
    results: dict[str, Any] = {}

    def stale(name: str) -> list[Any]:
        return [e for e in results[name].evidence if e.fault == "stale_playlist"]

    try:
        async with Fetcher() as http:
            ctxs = {n: ProbeContext(state={}, http=http, clock=lambda: now[0], wall=lambda: 1.7e9 + now[0])
                    for n in targets}

            async def look(*names: str) -> None:
                for n in names:
                    results[n] = await call_probe(hls_probe, targets[n], ctxs[n])
                combine(results, "main")

            for step in range(10):  # healthy: a segment every 2 s at both
                if step % 2 == 0:
                    origin_segs.append(origin_segs[-1] + 1)
                    edge_segs.append(edge_segs[-1] + 1)
                await look("origin", "edge-a")
                now[0] += 1.0
            assert not stale("origin") and not stale("edge-a")
            for _ in range(6):  # the stall upstream: neither advances
                await look("origin", "edge-a")
                now[0] += 1.0
            assert stale("edge-a") and stale("origin")
            origin_segs.append(origin_segs[-1] + 1)  # the late segment, at the origin first
            await look("origin")
            now[0] += 0.5
            await look("edge-a")
            (e,) = stale("edge-a")
            assert e.figures["edge_lag_segments"] == 1.0
            # 0.5 s after the origin's look, which dates it half way back to its look before (1 s)
            assert e.figures["behind_origin_s"] == pytest.approx(1.0, abs=0.01)
            assert 0.5 < e.figures["stale_after_s"] < 10
            before = e
            now[0] += 1.5
            origin_segs.append(origin_segs[-1] + 1)  # the next one on time: the edge lacks it on its own
            await look("origin")
            assert "behind_origin_s" not in before.figures  # combined again on the edge's last look
            await look("edge-a")
            (e,) = stale("edge-a")
            assert e.figures["edge_lag_segments"] == 2.0 and "behind_origin_s" not in e.figures
    finally:
        await origin.stop()
        await edge.stop()
