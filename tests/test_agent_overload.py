"""An agent starved of CPU beside a healthy lab blames itself, not the signal path.

The agent runs as its own process (`signalpath run`), as in production; the test takes its
CPU away the way a CFS quota does to a process that needs more than its share — it runs a
slice, then is held until the next period (SIGSTOP / SIGCONT, ``STOPPED`` of every
``PERIOD_S``) — while the lab (this process) keeps serving on time. The servers answer
promptly, so the agent's timeouts and slow figures are its own: no incident may open against
any stage of the stream; one ``agent``/``agent`` ``overloaded`` incident must, with its
figures, and the agent must say on /metrics how late it is and that it sheds work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from _require import require_binary
from waiting import wait_for

from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
PERIOD_S = 0.1
STOPPED = 0.9  # of every period: 10 ms to run in each 100 ms, as a 10 % CFS quota (cpu.max 10000 100000)
STARVED_S = 30.0  # several probe deadlines and the first shed level
STREAMS = 8  # the lab's stream watched under as many names: more work than a tenth of a core does


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _starve(pid: int, until: float) -> None:
    """Hold ``pid`` for ``STOPPED`` of every ``PERIOD_S`` until ``until`` (monotonic)."""
    try:
        while time.monotonic() < until:
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(PERIOD_S * STOPPED)
            os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(PERIOD_S * (1 - STOPPED))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_agent_starved_of_cpu_opens_its_own_incident_and_none_against_the_stream(tmp_path):
    require_binary("ffmpeg")
    port = _free_port()
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, listen=f"127.0.0.1:{port}", incidents_path=str(tmp_path / "incidents.db"))
        one = conf["streams"][0]
        # (the lab's ingest playback side takes 8 live clients: one ingest monitor, on the first only)
        copy = {**one, "ingest": {k: v for k, v in one["ingest"].items() if k != "monitor"}}
        conf["streams"] += [{**copy, "name": f"{one['name']}-{i}"} for i in range(2, STREAMS + 1)]
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(yaml.safe_dump(conf))
        log = open(tmp_path / "agent.log", "wb")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agent.cli", "run", "-c", str(cfg),
                                                    stdout=log, stderr=log, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=15) as client:
                async def status():
                    with contextlib.suppress(httpx.HTTPError):
                        r = await client.get(url + "/api/v1/status")
                        return r.json()
                    return None

                def healthy(body) -> bool:
                    # the agent judges itself after its first 30 s (agent/selfwatch.py STARTUP_GRACE_S)
                    if not body or body.get("agent") is None or body["agent"]["state"] != "ok":
                        return False
                    return all(c["state"] == "ok" for s in body["streams"] for c in s["stages"]
                               if c["stage"] in ("origin", "cdn", "transcode"))

                body = None
                deadline = time.monotonic() + 90
                while not healthy(body):
                    assert proc.returncode is None, (tmp_path / "agent.log").read_text()[-2000:]
                    assert time.monotonic() < deadline, f"the stream never measured healthy: {body}"
                    await asyncio.sleep(0.5)
                    body = await status()
                assert body["agent"]["state"] == "ok" and body["agent"]["shed_level"] == 0
                before = (await client.get(url + "/api/v1/incidents?state=all")).json()
                assert [i for i in before if i["stream"] != "*"] == []

                starve = asyncio.ensure_future(_starve(proc.pid, time.monotonic() + STARVED_S))

                async def overloaded():
                    with contextlib.suppress(httpx.HTTPError):
                        rows = (await client.get(url + "/api/v1/incidents?state=open")).json()
                        return next((i for i in rows if (i["stream"], i["stage"], i["fault"])
                                     == ("*", "agent", "overloaded")), None)
                    return None

                inc = await wait_for(overloaded, STARVED_S, "the agent's own overloaded incident", every=1.0)
                assert inc["component"] == "agent" and inc["severity"] == "P3"
                assert any("event loop lost" in e for e in inc["evidence"]), inc["evidence"]
                shed_seen = 0.0
                while not starve.done():
                    with contextlib.suppress(httpx.HTTPError):
                        text = (await client.get(url + "/metrics")).text
                        shed_seen = max(shed_seen, _metric(text, "signalpath_agent_shed_level") or 0.0)
                        lag = _metric(text, "signalpath_agent_loop_lag_seconds")
                        assert lag is not None
                    await asyncio.sleep(2.0)
                await starve
                assert shed_seen >= 1, "the agent shed nothing while starved"
                # a few seconds with the CPU back: what the starved minutes left is judged too
                await asyncio.sleep(6)
                rows = (await client.get(url + "/api/v1/incidents?state=all")).json()
                others = [f"{i['stream']} {i['stage']}/{i['component']} {i['fault']}: {i['evidence'][:2]}" for i in rows if i["stream"] != "*"]
                assert others == [], others
                text = (await client.get(url + "/metrics")).text
                assert "signalpath_probe_schedule_lag_seconds{" in text
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            log.close()
