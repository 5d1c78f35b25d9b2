"""``signalpath beacon``: publish into a real nginx-rtmp ingest, read the beacons back from its HLS.

The ingest is tests/reallab.py's nginx-rtmp origin started without its own ffmpeg
publisher (``publish=False``); its HLS packager cuts our stream into 2-s segments
that we fetch over HTTP and decode like a player would.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import io
import itertools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import aiohttp
import av
import pytest
from _require import require_binary
from reallab import RealLab, free_port, parse_media_playlist

from agent import beacon_publish as bp
from probes.core import beacon

KEY = "sk-Secret123"
TOKEN = "tok-S3cret"


# ---- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtmp://127.0.0.1:1935/live/sk-123", "rtmp://127.0.0.1:1935/live/***"),
        ("rtmp://user:pw@ingest.example/live/sk-123?token=abc#x", "rtmp://***@ingest.example/live/***?token=***"),
        ("rtmps://ingest.example:443/app/inst/key/", "rtmps://ingest.example:443/app/inst/***/"),
        ("rtmp://[::1]:1935/live/key", "rtmp://[::1]:1935/live/***"),
        ("rtmp://ingest.example", "rtmp://ingest.example"),
        ("rtmp://[broken/live/key", "<unparseable URL>"),
    ],
)
def test_redact_url(url, redacted):
    """The beacon command shows URLs through the one redaction policy (probes/core/redact.py)."""
    assert bp.redact_url(url) == redacted


def _assert_secret_free(exc: BaseException) -> None:
    text = f"{exc} {exc!r} {getattr(exc, 'url', '')}"
    assert KEY not in text and "pw@" not in text and TOKEN not in text, text
    # FFmpeg's own exception carries the full URL: it must not be chained for display.
    assert exc.__cause__ is None and exc.__suppress_context__


def test_closed_port_is_unreachable_with_redacted_url():
    port = free_port()  # nothing listens there now
    with pytest.raises(bp.IngestUnreachable) as info:
        bp.publish(f"rtmp://user:pw@127.0.0.1:{port}/live/{KEY}?token={TOKEN}", bp.PublishSettings(seconds=1))
    err = info.value
    assert err.errno == errno.ECONNREFUSED and err.frames_sent == 0
    assert f"rtmp://***@127.0.0.1:{port}/live/***?token=***" in str(err)
    _assert_secret_free(err)


def test_unresolvable_host_is_unreachable():
    with pytest.raises(bp.IngestUnreachable, match="host name not resolved") as info:
        bp.publish(f"rtmp://no-such-host.invalid/live/{KEY}", bp.PublishSettings(seconds=1))
    _assert_secret_free(info.value)


def test_settings_are_strict():
    with pytest.raises(ValueError):
        bp.PublishSettings(width=641)
    with pytest.raises(ValueError):
        bp.PublishSettings(bitrat=1)  # type: ignore[call-arg]


def _cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signalpath")
    bp.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_help_ends_with_an_example_and_parses_units():
    parser = _cli()
    sub = parser._subparsers._group_actions[0].choices["beacon"]  # type: ignore[union-attr]
    help_text = sub.format_help().rstrip()
    assert "--rtmp URL" in help_text and "--seconds" in help_text and "--bitrate" in help_text
    last_lines = help_text.splitlines()[-8:]
    assert any("signalpath beacon --rtmp" in line for line in last_lines), last_lines
    args = parser.parse_args(["beacon", "--rtmp", "rtmp://h/live/k", "--bitrate", "1.5M", "--size", "320x180"])
    assert (args.bitrate, args.size, args.seconds, args.func) == (1_500_000, (320, 180), 0.0, bp.run_cli)
    with pytest.raises(SystemExit):
        parser.parse_args(["beacon", "--rtmp", "rtmp://h/live/k", "--size", "big"])


def test_cli_errors_are_one_line_without_secrets(monkeypatch, capsys):
    parser = _cli()
    port = free_port()
    monkeypatch.setenv("BEACON_TEST_KEY", KEY)
    args = parser.parse_args(["beacon", "--rtmp", f"rtmp://127.0.0.1:{port}/live/${{BEACON_TEST_KEY}}", "--seconds", "1"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert KEY not in err and "Traceback" not in err
    assert f"error: RTMP ingest rtmp://127.0.0.1:{port}/live/*** refused the connection" in err

    monkeypatch.delenv("BEACON_TEST_KEY")
    assert args.func(args) == 2
    assert "BEACON_TEST_KEY" in capsys.readouterr().err

    args = parser.parse_args(["beacon", "--rtmp", f"http://127.0.0.1/live/{KEY}"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "--rtmp: 'http://127.0.0.1' is not an rtmp:// URL" in err and KEY not in err  # a key in a wrong scheme's path too


def _blocked_publisher(started: threading.Event, release: threading.Event):
    """A publisher stuck like one whose write to an ingest that stopped reading never returns:
    it ignores ``stop`` until the test releases it."""

    def publisher(url, settings, *, stop, progress=None):
        started.set()
        release.wait(timeout=60)
        return bp.PublishResult(0, 0, 0, 0.0, None, None, True)

    return publisher


@pytest.mark.parametrize("signals", [1, 2])
def test_cli_shutdown_is_bounded_when_the_publisher_does_not_stop(capsys, signals):
    """Ctrl-C asks the publisher to stop and waits at most stop_timeout_s; a second Ctrl-C waits no more.

    The signals go to this process while run_cli handles them (it runs in the main thread):
    they must be recorded, never raised as KeyboardInterrupt inside a threading wait.
    """
    args = _cli().parse_args(["beacon", "--rtmp", "rtmp://127.0.0.1:1/live/k"])
    started, release = threading.Event(), threading.Event()
    stop_timeout_s = 1.0 if signals == 1 else 60.0
    seen: list[str] = []

    def interrupt() -> None:
        assert started.wait(timeout=30)
        for _ in range(signals):
            os.kill(os.getpid(), signal.SIGINT)
            if signals > 1:  # the second once the first was acted on
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    seen.append(capsys.readouterr().err)
                    if "stopping (Ctrl-C)" in "".join(seen):
                        break
                    time.sleep(0.02)

    sender = threading.Thread(target=interrupt)
    sender.start()
    t0 = time.monotonic()
    try:
        rc = bp.run_cli(args, publisher=_blocked_publisher(started, release), stop_timeout_s=stop_timeout_s)
        took = time.monotonic() - t0
    finally:
        release.set()
        sender.join(timeout=30)
        for th in threading.enumerate():
            if th.name == "beacon-publish":
                th.join(timeout=30)
    err = "".join(seen) + capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err and "stopped without waiting for the publisher" in err
    if signals == 1:
        assert "did not stop within 1 s" in err and took < 1.0 + 5.0
    else:
        assert "a second Ctrl-C" in err and took < 30
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# ---- against a real nginx-rtmp ingest ---------------------------------------------------


@pytest.fixture
async def ingest(tmp_path):
    """nginx-rtmp origin (ingest + HLS packager) on free loopback ports, no publisher of its own."""
    for binary in ("nginx", "ffmpeg"):
        require_binary(binary)
    if RealLab.missing_binaries():
        message = "nginx has no RTMP module: apt-get install libnginx-mod-rtmp"
        if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    lab = RealLab(tmp_path / "lab", publish=False)
    await lab.start()
    try:
        yield lab
    finally:
        await lab.stop()
    assert not lab.pids(), "the lab left processes behind"


async def _hls_beacons(http: aiohttp.ClientSession, lab: RealLab) -> dict[str, list[int | None]]:
    """Every frame's beacon (ms or None) in every segment the origin playlist lists."""
    async with http.get(lab.origin_url) as resp:
        assert resp.status == 200
        _seq, segments = parse_media_playlist(await resp.text())
    out: dict[str, list[int | None]] = {}
    for name in segments:
        async with http.get(f"{lab.origin_base}/hls/{name}") as resp:
            assert resp.status == 200
            body = await resp.read()
        with av.open(io.BytesIO(body)) as container:
            out[name] = [beacon.read_ms(f.to_ndarray(format="gray")) for f in container.decode(video=0)]
    return out


async def _wait_segments(http: aiohttp.ClientSession, lab: RealLab, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(lab.origin_url) as resp:
                if resp.status == 200 and len(parse_media_playlist(await resp.text())[1]) >= n:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"origin playlist did not list {n} segments within {timeout} s")


@pytest.mark.lab
async def test_publish_into_nginx_rtmp_and_read_beacons_from_hls(ingest: RealLab):
    lab = ingest
    seen: list[bp.PublishProgress] = []
    settings = bp.PublishSettings(seconds=5, width=640, height=360, fps=30, bitrate=600_000)
    t_before = time.time()
    result = await bp.publish_async(lab.rtmp_url, settings, progress=seen.append)
    t_after = time.time()

    assert result.frames == 150 and not result.stopped
    assert result.audio_frames >= 5 * 48_000 // 1024
    assert result.bytes > 100_000
    assert 4.5 < result.seconds < 8.0  # paced to the wall clock, not as fast as possible
    assert t_before <= result.first_stamp < result.last_stamp <= t_after
    assert seen and seen[-1].frames <= result.frames

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        per_segment = await _hls_beacons(http, lab)
    values = [v for vals in per_segment.values() for v in vals]
    decoded = [v for v in values if v is not None]
    assert len(values) >= 140, f"HLS holds only {len(values)} frames: {list(per_segment)}"
    assert len(decoded) / len(values) >= 0.99, f"{len(decoded)}/{len(values)} beacons decoded"
    assert decoded == sorted(decoded) and len(set(decoded)) == len(decoded)
    assert decoded[0] == round(result.first_stamp * 1000)
    assert decoded[-1] == round(result.last_stamp * 1000)
    # Frame spacing matches 30 fps pacing (stamps are taken when each frame is made).
    gaps = [b - a for a, b in itertools.pairwise(decoded)]
    assert sorted(gaps)[len(gaps) // 2] in range(30, 38)


@pytest.mark.lab
async def test_refusals_from_a_real_ingest(ingest: RealLab):
    lab = ingest
    with pytest.raises(bp.IngestRefused) as info:
        await bp.publish_async(f"rtmp://127.0.0.1:{lab.rtmp_port}/nosuchapp/{KEY}", bp.PublishSettings(seconds=2))
    assert "nosuchapp/***" in str(info.value)
    _assert_secret_free(info.value)
    # An HTTP port is not an RTMP ingest: the handshake fails.
    with pytest.raises(bp.IngestRefused) as info:
        await bp.publish_async(f"rtmp://127.0.0.1:{lab.origin_http_port}/live/{KEY}", bp.PublishSettings(seconds=2))
    assert info.value.frames_sent == 0
    _assert_secret_free(info.value)


@pytest.mark.lab
async def test_cancel_stops_publisher_thread_and_a_dropped_publisher_is_reported(ingest: RealLab):
    lab = ingest
    settings = bp.PublishSettings(seconds=0, width=320, height=180, fps=15, bitrate=200_000)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        task = asyncio.create_task(bp.publish_async(lab.rtmp_url, settings))
        await _wait_segments(http, lab, 1, timeout=15)
        t = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t < 3
        assert not [th for th in threading.enumerate() if th.name == "beacon-publish"]

        # The ingest drops the publisher mid-stream: a clear error, not a hang.
        task = asyncio.create_task(bp.publish_async(lab.rtmp_url, settings))
        await _wait_segments(http, lab, 1, timeout=15)
        deadline = time.monotonic() + 10
        while not task.done() and time.monotonic() < deadline:
            await lab.drop_publisher()
            await asyncio.sleep(0.3)
        with pytest.raises(bp.IngestRefused) as info:
            async with asyncio.timeout(10):
                await task
    assert info.value.frames_sent > 0 and "dropped the stream after" in str(info.value)
    _assert_secret_free(info.value)


_CLI = (
    "import argparse, sys\n"
    "from agent import beacon_publish as bp\n"
    "p = argparse.ArgumentParser(prog='signalpath')\n"
    "bp.register(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


@pytest.mark.lab
async def test_cli_ctrl_c_stops_cleanly_and_says_what_it_sent(ingest: RealLab):
    lab = ingest
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLI, "beacon", "--rtmp", lab.rtmp_url, "--size", "320x180", "--bitrate", "200k",
        cwd=str(Path(__file__).resolve().parents[1]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await _wait_segments(http, lab, 1, timeout=15)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert lab.stream not in err.decode().replace("/***", "")  # the key is never printed
    assert "/live/***" in err.decode() and "stopping (Ctrl-C)" in err.decode()
    assert out.decode().startswith("stopped by Ctrl-C: ") and " frames" in out.decode()
