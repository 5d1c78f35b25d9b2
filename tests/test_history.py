"""agent/history.py: the downsampler (pure), the SQLite history (a temporary file), bounds."""

from __future__ import annotations

import pytest

from agent.history import (
    BLOCK_STEPS,
    FLUSH_GRACE_S,
    Downsampler,
    HistoryStep,
    HistoryStore,
    ViewerSession,
    series_key,
    state_key,
)
from probes.base import State


def test_a_step_keeps_min_mean_max_of_gauges_sums_of_counters_and_seconds_per_state():
    d = Downsampler(10.0)
    key = series_key("playlist_age_s", "origin", "origin", "360p")
    for t, v in [(1000.5, 1.0), (1003.0, 3.0), (1009.9, 2.0), (1010.0, 9.0)]:
        d.add("main", key, v, t)
    d.add("main", series_key("stalls", "playback", "edge-b", "360p"), 2, 1001.0, "sum")
    d.add("main", series_key("stalls", "playback", "edge-b", "360p"), 1, 1008.0, "sum")
    d.add("main", key, float("nan"), 1002.0)  # not a figure: ignored
    for t in range(1000, 1010):
        d.add_state("main", "cdn", "edge-b", State.DOWN if t < 1003 else State.OK, 1.0, t + 0.5)
    assert d.completed(1010.0 + FLUSH_GRACE_S - 0.01) == []  # late cycles may still add to it
    (step,) = d.completed(1010.0 + FLUSH_GRACE_S)
    assert step.t == 1000.0 and step.step == 10.0
    assert step.series[key] == [1.0, 2.0, 3.0]
    assert step.series[series_key("stalls", "playback", "edge-b", "360p")] == [3.0]
    assert step.series[state_key("cdn", "edge-b")] == [7.0, 0.0, 3.0, 0.0]
    d.add("main", key, 5.0, 1004.0)  # a cycle that ended after its step was handed out
    assert d.dropped == 1
    (nxt,) = d.completed(0, everything=True)
    assert nxt.t == 1010.0 and nxt.series[key] == [9.0, 9.0, 9.0]


def test_the_store_round_trips_steps_and_viewers_and_prunes_by_age_and_size(tmp_path):
    store = HistoryStore(tmp_path / "agent.db")
    try:
        steps = [HistoryStep("main", 1000.0 + 10 * i, 10.0, {state_key("origin", "origin"): [10.0, 0.0, 0.0, 0.0],
                                                             series_key("download_ratio", "cdn", "edge-a", "360p"):
                                                                 [0.1 * i, 0.2, 0.3]})
                 for i in range(100)]
        viewer = ViewerSession("main", "edge-a", "360p", 1001.0, 1500.0, 1.2, 2, 3.5, 400.0, 0.0087, "playing")
        store.put(steps, [viewer])
        store.put([HistoryStep("other", 1000.0, 10.0, {})])
        store.put([HistoryStep("main", 1010.0, 10.0, {"late": [1.0]})])  # a step stored again: the later stays
        assert store.steps(1010.0, 1011.0)[0].series == {"late": [1.0]}
        store.put([steps[1]])
        got = store.steps(1100.0, 1200.0, stream="main")
        assert [s.t for s in got] == [1100.0 + 10 * i for i in range(10)]
        assert got[0].series == steps[10].series
        assert store.sessions(1000.0, 1002.0) == [viewer]
        assert {s.stream for s in store.steps(0, 2000)} == {"main", "other"}
        # by age: a block (BLOCK_STEPS x 10 s = 120 s, epoch-aligned) goes once its last step is older than
        # the retention: cut at 1250, the blocks [960, 1080) of both streams and [1080, 1200) go
        assert BLOCK_STEPS == 12
        assert store.prune(now=1000.0 + 500.0, retention_s=250.0, max_bytes=1e12) == 3
        assert min(s.t for s in store.steps(0, 5000)) == 1200.0
        # by size: the oldest go until the history fits
        size = store.bytes_stored()
        store.prune(now=1500.0, retention_s=1e9, max_bytes=size / 2)
        assert store.bytes_stored() <= size / 2
        assert max(s.t for s in store.steps(0, 5000)) == 1990.0  # the newest stay
    finally:
        store.close()


def test_a_store_that_cannot_be_opened_says_where(tmp_path):
    (tmp_path / "file").write_text("x")
    from agent.errors import AgentError

    with pytest.raises(AgentError, match="history store .*file/agent.db"):
        HistoryStore(tmp_path / "file" / "agent.db")
