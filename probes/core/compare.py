"""Two manifests of one encode, side by side (pure: no I/O, no clock).

A packager often serves one encode both as HLS and as MPEG-DASH (ffmpeg's dash muxer with
``-hls_playlist 1``, a CMAF packager, nginx-rtmp with ``hls on`` and ``dash on``). A viewer of
either format must see the same media at the same time: the same segments, of the same
durations, on the same timeline, and neither manifest behind the other. This module pairs the
renditions of the two and measures, per pair:

- ``lead_segments`` / ``lead_s``: how far the second manifest's newest segment is ahead of the
  first's (negative: behind), in segments and in media seconds;
- the durations of the segments both list (``duration_mismatch``: the worst difference, seconds);
- ``offset_s``: how far apart the two place the same segment on the wall clock (HLS
  ``EXT-X-PROGRAM-DATE-TIME`` against the MPD's ``availabilityStartTime`` + segment start), the
  median over the segments both list; None when either has no wall-clock times.

Which segments are "the same": where the two list the same segment URIs (one set of files
behind both manifests, as CMAF packagers and ffmpeg write), by URI (``mode="uri"``); otherwise
by wall-clock start (``mode="time"``: a segment of one matches the other's whose start is
within half the shorter of the two durations). Renditions are paired by shared segment URIs,
else by the same resolution, else (the same count of video renditions) in bandwidth order.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from probes.core.playlist import MediaPlaylist, Segment


@dataclass(frozen=True, slots=True)
class Measure:
    """One rendition pair (names as each manifest names them)."""

    first: str
    second: str
    mode: str  # "uri" | "time" | "none" (nothing to line up: no shared URI, no wall-clock times)
    lead_segments: int | None  # the second's newest is this many segments after the first's (< 0: before)
    lead_s: float | None  # the same, media seconds (the segments' durations)
    matched: int  # segments both list
    duration_mismatch: tuple[float, float, float] | None  # (start on the first's timeline or -1, first's, second's) worst
    offset_s: float | None  # median (second's wall-clock start - first's) over matched segments


def pair(first: Mapping[str, MediaPlaylist], second: Mapping[str, MediaPlaylist],
         sizes: Mapping[str, tuple[int, int] | None] | None = None,
         bandwidths: Mapping[str, int | None] | None = None) -> list[tuple[str, str]]:
    """Pairs ``(name in first, name in second)``: shared segment URIs first (the most shared),
    then the same resolution (``sizes``: name -> (width, height)), then, for the renditions left
    when both have as many, bandwidth order. Renditions with nothing to pair are left out."""
    sizes = sizes or {}
    bandwidths = bandwidths or {}
    pairs: list[tuple[str, str]] = []
    left2 = dict(second)
    uris2 = {n: {_key(s) for s in pl.segments} for n, pl in second.items()}
    rest1: list[str] = []
    for n1, pl1 in first.items():
        u1 = {_key(s) for s in pl1.segments}
        best = max(left2, key=lambda n2: len(u1 & uris2[n2]), default=None)
        if best is not None and u1 & uris2[best]:
            pairs.append((n1, best))
            del left2[best]
        else:
            rest1.append(n1)
    for n1 in list(rest1):
        size = sizes.get(n1)
        same = [n2 for n2 in left2 if size is not None and sizes.get(n2) == size]
        if len(same) == 1:
            pairs.append((n1, same[0]))
            del left2[same[0]]
            rest1.remove(n1)
    if rest1 and len(rest1) == len(left2):
        def order(names: list[str]) -> list[str]:
            return sorted(names, key=lambda n: (bandwidths.get(n) or 0, n))
        pairs += list(zip(order(rest1), order(list(left2)), strict=True))
    return pairs


def measure(first_name: str, first: MediaPlaylist, second_name: str, second: MediaPlaylist) -> Measure:
    """Line up two media playlists of one rendition (module docstring)."""
    a, b = first.segments, second.segments
    if not a or not b:
        return Measure(first_name, second_name, "none", None, None, 0, None, None)
    idx_a = {_key(s): i for i, s in enumerate(a)}
    idx_b = {_key(s): i for i, s in enumerate(b)}
    matched = [(a[idx_a[u]], b[i]) for u, i in idx_b.items() if u in idx_a]
    lead_seg: int | None = None
    lead_s: float | None = None
    mode = "none"
    if matched:
        mode = "uri"
        if _key(a[-1]) in idx_b:
            after = b[idx_b[_key(a[-1])] + 1:]
            lead_seg, lead_s = len(after), sum(s.duration for s in after)
        elif _key(b[-1]) in idx_a:
            after = a[idx_a[_key(b[-1])] + 1:]
            lead_seg, lead_s = -len(after), -sum(s.duration for s in after)
    elif a[-1].pdt is not None and b[-1].pdt is not None:
        mode = "time"
        matched = _by_time(a, b)
    if lead_s is None and a[-1].pdt is not None and b[-1].pdt is not None:
        # no shared newest segment (windows apart, or matched by time): the newest ends on the clock
        lead_s = (b[-1].pdt + b[-1].duration) - (a[-1].pdt + a[-1].duration)
        per = max(min(a[-1].duration, b[-1].duration), 1e-3)
        lead_seg = round(lead_s / per)
    worst: tuple[float, float, float] | None = None
    for sa, sb in matched:
        if worst is None or abs(sa.duration - sb.duration) > abs(worst[1] - worst[2]):
            worst = (sa.pdt if sa.pdt is not None else -1.0, sa.duration, sb.duration)
    offsets = [b_t - a_t for sa, sb in matched if (a_t := sa.pdt) is not None and (b_t := sb.pdt) is not None]
    return Measure(first_name, second_name, mode, lead_seg, lead_s, len(matched), worst,
                   statistics.median(offsets) if offsets else None)


def _key(s: Segment) -> tuple[str, tuple[int, int] | None]:
    """A segment's identity across manifests: its URI and byte range (one file, many segments)."""
    return (s.uri, s.byterange)


def _by_time(a: tuple[Segment, ...], b: tuple[Segment, ...]) -> list[tuple[Segment, Segment]]:
    out = []
    j = 0
    for sa in a:
        if (ta := sa.pdt) is None:
            continue
        while j < len(b) and (b[j].pdt or 0.0) + b[j].duration / 2 < ta:
            j += 1
        if j < len(b) and (tb := b[j].pdt) is not None and abs(tb - ta) < min(sa.duration, b[j].duration) / 2:
            out.append((sa, b[j]))
    return out
