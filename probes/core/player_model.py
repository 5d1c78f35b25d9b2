"""A pure buffer model of a live HLS player: what a viewer on one edge would live through.

The probe around it (``probes/playback.py``) only fetches: it tells the model when the
session was requested, when each segment finished downloading (and its EXTINF and size),
and when a fetch failed for good; the model plays in real time from its buffer on an
injected monotonic clock and reports CTA-2066-style session figures. No I/O, no sleeps.

How it plays (and where each rule comes from, shared/THRESHOLDS.md):

- Join: :func:`join_index` picks the first segment to fetch so that playback starts at
  least ``hold_back_segments`` (3) target durations behind the live edge (RFC 8216bis
  §4.4.3.8 HOLD-BACK; hls.js ``liveSyncDurationCount`` = 3).
- Start: playback starts when ``start_buffer_s`` of media is buffered; the default 0
  starts on the first whole segment, as hls.js does (it plays once the first fragment
  is appended). Startup time = request to first frame playing (Mux "video startup time",
  CTA-2066 ``initialStartupTime``).
- Play: the playhead advances 1 s per clock second while the buffer holds media.
- Stall: the buffer runs dry while playing (or falls to ``stall_threshold_s``: dash.js holds
  playback below its ``streaming.buffer.stallThreshold``, 0.3 s, and resumes above it; hls.js
  plays the buffer out, 0). The stall starts at that instant and ends when the buffer holds
  more than ``resume_buffer_s`` and the threshold (default 0: the next whole segment, the HTML
  media element's HAVE_FUTURE_DATA at segment granularity). A dry spell becomes
  a reported stall once it has lasted ``stall_report_s`` (1.25 s, hls.js
  ``detectStallWithCurrentTimeMs``); shorter ones are micro-stalls, kept apart in
  ``micro_stall_s`` (hls.js does not report them either). Stall duration is measured
  from the onset, so a reported stall includes its first 1.25 s.
- Rebuffer ratio = stalled / (watched + stalled) (Mux rebuffer percentage; CTA-2066
  stalled-time percentage). Watched time counts only time spent playing.
- Failure: startup not reached within ``startup_deadline_s`` (``startup_timeout``), a
  fatal fetch error reported by the probe (``fatal_error``), or a single stall longer
  than ``stall_give_up_s`` (``stall_timeout``; a viewer gives up). Once failed, the model
  freezes its figures.
- Buffer bound: the probe fetches the next segment only while the buffer holds less than
  ``max_buffer_s`` (600 s, hls.js ``maxMaxBufferLength``, the most it ever buffers ahead);
  :meth:`PlayerModel.wait_for_room` says how long until there is room. Whatever EXTINFs a
  playlist lists, the buffer stays below that plus one segment: the parser bounds each at
  3600 s (``MAX_TARGET_DURATION_S``), and the model ignores a duration outside (0, 3600] as it
  ignores one that is not a finite number, whoever calls it.
- Bits played (CTA-2066 ``bitsPlayed``): each segment's bits, in proportion to how much
  of it has been played.
- Demuxed audio (``separate_audio=True``: the variant's audio is an EXT-X-MEDIA rendition of
  its own): audio and video fill two buffers, and what can play is the shorter of the two —
  the media element's buffered range is the intersection of its source buffers (Media Source
  Extensions), so hls.js stalls when either runs dry. Startup, stall and resume read that
  shorter buffer; ``waiting_for`` says which track a stall waits for.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import Field

from probes.core.config import StrictModel
from probes.core.playlist import MAX_TARGET_DURATION_S

__all__ = [
    "PlayerConfig",
    "PlayerState",
    "PlaybackFailure",
    "PlaybackFigures",
    "PlayerModel",
    "join_index",
]


class PlayerConfig(StrictModel):
    """Player behaviour; the module docstring gives each default's source."""

    hold_back_segments: float = Field(3.0, ge=0)
    start_buffer_s: float = Field(0.0, ge=0)
    resume_buffer_s: float = Field(0.0, ge=0)
    stall_report_s: float = Field(1.25, ge=0)
    stall_threshold_s: float = Field(0.0, ge=0, le=10, description="buffer level at or under which playback holds "
                                     "(0: when dry, hls.js; 0.3: dash.js streaming.buffer.stallThreshold)")
    startup_deadline_s: float = Field(15.0, gt=0)
    stall_give_up_s: float = Field(60.0, gt=0)
    max_buffer_s: float = Field(600.0, gt=0, le=3600)


class PlayerState(enum.StrEnum):
    IDLE = "idle"  # not requested yet
    STARTING = "starting"  # requested, first frame not shown yet
    PLAYING = "playing"
    STALLED = "stalled"  # buffer dry after playback started (maybe not reported yet)
    FAILED = "failed"
    ENDED = "ended"  # the stream ended (#EXT-X-ENDLIST) and everything listed was played: no stall


class PlaybackFailure(enum.StrEnum):
    """Why a session failed (closed set; a metric/evidence value)."""

    STARTUP_TIMEOUT = "startup_timeout"
    FATAL_ERROR = "fatal_error"
    STALL_TIMEOUT = "stall_timeout"


@dataclass(frozen=True, slots=True)
class PlaybackFigures:
    """Session figures so far (CTA-2066 names in comments)."""

    state: PlayerState
    startup_s: float | None  # initialStartupTime
    stall_count: int  # playbackStallCount (an ongoing stall counts once reported)
    stall_s: float  # playbackStallDuration (ongoing reported stall included)
    micro_stall_s: float  # dry spells shorter than stall_report_s
    watched_s: float
    rebuffer_ratio: float  # stalled / (watched + stalled); 0 before any playing
    buffer_s: float
    current_stall_s: float  # length of the ongoing dry spell, 0 when playing
    bits_played: float  # bitsPlayed
    segments: int  # segments received
    failure: PlaybackFailure | None
    failure_detail: str
    gaps_skipped: int = 0  # EXT-X-GAP segments jumped over, as hls.js does (not loaded, no stall)
    waiting_for: str | None = None  # while stalled or starting: "audio" (demuxed audio dry, video buffered) or "video"
    audio_buffer_s: float | None = None  # demuxed audio buffered; None when the audio is muxed into the video
    last_stall_ago_s: float | None = None  # seconds since the latest reported stall (ongoing or ended) began

    @property
    def stalled_now(self) -> bool:
        return self.state is PlayerState.STALLED and self.current_stall_s > 0


def join_index(durations: Sequence[float], target_duration: float, hold_back_segments: float = 3.0) -> int:
    """Index of the segment a player joining this live playlist fetches first.

    The start position is the playlist's end minus ``hold_back_segments`` × target
    duration (RFC 8216bis HOLD-BACK; hls.js ``liveSyncDurationCount``); the player fetches
    the segment that contains it. A playlist shorter than the hold-back starts at 0.
    """
    if not durations:
        return 0
    end = float(sum(durations))
    start = end - hold_back_segments * target_duration
    if start <= 0:
        return 0
    pos = 0.0
    for i, d in enumerate(durations):
        if pos + d > start + 1e-9:
            return i
        pos += d
    return len(durations) - 1


@dataclass(slots=True)
class _Buffered:
    duration: float
    left: float
    bits: float


class PlayerModel:
    """One simulated viewer session. Feed it events; read :meth:`figures` at any time.

    ``clock`` is monotonic seconds (``ProbeContext.clock``); each call first brings the
    playhead up to ``clock()``. Events must be reported in the order they happened.
    """

    def __init__(self, config: PlayerConfig | None = None, clock: Callable[[], float] | None = None, *,
                 separate_audio: bool = False):
        if clock is None:
            raise ValueError("PlayerModel needs a clock (inject ProbeContext.clock)")
        self.config = config or PlayerConfig()
        self._clock = clock
        self._state = PlayerState.IDLE
        # when play was pressed and how far the playhead has been brought: set by request(),
        # read only once the state has left IDLE
        self._requested = 0.0
        self._now = 0.0
        self._startup: float | None = None
        self._buffer: deque[_Buffered] = deque()
        self._buffered_s = 0.0
        self._watched = 0.0
        self._stalls = 0
        self._stall_s = 0.0
        self._micro_s = 0.0
        self._dry_since: float | None = None
        self._last_stall: float | None = None  # when the latest reported stall that ended began
        self._bits = 0.0
        self._segments = 0
        self._failure: PlaybackFailure | None = None
        self._failure_detail = ""
        self._eos = False  # the playlist ended: a dry buffer then is the end, not a stall
        self._gaps = 0
        self._audio_s: float | None = 0.0 if separate_audio else None  # demuxed audio buffered (seconds)

    # --- events -------------------------------------------------------------

    def request(self) -> None:
        """The viewer pressed play: the session starts now (startup time counts from here)."""
        if self._state is not PlayerState.IDLE:
            return
        now = self._clock()
        self._requested = self._now = now
        self._state = PlayerState.STARTING

    def segment_downloaded(self, duration: float, size_bytes: int = 0, *, audio: bool = False) -> None:
        """A whole segment of ``duration`` seconds (its EXTINF) arrived in the buffer;
        ``audio``: a segment of the demuxed audio rendition (``separate_audio``)."""
        if self._state is PlayerState.IDLE:
            self.request()
        self._advance()
        if self._state is PlayerState.FAILED or not 0 < duration <= MAX_TARGET_DURATION_S:  # NaN fails it too
            return  # nothing to play, or longer than any EXTINF the parser passes: the buffer bound holds for any caller
        now = self._now
        if audio and self._audio_s is not None:
            self._audio_s += duration
        else:
            self._buffer.append(_Buffered(duration, duration, max(size_bytes, 0) * 8.0))
            self._buffered_s += duration
            self._segments += 1
        cfg = self.config
        ahead = self._ahead()
        if self._state is PlayerState.STARTING and ahead > cfg.start_buffer_s:
            self._startup = now - self._requested
            self._state = PlayerState.PLAYING
        elif self._state is PlayerState.STALLED and ahead > max(cfg.resume_buffer_s, cfg.stall_threshold_s):
            self._end_stall(now)
            self._state = PlayerState.PLAYING

    def wait_for_room(self, *, audio: bool = False) -> float:
        """Seconds until the (video, or demuxed ``audio``) buffer holds less than ``max_buffer_s``:
        0 when the next segment may be fetched now."""
        self._advance()
        held = self._audio_s if audio and self._audio_s is not None else self._buffered_s
        return max(0.0, held - self.config.max_buffer_s)

    def end_of_stream(self) -> None:
        """The playlist ended (#EXT-X-ENDLIST) and its last listed segment has been received:
        the player plays out what it has and ends (hls.js fires ``ended``), with no stall."""
        self._advance()
        self._eos = True
        if self._state is PlayerState.STALLED:
            self._end_stall(self._now)
            self._state = PlayerState.ENDED

    def gap_skipped(self) -> None:
        """An EXT-X-GAP segment: not loaded; the playhead jumps over its hole (hls.js's gap
        handling), so it neither fills the buffer nor counts as a stall."""
        self._gaps += 1

    def fatal(self, detail: str = "") -> None:
        """The probe met an error a real player would give up on (e.g. playlist gone)."""
        if self._state is PlayerState.IDLE:
            self.request()
        self._advance()
        self._fail(PlaybackFailure.FATAL_ERROR, detail or "fatal fetch error")

    def tick(self) -> None:
        """Bring the playhead up to the clock (figures() does this too)."""
        self._advance()

    # --- figures ------------------------------------------------------------

    @property
    def state(self) -> PlayerState:
        self._advance()
        return self._state

    def figures(self) -> PlaybackFigures:
        self._advance()
        current = 0.0
        stall_s, stalls = self._stall_s, self._stalls
        ago = None if self._last_stall is None else self._now - self._last_stall
        if self._state is PlayerState.STALLED and self._dry_since is not None:
            current = self._now - self._dry_since
            if current >= self.config.stall_report_s:
                stall_s += current
                stalls += 1
                ago = current
        total = self._watched + stall_s
        waiting = None
        if self._state in (PlayerState.STALLED, PlayerState.STARTING):
            waiting = "audio" if self._audio_s is not None and self._audio_s <= 1e-9 < self._buffered_s else "video"
        return PlaybackFigures(
            state=self._state,
            startup_s=self._startup,
            stall_count=stalls,
            stall_s=stall_s,
            micro_stall_s=self._micro_s,
            watched_s=self._watched,
            rebuffer_ratio=(stall_s / total) if total > 0 else 0.0,
            buffer_s=max(0.0, self._ahead()),
            current_stall_s=current,
            bits_played=self._bits,
            segments=self._segments,
            failure=self._failure,
            failure_detail=self._failure_detail,
            gaps_skipped=self._gaps,
            waiting_for=waiting,
            audio_buffer_s=None if self._audio_s is None else max(0.0, self._audio_s),
            last_stall_ago_s=ago,
        )

    # --- internals ----------------------------------------------------------

    def _advance(self) -> None:
        if self._state in (PlayerState.IDLE, PlayerState.FAILED, PlayerState.ENDED):
            return
        now = self._clock()
        if now <= self._now:
            return
        cfg = self.config
        if self._state is PlayerState.STARTING:
            deadline = self._requested + cfg.startup_deadline_s
            if now >= deadline:
                self._now = deadline
                self._fail(
                    PlaybackFailure.STARTUP_TIMEOUT, f"no picture {cfg.startup_deadline_s:g} s after the request"
                )
                return
            self._now = now
            return
        if self._state is PlayerState.PLAYING:
            hold = 0.0 if self._eos else cfg.stall_threshold_s  # the last segment plays out (dash.js too)
            played = self._play(min(now - self._now, max(self._ahead() - hold, 0.0)))
            self._watched += played
            if self._buffered_s <= 1e-9:
                self._buffered_s = 0.0
            if self._ahead() <= hold + 1e-9:
                if self._eos:
                    self._now += played
                    self._state = PlayerState.ENDED
                    return
                self._dry_since = self._now + played
                self._state = PlayerState.STALLED
        if self._state is PlayerState.STALLED and self._dry_since is not None:
            give_up = self._dry_since + cfg.stall_give_up_s
            if now >= give_up:
                self._now = give_up
                self._end_stall(give_up)
                self._fail(PlaybackFailure.STALL_TIMEOUT, f"stalled for {cfg.stall_give_up_s:g} s")
                return
        self._now = now

    def _ahead(self) -> float:
        """Seconds that can play: the video buffer, or the shorter of video and demuxed audio."""
        return self._buffered_s if self._audio_s is None else min(self._buffered_s, self._audio_s)

    def _play(self, dt: float) -> float:
        """Consume up to ``dt`` seconds of buffered media; return how much was played."""
        if self._audio_s is not None:
            dt = min(dt, self._audio_s)  # the playhead stops where either buffer ends
        played = 0.0
        while dt > 1e-12 and self._buffer:
            seg = self._buffer[0]
            take = min(dt, seg.left)
            seg.left -= take
            dt -= take
            played += take
            self._bits += seg.bits * (take / seg.duration)
            if seg.left <= 1e-12:
                self._buffer.popleft()
        self._buffered_s = sum(s.left for s in self._buffer)
        if self._audio_s is not None:
            left = self._audio_s - played
            self._audio_s = left if left > 1e-9 else 0.0
        return played

    def _end_stall(self, now: float) -> None:
        if self._dry_since is None:
            return
        spell = now - self._dry_since
        if spell >= self.config.stall_report_s:
            self._stalls += 1
            self._last_stall = self._dry_since
            self._stall_s += spell
        else:
            self._micro_s += spell
        self._dry_since = None

    def _fail(self, reason: PlaybackFailure, detail: str) -> None:
        if self._state is PlayerState.FAILED:
            return
        if self._state is PlayerState.STALLED:
            self._end_stall(self._now)
        self._state = PlayerState.FAILED
        self._failure = reason
        self._failure_detail = detail
