"""The agent's pool for CPU-bound probe work: segment decoding (media analysis, latency beacons).

Why a pool of its own rather than asyncio's default executor (``asyncio.to_thread``): when
every watched stream publishes its segment at the same instant (one packager, aligned
segment boundaries), hundreds of decodes are asked for at once. In the default executor
they queue in front of the loop's other blocking helpers (name resolution for a new
connection: a request that then times out against a healthy origin).

Why processes (``agent.cpu_isolation: process``, the default) rather than threads: decoding
holds the GIL between FFmpeg calls (per packet, per frame: demuxing from memory, numpy), so
decoding threads and the event loop take turns at it, each turn up to
``sys.getswitchinterval()`` (5 ms) long. Measured with tests/perf/scale_bench.py at 200
streams on 2 cores: with the default executor's six threads the event loop lagged 0.3-0.5 s
behind its timers; with one thread, decodes starved behind the busy loop queued past the
media probe's 10-s deadline. A worker process shares no GIL: the loop keeps its core, the
decodes theirs. What crosses over is small: the segment's bytes in; the downscaled luma
pictures, the audio samples and a 160-px picture out. A worker that dies (a decoder crash
on a hostile segment) fails that decode only: the pool is made again for the next
(:class:`CpuPool`), the agent goes on. ``thread`` keeps everything in the agent's process
(a platform without ``spawn``; or to read one profile).

Owned by the agent (agent/app.py), kept across config reloads, shut down on stop; lent to
the probes as :attr:`probes.base.ProbeContext.cpu_pool` (``await ctx.run_cpu(fn, *args)``:
``fn`` and its arguments are pickled, so ``fn`` is a module-level function).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

__all__ = ["MAX_AUTO_WORKERS", "CpuPool", "usable_cpus"]

log = logging.getLogger("signalpath.cpupool")

MAX_AUTO_WORKERS = 4


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask: a cgroup's cpuset or `taskset`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _worker_init() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the agent stops its workers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CpuPool(Executor):
    """``workers`` processes (or threads, ``isolation='thread'``); 0 workers: one less than
    :func:`usable_cpus` (the event loop keeps one), 1 to :data:`MAX_AUTO_WORKERS`. Workers
    start on first use. ``remade`` counts the times a dead worker broke the pool and it was
    made again."""

    def __init__(self, workers: int = 0, isolation: Literal["process", "thread"] = "process") -> None:
        self.workers = workers or max(1, min(MAX_AUTO_WORKERS, usable_cpus() - 1))
        self.isolation = isolation
        self.remade = 0
        self._lock = threading.Lock()
        self._pool = self._make()

    def _make(self) -> Executor:
        if self.isolation == "thread":
            return ThreadPoolExecutor(self.workers, thread_name_prefix="signalpath-cpu")
        # spawn, not fork: the agent has threads (a forked child may inherit a held lock)
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                broken, self._pool = self._pool, self._make()
                self.remade += 1
                log.warning("a decoding worker process died: its pool is made again (%d so far)", self.remade)
            broken.shutdown(wait=False, cancel_futures=True)
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
