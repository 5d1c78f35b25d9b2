"""The one shape every probe shares: what goes in, what comes out.

A probe is ``async def probe(target, ctx) -> ProbeResult``. It measures one target
once (one attempt, one path: no hidden retries; retrying is scheduling) and returns
data; it never talks to exporters. Failures are data: ``ProbeResult.failure`` is a
closed-enum :class:`Failure`; a probe raises only on a bug, and the runner turns
that into ``Failure.PROBE_ERROR`` too.

Three kinds of data leave a probe:

- ``samples``: metric values (name from the catalog in ``agent/metrics.py``, labels
  from the vocabulary in DESIGN.md only, never URLs or ids);
- ``evidence``: stage/component health for the status board and the localizer;
- ``spans``: timed phases, turned into OpenTelemetry spans by ``agent/tracing.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from probes.faults import STAGES, Fault

_T = TypeVar("_T")

__all__ = ["HOST_NOT_RESOLVED", "RESULT_MARGIN_S", "STAGES", "Evidence", "Failure", "Fault", "ProbeContext",
           "ProbeResult", "ProbeTarget", "Sample", "SpanRecord", "State", "UrlRole", "own_deadline", "worst"]


class Failure(enum.StrEnum):
    """Why one probe attempt failed (closed set; a metric label)."""

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_FAILED = "connection_failed"
    DNS_ERROR = "dns_error"
    TLS_ERROR = "tls_error"
    HTTP_ERROR = "http_error"
    REDIRECT_LOOP = "redirect_loop"
    BODY_TOO_LARGE = "body_too_large"
    READ_FAILED = "read_failed"
    PROTOCOL_ERROR = "protocol_error"
    AUTH_REFUSED = "auth_refused"
    MEDIA_ERROR = "media_error"
    UNAVAILABLE = "unavailable"
    PROBE_ERROR = "probe_error"
    AGENT_BEHIND = "agent_behind"  # not the target's: the agent itself was behind (agent/selfwatch.py)


#: The one wording of ``Failure.DNS_ERROR`` wherever a person reads it (probe details, preflight,
#: the beacon command), so one failure never reads two ways.
HOST_NOT_RESOLVED = "host name not resolved"


class State(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"


STATE_RANK = {State.UNKNOWN: 0, State.OK: 1, State.DEGRADED: 2, State.DOWN: 3}


def worst(states: Iterable[State]) -> State:
    """The worst state of an iterable (DOWN > DEGRADED > OK > UNKNOWN)."""
    result = State.UNKNOWN
    for s in states:
        if STATE_RANK[s] > STATE_RANK[result]:
            result = s
    return result


@dataclass(frozen=True, slots=True)
class Sample:
    """One metric value. ``kind`` is ``set`` (gauge) or ``inc`` (counter delta)."""

    name: str
    labels: Mapping[str, str]
    value: float
    kind: str = "set"


UrlRole = Literal["master", "media_playlist", "segment", "init", "key", "endpoint"]
"""What an evidence's HTTP figures were measured on (``Evidence.url_role``)."""


@dataclass(slots=True)
class Evidence:
    """Health of one stage/component as one probe saw it.

    ``fault`` is a :class:`probes.faults.Fault` (a plain string is converted, and one
    outside the catalog raises ``ValueError``: a fault outside the catalog cannot be
    constructed) or None when healthy. ``rendition`` narrows the evidence to one
    rendition (the localizer uses it: one stale rendition at the origin points at the
    transcoder). ``detail`` is a plain-words sentence with no secrets in it, for people;
    nothing downstream parses it. The structured fields say what the sentence says, for
    programs: ``http_status`` (the HTTP status code that made the fault, an int),
    ``media_sequence`` (the media sequence number concerned), ``url_role`` (what was
    fetched: master or media playlist, segment, init section, or the endpoint itself),
    ``onset`` (when the condition began, if the probe knows), ``latest_onset`` (when its latest
occurrence began).
    """

    stage: str
    component: str
    state: State
    fault: Fault | None = None
    detail: str = ""
    rendition: str | None = None
    figures: dict[str, float] = field(default_factory=dict)
    http_status: int | None = None
    media_sequence: int | None = None
    url_role: UrlRole | None = None
    onset: float | None = None
    """Epoch seconds the condition began when the probe knows it better than the localizer's
    first sighting of the evidence (a viewer's stall episode: its first stall), so a blip in
    the evidence — a probe attempt that timed out — does not date it anew."""
    latest_onset: float | None = None
    """Epoch seconds the latest occurrence of the condition began, when the probe reports the
    condition after it and knows (a stall episode: when its last stall began). A stall that
    began while its cause was present and ends after the cause is gone is that cause's
    effect however long the player takes to recover (agent.localize: ``_explained``)."""

    def __post_init__(self) -> None:
        if self.fault is not None and type(self.fault) is not Fault:
            self.fault = Fault(self.fault)


@dataclass(slots=True)
class SpanRecord:
    """A timed phase; wall-clock nanoseconds. ``children`` nest."""

    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    children: list[SpanRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A decoded picture as a small JPEG (probes/media.py): ``at`` epoch seconds when it was
    analysed, ``seq`` its segment's media sequence number, ``faults`` the content faults
    that segment showed (black, frozen...): the frame that shows them."""

    jpeg: bytes
    at: float
    seq: int
    faults: tuple[str, ...] = ()


@dataclass(slots=True)
class ProbeResult:
    failure: Failure | None = None
    detail: str = ""
    samples: list[Sample] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    spans: list[SpanRecord] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    thumbnails: dict[str, Thumbnail] = field(default_factory=dict)  # rendition -> its newest picture
    # ctx clock time at which this target's verdict changes with nothing new asked before it (a
    # freshness threshold crossed): the runner may start the next attempt then, rather than at the
    # next tick (agent/runner.py RECHECK_GAP); None: the regular schedule
    recheck_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(slots=True)
class ProbeTarget:
    """What one probe measures: a stream's endpoint (origin, an edge, a device...)."""

    probe: str
    stream: str
    stage: str
    component: str
    config: Any
    url: str | None = None
    interval: float = 1.0
    timeout: float = 5.0


@dataclass(slots=True)
class ProbeContext:
    """What the runner lends a probe for one attempt.

    ``state`` persists across attempts on the same target (e.g. when a playlist's
    media sequence last advanced). ``clock`` is monotonic seconds, ``wall`` is epoch
    seconds; both injectable for tests. ``http`` is the shared fetcher.
    """

    state: dict[str, Any]
    http: Any = None
    site: str = ""
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    shared: dict[str, Any] = field(default_factory=dict)
    agent_stall: Callable[[float, float], float] = field(default=lambda t0, t1: 0.0)
    """``agent_stall(t0, t1)``: seconds, the longest stretch between ``t0`` and ``t1`` (on
    ``clock``'s scale) during which the agent's own event loop could not run (the agent's
    CPU starved, a blocking call). A probe that times media by arrival (WHEP freezes) does
    not blame the stream for such a stretch. The runner supplies it (agent/selfwatch.py
    ``LoopWatch``); 0 outside the runner."""
    agent_stalled_s: Callable[[], float] = field(default=lambda: 0.0)
    """Seconds, in all, that the agent's own event loop could not run since the runner
    started (same source as ``agent_stall``): a virtual viewer's play-out clock leaves them
    out (probes/playback.py), as a real player's does not run while its own host is frozen.
    0 outside the runner."""
    shed_level: Callable[[], int] = field(default=lambda: 0)
    """How much optional work the agent sheds now because it is behind (agent/selfwatch.py
    ``SHED_ORDER``): at 1 or more the latency probe polls without its fast polls. 0 outside the runner."""
    playlists: Any = field(default_factory=lambda: _playlist_cache())
    """The agent's :class:`probes.core.playlist.PlaylistCache`: ``await ctx.playlists.parse(body,
    url, now)`` is ``parse_body`` with one parse per playlist body across every probe (the runner
    lends one per agent; a context made elsewhere has its own)."""
    deadline: float = math.inf
    """When the runner cancels this attempt: absolute, on ``clock``'s scale. The runner sets it
    before each call (``clock() + target.timeout``); the time a probe has is ``deadline -
    clock()``, never re-derived from ``target.timeout``. ``inf`` outside the runner: a caller
    that wants a bound sets it as the runner does."""
    cpu_pool: Executor | None = None
    """The agent's pool for CPU-bound probe work (segment decoding): :meth:`run_cpu`. None
    (outside an agent): asyncio's default executor."""

    @property
    def cpu_copies(self) -> bool:
        """Whether :meth:`run_cpu` hands ``fn`` copies of its arguments (a process pool): else
        ``fn`` may mutate the caller's objects, even after the caller stopped waiting."""
        return getattr(self.cpu_pool, "isolation", "thread") == "process"

    async def run_cpu(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the agent's CPU pool (:attr:`cpu_pool`), awaited; ``fn`` is a
        module-level function (a process pool pickles it and its arguments).

        A pool of its own (agent/cpupool.py: worker processes by default): a burst of decodes
        (every stream's segment published at once) waits behind itself, not in front of what
        shares asyncio's default executor, and shares no GIL with the event loop.

        The wait for the pool is the agent's own time: the longest wait before a job of this
        attempt started (or, when the attempt is cancelled while a job waits or runs, the time
        it spent here) is noted in the attempt's :class:`SlotWait` (``cpu_wait_s``), so a
        deadline the attempt runs into while its decodes queue is not a timeout of the server
        it measures (agent/runner.py). The decode's own time is not noted.
        """
        t0 = time.monotonic()
        acc = ATTEMPT_SLOT_WAIT.get()
        try:
            started, out = await asyncio.get_running_loop().run_in_executor(self.cpu_pool, _started_at, fn, *args)
        except asyncio.CancelledError:
            if acc is not None:
                acc.note_cpu(time.monotonic() - t0)
            raise
        if acc is not None:
            acc.note_cpu(started - t0)
        return out


def _started_at(fn: Callable[..., _T], *args: Any) -> tuple[float, _T]:
    """``fn(*args)`` and when it started: ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for
    every process of the machine: a worker's start compares with the agent's submit)."""
    return time.monotonic(), fn(*args)


def _playlist_cache() -> Any:
    from probes.core.playlist import PlaylistCache  # probes.core imports this module

    return PlaylistCache()


class SlotWait:
    """The agent's own queues in one probe attempt, seconds: ``longest``, the longest that any
    request waited for a connection slot of the agent's own HTTP client (its bound on requests in
    flight per host, ``agent.max_in_flight_per_host``); ``cpu_wait_s``, the longest that a job
    waited for the agent's CPU pool (:meth:`ProbeContext.run_cpu`). Neither is the server's
    answer: the runner counts them, as it counts its event loop's lateness, against judging the
    attempt's timings (agent/selfwatch.py ``unmeasured``). The runner sets one per attempt in
    :data:`ATTEMPT_SLOT_WAIT`; the client (probes/net/leanhttp.py) and ``run_cpu`` raise it; tasks
    a probe starts share it (context variables are copied into new tasks)."""

    __slots__ = ("cpu_wait_s", "longest")

    def __init__(self) -> None:
        self.longest = 0.0
        self.cpu_wait_s = 0.0

    def note(self, waited_s: float) -> None:
        if waited_s > self.longest:
            self.longest = waited_s

    def note_cpu(self, waited_s: float) -> None:
        if waited_s > self.cpu_wait_s:
            self.cpu_wait_s = waited_s


ATTEMPT_SLOT_WAIT: contextvars.ContextVar[SlotWait | None] = contextvars.ContextVar(
    "signalpath_attempt_slot_wait", default=None)


RESULT_MARGIN_S = 1.0
"""The most a probe keeps back from :attr:`ProbeContext.deadline` for the work it must still
do after a step of its own timed out: close what it opened (RTMP: the connection; WHIP/WHEP:
DELETE the session, close the peer connection) and write the result that names the step.
Without it the runner's cancel would replace that result with a bare ``timeout`` and leave
the session open at the server. See :func:`own_deadline`."""


def own_deadline(ctx: ProbeContext) -> float:
    """The deadline a probe that must finish its result after its own timeouts works to:
    ``ctx.deadline`` less a margin of 10 % of the time left, at most :data:`RESULT_MARGIN_S`
    (1 s at the agent's default 10-s timeouts; a probe that needs no such work uses
    ``ctx.deadline`` itself). ``inf`` when the context has no deadline."""
    left = ctx.deadline - ctx.clock()
    return ctx.deadline - min(RESULT_MARGIN_S, 0.1 * max(0.0, left))
