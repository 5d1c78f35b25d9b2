"""The status page's figures as the crew reads them: the embedded lab, a real agent, headless Chromium.

Every chip's figures are words with units and rounding (agent/figure_words.py): "publisher present",
"input 574 kbit/s", "1.4 s behind live", never a raw key ("bw in bits per second: 574068") nor
"-0.0 s". Screenshots at laptop and phone sizes are written to the test's temp folder (their paths
are printed; SIGNALPATH_SCREENSHOTS=DIR keeps a copy).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

import httpx
from _require import require_binary

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig


async def _chromium(chromium: str, profile: Path, *args: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--virtual-time-budget=4000", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out


async def test_status_page_figures_read_as_words_with_units(tmp_path):
    chromium = require_binary("chromium")
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(tmp_path / "incidents.db"))
        async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=5) as client:
            wanted = {("ingest", "ingest"): "publisher present", ("cdn", "edge-a"): "behind live",
                      ("playback", "edge-a"): "stall", ("origin", "origin"): "fps"}
            lines: dict[tuple[str, str], list[str]] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                body = (await client.get(agent.url + "/api/v1/status")).json()
                lines = {(c["stage"], c["component"]): c["lines"] for c in body["streams"][0]["stages"]}
                if all(any(w in ln for ln in lines.get(k, [])) for k, w in wanted.items()):
                    break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"the cells never carried their figures in words: {lines}")
            assert re.fullmatch(r"input \d+ kbit/s|input \d+\.\d Mbit/s", lines[("ingest", "ingest")][1])

            dom = (await _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", agent.url + "/")).decode()
            figs = re.findall(r'<div class="figs">([^<]*)</div>', dom)
            text = " · ".join(figs)
            for words in ("publisher present", "kbit/s", "behind live", "fps"):
                assert words in text, (words, figs)
            assert "bits per second" not in text and "_" not in text and "-0" not in text, figs
            assert not re.search(r"\d\.\d{3,}", text), figs  # rounded, not raw floats

            for name, size in (("laptop", "1280,800"), ("phone", "390,844")):
                png = tmp_path / f"status-{name}.png"
                await _chromium(chromium, tmp_path / f"profile-{name}", f"--window-size={size}",
                                f"--screenshot={png}", agent.url + "/")
                assert png.exists() and png.stat().st_size > 5000
                print(f"screenshot ({name}, {size}): {png}")
                keep = os.environ.get("SIGNALPATH_SCREENSHOTS")
                if keep:
                    Path(keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(png, Path(keep, png.name))


def test_an_unknown_cell_says_why():
    """A cell whose only evidence is UNKNOWN (a viewer still starting after a failed first try, a
    probe that could not measure) shows the reason the probe gave, never a bare "unknown"."""
    from agent.status import StatusBoard
    from probes.base import Evidence, State

    board = StatusBoard(wall=lambda: 1000.0)
    board.update("main", "playback/edge-a", [Evidence("playback", "edge-a", State.UNKNOWN, None,
                                                      "the 180p viewer could not start: connection refused")])
    (cell,) = board.cells("main")
    assert cell.state is State.UNKNOWN and cell.reasons == ["the 180p viewer could not start: connection refused"]
