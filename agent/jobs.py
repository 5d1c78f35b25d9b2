"""Config → scheduler jobs. One builder per probe kind, listed in ``BUILDERS``.

A builder takes one stream's config and returns the jobs (zero or more) that watch
it. Adding a probe kind: write its module in probes/, add it to probes/registry.py,
give the stream config a section for it (agent/config.py), and add its builder here.
"""

from __future__ import annotations

from typing import Callable

from agent.config import Config, Stream
from agent.runner import Job
from probes.base import ProbeTarget
from probes.registry import REGISTRY


def hls_jobs(stream: Stream) -> list[Job]:
    spec = REGISTRY["hls"]
    cfg = stream.hls
    targets = [ProbeTarget("hls", stream.name, "origin", "origin", cfg, stream.origin, cfg.interval_s, cfg.timeout_s)]
    targets += [ProbeTarget("hls", stream.name, "cdn", e.name, cfg, e.url, cfg.interval_s, cfg.timeout_s)
                for e in stream.edges]
    return [Job("hls", stream.name, spec.run, targets, cfg.interval_s, spec.combine)]


def rtmp_jobs(stream: Stream) -> list[Job]:
    if stream.ingest is None or not stream.ingest.rtmp:
        return []
    spec = REGISTRY["rtmp"]
    jobs = []
    for r in stream.ingest.rtmp:
        t = ProbeTarget("rtmp", stream.name, "ingest", r.name, r, r.url, r.interval_s, r.timeout_s)
        jobs.append(Job("rtmp", stream.name, spec.run, [t], r.interval_s, spec.combine))
    return jobs


BUILDERS: list[Callable[[Stream], list[Job]]] = [hls_jobs, rtmp_jobs]


def build_jobs(config: Config) -> list[Job]:
    return [job for stream in config.streams for build in BUILDERS for job in build(stream)]
