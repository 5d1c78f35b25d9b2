"""Shared fixtures: a live HLS origin with two edges, and an agent factory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from livehls import Endpoint, Timeline
from waiting import wait_for  # noqa: F401  (re-exported for tests)

CHECKOUT = Path(__file__).resolve().parents[1]
_STORE_FILES = ("*.db", "*.db-wal", "*.db-shm", "*.sqlite")


def _stores_in_checkout() -> set[Path]:
    return {p for pattern in _STORE_FILES for p in CHECKOUT.glob(pattern)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_before_key] = _stores_in_checkout()
    # every temporary folder a test, the agent, the lab or a child process makes lands in one
    # folder of this run's own, removed when the run ends (TMPDIR for the children)
    scratch = tempfile.mkdtemp(prefix="signalpath-tests-")
    session.config.stash[_scratch_key] = (scratch, os.environ.get("TMPDIR"), tempfile.tempdir)
    os.environ["TMPDIR"] = tempfile.tempdir = scratch


SLOW_FIRST = ("test_report_lab.py", "test_broadcasts_agent.py", "test_agent_overload.py", "test_agent_reallab.py",
              "test_drill.py", "test_real_packagers.py", "test_secrets_canary.py", "test_dash.py", "test_demo.py",
              "test_dashboards.py")
"""The slowest test files (``make test`` lists the 15 slowest tests), run first: the workers
take whole files (``--dist loadfile``), and a long file handed out last left one worker idle
for its length at the end of the run."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests write only into temporary folders: a database file the run left in the checkout
    (an agent config without ``incidents.path``) fails the run."""
    scratch, tmpdir, tempdir = session.config.stash.get(_scratch_key, (None, None, None))
    if scratch is not None:
        tempfile.tempdir = tempdir
        if tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = tmpdir
        shutil.rmtree(scratch, ignore_errors=True)
    new = _stores_in_checkout() - session.config.stash.get(_before_key, set())
    if new:
        names = ", ".join(sorted(p.name for p in new))
        session.config.get_terminal_writer().line(f"tests wrote into the checkout: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_before_key = pytest.StashKey[set[Path]]()
_scratch_key = pytest.StashKey[tuple[str | None, str | None, str | None]]()


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
