"""Hostile servers and hostile playlists: every read is bounded in bytes and time, and every
value read from a playlist or a redirect is validated (issue 15, items 1 and 2).

The servers are tests/hostile.py's raw asyncio servers on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import threading
import time

import pytest
from aiohttp import web
from hostile import HostileServer, rss_mib
from localserver import LocalServer
from waiting import wait_for

import probes.core.playlist as playlist_module
from agent.app import Agent
from agent.config import parse_config
from agent.lograte import RepeatFilter, install
from agent.runner import Job, Runner
from probes.base import Failure, ProbeTarget
from probes.core.player_model import PlayerConfig, PlayerModel
from probes.core.playlist import PARSE_INLINE_MAX_BYTES, MasterPlaylist, MediaPlaylist, PlaylistError, parse, parse_body
from probes.hls import _num as hls_num
from probes.net.httpfetch import Fetcher
from probes.net.leanhttp import MAX_HEADER_BYTES
from probes.playback import MAX_RELOAD_S, MIN_RELOAD_S, reload_delay


@pytest.fixture
async def fetcher():
    async with Fetcher(max_per_host=4) as f:
        yield f


@pytest.mark.parametrize(("kind", "failure", "words"), [
    ("endless_header", Failure.PROTOCOL_ERROR, "response headers over 65536 bytes"),
    ("endless_lines", Failure.PROTOCOL_ERROR, "more than 100 header fields"),
    ("endless_trailer", Failure.PROTOCOL_ERROR, "bytes of chunk framing or trailers for a 2-byte body"),
])
async def test_an_endless_head_or_trailer_is_a_protocol_error_after_a_bounded_read(fetcher, kind, failure, words):
    async with HostileServer(kind) as hs:
        t0 = time.perf_counter()
        r = await fetcher.get(hs.base + "/live.m3u8", max_bytes=4 << 20)
        took = time.perf_counter() - t0
        assert r.failure is failure and words in r.detail, r.detail
        assert took < 2.0
        # what the server managed to write before the client hung up: the limit, one read and the
        # socket buffers (a few hundred KiB on loopback), never megabytes
        await asyncio.sleep(0.05)
        assert hs.sent < MAX_HEADER_BYTES + 4 * 1024 * 1024, hs.sent


async def test_a_slowloris_head_times_out(fetcher):
    async with HostileServer("slowloris", interval_s=0.1) as hs:
        t0 = time.perf_counter()
        r = await fetcher.get(hs.base + "/live.m3u8", max_bytes=1 << 20, headers_timeout_s=0.6)
        took = time.perf_counter() - t0
    assert r.failure is Failure.TIMEOUT and "response headers not complete within 0.6 s" in r.detail, r.detail
    assert 0.5 < took < 2.0


async def test_a_healthy_response_with_a_large_head_and_body_in_one_read_passes(fetcher):
    """The head limit counts head bytes only: a body in the same read as the head is no head."""
    body = b"#EXTM3U\n" + b"#" * 300_000

    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 500) for i in range(90))
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        r = await fetcher.get(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/a", max_bytes=1 << 20)
    assert r.ok and r.body == body


@pytest.mark.parametrize(("location", "words"), [
    ("http://[::1/x.m3u8", "unusable redirect Location"),
    ("http://127.0.0.1:99999/x.m3u8", "unusable redirect Location"),
])
async def test_an_unusable_redirect_is_a_protocol_error(fetcher, location, words):
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 302 Found\r\nLocation: " + location.encode() + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        r = await fetcher.get(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/a", max_bytes=1000)
    assert r.failure is Failure.PROTOCOL_ERROR and words in r.detail, r.detail


@pytest.mark.parametrize("url", ["http://[::1/x.m3u8", "http://127.0.0.1:99999/x", "http://127.0.0.1:-1/x",
                                 "http://127.0.0.1/a b", "http://127.0.0.1/a\r\nX: y"])
async def test_an_unusable_url_is_a_protocol_error(fetcher, url):
    r = await fetcher.get(url, max_bytes=1000)
    assert r.failure is Failure.PROTOCOL_ERROR, (r.failure, r.detail)


# -- the playlist parser: every value validated, only PlaylistError raised ------------------------

BASE = "http://edge.example/live/"
_MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:{td}\n#EXT-X-MEDIA-SEQUENCE:{seq}\n{pre}#EXTINF:{d},\n{u}\n"


def _media(td="2", seq="7", pre="", d="2.0", u="s7.ts") -> str:
    return _MEDIA.format(td=td, seq=seq, pre=pre, d=d, u=u)


def _master(stream_inf="BANDWIDTH=800000", uri="v.m3u8", pre="") -> str:
    return f"#EXTM3U\n{pre}#EXT-X-STREAM-INF:{stream_inf}\n{uri}\n"


# (case, body, words in the error, line or None); every one raises PlaylistError, nothing else
HOSTILE_PLAYLISTS = [
    ("EXTINF nan", _media(d="nan"), "segment 7 has an EXTINF that is not a finite non-negative number", 5),
    ("EXTINF inf", _media(d="inf"), "segment 7 has an EXTINF that is not a finite", 5),
    ("EXTINF -1", _media(d="-1"), "segment 7 has an EXTINF that is not a finite non-negative", 5),
    ("EXTINF 10^9", _media(d="1000000000"), "segment 7 has an absurd EXTINF (over 3600 s)", 5),
    ("EXTINF 1e300", _media(d="1e300"), "absurd EXTINF", 5),
    ("EXTINF garbage", _media(d="two"), "segment 7 has an unparseable EXTINF", 4),
    ("TARGETDURATION -1", _media(td="-1"), "#EXT-X-TARGETDURATION is negative", None),
    ("TARGETDURATION 0", _media(td="0"), "#EXT-X-TARGETDURATION is 0", None),
    ("TARGETDURATION 0.001", _media(td="0.001"), "unparseable #EXT-X-TARGETDURATION on line 2", 2),
    ("TARGETDURATION nan", _media(td="nan"), "unparseable #EXT-X-TARGETDURATION on line 2", 2),
    ("TARGETDURATION 10^9", _media(td="1000000000"), "#EXT-X-TARGETDURATION is over 3600 s", None),
    ("TARGETDURATION 10^400", _media(td="1" + "0" * 400), "#EXT-X-TARGETDURATION is over 3600 s", None),
    ("MEDIA-SEQUENCE -1", _media(seq="-1"), "#EXT-X-MEDIA-SEQUENCE is negative", None),
    ("MEDIA-SEQUENCE 2^64", _media(seq=str(1 << 64)), "over 2^64 - 1", None),
    ("MEDIA-SEQUENCE 5000 digits", _media(seq="9" * 5000), "unparseable", None),
    ("segment URI bad IPv6", _media(u="http://[::1/x.ts"), "segment 7 has an unusable URI (Invalid IPv6 URL)", 5),
    ("segment URI port 99999", _media(u="http://edge.example:99999/x.ts"), "Port out of range", 5),
    ("segment URI port -1", _media(u="http://edge.example:-1/x.ts"), "segment 7 has an unusable URI", 5),
    ("segment URI control character", _media(u="s\x007.ts"), "a space or control character", 5),
    ("EXT-X-MAP URI bad IPv6", _media(pre='#EXT-X-MAP:URI="http://[::1/init.mp4"\n'),
     "segment 7: #EXT-X-MAP has an unusable URI", 6),
    ("EXT-X-KEY URI port", _media(pre='#EXT-X-KEY:METHOD=AES-128,URI="https://k.example:70000/k"\n'),
     "segment 7: #EXT-X-KEY has an unusable URI", 6),
    ("EXT-X-KEY no value", _media(pre="#EXT-X-KEY:METHOD\n"), "unparseable #EXT-X-KEY on line 4", 4),
    ("EXT-X-KEY METHOD of 10,000 characters", _media(pre=f'#EXT-X-KEY:METHOD={"A" * 10_000},URI="k"\n'),
     "segment 7: #EXT-X-KEY METHOD is no enumerated-string", 6),
    ("BYTERANGE negative", _media(pre="#EXT-X-BYTERANGE:-5@0\n"), "negative #EXT-X-BYTERANGE", 6),
    ("BYTERANGE empty", _media(pre="#EXT-X-BYTERANGE:0@0\n"), "empty #EXT-X-BYTERANGE", 6),
    ("BYTERANGE huge", _media(pre="#EXT-X-BYTERANGE:99999999999999999999@0\n"), "ends past byte", 6),
    ("BYTERANGE garbage", _media(pre="#EXT-X-BYTERANGE:a@b\n"), "unparseable #EXT-X-BYTERANGE", 6),
    ("MAP BYTERANGE garbage", _media(pre='#EXT-X-MAP:URI="i.mp4",BYTERANGE="x"\n'),
     "unparseable #EXT-X-MAP BYTERANGE", 6),
    ("START nan", _media(pre="#EXT-X-START:TIME-OFFSET=nan\n"), "TIME-OFFSET is not a finite number", None),
    ("START garbage", _media(pre="#EXT-X-START:TIME-OFFSET=x\n"), "unparseable #EXT-X-START on line 4", 4),
    ("PART-TARGET inf", _media(pre="#EXT-X-PART-INF:PART-TARGET=inf\n"), "PART-TARGET is not a finite", None),
    ("SKIP garbage", _media(pre="#EXT-X-SKIP:SKIPPED-SEGMENTS=x\n"), "unparseable #EXT-X-SKIP on line 4", 4),
    ("PROGRAM-DATE-TIME garbage", _media(pre="#EXT-X-PROGRAM-DATE-TIME:xx\n"),
     "unparseable #EXT-X-PROGRAM-DATE-TIME on line 4", 4),
    ("variant URI bad IPv6", _master(uri="http://[::1/v.m3u8"), "variant 1 has an unusable URI", None),
    ("variant URI port", _master(uri="http://o.example:99999/v.m3u8"), "variant 1 has an unusable URI", None),
    ("BANDWIDTH nan", _master("BANDWIDTH=nan"), "unparseable #EXT-X-STREAM-INF on line 2", 2),
    ("BANDWIDTH negative", _master("BANDWIDTH=-5"), "variant 1 has a BANDWIDTH that is not a non-negative", None),
    ("RESOLUTION negative", _master("BANDWIDTH=1,RESOLUTION=-1x-1"), "RESOLUTION out of 1-65536", None),
    ("RESOLUTION absurd", _master("BANDWIDTH=1,RESOLUTION=99999999999x9"), "RESOLUTION out of 1-65536", None),
    ("RESOLUTION garbage", _master("BANDWIDTH=1,RESOLUTION=axb"), "unparseable RESOLUTION", None),
    ("EXT-X-MEDIA URI bad IPv6",
     _master(pre='#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",LANGUAGE="en",URI="http://[::1/a.m3u8"\n'),
     "#EXT-X-MEDIA audio-en has an unusable URI", None),
    ("I-frame URI port", _master(pre='#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI="http://h:123456/i.m3u8"\n'),
     "I-frame playlist 1 has an unusable URI", None),
    ("not a playlist", "<html>hello</html>", "does not start with #EXTM3U", None),
]


@pytest.mark.parametrize(("body", "words", "line"), [c[1:] for c in HOSTILE_PLAYLISTS],
                         ids=[c[0] for c in HOSTILE_PLAYLISTS])
def test_a_hostile_playlist_raises_only_playlist_error_saying_why_and_where(body, words, line):
    with pytest.raises(PlaylistError) as err:
        parse(body, BASE + "main.m3u8")
    assert type(err.value) is PlaylistError
    assert words in str(err.value), str(err.value)
    if line is not None:
        assert err.value.line == line and f"line {line}" in str(err.value)
    assert "edge.example" not in str(err.value)  # never the URL


@pytest.mark.parametrize("base", ["http://[::1/live/main.m3u8", "http://edge.example:99999/main.m3u8"])
def test_an_unusable_base_url_is_a_playlist_error(base):
    with pytest.raises(PlaylistError, match="the playlist's own URL is unusable"):
        parse(_media(), base)


def test_tolerated_oddities_still_parse():
    """What players accept stays accepted: an attribute without a value, a cue with a non-finite
    duration (ignored), a relative URI with dots."""
    pl = parse(_master("BANDWIDTH"), BASE + "m.m3u8")
    assert isinstance(pl, MasterPlaylist) and pl.variants[0].bandwidth is None
    media = parse(_media(pre="#EXT-X-CUE-OUT:DURATION=nan\n", u="../a/./s7.ts"), BASE + "main.m3u8")
    assert isinstance(media, MediaPlaylist)
    assert media.segments[0].uri == "http://edge.example/a/s7.ts" and media.segments[0].cue_out


# -- the virtual player: reload rate and buffer bounded whatever the playlist says --------------

@pytest.mark.parametrize(("td", "changed", "delay"), [
    (2.0, True, 2.0), (2.0, False, 1.0),  # RFC 8216 §6.3.4
    (0.001, True, MIN_RELOAD_S), (0.001, False, MIN_RELOAD_S), (0.0, True, 1.0), (-1.0, True, 1.0),
    (float("nan"), True, 1.0), (float("inf"), False, 0.5),
    (1e6, True, MAX_RELOAD_S), (3600.0, False, MAX_RELOAD_S),
])
def test_the_reload_delay_is_bounded(td, changed, delay):
    assert reload_delay(td, changed) == delay


def test_the_player_buffer_is_bounded():
    now = [0.0]
    model = PlayerModel(PlayerConfig(), clock=lambda: now[0])
    model.request()
    assert model.wait_for_room() == 0.0
    model.segment_downloaded(3600.0)  # as long a segment as the parser lets through
    assert model.wait_for_room() == pytest.approx(3000.0)
    now[0] = 2999.0
    assert model.wait_for_room() == pytest.approx(1.0)
    now[0] = 3000.5
    assert model.wait_for_room() == 0.0
    for bad in (float("nan"), float("inf"), -5.0):  # never fed by the parser; ignored all the same
        model.segment_downloaded(bad)
    assert model.figures().buffer_s == pytest.approx(599.5)


# -- a live agent beside hostile endpoints --------------------------------------------------------

_POLLER = """
import json, sys, time, urllib.request
url, secs = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + secs
body = b""
while time.monotonic() < end:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read()
    print(round((time.perf_counter() - t0) * 1000, 1))
    time.sleep(0.02)
print(json.dumps(json.loads(body)))
"""


class _GrowingEventPlaylist:
    """An EVENT playlist that already holds ``hours`` of 2-s segments and gains one every 2 s:
    every poll gets a new body, so every poll parses it (about 650 ms per MB here)."""

    def __init__(self, hours: float) -> None:
        self.t0 = time.time() - hours * 3600
        self.lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:EVENT"]
        self.n = 0

    def body(self) -> bytes:
        due = int((time.time() - self.t0) / 2)
        while self.n < due:
            pdt = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.t0 + 2 * self.n))
            self.lines += [f"#EXT-X-PROGRAM-DATE-TIME:{pdt}.000Z", "#EXTINF:2.000,", f"seg{self.n}.ts"]
            self.n += 1
        return ("\n".join(self.lines) + "\n").encode()


async def test_hostile_endpoints_beside_a_healthy_stream(live):
    """A second stream whose origin serves a 2-hour EVENT playlist that changes every 2 s (parsed
    off the event loop) and whose edges are an endless header, endless header lines and a
    slowloris: each hostile edge is a clear failure within bounded memory; the healthy stream
    opens no incident and the status API, timed from another process for 8 s, answers within
    100 ms (95th percentile)."""
    event = _GrowingEventPlaylist(hours=2.0)

    async def playlist(_req: web.Request) -> web.Response:
        return web.Response(body=event.body(), content_type="application/vnd.apple.mpegurl")

    async def segment(_req: web.Request) -> web.Response:
        return web.Response(body=b"\x47" * 188 * 20, content_type="video/mp2t")

    app = web.Application()
    app.router.add_get("/event/index.m3u8", playlist)
    app.router.add_get("/event/{seg}", segment)
    server = await LocalServer.start(app)
    big_url = server.url + "/event/index.m3u8"
    assert len(event.body()) > 250_000  # ~170 ms of parse each time it changes (tests/perf/parse_cost.py)
    try:
        async with HostileServer("endless_header") as h1, HostileServer("endless_lines") as h2, \
                HostileServer("slowloris", interval_s=0.5) as h3:
            conf = live.config()
            conf["streams"].append({
                "name": "hostile", "origin": big_url,
                "edges": [{"name": "endless-header", "url": h1.base + "/live.m3u8"},
                          {"name": "endless-lines", "url": h2.base + "/live.m3u8"},
                          {"name": "slowloris", "url": h3.base + "/live.m3u8"}],
                "hls": {"interval_s": 1.0, "timeout_s": 3.0},
            })
            rss0 = rss_mib()
            async with Agent(parse_config(conf)) as agent:
                # the status API timed from another process: a client in this event loop would not
                # see the loop blocked while it sleeps between two calls
                poller = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _POLLER, agent.url + "/api/v1/status", "8.0",
                    stdout=asyncio.subprocess.PIPE)
                out, _ = await poller.communicate()
                lines = out.decode().splitlines()
                lat = [float(x) for x in lines[:-1]]
                body = json.loads(lines[-1])
                lat.sort()
                worst, p95, calls = lat[-1], lat[int(0.95 * (len(lat) - 1))], len(lat)
                rss1 = rss_mib()
                streams = {s["name"]: s for s in body["streams"]}
                cells = {(c["stage"], c["component"]): c for c in streams["hostile"]["stages"]}
                reasons = {k: " ".join(c["reasons"]) for k, c in cells.items()}
                main_open = agent.incidents.localizer.open_incidents("main")
                print(f"status API: {calls} calls, median {lat[len(lat) // 2]} ms, p95 {p95} ms, worst {worst} ms; RSS {rss0:.0f} -> {rss1:.0f} MiB; "
                      f"hostile servers wrote {h1.sent + h2.sent + h3.sent} bytes over "
                      f"{h1.connections + h2.connections + h3.connections} connections")
                assert main_open == [], [(i.stage, i.component, i.fault) for i in main_open]
                assert {c["state"] for c in streams["main"]["stages"]} == {"ok"}, streams["main"]
                # the API is never held up by the hostile servers (before: 8.7 s): bounds far above a
                # loaded 2-core machine's scheduling spikes (a worst call of 401 ms was seen without
                # any hostile endpoint); the figure itself is tests/perf/hostile_agent.py's to print
                assert p95 < 250 and worst < 2000, (p95, worst)
                assert cells[("cdn", "endless-header")]["state"] == "down"
                assert "response headers over 65536 bytes" in reasons[("cdn", "endless-header")], reasons
                assert "more than 100 header fields" in reasons[("cdn", "endless-lines")], reasons
                assert cells[("cdn", "slowloris")]["state"] == "down", cells
                assert "response headers not complete within" in reasons[("cdn", "slowloris")], reasons
                assert cells[("origin", "origin")]["state"] != "unknown", cells[("origin", "origin")]
                assert rss1 - rss0 < 60, (rss0, rss1)
                # each hostile connection was dropped after a bounded read
                for h in (h1, h2):
                    assert h.sent / max(1, h.connections) < 4 * 1024 * 1024, (h.sent, h.connections)
    finally:
        await server.stop()


# -- log lines about the same failure are rate-limited --------------------------------------------

def test_the_same_failure_is_logged_once_a_minute_with_a_count(caplog):
    now = [0.0]
    flt = RepeatFilter(clock=lambda: now[0])
    lg = logging.getLogger("signalpath.test-lograte")
    lg.addFilter(flt)
    try:
        with caplog.at_level(logging.ERROR, logger="signalpath.test-lograte"):
            for i in range(100):  # one attempt a second for 100 s
                now[0] = float(i)
                lg.error("probe %s on %s raised %s", "hls", "main/edge-a", "ValueError")
                lg.error("probe %s on %s raised %s", "hls", "main/edge-b", "ValueError")
        lines = [r.getMessage() for r in caplog.records]
    finally:
        lg.removeFilter(flt)
    assert lines == [
        "probe hls on main/edge-a raised ValueError", "probe hls on main/edge-b raised ValueError",
        "probe hls on main/edge-a raised ValueError [the same 59 more time(s) in the last 60 s]",
        "probe hls on main/edge-b raised ValueError [the same 59 more time(s) in the last 60 s]",
    ]


def test_the_otlp_exporters_retries_are_limited_by_template(caplog):
    """A fresh user's find: with the collector down, the OTLP exporter logged every batch's retry
    with a new delay in its arguments, ~45 lines a minute. install() limits its loggers by
    message template: one line a minute, whatever the delay."""
    install()
    lg = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    flt = next(f for f in lg.filters if isinstance(f, RepeatFilter))
    now = [0.0]
    clock, flt.clock = flt.clock, (lambda: now[0])
    try:
        with caplog.at_level(logging.WARNING, logger=lg.name):
            for i in range(90):
                now[0] = float(i)
                lg.warning("Transient error %s encountered while exporting span batch, retrying in %.2fs.",
                           "Service Unavailable", 1.0 + i / 7)
        lines = [r.getMessage() for r in caplog.records if r.name == lg.name]
    finally:
        flt.clock = clock
        flt._kinds.clear()
    assert len(lines) == 2 and "the same 59 more time(s)" in lines[1]


async def test_a_probe_raising_every_attempt_logs_one_line(caplog):
    install()

    async def broken(_t, _ctx):
        raise ValueError("a bug a playlist triggers")

    target = ProbeTarget(probe="hls", stream="main", stage="cdn", component="edge-a", config=None,
                         url="http://127.0.0.1:9/", interval=0.02, timeout=1.0)
    runner = Runner([Job("hls", "main", broken, [target], 0.02)], [])
    with caplog.at_level(logging.ERROR, logger="signalpath.runner"):
        async with runner:
            await asyncio.sleep(0.5)
    lines = [r.getMessage() for r in caplog.records if r.name == "signalpath.runner"]
    assert lines == ["probe hls on main/edge-a raised ValueError (a bug; reported as probe_error)"], lines


# -- the probes on hostile playlists: protocol_error with the reason, never an internal error ----

@pytest.mark.parametrize(("bad", "words"), [
    ("#EXTINF:2.000,\nhttp://[::1/seg.ts\n", "segment 3 has an unusable URI (Invalid IPv6 URL) (line 9)"),
    ("#EXTINF:nan,\nseg3.ts\n", "segment 3 has an EXTINF that is not a finite non-negative number (line 9)"),
])
async def test_the_probes_report_a_hostile_playlist_as_protocol_error_with_the_reason(bad, words):
    """The HLS probe (origin and edge) and the virtual viewer (edge) on a media playlist whose
    newest segment is hostile: before, the URI's ValueError escaped the parser and both probes
    were an internal 'probe_error' with no reason."""
    body = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.000,\nseg1.ts\n"
            "#EXTINF:2.000,\nseg2.ts\n").replace("seg2.ts\n", "seg2.ts\n" + bad)

    async def playlist(_req: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/vnd.apple.mpegurl")

    app = web.Application()
    app.router.add_get("/live/index.m3u8", playlist)
    server = await LocalServer.start(app)
    url = server.url + "/live/index.m3u8"
    try:
        conf = {"agent": {"listen": "127.0.0.1:0", "site": "test"},
                "incidents": {"path": tempfile.mkdtemp(prefix="sp-inc-") + "/incidents.db"},
                "streams": [{"name": "bad", "origin": url, "edges": [{"name": "edge-a", "url": url}],
                             "hls": {"interval_s": 0.5, "timeout_s": 3.0}}]}
        async with Agent(parse_config(conf)) as agent:
            def cells() -> dict[tuple[str, str], dict]:
                return {(c["stage"], c["component"]): c for c in agent.board.as_json()["streams"][0]["stages"]}

            def reported() -> bool:
                c = cells()
                return all(words in " ".join(c[k]["reasons"]) for k in
                           (("origin", "origin"), ("cdn", "edge-a"), ("playback", "edge-a")))

            try:
                await wait_for(reported, 12, "the reason on origin, edge and viewer")
            except AssertionError:
                print({k: (v["state"], v["reasons"]) for k, v in cells().items()})
                raise
            c = cells()
            # the viewer may still be retrying (unknown, with that reason: checked above) or have
            # given up (down); never ok, never a bare unknown
            assert c[("origin", "origin")]["state"] == "down" and c[("playback", "edge-a")]["state"] != "ok", c
            assert not any("internally" in " ".join(x["reasons"]) for x in c.values()), c
    finally:
        await server.stop()


@pytest.mark.parametrize(("age", "figure"), [("12", 12.0), ("nan", 0.0), ("inf", 0.0), ("1e999", 0.0), ("x", 0.0)])
def test_a_header_number_stays_a_finite_figure(age, figure):
    assert hls_num(age) == figure


# -- big playlists parsed off the event loop --------------------------------------------------------

def _big_media(n: int, last_uri: str = "") -> bytes:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0",
             *[f"#EXTINF:2.000,\nseg{i}.ts" for i in range(n)]]
    if last_uri:
        lines.append(f"#EXTINF:2.000,\n{last_uri}")
    return ("\n".join(lines) + "\n").encode()


async def test_a_big_body_is_parsed_in_the_worker_and_shared(monkeypatch):
    body = _big_media(2000)
    assert len(body) > PARSE_INLINE_MAX_BYTES
    calls: list[str] = []
    real = playlist_module.parse

    def counted(text: str, base: str):
        calls.append(threading.current_thread().name)
        return real(text, base)

    monkeypatch.setattr(playlist_module, "parse", counted)
    results = await asyncio.gather(*(parse_body(body, BASE + "main.m3u8") for _ in range(4)))
    assert len(calls) == 1 and calls[0].startswith("signalpath-playlist-parse"), calls
    assert all(r is results[0] for r in results)
    assert isinstance(results[0], MediaPlaylist) and results[0].last_seq == 1999
    small = await parse_body(_big_media(3), BASE + "main.m3u8")
    assert isinstance(small, MediaPlaylist) and calls[-1] == threading.current_thread().name  # inline
    with pytest.raises(PlaylistError, match=r"segment 2000 has an unusable URI .*\(line 4005\)"):
        await parse_body(_big_media(2000, "http://[::1/x.ts"), BASE + "main.m3u8")
