"""Video sources against a real RTSP server (GStreamer's, tests/rtsp_server.py), and recorded /sys devices.

The feeds are live H.264 + Opus over RTSP (``rtsp://127.0.0.1:PORT/<variant>``), opened by
the probe's own capture path (PyAV, RTSP over TCP, decode + media analysis): a good
picture, black, frozen (still colour bars), the wrong frame rate (10 fps where 25 are
expected), silent audio, a server that is not there, and a server killed mid-capture.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from probes.core.studio import SourceConfig, Status
from probes.video_source import list_devices, measure
from tests.rtsp_server import RtspServer

FIX = Path(__file__).parent / "fixtures" / "host"


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# variant -> the one failing fault the probe must report (None: everything passes)
CASES = {"ok": None, "black": "black_video", "frozen": "frozen_video", "slow": "frame_rate_low",
         "silent": "silent_audio"}


def _src(name: str, url: str, **kw) -> SourceConfig:
    return SourceConfig(name=name, url=url, expected_fps=25, expected_width=320, expected_height=180,
                        sample_s=2.5, expect_audio=True, **kw)


@pytest.mark.lab
async def test_rtsp_feeds_ok_black_frozen_wrong_rate_silent_and_gone():
    gone = _dead_port()
    async with RtspServer() as srv:
        srcs = {n: _src(n, srv.url(n)) for n in CASES}
        srcs["gone"] = SourceConfig(name="gone", url=f"rtsp://127.0.0.1:{gone}/cam?token=SECRET77", open_timeout_s=2)
        results = dict(zip(srcs, await asyncio.gather(*(measure(s) for s in srcs.values())), strict=True))
    for name, fault in CASES.items():
        findings, sample = results[name]
        why = (name, [(f.check, f.status, f.measured) for f in findings])
        assert {f.fault for f in findings if f.status is Status.FAIL} == ({fault} if fault else set()), why
        f = {x.check: x for x in findings}
        assert f["source.open"].status is Status.PASS and sample.open_s < 5, why
        assert f["source.resolution"].status is Status.PASS and (sample.width, sample.height) == (320, 180)
        assert sample.segment.decode_errors == 0
        if name != "silent":
            # audiotestsrc sine at volume 0.125: -18 dBFS peak, -21 dBFS RMS
            assert f["source.audio"].status is Status.PASS and -23 < f["source.audio"].value < -19, why
    ok = {x.check: x for x in results["ok"][0]}
    assert abs(results["ok"][1].measured_fps - 25) < 0.5 and ok["source.picture"].measured.startswith("moving")
    assert abs(results["slow"][1].measured_fps - 10) < 0.5
    slow = next(f for f in results["slow"][0] if f.check == "source.frame_rate")
    assert slow.fix.startswith("the source delivers 10.0 fps instead of 25: set the camera's frame rate")
    black = next(f for f in results["black"][0] if f.fault == "black_video")
    assert black.value >= 2.0 and "lens cap" in black.fix
    frozen = next(f for f in results["frozen"][0] if f.fault == "frozen_video")
    assert frozen.value >= 2.0 and "frozen" in frozen.fix
    silent = next(f for f in results["silent"][0] if f.fault == "silent_audio")
    assert silent.value < -50 and "check the mixer output" in silent.fix
    gone_f = results["gone"][0]
    assert len(gone_f) == 1 and gone_f[0].status is Status.FAIL and gone_f[0].fault == "source_gone"
    assert "is gone" in gone_f[0].fix and "SECRET77" not in gone_f[0].fix + gone_f[0].measured


@pytest.mark.lab
async def test_rtsp_server_killed_mid_capture_is_source_gone():
    async with RtspServer() as srv:
        task = asyncio.ensure_future(measure(_src("cam", srv.url("ok"), open_timeout_s=3).model_copy(
            update={"sample_s": 8.0})))
        try:
            await srv.wait_sent("ok")
            await srv.kill()
            findings, sample = await asyncio.wait_for(task, 15)
        finally:
            task.cancel()
    f = {x.check: x for x in findings}
    assert f["source.open"].status is Status.PASS and sample.ended_early
    live = f["source.live"]
    assert live.status is Status.FAIL and live.fault == "source_gone" and "drops out" in live.fix
    # it stopped well before the 8 s asked for, after what the server had sent
    assert sample.media_s >= 1.0 and sample.media_s < 6.0, sample.media_s


@pytest.mark.lab
async def test_backup_feed_fault_only_warns():
    async with RtspServer() as srv:
        findings, _ = await measure(_src("cam2", srv.url("black"), backup=True))
    pic = next(f for f in findings if f.check == "source.picture")
    assert pic.status is Status.WARN and pic.fault == "black_video" and findings[0].title.startswith("Backup feed")
    assert not [f for f in findings if f.status is Status.FAIL]


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
