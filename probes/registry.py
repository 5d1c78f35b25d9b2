"""The probe registry: a literal name → :class:`ProbeSpec` map (blackbox_exporter's
``prober`` map), no import-time registration magic. Every ``run`` is
``async def run(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult``; ``combine``
(optional) derives cross-target figures of one stream from the latest results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes import (
    compare,
    encoder_status,
    gpu,
    hls,
    host,
    ingest_monitor,
    ingest_stat,
    latency,
    media,
    network,
    playback,
    rtmp,
    video_source,
    whep,
    whip,
)


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    run: Callable[..., Any]
    combine: Callable[..., Any] | None = None


REGISTRY: dict[str, ProbeSpec] = {
    "hls": ProbeSpec(hls.probe, hls.combine),
    "compare": ProbeSpec(compare.probe),
    "rtmp": ProbeSpec(rtmp.probe),
    "ingest_stat": ProbeSpec(ingest_stat.probe),
    "encoder_status": ProbeSpec(encoder_status.probe),
    "playback": ProbeSpec(playback.probe),
    "media": ProbeSpec(media.probe),
    "host": ProbeSpec(host.probe),
    "gpu": ProbeSpec(gpu.probe),
    "video_source": ProbeSpec(video_source.probe),
    "network": ProbeSpec(network.probe),
    "whip": ProbeSpec(whip.probe),
    "whep": ProbeSpec(whep.probe),
    "latency": ProbeSpec(latency.probe),
    "ingest_monitor": ProbeSpec(ingest_monitor.probe),
}
