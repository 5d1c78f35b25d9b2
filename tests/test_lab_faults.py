"""Pure parts of the lab: the fault book (fake clock), config validation, CLI help."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from agent.lab import CATALOG, FaultNotFound, FaultRequestError, LabConfig
from agent.lab.cli import register
from agent.lab.faults import FaultBook
from agent.lab.packager import Packager


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def book(clock: Clock) -> FaultBook:
    return FaultBook(renditions=["360p", "180p"], edges=["edge-a", "edge-b"], clock=clock)


def test_catalog_covers_the_issue_list():
    wanted = {"encoder_stop", "frozen_video", "black_video", "silent_audio", "av_desync", "ingest_drop",
              "ingest_latency", "transcoder_stall", "rendition_stall", "transcoder_slow", "origin_5xx",
              "origin_down", "edge_down", "edge_stale", "edge_404_segments", "edge_slow_first_byte",
              "edge_throttle", "edge_delay", "corrupt_segment", "keyframe_interval"}
    assert wanted <= set(CATALOG)
    assert {s.stage for s in CATALOG.values()} == {"studio", "ingest", "transcode", "origin", "cdn"}


def test_expiry_is_exact_and_lazy():
    clock = Clock()
    b = book(clock)
    rec = b.inject("edge_stale", "edge-b", for_s=45)
    assert rec.started_at == clock.t and rec.ends_at == clock.t + 45
    clock.t += 44.999
    assert b.active("edge_stale", "edge-b") is rec
    assert b.active("edge_stale", "edge-a") is None
    clock.t += 10
    assert b.active("edge_stale", "edge-b") is None
    assert rec.ended_at == rec.started_at + 45 and rec.end_reason == "expired"
    assert b.snapshot()["history"][0]["ended_at"] == rec.ended_at


def test_clear_fire_and_defaults():
    clock = Clock()
    b = book(clock)
    rec = b.inject("ingest_latency")
    assert rec.target == "ingest" and rec.params == {"ms": 2000} and rec.ends_at is None
    clock.t += 3
    assert b.clear(rec.id).ended_at == clock.t
    with pytest.raises(FaultNotFound):
        b.clear(42)
    shot = b.inject("corrupt_segment", "180p")
    b.fire(shot, sequence=7)
    assert shot.end_reason == "fired" and shot.effect == {"sequence": 7}


@pytest.mark.parametrize("args, needle", [
    (("nope",), "unknown fault"),
    (("edge_down",), "needs a target"),
    (("edge_down", "edge-c"), "unknown target"),
    (("rendition_stall", "edge-a"), "unknown target"),
    (("origin_5xx", None, None, {"status": 200}), "within"),
    (("origin_5xx", None, None, {"status": True}), "must be int"),
    (("av_desync", None, None, {"ms": 0}), "must not be 0"),
    (("black_video", None, 0), "for_s"),
    (("black_video", None, "10"), "for_s"),
    (("black_video", None, None, [1]), "params must be an object"),
])
def test_bad_requests_are_refused_with_a_message(args, needle):
    with pytest.raises(FaultRequestError, match=needle):
        book(Clock()).inject(*args)


def test_conflicts():
    b = book(Clock())
    b.inject("edge_stale", "edge-a")
    b.inject("edge_stale", "edge-b")  # another target is fine
    with pytest.raises(FaultRequestError, match="already active"):
        b.inject("edge_stale", "edge-a")
    b.inject("frozen_video")
    with pytest.raises(FaultRequestError, match="cannot run together"):
        b.inject("black_video")
    b.inject("origin_down")
    with pytest.raises(FaultRequestError, match="cannot run together"):
        b.inject("origin_5xx")


def test_config_is_strict_and_loopback_only():
    assert LabConfig().frames_per_segment == 50
    for bad in ({"host": "0.0.0.0"}, {"host": "192.0.2.1"}, {"edges": ("a", "a")}, {"fps": 1},
                {"bogus": 1}, {"sample_rate": 12345}, {"edge_ports": (1,)}, {"stream": "Bad Name"}):
        with pytest.raises(ValidationError):
            LabConfig(**bad)
    with pytest.raises(ValidationError):
        LabConfig().stream = "x"  # frozen


def test_playlist_window_and_pdt():
    clock = Clock(1_700_000_000.0)
    p = Packager(LabConfig(), wall=clock)
    for i in range(9):
        p.publish("360p", b"\x47" * 188, 2.0, clock.t - 2, discontinuity=(i == 5))
        clock.t += 2
    text = p.media_playlist("360p").decode()
    assert "#EXT-X-MEDIA-SEQUENCE:3" in text
    assert text.count("#EXTINF:2.000,") == 6
    assert text.count("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:") == 6
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert p.segment("360p", 8) is not None and p.segment("360p", 99) is None


def test_cli_help_ends_with_an_example(capsys):
    parser = argparse.ArgumentParser(prog="signalpath")
    register(parser.add_subparsers(dest="command"))
    for argv in (["lab"], ["lab", "run"], ["lab", "fault"], ["lab", "faults"], ["lab", "clear"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv + ["--help"])
        out = capsys.readouterr().out.rstrip().splitlines()
        assert out[-2].strip() == "example:" and out[-1].strip().startswith("signalpath lab")


def test_lab_fault_help_describes_every_fault_and_its_parameters(capsys):
    parser = argparse.ArgumentParser(prog="signalpath")
    register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "fault", "--help"])
    out = capsys.readouterr().out
    for name, spec in CATALOG.items():
        line = next((x for x in out.splitlines() if x.strip().startswith(name + " ")), None)
        assert line is not None and spec.doc in line and spec.stage in line, (name, out)
        for key in spec.params:
            assert f"{key}=" in out, (name, key)
    assert "gop_s=6 [3-30]" in out  # default and range of the keyframe_interval fault's parameter
