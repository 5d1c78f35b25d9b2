"""Plain words for a finding: the summary sentence and the evidence lines of an incident.

Pure (no I/O). The predicate of each sentence is the fault catalog's phrase for the stage
(probes/faults.py); the subject names the stage and component as tech support says them
(UX.md). A summary names as fine only what was measured healthy this cycle
(:attr:`agent.diagnosis.Finding.fine`), never what was not looked at. Every line goes
through the one URL redaction (probes/core/redact.py): no secret reaches an incident.
"""

from __future__ import annotations

from agent.diagnosis import Finding, fault_of
from probes.base import Evidence
from probes.core.redact import redact_text
from probes.faults import STAGE_RANK, WHOLE_TRANSCODER, Fault, FaultCatalog


def subject(stage: str, component: str) -> str:
    """The grammatical subject for a stage/component ("CDN edge-b", "The origin")."""
    if stage == "cdn":
        return "Every CDN edge" if component == "cdn" else f"CDN {component}"
    if stage == "origin":
        return "The origin" if component == "origin" else f"The origin ({component})"
    if stage == "transcode":
        return "The transcoder" if component in WHOLE_TRANSCODER else f"The {component} transcode"
    if stage == "ingest":
        return "The ingest" if component == "ingest" else f"Ingest {component}"
    if stage == "studio":
        return "The studio source" if component == "source" else f"Studio {component}"
    return f"Playback via {component}"


def phrase(catalog: FaultCatalog, fault: str, stage: str, rendition: str | None) -> str:
    """The catalog's predicate for ``fault`` at ``stage``, with its rendition filled in."""
    text = catalog[fault].phrase_at(stage)
    playlist = f"the {rendition} playlist" if rendition else "the playlist"
    of = f" ({rendition})" if rendition else ""
    return text.replace("{playlist}", playlist).replace("{of}", of)


def join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def evidence_line(e: Evidence) -> str:
    """``stage/component [rendition]: fault: detail`` (redacted)."""
    where = f"{e.stage}/{e.component}" + (f" {e.rendition}" if e.rendition else "")
    text = f"{where}: {fault_of(e)}"
    if e.detail:
        text += f": {e.detail}"
    return redact_text(text)


def _fine(f: Finding) -> str:
    return f"; {join(f.fine)} {'is' if len(f.fine) == 1 else 'are'} fine" if f.fine else ""


def summary(f: Finding, catalog: FaultCatalog) -> str:
    """One plain-words sentence: what broke where, what it explains, what was measured fine."""
    assert f.fault is not None, "a finding's fault is set by diagnose()"
    base = f.causes
    renditions = sorted({e.rendition for e in base if e.rendition and fault_of(e) == f.fault})
    rendition = renditions[0] if len(renditions) == 1 else None
    if f.stage == "transcode" and f.rendition is not None and not f.own:
        what = phrase(catalog, f.fault, "origin", None).replace("the playlist", "its playlist")
        text = f"The {f.rendition} rendition {what} at the origin" + _fine(f)
        return redact_text(text + f": the {f.rendition} transcode is at fault.")
    if f.stage == "cdn" and f.component == "cdn":
        subj = "Every CDN edge (" + ", ".join(sorted({e.component for e in f.own})) + ")"
    elif f.stage == "cdn":
        subj = f.component
    else:
        subj = subject(f.stage, f.component)
    if f.own:
        text = f"{subj} {phrase(catalog, f.fault, f.stage, rendition)}"
        if f.note:
            text += f"; {f.note}"
    elif f.stage == "transcode" and f.fault in (Fault.STALE_PLAYLIST, Fault.PLAYLIST_MISSING):
        text = f"{subj} stopped producing: {f.note}" if f.note else f"{subj} stopped producing"
    else:
        text = f"{subj} {phrase(catalog, f.fault, f.stage, None)}"
        if f.note:
            text += f" {f.note}" if f.note.startswith("in ") else f"; {f.note}"
    text += _fine(f)
    downstream = sorted({e.stage for e in f.symptoms if STAGE_RANK[e.stage] > STAGE_RANK[f.stage]},
                        key=STAGE_RANK.__getitem__)
    if f.own and downstream:
        text += f" (symptoms at {join(downstream)})"
    return redact_text(text + ".")


__all__ = ["evidence_line", "join", "phrase", "subject", "summary"]
