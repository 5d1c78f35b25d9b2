"""Latency probe: glass-to-glass latency split per stage, one trace per segment.

For each new segment of the watched rendition(s) (default: the lowest, by BANDWIDTH), the
probe times when it first appeared in the media playlist of the origin and of every edge,
and reads when its frames were captured from the latency beacon burned into the picture
(probes/core/beacon.py), falling back to EXT-X-PROGRAM-DATE-TIME (RFC 8216 §4.3.2.6) when the
picture carries none. From these (definitions in probes/core/latency_core.py):

- ``signalpath_stage_latency_seconds{stage="transcode",component="transcoder"}``: origin
  first-seen - capture of the segment's last frame (ingest + transcode + packaging);
  with an ingest monitor on the stream (probes/ingest_monitor.py, ``streams[].ingest.monitor``)
  the ingest latency of the frames nearest in capture time is subtracted (transcode +
  packaging): the job builder puts one :class:`~probes.core.latency_core.IngestLatencyShare`
  in both targets' configs; a segment's figure waits up to ``share.wait_s`` for a monitor
  window that saw frames captured at or after its last frame, then uses the nearest one
  (or, with none within 30 s, the unsplit figure, ``ingest_subtracted`` 0 in the evidence).
  A figure split with an older window (none covered the segment in time: the ingest monitor is
  behind, as under an ingest delay) is shown but not judged: evidence UNKNOWN, never a slow
  transcoder for what the ingest added;
- ``signalpath_stage_latency_seconds{stage="cdn",component=<edge>}``: edge first-seen -
  origin first-seen;
- ``signalpath_glass_to_glass_seconds{component=<edge>,rendition}``: edge first-seen -
  capture of the last frame (``component="origin"`` when the stream has no edge);
- label ``method`` = ``beacon`` | ``pdt`` says where the capture time came from;
- evidence ``latency_high`` (DEGRADED) at transcode/transcoder or cdn/<edge> when a value
  jumps above its baseline; ``signalpath_clock_offset_seconds`` when NTP is configured;
- one trace per segment (SpanRecords marked :data:`SEPARATE_TRACE_ATTR`).

Polling: the probe polls the playlists itself rather than reusing the HLS probe's
observations: the accuracy target (median error <= one frame interval, DESIGN.md) needs
polls ~50 ms apart around each arrival, and the HLS probe polls once a second
(``ctx.shared`` is per target, not shared between jobs). It polls around predicted arrivals
only, not all the time. One attempt is a watch window of ``interval_s - 0.1`` s; each
endpoint has its own schedule, carried across attempts (an attempt neither starts nor ends
with a poll of every endpoint):

- the origin: its next segment is due at the newest one's arrival plus its EXTINF (the
  publish cadence, RFC 8216 §6.2.1); it is polled every ``fast_poll_s`` (0.05 s) from one
  fast poll before the earliest of its last six arrivals' errors against that prediction
  would place it (:meth:`~probes.core.latency_core.FirstSeenTracker.windows`; at most
  ``fast_lead_s``, 0.3 s, before due, and that until errors are known) until it arrives, for
  at most ``ORIGIN_LAG_FACTOR`` x ``fast_lag_s`` (2.5 s) past due (a segment late by a
  latency step is still timed finely), then every ``poll_s`` (0.5 s) while it is late.
  Before a window that opens later than ``due - fast_lead_s``, one guard poll at that time
  bounds the bracket of a segment that comes earlier than learned
  (:func:`~probes.core.latency_core.next_poll_delay`);
- an edge: driven by the origin's arrivals (:func:`~probes.core.latency_core.edge_poll_delay`):
  polled once when the origin lists a new segment (it wakes the edge's schedule), then every
  ``fast_poll_s`` from one fast poll before the shortest of its recent lags behind the origin
  until it lists the segment too, for at most ``fast_lag_s`` past its longest lag (an edge a
  constant delay behind stays timed finely and sleeps until then), every ``poll_s`` after;
  an edge that lists all the origin lists waits for the origin's next arrival (at most 5 s).
  A pull-through edge cannot list a segment before the origin it pulls from, so the edge's
  bracket starts no earlier than the origin's
  (:meth:`~probes.core.latency_core.Seen.not_before`).

Polling is measurement, not retrying (STYLE.md 4). An agent that is behind sheds the fast
polls first (``ProbeContext.shed_level``, agent/selfwatch.py): the same windows around the
predicted arrivals are then polled every ``poll_s`` instead of every ``fast_poll_s``, and each
figure is that much coarser. (Until 2026-12-04 a shed probe polled every endpoint every
``poll_s`` all the time: 6 requests per stream-second at 3 endpoints, more than the 3.8 of the
schedule it shed; measured: ``tests/test_latency_core.py::test_shedding_fast_polls_polls_less``.) ``playlist_polls`` (figure) counts an attempt's requests.
Measured (tests/perf/latency_accuracy.py, 2026-12-03, lab: 3 endpoints, the lowest rendition,
60 s): 3.8 playlist requests per stream-second (15.3 with the schedule before: slow polls
between arrivals, a window from 0.3 s before every due time, every endpoint polled at each
attempt's end), edges |error| median 24 ms, p95 43 ms (8 / 33 before), transcode 13 / 23 ms
(19 / 22); with an ingest delay and a 1.5-s edge delay in the second half: 7.9 per
stream-second (18.9), edges 25-26 / 42-260 ms (13-30 / 38-264), transcode 11 / 25 ms (13 /
17). The edge delayed by 1.5 s is timed by slow polls until its lag is learned, as before.
Earlier tries that failed: per-endpoint windows around each endpoint's own predicted arrival
without the origin's wake (18.5 per stream-second, edges' p95 274 ms: an edge polled slowly
until its own window opened lists the segment at the window's first poll, bracketed by the
slow poll before it — the origin-driven wake and the origin-bounded bracket above are what
fixed that); widening the lag to 4 s for every endpoint under the old union schedule (edges'
p95 52 → 188 ms under faults).

Decoding: each new segment is fetched once from the origin (an edge serves the same
bytes under the same sequence number; from an edge when the origin did not list it) and
every video frame is decoded in the agent's CPU pool (one at a time per stream), reading the
beacon of the first and the last frame (a missing one is extrapolated by presentation
time from the other). Measured here: ~6 ms CPU for a 2-s 180p segment (0.3 % of its
duration), ~10 ms at 360p; ``probe_cost`` figures report it live. After three segments
without a beacon only every fifth is decoded (PDT meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core import beacon
from probes.core.config import StrictModel
from probes.core.frames import frame_time, luma_plane, time_base_parts
from probes.core.latency_core import (
    BASELINE_MIN_SAMPLES,
    BASELINE_S,
    HIGH_ABS_S,
    HIGH_RATIO,
    PART_KEY,
    SEPARATE_TRACE_ATTR,
    SKEW_TOLERANCE_S,
    UPSTREAM,
    Baseline,
    ClockVerdict,
    FirstSeenTracker,
    IngestLatencyShare,
    Seen,
    SegmentTiming,
    clock_verdict,
    edge_poll_delay,
    next_poll_delay,
    segment_trace,
)
from probes.core.playlist import (
    MASTER_REFRESH_S,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PlaylistError,
    Variant,
    choose_renditions,
    next_part,
    with_query,
)
from probes.core.segment_decode import decodable_packets, open_segment
from probes.core.thresholds import CLOCK_OFFSET_MAX_S
from probes.faults import Fault
from probes.net.httpfetch import Fetcher, FetchResult

__all__ = ["ClockSettings", "LatencySettings", "LatencyTargetConfig", "SegmentBeacons", "read_segment_beacons",
           "probe", "SEPARATE_TRACE_ATTR"]

OVERDUE_AFTER_LATE = 0.25
"""x the segment's duration: a segment this much later than the baseline makes the next one,
while missing, judged by its latency's lower bound (:meth:`_Attempt.overdue`)."""
INGEST_MAX_GAP_S = 30.0  # an ingest monitor window further than this (capture time) from a segment is not used
BEACON_MISSES_BEFORE_BACKOFF = 3
BEACON_RECHECK_EVERY = 5
LL_HOLD_TARGETS = 3.0  # a blocking reload is given up after 3 target durations (what a server holds it, §6.2.5.2)
LL_HELD_MIN_S = 0.02  # an answer later than this after the request was held: the part came out then
LL_ANCHOR_MAX_AGE_S = 30.0  # a beacon-PDT offset older than this is not used for a part without its own beacon
LL_MAX_HELD_PER_HOST = 64  # the watchers' own client: one held request per rendition watched there
ORIGIN_LAG_FACTOR = 2.5  # the origin polls fast this many fast_lag_s past a due segment (edges follow its arrival)
LL_MAX_FAILURES = 5  # blocking reloads failed in a row before a watcher ends (the attempts poll plainly again)


class ClockSettings(StrictModel):
    """``latency.clock``: the agent's clock check (THRESHOLDS.md "clock offset")."""

    ntp_server: str | None = Field(None, description="host or host:port; unset: the host clock is trusted")
    interval_s: float = Field(60.0, gt=0, le=3600, description="seconds between NTP measurements")
    timeout_s: float = Field(2.0, gt=0, le=30)
    max_offset_s: float = Field(CLOCK_OFFSET_MAX_S, gt=0, le=10, description="at or above: whole-second figures only")


class LatencySettings(StrictModel):
    """``streams[].latency``: per-stage latency from the beacon (or PDT)."""

    enabled: bool = True
    renditions: Literal["lowest", "all"] | list[str] = Field(
        "lowest", description="'lowest' (default), 'all', or rendition names")
    interval_s: float = Field(1.0, ge=0.3, le=60, description="one watch window (and report) per interval")
    timeout_s: float = Field(10.0, gt=0, le=120)
    poll_s: float = Field(0.5, gt=0, le=10, description="playlist poll period away from expected arrivals")
    fast_poll_s: float = Field(0.05, ge=0.01, le=5, description="poll period around an expected arrival")
    fast_lead_s: float = Field(0.3, ge=0, le=10)
    fast_lag_s: float = Field(1.0, ge=0, le=10, description="keep polling fast this long after a segment is due")
    beacon: bool = Field(True, description="read the beacon; false: EXT-X-PROGRAM-DATE-TIME only")
    blocking_reload: bool = Field(True, description="LL-HLS: time each part by a blocking reload waiting for it "
                                  "(_HLS_msn/_HLS_part, one request per part) instead of fast polls")
    finalize_after_segments: float = Field(4.0, ge=1, le=30,
                                           description="a segment's trace is closed this many EXTINF after "
                                           "it was first listed, edges that never listed it left out")
    baseline_s: float = Field(BASELINE_S, ge=10, le=86_400, description="latency_high baseline window")
    baseline_min_samples: int = Field(BASELINE_MIN_SAMPLES, ge=1, le=1000)
    high_abs_s: float = Field(HIGH_ABS_S, ge=0, le=600)
    high_ratio: float = Field(HIGH_RATIO, ge=0, le=100)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    playlist_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    segment_max_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    verify_tls: bool = True


@dataclass(frozen=True, slots=True)
class LatencyTargetConfig:
    """What the job builder hands the probe: settings plus the stream's endpoints."""

    settings: LatencySettings
    origin: str
    edges: tuple[tuple[str, str], ...] = ()  # (name, master URL)
    ingest: IngestLatencyShare | None = None  # the stream's ingest monitor figures (split ingest / transcode)


# ----------------------------------------------------------------- decoding (blocking)


@dataclass(slots=True)
class SegmentBeacons:
    frames: int = 0
    first_pts: float | None = None
    last_pts: float | None = None
    first_beacon: float | None = None  # capture time of the first frame (read or extrapolated)
    last_beacon: float | None = None
    cpu_s: float = 0.0
    error: str | None = None


def read_segment_beacons(data: bytes, read_beacon: bool = True, key_first: bool = False) -> SegmentBeacons:
    """Decode every video frame of one segment; read the first and the last frame's beacon.

    Blocking (run it in the CPU pool: ProbeContext.run_cpu); never raises on bad media. A frame whose beacon is
    unreadable is extrapolated from the other end by presentation time.

    ``key_first``: look at the key frames alone first (FFmpeg ``skip_frame=nonkey``); when the
    first has no beacon, the segment has none (the beacon is in every picture) and its frames
    are counted and timed from their packets: a third of the cost of decoding them all, for a
    stream known to carry no beacon being checked again (``BEACON_RECHECK_EVERY``).
    """
    import av

    out = SegmentBeacons()
    c0 = time.thread_time()
    try:
        container = open_segment(data, key_frames_only=key_first and read_beacon)
    except (av.FFmpegError, ValueError, OSError) as exc:
        out.error = f"unreadable segment: {str(exc)[:120]}"
        return out
    try:
        vs = next((s for s in container.streams if s.type == "video"), None)
        if vs is None:
            out.error = "no video stream"
            return out
        if key_first and read_beacon:
            if _key_frame_beacon(container, vs, out):
                full = read_segment_beacons(data, read_beacon)
                full.cpu_s = time.thread_time() - c0
                return full
            return out
        vs.codec_context.thread_count = 1
        first_read: tuple[float, float] | None = None  # (pts, capture)
        last = None
        first_pts = last_pts = 0.0
        for packet in container.demux(vs):
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError):
                continue
            for fr in frames:
                pts = frame_time(fr)
                if pts is None:
                    continue
                out.frames += 1
                if out.first_pts is None:
                    out.first_pts = first_pts = pts
                if read_beacon and first_read is None and out.frames <= 5:
                    t = beacon.read(luma_plane(fr))
                    if t is not None:
                        first_read = (pts, t)
                last, last_pts = fr, pts
        if last is not None:
            out.last_pts = last_pts
            last_t = beacon.read(luma_plane(last)) if read_beacon else None
            if last_t is not None:
                out.last_beacon = last_t
                if first_read is None:
                    out.first_beacon = last_t - (last_pts - first_pts)
            if first_read is not None:
                out.first_beacon = first_read[1] - (first_read[0] - first_pts)
                if out.last_beacon is None:
                    out.last_beacon = first_read[1] + (last_pts - first_read[0])
    except (av.FFmpegError, ValueError, OSError, RuntimeError) as exc:
        out.error = f"demux failed: {str(exc)[:120]}"
    finally:
        container.close()
        out.cpu_s = time.thread_time() - c0
    return out


def _key_frame_beacon(container, vs, out: SegmentBeacons) -> bool:
    """Key frames only: True when the first decoded one carries a beacon; else ``out`` gets the
    frames' count and times from the packets that a full decode shows as frames (presentation
    order: the smallest and largest; :func:`probes.core.segment_decode.decodable_packets`)."""
    import av

    vs.codec_context.thread_count = 1
    vs.codec_context.skip_frame = "NONKEY"
    pts: list[float] = []
    keys: list[bool] = []
    checked = False
    tb = time_base_parts(vs)  # read once (probes/core/frames.py)
    for packet in container.demux(vs):
        if packet.pts is not None and packet.size and tb is not None:
            pts.append(packet.pts * tb[0] / tb[1])
            keys.append(bool(packet.is_keyframe))
        if checked:
            continue
        try:
            frames = packet.decode()
        except (av.FFmpegError, ValueError):
            continue
        for fr in frames:
            checked = True
            if beacon.read(luma_plane(fr)) is not None:
                return True
            break
    pts, _ = decodable_packets(pts, keys)  # as a full decode counts them (a segment cut mid-GOP)
    if pts:
        out.frames, out.first_pts, out.last_pts = len(pts), min(pts), max(pts)
    return False


# ----------------------------------------------------------------- per-target state


@dataclass(slots=True)
class _State:
    tracker: FirstSeenTracker = field(default_factory=FirstSeenTracker)
    masters: dict[str, tuple[float, list[Variant]]] = field(default_factory=dict)
    next_poll: dict[str, float] = field(default_factory=dict)  # endpoint -> epoch seconds of its next scheduled poll
    segments: dict[tuple[str, int], SegmentTiming] = field(default_factory=dict)
    baselines: dict[tuple[str, str], Baseline] = field(default_factory=dict)
    latest: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    beacon_misses: int = 0
    skipped: int = 0
    frame_interval: float = 0.04
    ntp_at: float | None = None
    ntp_offset: float | None = None
    skew_seen_at: float | None = None
    decode_sem: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    cpu: list[float] = field(default_factory=list)
    reported: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # figures already taken
    anchors: dict[str, tuple[float, float]] = field(default_factory=dict)  # rendition -> (beacon - PDT, wall time measured)
    held_polls: int = 0  # blocking reloads made by the LL-HLS watchers since the last attempt reported
    # rendition -> the newest judged segment's (seq, capture of its last frame, the longest the next
    # may last, s later than the baseline) for the overdue bound (_Attempt.overdue)
    judged_last: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)

    def first_time(self, key: tuple[str, int], what: str) -> bool:
        """True the first time ``what`` of segment ``key`` is reported."""
        done = self.reported.setdefault(key, set())
        if what in done:
            return False
        done.add(what)
        return True


class _LowLatency:
    """LL-HLS: one loop per (endpoint, rendition) that always has a blocking reload waiting for
    the next part (RFC 8216bis §6.2.5.2), kept from attempt to attempt in ``ctx.state`` (the
    runner closes it through :meth:`aclose` at stop, at a config reload and when the stream is
    removed; a loop ends itself when the agent sheds, ``_Attempt.watch``) with the capture-time
    tasks its answers start and its own HTTP client: held requests take one connection each for
    as long as a part takes, and must not use up the shared client's per-host slots."""

    def __init__(self) -> None:
        self.loops: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.capture: set[asyncio.Task[None]] = set()
        self._http: Fetcher | None = None

    async def get(self, url: str, **kw: Any) -> FetchResult:
        if self._http is None:
            self._http = Fetcher(max_per_host=LL_MAX_HELD_PER_HOST)
            await self._http.start()
        result: FetchResult = await self._http.get(url, **kw)
        return result

    def ended(self, keep: set[tuple[str, str]]) -> None:
        """Cancel the loops not in ``keep`` (renditions no longer chosen); a loop that ended on
        an exception raises it here (a bug: never dropped unseen)."""
        for key, task in list(self.loops.items()):
            if key not in keep:
                task.cancel()
            elif task.done():
                del self.loops[key]
                if not task.cancelled() and (exc := task.exception()) is not None:
                    raise exc

    def running(self, key: tuple[str, str]) -> bool:
        task = self.loops.get(key)
        return task is not None and not task.done()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.capture.add(task)
        task.add_done_callback(self.capture.discard)

    async def aclose(self) -> None:
        tasks = [*self.loops.values(), *self.capture]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.loops.clear()
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()


def part_units(pl: MediaPlaylist) -> dict[int, tuple[Part, float | None]]:
    """LL-HLS: every listed part by unit number (``PART_KEY``), with its wall-clock start: its
    segment's EXT-X-PROGRAM-DATE-TIME (the segment in progress: the last one's + its EXTINF) plus
    the DURATIONs of the parts before it. None when that cannot be known (no PDT, or the
    segment's first parts no longer listed)."""
    seg_pdt = {s.seq: s.pdt for s in pl.segments}
    last = pl.segments[-1] if pl.segments else None
    nxt = last.pdt + last.duration if last is not None and last.pdt is not None else None
    out: dict[int, tuple[Part, float | None]] = {}
    offset: dict[int, float | None] = {}
    for p in pl.parts:
        if p.index >= PART_KEY:
            continue
        if p.msn not in offset:
            base = seg_pdt.get(p.msn, nxt if p.msn == pl.last_seq + 1 else None)
            offset[p.msn] = base if p.index == 0 else None
        start = offset[p.msn]
        out[p.msn * PART_KEY + p.index] = (p, start)
        offset[p.msn] = start + p.duration if start is not None else None
    return out


class _Attempt:
    def __init__(self, target: ProbeTarget, ctx: ProbeContext) -> None:
        self.t = target
        self.ctx = ctx
        self.tc: LatencyTargetConfig = target.config
        self.cfg = self.tc.settings
        self.st: _State = ctx.state.setdefault("latency", _State())
        self.result = ProbeResult()
        self.endpoints: dict[str, str] = {"origin": self.tc.origin, **dict(self.tc.edges)}
        self.tasks: list[asyncio.Task[None]] = []
        self.polls = 0  # media playlist requests this attempt (figure ``playlist_polls``)
        self.late: tuple[float, str] | None = None  # the next segment's overdue bound (:meth:`overdue`)
        self.wake = {e: asyncio.Event() for e in self.endpoints}  # an edge's schedule, woken by the origin
        ll = ctx.state.get("latency_ll")
        if not isinstance(ll, _LowLatency):
            ll = ctx.state["latency_ll"] = _LowLatency()
        self.ll: _LowLatency = ll

    async def fetch(self, url: str, max_bytes: int, byte_range: tuple[int, int] | None = None) -> FetchResult:
        result: FetchResult = await self.ctx.http.get(url, max_bytes=max_bytes, verify_tls=self.cfg.verify_tls,
                                                      byte_range=byte_range)
        return result

    async def variants(self, endpoint: str) -> list[Variant] | None:
        now = self.ctx.clock()
        cached = self.st.masters.get(endpoint)
        if cached is not None and now - cached[0] < MASTER_REFRESH_S:
            return cached[1]
        fr = await self.fetch(self.endpoints[endpoint], self.cfg.playlist_max_bytes)
        if fr.failure:
            return None
        try:
            pl = await self.ctx.playlists.parse(fr.body, fr.final_url)
        except PlaylistError:
            return None
        if isinstance(pl, MasterPlaylist):
            chosen = choose_renditions(pl.variants, self.cfg.renditions)
        else:
            chosen = [Variant(name="main", uri=self.endpoints[endpoint], bandwidth=None, resolution=None)]
        self.st.masters[endpoint] = (now, chosen)
        return chosen

    async def schedule(self, endpoint: str, end: float) -> None:
        """Poll ``endpoint`` until ``end`` (clock): the origin fast around its next expected
        arrival, an edge as :func:`~probes.core.latency_core.edge_poll_delay` says (woken when
        the origin lists a new segment); its fast polls ``poll_s`` apart when the agent sheds them
        (agent/selfwatch.py SHED_ORDER)."""
        wake = self.wake[endpoint]
        # the schedule goes on across attempts: an attempt that ends before the next poll is due
        # leaves it to the next attempt (it does not poll at its end)
        at = self.st.next_poll.get(endpoint, 0.0)
        while True:
            wait = at - time.time()
            if wait > 0:
                room = end - self.ctx.clock()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, min(wait, room))):
                        await wake.wait()
                if not wake.is_set() and wait > room:
                    self.st.next_poll[endpoint] = at
                    return
            wake.clear()
            await self.poll(endpoint)
            at = time.time() + self.delay(endpoint)
            if self.ctx.clock() >= end:
                self.st.next_poll[endpoint] = at
                return

    def delay(self, endpoint: str) -> float:
        """Seconds to ``endpoint``'s next poll: the schedule of the module docstring, its fast
        polls ``poll_s`` apart instead of ``fast_poll_s`` while the agent sheds them."""
        cfg, tracker = self.cfg, self.st.tracker
        fast = cfg.poll_s if self.ctx.shed_level() >= 1 else cfg.fast_poll_s
        if endpoint == "origin":  # a late segment (a step in latency) is still timed within ORIGIN_LAG_FACTOR lags
            return next_poll_delay(time.time(), tracker.windows("origin", cfg.fast_lead_s, fast), cfg.poll_s,
                                   fast, cfg.fast_lead_s, ORIGIN_LAG_FACTOR * cfg.fast_lag_s)
        return edge_poll_delay(time.time(), tracker, endpoint, cfg.poll_s, fast, cfg.fast_lead_s, cfg.fast_lag_s)

    async def poll(self, endpoint: str) -> None:
        vs = await self.variants(endpoint)
        if not vs:
            return
        watched = {key for key in self.ll.loops if key[0] != endpoint} | {(endpoint, v.name) for v in vs}
        self.ll.ended(watched)
        await asyncio.gather(*(self.poll_rendition(endpoint, v) for v in vs
                               if not self.ll.running((endpoint, v.name))))

    async def poll_rendition(self, endpoint: str, v: Variant) -> None:
        self.polls += 1
        fr = await self.fetch(v.uri, self.cfg.playlist_max_bytes)
        if fr.failure:
            self.st.tracker.failed(endpoint, v.name)
            return
        try:
            pl = await self.ctx.playlists.parse(fr.body, fr.final_url)
        except PlaylistError:
            self.st.tracker.failed(endpoint, v.name)
            return
        if not isinstance(pl, MediaPlaylist):
            return
        if pl.parts:  # LL-HLS: timed part by part
            units = part_units(pl)
            new = self.st.tracker.observe(endpoint, v.name, [(u, p.duration) for u, (p, _) in units.items()],
                                          fr.start_wall, fr.end_wall)
            self.note_parts(endpoint, v, units, new, fr.end_wall, self.tasks.append, pl.target_duration)
            if self.cfg.blocking_reload and next_part(pl) is not None and self.ctx.shed_level() < 1:
                self.ll.loops[(endpoint, v.name)] = asyncio.ensure_future(self.watch(endpoint, v, pl))
            return
        new = self.st.tracker.observe(endpoint, v.name, [(s.seq, s.duration) for s in pl.segments],
                                      fr.start_wall, fr.end_wall)
        if new and endpoint == "origin":
            for e, event in self.wake.items():  # the edges now poll fast until they list it too
                if e != endpoint:
                    event.set()
        elif new:
            self.st.tracker.note_lag(endpoint, "origin", v.name)
        by_seq = {s.seq: s for s in pl.segments}
        for seq, seen in new:
            key = (v.name, seq)
            seg = by_seq[seq]
            if seg.gap:
                continue  # EXT-X-GAP: no content, nothing to time (never fetched)
            timing = self.st.segments.get(key)
            if timing is None:
                timing = self.st.segments[key] = SegmentTiming(v.name, seq, seg.duration, seg.pdt,
                                                               listed_at=fr.end_wall, target_s=pl.target_duration)
                self.tasks.append(asyncio.ensure_future(self.capture_times(timing, seg.uri)))
            if seen is not None:
                origin = timing.seen.get("origin")
                timing.seen[endpoint] = seen if endpoint == "origin" or origin is None else seen.not_before(origin)
                if seq != new[-1][0]:
                    timing.backlog.add(endpoint)

    def note_parts(self, endpoint: str, v: Variant, units: dict[int, tuple[Part, float | None]],
                   new: list[tuple[int, Seen | None]], listed_at: float, start: Any, target_duration: float) -> None:
        """New parts first seen at ``endpoint``: their timing entries (capture times started
        through ``start``, once per part whichever endpoint lists it first; kept as long as a
        segment would be, ``target_duration``: an edge may list a part seconds after the origin)."""
        for unit, seen in new:
            part, pdt = units[unit]
            if part.gap:
                continue
            key = (v.name, unit)
            timing = self.st.segments.get(key)
            if timing is None:
                timing = self.st.segments[key] = SegmentTiming(v.name, part.msn, part.duration, pdt,
                                                               listed_at=listed_at, part=part.index,
                                                               horizon_s=target_duration)
                start(asyncio.ensure_future(self.capture_times(timing, part.uri, part.independent, part.byterange)))
            if seen is not None:
                timing.seen[endpoint] = seen
                if unit != new[-1][0]:
                    timing.backlog.add(endpoint)

    async def watch(self, endpoint: str, v: Variant, pl: MediaPlaylist) -> None:
        """LL-HLS: ask for the part after the newest seen, held by the server until it exists
        (``_HLS_msn``/``_HLS_part``), again at once after each answer: the answer's first byte is
        when the part came out at that endpoint (within the round trip), one request per part
        instead of fast polls. Its requests go through the watcher's own client
        (:class:`_LowLatency`), so held requests never queue the agent's other requests to that
        host behind them. An answer with nothing new, a failure or no answer: the next request a
        part target later (never a hot loop). Ends — and the attempts poll that rendition plainly
        again — when the playlist no longer offers blocking reload and parts, after
        ``LL_MAX_FAILURES`` failures in a row, or when the agent sheds optional work."""
        st, cfg, ll = self.st, self.cfg, self.ll
        shed = self.ctx.shed_level
        answered_at: float | None = None
        failures = 0
        while (block := next_part(pl)) is not None and failures < LL_MAX_FAILURES and shed() < 1:
            assert pl.part_target is not None
            sent = time.time()
            st.held_polls += 1
            try:
                async with asyncio.timeout(LL_HOLD_TARGETS * pl.target_duration + 1.0):
                    fr = await ll.get(with_query(v.uri, f"_HLS_msn={block[0]}&_HLS_part={block[1]}"),
                                      max_bytes=cfg.playlist_max_bytes, verify_tls=cfg.verify_tls)
            except TimeoutError:
                fr = None
            try:
                new_pl = await self.ctx.playlists.parse(fr.body, fr.final_url) if fr is not None and not fr.failure else None
            except PlaylistError:
                new_pl = None
            if fr is None or not isinstance(new_pl, MediaPlaylist):
                failures += 1
                st.tracker.failed(endpoint, v.name)
                answered_at = None
                await asyncio.sleep(pl.part_target)
                continue
            failures = 0
            first_byte = fr.end_wall - fr.transfer_s  # after any wait for a connection and redirects
            held = first_byte - sent >= LL_HELD_MIN_S
            seen = (Seen(first_byte, max(fr.connect_s, 0.002)) if held  # the part came out then
                    else None if answered_at is None  # at once, after a failure: not timed
                    else Seen((answered_at + sent) / 2.0, (sent - answered_at) / 2.0))  # out since the last answer
            answered_at = fr.end_wall
            units = part_units(new_pl)
            new = st.tracker.observe_at(endpoint, v.name, list(units), seen)
            self.note_parts(endpoint, v, units, new, fr.end_wall, ll.spawn, new_pl.target_duration)
            pl = new_pl
            if not new:
                await asyncio.sleep(pl.part_target or 0.5)  # nothing new (a server that does not hold): not a hot loop

    async def capture_times(self, timing: SegmentTiming, uri: str, independent: bool = True,
                            byte_range: tuple[int, int] | None = None) -> None:
        """Capture times of one segment or part: beacon when the picture has it, else PDT. A part
        that does not start with a frame decodable on its own (no INDEPENDENT=YES) is not decoded:
        its PDT is moved by the beacon-PDT offset its rendition's last decoded part or segment
        measured (``anchors``: the same encode's clock), a "beacon" figure too."""
        st, cfg = self.st, self.cfg
        if not independent:
            anchor = st.anchors.get(timing.rendition)
            if timing.pdt is not None:
                fresh = anchor is not None and time.time() - anchor[1] < LL_ANCHOR_MAX_AGE_S
                shift = anchor[0] if fresh and anchor is not None else 0.0
                timing.capture_first, timing.method = timing.pdt + shift, "beacon" if fresh else "pdt"
                timing.capture_last = timing.capture_first + max(0.0, timing.duration - st.frame_interval)
            return
        want_beacon = cfg.beacon and (st.beacon_misses < BEACON_MISSES_BEFORE_BACKOFF
                                      or st.skipped >= BEACON_RECHECK_EVERY - 1)
        if want_beacon:
            st.skipped = 0
            fr = await self.fetch(uri, cfg.segment_max_bytes, byte_range)
            if not fr.failure:
                async with st.decode_sem:
                    try:
                        b = await self.ctx.run_cpu(read_segment_beacons, fr.body, True,
                                                    st.beacon_misses >= BEACON_MISSES_BEFORE_BACKOFF)
                    except BrokenExecutor:  # a worker process died running this decode (agent/cpupool.py)
                        b = SegmentBeacons(error="the decoding worker process died while decoding this segment")
                timing.decode_cpu_s = b.cpu_s
                st.cpu.append(b.cpu_s)
                del st.cpu[:-50]
                if b.frames >= 2 and b.first_pts is not None and b.last_pts is not None:
                    st.frame_interval = max(1e-3, (b.last_pts - b.first_pts) / (b.frames - 1))
                if b.first_beacon is not None and b.last_beacon is not None:
                    st.beacon_misses = 0
                    timing.capture_first, timing.capture_last, timing.method = b.first_beacon, b.last_beacon, "beacon"
                    if timing.pdt is not None:
                        st.anchors[timing.rendition] = (b.first_beacon - timing.pdt, time.time())
                    return
                st.beacon_misses += 1
                if timing.pdt is not None and b.first_pts is not None and b.last_pts is not None:
                    timing.capture_first, timing.method = timing.pdt, "pdt"
                    timing.capture_last = timing.pdt + (b.last_pts - b.first_pts)
                    return
        else:
            st.skipped += 1
        if timing.pdt is not None:
            timing.capture_first, timing.method = timing.pdt, "pdt"
            timing.capture_last = timing.pdt + max(0.0, timing.duration - st.frame_interval)

    async def ntp(self) -> None:
        c = self.cfg.clock
        if not c.ntp_server:
            return
        now = self.ctx.clock()
        if self.st.ntp_at is not None and now - self.st.ntp_at < c.interval_s:
            return
        from probes.net.ntp import ntp_offset

        self.st.ntp_at = now
        off, _err = await asyncio.to_thread(ntp_offset, c.ntp_server, c.timeout_s)
        self.st.ntp_offset = off

    # -- the attempt ---------------------------------------------------------------
    async def run(self) -> ProbeResult:
        cfg = self.cfg
        ntp_task = asyncio.ensure_future(self.ntp())
        end = self.ctx.clock() + max(0.2, cfg.interval_s - 0.1)
        try:
            await asyncio.gather(*(self.schedule(e, end) for e in self.endpoints))
            if self.tasks:
                await asyncio.gather(*self.tasks)
            await ntp_task
        finally:
            for task in [*self.tasks, ntp_task]:
                if not task.done():
                    task.cancel()
        self.report()
        self.result.figures["playlist_polls"] = self.polls + self.st.held_polls
        self.st.held_polls = 0
        if "origin" not in self.st.masters:
            self.result.failure = Failure.UNAVAILABLE
            self.result.detail = "no playlist from the origin"
        return self.result

    # -- reporting -----------------------------------------------------------------
    def baseline(self, key: tuple[str, str]) -> Baseline:
        b = self.st.baselines.get(key)
        if b is None:
            c = self.cfg
            b = self.st.baselines[key] = Baseline(c.baseline_s, c.baseline_min_samples, c.high_abs_s, c.high_ratio)
        return b

    def hold_for_ingest(self, t: SegmentTiming, now: float) -> bool:
        """Wait (up to ``share.wait_s`` after it was listed) for an ingest window covering the segment's end."""
        share = self.tc.ingest
        if share is None or t.capture_last is None or share.covers(t.capture_last):
            return False
        return now - t.listed_at < share.wait_s

    def split_ingest(self, t: SegmentTiming, up: float) -> tuple[float, float | None]:
        """(transcode + packaging, the ingest latency subtracted or None) for an upstream figure."""
        share = self.tc.ingest
        w = share.near(t.capture_last, INGEST_MAX_GAP_S) if share is not None and t.capture_last is not None else None
        if w is None:
            return up, None
        t.ingest_s = w.latency_s
        return up - w.latency_s, w.latency_s

    def record(self, stage: str, component: str, rendition: str, value: float, t: SegmentTiming,
               judge: bool, ingest_s: float | None = None, uncertainty: float = 0.0, *,
               unmeasured: bool = False) -> None:
        """Keep the newest value per (stage, component, rendition), judged on the primary rendition
        by the earliest the segment can have appeared (``value - uncertainty``, the half-width of
        the first-seen brackets): a poll the agent made late (its own CPU starved) widens the
        bracket, and is no latency of the stream."""
        entry = {"value": value, "method": t.method, "seq": ("segment " if t.part is None else "part ") + t.label,
                 "unit": t.unit, "at": time.time(), "high": False,
                 "baseline": None, "ingest_s": ingest_s, "unmeasured": unmeasured}
        if judge:
            entry["high"], entry["baseline"] = self.baseline((stage, component)).judge(t.listed_at, value,
                                                                                       uncertainty)
        self.st.latest[(stage, component, rendition)] = entry

    def report(self) -> None:
        st, cfg = self.st, self.cfg
        edges = [name for name, _ in self.tc.edges]
        now = time.time()
        primary = next(iter(st.masters.get("origin", (0, []))[1]), None)
        primary_name = primary.name if primary else None
        # newly measurable figures, in segment order
        for key in sorted(st.segments, key=lambda k: (k[0], k[1])):
            t = st.segments[key]
            if t.capture_last is None:
                continue
            # listed together with a later segment (a playlist that stood still, then caught up): its
            # lateness is the listing's, not the encode's (the later one was encoded after it) —
            # shown, judged on the newest only
            judged = t.rendition == primary_name
            up = t.upstream()
            if up is not None and not self.hold_for_ingest(t, now) and st.first_time(key, "origin"):
                if up + t.seen["origin"].half_width < -SKEW_TOLERANCE_S:  # even the bracket's end is early
                    st.skew_seen_at = now
                value, ingest_s = self.split_ingest(t, up)
                # held long enough and still no ingest window covers the segment's end (the ingest
                # monitor is behind: an ingest delay reaches it late too): the ingest share of this
                # segment is a guess from older frames, so the transcode figure is not judged (not
                # measured, never "transcode is slow" for what the ingest added)
                share = self.tc.ingest
                guessed = share is not None and share.latest() is not None and not share.covers(t.capture_last)
                self.record(*UPSTREAM, t.rendition, value, t, judged and not guessed and "origin" not in t.backlog,
                            ingest_s,
                            t.seen["origin"].half_width, unmeasured=guessed)
                base = st.latest[(*UPSTREAM, t.rendition)]["baseline"]
                if judged and t.part is None and base is not None and t.capture_last is not None:
                    st.judged_last[t.rendition] = (t.seq, t.capture_last, max(t.duration, t.target_s or 0.0),
                                                   value - base)
            for e in edges or ["origin"]:
                if e == "origin":
                    g = t.glass_to_glass("origin")
                    if g is not None and st.first_time(key, "g2g:origin"):
                        self.record("g2g", "origin", t.rendition, g, t, False)
                    continue
                g, c = t.glass_to_glass(e), t.cdn(e)
                if g is not None and st.first_time(key, "g2g:" + e):
                    self.record("g2g", e, t.rendition, g, t, False)
                if c is not None and st.first_time(key, "cdn:" + e):
                    brackets = t.seen[e].half_width + (t.seen["origin"].half_width if "origin" in t.seen else 0.0)
                    self.record("cdn", e, t.rendition, c, t, judged and e not in t.backlog, uncertainty=brackets)
        skew = st.skew_seen_at is not None and now - st.skew_seen_at < cfg.baseline_s
        verdict = clock_verdict(bool(cfg.clock.ntp_server), st.ntp_offset, cfg.clock.max_offset_s, skew)
        self.late = self.overdue(primary_name) if primary_name is not None else None
        self.emit_latest(verdict, primary_name, now)
        self.finalize(verdict, edges, now)
        if verdict.offset_s is not None:
            self.result.samples.append(Sample("signalpath_clock_offset_seconds",
                                              {"stream": self.t.stream, "stage": self.t.stage,
                                               "component": "agent"}, verdict.offset_s))
        self.result.figures.update({"clock": verdict.clock, "precision": verdict.precision})
        if st.cpu:
            self.result.figures["decode_cpu_ms"] = round(1000 * sorted(st.cpu)[len(st.cpu) // 2], 2)

    def emit_latest(self, verdict: ClockVerdict, primary: str | None, now: float) -> None:
        st = self.st
        stream = self.t.stream
        for (stage, comp, rend), e in list(st.latest.items()):
            seg = st.segments.get((rend, e["unit"]))
            max_age = 3 * (seg.duration if seg else 2.0) + self.cfg.interval_s + 10.0
            if now - e["at"] > max_age:
                del st.latest[(stage, comp, rend)]
                continue
            value = verdict.value(e["value"])
            method = e["method"] or "none"
            if stage == "g2g":
                self.result.samples.append(Sample("signalpath_glass_to_glass_seconds",
                                                  {"stream": stream, "component": comp, "rendition": rend,
                                                   "method": method}, value))
                continue
            if rend != primary:
                continue
            self.result.samples.append(Sample("signalpath_stage_latency_seconds",
                                              {"stream": stream, "stage": stage, "component": comp,
                                               "method": method}, value))
            what = "capture-to-origin latency (ingest + transcode + packaging)" if stage == UPSTREAM[0] \
                else f"{comp} latency after the origin (CDN propagation)"
            figs = {"latency_s": value}
            if stage == UPSTREAM[0] and self.tc.ingest is not None:
                split = e.get("ingest_s") is not None
                figs["ingest_subtracted"] = 1.0 if split else 0.0
                if split:
                    what = "ingest-to-origin latency (transcode + packaging)"
                    figs["ingest_s"] = verdict.value(e["ingest_s"])
            if e["baseline"] is not None:
                figs["baseline_s"] = verdict.value(e["baseline"])
            if e.get("unmeasured"):
                self.result.evidence.append(Evidence(
                    stage, comp, State.UNKNOWN, Fault.LATENCY_HIGH,
                    f"transcode latency not measured: no ingest figure covers {rend} {e['seq']} yet "
                    "(the ingest monitor is behind)", None, figs))
            elif e["high"]:
                self.result.evidence.append(Evidence(
                    stage, comp, State.DEGRADED, Fault.LATENCY_HIGH,
                    f"{what} rose to {value:g} s (baseline {figs.get('baseline_s', 0):g} s, {method}, "
                    f"{rend} {e['seq']})", None, figs))
            elif stage == UPSTREAM[0] and self.late is not None:
                bound, detail = self.late
                self.result.evidence.append(Evidence(
                    stage, comp, State.DEGRADED, Fault.LATENCY_HIGH, detail, None,
                    {**figs, "latency_at_least_s": verdict.value(bound)}))
            else:
                self.result.evidence.append(Evidence(stage, comp, State.OK, None, f"{what} {value:g} s ({method})",
                                                     None, figs))

    def overdue(self, rendition: str) -> tuple[float, str] | None:
        """(lower bound, evidence detail) of the upstream latency of ``rendition``'s next segment
        while the origin does not list it yet, when that bound is over the baseline's limit; else
        None.

        The next segment's last frame is captured at most one target duration after the newest
        judged one's (``capture_last + target``): at the origin's last answer, which listed that
        judged segment as its newest, the next one's latency was at least that answer's time minus
        this (less the ingest's latency for those frames with an ingest monitor, which must have
        passed them on: else the ingest is late, not the transcoder). Nothing when that answer
        failed (an origin that fails is its own finding, not a late transcoder) or listed another
        newest segment (a newer one; a restarted numbering). A transcoder that falls behind shows
        here before its late segment arrives (a segment earlier than that segment's own figure).
        Only after a segment that came ``OVERDUE_AFTER_LATE`` of its duration later than the
        baseline (falling behind already): after an on-time one the bound crosses the limit when
        the HLS probe's stale rule does (half a target duration overdue) and adds nothing, and the
        watched rendition alone stopping after an on-time segment (its siblings going on) is that
        rendition's stale playlist, not the transcoder's latency. A transcoder that was late and then stops shows
        both, and is named by the stale playlists (agent/diagnosis.py ``naming``) without losing
        the cycle it was seen late (agent/localize.py ``_named_anew_from``)."""
        last = self.st.judged_last.get(rendition)
        newest = self.st.tracker.newest("origin", rendition)
        # the origin's last answer listed the judged segment as its newest (not a newer one, nor a
        # restarted numbering); a failed poll says nothing (an origin that fails is its own finding)
        if last is None or newest is None or newest[0] != last[0]:
            return None
        seq, capture_last, longest, late_s = last
        if late_s < OVERDUE_AFTER_LATE * longest:
            return None
        due = capture_last + longest
        # at that answer, which did not list the next one (not now: it may be listed since)
        bound, share = newest[1] - due, self.tc.ingest
        if share is not None and share.latest() is not None:
            w = share.near(due, INGEST_MAX_GAP_S) if share.covers(due) else None
            if w is None:
                return None  # the ingest has not passed those frames on: not the transcoder's lateness
            bound -= w.latency_s
        limit = self.baseline(UPSTREAM).limit()
        if limit is None or bound <= limit:
            return None
        return bound, (f"{rendition} segment {seq + 1} is not at the origin yet: its latency is at least "
                       f"{bound:.1f} s (limit {limit:.1f} s; segment {seq} came {late_s:.1f} s later than usual)")

    def finalize(self, verdict: ClockVerdict, edges: list[str], now: float) -> None:
        """Close segments every endpoint has listed (or that waited long enough): one trace each."""
        st = self.st
        for key in list(st.segments):
            t = st.segments[key]
            all_seen = "origin" in t.seen and all(e in t.seen for e in edges)
            expired = now - t.listed_at > self.cfg.finalize_after_segments * max(t.horizon_s or t.duration, 0.5)
            held = self.hold_for_ingest(t, now) and "origin" not in st.reported.get(key, ())
            if (held or not (all_seen and t.capture_last is not None)) and not expired:
                continue
            del st.segments[key]
            st.reported.pop(key, None)
            if t.capture_last is None or not t.seen:
                continue
            self.result.spans.append(segment_trace(self.t.stream, t, "origin", edges, verdict))


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Watch one stream's origin and edges for one window; ``target.config`` is LatencyTargetConfig."""
    return await _Attempt(target, ctx).run()
