"""The latency probe's pure core: first-seen brackets, poll cadence, baseline, clock rule, trace."""

from __future__ import annotations

import pytest

from probes.core.latency_core import (
    CAUGHT_UP_POLL_S,
    PART_KEY,
    SEPARATE_TRACE_ATTR,
    Baseline,
    FirstSeenTracker,
    Seen,
    SegmentTiming,
    clock_verdict,
    edge_poll_delay,
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


def test_a_held_reload_answer_is_the_arrival_and_its_first_answer_is_backlog():
    """LL-HLS (RFC 8216bis §6.2.5.2): the server holds a blocking reload until the part exists,
    so its answer is the part's arrival — no poll bracket; the first answer's backlog is not news."""
    tr = FirstSeenTracker()
    first = Seen(100.0, 0.002)
    assert tr.observe_at("origin", "180p", [7 * PART_KEY + 1, 7 * PART_KEY + 2], first) == [(7 * PART_KEY + 2, None)]
    at = Seen(100.52, 0.002)
    assert tr.observe_at("origin", "180p", [7 * PART_KEY + 2, 7 * PART_KEY + 3], at) == [(7 * PART_KEY + 3, at)]
    assert tr.observe_at("origin", "180p", [7 * PART_KEY + 3], Seen(101.0, 0.002)) == []  # nothing new
    assert tr.expected() == []  # watched by its own reloads: no fast polls scheduled for it
    # the next segment's part 0 sorts after the last part of the one before
    assert tr.observe_at("origin", "180p", [8 * PART_KEY], at) == [(8 * PART_KEY, at)]


def test_a_part_is_labelled_by_segment_and_index():
    t = SegmentTiming("180p", 12, 0.52, part=3)
    assert (t.unit, t.label) == (12 * PART_KEY + 3, "12.3")
    assert (SegmentTiming("180p", 12, 2.0).unit, SegmentTiming("180p", 12, 2.0).label) == (12, "12")


def test_a_failed_poll_leaves_the_next_segment_untimed():
    tr = FirstSeenTracker()
    tr.observe("e", "r", [(1, 2.0)], 0.0, 0.0)
    tr.failed("e", "r")
    assert tr.observe("e", "r", [(2, 2.0)], 5.0, 5.0) == [(2, None)]


def test_poll_cadence_is_fast_only_around_expected_arrivals():
    """(opens, due) windows: fast from the opening until lag past due; before it one guard poll
    at due - lead when the window opens later, else none until it opens; slow with no window or
    past it."""
    args = (0.5, 0.05, 0.3, 1.0)
    assert next_poll_delay(10.0, [], *args) == 0.5
    assert next_poll_delay(10.0, [(9.9, 10.2)], *args) == 0.05
    assert next_poll_delay(10.0, [(10.2, 10.5)], *args) == pytest.approx(0.2)  # opens at due - lead: no guard
    assert next_poll_delay(8.0, [(10.4, 10.5)], *args) == pytest.approx(2.2)  # the guard poll at due - lead
    assert next_poll_delay(10.2, [(10.4, 10.5)], *args) == pytest.approx(0.2)  # guard done: the opening
    assert next_poll_delay(10.42, [(10.4, 10.5)], *args) == 0.05
    assert next_poll_delay(12.0, [(10.2, 10.5)], *args) == 0.5  # late past its lag: slow


def test_the_fast_window_opens_where_past_arrivals_fell_against_their_prediction():
    """Due = the newest arrival + its EXTINF; the window opens one fast poll before the earliest
    recent error would place the arrival, and never more than lead before due (nor before any
    error is known)."""
    tr = FirstSeenTracker()
    tr.observe("origin", "r", [(1, 2.0)], 0.0, 0.0)
    assert tr.windows("origin", 0.3, 0.05) == [(pytest.approx(1.7), pytest.approx(2.0))]  # no errors yet
    at = 0.0
    for seq in range(2, 7):  # each segment comes 0.1 s after its prediction, seen within 0.05 s
        at += 2.1
        tr.observe("origin", "r", [(seq - 1, 2.0)], at - 0.05, at - 0.05)
        tr.observe("origin", "r", [(seq - 1, 2.0), (seq, 2.0)], at + 0.05, at + 0.05)
    (opens, due), = tr.windows("origin", 0.3, 0.05)
    assert due == pytest.approx(at + 2.0)
    assert opens == pytest.approx(due + 0.1 - 0.05)
    tr.observe("origin", "r", [(6, 2.0)], due - 0.6, due - 0.6)  # one 0.5 s early (bracketed by a guard poll)
    tr.observe("origin", "r", [(6, 2.0), (7, 2.0)], due - 0.4, due - 0.4)
    (opens, due2), = tr.windows("origin", 0.3, 0.05)
    assert opens == pytest.approx(due2 - 0.3)  # the earliest error is before lead: opens at due - lead


def test_an_edge_polls_fast_only_while_the_origin_lists_a_segment_it_does_not():
    """The edges' schedule follows the origin: idle while they list what the origin lists (also
    in the origin's window before its arrival: a pull-through edge cannot have it yet; the
    origin's arrival wakes them), fast from the origin's arrival until the edge lists it, for at
    most the lag plus the edge's own last lag, slow past that; an edge a constant delay behind
    sleeps until its window; with no origin arrival to go by, the edge's own window."""
    tr = FirstSeenTracker()
    args = (0.5, 0.05, 0.3, 1.0)
    for e in ("origin", "edge"):
        tr.observe(e, "r", [(1, 2.0)], 0.0, 0.0)
    tr.observe("origin", "r", [(1, 2.0)], 1.9, 1.9)
    assert edge_poll_delay(1.9, tr, "edge", *args) == CAUGHT_UP_POLL_S  # the origin's window is open; the edge waits
    tr.observe("origin", "r", [(1, 2.0), (2, 2.0)], 2.0, 2.0)  # segment 2 at the origin at 1.95
    opens_in, closed_for = tr.behind("edge", "origin", 2.1, 1.0)
    assert opens_in <= 0 and closed_for <= 0
    assert edge_poll_delay(2.1, tr, "edge", *args) == 0.05
    assert edge_poll_delay(2.9, tr, "edge", *args) == 0.05
    assert edge_poll_delay(3.0, tr, "edge", *args) == 0.5  # 1.05 s after the origin's arrival: slow
    assert tr.behind("other", "origin", 2.3, 1.0) is None  # nothing in common: its own window (none yet)
    assert edge_poll_delay(2.3, tr, "other", *args) == 0.5
    tr.observe("edge", "r", [(1, 2.0), (2, 2.0)], 3.5, 3.5)  # the edge lists it at 1.75 (0.0-3.5 bracket)
    tr.observe("edge", "r", [(2, 2.0)], 3.6, 3.6)
    tr.observe("edge", "r", [(2, 2.0), (3, 2.0)], 3.8, 3.8)  # ...and segment 3 at 3.7
    tr.observe("origin", "r", [(2, 2.0), (3, 2.0)], 3.0, 3.0)  # the origin had it at 2.5 (1.95-3.0)
    tr.note_lag("edge", "origin", "r")  # 3.7 - 2.5: 1.2 s behind
    assert edge_poll_delay(3.9, tr, "edge", *args) == CAUGHT_UP_POLL_S  # caught up
    tr.observe("origin", "r", [(3, 2.0)], 4.9, 4.9)
    tr.observe("origin", "r", [(3, 2.0), (4, 2.0)], 5.0, 5.0)  # segment 4 at 4.95
    assert edge_poll_delay(4.95 + 1.0 + 1.2 - 0.05, tr, "edge", *args) == 0.05  # its 1.2-s lag: still fast
    assert edge_poll_delay(4.95 + 1.0 + 1.2 + 0.05, tr, "edge", *args) == 0.5
    tr._mem[("edge", "r")].lags.extend([1.2] * 4)  # its lags all 1.2 s: the window opens a fast poll before
    assert edge_poll_delay(4.95 + 0.5, tr, "edge", *args) == pytest.approx(1.2 - 0.05 - 0.5)
    assert edge_poll_delay(4.95 + 1.2 - 0.04, tr, "edge", *args) == 0.05
    # an edge a constant 5 s behind: fast around its own arrivals only, asleep for the 5 s before them
    tr.observe("late", "r", [(3, 2.0)], 0.0, 0.0)
    tr._mem[("late", "r")].lags.extend([5.0] * 5)
    assert edge_poll_delay(4.95 + 1.0, tr, "late", *args) == pytest.approx(5.0 - 0.05 - 1.0)
    assert edge_poll_delay(4.95 + 4.96, tr, "late", *args) == 0.05
    # the origin failing: the edges go by their own windows, not by its last arrival
    tr.failed("origin", "r")
    assert tr.behind("edge", "origin", 5.1, 1.0) is None
    assert edge_poll_delay(5.1, tr, "edge", *args) == next_poll_delay(5.1, tr.windows("edge", 0.3, 0.05), *args)


def test_an_origin_timed_by_blocking_reloads_leaves_the_edges_their_own_windows():
    tr = FirstSeenTracker()
    tr.observe("edge", "r", [(1, 0.5)], 0.0, 0.0)
    tr.observe("edge", "r", [(1, 0.5), (2, 0.5)], 1.0, 1.0)  # polled plainly: due again at 1.0
    tr.observe_at("origin", "r", [1, 2], None)
    tr.observe_at("origin", "r", [1, 2, 3], Seen(1.2, 0.001))  # the origin's part came at 1.2 (held request)
    assert tr.behind("edge", "origin", 1.25, 1.0) is None
    assert edge_poll_delay(1.25, tr, "edge", 0.5, 0.05, 0.3, 1.0) == 0.05  # its own window is open


def test_an_edge_bracket_starts_no_earlier_than_the_origins():
    edge, origin = Seen(10.0, 0.5), Seen(10.4, 0.05)  # edge: 9.5-10.5 (a slow poll before); origin: 10.35-10.45
    cut = edge.not_before(origin)
    assert cut.at == pytest.approx(10.425) and cut.half_width == pytest.approx(0.075)
    assert Seen(11.0, 0.05).not_before(origin) == Seen(11.0, 0.05)  # already after it: unchanged
    assert Seen(10.0, 0.05).not_before(origin) == Seen(10.0, 0.05)  # inconsistent (ends before): left as measured


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


def _one_second_segments(t0: float, last: int) -> str:
    """A live media playlist of 1-s segments up to ``last`` (the last six), segment k captured
    from ``t0 + k`` (its EXT-X-PROGRAM-DATE-TIME)."""
    import time

    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{max(last - 5, 0)}"]
    for k in range(max(last - 5, 0), last + 1):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + k)) + f".{round(((t0 + k) % 1) * 1000):03d}Z"
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{stamp}", "#EXTINF:1.000,", f"s{k}.ts"]
    return "\n".join(lines) + "\n"


async def test_segments_listed_together_with_a_later_one_are_backlog_not_judged_latency() -> None:
    """A playlist that stands still and then lists three segments at once: the older two were
    encoded on time (the newest was encoded after them), so their lateness is the listing's —
    marked backlog, not judged as transcode latency; the newest is judged as usual."""
    import time

    from aiohttp import web
    from localserver import LocalServer

    from probes.base import ProbeContext, ProbeTarget
    from probes.latency import LatencySettings, LatencyTargetConfig
    from probes.latency import probe as latency_probe
    from probes.net.httpfetch import Fetcher

    t0 = time.time() - 5.0
    frozen: list[float | None] = [None]  # while set: the playlist as it was then

    async def playlist(_req: web.Request) -> web.Response:
        now = frozen[0] if frozen[0] is not None else time.time()
        last = int(now - t0 - 1.05)  # segment k (1 s, captured from t0 + k) is listed 1.05 s after it starts
        return web.Response(text=_one_second_segments(t0, last), content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    app.router.add_get("/live.m3u8", playlist)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        url = f"{server.url}/live.m3u8"
        tc = LatencyTargetConfig(LatencySettings(beacon=False, finalize_after_segments=30), url)
        target = ProbeTarget("latency", "main", "origin", "origin", tc, url, 1.0, 5.0)
        ctx = ProbeContext(state={}, http=http)

        spans = []

        async def attempt() -> None:
            ctx.deadline = ctx.clock() + 5.0
            spans.extend((await latency_probe(target, ctx)).spans)
        for _ in range(2):
            await attempt()
        frozen[0] = time.time()
        for _ in range(3):
            await attempt()
        frozen[0] = None
        await attempt()
    origin = {sp.attributes["signalpath.segment.sequence"]: next(c.attributes for c in sp.children if c.name == "origin")
              for sp in spans}
    backlog = sorted(seq for seq, a in origin.items() if a["signalpath.first_seen.backlog"])
    assert len(backlog) >= 2, origin
    assert not origin[max(backlog) + 1]["signalpath.first_seen.backlog"]  # the newest of the burst: judged
    assert not any(a["signalpath.first_seen.backlog"] for seq, a in origin.items() if seq < min(backlog))


@pytest.mark.parametrize(("late_s", "then_fails"), [(0.6, False), (0.0, False), (0.6, True)])
async def test_a_segment_missing_after_a_late_one_is_judged_by_its_latencys_lower_bound(late_s: float,
                                                                                      then_fails: bool) -> None:
    """A transcoder falling behind: segment L comes ``late_s`` later than usual and L+1 does not
    come. Its latency is at least now - (L's last frame + one target duration) while the origin
    does not list it; over the baseline's limit that is ``latency_high`` before L+1 arrives (a
    segment earlier than its own figure). After an on-time segment (``late_s`` 0) a missing one
    is no latency here: a stopped transcoder, or only the watched rendition stopped (the HLS
    probe's stale playlists, at the same moment). Nor when the origin then fails (``then_fails``:
    503 after the late segment): what it would list is not known, and a failing origin is its own
    finding, never a late transcoder. A real server, 1-s segments, the probe's own clock."""
    import time

    from aiohttp import web
    from localserver import LocalServer

    from probes.base import ProbeContext, ProbeTarget, State
    from probes.latency import LatencySettings, LatencyTargetConfig
    from probes.latency import probe as latency_probe
    from probes.net.httpfetch import Fetcher

    t0 = time.time() - 8.0
    stop = [10**9]  # the last segment listed, once the fault begins

    def listed_at(k: int) -> float:  # segment k (1 s, captured from t0 + k): listed 0.05 s after its end
        return t0 + k + 1.05 + (late_s if k == stop[0] else 0.0)

    async def playlist(_req: web.Request) -> web.Response:
        now = time.time()
        last = max(k for k in range(int(now - t0) + 1) if listed_at(k) <= now and k <= stop[0])
        if then_fails and last == stop[0] and now > listed_at(last) + 0.5:
            return web.Response(status=503, text="busy\n")
        return web.Response(text=_one_second_segments(t0, last), content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    app.router.add_get("/live.m3u8", playlist)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        url = f"{server.url}/live.m3u8"
        tc = LatencyTargetConfig(LatencySettings(beacon=False, baseline_min_samples=3), url)
        target = ProbeTarget("latency", "main", "origin", "origin", tc, url, 1.0, 5.0)
        ctx = ProbeContext(state={}, http=http)

        async def attempt() -> list[tuple[float, object]]:
            ctx.deadline = ctx.clock() + 5.0
            r = await latency_probe(target, ctx)
            return [(time.time(), e) for e in r.evidence if e.stage == "transcode"]
        for _ in range(6):  # a baseline of on-time segments
            assert not [e for _, e in await attempt() if e.state is not State.OK]
        stop[0] = int(time.time() - t0) + 1  # the next segment is the last (late by late_s)
        seen = [x for _ in range(6) for x in await attempt()]
    bad = [(at, e) for at, e in seen if e.state is not State.OK]
    if not late_s or then_fails:
        assert not bad, bad
        return
    assert bad and all(e.fault == "latency_high" for _, e in bad), bad
    at, first = bad[0]
    assert "is not at the origin yet" in first.detail and "came 0.6 s later than usual" in first.detail, first.detail
    assert first.figures["latency_at_least_s"] - first.figures["baseline_s"] > 1.0, first.figures
    # L+1's last frame: captured by t0 + L + 2; 0.05 s usual + the 1-s limit, and one attempt
    assert at <= t0 + stop[0] + 2 + 1.05 + 1.3, (at - t0 - stop[0], first.detail)


def _two_second_segments(t0: float, last: int) -> str:
    """A live media playlist of 2-s segments up to ``last`` (the last six), segment k captured
    from ``t0 + 2k``."""
    import time

    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{max(last - 5, 0)}"]
    for k in range(max(last - 5, 0), last + 1):
        at = t0 + 2 * k
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{round((at % 1) * 1000):03d}Z"
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{stamp}", "#EXTINF:2.000,", f"s{k}.ts"]
    return "\n".join(lines) + "\n"


async def test_shedding_fast_polls_polls_less() -> None:
    """An agent that is behind sheds the latency probe's fast polls: it must then make fewer
    requests, not more. A real server (an origin and an edge 0.3 s behind it, 2-s segments
    listed 0.05 s after they end); the probe's schedule with ``shed_level`` 1 for 12 s. It used
    to poll every endpoint every ``poll_s`` (0.5 s: 2 requests per endpoint-second); it now polls
    the windows around the predicted arrivals ``poll_s`` apart, and still times each arrival."""
    import time

    from aiohttp import web
    from localserver import LocalServer

    from probes.base import ProbeContext, ProbeTarget
    from probes.latency import LatencySettings, LatencyTargetConfig
    from probes.latency import probe as latency_probe
    from probes.net.httpfetch import Fetcher

    t0 = time.time() - 20.0
    hits = {"origin": 0, "edge": 0}

    def handler(name: str, behind_s: float):
        async def playlist(_req: web.Request) -> web.Response:
            hits[name] += 1
            last = int((time.time() - t0 - 2.05 - behind_s) // 2)  # segment k is listed 0.05 s after its end
            return web.Response(text=_two_second_segments(t0, last), content_type="application/vnd.apple.mpegurl")
        return playlist

    app = web.Application()
    app.router.add_get("/origin.m3u8", handler("origin", 0.0))
    app.router.add_get("/edge.m3u8", handler("edge", 0.3))
    async with await LocalServer.start(app) as server, Fetcher() as http:
        tc = LatencyTargetConfig(LatencySettings(beacon=False), f"{server.url}/origin.m3u8",
                                 (("edge-a", f"{server.url}/edge.m3u8"),))
        target = ProbeTarget("latency", "main", "origin", "origin", tc, tc.origin, 1.0, 5.0)
        ctx = ProbeContext(state={}, http=http, shed_level=lambda: 1)
        for _ in range(4):  # the schedule learns the cadence and the edge's lag
            ctx.deadline = ctx.clock() + 5.0
            await latency_probe(target, ctx)
        hits.update(origin=0, edge=0)
        began, spans = time.monotonic(), []
        while time.monotonic() - began < 12.0:
            ctx.deadline = ctx.clock() + 5.0
            spans += (await latency_probe(target, ctx)).spans
        watched = time.monotonic() - began
    rates = {k: v / watched for k, v in hits.items()}
    assert all(r < 1.5 for r in rates.values()), rates  # every poll_s would be 2.0 per endpoint-second
    timed = {sp.attributes["signalpath.segment.sequence"] for sp in spans}
    assert len(timed) >= 4, timed  # every arrival in the 12 s is still timed
