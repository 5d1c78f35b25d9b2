"""Typed, strict, frozen configuration of the embedded lab (defaults live here).

Defaults are sized for a 2-core machine: a 640x360 @ 25 fps source, a two-rung ladder
(360p, 180p), 2-s segments (the segment length Apple's HLS authoring spec recommends
for live; 6 segments in the sliding window, i.e. more than the three target durations
of live hold-back of RFC 8216bis §4.4.3.8).
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-32 chars of lowercase letters, digits, '-' or '_'"
        )
    return value


class RenditionConfig(BaseModel):
    """One rung of the ladder, named by its resolution (DESIGN.md vocabulary)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    width: int = Field(ge=64, le=1920)
    height: int = Field(ge=64, le=1080)
    bitrate_kbps: int = Field(ge=50, le=20_000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "rendition name")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"{v} must be even (4:2:0 chroma)")
        return v


def _default_ladder() -> tuple[RenditionConfig, ...]:
    return (
        RenditionConfig(name="360p", width=640, height=360, bitrate_kbps=800),
        RenditionConfig(name="180p", width=320, height=180, bitrate_kbps=250),
    )


class LabConfig(BaseModel):
    """Everything the lab needs; every port 0 means "pick a free one"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str = "main"
    host: str = "127.0.0.1"
    width: int = Field(default=640, ge=64, le=1920)
    height: int = Field(default=360, ge=64, le=1080)
    fps: int = Field(default=25, ge=5, le=60)
    source_bitrate_kbps: int = Field(default=1500, ge=100, le=20_000)
    sample_rate: int = 48_000
    tone_hz: float = Field(default=1000.0, gt=20, lt=20_000)
    tone_dbfs: float = Field(default=-20.0, le=0, ge=-60)
    audio_bitrate_kbps: int = Field(default=64, ge=16, le=320)
    segment_s: int = Field(default=2, ge=1, le=10)
    window: int = Field(default=6, ge=3, le=30)
    renditions: tuple[RenditionConfig, ...] = Field(default_factory=_default_ladder)
    edges: tuple[str, ...] = ("edge-a", "edge-b")
    playlist_max_age_s: int = Field(default=1, ge=0, le=60)
    segment_max_age_s: int = Field(default=60, ge=1, le=86_400)
    origin_port: int = Field(default=0, ge=0, le=65_535)
    edge_ports: tuple[int, ...] = ()
    control_port: int = Field(default=0, ge=0, le=65_535)
    x264_preset: str = "ultrafast"
    beacon: bool = Field(default=True, description="stamp every camera frame with the latency beacon "
                         "(probes/beacon.py); frozen and black pictures carry none")
    ready_timeout_s: float = Field(default=20.0, gt=0, le=300)
    wait_ready: bool = True
    # The WHIP/WHEP endpoint (agent/lab/webrtc.py) fed with the studio's frames. Idle it
    # costs nothing measurable; each WHEP session encodes the feed (tests/perf/lab_webrtc_cpu.py).
    webrtc: bool = True
    webrtc_port: int = Field(default=0, ge=0, le=65_535)
    webrtc_downscale: int = Field(default=2, ge=1, le=8, description="WHEP picture = source / this (each axis)")
    webrtc_token: SecretStr | None = Field(default=None, description="Bearer token WHIP/WHEP POSTs must carry")

    @field_validator("stream")
    @classmethod
    def _stream(cls, v: str) -> str:
        return _check_name(v, "stream name")

    @field_validator("edges")
    @classmethod
    def _edges(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            _check_name(name, "edge name")
        if len(set(v)) != len(v):
            raise ValueError("edge names must be unique")
        return v

    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        if v == "localhost":
            return "127.0.0.1"
        try:
            ok = ipaddress.ip_address(v).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"host {v!r} is not a loopback address; the lab serves loopback only")
        return v

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, v: int) -> int:
        if v not in _ADTS_RATES:
            raise ValueError(f"sample_rate {v} is not an AAC rate ({sorted(_ADTS_RATES)})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "LabConfig":
        if not self.renditions:
            raise ValueError("renditions: at least one is needed")
        names = [r.name for r in self.renditions]
        if len(set(names)) != len(names):
            raise ValueError("renditions: names must be unique")
        if self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even (4:2:0 chroma)")
        if self.edge_ports and len(self.edge_ports) != len(self.edges):
            raise ValueError("edge_ports: give one port per edge, or none")
        if set(names) & set(self.edges):
            raise ValueError("an edge and a rendition share a name")
        if self.webrtc and (self.width // self.webrtc_downscale % 2 or self.height // self.webrtc_downscale % 2
                            or self.width % self.webrtc_downscale or self.height % self.webrtc_downscale):
            raise ValueError(f"webrtc_downscale {self.webrtc_downscale} must divide {self.width}x{self.height} "
                             "into even sizes")
        return self

    @property
    def frames_per_segment(self) -> int:
        return self.fps * self.segment_s


# AAC sampling-frequency index (ISO/IEC 14496-3 Table 1.18), used by the ADTS header.
_ADTS_RATES: dict[int, int] = {
    96000: 0, 88200: 1, 64000: 2, 48000: 3, 44100: 4, 32000: 5,
    24000: 6, 22050: 7, 16000: 8, 12000: 9, 11025: 10, 8000: 11,
}


def adts_rate_index(rate: int) -> int:
    return _ADTS_RATES[rate]
