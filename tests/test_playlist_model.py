"""probes/core/playlist.py against playlists real packagers wrote here and the RFC's own examples
(tests/fixtures/hls/, provenance in its README.md): every feature a live stream uses is carried,
nothing a packager legitimately writes is misread as a fault, and bad values end as PlaylistError."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest

from probes.core.playlist import (
    MAX_VARIANTS,
    InitSection,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistCache,
    PlaylistError,
    Variant,
    audio_rendition,
    extinf_exceeds_target,
    parse,
    parse_body,
)

FIXTURES = Path(__file__).parent / "fixtures" / "hls"
# a base with a stream key in it: it must never reach an error message or a label
BASE = "http://127.0.0.1:8080/live/sk_SECRET42/index.m3u8?token=TOK99"
DIR = "http://127.0.0.1:8080/live/sk_SECRET42/"


def text(name: str) -> str:
    return (FIXTURES / f"{name}.m3u8").read_text()


def media(name_or_text: str) -> MediaPlaylist:
    body = text(name_or_text) if "\n" not in name_or_text else name_or_text
    pl = parse(body, BASE)
    assert isinstance(pl, MediaPlaylist)
    return pl


def master(name: str) -> MasterPlaylist:
    pl = parse(text(name), BASE)
    assert isinstance(pl, MasterPlaylist)
    return pl


MASTERS = {"ffmpeg51-agroup-master", "ffmpeg51-renditions-master", "ffmpeg51-dash-hls-master",
           "rfc8216-8.5-master-iframes", "rfc8216-8.6-master-alt-audio"}
ALL = sorted(p.stem for p in FIXTURES.glob("*.m3u8"))


def test_every_fixture_is_documented():
    readme = (FIXTURES / "README.md").read_text()
    assert len(ALL) >= 20
    for name in ALL:
        assert f"`{name}.m3u8`" in readme or f"`{name}.m3u8`," in readme, name


@pytest.mark.parametrize("name", ALL)
def test_every_fixture_parses_as_what_it_is(name):
    pl = parse(text(name), BASE)
    assert isinstance(pl, MasterPlaylist if name in MASTERS else MediaPlaylist)
    if isinstance(pl, MediaPlaylist):
        assert pl.segments and pl.last_seq == pl.segments[-1].seq
        assert [s.seq for s in pl.segments] == list(range(pl.segments[0].seq, pl.last_seq + 1))
        for s in pl.segments:
            assert s.uri.startswith(("http://", "https://"))
            assert not extinf_exceeds_target(s.duration, pl.target_duration), (name, s.seq)
    else:
        for r in (*pl.variants, *pl.media, *pl.iframes):
            assert re.fullmatch(r"[a-z0-9-]+", r.name), r.name
            assert "SECRET" not in r.name


# --- real packagers ----------------------------------------------------------------------


def test_ffmpeg_ts_live_window():
    pl = media("ffmpeg51-ts-live")
    assert (pl.media_sequence, len(pl.segments), pl.last_seq) == (1, 6, 6)
    assert not pl.endlist and pl.independent_segments and pl.target_duration == 2.0
    assert pl.segments[0].uri == DIR + "index1.ts"
    # ffmpeg writes PDT after EXTINF; each is the previous one + 2 s
    pdts = [s.pdt for s in pl.segments if s.pdt is not None]
    assert len(pdts) == 6 and [round(b - a, 3) for a, b in itertools.pairwise(pdts)] == [2.0] * 5
    assert not any(s.init or s.byterange or s.gap or s.key_method or s.cue_out for s in pl.segments)
    assert not pl.low_latency and pl.parts_in_progress == 0 and pl.dateranges == 0


def test_ffmpeg_ts_window_after_the_end():
    pl = media("ffmpeg51-ts-ended")
    assert (pl.media_sequence, len(pl.segments), pl.last_seq, pl.endlist) == (4, 6, 9, True)


def test_ffmpeg_fmp4_map_resolved_absolute():
    pl = media("ffmpeg51-fmp4-live")
    assert {s.init for s in pl.segments} == {InitSection(DIR + "init.mp4", None)}
    assert pl.segments[0].init is pl.segments[-1].init  # one object per EXT-X-MAP, not per segment
    assert (pl.media_sequence, pl.last_seq) == (1, 6)


def test_ffmpeg_single_file_byte_ranges():
    pl = media("ffmpeg51-ts-single-file")
    assert {s.uri for s in pl.segments} == {DIR + "index.ts"}
    assert [s.byterange for s in pl.segments] == [(81968, 0), (93060, 81968), (86480, 175028), (93624, 261508)]
    ends = [o + n for n, o in (s.byterange for s in pl.segments if s.byterange)]
    assert ends[-1] == 355132  # the size of the index.ts ffmpeg wrote


def test_ffmpeg_fmp4_single_file_map_byte_range():
    pl = media("ffmpeg51-fmp4-single-file")
    assert pl.segments[0].init == InitSection(DIR + "index.m4s", (1353, 0))
    assert [s.byterange for s in pl.segments] == [(73457, 1353), (83680, 74810), (77699, 158490), (85376, 236189)]


def test_byte_range_without_offset_continues_the_previous_sub_range():
    """RFC 8216 §4.3.2.2: ffmpeg always writes the offset; the same playlist without it must give the
    same ranges."""
    body = text("ffmpeg51-ts-single-file")
    stripped = re.sub(r"(#EXT-X-BYTERANGE:\d+)@(?!0\n)\d+", r"\1", body)
    assert stripped.count("@") == 1
    assert [s.byterange for s in media(stripped).segments] == [s.byterange for s in media(body).segments]
    # no offset and no previous sub-range of the same resource: undefined, the client must fail
    with pytest.raises(PlaylistError) as e:
        parse(body.replace("#EXT-X-BYTERANGE:81968@0", "#EXT-X-BYTERANGE:81968"), BASE)
    assert e.value.seq == 0
    other = stripped.replace("index.ts\n#EXTINF:2.000000,\n#EXT-X-BYTERANGE:93060\n",
                             "other.ts\n#EXTINF:2.000000,\n#EXT-X-BYTERANGE:93060\n", 1)
    with pytest.raises(PlaylistError, match="segment 1"):
        parse(other, BASE)


def test_ffmpeg_demuxed_audio_group():
    pl = master("ffmpeg51-agroup-master")
    assert [(v.name, v.audio_group, v.codecs) for v in pl.variants] == [
        ("360p", "group_aud", "avc1.64001e,mp4a.40.2"),
        ("180p", "group_aud", "avc1.64000d,mp4a.40.2"),
        ("70k", "group_aud", "mp4a.40.2"),  # ffmpeg lists the lone audio rendition as a variant too
    ]
    (a,) = pl.media
    assert (a.name, a.type, a.group_id, a.language, a.default, a.uri) == (
        "audio-1", "AUDIO", "group_aud", None, True, DIR + "stream_2.m3u8")
    assert pl.variants[2].uri == a.uri
    audio = media("ffmpeg51-agroup-audio")
    assert [s.duration for s in audio.segments] == [2.020133, 1.996922, 1.996911, 1.996922, 0.023222]


def test_ffmpeg_audio_languages_captions_and_subtitles():
    pl = master("ffmpeg51-renditions-master")
    assert [(m.name, m.type, m.group_id, m.language, m.default) for m in pl.media] == [
        ("cc-en", "CLOSED-CAPTIONS", "cc", "en", False),
        ("audio-en", "AUDIO", "group_aud", "en", True),
        ("audio-de", "AUDIO", "group_aud", "de", False),
        ("subs-1", "SUBTITLES", "subs", None, False),
    ]
    assert [m.uri for m in pl.media] == [None, DIR + "stream_2.m3u8", DIR + "stream_3.m3u8",
                                         DIR + "stream_0_vtt.m3u8"]
    assert [v.name for v in pl.variants] == ["360p", "180p"] and not pl.iframes


def test_ffmpeg_aes128_key():
    pl = media("ffmpeg51-aes128")
    assert {(s.key_method, s.key_uri) for s in pl.segments} == {("AES-128", DIR + "keys/enc.key")}
    assert not hasattr(pl.segments[0], "iv")  # key material is never kept


def test_ffmpeg_restart_discontinuity_and_pdt():
    pl = media("ffmpeg51-append-discontinuity")
    assert [s.discontinuity for s in pl.segments] == [True, False, False, True, False, False]
    s2, s3 = pl.segments[2], pl.segments[3]
    assert s2.pdt is not None and s3.pdt is not None
    # each segment's own EXT-X-PROGRAM-DATE-TIME wins over the carried one: this packager's
    # second run starts earlier than the first run's last segment ends
    assert s3.pdt < s2.pdt + s2.duration


def test_ffmpeg_dash_muxer_hls_side():
    pl = master("ffmpeg51-dash-hls-master")
    assert [(v.name, v.audio_group) for v in pl.variants] == [("180p", "group_A1")]
    assert [(m.name, m.uri) for m in pl.media] == [("audio-1", DIR + "media_1.m3u8")]
    video = media("ffmpeg51-dash-hls-video")
    assert video.media_sequence == 1 and video.segments[0].init == InitSection(DIR + "init-stream0.m4s")


def test_ffmpeg_lhls_prefetch_is_a_plain_live_playlist():
    """``#EXT-X-PREFETCH`` is the pre-standard LHLS tag, not an LL-HLS part: the complete segments
    are what the playlist offers."""
    pl = media("ffmpeg51-dash-lhls-prefetch")
    assert "#EXT-X-PREFETCH:" in text("ffmpeg51-dash-lhls-prefetch")
    assert (pl.media_sequence, pl.last_seq, pl.endlist) == (1, 3, False)
    assert not pl.low_latency and pl.parts_in_progress == 0


def test_gstreamer_hlssink2():
    live = media("gst122-hlssink2-live")
    assert (live.media_sequence, live.last_seq, live.endlist) == (0, 3, False)
    assert [s.duration for s in live.segments] == [2.0] * 4 and all(s.pdt is None for s in live.segments)
    ended = media("gst122-hlssink2-ended")
    assert (ended.media_sequence, ended.last_seq, ended.endlist) == (3, 7, True)
    assert ended.segments[-1].duration == pytest.approx(0.9666667)


# --- the RFC's examples ----------------------------------------------------------------------


def test_rfc8216_media_examples():
    simple = media("rfc8216-8.1-simple")
    assert [s.duration for s in simple.segments] == [9.009, 9.009, 3.003] and simple.endlist
    live = media("rfc8216-8.2-live-https")
    assert (live.media_sequence, live.last_seq) == (2680, 2682)
    assert live.segments[0].uri == "https://priv.example.com/fileSequence2680.ts"
    enc = media("rfc8216-8.3-encrypted")
    assert [(s.seq, s.key_uri) for s in enc.segments] == [
        (7794, "https://priv.example.com/key.php?r=52"), (7795, "https://priv.example.com/key.php?r=52"),
        (7796, "https://priv.example.com/key.php?r=52"), (7797, "https://priv.example.com/key.php?r=53")]
    assert {s.key_method for s in enc.segments} == {"AES-128"}


def test_rfc8216_iframe_playlists():
    pl = master("rfc8216-8.5-master-iframes")
    assert [(v.name, v.uri, v.bandwidth) for v in pl.iframes] == [
        ("iframe-86k", DIR + "low/iframe.m3u8", 86000),
        ("iframe-150k", DIR + "mid/iframe.m3u8", 150000),
        ("iframe-550k", DIR + "hi/iframe.m3u8", 550000),
    ]
    assert [v.name for v in pl.variants] == ["1280k", "2560k", "7680k", "65k"]  # as before: unchanged


def test_rfc8216_alternative_audio():
    pl = master("rfc8216-8.6-master-alt-audio")
    assert [(m.name, m.language, m.default, m.autoselect, m.uri) for m in pl.media] == [
        ("audio-en-1", "en", True, True, DIR + "main/english-audio.m3u8"),
        ("audio-de", "de", False, True, DIR + "main/german-audio.m3u8"),
        ("audio-en-2", "en", False, False, DIR + "commentary/audio-only.m3u8"),
    ]
    assert {(v.audio_group, v.codecs) for v in pl.variants[:3]} == {("aac", "...")}


def test_rfc8216bis_low_latency_example():
    pl = media("rfc8216bis-9.11-low-latency")
    assert pl.low_latency and pl.part_target == 2.00004 and pl.can_block_reload
    assert pl.parts_in_progress == 1  # midRoll274.0.mp4; midRoll274.1.mp4 is only a hint
    assert (pl.media_sequence, pl.last_seq, len(pl.segments)) == (268, 273, 6)
    assert pl.newest is not None and pl.newest.uri == DIR + "midRoll273.mp4" and pl.newest.discontinuity
    assert not pl.endlist


# --- low latency -------------------------------------------------------------------------------


def test_smallest_low_latency_input_is_a_live_media_playlist():
    pl = media("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:266\n"
               "#EXTINF:2.0,\nseg266.ts\n#EXTINF:2.0,\nseg267.ts\n"
               '#EXT-X-PART:DURATION=1.0,URI="seg268.0.ts",INDEPENDENT=YES\n'
               '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg268.2.ts"\n')
    assert (pl.media_sequence, pl.last_seq, pl.parts_in_progress) == (266, 267, 1)
    assert pl.low_latency and pl.part_target is None and not pl.can_block_reload and not pl.endlist


def test_delta_update_keeps_sequence_numbers():
    """RFC 8216bis §4.4.5.2: EXT-X-SKIP stands for the first SKIPPED-SEGMENTS segments; the
    MEDIA-SEQUENCE still counts them. The §9.11 example as a delta update that skips two."""
    body = text("rfc8216bis-9.11-low-latency").replace(
        "#EXTINF:4.00008,\nfileSequence268.mp4\n#EXTINF:4.00008,\nfileSequence269.mp4\n",
        "#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n")
    pl = media(body)
    assert (pl.media_sequence, pl.skipped_segments, len(pl.segments), pl.last_seq) == (268, 2, 4, 273)
    assert [(s.seq, s.uri.rsplit("/", 1)[1]) for s in pl.segments][:2] == [
        (270, "fileSequence270.mp4"), (271, "fileSequence271.mp4")]


def test_pdt_is_not_advanced_twice_by_parts():
    """m3u8 6.0 adds each EXT-X-PART's duration to its running date-time and then the segment's
    EXTINF again; the model carries the date-time by EXTINF only."""
    pl = media("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=2.0\n"
               "#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00Z\n#EXTINF:4.0,\na.mp4\n"
               '#EXT-X-PART:DURATION=2.0,URI="b.0.mp4"\n#EXT-X-PART:DURATION=2.0,URI="b.1.mp4"\n'
               "#EXTINF:4.0,\nb.mp4\n#EXTINF:4.0,\nc.mp4\n")
    pdts = [s.pdt for s in pl.segments if s.pdt is not None]
    assert [p - pdts[0] for p in pdts] == [0.0, 4.0, 8.0]


# --- tags no packager here writes: named mutations of real fixtures ------------------------------


def test_gap_flags():
    body = text("ffmpeg51-ts-live").replace("index3.ts", "#EXT-X-GAP\nindex3.ts")
    pl = media(body)
    assert [s.gap for s in pl.segments] == [False, False, True, False, False, False]


def test_key_method_none_and_data_uri():
    body = text("ffmpeg51-aes128").replace("#EXTINF:2.000000,\nindex2.ts", "#EXT-X-KEY:METHOD=NONE\n#EXTINF:2.000000,\nindex2.ts")
    assert [(s.key_method, s.key_uri) for s in media(body).segments][1:3] == [
        ("AES-128", DIR + "keys/enc.key"), (None, None)]
    inline = text("ffmpeg51-aes128").replace('URI="keys/enc.key"', 'URI="data:text/plain;base64,AAECAwQFBgcICQoLDA0ODw=="')
    assert {(s.key_method, s.key_uri) for s in media(inline).segments} == {("AES-128", "data:")}
    with pytest.raises(PlaylistError, match="no URI"):
        parse(text("ffmpeg51-aes128").replace(',URI="keys/enc.key"', ""), BASE)


def test_cue_out_until_cue_in():
    body = text("ffmpeg51-ts-live").replace("index2.ts", "#EXT-X-CUE-OUT\nindex2.ts", 1) \
        .replace("#EXTINF:2.000000,\n#EXT-X-PROGRAM-DATE-TIME:2026-11-30T13:30:40.695", "#EXT-X-CUE-IN\n#EXTINF:2.000000,\n"
                 "#EXT-X-PROGRAM-DATE-TIME:2026-11-30T13:30:40.695")
    # CUE-OUT before index2, CUE-IN before index5: index2..index4 are the break
    assert [s.cue_out for s in media(body).segments] == [False, True, True, True, False, False]


def test_cue_out_with_duration_ends_by_itself():
    body = text("gst122-hlssink2-ended").replace("#EXTINF:2,\nseg00004.ts", "#EXT-X-CUE-OUT:DURATION=4\n#EXTINF:2,\nseg00004.ts")
    assert [s.cue_out for s in media(body).segments] == [False, True, True, False, False]
    cont = text("gst122-hlssink2-ended").replace("#EXTINF:2,\nseg00004.ts",
                                                  "#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=4\n#EXTINF:2,\nseg00004.ts")
    assert [s.cue_out for s in media(cont).segments] == [False, True, False, False, False]


def test_dateranges_start_offset_independent_segments():
    daterange = ('#EXT-X-DATERANGE:ID="splice-6FFFFFF0",START-DATE="2014-03-05T11:15:00Z",PLANNED-DURATION=59.993,'
                 "SCTE35-OUT=0xFC002F000000000000FF000014056FFFFFF000E081622DCAFF000052636200000000000A0008029896F5"
                 "0000008700000000\n")  # RFC 8216 §8.10, the first tag joined on one line
    body = text("ffmpeg51-ts-live").replace("#EXT-X-INDEPENDENT-SEGMENTS\n", "#EXT-X-INDEPENDENT-SEGMENTS\n"
                                            "#EXT-X-START:TIME-OFFSET=-6.0\n" + daterange)
    body = body.replace("index4.ts\n", "index4.ts\n" + daterange.replace("START-DATE", "END-ON-NEXT=YES,X-A=1,START-DATE"))
    body += daterange  # after the last segment: the library drops these, the count keeps them
    pl = media(body)
    assert (pl.dateranges, pl.start_offset, pl.independent_segments) == (3, -6.0, True)
    assert (pl.media_sequence, pl.last_seq) == (1, 6)


# --- masters: label-safe names, bounds, unchanged behaviour --------------------------------------


def test_rendition_names_never_come_from_uris_and_are_bounded():
    lines = ["#EXTM3U"]
    for i in range(MAX_VARIANTS + 8):
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="sk_SECRET42",LANGUAGE="x-SECRET{i}; drop",'
                     f'URI="https://cdn.example/sk_SECRET42/a{i}.m3u8"')
        lines.append(f'#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1000,URI="sk_SECRET42/i{i}.m3u8"')
    lines += ['#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO="a"', "sk_SECRET42/v.m3u8"]
    pl = parse("\n".join(lines) + "\n", BASE)
    assert isinstance(pl, MasterPlaylist)
    assert len(pl.media) == MAX_VARIANTS and len(pl.iframes) == MAX_VARIANTS
    for r in (*pl.media, *pl.iframes, *pl.variants):
        assert re.fullmatch(r"[a-z0-9-]{1,40}", r.name) and "sk_" not in r.name and "/" not in r.name, r.name
    assert len({r.name for r in pl.media}) == MAX_VARIANTS
    assert pl.iframes[0].name == "iframe-1k-1"


def test_positional_constructions_of_the_users_still_work():
    v = Variant("main", "http://127.0.0.1/x.m3u8", None, None)
    m = MasterPlaylist((v,))
    assert (m.variants, m.media, m.iframes, v.audio_group, v.codecs) == ((v,), (), (), None, None)
    pl = media("ffmpeg51-ts-live")
    first = pl.segments[0]
    assert pl.segments[0] == type(first)(first.seq, first.uri, first.duration, first.pdt, first.discontinuity)
    same = MediaPlaylist(pl.media_sequence, pl.discontinuity_sequence, pl.target_duration, pl.segments, pl.endlist)
    assert same.last_seq == pl.last_seq and same.newest == pl.newest


@pytest.mark.parametrize("ref", ["a.ts", "x/y/a.ts?t=1&u=2", "a.ts#frag", "../up.ts", "./here.ts", "a/./b.ts",
                                 "/root.ts", "//cdn.example/x.ts", "https://o.example/a.ts", ".hidden.ts",
                                 "seg%20one.ts", "a:b.ts", "é.ts", "data/x..y.ts", "../../seg/12.ts",
                                 "../seg/12.ts?tok=a/b", "./x/../12.ts?", "a.ts?", "../../../../../seg/12.ts",
                                 "../x:y/12.ts", "/./a/../12.ts#f", "../seg/..", "../seg/."])
@pytest.mark.parametrize("base", [BASE, "http://h", "https://u:p@h:8443/a/b/c.m3u8;p?q=1#f", "http://h/dir/"])
def test_segment_uris_are_urljoin_of_the_base(ref, base):
    pl = parse(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{ref}\n", base)
    assert isinstance(pl, MediaPlaylist)
    assert pl.segments[0].uri == urljoin(base, ref)


@pytest.mark.parametrize("ref", ["a.ts?x=\x01", "seg/a.ts?\x7f", "../../seg/a.ts?t=\x1b", "a b.ts"])
def test_a_segment_uri_no_client_can_request_is_an_error_on_every_resolution_path(ref):
    """A control character or a space in a reference is refused whether the reference is resolved
    by appending (a plain relative name), per folder (``../seg/N.ts``) or by urljoin."""
    with pytest.raises(PlaylistError, match="segment 0 has an unusable URI"):
        parse(f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{ref}\n", BASE)


@pytest.mark.parametrize(("base", "ref"), [
    ("https://cdn.example/live/p.m3u8", "/\t/evil.example?x"),  # urlsplit drops the tab: "//" is a host
    ("https://cdn.example/live/p.m3u8", " //evil.example"),  # and strips the leading space
    ("http://h:1", "/\t/99999"),
    ("http://h/d/p.m3u8?tok=1", "\x01//x.ts"),
    ("d/p.m3u8", "../x.ts"),  # a relative base: its folder above the root resolves to "/"
    ("/abs/p.m3u8", "/../x.ts"),
])
def test_a_folder_urlsplit_would_rewrite_is_resolved_whole(base, ref):
    """Found by a differential tester: a folder that becomes ``//`` once urlsplit has stripped it
    was answered with the playlist's own URL, the name glued on (``.../p.m3u8evil.example``)."""
    from urllib.parse import urljoin

    from probes.core.playlist import _checked, _resolver

    assert _resolver(base)(ref, "segment") == _checked(urljoin(base, ref))


def test_segments_named_through_dot_segments_share_one_resolved_folder():
    """ffmpeg's ``hls_base_url``/symlinked layouts name every segment ``../../seg/N.ts``: the
    resolution is remembered per folder, not per segment (one per segment pushed each other
    out of the bounded memo at a few hundred streams, and urljoin ran for every segment)."""
    from probes.core.playlist import _joined

    base = "http://127.0.0.1:8080/live/s001/180p.m3u8"
    body = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + "".join(f"#EXTINF:2,\n../../seg/{n}.ts\n" for n in range(500))
    _joined.cache_clear()
    pl = parse(body, base)
    assert isinstance(pl, MediaPlaylist)
    assert [s.uri for s in pl.segments] == [urljoin(base, f"../../seg/{n}.ts") for n in range(500)]
    assert _joined.cache_info().currsize == 1


# --- RFC 8216 §4.3.3.1 rounding --------------------------------------------------------------


def test_extinf_rounds_halves_up():
    assert extinf_exceeds_target(2.5, 2)
    assert not extinf_exceeds_target(2.4, 2)
    assert extinf_exceeds_target(3.5, 3)
    assert not extinf_exceeds_target(2.0, 2) and not extinf_exceeds_target(2.49999, 2)
    assert round(2.5) <= 2  # what Python's round() would have let through
    assert extinf_exceeds_target(math.inf, 3600) and extinf_exceeds_target(math.nan, 2)


# --- bad values end as PlaylistError with where, never a URL -----------------------------------


LIVE = text("ffmpeg51-ts-live")
SEG3 = "#EXTINF:2.000000,\n#EXT-X-PROGRAM-DATE-TIME:2026-11-30T13:30:36.695+0000\nindex3.ts"


@pytest.mark.parametrize(("body", "reason", "seq"), [
    (LIVE.replace(SEG3, SEG3.replace("2.000000", "nan")), "segment 3 has an EXTINF that is not a finite", 3),
    (LIVE.replace(SEG3, SEG3.replace("2.000000", "inf")), "segment 3 has an EXTINF that is not a finite", 3),
    (LIVE.replace(SEG3, SEG3.replace("2.000000", "-1")), "segment 3 has an EXTINF that is not a finite", 3),
    (LIVE.replace(SEG3, SEG3.replace("2.000000", "two")), "segment 3 has an unparseable EXTINF", 3),
    (LIVE.replace(SEG3, SEG3.replace("2.000000", "1e20")), "segment 3 has an absurd EXTINF", 3),
    (text("ffmpeg51-ts-single-file").replace("#EXTINF:2.000000,\n#EXT-X-BYTERANGE:93060", "#EXT-X-BYTERANGE:93060"),
     "segment 1 has no URI or EXTINF", 1),
    (text("gst122-hlssink2-live").replace("#EXTINF:2,\nseg00002", "#EXTINF:nan,\nseg00002"), "segment 2 has an EXTINF", 2),
    (LIVE.replace("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:-1"), "#EXT-X-TARGETDURATION is negative", None),
    (LIVE.replace("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:nan"), "#EXT-X-TARGETDURATION on line 3", None),
    (LIVE.replace("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:inf"), "#EXT-X-TARGETDURATION on line 3", None),
    (LIVE.replace("#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:86400"), "over 3600 s", None),
    (text("ffmpeg51-ts-single-file").replace("93060@81968", "93060@x"), "segment 1: unparseable #EXT-X-BYTERANGE", 1),
    (text("ffmpeg51-ts-single-file").replace("93060@81968", "-5@1"), "segment 1: negative #EXT-X-BYTERANGE", 1),
    (text("ffmpeg51-fmp4-single-file").replace('BYTERANGE="1353@0"', 'BYTERANGE="big"'), "#EXT-X-MAP BYTERANGE", 0),
    (LIVE.replace("13:30:38.695+0000", "yesterday"), "#EXT-X-PROGRAM-DATE-TIME on line 16 (segment 4)", 4),
    (LIVE.replace("#EXT-X-MEDIA-SEQUENCE:1", "#EXT-X-MEDIA-SEQUENCE:-3"), "MEDIA-SEQUENCE is negative", None),
    (LIVE.replace("index6.ts", ""), "segment 6 has no URI or EXTINF", 6),
    (text("rfc8216bis-9.11-low-latency").replace("PART-TARGET=2.00004", "PART-TARGET=nan"), "PART-TARGET", None),
    (LIVE.replace("#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-START:TIME-OFFSET=inf"), "TIME-OFFSET", None),
    (text("rfc8216-8.5-master-iframes").replace("BANDWIDTH=1280000", "BANDWIDTH=1280000,RESOLUTION=wide"),
     "variant 1 has an unparseable RESOLUTION", None),
])
def test_bad_values_are_playlist_errors_with_where(body, reason, seq):
    with pytest.raises(PlaylistError) as e:
        parse(body, BASE)
    assert reason in str(e.value)
    assert e.value.seq == seq
    assert "SECRET" not in str(e.value) and "TOK99" not in str(e.value) and "127.0.0.1" not in str(e.value)


def _mutations(line: str) -> list[str]:
    out = ["", line + "\n" + line, line[: len(line) // 2], line + ",", line.replace('"', "")]
    out += [re.sub(r"\d+(\.\d+)?", v, line, count=1) for v in ("nan", "-1", "inf", "1e400", "", "99999999999999999999")]
    if ":" in line:
        tag = line.split(":", 1)[0]
        out += [tag + ":", tag + ":,,,=", tag + ':URI="', tag + ":" + "A=" * 50]
    return out


@pytest.mark.parametrize("name", ALL)
def test_mutated_fixture_lines_never_raise_anything_but_playlist_error(name):
    """Every line of every fixture, broken a dozen ways: either a playlist comes back or a
    PlaylistError whose message names no URL."""
    lines = text(name).splitlines()
    for i, line in enumerate(lines):
        for bad in _mutations(line):
            body = "\n".join([*lines[:i], bad, *lines[i + 1:]]) + "\n"
            try:
                parse(body, BASE)
            except PlaylistError as exc:
                msg = str(exc)
                assert "SECRET" not in msg and "127.0.0.1" not in msg and "example" not in msg, (name, i, msg)
                assert "http" not in msg and ".ts" not in msg and ".m3u8" not in msg, (name, i, msg)


def test_distinct_keys_a_player_fetches_and_a_rotation_adds_one():
    enc = media("rfc8216-8.3-encrypted")
    assert enc.keys == (("AES-128", "https://priv.example.com/key.php?r=52"),
                        ("AES-128", "https://priv.example.com/key.php?r=53"))
    assert media("ffmpeg51-aes128").keys == (("AES-128", DIR + "keys/enc.key"),)
    inline = media('#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAAA"\n'
                   "#EXTINF:2,\na.ts\n#EXT-X-KEY:METHOD=NONE\n#EXTINF:2,\nb.ts\n")
    assert inline.keys == ()  # an inline key is nothing to fetch; METHOD=NONE is no key
    assert media("ffmpeg51-ts-live").keys == ()


def test_the_audio_rendition_a_player_plays_with_a_variant():
    alt = master("rfc8216-8.6-master-alt-audio")
    chosen = audio_rendition(alt, alt.variants[0])
    assert chosen is not None and (chosen.name, chosen.uri) == ("audio-en-1", DIR + "main/english-audio.m3u8")
    ff = master("ffmpeg51-renditions-master")
    chosen = audio_rendition(ff, ff.variants[1])
    assert chosen is not None and (chosen.name, chosen.default) == ("audio-en", True)
    no_group = Variant("x", DIR + "x.m3u8", None, None)
    assert audio_rendition(ff, no_group) is None
    assert audio_rendition(ff, Variant("y", DIR + "y.m3u8", None, None, audio_group="nope")) is None
    muxed = MasterPlaylist(alt.variants, tuple(dataclasses.replace(m, uri=None) for m in alt.media))
    assert audio_rendition(muxed, alt.variants[0]) is None  # listed without URI: muxed into the variant


# --- one parse per body across probes (PlaylistCache) ----------------------------------------


async def test_playlist_cache_answers_the_same_bytes_at_the_same_url_from_one_parse():
    live = text("ffmpeg51-ts-live").encode()
    master = text("ffmpeg51-renditions-master").encode()
    cache = PlaylistCache()
    a = await cache.parse(live, "http://h/v/index.m3u8")
    b = await cache.parse(bytes(live), "http://h/v/index.m3u8")  # equal bytes, another object
    assert b is a and (cache.hits, cache.misses) == (1, 1)
    # another URL is another base: its URIs resolve elsewhere, so it is parsed afresh
    c = await cache.parse(live, "http://h/w/index.m3u8")
    assert c is not a and c.segments[0].uri.startswith("http://h/w/")
    # a new body at a URL replaces the old one
    moved = live.replace(b"#EXT-X-MEDIA-SEQUENCE:", b"#EXT-X-MEDIA-SEQUENCE:1", 1)
    d = await cache.parse(moved, "http://h/v/index.m3u8")
    assert d is not a and d.media_sequence != a.media_sequence
    assert isinstance(await cache.parse(master, "http://h/master.m3u8"), MasterPlaylist)
    assert len(cache) == 3 and cache.misses == 4


async def test_playlist_cache_keeps_no_malformed_body_and_stays_bounded():
    cache = PlaylistCache(max_entries=2, max_bytes=10_000)
    for _ in range(2):  # each read names its error: nothing kept
        with pytest.raises(PlaylistError):
            await cache.parse(b"#EXTM3U\n#EXTINF:abc,\nseg.ts\n#EXT-X-TARGETDURATION:x\n", "http://h/bad.m3u8")
    assert len(cache) == 0 and cache.hits == 0
    live = text("ffmpeg51-ts-live").encode()
    for i in range(5):
        await cache.parse(live, f"http://h/{i}/index.m3u8")
    assert len(cache) == 2  # the oldest dropped first
    first = await cache.parse(live, "http://h/0/index.m3u8")
    assert cache.hits == 0 and first.segments  # parsed again: it had been dropped
    big = live + b"\n" * 20_000  # over max_bytes on its own: parsed, not kept
    await cache.parse(big, "http://h/big.m3u8")
    await cache.parse(big, "http://h/big.m3u8")
    assert cache.hits == 0 and len(cache) <= 2


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.m3u8")))
async def test_the_same_body_on_another_host_is_the_parse_there_without_parsing_it_again(name: str):
    """An origin and its edges serve the same bytes at the same path: the edge's parse is the
    origin's with each URI moved to the edge's host — equal to parsing it there, for every
    recorded packager's and RFC example's playlist (segments, maps, keys, parts, preload hints,
    rendition reports, variants, alternates, I-frame playlists). A body holding ``//`` (an
    absolute URI: another host) is parsed afresh, and so is one at another path."""
    body = (FIXTURES / f"{name}.m3u8").read_bytes()
    cache = PlaylistCache()
    origin = "http://127.0.0.1:8080/live/main/index.m3u8"
    edge = "https://edge-a.example:8443/live/main/index.m3u8"
    await cache.parse(body, origin)
    got = await cache.parse(body, edge)
    assert got == await parse_body(body, edge)
    assert cache.rebased == (0 if b"//" in body else 1)
    other_path = "https://edge-a.example:8443/live/other/index.m3u8"
    assert await cache.parse(body, other_path) == await parse_body(body, other_path)
    assert cache.rebased == (0 if b"//" in body else 1) and cache.misses == 3


async def test_identical_bodies_of_several_streams_each_move_to_their_own_edges():
    """A packager's aligned channels can serve byte-identical playlists at different paths (relative
    segment URIs, the same numbering and clock): each stream's edge still finds its own origin's
    parse (the twin is looked up by body and path), never another stream's."""
    body = text("ffmpeg51-ts-live").encode()
    cache = PlaylistCache()
    paths = [f"/live/ch{i}/index.m3u8" for i in range(3)]
    for p in paths:
        await cache.parse(body, "http://origin:8080" + p)
    for p in paths:  # the edges read after every origin was read: the newest holder is another path
        edge = "http://edge-a:8081" + p
        assert await cache.parse(body, edge) == await parse_body(body, edge)
    assert cache.rebased == 3 and cache.misses == 6
