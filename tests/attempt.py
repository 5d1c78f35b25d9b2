"""Calling a probe outside the runner the way the runner calls it.

agent/runner.py's ``Runner.attempt`` tells the probe its deadline (``ctx.deadline =
clock() + target.timeout``) before the call; a probe budgets by the time left to it. Tests
that call a probe directly (to see its own result, not the runner's envelope) do the same
through :func:`call_probe`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from probes.base import ProbeContext, ProbeResult, ProbeTarget


async def call_probe(fn: Callable[[ProbeTarget, ProbeContext], Awaitable[ProbeResult]], target: ProbeTarget,
                     ctx: ProbeContext | None = None) -> ProbeResult:
    """``fn(target, ctx)`` (a fresh context by default) with the deadline the runner would set."""
    ctx = ctx if ctx is not None else ProbeContext(state={})
    ctx.deadline = ctx.clock() + target.timeout
    return await fn(target, ctx)
