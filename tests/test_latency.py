"""The latency probe in the agent against the embedded lab (beacon on by default).

- healthy lab: stage latencies by the beacon agree with the lab's truth (upstream = capture to
  publication at the origin; an edge adds at most its playlist cache TTL);
- ingest delayed by 2 s and edge-b delayed by 2.5 s: the upstream stage and cdn/edge-b
  (not edge-a) show the added latency, on /metrics and in exported per-segment traces,
  with ``latency_high`` evidence. A latency cannot be seen before it has elapsed, so the
  bound counts from the injection: added delay + two segment durations + one report
  interval + slack for a shared 2-core machine;
- a lab with the beacon off: figures fall back to EXT-X-PROGRAM-DATE-TIME (method=pdt).
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

from agent.app import Agent
from agent.config import parse_config
from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

SEGMENT_S = 2.0
REPORT_S = 1.0
SLACK_S = 4.0  # a shared 2-core machine: polls and reports run late under load


def _config(lab: Lab, **latency) -> object:
    conf = lab_agent_config(lab, "127.0.0.1:0")
    s = conf["streams"][0]
    s.pop("ingest", None)
    s.pop("encoders", None)
    s["playback"] = {"enabled": False}
    s["media"] = {"enabled": False}
    s["latency"] = {"baseline_min_samples": 3, **latency}
    conf["incidents"] = {"path": os.path.join(tempfile.mkdtemp(prefix="sp-lat-"), "incidents.db")}
    return parse_config(conf, "test")


def _lab_config(**kw) -> LabConfig:
    try:
        return LabConfig(webrtc=False, **kw)
    except Exception:  # a lab without the WebRTC endpoint option
        return LabConfig(**kw)


def _metrics(agent: Agent) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(agent.registry).decode()):
        for s in fam.samples:
            if s.name in ("signalpath_stage_latency_seconds", "signalpath_glass_to_glass_seconds"):
                out[(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "site")))] = s.value
    return out


def _stage(agent: Agent, stage: str, component: str) -> tuple[float, str] | None:
    for (name, labels), v in _metrics(agent).items():
        d = dict(labels)
        if name == "signalpath_stage_latency_seconds" and d["stage"] == stage and d["component"] == component:
            return v, d["method"]
    return None


def _trace_of(exporter: InMemorySpanExporter, rendition: str, seq: int) -> dict[str, object] | None:
    """The child spans of the latency trace of segment ``seq`` of ``rendition``, once it exists."""
    for r, kids in _latency_traces(exporter):
        if r.attributes.get("signalpath.segment.sequence") == seq and \
                r.attributes.get("signalpath.rendition") == rendition and "ingest+transcode" in kids:
            return kids
    return None


def _latency_traces(exporter: InMemorySpanExporter) -> list[tuple[object, dict[str, object]]]:
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name.startswith("latency ") and s.parent is None]
    out = []
    for r in roots:
        kids = {s.name: s for s in spans if s.parent is not None and s.parent.span_id == r.context.span_id}
        out.append((r, kids))
    return out


async def test_latency_by_beacon_matches_truth_then_shows_ingest_and_edge_delays():
    exporter = InMemorySpanExporter()
    async with Lab(_lab_config()) as lab:
        async with Agent(_config(lab), span_exporter=exporter) as agent:
            # healthy: three segments through every endpoint (also the baseline)
            await wait_for(lambda: len(_latency_traces(exporter)) >= 4, 30, "four latency traces")
            up = _stage(agent, "transcode", "transcoder")
            assert up is not None and up[1] == "beacon"
            # the newest segment's trace against the lab's truth for that very segment: capture to
            # publication at the origin, measured within the bracket of the poll that first saw it
            # listed (its stated uncertainty; wide when this machine is loaded) plus 0.1 s
            truth = lab.truth()["transcode"]["renditions"]["180p"]
            seq, true_up = truth["last_sequence"], truth["capture_to_origin_s"]
            traced = await wait_for(lambda: _trace_of(exporter, "180p", seq), 4 * SEGMENT_S, f"the trace of segment {seq}")
            measured = traced["ingest+transcode"].attributes["signalpath.latency_s"]
            uncertainty = traced["origin"].attributes["signalpath.first_seen.uncertainty_s"]
            assert abs(measured - true_up) <= uncertainty + 0.1, (measured, true_up, uncertainty)
            for edge in ("edge-a", "edge-b"):
                assert _stage(agent, "cdn", edge) is not None, edge
                # an edge adds at most its playlist max-age (1 s), within both first-seen brackets
                span = traced[f"cdn {edge}"]
                cdn = span.attributes["signalpath.latency_s"]
                slack = span.attributes["signalpath.first_seen.uncertainty_s"] + uncertainty + 0.1
                assert -slack <= cdn <= 1.0 + slack, (edge, cdn, slack)
            r, kids = _latency_traces(exporter)[-1]
            assert r.attributes["signalpath.latency.method"] == "beacon"
            assert SEPARATE_KEY not in r.attributes
            assert {"capture", "ingest+transcode", "origin", "cdn edge-a", "cdn edge-b"} <= set(kids)
            assert kids["capture"].end_time - kids["capture"].start_time == pytest.approx(1.96e9, abs=2e6)
            base_a = _stage(agent, "cdn", "edge-a")[0]

            t0 = time.time()
            n_before = len(_latency_traces(exporter))
            await lab.inject("ingest_latency", "ingest", for_s=60, params={"ms": 2000})
            # an edge's own figure varies by up to its playlist max-age (1 s) from segment to segment,
            # so its delay must clear the baseline rule's 1-s rise by more than that: 2.5 s (with
            # 1.5 s, a sample taken just after a cache refresh fell under the limit: a flaky test)
            await lab.inject("edge_delay", "edge-b", for_s=60, params={"ms": 2500})

            def shifted() -> bool:
                u, b = _stage(agent, "transcode", "transcoder"), _stage(agent, "cdn", "edge-b")
                return bool(u and b and u[0] >= true_up + 1.8 and b[0] >= 1.5)

            await wait_for(shifted, 2.5 + 2 * SEGMENT_S + REPORT_S + SLACK_S, "upstream +2 s and edge-b +1.5 s")
            print(f"added latency shown {time.time() - t0:.1f} s after the injection")
            assert _stage(agent, "cdn", "edge-a")[0] <= base_a + 1.1  # edge-a not blamed

            def g2g(edge: str) -> float:
                return next((v for (n, lab_), v in _metrics(agent).items() if n == "signalpath_glass_to_glass_seconds"
                             and dict(lab_)["component"] == edge), 0.0)
            # glass-to-glass at edge-b carries both delays once a segment captured after the
            # ingest delay began has gone through the delayed edge
            await wait_for(lambda: g2g("edge-b") >= 3.3, 3 * SEGMENT_S + SLACK_S, "edge-b glass-to-glass >= 3.3 s")
            assert g2g("edge-a") < g2g("edge-b") - 1.0

            def evidence() -> set[tuple[str, str]]:
                return {(c.stage, c.component) for c in agent.board.cells("main")
                        if any("latency" in r_ and "rose to" in r_ for r_ in c.reasons)}
            # each is flagged while its baseline has not taken the new level in: the rule judges a
            # value against the median of the last baseline_s, and this test's baseline holds only
            # the few healthy segments before the faults, so after a few high segments the median is
            # the new level and that stage reads as OK again (the transcode evidence can be over
            # before edge-b's begins on a loaded machine: this wait once asked for both at one moment
            # and timed out at 16 s and 22 s). So: each seen flagged, at some moment of the wait.
            flagged: set[tuple[str, str]] = set()

            def both_flagged() -> bool:
                flagged.update(evidence())
                return {("transcode", "transcoder"), ("cdn", "edge-b")} <= flagged
            await wait_for(both_flagged, 6 * SEGMENT_S + 6 * REPORT_S + SLACK_S,
                           "latency_high on transcode/transcoder and on cdn/edge-b")
            assert ("cdn", "edge-a") not in flagged

            def delayed_trace() -> bool:
                for _r, k in _latency_traces(exporter)[n_before:]:
                    if "ingest+transcode" in k and "cdn edge-b" in k:
                        up_s = (k["ingest+transcode"].end_time - k["ingest+transcode"].start_time) / 1e9
                        b_s = (k["cdn edge-b"].end_time - k["cdn edge-b"].start_time) / 1e9
                        if up_s >= 1.8 and b_s >= 1.5:
                            return True
                return False
            await wait_for(delayed_trace, 12, "a trace whose ingest+transcode and cdn edge-b spans grew")


SEPARATE_KEY = "signalpath.trace.separate"


async def test_without_beacon_the_figures_fall_back_to_program_date_time():
    async with Lab(_lab_config(beacon=False)) as lab:
        async with Agent(_config(lab)) as agent:
            up = await wait_for(lambda: _stage(agent, "transcode", "transcoder"), 20, "an upstream latency")
            assert up[1] == "pdt"

            def close_to_truth() -> bool:
                # the first segment the agent times is bracketed by slow polls (+-0.25 s);
                # the next ones by fast polls around their expected arrival
                truth = lab.truth()["transcode"]["renditions"]["180p"]
                u = _stage(agent, "transcode", "transcoder")
                return abs(u[0] - (truth["transcode_delay_s"] + truth["packaging_delay_s"])) < 0.15
            await wait_for(close_to_truth, 4 * SEGMENT_S + SLACK_S, "PDT upstream latency close to the truth")
            assert {dict(k)["method"] for (n, k) in _metrics(agent)} == {"pdt"}
