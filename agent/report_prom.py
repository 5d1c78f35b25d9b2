"""The report's figures read from a Prometheus that scraped the agents (``report: {prometheus: URL}``).

Builds the same :class:`agent.history.HistoryStep` series as the agent's own history, one
``/api/v1/query_range`` per figure with ``step`` = the history step S, each value over the
S seconds before its timestamp (``avg_over_time``/``increase`` over ``[S]``), so a point at T
fills the step ``[T - S, T)``:

- state: ``avg_over_time(signalpath_stage_healthy[S])`` = the healthy share h of the step:
  ``[h*S, (1-h)*S, 0, 0]`` (Prometheus keeps healthy or not: degraded and down are one);
- gauges of :data:`agent.history.FIGURES`: ``avg_over_time`` (``[mean, mean, mean]``);
- counters: ``increase`` (``[sum]``).

Series of several agents (sites, shards) are summed or averaged by (stream, stage,
component, rendition). Errors (unreachable, a bad answer) raise :class:`ReportSourceError`
naming the query.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx

from agent.errors import AgentError
from agent.history import FIGURES, HistoryStep, series_key, state_key
from probes.core.redact import redact_text

_BY = "stream, stage, component, rendition"


class ReportSourceError(AgentError):
    """The Prometheus a report reads from could not answer."""


def _matcher(streams: list[str]) -> str:
    return "|".join(re.escape(s) for s in streams)


def queries(streams: list[str], step_s: float) -> list[tuple[str, str, str]]:
    """``(series name, how, PromQL)`` for every figure; how is ``state``, ``gauge`` or ``sum``."""
    sel = f'{{stream=~"{_matcher(streams)}"}}'
    w = f"[{int(step_s)}s]"
    out = [("state", "state", f"avg by ({_BY}) (avg_over_time(signalpath_stage_healthy{sel}{w}))")]
    for metric, (name, how) in FIGURES.items():
        if how == "sum":
            out.append((name, how, f"sum by ({_BY}) (increase({metric}{sel}{w}))"))
        else:
            out.append((name, how, f"avg by ({_BY}) (avg_over_time({metric}{sel}{w}))"))
    return out


def prometheus_steps(url: str, streams: list[str], start: float, end: float, step_s: float, *,
                     timeout_s: float = 30.0, client: httpx.Client | None = None) -> list[HistoryStep]:
    """The window's steps from Prometheus at ``url`` (see the module docstring)."""
    steps: dict[tuple[str, float], dict[str, list[float]]] = {}
    first = math.floor(start / step_s) * step_s
    own = client is None
    http = client or httpx.Client(timeout=timeout_s)
    try:
        for name, how, q in queries(streams, step_s):
            for labels, t, value in _query_range(http, url, q, first + step_s, end + step_s, step_s):
                t0 = t - step_s
                if not start - step_s < t0 < end or not math.isfinite(value):
                    continue
                stream = labels.get("stream", "")
                stage, comp, rendition = labels.get("stage", "cdn"), labels.get("component", ""), \
                    labels.get("rendition", "")
                row = steps.setdefault((stream, t0), {})
                if how == "state":
                    h = min(1.0, max(0.0, value))
                    row[state_key(stage, comp)] = [round(h * step_s, 3), round((1 - h) * step_s, 3), 0.0, 0.0]
                elif how == "sum":
                    row[series_key(name, stage, comp, rendition)] = [round(value, 4)]
                else:
                    v = round(value, 4)
                    row[series_key(name, stage, comp, rendition)] = [v, v, v]
    finally:
        if own:
            http.close()
    return [HistoryStep(stream, t, step_s, series) for (stream, t), series in sorted(steps.items(),
                                                                                      key=lambda kv: kv[0][1])]


def _query_range(http: httpx.Client, url: str, query: str, start: float, end: float, step: float
                 ) -> list[tuple[dict[str, str], float, float]]:
    api = url.rstrip("/") + "/api/v1/query_range"
    try:
        r = http.get(api, params={"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        body: dict[str, Any] = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ReportSourceError(f"prometheus {redact_text(url)}: {type(exc).__name__}: {redact_text(str(exc))}"
                                ) from None
    if r.status_code != 200 or body.get("status") != "success":
        raise ReportSourceError(f"prometheus {redact_text(url)} answered {r.status_code} to {query[:80]!r}: "
                                f"{redact_text(str(body.get('error', '')))[:200]}")
    out = []
    for result in body.get("data", {}).get("result", []):
        labels = result.get("metric", {})
        for t, v in result.get("values", []):
            out.append((labels, float(t), float(v)))
    return out
