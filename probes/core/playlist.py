"""HLS playlist parsing behind one wrapper (RFC 8216), over the ``m3u8`` library.

Malformed input never escapes as an exception: :func:`parse` raises only
:class:`PlaylistError`, which the HLS probe turns into a ``protocol_error`` result.
The parsed form keeps just what the checks need, so a poll does not hold on to the
library's object graph.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from urllib.parse import urljoin

import m3u8

MASTER_REFRESH_S = 10.0
"""Seconds between two reads of a master playlist by the probes that poll one (hls, media, latency).

RFC 8216 sets a reload cadence for media playlists only (§6.3.4: after one target duration);
it gives none for the master playlist, which a client reads when it starts and players re-read
only when they restart or recover from an error or a switch. So 10 s is our choice, not a
standard's: often enough that a rendition added or dropped at the origin shows within one
poll interval or two, rare enough that the master costs one small request per 10 s per endpoint.
"""


class PlaylistError(ValueError):
    """The body is not a usable HLS playlist; the message says why (no URL in it)."""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    uri: str  # absolute
    bandwidth: int | None
    resolution: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Segment:
    seq: int
    uri: str  # absolute
    duration: float
    pdt: float | None  # epoch seconds of EXT-X-PROGRAM-DATE-TIME, when present
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    media_sequence: int
    discontinuity_sequence: int
    target_duration: float
    segments: tuple[Segment, ...]
    endlist: bool

    @property
    def last_seq(self) -> int:
        return self.media_sequence + len(self.segments) - 1

    @property
    def newest(self) -> Segment | None:
        return self.segments[-1] if self.segments else None


@dataclass(frozen=True, slots=True)
class MasterPlaylist:
    variants: tuple[Variant, ...] = field(default_factory=tuple)


MAX_VARIANTS = 16  # bounds the rendition label set


def _to_epoch(v: object) -> float | None:
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.UTC)
        return v.timestamp()
    return None


def _variant_names(playlists: list[m3u8.Playlist]) -> list[str]:
    """Label-safe rendition names: ``360p`` from RESOLUTION, else ``800k`` from BANDWIDTH,
    else ``v1``... Never from the URI: a packager may put a stream key in it."""
    names: list[str] = []
    for i, p in enumerate(playlists):
        res = p.stream_info.resolution
        bw = p.stream_info.bandwidth
        names.append(f"{res[1]}p" if res else f"{int(bw) // 1000}k" if bw else f"v{i + 1}")
    # duplicate resolutions (two bitrates at 720p): suffix by order
    for n in set(names):
        idx = [i for i, x in enumerate(names) if x == n]
        if len(idx) > 1:
            for k, i in enumerate(idx):
                names[i] = f"{n}-{k + 1}"
    return names


def parse(text: str, base_uri: str) -> MasterPlaylist | MediaPlaylist:
    """Parse a master or media playlist; raise PlaylistError on anything unusable."""
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise PlaylistError("does not start with #EXTM3U")
    try:
        pl = m3u8.loads(text)
    except Exception as exc:  # the library raises assorted errors on garbage
        raise PlaylistError(f"unparseable playlist ({exc.__class__.__name__})") from exc
    if pl.is_variant:
        playlists = [p for p in pl.playlists if p.uri][:MAX_VARIANTS]
        if not playlists:
            raise PlaylistError("master playlist lists no variant streams")
        names = _variant_names(playlists)
        return MasterPlaylist(tuple(
            Variant(name=n, uri=urljoin(base_uri, p.uri), bandwidth=p.stream_info.bandwidth,
                    resolution=tuple(p.stream_info.resolution) if p.stream_info.resolution else None)
            for n, p in zip(names, playlists, strict=True)
        ))
    if pl.target_duration is None:
        raise PlaylistError("media playlist has no #EXT-X-TARGETDURATION")
    first = int(pl.media_sequence or 0)
    segs = []
    for i, s in enumerate(pl.segments):
        if s.uri is None or s.duration is None:
            raise PlaylistError(f"segment {first + i} has no URI or EXTINF")
        segs.append(Segment(seq=first + i, uri=urljoin(base_uri, s.uri), duration=float(s.duration),
                            pdt=_to_epoch(s.current_program_date_time or s.program_date_time),
                            discontinuity=bool(s.discontinuity)))
    return MediaPlaylist(
        media_sequence=first,
        discontinuity_sequence=int(pl.discontinuity_sequence or 0),
        target_duration=float(pl.target_duration),
        segments=tuple(segs),
        endlist=bool(pl.is_endlist),
    )


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
