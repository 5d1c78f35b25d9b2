"""Viewer complaints, pure parts (agent/complaints.py): validation, which incident explains a
complaint, and when unexplained complaints cluster into a finding."""

from __future__ import annotations

import pytest

from agent.complaints import (
    Complaint,
    ComplaintError,
    ComplaintSettings,
    ComplaintType,
    clusters,
    explain,
    parse,
)
from agent.localize import Incident
from probes.base import State
from probes.faults import Fault

STREAMS = {"main": ["edge-a", "edge-b"], "backup": []}
T = 1_800_000_000.0


def inc(stage: str, component: str, fault: str, severity: str = "P1", started: float = T - 60,
        id_: str | None = None) -> Incident:
    return Incident(id=id_ or f"main-{stage}-{component}-{fault}", stream="main", stage=stage, component=component,
                    fault=fault, severity=severity, started_at=started, localized_at=started + 3)


def complaint(kind: str, edge: str | None = None, at: float = T, explained_by: str | None = None,
              stream: str = "main") -> Complaint:
    return Complaint(id=f"c-{kind}-{edge}-{at}", at=at, stream=stream, type=ComplaintType(kind), edge=edge,
                     explained_by=explained_by)


def test_parse_validates_every_field_and_names_it():
    c = parse({"stream": "main", "type": "stutter", "edge": "edge-b", "region": " Lyon ", "note": "x" * 900},
              streams=STREAMS, at=T, id_="c-1")
    assert (c.stream, c.type, c.edge, c.region, len(c.note)) == ("main", ComplaintType.STUTTER, "edge-b", "Lyon", 500)
    for data, field in (({"stream": "nope", "type": "stutter"}, "stream:"),
                        ({"stream": "main", "type": "laggy"}, "type:"),
                        ({"stream": "main", "type": "stutter", "edge": "edge-z"}, "edge:"),
                        ({"stream": "main", "type": "stutter", "note": 42}, "note:"),
                        ({"type": "stutter"}, "stream: missing (one of backup, main)"),
                        ({"stream": "main", "type": "other", "extra": 1}, "extra: not a complaint field")):
        with pytest.raises(ComplaintError) as err:
            parse(data, streams=STREAMS, at=T, id_="c-2")
        assert str(err.value).startswith(field), err.value
    assert "edge-a, edge-b" in str(pytest.raises(ComplaintError, parse, {"stream": "main", "type": "other",
                                                                          "edge": "x"}, streams=STREAMS, at=T,
                                                 id_="c").value)


def test_a_note_with_a_tokenised_url_is_stored_redacted():
    c = parse({"stream": "main", "type": "cannot_start",
               "note": "viewer pasted https://cdn.example/live/main.m3u8?token=SECRETtok123 and it fails"},
              streams=STREAMS, at=T, id_="c-3")
    assert "SECRETtok123" not in c.note and "cdn.example/live/main.m3u8" in c.note


def test_the_incident_that_explains_a_complaint():
    stale_b = inc("cdn", "edge-b", "stale_playlist")
    origin_down = inc("origin", "origin", "unreachable", started=T - 30)
    chronic = inc("transcode", "180p", "bitrate_over_declared", "P3", started=T - 3600)
    desync = inc("studio", "source", "av_desync", "P2")
    # a stale edge-b explains stutter on edge-b, not on edge-a, and an unknown edge may be edge-b
    assert explain(complaint("stutter", "edge-b"), [stale_b]) is stale_b
    assert explain(complaint("stutter", "edge-a"), [stale_b]) is None
    assert explain(complaint("stutter"), [stale_b]) is stale_b
    # the origin reaches every edge; a CDN-wide incident too
    assert explain(complaint("cannot_start", "edge-a"), [stale_b, origin_down]) is origin_down
    cdn = inc("cdn", "cdn", "stale_playlist")
    assert explain(complaint("stutter", "edge-a"), [cdn]) is cdn
    # the type must fit the fault: a chronic bitrate overshoot (P3) explains no stutter, no "other"
    assert explain(complaint("stutter", "edge-a"), [chronic]) is None
    assert explain(complaint("other", "edge-a"), [chronic]) is None
    assert explain(complaint("poor_quality", "edge-a"), [chronic]) is chronic
    assert explain(complaint("av_sync", "edge-a"), [stale_b, desync]) is desync
    assert explain(complaint("no_audio"), [desync, stale_b, origin_down]) is None
    # another stream's incident explains nothing here
    assert explain(complaint("stutter", stream="backup"), [origin_down]) is None
    # the most severe first, then the newest
    late = inc("origin", "origin", "http_error", "P1", started=T - 5, id_="late")
    slow = inc("cdn", "edge-a", "slow_segment", "P2")
    assert explain(complaint("stutter", "edge-a"), [slow, origin_down, late]) is late


def test_unexplained_complaints_of_one_type_on_one_edge_cluster_into_a_finding():
    s = ComplaintSettings(cluster_count=3, cluster_window_s=900)
    three = [complaint("stutter", "edge-b", at=T - 60 * i) for i in range(3)]
    found = clusters(three, s, T)
    (ev,) = found["main"]
    assert (ev.stage, ev.component, ev.state, ev.fault) == ("playback", "edge-b", State.DEGRADED,
                                                             Fault.VIEWER_COMPLAINTS)
    assert "3 unexplained 'stutter / buffering' complaints" in ev.detail and ev.figures["complaints"] == 3
    # two are not a trend; explained ones and ones without an edge do not count; old ones age out
    assert clusters(three[:2], s, T) == {}
    assert clusters([*three[:2], complaint("stutter", "edge-b", explained_by="main-x")], s, T) == {}
    assert clusters([*three[:2], complaint("stutter")], s, T) == {}
    assert clusters(three, s, T + 900 - 120 + 1) == {}  # the oldest left the 15-min window
    # one type per cluster: three different complaints are three viewers with different troubles
    mixed = [complaint(k, "edge-a") for k in ("stutter", "no_audio", "high_delay")]
    assert clusters(mixed, s, T) == {}
    # per edge, and a second edge clusters on its own
    both = clusters([*three, *[complaint("av_sync", "edge-a", at=T - i) for i in range(4)]], s, T)
    assert sorted(e.component for e in both["main"]) == ["edge-a", "edge-b"]
