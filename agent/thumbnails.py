"""Thumbnails: the newest picture of each analysed rendition, and the picture that showed a fault.

A :class:`~agent.runner.CycleSink` beside the others: from each media probe result
(probes/media.py ``ProbeResult.thumbnails``, a small JPEG of the last picture of each analysed
segment) it keeps, per stream and rendition, the newest picture and, per content fault that
segment showed (black, frozen...), the newest picture that showed it — what the status page
puts on a content incident. Memory only, never written to disk; bounded: one picture per
rendition plus one per content fault, a few kB each, for the configured streams only
(:meth:`ThumbnailBook.keep_only` on a reload).

Served as ``GET /api/v1/thumbnails`` (the index, with ages) and
``GET /api/v1/thumbnails/{stream}/{rendition}.jpg`` (``/{fault}.jpg`` for a fault's picture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from agent.localize import rfc3339
from agent.runner import Cycle
from probes.base import Thumbnail


class ThumbnailBook:
    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], Thumbnail] = {}
        self._fault: dict[tuple[str, str, str], Thumbnail] = {}

    def on_cycle(self, cycle: Cycle) -> None:
        if cycle.job.probe != "media":
            return
        stream = cycle.job.stream
        with self._lock:
            for a in cycle.attempts:
                for rendition, th in a.result.thumbnails.items():
                    self._latest[(stream, rendition)] = th
                    for fault in th.faults:
                        self._fault[(stream, rendition, fault)] = th

    def keep_only(self, streams: Iterable[str]) -> None:
        keep = set(streams)
        with self._lock:
            self._latest = {k: v for k, v in self._latest.items() if k[0] in keep}
            self._fault = {k: v for k, v in self._fault.items() if k[0] in keep}

    def get(self, stream: str, rendition: str, fault: str | None = None) -> Thumbnail | None:
        with self._lock:
            return self._latest.get((stream, rendition)) if fault is None else \
                self._fault.get((stream, rendition, fault))

    def index(self) -> list[dict[str, Any]]:
        """Every picture kept: ``{stream, rendition, at, age_s, seq, url, faults: {fault: {url, at, seq}}}``."""
        now = self._wall()
        with self._lock:
            latest = sorted(self._latest.items())
            faults = sorted(self._fault.items())
        out = []
        for (stream, rendition), th in latest:
            base = f"/api/v1/thumbnails/{stream}/{rendition}"
            out.append({"stream": stream, "rendition": rendition, "at": rfc3339(th.at),
                        "age_s": round(max(0.0, now - th.at), 1), "seq": th.seq, "bytes": len(th.jpeg),
                        "url": f"{base}.jpg?seq={th.seq}",
                        "faults": {f: {"url": f"{base}/{f}.jpg?seq={t.seq}", "at": rfc3339(t.at), "seq": t.seq}
                                   for (s, r, f), t in faults if (s, r) == (stream, rendition)}})
        return out


__all__ = ["ThumbnailBook"]
