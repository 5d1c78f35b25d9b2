"""The fault catalog (probes/faults.py): complete, closed, reachable, and used as written.

- construction refuses a duplicate (the old table silently kept the later of two entries);
- every fault a probe can report is in the catalog: Evidence refuses any other name, and no
  probe spells a fault as a bare string (they name ``Fault`` members, which this test reads
  from the source with ``ast``);
- every catalog entry is reachable from code that reports it, or marked ``reserved``;
- the two field bugs: WHEP jitter reads as the viewer's path, not the studio's; a stream
  that ended (``#EXT-X-ENDLIST``) is off air, P1.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent.localize import Localizer, LocalizerSettings
from probes.base import Evidence, State
from probes.faults import AGENT_STAGE, CATALOG, STAGES, CatalogError, Fault, FaultCatalog, FaultClass, FaultSpec

ROOT = Path(__file__).resolve().parents[1]
REPORTERS = [p for p in sorted((ROOT / "probes").rglob("*.py")) if p.name != "faults.py"] + [
    ROOT / "agent" / "runner.py", ROOT / "agent" / "diagnosis.py", ROOT / "agent" / "complaints.py",
    ROOT / "agent" / "schedule.py", ROOT / "agent" / "selfwatch.py"]


def _fault_members_used() -> set[str]:
    used: set[str] = set()
    for path in REPORTERS:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Fault":
                used.add(node.attr)
    return used


def _not_a_fault(tree: ast.AST) -> set[int]:
    """Constants that are text, not a fault: docstrings, f-string parts, figure and dict keys,
    span error labels (``error=``) and assertion messages."""
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body \
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant):
            skip.add(id(n.body[0].value))
        elif isinstance(n, ast.JoinedStr):
            skip.update(id(c) for c in ast.walk(n))
        elif isinstance(n, ast.Subscript):
            skip.add(id(n.slice))
        elif isinstance(n, ast.Dict):
            skip.update(id(k) for k in n.keys if k is not None)
        elif isinstance(n, ast.keyword) and n.arg == "error":
            skip.add(id(n.value))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "AssertionError":
            skip.update(id(a) for a in n.args)
    return skip


def _bare_fault_strings() -> list[str]:
    """String literals spelling a fault, in probe code (they must be Fault members).

    probes/base.py is left out: its ``Failure`` enum (why one attempt failed, a metric label)
    is its own closed set and shares a few words with the catalog (``timeout``, ``http_error``)."""
    names = {f.value for f in Fault}
    hits = []
    for path in REPORTERS:
        if path.name == "base.py" and path.parent.name == "probes":
            continue
        tree = ast.parse(path.read_text(), str(path))
        skip = _not_a_fault(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in skip:
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return hits


def test_a_duplicate_entry_cannot_be_constructed():
    spec = CATALOG[Fault.RTT_HIGH]
    with pytest.raises(CatalogError, match="rtt_high is defined twice"):
        FaultCatalog([spec, CATALOG[Fault.JITTER_HIGH], spec])


def test_an_unknown_stage_cannot_be_constructed():
    bad = FaultSpec(Fault.STALLS, FaultClass.PERFORMANCE, "P2", "stall", stages=frozenset({"moon"}))
    with pytest.raises(CatalogError, match="unknown stage"):
        FaultCatalog([bad])


def test_every_fault_has_exactly_one_complete_entry():
    assert set(CATALOG) == {f.value for f in Fault}
    for name, spec in CATALOG.items():
        assert spec.fault == name
        assert spec.phrase and spec.severity in ("P1", "P2", "P3"), name
        # the signal path's stages, or the agent itself (only its own faults, which explain nothing)
        assert spec.stages and (spec.stages <= set(STAGES) or spec.stages == {AGENT_STAGE}), name
        assert AGENT_STAGE not in spec.stages or (spec.placed and not spec.explains), name
        assert all(s in spec.stages for s in spec.stage_runbooks), f"{name}: a runbook for a stage it never occurs at"
        assert spec.explains <= set(Fault), name


def test_a_fault_outside_the_catalog_cannot_be_reported():
    with pytest.raises(ValueError):
        Evidence("cdn", "edge-a", State.DEGRADED, "tls_expiring")
    assert Evidence("cdn", "edge-a", State.DEGRADED, "stale_playlist").fault is Fault.STALE_PLAYLIST


def test_probes_name_faults_by_catalog_member_not_by_string():
    assert _bare_fault_strings() == []


def test_every_entry_is_reachable_or_reserved():
    used = _fault_members_used()
    unreachable = sorted(f.name for f in Fault if f.name not in used and not CATALOG[f].reserved)
    assert unreachable == [], "catalog entries no code reports (mark them reserved, or remove them)"
    reserved_but_used = sorted(f.name for f in Fault if f.name in used and CATALOG[f].reserved)
    assert reserved_but_used == [], "entries marked reserved that code does report"


def test_causal_reach_of_chronic_findings_is_narrow():
    """A bitrate overshoot, a long GOP or clipping audio explains no stale playlist and no refused connection."""
    for chronic in (Fault.BITRATE_OVER_DECLARED, Fault.KEYFRAME_INTERVAL_LONG, Fault.AUDIO_CLIPPING):
        for symptom in (Fault.STALE_PLAYLIST, Fault.UNREACHABLE, Fault.HTTP_ERROR, Fault.STALLS,
                        Fault.PLAYBACK_FAILED, Fault.SEGMENT_MISSING, Fault.SLOW_SEGMENT):
            assert not CATALOG.explains(chronic, symptom), (chronic, symptom)
    assert CATALOG.explains(Fault.STALE_PLAYLIST, Fault.STALLS)
    assert CATALOG.explains(Fault.UNREACHABLE, Fault.PLAYBACK_FAILED)
    assert not CATALOG.explains(Fault.UNREACHABLE, Fault.UNREACHABLE) or CATALOG[Fault.UNREACHABLE].own


def _open_one(evidence: list[Evidence]):
    loc = Localizer(LocalizerSettings(open_cycles=1, playback_open_cycles=1), clock=lambda: 1000.0)
    (event,) = loc.observe("main", evidence)
    return event.incident


def test_whep_jitter_reads_as_the_viewers_path_and_studio_jitter_as_the_uplink():
    whep = _open_one([Evidence("playback", "whep", State.DEGRADED, Fault.JITTER_HIGH, "jitter 48 ms")])
    assert "has high jitter" in whep.summary and "ingest" not in whep.summary
    studio = _open_one([Evidence("studio", "network", State.DEGRADED, Fault.JITTER_HIGH, "jitter 48 ms")])
    assert "unsteady path to the ingest" in studio.summary


def test_a_stream_that_ended_is_off_air_p1():
    ended = [Evidence("origin", "origin", State.DOWN, Fault.STREAM_ENDED, f"{r} playlist has #EXT-X-ENDLIST", r)
             for r in ("360p", "180p")]
    inc = _open_one(ended)
    assert (inc.fault, inc.severity) == ("stream_ended", "P1")


def test_a_misplaced_severity_cannot_be_constructed():
    bad = FaultSpec(Fault.STALLS, FaultClass.PERFORMANCE, "players stall", "P2")  # type: ignore[arg-type]
    with pytest.raises(CatalogError, match="severity"):
        FaultCatalog([bad])
