"""``streams[].studio``: the studio section of a stream's config (see probes/core/studio.py)."""

from __future__ import annotations

from pydantic import Field, model_validator

from probes.core.config import StrictModel
from probes.core.studio import SourceConfig
from probes.gpu import GpuConfig
from probes.host import HostConfig
from probes.network import NetworkConfig


class StudioSettings(StrictModel):
    """``streams[].studio``: the studio checks of one stream (all optional)."""

    interval_s: float = Field(10.0, gt=0, le=3600, description="seconds between studio checks under run")
    timeout_s: float = Field(15.0, gt=0, le=300)
    host: HostConfig | None = None
    gpu: GpuConfig | None = None
    sources: list[SourceConfig] = Field(default_factory=list)
    network: NetworkConfig | None = None
    video4linux_root: str = Field("/sys/class/video4linux", description="injectable for tests")

    @model_validator(mode="after")
    def _unique(self) -> StudioSettings:
        seen: set[str] = set()
        for i, s in enumerate(self.sources):
            if s.name in seen or s.name in ("host", "network") or s.name.startswith("gpu"):
                raise ValueError(f"sources[{i}].name: {s.name!r} is a duplicate or reserved name")
            seen.add(s.name)
        return self



class PreflightSettings(StrictModel):
    """``preflight:``: what ``signalpath preflight`` checks beyond each stream's own sections
    (agent/preflight.py, agent/preflight_path.py)."""

    observe_s: float = Field(20.0, ge=1, le=300, description="the longest a path check watches the origin and "
                             "edges (it ends sooner once every rendition advanced: 2 x target duration + 2 s)")
    host: HostConfig = Field(default_factory=HostConfig, description="the host preflight runs on, checked when "
                             "no stream has a studio.host (CPU, memory, disk at recording_path)")
    ntp_server: str | None = Field(None, description="host[:port] of an NTP server for the clock-offset check; "
                                   "without one the origin's HTTP Date header (1-s resolution) is used")
