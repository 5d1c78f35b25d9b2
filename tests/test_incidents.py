"""The incident store: SQLite WAL, restart, kill -9, counts, metric values."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.incidents import (
    AsyncIncidentStore,
    IncidentStore,
    open_incident_samples,
    time_to_localize_observations,
)
from agent.localize import Incident, IncidentEvent, Localizer
from probes.base import Evidence, State

ROOT = Path(__file__).resolve().parents[1]


def inc(i: int, fault="stale_playlist", resolved=None, component="edge-b", started=1000.0) -> Incident:
    return Incident(
        id=f"main-{i}", stream="main", stage="cdn", component=component, fault=fault, severity="P2",
        started_at=started + i, localized_at=started + i + 3.5, resolved_at=resolved,
        summary=f"edge-b stopped updating the 360p playlist ({i})", evidence=["cdn/edge-b 360p: stale_playlist"],
        runbook="fail over",
    )


def test_roundtrip_states_and_counts(tmp_path):
    store = IncidentStore(tmp_path / "sub" / "inc.db")
    store.apply(IncidentEvent("opened", inc(1)))
    store.apply(IncidentEvent("opened", inc(2, fault="unreachable", component="edge-a")))
    store.apply(IncidentEvent("opened", inc(3)))
    store.apply(IncidentEvent("resolved", inc(3, resolved=1010.0)))  # upsert, not a second row
    assert [i.id for i in store.list("open")] == ["main-2", "main-1"]
    assert [i.id for i in store.list("resolved")] == ["main-3"]
    assert len(store.list("all")) == 3
    assert store.get("main-3").resolved_at == 1010.0
    assert store.get("main-1").evidence == ["cdn/edge-b 360p: stale_playlist"]
    assert store.counts_by_fault() == {"stale_playlist": 2, "unreachable": 1}
    assert store.counts_by_fault(since=1002.5) == {"stale_playlist": 1}
    with pytest.raises(ValueError):
        store.list("closed")
    mode = sqlite3.connect(tmp_path / "sub" / "inc.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_history_survives_restart_and_localizer_resumes(tmp_path):
    path = tmp_path / "inc.db"
    t = [1000.0]
    loc = Localizer(clock=lambda: t[0])
    bad = [Evidence("origin", "origin", State.DOWN, "unreachable", rendition="360p")]
    store = IncidentStore(path)
    for _ in range(2):
        for e in loc.observe("main", bad):
            store.apply(e)
        t[0] += 2
    store.close()

    store2 = IncidentStore(path)  # the agent restarts
    (open_inc,) = store2.list("open")
    assert (open_inc.stage, open_inc.component, open_inc.fault) == ("origin", "origin", "unreachable")
    loc2 = Localizer(clock=lambda: t[0])
    loc2.restore(store2.list("open"))
    events = []
    for _ in range(10):
        t[0] += 2
        events += loc2.observe("main", [Evidence("origin", "origin", State.OK, rendition="360p")])
    assert [(e.kind, e.incident.id) for e in events] == [("resolved", open_inc.id)]
    for e in events:
        store2.apply(e)
    assert store2.list("open") == [] and store2.list("resolved")[0].id == open_inc.id
    store2.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from agent.incidents import IncidentStore
    from agent.localize import Incident, IncidentEvent
    store = IncidentStore({path!r})
    for i in range(50):
        store.apply(IncidentEvent("opened", Incident(f"k-{{i}}", "main", "cdn", "edge-a", "unreachable",
                                                     "P2", 1.0 + i, 2.0 + i)))
    print("committed", flush=True)
    while True:
        time.sleep(1)
    """
)


def test_survives_kill_9(tmp_path):
    path = tmp_path / "inc.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(path))],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # blocks until the child says it committed (or exits)
        assert line.strip() == "committed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    store = IncidentStore(path)
    assert len(store.list("open")) == 50
    assert store.counts_by_fault() == {"unreachable": 50}
    store.close()


async def test_async_store_runs_off_loop(tmp_path):
    store = AsyncIncidentStore(tmp_path / "a.db")
    await store.open()
    await store.apply_all([IncidentEvent("opened", inc(1)), IncidentEvent("opened", inc(2))])
    await store.apply(IncidentEvent("resolved", inc(1, resolved=2000.0)))
    assert [i.id for i in await store.list("open")] == ["main-2"]
    assert [i.id for i in await store.list("resolved")] == ["main-1"]
    assert await store.counts_by_fault() == {"stale_playlist": 2}
    await store.close()


def test_metric_values():
    open_a, open_b, closed = inc(1), inc(2), inc(3, resolved=5.0)
    samples = open_incident_samples([open_a, open_b, closed], {"site": "studio-a"})
    assert len(samples) == 1
    (s,) = samples
    assert s.name == "signalpath_incidents_open" and s.value == 2.0
    assert s.labels == {
        "site": "studio-a", "stream": "main", "stage": "cdn", "component": "edge-b",
        "fault": "stale_playlist", "severity": "P2",
    }
    events = [IncidentEvent("opened", open_a), IncidentEvent("resolved", closed)]
    assert time_to_localize_observations(events) == [pytest.approx(3.5)]


def test_unusable_path_is_agent_error(tmp_path):
    from agent.errors import AgentError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AgentError):
        IncidentStore(blocker / "inc.db")


def test_store_keeps_every_change_and_never_rewrites_the_cause(tmp_path):
    """The store's timeline holds opened / escalated / resolved; a caller sending another fault
    for the same id cannot rewrite the stored cause (stage, component, fault, onset)."""
    store = IncidentStore(tmp_path / "inc.db")
    inc = Incident("main-1", "main", "cdn", "edge-b", "http_error", "P2", 100.0, 104.0, summary="edge-b 429")
    store.apply(IncidentEvent("opened", inc))
    store.apply(IncidentEvent("updated", dataclasses.replace(inc, severity="P1")), now=110.0)
    store.apply(IncidentEvent("updated", dataclasses.replace(inc, fault="sequence_jump", stage="origin",
                                                              started_at=1.0)), now=111.0)
    store.apply(IncidentEvent("resolved", dataclasses.replace(inc, severity="P1", resolved_at=120.0)))
    got = store.get("main-1")
    assert (got.stage, got.component, got.fault, got.started_at) == ("cdn", "edge-b", "http_error", 100.0)
    assert [(c["kind"], c["severity"], c["at"]) for c in store.timeline("main-1")] == [
        ("opened", "P2", 104.0), ("updated", "P1", 110.0), ("updated", "P2", 111.0), ("resolved", "P1", 120.0)]
    store.close()
    r = subprocess.run([sys.executable, "-m", "agent.cli", "incidents", "--db", str(tmp_path / "inc.db"),
                        "--show", "main-1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "cdn/edge-b http_error" in r.stdout and "resolved" in r.stdout and "sequence_jump" not in r.stdout
    r = subprocess.run([sys.executable, "-m", "agent.cli", "incidents", "--db", str(tmp_path / "inc.db"),
                        "--show", "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no incident 'nope'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "agent.cli", "incidents", "--db", str(tmp_path / "inc.db"),
                        "--limit", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--limit: 0 is not a positive number" in r.stderr, r.stderr  # not "all of them"


def test_related_incidents_are_stored_shown_and_an_older_store_gains_the_column(tmp_path):
    """Issue 14: a different fault at the same place is its own incident, linked. The link is
    kept by the store (an older store without the column is migrated in place), given by the
    API shape and printed by `incidents --show` with the linked incident's fault and state."""
    db = tmp_path / "inc.db"
    old = sqlite3.connect(db)  # the store's first schema, before links existed
    old.executescript("CREATE TABLE incidents (id TEXT PRIMARY KEY, stream TEXT NOT NULL, stage TEXT NOT NULL, "
                      "component TEXT NOT NULL, fault TEXT NOT NULL, severity TEXT NOT NULL, started_at REAL NOT NULL, "
                      "localized_at REAL NOT NULL, resolved_at REAL, summary TEXT NOT NULL DEFAULT '', "
                      "evidence TEXT NOT NULL DEFAULT '[]', runbook TEXT NOT NULL DEFAULT '');"
                      "INSERT INTO incidents VALUES ('main-0','main','transcode','transcoder','stale_playlist','P1',"
                      "10,12,NULL,'stale','[]','');")
    old.close()
    store = IncidentStore(db)
    assert store.get("main-0").related == []
    gop = Incident("main-1", "main", "transcode", "transcoder", "keyframe_interval_long", "P3", 20.0, 22.0,
                   summary="long GOP", related=["main-0"])
    store.apply(IncidentEvent("opened", gop))
    assert store.get("main-1").related == ["main-0"] and gop.to_api()["related"] == ["main-0"]
    store.close()
    r = subprocess.run([sys.executable, "-m", "agent.cli", "incidents", "--db", str(db), "--show", "main-1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "related" in r.stdout and "main-0  P1 stale_playlist, open" in r.stdout
    # the list names each incident's id (what --show needs) and, once resolved, when and how long
    store = IncidentStore(db)
    store.apply(IncidentEvent("resolved", dataclasses.replace(gop, resolved_at=20.0 + 185)))
    store.close()
    r = subprocess.run([sys.executable, "-m", "agent.cli", "incidents", "--db", str(db)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "id main-1; resolved " in r.stdout and "lasted 3 min" in r.stdout and "id main-0 (details" in r.stdout
