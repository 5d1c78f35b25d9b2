"""Pure WebRTC statistics cores of the WHIP/WHEP probes (no I/O; fed numbers and times):

- :class:`FreezeCounter`: the W3C webrtc-stats ``freezeCount`` rule (an inter-frame gap
  >= max(3 x average frame duration, average + 150 ms), libwebrtc's 30-gap average);
  and :meth:`FreezeCounter.viewer_visible`, whether they are long enough for a viewer to see
  (:data:`VISIBLE_FREEZE_S`, Agora's 500 ms);
- :func:`jitter_seconds`: RFC 3550 §6.4.1 interarrival jitter from RTP timestamp units
  (aiortc reports video jitter in units of the 90 kHz clock);
- :func:`fraction_lost_ratio`: RFC 3550 §6.4.1 ``fraction lost`` (8-bit fixed point) as 0-1.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

VIDEO_CLOCK_RATE = 90_000

VISIBLE_FREEZE_S = 0.5
"""Seconds of freeze a viewer sees: Agora's ``RemoteVideoStats.totalFrozenTime`` counts a
freeze when two renderable frames are more than 500 ms apart (at 5 fps or more). The W3C
``freezeCount`` rule fires from ~190 ms at 25 fps, a hiccup that a loaded sender or a
receiver's jitter buffer makes now and then on a healthy stream; it stays a counted
figure, and the fault needs a freeze (or freezes together) of this length."""


@dataclass(slots=True)
class FreezeCounter:
    """W3C webrtc-stats ``freezeCount``: a frame is "frozen" when the gap since the
    previous frame is ≥ max(3 × average frame duration, average + 150 ms); the average
    is over the last ``window`` inter-frame gaps that were not freezes (libwebrtc's
    30). No judgement before ``min_frames`` gaps are known. Fed arrival times (s)."""

    window: int = 30
    min_frames: int = 5
    freezes: int = 0
    freeze_seconds: float = 0.0
    frames: int = 0
    first: float | None = None
    last: float | None = None
    _gaps: deque[float] = field(default_factory=lambda: deque(maxlen=30))
    spans: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))
    """(start, end) of the most recent freezes (arrival times), for attribution."""

    def threshold(self) -> float | None:
        if len(self._gaps) < self.min_frames:
            return None
        avg = sum(self._gaps) / len(self._gaps)
        return max(3 * avg, avg + 0.150)

    def frame(self, t: float) -> bool:
        """Record a frame at ``t``; True when it ended a freeze."""
        self.frames += 1
        if self.first is None or self.last is None:  # set together: the first frame
            self.first = self.last = t
            return False
        gap = t - self.last
        self.last = t
        limit = self.threshold()
        if limit is not None and gap >= limit:
            self.freezes += 1
            self.freeze_seconds += gap
            self.spans.append((t - gap, t))
            return True
        self._gaps.append(gap)
        return False

    def finish(self, t: float) -> None:
        """End of observation at ``t``: a freeze still going on counts too."""
        limit = self.threshold()
        if self.last is not None and limit is not None and t - self.last >= limit:
            self.freezes += 1
            self.freeze_seconds += t - self.last
            self.spans.append((self.last, t))
            self.last = t

    def discount(self, stalled: Callable[[float, float], float]) -> int:
        """Take out the freezes that were the observer's: ``stalled(t0, t1)`` gives the longest
        stretch in which the observer itself could not run; a freeze half of which it covers is
        not the stream's. Returns how many were taken out."""
        mine = [(a, b) for a, b in self.spans if stalled(a, b) >= 0.5 * (b - a)]
        for a, b in mine:
            self.freezes -= 1
            self.freeze_seconds -= b - a
            self.spans.remove((a, b))
        return len(mine)

    @property
    def longest(self) -> float:
        """Seconds of the longest freeze still counted (of the last 64), 0.0 without one."""
        return max((b - a for a, b in self.spans), default=0.0)

    def viewer_visible(self, min_s: float = VISIBLE_FREEZE_S) -> bool:
        """Whether the counted freezes are ones a viewer sees: one lasted ``min_s`` or more,
        or together they did (a stutter of short ones). See :data:`VISIBLE_FREEZE_S`."""
        return self.freezes > 0 and (self.longest >= min_s or self.freeze_seconds >= min_s)

    @property
    def fps(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.frames - 1) / (self.last - self.first)


def jitter_seconds(rtp_units: float, clock_rate: int = VIDEO_CLOCK_RATE) -> float:
    """RFC 3550 §6.4.1 interarrival jitter, given in RTP timestamp units, in seconds."""
    return float(rtp_units) / clock_rate


def fraction_lost_ratio(fixed_point: float) -> float:
    """RFC 3550 §6.4.1 ``fraction lost`` (8-bit fixed point, /256) as 0-1."""
    return max(0.0, min(1.0, float(fixed_point) / 256.0))
