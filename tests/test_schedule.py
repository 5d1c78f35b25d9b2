"""Broadcasts and maintenance windows, pure (agent/schedule.py), and the localizer's side of them:
an incident that opens in a window is marked and alerted only if it outlasts the window; a
stream not live at its broadcast's start is its own P1 at the origin, never inferred elsewhere."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.incident_sink import alertable
from agent.localize import MAINTENANCE_ENDED, Localizer, LocalizerSettings
from agent.schedule import Broadcast, MaintenanceWindow, Schedule, is_live, on_air_evidence, place_problem
from probes.base import Evidence, State
from probes.faults import Fault

T0 = 1_796_155_200.0  # 2026-12-01T20:00:00Z


def news(**kw) -> Broadcast:
    return Broadcast(**{"name": "Evening news", "streams": ["main"], "start": "2026-12-01T20:00:00Z",
                        "end": "2026-12-01T21:00:00Z", "preroll_s": 600, **kw})


def test_times_are_rfc3339_with_an_offset():
    assert news().start == T0 and news(end="2026-12-01T22:00:00+01:00").end == T0 + 3600
    for bad, why in (("2026-12-01T20:00:00", "no UTC offset"), ("tonight", "not an RFC 3339 time")):
        with pytest.raises(ValidationError) as err:
            news(start=bad)
        assert why in str(err.value)
    with pytest.raises(ValidationError, match="end must be after start"):
        news(end="2026-12-01T19:00:00Z")
    with pytest.raises(ValidationError, match="component needs its stage"):
        MaintenanceWindow(name="x", start=T0, end=T0 + 1, component="edge-a")
    with pytest.raises(ValidationError, match="not a stage"):
        MaintenanceWindow(name="x", start=T0, end=T0 + 1, stage="moon")


def test_a_scheduled_stream_is_watched_from_its_preroll_to_its_end():
    s = Schedule([news(), news(name="Late news", start=T0 + 7200, end=T0 + 9000, preroll_s=0)])
    assert [s.stream_at("main", t).state for t in (T0 - 601, T0 - 600, T0, T0 + 3599, T0 + 3600, T0 + 7200)] == \
        ["off_air", "preroll", "on_air", "on_air", "off_air", "on_air"]
    assert s.stream_at("main", T0 + 3600).broadcast.name == "Late news"  # the next one
    assert s.stream_at("other", T0).state == "unscheduled" and s.watched("other", T0 + 99999)
    assert not s.watched("main", T0 + 3600) and s.watched("main", T0 - 600)
    assert [(b.name, st) for b, st in s.must_be_live(T0 + 10)] == [("Evening news", "main")]
    assert s.must_be_live(T0 - 10) == []  # the pre-roll is rehearsal: not live yet is no fault
    assert s.current_or_next(T0 - 3600).name == "Evening news" and s.current_or_next(T0 + 3700).name == "Late news"


def test_maintenance_covers_its_place_and_time():
    m = MaintenanceWindow(name="edge swap", start=T0, end=T0 + 600, stream="main", stage="cdn", component="edge-b")
    s = Schedule(maintenance=[m, MaintenanceWindow(name="all", start=T0 + 1000, end=T0 + 1100)])
    assert s.maintenance_for("main", "cdn", "edge-b", T0 + 1) is m
    assert s.maintenance_for("main", "cdn", "edge-a", T0 + 1) is None
    assert s.maintenance_for("main", "origin", "origin", T0 + 1) is None
    assert s.maintenance_for("main", "cdn", "edge-b", T0 + 600) is None  # ended
    assert s.maintenance_for("x", "studio", "encoder", T0 + 1050).name == "all"
    # a CDN edge's window covers its viewers too; a place the config lacks is refused
    assert s.maintenance_for("main", "playback", "edge-b", T0 + 1) is m
    assert s.maintenance_for("main", "playback", "edge-a", T0 + 1) is None
    edges = {"main": ["edge-a", "edge-b"]}
    assert place_problem(m, edges) is None
    typo = MaintenanceWindow(name="t", start=T0, end=T0 + 1, stage="cdn", component="edge-zz")
    assert place_problem(typo, edges).startswith("component: 'edge-zz' is not a cdn component of any stream")
    assert place_problem(MaintenanceWindow(name="t", start=T0, end=T0 + 1, stream="x"), edges).startswith("stream:")


def test_not_live_at_t0_by_the_origins_own_evidence():
    s = Schedule([news()])
    ok = [Evidence("origin", "origin", State.OK, None, "fresh")]
    stale = [Evidence("origin", "origin", State.DOWN, Fault.STALE_PLAYLIST, "stale", rendition="360p")]
    black = [Evidence("origin", "origin", State.DOWN, Fault.BLACK_VIDEO, "black")]  # content: live, but black
    assert is_live(ok) is True and is_live(stale) is False and is_live(black) is True
    assert is_live([Evidence("origin", "origin", State.UNKNOWN, None, "starting")]) is None
    evs, samples = on_air_evidence(s, "main", stale, T0 + 5)
    (ev,) = evs
    assert (ev.stage, ev.component, ev.state, ev.fault) == ("origin", "origin", State.DOWN, Fault.NOT_LIVE)
    assert "while 'Evening news' is on air (scheduled from 20:00:00 UTC)" in ev.detail
    assert [(x.labels, x.value) for x in samples] == [({"broadcast": "Evening news", "stream": "main"}, 0.0)]
    assert on_air_evidence(s, "main", ok, T0 + 5)[0] == [] and on_air_evidence(s, "main", ok, T0 + 5)[1][0].value == 1
    assert on_air_evidence(s, "main", stale, T0 - 5) == ([], [])  # pre-roll: nothing yet


def test_not_live_is_its_own_p1_at_the_origin_never_inferred_to_the_transcoder():
    loc = Localizer(LocalizerSettings(open_cycles=1), clock=lambda: T0)
    ev = [Evidence("ingest", "ingest", State.DOWN, Fault.NO_INPUT, "no publisher"),
          Evidence("origin", "origin", State.DOWN, Fault.STALE_PLAYLIST, "stale", rendition="360p"),
          Evidence("origin", "origin", State.DOWN, Fault.NOT_LIVE, "main is not live")]
    opened = {(e.incident.stage, e.incident.component, e.incident.fault): e.incident
              for e in loc.observe("main", ev, T0) if e.kind == "opened"}
    assert set(opened) == {("ingest", "ingest", "no_input"), ("origin", "origin", "not_live")}
    assert opened[("origin", "origin", "not_live")].severity == "P1"
    # two true P1s of one cause, linked (whichever opened second names the other)
    a, b = opened[("ingest", "ingest", "no_input")], opened[("origin", "origin", "not_live")]
    assert a.id in b.related or b.id in a.related


def test_not_live_is_linked_with_the_cause_the_localizer_infers_upstream():
    """The encoder stops during a broadcast and the config has no ingest or studio probe (a
    fresh user's trial): every rendition at the origin goes stale, so the transcoder is the
    inferred cause, and the stream is not live while on air. Two P1s, each true, linked."""
    clock = [T0]
    loc = Localizer(LocalizerSettings(open_cycles=2), clock=lambda: clock[0])
    stale = [Evidence("origin", "origin", State.DOWN, Fault.STALE_PLAYLIST, "stale", rendition=r)
             for r in ("180p", "360p")]
    not_live = Evidence("origin", "origin", State.DOWN, Fault.NOT_LIVE, "main is not live")
    events = []
    for cycle in ([*stale], [*stale], [*stale], [*stale, not_live], [*stale, not_live]):
        clock[0] += 1
        events += loc.observe("main", cycle, clock[0], ladder=["180p", "360p"])
    opened = {(e.incident.stage, e.incident.component, e.incident.fault): e.incident
              for e in events if e.kind == "opened"}
    cause, fact = opened[("transcode", "transcoder", "stale_playlist")], opened[("origin", "origin", "not_live")]
    assert fact.related == [cause.id]


def test_an_incident_opened_in_maintenance_is_alerted_only_if_it_outlasts_the_window():
    window = {"until": T0 + 30}

    def maintenance(stream: str, stage: str, component: str, t: float) -> str:
        return "edge swap" if (stage, component) == ("cdn", "edge-b") and t < window["until"] else ""

    loc = Localizer(LocalizerSettings(open_cycles=1, resolve_after_s=5), clock=lambda: T0, maintenance=maintenance)
    b = [Evidence("cdn", "edge-b", State.DOWN, Fault.UNREACHABLE, "refused")]
    a = [Evidence("cdn", "edge-a", State.DOWN, Fault.UNREACHABLE, "refused"),
         Evidence("cdn", "edge-c", State.OK, None, "fresh")]  # not every edge: two incidents, one per edge
    events = loc.observe("main", b + a, T0)
    muted = {e.incident.component: e.incident.maintenance for e in events}
    assert muted == {"edge-b": "edge swap", "edge-a": ""}
    assert [e.incident.component for e in alertable(events)] == ["edge-a"]
    assert loc.maintenance_over("main", T0 + 10) == []  # still in the window
    # the window ends with edge-b still down: alerted now, once
    (late,) = loc.maintenance_over("main", T0 + 31)
    assert (late.kind, late.reason, late.incident.maintenance) == ("updated", MAINTENANCE_ENDED, "")
    assert alertable([late]) == [late] and loc.maintenance_over("main", T0 + 32) == []
    # one that resolves inside its window is never alerted at all
    window["until"] = T0 + 1000
    loc2 = Localizer(LocalizerSettings(open_cycles=1, resolve_after_s=5), clock=lambda: T0, maintenance=maintenance)
    b += [Evidence("cdn", "edge-c", State.OK, None, "fresh")]
    events = loc2.observe("main", b, T0) + loc2.observe("main", [], T0 + 1) + loc2.observe("main", [], T0 + 7)
    assert [e.kind for e in events] == ["opened", "resolved"] and alertable(events) == []
