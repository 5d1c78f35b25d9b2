"""signalpath on live HLS written by packagers we did not write (ffmpeg's HLS muxer, GStreamer's
hlssink2), served by a plain static file server on 127.0.0.1 port 0.

Each packager runs in real time (``-re`` / ``is-live=true``) into a temporary folder for the
test's duration. What is proven: an agent watching them for 16 s (8 segments) stays healthy (no incident) on MPEG-TS
with program date-times and on fMP4 (EXT-X-MAP: the content probe fetches the init section once
and decodes init + fragment: no decode error), demuxed audio (``-var_stream_map`` with
an ``agroup``: the audio rendition watched, the viewers play it beside the video), and an encoder
restarted without ``append_list`` (the media sequence starts again) is one sequence_regression incident upstream of
the origin. nginx-rtmp's own HLS (tests/reallab.py: RTMP ingest, packager and origin in one nginx,
two proxy_cache edges) with ``hls_continuous`` on and off: a publisher restart continues the
numbering (nothing opens) or restarts it (one sequence_regression). Per packager, what was run and
seen: tests/fixtures/hls/PACKAGERS.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _require import require_binary
from aiohttp import web
from reallab import RealLab
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from probes.base import ProbeContext, ProbeTarget
from probes.core.playlist import MediaPlaylist, parse
from probes.hls import HlsSettings
from probes.hls import probe as hls_probe
from probes.media import MediaSettings, probe
from probes.net.httpfetch import Fetcher

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440"]
ENCODE = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50", "-keyint_min", "50",
          "-sc_threshold", "0", "-b:v", "300k", "-c:a", "aac", "-b:a", "64k"]


def ffmpeg_hls(folder: Path, *, fmp4: bool = False, single_file: bool = False, list_size: int | None = None,
               seconds: int = 120) -> list[str]:
    """ffmpeg 5.1's HLS muxer as ENVIRONMENT.md lists it (2-s segments, PDT, sliding window of 6);
    ``single_file``: one growing file, segments as EXT-X-BYTERANGE sub-ranges of it. ffmpeg 5.1
    stops updating a single_file playlist once its sliding window is full (seen here: the file
    grows, the playlist stays at N entries), so single_file runs keep every entry (list size 0)
    unless ``list_size`` says otherwise."""
    flags = "program_date_time+independent_segments" + ("+single_file" if single_file else "+delete_segments")
    size = list_size if list_size is not None else (0 if single_file else 6)
    cmd = [require_binary("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re", *SOURCE, "-t", str(seconds),
           *ENCODE, "-f", "hls", "-hls_time", "2", "-hls_list_size", str(size), "-hls_flags", flags]
    if fmp4:
        cmd += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4"]
    return [*cmd, str(folder / "index.m3u8")]


def gst_hlssink2(folder: Path) -> list[str]:
    return [require_binary("gst-launch-1.0"), "-q", "videotestsrc", "is-live=true", "pattern=ball", "background-color=0xff606060", "!",
            "video/x-raw,width=320,height=180,framerate=25/1", "!", "x264enc", "tune=zerolatency",
            "speed-preset=ultrafast", "key-int-max=50", "bitrate=300", "!", "h264parse", "!", "hlssink2",
            "target-duration=2", "max-files=10", "playlist-length=6",
            f"location={folder}/seg%05d.ts", f"playlist-location={folder}/index.m3u8"]


def start(cmd: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes], *, crash: bool = False) -> None:
    """SIGTERM (ffmpeg then closes its playlist with #EXT-X-ENDLIST), or SIGKILL (a crash: it does not)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL if crash else signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def packager(cmd: list[str]) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc = start(cmd)
    try:
        yield proc
    finally:
        stop(proc)


@contextlib.asynccontextmanager
async def static_server(folder: Path) -> AsyncIterator[str]:
    """A plain HTTP file server (no HLS knowledge), as a CDN origin bucket would be."""
    app = web.Application()

    async def no_cache(_req: web.Request, resp: web.StreamResponse) -> None:
        resp.headers["Cache-Control"] = "no-cache"

    app.on_response_prepare.append(no_cache)
    app.router.add_static("/live", folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/live/index.m3u8"
    finally:
        await runner.cleanup()


async def playlist_ready(folder: Path, segments: int = 3, timeout: float = 30) -> None:
    def ready() -> bool:
        p = folder / "index.m3u8"
        return p.exists() and p.read_text(errors="replace").count("#EXTINF") >= segments
    await wait_for(ready, timeout, f"{segments} segments from the packager")


def agent_config(url: str, tmp_path: Path) -> dict[str, Any]:
    return {"agent": {"listen": "127.0.0.1:0", "site": "test"},
            "incidents": {"path": str(tmp_path / "incidents.db")},
            "streams": [{"name": "main", "origin": url, "latency": {"enabled": False}}]}


async def healthy_for(agent: Agent, seconds: float) -> list[Any]:
    """Every incident opened while the agent watches for ``seconds`` (after its first picture)."""
    await wait_for(lambda: agent.board.state_of("main", "origin", "origin").value == "ok", 20, "origin ok")
    return await incidents_within(agent, seconds)


async def incidents_within(agent: Agent, seconds: float) -> list[Any]:
    """Every incident open at some poll (every 0.5 s) while the agent watches for ``seconds``."""
    opened: dict[str, Any] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i in agent.incidents.localizer.open_incidents():
            opened.setdefault(i.id, i)
        await asyncio.sleep(0.5)
    return list(opened.values())


async def test_fmp4_segments_decode_with_their_init_section(tmp_path: Path) -> None:
    async with packager(ffmpeg_hls(tmp_path, fmp4=True)), static_server(tmp_path) as url:
        await playlist_ready(tmp_path)
        assert "#EXT-X-MAP" in (tmp_path / "index.m3u8").read_text()
        target = ProbeTarget("media", "main", "origin", "origin", MediaSettings(), url, 1.0, 10.0)
        spans: list[Any] = []
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(spans) < 3:
                r = await probe(target, ctx)
                spans += r.spans
                await asyncio.sleep(0.5)
    assert len(spans) >= 3, "fewer than 3 fMP4 segments analysed"
    assert all(s.error is None for s in spans), [s.error for s in spans]
    assert all(s.attributes["signalpath.media.decode_errors"] == 0 for s in spans)
    assert all(s.attributes["signalpath.media.video_frames"] >= 40 for s in spans)  # 2 s at 25 fps


async def test_byte_range_segments_are_fetched_as_exactly_their_sub_range(tmp_path: Path) -> None:
    """ffmpeg's single_file: every segment is a sub-range of one growing file. The HLS probe asks
    for exactly the listed range (206), and its figures are on that range, not on the file."""
    async with packager(ffmpeg_hls(tmp_path, single_file=True)), static_server(tmp_path) as url:
        await playlist_ready(tmp_path)
        assert "#EXT-X-BYTERANGE" in (tmp_path / "index.m3u8").read_text()
        target = ProbeTarget("hls", "main", "origin", "origin", HlsSettings(), url, 1.0, 5.0)
        sizes: dict[int, int] = {}
        async with Fetcher() as http:
            ctx = ProbeContext(state={}, http=http)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(sizes) < 2:
                r = await hls_probe(target, ctx)
                for s in (c for span in r.spans for c in span.children if c.name.startswith("segment ")):
                    sizes[int(s.name.split()[1])] = s.attributes["signalpath.bytes"]
                assert not [e for e in r.evidence if e.fault is not None], r.evidence
                await asyncio.sleep(0.5)
        listed = parse((tmp_path / "index.m3u8").read_text(), url)
    assert len(sizes) >= 2
    assert isinstance(listed, MediaPlaylist)
    ranges = {s.seq: s.byterange for s in listed.segments}
    whole = (tmp_path / "index.ts").stat().st_size
    for seq, size in sizes.items():
        if ranges.get(seq):
            assert size == ranges[seq][0] < whole


@pytest.mark.parametrize("kind", ["ffmpeg-ts-pdt", "ffmpeg-fmp4", "ffmpeg-single-file", "gst-hlssink2"])
async def test_a_healthy_real_packager_opens_no_incident(kind: str, tmp_path: Path) -> None:
    cmd = gst_hlssink2(tmp_path) if kind == "gst-hlssink2" else ffmpeg_hls(
        tmp_path, fmp4=kind == "ffmpeg-fmp4", single_file=kind == "ffmpeg-single-file")
    async with packager(cmd), static_server(tmp_path) as url:
        await playlist_ready(tmp_path)
        async with Agent(parse_config(agent_config(url, tmp_path))) as agent:
            opened = await healthy_for(agent, 16)
            analysed = [e for e in agent.board.evidence("main") if e.stage == "origin" and e.rendition]
    assert opened == [], [(i.stage, i.component, i.fault, i.summary) for i in opened]
    assert analysed


def ffmpeg_demuxed_audio(folder: Path, seconds: int = 120) -> list[str]:
    """ffmpeg's HLS muxer with its audio in a rendition of its own (``agroup``), as the test below runs it."""
    return [require_binary("ffmpeg"), "-hide_banner", "-loglevel", "error", "-re", *SOURCE, "-t", str(seconds),
            "-map", "0:v", "-map", "1:a", *ENCODE, "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
            "-hls_flags", "program_date_time+independent_segments+delete_segments", "-master_pl_name", "master.m3u8",
            "-var_stream_map", "v:0,agroup:aud a:0,agroup:aud,default:yes", str(folder / "stream_%v.m3u8")]


async def test_ffmpeg_demuxed_audio_is_watched_healthy(tmp_path: Path) -> None:
    """ffmpeg 5.1, demuxed audio: ``ffmpeg -re -f lavfi -i testsrc2=size=320x180:rate=25 -f lavfi -i
    sine=frequency=440 -t 120 -map 0:v -map 1:a -c:v libx264 -preset ultrafast -tune zerolatency -g 50
    -keyint_min 50 -sc_threshold 0 -b:v 300k -c:a aac -b:a 64k -f hls -hls_time 2 -hls_list_size 6
    -hls_flags program_date_time+independent_segments+delete_segments -master_pl_name master.m3u8
    -var_stream_map "v:0,agroup:aud a:0,agroup:aud,default:yes" stream_%v.m3u8``.

    Its master lists EXT-X-MEDIA TYPE=AUDIO GROUP-ID="group_aud" NAME="audio_1" DEFAULT=YES
    URI="stream_1.m3u8" and one variant (320x180, AUDIO="group_aud"; with a second video variant
    ffmpeg also lists the audio playlist as a variant: tests/fixtures/hls/ffmpeg51-agroup-master.m3u8).
    Its audio segments last 2.020133 s, then 1.996922 s... against TARGETDURATION 2. Watched for
    20 s (10 segments): no incident and no bad evidence; the audio playlist is watched as rendition
    ``audio-1`` at the origin (segments fetched), and the virtual viewer of the video variant
    fetches it beside its video and plays both."""
    async with packager(ffmpeg_demuxed_audio(tmp_path)), static_server(tmp_path) as url:
        await wait_for(lambda: (tmp_path / "master.m3u8").exists()
                       and all((tmp_path / f"stream_{i}.m3u8").exists()
                               and (tmp_path / f"stream_{i}.m3u8").read_text().count("#EXTINF") >= 3 for i in (0, 1)),
                       30, "3 segments in each stream")
        master = (tmp_path / "master.m3u8").read_text()
        assert '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_aud"' in master and 'AUDIO="group_aud"' in master
        async with Agent(parse_config(agent_config(url.replace("index.m3u8", "master.m3u8"), tmp_path))) as agent:
            opened = await healthy_for(agent, 20)
            evidence = agent.board.evidence("main")
            figures = {c["stage"]: c["figures"] for c in agent.board.as_json()["streams"][0]["stages"]
                       if c["component"] == "origin"}
    assert opened == [], [(i.stage, i.component, i.fault, i.summary) for i in opened]
    bad = [(e.stage, e.component, e.rendition, e.fault, e.detail) for e in evidence
           if e.state.value in ("degraded", "down")]
    assert bad == []
    renditions = {**figures["origin"]["renditions"], **figures["origin"]["alternates"]}
    assert (set(figures["origin"]["renditions"]), set(figures["origin"]["alternates"])) == ({"180p"}, {"audio-1"})
    assert all(f["age_s"] < 4.0 and "download_ratio" in f for f in renditions.values()), renditions
    viewers = [e for e in evidence if e.stage == "playback"]
    assert viewers and all(e.figures.get("audio_buffer_s", 0) > 0 and e.figures["watched_s"] > 5 for e in viewers), \
        [(e.rendition, e.figures) for e in viewers]


async def test_a_real_packager_bug_is_seen_as_the_stale_playlist_it_is(tmp_path: Path) -> None:
    """ffmpeg 5.1 single_file with a sliding window of 3 freezes its playlist after 3 segments while
    the file keeps growing: a true stale_playlist upstream of the origin, not a healthy stream."""
    async with packager(ffmpeg_hls(tmp_path, single_file=True, list_size=3)), static_server(tmp_path) as url:
        await playlist_ready(tmp_path, segments=1)
        async with Agent(parse_config(agent_config(url, tmp_path))) as agent:
            opened = await wait_for(lambda: [i for i in agent.incidents.localizer.open_incidents()
                                             if i.fault == "stale_playlist"], 30, "stale_playlist")
    assert [(i.stage, i.component) for i in opened] == [("transcode", "transcoder")]


async def test_an_encoder_restart_without_append_list_is_one_sequence_regression(tmp_path: Path) -> None:
    async with static_server(tmp_path) as url:
        first = start(ffmpeg_hls(tmp_path))
        restarted = None
        try:
            await playlist_ready(tmp_path, segments=6)
            async with Agent(parse_config(agent_config(url, tmp_path))) as agent:
                await wait_for(lambda: agent.board.state_of("main", "origin", "origin").value == "ok", 20, "ok")
                await wait_for(lambda: (agent.registry.get_sample_value(
                    "signalpath_playlist_media_sequence", {"site": "test", "stream": "main", "stage": "origin",
                                                           "component": "origin", "rendition": "main"}) or 0) >= 8,
                    40, "the media sequence past 8")
                # the encoder crashes and restarts into the same folder without append_list: the media
                # sequence starts again (a clean stop would first close the playlist: stream_ended)
                stop(first, crash=True)
                restarted = start(ffmpeg_hls(tmp_path))
                opened = await wait_for(lambda: [i for i in agent.incidents.localizer.open_incidents()
                                                 if i.fault == "sequence_regression"], 30,
                                        "a sequence_regression incident")
                others = [i for i in agent.incidents.localizer.open_incidents() if i.fault != "sequence_regression"]
        finally:
            stop(first)
            if restarted is not None:
                stop(restarted)
    assert [(i.stage, i.component) for i in opened] == [("transcode", "transcoder")]
    assert others == [], [(i.stage, i.component, i.fault) for i in others]


@pytest.mark.parametrize("continuous", [True, False], ids=["hls_continuous-on", "hls_continuous-off"])
async def test_nginx_rtmp_hls_publisher_restart(continuous: bool, tmp_path: Path) -> None:
    """nginx-rtmp's HLS (Debian nginx 1.22.1, libnginx-mod-rtmp 1.2.2), as tests/reallab.py runs it:
    ``application live { live on; record off; hls on; hls_path ...; hls_fragment 2s;
    hls_playlist_length 10s; hls_cleanup on; hls_continuous on|off; }``, served by the same nginx
    (``Cache-Control: max-age=1`` on playlists, ``max-age=60`` on segments) and by two
    ``proxy_cache`` edges; ffmpeg publishes ``testsrc2`` 320x180 15 fps + ``sine`` (libx264
    ultrafast zerolatency, 300k, GOP 30 = 2 s, AAC 64k, ``-re -f flv``). nginx-rtmp writes no
    PROGRAM-DATE-TIME, no DISCONTINUITY-SEQUENCE; it names fragments ``main-N.ts`` by media
    sequence and keeps EXT-X-MEDIA-SEQUENCE at 0 until its 10-s window is full.

    Watched 14 s with zero incidents, then the publisher is killed and started again at once.
    ``hls_continuous on`` (also nginx-rtmp 1.2.2's default when the directive is left out, seen
    here): the numbering continues after an #EXT-X-DISCONTINUITY (the last fragment before the
    cut is listed as ``#EXTINF:0.000`` or a fraction of a second) and the agent opens nothing.
    ``off``: the next playlist starts again at ``main-0.ts`` (MEDIA-SEQUENCE 0, one segment, same
    file names as the first run): exactly one ``sequence_regression`` incident, placed upstream of
    the origin (the transcoder, as for ffmpeg's restart: the agent cannot tell nginx-rtmp's
    packager from an encoder's), saying the media sequence restarted; no edge or playback
    incident beside it."""
    require_binary("nginx")
    require_binary("ffmpeg")
    if RealLab.missing_binaries():
        require_binary("ngx_rtmp_module (libnginx-mod-rtmp)")
    async with RealLab(tmp_path / "lab", hls_continuous=continuous) as lab:
        conf = lab.config_dict(site="test")
        conf["streams"][0]["latency"] = {"enabled": False}  # nginx-rtmp writes no PDT, and no beacon here
        async with Agent(parse_config(conf)) as agent:
            healthy = await healthy_for(agent, 14)
            assert healthy == [], [(i.stage, i.component, i.fault, i.summary) for i in healthy]
            before = await lab.last_segment()
            await lab.kill_ffmpeg()
            await lab.start_ffmpeg()
            opened: dict[str, Any] = {}
            end = time.monotonic() + 12
            while time.monotonic() < end:
                for i in agent.incidents.localizer.open_incidents():
                    opened.setdefault(i.id, i)
                await asyncio.sleep(0.5)
            after = await lab.last_segment()
            text = (await lab.fetch(lab.origin_url))[2].decode()
    found = [(i.stage, i.component, i.fault) for i in opened.values()]
    if continuous:
        assert after > before and "#EXT-X-DISCONTINUITY" in text, (before, after, text)
        assert found == [], [(i.stage, i.component, i.fault, i.summary) for i in opened.values()]
    else:
        assert after < before, (before, after, text)
        assert found == [("transcode", "transcoder", "sequence_regression")], \
            [(i.stage, i.component, i.fault, i.summary) for i in opened.values()]
        assert "restarted its media sequence" in next(iter(opened.values())).summary
