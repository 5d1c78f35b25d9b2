"""Playback probe: a virtual HLS viewer per edge and rendition, measuring what viewers feel.

A player is long-running, so the probe is a *session advanced by attempts*: the
session (one per rendition, per edge) lives in ``ctx.state``; each attempt advances it
for one time slice (about ``interval_s``): it reloads the media playlist when due,
downloads the segments that are due, in order, and plays them in real time through the
pure buffer model :class:`probes.core.player_model.PlayerModel` on the agent's clock. The
figures at the end of the slice are the attempt's result. A segment download that
outlasts the slice finishes before the attempt returns (a player downloads one segment
at a time), bounded by ``segment_timeout_s``.

How it behaves, and where each rule comes from (shared/THRESHOLDS.md):

- join: the master playlist once, then the rendition's media playlist; playback starts
  at least 3 target durations behind the live edge (RFC 8216bis §4.4.3.8 HOLD-BACK;
  hls.js ``liveSyncDurationCount`` 3, :func:`probes.core.player_model.join_index`); a playlist
  shorter than that is reloaded until it is long enough (RFC 8216bis: a client SHOULD NOT
  start less than three target durations from the end), and that wait counts in the
  startup time. An MPEG-DASH stream's viewer joins as dash.js does: ``suggestedPresentationDelay``
  behind the live edge, else 4 segment durations (the dash.js default live delay); it buffers
  at most that far ahead at the live edge (dash.js's live buffer target is the live delay: the
  edge is no further), holds playback when its buffer falls to 0.3 s and resumes above it
  (dash.js ``streaming.buffer.stallThreshold``; ``DASHJS_STALL_THRESHOLD_S``). A hold is
  reported as a stall once it lasts 1.25 s, as for HLS viewers (dash.js fires ``BUFFER_EMPTY``
  at once, but one stall count must mean the same for every protocol: a viewer at the live
  edge after a fault ends holds 0.3 s at every segment boundary, micro-stalls for both
  players; reporting them at once made each such recovery an incident of its own in the DASH
  localize bench). Not modelled: dash.js's ABR (one Representation per viewer, as for HLS)
  and its live catch-up (playback rate changes);
- low latency (hls.js ``lowLatencyMode``, on by default: ``low_latency``): on an LL-HLS playlist
  (parts, PART-HOLD-BACK, CAN-BLOCK-RELOAD) the viewer joins PART-HOLD-BACK behind the live edge
  (the end of the newest part), at the newest INDEPENDENT part at or before that point (where a
  decoder can start), loads parts one by one as they are listed (the rest of a segment whose
  parts are no longer listed is skipped, as a gap), and reloads with ``_HLS_msn``/``_HLS_part``
  for the part after the newest listed, at once after each answer (RFC 8216bis §6.2.5.2; a
  server that answers without holding is reloaded one part target later, not in a loop);
- playlist reload (RFC 8216 §6.3.4): one target duration after the start of the previous
  load when it changed, half a target duration when it did not; whatever the playlist says,
  at least ``MIN_RELOAD_S`` (0.5 s: half the smallest target duration the parser accepts) and
  at most ``MAX_RELOAD_S`` (30 s, our bound: a viewer that has not reloaded for longer is no
  longer live) apart;
- buffer: a segment is fetched only while the buffer holds less than the player's
  ``max_buffer_s`` (600 s, hls.js ``maxMaxBufferLength``);
- segments are fetched in order, as soon as they are listed; a player that fell out of
  the sliding window re-joins at the live hold-back (hls.js does the same);
- retries, as hls.js's default load policies: a media playlist load is retried
  ``playlist_retries`` (2, ``playlistLoadPolicy.errorRetry.maxNumRetry``) times, the
  master ``manifest_retries`` (1, ``manifestLoadPolicy``), a segment
  ``segment_retries`` (6, ``fragLoadPolicy.errorRetry.maxNumRetry``), with an
  exponential back-off from 1 s up to 8 s (``retryDelayMs`` 1000, ``maxRetryDelayMs``
  8000); when they run out the session fails (hls.js raises a fatal network error);
- demuxed audio: a variant whose AUDIO attribute names an EXT-X-MEDIA group is played with
  that group's DEFAULT=YES rendition, else its first (as hls.js picks;
  :func:`probes.core.playlist.audio_rendition`); the viewer follows the audio media playlist
  beside the video one (joined at the same hold-back, reloaded, retried and given up on by the
  same rules) and plays only what both buffers hold (the model's ``separate_audio``). A stall
  or a failure caused by the audio track is evidence on the audio rendition (``rendition`` =
  ``audio-en``...), so the localizer puts it on that rendition's cause, not on the video's;
- stall (the model's rules, ``probes/core/player_model.py``): the buffer runs dry while
  playing; it is a reported stall once it lasts 1.25 s (hls.js
  ``detectStallWithCurrentTimeMs``) and ends when the next segment arrives; rebuffer
  ratio = stalled / (watched + stalled) (Mux; CTA-2066); startup = request to first frame
  (Mux "video startup time", CTA-2066 ``initialStartupTime``).

Results, per edge (component = edge name, stage ``playback``) and rendition: the gauges
``signalpath_playback_startup_seconds`` and ``signalpath_playback_rebuffer_ratio`` (of the
current session), the counters ``signalpath_playback_stalls_total`` and
``signalpath_playback_stall_seconds_total``; Evidence ``stalls`` (DEGRADED: a stall is
going on or ended less than ``stall_window_s`` ago) or ``playback_failed`` (DOWN: the
session gave up). A failed session is replaced by a new viewer after
``restart_after_s``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from probes.base import Evidence, Failure, ProbeContext, ProbeResult, ProbeTarget, Sample, SpanRecord, State
from probes.core.config import StrictModel
from probes.core.mpd import VIEW_FRAGMENT
from probes.core.player_model import PlaybackFigures, PlayerConfig, PlayerModel, PlayerState, join_index
from probes.core.playlist import (
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PlaylistError,
    Segment,
    Variant,
    audio_rendition,
    choose_renditions,
    reusable,
    with_query,
)
from probes.faults import Fault
from probes.net.leanhttp import HEADERS_TIMEOUT_S

__all__ = ["PlaybackSettings", "probe"]

RETRY_BASE_S = 1.0  # hls.js retryDelayMs
RETRY_MAX_S = 8.0  # hls.js maxRetryDelayMs
DASHJS_STALL_THRESHOLD_S = 0.3  # dash.js streaming.buffer.stallThreshold: playback holds at or under it


class PlaybackSettings(StrictModel):
    """``streams[].playback``: simulated viewers per edge (module docstring: sources)."""

    enabled: bool = True
    renditions: Literal["highest_lowest", "all"] | list[str] = Field(
        "highest_lowest", description="'highest_lowest' (default), 'all', or rendition names")
    interval_s: float = Field(1.0, gt=0, le=30, description="how often a session reports (its time slice)")
    timeout_s: float = Field(30.0, gt=0, le=300, description="deadline of one attempt; > segment_timeout_s")
    segment_timeout_s: float = Field(20.0, gt=0, le=120, description="give up one segment download after this")
    playlist_timeout_s: float = Field(5.0, gt=0, le=60)
    manifest_retries: int = Field(1, ge=0, le=20, description="hls.js manifestLoadPolicy.errorRetry.maxNumRetry")
    playlist_retries: int = Field(2, ge=0, le=20, description="hls.js playlistLoadPolicy.errorRetry.maxNumRetry")
    segment_retries: int = Field(6, ge=0, le=50, description="hls.js fragLoadPolicy.errorRetry.maxNumRetry")
    stall_window_s: float = Field(20.0, gt=0, le=3600, description="a stall keeps the edge DEGRADED this long")
    restart_after_s: float = Field(10.0, gt=0, le=3600, description="a failed session is replaced after this")
    segment_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    playlist_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    verify_tls: bool = True
    low_latency: bool = Field(True, description="hls.js lowLatencyMode: on an LL-HLS playlist, join PART-HOLD-BACK "
                              "behind the live edge, load parts, reload with _HLS_msn/_HLS_part (module docstring)")
    player: PlayerConfig = Field(default_factory=PlayerConfig)


MIN_RELOAD_S = 0.5
"""Shortest time between two loads of one media playlist by a virtual viewer (module docstring)."""
MAX_RELOAD_S = 30.0
"""Longest time between two loads of one media playlist by a virtual viewer (module docstring)."""


def reload_delay(target_duration: float, changed: bool) -> float:
    """RFC 8216 §6.3.4: one target duration after a load that changed the playlist, half of one
    after a load that did not; bounded to [MIN_RELOAD_S, MAX_RELOAD_S] whatever the playlist says
    (a target duration that is not a finite positive number counts as 1 s)."""
    td = target_duration if 0 < target_duration < float("inf") else 1.0
    return min(max(td if changed else td / 2, MIN_RELOAD_S), MAX_RELOAD_S)


def _backoff(failures: int) -> float:
    return min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(0, failures - 1))


@dataclass(slots=True)
class _Track:
    """One media playlist a viewer follows: the variant's, or its demuxed audio rendition's."""

    name: str  # rendition name: the variant's ("360p") or the audio rendition's ("audio-en")
    uri: str
    audio: bool = False
    playlist: MediaPlaylist | None = None
    document: tuple[str, bytes] | None = None  # FetchResult.document of the last parsed playlist
    next_seq: int | None = None
    next_part: int | None = None  # low latency: the part of segment next_seq loaded next (None: whole segments)
    plain_next: bool = False  # low latency: the last blocking reload failed; the next is a plain one
    held_since: float | None = None  # low latency: blocking reloads unanswered since (cut at slice ends)
    next_reload: float = 0.0
    retry_at: float = 0.0
    playlist_failures: int = 0
    segment_failures: int = 0
    rejoins: int = 0
    listed_end: int | None = None  # last media sequence of an ended playlist (#EXT-X-ENDLIST)


@dataclass(slots=True)
class _Session:
    """One simulated viewer of one rendition (and of the audio rendition it plays with)."""

    model: PlayerModel
    tracks: list[_Track]  # the variant's first
    counted_stalls: int = 0
    counted_stall_s: float = 0.0
    last_stall_at: float | None = None
    episode_at: float | None = None  # epoch seconds of the first stall of the current episode
    stall_began: float | None = None  # epoch seconds the latest stall began
    stall_on: str | None = None  # the rendition the last stall waited for
    failed_at: float | None = None
    failed_on: str | None = None  # the rendition whose playlist or segment made the viewer give up
    live_again: bool = False  # ended (#EXT-X-ENDLIST), and the playlist is live again: a new viewer joins
    started_at: float = 0.0  # epoch seconds the viewer asked to play (its identity in agent/history.py)


class ViewerClock:
    """A virtual viewer's play-out clock: the agent's monotonic clock less the time its own
    event loop could not run (``ProbeContext.agent_stalled_s``: CPU starved, a blocking call).

    A player plays out its buffer only while its host runs; the agent's downloads stop while
    its loop is frozen, so counting that time as play-out would drain the buffer for a stall
    the stream did not cause. The loop watch notes a stall when it is over, so the clock may
    have run through part of it first: it then holds still until real time catches up (never
    goes back). Seconds, monotonic."""

    def __init__(self, clock: Callable[[], float], stalled_s: Callable[[], float]) -> None:
        self.clock = clock
        self.stalled_s = stalled_s
        self.last = -math.inf

    def __call__(self) -> float:
        self.last = max(self.last, self.clock() - self.stalled_s())
        return self.last


class _EdgeState:
    def __init__(self) -> None:
        self.viewer_clock: ViewerClock | None = None
        self.master: MasterPlaylist | None = None
        self.manifest_failures = 0
        self.manifest_retry_at = 0.0
        self.manifest_failed_at: float | None = None
        self.manifest_error = ""
        self.sessions: dict[str, _Session] = {}


class _Attempt:
    def __init__(self, target: ProbeTarget, ctx: ProbeContext) -> None:
        if target.url is None:  # a bug in the job builder, which gives every playback target its master URL
            raise ValueError("the playback probe needs target.url")
        self.t = target
        self.url: str = target.url
        self.ctx = ctx
        self.cfg: PlaybackSettings = target.config
        self.result = ProbeResult()
        st = ctx.state.get("playback")
        if st is None:
            st = ctx.state["playback"] = _EdgeState()
        self.st: _EdgeState = st
        self.clock = ctx.clock
        if st.viewer_clock is None:
            st.viewer_clock = ViewerClock(ctx.clock, ctx.agent_stalled_s)
        self.viewer_clock: ViewerClock = st.viewer_clock

    def labels(self, rendition: str) -> dict[str, str]:
        return {"stream": self.t.stream, "stage": self.t.stage, "component": self.t.component,
                "rendition": rendition}

    async def get(self, url: str, max_bytes: int, keep_body: bool, timeout: float,
                  byte_range: tuple[int, int] | None = None):
        try:
            async with asyncio.timeout(timeout):
                # a head dripped by the server (a slowloris) fails with the client's own reason first
                return await self.ctx.http.get(url, max_bytes=max_bytes, keep_body=keep_body,
                                               verify_tls=self.cfg.verify_tls, byte_range=byte_range,
                                               headers_timeout_s=min(HEADERS_TIMEOUT_S, 0.9 * timeout))
        except TimeoutError:
            return None

    # -- the attempt -------------------------------------------------------
    async def run(self) -> ProbeResult:
        cfg, st = self.cfg, self.st
        slice_end = self.clock() + max(0.1, 0.8 * self.t.interval)
        if st.master is None and not await self.load_master():
            self.report_manifest()
            return self.result
        assert st.master is not None
        chosen = choose_renditions(st.master.variants, cfg.renditions)
        for gone in set(st.sessions) - {v.name for v in chosen}:
            del st.sessions[gone]
        now = self.clock()
        fresh: set[str] = set()
        for v in chosen:
            s = st.sessions.get(v.name)
            if s is None or s.live_again or (s.failed_at is not None and now - s.failed_at >= cfg.restart_after_s):
                st.sessions[v.name] = self.new_session(v)
                fresh.add(v.name)
        # a new viewer reports as soon as its first playlist (and segment, if due) is in
        await asyncio.gather(*(self.advance(name, s, now if name in fresh else slice_end)
                               for name, s in st.sessions.items()))
        for name, s in st.sessions.items():
            self.report(name, s)
        if not self.result.evidence:
            self.result.evidence.append(Evidence(self.t.stage, self.t.component, State.UNKNOWN, None,
                                                 "no rendition to play"))
        return self.result

    def new_session(self, v: Variant) -> _Session:
        assert self.st.master is not None
        audio = audio_rendition(self.st.master, v)
        tracks = [_Track(v.name, v.uri)]
        if audio is not None and audio.uri is not None and audio.uri != v.uri:
            # ffmpeg lists its audio rendition as a variant too: then it goes by that variant's
            # name, as the HLS probe watches it (one name per playlist for the localizer)
            name = next((x.name for x in self.st.master.variants if x.uri == audio.uri), audio.name)
            tracks.append(_Track(name, audio.uri, audio=True))
        player = self.cfg.player
        if VIEW_FRAGMENT in v.uri:  # an MPD's Representation: dash.js's stall rules (module docstring)
            player = player.model_copy(update={"stall_threshold_s": DASHJS_STALL_THRESHOLD_S})
        model = PlayerModel(player, clock=self.viewer_clock, separate_audio=len(tracks) > 1)
        model.request()
        return _Session(model=model, tracks=tracks, started_at=self.ctx.wall())

    async def load_master(self) -> bool:
        """The master playlist (a player loads it once per session start)."""
        st, cfg = self.st, self.cfg
        now = self.clock()
        if st.manifest_failed_at is not None:
            if now - st.manifest_failed_at < cfg.restart_after_s:
                return False
            st.manifest_failed_at, st.manifest_failures = None, 0
        if now < st.manifest_retry_at:
            return False
        fr = await self.get(self.url, cfg.playlist_max_bytes, True, cfg.playlist_timeout_s)
        error = ""
        if fr is None:
            error = f"master playlist: no answer within {cfg.playlist_timeout_s:g} s"
        elif fr.failure:
            error = f"master playlist: {fr.detail}"
        else:
            try:
                pl = await self.ctx.playlists.parse(fr.body, fr.final_url)
            except PlaylistError as exc:
                error = f"master playlist malformed: {exc}"
            else:
                st.master = pl if isinstance(pl, MasterPlaylist) else MasterPlaylist(
                    (Variant(name="main", uri=self.url, bandwidth=None, resolution=None),))
                st.manifest_failures = 0
                return True
        st.manifest_failures += 1
        st.manifest_error = error
        if st.manifest_failures > cfg.manifest_retries:
            st.manifest_failed_at = self.clock()
            st.sessions.clear()
        else:
            st.manifest_retry_at = self.clock() + _backoff(st.manifest_failures)
        return False

    def report_manifest(self) -> None:
        st = self.st
        if st.manifest_failed_at is not None:
            self.result.failure = Failure.UNAVAILABLE
            self.result.detail = st.manifest_error
            self.result.evidence.append(Evidence(self.t.stage, self.t.component, State.DOWN, Fault.PLAYBACK_FAILED,
                                                 f"a viewer cannot start: {st.manifest_error}"))
        else:
            self.result.evidence.append(Evidence(self.t.stage, self.t.component, State.UNKNOWN, None,
                                                 f"starting: {st.manifest_error or 'loading'}"))

    def gave_up(self, s: _Session) -> bool:
        """Whether the session's player has failed (reading its state brings it up to the
        clock, so a download or a reload in between can change it); notes when."""
        if s.model.state is PlayerState.FAILED:
            s.failed_at = self.clock()
            return True
        return False

    async def advance(self, name: str, s: _Session, slice_end: float) -> None:
        """Play one session until the end of the slice (or the end of a download in flight):
        its tracks load side by side, as a player's audio and video stream controllers do."""
        if s.failed_at is not None:
            return
        if len(s.tracks) == 1:
            await self.follow(s, s.tracks[0], slice_end)
        else:
            await asyncio.gather(*(self.follow(s, t, slice_end) for t in s.tracks))

    async def follow(self, s: _Session, t: _Track, slice_end: float) -> None:
        """One track of a session until the end of the slice."""
        while True:
            now = self.clock()
            # low latency: the parts listed are loaded first; the reload that blocks for the next
            # one comes when there is nothing left to load (as hls.js: it would delay them)
            ready = t.playlist is not None and self.low_latency(t.playlist) and self.next_unit(t) is not None
            if now >= t.next_reload and not ready:
                await self.reload(s, t, slice_end)
            if s.failed_at is not None or self.gave_up(s):
                return
            seg = self.next_unit(t)
            if seg is not None and seg.gap:
                if t.audio:  # a hole in the audio is played as silence: the video plays on
                    s.model.segment_downloaded(seg.duration, audio=True)
                else:
                    s.model.gap_skipped()  # EXT-X-GAP: never fetched, jumped over as hls.js does
                self.advance_past(t, seg)
                continue
            if seg is None and not t.audio and t.listed_end is not None and t.next_seq is not None \
                    and t.next_seq > t.listed_end:
                s.model.end_of_stream()
            room_in = s.model.wait_for_room(audio=t.audio) if seg is not None else 0.0
            if seg is not None and self.clock() >= t.retry_at and room_in <= 0:
                await self.download(s, t, seg)
                if s.failed_at is not None or self.gave_up(s):
                    return
                if self.clock() >= slice_end:
                    return
                continue
            now = self.clock()
            if now >= slice_end:
                return
            # (a part ready to load waits for its retry or for room, not for a reload)
            reload_at = slice_end if seg is not None and t.next_part is not None else t.next_reload
            wake = min(reload_at, slice_end, max(t.retry_at, now + room_in) if seg is not None else slice_end)
            await asyncio.sleep(max(0.01, wake - now))

    def next_unit(self, t: _Track) -> Segment | Part | None:
        return self.next_part(t) if t.next_part is not None else self.next_segment(t)

    @staticmethod
    def advance_past(t: _Track, unit: Segment | Part) -> None:
        if isinstance(unit, Part):
            t.next_seq, t.next_part = unit.msn, unit.index + 1
        else:
            t.next_seq = unit.seq + 1

    def next_segment(self, s: _Track) -> Segment | Part | None:
        pl = s.playlist
        if pl is None or s.next_seq is None or not pl.segments:
            return None
        if s.next_seq < pl.media_sequence or s.next_seq > pl.last_seq + 1:
            # fell out of the sliding window, or the numbering went back below what was played (an
            # encoder or packager restarted without continuing it): re-join at the hold-back, as
            # a player re-syncs to the live edge, instead of waiting for numbers that never come
            self.join(s, pl)
            s.rejoins += 1
            if s.next_part is not None:
                return self.next_part(s)
        assert s.next_seq is not None
        idx = s.next_seq - pl.media_sequence - pl.skipped_segments
        return pl.segments[idx] if 0 <= idx < len(pl.segments) else None

    def next_part(self, t: _Track) -> Part | Segment | None:
        """Low latency: the part to load next, once listed. Past a complete segment's last part, the
        next segment's first; a segment whose parts are no longer listed (the viewer fell that far
        behind) is loaded whole if none of it was loaded, else skipped (module docstring)."""
        pl = t.playlist
        if pl is None or t.next_seq is None or t.next_part is None:
            return None
        if t.next_seq < pl.media_sequence + pl.skipped_segments or t.next_seq > pl.last_seq + 1:
            self.join(t, pl)  # out of the window (or numbering went back): re-join at the live edge
            t.rejoins += 1
            if t.next_part is None:
                return self.next_segment(t)
        for _ in range(3):
            listed = [p for p in pl.parts if p.msn == t.next_seq]
            if t.next_part < len(listed):
                return listed[t.next_part]
            if t.next_seq > pl.last_seq:
                return None  # in progress: the part is not out yet
            if not listed:  # complete, its parts no longer listed
                if t.next_part == 0:
                    t.next_part = None  # whole segments from here on
                    return self.next_segment(t)
                t.next_seq, t.next_part = t.next_seq + 1, 0
                continue
            t.next_seq, t.next_part = t.next_seq + 1, 0  # complete, all its parts loaded
        return None

    def hold_back_segments(self, pl: MediaPlaylist) -> float:
        """How far behind the live edge a viewer joins, in target durations: hls.js's
        ``liveSyncDurationCount`` (the config's ``hold_back_segments``), or for an MPEG-DASH
        stream dash.js's live delay (suggestedPresentationDelay, else 4 segments: the view's
        ``hold_back``, probes/core/mpd.py)."""
        if pl.protocol == "dash" and pl.hold_back is not None and pl.target_duration > 0:
            return pl.hold_back / pl.target_duration
        return self.cfg.player.hold_back_segments

    def join_seq(self, pl: MediaPlaylist) -> int:
        idx = join_index([x.duration for x in pl.segments], pl.target_duration, self.hold_back_segments(pl))
        return pl.segments[idx].seq

    def low_latency(self, pl: MediaPlaylist) -> bool:
        return bool(self.cfg.low_latency and pl.protocol == "hls" and pl.part_hold_back and pl.parts
                    and pl.can_block_reload and not pl.endlist)

    def join(self, t: _Track, pl: MediaPlaylist) -> None:
        """Where a viewer (re)joins: low latency, the newest INDEPENDENT part at or before
        PART-HOLD-BACK from the live edge (module docstring), else the segment join."""
        t.next_part = None
        if self.low_latency(pl):
            assert pl.part_hold_back is not None
            starts: dict[int, float] = {}
            pos = 0.0
            for seg in pl.segments:
                starts[seg.seq] = pos
                pos += seg.duration
            starts[pl.last_seq + 1] = pos
            edge = pos + pl.parts_in_progress_s
            at = edge - pl.part_hold_back
            chosen: Part | None = None
            offset: dict[int, float] = {}
            for p in pl.parts:
                begin = starts.get(p.msn, 0.0) + offset.get(p.msn, 0.0)
                offset[p.msn] = offset.get(p.msn, 0.0) + p.duration
                # INDEPENDENT=YES is optional: a segment's first part starts it (and its key frame)
                if (p.independent or p.index == 0) and (chosen is None or begin <= at + 1e-6):
                    chosen = p
            if chosen is not None:
                t.next_seq, t.next_part = chosen.msn, chosen.index
                return
        t.next_seq = self.join_seq(pl) if pl.segments else pl.last_seq + 1

    async def reload(self, session: _Session, s: _Track, slice_end: float = math.inf) -> None:
        cfg = self.cfg
        name = s.name
        started = self.clock()
        uri, asked, timeout = s.uri, None, cfg.playlist_timeout_s
        if s.playlist is not None and self.low_latency(s.playlist) and s.playlist.newest_part is not None \
                and not s.plain_next:
            asked = (s.playlist.newest_part[0], s.playlist.newest_part[1] + 1)  # the next part (§6.2.5.2)
            uri = with_query(s.uri, f"_HLS_msn={asked[0]}&_HLS_part={asked[1]}")
            # a held request waits at most to the end of the slice (the viewer reports then, its
            # buffer running dry if no part comes); asked again at once in the next slice, and
            # unanswered for playlist_timeout_s in all it is a failed load as any other
            held = started - (s.held_since if s.held_since is not None else started)
            timeout = min(max(timeout - held, 0.05), max(slice_end - started, 0.05))
        s.plain_next = False
        fr = await self.get(uri, cfg.playlist_max_bytes, True, timeout)
        if fr is None and asked is not None and timeout < cfg.playlist_timeout_s and \
                self.clock() - (s.held_since if s.held_since is not None else started) < cfg.playlist_timeout_s - 0.01:
            s.held_since = started if s.held_since is None else s.held_since
            s.next_reload = self.clock()
            return
        s.held_since = None
        if asked is not None and (fr is None or fr.failure):
            s.plain_next = True  # a renumbered stream answers 400 to the part asked for: read it plainly
        error = ""
        pl: MediaPlaylist | None = None
        if fr is None:
            error = f"{name} playlist: no answer within {cfg.playlist_timeout_s:g} s"
        elif fr.failure:
            error = f"{name} playlist: {fr.detail}"
        elif reusable(fr.document, s.document) and s.playlist is not None:
            pl = s.playlist
        else:
            try:
                parsed = await self.ctx.playlists.parse(fr.body, fr.final_url)
            except PlaylistError as exc:
                error = f"{name} playlist malformed: {exc}"
            else:
                if isinstance(parsed, MediaPlaylist):
                    pl = parsed
                else:
                    error = f"{name}: a master playlist where a media playlist belongs"
        if pl is None:
            s.playlist_failures += 1
            if s.playlist_failures > cfg.playlist_retries:
                session.failed_on = name
                session.model.fatal(error)
            else:
                s.next_reload = self.clock() + _backoff(s.playlist_failures)
            return
        s.playlist_failures = 0
        td = pl.target_duration if pl.target_duration > 0 else 1.0
        changed = s.playlist is None or pl.last_seq != s.playlist.last_seq
        s.playlist, s.document = pl, fr.document if fr is not None else s.document
        hold_back = self.hold_back_segments(pl) * td
        if s.next_seq is None and pl.segments and sum(x.duration for x in pl.segments) >= hold_back - 1e-6:
            self.join(s, pl)  # a shorter playlist is waited for (RFC 8216bis §4.4.3.8)
        # an ended playlist (#EXT-X-ENDLIST) is played out to its last segment, then the player
        # ends: the stream's end is the HLS probe's stream_ended, not a playback failure
        s.listed_end = pl.last_seq if pl.endlist else None
        if not pl.endlist and session.model.state is PlayerState.ENDED:
            session.live_again = True  # the stream came back after its end: viewers join it again
        if self.low_latency(pl) and pl.part_target:
            # at once for the next part, which the server holds; one part target later when it
            # answered without holding (a new part, or not: no loop against a server that does not block)
            held = asked is not None and self.clock() - started >= pl.part_target / 4
            s.next_reload = started if held or (asked is None and changed) else started + pl.part_target
            return
        # RFC 8216 §6.3.4, measured from the start of this load, bounded
        s.next_reload = started + reload_delay(td, changed)

    async def download(self, session: _Session, s: _Track, seg: Segment | Part) -> None:
        cfg = self.cfg
        name = s.name
        w0 = time.time()
        what, seq = (f"part {seg.msn}.{seg.index}", seg.msn) if isinstance(seg, Part) else (f"segment {seg.seq}", seg.seq)
        fr = await self.get(seg.uri, cfg.segment_max_bytes, False, cfg.segment_timeout_s, seg.byterange)
        span = SpanRecord(name=f"play {name} {what}", start_ns=int(w0 * 1e9), end_ns=int(time.time() * 1e9),
                          attributes={"signalpath.rendition": name, "signalpath.sequence": seq,
                                      "signalpath.media_s": seg.duration})
        if fr is None or fr.failure:
            error = (f"{what}: not downloaded within {cfg.segment_timeout_s:g} s" if fr is None
                     else f"{what}: {fr.detail}")
            span.error = error
            self.result.spans.append(span)
            s.segment_failures += 1
            if s.segment_failures > cfg.segment_retries:
                session.failed_on = name
                session.model.fatal(f"{name} {error}")
            else:
                s.retry_at = self.clock() + _backoff(s.segment_failures)
            return
        span.attributes.update({"signalpath.bytes": fr.size, "http.response.status_code": fr.status,
                                "signalpath.download_s": round(fr.total_s, 6)})
        self.result.spans.append(span)
        s.segment_failures = 0
        s.retry_at = 0.0
        session.model.segment_downloaded(seg.duration, fr.size, audio=s.audio)
        self.advance_past(s, seg)

    # -- results -------------------------------------------------------------
    def report(self, name: str, s: _Session) -> None:
        cfg = self.cfg
        f: PlaybackFigures = s.model.figures()
        now = self.clock()
        labels = self.labels(name)
        samples = self.result.samples
        if f.startup_s is not None:
            samples.append(Sample("signalpath_playback_startup_seconds", labels, f.startup_s))
        samples.append(Sample("signalpath_playback_rebuffer_ratio", labels, f.rebuffer_ratio))
        samples.append(Sample("signalpath_playback_stalls_total", labels, float(f.stall_count - s.counted_stalls),
                              "inc"))
        samples.append(Sample("signalpath_playback_stall_seconds_total", labels,
                              max(0.0, f.stall_s - s.counted_stall_s), "inc"))
        if f.stall_count > s.counted_stalls or f.current_stall_s >= cfg.player.stall_report_s:
            # when the latest stall began (ongoing, or begun and ended since the last report)
            s.stall_began = self.ctx.wall() - (f.last_stall_ago_s or 0.0)
            if s.last_stall_at is None or now - s.last_stall_at > cfg.stall_window_s:
                s.episode_at = s.stall_began  # a new episode: stalls within one window are one
            s.last_stall_at = now
            if f.waiting_for is not None or s.stall_on is None:  # an ended stall keeps the track it waited for
                s.stall_on = s.tracks[-1].name if f.waiting_for == "audio" else name
        s.counted_stalls = f.stall_count
        s.counted_stall_s = max(s.counted_stall_s, f.stall_s)
        figures = {"buffer_s": round(f.buffer_s, 3), "stall_count": float(f.stall_count),
                   **({} if f.audio_buffer_s is None else {"audio_buffer_s": round(f.audio_buffer_s, 3)}),
                   "stall_s": round(f.stall_s, 3), "rebuffer_ratio": round(f.rebuffer_ratio, 4),
                   "watched_s": round(f.watched_s, 3), "segments": float(f.segments)}
        if f.startup_s is not None:
            figures["startup_s"] = round(f.startup_s, 3)
        self.result.figures.setdefault("playback", {})[name] = {**figures, "state": str(f.state),
                                                                "session_at": s.started_at}
        comp = self.t.component
        if f.state is PlayerState.FAILED:
            ev = Evidence(self.t.stage, comp, State.DOWN, Fault.PLAYBACK_FAILED,
                          f"the {name} viewer gave up: {f.failure_detail}", s.failed_on or name, figures)
        elif s.last_stall_at is not None and now - s.last_stall_at <= cfg.stall_window_s:
            if f.current_stall_s > 0:
                what = f"stalled for {f.current_stall_s:.1f} s now"
            else:
                what = f"stalled {now - s.last_stall_at:.0f} s ago"
            on = s.stall_on or name
            waits = f" waiting for its audio ({on})" if on != name else ""
            ev = Evidence(self.t.stage, comp, State.DEGRADED, Fault.STALLS,
                          f"the {name} viewer {what}{waits}: {f.stall_count} stall(s), {f.stall_s:.1f} s in all, "
                          f"rebuffer ratio {f.rebuffer_ratio:.1%}", on, figures, onset=s.episode_at,
                          latest_onset=s.stall_began)
        elif f.state is PlayerState.STARTING:
            # nothing measured yet (a new viewer, or one replacing a viewer that gave up during an
            # outage): unknown with its reason, never "ok"
            ev = Evidence(self.t.stage, comp, State.UNKNOWN, None, f"the {name} viewer is starting", name, figures)
        elif f.state is PlayerState.ENDED:
            ev = Evidence(self.t.stage, comp, State.OK, None, f"the {name} viewer played the ended stream to its "
                          "last segment", name, figures)
        else:
            ev = Evidence(self.t.stage, comp, State.OK, None,
                          f"the {name} viewer plays, {f.buffer_s:.1f} s buffered", name, figures)
        self.result.evidence.append(ev)


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Advance the simulated viewers of one edge by one slice; ``target.config`` is PlaybackSettings."""
    return await _Attempt(target, ctx).run()
