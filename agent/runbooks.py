"""Runbook hints: the one line of "DO THIS" an incident carries (UX.md, status page).

A hint is looked up by the incident's stage and fault type, most specific first:

1. ``overrides["<stage>/<fault>"]``, 2. ``overrides["<fault>"]``,
3. ``DEFAULT_RUNBOOKS["<stage>/<fault>"]``, 4. ``DEFAULT_RUNBOOKS["<fault>"]``,
5. ``DEFAULT_RUNBOOKS["<stage>"]``, 6. the generic line.

Hints are ``str.format`` templates with ``{stream}``, ``{stage}``, ``{component}`` and
``{fault}``; an unknown placeholder in an operator's override is left as written
rather than failing the incident. The defaults follow the three-level emergency
response of a broadcast: restore the viewers' picture first (fail over), then open
the ticket with the evidence.
"""

from __future__ import annotations

import string
from typing import Mapping

GENERIC_RUNBOOK = (
    "Check {stage} {component} for stream {stream}; the evidence list says what was measured."
)

DEFAULT_RUNBOOKS: dict[str, str] = {
    # CDN
    "cdn/stale_playlist": (
        "Fail viewers over to a healthy edge; open a CDN ticket for {component} quoting "
        "the stale playlist and the last media sequence in the evidence."
    ),
    "cdn/unreachable": (
        "Fail viewers over to a healthy edge; open a CDN ticket: {component} refuses or "
        "times out connections."
    ),
    "cdn/http_error": (
        "Fail viewers over to a healthy edge; open a CDN ticket for {component} quoting the "
        "HTTP status in the evidence."
    ),
    "cdn/segment_missing": "Fail viewers over to a healthy edge; open a CDN ticket for {component} (segments 404).",
    "cdn/slow_segment": (
        "Move viewers off {component} if stalls rise; open a CDN ticket: segments arrive "
        "slower than real time."
    ),
    "cdn": "Fail viewers over to a healthy edge and open a CDN ticket for {component}.",
    # Origin
    "origin/unreachable": "Restart or fail over the origin server; check its host is up and listening.",
    "origin/timeout": "The origin answers too slowly: check its load and disk; fail over to the standby origin.",
    "cdn/timeout": "Fail viewers over to a healthy edge; open a CDN ticket for {component} (responses too slow).",
    "origin/http_error": "Check the origin server's error log; restart or fail over the origin.",
    "origin": "Check the origin server and its disk; fail over to the backup origin if it does not recover.",
    # Transcoder
    "transcode/stale_playlist": (
        "Restart the transcoder for {component}; if the input is fine, switch to the backup "
        "transcoder."
    ),
    "cdn/latency_high": (
        "Viewers on {component} are further behind live than usual: check the edge's playlist "
        "cache TTL and its origin shield; move viewers to a faster edge if it persists."
    ),
    "transcode/latency_high": (
        "Capture-to-origin latency grew: check the ingest link (RTMP/SRT buffering) and the "
        "transcoder's load and buffers; the trace per segment shows which hop grew."
    ),
    "transcode/frozen_video": "Restart the {component} transcode; the source and other renditions are fine.",
    "transcode/black_video": "Restart the {component} transcode; the source and other renditions are fine.",
    "transcode/silent_audio": "Check the audio mapping of the {component} transcode and restart it.",
    "transcode": "Restart the transcoder ({component}); switch to the backup transcoder if it does not recover.",
    # Ingest
    "ingest/no_input": (
        "The encoder is not publishing: check the encoder is streaming, its network and the "
        "stream key; restart the push."
    ),
    "ingest/latency_high": (
        "Frames reach the ingest later than usual: check the encoder's output buffer and the uplink "
        "(RTMP/SRT buffering, bandwidth); the transcode figure shows whether the rest of the path grew too."
    ),
    "ingest/unreachable": "The ingest server does not answer: restart it or point the encoder at the backup ingest.",
    "ingest/auth_refused": "The ingest refuses the publish: check the stream key / WHIP bearer token and its expiry.",
    "ingest/no_rtcp": "The WHIP ingest accepts the session but reports no media: check its media servers and UDP ports.",
    "ingest/ice_failed": "No ICE path to the WHIP ingest: check UDP reachability/firewall, or use a TURN relay.",
    "ingest/packet_loss": "The uplink loses packets: check the encoder's network, lower the bitrate or use wired uplink.",
    "playback/video_freezes": "WebRTC viewers see freezes: check the WHEP server load and its upstream feed.",
    "ingest": "Check the ingest server and the encoder's connection; use the backup ingest URL if needed.",
    # Studio
    "studio/frozen_video": "The picture is frozen at the source: check the camera/switcher output and the encoder input.",
    "studio/black_video": "The source is black: check the switcher program bus, camera and encoder input.",
    "studio/silent_audio": "The source is silent: check the mixer output, embedding and the encoder's audio input.",
    "studio/device_missing": "Reconnect or replace {component}; select the backup device in the encoder.",
    "studio/host_overload": "Close other programs on the encoder host or lower the encoder preset/bitrate.",
    "studio/disk_low": "Free space on the recording volume or switch recording to another drive.",
    "studio/nic_down": "Reconnect the encoder's network cable or switch to the backup uplink.",
    "studio/nic_errors": "Replace the encoder's network cable or check the switch port (errors/drops growing).",
    "studio/gpu_overload": "Stop other GPU encodes or lower the resolution/preset of the GPU encoder.",
    "studio/source_gone": "The feed {component} is gone: check the camera/encoder power and link, or cut to the backup.",
    "studio/frame_rate_low": "{component} delivers too few frames: check its frame-rate setting and link bandwidth.",
    "studio/uplink_low": "The uplink is too slow: stop other uploads or lower the stream bitrate.",
    "studio/clock_offset": "Sync the encoder host's clock (enable chrony/NTP).",
    "studio": "Check the studio equipment ({component}) and the encoder.",
    # Playback
    "playback/stalls": "Players via {component} stall: compare segment download speed per edge; move viewers to the fastest edge.",
    "playback": "Check what players via {component} see; compare with the edges' evidence.",
    "playback/playback_failed": "Viewers via {component} cannot play: check the edge's playlists and segments; move viewers to a healthy edge.",
    # Content (probes/media.py)
    "transcode/decode_errors": "The {component} transcode writes corrupt segments: restart it; check the packager's disk.",
    "studio/decode_errors": "Every rendition carries corrupt segments: check the contribution feed and the transcoder input.",
    "keyframe_interval_long": "Set the encoder/transcoder GOP to 2 s (at most 4 s): keyint = 2 x frame rate.",
    "timestamp_gap": "Media timestamps jump: check the encoder for dropped frames and the contribution link for loss.",
    "audio_clipping": "The audio clips: lower the mixer output or the encoder's audio gain.",
    "bitrate_over_declared": "Segments exceed the declared BANDWIDTH: cap the encoder's peak bitrate (VBV) or raise BANDWIDTH.",
    # Any stage
    "av_desync": "Audio and video are out of sync: check the encoder's audio delay setting.",
    "latency_high": "Viewers are far behind live: check the player hold-back and the encoder's buffer.",
}


class _Keep(dict):
    def __missing__(self, key: str) -> str:  # leave unknown placeholders as written
        return "{" + key + "}"


def _render(template: str, values: Mapping[str, str]) -> str:
    try:
        return string.Formatter().vformat(template, (), _Keep(values))
    except (ValueError, IndexError, AttributeError):  # a malformed operator template
        return template


class Runbooks:
    """Runbook lookup with operator overrides (see the module docstring for the order)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._overrides = dict(overrides or {})

    def hint(self, *, stream: str, stage: str, component: str, fault: str) -> str:
        values = {"stream": stream, "stage": stage, "component": component, "fault": fault}
        for table, key in (
            (self._overrides, f"{stage}/{fault}"),
            (self._overrides, fault),
            (DEFAULT_RUNBOOKS, f"{stage}/{fault}"),
            (DEFAULT_RUNBOOKS, fault),
            (DEFAULT_RUNBOOKS, stage),
        ):
            if key in table:
                return _render(table[key], values)
        return _render(GENERIC_RUNBOOK, values)
