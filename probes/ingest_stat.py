"""Ingest statistics probe: is the ingest receiving this stream right now?

Reads an nginx-rtmp ``rtmp_stat`` XML page (``/stat``; the embedded lab serves the same
format at ``/ingest/stat.xml``) without connecting over RTMP, so it can run every
second next to the playlist polls. For the configured application and stream (the
stream key — a secret, taken from ``${ENV}``, never shown) it reports:

- publisher present, else ``no_input`` (DOWN);
- input stalled: ``bytes_in`` has not grown for ``stall_s`` (default 3 s, 1.5 x a 2-s
  segment: the RFC 8216 staleness rule applied one stage upstream) → ``no_input``;
- input below ``min_bitrate`` (optional) → ``low_input`` (DEGRADED);
- A/V sync beyond 200 ms and dropped frames, judged as for probes/rtmp.py (probes/core/nginx_stat.py).
"""

from __future__ import annotations

from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.config import StrictModel
from probes.core.nginx_stat import STAT_MAX_BYTES, judge_stat, parse_stat
from probes.core.redact import redact_text
from probes.core.thresholds import AV_SYNC_FAULT_S, INPUT_STALL_S
from probes.faults import Fault

STAGE = "ingest"


class IngestStatConfig(StrictModel):
    app: str = "live"
    key: str = Field(description="the stream's name at the ingest (its stream key: use ${ENV})")
    stall_s: float = Field(INPUT_STALL_S, gt=0, le=300)
    min_bitrate: int | None = Field(None, ge=0, description="bits/s below which the input is low")
    av_sync_fault_seconds: float = Field(AV_SYNC_FAULT_S, gt=0)


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    cfg: IngestStatConfig = target.config
    labels = {"stream": target.stream, "stage": STAGE, "component": target.component}
    res = ProbeResult()
    fr = await ctx.http.get(target.url, max_bytes=STAT_MAX_BYTES)
    if fr.failure is not None:
        res.failure, res.detail = fr.failure, redact_text(f"ingest statistics: {fr.detail}")
        res.evidence.append(Evidence(STAGE, target.component, State.UNKNOWN, None, res.detail))
        return res
    try:
        view = parse_stat(fr.body.decode("utf-8", "replace"), cfg.app, cfg.key)
    except ValueError as exc:
        res.failure, res.detail = Failure.PROTOCOL_ERROR, str(exc).replace(cfg.key, "***")
        res.evidence.append(Evidence(STAGE, target.component, State.UNKNOWN, None, res.detail))
        return res
    now = ctx.clock()
    st = ctx.state
    if st.get("bytes_in") is None or view.bytes_in > st["bytes_in"]:
        st["bytes_in"], st["grew_at"] = view.bytes_in, now
    stalled_for = now - st["grew_at"]
    prev_dropped = st.get("dropped")
    st["dropped"] = view.dropped_frames
    state, fault, detail = judge_stat(view, prev_dropped, cfg.av_sync_fault_seconds)
    if state is State.OK and stalled_for > cfg.stall_s:
        state, fault = State.DOWN, Fault.NO_INPUT
        detail = f"the publisher is connected but no media arrived for {stalled_for:.1f} s"
    elif state is State.OK and cfg.min_bitrate and view.bw_in_bits_per_second < cfg.min_bitrate:
        state, fault = State.DEGRADED, Fault.LOW_INPUT
        detail = (f"the ingest receives {view.bw_in_bits_per_second / 1000:.0f} kbit/s, under the "
                  f"{cfg.min_bitrate / 1000:.0f} kbit/s expected")
    figures = {"publisher_present": float(view.publisher), "bw_in_bits_per_second": view.bw_in_bits_per_second,
               "input_stalled_s": round(stalled_for, 3)}
    res.evidence.append(Evidence(STAGE, target.component, state, fault, detail, None, figures))
    res.samples.append(Sample("signalpath_ingest_publisher_present", labels, float(view.publisher)))
    res.samples.append(Sample("signalpath_ingest_input_bits_per_second", labels, view.bw_in_bits_per_second))
    res.figures.update(figures)
    return res
