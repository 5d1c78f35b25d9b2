"""Chronic conditions: the imperfections a healthy live chain always has (``LabConfig.chronic``).

A real chain is never clean: encoders overshoot the bitrate the packager declares,
contribution links jitter, a CDN edge is slow now and then. With ``LabConfig.chronic``
the lab runs with all three, from the start and for good, so a benchmark can ask
whether the agent still names each injected fault with one incident of its own on top
of them (DESIGN.md "Targets"). Settings and defaults: :class:`agent.lab.config.ChronicConfig`.

- ``bitrate_overshoot`` (stage ``transcode``, the lowest rung by default): the packager
  declares that rung's BANDWIDTH as its measured peak / (1 + ``overshoot``) — the figure
  its encoder was meant to peak at — so its peak segment measures ``overshoot`` (60 %)
  above the declared figure and the others a little less (50-60 % measured), as an
  encoder without a VBV cap overshoots the bitrate its packager was configured with. The encoder itself is unchanged (the lab's CPU too).
  The media probe reports ``bitrate_over_declared`` (more than 10 % over, RFC 8216
  §4.3.4.2; probes/core/media_analysis.py), a P3 finding at ``transcode``/<rung>.
- ``publish_jitter`` (stage ``ingest``): the ingest hands each frame's packets on after
  an extra delay drawn uniformly from [0, ``jitter_max_s``] (0.4 s), order kept as on a
  TCP contribution link. Below every threshold: ``ingest_latency`` adds 2 s, and a
  latency is high only 1 s above its baseline (probes/core/latency_core.py).
- ``slow_edge`` (stage ``cdn``): every 30-60 s one edge, picked at random, sends
  segments (not playlists) at ``slow_edge_bytes_per_s`` for 3-6 s: visible in the
  segment download ratio, below the ratio of 1 that makes a segment slow (THRESHOLDS.md).

Ground truth: these are not faults. The fault book (agent/lab/faults.py) never records
them; :meth:`ChronicConditions.state` — served as ``GET /chronic`` and in ``GET /truth``
under ``chronic`` — lists each with its place and the finding the agent should report
(``finding``: a fault name, or None where every figure stays below its threshold).
Every random draw comes from ``ChronicConfig.seed`` (one generator per condition), so
two runs with the same seed jitter alike and slow the same edges at the same offsets.

Pure and synchronous; the clock is passed in.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .config import LabConfig


@dataclass(slots=True)
class SlowEpisode:
    """One edge slow from ``start`` to ``end`` (epoch seconds)."""

    edge: str
    start: float
    end: float
    bytes_per_s: float
    segments: int = 0  # segments the edge sent slowly during the episode

    def to_json(self) -> dict[str, Any]:
        return {"edge": self.edge, "start": self.start, "end": self.end, "bytes_per_s": self.bytes_per_s,
                "segments": self.segments}


class SlowEdgeSchedule:
    """Which edge is slow when: episodes drawn one after the other from ``rng``.

    The first starts ``every_s`` after ``start``; each next one ``every_s`` after the start
    of the one before (``for_s`` is shorter than ``every_s``, so they never overlap).
    """

    def __init__(self, edges: Iterable[str], every_s: tuple[float, float], for_s: tuple[float, float],
                 bytes_per_s: float, rng: random.Random, start: float, keep: int = 20) -> None:
        self._edges = tuple(edges)
        self._every = every_s
        self._for = for_s
        self._rate = bytes_per_s
        self._rng = rng
        self.past: collections.deque[SlowEpisode] = collections.deque(maxlen=keep)
        self._next = self._draw(start) if self._edges else None

    def _draw(self, after: float) -> SlowEpisode:
        start = after + self._rng.uniform(*self._every)
        edge = self._rng.choice(self._edges)
        return SlowEpisode(edge, start, start + self._rng.uniform(*self._for), self._rate)

    def at(self, now: float) -> SlowEpisode | None:
        """The episode in effect at ``now``, if any (``now`` never goes back)."""
        if self._next is None:
            return None
        while now >= self._next.end:
            self.past.append(self._next)
            self._next = self._draw(self._next.start)
        return self._next if now >= self._next.start else None

    def upcoming(self, now: float) -> SlowEpisode | None:
        """The episode in effect or the next one."""
        self.at(now)
        return self._next


class ChronicConditions:
    """The chronic conditions of one lab: their random draws and their ground truth."""

    def __init__(self, cfg: LabConfig) -> None:
        c = cfg.chronic_settings
        self.settings = c
        self.rendition = c.overshoot_target(cfg.renditions)
        self._edges = cfg.edges
        self._jitter_rng = random.Random(f"{c.seed}/publish-jitter")
        self.slow: SlowEdgeSchedule | None = None
        self.last_jitter_s: float | None = None
        self.max_jitter_s = 0.0
        self.jittered = 0

    def start(self, now: float) -> None:
        """The lab starts: the slow-edge schedule counts from ``now``."""
        c = self.settings
        self.slow = SlowEdgeSchedule(self._edges, c.slow_edge_every_s, c.slow_edge_for_s, c.slow_edge_bytes_per_s,
                                     random.Random(f"{c.seed}/slow-edge"), now)

    @property
    def overshoot(self) -> dict[str, float]:
        """rendition -> how far its segments run above its declared BANDWIDTH (for the packager)."""
        return {self.rendition: self.settings.overshoot}

    def jitter(self) -> float:
        """The extra hand-on delay of the next frame, seconds."""
        j = self._jitter_rng.uniform(0.0, self.settings.jitter_max_s)
        self.last_jitter_s = j
        self.max_jitter_s = max(self.max_jitter_s, j)
        self.jittered += 1
        return j

    def edge_rate(self, edge: str, now: float) -> float | None:
        """The send rate (bytes/s) of a segment ``edge`` starts sending at ``now``; None: full speed."""
        ep = self.slow.at(now) if self.slow is not None else None
        if ep is None or ep.edge != edge:
            return None
        ep.segments += 1
        return ep.bytes_per_s

    def state(self, now: float, declared_bps: int | None, last_segment_bps: int | None) -> dict[str, Any]:
        """Ground truth (JSON): each condition, where it acts, and the finding it should raise."""
        c = self.settings
        active = self.slow.at(now) if self.slow is not None else None
        upcoming = self.slow.upcoming(now) if self.slow is not None else None
        return {
            "enabled": True,
            "seed": c.seed,
            "conditions": [
                {"name": "bitrate_overshoot", "stage": "transcode", "component": self.rendition,
                 "finding": "bitrate_over_declared", "severity": "P3", "overshoot": c.overshoot,
                 "declared_bps": declared_bps, "last_segment_bps": last_segment_bps},
                {"name": "publish_jitter", "stage": "ingest", "component": "ingest", "finding": None,
                 "max_s": c.jitter_max_s, "last_s": self.last_jitter_s, "max_seen_s": self.max_jitter_s,
                 "frames": self.jittered},
                {"name": "slow_edge", "stage": "cdn", "component": active.edge if active else None,
                 "finding": None, "bytes_per_s": c.slow_edge_bytes_per_s, "every_s": list(c.slow_edge_every_s),
                 "for_s": list(c.slow_edge_for_s), "active": active.to_json() if active else None,
                 "next": upcoming.to_json() if upcoming is not None and upcoming is not active else None,
                 "episodes": [e.to_json() for e in self.slow.past] if self.slow is not None else []},
            ],
        }

