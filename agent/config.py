"""Typed, strict, frozen configuration (YAML → pydantic).

Unknown keys are rejected, defaults live in the models, ``${ENV}`` (or
``${ENV:-default}``) is interpolated in string values so secrets stay out of the
file. Every problem is reported with its path, e.g.
``streams[0].edges[1].url: 'ftp://cdn.example' is not an http(s) URL``.

Hostile or broken files are refused by ``check-config`` and ``run`` alike, in bounded time
and memory, never with a traceback (issue 15 item 4):

- the file may be at most 1 MiB (:data:`MAX_CONFIG_BYTES`);
- YAML is read in three steps: a pass over the parser's events rejects nesting deeper than
  :data:`MAX_DEPTH` (50) and more than :data:`MAX_EXPANDED_NODES` values before anything
  recursive runs or any node is kept; the composed node graph (where an
  alias is the same node again, not a copy) is then measured: duplicate keys are errors with
  both lines (YAML would keep the last silently), an alias inside the collection it names is
  refused, and anchors/aliases/merge keys stay allowed (``hls: *defaults``,
  ``<<: *defaults``) as long as the document they expand to has at most
  :data:`MAX_EXPANDED_NODES` (100,000) values and depth 50 — a billion-laughs document is
  refused in milliseconds; only then are Python values built;
- every string that is a URL (``scheme://...``, in any key) has a port 1-65535 and a
  well-formed IPv6 host, checked here so no probe meets it at run time;
- ``agent.listen`` is ``HOST:PORT`` or ``[IPv6]:PORT`` (:func:`parse_listen`);
- ``incidents.path`` is not a directory, not under a regular file, and, when it exists, an
  SQLite database (or empty); check-config creates nothing;
- ``agent.web.tls`` files exist, are readable PEM, and the key is the certificate's; basic-auth
  passwords are bcrypt hashes (agent/webguard.py).

No message echoes a URL's password or query values (``probes.core.redact``).

The minimal public contract is DESIGN.md "Config"; later capabilities add keys,
never rename these.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from agent.alerts import AlertSettings
from agent.complaints import ComplaintSettings
from agent.errors import ConfigError
from agent.history import HistorySettings
from agent.incidents import IncidentStoreSettings
from agent.localize import LocalizerSettings
from agent.report import ReportSettings
from agent.schedule import Broadcast, MaintenanceWindow, place_problem
from agent.schedule_book import ScheduleApiSettings
from agent.studio_config import PreflightSettings, StudioSettings
from agent.webguard import WebSettings, file_problems
from probes.compare import CompareSettings
from probes.core.config import StrictModel
from probes.core.redact import not_a_url, redact_text
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


MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a config file is a few KiB; more is a mistake or an attack
MAX_DEPTH = 50  # YAML nesting (the deepest real config is under 10)
MAX_EXPANDED_NODES = 100_000  # values after alias expansion (a 100-stream config is ~5,000)
_URL_START_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_HOST_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?$")


def url_problem(v: str) -> str | None:
    """What is wrong with the host or port of URL ``v`` (None when nothing is); never echoes a secret."""
    rest = _URL_START_RE.sub("", v, count=1)
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    hostport = netloc.rpartition("@")[2]  # userinfo (a password) is never looked at again
    if hostport.startswith("["):
        host, close, after = hostport[1:].partition("]")
        if not close:
            return "IPv6 address without its closing ']'"
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"{'[' + host + ']'!r} is not an IPv6 address"
        if after and not after.startswith(":"):
            return f"{'[' + host + ']' + after!r}: a port follows the ']' after a ':'"
        port = after[1:]
    else:
        if "[" in hostport or "]" in hostport:
            return "a '[' or ']' outside an IPv6 address in brackets"
        port = hostport.rpartition(":")[2] if ":" in hostport else ""
    if port:
        if not port.isdigit():
            return "the port is not a number"
        if not 1 <= int(port) <= 65535:
            return f"port {int(port)} out of range (1-65535)"
    return None


def _check_http_url(v: str) -> str:
    problem = url_problem(v)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(not_a_url(v, "http(s)"))
    return v


def parse_listen(v: str) -> tuple[str, int]:
    """``agent.listen`` as (host, port): ``HOST:PORT`` or ``[IPv6]:PORT``; ValueError says what is wrong."""
    usage = f"{v!r} is not HOST:PORT (e.g. 127.0.0.1:9321 or [::1]:9321)"
    if v.startswith("["):
        host, close, after = v[1:].partition("]")
        if not close:
            raise ValueError(f"{v!r} has no closing ']' (e.g. [::1]:9321)")
        if not after.startswith(":") or not after[1:]:
            raise ValueError(f"{v!r} is not [IPv6]:PORT (e.g. [::1]:9321)")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        port = after[1:]
    else:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port:
            raise ValueError(usage)
        if ":" in host:
            raise ValueError(f"an IPv6 address goes in brackets: '[{host}]:{port}'")
        if not _HOST_RE.match(host):
            raise ValueError(f"{host!r} is not a host name or address")
    if not port.isdigit():
        raise ValueError(f"port {port!r} is not a number")
    if int(port) > 65535:
        raise ValueError(f"port {int(port)} out of range (0-65535)")
    return host, int(port)


def _check_shard(v: str) -> str:
    from agent.shard import parse_shard

    i, n = parse_shard(v)
    return f"{i}/{n}"


def _check_listen(v: str) -> str:
    parse_listen(v)
    return v


class AgentSettings(StrictModel):
    listen: str = "127.0.0.1:9321"
    site: str = "default"
    max_in_flight_per_host: int = Field(
        32, ge=1, le=256, description="requests in flight per host:port (one CDN host often serves every stream: "
        "a request waiting for a slot is the agent's queue, and its timings are not judged)")
    log_level: str = "info"
    web: WebSettings = Field(default_factory=WebSettings)  # agent/webguard.py: TLS, basic auth, Host, timeouts
    cpu_workers: int = Field(0, ge=0, le=32, description="workers decoding segments (agent/cpupool.py); 0: one "
                             "less than the CPUs the agent may use, 1 to 4")
    cpu_isolation: Literal["process", "thread"] = Field(
        "process", description="decode in worker processes (no GIL shared with the event loop; a decoder crash "
        "costs one segment) or in threads of the agent's process")
    shard: str | None = Field(None, description="'I/N': this agent watches shard I of N of the streams, and "
                              "keeps its incidents in NAME.shard-I-of-N.db beside incidents.path (agent/shard.py); "
                              "None: every stream")

    _v_listen = field_validator("listen")(classmethod(lambda cls, v: _check_listen(v)))
    _v_site = field_validator("site")(classmethod(lambda cls, v: _check_name(v)))
    _v_shard = field_validator("shard")(classmethod(lambda cls, v: v if v is None else _check_shard(v)))


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
            raise ValueError(not_a_url(v, "rtmp(s)://"))
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


class Compare(CompareSettings):
    """``streams[].compare``: the origin's other manifest of the same encode (probes/compare.py)."""

    _v_url = field_validator("url")(classmethod(lambda cls, v: _check_http_url(v)))


class Stream(StrictModel):
    name: str
    origin: str
    edges: list[Edge] = Field(default_factory=list)
    compare: Compare | None = None  # probes/compare.py: an MPD beside an HLS origin (or the reverse)
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
    preflight: PreflightSettings = Field(default_factory=PreflightSettings)  # signalpath preflight only
    complaints: ComplaintSettings = Field(default_factory=ComplaintSettings)  # agent/complaints.py
    broadcasts: list[Broadcast] = Field(default_factory=list)  # agent/schedule.py
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)  # agent/schedule.py
    schedule_api: ScheduleApiSettings = Field(default_factory=ScheduleApiSettings)  # agent/schedule_book.py
    history: HistorySettings = Field(default_factory=HistorySettings)  # agent/history.py
    report: ReportSettings = Field(default_factory=ReportSettings)  # agent/report.py

    @model_validator(mode="after")
    def _unique_streams(self) -> Config:
        seen: dict[str, int] = {}
        for i, s in enumerate(self.streams):
            if s.name in seen:
                raise ValueError(f"streams[{i}].name: duplicate stream name {s.name!r} (also streams[{seen[s.name]}])")
            seen[s.name] = i
        names: dict[str, int] = {}
        for i, b in enumerate(self.broadcasts):
            if b.name in names:
                raise ValueError(f"broadcasts[{i}].name: duplicate broadcast name {b.name!r} "
                                 f"(also broadcasts[{names[b.name]}])")
            names[b.name] = i
            for j, stream in enumerate(b.streams):
                if stream not in seen:
                    raise ValueError(f"broadcasts[{i}].streams[{j}]: {stream!r} is not a configured stream")
        edges = {st.name: [e.name for e in st.edges] for st in self.streams}
        for i, m in enumerate(self.maintenance):
            problem = place_problem(m, edges)
            if problem is not None:
                raise ValueError(f"maintenance[{i}].{problem}")
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


def _url_problems(node: Any, path: str, out: list[tuple[str, str]]) -> None:
    """Every URL-looking string anywhere in the document (probe configs included) with a bad port or host."""
    if isinstance(node, str):
        if _URL_START_RE.match(node):
            problem = url_problem(node)
            if problem:
                out.append((path, problem))
    elif isinstance(node, dict):
        for k, v in node.items():
            _url_problems(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _url_problems(v, f"{path}[{i}]", out)


def parse_config(data: Any, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed YAML/JSON document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the top level must be a mapping (agent:, streams:, ...)")])
    problems: list[tuple[str, str]] = []
    data = _interpolate(data, "", dict(os.environ) if env is None else env, problems)
    _url_problems(data, "", problems)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        seen = {path for path, _ in problems}  # a URL's own problem says more than the model's
        problems.extend(p for p in _problems_from(exc) if p[0] not in seen)
        raise ConfigError(source, _no_secrets(problems)) from None
    if problems:
        raise ConfigError(source, _no_secrets(problems))
    return cfg


def _no_secrets(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Messages that name a URL show ``scheme://host[:port]`` only: a mistyped RTMP or webhook
    URL carries its key or token in the path, which no error message may echo."""
    return [(path, redact_text(msg, path=False)) for path, msg in problems]


# ---------------------------------------------------------------- YAML, bounded


class _YamlProblem(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        super().__init__(f"invalid YAML: {where}{message}")


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _measure(root: yaml.Node) -> list[tuple[str, str]]:
    """Duplicate keys (as problems); raises _YamlProblem for a recursive alias or a bomb.

    Sizes and depths are memoized per node, so an alias costs one lookup: the work is
    linear in the file, whatever the aliases would expand to.
    """
    measured: dict[int, tuple[int, int]] = {}
    active: set[int] = set()
    problems: list[tuple[str, str]] = []

    def walk(node: yaml.Node, path: str) -> tuple[int, int]:
        key = id(node)
        if key in measured:
            return measured[key]
        if key in active:
            raise _YamlProblem(node.start_mark, "an alias refers to a collection it is inside of "
                                                "(a recursive structure)")
        active.add(key)
        size, depth = 1, 0
        if isinstance(node, yaml.MappingNode):
            first: dict[str, Any] = {}
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else None
                sub = path if name is None else (f"{path}.{name}" if path else str(name))
                if name is not None and not k.tag.endswith(":merge"):
                    if name in first:
                        problems.append((sub, f"duplicate key at {_at(k.start_mark)} (first at {_at(first[name])})"))
                    else:
                        first[name] = k.start_mark
                for child in (k, v):
                    s, d = walk(child, sub)
                    size, depth = size + s, max(depth, d)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                s, d = walk(v, f"{path}[{i}]")
                size, depth = size + s, max(depth, d)
        depth += 1 if isinstance(node, yaml.CollectionNode) else 0
        active.discard(key)
        if size > MAX_EXPANDED_NODES:
            raise _YamlProblem(node.start_mark, f"aliases expand to more than {MAX_EXPANDED_NODES} values")
        if depth > MAX_DEPTH:
            raise _YamlProblem(node.start_mark, f"nested deeper than {MAX_DEPTH} levels (through aliases)")
        measured[key] = (size, depth)
        return size, depth

    walk(root, "")
    return problems


def load_yaml(text: str, source: str) -> Any:
    """``text`` as Python values, in bounded time and memory (see the module docstring)."""
    try:
        depth = values = 0
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.NodeEvent):  # scalars, aliases, collections: bound the graph compose builds
                values += 1
                if values > MAX_EXPANDED_NODES:
                    raise _YamlProblem(event.start_mark, f"more than {MAX_EXPANDED_NODES} values")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _YamlProblem(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        root = yaml.compose(text, Loader=_Loader)
        if root is None:
            return None
        duplicates = _measure(root)
        if duplicates:
            raise ConfigError(source, duplicates)
        loader = _Loader("")
        try:
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except _YamlProblem as exc:
        raise ConfigError(source, [("", str(exc))]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "maximum nesting depth" in problem:  # libyaml's own bound (1000), met while scanning ahead
            problem = f"nested deeper than {MAX_DEPTH} levels"
        raise ConfigError(source, [("", str(_YamlProblem(mark, problem)))]) from None


def _store_problem(path: Path) -> str | None:
    """Why the incident store at ``path`` cannot be used (None when it can); creates nothing."""
    try:
        if path.is_dir():
            return f"{path} is a directory, not an SQLite file"
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    return f"{parent} is a file, not a folder"
                if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
                    return f"cannot create {path}: {parent} is not writable"
                break
            if parent.is_symlink() or os.path.lexists(parent):
                return f"{parent} is a broken link"
        if os.path.lexists(path):
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                return f"{path} is not a regular file"
            with path.open("rb") as f:
                header = f.read(16)
            if header and header != b"SQLite format 3\x00":
                return f"{path} is not an SQLite database"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _read_config_text(p: Path, source: str) -> str:
    try:
        with p.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(source, [("", f"the file is over 1 MiB ({max(size, len(raw))} bytes): "
                                            "not a config file")])
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [("", f"cannot read: {exc.__class__.__name__}: {exc}")]) from None
    return text


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    """Read and validate a YAML file; every problem raises ConfigError with its path."""
    p = Path(path)
    source = str(p)
    data = load_yaml(_read_config_text(p, source), source)
    config = parse_config(data, source, env)
    store = Path(config.incidents.path).expanduser()
    if not store.is_absolute():
        # a relative incident store lives beside the config file, not wherever the agent was started
        incidents = config.incidents.model_copy(update={"path": str(p.resolve().parent / store)})
        config = config.model_copy(update={"incidents": incidents})
    web, problems = file_problems(config.agent.web, p.resolve().parent)  # TLS files, relative to the file
    config = config.model_copy(update={"agent": config.agent.model_copy(update={"web": web})})
    problem = _store_problem(Path(config.incidents.path))
    if problem:
        problems.append(("incidents.path", problem))
    if problems:
        raise ConfigError(source, problems)
    return config


def incidents_path(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> str:
    """Where the agent configured by ``path`` keeps its incidents, reading ``incidents.path``
    only: reading the history needs neither the streams' secrets (their ``${VAR}``s) nor a
    config valid in every other key. Relative paths resolve beside the file, as the agent does.
    Raises ConfigError (unreadable file, bad YAML, an unset ``${VAR}`` in that one value)."""
    p = Path(path)
    source = str(p)
    data = load_yaml(_read_config_text(p, source), source)
    section = data.get("incidents") if isinstance(data, dict) else None
    raw = section.get("path") if isinstance(section, dict) else None
    if not isinstance(raw, str):
        raw = IncidentStoreSettings().path
    unset: list[str] = []
    value = expand_env(raw, os.environ if env is None else env, unset.append)
    if unset:
        raise ConfigError(source, [("incidents.path", f"environment variable {unset[0]} is not set")])
    store = Path(value).expanduser()
    return str(store if store.is_absolute() else p.resolve().parent / store)


def config_sections(path: str | os.PathLike[str], names: tuple[str, ...], env: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """The top-level sections ``names`` of the config at ``path`` (``${VAR}`` expanded), raw,
    for a read-only command (``signalpath report``) that needs neither the streams' secrets
    nor a config valid in every other key. Relative ``incidents.path`` resolves beside the
    file. Raises ConfigError (unreadable, bad YAML, an unset ``${VAR}`` in those sections)."""
    p = Path(path)
    source = str(p)
    data = load_yaml(_read_config_text(p, source), source)
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the config is not a mapping of sections")])
    problems: list[tuple[str, str]] = []
    out = {n: _interpolate(data[n], n, dict(os.environ if env is None else env), problems)
           for n in names if n in data}
    if problems:
        raise ConfigError(source, problems)
    out["incidents_path"] = incidents_path(path, env)
    return out

