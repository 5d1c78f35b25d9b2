"""Runbook hints: the one line of "DO THIS" an incident carries (UX.md, status page).

A hint is looked up by the incident's stage and fault type, most specific first:

1. ``overrides["<stage>/<fault>"]``, 2. ``overrides["<fault>"]``,
3. the fault catalog's line for that stage (``FaultSpec.stage_runbooks``), then its
   general line (``FaultSpec.runbook``) — probes/faults.py holds every fault's runbook,
4. :data:`STAGE_RUNBOOKS` ``["<stage>"]``, 5. the generic line.

Hints are ``str.format`` templates with ``{stream}``, ``{stage}``, ``{component}`` and
``{fault}``; an unknown placeholder in an operator's override is left as written
rather than failing the incident. The defaults follow the three-level emergency
response of a broadcast: restore the viewers' picture first (fail over), then open
the ticket with the evidence.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from probes.faults import CATALOG, FaultCatalog

GENERIC_RUNBOOK = (
    "Check {stage} {component} for stream {stream}; the evidence list says what was measured."
)

STAGE_RUNBOOKS: Mapping[str, str] = {
    "cdn": "Fail viewers over to a healthy edge and open a CDN ticket for {component}.",
    "origin": "Check the origin server and its disk; fail over to the backup origin if it does not recover.",
    "transcode": "Restart the transcoder; switch to the backup transcoder if it does not recover.",
    "ingest": "Check the ingest server and the encoder's connection; use the backup ingest URL if needed.",
    "studio": "Check the studio equipment ({component}) and the encoder.",
    "playback": "Check what players via {component} see; compare with the edges' evidence.",
}
"""A stage's line when neither an override nor the catalog has one for the fault."""


class _Keep(dict[str, str]):
    def __missing__(self, key: str) -> str:  # leave unknown placeholders as written
        return "{" + key + "}"


def _render(template: str, values: Mapping[str, str]) -> str:
    try:
        return string.Formatter().vformat(template, (), _Keep(values))
    except (ValueError, IndexError, AttributeError):  # a malformed operator template
        return template


class Runbooks:
    """Runbook lookup with operator overrides (see the module docstring for the order)."""

    def __init__(self, overrides: Mapping[str, str] | None = None, catalog: FaultCatalog = CATALOG) -> None:
        self._overrides = dict(overrides or {})
        self._catalog = catalog

    def hint(self, *, stream: str, stage: str, component: str, fault: str) -> str:
        values = {"stream": stream, "stage": stage, "component": component, "fault": fault}
        for key in (f"{stage}/{fault}", fault):
            if key in self._overrides:
                return _render(self._overrides[key], values)
        spec = self._catalog.get(fault)
        line = spec.runbook_at(stage) if spec is not None else None
        return _render(line or STAGE_RUNBOOKS.get(stage, GENERIC_RUNBOOK), values)
