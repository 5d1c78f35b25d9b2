"""`signalpath preflight` against real software: nginx-rtmp (RealLab, an on_publish hook),
a GStreamer RTSP camera (tests/rtsp_server.py) and chronyd (tests/test_network.py).

One studio, three runs of the real CLI (a subprocess, as the crew runs it):

1. healthy: READY, exit 0, a readable table (every check on one row, the verdict last),
   the origin's live HLS (nginx-rtmp, fed by the lab's ffmpeg) checked as a path, and the
   ingest checked for real — RTMP handshake/connect to nginx-rtmp and a 1.5-s
   test push that the on_publish hook accepts;
2. the camera goes black (the RTSP mount serves a black picture): NOT READY, exit 2, the
   one failing check is ``source.picture`` of cam1 with the lens-cap fix;
3. the ingest refuses the stream key (the hook answers 403): NOT READY, exit 2, the one
   failing check is ``ingest.rtmp`` with the "copy the key again" fix, the key nowhere
   in the output.

JSON (``--json``) and JUnit (``--junit``) are parsed: testcase per check, a ``failure``
element per failing check carrying the fault as type and the fix as message.
"""

from __future__ import annotations

import asyncio
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from tests._require import require_binary
from tests.reallab import RealLab
from tests.rtsp_server import RtspServer
from tests.test_network import Chronyd, servers

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

FIX = Path(__file__).parent / "fixtures" / "host"
ROOT = Path(__file__).parent.parent
GOOD_KEY = "studioOKk3y4242"
BAD_KEY = "studioNOk3y9191"


async def hook_server(seen: list[str]) -> tuple[web.AppRunner, str]:
    """nginx-rtmp's on_publish hook: 403 for BAD_KEY (the platform refusing a key), else 200."""
    async def on_publish(request: web.Request) -> web.Response:
        name = str((await request.post()).get("name", ""))
        seen.append(name)
        return web.Response(status=403 if name == BAD_KEY else 200)

    app = web.Application()
    app.router.add_post("/on_publish", on_publish)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/on_publish"  # type: ignore[union-attr]


def write_config(path: Path, *, lab: RealLab, cam_url: str, key: str, upload_port: int, ntp: str) -> Path:
    studio = {
        "host": {"proc_root": str(FIX / "t0" / "proc"), "proc_root_later": str(FIX / "t1_idle" / "proc"),
                 "sys_root": str(FIX / "sys"), "nics": ["eth0"], "encoder_processes": ["obs"],
                 "recording_path": str(path.parent), "disk_min_free_bytes": 1024, "cpu_sample_s": 0.05},
        "sources": [{"name": "cam1", "url": cam_url, "expected_fps": 25, "expected_width": 320,
                     "expected_height": 180, "expect_audio": True, "sample_s": 2.5},
                    {"name": "cam2", "device": "Blackmagic UltraStudio Recorder 3G", "backup": True}],
        "network": {"ingest": f"127.0.0.1:{lab.rtmp_port}", "rtt_samples": 3, "rtt_spacing_s": 0.01,
                    "upload_url": f"http://127.0.0.1:{upload_port}/upload", "upload_bytes": 200_000,
                    "target_bitrate": 1_000_000, "ntp_server": ntp},
        "video4linux_root": str(FIX / "sys" / "class" / "video4linux"),
    }
    stream = {"name": "main", "origin": lab.origin_url, "studio": studio,
              "ingest": {"rtmp": [{"name": "primary", "url": f"{lab.rtmp_base}/{key}", "publish": True,
                                   "publish_seconds": 1.5, "target_bitrate": 300_000, "timeout_s": 15}]}}
    path.write_text(yaml.safe_dump({"streams": [stream]}))
    return path


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main(sys.argv[1:]))", *args,
        cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


def junit(path: Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    suite = ET.parse(path).getroot()
    assert suite.tag == "testsuite" and suite.get("name") == "signalpath preflight"
    cases = {c.get("name", "").split(":", 1)[0] + "@" + c.get("classname", ""): c for c in suite.findall("testcase")}
    assert len(cases) == len(suite.findall("testcase")) == int(suite.get("tests"))  # one case per check, unique
    assert int(suite.get("failures")) == len(suite.findall("testcase/failure"))
    return suite, cases


async def test_preflight_against_the_lab_passes_then_fails_per_injected_fault(tmp_path):
    require_binary("nginx")
    require_binary("ffmpeg")
    seen: list[str] = []
    hook, hook_url = await hook_server(seen)
    tcp, upload, ntp_fake, (_, upload_port, _), received = await servers()
    try:
        async with RealLab(tmp_path / "lab", on_publish_url=hook_url) as lab, \
                RtspServer() as cam, Chronyd(tmp_path / "chrony") as chrony:
            def cfg(name: str, variant: str, key: str) -> Path:
                return write_config(tmp_path / f"{name}.yaml", lab=lab, cam_url=cam.url(variant), key=key,
                                    upload_port=upload_port, ntp=chrony.server)

            # 1. healthy studio, real ingest
            rc, out, err = await run_cli("preflight", "-c", str(cfg("good", "ok", GOOD_KEY)),
                                         "--junit", str(tmp_path / "good.xml"))
            assert rc == 0, out + err
            lines = out.rstrip().splitlines()
            assert lines[-1] == "READY" and lines[-2] == "", out
            for title in ("Feed cam1", "cam1 picture", "cam1 frame rate", "Backup device cam2",
                          "Round trip to the ingest", "Clock offset (NTP)", "Ingest primary (RTMP)",
                          "Test push to primary", "Origin answers", "Origin playlists advance"):
                assert any(title in ln and ln.startswith("✓") for ln in lines), (title, out)
            assert any("Encoder process obs" in ln and "50 % of a core" in ln for ln in lines), out
            assert "✗" not in out and "… 2 source(s)" in err and "… ingest primary (test push)" in err
            assert GOOD_KEY in seen and GOOD_KEY not in out + err
            suite, cases = junit(tmp_path / "good.xml")
            assert int(suite.get("failures")) == 0 and int(suite.get("tests")) >= 14
            assert "measured 25.0 fps" in cases["source.frame_rate@main.cam1"].findtext("system-out")
            good_rows = len(suite.findall("testcase"))

            # 2. the camera goes black
            rc, out, err = await run_cli("preflight", "-c", str(cfg("black", "black", GOOD_KEY)), "--json",
                                         "--junit", str(tmp_path / "black.xml"))
            assert rc == 2, out + err
            report = json.loads(out)
            assert report["verdict"] == "NOT READY (1)" and err.rstrip().splitlines()[-1] == "NOT READY (1)"
            (fail,) = [c for c in report["checks"] if c["status"] == "fail"]
            assert (fail["check"], fail["component"], fail["fault"]) == ("source.picture", "cam1", "black_video")
            assert fail["measured"].startswith("black for ") and fail["fix"].startswith(
                "the picture is black: check the lens cap")
            assert report["counts"]["fail"] == 1 and len(report["checks"]) == good_rows
            suite, cases = junit(tmp_path / "black.xml")
            (failure,) = suite.findall("testcase/failure")
            assert failure.get("type") == "black_video" and failure.get("message") == fail["fix"]
            assert cases["source.picture@main.cam1"].find("failure") is failure

            # 3. the platform refuses the stream key
            rc, out, err = await run_cli("preflight", "-c", str(cfg("refused", "ok", BAD_KEY)), "--json",
                                         "--junit", str(tmp_path / "refused.xml"))
            assert rc == 2, out + err
            report = json.loads(out)
            (fail,) = [c for c in report["checks"] if c["status"] == "fail"]
            assert (fail["check"], fail["component"], fail["fault"]) == ("ingest.rtmp", "primary", "auth_refused")
            assert fail["fix"] == "the ingest refused the stream key: copy the key again from the platform's dashboard"
            assert BAD_KEY in seen and BAD_KEY not in out + err
            assert "publish" not in {c["check"].split(".")[-1] for c in report["checks"]}  # no rate without a push
            suite, _ = junit(tmp_path / "refused.xml")
            (failure,) = suite.findall("testcase/failure")
            assert failure.get("type") == "auth_refused" and BAD_KEY not in (tmp_path / "refused.xml").read_text()
    finally:
        tcp.close()
        ntp_fake.close()
        await upload.cleanup()
        await hook.cleanup()
    assert len(received) == 3  # one uplink test per run
