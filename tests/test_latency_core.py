"""The latency probe's pure core: first-seen brackets, poll cadence, baseline, clock rule, trace."""

from __future__ import annotations

import pytest

from probes.core.latency_core import (
    SEPARATE_TRACE_ATTR,
    Baseline,
    FirstSeenTracker,
    Seen,
    SegmentTiming,
    clock_verdict,
    next_poll_delay,
    segment_trace,
)


def test_first_poll_backlog_is_not_timed_then_new_segments_get_the_bracket_middle():
    tr = FirstSeenTracker()
    assert tr.observe("origin", "180p", [(1, 2.0), (2, 2.0)], 100.0, 100.02) == [(2, None)]
    assert tr.observe("origin", "180p", [(1, 2.0), (2, 2.0)], 100.5, 100.52) == []
    new = tr.observe("origin", "180p", [(2, 2.0), (3, 2.0)], 101.0, 101.02)
    assert [s for s, _ in new] == [3]
    seen = new[0][1]
    assert seen.at == pytest.approx((100.51 + 101.01) / 2)
    assert seen.half_width == pytest.approx(0.25)
    assert tr.expected() == [pytest.approx(seen.at + 2.0)]


def test_a_failed_poll_leaves_the_next_segment_untimed():
    tr = FirstSeenTracker()
    tr.observe("e", "r", [(1, 2.0)], 0.0, 0.0)
    tr.failed("e", "r")
    assert tr.observe("e", "r", [(2, 2.0)], 5.0, 5.0) == [(2, None)]


def test_poll_cadence_is_fast_only_around_expected_arrivals():
    assert next_poll_delay(10.0, [], 0.5, 0.05, 0.3, 1.0) == 0.5
    assert next_poll_delay(10.0, [10.2], 0.5, 0.05, 0.3, 1.0) == 0.05
    assert next_poll_delay(10.0, [10.5], 0.5, 0.05, 0.3, 1.0) == pytest.approx(0.2)
    assert next_poll_delay(12.0, [10.5], 0.5, 0.05, 0.3, 1.0) == 0.5


def test_baseline_flags_a_jump_of_one_second_or_half_the_median():
    b = Baseline(window_s=60, min_samples=3, high_abs_s=1.0, high_ratio=0.5)
    assert b.judge(0, 0.5) == (False, None)
    b.judge(2, 0.6)
    b.judge(4, 0.55)
    assert b.judge(6, 1.4) == (False, 0.55)  # +0.85 s: under the 1-s floor
    high, base = b.judge(8, 2.6)
    assert high and base == pytest.approx(0.575)
    big = Baseline(60, 1, 1.0, 0.5)
    big.judge(0, 10.0)
    assert big.judge(1, 15.5)[0] is True  # over 50 % of a 10-s median
    other = Baseline(60, 1, 1.0, 0.5)
    other.judge(0, 10.0)
    assert other.judge(1, 14.0)[0] is False


def test_baseline_forgets_old_values():
    b = Baseline(window_s=10, min_samples=1, high_abs_s=1.0, high_ratio=0.5)
    b.add(0, 5.0)
    b.add(20, 0.5)
    assert b.median() == 0.5


def test_clock_rule():
    assert clock_verdict(False, None).precision == "ms"
    assert clock_verdict(False, None, skew_seen=True).clock == "skewed"
    assert clock_verdict(True, None).precision == "s"  # unknown offset: whole seconds only
    assert clock_verdict(True, 0.25).clock == "offset"
    v = clock_verdict(True, 0.02)
    assert (v.clock, v.precision) == ("synced", "ms")
    assert clock_verdict(True, 0.25).value(1.46) == 1.0
    assert v.value(1.46) == 1.46


def test_segment_trace_spans_follow_the_measured_timestamps():
    t = SegmentTiming("180p", 7, 2.0, capture_first=100.0, capture_last=101.96, method="beacon")
    t.seen = {"origin": Seen(102.0, 0.02), "edge-a": Seen(102.5, 0.02), "edge-b": Seen(104.0, 0.02)}
    rec = segment_trace("main", t, "origin", ["edge-a", "edge-b"], clock_verdict(False, None))
    assert rec.attributes[SEPARATE_TRACE_ATTR] is True
    assert rec.start_ns == 100_000_000_000 and rec.end_ns == 104_000_000_000
    by = {c.name: c for c in rec.children}
    assert (by["ingest+transcode"].start_ns, by["ingest+transcode"].end_ns) == (101_960_000_000, 102_000_000_000)
    assert by["cdn edge-b"].attributes["signalpath.latency_s"] == 2.0
    assert by["cdn edge-b"].attributes["signalpath.glass_to_glass_s"] == pytest.approx(2.04)
    assert t.upstream() == pytest.approx(0.04) and t.cdn("edge-a") == pytest.approx(0.5)


def test_a_latency_is_high_only_when_its_lower_bound_is():
    """A segment first seen by a poll the agent made late (its bracket 1.6 s wide) is no latency
    of the stream: judged by the earliest it can have appeared; a real rise still counts."""
    b = Baseline(window_s=60, min_samples=3, high_abs_s=1.0, high_ratio=0.5)
    for i in range(3):
        b.judge(float(i), 2.0)  # median 2.0, limit 3.0
    assert b.judge(3.0, 3.5, uncertainty=0.8) == (False, 2.0)  # 2.7 at the earliest
    assert b.judge(4.0, 4.5, uncertainty=0.8)[0] is True  # 3.7 at the earliest
    assert b.judge(5.0, 3.5)[0] is True  # a precise 3.5
