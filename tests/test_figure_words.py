"""Status-cell figures in words (agent/figure_words.py), fed with figures as the probes report them
(recorded from the embedded lab's /api/v1/status, and the faulty cases as the probes shape them)."""

from __future__ import annotations

import pytest

from agent.figure_words import MAX_LINES, bitrate, duration, figure_lines, percent

INGEST = {"publisher_present": 1.0, "bw_in_bits_per_second": 574068.0, "input_stalled_s": 0.0, "latency_s": 0.0064,
          "median_s": 0.0134, "frames": 39, "beacons": 39, "baseline_s": 0.0068, "decode_cpu_ms": 53.87,
          "open_s": 1.844, "clock": "unchecked", "precision": "ms"}
EDGE = {"latency_s": 0.4134, "baseline_s": 0.6614, "renditions": {
    "180p": {"last_seq": 19, "age_s": 0.0, "target_duration_s": 2.0, "live_latency_s": 1.375, "edge_lag_segments": 0},
    "360p": {"last_seq": 19, "age_s": 0.4, "target_duration_s": 2.0, "live_latency_s": 2.149, "edge_lag_segments": 0}}}
PLAYER = {"buffer_s": 0.0, "stall_count": 3.0, "stall_s": 12.2, "rebuffer_ratio": 0.348, "watched_s": 35.0,
          "segments": 9.0, "startup_s": 5.016}


@pytest.mark.parametrize(("seconds", "text"), [(0.0064, "6 ms"), (-0.0004, "0 ms"), (-3.0, "0 ms"), (0.9996, "1000 ms"),
                                                (2.149, "2.1 s"), (75.4, "75 s")])
def test_durations_read_in_units_and_never_negative(seconds, text):
    assert duration(seconds) == text


def test_bitrates_and_percentages():
    assert bitrate(574068) == "574 kbit/s" and bitrate(2_450_000) == "2.5 Mbit/s" and bitrate(0) == "0 kbit/s"
    assert percent(0.348) == "35 %" and percent(0.021) == "2.1 %" and percent(0) == "0 %"


def test_healthy_cells_read_as_words_with_units():
    assert figure_lines(INGEST) == ["publisher present", "input 574 kbit/s", "adds 6 ms"]
    assert figure_lines(EDGE) == ["2.1 s behind live", "adds 413 ms"]  # the worst rendition; fresh: no age
    assert figure_lines({"running": 1.0, "output_stalled_s": 0.0}) == ["encoder running"]
    assert figure_lines({"buffer_s": 4.216, "stall_count": 0.0, "stall_s": 0.0, "rebuffer_ratio": 0.0,
                         "startup_s": 5.016}) == ["no stalls", "started in 5.0 s", "buffer 4.2 s"]


def test_a_fault_reads_first_and_each_thing_once():
    # stalls, stall time and rebuffer share are one phrase, not three numbers
    assert figure_lines(PLAYER)[0] == "3 stalls this session, 12 s stalled (35 % of the session)"
    assert sum("stall" in line for line in figure_lines(PLAYER)) == 1
    stale = {**EDGE, "renditions": {**EDGE["renditions"], "360p": {"age_s": 7.3, "target_duration_s": 2.0}}}
    assert figure_lines(stale)[0] == "no new segment for 7.3 s (360p)"
    assert figure_lines({"publisher_present": 0.0, "bw_in_bits_per_second": 0.0, "input_stalled_s": 4.0}) == [
        "no publisher", "input 0 kbit/s", "input stalled for 4.0 s"]
    content = {"frame_rate": 25.0, "frozen_s": 12.4, "black_s": 0.0, "silence_s": 0.0, "bitrate_bps": 454208.0,
               "audio_rms_dbfs": -23.02, "decode_errors": 0.0}
    assert figure_lines(content) == ["frozen for 12 s", "25 fps", "454 kbit/s", "audio -23 dBFS"]


def test_never_raw_keys_nor_more_than_four_phrases():
    everything = {**INGEST, **EDGE, **PLAYER, "running": 0.0, "frame_rate": 25.0, "freezes": 2, "freeze_seconds": 1.5}
    lines = figure_lines(everything)
    assert len(lines) == MAX_LINES
    assert not any("_" in line or "-0" in line for line in lines), lines
    assert figure_lines({"latency_s": "n/a", "frames": True, "odd": float("nan"), "gpu": "unavailable"}) == []
