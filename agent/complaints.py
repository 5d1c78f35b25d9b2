"""Viewer complaints: recorded by tech support, each told against what signalpath saw.

A complaint is a type (:class:`ComplaintType`), a stream, optionally the edge, region,
device and player the viewer named, and a note. When it is recorded, signalpath keeps what
it saw at that moment — the stream's incidents open then or resolved within
``lookback_s`` (a viewer complains minutes after the stutter), and the state of every
stage/component of the stream — and decides, with :func:`explain`, which incident (if any)
explains it:

- the incident's fault is one the complaint's type can be a viewer's words for
  (:data:`EXPLAINED_BY`: "stutter" by a stale playlist, a slow segment, stalls...; "A/V out
  of sync" by ``av_desync``; "other" by any P1/P2);
- its place reaches the viewer: a complaint naming an edge is explained by incidents at that
  edge, at the CDN as a whole, or upstream of the CDN (every edge carries the origin's
  fault) — never by a fault at another edge;
- among those, the most severe, then the newest.

Unexplained complaints of one type on one edge that cluster — ``cluster_count`` (3) within
``cluster_window_s`` (15 min) — are a finding of their own: evidence ``viewer_complaints``
(P3, stage ``playback``, the edge as component) that the localizer turns into an incident
like any other. Three independent reports of one symptom in a quarter of an hour is the
point at which a support desk escalates (a "trend", ITIL problem management); below it one
viewer's network explains as much.

Pure: no I/O; the agent (agent/app.py) stores and serves complaints.
"""

from __future__ import annotations

import enum
import itertools
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from agent.localize import Incident, rfc3339
from probes.base import Evidence, State
from probes.core.config import StrictModel
from probes.core.redact import redact_text
from probes.faults import Fault

F = Fault


class ComplaintType(enum.StrEnum):
    """What the viewer says, in support's words (the issue's list; a metric label value)."""

    STUTTER = "stutter"  # stutter / buffering (CTA-2066: rebuffering)
    AV_SYNC = "av_sync"  # audio and video out of sync
    NO_AUDIO = "no_audio"
    BLACK_OR_FROZEN = "black_or_frozen"  # black or frozen picture
    POOR_QUALITY = "poor_quality"  # blocky, blurry, low resolution
    HIGH_DELAY = "high_delay"  # far behind live
    CANNOT_START = "cannot_start"  # playback does not start
    OTHER = "other"


LABELS: Mapping[ComplaintType, str] = {
    ComplaintType.STUTTER: "stutter / buffering", ComplaintType.AV_SYNC: "A/V out of sync",
    ComplaintType.NO_AUDIO: "no audio", ComplaintType.BLACK_OR_FROZEN: "black or frozen picture",
    ComplaintType.POOR_QUALITY: "poor quality", ComplaintType.HIGH_DELAY: "high delay",
    ComplaintType.CANNOT_START: "cannot start", ComplaintType.OTHER: "other",
}

_NO_FLOW = frozenset({F.STALE_PLAYLIST, F.PLAYLIST_MISSING, F.SEGMENT_MISSING, F.STREAM_ENDED, F.NO_INPUT,
                      F.ENCODER_DOWN, F.NO_MEDIA, F.CONTENT_GAP, F.SOURCE_GONE, F.NO_RTCP})
_SERVER = frozenset({F.UNREACHABLE, F.TIMEOUT, F.HTTP_ERROR, F.PROTOCOL_ERROR, F.RATE_LIMITED, F.KEY_UNAVAILABLE,
                     F.AUTH_REFUSED, F.ICE_FAILED, F.DTLS_FAILED})
_SLOW = frozenset({F.SLOW_SEGMENT, F.STALLS, F.PLAYBACK_FAILED, F.VIDEO_FREEZES, F.PACKET_LOSS, F.LOW_INPUT,
                   F.UPLOAD_SLOW, F.UPLINK_LOW, F.SEQUENCE_JUMP, F.SEQUENCE_REGRESSION})

EXPLAINED_BY: Mapping[ComplaintType, frozenset[Fault]] = {
    ComplaintType.STUTTER: _NO_FLOW | _SERVER | _SLOW | {F.TIMESTAMP_GAP, F.DECODE_ERRORS, F.SEGMENT_TOO_LONG},
    ComplaintType.AV_SYNC: frozenset({F.AV_DESYNC, F.TIMESTAMP_GAP}),
    ComplaintType.NO_AUDIO: frozenset({F.SILENT_AUDIO, F.AUDIO_QUIET, F.DECODE_ERRORS}),
    ComplaintType.BLACK_OR_FROZEN: _NO_FLOW | {F.BLACK_VIDEO, F.FROZEN_VIDEO, F.VIDEO_FREEZES, F.STALLS,
                                               F.DECODE_ERRORS, F.SOURCE_GONE, F.DEVICE_MISSING},
    ComplaintType.POOR_QUALITY: frozenset({F.DECODE_ERRORS, F.FRAME_RATE_LOW, F.RESOLUTION_MISMATCH, F.PACKET_LOSS,
                                           F.DROPPED_FRAMES, F.SLOW_SEGMENT, F.STALLS, F.VIDEO_FREEZES,
                                           F.UPLOAD_SLOW, F.UPLINK_LOW, F.BITRATE_OVER_DECLARED}),
    ComplaintType.HIGH_DELAY: frozenset({F.LATENCY_HIGH, F.STALE_PLAYLIST, F.SEQUENCE_REGRESSION, F.SLOW_SEGMENT,
                                         F.STALLS, F.RELOAD_NOT_BLOCKED}),
    ComplaintType.CANNOT_START: _SERVER | {F.PLAYLIST_MISSING, F.SEGMENT_MISSING, F.STREAM_ENDED, F.NO_INPUT,
                                           F.ENCODER_DOWN, F.PLAYBACK_FAILED, F.NO_MEDIA, F.STALE_PLAYLIST},
}
"""Complaint type -> the faults that can be its cause. ``other``: any P1/P2 fault."""

_EDGE_STAGES = ("cdn", "playback")  # where a component is one edge (or "cdn" for all of them)
TEXT_MAX = 500  # characters kept of a note
FIELDS = frozenset({"stream", "type", "edge", "region", "device", "player", "note"})
NAME_MAX = 64  # characters kept of edge / region / device / player


class ComplaintSettings(StrictModel):
    """``complaints:``. Recording is a write: with ``agent.web.basic_auth.write`` users it needs
    one of them; without any login configured it is off unless ``enabled: true`` (a trusted
    network)."""

    enabled: bool | None = Field(None, description="None: on when write users exist; true/false: forced")
    lookback_s: float = Field(600.0, ge=0, le=86_400,
                              description="incidents resolved this recently still explain a complaint")
    cluster_count: int = Field(3, ge=2, le=1000, description="unexplained complaints of one type on one edge ...")
    cluster_window_s: float = Field(900.0, gt=0, le=86_400, description="... within this many seconds: a finding")
    max_kept: int = Field(10_000, ge=100, le=10_000_000, description="complaints kept in the store (oldest dropped)")


@dataclass(slots=True)
class Complaint:
    """One viewer complaint with what signalpath saw when it was recorded (times epoch s)."""

    id: str
    at: float
    stream: str
    type: ComplaintType
    edge: str | None = None
    region: str | None = None
    device: str | None = None
    player: str | None = None
    note: str = ""
    explained_by: str | None = None  # an incident id
    seen: dict[str, Any] = field(default_factory=dict)  # {"incidents": [...], "stages": [...]}

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "at": rfc3339(self.at), "stream": self.stream, "type": str(self.type),
                "label": LABELS[self.type], "edge": self.edge, "region": self.region, "device": self.device,
                "player": self.player, "note": self.note, "explained_by": self.explained_by,
                "explained": self.explained_by is not None, "seen": self.seen}


class ComplaintError(ValueError):
    """A complaint that cannot be recorded; the message names the field."""


def new_id() -> str:
    return "c-" + secrets.token_hex(6)


def parse(data: Mapping[str, Any], *, streams: Mapping[str, Iterable[str]], at: float, id_: str) -> Complaint:
    """A complaint from a request body or CLI arguments. ``streams``: stream -> its edge names.

    Raises :class:`ComplaintError` naming the field (an unknown stream, type or edge; a
    field too long). The note and the free-text fields are redacted (a viewer pasting a
    tokenised URL) and cut to their maxima."""
    def text(key: str, limit: int) -> str | None:
        v = data.get(key)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise ComplaintError(f"{key}: must be text")
        return redact_text(v.strip())[:limit] or None

    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ComplaintError(f"{str(unknown[0])[:40]}: not a complaint field ({', '.join(sorted(FIELDS))})")
    stream = data.get("stream")
    if stream is None or stream == "":
        raise ComplaintError(f"stream: missing (one of {', '.join(sorted(streams)) or 'none configured'})")
    if not isinstance(stream, str) or stream not in streams:
        known = ", ".join(sorted(streams)) or "none configured"
        raise ComplaintError(f"stream: {str(stream)[:64]!r} is not a configured stream ({known})")
    try:
        kind = ComplaintType(str(data.get("type", "")))
    except ValueError:
        raise ComplaintError(f"type: {str(data.get('type'))[:40]!r} is not one of "
                             f"{', '.join(t.value for t in ComplaintType)}") from None
    edge = text("edge", NAME_MAX)
    if edge is not None and edge not in set(streams[stream]):
        raise ComplaintError(f"edge: {edge!r} is not an edge of {stream} ({', '.join(streams[stream]) or 'none'})")
    return Complaint(id=id_, at=at, stream=stream, type=kind, edge=edge, region=text("region", NAME_MAX),
                     device=text("device", NAME_MAX), player=text("player", NAME_MAX),
                     note=text("note", TEXT_MAX) or "")


def reaches(inc: Incident, edge: str | None) -> bool:
    """Can ``inc``'s place be what the viewer on ``edge`` (None: unknown) saw?"""
    if edge is None or inc.stage not in _EDGE_STAGES:
        return True
    return inc.component in (edge, "cdn")


def can_explain(kind: ComplaintType, inc: Incident) -> bool:
    if kind is ComplaintType.OTHER:
        return inc.severity in ("P1", "P2")
    return inc.fault in EXPLAINED_BY[kind]


def explain(c: Complaint, incidents: Iterable[Incident]) -> Incident | None:
    """The incident that explains ``c`` (module docstring), or None."""
    fits = [i for i in incidents if i.stream == c.stream and can_explain(c.type, i) and reaches(i, c.edge)]
    if not fits:
        return None
    return min(fits, key=lambda i: (i.severity, -i.started_at))


def clusters(complaints: Iterable[Complaint], settings: ComplaintSettings, now: float
             ) -> dict[str, list[Evidence]]:
    """Stream -> ``viewer_complaints`` evidence for every edge whose unexplained complaints of
    one type within the window reach ``cluster_count`` (one per edge: its largest type)."""
    recent = sorted((c for c in complaints if c.explained_by is None and c.edge is not None
                     and now - c.at <= settings.cluster_window_s), key=lambda c: (c.stream, c.edge or "", c.type))
    found: dict[tuple[str, str], tuple[int, ComplaintType]] = {}
    for (stream, edge, kind), group in itertools.groupby(recent, key=lambda c: (c.stream, c.edge or "", c.type)):
        n = len(list(group))
        if n >= settings.cluster_count and n > found.get((stream, edge), (0, kind))[0]:
            found[(stream, edge)] = (n, kind)
    minutes = settings.cluster_window_s / 60
    out: dict[str, list[Evidence]] = {}
    for (stream, edge), (n, kind) in sorted(found.items()):
        out.setdefault(stream, []).append(Evidence(
            "playback", edge, State.DEGRADED, Fault.VIEWER_COMPLAINTS,
            f"{n} unexplained '{LABELS[kind]}' complaints from viewers on {edge} in {minutes:g} min",
            figures={"complaints": float(n)}))
    return out


__all__ = ["Complaint", "ComplaintError", "ComplaintSettings", "ComplaintType", "EXPLAINED_BY", "LABELS",
           "clusters", "explain", "new_id", "parse", "reaches"]
