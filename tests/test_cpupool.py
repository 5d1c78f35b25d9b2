"""The agent's CPU pool (agent/cpupool.py): decoding in worker processes, a dead worker costs
one job, the wait for the pool is the agent's own time (agent/runner.py)."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures.process import BrokenProcessPool

import psutil
import pytest

from agent.cpupool import CpuPool, usable_cpus
from agent.runner import Runner
from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, State
from probes.faults import Fault


def test_jobs_run_in_another_process_and_a_dead_worker_costs_only_its_own_job():
    pool = CpuPool(1)
    try:
        worker = pool.submit(os.getpid).result(timeout=60)
        assert worker != os.getpid()  # no GIL shared with the agent's event loop
        with pytest.raises(BrokenProcessPool):
            pool.submit(os._exit, 3).result(timeout=60)  # a decoder that crashes takes its worker with it
        again = pool.submit(os.getpid).result(timeout=60)
        assert again not in (os.getpid(), worker) and pool.remade == 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert not psutil.pid_exists(again) or psutil.Process(again).status() == psutil.STATUS_ZOMBIE


def test_the_default_size_leaves_the_event_loop_a_cpu():
    pool = CpuPool(0, "thread")
    try:
        assert pool.workers == max(1, min(4, usable_cpus() - 1))
        assert pool.submit(os.getpid).result(timeout=10) == os.getpid()  # 'thread': in the agent's process
    finally:
        pool.shutdown()


@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_a_deadline_reached_waiting_for_the_cpu_pool_is_not_the_servers_timeout(isolation: str):
    """One worker busy with a long job: an attempt whose decode waits behind it runs into its
    deadline. That is the agent's own queue: its timeout is not measured (UNKNOWN, the agent
    behind), not a P1 against the origin it was reading."""
    pool = CpuPool(1, isolation)  # type: ignore[arg-type]
    try:
        runner = Runner([], [], cpu_pool=pool)

        async def decoding(t: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
            await ctx.run_cpu(time.sleep, 0.2)
            r = ProbeResult()
            r.evidence = [Evidence("origin", t.component, State.OK, None, "decoded")]
            return r

        target = ProbeTarget(probe="fake", stream="main", stage="origin", component="origin", config=None,
                             timeout=5.0)
        first = await runner.attempt(decoding, target)  # the worker is up (a process starts in ~0.5 s)
        assert first.result.evidence[0].state is State.OK
        busy = asyncio.get_running_loop().run_in_executor(pool, time.sleep, 1.5)
        cut = await runner.attempt(decoding, ProbeTarget(probe="fake", stream="main", stage="origin",
                                                         component="origin", config=None, timeout=0.6))
        [ev] = cut.result.evidence
        assert ev.state is State.UNKNOWN and ev.fault is Fault.TIMEOUT, ev
        assert "CPU pool" in ev.detail and cut.result.failure is Failure.AGENT_BEHIND
        await busy
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
