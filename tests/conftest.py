"""Shared fixtures: a live HLS origin with two edges, and an agent factory."""

from __future__ import annotations

from typing import Any

import pytest
from livehls import Endpoint, Timeline
from waiting import wait_for  # noqa: F401  (re-exported for tests)


class LiveHls:
    def __init__(self, seg_dur: float = 1.0) -> None:
        self.tl = Timeline(seg_dur=seg_dur)
        self.origin = Endpoint(self.tl)
        self.edges = {"edge-a": Endpoint(self.tl), "edge-b": Endpoint(self.tl)}

    async def start(self) -> LiveHls:
        await self.origin.start()
        for e in self.edges.values():
            await e.start()
        return self

    async def stop(self) -> None:
        await self.origin.stop()
        for e in self.edges.values():
            await e.stop()

    def config(self, **hls: Any) -> dict[str, Any]:
        import tempfile

        return {
            "agent": {"listen": "127.0.0.1:0", "site": "test"},
            "incidents": {"path": tempfile.mkdtemp(prefix="sp-inc-") + "/incidents.db"},
            "streams": [{
                "name": "main", "origin": self.origin.master_url,
                "edges": [{"name": n, "url": e.master_url} for n, e in self.edges.items()],
                "hls": {"interval_s": 0.5, "timeout_s": 3.0, **hls},
            }],
        }


@pytest.fixture
async def live():
    lh = await LiveHls().start()
    try:
        yield lh
    finally:
        await lh.stop()
