"""`signalpath preflight` on a config with streams only (no studio, no ingest section): it
still checks the host it runs on, the clock, and the whole delivery path it can see —
the origin and every edge (answers, advances, segments in time) and the picture —
against the embedded lab, through the real CLI (a subprocess, as the crew runs it).

Healthy: READY. Origin down, an edge down, a hung transcoder, a black source: NOT READY,
each with the failing checks at the right place and the fix of the place that is the
cause (an edge answering 502 because the origin is down gets the origin's fix).

The host checks read a recorded /proc tree (tests/fixtures/host, HostConfig's
``proc_root`` seam): this machine's own CPU load under the test suite is not the point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from waiting import wait_for

from agent.lab import Lab, LabConfig
from probes.core.playlist import MediaPlaylist, parse_body
from tests.test_preflight_lab import run_cli

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

FIX = Path(__file__).parent / "fixtures" / "host"
PATH_CHECKS = ("path.reachable", "path.fresh", "path.segments")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab():
    async with Lab(LabConfig()) as lab:
        yield lab


@pytest_asyncio.fixture(loop_scope="module")
async def clean(lab):
    yield
    await lab.clear_all()


def write_config(tmp_path: Path, lab: Lab, **preflight: Any) -> Path:
    host = {"proc_root": str(FIX / "t0" / "proc"), "proc_root_later": str(FIX / "t1_idle" / "proc"),
            "sys_root": str(FIX / "sys"), "recording_path": str(tmp_path), "disk_min_free_bytes": 1024,
            "cpu_sample_s": 0.05}
    conf = {"streams": [{"name": "main", "origin": lab.origin_url(),
                         "edges": [{"name": e, "url": lab.edge_url(e)} for e in lab.edges]}],
            "preflight": {"host": host, **preflight}}
    path = tmp_path / "preflight.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


async def preflight(path: Path, *args: str) -> tuple[int, dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    rc, out, err = await run_cli("preflight", "-c", str(path), "--json", *args)
    report = json.loads(out)
    assert err.rstrip().splitlines()[-1] == report["verdict"], err
    checks = {(c["check"], c["component"]): c for c in report["checks"]}
    assert len(checks) == len(report["checks"])  # one row per check and place
    return rc, report, checks


async def _after(lab: Lab, seq: int) -> bool:
    return await newest_seq(lab) >= seq


def failing(checks: dict[tuple[str, str], dict[str, Any]]) -> set[tuple[str, str]]:
    return {k for k, c in checks.items() if c["status"] == "fail"}


async def test_healthy_lab_without_a_studio_section_is_ready(lab, tmp_path):
    rc, report, checks = await preflight(write_config(tmp_path, lab))
    assert rc == 0 and report["verdict"] == "READY", report
    for place in ("origin", *lab.edges):
        for check in PATH_CHECKS:
            assert checks[(check, place)]["status"] == "pass", checks[(check, place)]
    assert checks[("path.content", "origin")]["status"] == "pass"
    ratio = checks[("path.segments", "origin")]["value"]
    # measured (a pass needs a downloaded segment), faster than it plays; a loopback download of
    # a small segment can take under a millisecond: 0.000 at the probe's 3 decimals
    assert 0 <= ratio < 1
    # the host it runs on (recorded /proc: the encoder idle) and its clock against the origin's Date
    assert checks[("host.cpu", "host")]["status"] == "pass"
    clock = checks[("host.clock", "host")]
    assert clock["status"] == "pass" and abs(clock["value"]) <= 1.5
    assert {c["stream"] for c in report["checks"] if c["check"].startswith("host.")} == {"(this host)"}
    # the table form: the same verdict as its last line
    rc, out, _ = await run_cli("preflight", "-c", str(write_config(tmp_path, lab)))
    assert rc == 0 and out.rstrip().splitlines()[-1] == "READY"
    assert "Edge edge-b answers" in out and "✗" not in out
    rc, out, err = await run_cli("preflight", "-c", str(write_config(tmp_path, lab)), "--observe", "0")
    assert rc == 2 and not out and "--observe 0: must be between 1 and 300 seconds" in err


async def test_against_a_broadcast_checks_its_streams_and_says_when_it_starts(lab, tmp_path):
    import time

    path = write_config(tmp_path, lab)
    conf = yaml.safe_load(path.read_text())
    conf["streams"].append({"name": "other", "origin": "http://127.0.0.1:1/live/other.m3u8"})  # down, not in it
    conf["broadcasts"] = [{"name": "Evening news", "streams": ["main"], "start": time.time() + 1800,
                           "end": time.time() + 5400}]
    path.write_text(yaml.safe_dump(conf))
    rc, report, checks = await preflight(path, "--broadcast", "Evening news")
    assert rc == 0 and report["verdict"] == "READY", report  # "other" is not checked: not in the broadcast
    timing = checks[("broadcast.timing", "schedule")]
    assert timing["status"] == "pass" and "(in 30 min)" in timing["measured"]
    assert {c["stream"] for c in report["checks"]} == {"(Evening news)", "(this host)", "main"}
    rc, out, err = await run_cli("preflight", "-c", str(path), "--broadcast", "Late news")
    assert rc == 2 and "no such broadcast (broadcasts: 'Evening news')" in err
    # one added through the agent's API lives in its incident database: preflight finds it there
    from agent.incidents import IncidentStore

    conf["incidents"] = {"path": str(tmp_path / "incidents.db")}
    path.write_text(yaml.safe_dump(conf))
    store = IncidentStore(tmp_path / "incidents.db")
    store.put_schedule_entry("broadcast", "Late news", {"name": "Late news", "streams": ["main"],
                                                       "start": time.time() + 60, "end": time.time() + 600})
    store.close()
    rc, report, checks = await preflight(path, "--broadcast", "Late news")
    assert rc == 0 and re.search(r"\(in \d+ s\)", checks[("broadcast.timing", "schedule")]["measured"]), report


async def test_a_whip_ingest_is_test_published_once(lab, tmp_path, clean):
    if getattr(lab, "webrtc", None) is None:
        pytest.fail("the lab runs without its WebRTC endpoint")
    path = write_config(tmp_path, lab)
    conf = yaml.safe_load(path.read_text())
    conf["streams"][0]["ingest"] = {"whip": [{"name": "whip", "url": lab.whip_url(),
                                              "ice_host_addresses": [lab.config.host]}]}
    path.write_text(yaml.safe_dump(conf))
    rc, report, checks = await preflight(path)
    assert rc == 0 and checks[("ingest.whip", "whip")]["status"] == "pass", report
    await lab.inject("webrtc_refuse", "whip")
    rc, report, checks = await preflight(path)
    assert rc == 2 and failing(checks) == {("ingest.whip", "whip")}, report
    refused = checks[("ingest.whip", "whip")]
    assert refused["fault"] == "auth_refused" and "403" in refused["measured"] and refused["fix"]


async def test_origin_down_fails_the_origin_and_gives_the_edges_its_fix(lab, tmp_path, clean):
    await lab.inject("origin_down")
    rc, report, checks = await preflight(write_config(tmp_path, lab))
    assert rc == 2 and report["verdict"] == "NOT READY (3)", report
    assert failing(checks) == {("path.reachable", p) for p in ("origin", *lab.edges)}
    origin = checks[("path.reachable", "origin")]
    assert origin["fault"] == "unreachable" and "refused" in origin["measured"]
    assert origin["fix"].startswith("Restart or fail over the origin server")
    for edge in lab.edges:
        assert checks[("path.reachable", edge)]["fix"].startswith("this follows from origin/origin (unreachable): "
                                                                  "Restart or fail over the origin server")
        assert checks[("path.fresh", edge)]["status"] == "skip"  # not measured is not "fine"


async def test_an_edge_down_fails_that_edge_only(lab, tmp_path, clean):
    await lab.inject("edge_down", "edge-a")
    rc, report, checks = await preflight(write_config(tmp_path, lab))
    assert rc == 2 and report["verdict"] == "NOT READY (1)", report
    assert failing(checks) == {("path.reachable", "edge-a")}
    edge = checks[("path.reachable", "edge-a")]
    assert edge["fault"] == "unreachable" and "edge-a" in edge["fix"] and "healthy edge" in edge["fix"]
    assert all(checks[(c, "edge-b")]["status"] == "pass" for c in PATH_CHECKS)


async def test_a_hung_transcoder_is_stale_everywhere_with_the_transcoders_fix(lab, tmp_path, clean):
    await lab.inject("transcoder_stall")
    rc, report, checks = await preflight(write_config(tmp_path, lab), "--observe", "15")
    assert rc == 2, report
    assert {("path.fresh", p) for p in ("origin", *lab.edges)} <= failing(checks), report
    fresh = checks[("path.fresh", "origin")]
    assert fresh["fault"] == "stale_playlist" and "has not advanced" in fresh["measured"]
    assert fresh["fix"].startswith("this follows from transcode/transcoder")
    assert report["elapsed_s"] < 15  # bounded by 2 x target duration + 2 s after the first answer


async def newest_seq(lab: Lab) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.get(lab.media_url("180p"))).text
    pl = await parse_body(body.encode(), lab.media_url("180p"))
    assert isinstance(pl, MediaPlaylist) and pl.segments
    return pl.last_seq


async def test_a_black_source_fails_the_content_check_with_the_studio_fix(lab, tmp_path, clean):
    await lab.inject("black_video")
    # the crew runs preflight with the camera black for a while: a segment cut after the fault
    # began is listed, whatever the preflight then analyses is black
    at = await newest_seq(lab)
    await wait_for(lambda: _after(lab, at + 1), 15, "a black segment listed")
    rc, report, checks = await preflight(write_config(tmp_path, lab))
    assert rc == 2, report
    assert ("path.content", "origin") in failing(checks)
    content = checks[("path.content", "origin")]
    assert content["fault"] == "black_video" and content["measured"].startswith(("black picture", "180p", "360p"))
    assert "source is black" in content["fix"]
    assert all(checks[(c, p)]["status"] == "pass" for c in PATH_CHECKS for p in ("origin", *lab.edges))
