"""Encoder status probe: is the studio encoder running and producing frames?

Polls an encoder's HTTP status endpoint that answers JSON (the embedded lab's
``/studio/stat``; encoders with an HTTP API, or a sidecar that reports one) and reads
two fields, named in the config: a running flag and a monotonically growing output
counter (frames or bytes). Stage ``studio``, component = the encoder's name.

- running flag false → ``encoder_down`` (DOWN);
- counter not grown for ``stall_s`` (3 s: 1.5 x a 2-s segment, the same staleness
  rule the playlists use, RFC 8216 §6.3.4) → ``encoder_down`` (DOWN, "stalled");
- status unreachable → UNKNOWN evidence (the encoder may be fine; its API is not):
  the localizer never blames the studio on missing data.
"""

from __future__ import annotations

import json

from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.config import StrictModel
from probes.core.redact import redact_text
from probes.core.thresholds import INPUT_STALL_S
from probes.faults import Fault

STAGE = "studio"
MAX_BYTES = 256 * 1024


class EncoderStatusConfig(StrictModel):
    running_field: str = "running"
    counter_field: str = "frames_out"
    stall_s: float = Field(INPUT_STALL_S, gt=0, le=300)


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    cfg: EncoderStatusConfig = target.config
    res = ProbeResult()
    fr = await ctx.http.get(target.url, max_bytes=MAX_BYTES)
    if fr.failure is None:
        try:
            doc = json.loads(fr.body)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            fr.failure, fr.detail = Failure.PROTOCOL_ERROR, f"status is not JSON ({exc.__class__.__name__})"
    if fr.failure is not None:
        res.failure, res.detail = fr.failure, redact_text(f"encoder status: {fr.detail}")
        res.evidence.append(Evidence(STAGE, target.component, State.UNKNOWN, None, res.detail))
        return res
    running = bool(doc.get(cfg.running_field, True))
    counter = doc.get(cfg.counter_field)
    now = ctx.clock()
    st = ctx.state
    if isinstance(counter, (int, float)) and (st.get("counter") is None or counter > st["counter"]):
        st["counter"], st["grew_at"] = counter, now
    stalled = now - st.get("grew_at", now)
    if not running:
        ev = Evidence(STAGE, target.component, State.DOWN, Fault.ENCODER_DOWN, f"{target.component} reports it is "
                      "not running")
    elif stalled > cfg.stall_s:
        ev = Evidence(STAGE, target.component, State.DOWN, Fault.ENCODER_DOWN, f"{target.component} produced no "
                      f"output for {stalled:.1f} s")
    else:
        ev = Evidence(STAGE, target.component, State.OK, None, f"{target.component} running")
    ev.figures = {"running": float(running), "output_stalled_s": round(stalled, 3)}
    res.evidence.append(ev)
    res.samples.append(Sample("signalpath_encoder_running",
                              {"stream": target.stream, "stage": STAGE, "component": target.component},
                              float(running and stalled <= cfg.stall_s)))
    return res
