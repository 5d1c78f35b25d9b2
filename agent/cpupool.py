"""The agent's pool of threads for CPU-bound probe work: segment decoding and pictures.

Why a pool of its own rather than asyncio's default executor (``asyncio.to_thread``): when
every watched stream publishes its segment at the same instant (one packager, aligned
segment boundaries), hundreds of decodes are asked for at once. In the default executor
they queue in front of the loop's other blocking helpers (name resolution for a new
connection: a request that then times out against a healthy origin), and as many threads
as the executor has compete for the GIL with the event loop (each loop wake-up waits up to
``sys.getswitchinterval()`` for it): measured with tests/perf/scale_bench.py at 200
streams on 2 cores, the loop lagged 0.3-0.5 s behind its timers with the default executor.
Decoding holds the GIL only between FFmpeg calls, so one thread per spare CPU is enough.

Owned by the agent (agent/app.py), kept across config reloads, shut down on stop; lent to
the probes as :attr:`probes.base.ProbeContext.cpu_pool` (``await ctx.run_cpu(fn, *args)``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["MAX_AUTO_THREADS", "cpu_pool", "usable_cpus"]

MAX_AUTO_THREADS = 4  # beyond this the GIL, not the CPUs, bounds what decoding threads add


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a cgroup's cpuset or `taskset`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_pool(threads: int = 0) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers; 0: one less than :func:`usable_cpus` (the event loop
    keeps one), at least 1 and at most :data:`MAX_AUTO_THREADS`."""
    n = threads or max(1, min(MAX_AUTO_THREADS, usable_cpus() - 1))
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="signalpath-cpu")
