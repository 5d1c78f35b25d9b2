"""HLS probe: is an endpoint (the origin or a CDN edge) serving the live stream, fresh?

One attempt on one endpoint: the master playlist (refreshed every
``MASTER_REFRESH_S``), every rendition's media playlist concurrently, and the newest
segment of each rendition once when it first appears (again at the next attempt while it
answers 404/410: a packager may list a segment before it has written it). While the endpoint
answers cleanly, a classic live playlist with PDT is not reloaded at an attempt where nothing
new can be listed (:meth:`_Attempt.may_skip`): the first variant is asked every attempt, its
siblings when it lists a new segment, when their own next segment is overdue by an attempt,
and at least once a target duration (6 reloads a second instead of 9 for 3 renditions at 3
endpoints, 2-s segments, 1-s attempts).

What is watched as a rendition: every variant (EXT-X-STREAM-INF), and the alternative
media playlists a player may load beside it — EXT-X-MEDIA renditions with a URI (AUDIO first,
then VIDEO, then SUBTITLES: demuxed audio is what viewers miss most) and EXT-X-I-FRAME-STREAM-INF
playlists — under the label-safe names of :mod:`probes.core.playlist` (``audio-en``,
``subs-1``, ``iframe-360p``; never from a URI). Alternatives are watched like variants
(freshness, continuity, newest segment, at the origin and at every edge), except that an
I-frame playlist is watched for freshness and continuity only (its byte ranges point into the
variant's segments, already fetched) and only variants and AUDIO/VIDEO renditions are compared
for variant drift (a subtitle or I-frame playlist need not end where the media does).
Their figures go under ``alternates``, apart from the variant ladder (``renditions``), which the
localizer reads as the stream's ladder: demuxed audio that stops is its own rendition's fault
(``transcode/audio-en``), and a fault in every video rendition stays "every rendition" although
the audio still flows. CLOSED-CAPTIONS travel inside the video: noted in the model, nothing to
fetch. At most
``max_alternates`` (8) alternatives per endpoint are watched, so label sets stay bounded
whatever the master lists (itself capped at 16 of each kind); those left out are named in the
result's figures (``alternates_unwatched``) and on the master span. An alternative listed with
the same URI as a variant or an earlier alternative is polled once.

EXT-X-KEY: each distinct key URI a watched playlist lists (http/https; a ``data:`` key is
inline, an ``skd:`` or other scheme is a DRM system's) is requested once per endpoint, timed,
the body read and dropped (never kept, logged or stored; an AES-128 or SAMPLE-AES key must be
16 octets, RFC 8216 §5.2); one that fails is fault ``key_unavailable`` while it stays listed,
re-requested at most once per target duration until it answers. A key rotation (a new URI and
IV mid-playlist) is one more URI to request, never a continuity event. The key URI is shown only
as scheme, host and path (no query: a key server's token rides there), in spans and evidence.

Checks and where their thresholds come from (../shared/THRESHOLDS.md):

- freshness: seconds since the rendition's newest media sequence number was due: at the origin,
  with EXT-X-PROGRAM-DATE-TIME, its PDT end plus the packager's usual delay (the second lowest of the
  last 8 segments' delays behind their PDT end): the next arrival is predicted from the PDT and
  the cadence (issue 19), so neither this probe's poll phase (a 1-s poll sees a segment up to a
  second after it arrived) nor a segment delivered late (a transcoder falling behind: the next
  one is later still) delays the verdict on the next one; without PDT (or when the delay jumps by more than a cadence: a new PDT
  clock), and at an edge (its cache lag behind the origin is lawful and random, up to the
  allowance below: dated by it, every edge read stale before the origin it follows), half way
  back to the reload before the one that first listed it (at most half an attempt interval). The next segment is due one cadence later and stale half a target
  duration after that (the RFC 8216 §6.3.4 retry): stale above ``stale_factor`` (1.5) x the cadence (below), EXT-X-TARGETDURATION — the RFC 8216
  §6.3.4 reload rule (a client reloads after one target duration; a playlist that
  has not changed by then is late) and oscnord/hls-monitor's "spec-stale" mode. A
  response an HTTP cache may serve unchanged (``Cache-Control: max-age``, RFC 9111 §4.2)
  adds its freshness lifetime, at most ½ target duration (the RFC 8216 §6.3.4 retry
  interval), to the threshold: an edge honouring the origin's ``max-age=1`` is lawfully
  up to 1 s behind, and a ``max-age`` longer than that is a staleness the viewers see. At the
  origin, once four segments are dated by PDT, only as much of it as their delays behind the
  PDT were seen to vary (beyond the phase of the polls that saw them when the answers bear no
  mark of a cache: :meth:`_Attempt.allowance`): an origin that answers first-hand lists each at
  about the same delay, and has no cache lag to excuse.
  The cadence is the target duration, or the newest segment's EXTINF when that is longer
  (a packager cuts at key frames: under a GOP longer than the target duration each segment
  is as long as the GOP, and the playlist advances once per segment; hls.js reloads a live
  playlist after its average segment duration, ``averagetargetduration``, for the same
  reason). Those long segments are ``segment_too_long`` (below) and the GOP's own finding;
  a playlist that then waits 1.5 of them is stale again. Without this, a 6-s GOP under a
  2-s target duration was a stale playlist every 6 s for as long as it lasted.
- continuity: media-sequence regression, a jump over ``sequence_jump`` (5,
  oscnord/hls-monitor) segments never listed (the oldest segment listed now is that far past
  the newest one seen before: a burst of new segments that are all listed skips none), a
  discontinuity-sequence change, a segment whose EXTINF
  rounded exceeds the target duration (RFC 8216 §4.3.3.1), a playlist that shrank. Each
  stays evidence for ``ANOMALY_HOLD_TARGET_DURATIONS`` x target duration after it was seen.
- segment: first byte, download time, throughput and download ratio = download
  time / EXTINF (> 1: a player's buffer drains faster than it fills); 4xx/5xx on a
  listed segment is a fault. A download still running ``SLOW_SEGMENT_BUDGET`` (1.05) x EXTINF
  after it began (at least 1 s) is given up and is ``slow_segment`` at once, its ratio that
  lower bound: a viewer's buffer drains while the probe would wait on. Sooner when the body's
  rate shows it (leanhttp ``finish_within_s``): once 0.3 s of it has arrived, a Content-Length
  that its steady rate (the second half's of what arrived, and not rising: TCP slow start is no
  verdict) would bring in more than 1.25 x that budget is ``slow_segment`` then, with the
  projected time and ratio (a throttled edge: ~0.3 s into the download instead of 2.1 s). The
  budget counts from the request, not from a wait for one of the agent's own connection slots. A newest segment that answered 404/410 is asked again at each
  attempt while it is the newest (retrying is scheduling: one request per attempt), so a
  segment listed a moment before it was written is ``segment_missing`` only while it is.
- reload time: a media playlist request still unanswered ``PLAYLIST_BUDGET`` (1) x
  EXT-X-TARGETDURATION after it was sent (at least 1 s; once the playlist is known) is given up
  and is ``timeout`` then (RFC 8216 §6.3.4: a client reloads every target duration, so a slower
  answer leaves it behind the live edge), not at the attempt's deadline.
- preload hint (LL-HLS; RFC 8216bis §4.4.5.3 EXT-X-PRELOAD-HINT, §6.2.6 and §6.3.7): a
  low-latency player (hls.js) requests the part the playlist's ``TYPE=PART`` hint names at the
  moment it sends the blocking reload for that part, and the server holds both until the part is
  cut. So does the probe, once per rendition per attempt (only when the playlist has a hint: no
  extra request otherwise). ``preload_hint_lag_s`` = when the hinted request's last byte arrived
  - when the blocking reload's answer listing that part arrived (negative: the bytes came first);
  ``preload_hint_status`` its HTTP status. Bytes not all in ``SLOW_SEGMENT_BUDGET`` (1.05) x the
  part's DURATION (at least ``PART_BUDGET_FLOOR_S``, 0.5 s) + the last reload's round trip after
  the playlist listed the part — the bound a part fetched from the playlist has — are
  ``slow_segment`` (DEGRADED): the player that asked early gets the part late (an edge that does
  not hold or coalesce hinted requests, fetching the part from the origin only after it is
  listed). A hint answered 404/410 (at once or after a hold) is a figure only: the draft asks a
  server to hold a hinted request until it can send the part, but a client that gets no part
  loads it from the playlist once listed, as hls.js does, so viewers see nothing. A hint is judged
  only when the answer to its blocking reload lists the hinted URI as that very part (not under
  another part, not with a byte range: the hint's BYTERANGE-START is not modelled); a blocking
  reload that fails or goes unanswered cancels the hinted request and judges nothing. Hinted
  requests are held as long as blocking reloads: both together stay within
  ``HINT_HELD_MAX`` (8) requests per endpoint, so a hint never queues a rendition's blocking reload
  behind another's (within the agent's ``max_in_flight_per_host``, 32 by default).
- live latency: now - (EXT-X-PROGRAM-DATE-TIME of the newest segment + its EXTINF + the
  durations of the parts of the segment in progress, LL-HLS).
- variant drift: a rendition whose newest segment ends ``variant_drift_segments`` (3,
  oscnord/hls-monitor) target durations of MEDIA TIME behind its siblings', compared by
  EXT-X-PROGRAM-DATE-TIME — or as many of the renditions' longest newest segment when that
  outlasts the target duration (a GOP longer than it stretches every segment, and a
  rendition one such segment behind its sibling at an edge is in step). Never by media sequence numbers: a packager numbers each
  rendition on its own, and a rendition that stalled and recovered keeps an offset in its
  numbers while its content is in step (a sequence comparison would latch a false drift for
  good). Without PDT the renditions are not compared.
- edge lag (:func:`combine`, across the endpoints of a stream): segments an edge is
  behind the origin, per rendition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import email.utils
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from probes.base import (
    Evidence,
    Failure,
    ProbeContext,
    ProbeResult,
    ProbeTarget,
    Sample,
    SpanRecord,
    State,
    UrlRole,
    own_deadline,
    worst,
)
from probes.core import mpd
from probes.core.config import StrictModel
from probes.core.mpd import VIEW_FRAGMENT, looks_like_mpd
from probes.core.playlist import (
    MASTER_REFRESH_S,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PlaylistError,
    Segment,
    Variant,
    extinf_exceeds_target,
    next_part,
    reusable,
    with_query,
)
from probes.core.redact import redact_url
from probes.core.thresholds import CONFIRM_AFTER, RECHECK_AFTER_S, STALE_FACTOR
from probes.faults import Fault
from probes.net.httpfetch import FetchResult
from probes.net.leanhttp import HEADERS_TIMEOUT_S

# fetch failure -> fault type (DESIGN.md vocabulary)
_FAULT_OF: dict[Failure, Fault] = {
    Failure.CONNECTION_REFUSED: Fault.UNREACHABLE,
    Failure.CONNECTION_FAILED: Fault.UNREACHABLE,
    Failure.DNS_ERROR: Fault.UNREACHABLE,
    Failure.TIMEOUT: Fault.TIMEOUT,  # a response head not complete in time (a slowloris), as the runner's deadline
    Failure.READ_FAILED: Fault.UNREACHABLE,
    Failure.TLS_ERROR: Fault.UNREACHABLE,
    Failure.HTTP_ERROR: Fault.HTTP_ERROR,
    Failure.REDIRECT_LOOP: Fault.PROTOCOL_ERROR,
    Failure.BODY_TOO_LARGE: Fault.PROTOCOL_ERROR,
    Failure.PROTOCOL_ERROR: Fault.PROTOCOL_ERROR,
}


@dataclass(slots=True)
class _Rendition:
    """Per-rendition memory across attempts (lives in ctx.state)."""

    document: tuple[str, bytes] | None = None  # FetchResult.document of the last parsed playlist
    playlist: MediaPlaylist | None = None
    last_seq: int | None = None
    advanced_at: float | None = None  # monotonic time the current newest seq was due (:meth:`_Attempt.due_at`)
    advances: int = 0  # new newest segments seen (a recheck waits for ARRIVAL_MIN: not a stream's start-up)
    stale: bool = False  # its last reload found it stale (a newly stale one asks a confirming attempt)
    delays: deque[float] = field(default_factory=lambda: deque(maxlen=ARRIVAL_DELAYS))  # seen - PDT end, s
    delays_from: deque[float] = field(default_factory=lambda: deque(maxlen=ARRIVAL_DELAYS))  # their lower bounds
    polled_at: float | None = None  # monotonic time of the last answered reload (:meth:`_Attempt.may_skip`)
    asked_at: float | None = None  # monotonic time that reload's request went out (its answer listed what was there)
    last_headers: dict[str, str] = field(default_factory=dict)  # its response headers (a cache's lifetime)
    disc_seq: int | None = None
    last_segment: tuple[str, tuple[int, int] | None] | None = None  # (URI, byte range) of the newest fetched
    seg: dict[str, float] | None = None  # figures of the last fetched segment
    seg_fault: tuple[Fault, str, int, int] | None = None  # (fault, detail, HTTP status, media sequence) of the last segment fetch
    pdt_latency: float | None = None
    listed: tuple[int, float] | None = None  # (first seq, wall time) of segments the newest reload listed LATE
    listed_seen: float | None = None  # monotonic time the newest reload that advanced was answered (its midpoint)
    served_seq: int | None = None  # DASH $Number$: the newest segment that answered (computed views)
    part_id: tuple[int, int] | None = None  # LL-HLS: (media sequence, index) of the newest part seen
    part_at: float | None = None  # monotonic time it was first seen
    last_part: tuple[str, tuple[int, int] | None] | None = None  # (URI, byte range) of the newest part fetched
    block_failed: bool = False  # the last blocking reload failed or went unanswered: reload plainly next
    reload_s: float = 0.0  # the last playlist reload's connect + transfer (its round trip, without a hold)
    delta_due: float = 0.0  # monotonic time the next Playlist Delta Update check is due (LL-HLS)
    delta_skipped: int | None = None  # SKIPPED-SEGMENTS of the last delta update compared
    dash_numbers: dict[str, int] = field(default_factory=dict)  # DASH: segment URI -> number, last view
    # anomaly -> (until, detail, seq, segment seconds: a long segment's EXTINF, else None)
    held: dict[Fault, tuple[float, str, int, float | None]] = field(default_factory=dict)


@dataclass(slots=True)
class _Hint:
    """LL-HLS: the hinted part requested beside the blocking reload for ``block`` (one per
    rendition per attempt, :meth:`_Attempt.low_latency_reload`); lives for that attempt only."""

    uri: str  # absolute, as EXT-X-PRELOAD-HINT named it
    block: tuple[int, int]  # the part the blocking reload sent with it asks for
    task: asyncio.Task[tuple[FetchResult, float]]  # (its answer, clock when its last byte came)
    listed: Part | None = None  # the part as the answer to that reload listed it (the match)
    listed_at: float = 0.0  # clock when that answer arrived
    reload_s: float = 0.0  # that reload's round trip (the allowance a far server gets)


@dataclass(frozen=True, slots=True)
class _Watched:
    """One media playlist the probe watches: a variant or an alternative (EXT-X-MEDIA, I-frame)."""

    name: str  # label-safe rendition name from the playlist model
    uri: str
    segments: bool = True  # fetch its newest segment (not for I-frame playlists)
    drift: bool = True  # compared with its siblings by media time (variants, AUDIO/VIDEO renditions)


@dataclass(slots=True)
class _Key:
    """What one key URI answered (lives in ctx.state["keys"]); never the key itself."""

    pending: bool = True  # a request is in flight (another rendition listing it waits for its answer)
    checked_at: float = 0.0
    failure: tuple[str, int] | None = None  # (detail, HTTP status) of the last request, None when it answered
    fetch_s: float | None = None


MAX_KEYS = 64
"""Distinct key URIs remembered per endpoint (a key rotating every segment in a 10-minute
window lists hundreds; the newest are the ones players need). Past it, new URIs wait until
older ones leave the playlists."""
KEY_MAX_BYTES = 4096
"""A key body is 16 octets for AES-128 and SAMPLE-AES (RFC 8216 §5.2); more than this is no key."""
_KEY_LENGTH = {"AES-128": 16, "SAMPLE-AES": 16}


def key_shown(uri: str) -> str:
    """A key URI as it may be shown: scheme, host and path, never its query or fragment."""
    return redact_url(uri.split("#", 1)[0].split("?", 1)[0])


def watch_list(master: MasterPlaylist, max_alternates: int) -> tuple[list[_Watched], list[str]]:
    """(the playlists to watch, the names of alternatives left out by ``max_alternates``)."""
    out = [_Watched(v.name, v.uri) for v in master.variants]
    seen = {v.uri for v in master.variants}
    alts: list[_Watched] = []
    order = {"AUDIO": 0, "VIDEO": 1, "SUBTITLES": 2}
    for m in sorted(master.media, key=lambda m: order.get(m.type, 3)):
        if m.uri is not None and m.uri not in seen:
            seen.add(m.uri)
            alts.append(_Watched(m.name, m.uri, True, m.type in ("AUDIO", "VIDEO")))
    for f in master.iframes:
        if f.uri not in seen:
            seen.add(f.uri)
            alts.append(_Watched(f.name, f.uri, False, False))
    return out + alts[:max_alternates], [a.name for a in alts[max_alternates:]]


class HlsSettings(StrictModel):
    """HLS probe settings (YAML ``streams[].hls``); thresholds cite RFC 8216 (module docstring)."""

    interval_s: float = Field(1.0, gt=0, le=300, description="playlist poll interval")
    timeout_s: float = Field(5.0, gt=0, le=120, description="deadline of one probe attempt")
    stale_factor: float = Field(STALE_FACTOR, ge=1.0, le=10, description="stale when no advance for factor x target duration")
    playlist_max_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    segment_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    fetch_segments: bool = True
    max_redirects: int = Field(5, ge=0, le=20)
    variant_drift_segments: int = Field(3, ge=1, description="target durations of media time behind the siblings; oscnord/hls-monitor default 3")
    sequence_jump: int = Field(5, ge=1, description="media-sequence gap, oscnord/hls-monitor default")
    max_alternates: int = Field(8, ge=0, le=32, description="EXT-X-MEDIA renditions and I-frame playlists watched "
                                "per endpoint beside the variants (0: variants only); the rest are named, not polled")
    fetch_keys: bool = Field(True, description="request each distinct EXT-X-KEY URI (timed; the key is never kept)")
    blocking_reload: bool = Field(True, description="LL-HLS: reload a playlist that offers CAN-BLOCK-RELOAD and parts "
                                  "with _HLS_msn/_HLS_part for the next part (part-level freshness, RFC 8216bis §6.2.5.2)")
    verify_tls: bool = True


ANOMALY_HOLD_TARGET_DURATIONS = 3.0
"""How long a one-off continuity anomaly (media sequence going back or jumping, a shrunk
playlist, an over-long segment) stays evidence: 3 target durations, the live hold-back a
player keeps (RFC 8216bis §4.4.3.8 HOLD-BACK; hls.js liveSyncDurationCount 3) — the span over
which viewers feel it. Seen in one poll only, it would never persist for the localizer's
open cycles: an encoder restart would show in one sample and never open an incident."""


def _fault_of(failure: Failure, status: int) -> Fault:
    """The fault of a failed fetch: a 429 is rate limiting (a server turning requests away,
    Retry-After in the evidence), any other HTTP status an HTTP error, the rest by failure."""
    if failure is Failure.HTTP_ERROR and status == 429:
        return Fault.RATE_LIMITED
    return _FAULT_OF.get(failure, Fault.PROTOCOL_ERROR)


def _span(name: str, fr: FetchResult, **attrs: Any) -> SpanRecord:
    attrs.update({"http.response.status_code": fr.status, "signalpath.bytes": fr.size,
                  "signalpath.connect_s": round(fr.connect_s, 6),
                  "signalpath.first_byte_s": round(fr.first_byte_s, 6),
                  "signalpath.transfer_s": round(fr.transfer_s, 6)})
    if fr.redirects:
        attrs["signalpath.final_url"] = redact_url(fr.final_url)  # the host that answered, never a label
    return SpanRecord(name=name, start_ns=int(fr.start_wall * 1e9), end_ns=int(fr.end_wall * 1e9),
                      attributes=attrs, error=(f"{fr.failure}: {fr.detail}" if fr.failure else None))


class _Attempt:
    """The work of one probe attempt on one endpoint."""

    def __init__(self, target: ProbeTarget, ctx: ProbeContext) -> None:
        self.t = target
        self.ctx = ctx
        self.cfg = target.config
        self.started = ctx.clock()
        self.labels = {"stream": target.stream, "stage": target.stage, "component": target.component}
        self.result = ProbeResult()
        self.renditions: dict[str, _Rendition] = ctx.state.setdefault("renditions", {})
        self.figures: dict[str, dict[str, float]] = {}
        self.media_end: dict[str, float] = {}  # rendition -> PDT + EXTINF of its newest segment (epoch s)
        self.keys: dict[str, _Key] = ctx.state.setdefault("keys", {})
        self.listed_keys: dict[str, str] = {}  # key URI -> METHOD, listed by a playlist watched in this attempt
        self.hinting: frozenset[str] = frozenset()  # renditions that may request a preload hint (HINT_HELD_MAX)
        self.judged: asyncio.Event | None = None  # the first variant's playlist judged (siblings may skip)
        self.first_failed = False  # ... and it failed

    # -- helpers -----------------------------------------------------------------
    def sample(self, name: str, value: float, kind: str = "set", **extra: str) -> None:
        self.result.samples.append(Sample(name, {**self.labels, **extra}, float(value), kind))

    def evidence(self, state: State, fault: Fault | None, detail: str, rendition: str | None = None, *,
                 http_status: int | None = None, media_sequence: int | None = None,
                 url_role: UrlRole | None = None, **figures: float) -> None:
        if media_sequence is not None and media_sequence < 0:
            media_sequence = None  # an empty playlist at MEDIA-SEQUENCE 0: no segment, no number (last_seq -1)
        self.result.evidence.append(Evidence(self.t.stage, self.t.component, state, fault, detail, rendition,
                                             dict(figures), http_status or None, media_sequence, url_role))

    def retry_after(self, seconds: float | None) -> None:
        """The server's Retry-After (seconds), as a figure of the evidence just added."""
        if seconds is not None:
            self.result.evidence[-1].figures["retry_after_s"] = seconds

    async def fetch(self, url: str, max_bytes: int, keep_body: bool = True,
                    byte_range: tuple[int, int] | None = None, finish_within_s: float | None = None,
                    answer_within_s: float | None = None) -> FetchResult:
        # a response head must come before the attempt's deadline: a server that drips it (a
        # slowloris) is then named by the client's own reason, not only "no complete answer"
        left = own_deadline(self.ctx) - self.ctx.clock()
        head_s = min(HEADERS_TIMEOUT_S, left) if 0 < left < math.inf else HEADERS_TIMEOUT_S
        return await self.ctx.http.get(url, max_bytes=max_bytes, max_redirects=self.cfg.max_redirects,
                                       keep_body=keep_body, verify_tls=self.cfg.verify_tls, byte_range=byte_range,
                                       headers_timeout_s=head_s, finish_within_s=finish_within_s,
                                       answer_within_s=answer_within_s)

    # -- the attempt -----------------------------------------------------------------
    async def run(self) -> ProbeResult:
        st = self.ctx.state
        cfg = self.cfg
        now = self.ctx.clock()
        url = self.t.url
        assert url is not None, "an HLS target always has a URL (agent/jobs.py)"
        clean = st.pop("clean", False)  # the last attempt answered cleanly (one cut short or failed did not)
        master: MasterPlaylist | None = st.get("master")
        first_body: tuple[FetchResult, MediaPlaylist] | None = None
        refreshed = False
        if master is None or now - st.get("master_at", -1e9) >= MASTER_REFRESH_S:
            fr = await self.master_fetch(url, master is not None)
            self.result.spans.append(_span("playlist master", fr))
            if fr.failure:
                return self.endpoint_failed(fr.failure, fr.detail, "playlist", fr.status, fr.retry_after_s)
            try:
                pl = await self.ctx.playlists.parse(fr.body, fr.final_url, self.view_now())
            except PlaylistError as exc:
                return self.endpoint_failed(Failure.PROTOCOL_ERROR, f"malformed: {exc}",
                                            "MPD" if looks_like_mpd(fr.body, fr.headers.get("content-type"))
                                            else "playlist")
            if looks_like_mpd(fr.body, fr.headers.get("content-type")) and now >= st.get("clock_due", 0.0):
                # the MPD's UTCTiming (its parse is cached: parse_body just made it)
                await self.sync_clock(mpd.manifest(fr.body, fr.final_url).utc_timing)
            if isinstance(pl, MasterPlaylist):
                master = pl
            else:  # configured URL is a media playlist: one rendition, named "main" (never from the
                # URL: packagers such as nginx-rtmp name the playlist after the stream key)
                master = MasterPlaylist((Variant(name="main", uri=url, bandwidth=None, resolution=None),))
                first_body = (fr, pl)
            st["master"], st["master_at"], refreshed = master, now, True
            st["watched"], st["unwatched"] = watch_list(master, cfg.max_alternates)
            st["alternates"] = frozenset(w.name for w in st["watched"][len(master.variants):])
            if st["unwatched"]:
                self.result.spans[-1].attributes["signalpath.alternates_unwatched"] = ",".join(st["unwatched"])
        watched: list[_Watched] = st["watched"]
        if refreshed:
            for gone in set(self.renditions) - {w.name for w in watched}:
                del self.renditions[gone]

        # a blocking reload per rendition is held at once: the first renditions get a hinted request
        # beside theirs while the endpoint's bound leaves room (HINT_HELD_MAX)
        self.hinting = frozenset([w.name for w in watched if w.segments][:max(HINT_HELD_MAX - len(watched), 0)]
                                 if cfg.fetch_segments else ())
        # a rendition whose next segment is not due yet is not asked again (may_skip) while the
        # endpoint answered cleanly last time; siblings wait for the first variant's playlist to
        # be judged (not for its segment): when it lists a new segment they are asked now too (cut
        # at the same boundary); when it fails, those not asked are not measured this time (asked
        # at the next attempt: the endpoint is no longer clean)
        decided = self.ctx.clock()
        sentinel = self.renditions.get(watched[0].name)
        maybe = [w for w in watched[1:] if clean and sentinel is not None and self.may_skip(w, decided)]
        skipped: list[_Watched] = []
        if maybe:
            assert sentinel is not None
            seen_before = sentinel.last_seq
            judged = self.judged = asyncio.Event()

            async def sibling(w: _Watched) -> tuple[Failure, str] | None:
                await judged.wait()  # set once the first variant's playlist is judged, or it ended
                if self.first_failed or (sentinel.last_seq == seen_before and self.in_step(w, sentinel)):
                    skipped.append(w)  # replayed, or UNKNOWN when the first variant failed (not a second wait)
                    return None
                return await self.rendition(w, None)

            outcomes = await asyncio.gather(
                self.rendition(watched[0], first_body),
                *(sibling(w) if w in maybe else self.rendition(w, None) for w in watched[1:]))
        else:
            outcomes = await asyncio.gather(*(
                self.rendition(w, first_body if first_body and i == 0 else None) for i, w in enumerate(watched)))
        st["clean"] = not any(o is not None for o in outcomes)
        for w in skipped:
            if not self.first_failed:
                self.replay(w, decided)
            else:
                self.evidence(State.UNKNOWN, None, f"{w.name}: not asked this time (its next segment was not due) "
                              "while the first variant failed", w.name)
        self.result.figures["playlists_not_due"] = len(skipped)
        failed = [o for o in outcomes if o is not None and o[0] in _FAULT_OF]
        if failed and len(failed) == len(watched):
            # every rendition failed to fetch: the endpoint is down; the master is refetched next time
            st.pop("master", None)
            failure, detail = failed[0]
            self.result.failure, self.result.detail = failure, detail
        self.variant_drift()
        self.low_latency_figures(watched)
        if self.keys:
            self.report_keys()
        alternates: frozenset[str] = st["alternates"]
        if alternates:  # apart from the ladder: the localizer reads "renditions" as the stream's variants
            self.result.figures["renditions"] = {n: f for n, f in self.figures.items() if n not in alternates}
            self.result.figures["alternates"] = {n: f for n, f in self.figures.items() if n in alternates}
        else:
            self.result.figures["renditions"] = self.figures
        if st["unwatched"]:
            self.result.figures["alternates_unwatched"] = len(st["unwatched"])
        self.result.figures["endpoint"] = self.t.component
        if "utc_source" in st:  # DASH: the stream's clock per UTCTiming, against ours
            self.result.figures["clock_offset_s"] = round(st["utc_offset_s"], 3)
        if not self.result.evidence:
            self.evidence(State.OK, None, "serving")
        return self.result

    def view_now(self) -> float:
        """Wall time on the stream's clock: the local one, moved by the offset UTCTiming measured
        (DASH: segment availability is computed from it, ISO/IEC 23009-1 §5.8.4.11)."""
        return self.ctx.wall() + self.ctx.state.get("utc_offset_s", 0.0)

    async def sync_clock(self, sources: tuple[tuple[str, str], ...]) -> None:
        """Measure the offset of the clock an MPD's UTCTiming names, from the first source that
        answers (``http-xsdate``/``http-iso``: a date-time body; ``http-head``: the Date header;
        ``direct``: the value itself), each within ``UTC_TIMING_BUDGET_S``. Again after
        ``UTC_TIMING_REFRESH_S`` (after a minute when none answered: the last offset stays)."""
        st = self.ctx.state
        st["clock_due"] = self.ctx.clock() + UTC_TIMING_REFRESH_S
        for scheme, value in sources:
            kind = scheme.rsplit(":", 2)[-2] if scheme.count(":") >= 2 else ""
            server: float | None = None
            local = self.ctx.wall()
            if kind == "direct":
                server = _xs_datetime(value)
            elif kind in ("http-xsdate", "http-iso", "http-head") and value.startswith(("http://", "https://")):
                try:  # http-head needs the Date header only: the body is not kept (it may be the MPD itself)
                    async with asyncio.timeout(UTC_TIMING_BUDGET_S):
                        fr = await self.fetch(value.split()[0], 4096 if kind != "http-head" else 1 << 20,
                                              keep_body=kind != "http-head")
                except TimeoutError:
                    continue
                if fr.failure:
                    continue
                local = (local + self.ctx.wall()) / 2  # the request's midpoint, on the agent's clock
                server = _http_date(fr.headers.get("date")) if kind == "http-head" else \
                    _xs_datetime(fr.body.decode("ascii", "replace"))
            if server is not None:
                st["utc_offset_s"], st["utc_source"] = server - local, kind
                return

    def endpoint_failed(self, failure: Failure, detail: str, what: str, status: int = 0,
                        retry_after_s: float | None = None) -> ProbeResult:
        fault = _fault_of(failure, status)
        self.result.failure, self.result.detail = failure, f"{what}: {detail}"
        self.evidence(State.DOWN, fault, f"{what} {detail}", http_status=status, url_role="master")
        self.retry_after(retry_after_s)
        self.st_ages()
        self.result.figures["renditions"] = self.figures
        self.result.figures["endpoint"] = self.t.component
        return self.result

    def st_ages(self) -> None:
        """Playlist age keeps growing while the endpoint does not answer."""
        now = self.ctx.clock()
        for name, rs in self.renditions.items():
            if rs.advanced_at is not None:
                self.sample("signalpath_playlist_age_seconds", now - rs.advanced_at, rendition=name)

    async def rendition(self, v: _Watched, prefetched: tuple[FetchResult, MediaPlaylist] | None
                        ) -> tuple[Failure, str] | None:
        """One watched playlist; a hinted part requested with its blocking reload (LL-HLS) never
        outlives this."""
        hint: list[_Hint] = []  # at most one
        outcome: tuple[Failure, str] | None = (Failure.UNAVAILABLE, "not read")
        try:
            outcome = await self.poll_rendition(v, prefetched, hint)
            return outcome
        finally:
            if self.judged is not None and not self.judged.is_set() and v is self.ctx.state["watched"][0]:
                self.first_failed = outcome is not None
                self.judged.set()
            for h in hint:
                await _ended(h.task)

    async def poll_rendition(self, v: _Watched, prefetched: tuple[FetchResult, MediaPlaylist] | None,
                             hint: list[_Hint]) -> tuple[Failure, str] | None:
        rs = self.renditions.setdefault(v.name, _Rendition())
        cfg = self.cfg
        block = next_part(rs.playlist) if cfg.blocking_reload and rs.playlist is not None and not prefetched \
            and not rs.block_failed else None
        rs.block_failed = False
        took = 0.0
        unanswered: tuple[int, int] | None = None  # a blocking reload for this part went unanswered
        ready: MediaPlaylist | None = None  # parsed already (DASH view, or a blocking reload's answer)
        if prefetched:
            fr, ready = prefetched
            rs.document = fr.document
        elif block is not None:
            answered, ready, block, took = await self.low_latency_reload(v, rs, block, hint)
            if answered is None or answered.failure:
                # the next reload is a plain one: a server that restarted its numbering, or lost
                # the window, answers 400 (or never) to a part it will not have (§6.2.5.2)
                rs.block_failed = True
            if answered is None:
                # unanswered: a plain reload now tells a rendition with no new part (answered at
                # once, nothing new: stale at part granularity, below) from a server that answers
                # nothing in time (a slow first byte: a timeout, as on classic HLS)
                fr, conclusive = await self.plain_reload(v, rs.playlist)
                if fr.failure and not conclusive:
                    # neither answered in time, and the attempt's deadline cut the plain wait short of
                    # a target duration: neither stale nor slow is shown (the next attempt reads
                    # plainly, with the whole target duration)
                    self.evidence(State.UNKNOWN, None, f"{v.name}: not measured: a blocking reload for part "
                                  f"{block[0]}.{block[1]} went unanswered and the attempt's deadline left no time "
                                  "for a whole plain reload", v.name)
                    return None
                unanswered, block = block, None
            else:
                fr = answered
        elif rs.playlist is not None and rs.playlist.target_duration:
            fr, _ = await self.plain_reload(v, rs.playlist)
        else:
            fr = await self.fetch(v.uri, cfg.playlist_max_bytes)
        self.ctx.state["polls"] = self.ctx.state.get("polls", 0) + 1
        span = _span(f"playlist {v.name}", fr, **{"signalpath.rendition": v.name})
        self.result.spans.append(span)
        now = self.ctx.clock()
        if fr.failure:
            self.evidence(State.DOWN, _fault_of(fr.failure, fr.status), f"{v.name} playlist: {fr.detail}", v.name,
                          http_status=fr.status, url_role="media_playlist")
            self.retry_after(fr.retry_after_s)
            if rs.advanced_at is not None:
                self.sample("signalpath_playlist_age_seconds", now - rs.advanced_at, rendition=v.name)
            return fr.failure, f"{v.name} playlist: {fr.detail}"
        self.sample("signalpath_playlist_fetch_seconds", fr.connect_s, rendition=v.name, phase="connect")
        self.sample("signalpath_playlist_fetch_seconds", fr.first_byte_s, rendition=v.name, phase="first_byte")
        self.sample("signalpath_playlist_fetch_seconds", fr.transfer_s, rendition=v.name, phase="transfer")
        if ready is not None:
            pl = ready
        else:
            if reusable(fr.document, rs.document) and rs.playlist is not None:
                pl = rs.playlist  # unchanged bytes: skip the parse (the common case between segments)
            else:
                try:
                    parsed = await self.ctx.playlists.parse(fr.body, fr.final_url, self.view_now())
                except PlaylistError as exc:
                    span.error = f"protocol_error: {exc}"
                    self.evidence(State.DOWN, Fault.PROTOCOL_ERROR, f"{v.name} playlist is malformed: {exc}", v.name)
                    return Failure.PROTOCOL_ERROR, f"{v.name} playlist malformed: {exc}"
                if not isinstance(parsed, MediaPlaylist):
                    self.evidence(State.DOWN, Fault.PROTOCOL_ERROR, f"{v.name}: a master playlist where a media "
                                  "playlist belongs", v.name)
                    return Failure.PROTOCOL_ERROR, f"{v.name}: nested master playlist"
                pl = parsed
                rs.document = fr.document
        if not pl.listed and pl.newest is not None:
            pl = await self.computed(v, rs, pl, span)
        if pl.protocol == "dash":
            pl = self.steady(rs, pl, now)
        if unanswered is not None and sum(1 for p in pl.parts if (p.msn, p.index) > unanswered) >= 2:
            # two parts after the one asked for are out: it was out at least a part target before
            # this reload (not cut in between, as when parts resume after a stall)
            self.evidence(State.DEGRADED, Fault.TIMEOUT, f"{v.name}: a blocking reload for part {unanswered[0]}."
                          f"{unanswered[1]} went unanswered for {took:.1f} s though a plain reload lists it (the "
                          "server holds it too long)", v.name, url_role="media_playlist")
        if block is not None:
            self.blocked(v, pl, block, took)
            if pl.can_skip_until and pl.newest_part is not None and now >= rs.delta_due and _has_part(pl, block):
                await self.delta_update(v, rs, pl, now)
        if pl.newest_part is not None and pl.newest_part != rs.part_id:
            rs.part_id, rs.part_at = pl.newest_part, now
        elif block is None and pl.newest_part is not None and pl.part_target and rs.part_at is not None \
                and now - rs.part_at > PART_STALE_TARGETS * pl.part_target and not pl.endlist:
            nxt = next_part(pl)
            if nxt is not None:  # read plainly (after a failed blocking reload): no new part either
                self.part_stale(v, rs, nxt)
                rs.playlist = pl
                return None
        self.media(v, rs, pl, now, fr)
        rs.polled_at, rs.asked_at, rs.last_headers = now, now - fr.first_byte_s - fr.transfer_s, fr.headers
        if self.judged is not None and v is self.ctx.state["watched"][0]:
            self.judged.set()  # its siblings need not wait for its segment (first_failed stays False)
        if pl.keys and self.cfg.fetch_keys:
            await self.check_keys(pl, span)
        if pl.newest is not None and pl.newest.gap:
            # EXT-X-GAP: content the packager did not have; never fetched (RFC 8216bis §4.4.4.7)
            self.evidence(State.DEGRADED, Fault.CONTENT_GAP, f"{v.name} segment {pl.newest.seq} is a gap "
                          "(EXT-X-GAP): the packager had no content for it", v.name,
                          media_sequence=pl.newest.seq, url_role="media_playlist")
        elif cfg.fetch_segments and v.segments and pl.newest is not None and pl.listed \
                and ((pl.newest.uri, pl.newest.byterange) != rs.last_segment  # single_file: one URI, many ranges
                     or (rs.seg_fault is not None and rs.seg_fault[0] is Fault.SEGMENT_MISSING)):  # written yet?
            await self.segment(v, rs, pl, span)
        self.segment_figures(v, rs)
        if hint and hint[0].listed is not None:
            await self.preload_hint(v, rs, hint[0], span)
        if cfg.fetch_segments and v.segments and pl.newest_part_uri is not None and not pl.newest_part_gap \
                and (pl.newest_part_uri, pl.newest_part_range) != rs.last_part:
            await self.part(v, rs, pl, span)
        return None

    def may_skip(self, v: _Watched, now: float) -> bool:
        """Whether ``v`` (not the endpoint's first variant, asked every attempt for the endpoint's
        health) need not be reloaded in this attempt: it answered its last reload cleanly (no
        failure, no segment fault, no anomaly held), it is a classic live playlist with
        EXT-X-PROGRAM-DATE-TIME (its schedule known: :meth:`due_at`), its next segment is not
        overdue by an attempt interval, and it was reloaded less than a target duration ago (a
        player reloads once a target duration, RFC 8216 §6.3.4). The caller asks it anyway when the
        first variant lists a new segment in this attempt (renditions are cut at the same boundary:
        asked together, their arrivals are dated alike), and skips only while the endpoint answered
        cleanly at its last attempt; a skipped one's last answer is judged again (:meth:`replay`).
        Halves the reloads of all but one rendition on 2-s segments polled every second."""
        rs = self.renditions.get(v.name)
        if rs is None or rs.playlist is None or rs.polled_at is None or rs.advanced_at is None:
            return False
        pl = rs.playlist
        newest = pl.newest
        if newest is None or newest.pdt is None or newest.gap or not pl.listed or pl.endlist or pl.parts \
                or pl.keys or pl.protocol == "dash" or not pl.target_duration or rs.seg_fault is not None or rs.held:
            return False  # a gap's evidence, a key's check come from a reload only
        cadence = _cadence(pl.target_duration, newest)
        return (now < rs.advanced_at + cadence + self.t.interval and now - rs.polled_at < pl.target_duration
                and now - rs.advanced_at < self.cfg.stale_factor * cadence)  # staleness is judged on a reload

    def in_step(self, v: _Watched, sentinel: _Rendition) -> bool:
        """Does ``v``'s newest segment end (PDT) within half a cadence of the first variant's? One
        behind it (a cache that served it an older copy, a packager catching up in a burst) may
        have more to list than its schedule says: asked, never replayed behind its sibling."""
        mine = self.renditions[v.name].playlist
        theirs = sentinel.playlist
        a = mine.newest if mine is not None else None
        b = theirs.newest if theirs is not None else None
        if mine is None or a is None or b is None or a.pdt is None or b.pdt is None:
            return False
        return a.pdt + a.duration >= b.pdt + b.duration - 0.5 * _cadence(mine.target_duration or 1.0, a)

    def replay(self, v: _Watched, now: float) -> None:
        """``v`` not reloaded (:meth:`may_skip` at ``now``): its last answer judged again as of then
        (its age grows; never stale: may_skip asks it before that could be)."""
        rs = self.renditions[v.name]
        assert rs.playlist is not None
        self.media(v, rs, rs.playlist, now, FetchResult(url=v.uri, headers=rs.last_headers))
        self.segment_figures(v, rs)

    async def master_fetch(self, url: str, refresh: bool) -> FetchResult:
        """The master playlist; a refresh (its renditions known) within the budget a media
        playlist reload has (:meth:`plain_reload`, the first rendition's target duration): a
        slow endpoint is evidence then, not at the attempt's deadline (an edge waiting 3 s before
        every first byte was named 6.8 s after it began when the refresh fell on it). The first
        fetch has the attempt's deadline: no target duration is known yet."""
        known = [rs.playlist.target_duration for rs in self.renditions.values()
                 if rs.playlist is not None and rs.playlist.target_duration]
        left = own_deadline(self.ctx) - self.ctx.clock() - 0.05
        if not refresh or not known or left < PLAYLIST_BUDGET * known[0]:
            return await self.fetch(url, self.cfg.playlist_max_bytes)
        fr, _ = await self.playlist_within(url, max(PLAYLIST_BUDGET * known[0], 1.0),
                                           "the target duration a media playlist reload is given")
        return fr

    async def playlist_within(self, url: str, budget: float, why: str) -> tuple[FetchResult, bool]:
        """A playlist fetched with ``budget`` seconds for an answer, counted from the request
        (answer_within_s), not from a wait for one of the agent's own connection slots: that
        queue is the agent's, never the server's slowness. (the answer, or ``Failure.TIMEOUT``
        with a detail saying ``why`` the budget is what it is; whether the budget ran out)."""
        w0, t0 = time.time(), time.perf_counter()
        fr = await self.fetch(url, self.cfg.playlist_max_bytes, answer_within_s=budget)
        if not fr.answer_timeout:
            return fr, False
        return FetchResult(url=url, failure=Failure.TIMEOUT, start_wall=w0, end_wall=time.time(),
                           total_s=time.perf_counter() - t0,
                           detail=f"no answer within {budget:.1f} s ({why})"), True

    async def plain_reload(self, v: _Watched, pl: MediaPlaylist | None) -> tuple[FetchResult, bool]:
        """A reload without delivery directives, unanswered after one target duration (a player
        reloading every target duration falls behind the live edge then, RFC 8216 §6.3.4):
        evidence then, not at the deadline. (answer or TIMEOUT, whether the wait was the whole
        target duration: False when the attempt's deadline cut it shorter)."""
        budget = max(PLAYLIST_BUDGET * pl.target_duration, 1.0) if pl is not None and pl.target_duration else 1.0
        left = own_deadline(self.ctx) - self.ctx.clock() - 0.05
        conclusive = left >= budget
        budget = max(min(budget, left), 0.01)
        fr, ran_out = await self.playlist_within(v.uri, budget, "one target duration: a player reloading it falls "
                                                 "behind the live edge" if conclusive else "the attempt's deadline")
        return fr, conclusive or not ran_out

    async def part(self, v: _Watched, rs: _Rendition, pl: MediaPlaylist, parent: SpanRecord) -> None:
        """LL-HLS: the newest part, once, timed against its DURATION as a segment is against its
        EXTINF (a part still downloading at 1.05 x its duration, at least 0.5 s, is given up and
        slow): a low-latency player holds a few parts, so a slow part is felt at once."""
        uri, dur, pid = pl.newest_part_uri, pl.newest_part_duration or 0.0, pl.newest_part
        assert uri is not None and pid is not None
        rs.last_part = (uri, pl.newest_part_range)
        budget = max(SLOW_SEGMENT_BUDGET * dur, PART_BUDGET_FLOOR_S) + rs.reload_s
        name = f"part {pid[0]}.{pid[1]}"
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                fr = await self.fetch(uri, self.cfg.segment_max_bytes, keep_body=False, byte_range=pl.newest_part_range)
        except TimeoutError:
            took = time.perf_counter() - t0
            self.figures.setdefault(v.name, {})["part_download_ratio"] = round(took / max(dur, 1e-3), 3)
            self.evidence(State.DEGRADED, Fault.SLOW_SEGMENT, f"{v.name} {name} not downloaded within {budget:.2f} s "
                          f"({dur:.2f} s of media: slower than real time)", v.name, media_sequence=pid[0],
                          url_role="segment")
            return
        parent.children.append(_span(name, fr, **{"signalpath.rendition": v.name}))
        if fr.failure:
            fault = Fault.SEGMENT_MISSING if fr.status in (404, 410) else _fault_of(fr.failure, fr.status)
            self.evidence(State.DEGRADED, fault, f"{v.name} {name}: {fr.detail}", v.name, http_status=fr.status,
                          media_sequence=pid[0], url_role="segment")
            return
        # the body's own time: a player asks for the next part before it exists (the preload hint),
        # so the round trip and the wait for the first byte are not what it feels
        ratio = fr.transfer_s / max(dur, 1e-3)
        self.figures.setdefault(v.name, {})["part_download_ratio"] = round(ratio, 3)
        if ratio > 1.0:
            self.evidence(State.DEGRADED, Fault.SLOW_SEGMENT, f"{v.name} {name} took {fr.transfer_s:.2f} s for "
                          f"{dur:.2f} s of media (ratio {ratio:.2f})", v.name, media_sequence=pid[0],
                          url_role="segment")

    def steady(self, rs: _Rendition, pl: MediaPlaylist, now: float) -> MediaPlaylist:
        """A DASH view numbered as the last one was where they share segments (a ``$Time$``
        timeline is numbered from its time in each view, which may differ by one), and a new
        Period's numbering taken as a new start, not as a sequence going back."""
        if rs.disc_seq is not None and pl.discontinuity_sequence != rs.disc_seq:
            rs.last_seq, rs.advanced_at, rs.dash_numbers = None, now, {}
        shift = next((rs.dash_numbers[s.uri] - s.seq for s in reversed(pl.segments) if s.uri in rs.dash_numbers), 0)
        if shift:
            pl = dataclasses.replace(pl, media_sequence=pl.media_sequence + shift,
                                     segments=tuple(dataclasses.replace(s, seq=s.seq + shift) for s in pl.segments))
        rs.dash_numbers = {s.uri: s.seq for s in pl.segments}
        return pl

    async def blocking_reload(self, v: _Watched, rs: _Rendition, block: tuple[int, int]) -> FetchResult | None:
        """LL-HLS: ask for the playlist holding part ``block`` (RFC 8216bis §6.2.5.2, ``_HLS_msn``
        and ``_HLS_part``), held by the server until that part exists. None when no answer came
        ``PART_STALE_TARGETS`` part targets after the newest part was first seen (at least one
        part target from now): no new part, the rendition is stale at part granularity."""
        pl = rs.playlist
        assert pl is not None and pl.part_target is not None
        now = self.ctx.clock()
        since = rs.part_at if rs.part_at is not None else now
        # at least one part target plus the last reload's round trip (a far server's answer)
        budget = max(since + PART_STALE_TARGETS * pl.part_target - now, pl.part_target + rs.reload_s)
        left = own_deadline(self.ctx) - now
        if 0 < left < math.inf and budget > left - 0.05:
            # the attempt's deadline comes first: not waiting the rule out is no evidence of a stale
            # part; ask plainly next time
            budget = max(left - 0.05, 0.01)
            rs.block_failed = True
        msn, part = block
        url = with_query(v.uri, f"_HLS_msn={msn}&_HLS_part={part}")
        try:
            async with asyncio.timeout(budget):
                fr = await self.fetch(url, self.cfg.playlist_max_bytes)
        except TimeoutError:
            return None
        rs.reload_s = min(fr.connect_s + fr.transfer_s, 2.0)  # the round trip, not the hold (first byte)
        return fr

    async def low_latency_reload(self, v: _Watched, rs: _Rendition, block: tuple[int, int], hint: list[_Hint]
                                 ) -> tuple[FetchResult | None, MediaPlaylist | None, tuple[int, int], float]:
        """(answer or None when stale, its parse or None, the part asked for, seconds it took).

        First the part after the newest seen. When the answer is past it (parts came out between
        attempts: the probe was behind the live edge), once more for the part after the answer's
        newest, which does not exist yet: a server must hold that one until it does, and one that
        does not block shows only then. And while the next part is due before this target's next
        attempt (one ``interval`` after this one began, with ``HOP_MARGIN_S`` to spare), on to it:
        a request is then waiting whenever a part is cut, as a low-latency player's is, so each
        part is seen when it is cut and the three-part-target rule runs from the last one cut, not
        from when an attempt happened to look (one reload per part, as hls.js makes).

        With one of these reloads, the part the held playlist's preload hint names is requested
        too (:meth:`hinted`, put in ``hint``): the caller judges it when the answer to that reload
        listed it (:meth:`preload_hint`) and ends it; one that answer did not list is ended here."""
        out = await self.hops(v, rs, block, hint)
        if hint and hint[0].listed is None:
            await _ended(hint[0].task)  # its reload failed, went unanswered, or did not list it
        return out

    async def hops(self, v: _Watched, rs: _Rendition, block: tuple[int, int], hint: list[_Hint]
                   ) -> tuple[FetchResult | None, MediaPlaylist | None, tuple[int, int], float]:
        """The blocking reloads of :meth:`low_latency_reload`; a hinted request started with one
        of them is put in ``hint``."""
        first: tuple[FetchResult, MediaPlaylist, tuple[int, int], float] | None = None
        next_attempt = self.started + self.t.interval
        for hop in range(MAX_HOPS):
            with_hint = not hint and self.hinted(v, rs, block, hop, hint)
            asked = self.ctx.clock()
            fr = await self.blocking_reload(v, rs, block)
            answered = self.ctx.clock()
            took = answered - asked
            if fr is None and first is not None and rs.block_failed:
                return first  # the deadline cut a later wait short: the answer before stands
            if fr is None or fr.failure:
                return fr, None, block, took
            try:
                pl = await self.ctx.playlists.parse(fr.body, fr.final_url, self.view_now())
            except PlaylistError:
                return fr, None, block, took  # the caller parses again and says why
            if not isinstance(pl, MediaPlaylist):
                return fr, None, block, took
            if with_hint:  # listed as that part (else: another part, or not yet: no judgement)
                hint[0].listed = _hinted_part(pl, hint[0].uri, block)
                hint[0].listed_at, hint[0].reload_s = answered, rs.reload_s
            nxt = next_part(pl)
            if nxt is None or pl.newest_part is None or pl.newest_part < block or pl.endlist:
                return fr, pl, block, took  # (an answer without the part: the caller names it)
            behind = pl.newest_part > block and hop == 0
            due = pl.part_target is not None and \
                self.ctx.clock() + pl.part_target + HOP_MARGIN_S < next_attempt
            if hop == MAX_HOPS - 1 or not (behind or due):
                return fr, pl, block, took
            if pl.newest_part != rs.part_id:
                rs.part_id, rs.part_at = pl.newest_part, self.ctx.clock()
            rs.playlist = pl
            first = (fr, pl, block, took)
            block = nxt
        raise AssertionError("unreachable")

    def hinted(self, v: _Watched, rs: _Rendition, block: tuple[int, int], hop: int, hint: list[_Hint]) -> bool:
        """Request the part the held playlist's preload hint names, beside the blocking reload for
        ``block`` (its next part), as hls.js does; whether it was. Not when the playlist has no
        hint (the hot path stays one request), for a rendition past ``HINT_HELD_MAX``, when the
        hinted URI is a listed part's (a byte range of one resource), nor on an attempt's first
        reload when that part is due already (a part target since the newest was seen: a request
        for a part cut already tells nothing of how hinted requests are held; the next hop's is)."""
        pl = rs.playlist
        assert pl is not None
        uri, pt = pl.preload_hint, pl.part_target
        if uri is None or pt is None or v.name not in self.hinting:
            return False
        now = self.ctx.clock()
        if hop == 0 and rs.part_at is not None and now - rs.part_at >= pt:
            return False
        if any(p.uri == uri for p in pl.parts):
            return False
        # held as long as the blocking reload may be, then given the part's own bound
        bound = PART_STALE_TARGETS * pt + max(SLOW_SEGMENT_BUDGET * pt, PART_BUDGET_FLOOR_S) + 2 * rs.reload_s
        left = own_deadline(self.ctx) - now
        if 0 < left < bound:
            bound = left
        hint.append(_Hint(uri, block, asyncio.create_task(self.hint_fetch(uri, max(bound, 0.01)))))
        return True

    async def hint_fetch(self, uri: str, bound: float) -> tuple[FetchResult, float]:
        """The hinted request, bounded: (its answer, or TIMEOUT; clock when it ended)."""
        t0, w0 = time.perf_counter(), time.time()
        try:
            async with asyncio.timeout(bound):
                fr = await self.fetch(uri, self.cfg.segment_max_bytes, keep_body=False)
        except TimeoutError:
            fr = FetchResult(url=uri, failure=Failure.TIMEOUT, detail=f"not downloaded within {bound:.1f} s",
                             start_wall=w0, end_wall=time.time(), total_s=time.perf_counter() - t0)
        return fr, self.ctx.clock()

    async def preload_hint(self, v: _Watched, rs: _Rendition, h: _Hint, parent: SpanRecord) -> None:
        """Judge a hinted part its blocking reload's answer listed (module docstring, preload
        hint): ``preload_hint_lag_s``, ``preload_hint_status``, and ``slow_segment`` when its
        bytes are not all in within the part's bound after it was listed. Waits for them no
        longer than that bound (nothing judged when the attempt's deadline comes first)."""
        p = h.listed
        assert p is not None
        budget = max(SLOW_SEGMENT_BUDGET * p.duration, PART_BUDGET_FLOOR_S) + h.reload_s
        name = f"part {p.msn}.{p.index}"
        figs = self.figures.setdefault(v.name, {})
        if not h.task.done():
            now = self.ctx.clock()
            wait = h.listed_at + budget - now
            if wait > own_deadline(self.ctx) - now - 0.05:
                return  # the attempt's deadline comes first: not measured
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    await h.task
            except TimeoutError:
                pass
        if h.task.done() and not h.task.cancelled():
            fr, done_at = h.task.result()
            parent.children.append(_span(f"hint {name}", fr, **{"signalpath.rendition": v.name}))
            if fr.status:
                figs["preload_hint_status"] = fr.status
            if fr.failure and fr.failure is not Failure.TIMEOUT:
                return  # 404/410, or no part: a player loads it from the playlist (module docstring)
            if not fr.failure:
                rs.last_part = (h.uri, None)  # the part is in: part() need not ask again
                lag = done_at - h.listed_at
                figs["preload_hint_lag_s"] = round(lag, 4)
                if lag <= budget:
                    return
                what = f"arrived {lag:.2f} s after the playlist listed it"
            else:
                figs["preload_hint_lag_s"] = round(done_at - h.listed_at, 4)  # at least
                what = f"had not all arrived {budget:.2f} s after the playlist listed it"
        else:
            figs["preload_hint_lag_s"] = round(self.ctx.clock() - h.listed_at, 4)  # at least
            what = f"had not all arrived {budget:.2f} s after the playlist listed it"
        self.evidence(State.DEGRADED, Fault.SLOW_SEGMENT, f"{v.name}: the hinted {name} (EXT-X-PRELOAD-HINT, "
                      f"requested with the blocking reload for it) {what} ({p.duration:.2f} s of media): a player "
                      "that asks early gets it late (hinted requests not held until the part is cut)", v.name,
                      media_sequence=p.msn, url_role="segment")

    async def delta_update(self, v: _Watched, rs: _Rendition, pl: MediaPlaylist, now: float) -> None:
        """LL-HLS: every ``DELTA_CHECK_S``, the Playlist Delta Update (``_HLS_skip=YES``, RFC 8216bis
        §6.2.5.1) for the part ``pl`` ends at, compared with ``pl``: the same media sequence
        numbers, each listed segment the same URI, the same last segment. A player applying a
        delta that disagrees plays the wrong media, so it is ``protocol_error`` (DEGRADED) at this
        origin or edge. A part cut between the two answers makes the pair not comparable: tried
        again at the next attempt. A failed request says nothing here (the reloads judge the server)."""
        assert pl.newest_part is not None and pl.part_target is not None
        msn, part = pl.newest_part
        url = with_query(v.uri, f"_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
        try:
            async with asyncio.timeout(max(pl.part_target * PART_STALE_TARGETS, 0.5)):
                fr = await self.fetch(url, self.cfg.playlist_max_bytes)
        except TimeoutError:
            return
        if fr.failure:
            return
        try:
            delta = await self.ctx.playlists.parse(fr.body, fr.final_url, self.view_now())
        except PlaylistError as exc:
            delta, why = None, f"it does not parse: {exc}"
        else:
            why = "it is a master playlist" if not isinstance(delta, MediaPlaylist) else ""
        if isinstance(delta, MediaPlaylist) and (
                delta.newest_part_uri != pl.newest_part_uri
                or (delta.last_seq == pl.last_seq + 1 and delta.newest_part == pl.newest_part)):
            # a part came out between the two answers (told by URI: a wrong SKIPPED-SEGMENTS numbers
            # the delta's parts wrongly too), or the segment of the newest part completed (its
            # EXTINF added, no new part yet): compared next time
            return
        rs.delta_due = now + DELTA_CHECK_S
        if isinstance(delta, MediaPlaylist):
            rs.delta_skipped = delta.skipped_segments
            full = {x.seq: x.uri for x in pl.segments}
            wrong = next((x for x in delta.segments if full.get(x.seq) != x.uri), None)
            if delta.last_seq != pl.last_seq or delta.newest_part != pl.newest_part:
                why = f"it ends at segment {delta.last_seq}, the full playlist at {pl.last_seq}"
            elif wrong is not None:
                why = (f"its segment {wrong.seq} is {key_shown(wrong.uri)}, the full playlist's "
                       f"{key_shown(full[wrong.seq]) if wrong.seq in full else 'nothing'}")
        if why:
            self.evidence(State.DEGRADED, Fault.PROTOCOL_ERROR, f"{v.name}: a Playlist Delta Update (_HLS_skip=YES) "
                          f"disagrees with the full playlist: {why}", v.name, url_role="media_playlist")

    def low_latency_figures(self, watched: list[_Watched]) -> None:
        """LL-HLS: ``delta_skipped_segments`` (the last delta update compared, ``delta_update``), and
        how far each rendition report (EXT-X-RENDITION-REPORT, RFC 8216bis §4.4.5.4) lags
        the sibling playlist this attempt read (``rendition_report_lag_parts``, the most over the
        reports of a rendition; a player switching renditions asks the sibling for the part after
        the report's). A figure, not judged: the two were read at slightly different moments."""
        sibling: dict[str, MediaPlaylist] = {w.uri.partition("?")[0]: rs.playlist for w in watched
                                             if (rs := self.renditions.get(w.name)) is not None
                                             and rs.playlist is not None and rs.playlist.newest_part is not None}
        for w in watched:
            rs = self.renditions.get(w.name)
            if rs is not None and rs.delta_skipped is not None:
                self.figures.setdefault(w.name, {})["delta_skipped_segments"] = rs.delta_skipped
            if rs is None or rs.playlist is None or not rs.playlist.rendition_reports:
                continue
            lags = []
            for uri, msn, part in rs.playlist.rendition_reports:
                sib = sibling.get(uri.partition("?")[0])
                if msn is None or part is None or sib is None or sib.newest_part is None or not sib.part_target:
                    continue
                per = max(round(sib.target_duration / sib.part_target), 1)  # parts a segment, about
                lags.append((sib.newest_part[0] - msn) * per + sib.newest_part[1] - part)
            if lags:
                self.figures.setdefault(w.name, {})["rendition_report_lag_parts"] = max(lags)

    def part_stale(self, v: _Watched, rs: _Rendition, block: tuple[int, int]) -> None:
        """No answer to a blocking reload: no new part within the rule (the figures say so; the
        evidence is decided with the siblings', as a stale playlist's)."""
        pl = rs.playlist
        assert pl is not None and pl.part_target is not None
        now = self.ctx.clock()
        age = now - (rs.part_at if rs.part_at is not None else now)
        self.sample("signalpath_playlist_age_seconds", now - (rs.advanced_at or now), rendition=v.name)
        figs = self.figures.setdefault(v.name, {})
        figs.update(last_seq=rs.last_seq if rs.last_seq is not None else -1,
                    age_s=round(now - (rs.advanced_at or now), 3), target_duration_s=pl.target_duration,
                    cadence_s=_cadence(pl.target_duration, pl.newest), part_target_s=pl.part_target,
                    part_age_s=round(age, 3), stale=1, part_stale=1,
                    waiting_msn=block[0], waiting_part=block[1])

    def blocked(self, v: _Watched, pl: MediaPlaylist, block: tuple[int, int], took: float) -> None:
        """A blocking reload answered: with the part asked for, or at once without it (the server
        does not block, RFC 8216bis §6.2.5.2: a player polling it falls behind the live edge)."""
        figs = self.figures.setdefault(v.name, {})
        figs["blocking_reload_s"] = round(took, 4)
        if _has_part(pl, block):
            return
        have = f"{pl.newest_part[0]}.{pl.newest_part[1]}" if pl.newest_part else f"segment {pl.last_seq}"
        self.evidence(State.DEGRADED, Fault.RELOAD_NOT_BLOCKED, f"{v.name}: a blocking reload for part "
                      f"{block[0]}.{block[1]} was answered in {took:.2f} s with a playlist ending at {have}",
                      v.name, media_sequence=block[0], url_role="media_playlist")

    async def computed(self, v: _Watched, rs: _Rendition, pl: MediaPlaylist, span: SpanRecord) -> MediaPlaylist:
        """A view whose segments the clock computes (DASH ``$Number$`` without a timeline): it
        advances whatever the packager does, so what advances the stream is a segment that
        answers. The newest one due is fetched (again while it answers 404/410); while it is
        missing, the view ends at the newest segment that answered, and freshness, continuity and
        latency are judged on that (a dead packager is a stale rendition after 1.5 segments)."""
        newest = pl.newest
        assert newest is not None
        if not (self.cfg.fetch_segments and v.segments):
            return pl  # nothing tells: the view stands as computed (README: DASH)
        missing = rs.seg_fault is not None and rs.seg_fault[0] is Fault.SEGMENT_MISSING
        if (newest.uri, newest.byterange) != rs.last_segment or missing:
            await self.segment(v, rs, pl, span)
        if rs.seg_fault is None or rs.seg_fault[0] is not Fault.SEGMENT_MISSING:
            rs.served_seq = newest.seq
            return pl
        keep = tuple(s for s in pl.segments if s.seq <= (rs.served_seq if rs.served_seq is not None
                                                              else newest.seq - 1))
        return dataclasses.replace(pl, segments=keep, media_sequence=keep[0].seq if keep else pl.media_sequence)

    def media(self, v: _Watched, rs: _Rendition, pl: MediaPlaylist, now: float, fr: FetchResult) -> None:
        """Freshness and continuity of one media playlist."""
        cfg = self.cfg
        td = pl.target_duration or 1.0
        prev = rs.playlist
        last = pl.last_seq
        if not pl.segments and rs.last_seq is not None:
            last = rs.last_seq  # an empty playlist lists no newest segment: no advance, and no regression either
        anomalies: list[tuple[str, str]] = []
        # segments published while the playlist did not advance (it could not be read, or it was
        # stale and now catches up) are no jump: allow one segment per target duration since then
        blind = int((now - rs.advanced_at) / td) if rs.advanced_at is not None else 0
        if rs.last_seq is None or last > rs.last_seq:
            # skipped = numbers never listed while we watched (before the oldest one listed now); a
            # packager catching up lists several new segments at once, every one of them: no skip
            unseen = pl.media_sequence - rs.last_seq - 1 if rs.last_seq is not None else 0
            if unseen > cfg.sequence_jump + blind:
                anomalies.append((Fault.SEQUENCE_JUMP, f"media sequence jumped from {rs.last_seq} to "
                                  f"{pl.media_sequence}: {unseen} segments never listed"))
            self.listed_late(rs, pl, now, td)
            rs.advanced_at = self.due_at(rs, pl, now)
            rs.advances += 1
        elif last < rs.last_seq:
            anomalies.append((Fault.SEQUENCE_REGRESSION, f"media sequence went back from {rs.last_seq} to {last}"))
            rs.advanced_at = now
            rs.listed = rs.listed_seen = None
        elif prev is not None and prev is not pl and len(pl.segments) < len(prev.segments) \
                and pl.media_sequence == prev.media_sequence:
            anomalies.append((Fault.PLAYLIST_SHRANK, f"playlist shrank from {len(prev.segments)} to "
                              f"{len(pl.segments)} segments"))
        if rs.disc_seq is not None and pl.discontinuity_sequence != rs.disc_seq:
            anomalies.append(("discontinuity", f"discontinuity sequence changed to {pl.discontinuity_sequence}"))
        newest = pl.newest
        if newest is not None and prev is not pl and _too_long(pl, newest.duration, td):
            anomalies.append((Fault.SEGMENT_TOO_LONG, f"segment {newest.seq} lasts {newest.duration:.2f} s, over the "
                              f"{td:g}-s target duration"))
        rs.last_seq = max(last, rs.last_seq or last) if not any(a[0] == Fault.SEQUENCE_REGRESSION for a in anomalies) \
            else last
        rs.disc_seq = pl.discontinuity_sequence
        rs.playlist = pl
        age = now - (rs.advanced_at if rs.advanced_at is not None else now)
        self.sample("signalpath_playlist_age_seconds", age, rendition=v.name)
        self.sample("signalpath_playlist_media_sequence", last, rendition=v.name)
        self.sample("signalpath_playlist_target_duration_seconds", td, rendition=v.name)
        if newest is not None and prev is not pl and not _too_long(pl, newest.duration, td):
            # a segment within the target duration is listed now: the long ones are over (the
            # content probe's GOP finding clears on the same segment; holding this one 3 TD more
            # outlived its cause and opened a segment_too_long of its own after the fix)
            rs.held.pop(Fault.SEGMENT_TOO_LONG, None)
        for fault, detail in anomalies:
            self.sample("signalpath_playlist_anomalies_total", 1, "inc", rendition=v.name, fault=fault)
            if fault != "discontinuity":
                long_s = None
                if fault == Fault.SEGMENT_TOO_LONG and newest is not None:  # the longest while held
                    held = rs.held.get(Fault.SEGMENT_TOO_LONG)
                    long_s = max(newest.duration, held[3] or 0.0) if held is not None and held[0] > now \
                        else newest.duration
                rs.held[Fault(fault)] = (now + ANOMALY_HOLD_TARGET_DURATIONS * td, detail, last, long_s)
        for fault, (until, detail, seq, long_s) in list(rs.held.items()):
            if until <= now:
                del rs.held[fault]
                continue
            self.evidence(State.DEGRADED, fault, f"{v.name}: {detail}", v.name, media_sequence=seq,
                          url_role="media_playlist")
            if long_s is not None:  # for the localizer: could it hold a GOP the content probe names?
                self.result.evidence[-1].figures["segment_duration_s"] = long_s
        figs = self.figures.setdefault(v.name, {})
        cadence = _cadence(td, newest)
        figs.update(last_seq=last, age_s=round(age, 3), target_duration_s=td, cadence_s=cadence,
                    polled_at=self.wall_at(now))
        if rs.listed is not None:  # for combine(): how long the origin has listed what an edge lacks
            figs["listed_from_seq"], figs["listed_at"] = rs.listed
        for k in ("age", "x-cache"):
            if k in fr.headers:
                figs["cache_age_s" if k == "age" else "cache_hit"] = (
                    _num(fr.headers[k]) if k == "age" else float(fr.headers[k].upper().startswith("HIT")))
        if pl.endlist:
            self.evidence(State.DOWN, Fault.STREAM_ENDED, f"{v.name} playlist has #EXT-X-ENDLIST: the live stream ended",
                          v.name, media_sequence=last, url_role="media_playlist")
        elif age > (limit := cfg.stale_factor * cadence + self.allowance(rs, fr.headers, td)):
            self.figures[v.name]["stale"] = 1
            self.figures[v.name]["stale_after_s"] = round(limit, 3)
            # state decided in variant_drift() once all renditions are known
            if not rs.stale and rs.advances > ARRIVAL_MIN:
                # newly stale: a second look CONFIRM_AFTER later, not at the next tick up to an
                # interval later (the localizer opens on two looks: agent/localize.py confirm)
                at = now + CONFIRM_AFTER * self.t.interval
                self.result.recheck_at = min(at, self.result.recheck_at or at)
        elif rs.advanced_at is not None and not pl.parts and rs.advances > ARRIVAL_MIN:
            # (not at a stream's start-up: a packager's first segments come irregularly, GStreamer's
            # dashsink listing its second a second late, and two looks 0.45 s apart opened that)
            # look again the moment it would be stale, not at the next attempt up to an interval later
            # (the runner starts that attempt when it falls between two ticks: agent/runner.py)
            at = rs.advanced_at + limit + RECHECK_AFTER_S
            self.result.recheck_at = min(at, self.result.recheck_at or at)
        rs.stale = self.figures[v.name].get("stale") == 1
        if newest is not None and newest.pdt is not None:
            if v.drift:
                self.media_end[v.name] = newest.pdt + newest.duration
            # LL-HLS: the parts of the segment in progress are out too (latency at part granularity)
            rs.pdt_latency = self.ctx.wall() - (newest.pdt + newest.duration + pl.parts_in_progress_s)
            self.sample("signalpath_live_latency_seconds", rs.pdt_latency, rendition=v.name)
            figs["live_latency_s"] = round(rs.pdt_latency, 3)

    def wall_at(self, at: float) -> float:
        """The wall clock (epoch s) at ``at`` on the probe's monotonic clock (``ctx.clock``)."""
        return self.ctx.wall() - (self.ctx.clock() - at)

    def listed_late(self, rs: _Rendition, pl: MediaPlaylist, now: float, td: float) -> None:
        """On an advance: ``rs.listed`` = (the first newly listed seq, the wall time it was first
        seen) when this reload lists it late — more than ``LATE_LISTING`` cadences after the previous
        advance was seen, as after an upstream stall — else None (combine(): an edge that lacks only
        late-listed segments is not behind through its own fault). Seen at the middle of the bracket
        since the previous answered reload; not dated when that bracket is longer than
        ``LISTING_BRACKET`` target durations (reloads went unanswered, a batch could be older)."""
        late = None
        seen = now if rs.asked_at is None else now - (now - rs.asked_at) / 2
        if rs.last_seq is not None and rs.listed_seen is not None and rs.asked_at is not None \
                and now - rs.asked_at <= LISTING_BRACKET * td \
                and seen - rs.listed_seen > LATE_LISTING * _cadence(td, pl.newest):
            late = (rs.last_seq + 1, self.wall_at(seen))
        rs.listed, rs.listed_seen = late, seen

    def due_at(self, rs: _Rendition, pl: MediaPlaylist, now: float) -> float:
        """Monotonic time the newest segment of ``pl`` (first listed in this answer, seen at
        ``now``) was due on the server, for the freshness rule (module docstring): its
        EXT-X-PROGRAM-DATE-TIME end plus the packager's usual delay behind it (the second lowest
        of the last ``ARRIVAL_DELAYS`` segments' delays: each was seen up to a poll after it
        arrived), even before the previous reload that did not list it: a segment delivered late
        is dated by when it was due, so a transcoder falling behind (each segment later than the
        one before) is stale half a target duration after its next segment was due, not that plus
        the first one's lateness (an ingest slowing down shows the same at the origin: the ingest's
        own incident explains it, agent/localize.py). Otherwise at least half way between the
        previous reload and ``now`` (half an attempt interval at most). That midpoint for the first
        segment, when the delay moved by more than a cadence (the PDT clock changed, as an
        encoder restarts), and for the second of two segments late by about as much (a new
        schedule: ``REBASE_FACTOR``); what was learnt is dropped then; that midpoint too without a
        PDT and at an edge (never by the PDT there)."""
        newest = pl.newest
        # it came after the previous reload, which did not list it: at the middle of that bracket
        # (at most half an attempt interval back) unless its PDT dates it earlier. A poll locked in
        # phase with the segments (a 1-s poll, 2-s segments: every delay the same) learns nothing
        # finer from the PDT, and dated when seen, a stopped packager was stale a poll late
        # (not a DASH view computed from the clock: its newest segment is the one the clock makes
        # due, not one a reload first listed; seen with GStreamer's dashsink, tests/test_dash.py)
        mid = now if rs.asked_at is None or not pl.listed else now - min(now - rs.asked_at, self.t.interval) / 2
        if newest is None or newest.pdt is None or self.t.stage == "cdn":
            # an edge lists a segment up to its cache lifetime after the origin, lawfully and at
            # random (cache_allowance): dated by its own arrival, not by the PDT, or that lag reads
            # as lateness and every edge goes stale before the origin it follows
            return mid
        delay = self.ctx.wall() - (newest.pdt + newest.duration)
        cadence = _cadence(pl.target_duration or 1.0, newest)
        usual = sorted(rs.delays)[min(1, len(rs.delays) - 1)] if rs.delays else None
        if usual is not None and (abs(delay - usual) > cadence or (
                # late by about as much as the segment before: a new schedule (a backup encoder's
                # longer pipeline, the wall clock stepped), not two late segments
                delay - usual > REBASE_FACTOR * cadence and abs(delay - rs.delays[-1]) < REBASE_FACTOR * cadence)):
            rs.delays.clear()
            rs.delays_from.clear()
            usual = None
        rs.delays.append(delay)
        # not listed by the reload before: it came after that request went out (an interval back at
        # most when unknown), the bracket a poll's phase puts around each delay (:meth:`allowance`)
        rs.delays_from.append(delay - (now - rs.asked_at if rs.asked_at is not None else self.t.interval))
        if usual is None or rs.asked_at is None:
            return mid
        return min(mid, now - (delay - usual))

    def allowance(self, rs: _Rendition, headers: dict[str, str], td: float) -> float:
        """Seconds added to the stale threshold for a cache that may serve the playlist unchanged
        (:func:`cache_allowance` of the answer's ``Cache-Control``). At the origin, once
        ``ARRIVAL_MIN`` segments are dated by their PDT (:meth:`due_at`), only as much as their
        delays behind the PDT were seen to vary (the second highest less the second lowest: one
        late segment is an upstream delay), up to that allowance. An origin that answers
        first-hand lists each segment at about the same delay, and excusing a cache lifetime it
        never used made a stopped transcoder wait a second more; one behind a cache that lags (an
        origin shield) lists them at delays that vary by that lag, and keeps it.

        Each delay is seen up to a poll after the arrival, and a poll's own phase is no variation
        of the origin's: a 1-s poll sees a segment written just after a reload a second later than
        one written just before it (publish jitter of 0.4 s, the lab's chronic mode, read as a 1-s
        spread and put a second on every stale threshold). So an answer with no mark of a cache
        (``Age``, RFC 9111 §5.1; ``Via``, RFC 9110 §7.6.3; ``X-Cache``) counts the second highest
        delay by its lower bound (the reload before the one that listed it went out without it).
        One with such a mark keeps the delays as seen: its lag and the poll's phase cannot be told
        apart at a 1-s poll, and a healthy shield must not read stale."""
        lawful = cache_allowance(headers.get("cache-control"), td)
        if self.t.stage == "cdn" or len(rs.delays) < ARRIVAL_MIN:
            return lawful
        cached = "age" in headers or "via" in headers or "x-cache" in headers
        return min(lawful, max(0.0, sorted(rs.delays if cached else rs.delays_from)[-2] - sorted(rs.delays)[1]))

    async def segment(self, v: _Watched, rs: _Rendition, pl: MediaPlaylist, parent: SpanRecord) -> None:
        newest = pl.newest
        assert newest is not None
        rs.last_segment = (newest.uri, newest.byterange)
        # past its EXTINF (and a margin) the download is slower than real time whatever follows:
        # report it then, not at twice the EXTINF — a viewer's buffer is draining meanwhile
        budget = max(SLOW_SEGMENT_BUDGET * newest.duration, 1.0)
        w0 = time.time()
        # EXT-X-BYTERANGE: exactly the listed sub-range, and its figures (RFC 8216 §4.3.2.2); the budget
        # counts from the request, not from a wait for one of the agent's own connection slots
        fr = await self.fetch(newest.uri, self.cfg.segment_max_bytes, keep_body=False,
                              byte_range=newest.byterange, finish_within_s=budget, answer_within_s=budget)
        if fr.answer_timeout:
            elapsed = budget
            fr = FetchResult(url=newest.uri, failure=Failure.TIMEOUT, detail=f"not downloaded within {budget:.1f} s",
                             start_wall=w0, end_wall=time.time(), total_s=elapsed)
            rs.seg = {"download_s": elapsed, "ratio": elapsed / max(newest.duration, 1e-3), "first_byte_s": elapsed,
                      "throughput_Bps": 0.0, "seq": newest.seq}
            rs.seg_fault = (Fault.SLOW_SEGMENT, f"{v.name} segment {newest.seq} not downloaded within {budget:.1f} s "
                            f"({newest.duration:.1f} s of media: ratio above {rs.seg['ratio']:.2f}, slower than real time)",
                            0, newest.seq)
            parent.children.append(_span(f"segment {newest.seq}", fr, **{"signalpath.rendition": v.name}))
            return
        parent.children.append(_span(f"segment {newest.seq}", fr, **{"signalpath.rendition": v.name}))
        if fr.projected_s is not None:
            # its rate since the first byte cannot bring the rest in time: slower than real time now,
            # not at the budget (a throttled edge shows ~0.3 s into the download instead of 2.1 s)
            ratio = fr.projected_s / max(newest.duration, 1e-3)
            rs.seg = {"download_s": fr.projected_s, "ratio": ratio, "first_byte_s": fr.connect_s + fr.first_byte_s,
                      "throughput_Bps": 0.0, "seq": newest.seq}
            rs.seg_fault = (Fault.SLOW_SEGMENT, f"{v.name} segment {newest.seq} would take {fr.projected_s:.1f} s for "
                            f"{newest.duration:.1f} s of media (ratio {ratio:.1f}, projected from its rate: "
                            f"{fr.detail})", 0, newest.seq)
            return
        if fr.failure:
            if fr.failure is Failure.HTTP_ERROR and fr.status in (404, 410):
                rs.seg_fault = (Fault.SEGMENT_MISSING, f"{v.name} segment {newest.seq} answered HTTP {fr.status}", fr.status, newest.seq)
            elif fr.failure is Failure.HTTP_ERROR:
                rs.seg_fault = (_fault_of(fr.failure, fr.status), f"{v.name} segment {newest.seq}: {fr.detail}",
                                fr.status, newest.seq)
            else:
                rs.seg_fault = (_FAULT_OF.get(fr.failure, Fault.PROTOCOL_ERROR),
                                f"{v.name} segment {newest.seq}: {fr.detail}", fr.status, newest.seq)
            self.sample("signalpath_segment_errors_total", 1, "inc", rendition=v.name, reason=str(fr.failure))
            return
        download = fr.total_s
        ratio = download / max(newest.duration, 1e-3)
        rs.seg = {"download_s": download, "ratio": ratio, "first_byte_s": fr.connect_s + fr.first_byte_s,
                  "throughput_Bps": fr.size / download if download > 0 else 0.0, "seq": newest.seq,
                  "bytes": fr.size}
        rs.seg_fault = None
        if ratio > 1.0:
            rs.seg_fault = (Fault.SLOW_SEGMENT, f"{v.name} segment {newest.seq} took {download:.2f} s for "
                            f"{newest.duration:.2f} s of media (ratio {ratio:.2f})", 0, newest.seq)

    def segment_figures(self, v: _Watched, rs: _Rendition) -> None:
        if rs.seg:
            s = rs.seg
            self.sample("signalpath_segment_download_ratio", s["ratio"], rendition=v.name)
            self.sample("signalpath_segment_first_byte_seconds", s["first_byte_s"], rendition=v.name)
            self.sample("signalpath_segment_download_seconds", s["download_s"], rendition=v.name)
            self.sample("signalpath_segment_throughput_bytes_per_second", s["throughput_Bps"], rendition=v.name)
            figs = self.figures.setdefault(v.name, {})
            figs["download_ratio"] = round(s["ratio"], 3)
            figs["segment_first_byte_s"] = round(s["first_byte_s"], 4)
        if rs.seg_fault:
            fault, detail, status, seq = rs.seg_fault
            self.evidence(State.DEGRADED, fault, detail, v.name, http_status=status, url_role="segment",
                          media_sequence=seq)

    async def check_keys(self, pl: MediaPlaylist, parent: SpanRecord) -> None:
        """Request each key URI of ``pl`` not yet answered (once per endpoint; a failed one again
        after a target duration), side by side, each within 2 target durations (at least 1 s, as a
        segment): a slow key server is a key fault, never a hung endpoint."""
        now = self.ctx.clock()
        td = pl.target_duration or 1.0
        due: list[tuple[str, str, _Key]] = []
        for method, uri in pl.keys:
            self.listed_keys[uri] = method
            k = self.keys.get(uri)
            if k is None:
                if len(self.keys) >= MAX_KEYS or not uri.startswith(("http://", "https://")):
                    continue  # a DRM system's key (skd:, ...) is not ours to fetch
                k = self.keys[uri] = _Key()
            elif k.pending or k.failure is None or now - k.checked_at < td:
                continue
            k.pending = True
            due.append((method, uri, k))
        if due:
            await asyncio.gather(*(self.fetch_key(method, uri, k, max(2.0 * td, 1.0), parent) for method, uri, k in due))

    async def fetch_key(self, method: str, uri: str, k: _Key, budget: float, parent: SpanRecord) -> None:
        """One key request; the body is read and dropped: only its length is looked at."""
        try:
            async with asyncio.timeout(budget):
                fr = await self.fetch(uri, KEY_MAX_BYTES, keep_body=False)
        except TimeoutError:
            fr = FetchResult(url=uri, failure=Failure.TIMEOUT, detail=f"no answer within {budget:.1f} s",
                             total_s=budget)
        except BaseException:  # the attempt was cancelled: ask again next time
            self.keys.pop(uri, None)
            raise
        span = _span("key", fr, **{"signalpath.key_url": key_shown(uri), "signalpath.key_method": method})
        span.attributes.pop("signalpath.final_url", None)
        if fr.redirects:
            span.attributes["signalpath.key_final_url"] = key_shown(fr.final_url)
        parent.children.append(span)
        k.pending, k.checked_at, k.fetch_s = False, self.ctx.clock(), fr.total_s
        need = _KEY_LENGTH.get(method)
        if fr.failure:
            detail = fr.detail if "://" not in fr.detail else str(fr.failure)
            k.failure = (detail, fr.status)
            span.error = f"{fr.failure}: {detail}"
        elif need is not None and fr.decoded_size != need:
            k.failure = (f"{fr.decoded_size} bytes where {method} needs {need}", fr.status)
            span.error = "protocol_error: key length"
        else:
            k.failure = None

    def report_keys(self) -> None:
        """Key evidence of this attempt: a listed key that failed is ``key_unavailable``; keys no
        longer listed by any playlist watched are forgotten (when every playlist was read)."""
        listed = self.listed_keys
        if len(self.renditions) == len(self.figures) and all("last_seq" in f for f in self.figures.values()):
            for uri in [u for u, k in self.keys.items() if u not in listed and not k.pending]:
                del self.keys[uri]
        answered = [k.fetch_s for u, k in self.keys.items() if u in listed and k.fetch_s is not None]
        failing = [(u, k) for u, k in self.keys.items() if u in listed and k.failure is not None and not k.pending]
        if answered:
            self.result.figures["keys"] = {"listed": len(listed), "failing": len(failing),
                                           "fetch_s": round(max(answered), 4)}
        for uri, k in failing:
            assert k.failure is not None
            detail, status = k.failure
            self.evidence(State.DOWN, Fault.KEY_UNAVAILABLE, f"the decryption key {key_shown(uri)} "
                          f"({listed[uri]}): {detail}", http_status=status, url_role="key")

    def variant_drift(self) -> None:
        """Stale renditions (DOWN when all are) and renditions behind their siblings."""
        figs = self.figures
        fetched = {n: f for n, f in figs.items() if "last_seq" in f}
        if not fetched:
            return
        stale = [n for n, f in fetched.items() if f.get("stale")]
        for n in stale:
            state = State.DOWN if len(stale) == len(fetched) else State.DEGRADED
            f = fetched[n]
            if f.get("part_stale"):
                self.evidence(state, Fault.STALE_PLAYLIST, f"{n}: no part {int(f['waiting_msn'])}."
                              f"{int(f['waiting_part'])} {f['part_age_s']:.1f} s after the last new part (part "
                              f"target {f['part_target_s']:g} s; a blocking reload unanswered)", n,
                              age_s=f["part_age_s"], part_stale=1.0, target_duration_s=f["target_duration_s"],
                              media_sequence=int(f["waiting_msn"]), url_role="media_playlist")
                continue
            dash = VIEW_FRAGMENT in next((w.uri for w in self.ctx.state.get("watched", ()) if w.name == n), "")
            what = (f"{n}: no segment after number {int(f['last_seq'])} in the MPD" if dash else
                    f"{n} playlist has not advanced from media sequence {int(f['last_seq'])}")
            self.evidence(state, Fault.STALE_PLAYLIST, f"{what} for {f['age_s']:.1f} s "
                          f"(target duration {f['target_duration_s']:g} s)", n, age_s=f["age_s"],
                          media_sequence=int(f["last_seq"]), url_role="media_playlist",
                          stale_after_s=f["stale_after_s"])
        timed = {n: end for n, end in self.media_end.items() if n in fetched and n not in stale}
        if len(timed) > 1:
            top = max(timed.values())
            # renditions advance one segment at a time, not together: a sibling a segment ahead is
            # in step; the unit is the longest lawful step among them (a 6-s GOP's segments)
            step = max(fetched[n]["cadence_s"] for n in timed)
            for n, end in timed.items():
                behind_s = top - end
                if behind_s >= self.cfg.variant_drift_segments * step:
                    self.evidence(State.DEGRADED, Fault.VARIANT_DRIFT, f"{n} is {behind_s:.1f} s of media behind the "
                                  "other renditions", n, behind_s=round(behind_s, 3), url_role="media_playlist")


_MAX_AGE = re.compile(r"(?:^|[,\s])(?:s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


UTC_TIMING_REFRESH_S = 60.0  # an MPD's UTCTiming clock is measured again after this
UTC_TIMING_BUDGET_S = 2.0  # one UTCTiming request's bound


def _xs_datetime(text: str) -> float | None:
    """An xs:dateTime (ISO 8601; no zone: UTC) as epoch seconds, or None."""
    try:
        d = _dt.datetime.fromisoformat(text.strip()[:64].replace("Z", "+00:00"))
    except ValueError:
        return None
    return (d if d.tzinfo else d.replace(tzinfo=_dt.UTC)).timestamp()


def _http_date(text: str | None) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp() if text else None
    except (TypeError, ValueError):
        return None


SLOW_SEGMENT_BUDGET = 1.05  # x EXTINF: a download still running then has a ratio above 1
PLAYLIST_BUDGET = 1.0  # x EXT-X-TARGETDURATION: a media playlist reload still unanswered then is a timeout


REBASE_FACTOR = 0.25
"""Two segments in a row late by more than this many cadences, by about as much (within it),
are a new schedule: what was learnt is dropped (:meth:`_Attempt.due_at`)."""

LATE_LISTING = 1.5
"""An advance seen more than this many cadences after the previous one lists its segments late
(an upstream stall or slowdown): an edge behind by just those is following within its own lag
(:meth:`_Attempt.listed_late`, :func:`combine`): one cadence plus the poll's bracket (half an
interval each side at a 1-s poll of 2-s segments), the default ``stale_factor``."""

LISTING_BRACKET = 1.0
"""Target durations between the answered reload before an advance and the one that saw it beyond
which the advance is not dated (:meth:`_Attempt.listed_late`)."""

ARRIVAL_DELAYS = 8
"""Segments whose delays behind their PDT end give a rendition's usual delay (the second lowest:
each was seen up to one poll after it arrived; :meth:`_Attempt.due_at`)."""

ARRIVAL_MIN = 4
"""Segments dated by PDT before an origin's cache allowance is what it was seen to lag
(:meth:`_Attempt.allowance`); until then the response's ``max-age`` is excused."""

PART_STALE_TARGETS = 3.0
"""LL-HLS: a rendition is stale when no new part arrives within this many part targets of the
newest one seen (the issue's bound; RFC 8216bis §4.4.3.8 asks PART-HOLD-BACK of at least three
part targets, the buffer a low-latency player keeps: past it, it stalls)."""
DELTA_CHECK_S = 30.0  # LL-HLS: a Playlist Delta Update is compared with the full playlist this often
MAX_HOPS = 8  # blocking reloads in one attempt, at most (HlsProbe.low_latency_reload)
HOP_MARGIN_S = 0.1  # a part due later than this before the next attempt is left to it
PART_BUDGET_FLOOR_S = 0.5  # a part (fetched or hinted) is given at least this, however short (module docstring)
HINT_HELD_MAX = 8
"""LL-HLS: blocking reloads and hinted part requests held at once per endpoint, at most (8, the
agent's ``max_in_flight_per_host`` before it was 32, agent/config.py): the renditions first watched get a
hinted request while the watched renditions leave room (module docstring, preload hint)."""


DASH_DURATION_SLACK = 0.02  # of @maxSegmentDuration, or DASH_DURATION_SLACK_S when more
DASH_DURATION_SLACK_S = 0.05  # two AAC frames at 48 kHz (21.3 ms each)


def _too_long(pl: MediaPlaylist, duration: float, target: float) -> bool:
    """A segment over its playlist's bound: EXTINF rounded over EXT-X-TARGETDURATION (RFC 8216
    §4.3.3.1), or a DASH segment over @maxSegmentDuration by more than ``DASH_DURATION_SLACK``
    (DASH durations are not rounded, but audio frames do not divide a segment: ffmpeg's AAC
    segments run 2.02 s under a maxSegmentDuration of 2.0 s)."""
    if pl.protocol == "dash":
        return duration > target + max(DASH_DURATION_SLACK_S, DASH_DURATION_SLACK * target)
    return extinf_exceeds_target(duration, target)


def _has_part(pl: MediaPlaylist, block: tuple[int, int]) -> bool:
    """Whether ``pl`` holds part ``block`` or is past it (its segment complete, or a later part)."""
    msn, part = block
    newest = pl.newest_part
    if pl.last_seq > msn or (newest is not None and (newest >= (msn, part) or newest[0] > msn)):
        return True
    # segment msn complete, its parts no longer listed: the part is in it (or, past its last, no
    # later part exists yet and the request was for the next segment's first: not answered)
    return pl.last_seq == msn and (newest is None or newest[0] < msn)



def _hinted_part(pl: MediaPlaylist, uri: str, block: tuple[int, int]) -> Part | None:
    """The part ``pl`` lists at ``uri`` when it is part ``block`` — or part 0 of the next segment
    when ``block`` is past its segment's last part (a server reads it so, RFC 8216bis §6.2.5.2)
    — and is a whole resource (no byte range); else None: the hint is not judged."""
    p = next((p for p in pl.parts if p.uri == uri), None)
    if p is None or p.byterange is not None:
        return None
    msn, index = block
    if (p.msn, p.index) == block:
        return p
    past_last = pl.last_seq >= msn and index == sum(1 for q in pl.parts if q.msn == msn) and index > 0
    return p if past_last and (p.msn, p.index) == (msn + 1, 0) else None


async def _ended(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` unless done, and wait for its end (STYLE.md 10: nothing outlives its
    owner); the caller's own cancellation still propagates."""
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc  # a bug (a fetch's failures are data): never dropped unseen


def _cadence(target_duration: float, newest: Segment | None) -> float:
    """Seconds between two lawful playlist updates: the target duration, or the newest
    segment's EXTINF when longer (module docstring, freshness)."""
    return max(target_duration, newest.duration) if newest is not None else target_duration


def cache_allowance(cache_control: str | None, target_duration: float) -> float:
    """Seconds a cache may lawfully serve an unchanged media playlist, for the stale test.

    ``cache_control``: the response's ``Cache-Control`` header, or None. Returns its
    freshness lifetime (``s-maxage`` before ``max-age``, RFC 9111 §5.2.2.10/§4.2.1),
    capped at half ``target_duration`` (RFC 8216 §6.3.4: a client that finds a playlist
    unchanged retries after half a target duration); 0 without one or for ``no-cache``.
    """
    if not cache_control or "no-cache" in cache_control.lower() or "no-store" in cache_control.lower():
        return 0.0
    found = {m.group(0).lower().lstrip(", ").startswith("s-"): _delta_seconds(m.group(1))
             for m in _MAX_AGE.finditer(cache_control)}
    lifetime = found.get(True, found.get(False, 0))
    return min(float(lifetime), target_duration / 2)


def _delta_seconds(digits: str) -> int:
    """RFC 9111 §1.2.2: a delta-seconds too great to represent counts as 2^31 (a 400-digit
    ``max-age`` is neither a crash nor a float overflow)."""
    return 2**31 if len(digits) > 10 else min(int(digits), 2**31)


def _num(v: str) -> float:
    """A header's number (``Age``); 0 when it is none or not finite (``nan``, ``1e999``): a figure
    must stay a JSON number in the status API."""
    try:
        f = float(v)
    except ValueError:
        return 0.0
    return f if math.isfinite(f) else 0.0


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Probe one HLS endpoint (origin or edge); ``target.config`` is HlsSettings."""
    return await _Attempt(target, ctx).run()


def combine(results: dict[str, ProbeResult], stream: str) -> ProbeResult:
    """Across one stream's endpoints: how many segments each edge is behind the origin.

    ``results`` maps component → the latest result (the origin's key is "origin"). An edge's
    ``stale_playlist`` evidence is given the figure ``edge_lag_segments`` (the origin's newest
    media sequence of that rendition less the edge's, as last seen): at 0 or less the edge
    lists all the origin lists, so its staleness is the stream's, late upstream, not the
    edge's own (agent/diagnosis.py places it on an upstream cause that explains it). When the
    origin listed every segment the edge lacks late, in its newest advance (``listed_from_seq``,
    ``listed_at``: :meth:`_Attempt.listed_late`), the evidence also gets ``behind_origin_s``: how
    long before the edge's reload the origin listed them (seconds, wall clock). An edge is behind
    through its own fault only once that exceeds its stale threshold (``stale_after_s``, the same
    rule measured from the origin's listing instead of the edge's last advance): before, it lists
    what a lawful cache lag lets it list after an origin that was itself late (the tail of an
    upstream stall), and agent/diagnosis.py does not blame it.
    """
    out = ProbeResult()
    origin = results.get("origin")
    if origin is None:
        return out
    o_r = {**origin.figures.get("renditions", {}), **origin.figures.get("alternates", {})}
    for comp, res in results.items():
        if comp == "origin":
            continue
        for rend, f in [*res.figures.get("renditions", {}).items(), *res.figures.get("alternates", {}).items()]:
            if rend in o_r and "last_seq" in o_r[rend] and "last_seq" in f:
                lag = o_r[rend]["last_seq"] - f["last_seq"]
                out.samples.append(Sample("signalpath_edge_lag_segments",
                                          {"stream": stream, "stage": "cdn", "component": comp, "rendition": rend},
                                          float(lag)))
                f["edge_lag_segments"] = lag
                o = o_r[rend]
                behind = f["polled_at"] - o["listed_at"] if lag > 0 and "listed_at" in o and "polled_at" in f \
                    and f["last_seq"] + 1 >= o["listed_from_seq"] else None
                for e in res.evidence:
                    if e.fault == Fault.STALE_PLAYLIST and e.rendition == rend:
                        e.figures["edge_lag_segments"] = float(lag)
                        if behind is not None:
                            e.figures["behind_origin_s"] = round(behind, 3)
                        else:  # (combine runs again on the same evidence when the origin is looked at anew)
                            e.figures.pop("behind_origin_s", None)
    return out


def endpoint_state(result: ProbeResult) -> State:
    return worst(e.state for e in result.evidence)
