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
decodes theirs. What crosses over is small: a segment's bytes and its analyser's state (a
few kB) in; findings, that state and, when a thumbnail is due, a 160-px picture out.

A worker that dies (a decoder crash on a hostile segment) breaks the pool: every job in it
fails at once. The jobs that may have been running then (the oldest ``workers`` of those
outstanding: the pool runs them in order) fail with :class:`BrokenProcessPool`; every other
is submitted again to a pool made anew (:class:`CpuPool`), up to :data:`MAX_RESUBMITS` times
(each crash of a batch with several hostile segments in it): a hostile segment costs itself and
at most the jobs running beside it, not the decodes queued behind it.

A job submitted (by the event loop, or resubmitted) at the instant its pool breaks can be lost
by CPython's pool (3.11-3.13: its manager thread fails the jobs it listed when the pool broke,
then forgets them all; iterating that list while another thread adds to it even kills the
manager thread with ``dictionary changed size during iteration``). Two guards: the pool's list
of jobs is iterated over a copy (:class:`_PendingWorkItems`, shared with its call queue, which
answers a job it cannot pickle from it), and once a broken pool's manager thread has ended,
every job of that pool still unanswered fails with :class:`_LostJob` (never run: always
resubmitted). A pool is taken for broken only when it says so (a job that raises
``BrokenProcessPool`` itself breaks nothing), and a submit that finds its pool marked broken
just after it (an idle worker killed) has it made anew at once, its reaper then answering the
job: no decode waits for an answer that cannot come.

Workers ignore SIGINT and SIGTERM (a terminal's
Ctrl-C and systemd's stop reach the whole group: the agent stops them itself, after its
probes) and exit on their own when the agent is gone. ``thread`` keeps everything in the
agent's process.

Owned by the agent (agent/app.py), kept across config reloads, shut down on stop; lent to
the probes as :attr:`probes.base.ProbeContext.cpu_pool` (``await ctx.run_cpu(fn, *args)``:
``fn`` and its arguments are pickled, so ``fn`` is a module-level function).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Literal

__all__ = ["MAX_AUTO_WORKERS", "MAX_RESUBMITS", "CpuPool", "usable_cpus"]

log = logging.getLogger("signalpath.cpupool")

MAX_AUTO_WORKERS = 4
PARENT_CHECK_S = 1.0  # a worker whose agent died notices within this
MAX_RESUBMITS = 3
"""Times a job queued behind crashing ones is submitted again (one crash each) before it fails too."""
REAP_WAIT_S = 30.0
"""The longest wait for a broken pool's manager thread to answer its jobs before the rest are failed."""


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (a cpuset, `taskset`), and at most its
    cgroup v2 CPU quota rounded up (``cpu.max``: a container's ``--cpus``, systemd's
    ``CPUQuota=``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, math.ceil(quota))) if quota is not None else n


def _cgroup_quota(proc_self: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs' worth of this process's cgroup v2 quota (``cpu.max``), None without one."""
    try:
        lines = Path(proc_self).read_text().splitlines()
        path = next(line.split("::", 1)[1].strip() for line in lines if line.startswith("0::"))
        quota, period = (Path(root) / path.lstrip("/") / "cpu.max").read_text().split()[:2]
    except (OSError, StopIteration, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def _worker_init(parent: int) -> None:
    # Ctrl-C in a terminal and systemd's stop reach the whole process group: the agent stops its
    # workers itself, after its probes; one whose agent is gone (killed) exits on its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


class CpuPool(Executor):
    """``workers`` processes (or threads, ``isolation='thread'``); 0 workers: one less than
    :func:`usable_cpus` (the event loop keeps one), 1 to :data:`MAX_AUTO_WORKERS`. Workers
    start on first use. ``remade`` counts the times a dead worker broke the pool and it was
    made again; ``resubmitted`` the jobs submitted again after that."""

    def __init__(self, workers: int = 0, isolation: Literal["process", "thread"] = "process") -> None:
        self.workers = workers or max(1, min(MAX_AUTO_WORKERS, usable_cpus() - 1))
        self.isolation = isolation
        self.remade = 0
        self.resubmitted = 0
        self._lock = threading.Lock()
        self._closed = False
        self._seq = 0
        self._generation = 0
        self._outstanding: dict[int, int] = {}  # job number -> the pool generation it runs in
        self._inner: dict[int, Future[Any]] = {}  # job number -> its future in that pool
        self._suspects: dict[int, frozenset[int]] = {}  # broken generation -> jobs that may have killed it
        self._managers: dict[int, Any] = {}  # generation -> its pool's manager thread (shutdown() forgets it)
        self._pool = self._make()

    def _make(self) -> Executor:
        if self.isolation == "thread":
            return ThreadPoolExecutor(self.workers, thread_name_prefix="signalpath-cpu")
        # spawn, not fork: the agent has threads (a forked child may inherit a held lock)
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
        if type(getattr(pool, "_pending_work_items", None)) is dict:  # before its manager thread takes it
            pool._pending_work_items = _PendingWorkItems()
            call_queue = getattr(pool, "_call_queue", None)
            if call_queue is not None and hasattr(call_queue, "pending_work_items"):
                call_queue.pending_work_items = pool._pending_work_items  # its feeder's pickling errors
        return pool

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        outer: Future[Any] = Future()
        self._submit(outer, fn, args, kwargs, retries=MAX_RESUBMITS)
        return outer

    def _submit(self, outer: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                retries: int) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._seq += 1
            seq = self._seq
            pool = self._pool
            try:
                inner = pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:  # broken since the last job failed: make it again
                self._remake()
                pool = self._pool
                inner = pool.submit(fn, *args, **kwargs)
            self._outstanding[seq] = self._generation
            self._inner[seq] = inner
            manager = getattr(pool, "_executor_manager_thread", None)  # shutdown(wait=False) forgets it
            if manager is not None:
                self._managers.setdefault(self._generation, manager)
            if getattr(pool, "_broken", False):  # its manager marked it broken during this submit
                self._remake()  # its reaper answers this job if the manager listed it too late

        def done(f: Future[Any]) -> None:
            exc = None if f.cancelled() else f.exception()
            resubmit = False
            with self._lock:
                generation = self._outstanding.get(seq, self._generation)
                if isinstance(exc, BrokenProcessPool):
                    suspects = self._suspects.get(generation)
                    if suspects is None:  # the first failure of that pool: who was running then
                        running = sorted(s for s, g in self._outstanding.items() if g == generation)
                        suspects = self._suspects[generation] = frozenset(running[:self.workers])
                        if generation == self._generation and getattr(self._pool, "_broken", False):
                            if self._closed:
                                self._reap_later(self._generation, self._pool)
                            else:
                                self._remake()  # now: its lost jobs are looked for once its manager ends
                    resubmit = retries > 0 and (seq not in suspects or isinstance(exc, _LostJob)) and not self._closed
                self._outstanding.pop(seq, None)
                self._inner.pop(seq, None)
            if resubmit:
                self.resubmitted += 1
                try:
                    self._submit(outer, fn, args, kwargs, retries=retries - 1)
                    return
                except RuntimeError as again:
                    exc = again
            if f.cancelled():
                if outer.cancel():
                    outer.set_running_or_notify_cancel()  # else wait()/as_completed() never count it
                return
            if not outer.set_running_or_notify_cancel():  # its caller gave up on it
                return
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(f.result())

        inner.add_done_callback(done)

    def _remake(self) -> None:
        """Replace the broken pool (the caller holds the lock); its unanswered jobs are failed once
        its manager thread has ended (:meth:`_reap`)."""
        broken, self._pool = self._pool, self._make()
        self._reap_later(self._generation, broken)
        self._generation += 1
        self.remade += 1
        self._suspects = {g: s for g, s in self._suspects.items() if g >= self._generation - 2}
        log.warning("a decoding worker process died: its pool is made again (%d so far)", self.remade)
        _kill_workers(broken)  # they ignore the SIGTERM the broken pool sends them
        broken.shutdown(wait=False, cancel_futures=True)

    def _reap_later(self, generation: int, pool: Executor) -> None:
        manager = self._managers.pop(generation, None) or getattr(pool, "_executor_manager_thread", None)
        threading.Thread(target=self._reap, args=(generation, manager), name="signalpath-cpu-reap",
                         daemon=True).start()

    def _reap(self, generation: int, manager: threading.Thread | None) -> None:
        if isinstance(manager, threading.Thread) and manager is not threading.current_thread():
            manager.join(REAP_WAIT_S)
        with self._lock:
            lost = [self._inner[s] for s, g in self._outstanding.items() if g == generation and s in self._inner]
        lost = [f for f in lost if not f.done()]
        if lost:
            log.warning("a broken decoding pool lost %d job(s): they are failed or run again", len(lost))
        for f in lost:
            with contextlib.suppress(InvalidStateError):  # answered meanwhile
                f.set_exception(_LostJob("the worker pool broke while this job was submitted"))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def terminate(self) -> None:
        """Kill the worker processes now (a decode that does not end: a stop that cannot wait)."""
        with self._lock:
            self._closed = True
            pool = self._pool
        _kill_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)


class _LostJob(BrokenProcessPool):
    """A job its broken pool never answered: it never reached a worker (not a suspect)."""


class _PendingWorkItems(dict[int, Any]):
    """A process pool's jobs by number, iterated over a copy: CPython's manager thread iterates
    them when its pool breaks (``terminate_broken``) while a submit from another thread may add
    one (python/cpython 3.11-3.13: the iteration raised and the manager thread died)."""

    def items(self) -> list[tuple[int, Any]]:  # type: ignore[override]
        return list(super().items())


def _kill_workers(pool: Executor) -> None:
    """SIGKILL a process pool's workers (Python 3.14: ``terminate_workers()``); threads: nothing."""
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            p.kill()
