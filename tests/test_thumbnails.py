"""Thumbnails (agent/thumbnails.py, probes/media.py) against the embedded lab and a running agent:
the newest picture of the analysed rendition is a small JPEG that changes with the picture; during
a frozen camera the pictures stop changing and the frozen-video incident carries the picture that
shows it — on the status page too (headless Chromium, screenshots at laptop and phone sizes)."""

from __future__ import annotations

import io
from typing import Any

import av
import httpx
import numpy as np
import pytest
from _require import require_binary
from chromium import Browser
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

pytestmark = pytest.mark.timeout(240)


def luma(jpeg: bytes) -> np.ndarray:
    with av.open(io.BytesIO(jpeg), format="mjpeg") as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (160, 90)
        return frame.to_ndarray(format="gray").astype(np.float32)


async def newest(client: httpx.AsyncClient, url: str, after: int = -1) -> dict[str, Any] | None:
    for t in (await client.get(url + "/api/v1/thumbnails")).json():
        if t["stream"] == "main" and t["seq"] > after:
            return t
    return None


async def picture(client: httpx.AsyncClient, url: str, path: str) -> bytes:
    r = await client.get(url + path)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", r.text[:200]
    assert r.content[:2] == b"\xff\xd8" and len(r.content) < 20_000  # a JPEG of a few kB
    return r.content


async def test_thumbnails_follow_the_picture_and_show_the_frozen_frame(tmp_path):
    chromium = require_binary("chromium")
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", incidents_path=str(tmp_path / "incidents.db"))
        async with Agent(parse_config(conf)) as agent, httpx.AsyncClient(timeout=10) as client:
            first = await wait_for(lambda: newest(client, agent.url), 30, "a first thumbnail")
            a = luma(await picture(client, agent.url, first["url"]))
            second = await wait_for(lambda: newest(client, agent.url, first["seq"]), 15, "the next segment's")
            b = luma(await picture(client, agent.url, second["url"]))
            moving = float(np.abs(a - b).mean())
            assert moving > 2.0, moving  # the lab's test pattern moves: two segments, two pictures
            missing = await client.get(agent.url + "/api/v1/thumbnails/main/nope.jpg")
            assert missing.status_code == 404

            await lab.inject("frozen_video")

            async def frozen() -> dict[str, Any] | None:
                incs = (await client.get(agent.url + "/api/v1/incidents?state=open")).json()
                return next((i for i in incs if i["fault"] == "frozen_video"), None)

            inc = await wait_for(frozen, 30, "the frozen-video incident")

            async def with_fault() -> dict[str, Any] | None:
                t = await newest(client, agent.url)
                return t if t is not None and "frozen_video" in t["faults"] else None
            # the incident opens from the ingest's pictures (every one decoded: 2 s of a still
            # picture), before a segment holding it is published, fetched and decoded for its thumbnail
            shown = await wait_for(with_fault, 15, "a thumbnail of the frozen picture")
            still = luma(await picture(client, agent.url, shown["faults"]["frozen_video"]["url"]))
            later = await wait_for(lambda: newest(client, agent.url, shown["faults"]["frozen_video"]["seq"]), 15,
                                   "a later frozen segment")
            again = luma(await picture(client, agent.url, later["url"]))
            assert float(np.abs(still - again).mean()) < 1.0  # the same picture, segment after segment

            async with Browser(chromium, tmp_path / "profile") as browser:
                page = await browser.open(agent.url + "/")
                # the incident card carries the picture that shows the freeze, loaded
                await page.wait(f"(() => {{ const i = document.querySelector('.incident[data-id=\"{inc['id']}\"] "
                                f".fault-picture img'); return !!i && i.complete && i.naturalWidth === 160; }})()")
                await page.wait("(() => { const i = document.querySelector('.stream .thumbs img');"
                                " return !!i && i.complete && i.naturalWidth === 160; })()")
                await page.screenshots(tmp_path, "thumbnails")
