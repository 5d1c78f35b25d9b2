"""The lab's fault catalog and the book of active and past faults (pure, clock injected).

Each fault has a stage (DESIGN.md vocabulary), the components it may target, typed
parameters with defaults and bounds, and whether it is one-shot (``corrupt_segment``
fires once, on the next segment, then ends with reason ``fired``). The book is the
ground truth: every record keeps the exact wall time (epoch seconds) its effect began
and ended. Pipeline parts ask the book ``active(name, target)`` when they act, so a
fault with ``for_s`` ends exactly at ``started_at + for_s`` (expiry is evaluated lazily
against the clock, not by a timer that could run late).

Thresholds the defaults are chosen to cross (shared/THRESHOLDS.md):
- ``keyframe_interval`` default 6 s GOP: > 4 s, the longest YouTube Live accepts;
- ``av_desync`` default 300 ms: beyond the ±200 ms broadcast-practice fault bound;
- ``edge_throttle`` default 20,000 B/s: well below the 360p rung (~100,000 B/s);
- ``edge_slow_first_byte`` default 3,000 ms: more than a 2-s segment lasts;
- ``segment_late`` default 3,000 ms: more than a 2-s segment lasts, so the newest listed segment
  is never there yet when it is listed (what every player asks for at the live edge);
- ``webrtc_drop`` default 0.3 of the packets: far beyond the 1 % loss threshold (Twilio);
- ``webrtc_delay`` default 300 ms each way: an RTT over the 200 ms threshold (XSplit red).

The ``webrtc_*`` faults act on the lab's WHIP/WHEP endpoint (agent/lab/webrtc.py) and
exist only when the lab runs it (``LabConfig.webrtc``). Their target is the side they
break: ``whip`` (stage ``ingest``, the publish side) or ``whep`` (stage ``playback``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import FaultNotFound, FaultRequestError

# Which component kinds a fault may target. "encoder", "ingest", "transcoder" and
# "origin" are the single components of their stages; "rendition" means any rendition
# name of the ladder; "edge" any edge name.
_SINGLE = ("encoder", "ingest", "transcoder", "origin")


@dataclass(frozen=True, slots=True)
class ParamSpec:
    kind: type  # int | float
    default: float
    low: float
    high: float
    doc: str


@dataclass(frozen=True, slots=True)
class FaultSpec:
    name: str
    stage: str
    targets: str  # "encoder" | "ingest" | "transcoder" | "origin" | "rendition" | "edge" | "webrtc" (whip, whep)
    doc: str
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    one_shot: bool = False
    target_stages: Mapping[str, str] = field(default_factory=dict)  # a target whose stage differs

    def stage_for(self, target: str) -> str:
        return self.target_stages.get(target, self.stage)


_WEBRTC_STAGES = {"whip": "ingest", "whep": "playback"}
WEBRTC_TARGETS = tuple(_WEBRTC_STAGES)


def _p(kind: type, default: float, low: float, high: float, doc: str) -> ParamSpec:
    return ParamSpec(kind, default, low, high, doc)


CATALOG: dict[str, FaultSpec] = {
    s.name: s
    for s in (
        FaultSpec("encoder_stop", "studio", "encoder", "the encoder stops sending (publisher disconnects)"),
        FaultSpec("frozen_video", "studio", "encoder", "the camera picture freezes (identical frames)"),
        FaultSpec("black_video", "studio", "encoder", "the camera picture goes black"),
        FaultSpec("silent_audio", "studio", "encoder", "the audio goes digitally silent"),
        FaultSpec("av_desync", "studio", "encoder", "audio is shifted against video",
                  {"ms": _p(int, 300, -5000, 5000, "audio offset in ms; positive = audio late")}),
        FaultSpec("ingest_drop", "ingest", "ingest", "the ingest drops the publisher; nothing reaches the transcoder"),
        FaultSpec("ingest_latency", "ingest", "ingest", "the ingest hands packets on late",
                  {"ms": _p(int, 2000, 1, 60_000, "added delay in ms")}),
        FaultSpec("ingest_starve", "ingest", "ingest", "input arrives slower than real time (uplink below bitrate)",
                  {"rate": _p(float, 0.5, 0.05, 0.95, "delivered media seconds per wall second")}),
        FaultSpec("transcoder_stall", "transcode", "transcoder", "the transcoder hangs: no rendition advances"),
        FaultSpec("rendition_stall", "transcode", "rendition", "one rendition stops advancing"),
        FaultSpec("transcoder_slow", "transcode", "transcoder", "the transcoder runs slower than real time; latency grows",
                  {"speed": _p(float, 0.5, 0.05, 0.95, "media seconds transcoded per wall second")}),
        FaultSpec("keyframe_interval", "transcode", "transcoder", "the ladder's GOP gets longer than 4 s",
                  {"gop_s": _p(int, 6, 3, 30, "seconds between keyframes (segments stretch to it)")}),
        FaultSpec("corrupt_segment", "transcode", "rendition", "the next segment of a rendition is corrupted", one_shot=True),
        FaultSpec("origin_5xx", "origin", "origin", "the origin answers every request with an HTTP error",
                  {"status": _p(int, 503, 500, 599, "HTTP status to answer")}),
        FaultSpec("origin_down", "origin", "origin", "the origin closes its listening socket (connection refused)"),
        FaultSpec("mpd_stale", "origin", "origin", "the origin keeps serving the MPEG-DASH MPD it had while its "
                  "HLS playlists of the same encode advance (its DASH packaging stopped)"),
        FaultSpec("segment_late", "origin", "origin", "the origin answers 404 for each segment until it is "
                  "`ms` old: its HLS playlists and its MPD list segments before they can be downloaded "
                  "(a packager that writes the manifest first, storage that lags)",
                  {"ms": _p(int, 3000, 100, 60_000, "how long after it is listed a segment answers, ms")}),
        FaultSpec("edge_down", "cdn", "edge", "an edge closes its listening socket (connection refused)"),
        FaultSpec("edge_stale", "cdn", "edge", "an edge keeps serving the playlists it had"),
        FaultSpec("edge_404_segments", "cdn", "edge", "an edge answers 404 to every segment"),
        FaultSpec("edge_slow_first_byte", "cdn", "edge", "an edge waits before the first byte",
                  {"ms": _p(int, 3000, 1, 60_000, "delay before the response starts, ms")}),
        FaultSpec("edge_throttle", "cdn", "edge", "an edge sends below the stream's bitrate",
                  {"bytes_per_s": _p(int, 20_000, 1_000, 100_000_000, "send rate, bytes per second")}),
        FaultSpec("edge_delay", "cdn", "edge", "an edge serves each new playlist late (propagation delay)",
                  {"ms": _p(int, 4000, 1, 60_000, "how late new playlists appear, ms")}),
        FaultSpec("edge_no_block", "cdn", "edge", "an edge answers LL-HLS blocking playlist reloads at once "
                  "with the playlist it has (it drops _HLS_msn/_HLS_part, as a CDN not set up for LL-HLS)"),
        FaultSpec("webrtc_refuse", "ingest", "webrtc", "the WebRTC endpoint refuses new sessions (HTTP 403)",
                  target_stages=_WEBRTC_STAGES),
        FaultSpec("webrtc_stall", "ingest", "webrtc",
                  "WebRTC media stops: WHIP input is discarded (no receiver reports), WHEP sends no frame",
                  target_stages=_WEBRTC_STAGES),
        FaultSpec("webrtc_drop", "ingest", "webrtc", "the WebRTC endpoint drops a share of the RTP packets",
                  {"fraction": _p(float, 0.3, 0.01, 1.0, "share of RTP packets dropped, 0-1")},
                  target_stages=_WEBRTC_STAGES),
        FaultSpec("webrtc_delay", "ingest", "webrtc", "the WebRTC endpoint hands each RTP/RTCP packet on late",
                  {"ms": _p(int, 300, 1, 5_000, "added one-way delay, ms")}, target_stages=_WEBRTC_STAGES),
        FaultSpec("webrtc_ice_fail", "ingest", "webrtc",
                  "the WebRTC endpoint answers without ICE candidates (connectivity checks fail)",
                  target_stages=_WEBRTC_STAGES),
    )
}

# Faults that cannot be active together on the same target (beside the same fault twice).
_EXCLUSIVE: tuple[frozenset[str], ...] = (
    frozenset({"frozen_video", "black_video", "encoder_stop"}),
    frozenset({"origin_5xx", "origin_down"}),
    frozenset({"transcoder_stall", "transcoder_slow"}),
    frozenset({"ingest_latency", "ingest_starve", "ingest_drop"}),
    frozenset({"webrtc_refuse", "webrtc_ice_fail"}),
)

MAX_FOR_S = 86_400.0


@dataclass(slots=True)
class FaultRecord:
    """One injected fault; times are wall-clock epoch seconds."""

    id: int
    name: str
    stage: str
    target: str
    params: dict[str, float]
    for_s: float | None
    started_at: float
    ends_at: float | None
    ended_at: float | None = None
    end_reason: str | None = None  # "expired" | "cleared" | "fired" | "stopped"
    effect: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["active"] = self.active
        d["started_at_iso"] = _iso(self.started_at)
        d["ended_at_iso"] = _iso(self.ended_at) if self.ended_at is not None else None
        d["ends_at_iso"] = _iso(self.ends_at) if self.ends_at is not None else None
        return d


def _iso(t: float) -> str:
    ms = int(round((t - int(t)) * 1000))
    sec = int(t)
    if ms == 1000:
        sec, ms = sec + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}Z"


class FaultBook:
    """Active faults and history; validates requests against the catalog.

    ``components`` maps a target kind ("rendition", "edge") to the names that exist.
    """

    def __init__(self, *, renditions: Iterable[str], edges: Iterable[str],
                 clock: Callable[[], float] = time.time, history_limit: int = 500,
                 webrtc: bool = False) -> None:
        self._renditions = tuple(renditions)
        self._edges = tuple(edges)
        self._webrtc = webrtc
        self._clock = clock
        self._active: list[FaultRecord] = []
        self._history: list[FaultRecord] = []
        self._next_id = 1
        self._limit = history_limit
        self.version = 0  # bumped on every change; listeners compare it

    # -- catalog ---------------------------------------------------------------
    def targets_for(self, name: str) -> tuple[str, ...]:
        kind = CATALOG[name].targets
        if kind == "rendition":
            return self._renditions
        if kind == "edge":
            return self._edges
        if kind == "webrtc":
            return WEBRTC_TARGETS if self._webrtc else ()
        return (kind,)

    def catalog(self) -> list[dict[str, Any]]:
        return [
            {"name": s.name, "stage": s.stage, "doc": s.doc, "targets": list(self.targets_for(s.name)),
             "one_shot": s.one_shot, "target_stages": dict(s.target_stages),
             "params": {k: {"type": p.kind.__name__, "default": p.default, "min": p.low, "max": p.high,
                            "doc": p.doc} for k, p in s.params.items()}}
            for s in CATALOG.values()
        ]

    # -- requests --------------------------------------------------------------
    def validate(self, name: Any, target: Any = None, for_s: Any = None,
                 params: Any = None) -> tuple[FaultSpec, str, float | None, dict[str, float]]:
        if not isinstance(name, str) or name not in CATALOG:
            raise FaultRequestError(
                f"unknown fault {name!r}; known faults: {', '.join(sorted(CATALOG))}")
        spec = CATALOG[name]
        allowed = self.targets_for(name)
        if not allowed:
            raise FaultRequestError(
                f"fault {name!r} needs the lab's WebRTC endpoint, which this lab does not run "
                "(LabConfig webrtc=true)")
        if target is None or target == "":
            if len(allowed) != 1:
                raise FaultRequestError(
                    f"fault {name!r} needs a target, one of: {', '.join(allowed)}")
            target = allowed[0]
        if not isinstance(target, str) or target not in allowed:
            raise FaultRequestError(
                f"unknown target {target!r} for fault {name!r}; valid targets: {', '.join(allowed)}")
        if for_s is not None:
            if isinstance(for_s, bool) or not isinstance(for_s, (int, float)) or not (0 < for_s <= MAX_FOR_S):
                raise FaultRequestError(
                    f"for_s must be a number of seconds in (0, {MAX_FOR_S:.0f}], got {for_s!r}")
            for_s = float(for_s)
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise FaultRequestError(f"params must be an object, got {type(params).__name__}")
        unknown = set(params) - set(spec.params)
        if unknown:
            known = ", ".join(spec.params) or "none"
            raise FaultRequestError(
                f"unknown parameter(s) {', '.join(sorted(map(str, unknown)))} for fault {name!r}; "
                f"it takes: {known}")
        values: dict[str, float] = {}
        for key, p in spec.params.items():
            raw = params.get(key, p.default)
            try:
                if isinstance(raw, bool):
                    raise ValueError
                value = p.kind(float(raw)) if p.kind is int and float(raw).is_integer() else p.kind(raw)
            except (TypeError, ValueError):
                raise FaultRequestError(
                    f"parameter {key!r} of {name!r} must be {p.kind.__name__}, got {raw!r}") from None
            if not (p.low <= value <= p.high):
                raise FaultRequestError(
                    f"parameter {key!r} of {name!r} must be within [{p.low:g}, {p.high:g}], got {value!r}")
            values[key] = value
        if name == "av_desync" and values["ms"] == 0:
            raise FaultRequestError("parameter 'ms' of 'av_desync' must not be 0")
        return spec, target, for_s, values

    def inject(self, name: Any, target: Any = None, for_s: Any = None, params: Any = None) -> FaultRecord:
        spec, target, for_s, values = self.validate(name, target, for_s, params)
        now = self._clock()
        self.expire(now)
        for rec in self._active:
            if rec.target != target:
                continue
            if rec.name == name:
                raise FaultRequestError(
                    f"conflict: {name} is already active on {target} (id {rec.id}); "
                    f"clear it first (DELETE /faults/{rec.id})")
            for group in _EXCLUSIVE:
                if name in group and rec.name in group:
                    raise FaultRequestError(
                        f"conflict: {name} cannot run together with {rec.name} on {target} "
                        f"(id {rec.id}); clear it first (DELETE /faults/{rec.id})")
        rec = FaultRecord(
            id=self._next_id, name=name, stage=spec.stage_for(target), target=target, params=values,
            for_s=for_s, started_at=now, ends_at=(now + for_s) if for_s is not None else None)
        self._next_id += 1
        self._active.append(rec)
        self._history.append(rec)
        if len(self._history) > self._limit:
            self._history = [r for r in self._history if r.active] + \
                [r for r in self._history if not r.active][-self._limit // 2:]
            self._history.sort(key=lambda r: r.id)
        self.version += 1
        return rec

    def _end(self, rec: FaultRecord, at: float, reason: str) -> None:
        rec.ended_at = at
        rec.end_reason = reason
        self._active.remove(rec)
        self.version += 1

    def clear(self, fault_id: int) -> FaultRecord:
        for rec in self._history:
            if rec.id == fault_id:
                if rec.active:
                    self._end(rec, self._clock(), "cleared")
                return rec
        raise FaultNotFound(f"no fault with id {fault_id}")

    def clear_all(self, reason: str = "cleared") -> list[FaultRecord]:
        now = self._clock()
        self.expire(now)
        ended = list(self._active)
        for rec in ended:
            self._end(rec, now, reason)
        return ended

    def fire(self, rec: FaultRecord, **effect: Any) -> None:
        """End a one-shot fault: it took effect now."""
        if rec.active:
            rec.effect.update(effect)
            self._end(rec, self._clock(), "fired")

    def expire(self, now: float | None = None) -> list[FaultRecord]:
        now = self._clock() if now is None else now
        ended = [r for r in self._active if r.ends_at is not None and r.ends_at <= now]
        for rec in ended:
            self._end(rec, rec.ends_at, "expired")  # type: ignore[arg-type]
        return ended

    # -- queries ---------------------------------------------------------------
    def active(self, name: str, target: str | None = None) -> FaultRecord | None:
        if not self._active:
            return None
        self.expire()
        for rec in self._active:
            if rec.name == name and (target is None or rec.target == target):
                return rec
        return None

    def active_records(self) -> list[FaultRecord]:
        self.expire()
        return list(self._active)

    def next_expiry(self) -> float | None:
        ends = [r.ends_at for r in self._active if r.ends_at is not None]
        return min(ends) if ends else None

    def snapshot(self) -> dict[str, Any]:
        self.expire()
        return {"now": self._clock(), "active": [r.to_json() for r in self._active],
                "history": [r.to_json() for r in self._history]}
