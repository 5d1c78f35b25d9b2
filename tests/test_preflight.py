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

from tests.livehls import Endpoint, Timeline
from tests.test_network import servers

FIX = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def config(tmp: Path, ports, *, bad: bool, origin: str = "http://127.0.0.1:1/live/main.m3u8") -> Path:
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
    stream = {"name": "main", "origin": origin, "studio": studio, "media": {"enabled": False}}
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
    origin = await Endpoint(Timeline()).start()  # a live origin: preflight checks the path too
    try:
        good = config(tmp_path, ports, bad=False, origin=origin.master_url)
        rc, out, err = await run_cli("preflight", "-c", str(good), "--junit", str(tmp_path / "ok.xml"))
        assert rc == 0, out + err
        assert out.strip().splitlines()[-1] == "READY"
        assert "✓" in out and "Host CPU" in out and "… encoder host" in err

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
        assert fails[("path.reachable", "origin")]["fault"] == "unreachable"  # the dead origin of the bad config
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
        await origin.stop()


async def test_the_table_fits_100_columns_and_each_failure_reads_one_way(tmp_path):
    """The failing studio as a person reads it: every line within 100 columns, the fix for each ✗ and ⚠
    in full below the table; a DNS failure is "host name not resolved" in every check that met it; a
    missing recording folder says it is missing."""
    tcp, runner, ntp, ports, _ = await servers(offset=0.0)
    try:
        path = config(tmp_path, ports, bad=True)
        doc = yaml.safe_load(path.read_text())
        stream = doc["streams"][0]
        stream["studio"]["host"]["recording_path"] = str(tmp_path / "no-such-folder")
        stream["studio"]["network"]["ingest"] = "ingest.no-such-host.invalid:1935"
        stream["ingest"]["rtmp"][0]["url"] = "rtmp://ingest.no-such-host.invalid/live/KEY123"
        path.write_text(yaml.safe_dump(doc))
        rc, out, err = await run_cli("preflight", "-c", str(path))
        assert rc == 2, out + err
        lines = out.rstrip("\n").splitlines()
        assert max(len(line) for line in lines) <= 100, "\n".join(ln for ln in lines if len(ln) > 100)
        assert lines[-1].startswith("NOT READY (") and lines[-2] == ""
        table, todo = out.split("\nwhat to do:\n")
        failed = [ln for ln in table.splitlines() if ln.startswith("✗")]
        fixes = [ln for ln in todo.splitlines() if ln.startswith(("✗", "⚠"))]
        assert len([ln for ln in table.splitlines() if ln.startswith(("✗", "⚠"))]) == len(fixes) > 5
        assert all(": " in ln for ln in fixes)
        assert "Recording volume: the folder" in todo and "does not exist" in todo
        assert any("Recording volume" in ln and "folder missing" in ln for ln in failed), table
        # the RTT and RTMP checks, each in its measured cell (one may wrap) and its fix; nothing else
        assert out.count("host name not resolved") >= 3 and out.count("resolve") == 4, out
        assert "does not resolve" not in out and "does not answer" not in out
        assert "KEY123" not in out + err
    finally:
        tcp.close()
        ntp.close()
        await runner.cleanup()
