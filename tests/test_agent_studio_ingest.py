"""Ingest statistics and encoder status in a running agent, against the embedded lab:
a healthy lab reads ok; encoder stop is localized to the studio, an ingest drop to the
ingest — not to the transcoder whose playlists merely stop."""

from __future__ import annotations

import pytest
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig


@pytest.fixture
async def lab():
    async with Lab(LabConfig()) as lab:
        yield lab


def open_incidents(agent):
    return [(i.stage, i.component, i.fault) for i in agent.incidents.localizer.open_incidents("main")]


@pytest.mark.parametrize("fault,target,root", [
    ("encoder_stop", "encoder", ("studio", "encoder", "encoder_down")),
    ("ingest_drop", "ingest", ("ingest", "ingest", "no_input")),
])
async def test_upstream_fault_is_localized_upstream(lab, tmp_path, fault, target, root):
    conf = lab_agent_config(lab, "127.0.0.1:0", site="test")
    conf["incidents"] = {"path": str(tmp_path / "inc.db")}
    async with Agent(parse_config(conf)) as agent:
        for stage, comp in (("studio", "encoder"), ("ingest", "ingest"), ("origin", "origin")):
            await wait_for(lambda stage=stage, comp=comp: agent.board.state_of("main", stage, comp).value == "ok", 20,
                           f"{stage} ok")
        rec = await lab.inject(fault, target, 30)
        found = await wait_for(lambda: [i for i in agent.incidents.localizer.open_incidents("main")
                                        if (i.stage, i.component, i.fault) == root], 15, f"incident {root}")
        inc = found[0]
        assert inc.localized_at - rec.started_at < 15
        # the transcoder and origin are symptoms on it, not incidents of their own
        assert [x for x in open_incidents(agent) if x[0] in ("transcode", "origin")] == []
