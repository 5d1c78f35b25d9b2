"""The cyclic garbage collector, tuned for the agent's process (``signalpath run``, ``demo``).

CPython's collector runs a young-generation pass every 700 net container allocations and a
full pass when enough objects have outlived two young passes. The agent's hot path allocates
hundreds of thousands of short-lived objects a second (responses, parsed playlists, results,
samples), many of them still in flight at a pass: they are promoted, die soon after, and their
number soon calls for a full pass over every object the agent holds (~350-400 k at 200
streams). Measured with tests/perf/scale_bench.py at 200 streams on 2 cores (gc.callbacks
timing each pass): with the defaults (700, 10, 10) the collector took 0.32 of a core (3.2 s
of every 10 s, ~7 full passes of ~0.2 s each every 10 s: the event loop's longest stalls).

What :func:`tuned_gc` does for the life of the loop:

- ``gc.freeze()`` first: what exists once the config is loaded and the modules imported
  (code, config, the libraries' tables) is moved out of every later pass; it lives as long
  as the process anyway;
- young passes every :data:`GEN0_THRESHOLD` allocations instead of 700, so an object in
  flight at one pass (a response being read) has usually died by the next one instead of
  being promoted; the older generations keep CPython's own ratios (10, 10), and CPython
  still skips a full pass until the objects promoted since the last one reach 25 % of
  those that survived it. Cycles are still collected (the agent makes some: exceptions
  with tracebacks, futures), only in fewer, larger young passes: memory stays bounded
  (the soak benchmark, tests/perf/soak.py, watches it).

The previous thresholds are restored and the frozen objects returned to the collector on
exit: an agent run inside another program (the tests) leaves its collector as it found it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["GEN0_THRESHOLD", "tuned_gc"]

GEN0_THRESHOLD = 50_000
"""Net container allocations between two young passes (CPython's default is 700); the
measurement in the module docstring."""


@contextlib.contextmanager
def tuned_gc(gen0: int = GEN0_THRESHOLD) -> Iterator[None]:
    """Freeze what exists, young passes every ``gen0`` allocations; restored on exit."""
    before = gc.get_threshold()
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(gen0, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
