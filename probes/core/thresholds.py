"""Thresholds that more than one probe judges by, each defined once with its source.

A figure used by a single probe stays beside it (its config default, cited in its module
docstring); one that two probes share lives here, so they cannot drift apart. The rows
named are those of ../shared/THRESHOLDS.md. These are defaults: every probe's config can
override them per target.
"""

from __future__ import annotations

__all__ = ["AV_SYNC_FAULT_S", "CLOCK_OFFSET_MAX_S", "CONFIRM_AFTER", "INPUT_STALL_S", "RECHECK_AFTER_S", "RTT_FAULT_S",
           "STALE_FACTOR"]

STALE_FACTOR = 1.5
"""A playlist is stale when it has not advanced for this many target durations.

RFC 8216 §6.3.4: a client reloads a media playlist after one target duration, and one
that has not changed by then is late; oscnord/hls-monitor's "spec-stale" mode uses 1.5 x.
"""

INPUT_STALL_S = STALE_FACTOR * 2.0
"""Seconds without growth of an input counter (nginx-rtmp ``bytes_in``, an encoder's
frame counter) before the input is called stalled: 3 s, :data:`STALE_FACTOR` applied one
stage upstream to a 2-s segment (the lab's and common live packagers' segment length)."""

AV_SYNC_FAULT_S = 0.2
"""|A/V offset| beyond this is an ``av_desync`` fault (THRESHOLDS.md "A/V sync": fault
beyond ±200 ms, broadcast practice; EBU R37's tolerances are tighter)."""

RTT_FAULT_S = 0.2
"""Round-trip time at or above this is red (THRESHOLDS.md "RTT colours": XSplit's ingest
colours, green < 100 ms, yellow 100–200 ms, red ≥ 200 ms)."""

CLOCK_OFFSET_MAX_S = 0.1
"""|clock offset| at or above this makes sub-second latency figures untrustworthy
(THRESHOLDS.md "clock offset": < 100 ms; chrony keeps a few ms over the internet)."""


CONFIRM_AFTER = 0.4
"""x the attempt interval: a finding newly made (a playlist found stale, a manifest behind) asks
for another attempt this long after (the runner starts one at least 0.3 interval after the asking
one: agent/runner.py RECHECK_GAP), so that the second look the localizer opens on comes within
half an interval (probes/hls.py, probes/compare.py)."""

RECHECK_AFTER_S = 0.05
"""An attempt asked for at a threshold (a playlist's stale moment, a manifest's due time) comes
this long after it: the rules are ``age >`` the threshold, and an answer takes a few milliseconds."""
