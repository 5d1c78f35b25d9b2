"""Config → scheduler jobs. One builder per probe kind, listed in ``BUILDERS``.

A builder takes one stream's config and returns the jobs (zero or more) that watch
it. Adding a probe kind: write its module in probes/, add it to probes/registry.py,
give the stream config a section for it (agent/config.py), and add its builder here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from agent.config import Config, Stream
from agent.runner import Job
from probes.base import ProbeTarget
from probes.media import resolve_sampling, resolve_video_frames
from probes.registry import REGISTRY


def hls_jobs(stream: Stream) -> list[Job]:
    spec = REGISTRY["hls"]
    cfg = stream.hls
    targets = [ProbeTarget("hls", stream.name, "origin", "origin", cfg, stream.origin, cfg.interval_s, cfg.timeout_s)]
    targets += [ProbeTarget("hls", stream.name, "cdn", e.name, cfg, e.url, cfg.interval_s, cfg.timeout_s)
                for e in stream.edges]
    return [Job("hls", stream.name, spec.run, targets, cfg.interval_s, spec.combine)]


def compare_jobs(stream: Stream) -> list[Job]:
    """``streams[].compare``: the origin's HLS and DASH manifests of one encode (probes/compare.py)."""
    cfg = stream.compare
    if cfg is None:
        return []
    t = ProbeTarget("compare", stream.name, "origin", "origin", cfg, stream.origin, cfg.interval_s, cfg.timeout_s)
    return [Job("compare", stream.name, REGISTRY["compare"].run, [t], cfg.interval_s)]


def rtmp_jobs(stream: Stream) -> list[Job]:
    if stream.ingest is None or not stream.ingest.rtmp:
        return []
    spec = REGISTRY["rtmp"]
    jobs = []
    for r in stream.ingest.rtmp:
        t = ProbeTarget("rtmp", stream.name, "ingest", r.name, r, r.url, r.interval_s, r.timeout_s)
        jobs.append(Job("rtmp", stream.name, spec.run, [t], r.interval_s, spec.combine))
    return jobs


def ingest_stat_jobs(stream: Stream) -> list[Job]:
    if stream.ingest is None:
        return []
    spec = REGISTRY["ingest_stat"]
    return [Job("ingest_stat", stream.name, spec.run,
                [ProbeTarget("ingest_stat", stream.name, "ingest", s.name, s, s.url, s.interval_s, s.timeout_s)],
                s.interval_s) for s in stream.ingest.stat]


def encoder_jobs(stream: Stream) -> list[Job]:
    spec = REGISTRY["encoder_status"]
    return [Job("encoder_status", stream.name, spec.run,
                [ProbeTarget("encoder_status", stream.name, "studio", e.name, e, e.url, e.interval_s, e.timeout_s)],
                e.interval_s) for e in stream.encoders]


def playback_jobs(stream: Stream) -> list[Job]:
    """Simulated viewers: one target per edge (the origin when there is no edge)."""
    cfg = stream.playback
    if not cfg.enabled:
        return []
    spec = REGISTRY["playback"]
    where = [(e.name, e.url) for e in stream.edges] or [("origin", stream.origin)]
    targets = [ProbeTarget("playback", stream.name, "playback", name, cfg, url, cfg.interval_s, cfg.timeout_s)
               for name, url in where]
    return [Job("playback", stream.name, spec.run, targets, cfg.interval_s)]


def media_jobs(stream: Stream) -> list[Job]:
    """Content analysis of the origin's segments (probes/media.py)."""
    cfg = stream.media
    if not cfg.enabled:
        return []
    spec = REGISTRY["media"]
    t = ProbeTarget("media", stream.name, "origin", "origin", cfg, stream.origin, cfg.interval_s, cfg.timeout_s)
    return [Job("media", stream.name, spec.run, [t], cfg.interval_s)]


def studio_jobs(stream: Stream) -> list[Job]:
    """``streams[].studio``: host, GPU, each source, network — one job per probe kind (probes/core/studio.py)."""
    cfg = stream.studio
    if cfg is None:
        return []
    parts: list[tuple[str, str, object]] = []
    if cfg.host is not None:
        parts.append(("host", "host", cfg.host))
    if cfg.gpu is not None:
        parts.append(("gpu", "gpu", cfg.gpu))
    from probes.video_source import SourceJob  # the source + where devices are listed (video4linux_root)

    parts += [("video_source", s.name, SourceJob(s, cfg.video4linux_root)) for s in cfg.sources]
    if cfg.network is not None:
        parts.append(("network", "network", cfg.network))
    jobs = []
    for kind, component, pc in parts:
        t = ProbeTarget(kind, stream.name, "studio", component, pc, None, cfg.interval_s, cfg.timeout_s)
        jobs.append(Job(kind, stream.name, REGISTRY[kind].run, [t], cfg.interval_s))
    return jobs


def webrtc_jobs(stream: Stream) -> list[Job]:
    """``streams[].ingest.whip[]`` (stage ingest) and ``streams[].whep[]`` (stage playback), one job each.

    A WHIP job runs every ``job_interval_s``: its signalling checks, with a full publish when
    one is due (``interval_s``; probes/whip.py)."""
    jobs = []
    whips = stream.ingest.whip if stream.ingest is not None else []
    for e in whips:
        spec = REGISTRY["whip"]
        every = e.job_interval_s
        t = ProbeTarget("whip", stream.name, "ingest", e.name, e, e.url, every, e.timeout_s)
        jobs.append(Job("whip", stream.name, spec.run, [t], every, spec.combine))
    for w in stream.whep:
        spec = REGISTRY["whep"]
        t = ProbeTarget("whep", stream.name, "playback", w.name, w, w.url, w.interval_s, w.timeout_s)
        jobs.append(Job("whep", stream.name, spec.run, [t], w.interval_s, spec.combine))
    return jobs


def latency_jobs(stream: Stream) -> list[Job]:
    """Per-stage latency over the origin and every edge (probes/latency.py), one target per stream."""
    cfg = stream.latency
    if not cfg.enabled:
        return []
    from probes.latency import LatencyTargetConfig

    tc = LatencyTargetConfig(cfg, stream.origin, tuple((e.name, e.url) for e in stream.edges))
    t = ProbeTarget("latency", stream.name, "origin", "origin", tc, stream.origin, cfg.interval_s, cfg.timeout_s)
    return [Job("latency", stream.name, REGISTRY["latency"].run, [t], cfg.interval_s)]


def latency_and_ingest_monitor_jobs(stream: Stream) -> list[Job]:
    """The latency probe plus ``streams[].ingest.monitor[]`` (probes/ingest_monitor.py).

    With a monitor, one :class:`~probes.core.latency_core.IngestLatencyShare` per stream is
    created here and put in the configs of both the monitor target(s) and the latency
    target: the monitors add their ingest latency to it, the latency probe subtracts it
    from its upstream-of-origin figure (reported as transcode). No global state: the
    object lives only in these targets' configs.
    """
    monitors = stream.ingest.monitor if stream.ingest is not None else []
    if not monitors:
        return latency_jobs(stream)
    from dataclasses import replace

    from probes.core.latency_core import IngestLatencyShare
    from probes.ingest_monitor import MonitorTargetConfig

    share = IngestLatencyShare(wait_s=min(6.0, max(m.interval_s + m.timeout_s for m in monitors)))
    jobs = latency_jobs(stream)
    for job in jobs:
        for t in job.targets:
            t.config = replace(t.config, ingest=share)
    spec = REGISTRY["ingest_monitor"]
    for m in monitors:
        t = ProbeTarget("ingest_monitor", stream.name, "ingest", m.name, MonitorTargetConfig(m, share), None,
                        m.interval_s, m.timeout_s)
        jobs.append(Job("ingest_monitor", stream.name, spec.run, [t], m.interval_s))
    return jobs


BUILDERS: list[Callable[[Stream], list[Job]]] = [hls_jobs, compare_jobs, rtmp_jobs, ingest_stat_jobs, encoder_jobs, playback_jobs,
                                                 media_jobs, studio_jobs, webrtc_jobs, latency_and_ingest_monitor_jobs]


def build_jobs(config: Config) -> list[Job]:
    jobs = [job for stream in config.streams for build in BUILDERS for job in build(stream)]
    # media ``video_frames: auto``: every picture decoded for a few streams, key frames only at scale;
    # ``sampling: auto``: every segment analysed for up to 50 streams, one run in N beyond
    analysed = sum(job.probe == "media" for job in jobs)
    for job in jobs:
        if job.probe == "media":
            for t in job.targets:
                t.config = resolve_sampling(resolve_video_frames(t.config, analysed), analysed)
    # the ingest monitors' content (``video_frames: auto``) likewise, by the ingests watched
    watched = sum(len(job.targets) for job in jobs if job.probe == "ingest_monitor")
    for job in jobs:
        if job.probe == "ingest_monitor":
            for t in job.targets:
                t.config = dataclasses.replace(t.config, settings=resolve_video_frames(t.config.settings, watched))
    return jobs
