"""The agent's playback and media probes against the embedded lab (one lab, one agent).

Each lab fault is injected in turn and must be reported for the right stream/component
by the probe that sees it. Detection delay is measured from the fault's start time in
the lab's own record (``FaultRecord.started_at``) to the first agent cycle whose
evidence shows it. Bounds:

- content faults (frozen, black, silent, desync, corrupt): two segment durations, plus
  one media poll interval (the probe must see the new segment) and ``SLACK_S`` for
  transcode/publish and decode on a shared 2-core machine. Frozen/black/silent need 2 s
  of bad media by definition (probes/core/media_analysis.py); that run ends inside the segment after
  the onset, which is published up to two segment durations after the onset;
- keyframe interval: the segments stretch to the new GOP (RFC 8216 §4.3.3.1 cuts at key
  frames only), so the bound is two GOPs plus the same allowances;
- stalls: a player holds about three target durations of buffer (RFC 8216bis hold-back),
  so a stall can only begin once that has drained; the bound is generous and the figure
  is printed.

The healthy window defaults to 20 s here (``SIGNALPATH_HEALTHY_S`` overrides it);
tests/perf/stutter_healthy.py runs the 60-s healthy check and prints the cost figures.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass

import pytest
import pytest_asyncio
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from probes.base import State

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEGMENT_S = 2.0
MEDIA_POLL_S = 1.0  # MediaSettings.interval_s default
SLACK_S = 1.5
CONTENT_BOUND_S = 2 * SEGMENT_S + MEDIA_POLL_S + SLACK_S
HEALTHY_S = float(os.environ.get("SIGNALPATH_HEALTHY_S", "20"))
DELAYS: dict[str, float] = {}


@dataclass(slots=True)
class Seen:
    wall: float
    probe: str
    stage: str
    component: str
    rendition: str | None
    state: State
    fault: str | None


class Recorder:
    """An agent sink: every evidence line of the playback and media probes, with its time."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def on_cycle(self, cycle) -> None:
        if cycle.job.probe not in ("playback", "media"):
            return
        now = time.time()
        for a in cycle.attempts:
            for e in a.result.evidence:
                self.seen.append(Seen(now, cycle.job.probe, e.stage, e.component, e.rendition, e.state, e.fault))

    def first(self, fault: str, since: float, **where: str) -> Seen | None:
        for s in self.seen:
            if s.wall >= since and s.fault == fault and all(getattr(s, k) == v for k, v in where.items()):
                return s
        return None

    def bad_since(self, since: float) -> list[Seen]:
        return [s for s in self.seen if s.wall >= since and s.state is not State.OK]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig():
    async with Lab(LabConfig()) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", "test")
        conf["incidents"] = {"path": tempfile.mkdtemp(prefix="sp-media-") + "/incidents.db"}
        rec = Recorder()
        async with Agent(parse_config(conf), extra_sinks=[rec]) as agent:
            yield lab, agent, rec
    if DELAYS:
        print("\ndetection delays (s from the lab's fault start):",
              ", ".join(f"{k} {v:.2f}" for k, v in DELAYS.items()))


def gauge(agent: Agent, name: str, component: str, rendition: str, stage: str = "origin") -> float | None:
    return agent.registry.get_sample_value(name, {"site": "test", "stream": "main", "stage": stage,
                                                  "component": component, "rendition": rendition})


async def settle(rec: Recorder) -> None:
    """Wait until the media probe reports a clean segment again (the previous fault is over)."""
    t0 = time.time()

    def clean() -> bool:
        latest = [s for s in rec.seen if s.probe == "media" and s.wall >= t0]
        return bool(latest) and all(s.state is State.OK for s in latest[-1:])

    await wait_for(clean, 20, "the media clean again", every=0.2)


async def detect(lab: Lab, rec: Recorder, name: str, fault: str, bound: float, target: str | None = None,
                 for_s: float = 8.0, params: dict | None = None, **where: str) -> Seen:
    await settle(rec)
    r = await lab.inject(name, target, for_s=for_s, params=params)
    seen = await wait_for(lambda: rec.first(fault, r.started_at, **where), bound + 10, f"{fault} reported")
    delay = seen.wall - r.started_at
    DELAYS[name] = delay
    await lab.clear_all()
    assert delay <= bound, f"{name}: reported {delay:.2f} s after onset (bound {bound:.1f} s)"
    return seen


async def test_healthy_lab_plays_without_stalls_or_media_faults(rig):
    lab, agent, rec = rig

    def playing() -> bool:
        figs = [s for s in rec.seen if s.probe == "playback" and s.state is State.OK]
        comps = {(s.component, s.rendition) for s in figs}
        return comps >= {(e, r) for e in lab.edges for r in lab.renditions} and any(
            s.probe == "media" and s.state is State.OK for s in rec.seen)

    await wait_for(playing, 30, "every viewer playing and media analysed")
    t0 = time.time()
    await wait_for(lambda: time.time() - t0 >= HEALTHY_S, HEALTHY_S + 5, "the healthy window", every=0.5)
    assert rec.bad_since(t0) == []
    for edge in lab.edges:
        for r in lab.renditions:
            assert agent.registry.get_sample_value("signalpath_playback_stalls_total", {
                "site": "test", "stream": "main", "stage": "playback", "component": edge, "rendition": r}) == 0
            startup = gauge(agent, "signalpath_playback_startup_seconds", edge, r, "playback")
            assert startup is not None and 0 < startup < 15
            assert gauge(agent, "signalpath_playback_rebuffer_ratio", edge, r, "playback") == 0
    # media: the lowest rendition only, by default
    assert gauge(agent, "signalpath_video_frozen", "origin", "180p") == 0
    assert gauge(agent, "signalpath_video_frozen", "origin", "360p") is None
    level = gauge(agent, "signalpath_audio_level_dbfs", "origin", "180p")
    assert level is not None and -26 < level < -20  # the lab's -20 dBFS tone, RMS of a sine is 3 dB lower
    assert abs(gauge(agent, "signalpath_av_sync_offset_seconds", "origin", "180p")) < 0.08
    gop = gauge(agent, "signalpath_keyframe_interval_seconds", "origin", "180p")
    assert gop is not None and 1.5 < gop < 2.5, gop
    assert agent.board.state_of("main", "origin", "origin") is State.OK


async def test_frozen_everywhere_analysed_localizes_to_the_studio(rig):
    lab, agent, rec = rig
    await settle(rec)
    r = await lab.inject("frozen_video", for_s=12)

    def incident():
        return [i for i in agent.incidents.localizer.open_incidents()
                if i.fault == "frozen_video" and i.started_at >= r.started_at - 1]

    found = await wait_for(incident, CONTENT_BOUND_S + 8, "a frozen_video incident")
    await lab.clear_all()
    assert (found[0].stage, found[0].component) == ("studio", "source")
    assert gauge(agent, "signalpath_video_frozen", "origin", "180p") in (0.0, 1.0)


@pytest.mark.parametrize("name,fault", [
    ("frozen_video", "frozen_video"),
    ("black_video", "black_video"),
    ("silent_audio", "silent_audio"),
    ("av_desync", "av_desync"),
])
async def test_content_fault_is_reported_on_the_origin_rendition(rig, name, fault):
    lab, agent, rec = rig
    seen = await detect(lab, rec, name, fault, CONTENT_BOUND_S, probe="media")
    assert (seen.stage, seen.component, seen.rendition, seen.state) == ("origin", "origin", "180p", State.DEGRADED)
    # the picture/sound problem is nothing viewers' players notice as stalls
    assert all(s.fault != "stalls" for s in rec.seen if s.wall >= seen.wall - 10)


async def test_corrupt_segment_counts_decode_errors(rig):
    lab, agent, rec = rig
    labels = {"site": "test", "stream": "main", "stage": "origin", "component": "origin", "rendition": "180p"}
    await settle(rec)
    before = agent.registry.get_sample_value("signalpath_segment_decode_errors_total", labels) or 0
    r = await lab.inject("corrupt_segment", "180p")
    seen = await wait_for(lambda: rec.first("decode_errors", r.started_at, probe="media"), CONTENT_BOUND_S + 10,
                          "decode errors reported")
    DELAYS["corrupt_segment"] = seen.wall - r.started_at
    assert (seen.component, seen.rendition) == ("origin", "180p")
    assert seen.wall - r.started_at <= CONTENT_BOUND_S
    assert agent.registry.get_sample_value("signalpath_segment_decode_errors_total", labels) > before


async def test_long_keyframe_interval_is_reported(rig):
    lab, agent, rec = rig
    gop = 6
    seen = await detect(lab, rec, "keyframe_interval", "keyframe_interval_long", 2 * gop + MEDIA_POLL_S + SLACK_S,
                        for_s=14, params={"gop_s": gop}, probe="media")
    assert (seen.component, seen.rendition) == ("origin", "180p")
    assert gauge(agent, "signalpath_keyframe_interval_seconds", "origin", "180p") is not None


async def test_throttled_edge_stalls_its_viewers_only(rig):
    lab, agent, rec = rig
    # let the viewers recover from earlier faults (stretched segments) before measuring
    t_ok = time.time()
    await wait_for(lambda: not [s for s in rec.bad_since(t_ok) if s.probe == "playback"] and time.time() - t_ok > 3,
                   40, "viewers healthy again", every=0.5)
    r = await lab.inject("edge_throttle", "edge-a", for_s=40)
    seen = await wait_for(lambda: rec.first("stalls", r.started_at, probe="playback", component="edge-a"), 35,
                          "stalls on edge-a")
    DELAYS["edge_throttle"] = seen.wall - r.started_at
    await lab.clear_all()
    assert seen.stage == "playback" and seen.rendition in lab.renditions
    assert [s for s in rec.seen if s.wall >= r.started_at and s.probe == "playback" and s.component == "edge-b"
            and s.state is not State.OK] == []
    stalls = agent.registry.get_sample_value("signalpath_playback_stalls_total", {
        "site": "test", "stream": "main", "stage": "playback", "component": "edge-a", "rendition": seen.rendition})
    assert stalls >= 1
