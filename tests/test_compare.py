"""The HLS and DASH manifests of one encode, compared (probes/compare.py, issue 18).

On a packager we did not write: ffmpeg's dash muxer with ``-hls_playlist 1`` writes both
formats over one set of fMP4 files. Its two sides agree; a copy of its MPD that stops being
updated (the DASH side of a packager stuck, HLS going on) is ``manifest_behind`` naming the DASH
side; ffmpeg dying stops both, which is no manifest fault (the availability probe's stale
rendition). The lab (one encode as HLS, LL-HLS and DASH) shows the same through the agent:
a stopped MPD is the origin's incident, not the transcoder's.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from _require import require_binary
from attempt import call_probe
from reallab import RealLab
from test_dash import ffmpeg_dash, mpd_ready
from test_real_packagers import packager, static_server, stop
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig
from probes.base import Evidence, ProbeContext, ProbeResult, ProbeTarget, State
from probes.compare import CompareSettings
from probes.compare import probe as compare_probe
from probes.core.compare import measure, pair
from probes.core.playlist import MediaPlaylist, parse
from probes.net.httpfetch import Fetcher


def _media(first: int, durations: list[float], pdt0: float | None = 1_700_000_000.0, prefix: str = "s") -> MediaPlaylist:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for i, d in enumerate(durations):
        if i == 0 and pdt0 is not None:
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(pdt0))
                         + f".{round((pdt0 % 1) * 1000):03d}Z")
        lines += [f"#EXTINF:{d:.3f},", f"{prefix}{first + i}.m4s"]
    pl = parse("\n".join(lines) + "\n", "http://o.example/live/x.m3u8")
    assert isinstance(pl, MediaPlaylist)
    return pl


def test_pairs_by_shared_segments_then_resolution_then_bandwidth_order() -> None:
    a = {"360p": _media(1, [2, 2], prefix="hi"), "180p": _media(1, [2, 2], prefix="lo")}
    b = {"1": _media(1, [2, 2], prefix="lo"), "0": _media(2, [2, 2], prefix="hi")}
    assert sorted(pair(a, b)) == [("180p", "1"), ("360p", "0")]
    c = {"x": _media(1, [2], prefix="p"), "y": _media(1, [2], prefix="q")}
    d = {"v0": _media(1, [2], prefix="r"), "v1": _media(1, [2], prefix="s")}
    assert sorted(pair(c, d, {"x": (640, 360), "y": (320, 180), "v0": (320, 180), "v1": (640, 360)})) == \
        [("x", "v1"), ("y", "v0")]
    assert sorted(pair(c, d, None, {"x": 900, "y": 300, "v0": 250, "v1": 800})) == [("x", "v1"), ("y", "v0")]
    assert pair(c, {"only": _media(1, [2], prefix="z")}) == []  # 2 against 1, nothing shared: not guessed


def test_measures_lead_durations_and_timeline_offset() -> None:
    a = _media(10, [2, 2, 2, 2])
    b = _media(11, [2, 2, 2, 2, 2], pdt0=1_700_000_002.0)  # two segments past a's newest, same timeline
    m = measure("a", a, "b", b)
    assert (m.mode, m.lead_segments, m.lead_s, m.matched, m.offset_s) == ("uri", 2, 4.0, 3, 0.0)
    assert measure("b", b, "a", a).lead_segments == -2
    shifted = _media(10, [2, 2, 1.7, 2], pdt0=1_700_000_000.8)  # placed 0.8 s later; one segment shorter
    m = measure("a", a, "b", shifted)
    assert m.offset_s == pytest.approx(0.8) and m.duration_mismatch is not None
    assert abs(m.duration_mismatch[1] - m.duration_mismatch[2]) == pytest.approx(0.3)
    other_files = _media(10, [2, 2, 2, 2], prefix="t")  # no shared URI: lined up by wall clock
    m = measure("a", a, "b", other_files)
    assert (m.mode, m.matched, m.lead_segments, m.offset_s) == ("time", 4, 0, 0.0)
    assert measure("a", _media(1, [2], pdt0=None), "b", _media(1, [2], pdt0=None, prefix="t")).mode == "none"


def ffmpeg_both(folder: Path, seconds: int = 120) -> list[str]:
    """ffmpeg's dash muxer writing its HLS side too (master.m3u8, media_N.m3u8) over the same files."""
    cmd = ffmpeg_dash(folder, timeline=True, seconds=seconds)
    return [*cmd[:-1], "-hls_playlist", "1", cmd[-1]]


async def next_attempt(interval_s: float = 1.0) -> None:
    """The probe's interval between two attempts, as the runner keeps it."""
    due = time.monotonic() + interval_s
    await wait_for(lambda: time.monotonic() >= due, interval_s + 1.0, "the next attempt")


async def until_behind(target: ProbeTarget, http: Fetcher, timeout: float = 10.0) -> tuple[Evidence, float]:
    """Attempts of the comparison with a fresh context until one says ``manifest_behind``: (that
    evidence, seconds from the first attempt)."""
    ctx = ProbeContext(state={}, http=http)
    t0 = time.monotonic()

    async def behind() -> ProbeResult | None:
        r = await call_probe(compare_probe, target, ctx)
        return r if any(e.fault == "manifest_behind" for e in r.evidence) else None
    r = await wait_for(behind, timeout, "the frozen MPD to be behind")
    took = time.monotonic() - t0
    (ev,) = [e for e in r.evidence if e.fault == "manifest_behind"]
    return ev, took


def _target(origin: str, other: str) -> ProbeTarget:
    return ProbeTarget("compare", "main", "origin", "origin", CompareSettings(url=other), origin, 1.0, 4.0)


@pytest.mark.lab
@pytest.mark.timeout(120)
async def test_ffmpeg_writes_both_formats_in_agreement_and_a_frozen_mpd_is_behind(tmp_path: Path) -> None:
    async with packager(ffmpeg_both(tmp_path)) as proc, static_server(tmp_path) as url, Fetcher() as http:
        base = url.rsplit("/", 1)[0]
        await mpd_ready(tmp_path, segments=5)  # a full window (5) in both
        await wait_for(lambda: (tmp_path / "master.m3u8").exists(), 10, "ffmpeg's HLS master")
        healthy = _target(f"{base}/master.m3u8", f"{base}/live.mpd")
        ctx = ProbeContext(state={}, http=http)
        results: list[ProbeResult] = []
        for _ in range(6):  # three segments' worth of attempts, a boundary or two among them
            results.append(await call_probe(compare_probe, healthy, ctx))
            await next_attempt()
        for r in results:
            assert [(e.state, e.fault) for e in r.evidence] == [(State.OK, None)], (r.evidence[0].detail, r.figures)
            (name, figs), = r.figures.items()  # one video rendition; the audio side is not a variant
            assert figs["compare_mode"] == "uri" and figs["compare_matched"] >= 3, figs
            assert abs(figs["compare_lead_segments"]) <= 1, figs  # read a moment apart, at most one
            assert abs(figs.get("compare_offset_s", 0.0)) < 1.0, figs  # its HLS side writes PDT to the second

        shutil.copy(tmp_path / "live.mpd", tmp_path / "frozen.mpd")  # the DASH side stops here
        ev, took = await until_behind(_target(f"{base}/master.m3u8", f"{base}/frozen.mpd"), http)
        assert ev.state is State.DOWN and (ev.stage, ev.component) == ("origin", "origin")
        assert ev.detail.startswith("DASH ") and "of the same encode advances" in ev.detail, ev.detail
        assert took < 2.0 + 2.0 + 0.5 + 1.5, took  # a segment due, one target duration + the skew, a poll

        stop(proc, crash=True)  # the encode stops: both formats stop together, no manifest fault
        ctx = ProbeContext(state={}, http=http)
        for _ in range(5):
            r = await call_probe(compare_probe, healthy, ctx)
            assert not [e for e in r.evidence if e.fault], r.evidence
            await next_attempt()


@pytest.mark.lab
@pytest.mark.timeout(150)
async def test_a_stopped_mpd_at_the_lab_origin_is_the_origins_incident_not_the_transcoders(tmp_path: Path) -> None:
    """The stream read as DASH: every rendition's MPD view stops (as when the transcoder stops), but
    its HLS side goes on, so the cause is the origin's DASH packaging; a transcoder stall after it
    is still the transcoder's (both sides stop)."""
    async with Lab(LabConfig(webrtc=False)) as lab:
        conf = lab_agent_config(lab, listen="127.0.0.1:0", protocol="dash",
                                incidents_path=str(tmp_path / "incidents.db"))
        conf["streams"][0]["playback"] = {"enabled": False}
        conf["streams"][0]["latency"] = {"enabled": False}
        async with Agent(parse_config(conf, "test")) as agent:
            await wait_for(lambda: agent.board.state_of(lab.config.stream, "origin", "origin").value == "ok", 30,
                           "the origin watched")

            def opened() -> list[tuple[str, str, str, str]]:
                return [(i.stage, i.component, i.fault, i.severity)
                        for i in agent.incidents.localizer.open_incidents()]
            lab.book.inject("mpd_stale", "origin")
            first = await wait_for(opened, 15, "an incident for the stopped MPD")
            # the catalog's P2 (one format's viewers) when the comparison sees it first, P1 once the
            # MPD's own stale rule (every rendition the agent reads) joins it: an escalation, same cause
            assert [i[:3] for i in first] == [("origin", "origin", "manifest_behind")], first
            assert first[0][3] in ("P1", "P2"), first
            await wait_for(lambda: opened() == [("origin", "origin", "manifest_behind", "P1")], 10,
                           "the incident to escalate when the MPD it reads goes stale")
            lab.book.clear_all()
            await wait_for(lambda: not opened(), 30, "the incident to resolve")
            lab.book.inject("transcoder_stall", "transcoder")
            stalled = await wait_for(opened, 15, "an incident for the stalled transcoder")
            assert stalled == [("transcode", "transcoder", "stale_playlist", "P1")], stalled


async def test_a_dash_view_computed_from_the_clock_is_never_judged_ahead_of_a_stopped_hls(tmp_path: Path) -> None:
    """A ``$Number$`` template without a timeline lists segments from the clock whatever the
    packager does: beside HLS playlists that stopped (the encode died), it must not make the HLS
    side "behind" — that would put a stopped transcoder on the origin. The HLS variant that
    answers 404 is left out by name, not taken for the whole side failing."""
    from aiohttp import web
    from localserver import LocalServer

    ast = time.time() - 60

    async def mpd(_req: web.Request) -> web.Response:
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ast))
        return web.Response(content_type="application/dash+xml", text=(
            f'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" '
            f'availabilityStartTime="{iso}" minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT12S">'
            '<Period start="PT0S"><AdaptationSet contentType="video"><Representation id="v" bandwidth="300000" '
            'width="320" height="180"><SegmentTemplate media="seg-$Number$.m4s" duration="2" startNumber="0"/>'
            '</Representation></AdaptationSet></Period></MPD>'))

    async def master(_req: web.Request) -> web.Response:
        return web.Response(text="#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180\nv.m3u8\n"
                                 "#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360\ngone.m3u8\n")

    async def media(_req: web.Request) -> web.Response:  # stopped 30 s ago, no ENDLIST
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ast + 20))
        body = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n" \
               f"#EXT-X-PROGRAM-DATE-TIME:{stamp}\n" + "".join(f"#EXTINF:2.0,\nseg-{k}.m4s\n" for k in range(10, 16))
        return web.Response(text=body)

    app = web.Application()
    app.router.add_get("/live.mpd", mpd)
    app.router.add_get("/master.m3u8", master)
    app.router.add_get("/v.m3u8", media)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        target = _target(f"{server.url}/master.m3u8", f"{server.url}/live.mpd")
        ctx = ProbeContext(state={}, http=http)
        results = []
        for _ in range(4):
            results.append(await call_probe(compare_probe, target, ctx))
            await next_attempt()
    for r in results:
        assert not [e for e in r.evidence if e.fault], [e.detail for e in r.evidence]
    last = results[-1].evidence[-1]
    assert last.state is State.UNKNOWN and "computed from the clock" in last.detail, last.detail
    assert "gone.m3u8: HTTP 404" in last.detail, last.detail  # the one variant that failed, named


@pytest.mark.lab
@pytest.mark.timeout(120)
async def test_nginx_rtmp_hls_and_dash_of_one_publish_are_watched_for_lag_only(tmp_path: Path) -> None:
    """nginx-rtmp (Debian libnginx-mod-rtmp 1.2.2, tests/reallab.py: ``hls on`` and ``dash on`` in one
    application, 2-s fragments, ffmpeg publishing one RTMP stream) writes the two formats from one
    input into different files: ``main-N.ts`` listed in ``main.m3u8``, ``main-$Time$.m4v`` in
    ``main.mpd`` (SegmentTimeline, availabilityStartTime to the second). It has no directive for
    ``EXT-X-PROGRAM-DATE-TIME`` (no ``hls_`` directive writes it), so the two cannot be lined up
    by URI or by wall clock: the probe says so (mode ``none``, no lead, no offset, "lag only by
    age") and judges only which side stands still. A copy of the MPD that stops is behind by age;
    the publisher killed stops both sides at once (nginx-rtmp closes both fragmenters when the
    publish ends; seen here: each lists the same cut fragment, 0.267 s and 0.133 s in two runs),
    which is no manifest fault (it was called one for an attempt in about one run in five before
    the rule needed the other side to have moved later than the skew and an attempt)."""
    require_binary("nginx")
    require_binary("ffmpeg")
    if RealLab.missing_binaries():
        require_binary("ngx_rtmp_module (libnginx-mod-rtmp)")
    async with RealLab(tmp_path / "lab") as lab, Fetcher() as http:
        async def dash_listed() -> bool:
            status, _, body = await lab.fetch(lab.dash_url)
            return status == 200 and body.count(b"<S ") >= 2 * 3  # video and audio: three fragments each
        await wait_for(dash_listed, 30, "three DASH fragments from nginx-rtmp")
        await lab.wait_playlist(min_segments=3)
        hls_text = (await lab.fetch(lab.origin_url))[2].decode()
        mpd_text = (await lab.fetch(lab.dash_url))[2].decode()
        assert "#EXT-X-PROGRAM-DATE-TIME" not in hls_text and ".ts" in hls_text, hls_text
        assert "availabilityStartTime=" in mpd_text and 'media="main-$Time$.m4v"' in mpd_text, mpd_text

        frozen = tmp_path / "frozen"
        frozen.mkdir()
        (frozen / "main.mpd").write_text((await lab.fetch(lab.dash_url))[2].decode())  # the DASH side stops here
        async with static_server(frozen) as url:
            ev, took = await until_behind(_target(lab.origin_url, url.replace("index.m3u8", "main.mpd")), http)
        assert ev.state is State.DOWN and ev.detail.startswith("DASH 180p has not changed"), ev.detail
        assert "of the same encode advances" in ev.detail and "s of media after it" not in ev.detail, ev.detail
        assert took < 2.0 + 0.5 + 1.5, took  # one target duration + the skew, a fragment's boundary as margin

        targets = {"hls-first": _target(lab.origin_url, lab.dash_url), "dash-first": _target(lab.dash_url, lab.origin_url)}
        ctxs = {k: ProbeContext(state={}, http=http) for k in targets}
        for _ in range(6):  # three fragments' worth of attempts, boundaries among them
            for k, target in targets.items():
                r = await call_probe(compare_probe, target, ctxs[k])
                assert [(e.state, e.fault) for e in r.evidence] == [(State.OK, None)], (k, r.evidence, r.figures)
                assert "no shared segment, no wall-clock times: lag only by age" in r.evidence[0].detail, r.evidence
                (name, figs), = r.figures.items()  # one video rendition each side; audio is no variant
                assert name == ("main" if k == "hls-first" else "180p"), r.figures
                assert figs["compare_mode"] == "none" and figs["compare_matched"] == 0, figs
                assert "compare_offset_s" not in figs and "compare_lead_s" not in figs, figs  # not measured, not made up
            await next_attempt()

        await lab.kill_ffmpeg()  # the publisher dies: nginx-rtmp stops both formats together
        false_alarms: list[tuple[int, str, str]] = []
        for i in range(6):  # the same contexts (both sides seen moving), past both's due time (2.5 s)
            for k, target in targets.items():
                r = await call_probe(compare_probe, target, ctxs[k])
                faults = [e for e in r.evidence if e.fault]
                assert all(e.fault == "manifest_behind" for e in faults), (k, r.evidence)
                false_alarms += [(i, k, e.detail) for e in faults]
            await next_attempt()
    # nginx-rtmp writes availabilityStartTime truncated to the second, and probes/core/mpd.py holds a
    # listed segment back until AST + its end + a grace: a fragment both formats wrote at once can
    # show in the DASH view an attempt after HLS. One side is behind only when the other moved later
    # than it by more than the skew and an attempt (probes/compare.py): never after both stopped.
    assert false_alarms == [], false_alarms


async def test_a_timeline_shifted_by_more_than_half_a_segment_is_a_disagreement_not_an_offset() -> None:
    """Two manifests of one live encode with different segment files (lined up by wall clock),
    the second's EXT-X-PROGRAM-DATE-TIME 3 s later: past half a segment a shift reads as a lead
    (segments are matched by start within half a segment), so it is judged as one — held in
    every one of the last 5 attempts while both advance — never taken for one side behind."""
    from aiohttp import web
    from localserver import LocalServer

    t0 = time.time() - 20.0

    def media(shift: float, prefix: str) -> web.Response:
        last = int(time.time() - t0 - 1.05)  # 1-s segments, each listed 1.05 s after it starts
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{last - 5}"]
        for k in range(last - 5, last + 1):
            at = t0 + k + shift
            lines += ["#EXT-X-PROGRAM-DATE-TIME:" + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
                      + f".{round((at % 1) * 1000):03d}Z", "#EXTINF:1.000,", f"{prefix}{k}.ts"]
        return web.Response(text="\n".join(lines) + "\n")

    async def hls(_req: web.Request) -> web.Response:
        return media(0.0, "a")

    async def shifted(_req: web.Request) -> web.Response:
        return media(3.0, "b")

    app = web.Application()
    app.router.add_get("/a.m3u8", hls)
    app.router.add_get("/b.m3u8", shifted)
    async with await LocalServer.start(app) as server, Fetcher() as http:
        target = _target(f"{server.url}/a.m3u8", f"{server.url}/b.m3u8")
        ctx = ProbeContext(state={}, http=http)
        results = []
        for _ in range(6):
            results.append(await call_probe(compare_probe, target, ctx))
            await next_attempt()
    assert not [e for r in results for e in r.evidence if e.fault == "manifest_behind"]
    assert [e.fault for e in results[1].evidence] == [None]  # one lead is no verdict yet
    (ev,) = [e for e in results[-1].evidence if e.fault]
    assert ev.fault == "manifests_disagree" and "+3.0 s of media" in ev.detail, ev.detail


async def test_a_side_left_behind_is_looked_at_the_moment_it_would_be_behind() -> None:
    """The HLS probe's arrival prediction, for the comparison (probes/compare.py): once one
    manifest has stood still while the other moved on, the probe asks for an attempt when its
    age passes the due time (one target duration + the skew: 2.5 s here), says
    ``manifest_behind`` then, and asks for the confirming look 0.4 s later; two manifests that
    move together ask for nothing. A real server; the clock is stepped."""
    from aiohttp import web
    from localserver import LocalServer

    newest = {"a": 10, "b": 10}

    def media(side: str) -> web.Response:
        last = newest[side]
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{last - 3}"]
        for k in range(last - 3, last + 1):
            lines += ["#EXTINF:2.000,", f"s{k}.ts"]
        return web.Response(text="\n".join(lines) + "\n")

    async def a(_req: web.Request) -> web.Response:
        return media("a")

    async def b(_req: web.Request) -> web.Response:
        return media("b")

    app = web.Application()
    app.router.add_get("/a.m3u8", a)
    app.router.add_get("/b.m3u8", b)
    now = [100.0]
    async with await LocalServer.start(app) as server, Fetcher() as http:
        target = _target(f"{server.url}/a.m3u8", f"{server.url}/b.m3u8")
        ctx = ProbeContext(state={}, http=http, clock=lambda: now[0])

        async def at(t: float) -> ProbeResult:
            now[0] = t
            return await call_probe(compare_probe, target, ctx)

        def behind(r: ProbeResult) -> bool:
            return any(e.fault == "manifest_behind" for e in r.evidence)

        for t in (100.0, 101.0):
            r = await at(t)
            assert r.recheck_at is None and not behind(r)
        newest["a"] = newest["b"] = 11
        r = await at(102.0)  # both moved on together: nothing to look at early
        assert r.recheck_at is None and not behind(r)
        r = await at(103.0)
        assert r.recheck_at is None
        newest["a"] = 12  # the second stands still
        r = await at(104.0)
        assert not behind(r) and r.recheck_at == pytest.approx(102.0 + 2.5 + 0.05)
        r = await at(r.recheck_at)
        assert behind(r), r.evidence
        assert r.recheck_at == pytest.approx(104.55 + 0.4)  # the confirming look
        r = await at(r.recheck_at)
        assert behind(r) and r.recheck_at is None  # confirmed: the next attempt as usual
