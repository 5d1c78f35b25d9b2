"""The fuzz suite's strategies and properties, in one place (issue 15 item 3): tests/test_fuzz.py
runs them bounded (a fixed seed, a few hundred examples each, inside ``make test``) and
tests/perf/fuzz_long.py runs the same ones for 100,000 inputs and counts crashes.

Targets, and what each property holds them to (the modules' docstrings are the contract):

- ``parser``: :func:`probes.core.playlist.parse` over structured playlists (RFC 8216 tags with
  hostile values) and over mutations of the real packagers' playlists (tests/fixtures/hls). It
  returns a model whose every number is finite and within the documented bounds and whose
  every URI a client can request, or raises :class:`PlaylistError` — anything else is a crash.
  The error's message never quotes a URL (a canary in every generated URI must not show).
- ``hls``: the HLS probe (:mod:`probes.hls`, its continuity, freshness, key and drift
  analysis) over sequences of snapshots of one endpoint: sequence advances, regressions,
  renumbering, ENDLIST toggles, discontinuities, hostile bodies, fetch failures, hostile
  cache headers. It never raises, every figure and sample stays a finite number, every
  non-OK evidence names a fault, and its memory across attempts stays bounded. The fetcher is
  the probe's documented seam (``ProbeContext.http``) answering from the script: a real
  server per input would cost more than the analysis under test (tests/test_hls_probe.py runs
  the same probe against real servers).
- ``player``: :class:`probes.core.player_model.PlayerModel` fed arbitrary timelines (clock
  steps, segment durations and sizes, gaps, fatal errors, ends of stream), once as the
  playback probe feeds it (a segment only when :meth:`wait_for_room` says there is room) and
  once regardless; and :func:`probes.playback.reload_delay` / :func:`join_index` over any
  target duration. It never raises, its figures stay finite and consistent, the buffer stays
  under ``max_buffer_s`` plus one segment (each at most the parser's 3600 s) and the reload
  interval within 0.5-30 s.

A check raises AssertionError (or the crash itself); the callers decide what a failure is.
Hypothesis keeps nothing in the checkout: its home (the example database is off anyway,
but its unicode and constants caches write there) is a temporary folder, removed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import math
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis.configuration
from hypothesis import strategies as st

from probes.base import Failure, ProbeContext, ProbeResult, ProbeTarget, State
from probes.core.player_model import PlaybackFigures, PlayerConfig, PlayerModel, PlayerState, join_index
from probes.core.playlist import (
    MAX_BYTE_OFFSET,
    MAX_RESOLUTION,
    MAX_SEQUENCE,
    MAX_TARGET_DURATION_S,
    MAX_VARIANTS,
    MasterPlaylist,
    MediaPlaylist,
    PlaylistError,
    audio_rendition,
    choose_renditions,
    parse,
)
from probes.faults import Fault
from probes.hls import MAX_KEYS, HlsSettings, combine
from probes.hls import probe as hls_probe
from probes.net.httpfetch import FetchResult
from probes.playback import MAX_RELOAD_S, MIN_RELOAD_S, reload_delay

_HOME = tempfile.mkdtemp(prefix="signalpath-hypothesis-")  # under pytest, inside the run's own scratch folder
hypothesis.configuration.set_hypothesis_home_dir(_HOME)
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)


FIXTURES_DIR = Path(__file__).parent / "fixtures" / "hls"
FIXTURES: tuple[str, ...] = tuple(p.read_text() for p in sorted(FIXTURES_DIR.glob("*.m3u8")))

CANARY = "zq9canary"
"""In every generated URI and base URL: an error message that shows it quotes a URL."""

# -- values ----------------------------------------------------------------------------------

HOSTILE_NUMBERS = (
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "+inf", "-1", "-0", "0", "0.0", "1e308", "-1e308", "1e309",
    "1e-320", "18446744073709551615", "18446744073709551616", "-18446744073709551616", "9" * 30, "9" * 400,
    "9" * 5000, "", " ", "0x1F", "1_0", "+5", "1.", ".5", "\u0663", "1e", "--1", "2.0.0", "3600", "3600.5",
    "3601", "1000000000", "4.00008", "2.5", "1e-9",
)
SANE_NUMBERS = ("1", "2", "4", "6", "10", "0", "2.000", "3.5", "5.005", "1.001", "100", "268")

SANE_URIS = (
    "seg1.ts", "a/b/seg2.ts", "../up/seg3.ts", "./here.ts", "/abs/seg4.ts", "seg5.ts?token=" + CANARY,
    f"http://{CANARY}.example/s.ts", f"https://cdn.example:8443/{CANARY}/x.ts", f"//other.example/{CANARY}.ts",
    f"http://[2001:db8::1]:8080/{CANARY}.ts", f"https://user:{CANARY}@cdn.example/s.ts", "fileSequence1.mp4",
)
HOSTILE_URIS = (
    f"http://[::1/{CANARY}.ts", f"http://[{CANARY}/x", f"http://h.example:{CANARY}/x", "http://h.example:0/x",
    f"http://h.example:65535/{CANARY}", f"http://h.example:65536/{CANARY}", f"http://h.example:99999/{CANARY}",
    f"http://h.example:-1/{CANARY}", f"http://h.example:\uff11\uff12/{CANARY}", f"http://{CANARY}:pw/x",
    f"http://[::1]:99999/{CANARY}", f"http://[::1]:80/{CANARY}", f"s {CANARY}.ts", f"s\x00{CANARY}.ts",
    f"s\t{CANARY}.ts", f"\u00fc{CANARY}.ts", f"\u202e{CANARY}.ts", "", " ", "#", "?", "http://", "http:///x",
    f"mailto:{CANARY}", f"javascript:{CANARY}", f"data:text/plain,{CANARY}", f"skd://{CANARY}",
    CANARY + "a" * 3000, f'q"uote{CANARY}', f"http://h.example/{CANARY}#frag", "%zz.ts", "..", "/",
)
BASES = (
    f"http://edge.example/live/{CANARY}/main.m3u8", f"https://[2001:db8::1]:8443/{CANARY}/index.m3u8",
    f"http://edge.example:8080/{CANARY}/a/b/c.m3u8?token={CANARY}", f"http://edge.example/{CANARY}/",
)
HOSTILE_BASES = (f"http://[::1/{CANARY}/m.m3u8", f"http://edge.example:99999/{CANARY}.m3u8", f"s p a c e/{CANARY}")
DATES = (
    "2026-11-30T18:00:00.000Z", "2026-11-30T18:00:00+02:00", "2026-11-30T18:00:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z", "2026-02-30T00:00:00Z", "xx", "", "2026-11-30T25:61:61Z", "1970-01-01T00:00:00Z",
)
METHODS = ("NONE", "AES-128", "SAMPLE-AES", "SAMPLE-AES-CTR", "", "aes-128", "A" * 40, "X\x00", "NONE,URI")
MEDIA_TYPES = ("AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS", "", "OTHER", "audio")
LANGUAGES = ("en", "fr-CA", "", "x" * 40, "\u65e5\u672c", "EN en", "!!")
NEWLINES = ("\n", "\r\n", "\r")
HEADERS = ("#EXTM3U", "#EXTM3U", "#EXTM3U", "\ufeff#EXTM3U", "", "#EXTM3u", " #EXTM3U", "#EXTM3U\x00", "#EXTM3U junk")


@st.composite
def _biased(draw: st.DrawFn, sane: tuple[str, ...], hostile: tuple[str, ...], free: st.SearchStrategy[str]) -> str:
    """Mostly a sane value (so the parse goes deep), else a hostile one, else anything."""
    k = draw(st.integers(0, 9))
    if k < 6:
        return draw(st.sampled_from(sane))
    if k < 9:
        return draw(st.sampled_from(hostile))
    return draw(free)


# no codec: its table takes Hypothesis 13 s to build and would be rebuilt in every run (its
# cache would live in the checkout); no surrogates (no HTTP body carries one)
_free_text = st.text(st.characters(codec=None, exclude_categories=["Cs"]), max_size=12)
_floats = st.floats(allow_nan=True, allow_infinity=True).map(repr)
num = _biased(SANE_NUMBERS, HOSTILE_NUMBERS, st.one_of(_floats, st.integers().map(str), _free_text))
uri = _biased(SANE_URIS, HOSTILE_URIS, _free_text)
date = st.sampled_from(DATES)


def _quoted(v: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return v.map(lambda s: f'"{s}"')


_JUNK_LINES = st.sampled_from((
    "#EXT-X-PLAYLIST-TYPE:junk", "#EXT", "#EXT-X-", "#EXTINF", "#EXTINF:", "#EXT-X-KEY:", "#EXT-X-MAP:",
    "#EXT-X-BYTERANGE:", "#EXT-X-KEY:METHOD", "#EXT-X-STREAM-INF:", "#EXT-X-MEDIA:"))


@dataclass(frozen=True, slots=True)
class _Family:
    """The tag strategies over one kind of values: ``hostile`` (sane values mostly, hostile ones
    and junk lines now and then) or ``calm`` (sane values only, so that a playlist parses and the
    bounds of the model it gives are checked: a playlist of 30 values, each hostile 40 % of the
    time, almost never parses)."""

    media_tag: st.SearchStrategy[str]
    master_tag: st.SearchStrategy[str]
    segments: st.SearchStrategy[list[list[str]]]
    tags_0_2: st.SearchStrategy[list[str]]
    tags_0_4: st.SearchStrategy[list[str]]
    masters: st.SearchStrategy[list[str]]
    num: st.SearchStrategy[str]


def _family(num: st.SearchStrategy[str], dec: st.SearchStrategy[str], uri: st.SearchStrategy[str], junk: bool
            ) -> _Family:
    """``num`` where RFC 8216 wants a decimal-integer, ``dec`` where a decimal-floating-point."""
    res = st.one_of(st.sampled_from(("1920x1080", "640x360") + (("0x0", "-1x-1", "axb", "", "65536x65537", "1x")
                                                              if junk else ())),
                    st.builds(lambda w, h: f"{w}x{h}", num, num))
    media: list[st.SearchStrategy[str]] = [
        num.map(lambda v: f"#EXT-X-TARGETDURATION:{v}"),
        num.map(lambda v: f"#EXT-X-MEDIA-SEQUENCE:{v}"),
        num.map(lambda v: f"#EXT-X-DISCONTINUITY-SEQUENCE:{v}"),
        num.map(lambda v: f"#EXT-X-VERSION:{v}"),
        st.sampled_from(("#EXT-X-ENDLIST", "#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-DISCONTINUITY", "#EXT-X-GAP",
                         "#EXT-X-CUE-IN", "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-PLAYLIST-TYPE:VOD",
                         "#EXT-X-I-FRAMES-ONLY", "# a comment", "")),
        num.map(lambda v: f"#EXT-X-BYTERANGE:{v}"),
        st.builds(lambda n, o: f"#EXT-X-BYTERANGE:{n}@{o}", num, num),
        st.builds(lambda u, br: f'#EXT-X-MAP:URI="{u}"' + (f',BYTERANGE="{br}"' if br else ""), uri,
                  st.one_of(st.just(""), num, st.builds(lambda n, o: f"{n}@{o}", num, num))),
        st.builds(lambda m, u, iv: f'#EXT-X-KEY:METHOD={m},URI="{u}"' + (",IV=0x0123456789abcdef" if iv else ""),
                  st.sampled_from(METHODS if junk else METHODS[:3]), uri, st.booleans()),
        st.builds(lambda m: f"#EXT-X-KEY:METHOD={m}", st.sampled_from(METHODS if junk else METHODS[:1])),
        (date if junk else st.sampled_from(DATES[:3])).map(lambda d: f"#EXT-X-PROGRAM-DATE-TIME:{d}"),
        st.builds(lambda d, u, i: f'#EXT-X-PART:DURATION={d},URI="{u}"' + (",INDEPENDENT=YES" if i else ""),
                  dec, uri, st.booleans()),
        uri.map(lambda u: f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{u}"'),
        uri.map(lambda u: f'#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="{u}"'),
        dec.map(lambda v: f"#EXT-X-PART-INF:PART-TARGET={v}"),
        st.builds(lambda a, b: f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={a},CAN-SKIP-UNTIL={b}",
                  dec, dec),
        num.map(lambda v: f"#EXT-X-SKIP:SKIPPED-SEGMENTS={v}"),
        dec.map(lambda v: f"#EXT-X-START:TIME-OFFSET={v}"),
        dec.map(lambda v: f"#EXT-X-CUE-OUT:DURATION={v}"),
        dec.map(lambda v: f"#EXT-X-CUE-OUT:{v}"),
        st.builds(lambda a, b: f"#EXT-X-CUE-OUT-CONT:ElapsedTime={a},Duration={b}", dec, dec),
        st.builds(lambda d, n: f'#EXT-X-DATERANGE:ID="x",START-DATE="{d}",DURATION={n}', date, dec),
        st.builds(lambda u, a, b: f'#EXT-X-RENDITION-REPORT:URI="{u}",LAST-MSN={a},LAST-PART={b}', uri, num, num),
    ]
    if junk:
        media += [_JUNK_LINES, _free_text]
    media_tag = st.one_of(*media)
    groups = st.sampled_from(("aud", "", "other") if junk else ("aud",))
    master: list[st.SearchStrategy[str]] = [
        st.builds(lambda bw, abw, r, a, u: f'#EXT-X-STREAM-INF:BANDWIDTH={bw},AVERAGE-BANDWIDTH={abw},RESOLUTION={r},'
                  f'CODECS="avc1.64001f,mp4a.40.2",AUDIO="{a}"\n{u}', num, num, res, groups, uri),
        st.builds(lambda bw, u: f"#EXT-X-STREAM-INF:BANDWIDTH={bw}\n{u}", num, uri),
        st.builds(lambda t, g, lang, d, u: f'#EXT-X-MEDIA:TYPE={t},GROUP-ID="{g}",NAME="n",LANGUAGE="{lang}",'
                  f'DEFAULT={d},AUTOSELECT=YES,URI="{u}"', st.sampled_from(MEDIA_TYPES if junk else MEDIA_TYPES[:4]),
                  groups, st.sampled_from(LANGUAGES), st.sampled_from(("YES", "NO", "")), uri),
        st.builds(lambda t: f'#EXT-X-MEDIA:TYPE={t},GROUP-ID="cc",NAME="c",INSTREAM-ID="CC1"',
                  st.sampled_from(MEDIA_TYPES)),
        st.builds(lambda bw, r, u: f'#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={bw},RESOLUTION={r},URI="{u}"', num, res, uri),
        st.sampled_from(('#EXT-X-SESSION-DATA:DATA-ID="x",VALUE="y"', '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="k"',
                         "#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-VERSION:7")),
        dec.map(lambda v: f"#EXT-X-START:TIME-OFFSET={v}"),
    ]
    if junk:
        master += [st.builds(lambda attrs, u: f"#EXT-X-STREAM-INF:{attrs}\n{u}", _free_text, uri), media_tag]
    master_tag = st.one_of(*master)
    tags_0_3 = st.lists(media_tag, max_size=3)

    @st.composite
    def segment(draw: st.DrawFn) -> list[str]:
        """One segment: a few of its tags, EXTINF, the URI (now and then missing)."""
        lines = draw(tags_0_3)
        title = draw(_TITLE)
        if draw(st.integers(0, 19)):
            lines.append(f"#EXTINF:{draw(dec)},{title}")
        if draw(st.integers(0, 19)):
            lines.append(draw(uri))
        return lines

    return _Family(media_tag, master_tag, st.lists(segment(), max_size=8), st.lists(media_tag, max_size=2),
                   st.lists(media_tag, max_size=4), st.lists(master_tag, max_size=20), num)


# Strategies are built once, here: one built inside a draw is validated again at every example.
_TITLE = st.sampled_from(("", "title", "\u00e9\u00e8", "a,b"))
HOSTILE = _family(num, num, uri, junk=True)
CALM = _family(st.sampled_from(("1", "2", "4", "6", "10", "268")), st.sampled_from(("2.000", "3.5", "5.005", "1.001", "4")),
               st.sampled_from(SANE_URIS), junk=False)
media_tag, master_tag = HOSTILE.media_tag, HOSTILE.master_tag
_HEADER = st.sampled_from(HEADERS)
_NEWLINE = st.sampled_from(NEWLINES)
_CALMNESS = st.integers(0, 1)


def _assemble(draw: st.DrawFn, body: list[str], calm: bool) -> str:
    """A header (usually #EXTM3U), the body, line endings mixed at times; sometimes (never when
    calm) a duplicated or a NUL-broken line."""
    head = "#EXTM3U" if calm else draw(_HEADER)
    lines = [head, *body] if head else body
    if lines and not calm and draw(st.integers(0, 9)) == 0:
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
    if lines and not calm and draw(st.integers(0, 19)) == 0:
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][: len(lines[i]) // 2] + "\x00" + lines[i][len(lines[i]) // 2:]
    nl = draw(_NEWLINE) if draw(st.integers(0, 4)) else None
    if nl is not None:
        return nl.join(lines) + nl
    return "".join(ln + draw(_NEWLINE) for ln in lines)


@st.composite
def media_playlist(draw: st.DrawFn) -> str:
    """A media playlist of RFC 8216 tags: half of them calm, the others with hostile values now and then."""
    calm = draw(_CALMNESS) == 0
    f = CALM if calm else HOSTILE
    body = [f"#EXT-X-TARGETDURATION:{draw(f.num)}"] if calm or draw(st.integers(0, 9)) else []
    body += draw(f.tags_0_4)
    for seg in draw(f.segments):
        body += seg
    body += draw(f.tags_0_2)
    return _assemble(draw, body, calm)


@st.composite
def master_playlist(draw: st.DrawFn) -> str:
    """A multivariant playlist (variants, renditions, I-frame playlists), media tags mixed in at
    times; half of them calm."""
    calm = draw(_CALMNESS) == 0
    return _assemble(draw, draw((CALM if calm else HOSTILE).masters), calm)


# -- mutations of real packagers' playlists ---------------------------------------------------

_VALUE = re.compile(r'(?<=[=:])("[^"]*"|[^,"\s]*)')
_FIXTURE = st.sampled_from(FIXTURES)
_MUTATION = st.sampled_from(("delete", "duplicate", "swap", "value", "value", "value", "flip", "insert", "truncate",
                             "nul", "crlf"))
_NEW_VALUE = st.one_of(num, uri, _quoted(uri), _quoted(num))
_NEW_LINE = st.one_of(media_tag, master_tag)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> str:
    """A real playlist (ffmpeg, GStreamer, the RFC's examples) with a few lines deleted,
    duplicated, swapped or inserted, an attribute value replaced, a byte flipped, or cut short."""
    lines = draw(_FIXTURE).splitlines()
    for _ in range(draw(st.integers(1, 6))):
        op = draw(_MUTATION)
        n = len(lines)
        if n == 0:
            lines = ["#EXTM3U"]
            continue
        i = draw(st.integers(0, n - 1))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(draw(st.integers(0, n)), lines[i])
        elif op == "swap":
            j = draw(st.integers(0, n - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "value":
            spots = list(_VALUE.finditer(lines[i]))
            if spots:
                m = spots[draw(st.integers(0, len(spots) - 1))]
                new = draw(_NEW_VALUE)
                lines[i] = lines[i][: m.start()] + new + lines[i][m.end():]
            elif not lines[i].startswith("#"):
                lines[i] = draw(uri)
        elif op == "flip":
            s = lines[i]
            k = draw(st.integers(0, len(s))) if s else 0
            lines[i] = s[:k] + chr(draw(st.integers(0, 255))) + s[k + 1:]
        elif op == "insert":
            lines.insert(i, draw(_NEW_LINE))
        elif op == "truncate":
            s = lines[i]
            lines = lines[:i] + [s[: draw(st.integers(0, len(s)))]]
        elif op == "nul":
            lines[i] += "\x00"
        else:
            lines[i] += "\r"
    return "\n".join(lines) + "\n"


base_url = st.one_of(st.sampled_from(BASES), st.sampled_from(BASES), st.sampled_from(BASES),
                     st.sampled_from(HOSTILE_BASES))
MEDIA_PLAYLIST = media_playlist()
MASTER_PLAYLIST = master_playlist()
MUTATED_FIXTURE = mutated_fixture()


# -- the parser's property --------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9][a-z0-9-]*")
_METHOD = re.compile(r"[A-Z0-9-]{1,32}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _usable_uri(u: str) -> None:
    assert isinstance(u, str) and u and not _CONTROL.search(u), repr(u)
    parts = urlsplit(u)
    port = parts.port  # raises on a port out of range: a crash, as the parser let it through
    assert port is None or 0 <= port <= 65535


def _finite(x: float, lo: float, hi: float, what: str) -> None:
    assert isinstance(x, int | float) and math.isfinite(x) and lo <= x <= hi, f"{what} = {x!r}"


def _check_range(br: tuple[int, int] | None) -> None:
    if br is not None:
        length, offset = br
        assert length >= 1 and offset >= 0 and length + offset <= MAX_BYTE_OFFSET, br


def _check_media(pl: MediaPlaylist) -> None:
    _finite(pl.target_duration, 1, MAX_TARGET_DURATION_S, "target duration")
    _finite(pl.media_sequence, 0, MAX_SEQUENCE, "media sequence")
    _finite(pl.discontinuity_sequence, 0, MAX_SEQUENCE, "discontinuity sequence")
    _finite(pl.skipped_segments, 0, MAX_SEQUENCE, "skipped segments")
    assert pl.parts_in_progress >= 0 and pl.dateranges >= 0
    assert pl.last_seq <= MAX_SEQUENCE
    if pl.start_offset is not None:
        _finite(pl.start_offset, -math.inf, math.inf, "start offset")
    if pl.part_target is not None:
        _finite(pl.part_target, 1e-300, math.inf, "part target")
    seq = pl.media_sequence + pl.skipped_segments
    for s in pl.segments:
        assert s.seq == seq, (s.seq, seq)
        seq += 1
        _finite(s.duration, 0, MAX_TARGET_DURATION_S, f"EXTINF of segment {s.seq}")
        if s.pdt is not None:
            _finite(s.pdt, -math.inf, math.inf, "program date-time")
        _usable_uri(s.uri)
        _check_range(s.byterange)
        if s.init is not None:
            _usable_uri(s.init.uri)
            _check_range(s.init.byterange)
        if s.key_method is not None:
            assert _METHOD.fullmatch(s.key_method) and s.key_method != "NONE", s.key_method
            assert s.key_uri is not None
            if s.key_uri != "data:":
                _usable_uri(s.key_uri)
    for method, key_uri in pl.keys:
        assert _METHOD.fullmatch(method)
        _usable_uri(key_uri)


def _check_master(pl: MasterPlaylist) -> None:
    assert 1 <= len(pl.variants) <= MAX_VARIANTS
    assert len(pl.media) <= MAX_VARIANTS and len(pl.iframes) <= MAX_VARIANTS
    if pl.start_offset is not None:
        _finite(pl.start_offset, -math.inf, math.inf, "start offset")
    for group in (pl.variants, pl.iframes):
        names = [v.name for v in group]
        assert len(set(names)) == len(names), names
        for v in group:
            assert _LABEL.fullmatch(v.name), v.name
            assert CANARY not in v.name
            _usable_uri(v.uri)
            if v.bandwidth is not None:
                assert isinstance(v.bandwidth, int) and 0 <= v.bandwidth <= MAX_SEQUENCE, v.bandwidth
            if v.resolution is not None:
                w, h = v.resolution
                assert 1 <= w <= MAX_RESOLUTION and 1 <= h <= MAX_RESOLUTION, v.resolution
    names = [m.name for m in pl.media]
    assert len(set(names)) == len(names), names
    for m in pl.media:
        assert _LABEL.fullmatch(m.name) and CANARY not in m.name, m.name
        if m.uri is not None:
            _usable_uri(m.uri)
    for v in pl.variants:
        audio_rendition(pl, v)
    for wanted in ("lowest", "highest", "highest_lowest", "all"):
        assert choose_renditions(pl.variants, wanted)


def check_parse(text: str, base: str) -> None:
    """:func:`parse` returns a model within its documented bounds, or raises PlaylistError that
    quotes no URL; any other exception propagates (a crash)."""
    try:
        pl = parse(text, base)
    except PlaylistError as exc:
        msg = str(exc)
        assert msg and CANARY not in msg, f"the error quotes a URL: {msg!r}"
        assert exc.line is None or exc.line >= 1
        return
    if isinstance(pl, MediaPlaylist):
        _check_media(pl)
    else:
        assert isinstance(pl, MasterPlaylist)
        _check_master(pl)


# -- the HLS analysis over successive snapshots -----------------------------------------------

@dataclass(frozen=True, slots=True)
class Answer:
    """What the scripted fetcher answers for one URL at one attempt."""

    body: str = ""
    failure: Failure | None = None
    status: int = 200
    size: int = 0
    total_s: float = 0.01
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Live:
    """A media playlist's state, evolved step by step into snapshots."""

    seq: int = 0
    disc: int = 0
    td: str = "2"
    durations: list[str] = field(default_factory=lambda: ["2.0"] * 4)
    endlist: bool = False
    pdt: bool = True
    key: str | None = None
    gap_newest: bool = False
    single_file: bool = False

    def render(self) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{self.td}",
                 f"#EXT-X-MEDIA-SEQUENCE:{self.seq}", f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.disc}"]
        if self.key is not None:
            lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{self.key}"')
        for i, d in enumerate(self.durations):
            n = self.seq + i
            if self.pdt:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:2026-11-30T18:{(n // 60) % 60:02d}:{n % 60:02d}.000Z")
            if self.gap_newest and i == len(self.durations) - 1:
                lines.append("#EXT-X-GAP")
            lines.append(f"#EXTINF:{d},")
            if self.single_file:
                lines.append(f"#EXT-X-BYTERANGE:1000@{1000 * i}")
            lines.append("all.ts" if self.single_file else f"seg{n}.ts")
        if self.endlist:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


_OPS = ("advance", "advance", "advance", "same", "regress", "renumber", "jump", "endlist", "disc", "shrink", "td",
        "long", "hostile", "fail", "master", "gap", "key", "pdt", "single_file", "empty")


_OP = st.sampled_from(_OPS)
_HOSTILE_MEDIA = st.one_of(MEDIA_PLAYLIST, MUTATED_FIXTURE)
_NESTED_MASTER = st.one_of(MASTER_PLAYLIST, st.just("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n"))
_HEADERS = st.lists(st.tuples(st.sampled_from(("cache-control", "age", "x-cache")),
                              st.sampled_from(("max-age=1", "s-maxage=9999999999999999999999", "no-cache", "nan",
                                               "1e999", "-5", "HIT", "miss", "", 'max-age="3"',
                                               "max-age=" + "9" * 400, "max-age=" + "9" * 5000))), max_size=3)
_KEY = st.one_of(st.none(), st.sampled_from(("k1.key", "data:,x", "skd://x")), uri)
_FAILURE = st.sampled_from(tuple(Failure))
_STATUS = st.sampled_from((0, 404, 410, 429, 500, 503))


def _evolve(draw: st.DrawFn, steps: int) -> list[Answer]:
    """``steps`` successive answers of one media playlist URL."""
    live = Live(seq=draw(st.sampled_from((0, 7, 1000, MAX_SEQUENCE - 10, MAX_SEQUENCE - 3))))
    out: list[Answer] = []
    for _ in range(steps):
        op = draw(_OP)
        body: str | None = None
        failure, status = None, 200
        if op == "advance":
            k = draw(st.integers(1, 3))
            live.seq += k
            live.durations = live.durations[k:] + [draw(st.sampled_from(("2.0", "1.9", "2.1", "0.5")))] * k
            live.durations = live.durations[-max(1, len(live.durations)):]
        elif op == "regress":
            live.seq = max(0, live.seq - draw(st.integers(1, 10)))
        elif op == "renumber":
            live.seq = draw(st.sampled_from((0, 1, 10**6, MAX_SEQUENCE - len(live.durations) + 1)))
        elif op == "jump":
            live.seq += draw(st.integers(6, 10**6))
        elif op == "endlist":
            live.endlist = not live.endlist
        elif op == "disc":
            live.disc = draw(st.sampled_from((0, live.disc + 1, max(0, live.disc - 1), MAX_SEQUENCE)))
        elif op == "shrink":
            live.durations = live.durations[: draw(st.integers(0, len(live.durations)))]
        elif op == "td":
            live.td = draw(num)
        elif op == "long":
            live.durations = [*live.durations[:-1], draw(num)] if live.durations else [draw(num)]
        elif op == "hostile":
            body = draw(_HOSTILE_MEDIA)
        elif op == "fail":
            failure = draw(_FAILURE)
            status = draw(_STATUS)
        elif op == "master":
            body = draw(_NESTED_MASTER)
        elif op == "gap":
            live.gap_newest = not live.gap_newest
        elif op == "key":
            live.key = draw(_KEY)
        elif op == "pdt":
            live.pdt = not live.pdt
        elif op == "single_file":
            live.single_file = not live.single_file
        elif op == "empty":
            live.durations = []
        live.seq = min(live.seq, MAX_SEQUENCE)
        headers = draw(_HEADERS)
        out.append(Answer(live.render() if body is None else body, failure, status, headers=tuple(headers)))
    return out


_OTHER = st.builds(
    Answer, st.just(""), st.sampled_from((None, None, None, Failure.HTTP_ERROR, Failure.TIMEOUT,
                                          Failure.BODY_TOO_LARGE, Failure.READ_FAILED)),
    st.sampled_from((200, 206, 404, 410, 429, 500)), st.sampled_from((0, 16, 17, 1000, 10**7)),
    st.sampled_from((0.0, 0.001, 0.5, 3.0, 1000.0)))


_OTHERS = st.lists(_OTHER, min_size=1, max_size=4)
_ALTERNATES = st.sampled_from((0, 1, 8))
_JUMP = st.sampled_from((1, 5))
_DOWN = Answer("", Failure.HTTP_ERROR, 503)
_CLOCK_STEP = st.sampled_from((0.0, 0.5, 1.0, 2.0, 3.0, 6.0, 30.0, 1000.0, 1e6))


@dataclass(frozen=True, slots=True)
class HlsScript:
    """One endpoint over a few attempts: what the configured URL and each rendition answer at each
    attempt, segments and keys answers in turn, and the clock step before each attempt."""

    top: list[Answer] | None  # the configured URL's answers when it is a master; None: it is the media playlist
    renditions: dict[str, list[Answer]]
    others: list[Answer]
    steps: list[float]
    settings: dict[str, Any]


@st.composite
def hls_script(draw: st.DrawFn) -> HlsScript:
    n = draw(st.integers(1, 10))
    steps = draw(st.lists(_CLOCK_STEP, min_size=n, max_size=n))
    if draw(st.booleans()):
        top = None
        renditions = {"main.m3u8": _evolve(draw, n)}
    else:
        k = draw(st.integers(1, 3))
        names = [f"v{i}.m3u8" for i in range(k)]
        lines = ["#EXTM3U", '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",LANGUAGE="en",DEFAULT=YES,URI="a.m3u8"',
                 '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI="i.m3u8"']
        for i, name in enumerate(names):
            lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={(i + 1) * 500000},AUDIO="aud"', name]
        good = Answer("\n".join(lines) + "\n")
        top = [draw(st.sampled_from((good, good, _DOWN))) if draw(st.integers(0, 4)) else Answer(draw(MASTER_PLAYLIST))
               for _ in range(n)]
        renditions = {name: _evolve(draw, n) for name in [*names, "a.m3u8", "i.m3u8"]}
    others = draw(_OTHERS)
    settings = {"fetch_segments": draw(st.booleans()), "fetch_keys": draw(st.booleans()),
                "max_alternates": draw(_ALTERNATES), "sequence_jump": draw(_JUMP)}
    return HlsScript(top, renditions, others, steps, settings)


class ScriptedHttp:
    """``ProbeContext.http``: answers from the script's current attempt (no network)."""

    def __init__(self, script: HlsScript, base: str) -> None:
        self.script, self.base, self.step, self.calls = script, base, 0, 0

    async def get(self, url: str, *, max_bytes: int, max_redirects: int = 5, keep_body: bool = True,
                  verify_tls: bool = True, byte_range: tuple[int, int] | None = None,
                  headers_timeout_s: float = 10.0, finish_within_s: float | None = None,
                  answer_within_s: float | None = None) -> FetchResult:
        s = self.script
        name = url[len(self.base):] if url.startswith(self.base) else None
        if url == self.base + "main.m3u8" and s.top is None:
            a = s.renditions["main.m3u8"][self.step]
        elif url == self.base + "main.m3u8" and s.top is not None:
            a = s.top[self.step]
        elif name in s.renditions:
            a = s.renditions[name][self.step]
        else:
            self.calls += 1
            a = s.others[self.calls % len(s.others)]
        body = a.body.encode("utf-8", "surrogatepass")
        size = a.size or len(body)
        return FetchResult(url=url, status=a.status if a.failure is None else (a.status or 0),
                           body=body if keep_body else b"", size=size, decoded_size=size, headers=dict(a.headers),
                           total_s=a.total_s, transfer_s=a.total_s, failure=a.failure,
                           detail=f"HTTP {a.status}" if a.failure else "")


_KNOWN_STATE = {"renditions", "keys", "master", "master_at", "watched", "unwatched", "alternates", "polls", "clean"}


def _walk_numbers(x: Any, where: str) -> None:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, int | float):
        assert math.isfinite(x), f"{where} = {x!r}"
    elif isinstance(x, dict):
        for k, v in x.items():
            _walk_numbers(v, f"{where}.{k}")
    elif isinstance(x, list | tuple):
        for i, v in enumerate(x):
            _walk_numbers(v, f"{where}[{i}]")


def _check_hls_result(res: ProbeResult, state: dict[str, Any]) -> None:
    assert res.evidence, "an attempt with no evidence leaves the endpoint unknown"
    for e in res.evidence:
        if e.state is not State.OK:
            assert e.fault is not None and isinstance(e.fault, Fault) and e.detail, e
        _walk_numbers(e.figures, "evidence figures")
        assert e.media_sequence is None or 0 <= e.media_sequence <= MAX_SEQUENCE, e
    for s in res.samples:
        assert math.isfinite(s.value), s
    _walk_numbers(res.figures, "figures")
    assert set(state) <= _KNOWN_STATE, set(state) - _KNOWN_STATE
    watched = state.get("watched") or []
    renditions = state.get("renditions", {})
    assert len(renditions) <= max(len(watched), 1) and len(watched) <= MAX_VARIANTS + 8
    for rs in renditions.values():
        assert len(rs.held) <= len(Fault)
    keys = state.get("keys", {})
    assert len(keys) <= MAX_KEYS and not any(k.pending for k in keys.values())
    assert len(res.evidence) <= max(len(watched), 1) * (len(Fault) + 6) + MAX_KEYS + 2


async def _run_hls(script: HlsScript) -> None:
    base = "http://edge.example/live/"
    http = ScriptedHttp(script, base)
    now = [1000.0]
    state: dict[str, Any] = {}
    ctx = ProbeContext(state=state, http=http, clock=lambda: now[0], wall=lambda: 1_796_054_400.0 + now[0])
    target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(**script.settings), base + "main.m3u8")
    before: ProbeResult | None = None
    for i, dt in enumerate(script.steps):
        now[0] += dt
        http.step = i
        res = await hls_probe(target, ctx)
        _check_hls_result(res, state)
        if before is not None:
            combine({"origin": res, "edge-a": before}, "main")
        before = res


def check_hls(script: HlsScript) -> None:
    """The HLS probe over a script of snapshots: never raises, figures finite, state bounded."""
    asyncio.run(_run_hls(script))


# -- the player model -------------------------------------------------------------------------

_DURATIONS = st.one_of(
    st.sampled_from((2.0, 2.0, 4.0, 6.0, 0.5, 0.0, -1.0, 1e-300, 5e-324, math.nan, math.inf, -math.inf, 3600.0,
                     3600.1, 1e9, 1e308, 1.7976931348623157e308)),
    st.floats(0, MAX_TARGET_DURATION_S), st.floats(allow_nan=True, allow_infinity=True))
_STEPS = st.one_of(st.sampled_from((0.0, 1e-12, 0.01, 0.5, 1.0, 1.25, 2.0, 15.0, 60.0, 600.0, 3600.0, 1e6)),
                   st.floats(0, 1e4))
_SIZES = st.one_of(st.sampled_from((0, 1, 1000, 1_000_000, -1, -(2**63), 2**63, 2**64)), st.integers(-(2**70), 2**70))

PlayerOp = tuple[Any, ...]
player_op: st.SearchStrategy[PlayerOp] = st.one_of(
    st.tuples(st.just("wait"), _STEPS),
    st.tuples(st.just("segment"), _DURATIONS, _SIZES, st.booleans()),
    st.tuples(st.just("segment"), _DURATIONS, _SIZES, st.booleans()),
    st.tuples(st.just("timeline"), st.lists(_DURATIONS, max_size=12), st.sampled_from((1.0, 2.0, 6.0, 3600.0)),
              st.booleans()),
    st.tuples(st.sampled_from(("gap", "fatal", "eos", "tick", "request", "figures"))),
)


@dataclass(frozen=True, slots=True)
class PlayerScript:
    config: dict[str, float]
    separate_audio: bool
    as_probe: bool  # feed a segment only when wait_for_room() allows, as probes/playback.py does
    ops: list[PlayerOp]


player_script = st.builds(
    PlayerScript,
    st.fixed_dictionaries({}, optional={
        "max_buffer_s": st.sampled_from((1.0, 30.0, 600.0, 3600.0)),
        "start_buffer_s": st.sampled_from((0.0, 2.0, 10.0, 1e4)),
        "resume_buffer_s": st.sampled_from((0.0, 1.0, 1e4)),
        "stall_report_s": st.sampled_from((0.0, 1.25, 100.0)),
        "startup_deadline_s": st.sampled_from((1e-9, 15.0, 1e6)),
        "stall_give_up_s": st.sampled_from((1e-9, 60.0, 1e6)),
        "hold_back_segments": st.sampled_from((0.0, 3.0, 1e6)),
    }),
    st.booleans(), st.booleans(), st.lists(player_op, max_size=40))


def _check_figures(f: PlaybackFigures, cfg: PlayerConfig, elapsed: float, fed: int, longest: float,
                   as_probe: bool) -> None:
    for name in ("stall_s", "micro_stall_s", "watched_s", "buffer_s", "current_stall_s", "bits_played"):
        v = getattr(f, name)
        assert math.isfinite(v) and v >= 0, f"{name} = {v!r}"
    assert 0 <= f.rebuffer_ratio <= 1, f.rebuffer_ratio
    assert f.stall_count >= 0 and 0 <= f.segments <= fed and f.gaps_skipped >= 0
    assert f.startup_s is None or 0 <= f.startup_s <= cfg.startup_deadline_s + 1e-6, f.startup_s
    assert f.current_stall_s <= cfg.stall_give_up_s + 1e-6, f.current_stall_s
    assert f.audio_buffer_s is None or (math.isfinite(f.audio_buffer_s) and f.audio_buffer_s >= 0)
    slack = 1e-6 * max(1.0, elapsed)
    assert f.watched_s + f.stall_s + f.micro_stall_s <= elapsed + slack, (f, elapsed)
    assert (f.state is PlayerState.FAILED) == (f.failure is not None), f
    if as_probe:
        bound = cfg.max_buffer_s + min(longest, MAX_TARGET_DURATION_S)
        assert f.buffer_s <= bound + 1e-6, f"buffer {f.buffer_s!r} over {bound}"
        if f.audio_buffer_s is not None:
            assert f.audio_buffer_s <= bound + 1e-6, f"audio buffer {f.audio_buffer_s!r} over {bound}"


def check_player(script: PlayerScript) -> None:
    """The player model over a script: never raises, figures finite and consistent, buffer
    bounded when fed as the probe feeds it; reload delay and join index in range."""
    now = [100.0]
    cfg = PlayerConfig(**script.config)
    model = PlayerModel(cfg, clock=lambda: now[0], separate_audio=script.separate_audio)
    requested: float | None = None
    fed = 0
    longest = 0.0

    def feed(d: float, size: int, audio: bool) -> None:
        nonlocal fed, longest, requested
        if script.as_probe:
            room = model.wait_for_room(audio=audio)
            assert math.isfinite(room) and room >= 0, room
            if room > 0:
                now[0] += room  # the probe sleeps until there is room
                if model.wait_for_room(audio=audio) > 0:
                    return  # not playing (starting, failed, ended): no room comes
        if requested is None:
            requested = now[0]
        model.segment_downloaded(d, size, audio=audio)
        fed += not audio
        if math.isfinite(d) and d > 0:
            longest = max(longest, d)

    for op in script.ops:
        kind = op[0]
        if kind == "wait":
            now[0] += op[1]
        elif kind == "segment":
            feed(op[1], op[2], op[3] and script.separate_audio)
        elif kind == "timeline":
            durations, td, changed = op[1], op[2], op[3]
            delay = reload_delay(td, changed)
            assert MIN_RELOAD_S <= delay <= MAX_RELOAD_S, delay
            sane = [d for d in durations if math.isfinite(d) and 0 <= d <= MAX_TARGET_DURATION_S]
            idx = join_index(sane, td, cfg.hold_back_segments)
            assert 0 <= idx < max(1, len(sane)), (idx, len(sane))
            for d in durations[idx:]:
                feed(d, 1000, False)
        elif kind == "request":
            model.request()
            if requested is None:
                requested = now[0]
        elif kind == "gap":
            model.gap_skipped()
        elif kind == "fatal":
            if requested is None:
                requested = now[0]
            model.fatal("fuzz")
        elif kind == "eos":
            model.end_of_stream()
        else:
            model.tick()
        f = model.figures()
        elapsed = now[0] - requested if requested is not None else 0.0
        _check_figures(f, cfg, elapsed, fed, longest, script.as_probe)


reload_target = st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.booleans())


def check_reload(args: tuple[float, bool]) -> None:
    delay = reload_delay(*args)
    assert MIN_RELOAD_S <= delay <= MAX_RELOAD_S, (args, delay)


# -- the targets, for the long mode ------------------------------------------------------------

TARGETS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], None], float]] = {
    # name: (strategy, check, share of the examples)
    "parser/structured": (st.tuples(st.one_of(MEDIA_PLAYLIST, MASTER_PLAYLIST), base_url),
                          lambda a: check_parse(*a), 0.35),
    "parser/mutated-fixtures": (st.tuples(MUTATED_FIXTURE, base_url), lambda a: check_parse(*a), 0.35),
    "hls/snapshots": (hls_script(), check_hls, 0.15),
    "player/timelines": (player_script, check_player, 0.13),
    "player/reload-delay": (reload_target, check_reload, 0.02),
}
"""Every fuzz target: what tests/test_fuzz.py bounds and tests/perf/fuzz_long.py runs long."""
