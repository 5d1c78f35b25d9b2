"""The agent, in-process, against the real-software lab (issue 3, "A real-software lab for tests").

Real nginx-rtmp origin (ingest + HLS packager), two nginx ``proxy_cache`` edges and an
ffmpeg publisher (tests/reallab.py), all on loopback. The agent must see the pipeline
healthy for 36 s with no fault reported, then see each injected fault at the right
stage/component within a deadline, with the pipeline healed in between:

1. edge-b goes stale (CDN TTL misconfiguration): ``cdn/edge-b`` down, "has not advanced";
   origin and edge-a stay ok.
2. the origin drops the RTMP publisher: ``origin/origin`` down (the playlist stops).
   The lab heals by starting ffmpeg again.
3. edge-a's nginx dies: ``cdn/edge-a`` down, "connection refused"; origin and edge-b ok.

A recorder polls ``agent.board.as_json()`` every 0.5 s for the whole run; each phase's
assertions are checked against every snapshot taken in that phase, not just the last.
Skipped without nginx/ffmpeg, failed instead under SIGNALPATH_REQUIRE_LAB=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from dataclasses import dataclass, field

import av
import pytest
from _require import require_binary
from reallab import RealLab
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config

pytestmark = [pytest.mark.lab, pytest.mark.timeout(240)]

HEALTHY_WINDOW_S = 36.0
POLL_S = 0.5
COMPONENTS = (("origin", "origin"), ("cdn", "edge-a"), ("cdn", "edge-b"))
# Deadlines, from THRESHOLDS.md: stale = no new media sequence for 1.5 x the 2-s target
# duration (3 s), plus the 1-s poll interval, plus the edge's 1-s playlist TTL, plus margin.
STALE_DEADLINE_S = 12.0
REFUSED_DEADLINE_S = 6.0
HEAL_DEADLINE_S = 20.0


@dataclass
class Snapshot:
    t: float  # monotonic
    cells: dict[str, dict]  # "stage/component" -> status cell


@dataclass
class Recorder:
    """Polls the agent's status board every ``POLL_S`` seconds into ``snapshots``."""

    agent: Agent
    snapshots: list[Snapshot] = field(default_factory=list)

    def take(self) -> Snapshot:
        stages = self.agent.board.as_json()["streams"][0]["stages"]
        snap = Snapshot(time.monotonic(), {f"{c['stage']}/{c['component']}": c for c in stages})
        self.snapshots.append(snap)
        return snap

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(POLL_S)

    def between(self, t0: float, t1: float) -> list[Snapshot]:
        return [s for s in self.snapshots if t0 <= s.t <= t1]


def cell(agent: Agent, stage: str, component: str) -> dict:
    for s in agent.board.as_json()["streams"][0]["stages"]:
        if s["stage"] == stage and s["component"] == component:
            return s
    raise AssertionError(f"no {stage}/{component} in status")


def state_is(agent: Agent, stage: str, component: str, state: str):
    return lambda: cell(agent, stage, component)["state"] == state


def all_ok(agent: Agent):
    return lambda: all(cell(agent, st, comp)["state"] == "ok" for st, comp in COMPONENTS)


def non_ok(snaps: list[Snapshot], keys: tuple[str, ...], t_ref: float) -> list[tuple[float, str, str, list[str]]]:
    """(seconds since t_ref, cell, state, reasons) for every non-ok cell among ``keys``."""
    return [(round(s.t - t_ref, 1), k, s.cells[k]["state"], s.cells[k]["reasons"])
            for s in snaps for k in keys if s.cells[k]["state"] != "ok"]


def last_seq(c: dict) -> int:
    rends = c["figures"].get("renditions", {})
    return max((int(f["last_seq"]) for f in rends.values() if "last_seq" in f), default=-1)


@pytest.fixture
async def lab(tmp_path):
    require_binary("nginx")
    require_binary("ffmpeg")
    if RealLab.missing_binaries():
        require_binary("ngx_rtmp_module (libnginx-mod-rtmp)")
    async with RealLab(tmp_path / "lab") as running:
        yield running


async def test_agent_sees_real_pipeline_healthy_then_stale_edge_dropped_publisher_dead_edge(lab: RealLab):
    detect: dict[str, float] = {}
    seen: dict[str, list[str]] = {}
    conf = lab.config_dict(site="lab")
    async with Agent(parse_config(conf)) as agent:
        rec = Recorder(agent)
        task = asyncio.create_task(rec.run())
        try:
            # ---- healthy: every cell ok on every poll for 36 s --------------------------------
            await wait_for(all_ok(agent), 15, "all cells ok at start")
            origin_seq0 = last_seq(cell(agent, "origin", "origin"))
            t0 = time.monotonic()
            await asyncio.sleep(HEALTHY_WINDOW_S)  # the recorder samples the board meanwhile
            t1 = time.monotonic()
            window = rec.between(t0, t1)
            assert len(window) >= HEALTHY_WINDOW_S / POLL_S * 0.8, f"only {len(window)} polls in the window"
            keys = tuple(f"{st}/{comp}" for st, comp in COMPONENTS)
            faults = non_ok(window, keys, t0)
            assert not faults, f"false faults on the healthy real pipeline: {faults}"
            # not vacuous: the agent watched the live edge move (2-s segments: ~18 in 36 s)
            advanced = last_seq(cell(agent, "origin", "origin")) - origin_seq0
            assert advanced >= 0.8 * HEALTHY_WINDOW_S / lab.segment_seconds, advanced
            for st, comp in COMPONENTS[1:]:
                assert abs(last_seq(cell(agent, st, comp)) - last_seq(cell(agent, "origin", "origin"))) <= 2
            # the content probe's picture of nginx-rtmp's own segments (a packager we did not write)
            pictures = agent.thumbnails.index()
            assert pictures, "no thumbnail of the real pipeline"
            th = agent.thumbnails.get(pictures[0]["stream"], pictures[0]["rendition"])
            assert th is not None and th.jpeg[:2] == b"\xff\xd8" and pictures[0]["age_s"] < 10
            with av.open(io.BytesIO(th.jpeg), format="mjpeg") as jpeg:
                assert next(jpeg.decode(video=0)).width == 160

            # ---- 1. edge-b stale ----------------------------------------------------------------
            t_inj = time.monotonic()  # from the fault command (includes the helper's own wait)
            await lab.make_edge_stale("edge-b")
            await wait_for(state_is(agent, "cdn", "edge-b", "down"), STALE_DEADLINE_S, "edge-b down (stale)")
            detect["edge-b stale"] = time.monotonic() - t_inj
            reasons = cell(agent, "cdn", "edge-b")["reasons"]
            seen["edge-b stale"] = reasons
            assert any("has not advanced" in r for r in reasons), reasons
            rec.take()
            others = non_ok(rec.between(t_inj, time.monotonic()), ("origin/origin", "cdn/edge-a"), t_inj)
            assert not others, f"origin/edge-a not ok while edge-b was stale: {others}"
            await lab.heal_edge("edge-b")
            await wait_for(all_ok(agent), HEAL_DEADLINE_S, "all ok after edge-b healed")

            # ---- 2. publisher dropped -------------------------------------------------------------
            t_inj = time.monotonic()  # from the fault command (includes the helper's own wait)
            await lab.drop_publisher()
            await wait_for(state_is(agent, "origin", "origin", "down"), STALE_DEADLINE_S, "origin down")
            detect["publisher dropped"] = time.monotonic() - t_inj
            reasons = cell(agent, "origin", "origin")["reasons"]
            seen["publisher dropped"] = reasons
            assert any("has not advanced" in r or "ended" in r for r in reasons), reasons
            # heal: the encoder comes back and publishes again
            await wait_for(lambda: not lab.ffmpeg_running(), 10, "ffmpeg exited after the drop")
            await lab.start_ffmpeg()
            await wait_for(all_ok(agent), HEAL_DEADLINE_S + 10, "all ok after the publisher came back")

            # ---- 3. edge-a dead ---------------------------------------------------------------------
            t_inj = time.monotonic()  # from the fault command (includes the helper's own wait)
            await lab.kill_edge("edge-a")
            await wait_for(state_is(agent, "cdn", "edge-a", "down"), REFUSED_DEADLINE_S, "edge-a down (refused)")
            detect["edge-a killed"] = time.monotonic() - t_inj
            reasons = cell(agent, "cdn", "edge-a")["reasons"]
            seen["edge-a killed"] = reasons
            assert any("refused" in r for r in reasons), reasons
            rec.take()
            others = non_ok(rec.between(t_inj, time.monotonic()), ("origin/origin", "cdn/edge-b"), t_inj)
            assert not others, f"origin/edge-b not ok while edge-a was dead: {others}"
            await lab.start_edge("edge-a")
            await wait_for(all_ok(agent), HEAL_DEADLINE_S, "all ok after edge-a restarted")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for fault, took in detect.items():
        print(f"{fault}: detected in {took:.1f} s: {seen[fault]}")


async def test_nginx_rtmp_dash_through_the_edges_is_healthy_and_a_stale_edge_is_that_edge(lab: RealLab):
    """The same real pipeline read as MPEG-DASH (nginx-rtmp's ``dash on``: SegmentTimeline with
    ``$Time$``, video and audio apart) at the origin and through both proxy_cache edges: every
    cell ok on every poll for 8 s while the live edge moves, then edge-b serving a stale MPD is
    edge-b's fault alone, as with HLS."""
    conf = lab.config_dict(site="lab")
    conf["streams"][0]["origin"] = lab.dash_url
    conf["streams"][0]["edges"] = [{"name": n, "url": lab.dash_edge_url(n)} for n in lab.edge_ports]
    async with Agent(parse_config(conf)) as agent:
        rec = Recorder(agent)
        task = asyncio.create_task(rec.run())
        try:
            await wait_for(all_ok(agent), 20, "all cells ok at start")
            origin_seq0 = last_seq(cell(agent, "origin", "origin"))
            t0 = time.monotonic()
            await asyncio.sleep(8.0)  # the recorder samples the board meanwhile
            window = rec.between(t0, time.monotonic())
            faults = non_ok(window, tuple(f"{st}/{comp}" for st, comp in COMPONENTS), t0)
            assert not faults, f"false faults on the healthy real DASH pipeline: {faults}"
            assert last_seq(cell(agent, "origin", "origin")) - origin_seq0 >= 3  # 2-s segments: ~4 in 8 s
            assert set(cell(agent, "origin", "origin")["figures"]["alternates"]) == {"audio-1"}
            assert agent.incidents.localizer.open_incidents() == []

            t_inj = time.monotonic()
            await lab.make_edge_stale("edge-b")
            await wait_for(state_is(agent, "cdn", "edge-b", "down"), STALE_DEADLINE_S, "edge-b down (stale MPD)")
            rec.take()
            others = non_ok(rec.between(t_inj, time.monotonic()), ("origin/origin", "cdn/edge-a"), t_inj)
            assert not others, f"origin/edge-a not ok while edge-b was stale: {others}"
            await wait_for(lambda: [(i.stage, i.component, i.fault) for i in agent.incidents.localizer.open_incidents()],
                           10, "an incident")
            assert [(i.stage, i.component, i.fault) for i in agent.incidents.localizer.open_incidents()] == [
                ("cdn", "edge-b", "stale_playlist")]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
