"""nginx-rtmp's ``/stat`` page (``rtmp_stat all`` XML): the figures of one stream and
their judgement. Pure: the ingest probes (probes/rtmp.py with ``stat_url``,
probes/ingest_stat.py) fetch the page and hand its text here. Thresholds: |A/V sync|
beyond the configured fault (200 ms, THRESHOLDS.md "A/V sync", broadcast practice) is
``av_desync``; no publisher is ``no_input``; frames dropped since the previous look are
``dropped_frames``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from probes.base import State
from probes.faults import Fault

STAT_MAX_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class StatView:
    """nginx-rtmp ``/stat`` figures of one stream (absent stream: ``stream_found`` False)."""

    stream_found: bool
    publisher: bool = False
    bw_in_bits_per_second: float = 0.0
    bytes_in: float = 0.0
    dropped_frames: float | None = None
    av_sync_seconds: float | None = None
    clients: int = 0


def parse_stat(xml_text: str, app: str, stream: str) -> StatView:
    """Read nginx-rtmp's ``rtmp_stat all`` XML for ``app``/``stream``; ``ValueError`` if malformed."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ValueError(f"malformed /stat XML: {exc}") from None
    for application in root.iter("application"):
        if (application.findtext("name") or "") != app:
            continue
        for st in application.iter("stream"):
            if (st.findtext("name") or "") != stream:
                continue
            publisher = None
            for client in st.findall("client"):
                if client.find("publishing") is not None:
                    publisher = client
            dropped = avsync = None
            # avsync (audio minus video timestamp, ms) means something only with both tracks.
            both = bool(st.findtext("meta/audio/codec")) and bool(st.findtext("meta/video/codec"))
            if publisher is not None:
                dropped = _num(publisher.findtext("dropped"))
                sync_ms = _num(publisher.findtext("avsync"))
                avsync = sync_ms / 1000.0 if sync_ms is not None and both else None
            return StatView(
                stream_found=True,
                publisher=publisher is not None or st.find("publishing") is not None,
                bw_in_bits_per_second=_num(st.findtext("bw_in")) or 0.0,
                bytes_in=_num(st.findtext("bytes_in")) or 0.0,
                dropped_frames=dropped,
                av_sync_seconds=avsync,
                clients=int(_num(st.findtext("nclients")) or 0),
            )
    return StatView(stream_found=False)


def judge_stat(view: StatView, prev_dropped: float | None, av_sync_fault_seconds: float
               ) -> tuple[State, Fault | None, str]:
    """Ingest health from nginx-rtmp ``/stat`` figures: (state, fault, plain-words detail).

    No publisher → ``no_input`` (DOWN); |A/V sync| over the threshold (THRESHOLDS.md,
    200 ms) → ``av_desync``; frames dropped since the previous look → ``dropped_frames``.
    """
    if not view.publisher:
        return State.DOWN, Fault.NO_INPUT, "the ingest has no publisher for this stream"
    if view.av_sync_seconds is not None and abs(view.av_sync_seconds) > av_sync_fault_seconds:
        return State.DEGRADED, Fault.AV_DESYNC, f"audio and video {view.av_sync_seconds * 1000:+.0f} ms apart at the ingest"
    if view.dropped_frames is not None and prev_dropped is not None and view.dropped_frames > prev_dropped:
        return (State.DEGRADED, Fault.DROPPED_FRAMES,
                f"the ingest dropped {view.dropped_frames - prev_dropped:.0f} frames since the last check")
    return State.OK, None, f"publisher connected, {view.bw_in_bits_per_second / 1000:.0f} kbit/s in"


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
