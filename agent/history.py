"""History: each stream's key figures over time, downsampled, in the agent's own SQLite store.

The post-broadcast report (agent/report.py) needs the figures of a whole broadcast without a
Prometheus; this keeps them beside the incidents (the same file, ``incidents.path``), at one
row per stream per step (``history.step_s``, default 10 s).

What a step holds (``HistoryStep.series``, name -> list of floats):

- ``state|<stage>|<component>``: seconds of the step the status board showed that cell ok,
  degraded, down, unknown (``[ok_s, degraded_s, down_s, unknown_s]``), the board read once a
  second. Availability = ok_s / (ok_s + degraded_s + down_s): unknown (not measured) counts
  neither way.
- ``<figure>|<stage>|<component>|<rendition>`` for the gauges of :data:`FIGURES`
  (``[min, mean, max]`` of the step's samples) and for its counters (``[sum]`` of the step's
  increments): playlist age, segment download ratio, stage latency, glass-to-glass, live
  latency, the virtual players' stalls, stalled seconds and rebuffer ratio, the ingest bitrate,
  WebRTC round trip and packets lost.

The virtual viewers (probes/playback.py) are kept as sessions (``history_sessions``): one row
per viewer from its start, with its startup time, stalls, stalled and watched seconds and
state, for the report's viewer funnel.

Size: a stream's steps are stored in blocks of :data:`BLOCK_STEPS` (2 min at 10 s), each
zlib-compressed JSON: the series' names, repeated every step, cost once a block;
tests/perf/history_cost.py prints the bytes per stream-hour. Bounded by age (``retention_h``)
and by size (``max_mb``, the oldest blocks go first), checked every ``PRUNE_EVERY_S``.

:class:`HistoryRecorder` is a runner sink (``on_cycle``, cheap: a dict update per sample) with
a writer task that stores completed steps from its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from agent.errors import AgentError
from agent.incidents import open_database
from agent.runner import Cycle
from agent.status import StatusBoard
from probes.base import Sample, State
from probes.core.config import StrictModel

log = logging.getLogger(__name__)

# metric -> (series name, "gauge" | "sum")
FIGURES: dict[str, tuple[str, str]] = {
    "signalpath_playlist_age_seconds": ("playlist_age_s", "gauge"),
    "signalpath_segment_download_ratio": ("download_ratio", "gauge"),
    "signalpath_stage_latency_seconds": ("stage_latency_s", "gauge"),
    "signalpath_glass_to_glass_seconds": ("glass_to_glass_s", "gauge"),
    "signalpath_live_latency_seconds": ("live_latency_s", "gauge"),
    "signalpath_playback_stalls_total": ("stalls", "sum"),
    "signalpath_playback_stall_seconds_total": ("stall_s", "sum"),
    "signalpath_playback_rebuffer_ratio": ("rebuffer_ratio", "gauge"),
    "signalpath_ingest_input_bits_per_second": ("bitrate_bps", "gauge"),
    "signalpath_webrtc_rtt_seconds": ("webrtc_rtt_s", "gauge"),
    "signalpath_webrtc_packets_lost_total": ("webrtc_lost", "sum"),
}
STATES = (State.OK, State.DEGRADED, State.DOWN, State.UNKNOWN)  # the order of a state series' seconds
_STATE_INDEX = {s: i for i, s in enumerate(STATES)}
PRUNE_EVERY_S = 600.0
FLUSH_GRACE_S = 2.0  # a step is stored this long after its end: the samples of cycles ending late


class HistorySettings(StrictModel):
    """YAML ``history:`` (stored in the ``incidents.path`` database)."""

    enabled: bool = Field(True, description="keep the downsampled history the report reads")
    step_s: float = Field(10.0, ge=1, le=3600, description="downsampling step, seconds")
    retention_h: float = Field(24 * 31, gt=0, le=24 * 3660, description="hours of history kept")
    max_mb: float = Field(512, gt=0, le=1_000_000, description="most history kept, MB (oldest steps go first)")


def series_key(name: str, stage: str, component: str, rendition: str = "") -> str:
    return f"{name}|{stage}|{component}|{rendition}"


def state_key(stage: str, component: str) -> str:
    return f"state|{stage}|{component}"


@functools.lru_cache(maxsize=4096)  # a report splits the same few dozen names once per step
def split_key(key: str) -> tuple[str, str, str, str]:
    """``(name, stage, component, rendition)``; a state series has rendition ``""``."""
    parts = key.split("|")
    return parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else ""


@dataclass(slots=True)
class HistoryStep:
    """One stream's figures over ``[t, t + step)`` (epoch seconds)."""

    stream: str
    t: float
    step: float
    series: dict[str, list[float]]



BLOCK_STEPS = 12  # steps per stored block: zlib sees the series names once a block, not once a step


def encode_block(steps: list[HistoryStep]) -> bytes:
    """Steps of one stream (one block), oldest first: zlib of ``[[t, step, series], ...]``."""
    return zlib.compress(json.dumps([[s.t, s.step, s.series] for s in steps], separators=(",", ":")).encode(), 6)


def decode_block(stream: str, blob: bytes) -> list[HistoryStep]:
    return [HistoryStep(stream, float(t), float(step), series) for t, step, series in json.loads(zlib.decompress(blob))]


@dataclass(slots=True)
class ViewerSession:
    """One virtual viewer from its start (probes/playback.py), as last reported."""

    stream: str
    component: str
    rendition: str
    started_at: float
    updated_at: float
    startup_s: float | None
    stalls: int
    stall_s: float
    watched_s: float
    rebuffer_ratio: float
    state: str


@dataclass(slots=True)
class _Acc:
    how: str
    lo: float = math.inf
    hi: float = -math.inf
    total: float = 0.0
    n: int = 0

    def add(self, v: float) -> None:
        self.total += v
        self.n += 1
        self.lo, self.hi = min(self.lo, v), max(self.hi, v)

    def value(self) -> list[float]:
        if self.how == "sum":
            return [round(self.total, 4)]
        return [round(self.lo, 4), round(self.total / self.n, 4), round(self.hi, 4)]


class Downsampler:
    """Pure: samples and state seconds into steps of ``step_s`` (aligned to the epoch)."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self._steps: dict[tuple[str, int], dict[str, Any]] = {}
        self._done: dict[str, int] = {}  # stream -> its last step handed out
        self.dropped = 0  # samples for a step already handed out (a cycle that ended very late)

    def _slot(self, stream: str, t: float) -> dict[str, Any] | None:
        idx = int(t // self.step_s)
        slot = self._steps.get((stream, idx))
        if slot is None:
            if self._done.get(stream, -1) >= idx:
                self.dropped += 1
                return None
            slot = self._steps[(stream, idx)] = {}
        return slot

    def add(self, stream: str, key: str, value: float, t: float, how: str = "gauge") -> None:
        if not math.isfinite(value):
            return
        slot = self._slot(stream, t)
        if slot is None:
            return
        acc = slot.get(key)
        if acc is None:
            acc = slot[key] = _Acc(how)
        acc.add(value)

    def add_state(self, stream: str, stage: str, component: str, state: State, seconds: float, t: float) -> None:
        slot = self._slot(stream, t)
        if slot is None:
            return
        key = state_key(stage, component)
        row = slot.get(key)
        if row is None:
            row = slot[key] = [0.0, 0.0, 0.0, 0.0]
        row[_STATE_INDEX[state]] += seconds

    def completed(self, now: float, *, everything: bool = False) -> list[HistoryStep]:
        """The steps that ended ``FLUSH_GRACE_S`` before ``now`` (all with ``everything``), each once."""
        out: list[HistoryStep] = []
        for stream, idx in sorted(self._steps, key=lambda k: k[1]):
            if not everything and (idx + 1) * self.step_s + FLUSH_GRACE_S > now:
                continue
            slot = self._steps.pop((stream, idx))
            self._done[stream] = max(self._done.get(stream, -1), idx)
            series = {k: (v.value() if isinstance(v, _Acc) else [round(x, 3) for x in v]) for k, v in slot.items()}
            out.append(HistoryStep(stream, idx * self.step_s, self.step_s, series))
        return out

    def forget(self, keep: Iterable[str]) -> None:
        """Streams no longer configured: their open steps go (what was stored stays)."""
        kept = set(keep)
        for key in [k for k in self._steps if k[0] not in kept]:
            del self._steps[key]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS history_blocks (
    stream TEXT NOT NULL, t REAL NOT NULL, span REAL NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (stream, t)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_blocks_t ON history_blocks (t);
CREATE TABLE IF NOT EXISTS history_sessions (
    stream TEXT NOT NULL, component TEXT NOT NULL, rendition TEXT NOT NULL, started_at REAL NOT NULL,
    updated_at REAL NOT NULL, startup_s REAL, stalls INTEGER NOT NULL, stall_s REAL NOT NULL,
    watched_s REAL NOT NULL, rebuffer_ratio REAL NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (stream, component, rendition, started_at)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_sessions_updated ON history_sessions (updated_at);
"""


class HistoryStore:
    """Synchronous SQLite history (the module docstring); one connection, one lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = open_database(self.path, _SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AgentError(f"history store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, steps: Iterable[HistoryStep], sessions: Iterable[ViewerSession] = ()) -> None:
        """Store steps (into their blocks: a block is read, merged and written back whole) and
        viewers (each replacing its earlier report)."""
        blocks: dict[tuple[str, float, float], list[HistoryStep]] = {}
        for st in steps:
            span = st.step * BLOCK_STEPS
            blocks.setdefault((st.stream, math.floor(st.t / span) * span, span), []).append(st)
        srows = [(v.stream, v.component, v.rendition, v.started_at, v.updated_at, v.startup_s, v.stalls, v.stall_s,
                  v.watched_s, v.rebuffer_ratio, v.state) for v in sessions]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for (stream, t, span), new in blocks.items():
                    row = self._db.execute("SELECT data FROM history_blocks WHERE stream=? AND t=?",
                                           (stream, t)).fetchone()
                    merged = {s.t: s for s in (decode_block(stream, row[0]) if row else [])}
                    merged.update({s.t: s for s in new})  # a step stored twice (a restart): the later stays
                    self._db.execute("INSERT OR REPLACE INTO history_blocks VALUES (?, ?, ?, ?)",
                                     (stream, t, span, encode_block(sorted(merged.values(), key=lambda s: s.t))))
                self._db.executemany("INSERT OR REPLACE INTO history_sessions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                     srows)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise

    def steps(self, start: float, end: float, *, stream: str | None = None) -> list[HistoryStep]:
        """Steps that begin in ``[start, end)``, oldest first."""
        q = "SELECT stream, data FROM history_blocks WHERE t + span > ? AND t < ?"
        args: list[Any] = [start, end]
        if stream is not None:
            q += " AND stream = ?"
            args.append(stream)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY t, stream", args).fetchall()
        out = [st for name, blob in rows for st in decode_block(name, blob) if start <= st.t < end]
        return sorted(out, key=lambda st: (st.t, st.stream))

    def sessions(self, start: float, end: float, *, stream: str | None = None) -> list[ViewerSession]:
        """Viewers that started in ``[start, end)``."""
        q = "SELECT * FROM history_sessions WHERE started_at >= ? AND started_at < ?"
        args: list[Any] = [start, end]
        if stream is not None:
            q += " AND stream = ?"
            args.append(stream)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY started_at", args).fetchall()
        return [ViewerSession(*r) for r in rows]

    def streams(self) -> list[str]:
        """Every stream with history kept."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT stream FROM history_blocks ORDER BY stream")]

    def bytes_stored(self) -> int:
        """The history's size: its blobs and a row's keys (an estimate of its pages)."""
        with self._lock:
            blob, rows = self._db.execute("SELECT COALESCE(SUM(LENGTH(data)), 0), COUNT(*) FROM history_blocks"
                                          ).fetchone()
        return int(blob) + 40 * int(rows)

    def prune(self, now: float, retention_s: float, max_bytes: float) -> int:
        """Blocks and viewers older than ``retention_s`` (a block once its last step is); then the
        oldest blocks until under ``max_bytes``. Returns the blocks removed."""
        cutoff = now - retention_s
        with self._lock:
            gone = self._db.execute("DELETE FROM history_blocks WHERE t + span <= ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM history_sessions WHERE updated_at < ?", (cutoff,))
        size = self.bytes_stored()
        if size > max_bytes:
            with self._lock:
                rows = self._db.execute("SELECT COUNT(*) FROM history_blocks").fetchone()[0]
                drop = int(rows * (1 - max_bytes / size)) + 1
                cut = self._db.execute("SELECT t FROM history_blocks ORDER BY t LIMIT 1 OFFSET ?",
                                       (min(drop, rows - 1),)).fetchone()
                if cut is not None:
                    gone += self._db.execute("DELETE FROM history_blocks WHERE t < ?", (cut[0],)).rowcount
                    self._db.execute("DELETE FROM history_sessions WHERE started_at < ?", (cut[0],))
        return gone


class HistoryRecorder:
    """Runner sink and writer task: the module docstring.

    ``on_cycle`` files the cycle's samples of :data:`FIGURES` and, once a second, every
    board cell's state; the writer stores completed steps every ``step_s`` and prunes every
    :data:`PRUNE_EVERY_S`. Everything left is stored on ``stop``."""

    def __init__(self, settings: HistorySettings, path: str | Path, board: StatusBoard, *,
                 wall: Callable[[], float]) -> None:
        self.settings = settings
        self._path = path
        self._board = board
        self._wall = wall
        self._down = Downsampler(settings.step_s)
        self._last_board: float | None = None
        self._sessions: dict[tuple[str, str, str, float], ViewerSession] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-store")
        self.store: HistoryStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(30.0):
            return await loop.run_in_executor(self._executor, lambda: fn(*args))

    async def start(self) -> None:
        if not self.settings.enabled:
            return
        self.store = await self._run(HistoryStore, self._path)
        self._task = asyncio.create_task(self._writer(), name="history-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.store is not None:
            try:
                await self._flush(everything=True)
            except (sqlite3.Error, TimeoutError) as exc:
                log.warning("history: the last steps could not be stored: %s", exc)
            await self._run(self.store.close)
            self.store = None
        self._executor.shutdown(wait=False)

    # -- the sink (hot path: no I/O) ---------------------------------------------

    def on_cycle(self, cycle: Cycle) -> None:
        if not self.settings.enabled:
            return
        t = cycle.end_wall
        stream = cycle.job.stream
        for a in cycle.attempts:
            self._samples(stream, a.result.samples, t)
            playback = a.result.figures.get("playback")
            if playback:
                for rendition, f in playback.items():
                    self._viewer(stream, a.target.component, rendition, f, t)
        if cycle.combined is not None:
            self._samples(stream, cycle.combined.samples, t)
        now = self._wall()
        if self._last_board is None or now - self._last_board >= 1.0:
            # seconds since the last reading (capped: an agent frozen for a minute did not watch)
            dt = 1.0 if self._last_board is None else min(now - self._last_board, 5.0)
            self._last_board = now
            for name in self._board.streams():
                for cell in self._board.cells(name):
                    self._down.add_state(name, cell.stage, cell.component, cell.state, dt, now)

    def _samples(self, stream: str, samples: list[Sample], t: float) -> None:
        add = self._down.add
        for s in samples:
            spec = FIGURES.get(s.name)
            if spec is not None:
                lab = s.labels
                add(stream, series_key(spec[0], lab.get("stage", "cdn"), lab.get("component", ""),
                                       lab.get("rendition", "")), s.value, t, spec[1])

    def _viewer(self, stream: str, component: str, rendition: str, f: dict[str, Any], t: float) -> None:
        started = f.get("session_at")
        if started is None:
            return
        key = (stream, component, rendition, float(started))
        startup = f.get("startup_s")
        self._sessions[key] = ViewerSession(
            stream, component, rendition, float(started), t, None if startup is None else float(startup),
            int(f.get("stall_count", 0)), float(f.get("stall_s", 0.0)), float(f.get("watched_s", 0.0)),
            float(f.get("rebuffer_ratio", 0.0)), str(f.get("state", "")))

    # -- the writer ---------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            await asyncio.sleep(self.settings.step_s)
            try:
                await self._flush()
                now = self._wall()
                if now - self._pruned_at >= PRUNE_EVERY_S and self.store is not None:
                    self._pruned_at = now
                    await self._run(self.store.prune, now, self.settings.retention_h * 3600,
                                    self.settings.max_mb * 1e6)
            except (sqlite3.Error, TimeoutError) as exc:  # the disk: said, and tried again next step
                log.warning("history: cannot store: %s", exc)

    async def _flush(self, *, everything: bool = False) -> None:
        now = self._wall()
        steps = self._down.completed(now, everything=everything)
        sessions = list(self._sessions.values())
        # a viewer not heard of for a minute has been replaced (or its stream removed): stored, then let go
        for key in [k for k, v in self._sessions.items() if now - v.updated_at > 60.0]:
            del self._sessions[key]
        if (steps or sessions) and self.store is not None:
            await self._run(self.store.put, steps, sessions)

    def keep_only(self, streams: Iterable[str]) -> None:
        self._down.forget(streams)
