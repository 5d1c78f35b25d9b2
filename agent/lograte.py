"""Rate-limited log lines: the same failure logged once per window, not once per attempt.

A probe that meets the same broken input every second (a hostile endpoint, a bug that a
playlist triggers) would otherwise write one line per attempt for as long as it lasts. The
filter passes the first record of a kind, drops the same kind for ``window_s`` (60 s), and
appends to the next one it passes how many it dropped. A kind is the logger, the level, the
message template and its arguments (``"probe %s on %s/%s raised %s"`` with the same probe,
stream, component and exception class): two different failures are never folded together.

Installed on the loggers that write per attempt or per cycle (:data:`RATE_LIMITED_LOGGERS`)
by :func:`install`, once per process (logging is process-wide); the clock is injectable for
tests. The OpenTelemetry exporter's loggers (:data:`TEMPLATE_LIMITED_LOGGERS`) are limited by
template alone: a collector that is down makes them log every batch with a new retry delay
in the arguments (about 45 lines a minute, a fresh user counted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

RATE_LIMITED_LOGGERS = ("signalpath.runner",)
"""Loggers whose lines repeat with every probe attempt or cycle (agent/runner.py)."""
TEMPLATE_LIMITED_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                            "opentelemetry.sdk.trace.export", "opentelemetry.sdk._shared_internal")
"""Library loggers limited by message template, whatever the arguments (see the module docstring)."""
WINDOW_S = 60.0
MAX_KINDS = 1024
"""Kinds remembered at most; past it the memory is cleared (lines then pass once more)."""


class RepeatFilter(logging.Filter):
    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic, *,
                 by_args: bool = True) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.by_args = by_args
        self._kinds: dict[tuple[object, ...], tuple[float, int]] = {}  # kind -> (passed at, dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            kind: tuple[object, ...] = (record.name, record.levelno, record.msg)
            if self.by_args:
                kind += tuple(record.args) if isinstance(record.args, tuple) else (repr(record.args),)
            hash(kind)
        except TypeError:  # unhashable arguments: never dropped
            return True
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is not None and now - seen[0] < self.window_s:
            self._kinds[kind] = (seen[0], seen[1] + 1)
            return False
        if len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} [the same {seen[1]} more time(s) in the last {now - seen[0]:.0f} s]"
        return True


def install(names: tuple[str, ...] = RATE_LIMITED_LOGGERS,
            by_template: tuple[str, ...] = TEMPLATE_LIMITED_LOGGERS) -> None:
    """Add one :class:`RepeatFilter` to each named logger that has none yet (by template alone
    on ``by_template``)."""
    for name, by_args in [*((n, True) for n in names), *((n, False) for n in by_template)]:
        lg = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in lg.filters):
            lg.addFilter(RepeatFilter(by_args=by_args))
