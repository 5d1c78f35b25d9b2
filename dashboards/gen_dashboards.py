"""Generate the Grafana dashboards in dashboards/grafana/ (JSON, schemaVersion 39).

    python dashboards/gen_dashboards.py           # rewrite the JSON files
    python dashboards/gen_dashboards.py --check   # exit 1 if a file is out of date

Every dashboard has three template variables: ``datasource`` (type datasource,
Prometheus), ``site`` and ``stream`` (``label_values`` of ``signalpath_stage_healthy``,
multi-select with "All" = ``.*``). Every panel title is a question (shared/UX.md).
Dashboards: Overview, Stream detail, Studio, Agent. Queries name ``signalpath_*``
metrics (agent/metrics.py CATALOG) and, on the Agent dashboard, the ``process_*``
metrics of prometheus_client's ProcessCollector, which carry no ``site`` label: it is
joined from the agent's own series on the scrape ``instance``.
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
                     "Every stream's signal path: stage states, open incidents, glass-to-glass, failures.", [
        panel(1, "Which stage or component is unhealthy right now?",
              [(f"min by (stream, stage, component) (signalpath_stage_healthy{{{SEL}}})",
                "{{stream}} {{stage}}/{{component}}")],
              kind="state-timeline", w=24, h=9, mappings=HEALTH_MAP, thresholds=HEALTH_T,
              description="1 = ok, 0 = degraded or down, worst of the selected sites."),
        panel(2, "Which incidents are open, where, and how bad?",
              [(f"max by (stream, stage, component, fault, severity) (signalpath_incidents_open{{{SEL}}})",
                "{{severity}} {{stream}} {{stage}}/{{component}} {{fault}}")],
              kind="state-timeline", y=9, w=12, thresholds=[(None, "green"), (1, "red")],
              description="Root-cause incidents the agents' localizer holds open. P1 off air, P2 degraded, "
                          "P3 at risk (shared/UX.md)."),
        panel(3, "How long from the camera to a viewer on each edge (glass-to-glass)?",
              [(f"max by (stream, component) (signalpath_glass_to_glass_seconds{{{SEL}}})",
                "{{stream}} {{component}}")],
              unit="s", y=9, x=12, w=12,
              description="Edge first-seen minus the capture time of the segment's last frame (beacon, "
                          "else EXT-X-PROGRAM-DATE-TIME)."),
        panel(4, "Which edge is bad from every site, and which from one site only?",
              [('sum by (stream, component) (1 - signalpath_stage_healthy{stage="cdn", stream=~"$stream"})'
                ' / count by (stream, component) (signalpath_stage_healthy{stage="cdn", stream=~"$stream"})',
                "{{stream}} {{component}}")],
              kind="bargauge", unit="percentunit", y=17, w=12,
              thresholds=[(None, "green"), (0.01, "orange"), (0.999, "red")],
              description="Share of sites that see the edge bad. 100 %: the edge itself. Below 100 %: "
                          "the network path of the sites that see it bad."),
        panel(5, "Which probes failed in the last 15 minutes, and why?",
              [(f"sum by (stream, stage, component, reason) (increase(signalpath_probe_failures_total{{{SEL}}}[15m]))",
                "{{stream}} {{component}} {{reason}}")],
              kind="bargauge", y=17, x=12, w=12, thresholds=[(None, "green"), (1, "red")]),
        panel(6, "How long since each playlist last advanced?",
              [(f"max by (stream, stage, component) (signalpath_playlist_age_seconds{{{SEL}}})",
                "{{stream}} {{component}}")],
              unit="s", y=25, w=12,
              description="Stale when above 1.5 x the target duration (RFC 8216 reload rule)."),
        panel(7, "How long did the agents take to localize each fault?",
              [(f"histogram_quantile(0.9, sum by (le, stream, stage) "
                f"(increase(signalpath_time_to_localize_seconds_bucket{{{SEL}}}[15m])))",
                "{{stream}} {{stage}} p90")],
              unit="s", y=25, x=12, w=12,
              description="From a fault's first bad evidence to its incident opening (90th percentile, 15 min)."),
    ])


def stream_detail() -> dict[str, Any]:
    by = "{{site}} {{component}} {{rendition}}"
    return dashboard("signalpath-stream", "signalpath / Stream detail",
                     "One stream from ingest to viewer: latency per stage, origin and edges side by side, "
                     "playback QoE, media health, ingest and WebRTC.", [
        # latency
        panel(1, "How much delay does each stage add?",
              [(f"signalpath_stage_latency_seconds{{{SEL}}}", "{{site}} {{stage}}/{{component}} ({{method}})")],
              unit="s", w=12,
              description="transcode: origin first-seen minus capture; cdn/<edge>: edge first-seen minus origin "
                          "first-seen."),
        panel(2, "How far behind the camera is each edge (glass-to-glass)?",
              [(f"signalpath_glass_to_glass_seconds{{{SEL}}}", "{{site}} {{component}} {{rendition}} ({{method}})")],
              unit="s", x=12, w=12),
        # HLS, origin vs edges
        panel(3, "Which playlist is stale (age vs 1.5 x target duration)?",
              [(f"signalpath_playlist_age_seconds{{{SEL}}}", by),
               (f"1.5 * max by (stream) (signalpath_playlist_target_duration_seconds{{{SEL}}})",
                "stale above ({{stream}})")],
              unit="s", y=8, w=12),
        panel(4, "Which edge is behind?",
              [(f'signalpath_edge_lag_segments{{{SEL}, stage="cdn"}}', by)], y=8, x=12, w=12,
              thresholds=[(None, "green"), (3, "red")],
              description="Segments the edge lists behind the origin's newest."),
        panel(5, "Would a viewer stall downloading segments (download ratio > 1)?",
              [(f"signalpath_segment_download_ratio{{{SEL}}}", by)], y=16, w=12,
              unit="percentunit", thresholds=[(None, "green"), (1, "red")]),
        panel(6, "How do the edges compare with the origin on first byte and download time?",
              [(f"max by (stage, component) (signalpath_segment_first_byte_seconds{{{SEL}}})",
                "{{component}} first byte"),
               (f"max by (stage, component) (signalpath_segment_download_seconds{{{SEL}}})",
                "{{component}} download")], unit="s", y=16, x=12, w=12),
        panel(7, "How far behind live is each endpoint?",
              [(f"signalpath_live_latency_seconds{{{SEL}}}", by)], unit="s", y=24, w=12),
        panel(8, "Are origin and edges on the same media sequence?",
              [(f"signalpath_playlist_media_sequence{{{SEL}}}", by)], y=24, x=12, w=12),
        panel(9, "Where does playlist fetch time go (connect, first byte, transfer)?",
              [(f"sum by (stage, component, phase) (signalpath_playlist_fetch_seconds{{{SEL}}})",
                "{{component}} {{phase}}")], unit="s", y=32, w=12),
        panel(10, "How fast do segments download?",
              [(f"signalpath_segment_throughput_bytes_per_second{{{SEL}}}", by)], unit="Bps", y=32, x=12, w=12),
        panel(11, "Which segment downloads fail, and why?",
              [(f"sum by (component, rendition, reason) "
                f"(rate(signalpath_segment_errors_total{{{SEL}}}[$__rate_interval]))",
                "{{component}} {{rendition}} {{reason}}")], unit="reqps", y=40, w=12),
        panel(12, "How long does each probe attempt take?",
              [(f"signalpath_probe_duration_seconds{{{SEL}}}", "{{site}} {{component}} {{probe}}")],
              unit="s", y=40, x=12, w=12),
        # playback QoE (simulated viewers)
        panel(13, "How long until a viewer sees the first frame?",
              [(f"signalpath_playback_startup_seconds{{{SEL}}}", by)], unit="s", y=48, w=8,
              description="Request to first frame of the current simulated session (CTA-2066 initialStartupTime)."),
        panel(14, "How often do viewers stall?",
              [(f"sum by (site, component, rendition) (increase(signalpath_playback_stalls_total{{{SEL}}}[1m]))",
                by)], y=48, x=8, w=8, thresholds=[(None, "green"), (1, "red")],
              description="Stalls per minute (buffer dry >= 1.25 s, the hls.js rule)."),
        panel(15, "What share of watching time is spent rebuffering?",
              [(f"signalpath_playback_rebuffer_ratio{{{SEL}}}", by),
               (f"sum by (site, component, rendition) "
                f"(rate(signalpath_playback_stall_seconds_total{{{SEL}}}[$__rate_interval]))", by + " stalled s/s")],
              unit="percentunit", y=48, x=16, w=8),
        # media health (origin content)
        panel(16, "Is the picture frozen or black?",
              [(f"max by (site, component, rendition) (signalpath_video_frozen{{{SEL}}})", by + " frozen"),
               (f"max by (site, component, rendition) (signalpath_video_black{{{SEL}}})", by + " black")],
              kind="state-timeline", y=56, w=12, thresholds=[(None, "green"), (1, "red")],
              mappings=[{"type": "value", "options": {"0": {"text": "OK", "color": "green", "index": 0},
                                                      "1": {"text": "YES", "color": "red", "index": 1}}}],
              description="Frozen: near-identical frames >= 2 s; black: mean luma < 20 for >= 2 s (testrtc)."),
        panel(17, "Is there sound (audio level)?",
              [(f"signalpath_audio_level_dbfs{{{SEL}}}", by)], unit="dB", y=56, x=12, w=12,
              thresholds=[(None, "red"), (-50, "green")],
              description="RMS level of the newest analysed segment; below -50 dBFS is silence (AWS MediaLive)."),
        panel(18, "Are audio and video in sync?",
              [(f"signalpath_av_sync_offset_seconds{{{SEL}}}", by)], unit="s", y=64, w=8,
              thresholds=[(None, "green"), (0.08, "orange"), (0.2, "red")],
              description="Audio start minus video start; warn beyond 80 ms, fault beyond 200 ms."),
        panel(19, "How far apart are key frames?",
              [(f"signalpath_keyframe_interval_seconds{{{SEL}}}", by)], unit="s", y=64, x=8, w=8,
              thresholds=[(None, "green"), (4, "red")],
              description="<= 4 s accepted, 2 s recommended (YouTube Live gopSizeLong)."),
        panel(20, "Do segments fail to decode?",
              [(f"sum by (site, component, rendition) "
                f"(increase(signalpath_segment_decode_errors_total{{{SEL}}}[5m]))", by)],
              y=64, x=16, w=8, thresholds=[(None, "green"), (1, "red")]),
        # ingest and WebRTC
        panel(21, "Does the ingest have a publisher, and at what bitrate?",
              [(f"signalpath_ingest_publisher_present{{{SEL}}}", "{{site}} {{component}} publisher"),
               (f"signalpath_ingest_input_bits_per_second{{{SEL}}}", "{{site}} {{component}} input bit/s")],
              y=72, w=12),
        panel(22, "How long does an ingest connection take to set up, and how fast does it upload?",
              [(f"sum by (site, component, phase) (signalpath_ingest_connect_seconds{{{SEL}}})",
                "{{site}} {{component}} {{phase}}"),
               (f"signalpath_ingest_upload_bits_per_second{{{SEL}}} / 1e9", "{{site}} {{component}} upload Gbit/s")],
              y=72, x=12, w=12),
        panel(23, "Is the WebRTC round trip and jitter good enough?",
              [(f"signalpath_webrtc_rtt_seconds{{{SEL}}}", "{{site}} {{stage}}/{{component}} RTT"),
               (f"signalpath_webrtc_jitter_seconds{{{SEL}}}", "{{site}} {{stage}}/{{component}} jitter")],
              unit="s", y=80, w=8, thresholds=[(None, "green"), (0.1, "orange"), (0.2, "red")],
              description="RTT green < 100 ms, red >= 200 ms (XSplit); jitter good < 30 ms (Twilio)."),
        panel(24, "Do WebRTC sessions lose packets or freeze?",
              [(f"sum by (site, stage, component) (increase(signalpath_webrtc_packets_lost_total{{{SEL}}}[5m]))",
                "{{site}} {{stage}}/{{component}} lost"),
               (f"sum by (site, stage, component) (increase(signalpath_webrtc_freezes_total{{{SEL}}}[5m]))",
                "{{site}} {{stage}}/{{component}} freezes")],
              y=80, x=8, w=8, thresholds=[(None, "green"), (1, "red")]),
        panel(25, "How long until a WebRTC viewer sees the first frame?",
              [(f"signalpath_webrtc_time_to_first_frame_seconds{{{SEL}}}", "{{site}} {{component}}")],
              unit="s", y=80, x=16, w=8),
    ])


def studio() -> dict[str, Any]:
    c = "{{site}} {{component}}"
    return dashboard("signalpath-studio", "signalpath / Studio",
                     "The studio stage: encoder host, encoder processes, GPU, sources, network to the ingest, "
                     "clock.", [
        panel(1, "Is the encoder host's CPU saturated?",
              [(f"signalpath_host_cpu_ratio{{{SEL}}}", c)], unit="percentunit", w=8,
              thresholds=[(None, "green"), (0.8, "orange"), (0.95, "red")]),
        panel(2, "Is the encoder host running out of memory?",
              [(f"signalpath_host_memory_available_bytes{{{SEL}}}", c)], unit="bytes", x=8, w=8),
        panel(3, "Is the recording volume filling up?",
              [(f"signalpath_disk_free_bytes{{{SEL}}}", c)], unit="bytes", x=16, w=8),
        panel(4, "Are the encoder processes running?",
              [(f"signalpath_encoder_process_up{{{SEL}}}", c + " process"),
               (f"signalpath_encoder_running{{{SEL}}}", c + " output")],
              kind="state-timeline", y=8, w=12, mappings=HEALTH_MAP, thresholds=HEALTH_T),
        panel(5, "Are the capture devices and feeds present?",
              [(f"signalpath_source_present{{{SEL}}}", c)],
              kind="state-timeline", y=8, x=12, w=12, mappings=HEALTH_MAP, thresholds=HEALTH_T),
        panel(6, "Do the feeds deliver their frame rate?",
              [(f"signalpath_source_frame_rate{{{SEL}}}", c)], y=16, w=12),
        panel(7, "Do the feeds carry sound?",
              [(f"signalpath_source_audio_level_dbfs{{{SEL}}}", c)], unit="dB", y=16, x=12, w=12,
              thresholds=[(None, "red"), (-50, "green")],
              description="Below -50 dBFS is silence (AWS MediaLive)."),
        panel(8, "Is the GPU or its video encoder saturated?",
              [(f"signalpath_gpu_utilization_ratio{{{SEL}}}", c + " GPU"),
               (f"signalpath_gpu_encoder_utilization_ratio{{{SEL}}}", c + " NVENC")],
              unit="percentunit", y=24, w=8, thresholds=[(None, "green"), (0.9, "orange"), (0.98, "red")]),
        panel(9, "How many GPU encoder sessions run, and how much GPU memory do they use?",
              [(f"signalpath_gpu_encoder_sessions{{{SEL}}}", c + " sessions"),
               (f"signalpath_gpu_memory_used_bytes{{{SEL}}} / 2^30", c + " memory GiB")], y=24, x=8, w=8),
        panel(10, "Is the GPU running hot?",
              [(f"signalpath_gpu_temperature_celsius{{{SEL}}}", c)], unit="celsius", y=24, x=16, w=8,
              thresholds=[(None, "green"), (85, "red")]),
        panel(11, "What is the round trip and jitter to the ingest?",
              [(f"signalpath_network_rtt_seconds{{{SEL}}}", c + " RTT"),
               (f"signalpath_network_jitter_seconds{{{SEL}}}", c + " jitter")],
              unit="s", y=32, w=8, thresholds=[(None, "green"), (0.1, "orange"), (0.2, "red")]),
        panel(12, "Is the uplink fast enough for the stream?",
              [(f"signalpath_uplink_bits_per_second{{{SEL}}}", c)], unit="bps", y=32, x=8, w=8,
              description="Needs >= 1.5 x the target bitrate (common encoder guidance)."),
        panel(13, "Is the clock in sync?",
              [(f"signalpath_clock_offset_seconds{{{SEL}}}", c)], unit="s", y=32, x=16, w=8,
              thresholds=[(None, "green"), (0.1, "red")],
              description="< 100 ms for sub-second latency figures (chrony documentation)."),
    ])


def agent() -> dict[str, Any]:
    # process_* series carry no `site`: join it from the agent's own series by scrape instance
    site_of = f'group by (instance, site) (signalpath_probe_success{{{SEL}}})'
    return dashboard("signalpath-agent", "signalpath / Agent",
                     "The agents themselves: CPU, memory, probe cost, failures, coverage.", [
        panel(1, "How much CPU does each agent use?",
              [(f"rate(process_cpu_seconds_total[$__rate_interval]) * on (instance) group_left (site) {site_of}",
                "{{site}} {{instance}}")], unit="percentunit", w=12),
        panel(2, "How much memory does each agent hold?",
              [(f"process_resident_memory_bytes * on (instance) group_left (site) {site_of}",
                "{{site}} {{instance}}")], unit="bytes", x=12, w=12),
        panel(3, "How long do probe attempts take?",
              [(f"max by (site, probe, stage) (signalpath_probe_duration_seconds{{{SEL}}})",
                "{{site}} {{probe}} {{stage}} max"),
               (f"avg by (site, probe) (signalpath_probe_duration_seconds{{{SEL}}})", "{{site}} {{probe}} avg")],
              unit="s", y=8, w=12),
        panel(4, "Why do probes fail?",
              [(f"sum by (site, probe, reason) (rate(signalpath_probe_failures_total{{{SEL}}}[$__rate_interval]))",
                "{{site}} {{probe}} {{reason}}")], unit="ops", y=8, x=12, w=12),
        panel(5, "How many targets does each agent probe, and how many succeed?",
              [(f"count by (site) (signalpath_probe_success{{{SEL}}})", "{{site}} targets"),
               (f"sum by (site) (signalpath_probe_success{{{SEL}}})", "{{site}} succeeding")],
              y=16, w=12),
        panel(6, "Which sites report which streams?",
              [(f"count by (site, stream) (signalpath_stage_healthy{{{SEL}}})", "{{site}} {{stream}}")],
              kind="table", y=16, x=12, w=12, instant=True),
        # the agent watching itself (agent/selfwatch.py): behind, its timings are not evidence
        panel(7, "Is each agent keeping up (its own event-loop and probe schedule lag)?",
              [('max by (site, instance) (signalpath_agent_loop_lag_seconds{site=~"$site"})',
                "{{site}} {{instance}} event loop"),
               ('max by (site, instance) (signalpath_probe_schedule_lag_seconds{site=~"$site"})',
                "{{site}} {{instance}} schedule")], unit="s", y=24, w=12,
              description="Above 0.25 s for long, the agent is behind: it opens agent/agent overloaded, marks "
                          "its timings not measured and sheds optional probes (shed level)."),
        panel(8, "Which agents run, with which shard, and what do they shed?",
              [('max by (site, instance, shard, version) (signalpath_agent_info{site=~"$site"}) * on (instance) '
                'group_left () max by (instance) (signalpath_agent_shed_level{site=~"$site"})',
                "{{site}} {{instance}} shard {{shard}}")],
              kind="table", y=24, x=12, w=12, instant=True,
              description="One row per agent (README 'Running a fleet'); the value is its shed level: 0 nothing, "
                          "1 latency fast polls, 2 and media analysis, 3 and virtual players."),
    ])


DASHBOARDS = {"overview.json": overview, "stream.json": stream_detail, "studio.json": studio, "agent.json": agent}


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
