"""HLS playlist parsing behind one wrapper (RFC 8216, and draft-pantos-hls-rfc8216bis for the
low-latency tags), over the ``m3u8`` library.

Malformed input never escapes as an exception: :func:`parse` raises only
:class:`PlaylistError`, which the HLS probe turns into a ``protocol_error`` result; its message
says why and where (segment sequence number and line), never the URL. Every value the checks
use is validated, as a hostile or broken server may send anything:

- URIs (segments, EXT-X-MAP, EXT-X-KEY, variants, renditions) must resolve to a usable
  reference: bad IPv6 brackets (``http://[::1/x``), a port out of 0-65535, a space or control
  character are errors;
- numbers must be finite and in range: EXTINF >= 0 and at most ``MAX_TARGET_DURATION_S``;
  EXT-X-TARGETDURATION from 1 to ``MAX_TARGET_DURATION_S`` (0 would make every segment too
  long and a reload loop of a player); media and discontinuity sequence numbers from 0 to
  2^64 - 1 (RFC 8216 §4.2 decimal-integer); BANDWIDTH >= 0; RESOLUTION from 1 to
  ``MAX_RESOLUTION`` each way; EXT-X-BYTERANGE lengths >= 1 and ranges within
  ``MAX_BYTE_OFFSET``; EXT-X-START and PART-TARGET finite; an EXT-X-KEY METHOD (shown in
  evidence) an enumerated-string of at most 32 characters;
- attribute lists the library cannot read are errors with the tag's name and line.
The parsed form keeps just what the checks need, so a poll does not hold on to the
library's object graph: we call ``m3u8.parse`` (the library's line parser, plain dicts) and
build our frozen dataclasses from that, without the library's model objects in between.

What the model carries, so that a later stage can measure a feature or name it unsupported,
never misread it as a fault:

- media playlist: media and discontinuity sequence, target duration, ENDLIST, segments;
  EXT-X-INDEPENDENT-SEGMENTS, EXT-X-START (``start_offset``), the number of EXT-X-DATERANGE tags;
- each segment: URI, EXTINF, EXT-X-PROGRAM-DATE-TIME (carried forward by EXTINF, across
  discontinuities too, as ``m3u8`` does), EXT-X-DISCONTINUITY, EXT-X-MAP (``init``),
  EXT-X-BYTERANGE (``byterange``, the omitted offset computed per RFC 8216 §4.3.2.2), EXT-X-GAP,
  EXT-X-KEY (method and absolute URI, never key bytes), EXT-X-CUE-OUT/-CONT/-IN (``cue_out``);
  the playlist's distinct keys (``keys``: what a player fetches to decrypt; a rotation adds one);
- low latency (RFC 8216bis §4.4.3.7 EXT-X-PART-INF, §4.4.3.8 EXT-X-SERVER-CONTROL, §4.4.4.9
  EXT-X-PART, §4.4.5.2 EXT-X-SKIP, §4.4.5.3 EXT-X-PRELOAD-HINT, §4.4.5.4 EXT-X-RENDITION-REPORT):
  whether the playlist is a low-latency one, its part target, how many parts of the segment in
  progress are listed after the last complete segment, the newest part listed (its media
  sequence, index, URI and DURATION), the PART preload hint, CAN-BLOCK-RELOAD, HOLD-BACK,
  PART-HOLD-BACK, CAN-SKIP-UNTIL, the rendition reports (URI, LAST-MSN, LAST-PART), and
  SKIPPED-SEGMENTS of a delta update (sequence numbers stay right: the first listed segment is
  ``media_sequence + skipped_segments``);
- master playlist: variants (with AUDIO group and CODECS), EXT-X-MEDIA renditions,
  EXT-X-I-FRAME-STREAM-INF playlists, each list bounded by ``MAX_VARIANTS`` and each entry with a
  label-safe name that never comes from a URI (a packager may put a stream key in one); :func:`audio_rendition` names
  the audio rendition a player plays with a variant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import functools
import math
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import m3u8

MASTER_REFRESH_S = 10.0
"""Seconds between two reads of a master playlist by the probes that poll one (hls, media, latency).

RFC 8216 sets a reload cadence for media playlists only (§6.3.4: after one target duration);
it gives none for the master playlist, which a client reads when it starts and players re-read
only when they restart or recover from an error or a switch. So 10 s is our choice, not a
standard's: often enough that a rendition added or dropped at the origin shows within one
poll interval or two, rare enough that the master costs one small request per 10 s per endpoint.
"""

MAX_TARGET_DURATION_S = 3600.0
"""An EXT-X-TARGETDURATION above this is refused as absurd. RFC 8216 §4.3.3.1 sets no ceiling;
ours: a playlist that asks to be reloaded less than once an hour (§6.3.4) is no live stream, and
such a value is a corrupt or hostile body rather than a stream to measure."""

PARSE_INLINE_MAX_BYTES = 8 * 1024
"""Bodies up to this size are parsed on the event loop by :func:`parse_body`, bigger ones in a
worker thread (``asyncio.to_thread``). Measured with tests/perf/parse_cost.py on this 2-core
machine: a 6-segment live window (214 bytes) 0.24 ms; about 650 ms per MB beyond — a 6-hour
event playlist at 2-s segments (10,800 segments, 864 KB) 560 ms, a 2.5-MB master (16 variants
and thousands of EXT-X-MEDIA) 980 ms. 8 KiB is thus about 5 ms on the loop at most; above it
the thread keeps the loop (the status API, the other endpoints' polls) answering, the GIL
handing it back every 5 ms (``sys.getswitchinterval``). Big parses run one at a time in one
worker thread (several at once would each take the GIL from the loop in turn), and probes that
ask for the same body at the same time (the HLS, playback, content and latency probes polling
one endpoint) share one parse. The CPU is spent all the same: 5 renditions of a 6-hour event
playlist that change every 2 s take about a core."""

MAX_BYTE_OFFSET = 1 << 53
"""The end of an EXT-X-BYTERANGE (offset + length) may not pass this: 8 PiB, past any media
resource, and within what a float (and a Range header of every server) carries exactly."""

MAX_RESOLUTION = 1 << 16
"""Largest RESOLUTION width or height accepted (65,536 pixels: 16 times 4K)."""

MAX_SEQUENCE = (1 << 64) - 1
"""RFC 8216 §4.2: a decimal-integer is 0 to 2^64 - 1."""

MAX_VARIANTS = 16
"""Bounds the rendition label set: at most this many variants, this many EXT-X-MEDIA renditions
and this many I-frame playlists are kept from one master playlist."""


class PlaylistError(ValueError):
    """The body is not a usable HLS playlist; the message says why and where (no URL in it).

    ``seq`` is the media sequence number of the segment at fault and ``line`` the 1-based line
    of the body, when known; both travel as fields too, for callers that want numbers apart."""

    def __init__(self, reason: str, *, seq: int | None = None, line: int | None = None) -> None:
        super().__init__(reason)
        self.seq = seq
        self.line = line


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    uri: str  # absolute
    bandwidth: int | None
    resolution: tuple[int, int] | None
    audio_group: str | None = None  # GROUP-ID of the EXT-X-MEDIA TYPE=AUDIO renditions it plays with
    codecs: str | None = None  # CODECS as written
    bandwidth_buffer_s: float = 0.0  # the buffer BANDWIDTH is declared over: 0 (HLS: a peak), DASH @minBufferTime


@dataclass(frozen=True, slots=True)
class MediaRendition:
    """One EXT-X-MEDIA rendition of a master playlist (RFC 8216 §4.3.4.1)."""

    name: str  # label-safe: ``audio-en``, ``subs-1``, ``cc-en``...; never from a URI
    type: str  # AUDIO, VIDEO, SUBTITLES or CLOSED-CAPTIONS
    group_id: str | None
    language: str | None
    default: bool
    autoselect: bool
    uri: str | None  # absolute; None when muxed into the variant, and always for CLOSED-CAPTIONS


@dataclass(frozen=True, slots=True)
class InitSection:
    """EXT-X-MAP: the Media Initialization Section a segment needs (RFC 8216 §4.3.2.5)."""

    uri: str  # absolute
    byterange: tuple[int, int] | None = None  # (length, offset)


@dataclass(frozen=True, slots=True)
class Segment:
    seq: int
    uri: str  # absolute
    duration: float
    pdt: float | None  # epoch seconds of EXT-X-PROGRAM-DATE-TIME, when present
    discontinuity: bool
    init: InitSection | None = None
    byterange: tuple[int, int] | None = None  # (length, offset)
    gap: bool = False  # EXT-X-GAP: the server says this segment is missing; not a fetch failure
    key_method: str | None = None  # EXT-X-KEY METHOD; None when clear (METHOD=NONE or no key)
    key_uri: str | None = None  # absolute; a data: URI carries the key itself, so only "data:" is kept
    cue_out: bool = False  # inside an ad break (EXT-X-CUE-OUT/-CONT until EXT-X-CUE-IN or its DURATION)


@dataclass(frozen=True, slots=True)
class Part:
    """One EXT-X-PART (RFC 8216bis §4.4.4.9) of segment ``msn``: what a low-latency player loads."""

    msn: int
    index: int
    uri: str  # absolute
    duration: float
    byterange: tuple[int, int] | None = None  # (length, offset)
    independent: bool = False  # INDEPENDENT=YES: starts with a frame decodable on its own
    gap: bool = False  # GAP=YES: not to be loaded


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    media_sequence: int
    discontinuity_sequence: int
    target_duration: float
    segments: tuple[Segment, ...]
    endlist: bool
    independent_segments: bool = False
    start_offset: float | None = None  # EXT-X-START TIME-OFFSET, seconds (negative: from the end)
    dateranges: int = 0  # how many EXT-X-DATERANGE tags the body carries
    low_latency: bool = False  # it lists partial segments (EXT-X-PART-INF, EXT-X-PART or a PART hint)
    part_target: float | None = None  # EXT-X-PART-INF PART-TARGET, seconds
    parts_in_progress: int = 0  # EXT-X-PART tags after the last complete segment
    can_block_reload: bool = False  # EXT-X-SERVER-CONTROL CAN-BLOCK-RELOAD=YES
    skipped_segments: int = 0  # EXT-X-SKIP SKIPPED-SEGMENTS: a delta update left these out
    keys: tuple[tuple[str, str], ...] = ()  # distinct (METHOD, absolute URI) of its EXT-X-KEYs, "data:" ones left out
    listed: bool = True  # False: segments computed from the clock, not listed by the server (DASH $Number$)
    protocol: str = "hls"  # "dash": a Representation of an MPD seen as a media playlist (probes/core/mpd.py)
    newest_part: tuple[int, int] | None = None  # (media sequence, part index) of the last EXT-X-PART listed
    newest_part_uri: str | None = None  # absolute
    newest_part_duration: float | None = None  # its DURATION, seconds
    newest_part_range: tuple[int, int] | None = None  # its BYTERANGE (length, offset)
    newest_part_gap: bool = False  # GAP=YES: not to be loaded (RFC 8216bis §4.4.4.9)
    parts_in_progress_s: float = 0.0  # the DURATIONs of the parts after the last complete segment, summed
    preload_hint: str | None = None  # absolute URI of an EXT-X-PRELOAD-HINT TYPE=PART
    part_hold_back: float | None = None  # EXT-X-SERVER-CONTROL PART-HOLD-BACK, seconds
    hold_back: float | None = None  # HOLD-BACK
    can_skip_until: float | None = None  # CAN-SKIP-UNTIL: delta updates (_HLS_skip) offered
    rendition_reports: tuple[tuple[str, int | None, int | None], ...] = ()  # (absolute URI, LAST-MSN, LAST-PART)
    parts: tuple[Part, ...] = ()  # every EXT-X-PART listed, in order (complete segments' and in progress)

    @property
    def last_seq(self) -> int:
        return self.media_sequence + self.skipped_segments + len(self.segments) - 1

    @property
    def newest(self) -> Segment | None:
        return self.segments[-1] if self.segments else None


@dataclass(frozen=True, slots=True)
class MasterPlaylist:
    variants: tuple[Variant, ...] = field(default_factory=tuple)
    media: tuple[MediaRendition, ...] = ()
    iframes: tuple[Variant, ...] = ()  # EXT-X-I-FRAME-STREAM-INF, named ``iframe-360p``...
    independent_segments: bool = False
    start_offset: float | None = None


def extinf_exceeds_target(duration: float, target: float) -> bool:
    """Whether a segment breaks RFC 8216 §4.3.3.1: its EXTINF duration, rounded to the nearest
    integer, must not exceed the target duration. Halves round up (2.5 → 3), as the RFC's
    "nearest integer" is read by players; Python's ``round`` rounds halves to even and would let
    2.5 s pass a 2 s target while flagging 3.5 s against 3 s. A duration that is not a finite
    number exceeds any target."""
    if not math.isfinite(duration):
        return True
    return math.floor(duration + 0.5) > target


def _to_epoch(v: object) -> float | None:
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.UTC)
        return v.timestamp()
    return None


def _ladder_names(entries: list[tuple[tuple[int, int] | None, int | None]], prefix: str = "") -> list[str]:
    """Label-safe names for (resolution, bandwidth) entries: ``360p`` from RESOLUTION, else ``800k``
    from BANDWIDTH, else ``v1``... (``iframe-1``... with a prefix). Never from the URI: a packager
    may put a stream key in it."""
    names: list[str] = []
    for i, (res, bw) in enumerate(entries):
        n = f"{res[1]}p" if res else f"{int(bw) // 1000}k" if bw else f"{i + 1}" if prefix else f"v{i + 1}"
        names.append(prefix + n)
    return _dedupe(names)


def _dedupe(names: list[str]) -> list[str]:
    """Duplicates (two bitrates at 720p, two English audio tracks) get a suffix by order."""
    for n in set(names):
        idx = [i for i, x in enumerate(names) if x == n]
        if len(idx) > 1:
            for k, i in enumerate(idx):
                names[i] = f"{n}-{k + 1}"
    return names


def _resolution(raw: object, where: str) -> tuple[int, int] | None:
    if not raw:
        return None
    try:
        vals = str(raw).strip('"').split("x")
        w, h = int(vals[0]), int(vals[1])
    except (ValueError, IndexError):
        raise PlaylistError(f"{where} has an unparseable RESOLUTION") from None
    if not (0 < w <= MAX_RESOLUTION and 0 < h <= MAX_RESOLUTION):
        raise PlaylistError(f"{where} has a RESOLUTION out of 1-{MAX_RESOLUTION}")
    return w, h


_MEDIA_PREFIX = {"AUDIO": "audio", "VIDEO": "video", "SUBTITLES": "subs", "CLOSED-CAPTIONS": "cc"}
_UNSAFE = re.compile(r"[^a-z0-9]+")


def _media_names(media: list[dict[str, Any]]) -> list[str]:
    """``audio-en``, ``subs-1``, ``cc-en``: the type, then the LANGUAGE reduced to [a-z0-9-] and
    16 characters, else the rendition's index among those of its type. Never NAME or URI."""
    names: list[str] = []
    counts: dict[str, int] = {}
    for m in media:
        prefix = _MEDIA_PREFIX.get(str(m.get("type") or ""), "media")
        counts[prefix] = counts.get(prefix, 0) + 1
        lang = _UNSAFE.sub("-", str(m.get("language") or "").lower()).strip("-")[:16].strip("-")
        names.append(f"{prefix}-{lang or counts[prefix]}")
    return _dedupe(names)


def _master(data: dict[str, Any], base_uri: str) -> MasterPlaylist:
    resolve = _resolver(base_uri)
    playlists = [p for p in data.get("playlists", ()) if p.get("uri")][:MAX_VARIANTS]
    if not playlists:
        raise PlaylistError("master playlist lists no variant streams")
    infos = [p.get("stream_info") or {} for p in playlists]
    res = [_resolution(si.get("resolution"), f"variant {i + 1}") for i, si in enumerate(infos)]
    for i, si in enumerate([*infos, *(p.get("iframe_stream_info") or {} for p in data.get("iframe_playlists", ()))]):
        for attr in ("bandwidth", "average_bandwidth"):
            bw = si.get(attr)
            if bw is not None and not (isinstance(bw, int) and 0 <= bw <= MAX_SEQUENCE):
                raise PlaylistError(f"variant {i + 1} has a {attr.upper().replace('_', '-')} that is not a "
                                    "non-negative integer")
    names = _ladder_names([(r, si.get("bandwidth")) for r, si in zip(res, infos, strict=True)])
    variants = tuple(
        Variant(name=n, uri=resolve(p["uri"], f"variant {i + 1}"), bandwidth=si.get("bandwidth"), resolution=r,
                audio_group=si.get("audio"), codecs=si.get("codecs"))
        for i, (n, p, si, r) in enumerate(zip(names, playlists, infos, res, strict=True))
    )
    iframe_pls = [p for p in data.get("iframe_playlists", ()) if p.get("uri")][:MAX_VARIANTS]
    iinfos = [p.get("iframe_stream_info") or {} for p in iframe_pls]
    ires = [_resolution(si.get("resolution"), f"I-frame playlist {i + 1}") for i, si in enumerate(iinfos)]
    inames = _ladder_names([(r, si.get("bandwidth")) for r, si in zip(ires, iinfos, strict=True)], "iframe-")
    iframes = tuple(
        Variant(name=n, uri=resolve(p["uri"], f"I-frame playlist {i + 1}"), bandwidth=si.get("bandwidth"),
                resolution=r, codecs=si.get("codecs"))
        for i, (n, p, si, r) in enumerate(zip(inames, iframe_pls, iinfos, ires, strict=True))
    )
    media_tags = list(data.get("media", ()))[:MAX_VARIANTS]
    media = tuple(
        MediaRendition(
            name=n, type=str(m.get("type") or ""), group_id=m.get("group_id"), language=m.get("language"),
            default=m.get("default") == "YES", autoselect=m.get("autoselect") == "YES",
            # CLOSED-CAPTIONS travel inside the video (RFC 8216 §4.3.4.1: no URI); noted, not watched
            uri=resolve(m["uri"], f"#EXT-X-MEDIA {n}") if m.get("uri") and m.get("type") != "CLOSED-CAPTIONS"
            else None,
        )
        for n, m in zip(_media_names(media_tags), media_tags, strict=True)
    )
    return MasterPlaylist(variants, media, iframes, bool(data.get("is_independent_segments")),
                          _start_offset(data))


def _start_offset(data: dict[str, Any]) -> float | None:
    start = data.get("start")
    off = start.get("time_offset") if start else None
    if off is not None and not math.isfinite(off):
        raise PlaylistError("#EXT-X-START TIME-OFFSET is not a finite number")
    return off


def _byterange(raw: str, seq: int, what: str = "#EXT-X-BYTERANGE") -> tuple[int, int | None]:
    """``<n>[@<o>]`` (RFC 8216 §4.3.2.2) → (length, offset or None)."""
    n, at, o = raw.strip().strip('"').partition("@")
    try:
        length, offset = int(n), (int(o) if at else None)
    except ValueError:
        raise PlaylistError(f"segment {seq}: unparseable {what}", seq=seq) from None
    if length < 0 or (offset is not None and offset < 0):
        raise PlaylistError(f"segment {seq}: negative {what}", seq=seq)
    if length == 0:
        raise PlaylistError(f"segment {seq}: empty {what} (a length of 0)", seq=seq)
    if length + (offset or 0) > MAX_BYTE_OFFSET:
        raise PlaylistError(f"segment {seq}: {what} ends past byte {MAX_BYTE_OFFSET}", seq=seq)
    return length, offset


# A relative reference with no dot segment, colon or fragment: joining it to the base's
# directory is plain concatenation, which spares ``urljoin`` (a quarter of the parse time of a
# 60-segment playlist) on the hot path. Anything else goes through ``urljoin``.
_SIMPLE_REF = re.compile(r"[\w~%+=,@-][\w.~%+=,@-]*(?:/[\w~%+=,@-][\w.~%+=,@-]*)*(?:\?[^#\x00-\x20\x7f]+)?", re.ASCII)


_METHOD = re.compile(r"[A-Z0-9-]{1,32}")  # RFC 8216 §4.2 enumerated-string: NONE, AES-128, SAMPLE-AES...
_BAD_URI_CHAR = re.compile(r"[\x00-\x20\x7f]")


def _checked(uri: str) -> str:
    """``uri`` when a client can request it, else ValueError saying why in our words, never with
    a piece of the URI (urlsplit's own messages quote the port as written, which may be a
    token): bad IPv6 brackets, a port that is no number or out of 0-65535, a space or control
    character."""
    if _BAD_URI_CHAR.search(uri):
        raise ValueError("a space or control character")
    try:
        urlsplit(uri).port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        why = str(exc)
        raise ValueError("Invalid IPv6 URL" if "IPv6" in why else "Port out of range 0-65535" if "range" in why
                         else "a port that is no decimal number") from None
    return uri


@functools.lru_cache(maxsize=16384)
def _joined(base_uri: str, ref: str) -> str:
    """``_checked(urljoin(base_uri, ref))``, remembered across parses: a live playlist lists most of
    its previous reload's segments again, and a reference with dot-segments (``../../seg/1.ts``)
    misses the fast path (urljoin was a tenth of the HLS probe's CPU at 100 streams). Bounded;
    a ValueError is not remembered."""
    return _checked(urljoin(base_uri, ref))


_SIMPLE_NAME = re.compile(r"[\w~%+=,@-][\w.~%+=,@-]*(?:\?[^#\x00-\x20\x7f]+)?", re.ASCII)
"""One path segment, then a query if any: no dot-segment, no scheme, no character a URL cannot
carry (a control character is refused by :func:`_checked`, as on the slow path), no empty
query (urljoin drops it)."""


def _joined_by_folder(base_uri: str, ref: str) -> str:
    """:func:`_joined`, remembered per folder when ``ref`` ends in a plain name: every segment of
    a playlist that names them ``../../seg/N.ts`` shares one entry (``../../seg/``), where one per
    segment pushed each other out of the bounded memo at a few hundred streams (urljoin was 3 %
    of the agent at 200). The same URL: a plain name (no dot-segment, no scheme) appended to a
    resolved folder is what resolving the whole reference gives (RFC 3986 §5.2)."""
    end = min((i for i in (ref.find("?"), ref.find("#")) if i >= 0), default=len(ref))
    cut = ref.rfind("/", 0, end)
    # (urlsplit strips leading controls and spaces and drops tabs and newlines anywhere: a folder
    # holding one may become "//", which urljoin answers with the base itself; and a relative
    # base's folder above its root resolves to "/": neither takes this path)
    if cut > 0 and not ref.startswith("//") and ":" not in ref[:cut] and not _BAD_URI_CHAR.search(ref, 0, cut) \
            and base_uri.startswith(("http://", "https://")) and _SIMPLE_NAME.fullmatch(ref, cut + 1):
        return _joined(base_uri, ref[: cut + 1]) + ref[cut + 1:]
    return _joined(base_uri, ref)


def _resolver(base_uri: str) -> Callable[..., str]:
    """``urljoin(base_uri, ref)``, memoised for one parse, with the fast path above (a simple
    relative reference cannot change the base's host or port: only the base is checked).
    ``resolve(ref, where, seq=None)`` raises PlaylistError naming ``where`` (and ``seq``) for a
    reference no client can request (:func:`_checked`)."""
    try:
        base_dir = urljoin(_checked(base_uri), ".")
    except ValueError as exc:
        raise PlaylistError(f"the playlist's own URL is unusable ({exc})") from None
    fast = base_dir.startswith(("http://", "https://")) and base_dir.endswith("/")
    done: dict[str, str] = {}

    def resolve(ref: str, where: str, seq: int | None = None) -> str:
        r = done.get(ref)
        if r is None:
            if fast and _SIMPLE_REF.fullmatch(ref):
                r = base_dir + ref
            else:
                try:
                    r = _joined_by_folder(base_uri, ref)
                except ValueError as exc:
                    raise PlaylistError(f"{where} has an unusable URI ({exc})"[:160], seq=seq) from None
            done[ref] = r
        return r

    return resolve


def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _media(data: dict[str, Any], text: str, base_uri: str) -> MediaPlaylist:
    td = data.get("targetduration")
    if td is None:
        raise PlaylistError("media playlist has no #EXT-X-TARGETDURATION")
    if td < 0:
        raise PlaylistError("#EXT-X-TARGETDURATION is negative")
    if td == 0:
        raise PlaylistError("#EXT-X-TARGETDURATION is 0: no segment may last that, no player can reload at it")
    if td > MAX_TARGET_DURATION_S:
        raise PlaylistError(f"#EXT-X-TARGETDURATION is over {MAX_TARGET_DURATION_S:g} s")
    first = int(data.get("media_sequence") or 0)
    disc = int(data.get("discontinuity_sequence") or 0)
    skipped = int((data.get("skip") or {}).get("skipped_segments") or 0)
    if first < 0 or disc < 0 or skipped < 0:
        which = "MEDIA-SEQUENCE" if first < 0 else "DISCONTINUITY-SEQUENCE" if disc < 0 else "SKIP SKIPPED-SEGMENTS"
        raise PlaylistError(f"#EXT-X-{which} is negative")
    if max(first, disc, skipped) > MAX_SEQUENCE or first + skipped + len(data["segments"]) > MAX_SEQUENCE:
        raise PlaylistError("a sequence number is over 2^64 - 1 (RFC 8216 §4.2)")

    raw: list[dict[str, Any]] = data["segments"]
    parts_in_progress = 0
    tail_parts: list[dict[str, Any]] = []
    if raw and "uri" not in raw[-1] and "duration" not in raw[-1] and raw[-1].get("parts"):
        # m3u8 keeps the parts of the segment being written as a trailing URI-less segment
        tail_parts = list(raw[-1]["parts"])
        parts_in_progress = len(tail_parts)
        raw = raw[:-1]

    seq0 = first + skipped
    resolve = _resolver(base_uri)
    inits: dict[int, InitSection] = {}
    keys: dict[int, tuple[str | None, str | None]] = {}
    segs: list[Segment] = []
    pdt_next: float | None = None
    prev_range: tuple[str, int] | None = None  # (URI as written, end) of the previous segment's sub-range
    in_break = False
    break_left: float | None = None
    has_parts = parts_in_progress > 0
    for i, s in enumerate(raw):
        seq = seq0 + i
        uri, dur = s.get("uri"), s.get("duration")
        if uri is None or dur is None:
            raise PlaylistError(f"segment {seq} has no URI or EXTINF", seq=seq)
        if not 0 <= dur < math.inf:  # NaN fails both comparisons
            raise PlaylistError(f"segment {seq} has an EXTINF that is not a finite non-negative number", seq=seq)
        if dur > MAX_TARGET_DURATION_S:
            raise PlaylistError(f"segment {seq} has an absurd EXTINF (over {MAX_TARGET_DURATION_S:g} s)", seq=seq)
        absu = resolve(uri, f"segment {seq}", seq)

        tagged = s.get("program_date_time")
        pdt = _to_epoch(tagged) if tagged is not None else pdt_next
        pdt_next = pdt + dur if pdt is not None else None

        byterange = None
        if (br := s.get("byterange")) is not None:
            length, offset = _byterange(br, seq)
            if offset is None:
                if prev_range is None or prev_range[0] != uri:
                    raise PlaylistError(f"segment {seq}: #EXT-X-BYTERANGE has no offset and the previous segment "
                                        "is no sub-range of the same resource (RFC 8216 §4.3.2.2)", seq=seq)
                offset = prev_range[1]
            byterange = (length, offset)
            prev_range = (uri, offset + length)
        else:
            prev_range = None

        init = None
        if (m := s.get("init_section")) is not None:
            init = inits.get(id(m))
            if init is None:
                if not m.get("uri"):
                    raise PlaylistError(f"segment {seq}: #EXT-X-MAP has no URI", seq=seq)
                mr = None
                if m.get("byterange") is not None:
                    ml, mo = _byterange(m["byterange"], seq, "#EXT-X-MAP BYTERANGE")
                    mr = (ml, mo or 0)  # no previous sub-range applies to a MAP: the offset defaults to 0
                init = inits[id(m)] = InitSection(resolve(m["uri"], f"segment {seq}: #EXT-X-MAP", seq), mr)

        key_method = key_uri = None
        if (k := s.get("key")) is not None:
            kk = keys.get(id(k))
            if kk is None:
                method = k.get("method")
                if not method:
                    raise PlaylistError(f"segment {seq}: #EXT-X-KEY has no METHOD", seq=seq)
                if not _METHOD.fullmatch(method):  # it is shown in evidence: an enumerated-string, bounded
                    raise PlaylistError(f"segment {seq}: #EXT-X-KEY METHOD is no enumerated-string of at "
                                        "most 32 characters", seq=seq)
                if method == "NONE":
                    kk = (None, None)
                else:
                    ku = k.get("uri")
                    if not ku:
                        raise PlaylistError(f"segment {seq}: #EXT-X-KEY has no URI", seq=seq)
                    kk = (method, "data:" if ku[:5].lower() == "data:" else resolve(ku, f"segment {seq}: #EXT-X-KEY", seq))
                keys[id(k)] = kk
            key_method, key_uri = kk

        if s.get("cue_in"):
            in_break, break_left = False, None
        if s.get("cue_out_start"):
            in_break, break_left = True, _num(s.get("scte35_duration"))
        elif s.get("cue_out"):  # EXT-X-CUE-OUT-CONT, EXT-X-CUE-SPAN
            in_break = True
            total, done = _num(s.get("scte35_duration")), _num(s.get("scte35_elapsedtime"))
            if total is not None and done is not None:
                break_left = total - done
        cue = in_break
        if in_break and break_left is not None:
            break_left -= dur
            if break_left <= 1e-3:
                in_break, break_left = False, None

        has_parts = has_parts or "parts" in s
        segs.append(Segment(seq, absu, float(dur), pdt, bool(s.get("discontinuity")), init, byterange,
                            bool(s.get("gap_tag")), key_method, key_uri, cue))

    # each distinct key once, in order of appearance: what a player must fetch to decrypt (a rotation adds one)
    key_list = tuple(dict.fromkeys((m, u) for m, u in keys.values() if m is not None and u is not None and u != "data:"))
    part_target = (data.get("part_inf") or {}).get("part_target")
    if part_target is not None and not 0 < part_target < math.inf:
        raise PlaylistError("#EXT-X-PART-INF PART-TARGET is not a finite positive number")
    hint = data.get("preload_hint") or {}
    # the newest part listed: of the segment in progress, else of the last complete segment
    seq_after = seq0 + len(raw)
    owner, plist = (seq_after, tail_parts) if tail_parts else \
        (seq_after - 1, list((raw[-1].get("parts") or []) if raw else []))
    newest_part: tuple[int, int] | None = None
    newest_part_uri, newest_part_dur = None, None
    newest_part_gap, newest_part_range = False, None
    if plist:
        last = plist[-1]
        d = last.get("duration")
        if last.get("uri") is None or not isinstance(d, (int, float)) or not 0 < d <= MAX_TARGET_DURATION_S:
            raise PlaylistError(f"part {len(plist) - 1} of segment {owner} has no URI or no finite positive "
                                "DURATION", seq=owner)
        newest_part = (owner, len(plist) - 1)
        newest_part_uri = resolve(last["uri"], f"part {len(plist) - 1} of segment {owner}", owner)
        newest_part_dur = float(d)
        newest_part_gap = str(last.get("gap") or "").upper() == "YES"
        # EXT-X-PART BYTERANGE: an omitted offset follows the previous part of the same URI
        end: dict[str, int] = {}
        for i, p in enumerate(plist):
            if p.get("byterange"):
                length, off = _byterange(str(p["byterange"]), owner, f"EXT-X-PART {i} BYTERANGE")
                off = off if off is not None else end.get(str(p.get("uri")), 0)
                end[str(p.get("uri"))] = off + length
                if i == len(plist) - 1:
                    newest_part_range = (length, off)
    parts = _parts([(seq0 + i, s.get("parts") or []) for i, s in enumerate(raw) if s.get("parts")]
                   + ([(seq_after, tail_parts)] if tail_parts else []), resolve)
    sc = data.get("server_control") or {}
    reports = []
    for i, r in enumerate((data.get("rendition_reports") or [])[:MAX_VARIANTS]):
        if r.get("uri"):
            msn, part = r.get("last_msn"), r.get("last_part")
            reports.append((resolve(r["uri"], f"EXT-X-RENDITION-REPORT {i + 1}"),
                            msn if isinstance(msn, int) else None, part if isinstance(part, int) else None))
    return MediaPlaylist(
        media_sequence=first,
        discontinuity_sequence=disc,
        target_duration=float(td),
        segments=tuple(segs),
        endlist=bool(data.get("is_endlist")),
        independent_segments=bool(data.get("is_independent_segments")),
        start_offset=_start_offset(data),
        dateranges=text.count("#EXT-X-DATERANGE:"),
        low_latency=part_target is not None or has_parts or hint.get("type") == "PART",
        part_target=part_target,
        parts_in_progress=parts_in_progress,
        can_block_reload=(data.get("server_control") or {}).get("can_block_reload") == "YES",
        skipped_segments=skipped,
        keys=key_list,
        newest_part=newest_part,
        newest_part_uri=newest_part_uri,
        newest_part_duration=newest_part_dur,
        newest_part_range=newest_part_range,
        newest_part_gap=newest_part_gap,
        parts_in_progress_s=sum(float(p.get("duration") or 0) for p in tail_parts
                                if isinstance(p.get("duration"), (int, float)) and 0 < p["duration"] < math.inf),
        preload_hint=resolve(hint["uri"], "EXT-X-PRELOAD-HINT") if hint.get("type") == "PART" and hint.get("uri")
        else None,
        part_hold_back=_num(sc.get("part_hold_back")),
        hold_back=_num(sc.get("hold_back")),
        can_skip_until=_num(sc.get("can_skip_until")),
        rendition_reports=tuple(reports),
        parts=parts,
    )


def _parts(owners: list[tuple[int, list[dict[str, Any]]]], resolve: Callable[..., str]) -> tuple[Part, ...]:
    """The EXT-X-PARTs of each (msn, raw parts), in order; a BYTERANGE without an offset follows
    the previous part of the same URI (RFC 8216bis §4.4.4.9)."""
    out: list[Part] = []
    end: dict[str, int] = {}
    for msn, plist in owners:
        for i, p in enumerate(plist):
            d = p.get("duration")
            if p.get("uri") is None or not isinstance(d, (int, float)) or not 0 < d <= MAX_TARGET_DURATION_S:
                raise PlaylistError(f"part {i} of segment {msn} has no URI or no finite positive DURATION", seq=msn)
            rng = None
            if p.get("byterange"):
                length, off = _byterange(str(p["byterange"]), msn, f"EXT-X-PART {i} BYTERANGE")
                off = off if off is not None else end.get(str(p["uri"]), 0)
                end[str(p["uri"])] = off + length
                rng = (length, off)
            out.append(Part(msn, i, resolve(p["uri"], f"part {i} of segment {msn}", msn), float(d), rng,
                            str(p.get("independent") or "").upper() == "YES", str(p.get("gap") or "").upper() == "YES"))
    return tuple(out)


_PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signalpath-playlist-parse")
_in_flight: dict[tuple[str, bytes], Future[MasterPlaylist | MediaPlaylist]] = {}


def next_part(pl: MediaPlaylist) -> tuple[int, int] | None:
    """The part a low-latency client asks for next (``_HLS_msn``, ``_HLS_part``), when the
    playlist offers blocking reload and parts: the one after the newest listed (a server treats a
    part past a segment's last as part 0 of the next, RFC 8216bis §6.2.5.2)."""
    if not (pl.low_latency and pl.can_block_reload and pl.part_target) or pl.endlist:
        return None
    if pl.newest_part is not None:
        return pl.newest_part[0], pl.newest_part[1] + 1
    return pl.last_seq + 1, 0


async def parse_body(body: bytes, base_uri: str, now: float | None = None) -> MasterPlaylist | MediaPlaylist:
    """:func:`parse` of a fetched body (UTF-8, bad bytes replaced), off the event loop when it is
    over ``PARSE_INLINE_MAX_BYTES`` (one worker thread; callers asking for the same body and base
    at once share its parse: the result is frozen); raises only PlaylistError.

    An MPEG-DASH MPD (:func:`probes.core.mpd.looks_like_mpd`) is read too, as HLS clients would
    read its HLS twin: without a ``#dash=NAME`` fragment in ``base_uri`` it is a master playlist
    (video Representations as variants, audio and text ones as EXT-X-MEDIA renditions, each with
    the MPD's URL and its own fragment as URI), with one it is that Representation's segments
    available at wall time ``now`` (epoch seconds; the local clock when None) as a media
    playlist (:func:`probes.core.mpd.view`). A view depends on the clock, so a caller never
    reuses one for unchanged bytes (:func:`reusable`)."""
    if looks_like_xml(body):
        from probes.core import mpd
        return await mpd.parse_body(body, base_uri, now)
    if len(body) <= PARSE_INLINE_MAX_BYTES:
        return parse(body.decode("utf-8", "replace"), base_uri)
    key = (base_uri, body)
    fut = _in_flight.get(key)
    if fut is None:
        fut = _in_flight[key] = _PARSER.submit(_parse_bytes, body, base_uri)
        fut.add_done_callback(lambda _f: _in_flight.pop(key, None))
    # shielded: one caller's deadline must not cancel the parse the others wait for
    return await asyncio.shield(asyncio.wrap_future(fut))


class PlaylistCache:
    """One parse per playlist body, shared by every probe of an agent.

    Several probes read the same playlists (the HLS probe every rendition, the virtual players
    two of them, the latency probe and the media probe one): without sharing, a new body of a
    watched rendition was parsed three or four times, a third of the agent's event loop at 200
    streams (tests/perf/scale_bench.py --profile). :meth:`parse` is :func:`parse_body` that keeps,
    per URL, the newest body and its parse (frozen: safe to share) and answers the same bytes at
    the same URL from it. Bounded: at most ``max_entries`` URLs and ``max_bytes`` of bodies, the
    oldest-stored dropped first (a parse holds ~4x its body: the bound on bodies is ~1/5 of the
    memory it may hold). MPD bodies are not kept (a DASH view depends on the clock;
    :mod:`probes.core.mpd` caches its own parse), nor malformed ones (each read names its error),
    nor the answers to LL-HLS delivery directives (a new URL at every reload).

    The same body at the same path on another host — an origin and its CDN edges serve the
    origin's bytes — is not parsed again when it holds no ``//`` (every URI in it is then
    relative to the host, so the two parses differ only in the host of each URI): the first
    parse is copied with its URIs moved to the other host (:func:`rebased`: 23 µs where parsing
    ffmpeg's 6-segment live playlist takes 96 µs); ``rebased`` counts those. One per agent (the runner's), none shared between agents;
    outside the runner each :class:`probes.base.ProbeContext` has its own."""

    __slots__ = ("_entries", "_by_body", "_bytes", "max_entries", "max_bytes", "hits", "misses", "rebased")

    def __init__(self, max_entries: int = 8192, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._entries: dict[str, tuple[bytes, MasterPlaylist | MediaPlaylist]] = {}
        # (body, path and query) -> the URL of the newest entry holding that body there: streams of
        # one packager can serve byte-identical playlists at different paths (aligned channels)
        self._by_body: dict[tuple[bytes, str], str] = {}
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.rebased = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def parse(self, body: bytes, base_uri: str, now: float | None = None) -> MasterPlaylist | MediaPlaylist:
        """:func:`parse_body` of ``body`` read at ``base_uri``; raises only PlaylistError."""
        if looks_like_xml(body) or "_HLS_" in base_uri:
            # an MPD view depends on the clock; an LL-HLS delivery directive (_HLS_msn, _HLS_part,
            # _HLS_skip) makes every reload's URL new: kept, it would only push useful entries out
            return await parse_body(body, base_uri, now)
        hit = self._entries.get(base_uri)
        if hit is not None and hit[0] == body:
            self.hits += 1
            return hit[1]
        self.misses += 1
        parsed = self._twin(body, base_uri)
        if parsed is None:
            parsed = await parse_body(body, base_uri, now)
        else:
            self.rebased += 1
        self._drop(base_uri)
        if len(body) <= self.max_bytes:
            while self._entries and (len(self._entries) >= self.max_entries
                                     or self._bytes + len(body) > self.max_bytes):
                self._drop(next(iter(self._entries)))
            self._entries[base_uri] = (body, parsed)
            self._by_body[(body, _path_query(base_uri))] = base_uri
            self._bytes += len(body)
        return parsed

    def _drop(self, url: str) -> None:
        old = self._entries.pop(url, None)
        if old is not None:
            self._bytes -= len(old[0])
            key = (old[0], _path_query(url))
            if self._by_body.get(key) == url:
                del self._by_body[key]

    def _twin(self, body: bytes, base_uri: str) -> MasterPlaylist | MediaPlaylist | None:
        """The parse of the same ``body`` read at the same path and query on another host,
        moved to ``base_uri``'s host; None when there is none or the body holds ``//``."""
        url = self._by_body.get((body, _path_query(base_uri)))
        if url is None or url == base_uri or b"//" in body:
            return None
        entry = self._entries.get(url)
        if entry is None:
            return None
        there, here = urlsplit(url), urlsplit(base_uri)
        if (there.path, there.query) != (here.path, here.query) or not here.netloc \
                or here.scheme not in ("http", "https"):
            return None
        return rebased(entry[1], f"{there.scheme}://{there.netloc}", f"{here.scheme}://{here.netloc}")


def _path_query(url: str) -> str:
    """``url`` without its scheme and host: what an origin and its CDN edges have in common."""
    i = url.find("/", url.find("//") + 2) if "//" in url else 0
    return url[i:] if i >= 0 else ""


def rebased(pl: MasterPlaylist | MediaPlaylist, old: str, new: str) -> MasterPlaylist | MediaPlaylist:
    """``pl`` with every URI that starts with ``old`` (``scheme://host[:port]``) starting with
    ``new`` instead; the rest is shared (frozen)."""
    def moved(uri: str) -> str:
        return new + uri[len(old):] if uri.startswith(old) else uri

    def maybe(uri: str | None) -> str | None:
        return None if uri is None else moved(uri)

    if isinstance(pl, MasterPlaylist):
        return dataclasses.replace(
            pl, variants=tuple(dataclasses.replace(v, uri=moved(v.uri)) for v in pl.variants),
            media=tuple(dataclasses.replace(m, uri=maybe(m.uri)) for m in pl.media),
            iframes=tuple(dataclasses.replace(v, uri=moved(v.uri)) for v in pl.iframes))
    inits: dict[InitSection, InitSection] = {}

    def init(i: InitSection | None) -> InitSection | None:
        if i is None:
            return None
        out = inits.get(i)
        if out is None:
            out = inits[i] = dataclasses.replace(i, uri=moved(i.uri))
        return out

    return dataclasses.replace(
        pl,
        segments=tuple(dataclasses.replace(sg, uri=moved(sg.uri), init=init(sg.init), key_uri=maybe(sg.key_uri))
                       for sg in pl.segments),
        keys=tuple((m, moved(u)) for m, u in pl.keys),
        newest_part_uri=maybe(pl.newest_part_uri), preload_hint=maybe(pl.preload_hint),
        rendition_reports=tuple((moved(u), msn, part) for u, msn, part in pl.rendition_reports),
        parts=tuple(dataclasses.replace(p, uri=moved(p.uri)) for p in pl.parts))


def looks_like_xml(body: bytes) -> bool:
    """Whether a manifest body is XML (an MPD, or XML that is no playlist either way)."""
    return body[:1] in (b"<", b"\xef", b" ", b"\n", b"\r", b"\t") and \
        body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def reusable(document: tuple[str, bytes], cached: tuple[str, bytes] | None) -> bool:
    """Whether the parse of ``cached`` (a ``FetchResult.document``) serves for ``document``: the
    same URL and bytes, and not a DASH view, which depends on the clock as well."""
    return document == cached and "#dash=" not in document[0]


def _parse_bytes(body: bytes, base_uri: str) -> MasterPlaylist | MediaPlaylist:
    return parse(body.decode("utf-8", "replace"), base_uri)


def parse(text: str, base_uri: str) -> MasterPlaylist | MediaPlaylist:
    """Parse a master or media playlist; raise PlaylistError on anything unusable."""
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise PlaylistError("does not start with #EXTM3U")
    try:
        data = m3u8.parse(text)
    except Exception as exc:  # the library raises assorted errors on garbage
        raise _diagnose(text, exc) from exc
    if data.get("is_variant"):
        return _master(data, base_uri)
    try:
        return _media(data, text, base_uri)
    except PlaylistError as exc:
        if exc.seq is None or exc.line is not None:
            raise
        line = _segment_line(text, exc.seq - int(data.get("media_sequence") or 0)
                             - int((data.get("skip") or {}).get("skipped_segments") or 0))
        if line is None:
            raise
        raise PlaylistError(f"{exc} (line {line})", seq=exc.seq, line=line) from None


def _segment_line(text: str, index: int) -> int | None:
    """1-based line of the URI of the ``index``-th segment listed (the error path only)."""
    pending = False
    n = 0
    for no, ln in enumerate(text.splitlines()):
        ln = ln.strip()
        if ln.startswith("#EXTINF"):
            pending = True
        elif ln and not ln.startswith("#") and pending:
            if n == index:
                return no + 1
            n, pending = n + 1, False
    return None


_TAG_NAME = re.compile(r"#EXT[-A-Z0-9]{0,40}")
_ABSURD_EXTINF_S = 1e9  # only named when the library failed: 31 years, past what a date-time can carry
_MEDIA_SEQUENCE = re.compile(r"#EXT-X-MEDIA-SEQUENCE:\s*(\d+)")
_SKIPPED = re.compile(r"#EXT-X-SKIP:.*?SKIPPED-SEGMENTS=(\d+)")


def _diagnose(text: str, exc: Exception) -> PlaylistError:
    """Why and where the library refused the body (the error path only, so cost is no concern):
    first a bad EXTINF, else the first line whose addition makes the body unparseable (a binary
    search over prefixes: the library reads line by line and stops at the first error). Only the
    tag's name is quoted, never the line: it may hold a URL."""
    generic = PlaylistError(f"unparseable playlist ({exc.__class__.__name__})")
    try:
        lines = text.strip().splitlines()
        ms, sk = _MEDIA_SEQUENCE.search(text), _SKIPPED.search(text)
        seq0 = (int(ms.group(1)) if ms else 0) + (int(sk.group(1)) if sk else 0)

        def segment_at(upto: int) -> int:  # sequence number of the segment line `upto` belongs to
            n, pending = 0, False
            for ln in lines[:upto]:
                ln = ln.strip()
                if ln.startswith("#EXTINF"):
                    pending = True
                elif ln and not ln.startswith("#") and pending:
                    n, pending = n + 1, False
            return seq0 + n

        n, pending, has_extinf = 0, False, False  # the library expects a URI after EXTINF or BYTERANGE
        for no, ln in enumerate(lines):
            ln = ln.strip()
            seq = seq0 + n
            if ln.startswith("#EXTINF"):
                try:
                    d = float(ln[7:].lstrip(":").split(",", 1)[0])
                except ValueError:
                    return PlaylistError(f"segment {seq} has an unparseable EXTINF (line {no + 1})", seq=seq, line=no + 1)
                if not 0 <= d < math.inf:
                    return PlaylistError(f"segment {seq} has an EXTINF that is not a finite non-negative number "
                                         f"(line {no + 1})",
                                         seq=seq, line=no + 1)
                if d > _ABSURD_EXTINF_S:  # finite, but a date-time carried by it overflows
                    return PlaylistError(f"segment {seq} has an absurd EXTINF (line {no + 1})", seq=seq, line=no + 1)
                pending = has_extinf = True
            elif ln.startswith("#EXT-X-BYTERANGE"):
                pending = True
            elif ln and not ln.startswith("#") and pending:
                if not has_extinf:
                    return PlaylistError(f"segment {seq} has no URI or EXTINF (line {no + 1})", seq=seq, line=no + 1)
                n, pending, has_extinf = n + 1, False, False

        def fails(k: int) -> bool:
            try:
                m3u8.parse("\n".join(lines[:k]))
            except Exception:
                return True
            return False

        lo, hi = 1, len(lines)
        if not fails(hi):
            return generic
        while lo < hi:
            mid = (lo + hi) // 2
            if fails(mid):
                hi = mid
            else:
                lo = mid + 1
        bad = lines[lo - 1].strip()
        tag = m.group(0) if bad.startswith("#") and (m := _TAG_NAME.match(bad)) else \
            "tag" if bad.startswith("#") else "URI line"
        seq = segment_at(lo - 1)
        in_segments = any(x.strip().startswith("#EXTINF") for x in lines[:lo])
        where = f" (segment {seq})" if in_segments else ""
        return PlaylistError(f"unparseable {tag} on line {lo}{where} ({exc.__class__.__name__})",
                             seq=seq if in_segments else None, line=lo)
    except Exception:  # the diagnosis must never hide the error it explains
        return generic


def audio_rendition(master: MasterPlaylist, variant: Variant) -> MediaRendition | None:
    """The EXT-X-MEDIA TYPE=AUDIO rendition a player plays with ``variant``: of the group its
    AUDIO attribute names (RFC 8216 §4.3.4.2.1), the DEFAULT=YES one, else the first listed (as
    hls.js picks). None when the variant names no group, the group is not listed, or the chosen
    rendition has no URI (its audio is muxed into the variant's segments)."""
    if variant.audio_group is None:
        return None
    group = [m for m in master.media if m.type == "AUDIO" and m.group_id == variant.audio_group]
    chosen = next((m for m in group if m.default), group[0] if group else None)
    return chosen if chosen is not None and chosen.uri is not None else None


def choose_renditions(variants: tuple[Variant, ...] | list[Variant], wanted: str | list[str]) -> list[Variant]:
    """Which renditions a probe watches: ``lowest``, ``highest``, ``highest_lowest``, ``all``,
    or a list of names. Ranked by BANDWIDTH, then resolution; variants without BANDWIDTH
    rank after the others (a ladder that declares no bitrate cannot be ordered)."""
    variants = list(variants)
    if not variants or wanted == "all":
        return variants
    if isinstance(wanted, str):
        def rank(v: Variant) -> tuple[bool, float, float]:
            pixels = v.resolution[0] * v.resolution[1] if v.resolution else 0
            return (v.bandwidth is None, v.bandwidth or 0, pixels)

        ordered = sorted(variants, key=rank)
        known = [v for v in ordered if v.bandwidth is not None] or ordered
        lowest, highest = ordered[0], known[-1]
        if wanted == "lowest":
            return [lowest]
        if wanted == "highest":
            return [highest]
        if wanted == "highest_lowest":
            return [highest] if highest is lowest else [highest, lowest]
        raise ValueError(f"unknown rendition choice {wanted!r}")
    names = set(wanted)
    return [v for v in variants if v.name in names]


def with_query(uri: str, query: str) -> str:
    """``uri`` with ``query`` added to its query string (before a fragment, which is never sent:
    ``#dash=`` names a Representation of an MPD). LL-HLS delivery directives go this way."""
    base, hashmark, frag = uri.partition("#")
    return f"{base}{'&' if '?' in base else '?'}{query}{hashmark}{frag}"
