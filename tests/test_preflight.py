"""`signalpath preflight` end to end: a passing studio, and injected faults that fail
with the right check and fix; JSON and JUnit outputs parsed."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from tests.test_network import servers

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def config(tmp: Path, ports, *, bad: bool) -> Path:
    tp, hp, np_ = ports
    host = FIX / "host"
    studio = {
        "host": {"proc_root": str(host / "t0" / "proc"),
                 "proc_root_later": str(host / ("t1_busy" if bad else "t1_idle") / "proc"),
                 "sys_root": str(host / ("sys_bad" if bad else "sys")), "nics": ["eth0"],
                 "encoder_processes": ["obs"], "recording_path": str(tmp), "disk_min_free_bytes": 1024,
                 "cpu_sample_s": 0.05},
        "gpu": {"recorded": str(FIX / "nvml-h200.json")},
        "sources": [{"name": "cam1", "device": "HD Pro Webcam C920"},
                    {"name": "cam2", "device": "Blackmagic UltraStudio Recorder 3G", "backup": True}],
        "network": {"ingest": f"127.0.0.1:{tp}", "rtt_samples": 3, "rtt_spacing_s": 0.01,
                    "upload_url": f"http://127.0.0.1:{hp}/upload", "upload_bytes": 200_000,
                    "target_bitrate": 50_000_000_000 if bad else 1_000_000, "ntp_server": f"127.0.0.1:{np_}"},
        "video4linux_root": str(host / ("sys_bad" if bad else "sys") / "class" / "video4linux"),
    }
    stream = {"name": "main", "origin": "http://127.0.0.1:1/live/main.m3u8", "studio": studio}
    if bad:
        stream["ingest"] = {"rtmp": [{"name": "primary", "url": f"rtmp://127.0.0.1:{_dead_port()}/live/KEY123"}]}
    p = tmp / "preflight.yaml"
    p.write_text(yaml.safe_dump({"streams": [stream]}))
    return p


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main(sys.argv[1:]))", *args,
        cwd=str(ROOT), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_preflight_passes_then_fails_with_fixes(tmp_path):
    tcp, runner, ntp, ports, _ = await servers(offset=0.0)
    try:
        good = config(tmp_path, ports, bad=False)
        rc, out, err = await run_cli("preflight", "-c", str(good), "--junit", str(tmp_path / "ok.xml"))
        assert rc == 0, out + err
        assert out.strip().splitlines()[-1] == "READY"
        assert "✓" in out and "Encoder host CPU" in out and "… encoder host" in err

        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        bad = config(bad_dir, ports, bad=True)
        rc, out, err = await run_cli("preflight", "-c", str(bad), "--json", "--junit", str(tmp_path / "bad.xml"))
        assert rc == 2, out + err
        report = json.loads(out)
        assert report["verdict"].startswith("NOT READY (") and err.strip().splitlines()[-1] == report["verdict"]
        fails = {(c["check"], c["component"]): c for c in report["checks"] if c["status"] == "fail"}
        assert fails[("host.cpu", "host")]["fix"].startswith("close other programs on the encoder host")
        assert fails[("host.nic.eth0", "host")]["fault"] == "nic_down"
        assert fails[("source.device", "cam1")]["fault"] == "device_missing"
        up = fails[("network.uplink", "network")]
        assert up["fix"].startswith("close other uploads or lower the bitrate:") and "Mbit/s needed" in up["fix"]
        assert fails[("ingest.rtmp", "primary")]["fix"].startswith("nothing listens at the ingest address")
        assert "KEY123" not in out + err
        cam2 = next(c for c in report["checks"] if c["component"] == "cam2")
        assert cam2["status"] == "pass" and cam2["title"].startswith("Backup device")
        assert {c["check"] for c in report["checks"] if c["status"] == "warn"} == {"host.temperature"}

        for name, n_fail in (("ok.xml", 0), ("bad.xml", len(fails))):
            suite = ET.parse(tmp_path / name).getroot()
            assert suite.tag == "testsuite" and int(suite.get("failures")) == n_fail
            assert len(suite.findall("testcase")) == int(suite.get("tests")) > 5
            assert len(suite.findall("testcase/failure")) == n_fail
    finally:
        tcp.close()
        ntp.close()
        await runner.cleanup()
