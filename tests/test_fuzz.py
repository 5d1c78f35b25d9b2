"""The fuzz suite, bounded (issue 15 item 3): the playlist parser, the HLS analysis over
successive snapshots and the player model, each under Hypothesis with a fixed seed
(``derandomize``) and a fixed number of examples, so ``make test`` runs the same inputs every
time in well under a minute. tests/perf/fuzz_long.py runs the same targets for 100,000 inputs.
Strategies and properties: tests/fuzzing.py. Each crash found became an explicit example here.
"""

from __future__ import annotations

from typing import Any

from fuzzing import (
    TARGETS,
    Answer,
    HlsScript,
    PlayerScript,
    check_hls,
    check_parse,
    check_player,
    check_reload,
    hls_script,
    player_script,
    reload_target,
)
from hypothesis import HealthCheck, example, given, settings


def fuzz(examples: int) -> settings:
    """A fixed seed, a fixed count, nothing written to disk, no deadline (a loaded CI core)."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=examples, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


BASE = "http://edge.example/live/zq9canary/main.m3u8"
_MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{seq}\n{segments}"
_ENDED_EMPTY = Answer(_MEDIA.format(seq=0, segments="#EXT-X-ENDLIST\n"))
_TWO = Answer(_MEDIA.format(seq=7, segments="#EXTINF:2,\ns7.ts\n#EXTINF:2,\ns8.ts\n"))
_EMPTY_AT_7 = Answer(_MEDIA.format(seq=7, segments=""))


@fuzz(600)
@given(TARGETS["parser/structured"][0])
# the error quoted urlsplit's words, and with them the port as written (a token may sit there)
@example(("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://h.example:zq9canary/s.ts\n", BASE))
@example(("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://h.example:zq9canary/v.m3u8\n", BASE))
def test_the_parser_on_structured_playlists_returns_a_bounded_model_or_playlist_error(case: tuple[str, str]) -> None:
    check_parse(*case)


@fuzz(600)
@given(TARGETS["parser/mutated-fixtures"][0])
def test_the_parser_on_mutated_packager_playlists_returns_a_bounded_model_or_playlist_error(
        case: tuple[str, str]) -> None:
    check_parse(*case)


@fuzz(120)
@given(hls_script())
# Cache-Control max-age of 400 digits: int -> float overflowed (OverflowError), of 5,000 digits
# int() refused it (ValueError): the attempt raised
@example(HlsScript(None, {"main.m3u8": [Answer(_TWO.body, headers=(("cache-control", "max-age=" + "9" * 400),)),
                                        Answer(_TWO.body, headers=(("cache-control", "max-age=" + "9" * 5000),))]},
                   [Answer()], [0.0, 1.0], {}))
# an empty playlist at MEDIA-SEQUENCE 0 gave evidence media_sequence -1; one after segments 7-8
# opened a sequence_regression ("went back from 8 to 6") though nothing was renumbered
@example(HlsScript(None, {"main.m3u8": [_ENDED_EMPTY, _TWO, _EMPTY_AT_7]}, [Answer()], [0.0, 1.0, 1.0], {}))
def test_the_hls_analysis_over_snapshot_sequences_never_raises_and_stays_bounded(script: Any) -> None:
    check_hls(script)


@fuzz(400)
@given(player_script)
# a segment of 10^9 s (never parsed, but the model took it) held the buffer far over max_buffer_s
@example(PlayerScript({}, False, True, [("segment", 1e9, 0, False)]))
@example(PlayerScript({}, True, True, [("segment", 1e9, 0, True)]))
# a negative size made bits_played negative
@example(PlayerScript({}, False, False, [("segment", 2.0, -1, False), ("wait", 0.01)]))
def test_the_player_model_keeps_its_buffer_and_figures_bounded(script: Any) -> None:
    check_player(script)


@fuzz(200)
@given(reload_target)
def test_the_reload_interval_stays_within_half_a_second_and_30_s(args: tuple[float, bool]) -> None:
    check_reload(args)
