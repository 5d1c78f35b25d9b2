"""The fault catalog: every fault signalpath can report, once, with what it means.

One closed vocabulary (STYLE.md 15) imported by probes and agent alike. A probe names a
fault with a :class:`Fault` member; :class:`probes.base.Evidence` refuses any other value,
so a fault outside this catalog cannot be constructed. For each fault the catalog holds:

- ``cls`` (:class:`FaultClass`): how it propagates down the signal path;
- ``severity``: its default when every viewer is affected — ``P1`` off air, ``P2``
  degraded for viewers, ``P3`` at risk, no viewer impact yet (DESIGN.md "Vocabulary");
- ``phrase``: the plain-words predicate of a summary ("stopped updating {playlist}"),
  with per-stage variants where the same fault reads differently (``rtt_high`` at the
  studio is the path to the ingest, at playback the viewer's path);
- ``runbook``: the "DO THIS" line (per-stage variants in ``stage_runbooks``);
- ``stages``: the stages where a probe can report it;
- ``explains``: the downstream symptoms this fault can cause — the causal edges the
  localizer folds along. A fault always explains itself downstream; a bitrate
  overshoot, a long GOP or clipping audio explains no stale playlist and no refused
  connection (DESIGN.md "Localization principle");
- ``leaves``: symptoms the fault's END can cause (recovery artefacts), folded only when they
  begin as it ends, never while it lasts;
- ``awaits``: causes a slower probe measures at the same place that would name this fault
  (long segments show in the playlist at once, their GOP seconds later in the content probe):
  it waits ``effect_open_cycles`` for them before it opens as a cause of its own;
- ``own``: the probed component's own connection failed — never a symptom of anything
  upstream (an origin cannot make an edge refuse connections);
- ``placed``: a fact the agent itself states at a fixed place (a broadcast's stream not live at
  its start, a cluster of viewer complaints, the agent behind): a finding of its own there, never inferred to
  another place nor folded into another cause;
- ``timed``: measured against the agent's own clock (a wait, a rate, a stall): an agent whose
  event loop could not run during the measurement can make it itself, so it is not evidence
  against the target then (agent/selfwatch.py);
- ``reserved``: in the vocabulary but reported by no probe yet (a test holds every
  other entry reachable from probe code).

Phrases use ``{playlist}`` ("the 360p playlist" / "the playlist") and ``{of}``
(" (360p)" / ""); runbook lines are ``str.format`` templates over ``{stream}``,
``{stage}``, ``{component}`` and ``{fault}`` (agent/runbooks.py renders them).
Numbers (HTTP status, sequence, rendition) never go into these sentences: they travel as
fields of the evidence.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["P1", "P2", "P3"]
SEVERITY_RANK: Mapping[str, int] = {"P1": 1, "P2": 2, "P3": 3}

STAGES = ("studio", "ingest", "transcode", "origin", "cdn", "playback")
"""The signal path, upstream first (DESIGN.md "Vocabulary")."""
AGENT_STAGE = "agent"
"""Not on the signal path: the monitoring agent itself (its own findings, ``overloaded``: it is
behind and its measurements are late). Ranked after every stage: nothing upstream explains it,
and it explains nothing."""
STAGE_RANK: Mapping[str, int] = {s: i for i, s in enumerate((*STAGES, AGENT_STAGE))}

WHOLE_TRANSCODER = frozenset({"transcoder", "transcode"})
"""Components at stage ``transcode`` that stand for the whole transcoder (every rendition);
any other component there is one rendition's transcode (DESIGN.md "Vocabulary")."""


class FaultClass(enum.StrEnum):
    """How a fault propagates down the signal path."""

    SERVER = "server"  # the probed server itself fails (refused, timeout, 5xx, malformed)
    FRESHNESS = "freshness"  # content stops flowing (stale playlist, missing segments, no input)
    CONTENT = "content"  # content flows but is wrong (frozen, black, silent, out of sync)
    PERFORMANCE = "performance"  # content flows too slowly (slow segments, stalls, latency)
    RESOURCE = "resource"  # equipment at risk (device missing, host overload)


class Fault(enum.StrEnum):
    """Every fault type (snake_case, a metric label value and an API field)."""

    # server
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"
    PROTOCOL_ERROR = "protocol_error"
    AUTH_REFUSED = "auth_refused"
    ICE_FAILED = "ice_failed"
    DTLS_FAILED = "dtls_failed"
    RATE_LIMITED = "rate_limited"
    KEY_UNAVAILABLE = "key_unavailable"
    RELOAD_NOT_BLOCKED = "reload_not_blocked"
    MANIFEST_BEHIND = "manifest_behind"
    MANIFESTS_DISAGREE = "manifests_disagree"
    # freshness
    STALE_PLAYLIST = "stale_playlist"
    PLAYLIST_MISSING = "playlist_missing"
    SEGMENT_MISSING = "segment_missing"
    STREAM_ENDED = "stream_ended"
    SEQUENCE_REGRESSION = "sequence_regression"
    SEQUENCE_JUMP = "sequence_jump"
    PLAYLIST_SHRANK = "playlist_shrank"
    VARIANT_DRIFT = "variant_drift"
    NO_INPUT = "no_input"
    ENCODER_DOWN = "encoder_down"
    NO_RTCP = "no_rtcp"
    NO_MEDIA = "no_media"
    SOURCE_GONE = "source_gone"
    CONTENT_GAP = "content_gap"
    NOT_LIVE = "not_live"
    # content
    FROZEN_VIDEO = "frozen_video"
    BLACK_VIDEO = "black_video"
    SILENT_AUDIO = "silent_audio"
    AV_DESYNC = "av_desync"
    DECODE_ERRORS = "decode_errors"
    KEYFRAME_INTERVAL_LONG = "keyframe_interval_long"
    TIMESTAMP_GAP = "timestamp_gap"
    AUDIO_CLIPPING = "audio_clipping"
    AUDIO_QUIET = "audio_quiet"
    BITRATE_OVER_DECLARED = "bitrate_over_declared"
    SEGMENT_TOO_LONG = "segment_too_long"
    FRAME_RATE_LOW = "frame_rate_low"
    RESOLUTION_MISMATCH = "resolution_mismatch"
    # performance
    LOW_INPUT = "low_input"
    DROPPED_FRAMES = "dropped_frames"
    UPLOAD_SLOW = "upload_slow"
    UPLINK_LOW = "uplink_low"
    SLOW_SEGMENT = "slow_segment"
    STALLS = "stalls"
    PLAYBACK_FAILED = "playback_failed"
    LATENCY_HIGH = "latency_high"
    PACKET_LOSS = "packet_loss"
    RTT_HIGH = "rtt_high"
    JITTER_HIGH = "jitter_high"
    VIDEO_FREEZES = "video_freezes"
    VIEWER_COMPLAINTS = "viewer_complaints"
    # resource
    DEVICE_MISSING = "device_missing"
    HOST_OVERLOAD = "host_overload"
    HOST_OVERHEAT = "host_overheat"
    ON_BATTERY = "on_battery"
    GPU_OVERLOAD = "gpu_overload"
    DISK_LOW = "disk_low"
    NIC_DOWN = "nic_down"
    NIC_ERRORS = "nic_errors"
    CLOCK_OFFSET = "clock_offset"
    CHECK_FAILED = "check_failed"
    # the agent itself
    OVERLOADED = "overloaded"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """What signalpath knows about one fault type (see the module docstring)."""

    fault: Fault
    cls: FaultClass
    severity: Severity
    phrase: str
    runbook: str = ""
    stages: frozenset[str] = frozenset(STAGES)
    explains: frozenset[Fault] = frozenset()
    own: bool = False
    reserved: bool = False
    placed: bool = False
    stage_phrases: Mapping[str, str] = field(default_factory=dict)
    stage_runbooks: Mapping[str, str] = field(default_factory=dict)
    leaves: frozenset[Fault] = frozenset()
    awaits: frozenset[Fault] = frozenset()
    timed: bool = False

    def phrase_at(self, stage: str) -> str:
        return self.stage_phrases.get(stage, self.phrase)

    def runbook_at(self, stage: str) -> str | None:
        return self.stage_runbooks.get(stage) or self.runbook or None

    def can_explain(self, symptom: Fault | str) -> bool:
        """Can this fault, upstream, cause ``symptom`` downstream? (itself always)."""
        return symptom == self.fault or symptom in self.explains

    def can_leave(self, symptom: Fault | str) -> bool:
        """Can this fault's END cause ``symptom`` (an artefact of the recovery, never while it lasts)?"""
        return symptom in self.leaves


class CatalogError(ValueError):
    """A catalog that contradicts itself (a duplicate, an unknown stage or fault)."""


class FaultCatalog(Mapping[str, FaultSpec]):
    """An immutable ``Fault -> FaultSpec`` map; construction fails on any duplicate.

    Lookup accepts a :class:`Fault` or its string value. ``with_overrides`` returns a
    new catalog where operator-configured fields replace the defaults (it cannot add
    faults: a fault outside :class:`Fault` cannot be constructed).
    """

    __slots__ = ("_specs",)

    def __init__(self, specs: Iterable[FaultSpec]) -> None:
        table: dict[str, FaultSpec] = {}
        for spec in specs:
            if spec.fault in table:
                raise CatalogError(f"fault {spec.fault!s} is defined twice")
            if spec.severity not in SEVERITY_RANK or not isinstance(spec.cls, FaultClass):
                raise CatalogError(f"fault {spec.fault!s}: severity {spec.severity!r} / class {spec.cls!r} unknown")
            bad = spec.stages - set(STAGE_RANK)
            if bad:
                raise CatalogError(f"fault {spec.fault!s}: unknown stage(s) {sorted(bad)}")
            table[spec.fault] = spec
        self._specs = table

    def __getitem__(self, fault: str) -> FaultSpec:
        return self._specs[fault]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def explains(self, cause: Fault | str, symptom: Fault | str) -> bool:
        spec = self._specs.get(cause)
        return spec is not None and spec.can_explain(symptom)

    def leaves(self, cause: Fault | str, symptom: Fault | str) -> bool:
        spec = self._specs.get(cause)
        return spec is not None and spec.can_leave(symptom)


F = Fault
C = FaultClass

# Groups used to write the causal edges once.
_DELIVERY = frozenset({F.STALE_PLAYLIST, F.PLAYLIST_MISSING, F.SEGMENT_MISSING, F.SLOW_SEGMENT, F.STALLS,
                       F.PLAYBACK_FAILED, F.LATENCY_HIGH, F.VARIANT_DRIFT, F.SEQUENCE_JUMP,
                       F.SEQUENCE_REGRESSION, F.PLAYLIST_SHRANK, F.NO_MEDIA, F.VIDEO_FREEZES})
"""What stops or slows delivery downstream: viewers see stalls, players fail."""
_SERVER_DOWNSTREAM = _DELIVERY | {F.HTTP_ERROR, F.TIMEOUT, F.PROTOCOL_ERROR}
"""An origin failing makes edges answer errors or time out (an edge's refused connection is its own)."""
_PICTURE = frozenset({F.FROZEN_VIDEO, F.BLACK_VIDEO, F.SILENT_AUDIO, F.AV_DESYNC, F.DECODE_ERRORS,
                      F.TIMESTAMP_GAP, F.FRAME_RATE_LOW})
_NO_FLOW = _DELIVERY | {F.NO_INPUT, F.LOW_INPUT, F.ENCODER_DOWN, F.STREAM_ENDED, F.FROZEN_VIDEO,
                        F.TIMESTAMP_GAP, F.DROPPED_FRAMES}
"""Content stopped flowing: everything after it is stale, stalled or frozen."""
_SLOW_FLOW = frozenset({F.SLOW_SEGMENT, F.STALLS, F.PLAYBACK_FAILED, F.LATENCY_HIGH, F.VIDEO_FREEZES,
                        F.STALE_PLAYLIST, F.SEGMENT_MISSING, F.VARIANT_DRIFT, F.TIMESTAMP_GAP,
                        F.DROPPED_FRAMES, F.LOW_INPUT, F.NO_MEDIA, F.NO_INPUT})
"""Content flows too slowly or in bursts (starved ingest, slow transcoder, lossy uplink)."""
_VIEWER_SLOW = frozenset({F.STALLS, F.PLAYBACK_FAILED, F.LATENCY_HIGH, F.VIDEO_FREEZES})

_STILL_ENDS = frozenset({F.BITRATE_OVER_DECLARED})
"""What a still (frozen, black) picture leaves as it ends: coded for almost nothing, it lets
the encoder's VBV buffer fill (ISO/IEC 14496-10 Annex C); when motion resumes the rate control
spends it, and the first segments after it overshoot the declared BANDWIDTH. Not while it
lasts: an overshoot there beside a still picture is a condition of its own."""

_ALL = frozenset(STAGES)
_HTTP = frozenset({"origin", "cdn", "ingest", "studio"})
_STUDIO = frozenset({"studio"})
_MEDIA = frozenset({"studio", "ingest", "transcode", "origin", "cdn"})
_PLAYLIST = frozenset({"transcode", "origin", "cdn"})


def _s(fault: Fault, cls: FaultClass, severity: Severity, phrase: str, runbook: str = "", *,
       stages: frozenset[str] = _ALL, explains: Iterable[Fault] = (), own: bool = False,
       reserved: bool = False, stage_phrases: Mapping[str, str] | None = None,
       stage_runbooks: Mapping[str, str] | None = None, leaves: Iterable[Fault] = (),
       awaits: Iterable[Fault] = (), placed: bool = False, timed: bool = False) -> FaultSpec:
    return FaultSpec(fault, cls, severity, phrase, runbook, frozenset(stages), frozenset(explains), own,
                     reserved, placed, dict(stage_phrases or {}), dict(stage_runbooks or {}), frozenset(leaves),
                     frozenset(awaits), timed)


_FAILOVER_EDGE = "Fail viewers over to a healthy edge; "

CATALOG = FaultCatalog([
    # -- server: the probed server itself fails --------------------------------------
    _s(F.UNREACHABLE, C.SERVER, "P1", "is not answering (connection refused or timed out)",
       stages=_ALL, own=True, explains=_SERVER_DOWNSTREAM,
       stage_runbooks={
           "cdn": _FAILOVER_EDGE + "open a CDN ticket: {component} refuses or times out connections.",
           "origin": "Restart or fail over the origin server; check its host is up and listening.",
           "ingest": "The ingest server does not answer: restart it or point the encoder at the backup ingest."}),
    _s(F.TIMEOUT, C.SERVER, "P1", "answers too slowly to finish within the probe deadline",
       own=True, explains=_SERVER_DOWNSTREAM, timed=True,
       stage_runbooks={
           "origin": "The origin answers too slowly: check its load and disk; fail over to the standby origin.",
           "cdn": _FAILOVER_EDGE + "open a CDN ticket for {component} (responses too slow)."}),
    _s(F.HTTP_ERROR, C.SERVER, "P1", "answers with HTTP errors{of}", stages=_HTTP,
       explains=_SERVER_DOWNSTREAM,
       stage_runbooks={
           "cdn": _FAILOVER_EDGE + "open a CDN ticket for {component} quoting the HTTP status in the evidence.",
           "origin": "Check the origin server's error log; restart or fail over the origin."}),
    _s(F.PROTOCOL_ERROR, C.SERVER, "P1", "serves malformed playlists{of}",
       "Check the packager's output: the playlist does not parse as RFC 8216 (the evidence says where).",
       explains=_SERVER_DOWNSTREAM),
    _s(F.AUTH_REFUSED, C.SERVER, "P1", "refuses the session (authorization){of}",
       "The ingest refuses the publish: check the stream key / WHIP bearer token and its expiry.",
       stages=frozenset({"ingest", "playback"}), explains=_NO_FLOW, own=True),
    _s(F.ICE_FAILED, C.SERVER, "P1", "cannot be reached over ICE{of}",
       "No ICE path to the WebRTC server: check UDP reachability/firewall, or use a TURN relay.",
       stages=frozenset({"ingest", "playback"}), explains=_NO_FLOW, own=True),
    _s(F.DTLS_FAILED, C.SERVER, "P1", "fails the DTLS handshake{of}",
       "The WebRTC server fails DTLS: check its certificate and that UDP is not rewritten on the way.",
       stages=frozenset({"ingest", "playback"}), explains=_NO_FLOW, own=True),
    _s(F.RATE_LIMITED, C.SERVER, "P2", "is turning requests away (rate limited, HTTP 429){of}",
       stages=frozenset({"origin", "cdn"}), explains=_DELIVERY | {F.HTTP_ERROR},
       stage_runbooks={
           "cdn": _FAILOVER_EDGE + "open a CDN ticket for {component}: it answers 429 Too Many Requests "
                  "(Retry-After in the evidence); check its token and rate rules and the request rates.",
           "origin": "The origin rate-limits its callers (429): raise the limit for the CDN's edges or add "
                     "capacity; look for a request storm (players retrying, a monitor polling too often)."}),
    _s(F.KEY_UNAVAILABLE, C.SERVER, "P1", "does not serve the decryption key{of}",
       "Players cannot fetch the EXT-X-KEY URI, so no viewer can decrypt the segments: check the key server "
       "the playlist points at (its availability, token and access rules) and that the packager lists a key "
       "it published.",
       stages=frozenset({"origin", "cdn"}), explains=_VIEWER_SLOW,
       stage_runbooks={"cdn": _FAILOVER_EDGE + "open a CDN ticket for {component}: it does not serve the "
                              "decryption key the origin serves (HTTP status in the evidence)."}),
    _s(F.RELOAD_NOT_BLOCKED, C.SERVER, "P2", "does not hold blocking playlist reloads{of}",
       "A low-latency player asks for the next part (_HLS_msn/_HLS_part) and is answered at once with a "
       "playlist without it, so it polls and falls behind the live edge: the server must hold such a "
       "request until the part exists (RFC 8216bis §6.2.5.2).",
       stages=frozenset({"origin", "cdn"}), explains=_VIEWER_SLOW,
       stage_runbooks={"cdn": _FAILOVER_EDGE + "open a CDN ticket for {component}: it answers Low-Latency HLS "
                              "blocking reloads at once (it must forward the _HLS_ query and hold the request "
                              "until the origin has the part; the query must be in its cache key)."}),
    _s(F.MANIFEST_BEHIND, C.SERVER, "P2", "serves one format of the stream stopped while the other advances",
       "The origin serves one encode as HLS and as DASH and one of the two manifests stopped while the other "
       "advances (which one: the evidence), so the encode is running and the packaging of that format is not: "
       "restart the packager or origin module that writes it, check its disk and its logs.",
       stages=frozenset({"origin"}), explains=_DELIVERY),
    _s(F.MANIFESTS_DISAGREE, C.SERVER, "P3", "serves HLS and DASH manifests of one encode that disagree",
       "The HLS playlists and the DASH MPD of one encode place its segments differently (durations or "
       "wall-clock times in the evidence): check the packager's clock and timeline settings (MPD "
       "availabilityStartTime, EXT-X-PROGRAM-DATE-TIME); viewers of one format are at another latency, or ask "
       "for segments before they exist.",
       stages=frozenset({"origin"})),
    # -- freshness: content stops flowing ---------------------------------------------
    _s(F.STALE_PLAYLIST, C.FRESHNESS, "P1", "stopped updating {playlist}",
       stages=_PLAYLIST, explains=_NO_FLOW,
       stage_runbooks={
           "cdn": _FAILOVER_EDGE + "open a CDN ticket for {component} quoting the stale playlist and the "
                  "last media sequence in the evidence.",
           "transcode": "Restart the transcoder process that writes this playlist; if its input is fine and it "
                        "does not recover, switch to the backup transcoder."}),
    _s(F.PLAYLIST_MISSING, C.FRESHNESS, "P1", "lost {playlist}",
       "The playlist is gone (HTTP 404/410): check the packager is writing it and the path in the config.",
       stages=_PLAYLIST, explains=_NO_FLOW),  # an HTTP 4xx on a playlist, read as a symptom (agent/diagnosis.py)
    _s(F.SEGMENT_MISSING, C.FRESHNESS, "P2", "is missing segments{of}",
       "Segments listed in the playlist are not served: check that the packager writes each segment before "
       "it lists it, and its disk and cleanup settings.",
       stages=_PLAYLIST, explains=_DELIVERY,
       stage_runbooks={"cdn": _FAILOVER_EDGE + "open a CDN ticket for {component} (segments 404)."}),
    _s(F.STREAM_ENDED, C.FRESHNESS, "P1", "ended the live stream (#EXT-X-ENDLIST){of}",
       "The packager closed the playlist: if the broadcast is not over, restart the encoder's push.",
       stages=_PLAYLIST, explains=_NO_FLOW),
    _s(F.SEQUENCE_REGRESSION, C.FRESHNESS, "P2", "restarted its media sequence{of}",
       "The packager restarted (media sequence went back): check the encoder/packager for a restart; "
       "players may replay or stall.",
       stages=_PLAYLIST, explains=_DELIVERY,
       stage_phrases={"cdn": "serves an older playlist than before (its media sequence went back){of}"},
       stage_runbooks={"cdn": _FAILOVER_EDGE + "open a CDN ticket for {component}: it serves older playlists "
                              "than it did (a cache node out of step, or an origin shield serving stale copies)."}),
    _s(F.SEQUENCE_JUMP, C.FRESHNESS, "P2", "skipped segments{of}",
       "The media sequence jumped: check the packager for dropped segments or a restart.",
       stages=_PLAYLIST, explains=_DELIVERY),
    _s(F.PLAYLIST_SHRANK, C.FRESHNESS, "P3", "serves a shorter playlist than before{of}",
       "The playlist lost segments without advancing: check the cache/packager for an older copy.",
       stages=_PLAYLIST, explains=_DELIVERY),
    _s(F.VARIANT_DRIFT, C.FRESHNESS, "P3", "falls behind its sibling renditions{of}",
       "One rendition lags its siblings: check that rendition's transcode load.",
       stages=_PLAYLIST, explains=_VIEWER_SLOW),
    _s(F.NO_INPUT, C.FRESHNESS, "P1", "receives no input",
       "The encoder is not publishing: check the encoder is streaming, its network and the stream key; "
       "restart the push.",
       stages=frozenset({"ingest", "studio"}), explains=_NO_FLOW),
    _s(F.ENCODER_DOWN, C.FRESHNESS, "P1", "encoder is not running",
       "Restart the encoder; switch to the backup encoder if it does not come back.",
       # and as it restarts, its first segments carry a timestamp jump, audio and video
       # realigning, a partial GOP
       stages=frozenset({"studio"}), explains=_NO_FLOW | _PICTURE),
    _s(F.NO_RTCP, C.FRESHNESS, "P1", "receives no media (no RTCP receiver report){of}",
       "The WHIP ingest accepts the session but reports no media: check its media servers and UDP ports.",
       stages=frozenset({"ingest"}), explains=_NO_FLOW),
    _s(F.NO_MEDIA, C.FRESHNESS, "P1", "sends no video{of}",
       "The WebRTC playback sends no video: check the WHEP server's upstream feed.",
       stages=frozenset({"playback"}), explains=_VIEWER_SLOW),
    _s(F.CONTENT_GAP, C.FRESHNESS, "P2", "marks missing content (EXT-X-GAP){of}",
       "The packager marks segments as gaps (its input was missing): check the transcoder's input and the "
       "contribution link; players jump over the hole.",
       stages=_PLAYLIST, explains={F.STALLS, F.VIDEO_FREEZES, F.TIMESTAMP_GAP}),
    _s(F.NOT_LIVE, C.FRESHNESS, "P1", "has no live stream while its broadcast is on air",
       "The broadcast has started and this stream is not live: start the encoder (or its publisher) now, or "
       "switch the broadcast to its backup stream.", stages=frozenset({"origin"}), placed=True),
    _s(F.SOURCE_GONE, C.FRESHNESS, "P2", "feed is gone",
       "The feed {component} is gone: check the camera/encoder power and link, or cut to the backup.",
       stages=_STUDIO, explains=_NO_FLOW | _PICTURE),
    # -- content: content flows but is wrong -------------------------------------------
    _s(F.FROZEN_VIDEO, C.CONTENT, "P1", "shows frozen video{of}",
       stages=_MEDIA, explains={F.VIDEO_FREEZES}, leaves=_STILL_ENDS,
       stage_runbooks={
           "studio": "The picture is frozen at the source: check the camera/switcher output and the encoder input.",
           "transcode": "Restart the {component} transcode; the source and other renditions are fine."}),
    _s(F.BLACK_VIDEO, C.CONTENT, "P1", "shows black video{of}", stages=_MEDIA,
       explains={F.FROZEN_VIDEO}, leaves=_STILL_ENDS,  # a black picture is also a still one
       stage_runbooks={
           "studio": "The source is black: check the switcher program bus, camera and encoder input.",
           "transcode": "Restart the {component} transcode; the source and other renditions are fine."}),
    _s(F.SILENT_AUDIO, C.CONTENT, "P2", "has silent audio{of}", stages=_MEDIA,
       stage_runbooks={
           "studio": "The source is silent: check the mixer output, embedding and the encoder's audio input.",
           "transcode": "Check the audio mapping of the {component} transcode and restart it."}),
    _s(F.AV_DESYNC, C.CONTENT, "P2", "has audio and video out of sync{of}",
       "Audio and video are out of sync: check the encoder's audio delay setting.", stages=_MEDIA,
       # an encoder that changes its audio delay shifts the audio timestamps by that much, as it
       # starts and as it ends: one jump each time
       explains={F.TIMESTAMP_GAP}),
    _s(F.DECODE_ERRORS, C.CONTENT, "P2", "delivers corrupt segments{of}", stages=_MEDIA,
       # frames that do not decode leave a still picture and a hole in the decoded timestamps
       explains={F.STALLS, F.VIDEO_FREEZES, F.FROZEN_VIDEO, F.TIMESTAMP_GAP},
       stage_runbooks={
           "transcode": "The {component} transcode writes corrupt segments: restart it; check the packager's disk.",
           "studio": "Every rendition carries corrupt segments: check the contribution feed and the transcoder "
                     "input."}),
    _s(F.KEYFRAME_INTERVAL_LONG, C.CONTENT, "P3", "has key frames too far apart{of}",
       "Set the encoder/transcoder GOP to 2 s (at most 4 s): keyint = 2 x frame rate.", stages=_MEDIA,
       explains={F.SEGMENT_TOO_LONG},  # a packager cuts segments at key frames only
       # as the GOP shortens again, key frames come 3 times as often before the rate control adapts
       leaves={F.BITRATE_OVER_DECLARED}),
    _s(F.TIMESTAMP_GAP, C.CONTENT, "P3", "has gaps in its timestamps{of}",
       "Media timestamps jump: check the encoder for dropped frames and the contribution link for loss.",
       stages=_MEDIA),
    _s(F.AUDIO_CLIPPING, C.CONTENT, "P3", "has clipping audio{of}",
       "The audio clips: lower the mixer output or the encoder's audio gain.", stages=_MEDIA),
    _s(F.AUDIO_QUIET, C.CONTENT, "P3", "has very quiet audio",
       "The audio is very quiet: raise the mixer output or the encoder's audio gain.", stages=_STUDIO),
    _s(F.BITRATE_OVER_DECLARED, C.CONTENT, "P3", "exceeds its declared bitrate{of}",
       "Segments exceed the declared BANDWIDTH: cap the encoder's peak bitrate (VBV) or raise BANDWIDTH.",
       stages=_MEDIA),
    _s(F.SEGMENT_TOO_LONG, C.CONTENT, "P3", "writes segments longer than the target duration{of}",
       "A segment outlasts EXT-X-TARGETDURATION (RFC 8216 §4.3.3.1): align the encoder's GOP with the "
       "packager's segment length.", stages=_PLAYLIST,
       # the playlist shows a long segment at once; the content probe reads its GOP seconds later
       awaits={F.KEYFRAME_INTERVAL_LONG},
       # players sit 3 target durations behind the live edge (RFC 8216 §6.3.3): one segment
       # longer than that, and the next one is not there when their buffer runs out
       explains={F.STALLS}),
    _s(F.FRAME_RATE_LOW, C.CONTENT, "P2", "delivers too few frames per second",
       "{component} delivers too few frames: check its frame-rate setting and link bandwidth.",
       stages=_STUDIO, explains={F.FRAME_RATE_LOW}),
    _s(F.RESOLUTION_MISMATCH, C.CONTENT, "P3", "sends the wrong resolution",
       "{component} sends another resolution than configured: check its output format.", stages=_STUDIO),
    # -- performance: content flows too slowly -----------------------------------------
    _s(F.LOW_INPUT, C.PERFORMANCE, "P2", "receives less input than the stream needs",
       "The ingest receives less than the stream's bitrate: check the encoder's uplink and its settings.",
       stages=frozenset({"ingest"}), explains=_SLOW_FLOW),
    _s(F.DROPPED_FRAMES, C.PERFORMANCE, "P3", "drops frames",
       "The encoder drops frames: lower its preset/bitrate or check its uplink.",
       stages=frozenset({"ingest", "studio"}), explains={F.TIMESTAMP_GAP, F.FRAME_RATE_LOW}),
    _s(F.UPLOAD_SLOW, C.PERFORMANCE, "P2", "cannot upload at the stream's bitrate",
       "The test publish could not reach the stream's bitrate: check the uplink to the ingest.",
       stages=frozenset({"ingest"}), explains=_SLOW_FLOW),
    _s(F.UPLINK_LOW, C.PERFORMANCE, "P2", "uplink is too slow for the bitrate",
       "The uplink is too slow: stop other uploads or lower the stream bitrate.",
       stages=_STUDIO, explains=_SLOW_FLOW),
    _s(F.SLOW_SEGMENT, C.PERFORMANCE, "P2", "delivers segments slower than real time{of}",
       "Segments arrive slower than real time: check the server's load and its upstream.",
       stages=_PLAYLIST, explains=_VIEWER_SLOW, timed=True,
       stage_runbooks={"cdn": "Move viewers off {component} if stalls rise; open a CDN ticket: segments arrive "
                              "slower than real time."}),
    _s(F.STALLS, C.PERFORMANCE, "P2", "players stall{of}",
       "Players via {component} stall: compare segment download speed per edge; move viewers to the fastest "
       "edge.", stages=frozenset({"playback"}), timed=True),
    _s(F.PLAYBACK_FAILED, C.PERFORMANCE, "P1", "players cannot play{of}",
       "Viewers via {component} cannot play: check the edge's playlists and segments; move viewers to a "
       "healthy edge.", stages=frozenset({"playback"}), timed=True),
    _s(F.LATENCY_HIGH, C.PERFORMANCE, "P3", "is far behind live{of}",
       "Viewers are far behind live: check the player hold-back and the encoder's buffer.",
       # a latency step upstream holds the media back that long: the playlists after it wait (stale
       # for a moment: an ingest that adds 2 s leaves the origin's next segment 2 s late)
       explains={F.STALLS, F.LATENCY_HIGH, F.STALE_PLAYLIST}, timed=True,
       stage_runbooks={
           "cdn": "Viewers on {component} are further behind live than usual: check the edge's playlist cache "
                  "TTL and its origin shield; move viewers to a faster edge if it persists.",
           "transcode": "Capture-to-origin latency grew: check the ingest link (RTMP/SRT buffering) and the "
                        "transcoder's load and buffers; the trace per segment shows which hop grew.",
           "ingest": "Frames reach the ingest later than usual: check the encoder's output buffer and the uplink "
                     "(RTMP/SRT buffering, bandwidth); the transcode figure shows whether the rest of the path "
                     "grew too."}),
    _s(F.PACKET_LOSS, C.PERFORMANCE, "P2", "loses packets{of}",
       "The path loses packets: check the network, lower the bitrate or use a wired uplink.",
       stages=frozenset({"ingest", "playback", "studio"}), explains=_SLOW_FLOW | {F.DECODE_ERRORS},
       stage_runbooks={"ingest": "The uplink loses packets: check the encoder's network, lower the bitrate or "
                                 "use wired uplink."}),
    _s(F.RTT_HIGH, C.PERFORMANCE, "P3", "has a high round-trip time{of}",
       "The round-trip time is high: check the route to the server; prefer a closer ingest/edge.",
       stages=frozenset({"ingest", "playback", "studio"}), timed=True,
       stage_phrases={"studio": "has a slow path to the ingest"}),
    _s(F.JITTER_HIGH, C.PERFORMANCE, "P3", "has high jitter{of}",
       "Packets arrive unevenly: check the network path for congestion or Wi-Fi.",
       stages=frozenset({"ingest", "playback", "studio"}), timed=True,
       stage_phrases={"studio": "has an unsteady path to the ingest"}),
    _s(F.VIDEO_FREEZES, C.PERFORMANCE, "P2", "video freezes{of}",
       "WebRTC viewers see freezes: check the WHEP server load and its upstream feed.",
       stages=frozenset({"playback"}), timed=True),
    _s(F.VIEWER_COMPLAINTS, C.PERFORMANCE, "P3", "has viewers complaining of one problem that no probe sees{of}",
       "Viewers via {component} report one problem that no probe explains: compare their region, ISP and "
       "player in the complaints (signalpath complaints); check the edge's logs for them.",
       stages=frozenset({"playback"}), placed=True),
    # -- resource: equipment at risk ---------------------------------------------------
    _s(F.DEVICE_MISSING, C.RESOURCE, "P3", "is missing",
       "Reconnect or replace {component}; select the backup device in the encoder.",
       stages=_STUDIO, explains=_NO_FLOW | _PICTURE),
    _s(F.HOST_OVERLOAD, C.RESOURCE, "P3", "is overloaded",
       "Close other programs on the encoder host or lower the encoder preset/bitrate.",
       stages=_STUDIO, explains=_SLOW_FLOW | {F.FROZEN_VIDEO, F.FRAME_RATE_LOW}),
    _s(F.HOST_OVERHEAT, C.RESOURCE, "P3", "is overheating",
       "The encoder host is hot: check its fans and airflow; it may throttle the encoder.",
       stages=_STUDIO, explains=_SLOW_FLOW),
    _s(F.ON_BATTERY, C.RESOURCE, "P3", "runs on battery",
       "The encoder host runs on battery: reconnect mains power before it shuts down.", stages=_STUDIO),
    _s(F.GPU_OVERLOAD, C.RESOURCE, "P3", "GPU encoder is saturated",
       "Stop other GPU encodes or lower the resolution/preset of the GPU encoder.",
       stages=_STUDIO, explains=_SLOW_FLOW),
    _s(F.DISK_LOW, C.RESOURCE, "P3", "is running out of recording space",
       "Free space on the recording volume or switch recording to another drive.", stages=_STUDIO),
    _s(F.NIC_DOWN, C.RESOURCE, "P2", "lost its network link",
       "Reconnect the encoder's network cable or switch to the backup uplink.",
       stages=_STUDIO, explains=_NO_FLOW | _SLOW_FLOW),
    _s(F.NIC_ERRORS, C.RESOURCE, "P3", "is losing network packets",
       "Replace the encoder's network cable or check the switch port (errors/drops growing).",
       stages=_STUDIO, explains=_SLOW_FLOW),
    _s(F.CLOCK_OFFSET, C.RESOURCE, "P3", "has a clock offset",
       "Sync the encoder host's clock (enable chrony/NTP).", stages=_STUDIO),
    _s(F.CHECK_FAILED, C.RESOURCE, "P3", "fails a check",
       "Check {stage} {component}: the evidence says which check failed.", stages=_STUDIO),
    # -- the agent itself ---------------------------------------------------------------
    _s(F.OVERLOADED, C.RESOURCE, "P3", "is behind: its own measurements are late, so slow answers are "
       "not counted against the servers",
       "signalpath itself cannot keep up (its event-loop and schedule lag are in the evidence): give the agent "
       "more CPU, watch fewer streams per agent (streams[] shards), or turn off optional probes (latency, media, "
       "playback). Until then timings are not measured and optional probes are shed.",
       stages=frozenset({AGENT_STAGE}), placed=True),
])
"""The one catalog. Every :class:`Fault` has exactly one entry (tests/test_faults.py)."""


def fault_spec(fault: Fault | str) -> FaultSpec:
    """The catalog entry of ``fault``; raises ``KeyError`` for a name outside the catalog."""
    return CATALOG[fault]


__all__ = ["CATALOG", "CatalogError", "Fault", "FaultCatalog", "FaultClass", "FaultSpec", "SEVERITY_RANK",
           "AGENT_STAGE", "STAGES", "STAGE_RANK", "Severity", "fault_spec"]
