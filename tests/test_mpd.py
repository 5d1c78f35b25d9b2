"""The MPD reader (probes/core/mpd.py) on live MPDs real packagers wrote (tests/fixtures/dash:
ffmpeg's dash muxer in three modes, nginx-rtmp's ``dash on``, GStreamer's dashsink in two), read
at the moment they were captured: the newest segment signalpath computes as available must be
the newest one the packager had written then (PACKAGERS.md), and the addressing features of
ISO/IEC 23009-1 the packagers do not use (``r="-1"``, multi-Period, SegmentBase, inheritance,
``presentationTimeOffset``) on MPDs written here from the standard's rules. Hostile input is an
MpdError, never a crash, a URL opened or an entity expanded."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from probes.core.mpd import MpdError, as_playlist, looks_like_mpd, manifest, parse_mpd, view, views
from probes.core.playlist import MasterPlaylist, MediaPlaylist, parse_body, reusable

FIX = Path(__file__).parent / "fixtures" / "dash"
CAPTURED: dict[str, float] = json.loads((FIX / "captured.json").read_text())
BASE = "http://127.0.0.1:8080/live/live.mpd"


def at_capture(name: str, delay: float = 0.0) -> dict[str, MediaPlaylist]:
    m = parse_mpd((FIX / name).read_bytes(), BASE)
    return {r.name: v for r, v in views(m, CAPTURED[name] + delay)}


def tail(v: MediaPlaylist) -> list[str]:
    return [s.uri.rsplit("/", 1)[1] for s in v.segments]


def test_ffmpeg_timeline_lists_what_ffmpeg_had_written() -> None:
    vs = at_capture("ffmpeg-timeline-live.mpd")
    assert set(vs) == {"180p", "audio-1"}
    video, audio = vs["180p"], vs["audio-1"]
    assert tail(video)[-1] == "chunk-stream0-00004.m4s" and video.last_seq == 4 and video.media_sequence == 1
    assert [s.duration for s in video.segments] == [2.0] * 4
    assert video.segments[-1].init is not None and video.segments[-1].init.uri.endswith("/live/init-stream0.m4s")
    # audio: S@t=0 d=95232 then d=96256 r=2 at timescale 48000 (1.984 s, then 2.00533 s)
    assert [round(s.duration, 5) for s in audio.segments] == [1.984, 2.00533, 2.00533, 2.00533]
    assert audio.target_duration == 2.0  # @maxSegmentDuration, not rounded up
    assert video.listed and not video.endlist and video.discontinuity_sequence == 0
    # wall-clock presentation start: availabilityStartTime + (t - PTO) / timescale
    m = parse_mpd((FIX / "ffmpeg-timeline-live.mpd").read_bytes(), BASE)
    assert m.availability_start is not None
    assert video.segments[-1].pdt == pytest.approx(m.availability_start + 6.0)
    assert audio.segments[1].pdt == pytest.approx(m.availability_start + 1.984)


def test_ffmpeg_number_template_is_computed_from_the_clock() -> None:
    vs = at_capture("ffmpeg-number-live.mpd")
    assert tail(vs["180p"])[-1] == "chunk-stream0-00004.m4s"
    assert not vs["180p"].listed  # computed: the probe must fetch to know
    later = at_capture("ffmpeg-number-live.mpd", delay=2.0)
    assert later["180p"].last_seq == 5 and tail(later["audio-1"])[-1] == "chunk-stream1-00005.m4s"
    # timeShiftBufferDepth (10 s) bounds the window below WINDOW (6): 5 segments of 2 s
    far = at_capture("ffmpeg-number-live.mpd", delay=60.0)
    assert far["180p"].last_seq == 34 and len(far["180p"].segments) == 5


def test_low_latency_dash_segments_are_whole_only_at_their_end() -> None:
    # availabilityTimeOffset 1.96 with availabilityTimeComplete=false: chunks may be asked for
    # early, the whole segment only at its end; ffmpeg had written segment 4, not 5
    vs = at_capture("ffmpeg-ldash-live.mpd")
    assert tail(vs["180p"])[-1] == "chunk-stream0-00004.m4s"


def test_nginx_rtmp_time_addressing() -> None:
    vs = at_capture("nginx-rtmp-live.mpd")
    assert set(vs) == {"180p", "audio-1"}
    assert tail(vs["180p"]) == ["main-0.m4v", "main-2023.m4v", "main-4023.m4v", "main-6023.m4v", "main-8023.m4v"]
    assert tail(vs["audio-1"])[-1] == "main-8023.m4a"
    assert vs["180p"].segments[0].duration == pytest.approx(2.023)
    # $Time$ without startNumber: numbered by start time (0, 2023, 4023... ms in 2-s units), not
    # by position in a window that slides
    assert [s.seq for s in vs["180p"].segments] == [1, 2, 3, 4, 5]
    body = (FIX / "nginx-rtmp-live.mpd").read_text()
    slid = body.replace('<S t="0" d="2023"/>', "").replace('<S t="8023" d="2000"/>',
                                                              '<S t="8023" d="2000"/>\n<S t="10023" d="2000"/>')
    later = {r.name: v for r, v in views(parse_mpd(slid.encode(), BASE), CAPTURED["nginx-rtmp-live.mpd"] + 2)}
    assert [s.seq for s in later["180p"].segments] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize(("name", "newest"), [("gst-dashsink-template-live.mpd", "video_0_2.mp4"),
                                              ("gst-dashsink-list-live.mpd", "video_0_00001.mp4")])
def test_gstreamer_dashsink(name: str, newest: str) -> None:
    vs = at_capture(name)
    assert list(vs) == ["180p"]
    assert tail(vs["180p"])[-1] == newest
    assert vs["180p"].segments[-1].init is None  # dashsink's mp4 segments are whole files
    assert vs["180p"].segments[-1].duration == 2.0  # @duration without @timescale: seconds


def mpd(body: str, **attrs: str) -> bytes:
    a = {"type": "dynamic", "availabilityStartTime": "2026-01-01T00:00:00Z", **attrs}
    head = " ".join(f'{k}="{v}"' for k, v in a.items())
    return f'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {head}>{body}</MPD>'.encode()


AST = 1767225600.0  # 2026-01-01T00:00:00Z


def test_repeat_to_now_time_addressing_and_inheritance() -> None:
    # r="-1": repeat until the next S, the Period's end, or now; the template is inherited from
    # the AdaptationSet (23009-1 §5.3.9.1); PTO shifts media time to the period's start
    body = mpd('<Period start="PT10S"><AdaptationSet mimeType="video/mp4">'
               '<SegmentTemplate timescale="90000" presentationTimeOffset="900000" media="v/$RepresentationID$/$Time$.mp4" '
               'initialization="v/$RepresentationID$/init.mp4"><SegmentTimeline><S t="900000" d="180000" r="-1"/>'
               '</SegmentTimeline></SegmentTemplate>'
               '<Representation id="hd" bandwidth="3000000" width="1280" height="720"/>'
               '<Representation id="sd" bandwidth="800000" width="640" height="360"/></AdaptationSet></Period>')
    m = parse_mpd(body, "https://cdn.example/a/live.mpd")
    out = dict((r.name, v) for r, v in views(m, AST + 10 + 20.7))  # 20.7 s into the period
    assert set(out) == {"720p", "360p"}
    v = out["720p"]
    assert v.last_seq == 10  # 10 whole 2-s segments (20 s) are out; the 11th ends at 22 s
    assert v.segments[-1].uri == "https://cdn.example/a/v/hd/2520000.mp4"  # t = 900000 + 9 * 180000
    assert v.segments[-1].pdt == pytest.approx(AST + 10 + 18)
    assert len(v.segments) == 6


def test_multi_period_plays_the_last_started_and_counts_it_as_a_discontinuity() -> None:
    tmpl = '<SegmentTemplate timescale="1" duration="2" startNumber="{n}" media="p{p}-$Number$.m4s"/>'
    body = mpd(f'<Period id="a" start="PT0S"><AdaptationSet contentType="video">{tmpl.format(n=1, p=1)}'
               '<Representation id="v" bandwidth="1000"/></AdaptationSet></Period>'
               f'<Period id="b" start="PT60S"><AdaptationSet contentType="video">{tmpl.format(n=100, p=2)}'
               '<Representation id="v" bandwidth="1000"/></AdaptationSet></Period>')
    m = parse_mpd(body, BASE)
    before = views(m, AST + 30.6)[0][1]
    assert before.discontinuity_sequence == 0 and before.last_seq == 15  # 28-30 s is out at 30.6 (grace 0.5)
    # a Period just begun has no whole segment: the last one plays on, its last segment (58-60 s) included
    edge = as_playlist(m, BASE + "#dash=1k", AST + 61.0)
    assert isinstance(edge, MediaPlaylist) and edge.discontinuity_sequence == 0 and edge.last_seq == 30
    after = views(m, AST + 64.6)[0][1]
    assert after.discontinuity_sequence == 1 and after.last_seq == 101  # 2 segments into period b
    assert after.segments[-1].uri.endswith("/p2-101.m4s")


def test_an_early_available_period_is_not_played_yet() -> None:
    """A dynamic Period with no @start after one with no @duration is announced, not begun
    (ISO/IEC 23009-1 §5.3.2.1): the MPD is read without it, not refused."""
    tmpl = '<SegmentTemplate timescale="1" duration="2" media="p$Number$.m4s"/>'
    body = mpd(f'<Period id="a" start="PT0S"><AdaptationSet contentType="video">{tmpl}'
               '<Representation id="v" bandwidth="1000"/></AdaptationSet></Period>'
               f'<Period id="next"><AdaptationSet contentType="video">{tmpl}'
               '<Representation id="v" bandwidth="1000"/></AdaptationSet></Period>')
    m = parse_mpd(body, BASE)
    assert [p.id for p in m.periods] == ["a"] and views(m, AST + 10.6)[0][1].last_seq == 5


def test_static_segment_base_is_one_finished_file() -> None:
    body = mpd('<Period><AdaptationSet mimeType="audio/mp4" lang="de"><Representation id="a" bandwidth="64000">'
               '<BaseURL>audio_de.mp4</BaseURL><SegmentBase indexRange="800-1600"/></Representation>'
               '</AdaptationSet></Period>', type="static", mediaPresentationDuration="PT1M30S")
    m = parse_mpd(body, BASE)
    (rep, v), = views(m, 0.0)
    assert rep.name == "audio-de" and v.endlist and v.segments[0].uri.endswith("/live/audio_de.mp4")
    assert v.segments[0].duration == 90.0


async def test_parse_body_reads_an_mpd_as_a_master_and_its_representations_as_media_playlists() -> None:
    body = (FIX / "ffmpeg-timeline-live.mpd").read_bytes()
    assert looks_like_mpd(body, None) and looks_like_mpd(b"", "application/dash+xml; charset=utf-8")
    at = CAPTURED["ffmpeg-timeline-live.mpd"]
    master = await parse_body(body, BASE, now=at)
    assert isinstance(master, MasterPlaylist)
    assert [(v.name, v.uri) for v in master.variants] == [("180p", BASE + "#dash=180p")]
    assert [(r.name, r.type, r.uri) for r in master.media] == [("audio-1", "AUDIO", BASE + "#dash=audio-1")]
    assert master.variants[0].audio_group == master.media[0].group_id
    media = await parse_body(body, BASE + "#dash=audio-1", now=at)
    assert isinstance(media, MediaPlaylist) and media.last_seq == 4
    assert not reusable((BASE + "#dash=audio-1", body), (BASE + "#dash=audio-1", body))  # a view moves with time
    with pytest.raises(MpdError, match="no Representation 1080p"):
        await parse_body(body, BASE + "#dash=1080p", now=at)


@pytest.mark.parametrize(("body", "why"), [
    (b'<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><MPD>&b;</MPD>',
     "document type declaration"),
    (b"<MPD", "not well-formed XML"),
    (b'<?xml version="1.0"?><Playlist/>', "root element is not MPD"),
    (b'<MPD type="dynamic"><Period/></MPD>', "without availabilityStartTime"),
    (mpd(""), "lists no Period"),
    (mpd('<Period><AdaptationSet contentType="video"><Representation id="v"><SegmentTemplate media="$Number$.m4s"/>'
         '</Representation></AdaptationSet></Period>'), "neither @duration nor a SegmentTimeline"),
    (mpd('<Period><AdaptationSet contentType="video"><Representation id="v"><SegmentTemplate media="$Time$.m4s">'
         '<SegmentTimeline><S t="0"/></SegmentTimeline></SegmentTemplate></Representation></AdaptationSet></Period>'),
     "S 1 has no positive @d"),
    (mpd('<Period start="PTxS"/>'), r"Period 1@start is not an xs:duration"),
    (mpd('<Period><AdaptationSet contentType="video"><Representation id="v"><SegmentTemplate media="x.m4s" '
         'duration="two"/></Representation></AdaptationSet></Period>'), "cannot read"),
    (mpd('<Period><AdaptationSet contentType="video"><Representation id="v"><SegmentTemplate media="x.m4s">'
         '<SegmentTimeline>' + '<S d="1"/>' * 10_001 + '</SegmentTimeline></SegmentTemplate></Representation>'
         '</AdaptationSet></Period>'), "over 10000 entries"),
])
def test_hostile_mpds_are_errors_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(MpdError, match=why):
        parse_mpd(body, BASE)


def test_a_body_without_mpd_is_never_opened_as_a_url_or_file(tmp_path: Path) -> None:
    # mpegdash's own MPEGDASHParser.parse opens its argument as a URL or a file when it holds no
    # "<MPD": our reader parses the bytes itself
    secret = tmp_path / "secret.mpd"
    secret.write_bytes(mpd('<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="1">'
                           '<SegmentTemplate media="x.m4s" duration="2"/></Representation></AdaptationSet></Period>'))
    with pytest.raises(MpdError):
        parse_mpd(str(secret).encode(), BASE)


def test_an_unknown_template_identifier_is_named() -> None:
    body = mpd('<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="1">'
               '<SegmentTemplate media="x-$SubNumber$.m4s" duration="2"/></Representation></AdaptationSet></Period>')
    m = manifest(body, BASE)
    idx, period = m.period_at(AST + 10)
    with pytest.raises(MpdError, match="template identifier"):
        view(m, period.representations[0], idx, period, AST + 10)


def test_a_large_mpd_is_parsed_off_the_loop_with_the_same_result() -> None:
    many = '<S d="2"/>' * 3000
    body = mpd('<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="500000">'
               f'<SegmentTemplate media="$Number$.m4s"><SegmentTimeline><S t="0" d="2"/>{many}</SegmentTimeline>'
               '</SegmentTemplate></Representation></AdaptationSet></Period>')
    assert len(body) > 8 * 1024
    pl = asyncio.run(parse_body(body, BASE + "#dash=500k", now=AST + 10_000))
    assert isinstance(pl, MediaPlaylist) and pl.last_seq == 3001 and len(pl.segments) == 6


def test_a_dash_viewer_joins_where_dash_js_does() -> None:
    """dash.js plays suggestedPresentationDelay behind the live edge (ffmpeg's timeline MPD says
    2 s), else 4 segment durations (nginx-rtmp's says nothing)."""
    assert at_capture("ffmpeg-timeline-live.mpd")["180p"].hold_back == 2.0
    v = at_capture("nginx-rtmp-live.mpd")["180p"]
    assert v.protocol == "dash" and v.hold_back == pytest.approx(4 * v.target_duration)


def test_a_timeline_of_billions_of_repeats_is_read_in_bounded_time() -> None:
    """The newest available segment of an S is computed, never walked to: three S of 10^9
    repeats each, none available yet but their first, cost what one view costs."""
    ss = '<S t="100000" d="1" r="1000000000"/>' * 3
    body = mpd('<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="500000">'
               f'<SegmentTemplate timescale="1" media="$Time$.m4s"><SegmentTimeline>{ss}</SegmentTimeline>'
               '</SegmentTemplate></Representation></AdaptationSet></Period>')
    m = parse_mpd(body, BASE)
    t0 = time.perf_counter()
    v = views(m, AST + 1000)[0][1]
    assert time.perf_counter() - t0 < 0.1 and v.segments == ()
    v = views(m, AST + 100_010)[0][1]  # ten seconds of the first S are out
    assert [s.duration for s in v.segments] == [1.0] * 6 and v.segments[-1].uri.endswith("/100008.m4s")


def test_a_misspelt_template_identifier_is_named_not_fetched() -> None:
    """``$Numbr%05d$`` beside a known identifier: an error naming the rule, never a URL with a
    literal "$Numbr" fetched (404 after 404, read as missing segments)."""
    body = mpd('<Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="1">'
               '<SegmentTemplate media="c-$RepresentationID$-$Numbr%05d$.m4s" duration="2"/></Representation>'
               '</AdaptationSet></Period>')
    m = manifest(body, BASE)
    idx, period = m.period_at(AST + 10)
    with pytest.raises(MpdError, match="template identifier this reader does not know"):
        view(m, period.representations[0], idx, period, AST + 10)
