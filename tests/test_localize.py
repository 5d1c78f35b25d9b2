"""The localizer: table-driven scenarios for every distinction, then hysteresis with a fake clock."""

from __future__ import annotations

import pytest

from agent.diagnosis import diagnose
from agent.localize import (
    FaultOverride,
    Incident,
    Localizer,
    LocalizerSettings,
)
from agent.runbooks import Runbooks
from probes.base import Evidence, State
from probes.faults import CATALOG, Fault

OK, DEG, DOWN = State.OK, State.DEGRADED, State.DOWN
RENDITIONS = ("360p", "720p", "1080p")
EDGES = ("edge-a", "edge-b", "edge-c")


def ev(stage, component, state=OK, fault=None, rendition=None, detail="", http_status=None):
    return Evidence(stage=stage, component=component, state=state, fault=fault, detail=detail, rendition=rendition,
                    http_status=http_status)


def healthy() -> list[Evidence]:
    out = [
        ev("studio", "encoder-host"),
        ev("ingest", "rtmp"),
    ]
    out += [ev("origin", "origin", rendition=r) for r in RENDITIONS]
    for edge in EDGES:
        out += [ev("cdn", edge, rendition=r) for r in RENDITIONS]
        out.append(ev("playback", edge))
    return out


def with_faults(*bad: Evidence, base=None) -> list[Evidence]:
    """The healthy picture with some evidence replaced (same stage/component/rendition)."""
    base = healthy() if base is None else base
    keys = {(b.stage, b.component, b.rendition) for b in bad}
    return [e for e in base if (e.stage, e.component, e.rendition) not in keys] + list(bad)


def every_edge(state, fault, renditions=RENDITIONS):
    return [ev("cdn", e, state, fault, r) for e in EDGES for r in renditions]


def every_rendition(stage, component, state, fault):
    return [ev(stage, component, state, fault, r) for r in RENDITIONS]


SCENARIOS = [
    # (name, evidence, expected [(stage, component, fault, severity)])
    ("healthy", healthy(), []),
    (
        "one edge stale in one rendition",
        with_faults(ev("cdn", "edge-b", DEG, "stale_playlist", "360p", "media sequence 1842 unchanged for 12 s")),
        [("cdn", "edge-b", "stale_playlist", "P2")],
    ),
    (
        "one edge refusing connections, its players stall",
        with_faults(*[ev("cdn", "edge-c", DOWN, "unreachable", r) for r in RENDITIONS], ev("playback", "edge-c", DEG, "stalls")),
        [("cdn", "edge-c", "unreachable", "P2")],
    ),
    (
        "every edge stale, origin fresh",
        with_faults(*every_edge(DEG, "stale_playlist")),
        [("cdn", "cdn", "stale_playlist", "P1")],
    ),
    (
        "origin refusing connections: edges 502 and players stall",
        with_faults(
            *every_rendition("origin", "origin", DOWN, "unreachable"),
            *every_edge(DOWN, "http_error"),
            *[ev("playback", e, DEG, "stalls") for e in EDGES],
        ),
        [("origin", "origin", "unreachable", "P1")],
    ),
    (
        "origin answering 5xx",
        with_faults(
            Evidence("origin", "origin", DOWN, "http_error", "HTTP 503", "720p", {"http_status": 503}),
            *every_edge(DEG, "http_error", ["720p"]),
        ),
        [("origin", "origin", "http_error", "P1")],
    ),
    (
        "listed segments 404 in every rendition at the origin while its playlists advance (listed before "
        "written), the edges pass the 404 on, players stall -> the origin, not a transcoder that stopped",
        with_faults(
            *every_rendition("origin", "origin", DEG, "segment_missing"),
            *every_edge(DEG, "segment_missing"),
            *[ev("playback", e, DEG, "stalls") for e in EDGES],
        ),
        [("origin", "origin", "segment_missing", "P2")],
    ),
    (
        "origin playlist stale everywhere, no upstream evidence -> transcoder",
        with_faults(*every_rendition("origin", "origin", DOWN, "stale_playlist"), *every_edge(DOWN, "stale_playlist")),
        [("transcode", "transcoder", "stale_playlist", "P1")],
    ),
    (
        "origin stale and ingest says no input -> ingest",
        with_faults(
            ev("ingest", "rtmp", DOWN, "no_input", detail="no publisher on live/main"),
            *every_rendition("origin", "origin", DEG, "stale_playlist"),
            *every_edge(DEG, "stale_playlist"),
        ),
        [("ingest", "rtmp", "no_input", "P1")],
    ),
    (
        "origin playlists gone (404) and ingest says no input -> ingest, not origin",
        with_faults(
            ev("ingest", "rtmp", DOWN, "no_input"),
            *[Evidence("origin", "origin", DEG, "http_error", "HTTP 404", r, http_status=404) for r in RENDITIONS],
        ),
        [("ingest", "rtmp", "no_input", "P1")],
    ),
    (
        "origin stale, ingest no input, encoder host down -> studio",
        with_faults(
            ev("studio", "encoder-host", DOWN, "host_overload", detail="CPU 100 % for 30 s"),
            ev("ingest", "rtmp", DOWN, "no_input"),
            *every_rendition("origin", "origin", DOWN, "stale_playlist"),
        ),
        [("studio", "encoder-host", "host_overload", "P1")],
    ),
    (
        "one rendition stale at origin, siblings fresh -> transcode/rendition",
        with_faults(
            ev("origin", "origin", DEG, "stale_playlist", "720p"),
            *[ev("cdn", e, DEG, "stale_playlist", "720p") for e in EDGES],
            ev("playback", "edge-a", DEG, "stalls", "720p"),
        ),
        [("transcode", "720p", "stale_playlist", "P2")],
    ),
    (
        "frozen at every rendition -> studio/source",
        with_faults(*every_rendition("origin", "origin", DEG, "frozen_video")),
        [("studio", "source", "frozen_video", "P1")],
    ),
    (
        "black at every rendition -> studio/source",
        with_faults(*every_rendition("origin", "origin", DEG, "black_video")),
        [("studio", "source", "black_video", "P1")],
    ),
    (
        "silent at every rendition -> studio/source",
        with_faults(*every_rendition("origin", "origin", DEG, "silent_audio")),
        [("studio", "source", "silent_audio", "P2")],
    ),
    (
        "frozen in one rendition only -> transcode/rendition",
        with_faults(ev("origin", "origin", DEG, "frozen_video", "1080p")),
        [("transcode", "1080p", "frozen_video", "P2")],
    ),
    (
        "host at risk and origin stale everywhere -> studio host",
        with_faults(
            ev("studio", "encoder-host", DEG, "host_overload"),
            *every_rendition("origin", "origin", DOWN, "stale_playlist"),
        ),
        [("studio", "encoder-host", "host_overload", "P1")],
    ),
    (
        "host at risk and one rendition stale -> two causes",
        with_faults(
            ev("studio", "encoder-host", DEG, "host_overload"),
            ev("origin", "origin", DEG, "stale_playlist", "720p"),
        ),
        [("studio", "encoder-host", "host_overload", "P3"), ("transcode", "720p", "stale_playlist", "P2")],
    ),
    (
        "ingest without input explains even a partial origin symptom",
        with_faults(ev("ingest", "rtmp", DOWN, "no_input"), ev("origin", "origin", DEG, "stale_playlist", "720p")),
        [("ingest", "rtmp", "no_input", "P1")],
    ),
    (
        "two independent causes: a P3 device and an edge",
        with_faults(
            ev("studio", "cam-2", DEG, "device_missing", detail="/dev/video2 gone"),
            ev("cdn", "edge-a", DEG, "stale_playlist", "360p"),
        ),
        [("studio", "cam-2", "device_missing", "P3"), ("cdn", "edge-a", "stale_playlist", "P2")],
    ),
    (
        "players stall on a healthy path -> playback",
        with_faults(ev("playback", "edge-b", DEG, "stalls", detail="3 stalls per minute")),
        [("playback", "edge-b", "stalls", "P2")],
    ),
    (
        "a failed check without a named fault is still localized",
        with_faults(ev("studio", "encoder-host", DEG, None)),
        [("studio", "encoder-host", "check_failed", "P3")],
    ),
    (
        "unknown evidence is no evidence",
        with_faults(*[ev("cdn", "edge-a", State.UNKNOWN, None, r) for r in RENDITIONS]),
        [],
    ),
]


# The HLS probe as written: one healthy evidence per endpoint (no rendition), a stale
# rendition DEGRADED while its siblings advance and DOWN when every rendition is stale,
# a failed rendition fetch DOWN with that rendition.
def hls_healthy() -> list[Evidence]:
    out = [ev("ingest", "rtmp"), ev("origin", "origin", detail="serving")]
    out += [ev("cdn", e, detail="serving") for e in EDGES]
    return out


def hls(*bad: Evidence) -> list[Evidence]:
    touched = {(b.stage, b.component) for b in bad}
    return [e for e in hls_healthy() if (e.stage, e.component) not in touched] + list(bad)


HLS_SCENARIOS = [
    ("hls healthy", hls(), None, []),
    (
        "decode errors in the only analysed rendition -> that rendition's transcode, not the camera",
        hls(ev("origin", "origin", DEG, "decode_errors", "180p", "180p segment 42: 3 decode errors")),
        ["180p", "360p"],
        [("transcode", "180p", "decode_errors", "P2")],
    ),
    (
        "ingest latency high while players stall -> one ingest incident, the stalls its symptoms",
        hls(ev("ingest", "rtmp", DEG, "latency_high", None, "ingest latency 2.1 s, baseline 0.1 s"),
            ev("playback", "edge-a", DEG, "stalls", "360p", "2 stalls in the last 20 s")),
        None,
        [("ingest", "rtmp", "latency_high", "P2")],  # viewers stall: P2
    ),
    (
        "every edge bad with different faults -> one incident per edge, not the CDN as a whole",
        hls(ev("cdn", "edge-a", DEG, "segment_missing", "360p", "360p segment 108 answered HTTP 404",
           http_status=404),
            ev("cdn", "edge-b", DOWN, "stale_playlist", "360p", "360p playlist has not advanced for 5.0 s"),
            ev("cdn", "edge-c", DEG, "slow_segment", "360p", "360p segment 108 took 3.1 s for 2.0 s")),
        None,
        [("cdn", "edge-a", "segment_missing", "P2"), ("cdn", "edge-b", "stale_playlist", "P2"),
         ("cdn", "edge-c", "slow_segment", "P2")],
    ),
    (
        "hls one rendition stale (DEGRADED) -> transcode/rendition",
        hls(ev("origin", "origin", DEG, "stale_playlist", "720p", "720p playlist has not advanced for 7.0 s")),
        None,
        [("transcode", "720p", "stale_playlist", "P2")],
    ),
    (
        "hls two of three stale (DEGRADED) -> two rendition incidents",
        hls(ev("origin", "origin", DEG, "stale_playlist", "720p"), ev("origin", "origin", DEG, "stale_playlist", "360p")),
        None,
        [("transcode", "720p", "stale_playlist", "P2"), ("transcode", "360p", "stale_playlist", "P2")],
    ),
    (
        "hls every rendition stale (DOWN) -> transcoder",
        hls(*every_rendition("origin", "origin", DOWN, "stale_playlist"), *every_edge(DOWN, "stale_playlist")),
        None,
        [("transcode", "transcoder", "stale_playlist", "P1")],
    ),
    (
        "hls one rendition playlist 404 at origin -> transcode/rendition",
        hls(ev("origin", "origin", DOWN, "http_error", "1080p", "1080p playlist: HTTP 404", http_status=404)),
        None,
        [("transcode", "1080p", "http_error", "P2")],
    ),
    (
        "hls every rendition playlist 404, ingest without input -> ingest",
        hls(ev("ingest", "rtmp", DOWN, "no_input"),
            *[ev("origin", "origin", DOWN, "http_error", r, f"{r} playlist: HTTP 404", http_status=404)
              for r in RENDITIONS]),
        None,
        [("ingest", "rtmp", "no_input", "P1")],
    ),
    (
        "hls origin master refused -> origin; edges 502",
        hls(ev("origin", "origin", DOWN, "unreachable", None, "playlist connection refused"),
            *[ev("cdn", e, DOWN, "http_error", None, "playlist HTTP 502") for e in EDGES]),
        None,
        [("origin", "origin", "unreachable", "P1")],
    ),
    (
        "hls origin 503 -> origin",
        hls(ev("origin", "origin", DOWN, "http_error", None, "playlist HTTP 503")),
        None,
        [("origin", "origin", "http_error", "P1")],
    ),
    (
        "ladder given: one of two stale -> rendition",
        hls(ev("origin", "origin", DOWN, "stale_playlist", "720p")),
        ["360p", "720p"],
        [("transcode", "720p", "stale_playlist", "P2")],
    ),
    (
        "ladder given: both stale -> transcoder",
        hls(ev("origin", "origin", DEG, "stale_playlist", "720p"), ev("origin", "origin", DEG, "stale_playlist", "360p")),
        ["360p", "720p"],
        [("transcode", "transcoder", "stale_playlist", "P1")],
    ),
    (
        "hls one edge refusing",
        hls(ev("cdn", "edge-b", DOWN, "unreachable", None, "playlist connection refused")),
        None,
        [("cdn", "edge-b", "unreachable", "P2")],
    ),
    (
        "hls every edge stale",
        hls(*[ev("cdn", e, DOWN, "stale_playlist", r) for e in EDGES for r in RENDITIONS]),
        None,
        [("cdn", "cdn", "stale_playlist", "P1")],
    ),
]


@pytest.mark.parametrize("name,evidence,ladder,expected", HLS_SCENARIOS, ids=[s[0] for s in HLS_SCENARIOS])
def test_hls_probe_shaped_scenarios(name, evidence, ladder, expected):
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    events = loc.observe("main", evidence, ladder=ladder)
    got = [(e.incident.stage, e.incident.component, e.incident.fault, e.incident.severity) for e in events]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("name,evidence,expected", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_diagnose_scenarios(name, evidence, expected):
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    events = loc.observe("main", evidence)
    got = [(e.incident.stage, e.incident.component, e.incident.fault, e.incident.severity) for e in events]
    assert sorted(got) == sorted(expected)
    assert all(e.kind == "opened" for e in events)
    for e in events:  # every bad evidence line is on exactly one incident
        assert e.incident.evidence and e.incident.summary and e.incident.runbook
    lines = [line for e in events for line in e.incident.evidence]
    assert len(lines) == len(set(lines))
    bad = [x for x in evidence if x.state in (DEG, DOWN)]
    assert len(lines) == len({(x.stage, x.component, x.rendition, x.fault) for x in bad})


def test_summary_plain_words_edge():
    evidence = with_faults(ev("cdn", "edge-b", DEG, "stale_playlist", "360p"))
    (finding,) = diagnose(evidence)
    loc = Localizer(LocalizerSettings(open_cycles=1), clock=lambda: 5.0)
    (event,) = loc.observe("main", evidence)
    s = event.incident.summary
    assert s.startswith("edge-b stopped updating the 360p playlist")
    assert "origin" in s and "edge-a" in s and "edge-c" in s and "fine" in s
    assert "CDN ticket" in event.incident.runbook


def test_summary_names_healthy_siblings_of_rendition():
    evidence = with_faults(ev("origin", "origin", DEG, "stale_playlist", "720p"))
    (event,) = Localizer(LocalizerSettings(open_cycles=1), clock=lambda: 5.0).observe("main", evidence)
    assert event.incident.summary == (
        "The 720p rendition stopped updating its playlist at the origin; 360p and 1080p are fine: "
        "the 720p transcode is at fault."
    )


def test_secrets_scrubbed_from_evidence_and_summary():
    evidence = with_faults(
        ev("cdn", "edge-a", DEG, "http_error", "360p", "GET https://user:pw@cdn.example/live/x.m3u8?token=SECRET1 -> 403")
    )
    (event,) = Localizer(LocalizerSettings(open_cycles=1), clock=lambda: 5.0).observe("main", evidence)
    text = " ".join(event.incident.evidence) + event.incident.summary
    assert "SECRET1" not in text and "pw@" not in text
    assert "cdn.example/live/x.m3u8?token=***" in text  # the one redaction (probes/core/redact.py)


# ---------------------------------------------------------------------------
# hysteresis with a fake clock


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def tick(self, dt: float = 2.0) -> float:
        self.t += dt
        return self.t


EDGE_B_STALE = with_faults(ev("cdn", "edge-b", DEG, "stale_playlist", "360p"))


def _ids():
    n = [0]

    def new():
        n[0] += 1
        return f"i{n[0]}"

    return new


def test_opens_after_two_cycles_and_measures_from_first_bad_evidence():
    clock = FakeClock()
    loc = Localizer(clock=clock, new_id=_ids())
    t0 = clock()
    assert loc.observe("main", EDGE_B_STALE) == []  # one cycle is not enough
    clock.tick(2)
    (opened,) = loc.observe("main", EDGE_B_STALE)
    assert opened.kind == "opened"
    inc = opened.incident
    assert (inc.stage, inc.component) == ("cdn", "edge-b")
    assert inc.started_at == t0 and inc.localized_at == t0 + 2
    assert inc.time_to_localize_s == pytest.approx(2.0)
    assert loc.open_incidents()[0].id == inc.id
    # stays open without new events while the fault persists
    for _ in range(5):
        clock.tick(2)
        assert loc.observe("main", EDGE_B_STALE) == []


def test_single_cycle_blip_opens_nothing():
    clock = FakeClock()
    loc = Localizer(clock=clock)
    for i in range(10):
        evidence = EDGE_B_STALE if i == 4 else healthy()
        assert loc.observe("main", evidence) == []
        clock.tick(2)
    assert loc.open_incidents() == []


def test_resolves_after_configured_quiet_time():
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=10), clock=clock)
    loc.observe("main", EDGE_B_STALE)
    clock.tick(2)
    (opened,) = loc.observe("main", EDGE_B_STALE)
    clock.tick(2)
    healed_at = clock()
    assert loc.observe("main", healthy()) == []  # gone 0 s
    clock.tick(8)
    assert loc.observe("main", healthy()) == []  # gone 8 s < 10 s
    clock.tick(2)
    (resolved,) = loc.observe("main", healthy())  # gone 10 s
    assert resolved.kind == "resolved" and resolved.incident.id == opened.incident.id
    assert resolved.incident.resolved_at == healed_at
    assert loc.open_incidents() == []


def test_an_at_risk_finding_stays_one_incident_through_a_dip_and_resolves_after_its_own_quiet_time():
    """A chronic P3 (a rendition over its declared bitrate) measured per segment dips below
    its threshold for a few segments (silent audio, an encoder's first segments after a
    restart): it stays one incident for ``at_risk_resolve_after_s`` (the chronic bench saw it
    close during such a dip and open again, "chronic again", after the fault). A P2 at the
    same time resolves after ``resolve_after_s``."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=10, at_risk_resolve_after_s=60), clock=clock)
    over = ev("transcode", "180p", DEG, "bitrate_over_declared", "180p")
    both = with_faults(over, ev("cdn", "edge-b", DEG, "stale_playlist", "360p"))
    for _ in range(3):
        loc.observe("main", both)
        clock.tick(2)
    assert sorted((i.fault, i.severity) for i in loc.open_incidents()) == [
        ("bitrate_over_declared", "P3"), ("stale_playlist", "P2")]
    events = []
    for _ in range(15):  # 30 s without either: the P2 resolves at 10 s, the P3 stays
        events += loc.observe("main", healthy())
        clock.tick(2)
    assert [(e.kind, e.incident.fault) for e in events] == [("resolved", "stale_playlist")]
    for _ in range(3):  # the overshoot is back: the same incident, nothing opens
        events += loc.observe("main", with_faults(over))
        clock.tick(2)
    assert len(events) == 1 and [i.fault for i in loc.open_incidents()] == ["bitrate_over_declared"]
    for _ in range(31):  # gone for 62 s now: resolved
        events += loc.observe("main", healthy())
        clock.tick(2)
    assert [(e.kind, e.incident.fault) for e in events] == [("resolved", "stale_playlist"),
                                                           ("resolved", "bitrate_over_declared")]


def test_flapping_edge_is_one_incident():
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=10), clock=clock)
    events = []
    # bad 3 cycles, good 3 cycles (6 s < 10 s), ten times over
    for _ in range(10):
        for _ in range(3):
            events += loc.observe("main", EDGE_B_STALE)
            clock.tick(2)
        for _ in range(3):
            events += loc.observe("main", healthy())
            clock.tick(2)
    assert [e.kind for e in events] == ["opened"]
    for _ in range(6):
        events += loc.observe("main", healthy())
        clock.tick(2)
    assert [e.kind for e in events] == ["opened", "resolved"]


def test_escalation_becomes_one_upstream_incident_with_onset_of_first_symptom():
    """edge-a goes stale first, then every edge: one cdn/cdn incident, started at the first sign,
    opened at the second cycle (the condition widened; its hysteresis does not start over)."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    t0 = clock()
    loc.observe("main", with_faults(ev("cdn", "edge-a", DEG, "stale_playlist", "360p")))
    clock.tick(2)
    all_bad = with_faults(*every_edge(DEG, "stale_playlist"))
    (opened,) = loc.observe("main", all_bad)
    assert (opened.incident.stage, opened.incident.component) == ("cdn", "cdn")
    assert opened.incident.started_at == t0


def test_severity_escalation_is_an_update_of_the_same_incident():
    """Playback via one edge of three is P2; via every edge the same fault escalates to P1."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(playback_open_cycles=2), clock=clock)
    one = with_faults(ev("cdn", "edge-a", DEG, "slow_segment", "360p"))
    loc.observe("main", one)
    clock.tick(2)
    (opened,) = loc.observe("main", one)
    assert opened.incident.severity == "P2"
    clock.tick(2)
    # a second slow segment at the same edge: same cause, same incident, no event
    assert loc.observe("main", with_faults(ev("cdn", "edge-a", DEG, "slow_segment", "360p"),
                                           ev("cdn", "edge-a", DEG, "slow_segment", "720p"))) == []
    assert [i.id for i in loc.open_incidents()] == [opened.incident.id]


def test_a_different_fault_at_the_same_place_is_a_new_incident_never_a_rewrite():
    clock = FakeClock()
    loc = Localizer(clock=clock)
    degraded = with_faults(ev("cdn", "edge-a", DEG, "slow_segment", "360p"))
    loc.observe("main", degraded)
    clock.tick(2)
    (opened,) = loc.observe("main", degraded)
    assert opened.incident.fault == "slow_segment"
    # the edge stops answering: its own incident; the slow-segment one keeps its fault and resolves
    down = with_faults(*[ev("cdn", "edge-a", DOWN, "unreachable", r) for r in RENDITIONS])
    events = []
    for _ in range(8):
        clock.tick(2)
        events += loc.observe("main", down)
    kinds = [(e.kind, e.incident.fault) for e in events]
    assert ("opened", "unreachable") in kinds and ("resolved", "slow_segment") in kinds
    assert all(e.incident.fault == "slow_segment" for e in events if e.incident.id == opened.incident.id)
    (still,) = loc.open_incidents()
    assert still.fault == "unreachable" and "refuses" in still.runbook


def test_streams_are_independent():
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(open_cycles=1), clock=clock)
    assert len(loc.observe("a", EDGE_B_STALE)) == 1
    assert loc.observe("b", healthy()) == []
    assert [i.stream for i in loc.open_incidents()] == ["a"]
    assert loc.open_incidents("b") == []


def test_restore_adopts_open_incident_without_duplicate():
    clock = FakeClock()
    loc = Localizer(clock=clock)
    loc.observe("main", EDGE_B_STALE)
    clock.tick(2)
    (opened,) = loc.observe("main", EDGE_B_STALE)
    # a restart: a fresh localizer adopts the stored incident
    loc2 = Localizer(clock=clock)
    loc2.restore([opened.incident])
    for _ in range(3):
        clock.tick(2)
        assert loc2.observe("main", EDGE_B_STALE) == []
    assert [i.id for i in loc2.open_incidents()] == [opened.incident.id]
    # and resolves it when the cause is gone
    events = []
    for _ in range(8):
        clock.tick(2)
        events += loc2.observe("main", healthy())
    assert [(e.kind, e.incident.id) for e in events] == [("resolved", opened.incident.id)]


def test_restore_resolves_stale_incident_when_cause_gone():
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    old = Incident("main-x", "main", "origin", "origin", "unreachable", "P1", clock() - 600, clock() - 590)
    loc.restore([old])
    events = []
    for _ in range(4):
        clock.tick(2)
        events += loc.observe("main", healthy())
    assert [(e.kind, e.incident.id) for e in events] == [("resolved", "main-x")]


def test_fault_table_and_runbooks_are_configurable():
    settings = LocalizerSettings(
        open_cycles=1,
        faults={"slow_segment": FaultOverride(severity="P3", phrase="is slow today{of}")},
        runbooks={"cdn/slow_segment": "Call the CDN about {component} ({stream})."},
    )
    evidence = with_faults(ev("cdn", "edge-a", DEG, "slow_segment", "360p"))
    (event,) = Localizer(settings, clock=lambda: 1.0).observe("main", evidence)
    assert event.incident.severity == "P3"
    assert "is slow today (360p)" in event.incident.summary
    assert event.incident.runbook == "Call the CDN about edge-a (main)."


def test_config_cannot_invent_a_fault():
    with pytest.raises(ValueError, match="unknown fault"):
        LocalizerSettings(faults={"tls_expiring": FaultOverride(severity="P3")})


def test_runbook_lookup_order():
    rb = Runbooks({"stale_playlist": "X {component} {nope}"})
    assert rb.hint(stream="s", stage="cdn", component="edge-a", fault="stale_playlist") == "X edge-a {nope}"
    assert rb.hint(stream="s", stage="cdn", component="edge-a", fault="unreachable") == CATALOG[
        "unreachable"
    ].stage_runbooks["cdn"].format(component="edge-a")
    assert "origin" in Runbooks().hint(stream="s", stage="origin", component="origin", fault="weird")
    assert "stream s" in Runbooks().hint(stream="s", stage="nowhere", component="c", fault="weird")


def test_to_api_shape():
    inc = Incident("main-1", "main", "cdn", "edge-b", "stale_playlist", "P2", 0.0, 2.5, None, "s", ["e"], "r")
    api = inc.to_api()
    assert set(api) == {
        "id", "stream", "stage", "component", "fault", "severity", "started_at",
        "localized_at", "resolved_at", "summary", "evidence", "runbook", "related", "maintenance",
    }
    assert api["started_at"] == "1970-01-01T00:00:00.000Z" and api["localized_at"] == "1970-01-01T00:00:02.500Z"
    assert api["resolved_at"] is None and api["maintenance"] is None


def test_player_stalls_wait_for_upstream_evidence_before_opening():
    """Stalls alone open a playback incident after playback_open_cycles; when the upstream
    cause shows up meanwhile (an ingest delay measured a few seconds later), only it opens."""
    t = [1000.0]
    stalls = ev("playback", "edge-a", DEG, "stalls", "360p", "2 stalls in the last 20 s")
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0])
    opened = []
    for i in range(10):
        t[0] += 1
        evidence = hls(stalls) if i < 3 else hls(
            stalls, ev("ingest", "rtmp", DEG, "latency_high", None, "ingest latency 2.1 s, baseline 0.1 s"))
        opened += [(e.incident.stage, e.incident.component) for e in loc.observe("main", evidence)
                   if e.kind == "opened"]
    assert opened == [("ingest", "rtmp")]

    lone = Localizer(LocalizerSettings(), clock=lambda: t[0])
    counts = []
    for _ in range(7):
        t[0] += 1
        counts.append(len([e for e in lone.observe("main", hls(stalls)) if e.kind == "opened"]))
    assert counts == [0, 0, 0, 0, 0, 1, 0]


# ---------------------------------------------------------------------------
# causal folding and identity ("Trust the incidents")


def test_chronic_p3_never_absorbs_unrelated_faults_and_keeps_its_fault():
    """A chronic bitrate overshoot at transcode/180p, then edge-a goes stale, then the origin
    answers 503: each fault opens its own incident at its own place; the P3 keeps its fault."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    chronic = ev("origin", "origin", DEG, "bitrate_over_declared", "360p", "segments at 570 kbit/s, declared 364")
    timeline = [with_faults(chronic)] * 3 + [with_faults(chronic, ev("cdn", "edge-a", DEG, "stale_playlist", "360p"),
                                                         ev("playback", "edge-a", DEG, "stalls", "360p"))] * 8
    timeline += [with_faults(*[ev("origin", "origin", DOWN, "http_error", r, "HTTP 503", http_status=503)
                               for r in RENDITIONS], *every_edge(DEG, "http_error"),
                             ev("playback", "edge-a", DOWN, "playback_failed"))] * 8
    opened, faults_by_id = [], {}
    for cycle in timeline:
        clock.tick(1)
        for e in loc.observe("main", cycle):
            faults_by_id.setdefault(e.incident.id, set()).add((e.incident.stage, e.incident.component, e.incident.fault))
            if e.kind == "opened":
                opened.append((e.incident.stage, e.incident.component, e.incident.fault, e.incident.severity))
    assert opened == [("transcode", "360p", "bitrate_over_declared", "P3"),
                      ("cdn", "edge-a", "stale_playlist", "P2"),
                      ("origin", "origin", "http_error", "P1")]
    assert all(len(v) == 1 for v in faults_by_id.values()), "an incident changed its cause"


def test_a_chronic_finding_not_measured_during_an_outage_stays_open_and_is_not_reopened():
    """The origin down for 30 s: the content probe has no media, so the chronic P3 at
    transcode/360p is not measured (evidence UNKNOWN naming its fault), neither present nor
    healed. It stays the one open incident (no resolve, no second P3 after the outage), and
    resolves once it is measured gone for its resolve time (at_risk_resolve_after_s)."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(at_risk_resolve_after_s=10), clock=clock)
    chronic = ev("origin", "origin", DEG, "bitrate_over_declared", "360p", "segments at 570 kbit/s")
    unmeasured = ev("origin", "origin", State.UNKNOWN, "bitrate_over_declared", "360p", "not measured")
    down = [ev("origin", "origin", DOWN, "unreachable", r) for r in RENDITIONS]
    timeline = [with_faults(chronic)] * 5 + [with_faults(*down, unmeasured)] * 30 + [with_faults(chronic)] * 5
    events = []
    for cycle in timeline + [healthy()] * 12:
        clock.tick(1)
        events += loc.observe("main", cycle)
    kinds = [(e.kind, e.incident.component, e.incident.fault) for e in events]
    assert kinds == [("opened", "360p", "bitrate_over_declared"), ("opened", "origin", "unreachable"),
                     ("resolved", "origin", "unreachable"), ("resolved", "360p", "bitrate_over_declared")]
    p3 = events[-1].incident
    assert p3.resolved_at == clock() - 12 + 1  # gone from the first healthy cycle, not from the outage


def test_a_jump_in_timestamps_as_a_desync_begins_and_ends_is_the_desync_incident():
    """The encoder shifts its audio by 300 ms: the audio timestamps jump as the shift begins
    and again as it ends. One av_desync incident at the source; no timestamp_gap beside it,
    not even when the jump of its end is seen after the desync cleared."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    gap = every_rendition("origin", "origin", DEG, "timestamp_gap")
    desync = every_rendition("origin", "origin", DEG, "av_desync")
    timeline = [with_faults(*gap)] + [with_faults(*desync)] * 10 + [with_faults(*gap)] * 4 + [healthy()] * 12
    events = []
    for cycle in timeline:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage, e.incident.component, e.incident.fault) for e in events] == [
        ("opened", "studio", "source", "av_desync"), ("resolved", "studio", "source", "av_desync")]


@pytest.mark.parametrize("pipeline_delay", [0, 8])
def test_the_artefacts_of_an_encoder_restart_stay_on_the_encoder_incident(pipeline_delay):
    """The encoder stops (every playlist stale behind it) and restarts: its first segments
    show a timestamp jump and a short desync at the source, as soon as it is back or after the
    pipeline's delay (the encoder incident resolving meanwhile). They are the encoder incident's."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    down = with_faults(ev("studio", "encoder", DOWN, "encoder_down"),
                       *every_rendition("origin", "origin", DOWN, "stale_playlist"))
    restart = with_faults(*every_rendition("origin", "origin", DEG, "timestamp_gap"),
                          *[ev("origin", "origin", DEG, "av_desync", "360p")])
    events = []
    for cycle in [down] * 8 + [healthy()] * pipeline_delay + [restart] * 6 + [healthy()] * 12:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.component, e.incident.fault) for e in events] == [
        ("opened", "encoder", "encoder_down"), ("resolved", "encoder", "encoder_down")]


@pytest.mark.parametrize("fault, state", [("frozen_video", DEG), ("stale_playlist", DOWN)])
def test_a_fault_in_every_rendition_leaves_the_chronic_overshoot_of_one_its_own(fault, state):
    """A frozen source (content in every rendition) or a stale origin (every playlist) on top of
    the chronic bitrate overshoot of 360p: the new fault opens its own incident, and the P3 is
    neither absorbed as its symptom (it would resolve during the fault and open again after
    it) nor rewritten."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    chronic = ev("origin", "origin", DEG, "bitrate_over_declared", "360p")
    fault_evs = every_rendition("origin", "origin", state, fault)
    (f,) = [f for f in diagnose(with_faults(*fault_evs, chronic)) if f.component == "360p"]
    assert f.fault == "bitrate_over_declared"
    events = []
    for cycle in [with_faults(chronic)] * 5 + [with_faults(*fault_evs, chronic)] * 30 + [with_faults(chronic)] * 15:
        clock.tick(1)
        events += loc.observe("main", cycle)
    kinds = [(e.kind, e.incident.component, e.incident.fault) for e in events]
    assert kinds[0] == ("opened", "360p", "bitrate_over_declared")
    assert [k for k in kinds if k[1] == "360p"] == [("opened", "360p", "bitrate_over_declared")]
    assert [k[0] for k in kinds if k[1] != "360p"] == ["opened", "resolved"]


def test_two_content_faults_at_one_rendition_are_two_causes_unless_one_makes_the_other():
    """360p carries the chronic bitrate overshoot and then a corrupt segment: two incidents at
    transcode/360p, the P3 untouched (never resolved and reopened under the new one). A black
    picture (also a still one) is one cause."""
    chronic = ev("origin", "origin", DEG, "bitrate_over_declared", "360p")
    corrupt = ev("origin", "origin", DEG, "decode_errors", "360p")
    found = {(f.component, f.fault) for f in diagnose(with_faults(chronic, corrupt))}
    assert found == {("360p", "bitrate_over_declared"), ("360p", "decode_errors")}
    black = [ev("origin", "origin", DEG, x, r) for r in RENDITIONS for x in ("black_video", "frozen_video")]
    assert [(f.stage, f.component, f.fault) for f in diagnose(with_faults(*black))] == [
        ("studio", "source", "black_video")]
    clock = FakeClock()
    loc = Localizer(clock=clock)
    events = []
    for cycle in [with_faults(chronic)] * 5 + [with_faults(chronic, corrupt)] * 8 + [with_faults(chronic)] * 15:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.fault) for e in events] == [
        ("opened", "bitrate_over_declared"), ("opened", "decode_errors"), ("resolved", "decode_errors")]


def test_a_long_gop_measured_in_one_rendition_names_the_transcoders_long_segments():
    """Key frames 6 s apart in the analysed rendition (360p) and segments over the target duration
    in every rendition: one transcoder cause named by the GOP, the chronic overshoot apart."""
    evidence = with_faults(*every_rendition("origin", "origin", DEG, "segment_too_long"),
                           ev("origin", "origin", DEG, "keyframe_interval_long", "360p"),
                           ev("origin", "origin", DEG, "bitrate_over_declared", "360p"))
    found = [(f.stage, f.component, f.fault) for f in diagnose(evidence, ladder=RENDITIONS)]
    assert found == [("transcode", "360p", "bitrate_over_declared"),
                     ("transcode", "transcoder", "keyframe_interval_long")]


def test_a_webrtc_viewers_freeze_is_never_an_hls_renditions_symptom():
    """A WHEP viewer (not an HLS endpoint, no rendition) freezes while 360p is stale at the
    origin: the HLS rendition cannot reach the WebRTC path; each is its own finding."""
    evidence = with_faults(ev("origin", "origin", DEG, "stale_playlist", "360p"),
                           ev("playback", "whep", DEG, "video_freezes"))
    found = {(f.stage, f.component, f.fault) for f in diagnose(evidence)}
    assert found == {("transcode", "360p", "stale_playlist"), ("playback", "whep", "video_freezes")}


def test_a_left_over_player_stall_does_not_date_a_new_cause_before_it_began():
    """edge-b's players still report an earlier stall when 360p stops at the transcoder: the
    360p incident starts when the origin saw it stop, not when those players stalled."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    old_stall = ev("playback", "edge-b", DEG, "stalls", "360p")
    events = []
    for i in range(30):
        clock.tick(1)
        bad = [old_stall] + ([ev("origin", "origin", DEG, "stale_playlist", "360p")] if i >= 20 else [])
        if i == 20:
            stale_onset = clock()
        events += loc.observe("main", with_faults(*bad))
    opened = [e.incident for e in events if e.kind == "opened" and e.incident.component == "360p"]
    assert opened and opened[0].started_at == stale_onset


def test_unmeasured_evidence_is_no_fault():
    """An UNKNOWN check is neither a finding nor a reason to open anything."""
    assert diagnose(with_faults(ev("origin", "origin", State.UNKNOWN, "bitrate_over_declared", "360p"))) == []


def test_a_stalled_transcoder_shows_late_and_stale_and_explains_the_players():
    """The latency probe says the transcode hop is late, every origin playlist is stale, edges
    and players follow: one transcode incident, nothing at playback."""
    evidence = with_faults(
        ev("transcode", "transcoder", DEG, "latency_high", None, "capture to origin 9.1 s, baseline 4.0 s"),
        *every_rendition("origin", "origin", DOWN, "stale_playlist"), *every_edge(DOWN, "stale_playlist"),
        *[ev("playback", e, DEG, "stalls") for e in EDGES])
    (finding,) = diagnose(evidence)
    assert (finding.stage, finding.component) == ("transcode", "transcoder")
    assert {x.stage for x in finding.symptoms} >= {"origin", "cdn", "playback"}


def test_players_failing_just_after_the_origin_came_back_stay_on_the_origin_incident():
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(playback_open_cycles=3), clock=clock)
    down = with_faults(*[ev("origin", "origin", DOWN, "unreachable", r) for r in RENDITIONS],
                       *[ev("playback", e, DOWN, "playback_failed") for e in EDGES])
    lingering = with_faults(*[ev("playback", e, DOWN, "playback_failed") for e in EDGES])
    events = []
    for cycle in [down] * 4 + [lingering] * 6 + [healthy()] * 12:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage) for e in events] == [("opened", "origin"), ("resolved", "origin")]


def test_players_that_run_dry_after_a_short_stall_stay_on_that_incident_while_their_stalls_last():
    """edge-b stale for 4 s: the players stall only after it recovered and report their stalls
    for 20 s more; no playback incident opens, before or after edge-b's incident resolves."""
    clock = FakeClock()
    loc = Localizer(clock=clock)  # the defaults: players open after 6 cycles, resolve after 10 s
    stale = with_faults(ev("cdn", "edge-b", DEG, "stale_playlist", "360p"))
    dry = with_faults(ev("playback", "edge-b", DEG, "stalls", "360p", "1 stall in the last 20 s"))
    events = []
    for cycle in [stale] * 4 + [healthy()] * 2 + [dry] * 20 + [healthy()] * 12:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage, e.incident.component) for e in events] == [
        ("opened", "cdn", "edge-b"), ("resolved", "cdn", "edge-b")]


def test_an_unrelated_player_fault_long_after_recovery_is_its_own_incident():
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(playback_open_cycles=3), clock=clock)
    stale = with_faults(ev("cdn", "edge-b", DEG, "stale_playlist", "360p"))
    dry = with_faults(ev("playback", "edge-b", DEG, "stalls", "360p"))
    events = []
    for cycle in [stale] * 4 + [healthy()] * 30 + [dry] * 5:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage) for e in events] == [("opened", "cdn"), ("resolved", "cdn"),
                                                            ("opened", "playback")]


def test_a_lasting_condition_behind_a_short_one_opens_when_the_short_one_clears():
    """180p restarts its numbering (a held sequence_regression, P2) and keeps running late
    (variant_drift, P3): once the regression clears, the drift is its own incident, never
    swallowed as a symptom of the resolved one."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    drift = ev("origin", "origin", DEG, "variant_drift", "360p")
    both = with_faults(drift, ev("origin", "origin", DEG, "sequence_regression", "360p"))
    events = []
    for cycle in [both] * 3 + [with_faults(drift)] * 6:
        clock.tick(1)
        events += loc.observe("main", cycle)
    opened = [(e.incident.component, e.incident.fault, e.incident.severity) for e in events if e.kind == "opened"]
    assert opened == [("360p", "sequence_regression", "P2"), ("360p", "variant_drift", "P3")]


def test_a_refused_session_downstream_is_never_a_lingering_symptom_of_one_upstream():
    """WHIP refused, cleared; at once WHEP refused: a server refusing its own client is never the
    effect of another component (catalog ``own``), so it opens its own incident in 2 cycles."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    whip = with_faults(ev("ingest", "whip", DOWN, "auth_refused"), ev("playback", "whep"))
    whep = with_faults(ev("ingest", "whip"), ev("playback", "whep", DOWN, "auth_refused"))
    events = []
    for cycle in [whip] * 3 + [whep] * 3:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage) for e in events] == [("opened", "ingest"), ("opened", "playback")]


def test_an_encoding_fault_in_every_rendition_is_the_transcoders_never_the_cameras():
    """A 6-s GOP makes every rendition's segments outlast the target duration: transcode/transcoder
    (it was 'studio/source segment_too_long'); in one rendition it stays that rendition's."""
    every = hls(*[ev("origin", "origin", DEG, "segment_too_long", r, f"{r} segment lasts 6 s") for r in ("180p", "360p")])
    got = [(f.stage, f.component, f.fault) for f in diagnose(every, ladder=["180p", "360p"])]
    assert got == [("transcode", "transcoder", "segment_too_long")]
    one = hls(ev("origin", "origin", DEG, "segment_too_long", "180p"))
    assert [(f.stage, f.component) for f in diagnose(one, ladder=["180p", "360p"])] == [("transcode", "180p")]


def test_viewers_still_reporting_a_stall_after_its_cause_resolved_open_nothing():
    """The fresh user's case: edge-b stale for 20 s, its viewers stalled during it and report that
    stall for 20 s more; the edge's incident resolves 10 s after it recovered. No playback
    incident opens on that old stall; a new stall long after is its own incident."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    stale = with_faults(ev("cdn", "edge-b", DEG, "stale_playlist", "360p"),
                        ev("playback", "edge-b", DEG, "stalls", "360p"))
    old_stall = with_faults(ev("playback", "edge-b", DEG, "stalls", "360p", "stalled 19 s ago"))
    events = []
    for cycle in [stale] * 20 + [old_stall] * 22 + [healthy()] * 40 + [old_stall] * 8:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage) for e in events] == [
        ("opened", "cdn"), ("resolved", "cdn"), ("opened", "playback")]


def test_a_resolved_player_incident_never_hides_the_next_stall_of_the_same_players():
    """A cause only explains what lies downstream of it: a resolved playback incident is no cause
    for the same players' next stall, which opens its own incident as usual."""
    clock = FakeClock()
    loc = Localizer(clock=clock)
    stall = with_faults(ev("playback", "edge-b", DEG, "stalls", "360p"))
    events = []
    for cycle in [stall] * 8 + [healthy()] * 12 + [stall] * 8:
        clock.tick(1)
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.stage) for e in events] == [
        ("opened", "playback"), ("resolved", "playback"), ("opened", "playback")]


def _run(loc: Localizer, clock: FakeClock, cycles: list[list[Evidence]], **kw) -> list:
    events = []
    for cycle in cycles:
        clock.tick(1)
        events += loc.observe("main", cycle, **kw)
    return events


def test_what_a_cause_left_behind_at_its_place_continues_its_incident():
    """The lab's edge_delay: edge-b jumps back to an older playlist (sequence_regression, P2),
    then runs 5 s behind live (latency_high, begun after the jump, which the catalog says a
    regression causes). The jump ages out while the edge is still behind: that is what is left
    of the same cause, already on its incident — the incident stays open (its fault and place
    unchanged) and resolves once the lag is gone too; no second incident opens."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    jump = ev("cdn", "edge-b", DEG, "sequence_regression", detail="media sequence went back from 12 to 10")
    lag = ev("cdn", "edge-b", DEG, "latency_high", detail="edge-b is far behind live; edge-a is fine")
    events = _run(loc, clock, [hls(jump)] * 3 + [hls(jump, lag)] * 5 + [hls(lag)] * 12 + [hls()] * 8)
    got = [(e.kind, e.incident.stage, e.incident.component, e.incident.fault) for e in events]
    assert got == [("opened", "cdn", "edge-b", "sequence_regression"),
                   ("resolved", "cdn", "edge-b", "sequence_regression")]
    assert any("far behind live" in line for line in events[-1].incident.evidence)
    # resolved by its own evidence: once the lag was gone for resolve_after_s, not when the jump aged out
    assert events[-1].incident.resolved_at == pytest.approx(clock.t - 8 + 1)


def test_a_transcoders_long_gop_still_in_the_analysed_rendition_continues_its_incident():
    """keyframe_interval: every rendition's segments outlast the target duration and 180p's
    analysed segment has a 6-s GOP: transcode/transcoder keyframe_interval_long. Once the
    fault clears, new segments are short at once, but the content probe's last analysed 180p
    segment still has the long GOP for a few cycles: the transcoder's incident goes on, never a
    second one at transcode/180p."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4, at_risk_resolve_after_s=4), clock=clock)
    long = [ev("origin", "origin", DEG, "segment_too_long", r, f"{r} segment lasts 6 s") for r in ("180p", "360p")]
    gop = ev("origin", "origin", DEG, "keyframe_interval_long", "180p", "key frames 6 s apart")
    events = _run(loc, clock, [hls(*long, gop)] * 4 + [hls(gop)] * 5 + [hls()] * 6, ladder=["180p", "360p"])
    got = [(e.kind, e.incident.stage, e.incident.component, e.incident.fault) for e in events]
    assert got == [("opened", "transcode", "transcoder", "keyframe_interval_long"),
                   ("resolved", "transcode", "transcoder", "keyframe_interval_long")]


def test_a_lag_that_begins_as_the_jump_ends_is_what_the_jump_left_behind():
    """edge_delay, the other order (seen in the benchmark): the jump back ages out before the
    beacon's next reading shows the edge behind live. The lag begins after the regression's
    evidence ended — at its own place (an edge's incident reaches the edge itself, not only its
    players), within its resolve time, a symptom the catalog says a regression causes: evidence
    on its incident, not a latency_high incident linked to it."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    jump = ev("cdn", "edge-b", DEG, "sequence_regression")
    lag = ev("cdn", "edge-b", DEG, "latency_high", detail="edge-b latency after the origin rose to 5.5 s")
    events = _run(loc, clock, [hls(jump)] * 3 + [hls()] * 1 + [hls(lag)] * 6 + [hls()] * 20)
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "sequence_regression"),
                                                            ("resolved", "sequence_regression")]
    assert any("rose to 5.5 s" in line for line in events[0].incident.evidence + events[-1].incident.evidence)


def test_a_new_episode_of_what_a_resolved_cause_left_behind_is_not_continued():
    """The continuation holds only while the evidence lasts without a break: the lag ends, the
    regression incident resolves, later the edge falls behind again on its own — a new
    incident (latency_high), not the old one reopened."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    jump = ev("cdn", "edge-b", DEG, "sequence_regression")
    lag = ev("cdn", "edge-b", DEG, "latency_high", detail="edge-b is far behind live")
    events = _run(loc, clock, [hls(jump)] * 3 + [hls(jump, lag)] * 2 + [hls(lag)] * 3 + [hls()] * 30 + [hls(lag)] * 4)
    got = [(e.kind, e.incident.fault) for e in events]
    assert got == [("opened", "sequence_regression"), ("resolved", "sequence_regression"), ("opened", "latency_high")]


def test_a_different_fault_at_the_same_place_is_its_own_incident_linked_to_the_first():
    """keyframe_interval in the lab: the transcoder's playlists stop updating while its first
    6-s segment is written (stale_playlist, P1), then the long GOP shows (keyframe_interval_long,
    P3), which the catalog says explains no stale playlist. Two causes at one place: the second
    is its own incident, never folded into nor rewriting the first, and linked to it; an
    incident elsewhere is not linked."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    stale = [ev("origin", "origin", DEG, "stale_playlist", r, f"{r} unchanged for 7 s") for r in ("180p", "360p")]
    gop = ev("origin", "origin", DEG, "keyframe_interval_long", "180p", "key frames 6 s apart")
    edge = ev("cdn", "edge-a", DOWN, "http_error", "360p", "HTTP 503", http_status=503)  # its own server error
    events = _run(loc, clock, [hls(*stale)] * 3 + [hls(gop, edge)] * 3, ladder=["180p", "360p"])
    opened = {e.incident.fault: e.incident for e in events if e.kind == "opened"}
    assert set(opened) == {"stale_playlist", "keyframe_interval_long", "http_error"}
    assert opened["stale_playlist"].related == []
    assert opened["keyframe_interval_long"].related == [opened["stale_playlist"].id]
    assert opened["keyframe_interval_long"].stage == "transcode"  # the transcoder's or its rendition's
    assert opened["http_error"].related == []


def test_viewers_stalling_after_an_upstream_cause_cleared_never_keep_it_open_nor_open_their_own():
    """transcoder_stall in the chronic bench: the viewers via edge-b stall while the transcoder
    is stale (folded into its incident) and report the stall for their stall window after the
    clear, the 360p viewer's a little later than the 180p one's. Those are lingering symptoms of
    the transcoder's incident (resolved by its own evidence), never a reason to keep it open
    and never an incident of their own ('playback/edge-b stalls (after clear)')."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    stale = [ev("origin", "origin", DEG, "stale_playlist", r, f"{r} unchanged for 9 s") for r in ("180p", "360p")]
    stall180 = ev("playback", "edge-b", DEG, "stalls", "180p", "the 180p viewer stalled for 3 s now")
    stall360 = ev("playback", "edge-b", DEG, "stalls", "360p", "the 360p viewer stalled 1 s ago")
    cycles = ([hls(*stale)] * 3 + [hls(*stale, stall180)] * 4      # the fault, the 180p viewer stalls
              + [hls(stall180)] * 2 + [hls(stall180, stall360)] * 10  # cleared; both report their stall
              + [hls()] * 8)
    events = _run(loc, clock, cycles, ladder=["180p", "360p"])
    got = [(e.kind, e.incident.stage, e.incident.fault) for e in events]
    assert got == [("opened", "transcode", "stale_playlist"), ("resolved", "transcode", "stale_playlist")]
    # resolved by its own evidence: resolve_after_s after the stale playlists ended, not the stalls
    assert events[1].incident.resolved_at == pytest.approx(events[0].incident.localized_at + 5, abs=1.01)


def test_players_stalling_on_segments_longer_than_the_target_duration_are_the_transcoders():
    """A 6-s GOP stretches every segment past the 2-s target duration; edge-b's viewer, which
    sits 3 target durations behind the live edge, stalls: evidence on the transcoder's long-GOP
    incident (escalated: viewers are affected), not a playback incident. A long GOP whose segments are not stretched (a packager
    with 6-s segments) explains no stall: the stall is its own."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(playback_open_cycles=3), clock=clock)
    long = [ev("origin", "origin", DEG, "segment_too_long", r, f"{r} segment lasts 6 s") for r in ("180p", "360p")]
    gop = ev("origin", "origin", DEG, "keyframe_interval_long", "180p", "key frames 6 s apart")
    stall = ev("playback", "edge-b", DEG, "stalls", "180p", "the 180p viewer stalled")
    events = _run(loc, clock, [hls(*long, gop)] * 3 + [hls(*long, gop, stall)] * 6, ladder=["180p", "360p"])
    # one incident; viewers now stall, so it is no longer only "at risk": its severity escalates
    assert [(e.kind, e.incident.fault, e.incident.severity) for e in events] == [
        ("opened", "keyframe_interval_long", "P3"), ("updated", "keyframe_interval_long", "P2")]
    assert any("stalled" in line for line in loc.open_incidents("main")[0].evidence)

    clock = FakeClock()
    loc = Localizer(LocalizerSettings(playback_open_cycles=3), clock=clock)
    events = _run(loc, clock, [hls(gop)] * 3 + [hls(gop, stall)] * 6, ladder=["180p", "360p"])
    assert sorted((e.kind, e.incident.stage, e.incident.fault) for e in events) == [
        ("opened", "playback", "stalls"), ("opened", "transcode", "keyframe_interval_long")]


def test_a_rendition_going_stale_leaves_its_chronic_overshoot_standing():
    """The 180p rendition overshoots its BANDWIDTH (P3, chronic) and then stops updating for
    70 s. The stale playlist cannot make an overshoot: two causes at one place, each its own.
    The overshoot, still measured, stays one incident through the stall (it used to be folded
    into the stale finding, counted as gone, resolved after the 60-s at-risk time and opened
    again after the recovery: 'chronic again')."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(), clock=clock)
    br = ev("origin", "origin", DEG, "bitrate_over_declared", "180p", "segment at 1166 kbit/s")
    stale = ev("origin", "origin", DEG, "stale_playlist", "180p", "180p playlist has not advanced")
    events = _run(loc, clock, [hls(br)] * 5 + [hls(stale, br)] * 70 + [hls(br)] * 30, ladder=["180p", "360p"])
    got = [(e.kind, e.incident.fault) for e in events]
    assert got == [("opened", "bitrate_over_declared"), ("opened", "stale_playlist"), ("resolved", "stale_playlist")]
    assert [i.fault for i in loc.open_incidents("main")] == ["bitrate_over_declared"]


def test_the_overshoot_as_a_still_picture_ends_is_the_pictures_not_a_new_cause():
    """A frozen source (every rendition) ends; the first segments with motion again overshoot the
    declared BANDWIDTH (the encoder spends the VBV buffer the still picture filled): evidence on
    the frozen incident (catalog ``leaves``), not a bitrate incident of its own. An overshoot that
    begins while the picture is still frozen and goes on beside it is a condition of its own."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    frozen = with_faults(*every_rendition("origin", "origin", DEG, "frozen_video"))
    after = with_faults(ev("origin", "origin", DEG, "bitrate_over_declared", RENDITIONS[-1], "segment at 900 kbit/s"))
    events = _run(loc, clock, [frozen] * 6 + [after] * 5 + [healthy()] * 70)
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "frozen_video"), ("resolved", "frozen_video")]

    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    both = with_faults(*every_rendition("origin", "origin", DEG, "frozen_video"))
    both = [e for e in both if e.rendition != RENDITIONS[-1]] + [
        ev("origin", "origin", DEG, "frozen_video", RENDITIONS[-1]),
        ev("origin", "origin", DEG, "bitrate_over_declared", RENDITIONS[-1], "segment at 900 kbit/s")]
    # beside the still picture it waits effect_open_cycles (the picture may be ending), then it is its own
    events = _run(loc, clock, [frozen] * 4 + [both] * (LocalizerSettings().effect_open_cycles - 1))
    assert [e.incident.fault for e in events if e.kind == "opened"] == ["frozen_video"]
    events = _run(loc, clock, [both] * 2)
    assert [e.incident.fault for e in events if e.kind == "opened"] == ["bitrate_over_declared"]


def test_evidence_left_over_that_flaps_stays_on_the_open_incident():
    """edge_delay: the edge goes back (sequence_regression) and stays behind (latency_high, on the
    regression's incident once the jump ages out). One beacon reading dips under the latency
    threshold for two cycles, then it is high again: the incident is still open (within its
    resolve time), so the same incident goes on — no latency_high incident beside it."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    jump = ev("cdn", "edge-b", DEG, "sequence_regression")
    lag = ev("cdn", "edge-b", DEG, "latency_high", detail="edge-b latency after the origin rose to 4.8 s")
    cycles = [hls(jump)] * 3 + [hls(jump, lag)] * 2 + [hls(lag)] * 3 + [hls()] * 2 + [hls(lag)] * 5 + [hls()] * 8
    events = _run(loc, clock, cycles)
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "sequence_regression"),
                                                            ("resolved", "sequence_regression")]


def test_long_segments_wait_for_the_content_probe_to_name_their_gop():
    """The playlists list 6-s segments at once; the content probe reads their 6-s GOP three cycles
    later. segment_too_long waits for it (catalog ``awaits``): one keyframe_interval_long
    incident, not a segment_too_long one and then a linked long-GOP one. Long segments that no
    GOP finding names open on their own after ``effect_open_cycles``. As the GOP shortens again,
    the next segment's overshoot is what the long GOP's end left (catalog ``leaves``)."""
    long = [ev("origin", "origin", DEG, "segment_too_long", r, f"{r} segment lasts 6 s") for r in ("180p", "360p")]
    gop = ev("origin", "origin", DEG, "keyframe_interval_long", "180p", "key frames 6 s apart")
    over = ev("origin", "origin", DEG, "bitrate_over_declared", "180p", "segment at 1166 kbit/s")
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4, at_risk_resolve_after_s=4), clock=clock)
    events = _run(loc, clock, [hls(*long)] * 4 + [hls(*long, gop)] * 6 + [hls(over)] * 4 + [hls()] * 30,
                  ladder=["180p", "360p"])
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "keyframe_interval_long"),
                                                            ("resolved", "keyframe_interval_long")]
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(effect_open_cycles=5), clock=clock)
    events = _run(loc, clock, [hls(*long)] * 4, ladder=["180p", "360p"])
    assert events == []
    events = _run(loc, clock, [hls(*long)] * 1, ladder=["180p", "360p"])
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "segment_too_long")]


def test_a_long_segment_shorter_than_a_long_gop_opens_without_waiting_for_one():
    """keyframe_interval in the benchmark, one phase in three: as the GOP grows to 6 s, the
    segment being cut runs to the next key frame, 2.96 s at a 2-s target duration, and the next
    one comes 6 s later. No GOP over 4 s fits in 2.96 s, so no content finding will name it:
    segment_too_long at the transcoder opens after ``open_cycles``, not ``effect_open_cycles``
    (the incident then stood 5 s longer than the fault's first sign)."""
    def long(seconds: float) -> list[Evidence]:
        out = []
        for r in ("180p", "360p"):
            e = ev("origin", "origin", DEG, "segment_too_long", r, f"{r}: segment 15 lasts {seconds} s")
            e.figures["segment_duration_s"] = seconds
            out.append(e)
        return out

    clock = FakeClock()
    loc = Localizer(LocalizerSettings(), clock=clock)
    events = _run(loc, clock, [hls(*long(2.96))] * LocalizerSettings().open_cycles, ladder=["180p", "360p"])
    assert [(e.kind, e.incident.stage, e.incident.component, e.incident.fault) for e in events] == [
        ("opened", "transcode", "transcoder", "segment_too_long")]
    # the 6-s segments and their GOP finding that follow: a second incident, linked (the price
    # of naming the first sign at once; the catalog's keyframe_interval_long explains it)
    gop = ev("origin", "origin", DEG, "keyframe_interval_long", "180p", "key frames 6 s apart")
    events = _run(loc, clock, [hls(*long(6.0))] * 3 + [hls(*long(6.0), gop)] * 12, ladder=["180p", "360p"])
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "keyframe_interval_long")]
    assert len(loc.open_incidents()) == 2
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(), clock=clock)  # a 6-s segment may hold a 6-s GOP: it waits
    assert _run(loc, clock, [hls(*long(6.0))] * (LocalizerSettings().effect_open_cycles - 1),
                ladder=["180p", "360p"]) == []
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(), clock=clock)  # one rendition's evidence without the figure: it waits
    mixed = long(2.96)
    del mixed[1].figures["segment_duration_s"]
    assert _run(loc, clock, [hls(*mixed)] * (LocalizerSettings().effect_open_cycles - 1),
                ladder=["180p", "360p"]) == []


def test_a_stall_episode_that_blips_after_its_cause_ended_stays_the_causes():
    """edge_throttle (seen in the benchmark): edge-b's viewers stall while it is slow; the edge
    recovers, the players keep reporting the stall for their 20-s stall window ("stalled 18 s
    ago"). Twelve seconds after the recovery one playback attempt times out — the stall evidence
    is missing for a cycle. The viewer's probe dates the episode by its first stall
    (``Evidence.onset``): the stall is still the slow edge's effect, never a playback incident
    of its own after the clear."""
    slow = ev("cdn", "edge-b", DEG, "slow_segment", "360p", "segment took 2.6 s for 2 s")

    def run(onset: float | None) -> list:
        clock = FakeClock()
        loc = Localizer(LocalizerSettings(resolve_after_s=10), clock=clock)
        stall = Evidence("playback", "edge-b", DEG, Fault.STALLS, "the 360p viewer stalled", "360p",
                         onset=None if onset is None else clock.t + onset)
        cycles = [hls(slow)] * 2 + [hls(slow, stall)] * 6 + [hls(stall)] * 12 + [hls()] + [hls(stall)] * 7 + \
            [hls()] * 40
        return [(e.kind, e.incident.stage, e.incident.fault) for e in _run(loc, clock, cycles)]

    assert run(onset=3) == [("opened", "cdn", "slow_segment"), ("resolved", "cdn", "slow_segment")]
    # without the probe's onset the blip dates the stall 13 s after the cause: its own incident
    assert ("opened", "playback", "stalls") in run(onset=None)


def test_a_stall_episode_begun_before_its_cause_stays_its_report_window_after_it():
    """edge_slow_first_byte twice in a row (seen in the chronic benchmark): the second fault
    began while edge-b's viewers still reported the first one's stalls, so their stall episode
    (``Evidence.onset``) predates the second incident. The edge is slow again (timeout), the
    viewers stall again inside that old episode; the edge recovers at t=20, its last stall
    ends a couple of seconds later and the viewers report it for their 20-s stall window
    (probes/playback.py ``stall_window_s``). The second incident explained that episode while
    it lasted: it stays explained for the report window after the last explanation
    (``resolve_after_s + symptom_window_s``), never a playback incident of its own."""
    timeout = ev("cdn", "edge-b", DOWN, "timeout", "360p", "no complete answer within 5 s")
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=10), clock=clock)
    stall = Evidence("playback", "edge-b", DEG, Fault.STALLS, "the 360p viewer stalled", "360p",
                     onset=clock.t - 5)  # the episode began before the fault
    cycles = [hls(timeout, stall)] * 20 + [hls(stall)] * 24 + [hls()] * 30
    got = [(e.kind, e.incident.stage, e.incident.fault) for e in _run(loc, clock, cycles)]
    assert got == [("opened", "cdn", "timeout"), ("resolved", "cdn", "timeout")]
    # a stall that goes on past the report window (a cause of its own) still opens
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=10), clock=clock)
    stall = Evidence("playback", "edge-b", DEG, Fault.STALLS, "the 360p viewer stalled", "360p", onset=clock.t - 5)
    got = [(e.kind, e.incident.stage, e.incident.fault)
           for e in _run(loc, clock, [hls(timeout, stall)] * 20 + [hls(stall)] * 60)]
    assert ("opened", "playback", "stalls") in got


def test_a_stall_going_on_when_its_cause_ends_is_its_effect_however_long_the_player_takes():
    """edge_throttle in the chronic benchmark, right after edge_slow_first_byte: the viewers'
    stall episode began in the first fault; they stall through the throttle, and the last stall
    ends 12 s after the edge's evidence is gone (a player recovering: retry back-off, a refill),
    then is reported for the 20-s stall window. That stall began while the throttle was there
    (``Evidence.latest_onset``): the throttle's effect, never a playback incident of its own.
    A stall that begins more than ``resolve_after_s`` after the cause last explained it is not."""
    def run(recovered_after: int, stall_again_at: int | None) -> list[tuple[str, str, str]]:
        clock = FakeClock()
        loc = Localizer(LocalizerSettings(resolve_after_s=10), clock=clock)
        episode = clock.t - 5  # begun in the previous fault
        slow = ev("cdn", "edge-b", DEG, "slow_segment", "360p", "segment at 20 kB/s")
        began = clock.t + 8  # the stall that the throttle made

        def stall(latest: float) -> Evidence:
            return Evidence("playback", "edge-b", DEG, Fault.STALLS, "the 360p viewer stalled", "360p",
                            onset=episode, latest_onset=latest)
        cycles = [hls(slow)] * 8 + [hls(slow, stall(began))] * 12 + [hls(stall(began))] * (recovered_after + 20)
        if stall_again_at is not None:  # a new stall long after, inside the same report window
            cycles[20 + stall_again_at:] = [hls(stall(clock.t + 21 + stall_again_at))] * (len(cycles) - 20
                                                                                          - stall_again_at)
        cycles += [hls()] * 30
        return [(e.kind, e.incident.stage, e.incident.fault) for e in _run(loc, clock, cycles)]

    assert run(12, None) == [("opened", "cdn", "slow_segment"), ("resolved", "cdn", "slow_segment")]
    assert run(25, None) == [("opened", "cdn", "slow_segment"), ("resolved", "cdn", "slow_segment")]
    got = run(12, 15)  # a stall that began 15 s after the edge recovered: not the throttle's
    assert ("opened", "playback", "stalls") in got and ("opened", "cdn", "slow_segment") in got


def test_the_symptom_window_follows_the_players_stall_window_unless_set():
    from agent.app import localizer_settings
    from agent.config import parse_config

    stream = {"name": "main", "origin": "http://127.0.0.1:1/main.m3u8", "playback": {"stall_window_s": 45}}
    assert localizer_settings(parse_config({"streams": [stream]})).symptom_window_s == 45
    conf = {"streams": [stream], "localize": {"symptom_window_s": 12}}
    assert localizer_settings(parse_config(conf)).symptom_window_s == 12
    assert localizer_settings(parse_config({})).symptom_window_s == 20


def test_the_overshoot_of_the_segment_in_which_a_still_picture_ends_is_the_pictures():
    """frozen_video in the plain benchmark: the first segment with motion again overshoots (the
    VBV buffer the still picture filled) and the content probe reads it two seconds before the
    frozen evidence is gone — the segment in which the picture ends carries both. That overshoot
    is what the picture's end left (catalog ``leaves``): it waits ``effect_open_cycles`` beside
    the still picture, and once the picture's evidence ends within ``leaves_slack_s`` of its
    onset it is the frozen incident's, not a P3 of its own."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(resolve_after_s=4), clock=clock)
    frozen = with_faults(*every_rendition("origin", "origin", DEG, "frozen_video"))
    over = ev("origin", "origin", DEG, "bitrate_over_declared", RENDITIONS[0], "segment at 656 kbit/s")
    both = frozen + [over]  # one segment, both findings: still at its start, motion and overshoot after
    after = with_faults(over)
    events = _run(loc, clock, [frozen] * 6 + [both] * 2 + [after] * 6 + [healthy()] * 70)
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "frozen_video"), ("resolved", "frozen_video")]



def test_an_incident_is_dated_from_the_first_bad_evidence_of_its_fault_at_its_place():
    """edge_down in a fresh user's trial: the first cycle reports each rendition's playlist
    refused (rendition 360p, 180p), the next the whole edge (no rendition). Both say
    ``unreachable`` at cdn/edge-b: the incident starts at the first of them, so its time to
    localize is a cycle, not 0 s (DESIGN.md: from the fault's first bad evidence)."""
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(), clock=clock)
    first = hls(ev("cdn", "edge-b", DOWN, "unreachable", "360p", "360p playlist: connection refused"),
                ev("cdn", "edge-b", DOWN, "unreachable", "720p", "720p playlist: connection refused"))
    later = hls(ev("cdn", "edge-b", DOWN, "unreachable", None, "playlist connection refused"))
    events = _run(loc, clock, [first] + [later] * 3)
    (opened,) = [e.incident for e in events if e.kind == "opened"]
    assert opened.localized_at - opened.started_at >= 1.0
    # another fault there before (a chronic one) does not date it
    clock = FakeClock()
    loc = Localizer(LocalizerSettings(), clock=clock)
    lag = ev("cdn", "edge-b", DEG, "latency_high", detail="edge-b 3 s behind")
    events = _run(loc, clock, [hls(lag)] * 5 + [first] + [later] * 3)
    opened = next(e.incident for e in events if e.kind == "opened" and e.incident.fault == "unreachable")
    assert opened.localized_at - opened.started_at < 3.0


def test_parts_late_everywhere_name_the_transcoder_only_past_the_classic_stale_rule():
    """LL-HLS: every rendition's parts stop at the origin and every edge. Shorter than classic HLS's
    stale rule (1.5 target durations: 3 s at 2-s segments) it is what a 2-s pause upstream (an
    ingest step) looks like before the ingest's own probes report it, so no transcoder incident
    opens; past it, the transcoder, as on classic HLS. An ingest cause found meanwhile is named
    at once."""
    def parts_late(age: float) -> list[Evidence]:
        stale = [Evidence("origin", "origin", DOWN, Fault.STALE_PLAYLIST, f"{r}: no part", r,
                          {"age_s": age, "part_stale": 1.0, "target_duration_s": 2.0}) for r in RENDITIONS]
        stale += [Evidence("cdn", e, DOWN, Fault.STALE_PLAYLIST, f"{r}: no part", r,
                           {"age_s": age, "part_stale": 1.0, "target_duration_s": 2.0})
                  for e in EDGES for r in RENDITIONS]
        return with_faults(*stale)

    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    for age in (1.6, 2.1, 2.6):
        assert loc.observe("main", parts_late(age)) == []
    (event,) = loc.observe("main", parts_late(3.1))
    assert (event.incident.stage, event.incident.component, event.incident.fault) == \
        ("transcode", "transcoder", "stale_playlist")

    upstream = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    pause = [e for e in parts_late(1.6) if e.stage != "ingest"] + [
        ev("ingest", "rtmp", DEG, Fault.LATENCY_HIGH, None, "capture-to-ingest latency rose to 2.0 s")]
    got = [(e.incident.stage, e.incident.component) for e in upstream.observe("main", pause)]
    assert got == [("ingest", "rtmp")]


def test_a_stale_rendition_that_widens_to_every_rendition_opens_as_the_transcoder_without_starting_over():
    """A transcoder that stops: its renditions cross the stale rule a poll apart, so one cycle
    names one rendition and the next the whole transcoder. One condition that widened: the
    transcoder's incident opens at the second cycle (open_cycles 2), not the third, and nothing
    opens for the rendition alone. A rendition whose incident had opened is no part of it."""
    t = [1000.0]
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0])
    one = with_faults(ev("origin", "origin", DEG, Fault.STALE_PLAYLIST, "360p"),
                      *[ev("cdn", e, DEG, Fault.STALE_PLAYLIST, "360p") for e in EDGES])
    every = with_faults(*every_rendition("origin", "origin", DOWN, Fault.STALE_PLAYLIST),
                        *every_edge(DOWN, Fault.STALE_PLAYLIST))
    assert loc.observe("main", one, ladder=RENDITIONS) == []
    t[0] += 1.0
    events = loc.observe("main", every, ladder=RENDITIONS)
    assert [(e.kind, e.incident.stage, e.incident.component, e.incident.fault) for e in events] == [
        ("opened", "transcode", "transcoder", "stale_playlist")]
    assert events[0].incident.started_at == 1000.0  # dated by the first rendition's staleness

    later = Localizer(LocalizerSettings(), clock=lambda: t[0])  # a rendition incident of its own first
    for _ in range(2):
        t[0] += 1.0
        later.observe("main", one, ladder=RENDITIONS)
    t[0] += 1.0
    assert later.observe("main", every, ladder=RENDITIONS) == []  # the transcoder's own hysteresis


def test_another_probes_fresh_measurement_is_a_findings_next_cycle():
    """A finding counted once at the heartbeat opens when another probe's attempt, begun after
    that heartbeat, renews its own evidence (the comparison reading the MPD still behind): no
    wait of up to a second for the next heartbeat. Not before one heartbeat, not on an attempt
    that began before it, not on another fault's evidence, and never for a finding that needs
    more cycles (player stalls): those wait for their heartbeats."""
    t = [1000.0]
    behind = ev("origin", "origin", DOWN, "manifest_behind", None, "DASH 360p has not changed for 3.0 s")
    key = ("origin", "origin", None, "manifest_behind")
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0], new_id=_ids())
    assert loc.confirm("main", hls(behind), {key}, t[0] - 0.5) == []  # never counted at a heartbeat
    assert loc.observe("main", hls(behind)) == []  # the heartbeat: one cycle
    t[0] += 0.3
    assert loc.confirm("main", hls(behind), {key}, t[0] - 0.5) == []  # began before that heartbeat
    assert loc.confirm("main", hls(behind), {("origin", "origin", None, "stale_playlist")}, t[0] - 0.1) == []
    (opened,) = loc.confirm("main", hls(behind), {key}, t[0] - 0.1)
    assert opened.kind == "opened" and opened.incident.fault == "manifest_behind"
    assert opened.incident.localized_at == t[0]
    t[0] += 0.7
    assert loc.observe("main", hls(behind)) == []  # the next heartbeat: the same incident, still open

    stalls = ev("playback", "edge-a", DEG, "stalls", "360p", "2 stalls in the last 20 s")
    lone = Localizer(LocalizerSettings(), clock=lambda: t[0])
    for _ in range(3):
        t[0] += 1
        assert lone.observe("main", hls(stalls)) == []
        assert lone.confirm("main", hls(stalls), {("playback", "edge-a", "360p", "stalls")}, t[0] + 0.1) == []


def test_a_late_transcoder_whose_playlists_then_go_stale_is_named_by_the_stop_without_losing_a_cycle():
    """The latency probe's bound (a segment not at the origin yet) may come a cycle before the
    origin's playlists are judged stale: the transcoder is late, then stopped. The finding is
    named by the stop (stale_playlist, its P1 and runbook) as soon as both show, and keeps the
    cycle it was seen as late: it opens at the second cycle, as the stale playlists alone would."""
    t = [1000.0]
    late = ev("transcode", "transcoder", DEG, "latency_high", None,
              "180p segment 9 is not at the origin yet: its latency is at least 1.7 s")
    stale = every_rendition("origin", "origin", DOWN, "stale_playlist")
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0], new_id=_ids())
    assert loc.observe("main", with_faults(late)) == []
    t[0] += 1
    (opened,) = loc.observe("main", with_faults(late, *stale))
    assert (opened.incident.stage, opened.incident.component, opened.incident.fault, opened.incident.severity) == (
        "transcode", "transcoder", "stale_playlist", "P1")


def test_a_slow_transcoders_latency_after_its_late_playlists_is_the_same_incident():
    """A transcoder at half speed: its playlists go stale (a segment every 4 s), the incident opens
    as stale_playlist; the late segment then comes and its latency is high while the playlists are
    fresh again. That latency is the stale transcoder's effect (the catalog: a stale playlist
    explains latency_high), at its very place and begun after it: the same incident, not a second."""
    t = [1000.0]
    stale = every_rendition("origin", "origin", DOWN, "stale_playlist")
    late = ev("transcode", "transcoder", DEG, "latency_high", None, "capture-to-origin latency rose to 3.1 s")
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0], new_id=_ids())
    events = []
    for cycle in [with_faults(*stale)] * 2 + [with_faults(late)] * 4:
        t[0] += 1
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.fault) for e in events] == [("opened", "stale_playlist")], events
    assert [i.fault for i in loc.open_incidents()] == ["stale_playlist"]
    assert any("latency" in line for line in loc.open_incidents()[0].evidence)


def test_an_open_late_transcoder_incident_escalates_when_its_playlists_go_stale():
    """A transcoder's latency_high incident is open (P3); then it stops and the origin's playlists
    go stale. The finding is named by the stop (agent/diagnosis.py naming) but its own evidence is
    the open incident's: that incident goes on and escalates to P1 at once, no second incident
    one cycle later and no P3 left resolving while its evidence is still there (review finding)."""
    t = [1000.0]
    late = ev("transcode", "transcoder", DEG, "latency_high", None, "capture-to-origin latency rose to 3.1 s")
    stale = every_rendition("origin", "origin", DOWN, "stale_playlist")
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0], new_id=_ids())
    events = []
    for cycle in [with_faults(late)] * 2 + [with_faults(late, *stale)] * 3:
        t[0] += 1
        events += loc.observe("main", cycle)
    assert [(e.kind, e.incident.fault, e.incident.severity) for e in events][:2] == [
        ("opened", "latency_high", "P3"), ("updated", "latency_high", "P1")], events
    assert [(i.fault, i.severity) for i in loc.open_incidents()] == [("latency_high", "P1")]


def test_a_recheck_between_two_heartbeats_counts_the_first_cycle_of_what_it_renews():
    """The HLS probe's asked-for attempt at a playlist's stale threshold (agent/runner.py recheck):
    the stale finding it renews counts its first cycle there, the next heartbeat opens it; a
    player's stall on the board beside it is not counted (its wait counts heartbeats)."""
    t = [1000.0]
    stale = every_rendition("origin", "origin", DOWN, "stale_playlist")
    stalls = ev("playback", "edge-a", DEG, "stalls", "360p", "2 stalls in the last 20 s")
    renewed = {("origin", "origin", e.rendition, "stale_playlist") for e in stale}
    loc = Localizer(LocalizerSettings(), clock=lambda: t[0], new_id=_ids())
    assert loc.observe("main", with_faults(stalls)) == []
    t[0] += 0.5
    assert loc.confirm("main", with_faults(stalls, *stale), renewed, t[0] - 0.05, start=True) == []
    t[0] += 0.5
    events = loc.observe("main", with_faults(stalls, *stale))
    assert [(e.kind, e.incident.stage, e.incident.component, e.incident.fault) for e in events] == [
        ("opened", "transcode", "transcoder", "stale_playlist")], events
    assert [(i.stage, i.component, i.fault) for i in loc.open_incidents()] == [
        ("transcode", "transcoder", "stale_playlist")], loc.open_incidents()
    assert loc.open_incidents()[0].started_at == 1000.5  # dated by the recheck that first saw it


def test_a_latency_step_at_the_ingest_explains_the_origins_playlists_it_leaves_late():
    """An ingest that starts holding media back 2 s (its monitor's latency_high) leaves the
    origin's next segment 2 s late: every playlist stale for a moment. The ingest's latency
    explains it (catalog): one ingest finding, never a transcoder that stopped beside it."""
    evidence = with_faults(ev("ingest", "ingest", DEG, "latency_high", None,
                              "no frame from the ingest for 1.1 s: capture-to-ingest latency at least 1.2 s"),
                           *every_rendition("origin", "origin", DOWN, "stale_playlist"))
    (finding,) = diagnose(evidence)
    assert (finding.stage, finding.component, str(finding.fault)) == ("ingest", "ingest", "latency_high")
    assert {e.stage for e in finding.symptoms} == {"origin"}


@pytest.mark.parametrize("edge_lag, expected", [
    (0.0, [("ingest", "rtmp", "low_input", "P1")]),  # its viewers' playlists are stale: all of them
    (1.0, [("cdn", "edge-a", "stale_playlist", "P2"), ("ingest", "rtmp", "low_input", "P2")]),
    (None, [("cdn", "edge-a", "stale_playlist", "P2"), ("ingest", "rtmp", "low_input", "P2")]),
])
def test_an_edge_level_with_the_origin_is_stale_because_of_upstream_not_behind_it(edge_lag, expected):
    """A starved ingest delays every segment; the origin, late too, is still within its own rule
    when the edge (a cache lag more) is stale. An edge that lists all the origin lists
    (probes/hls.py combine: ``edge_lag_segments`` 0) is the ingest's symptom, not a CDN cause;
    an edge a segment behind the origin is its own (a real edge fault beside the ingest's), and
    so is one never compared (no figure)."""
    stale = ev("cdn", "edge-a", DEG, "stale_playlist", "360p", "360p playlist has not advanced for 5.1 s")
    if edge_lag is not None:
        stale.figures["edge_lag_segments"] = edge_lag
    evidence = with_faults(ev("ingest", "rtmp", DEG, "low_input", None, "input at 0.5x real time"), stale)
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    got = [(e.incident.stage, e.incident.component, e.incident.fault, e.incident.severity)
           for e in loc.observe("main", evidence)]
    assert sorted(got) == sorted(expected)


def test_hls_combine_tells_each_stale_edge_rendition_how_far_behind_the_origin_it_is():
    from probes.base import ProbeResult
    from probes.hls import combine

    origin = ProbeResult(figures={"renditions": {"360p": {"last_seq": 120.0}, "720p": {"last_seq": 120.0}}})
    edge = ProbeResult(figures={"renditions": {"360p": {"last_seq": 120.0}, "720p": {"last_seq": 118.0}}})
    edge.evidence = [Evidence("cdn", "edge-a", State.DEGRADED, Fault.STALE_PLAYLIST, "", "360p"),
                     Evidence("cdn", "edge-a", State.DEGRADED, Fault.STALE_PLAYLIST, "", "720p")]
    combine({"origin": origin, "edge-a": edge}, "main")
    assert [e.figures["edge_lag_segments"] for e in edge.evidence] == [0.0, 2.0]


@pytest.mark.parametrize("behind_s, upstream, expected", [
    # the origin listed the segment the edge lacks 1.2 s ago; the edge's rule allows 4.2 s
    (1.2, True, [("ingest", "rtmp", "low_input", "P1")]),  # the tail of the ingest's stall
    (1.2, False, []),  # the stall is over and nothing explains it: no cause, the edge is catching up
    (6.0, True, [("cdn", "edge-a", "stale_playlist", "P2"), ("ingest", "rtmp", "low_input", "P2")]),
    (6.0, False, [("cdn", "edge-a", "stale_playlist", "P2")]),  # behind past its own rule: the edge's
])
def test_an_edge_a_segment_behind_an_origin_that_listed_it_late_is_not_blamed_for_it(behind_s, upstream, expected):
    """An upstream stall ends: the origin lists its late segment, the edge (stale since the
    stall, by its own clock) lists it a lawful cache lag later. Between the two it is one segment
    behind the origin, but only for ``behind_origin_s`` (since the origin listed it), which its
    own stale threshold (``stale_after_s``) allows: not a CDN cause. Past that threshold it is."""
    stale = ev("cdn", "edge-a", DEG, "stale_playlist", "360p", "360p playlist has not advanced for 7.1 s")
    stale.figures.update(edge_lag_segments=1.0, behind_origin_s=behind_s, stale_after_s=4.2)
    evs = [stale] if not upstream else [ev("ingest", "rtmp", DEG, "low_input", None, "input at 0.5x real time"), stale]
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    got = [(e.incident.stage, e.incident.component, e.incident.fault, e.incident.severity)
           for e in loc.observe("main", with_faults(*evs))]
    assert sorted(got) == sorted(expected)


def test_hls_combine_dates_what_a_stale_edge_lacks_by_when_the_origin_listed_it():
    """``behind_origin_s``: the edge's reload time less the time the origin's newest reload
    first listed the segments the edge lacks; unknown (absent) when the edge lacks one listed
    before that (the origin's listing of it was not kept) or lacks none."""
    from probes.base import ProbeResult
    from probes.hls import combine

    o = {"last_seq": 120.0, "listed_from_seq": 120.0, "listed_at": 5000.0, "polled_at": 5000.2}
    origin = ProbeResult(figures={"renditions": {"360p": dict(o), "720p": dict(o), "1080p": dict(o)}})
    edge = ProbeResult(figures={"renditions": {"360p": {"last_seq": 119.0, "polled_at": 5001.5},
                                               "720p": {"last_seq": 118.0, "polled_at": 5001.5},
                                               "1080p": {"last_seq": 120.0, "polled_at": 5001.5}}})
    edge.evidence = [Evidence("cdn", "edge-a", State.DEGRADED, Fault.STALE_PLAYLIST, "", r)
                     for r in ("360p", "720p", "1080p")]
    combine({"origin": origin, "edge-a": edge}, "main")
    assert [e.figures.get("behind_origin_s") for e in edge.evidence] == [1.5, None, None]
    assert [e.figures["edge_lag_segments"] for e in edge.evidence] == [1.0, 2.0, 0.0]


def test_an_edge_level_with_the_origin_and_nothing_upstream_is_no_cause():
    """An edge stale by its own clock that lists all the origin lists, with no upstream cause
    found (the origin, late too, still within its own rule): the edge is not behind anything,
    so no CDN incident; the origin, once stale by its own rule, is the cause that hosts it."""
    stale = ev("cdn", "edge-a", DEG, "stale_playlist", "360p", "360p playlist has not advanced for 5.1 s")
    stale.figures.update(edge_lag_segments=0.0, stale_after_s=4.2)
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    assert loc.observe("main", with_faults(stale)) == []
    origin = ev("origin", "origin", DEG, "stale_playlist", "360p", "360p playlist has not advanced for 6.0 s")
    got = [(e.incident.stage, e.incident.component, e.incident.fault)
           for e in loc.observe("main", with_faults(origin, stale))]
    assert ("cdn", "edge-a", "stale_playlist") not in got and got, got


def test_an_edge_frozen_on_the_old_numbering_after_the_origin_restarted_it_is_blamed():
    """The origin restarts its media sequence at 0 (an encoder restart) while an edge stays
    frozen on the old playlist, numbered far ahead (``edge_lag_segments`` -12): not level with
    the origin, so not excused as such; nothing upstream explains it: the edge's own cause.
    (Found by a helper's attack: excused as 'level', it went unblamed until the origin's
    numbers passed the edge's.)"""
    stale = ev("cdn", "edge-a", DEG, "stale_playlist", "360p", "360p playlist has not advanced for 9.0 s")
    stale.figures.update(edge_lag_segments=-12.0, stale_after_s=3.0)
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    got = [(e.incident.stage, e.incident.component, e.incident.fault) for e in loc.observe("main", with_faults(stale))]
    assert got == [("cdn", "edge-a", "stale_playlist")]
