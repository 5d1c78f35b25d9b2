"""OpenTelemetry export: probe span records become real spans, one trace per cycle.

A stream's probe cycle is one trace: a root span for the stream, a child per
stage/component (origin, each edge), grandchildren per rendition playlist and
segment fetch — each with ``signalpath.stream|stage|component|rendition`` attributes
and an ERROR status carrying the failure reason. Start and end times are the
measured ones (spans are created after the fact with explicit timestamps).

A probe may also return whole traces of its own: a SpanRecord in ``ProbeResult.spans``
whose attributes carry ``signalpath.trace.separate: True`` (:data:`SEPARATE_TRACE_ATTR`,
e.g. the latency probe's one trace per beacon segment) is exported as a root span of a
new trace, not nested under the cycle's trace; the marker itself is not exported.

The TracerProvider is built here and injected; nothing touches OTel's global
provider.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from agent.runner import Cycle, attempt_span
from probes.base import SpanRecord
from probes.core.latency_core import SEPARATE_TRACE_ATTR

_INHERITED = ("signalpath.stream", "signalpath.stage", "signalpath.component", "signalpath.rendition")


def make_provider(site: str, exporter: SpanExporter | None = None, *, otlp_endpoint: str | None = None,
                  otlp_timeout: float = 5.0, otlp_headers: dict[str, str] | None = None,
                  shard: str | None = None) -> TracerProvider:
    """A provider with a batch processor on ``exporter`` (or OTLP/HTTP to ``otlp_endpoint``).

    The resource says which agent made each trace: ``signalpath.site``, ``signalpath.shard``
    ("I/N", "" when it watches every stream: agent/shard.py) and ``service.instance.id``
    (``site`` or ``site/shard``: unique per agent of a fleet, OpenTelemetry semantic conventions)."""
    instance = site if not shard else f"{site}/{shard}"
    provider = TracerProvider(resource=Resource.create({
        "service.name": "signalpath", "service.instance.id": instance, "signalpath.site": site,
        "signalpath.shard": shard or ""}))
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces", timeout=otlp_timeout,
                                    headers=otlp_headers or None)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=4096, schedule_delay_millis=1000))
    return provider


class TraceSink:
    """Turns each cycle into a trace."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("signalpath")

    def on_cycle(self, cycle: Cycle) -> None:
        job = cycle.job
        separate: list[SpanRecord] = []
        children = []
        for a in cycle.attempts:
            span = attempt_span(a)
            if any(c.attributes.get(SEPARATE_TRACE_ATTR) for c in span.children):
                separate += [c for c in span.children if c.attributes.get(SEPARATE_TRACE_ATTR)]
                span.children = [c for c in span.children if not c.attributes.get(SEPARATE_TRACE_ATTR)]
            children.append(span)
        for rec in separate:
            self.emit(SpanRecord(rec.name, rec.start_ns, rec.end_ns,
                                 {k: v for k, v in rec.attributes.items() if k != SEPARATE_TRACE_ATTR},
                                 rec.error, rec.children))
        root = SpanRecord(
            name=f"stream {job.stream}",
            start_ns=int(cycle.start_wall * 1e9),
            end_ns=int(cycle.end_wall * 1e9),
            attributes={"signalpath.stream": job.stream, "signalpath.probe": job.probe},
            children=children,
        )
        failed = [a for a in cycle.attempts if not a.result.ok]
        if failed:
            root.error = "; ".join(f"{a.target.component}: {a.result.failure}" for a in failed)
        self.emit(root)

    def emit(self, rec: SpanRecord, parent: Any = None, inherited: dict[str, Any] | None = None) -> None:
        attrs = {**(inherited or {}), **rec.attributes}
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(rec.name, context=ctx, start_time=rec.start_ns,
                                      attributes={k: v for k, v in attrs.items() if v is not None})
        if rec.error:
            span.set_status(Status(StatusCode.ERROR, rec.error))
        keep = {k: attrs[k] for k in _INHERITED if k in attrs}
        for child in rec.children:
            self.emit(child, span, keep)
        span.end(end_time=max(rec.end_ns, rec.start_ns))

    def shutdown(self) -> None:
        self.provider.force_flush(timeout_millis=3000)
        self.provider.shutdown()
