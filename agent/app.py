"""The agent: wires config → jobs → runner → sinks (metrics, status, traces) → HTTP API.

    async with Agent(config) as agent:      # starts probing and serving
        print(agent.url)                    # http://127.0.0.1:PORT
        ...
    # leaving the block stops every task, closes the pool, flushes traces

``await agent.reload(new_config)`` (SIGHUP in ``signalpath run``) applies a new config's
streams: streams that remain keep their open incidents, history and probe state; removed
streams and components have their open incidents resolved ("removed from config"); new
ones start probing. Other keys (listen address, incident store, alerts, ...) need a restart.

Everything is injected (registry, clock, span exporter) so tests run several agents
in one process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from agent import installed_version, lograte, logsafe
from agent.alerts import AlertDispatcher
from agent.complaint_desk import ComplaintDesk
from agent.config import Config, parse_listen
from agent.cpupool import CpuPool
from agent.errors import AgentError
from agent.history import HistoryRecorder
from agent.incident_sink import IncidentSink, config_places
from agent.incidents import AsyncIncidentStore
from agent.jobs import build_jobs
from agent.localize import Localizer, LocalizerSettings, rfc3339
from agent.metrics import MetricStore, SignalpathCollector
from agent.runner import Cycle, Job, Runner, envelope, target_key
from agent.schedule import Schedule, broadcast_json
from agent.schedule_book import ScheduleBook
from agent.selfwatch import SelfReport
from agent.shard import sharded
from agent.status import StatusBoard
from agent.thumbnails import ThumbnailBook
from agent.tracing import TraceSink, make_provider
from probes.base import Sample, State
from probes.net.httpfetch import Fetcher

log = logging.getLogger("signalpath.agent")
CPU_POOL_STOP_S = 10.0  # the CPU pool's workers finish what they decode (milliseconds) within this


class MetricsSink:
    """Latest samples per target + the runner's envelope + stage health.

    ``signalpath_stage_healthy`` is published for the streams that had a cycle since the last
    time, on the agent's self tick (``SELF_PERIOD_S``, 1 s) and before each scrape
    (:meth:`publish_health`), not after every cycle: computing a stream's cells walks all its
    evidence, and at 200 streams the per-cycle walk was ~10 % of the event loop (py-spy,
    tests/perf/scale_bench.py), for a gauge read every scrape interval."""

    def __init__(self, store: MetricStore, board: StatusBoard) -> None:
        self.store = store
        self.board = board
        self._health_due: set[str] = set()

    def on_cycle(self, cycle: Cycle) -> None:
        for a in cycle.attempts:
            self.store.replace(target_key(a.target), [*a.result.samples, *envelope(a)])
        if cycle.combined is not None:
            self.store.replace(f"combine/{cycle.job.probe}/{cycle.job.stream}", cycle.combined.samples)
        self._health_due.add(cycle.job.stream)

    def publish_health(self) -> None:
        """``signalpath_stage_healthy`` of every stream with a cycle since the last call (on the
        event loop: the board is the loop's)."""
        due, self._health_due = self._health_due, set()
        known = set(self.board.streams())
        for stream in due & known:
            health = []
            for c in self.board.cells(stream):
                if c.state is not State.UNKNOWN:
                    health.append(Sample("signalpath_stage_healthy",
                                         {"stream": stream, "stage": c.stage, "component": c.component},
                                         1.0 if c.state is State.OK else 0.0))
            self.store.replace(f"health/{stream}", health)

    def on_self(self, report: SelfReport) -> None:
        self.store.replace("agent/self", report.samples)
        self.publish_health()


class StatusSink:
    def __init__(self, board: StatusBoard) -> None:
        self.board = board
        self.agent: SelfReport | None = None  # the agent's latest look at itself (``agent`` in the status)

    def on_self(self, report: SelfReport) -> None:
        self.agent = report

    def on_cycle(self, cycle: Cycle) -> None:
        for a in cycle.attempts:
            t = a.target
            figs = {k: v for k, v in a.result.figures.items() if k != "endpoint"}
            self.board.update(t.stream, target_key(t), list(a.result.evidence), {(t.stage, t.component): figs})
        if cycle.combined is not None and cycle.combined.evidence:
            self.board.update(cycle.job.stream, f"combine/{cycle.job.probe}", list(cycle.combined.evidence))


def localizer_settings(config: Config) -> LocalizerSettings:
    """``localize:``, with ``symptom_window_s`` following the players' ``stall_window_s`` (the
    longest of any stream) unless the config sets it: a stall is reported that long after it."""
    loc = config.localize
    if "symptom_window_s" in loc.model_fields_set or not config.streams:
        return loc
    window = max(s.playback.stall_window_s for s in config.streams)
    return loc.model_copy(update={"symptom_window_s": window})


def first_attempts(jobs: list[Job]) -> dict[str, set[tuple[str, str]]]:
    """stream -> every (probe, component) whose first attempt the localizer waits for."""
    out: dict[str, set[tuple[str, str]]] = {}
    for job in jobs:
        out.setdefault(job.stream, set()).update((job.probe, t.component) for t in job.targets)
    return out


RELOADED = {"streams", "broadcasts", "maintenance"}  # what a reload applies; every other key needs a restart


def restart_keys(old: Config, new: Config) -> list[str]:
    """Key paths outside :data:`RELOADED` whose value differs: a reload leaves them as they run."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{path}.{k}")
        elif a != b:
            out.append(path)

    walk(old.model_dump(exclude=RELOADED), new.model_dump(exclude=RELOADED), "")
    return [p.lstrip(".") for p in out]


class Agent:
    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None, span_exporter: Any = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 extra_sinks: list[Any] | None = None) -> None:
        config = sharded(config)  # agent.shard: this agent's streams only (agent/shard.py)
        self.config = config
        self.clock, self.wall = clock, wall
        lograte.install()  # a failure repeated every attempt is one line a minute
        logsafe.install(logsafe.config_secrets(config))  # no secret in any logger's line
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = MetricStore()
        self.board = StatusBoard(wall)
        self.registry.register(SignalpathCollector(self.store, config.agent.site))
        # which agent this is (a fleet: agent/shard.py); the site label is added to every series
        self.store.replace("agent/info", [Sample("signalpath_agent_info", {"shard": config.agent.shard or "",
                                                                           "version": installed_version() or "unknown"}, 1.0)])
        if registry is None:  # the agent's own CPU and memory (process_*), once per registry
            ProcessCollector(registry=self.registry)
        otlp = config.exporters.otlp
        self.trace_sink: TraceSink | None = None
        if span_exporter is not None or otlp is not None:
            provider = make_provider(config.agent.site, span_exporter,
                                     otlp_endpoint=otlp.endpoint if otlp else None,
                                     otlp_timeout=otlp.timeout_s if otlp else 5.0,
                                     otlp_headers=dict(otlp.headers) if otlp else None, shard=config.agent.shard)
            self.trace_sink = TraceSink(provider)
        self.jobs = build_jobs(config)
        for job in self.jobs:
            for t in job.targets:
                self.board.declare(t.stream, t.stage, t.component)
        self.fetcher = Fetcher(max_per_host=config.agent.max_in_flight_per_host)
        self.schedule = Schedule(config.broadcasts, config.maintenance)  # + API additions once started
        self.incidents = IncidentSink(
            Localizer(localizer_settings(config), clock=wall, maintenance=self._maintenance),
            AsyncIncidentStore.from_settings(config.incidents),
            AlertDispatcher.from_settings(config.alerts, site=config.agent.site),
            self.board, self.store,
            expected=first_attempts(self.jobs), places=config_places(self.jobs), schedule=self.schedule)
        self.schedule_book = ScheduleBook(config, self.incidents.store,
                                          write_users=bool(config.agent.web.basic_auth.write))
        self.complaints = ComplaintDesk(
            config.complaints, self.incidents.store, self.incidents.localizer, self.board, self.store, wall=wall,
            streams=lambda: {s.name: [e.name for e in s.edges] for s in self.config.streams},
            write_users=bool(config.agent.web.basic_auth.write))
        self.thumbnails = ThumbnailBook(wall)
        self.history = HistoryRecorder(config.history, config.incidents.path, self.board, wall=wall)
        self.status_sink = StatusSink(self.board)
        self.metrics_sink = MetricsSink(self.store, self.board)
        sinks: list[Any] = [self.status_sink, self.metrics_sink, self.incidents,
                            self.thumbnails, self.history]
        if self.trace_sink:
            sinks.append(self.trace_sink)
        sinks.extend(extra_sinks or [])
        self.cpu_pool = CpuPool(config.agent.cpu_workers, config.agent.cpu_isolation)  # decoding (agent/cpupool.py)
        self.runner = Runner(self.jobs, sinks, http=self.fetcher, site=config.agent.site, clock=clock, wall=wall,
                             cpu_pool=self.cpu_pool)
        self._server: Any = None
        self.url = ""
        self._reloading = asyncio.Lock()
        self.report_lock = asyncio.Lock()  # one /report at a time (agent/report_cli.serve)

    def apply_schedule(self) -> None:
        """The config's broadcasts and maintenance windows with those added through the API."""
        self.schedule = self.incidents.schedule = self.schedule_book.schedule()

    def _maintenance(self, stream: str, stage: str, component: str, t: float) -> str:
        """The maintenance window covering a place now, by name ("" for none): the localizer marks
        an incident opening there (agent/schedule.py)."""
        w = self.schedule.maintenance_for(stream, stage, component, t)
        return w.name if w is not None else ""

    def status_json(self) -> dict[str, Any]:
        """``GET /api/v1/status``: the board, each stream with its schedule (agent/schedule.py), and
        the current or next broadcast."""
        now = self.wall()
        body = self.board.as_json()
        for s in body["streams"]:
            at = self.schedule.stream_at(s["name"], now)
            b = at.broadcast
            s["schedule"] = {
                "state": at.state,
                "broadcast": None if b is None else broadcast_json(b),
                "maintenance": [{"name": m.name, "stage": m.stage, "component": m.component,
                                 "ends_at": rfc3339(m.end)} for m in at.maintenance],
            }
        nxt = self.schedule.current_or_next(now)
        body["broadcast"] = None if nxt is None else {**broadcast_json(nxt), "on_air": nxt.on_air(now)}
        ended = [b for b in self.schedule.broadcasts if b.end <= now]
        last = max(ended, key=lambda b: b.end, default=None)
        # the page links the last broadcast's report (agent/report_cli.py)
        body["last_broadcast"] = None if last is None else {
            **broadcast_json(last), "report": "/report?broadcast=" + urllib.parse.quote(last.name)}
        # the agent itself (agent/selfwatch.py): null until its first look, a second after start
        body["agent"] = None if self.status_sink.agent is None else self.status_sink.agent.as_json()
        return body

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from agent.api import start_server

        await self.incidents.start()
        await self.schedule_book.load()
        self.apply_schedule()
        await self.complaints.start()
        await self.history.start()
        await self.fetcher.start()
        host, port = parse_listen(self.config.agent.listen)  # '[::1]:9321' listens on ::1
        try:
            self._server, self.url = await start_server(self, host, port)
        except (OSError, AgentError) as exc:  # AgentError: TLS files that cannot be used (agent.web.tls)
            await self.fetcher.close()
            await self.history.stop()
            await self.complaints.stop()
            await self.incidents.stop()
            if isinstance(exc, AgentError):
                raise
            raise AgentError(f"cannot listen on {self.config.agent.listen}: {exc.strerror or exc}") from None
        await self.runner.start()
        log.info("signalpath agent on %s watching %d stream(s)", self.url, len(self.config.streams))

    async def stop(self) -> None:
        async with self._reloading:  # a reload in progress finishes first: its runner is the one stopped
            await self.runner.stop()
        await self.history.stop()
        await self.complaints.stop()
        await self.incidents.stop()
        if self._server is not None:
            await self._server.cleanup()
            self._server = None
        await self.fetcher.close()
        # the runner's tasks are stopped: nothing waits on the pool; its workers finish what they
        # decode (milliseconds) and exit
        try:
            async with asyncio.timeout(CPU_POOL_STOP_S):
                await asyncio.to_thread(self.cpu_pool.shutdown, True, cancel_futures=True)
        except TimeoutError:  # a decode that does not end (a decoder looping on hostile input)
            log.warning("a decoding worker did not finish within %.0f s: killed", CPU_POOL_STOP_S)
            self.cpu_pool.terminate()
        if self.trace_sink is not None:
            await asyncio.to_thread(self.trace_sink.shutdown)

    async def reload(self, config: Config) -> list[str]:
        """Apply ``config``'s streams (see the module docstring); returns the key paths that
        changed but need a restart (logged, left as they run)."""
        logsafe.install(logsafe.config_secrets(config))  # a new stream's keys are secrets from now on
        async with self._reloading:
            restart = restart_keys(self.config, config)
            for key in restart:
                log.warning("config reload: %s changed: needs a restart (still running the previous value)", key)
            # the running agent section (its shard too) with the new streams, this shard's of them
            config = sharded(self.config.model_copy(update={k: getattr(config, k) for k in RELOADED}))
            self.schedule_book.config = config
            self.apply_schedule()
            jobs = build_jobs(config)
            before = {target_key(t): t for job in self.jobs for t in job.targets}
            after = {target_key(t): t for job in jobs for t in job.targets}
            await self.runner.stop(release=False)  # what the new runner keeps stays open (adopt)
            kept = {s.name for s in config.streams}
            for job in self.jobs:
                if job.stream not in kept:
                    self.store.drop(f"combine/{job.probe}/{job.stream}")
            for key in before.keys() - after.keys():
                self.store.drop(key)
            for stream in {s.name for s in self.config.streams} - kept:
                self.board.forget(stream, everything=True)
                self.store.drop(f"health/{stream}")
            for stream in kept:
                cells = {(t.stage, t.component) for t in after.values() if t.stream == stream}
                self.board.forget(stream, sources=[k for k, t in before.items() if t.stream == stream and k not in after],
                                  cells={(t.stage, t.component) for t in before.values() if t.stream == stream} - cells)
                for stage, component in cells:
                    self.board.declare(stream, stage, component)
            self.incidents.reconfigure(first_attempts(jobs), config_places(jobs))
            self.thumbnails.keep_only(kept)
            self.history.keep_only(kept)
            runner = Runner(jobs, self.runner.sinks, http=self.fetcher, site=config.agent.site, clock=self.clock,
                            wall=self.wall, cpu_pool=self.cpu_pool)
            runner.adopt(self.runner)
            await self.runner.release()  # sessions of the targets that are gone
            self.runner, self.jobs, self.config = runner, jobs, config
            await runner.start()
            log.info("config reloaded: watching %d stream(s)", len(config.streams))
            return restart
