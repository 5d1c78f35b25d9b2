"""agent/report.py (pure figures) and agent/report_html.py (the self-contained HTML), on
a synthetic window whose truth the test writes down independently."""

from __future__ import annotations

import re

import pytest

from agent.complaints import Complaint, ComplaintType
from agent.history import HistoryStep, ViewerSession, series_key, state_key
from agent.localize import Incident
from agent.report import ReportInput, analyse, duration_words, incident_rows
from agent.report_html import render

T0 = 1_764_000_000.0  # a whole multiple of 10 s


def incident(iid: str, stage: str, comp: str, fault: str, sev: str, start: float, ttl: float,
             resolved: float | None) -> Incident:
    return Incident(id=iid, stream="main", stage=stage, component=comp, fault=fault, severity=sev,
                    started_at=start, localized_at=start + ttl, resolved_at=resolved, summary=f"{comp} {fault}",
                    evidence=[])


def window() -> ReportInput:
    steps = []
    for i in range(60):  # ten minutes of 10-s steps
        t = T0 + 10 * i
        edge_b = [10.0, 0.0, 0.0, 0.0]
        if 20 <= i <= 25:
            edge_b = [0.0, 0.0, 10.0, 0.0]  # down for a minute
        elif i == 26:
            edge_b = [6.0, 0.0, 4.0, 0.0]
        elif i == 40:
            edge_b = [7.0, 3.0, 0.0, 0.0]  # degraded 3 s
        series = {state_key("origin", "origin"): [10.0, 0.0, 0.0, 0.0], state_key("cdn", "edge-b"): edge_b,
                  state_key("playback", "edge-a"): [0.0, 0.0, 0.0, 10.0] if i < 2 else [10.0, 0.0, 0.0, 0.0],
                  series_key("download_ratio", "cdn", "edge-b", "360p"): [0.2, 0.3, 0.4 if i != 22 else 2.5],
                  series_key("stage_latency_s", "cdn", "edge-b"): [0.5, 0.6, 0.7],
                  series_key("glass_to_glass_s", "cdn", "edge-b", "360p"): [6.0, 6.5, 7.0]}
        steps.append(HistoryStep("main", t, 10.0, series))
    steps.append(HistoryStep("main", T0 + 600, 10.0, {state_key("cdn", "edge-b"): [0.0, 0.0, 10.0, 0.0]}))  # after
    incidents = [
        incident("main-1", "cdn", "edge-b", "edge_down", "P1", T0 + 200, 4.5, T0 + 265),
        incident("main-0", "origin", "origin", "http_error", "P2", T0 - 300, 3.0, T0 - 100),  # before: not in
        incident("main-2", "cdn", "edge-b", "slow_segment", "P2", T0 + 400, 7.0, T0 + 420),
        incident("main-3", "transcode", "180p", "bitrate_over_declared", "P3", T0 + 30, 12.0, None),
    ]
    complaints = [
        Complaint("c1", T0 + 210, "main", ComplaintType("stutter"), explained_by="main-1"),
        Complaint("c2", T0 + 500, "main", ComplaintType("stutter")),
        Complaint("c3", T0 + 220, "main", ComplaintType("black_or_frozen")),
        Complaint("c4", T0 + 700, "main", ComplaintType("stutter")),  # after the window
    ]
    sessions = [
        ViewerSession("main", "edge-a", "360p", T0 + 1, T0 + 600, 1.0, 0, 0.0, 590.0, 0.0, "playing"),
        ViewerSession("main", "edge-b", "360p", T0 + 1, T0 + 600, 3.0, 2, 30.0, 560.0, 0.05, "playing"),
        ViewerSession("main", "edge-b", "180p", T0 + 2, T0 + 40, None, 0, 0.0, 0.0, 0.0, "failed"),
        ViewerSession("main", "edge-b", "180p", T0 + 300, T0 + 600, 1.5, 0, 0.0, 298.0, 0.0, "playing"),
    ]
    return ReportInput("Evening news", T0, T0 + 600, ["main"], steps, incidents, complaints, sessions)


def test_figures_match_the_truth_written_down_here():
    r = analyse(window())
    avail = {a.place: a for a in r.availability}
    # edge-b: 6 x 10 s + 4 s down + 3 s degraded of 600 s measured
    assert avail["cdn/edge-b"].bad_s == 67.0 and avail["cdn/edge-b"].measured_s == 600.0
    assert avail["cdn/edge-b"].ratio == pytest.approx(533 / 600)
    assert avail["cdn/edge-b"].meets is False
    assert avail["origin/origin"].ratio == 1.0 and avail["origin/origin"].meets is True
    assert avail["playback/edge-a"].measured_s == 580.0  # unknown counts neither way
    assert avail["stream"].ratio == pytest.approx(533 / 600)
    # per stage, the alert rules' SLI (every component of the stage ok): cdn is edge-b's time here
    assert avail["cdn"].bad_s == 67.0 and avail["origin"].ratio == 1.0 and avail["playback"].measured_s == 580.0
    assert [a.place for a in r.availability][:4] == ["stream", "origin", "cdn", "playback"]
    assert [x.id for x in r.incidents] == ["main-3", "main-1", "main-2"]  # overlapping, oldest first
    by_id = {x.id: x for x in r.incidents}
    assert by_id["main-1"].localized_s == 4.5 and by_id["main-1"].resolved_s == 65.0
    assert by_id["main-3"].resolved_s is None
    assert r.faults == [("bitrate_over_declared", 1), ("edge_down", 1), ("slow_segment", 1)] or \
        sorted(r.faults) == [("bitrate_over_declared", 1), ("edge_down", 1), ("slow_segment", 1)]
    complaints = {t: (e, u) for t, e, u in r.complaints}
    assert sum(e + u for e, u in complaints.values()) == 3 and sum(e for e, _ in complaints.values()) == 1
    f = r.funnel
    assert (f.attempts, f.started, f.started_in_time, f.no_stall, f.rebuffer_ok) == (4, 3, 2, 2, 2)
    lane = next(ln for ln in r.lanes if ln.component == "edge-b")
    assert lane.states[20:26] == ["down"] * 6 and lane.states[0] == "ok"
    # 4 s down, 3 s degraded within mostly-ok steps: ok, with the shorter spell marked
    assert (lane.states[26], lane.blips[26]) == ("ok", "down") and (lane.states[40], lane.blips[40]) == ("ok", "degraded")
    assert "3 incidents (1 P1, 1 P2, 1 P3)" in r.summary
    assert "1 min 7 s degraded or down on edge-b" in r.summary
    assert "main below the 99.9% objective at cdn 88.83% (every stage ok 88.83% of the time)" in r.summary
    assert "1 still open" in r.summary and "3 viewer complaints, 1 explained" in r.summary
    body = r.to_json()
    assert body["funnel"]["attempts"] == 4 and body["incidents"][1]["fault"] == "edge_down"


def test_the_agents_own_incidents_are_in_every_report_and_other_streams_are_not():
    behind = incident("*-1", "agent", "agent", "overloaded", "P3", T0 + 100, 2.0, T0 + 160)
    behind.stream = "*"  # agent/selfwatch.py AGENT_STREAM: the agent itself was behind
    other = incident("news-1", "cdn", "edge-a", "stale_playlist", "P1", T0 + 100, 2.0, T0 + 160)
    other.stream = "news"
    rows = incident_rows([behind, other, incident("main-1", "cdn", "edge-b", "edge_down", "P1", T0 + 200, 4.5,
                                                  T0 + 265)], T0, T0 + 600, ["main"])
    assert [(r.id, r.stream, r.fault) for r in rows] == [("*-1", "*", "overloaded"), ("main-1", "main", "edge_down")]


def test_the_html_is_self_contained_and_has_every_section():
    text = render(analyse(window()))
    for sid in ("summary", "lanes-main", "latency", "download", "availability", "times", "faults", "complaints",
                "funnel", "incidents"):
        assert f"id='{sid}'" in text, sid
    assert text.count("<svg") == 8
    # nothing fetched: no src/href to anything, no CSS import or url() but the SVG's own #ids
    refs = re.findall(r"\b(?:src|href)\s*=\s*[\"']([^\"']*)", text)
    assert refs and all(r.startswith("#") for r in refs)  # the SVGs' own markers, nothing else
    assert "@import" not in text
    assert not [u for u in re.findall(r"url\(([^)]*)\)", text) if not u.startswith("#")]
    assert "<script" not in text


def test_an_empty_window_says_so_instead_of_drawing_nothing():
    inp = window()
    inp.steps, inp.incidents, inp.complaints, inp.sessions = [], [], [], []
    r = analyse(inp)
    assert r.summary.startswith("No incident; availability not measured")
    text = render(r)
    assert "No history for this stream in the window." in text and "<svg" not in text


@pytest.mark.parametrize("s, words", [(59, "59 s"), (67, "1 min 7 s"), (3600 + 120, "1 h 2 min"), (120, "2 min")])
def test_duration_words(s, words):
    assert duration_words(s) == words


def test_the_cli_reads_a_database_and_says_what_is_wrong(tmp_path, capsys):
    import json

    from agent.cli import main
    from agent.history import HistoryStore
    from agent.incidents import IncidentStore
    from agent.localize import IncidentEvent

    inp = window()
    db = tmp_path / "agent.db"
    hist, store = HistoryStore(db), IncidentStore(db)
    try:
        hist.put(inp.steps, inp.sessions)
        for inc in inp.incidents:
            store.apply(IncidentEvent("opened", inc), now=inc.localized_at)
            if inc.resolved_at is not None:
                store.apply(IncidentEvent("resolved", inc), now=inc.resolved_at)
        for c in inp.complaints:
            store.add_complaint(c)
    finally:
        hist.close()
        store.close()
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"incidents: {{path: {db}}}\nbroadcasts:\n  - {{name: Evening news, streams: [main], "
                   f"start: {T0}, end: {T0 + 600}}}\nstreams: []\n")
    out = tmp_path / "news.html"
    assert main(["report", "-c", str(cfg), "--broadcast", "Evening news", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"{out}: 3 incidents (1 P1, 1 P2, 1 P3)")
    assert out.read_text().count("<svg") == 8
    assert main(["report", "--db", str(db), "--from", str(T0), "--to", str(T0 + 600), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["streams"] == ["main"] and body["funnel"]["attempts"] == 4
    assert body["availability"][0]["place"] == "stream"
    # mistakes, each said plainly with exit 2
    for argv, needle in [
        (["report", "-c", str(cfg), "--broadcast", "Nope"], "no such broadcast (broadcasts: 'Evening news')"),
        (["report", "--db", str(tmp_path / "none.db"), "--from=-1h"], "none.db: no such file"),
        (["report", "--db", str(db), "--from", "yesterday"], "'yesterday'"),
        (["report", "--db", str(db), "--from", str(T0), "--to", str(T0 - 1)], "--to must be after --from"),
        (["report", "--from", str(T0)], "give -c CONFIG or --db FILE"),
        (["report", "--db", str(db), "--from", str(T0), "--stream", "nope"], "no stream 'nope' in"),
    ]:
        assert main(argv) == 2, argv
        assert needle in capsys.readouterr().err, argv
