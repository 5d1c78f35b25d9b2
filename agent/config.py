"""Typed, strict, frozen configuration (YAML → pydantic).

Unknown keys are rejected, defaults live in the models, ``${ENV}`` (or
``${ENV:-default}``) is interpolated in string values so secrets stay out of the
file. Every problem is reported with its path, e.g.
``streams[0].edges[1].url: 'ftp:/' is not an http(s) URL``.

The minimal public contract is DESIGN.md "Config"; later capabilities add keys,
never rename these.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from agent.alerts import AlertSettings
from agent.errors import ConfigError
from agent.incidents import IncidentStoreSettings
from agent.localize import LocalizerSettings
from agent.studio_config import StudioSettings
from probes.core.config import StrictModel
from probes.core.redact import redact_url
from probes.encoder_status import EncoderStatusConfig
from probes.hls import HlsSettings
from probes.ingest_monitor import IngestMonitorSettings
from probes.ingest_stat import IngestStatConfig
from probes.latency import LatencySettings
from probes.media import MediaSettings
from probes.playback import PlaybackSettings
from probes.rtmp import RtmpProbeConfig
from probes.whep import WhepPlayback
from probes.whip import WhipIngest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Name = Annotated[str, Field(description="a short label-safe name: letters, digits, _ . -")]


def _check_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(f"{v!r} is not a valid name (letters, digits, '_', '.', '-'; at most 63)")
    return v


def _check_http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redact_url(v)!r} is not an http(s) URL")
    return v


def _check_listen(v: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{v!r} is not HOST:PORT (e.g. 127.0.0.1:9321)")
    return v


class AgentSettings(StrictModel):
    listen: str = "127.0.0.1:9321"
    site: str = "default"
    max_in_flight_per_host: int = Field(8, ge=1, le=256, description="requests in flight per host:port")
    log_level: str = "info"

    _v_listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))
    _v_site = field_validator("site")(classmethod(lambda cls, v: _check_name(v)))


class OtlpSettings(StrictModel):
    endpoint: str
    timeout_s: float = Field(5.0, gt=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict)

    _v_ep = field_validator("endpoint")(classmethod(lambda cls, v: _check_http_url(v)))


class Exporters(StrictModel):
    otlp: OtlpSettings | None = None


class Edge(StrictModel):
    name: str
    url: str

    _v_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))
    _v_url = field_validator("url")(classmethod(lambda cls, v: _check_http_url(v)))


class RtmpIngest(RtmpProbeConfig):
    """An RTMP ingest to probe (probes/rtmp.py); put the stream key in ``${ENV}``."""

    name: str = "rtmp"
    url: str
    interval_s: float = Field(10.0, gt=0, le=3600)
    timeout_s: float = Field(10.0, gt=0, le=120, description="> publish_seconds + 1 s when publishing")

    _v_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("url")
    @classmethod
    def _v_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("rtmp", "rtmps") or not parts.hostname:
            raise ValueError(f"{redact_url(v)!r} is not an rtmp(s):// URL")
        return v

    @model_validator(mode="after")
    def _deadline(self) -> RtmpIngest:
        if self.publish and self.timeout_s < self.publish_seconds + 1:
            raise ValueError(f"timeout_s {self.timeout_s:g} must exceed publish_seconds + 1 s")
        return self


class _PolledHttp(StrictModel):
    """What every HTTP-polled probe entry has: a name, a URL, an interval and a deadline."""

    name: str
    url: str
    interval_s: float = Field(1.0, gt=0, le=3600)
    timeout_s: float = Field(3.0, gt=0, le=120)

    _v_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))
    _v_url = field_validator("url")(classmethod(lambda cls, v: _check_http_url(v)))


class IngestStat(_PolledHttp, IngestStatConfig):
    """An ingest's statistics page (nginx-rtmp ``/stat`` XML) to watch (probes/ingest_stat.py)."""

    name: str = "ingest"


class IngestMonitor(IngestMonitorSettings):
    """The ingest's playback side to watch for latency (probes/ingest_monitor.py); key in ``${ENV}``."""

    _v_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))


class Ingest(StrictModel):
    rtmp: list[RtmpIngest] = Field(default_factory=list)
    monitor: list[IngestMonitor] = Field(default_factory=list)  # probes/ingest_monitor.py ingest latency
    stat: list[IngestStat] = Field(default_factory=list)
    whip: list[WhipIngest] = Field(default_factory=list)  # probes/whip.py WHIP publish test


class EncoderStatus(_PolledHttp, EncoderStatusConfig):
    """A studio encoder's HTTP JSON status (probes/encoder_status.py)."""

    name: str = "encoder"


class Stream(StrictModel):
    name: str
    origin: str
    edges: list[Edge] = Field(default_factory=list)
    hls: HlsSettings = Field(default_factory=HlsSettings)
    ingest: Ingest | None = None
    studio: StudioSettings | None = None  # probes/core/studio.py: host, GPU, sources, network
    encoders: list[EncoderStatus] = Field(default_factory=list)
    whep: list[WhepPlayback] = Field(default_factory=list)  # probes/whep.py WHEP playback test
    playback: PlaybackSettings = Field(default_factory=PlaybackSettings)  # probes/playback.py viewers
    media: MediaSettings = Field(default_factory=MediaSettings)  # probes/media.py content checks
    latency: LatencySettings = Field(default_factory=LatencySettings)  # probes/latency.py per-stage latency

    _v_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))
    _v_origin = field_validator("origin")(classmethod(lambda cls, v: _check_http_url(v)))

    @model_validator(mode="after")
    def _unique_edges(self) -> Stream:
        seen: dict[str, int] = {}
        for i, e in enumerate(self.edges):
            if e.name in seen:
                raise ValueError(f"edges[{i}].name: duplicate edge name {e.name!r} (also edges[{seen[e.name]}])")
            if e.name in ("origin", "cdn"):
                raise ValueError(f"edges[{i}].name: {e.name!r} is reserved")
            seen[e.name] = i
        return self


class Config(StrictModel):
    agent: AgentSettings = Field(default_factory=AgentSettings)
    exporters: Exporters = Field(default_factory=Exporters)
    streams: list[Stream] = Field(default_factory=list)
    localize: LocalizerSettings = Field(default_factory=LocalizerSettings)
    incidents: IncidentStoreSettings = Field(default_factory=IncidentStoreSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @model_validator(mode="after")
    def _unique_streams(self) -> Config:
        seen: dict[str, int] = {}
        for i, s in enumerate(self.streams):
            if s.name in seen:
                raise ValueError(f"streams[{i}].name: duplicate stream name {s.name!r} (also streams[{seen[s.name]}])")
            seen[s.name] = i
        return self


# ---------------------------------------------------------------- loading


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def expand_env(text: str, env: Mapping[str, str], missing: Callable[[str], None]) -> str:
    """``text`` with every ``${NAME}`` / ``${NAME:-default}`` replaced from ``env``.

    The one ``${ENV}`` expander (config files and the ``beacon --rtmp`` URL): a name not in
    ``env`` without a default calls ``missing(name)`` and expands to ``""``.
    """
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing(name)
        return ""
    return _ENV_RE.sub(sub, text)


def _interpolate(node: Any, path: str, env: dict[str, str], problems: list[tuple[str, str]]) -> Any:
    if isinstance(node, str):
        return expand_env(node, env, lambda name: problems.append((path, f"environment variable {name} is not set")))
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(node)]
    return node


def _problems_from(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"].removeprefix("Value error, ")
        loc = _loc(tuple(err["loc"]))
        # model-level validators put their own path at the start of the message
        if ": " in msg and msg.split(": ", 1)[0].startswith(("edges[", "streams[")):
            sub, msg = msg.split(": ", 1)
            loc = f"{loc}.{sub}" if loc else sub
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see README 'Configuration')"
        problems.append((loc, msg))
    return problems


def parse_config(data: Any, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML/JSON document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the top level must be a mapping (agent:, streams:, ...)")])
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", dict(os.environ) if env is None else env, problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc))
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML file; every problem raises ConfigError with its path."""
    p = Path(path)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [("", f"cannot read: {exc.__class__.__name__}: {exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, [("", f"invalid YAML: {where}{problem}")]) from None
    config = parse_config(data, source, env)
    store = Path(config.incidents.path).expanduser()
    if not store.is_absolute():
        # a relative incident store lives beside the config file, not wherever the agent was started
        incidents = config.incidents.model_copy(update={"path": str(p.resolve().parent / store)})
        config = config.model_copy(update={"incidents": incidents})
    return config
