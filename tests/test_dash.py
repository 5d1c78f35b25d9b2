"""signalpath on live MPEG-DASH written by a packager we did not write: ffmpeg's dash muxer in
real time (``-re``) into a temporary folder, served by a plain static file server on 127.0.0.1
port 0 (tests/test_real_packagers.py's), with SegmentTimeline addressing (ffmpeg's default)
and with ``$Number$`` templates computed from the clock (``-use_timeline 0``).

What is proven: the agent reads the MPD as the stream (each Representation a rendition: the
video ladder and the audio as an alternative), stays healthy for 12 s with every probe on
(availability, content analysis of the fMP4 segments, the virtual players, latency), reads
figures from the real segments; and when the packager dies (SIGKILL: the MPD stays ``dynamic``
and stops growing, or, for computed addressing, the segments it promises never come), the
origin's renditions are stale and an incident opens upstream of the origin.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _require import require_binary
from test_real_packagers import ENCODE, SOURCE, healthy_for, packager, static_server, stop
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]


def ffmpeg_dash(folder: Path, *, timeline: bool, seconds: int = 120) -> list[str]:
    """ffmpeg's dash muxer: 2-s segments, a window of 5, video and audio in two AdaptationSets."""
    return [require_binary("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re", *SOURCE, "-t", str(seconds),
            *ENCODE, "-f", "dash", "-seg_duration", "2", "-window_size", "5", "-extra_window_size", "2",
            "-use_timeline", "1" if timeline else "0", "-adaptation_sets", "id=0,streams=v id=1,streams=a",
            str(folder / "live.mpd")]


async def mpd_ready(folder: Path, segments: int = 2, timeout: float = 30) -> None:
    def ready() -> bool:
        return len(list(folder.glob("chunk-stream0-*.m4s"))) >= segments and (folder / "live.mpd").exists()
    await wait_for(ready, timeout, f"{segments} DASH segments from ffmpeg")


@pytest.mark.parametrize("addressing", ["timeline", "number"])
async def test_ffmpeg_dash_is_watched_healthy_then_its_death_is_an_upstream_incident(
        addressing: str, tmp_path: Path) -> None:
    async with packager(ffmpeg_dash(tmp_path, timeline=addressing == "timeline")) as proc, \
            static_server(tmp_path) as url:
        url = url.replace("index.m3u8", "live.mpd")
        await mpd_ready(tmp_path)
        cfg = {"agent": {"listen": "127.0.0.1:0", "site": "test"},
               "incidents": {"path": str(tmp_path / "incidents.db")},
               "streams": [{"name": "main", "origin": url}]}
        async with Agent(parse_config(cfg)) as agent:
            opened = await healthy_for(agent, 12)
            assert opened == [], [(i.stage, i.component, i.fault, i.summary) for i in opened]
            origin = next(c for c in agent.board.cells("main") if (c.stage, c.component) == ("origin", "origin"))
            figs = origin.figures
            assert set(figs["renditions"]) == {"180p"}, figs
            assert set(figs["alternates"]) == {"audio-1"}, figs
            for f in (figs["renditions"]["180p"], figs["alternates"]["audio-1"]):
                assert f["target_duration_s"] == pytest.approx(2.0, abs=0.1) and f["age_s"] < 3.0, f
                assert 0 < f["download_ratio"] < 0.5 and -0.5 < f["live_latency_s"] < 4.0, f
            stop(proc, crash=True)

            def upstream() -> list[tuple[str, str, str]]:
                return [(i.stage, i.component, i.fault) for i in agent.incidents.localizer.open_incidents()]
            opened_after = await wait_for(upstream, 20, "an incident after the packager died")
            # the MPD stays dynamic and stops growing (timeline), or the segments it promises never
            # come (computed $Number$): every rendition stale at the origin that still answers
            assert opened_after == [("transcode", "transcoder", "stale_playlist")]
