"""agent/gctune.py: the agent process's collector settings, and that cycles are still freed."""

from __future__ import annotations

import gc
import weakref

from agent.gctune import GEN0_THRESHOLD, tuned_gc


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_collector_is_tuned_while_the_loop_runs_and_restored_after() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    with tuned_gc():
        assert gc.get_threshold() == (GEN0_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > frozen_before  # what start-up made is out of every pass
        assert gc.isenabled()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cyclic_garbage_made_while_tuned_is_still_collected_without_an_explicit_collect() -> None:
    with tuned_gc(gen0=2_000):
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        dead = weakref.ref(a)
        del a, b
        assert dead() is not None  # a cycle: reference counting alone does not free it
        live: list[list[list[object]]] = []
        for _ in range(50):  # net allocations past several young thresholds
            live.append([[] for _ in range(200)])
            if dead() is None:
                break
        assert dead() is None
