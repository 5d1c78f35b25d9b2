"""Low-Latency HLS (draft-pantos-hls-rfc8216bis §4.4.3.7-§4.4.5.4, §6.2.5.2): the playlist model
reads parts, the preload hint, server control and rendition reports from the draft's own example
(§9.11), and live latency counts the parts of the segment in progress; the test server (tests/llhls.py, no LL-HLS packager installs here) renders that
example's shape; the HLS probe reloads a low-latency playlist with ``_HLS_msn``/``_HLS_part`` for
the next part, finds a rendition stale at part granularity within three part targets, and names
a server that answers such a reload at once without the part (it does not block), times the
newest part against its duration, and requests the part the preload hint names with the blocking
reload for it, timed against the answer that lists it (§4.4.5.3, §6.2.6)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from attempt import call_probe
from llhls import LowLatencyEndpoint
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.lab.config import LabConfig, RenditionConfig
from agent.lab.packager import Packager
from probes.base import ProbeContext, ProbeTarget
from probes.core.playlist import MediaPlaylist, parse
from probes.faults import Fault
from probes.hls import HlsSettings
from probes.hls import probe as hls_probe
from probes.net.httpfetch import Fetcher
from probes.playback import PlaybackSettings
from probes.playback import probe as playback_probe

FIX = Path(__file__).parent / "fixtures" / "hls"


def shape(text: str) -> list[str]:
    """The playlist's tags in order, a URI line as ``URI``; attribute values left out, attribute
    names kept (what a player reads where)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("#"):
            out.append("URI")
            continue
        tag, _, attrs = line.partition(":")
        names = re.findall(r"([A-Z0-9-]+)=", attrs) if tag != "#EXTINF" else []
        out.append(tag + ("(" + ",".join(sorted(names)) + ")" if names else ""))
    return out


def test_the_draft_example_is_read_part_by_part() -> None:
    pl = parse((FIX / "rfc8216bis-9.11-low-latency.m3u8").read_text(), "https://example.com/2M/LL-HLS.m3u8")
    assert isinstance(pl, MediaPlaylist)
    assert pl.newest_part == (274, 0) and pl.newest_part_duration == 2.00004
    assert pl.newest_part_uri == "https://example.com/2M/midRoll274.0.mp4"
    assert pl.preload_hint == "https://example.com/2M/midRoll274.1.mp4"
    assert pl.part_hold_back == 6.00012 and pl.can_block_reload and pl.part_target == 2.00004
    assert pl.rendition_reports == (("https://example.com/1M/LL-HLS.m3u8", 274, 1),)


def test_the_test_server_renders_the_draft_example() -> None:
    """§9.11 at its own numbers (part target 2.00004 s, two parts a segment, segments 268-273 out,
    one part of 274), less what the test server does not make (the discontinuity into a mid-roll,
    a short 2.5-s segment): the same tags in the same order, the same attributes, and the model
    reads the same newest part, preload hint and rendition report."""
    example = (FIX / "rfc8216bis-9.11-low-latency.m3u8").read_text()
    ep = LowLatencyEndpoint(part_s=2.00004, parts_per_segment=2, window=6, renditions=("2M", "1M"))
    ours = ep.render("2M", 274 * 2 + 1, seg="fileSequence{msn}.mp4", part="filePart{msn}.{i}.mp4", pdt=False)
    expected = [t for t in shape(example) if t != "#EXT-X-DISCONTINUITY"]
    got = shape(ours)
    # the draft marks only some parts INDEPENDENT; ours marks each segment's first
    assert [t.replace("INDEPENDENT,", "") for t in got] == [t.replace("INDEPENDENT,", "") for t in expected]
    a, b = parse(example, "https://example.com/2M/LL-HLS.m3u8"), parse(ours, "https://example.com/2M/LL-HLS.m3u8")
    assert isinstance(a, MediaPlaylist) and isinstance(b, MediaPlaylist)
    assert (a.media_sequence, a.last_seq, a.newest_part, a.target_duration, a.part_target, a.parts_in_progress) == \
        (b.media_sequence, b.last_seq, b.newest_part, b.target_duration, b.part_target, b.parts_in_progress)
    assert b.preload_hint is not None and b.preload_hint.endswith("filePart274.1.mp4")
    assert [(m, p) for _u, m, p in b.rendition_reports] == [(274, 0)]


async def _attempts(ep: LowLatencyEndpoint, until: Any, *, timeout: float = 10.0,
                    state: dict[str, Any] | None = None) -> list[Any]:
    """Probe ``ep``'s 180p playlist back to back (as the runner would, 0.2 s apart) until
    ``until(result)``; every result. ``state``: the probe's memory, to go on from earlier attempts."""
    target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(), ep.url("180p"), 0.2, 5.0)
    results = []
    async with Fetcher() as http:
        ctx = ProbeContext(state={} if state is None else state, http=http)

        async def one() -> bool:
            results.append(await call_probe(hls_probe, target, ctx))
            await asyncio.sleep(0.2)
            return until(results[-1])
        await wait_for(one, timeout, "the condition", every=0)
    return results


async def test_a_healthy_low_latency_stream_is_reloaded_part_by_part() -> None:
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    try:
        results = await _attempts(ep, lambda _r: ep.blocking_requests >= 8)
    finally:
        await ep.stop()
    faults = [e for r in results for e in r.evidence if e.fault is not None]
    assert faults == []
    figs = results[-1].figures["renditions"]["main"]  # a media playlist URL: one rendition, "main"
    # an attempt asks for the part after the newest it saw: answered when that part is out
    assert 0 <= figs["blocking_reload_s"] < 0.5 + 0.2, figs
    # live latency at part granularity: the parts of the segment in progress count (the newest
    # whole segment may end up to 2 s before now: 1.0 and 1.5 s were read without them)
    latencies = [r.figures["renditions"]["main"]["live_latency_s"] for r in results]
    assert -0.1 < min(latencies) and max(latencies) < 0.5 + 0.2, latencies


async def test_a_part_slower_than_its_duration_is_a_slow_segment() -> None:
    """Each part answers 0.6 s late for its 0.5 s of media: given up at 1.05 x, slow (P2)."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    ep.knobs.part_delay_s = 0.6
    try:
        results = await _attempts(ep, lambda r: any(e.fault is Fault.SLOW_SEGMENT for e in r.evidence))
    finally:
        await ep.stop()
    ev = next(e for e in results[-1].evidence if e.fault is Fault.SLOW_SEGMENT)
    assert " part " in ev.detail and "not downloaded within 0.53 s" in ev.detail, ev.detail
    assert results[-1].figures["renditions"]["main"]["part_download_ratio"] > 1.0


def _hinted(n: int) -> Any:
    """An ``until`` for :func:`_attempts`: ``n`` attempts have judged a hinted part."""
    seen = []

    def until(r: Any) -> bool:
        if "preload_hint_status" in r.figures["renditions"]["main"]:
            seen.append(r)
        return len(seen) >= n
    return until


async def test_a_hinted_part_arrives_with_the_playlist_that_lists_it() -> None:
    """A server that holds a request for a part not cut yet until it is (as it holds the blocking
    reload for it, §6.2.6): the probe requests the part EXT-X-PRELOAD-HINT names beside that
    reload, and its bytes come within milliseconds of the answer listing it; no finding, and the
    part is not asked for again."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    try:
        results = await _attempts(ep, _hinted(5))
        parts_asked = ep.hinted_requests
    finally:
        await ep.stop()
    assert [e for r in results for e in r.evidence if e.fault is not None] == []
    figs = [f for r in results if "preload_hint_status" in (f := r.figures["renditions"]["main"])]
    assert len(figs) == 5 and {f["preload_hint_status"] for f in figs} == {200}, figs
    lags = [f["preload_hint_lag_s"] for f in figs]
    assert all(-0.3 < lag < 0.3 for lag in lags), lags
    assert parts_asked >= 5  # requested before the part was cut: early, as hls.js asks
    # the hinted request brought the part: it is not fetched again (the newest part is, when a
    # later hop went past it)
    for r in results:
        names = [c.name for s in r.spans for c in s.children]
        assert not {n.removeprefix("hint ") for n in names if n.startswith("hint ")} & set(names), names
    assert sum(1 for r in results for s in r.spans for c in s.children if c.name.startswith("hint part ")) == 5


async def test_a_hinted_part_answered_late_is_a_slow_segment() -> None:
    """A CDN that does not hold hinted requests together with the part (it answers one two part
    durations after the part is cut, while the part asked for once listed comes at once): the
    player that asked early gets the part late. The probe names the hinted part, DEGRADED, once
    its bytes are not in 1.05 x its duration (+ the reload's round trip) after it was listed."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    ep.knobs.hint_delay_s = 2 * 0.5
    try:
        results = await _attempts(ep, lambda r: any(e.fault is Fault.SLOW_SEGMENT for e in r.evidence))
    finally:
        await ep.stop()
    slow = [e for e in results[-1].evidence if e.fault is Fault.SLOW_SEGMENT]
    assert len(slow) == 1, slow  # the part fetched from the playlist came at once
    ev = slow[0]
    m = re.search(r"the hinted part (\d+)\.(\d+) .*had not all arrived 0\.\d\d s after the playlist listed it",
                  ev.detail)
    assert m is not None and ev.state.value == "degraded" and ev.rendition == "main", ev
    assert ev.media_sequence == int(m[1]) and ev.url_role == "segment"
    figs = results[-1].figures["renditions"]["main"]
    assert figs["preload_hint_lag_s"] > 0.5 and figs["part_download_ratio"] < 1.0, figs


async def test_a_hint_answered_404_is_a_figure_not_a_fault() -> None:
    """A server that answers a request for a part not cut yet 404 at once (the draft asks it to
    hold it): hls.js loads the part from the playlist once listed, viewers see nothing; the
    status is a figure, and the part is fetched from the playlist as before."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    ep.knobs.hint_404 = True
    try:
        results = await _attempts(ep, _hinted(3))
    finally:
        await ep.stop()
    assert [e for r in results for e in r.evidence if e.fault is not None] == []
    figs = [f for r in results if "preload_hint_status" in (f := r.figures["renditions"]["main"])]
    assert figs and all(f["preload_hint_status"] == 404 and "preload_hint_lag_s" not in f for f in figs), figs
    assert all(f["part_download_ratio"] < 1.0 for f in figs), figs


async def test_parts_that_stop_are_a_stale_rendition_within_three_part_targets() -> None:
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    try:
        await _attempts(ep, lambda _r: ep.blocking_requests >= 3)
        ep.knobs.stalled_at = time.monotonic()

        def stale(r: Any) -> bool:
            return any(e.fault is Fault.STALE_PLAYLIST for e in r.evidence)
        t0 = time.monotonic()
        results = await _attempts(ep, stale, timeout=10)
        took = time.monotonic() - t0
    finally:
        await ep.stop()
    ev = next(e for e in results[-1].evidence if e.fault is Fault.STALE_PLAYLIST)
    assert "a blocking reload unanswered" in ev.detail and ev.rendition == "main", ev
    # nothing judged of a hint on a reload that went unanswered
    assert "preload_hint_status" not in results[-1].figures["renditions"]["main"]
    # 3 part targets (1.5 s) after the last part seen, plus the attempt that was waiting on it:
    # a fresh context sees its first part up to one part target late
    assert took <= 3 * 0.5 + 0.5 + 0.5, took


async def test_an_edge_that_does_not_hold_blocking_reloads_is_that_edges_incident(tmp_path: Path) -> None:
    origin = await LowLatencyEndpoint(part_s=0.5).start()
    edge = await LowLatencyEndpoint(part_s=0.5, t0=origin.t0).start()
    edge.knobs.blocks = False
    try:
        cfg = {"agent": {"listen": "127.0.0.1:0", "site": "test"},
               "incidents": {"path": str(tmp_path / "incidents.db")},
               "streams": [{"name": "main", "origin": origin.url("180p"),
                            "edges": [{"name": "edge-a", "url": edge.url("180p")}],
                            "media": {"enabled": False}, "playback": {"enabled": False},
                            "latency": {"enabled": False}}]}
        async with Agent(parse_config(cfg)) as agent:
            def opened() -> list[tuple[str, str, str]]:
                return [(i.stage, i.component, i.fault) for i in agent.incidents.localizer.open_incidents()]
            got = await wait_for(opened, 20, "an incident")
            cells = {(c.stage, c.component): c for c in agent.board.cells("main")}
    finally:
        await origin.stop()
        await edge.stop()
    assert got == [("cdn", "edge-a", "reload_not_blocked")]
    assert cells[("origin", "origin")].state.value == "ok"


async def test_a_packager_restart_is_followed_by_a_plain_reload_not_a_stream_down_for_good() -> None:
    """The packager restarts its numbering: the blocking reload for the part after the newest seen
    is far in the future, and the server answers 400 (§6.2.5.2: more than two segments ahead). The
    next reload is a plain one, and blocking reloads go on from the new numbers (before: the same
    400 at every attempt, the stream down for good)."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    try:
        state: dict[str, Any] = {}
        await _attempts(ep, lambda _r: ep.blocking_requests >= 3, state=state)
        ep.t0 = time.monotonic() - 2.2  # numbering starts again: 4 parts, segment 1 in progress
        ep.wall_t0 = time.time() - 2.2
        before = ep.blocking_requests
        results = await _attempts(ep, lambda r: ep.blocking_requests >= before + 4 and not any(
            e.fault is Fault.HTTP_ERROR for e in r.evidence), state=state)
    finally:
        await ep.stop()
    assert any(e.fault is Fault.HTTP_ERROR and e.http_status == 400 for r in results for e in r.evidence)
    last = results[-1]
    assert last.figures["renditions"]["main"]["last_seq"] <= 3, last.figures
    assert not any(e.fault in (Fault.HTTP_ERROR, Fault.STALE_PLAYLIST) for e in last.evidence), last.evidence


def test_the_labs_packager_renders_the_draft_example() -> None:
    """The embedded lab's LL-HLS packager (agent/lab/packager.py) fed the draft §9.11 example's
    stream (4-s segments of two 2-s parts, a discontinuity two segments before the one in
    progress, one part of that one out): the example's tags in its order and with its attributes,
    beside what the lab adds (EXT-X-VERSION, EXT-X-DISCONTINUITY-SEQUENCE, a PROGRAM-DATE-TIME per
    segment, CAN-SKIP-UNTIL); the model reads the same window, newest part and rendition report;
    its delta update (``_HLS_skip=YES``) is the full playlist less the segments it says it skips."""
    cfg = LabConfig(fps=25, segment_s=4, parts_per_segment=2, window=6, webrtc=False,
                    renditions=(RenditionConfig(name="2m", width=640, height=360, bitrate_kbps=2000),
                                RenditionConfig(name="1m", width=320, height=180, bitrate_kbps=1000)))
    assert cfg.part_target_s == 2.0
    clock = [1_700_000_000.0]
    pk = Packager(cfg, wall=lambda: clock[0])
    for msn in range(10):
        for name in ("2m", "1m"):
            for i in range(2):
                pk.publish_part(name, b"\x47" + bytes(187), 2.0, i == 0, clock[0], msn == 9)
            pk.publish(name, b"\x47" + bytes(375), 4.0, clock[0], msn == 9)
        clock[0] += 4.0
    pk.publish_part("2m", b"\x47" + bytes(187), 2.0, True, clock[0], False)
    ours = pk.ll_playlist("2m")
    assert ours is not None
    example = (FIX / "rfc8216bis-9.11-low-latency.m3u8").read_text()
    lab_only = ("#EXT-X-VERSION", "#EXT-X-DISCONTINUITY-SEQUENCE", "#EXT-X-PROGRAM-DATE-TIME")
    got = [t.replace("CAN-SKIP-UNTIL,", "") for t in shape(ours.decode()) if not t.startswith(lab_only)]
    assert got == shape(example)
    a, b = parse(example, "https://example.com/2M/LL-HLS.m3u8"), parse(ours.decode(), "https://lab/ll/main/2m.m3u8")
    assert isinstance(a, MediaPlaylist) and isinstance(b, MediaPlaylist)
    assert (len(b.segments), b.newest_part[1] if b.newest_part else None, b.parts_in_progress, b.part_target,
            b.can_block_reload, b.part_hold_back) == \
        (len(a.segments), 0, a.parts_in_progress, 2.0, True, 6.0)
    assert b.newest_part == (b.last_seq + 1, 0) and b.preload_hint is not None and b.preload_hint.endswith("2m/10.1.ts")
    assert [(m, p) for _u, m, p in b.rendition_reports] == [(9, 1)]  # 1m: segment 9 complete, its last part
    delta = pk.ll_playlist("2m", skip=True)
    assert delta is not None
    d = delta.decode()
    skipped = int(re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", d).group(1))  # type: ignore[union-attr]
    assert skipped >= 1
    full_uris = [ln for ln in ours.decode().splitlines() if ln and not ln.startswith("#")]
    assert [ln for ln in d.splitlines() if ln and not ln.startswith("#")] == full_uris[skipped:]


async def test_a_delta_update_is_compared_with_the_full_playlist() -> None:
    """``_HLS_skip=YES`` (RFC 8216bis §6.2.5.1): a server whose delta updates agree with its full
    playlist gives no finding (the figure says how many segments it skipped); one whose
    SKIPPED-SEGMENTS is one short of what it left out (so every later segment is numbered one
    off) is ``protocol_error`` at that endpoint, naming where the two part ways."""
    ep = await LowLatencyEndpoint(part_s=0.5, window=8, skip_until_s=12.0).start()
    try:
        good = await _attempts(ep, lambda r: "delta_skipped_segments" in r.figures["renditions"]["main"])
        ep.knobs.bad_skip = True
        state: dict[str, Any] = {}
        bad = await _attempts(ep, lambda r: any(e.fault is Fault.PROTOCOL_ERROR for e in r.evidence), state=state)
    finally:
        await ep.stop()
    assert [e for r in good for e in r.evidence if e.fault is not None] == []
    assert good[-1].figures["renditions"]["main"]["delta_skipped_segments"] >= 1
    ev = next(e for e in bad[-1].evidence if e.fault is Fault.PROTOCOL_ERROR)
    assert ev.state.value == "degraded" and "Playlist Delta Update" in ev.detail and "ends at segment" in ev.detail, \
        ev.detail


class _Viewer:
    """A virtual viewer (probes/playback.py) of ``ep``'s 180p playlist, advanced in 0.5-s slices."""

    def __init__(self, ep: LowLatencyEndpoint, http: Fetcher, **settings: Any) -> None:
        cfg = PlaybackSettings(interval_s=0.5, **settings)
        self.target = ProbeTarget("playback", "main", "playback", "edge-a", cfg, ep.url("180p"), 0.5, cfg.timeout_s)
        self.ctx = ProbeContext(state={}, http=http)
        self.results: list[Any] = []

    async def play(self, seconds: float, until: Any = None) -> bool:
        """Attempts for ``seconds``, or until ``until(result)`` (then True)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.results.append(await playback_probe(self.target, self.ctx))
            if until is not None and until(self.results[-1]):
                return True
        return False

    def spans(self) -> list[str]:
        return [s.name for r in self.results for s in r.spans if s.name.startswith("play main")]


async def test_the_viewer_in_low_latency_mode_plays_parts_part_hold_back_behind_the_edge() -> None:
    """hls.js ``lowLatencyMode``: the viewer joins at the newest INDEPENDENT part at or before
    PART-HOLD-BACK (1.5 s) from the live edge, loads parts in order as they are listed, reloads
    with _HLS_msn/_HLS_part (the server holds those), and plays without a stall; its buffer stays
    near the hold-back (an HLS viewer's holds three target durations: 6 s). When the parts stop,
    it stalls within its small buffer (+ the 1.25-s stall rule); in classic mode (``low_latency``
    off) the same viewer loads whole segments."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    classic = await LowLatencyEndpoint(part_s=0.5).start()
    try:
        async with Fetcher() as http:
            viewer = _Viewer(ep, http)
            await viewer.play(5.0)
            spans = viewer.spans()
            assert spans and all(" part " in n for n in spans), spans
            ids = [tuple(int(x) for x in n.rsplit(" ", 1)[1].split(".")) for n in spans]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)  # each part once, in order
            assert ep.blocking_requests >= 5
            figs = viewer.results[-1].figures["playback"]["main"]
            assert figs["state"] == "playing" and figs["stall_count"] == 0, figs
            assert figs["buffer_s"] <= 1.5 + 2.0 + 0.2, figs  # the hold-back + the segment before it, at most
            ep.knobs.stalled_at = time.monotonic()
            t0 = time.monotonic()
            assert await viewer.play(12, lambda r: r.figures["playback"]["main"]["stall_count"] >= 1)
            assert time.monotonic() - t0 <= figs["buffer_s"] + 1.25 + 1.0

            plain = _Viewer(classic, http, low_latency=False)
            await plain.play(3.0)
            assert plain.spans() and all(" segment " in n for n in plain.spans()), plain.spans()
    finally:
        await ep.stop()
        await classic.stop()


async def test_a_slow_first_byte_is_a_timeout_not_a_stale_rendition() -> None:
    """A server whose every playlist answer starts 3 s late (parts still come every 0.5 s): the
    blocking reload goes unanswered within three part targets, and the plain reload that follows
    is unanswered within a target duration too, so it is a ``timeout`` (as on classic HLS) — never
    ``stale_playlist``, which would split one cause into two incidents when the evidence flips."""
    ep = await LowLatencyEndpoint(part_s=0.5).start()
    try:
        state: dict[str, Any] = {}
        await _attempts(ep, lambda _r: ep.blocking_requests >= 3, state=state)
        ep.knobs.playlist_delay_s = 3.0
        results = await _attempts(ep, lambda r: any(e.fault is Fault.TIMEOUT for e in r.evidence), state=state,
                                  timeout=15)
        more = await _attempts(ep, lambda _r: True, state=state)
    finally:
        await ep.stop()
    faults = {e.fault for r in results + more for e in r.evidence if e.fault is not None}
    assert faults == {Fault.TIMEOUT}, faults


async def test_the_latency_watcher_makes_one_request_a_part_on_a_server_that_does_not_hold() -> None:
    """A server (or an edge) that answers blocking reloads at once: the latency probe's watcher
    then asks again a part target later, never in a loop; on one that holds, its answers time
    each part."""
    from probes.latency import LatencySettings, LatencyTargetConfig
    from probes.latency import probe as latency_probe

    ep = await LowLatencyEndpoint(part_s=0.5, renditions=("180p",)).start()
    ep.knobs.blocks = False
    ep.knobs.playlist_delay_s = 0.03  # a far server: every answer starts 30 ms after the request
    try:
        async with Fetcher() as http:
            url = ep.url("180p")
            tc = LatencyTargetConfig(LatencySettings(beacon=False), url)
            target = ProbeTarget("latency", "main", "origin", "origin", tc, url, 1.0, 5.0)
            ctx = ProbeContext(state={}, http=http)
            polls = []
            for _ in range(4):
                polls.append((await call_probe(latency_probe, target, ctx)).figures["playlist_polls"])
            await ctx.state["latency_ll"].aclose()
    finally:
        await ep.stop()
    # a new part's answer, then one with nothing new and a part target's pause: ~2 a part (0.5 s)
    assert sum(polls[1:]) / 3 <= 5.0, polls
