"""The player buffer model on synthetic download timelines (no I/O, injected clock)."""

from __future__ import annotations

import pydantic
import pytest

from probes.core.player_model import (
    PlaybackFailure,
    PlayerConfig,
    PlayerModel,
    PlayerState,
    join_index,
)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0  # any origin: the model only uses differences

    def __call__(self) -> float:
        return self.t

    def at(self, rel: float) -> Clock:
        self.t = 100.0 + rel
        return self


def session(config: PlayerConfig | None = None):
    clock = Clock()
    player = PlayerModel(config or PlayerConfig(), clock)
    player.request()
    return clock, player


def play_timeline(events, config=None, until=None):
    """events: [(time, duration, bytes)] segment arrivals; returns (clock, player)."""
    clock, player = session(config)
    for t, dur, size in events:
        clock.at(t)
        player.segment_downloaded(dur, size)
    if until is not None:
        clock.at(until)
    return clock, player


def test_healthy_live_session_never_stalls():
    # join: three 2-s segments fetched back to back, then one per 2 s as the edge publishes
    events = [(0.4, 2.0, 250_000), (0.7, 2.0, 250_000), (1.0, 2.0, 250_000)]
    events += [(1.0 + 2.0 * k, 2.0, 250_000) for k in range(1, 30)]
    clock, player = play_timeline(events, until=60.0)
    f = player.figures()
    assert f.state is PlayerState.PLAYING
    assert f.startup_s == pytest.approx(0.4)
    assert f.stall_count == 0 and f.stall_s == 0.0 and f.micro_stall_s == 0.0
    assert f.rebuffer_ratio == 0.0
    assert f.watched_s == pytest.approx(59.6)
    assert f.buffer_s == pytest.approx(2 * 32 - 59.6)
    assert f.bits_played == pytest.approx(59.6 / 2.0 * 250_000 * 8)
    assert f.failure is None and f.segments == 32


def test_throttled_downloads_stall_exactly_as_the_timeline_says():
    # 2-s segments: first arrives at 1 s, plays to 3 s; next at 5 s (2-s stall); next at
    # 7.5 s (0.5-s dry spell: a micro-stall, under hls.js' 1.25 s); figures at 9.5 s
    clock, player = play_timeline([(1.0, 2.0, 0), (5.0, 2.0, 0), (7.5, 2.0, 0)], until=9.5)
    f = player.figures()
    assert f.startup_s == pytest.approx(1.0)
    assert f.stall_count == 1
    assert f.stall_s == pytest.approx(2.0)
    assert f.micro_stall_s == pytest.approx(0.5)
    assert f.watched_s == pytest.approx(6.0)
    assert f.rebuffer_ratio == pytest.approx(2.0 / 8.0)
    assert f.state is PlayerState.STALLED and not f.stalled_now  # dry at exactly 9.5
    clock.at(11.0)
    f = player.figures()
    assert f.current_stall_s == pytest.approx(1.5) and f.stalled_now
    assert f.stall_count == 2 and f.stall_s == pytest.approx(3.5)


def test_ongoing_stall_is_reported_after_hls_js_1250_ms():
    clock, player = play_timeline([(0.5, 2.0, 0)])
    clock.at(2.5 + 1.0)
    f = player.figures()
    assert f.state is PlayerState.STALLED and f.current_stall_s == pytest.approx(1.0)
    assert f.stall_count == 0 and f.stall_s == 0.0 and f.last_stall_ago_s is None  # a dry spell, not a stall yet
    clock.at(2.5 + 1.3)
    f = player.figures()
    assert f.stall_count == 1 and f.stall_s == pytest.approx(1.3) and f.last_stall_ago_s == pytest.approx(1.3)
    assert f.rebuffer_ratio == pytest.approx(1.3 / (2.0 + 1.3))
    player.segment_downloaded(2.0)  # resumes: the stall closes at 1.3 s
    clock.at(2.5 + 1.3 + 1.0)
    f = player.figures()
    assert f.state is PlayerState.PLAYING and f.stall_count == 1 and f.stall_s == pytest.approx(1.3)
    assert f.last_stall_ago_s == pytest.approx(2.3)  # the stall that ended began at 2.5


def test_resume_threshold_is_configurable():
    cfg = PlayerConfig(resume_buffer_s=3.0)
    clock, player = play_timeline([(0.0, 2.0, 0), (3.0, 2.0, 0)], config=cfg, until=4.0)
    assert player.state is PlayerState.STALLED  # 2 s buffered is not > 3 s
    clock.at(4.5)
    player.segment_downloaded(2.0)
    f = player.figures()
    assert f.state is PlayerState.PLAYING
    assert f.stall_s == pytest.approx(2.5)


def test_a_dash_js_viewer_holds_at_its_stall_threshold():
    """dash.js holds playback when its buffer falls to streaming.buffer.stallThreshold (0.3 s) and
    resumes above it (the next segment here); hls.js plays the buffer out. (Reported after
    ``stall_report_s``, 0 here to see the hold counted.)"""
    dash = PlayerConfig(stall_threshold_s=0.3, stall_report_s=0.0)
    clock, player = play_timeline([(0.0, 2.0, 0)], config=dash, until=1.8)
    f = player.figures()
    assert f.state is PlayerState.STALLED and f.watched_s == pytest.approx(1.7) and f.buffer_s == pytest.approx(0.3)
    assert f.current_stall_s == pytest.approx(0.1) and f.stalled_now
    clock.at(2.5)
    player.segment_downloaded(2.0)
    clock.at(3.0)
    f = player.figures()
    assert f.state is PlayerState.PLAYING and f.stall_count == 1 and f.stall_s == pytest.approx(0.8)
    assert f.micro_stall_s == 0.0
    clock, hls = play_timeline([(0.0, 2.0, 0)], until=1.8)
    assert hls.figures().state is PlayerState.PLAYING  # the same timeline: hls.js still plays
    clock, player = play_timeline([(0.0, 2.0, 0)], config=dash)
    player.end_of_stream()
    clock.at(2.5)
    assert player.figures().state is PlayerState.ENDED  # the last segment plays out whole


def test_startup_timeout_is_a_failure():
    clock, player = session(PlayerConfig(startup_deadline_s=10.0))
    clock.at(9.9)
    assert player.state is PlayerState.STARTING
    clock.at(12.0)
    f = player.figures()
    assert f.state is PlayerState.FAILED and f.failure is PlaybackFailure.STARTUP_TIMEOUT
    assert f.startup_s is None
    player.segment_downloaded(2.0)  # too late: the viewer left
    assert player.figures().segments == 0


def test_fatal_error_freezes_the_figures():
    clock, player = play_timeline([(0.5, 2.0, 0), (1.0, 2.0, 0)], until=3.0)
    player.fatal("playlist answered 404")
    clock.at(30.0)
    f = player.figures()
    assert f.failure is PlaybackFailure.FATAL_ERROR and f.failure_detail == "playlist answered 404"
    assert f.watched_s == pytest.approx(2.5)


def test_a_viewer_gives_up_on_an_endless_stall():
    cfg = PlayerConfig(stall_give_up_s=20.0)
    clock, player = play_timeline([(0.0, 2.0, 0)], config=cfg, until=10.0)
    assert player.figures().stall_count == 1
    clock.at(50.0)
    f = player.figures()
    assert f.failure is PlaybackFailure.STALL_TIMEOUT
    assert f.stall_count == 1 and f.stall_s == pytest.approx(20.0)


def test_figures_do_not_depend_on_how_often_the_clock_is_read():
    events = [(1.0, 2.0, 1000), (5.0, 2.0, 1000), (5.5, 4.0, 1000)]
    _, coarse = play_timeline(events, until=12.0)
    clock, fine = session()
    for t, dur, size in events:
        while clock.t < 100.0 + t - 0.1:
            clock.t += 0.1
            fine.tick()
        clock.at(t)
        fine.segment_downloaded(dur, size)
    clock.at(12.0)
    a, b = coarse.figures(), fine.figures()
    assert (a.stall_count, a.stall_s, a.watched_s, a.bits_played) == pytest.approx(
        (b.stall_count, b.stall_s, b.watched_s, b.bits_played)
    )


def test_bits_played_are_proportional():
    clock, player = play_timeline([(0.0, 2.0, 1000)], until=0.5)
    assert player.figures().bits_played == pytest.approx(2000.0)


@pytest.mark.parametrize(
    "durations,target,expected",
    [
        ([2.0] * 10, 2.0, 7),  # end 20 s, start 14 s: the segment 14-16 s
        ([2.0] * 6, 2.0, 3),
        ([2.0, 2.0], 2.0, 0),  # shorter than the hold-back: from the start
        ([], 2.0, 0),
        ([4.0, 4.0, 1.0, 1.0, 1.0, 1.0], 2.0, 1),  # end 12, start 6: inside the second
    ],
)
def test_join_three_target_durations_behind_the_live_edge(durations, target, expected):
    assert join_index(durations, target) == expected


def test_config_is_strict_and_a_clock_is_required():
    with pytest.raises(pydantic.ValidationError):
        PlayerConfig(stall_report=1.0)
    with pytest.raises(pydantic.ValidationError):
        PlayerConfig(stall_report_s=-1)
    with pytest.raises(ValueError):
        PlayerModel(PlayerConfig())


def test_an_ended_stream_plays_out_and_ends_without_a_stall():
    """#EXT-X-ENDLIST: the last listed segment arrives, the player plays out its buffer and ends
    (hls.js 'ended'): no stall, no failure, however long one waits after."""
    clock, player = play_timeline([(0.2, 2.0, 1000), (0.4, 2.0, 1000), (0.6, 2.0, 1000)], until=1.0)
    player.end_of_stream()
    clock.at(30.0)
    f = player.figures()
    assert f.state is PlayerState.ENDED and f.stall_count == 0 and f.failure is None
    assert f.watched_s == pytest.approx(6.0)


def test_without_the_end_the_same_dry_buffer_is_a_stall():
    clock, player = play_timeline([(0.2, 2.0, 1000), (0.4, 2.0, 1000), (0.6, 2.0, 1000)], until=10.0)
    f = player.figures()
    assert f.state is PlayerState.STALLED and f.stall_count == 1


def test_a_stalled_player_at_the_end_of_an_ended_stream_ends():
    clock, player = play_timeline([(0.2, 2.0, 1000)], until=5.0)
    assert player.state is PlayerState.STALLED
    player.end_of_stream()
    clock.at(20.0)
    f = player.figures()
    assert f.state is PlayerState.ENDED and f.stall_count == 1  # the stall before the end was real


def test_gaps_are_counted_and_jumped_over():
    clock, player = play_timeline([(0.2, 2.0, 1000), (0.4, 2.0, 1000)], until=1.0)
    player.gap_skipped()
    player.segment_downloaded(2.0, 1000)
    clock.at(5.0)
    f = player.figures()
    assert f.gaps_skipped == 1 and f.state is PlayerState.PLAYING and f.stall_count == 0


def test_demuxed_audio_plays_only_what_both_buffers_hold():
    """MSE plays the intersection of the audio and video buffers (hls.js stalls when either is
    dry): video alone does not start a demuxed session, audio that stops arriving stalls it with
    video still buffered, and the stall waits for audio until audio comes."""
    clock = Clock()
    player = PlayerModel(PlayerConfig(), clock, separate_audio=True)
    player.request()
    clock.at(0.3)
    player.segment_downloaded(2.0, 200_000)
    assert player.figures().state is PlayerState.STARTING and player.figures().waiting_for == "audio"
    clock.at(0.5)
    player.segment_downloaded(2.0, audio=True)
    f = player.figures()
    assert f.state is PlayerState.PLAYING and f.startup_s == pytest.approx(0.5) and f.audio_buffer_s == 2.0
    for k in (1, 2):  # video keeps coming, audio does not
        clock.at(0.5 + 2.0 * k)
        player.segment_downloaded(2.0, 200_000)
    clock.at(5.0)
    f = player.figures()
    assert f.state is PlayerState.STALLED and f.waiting_for == "audio" and f.stall_count == 1
    assert f.current_stall_s == pytest.approx(2.5) and f.buffer_s == 0.0 and f.audio_buffer_s == 0.0
    assert f.watched_s == pytest.approx(2.0) and f.segments == 3  # video segments only
    clock.at(6.0)
    player.segment_downloaded(2.0, audio=True)
    f = player.figures()
    assert f.state is PlayerState.PLAYING and f.stall_s == pytest.approx(3.5) and f.waiting_for is None
    assert f.buffer_s == pytest.approx(2.0)


def test_muxed_sessions_know_no_audio_buffer():
    _, player = play_timeline([(0.2, 2.0, 1000)], until=1.0)
    assert player.figures().audio_buffer_s is None and player.figures().waiting_for is None
