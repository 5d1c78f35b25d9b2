"""Generate the Grafana dashboards in dashboards/grafana/ (JSON, schemaVersion 39).

    python dashboards/gen_dashboards.py           # rewrite the JSON files
    python dashboards/gen_dashboards.py --check   # exit 1 if a file is out of date

Every dashboard has three template variables: ``datasource`` (type datasource,
Prometheus), ``site`` and ``stream`` (``label_values`` of ``signalpath_stage_healthy``,
multi-select with "All" = ``.*``). Every panel title is a question (shared/UX.md).
Only ``signalpath_*`` metrics are queried: the agent does not register the
process collector, so there are no ``process_*`` series to chart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "grafana"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'site=~"$site", stream=~"$stream"'


def _var(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "definition": query, "query": {"query": query, "refId": f"{name}-var"},
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "hide": 0, "options": [], "regex": "",
    }


def templating() -> dict[str, Any]:
    return {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []},
        _var("site", "label_values(signalpath_stage_healthy, site)", "Site"),
        _var("stream", 'label_values(signalpath_stage_healthy{site=~"$site"}, stream)', "Stream"),
    ]}


def panel(pid: int, title: str, targets: list[tuple[str, str]], *, kind: str = "timeseries", unit: str = "short",
          x: int = 0, y: int = 0, w: int = 12, h: int = 8, description: str = "",
          thresholds: list[tuple[float | None, str]] | None = None, mappings: list[dict] | None = None,
          instant: bool = False) -> dict[str, Any]:
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    return {
        "id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                     "instant": instant, "range": not instant}
                    for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                     "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


HEALTH_MAP = [{"type": "value", "options": {"0": {"text": "BAD", "color": "red", "index": 0},
                                            "1": {"text": "OK", "color": "green", "index": 1}}}]
HEALTH_T = [(None, "red"), (1, "green")]


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["signalpath"],
        "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "timezone": "utc",
        "templating": templating(), "annotations": {"list": []}, "links": [
            {"title": "signalpath", "type": "dashboards", "tags": ["signalpath"], "asDropdown": True}],
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    return dashboard("signalpath-overview", "signalpath / Overview",
                     "Every stream's signal path: stage states, failures, playlist freshness.", [
        panel(1, "Which stage or component is unhealthy right now?",
              [(f"min by (stream, stage, component) (signalpath_stage_healthy{{{SEL}}})",
                "{{stream}} {{stage}}/{{component}}")],
              kind="state-timeline", w=24, h=9, mappings=HEALTH_MAP, thresholds=HEALTH_T,
              description="1 = ok, 0 = degraded or down, worst of the selected sites."),
        panel(2, "Which edge is bad from every site, and which from one site only?",
              [('sum by (stream, component) (1 - signalpath_stage_healthy{stage="cdn", stream=~"$stream"})'
                ' / count by (stream, component) (signalpath_stage_healthy{stage="cdn", stream=~"$stream"})',
                "{{stream}} {{component}}")],
              kind="bargauge", unit="percentunit", y=9, w=12,
              thresholds=[(None, "green"), (0.01, "orange"), (0.999, "red")],
              description="Share of sites that see the edge bad. 100 %: the edge itself. Below 100 %: "
                          "the network path of the sites that see it bad."),
        panel(3, "Which probes failed in the last 15 minutes, and why?",
              [(f"sum by (stream, stage, component, reason) (increase(signalpath_probe_failures_total{{{SEL}}}[15m]))",
                "{{stream}} {{component}} {{reason}}")],
              kind="bargauge", y=9, x=12, w=12, thresholds=[(None, "green"), (1, "red")]),
        panel(4, "How long since each playlist last advanced?",
              [(f"max by (stream, stage, component) (signalpath_playlist_age_seconds{{{SEL}}})",
                "{{stream}} {{component}}")],
              unit="s", y=17, w=12,
              description="Stale when above 1.5 x the target duration (RFC 8216 reload rule)."),
        panel(5, "Which endpoints is the agent failing to probe?",
              [(f"min by (stream, stage, component) (signalpath_probe_success{{{SEL}}})",
                "{{stream}} {{component}}")],
              kind="state-timeline", y=17, x=12, w=12, mappings=HEALTH_MAP, thresholds=HEALTH_T),
    ])


def stream_detail() -> dict[str, Any]:
    by = "{{site}} {{component}} {{rendition}}"
    return dashboard("signalpath-stream", "signalpath / Stream detail",
                     "One stream's origin and edges side by side, per rendition.", [
        panel(1, "Which playlist is stale (age vs 1.5 x target duration)?",
              [(f"signalpath_playlist_age_seconds{{{SEL}}}", by),
               (f"1.5 * max by (stream) (signalpath_playlist_target_duration_seconds{{{SEL}}})",
                "stale above ({{stream}})")],
              unit="s", w=12),
        panel(2, "Which edge is behind?",
              [(f'signalpath_edge_lag_segments{{{SEL}, stage="cdn"}}', by)], x=12, w=12,
              thresholds=[(None, "green"), (3, "red")],
              description="Segments the edge lists behind the origin's newest."),
        panel(3, "Would a viewer stall downloading segments (download ratio > 1)?",
              [(f"signalpath_segment_download_ratio{{{SEL}}}", by)], y=8, w=12,
              unit="percentunit", thresholds=[(None, "green"), (1, "red")]),
        panel(4, "How far behind live is each endpoint?",
              [(f"signalpath_live_latency_seconds{{{SEL}}}", by)], unit="s", y=8, x=12, w=12),
        panel(5, "How long until a segment's first byte arrives?",
              [(f"signalpath_segment_first_byte_seconds{{{SEL}}}", by)], unit="s", y=16, w=12),
        panel(6, "How long does each probe attempt take?",
              [(f"signalpath_probe_duration_seconds{{{SEL}}}", "{{site}} {{component}} {{probe}}")],
              unit="s", y=16, x=12, w=12),
        panel(7, "Where does playlist fetch time go (connect, first byte, transfer)?",
              [(f"sum by (stage, component, phase) (signalpath_playlist_fetch_seconds{{{SEL}}})",
                "{{component}} {{phase}}")], unit="s", y=24, w=12),
        panel(8, "Are origin and edges on the same media sequence?",
              [(f"signalpath_playlist_media_sequence{{{SEL}}}", by)], y=24, x=12, w=12),
        panel(9, "How fast do segments download?",
              [(f"signalpath_segment_throughput_bytes_per_second{{{SEL}}}", by)], unit="Bps", y=32, w=12),
        panel(10, "Which segment downloads fail, and why?",
              [(f"sum by (component, rendition, reason) "
                f"(rate(signalpath_segment_errors_total{{{SEL}}}[$__rate_interval]))",
                "{{component}} {{rendition}} {{reason}}")], unit="reqps", y=32, x=12, w=12),
    ])


def agent() -> dict[str, Any]:
    return dashboard("signalpath-agent", "signalpath / Agent",
                     "The agents themselves: probe cost, failures, coverage. (The agent exports no "
                     "process_* metrics, so CPU and memory are not charted here.)", [
        panel(1, "How long do probe attempts take?",
              [(f"max by (site, probe, stage) (signalpath_probe_duration_seconds{{{SEL}}})",
                "{{site}} {{probe}} {{stage}} max"),
               (f"avg by (site, probe) (signalpath_probe_duration_seconds{{{SEL}}})", "{{site}} {{probe}} avg")],
              unit="s", w=12),
        panel(2, "Why do probes fail?",
              [(f"sum by (site, probe, reason) (rate(signalpath_probe_failures_total{{{SEL}}}[$__rate_interval]))",
                "{{site}} {{probe}} {{reason}}")], unit="ops", x=12, w=12),
        panel(3, "How many targets does each agent probe, and how many succeed?",
              [(f"count by (site) (signalpath_probe_success{{{SEL}}})", "{{site}} targets"),
               (f"sum by (site) (signalpath_probe_success{{{SEL}}})", "{{site}} succeeding")],
              y=8, w=12),
        panel(4, "Which sites report which streams?",
              [(f"count by (site, stream) (signalpath_stage_healthy{{{SEL}}})", "{{site}} {{stream}}")],
              kind="table", y=8, x=12, w=12, instant=True),
    ])


DASHBOARDS = {"overview.json": overview, "stream.json": stream_detail, "agent.json": agent}


def render() -> dict[str, str]:
    return {name: json.dumps(fn(), indent=2) + "\n" for name, fn in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
            if not args.check:
                OUT.mkdir(exist_ok=True)
                path.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/gen_dashboards.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
