"""The agent: wires config → jobs → runner → sinks (metrics, status, traces) → HTTP API.

    async with Agent(config) as agent:      # starts probing and serving
        print(agent.url)                    # http://127.0.0.1:PORT
        ...
    # leaving the block stops every task, closes the pool, flushes traces

Everything is injected (registry, clock, span exporter) so tests run several agents
in one process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from agent import lograte
from agent.alerts import AlertDispatcher
from agent.config import Config, parse_listen
from agent.errors import AgentError
from agent.incident_sink import IncidentSink
from agent.incidents import AsyncIncidentStore
from agent.jobs import build_jobs
from agent.localize import Localizer
from agent.metrics import MetricStore, SignalpathCollector
from agent.runner import Cycle, Job, Runner, envelope, target_key
from agent.status import StatusBoard
from agent.tracing import TraceSink, make_provider
from probes.base import Sample, State
from probes.net.httpfetch import Fetcher

log = logging.getLogger("signalpath.agent")


class MetricsSink:
    """Latest samples per target + the runner's envelope + stage health."""

    def __init__(self, store: MetricStore, board: StatusBoard) -> None:
        self.store = store
        self.board = board

    def on_cycle(self, cycle: Cycle) -> None:
        for a in cycle.attempts:
            self.store.replace(target_key(a.target), [*a.result.samples, *envelope(a)])
        if cycle.combined is not None:
            self.store.replace(f"combine/{cycle.job.probe}/{cycle.job.stream}", cycle.combined.samples)
        stream = cycle.job.stream
        health = []
        for c in self.board.cells(stream):
            if c.state is not State.UNKNOWN:
                health.append(Sample("signalpath_stage_healthy",
                                     {"stream": stream, "stage": c.stage, "component": c.component},
                                     1.0 if c.state is State.OK else 0.0))
        self.store.replace(f"health/{stream}", health)


class StatusSink:
    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def on_cycle(self, cycle: Cycle) -> None:
        for a in cycle.attempts:
            t = a.target
            figs = {k: v for k, v in a.result.figures.items() if k != "endpoint"}
            self.board.update(t.stream, target_key(t), list(a.result.evidence), {(t.stage, t.component): figs})
        if cycle.combined is not None and cycle.combined.evidence:
            self.board.update(cycle.job.stream, f"combine/{cycle.job.probe}", list(cycle.combined.evidence))


def first_attempts(jobs: list[Job]) -> dict[str, set[tuple[str, str]]]:
    """stream -> every (probe, component) whose first attempt the localizer waits for."""
    out: dict[str, set[tuple[str, str]]] = {}
    for job in jobs:
        out.setdefault(job.stream, set()).update((job.probe, t.component) for t in job.targets)
    return out


class Agent:
    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None, span_exporter: Any = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 extra_sinks: list[Any] | None = None) -> None:
        self.config = config
        self.clock, self.wall = clock, wall
        lograte.install()  # a failure repeated every attempt is one line a minute
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = MetricStore()
        self.board = StatusBoard(wall)
        self.registry.register(SignalpathCollector(self.store, config.agent.site))
        if registry is None:  # the agent's own CPU and memory (process_*), once per registry
            ProcessCollector(registry=self.registry)
        otlp = config.exporters.otlp
        self.trace_sink: TraceSink | None = None
        if span_exporter is not None or otlp is not None:
            provider = make_provider(config.agent.site, span_exporter,
                                     otlp_endpoint=otlp.endpoint if otlp else None,
                                     otlp_timeout=otlp.timeout_s if otlp else 5.0,
                                     otlp_headers=dict(otlp.headers) if otlp else None)
            self.trace_sink = TraceSink(provider)
        self.jobs = build_jobs(config)
        for job in self.jobs:
            for t in job.targets:
                self.board.declare(t.stream, t.stage, t.component)
        self.fetcher = Fetcher(max_per_host=config.agent.max_in_flight_per_host)
        self.incidents = IncidentSink(
            Localizer(config.localize, clock=wall),
            AsyncIncidentStore.from_settings(config.incidents),
            AlertDispatcher.from_settings(config.alerts, site=config.agent.site),
            self.board, self.store,
            expected=first_attempts(self.jobs))
        sinks: list[Any] = [StatusSink(self.board), MetricsSink(self.store, self.board), self.incidents]
        if self.trace_sink:
            sinks.append(self.trace_sink)
        sinks.extend(extra_sinks or [])
        self.runner = Runner(self.jobs, sinks, http=self.fetcher, site=config.agent.site, clock=clock, wall=wall)
        self._server: Any = None
        self.url = ""

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from agent.api import start_server

        await self.incidents.start()
        await self.fetcher.start()
        host, port = parse_listen(self.config.agent.listen)  # '[::1]:9321' listens on ::1
        try:
            self._server, self.url = await start_server(self, host, port)
        except OSError as exc:
            await self.fetcher.close()
            await self.incidents.stop()
            raise AgentError(f"cannot listen on {self.config.agent.listen}: {exc.strerror or exc}") from None
        await self.runner.start()
        log.info("signalpath agent on %s watching %d stream(s)", self.url, len(self.config.streams))

    async def stop(self) -> None:
        await self.runner.stop()
        await self.incidents.stop()
        if self._server is not None:
            await self._server.cleanup()
            self._server = None
        await self.fetcher.close()
        if self.trace_sink is not None:
            await asyncio.to_thread(self.trace_sink.shutdown)
