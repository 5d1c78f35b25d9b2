"""Typed, strict, frozen configuration of the embedded lab (defaults live here).

Defaults are sized for a 2-core machine: a 640x360 @ 25 fps source, a two-rung ladder
(360p, 180p), 2-s segments (the segment length Apple's HLS authoring spec recommends
for live; 6 segments in the sliding window, i.e. more than the three target durations
of live hold-back of RFC 8216bis §4.4.3.8).

``chronic`` (off by default) runs the lab with the imperfections a real chain always
has, from the start and for good (:class:`ChronicConfig`, agent/lab/chronic.py).
"""

from __future__ import annotations

import ipaddress
import math
import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from probes.core.config import StrictModel

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


class ChronicConfig(StrictModel):
    """The chronic conditions of ``LabConfig.chronic`` (what each does: agent/lab/chronic.py).

    Defaults: the lowest rung's segments measure 50-60 % above the BANDWIDTH declared for
    it (the media probe flags more than 10 %, ``bitrate_over_declared``, a P3); the ingest
    hands each frame on up to 0.4 s late (uniform); every 30-60 s one edge, picked at
    random, sends segments at 250,000 B/s for 3-6 s: the default ladder's largest segment
    (360p, about 190 kB per 2 s) then takes about 0.75 s, a download ratio near 0.4, below
    the ratio of 1 that makes a segment slow (THRESHOLDS.md) and far from a stall. Every
    random draw comes from ``seed``: two runs with the same seed draw the same figures.
    """

    seed: int = Field(default=1, description="seed of every random draw (jitter, slow-edge schedule)")
    overshoot_rendition: str | None = Field(
        default=None, description="the rung that overshoots; default the lowest (the media probe's default choice)")
    overshoot: float = Field(default=0.6, gt=0.1, le=3.0,
                             description="segments of that rung peak this share above its declared BANDWIDTH")
    jitter_max_s: float = Field(default=0.4, ge=0.0, le=1.0, description="publish jitter: extra hand-on delay, "
                                "uniform in [0, this] per frame (order kept)")
    slow_edge_every_s: tuple[float, float] = Field(
        default=(30.0, 60.0), description="seconds between the starts of two slow-edge episodes (uniform range)")
    slow_edge_for_s: tuple[float, float] = Field(
        default=(3.0, 6.0), description="how long one edge stays slow (uniform range)")
    slow_edge_bytes_per_s: int = Field(default=250_000, ge=10_000, le=100_000_000,
                                       description="segment send rate of the slow edge")

    @field_validator("slow_edge_every_s", "slow_edge_for_s")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0 < lo <= hi <= 86_400):
            raise ValueError(f"{list(v)} must be [low, high] seconds with 0 < low <= high")
        return v

    @model_validator(mode="after")
    def _apart(self) -> ChronicConfig:
        if self.slow_edge_for_s[1] >= self.slow_edge_every_s[0]:
            raise ValueError("slow_edge_for_s must end before the next episode can start "
                             "(its high below slow_edge_every_s's low)")
        return self

    def overshoot_target(self, renditions: tuple[RenditionConfig, ...]) -> str:
        """The rung that overshoots: the configured one, else the lowest (bitrate, then pixels)."""
        if self.overshoot_rendition is not None:
            return self.overshoot_rendition
        return min(renditions, key=lambda r: (r.bitrate_kbps, r.width * r.height)).name


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
    parts_per_segment: int = Field(default=4, ge=1, le=20, description="LL-HLS: partial segments cut per "
                                   "segment period (a 2-s segment in 4 parts of 0.5 s at 24 fps, 0.52 s at 25)")
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
    chronic: bool = Field(default=False, description="run with the chronic conditions of chronic_settings, "
                          "from the start and for good (agent/lab/chronic.py)")
    chronic_settings: ChronicConfig = Field(default_factory=ChronicConfig)

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
    def _consistent(self) -> LabConfig:
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
        over = self.chronic_settings.overshoot_rendition
        if over is not None and over not in names:
            raise ValueError(f"chronic_settings.overshoot_rendition {over!r} is not a rendition ({', '.join(names)})")
        return self

    @property
    def frames_per_segment(self) -> int:
        return self.fps * self.segment_s

    @property
    def part_frames(self) -> int:
        """Frames in one LL-HLS partial segment (the last of a segment may hold fewer)."""
        return math.ceil(self.fps * self.segment_s / self.parts_per_segment)

    @property
    def part_target_s(self) -> float:
        """EXT-X-PART-INF PART-TARGET: the longest part (RFC 8216bis §4.4.3.7)."""
        return self.part_frames / self.fps


# AAC sampling-frequency index (ISO/IEC 14496-3 Table 1.18), used by the ADTS header.
_ADTS_RATES: dict[int, int] = {
    96000: 0, 88200: 1, 64000: 2, 48000: 3, 44100: 4, 32000: 5,
    24000: 6, 22050: 7, 16000: 8, 12000: 9, 11025: 10, 8000: 11,
}


def adts_rate_index(rate: int) -> int:
    return _ADTS_RATES[rate]
