"""Video sources: real feeds from Debian's ffmpeg on loopback, and recorded /sys devices.

RTSP: Debian's ffmpeg 5.1 has no RTSP server mode for output (``-rtsp_flags listen`` is
an input-only flag there) and no RTSP server is installed, so the live feeds here are
MPEG-TS over TCP from ffmpeg in listen mode (``tcp://127.0.0.1:PORT?listen=1``) — the same
capture path in probes/video_source.py (PyAV demux + decode + media analysis); only the
demuxer differs from an RTSP camera's.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from probes.studio import SourceConfig, Status
from probes.video_source import list_devices, measure
from tests._require import require_binary

FIX = Path(__file__).parent / "fixtures" / "host"


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _listening(port: int) -> bool:
    hexport = f":{port:04X} "
    with open("/proc/net/tcp") as fh:
        return any(hexport in line and line.split()[3] == "0A" for line in fh)


async def feed(video: str, port: int) -> asyncio.subprocess.Process:
    ffmpeg = require_binary("ffmpeg")
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", video,
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "8",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-c:a", "aac",
        "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not _listening(port):
        assert loop.time() < deadline, "ffmpeg did not listen"
        await asyncio.sleep(0.05)
    return proc


CASES = {
    "ok": ("testsrc2=size=320x180:rate=25", 25.0, None),
    "black": ("color=c=black:size=320x180:rate=25", 25.0, "black_video"),
    "frozen": ("smptebars=size=320x180:rate=25", 25.0, "frozen_video"),
    "slow": ("testsrc2=size=320x180:rate=12", 25.0, "frame_rate_low"),
}


async def test_feeds_ok_black_frozen_wrong_rate_and_gone():
    ports = {name: _port() for name in CASES}
    procs = [await feed(CASES[n][0], ports[n]) for n in CASES]
    gone = _port()
    try:
        srcs = {n: SourceConfig(name=n, url=f"tcp://127.0.0.1:{ports[n]}", expected_fps=CASES[n][1],
                                expected_width=320, expected_height=180, sample_s=2.5, expect_audio=True)
                for n in CASES}
        srcs["gone"] = SourceConfig(name="gone", url=f"tcp://127.0.0.1:{gone}", open_timeout_s=2)
        results = dict(zip(srcs, await asyncio.gather(*(measure(s) for s in srcs.values()))))
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
            await p.wait()
    for name, (_, _, fault) in CASES.items():
        findings, sample = results[name]
        faults = {f.fault for f in findings if f.status is Status.FAIL}
        assert faults == ({fault} if fault else set()), (name, [(f.check, f.measured) for f in findings])
        f = {x.check: x for x in findings}
        assert f["source.resolution"].status is Status.PASS
        assert f["source.audio"].status is Status.PASS and -30 < f["source.audio"].value < -10
    assert abs(results["ok"][1].measured_fps - 25) < 1 and abs(results["slow"][1].measured_fps - 12) < 1
    slow = next(f for f in results["slow"][0] if f.check == "source.frame_rate")
    assert "12.0 fps instead of 25" in slow.fix
    gone_f = results["gone"][0]
    assert gone_f[0].status is Status.FAIL and gone_f[0].fault == "source_gone" and "is gone" in gone_f[0].fix


async def test_devices_from_recorded_sysfs_and_backup_warns():
    root = FIX / "sys" / "class" / "video4linux"
    assert list_devices(root) == {"video0": "HD Pro Webcam C920", "video1": "Blackmagic UltraStudio Recorder 3G"}
    ok, _ = await measure(SourceConfig(name="cam1", device="HD Pro Webcam C920"), str(root))
    assert ok[0].status is Status.PASS and "/dev/video0" in ok[0].measured
    bad_root = str(FIX / "sys_bad" / "class" / "video4linux")
    missing, _ = await measure(SourceConfig(name="cam1", device="HD Pro Webcam C920"), bad_root)
    assert missing[0].status is Status.FAIL and missing[0].fault == "device_missing"
    assert "reconnect 'HD Pro Webcam C920'" in missing[0].fix
    backup, _ = await measure(SourceConfig(name="cam2", device="HD Pro Webcam C920", backup=True), bad_root)
    assert backup[0].status is Status.WARN and backup[0].title.startswith("Backup device")


def test_source_config_needs_exactly_one_kind():
    with pytest.raises(ValueError):
        SourceConfig(name="x")
