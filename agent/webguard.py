"""The agent's HTTP endpoint, guarded: TLS, basic auth, Host check, timeouts (issue 15 item 6).

The config (``agent.web``) follows Prometheus exporter-toolkit's web config: a TLS server
certificate with a minimum version, and basic-auth users with bcrypt hashes, never passwords.
Two roles: ``read`` users may GET/HEAD; ``write`` users may also use every other method (the
complaint endpoint and any later write). With no user configured the endpoint is open, as on
loopback it always was; with any user, every request needs a login::

    agent:
      listen: "0.0.0.0:9321"
      web:
        tls: {cert_file: agent.crt, key_file: agent.key, min_version: TLS13}
        basic_auth:
          read:  {prometheus: "$2b$12$..."}   # signalpath hash-password
          write: {ops: "$2b$12$..."}
        allowed_hosts: [monitor.studio.example]

What each guard answers (:func:`guard_middleware`, in this order):

- ``Host`` not an allowed name → 421 Misdirected Request. The default, when ``allowed_hosts``
  is not given, depends on ``agent.listen``: on a loopback address only ``localhost``,
  ``127.0.0.1``, ``::1`` and the listen host itself (any port) — what stops a DNS-rebinding
  page in the operator's browser from reading or writing the agent; on any other address the
  Host is not checked (the agent cannot know the names it is reached by; one line at start
  says so). A configured ``allowed_hosts`` adds its names to the loopback ones (always
  answered: a rebinding page's requests carry its own domain, and a local scraper uses them);
  ``["*"]`` turns the check off explicitly; an empty list is an error. A request without Host
  (HTTP/1.0) is let through: browsers always send one.
- no or wrong credentials → 401 with ``WWW-Authenticate: Basic``; a read user on a write
  method → 403.
- a write method whose ``Origin`` names another host than ``Host`` → 403 (a cross-site form
  post into the loopback agent; browsers send Origin on every cross-site POST).
- a request body not complete within ``body_timeout_s`` → 408 and the connection closed.

bcrypt is deliberately slow (about 0.25 s at cost 12), and Prometheus sends the same login
with every scrape, so, as exporter-toolkit does, each (user, hash, password) outcome is
cached — keyed by a SHA-256 of the three, so no password is kept — and only one bcrypt runs
at a time, in a thread. An unknown user is checked against the costliest configured hash,
so a failed login costs the same time whether or not the user exists; user names are
compared in constant time.

Connections (:func:`runner_options`, :func:`make_site`): a connection must deliver a complete
request head within ``header_timeout_s`` of opening (or of finishing the TLS handshake) and of
its previous response; aiohttp's keep-alive timer, armed at connection start and after each
response and firing only while the connection still waits for a request, is that limit, so it
is also the keep-alive idle limit. The TLS handshake has the same bound. Today's aiohttp
default is 3,630 s: 1,100 idle connections held the agent's descriptors and locked new
clients out.

A malformed request (garbage bytes, a TLS hello on the plain port, a header line over 8 KiB)
is answered 400 by aiohttp and logged here as one rate-limited line with the error's class,
not aiohttp's traceback (:class:`ProtocolLog`). No response carries aiohttp's
``Server: Python/3.x aiohttp/3.x`` banner (:func:`hide_server_banner`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import re
import ssl
import stat
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import bcrypt
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field, field_validator, model_validator

from agent import lograte
from agent.errors import AgentError
from probes.core.config import StrictModel

log = logging.getLogger("signalpath.api")

TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
"""exporter-toolkit's names; TLS 1.0 and 1.1 are deprecated by RFC 8996 and not offered."""
_BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
HASH_HINT = "make one with: signalpath hash-password"
READ_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
CACHE_SIZE = 1024
"""Cached bcrypt outcomes (exporter-toolkit keeps 100); past it the oldest go first."""
BCRYPT_MAX_BYTES = 72
"""bcrypt reads at most 72 bytes of a password; bcrypt 5 refuses longer ones."""


def _check_hash(v: str) -> str:
    m = _BCRYPT_RE.match(v)
    if not m or not 4 <= int(m.group(1)) <= 31:
        # never echo the value: a password pasted here by mistake would land in a log
        raise ValueError(f"not a bcrypt hash ({HASH_HINT})")
    return v


class TlsSettings(StrictModel):
    cert_file: str = Field(description="PEM certificate (chain); relative paths are beside the config file")
    key_file: str = Field(description="PEM private key, unencrypted")
    min_version: str = "TLS12"

    @field_validator("min_version")
    @classmethod
    def _v_min(cls, v: str) -> str:
        if v not in TLS_VERSIONS:
            raise ValueError(f"unknown TLS version {v[:20]!r} (one of {', '.join(TLS_VERSIONS)})")
        return v


class BasicAuthSettings(StrictModel):
    read: dict[str, str] = Field(default_factory=dict, description="user -> bcrypt hash; may GET and HEAD")
    write: dict[str, str] = Field(default_factory=dict, description="user -> bcrypt hash; may also write")

    @field_validator("read", "write")
    @classmethod
    def _v_users(cls, v: dict[str, str]) -> dict[str, str]:
        for user, hashed in v.items():
            if not user or ":" in user:
                raise ValueError(f"user {user[:40]!r}: a name, without ':' (basic auth splits on it)")
            try:
                _check_hash(hashed)
            except ValueError as exc:
                raise ValueError(f"user {user[:40]!r}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_role(self) -> BasicAuthSettings:
        both = sorted(set(self.read) & set(self.write))
        if both:
            raise ValueError(f"{both[0]!r} is both a read and a write user (write users may also read)")
        return self


class WebSettings(StrictModel):
    """``agent.web``: who may reach the endpoint and how (see the module docstring)."""

    tls: TlsSettings | None = None
    basic_auth: BasicAuthSettings = Field(default_factory=BasicAuthSettings)
    allowed_hosts: list[str] | None = Field(None, description="Host names answered; default: see module docstring")
    header_timeout_s: float = Field(10.0, gt=0, le=300, description="to a complete request head; keep-alive idle")
    body_timeout_s: float = Field(10.0, gt=0, le=300, description="to a complete request body")

    @field_validator("allowed_hosts")
    @classmethod
    def _v_hosts(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty list would answer no request: leave the key out for the default, "
                             "list the names clients use, or '*' for any")
        for i, h in enumerate(v or []):
            if h != "*" and _host_name(h) is None:
                raise ValueError(f"{h[:60]!r} (entry {i}) is not a host name or address (no scheme, no port)")
        return v


# ---------------------------------------------------------------- files, checked before run


def file_problems(web: WebSettings, base: Path) -> tuple[WebSettings, list[tuple[str, str]]]:
    """``web`` with its TLS paths made absolute (relative ones are beside ``base``), and what is
    wrong with the files: missing, not a regular file, unreadable, not PEM, key not matching."""
    if web.tls is None:
        return web, []
    tls = web.tls
    paths = {}
    for key in ("cert_file", "key_file"):
        p = Path(getattr(tls, key)).expanduser()
        paths[key] = p if p.is_absolute() else base / p
    tls = tls.model_copy(update={k: str(p) for k, p in paths.items()})
    web = web.model_copy(update={"tls": tls})
    problems: list[tuple[str, str]] = []
    marks = {"cert_file": b"-----BEGIN CERTIFICATE-----", "key_file": b"PRIVATE KEY-----"}
    for key, p in paths.items():
        where = f"agent.web.tls.{key}"
        try:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                problems.append((where, f"{p} is not a regular file"))
                continue
            with p.open("rb") as f:
                head = f.read(1 << 20)
        except FileNotFoundError:
            problems.append((where, f"{p}: no such file"))
            continue
        except OSError as exc:
            problems.append((where, f"cannot read {p}: {exc.strerror or exc}"))
            continue
        if marks[key] not in head:
            what = "a PEM certificate" if key == "cert_file" else "a PEM private key"
            problems.append((where, f"{p} is not {what}"))
    if not problems:
        try:
            tls_context(tls)
        except AgentError as exc:
            problems.append(("agent.web.tls.key_file", str(exc)))
    return web, problems


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """The server's TLS context; AgentError says why it cannot be made."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        # password: an encrypted key fails here instead of OpenSSL prompting on the terminal
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    except ssl.SSLError as exc:
        raise AgentError(f"cannot use {tls.cert_file} with {tls.key_file} "
                         f"(a key that is encrypted or not the certificate's?): {exc.reason or exc}") from None
    except OSError as exc:
        raise AgentError(f"cannot read {tls.cert_file} / {tls.key_file}: {exc.strerror or exc}") from None
    return ctx


# ---------------------------------------------------------------- Host


def _host_name(value: str) -> str | None:
    """The name in a Host header or an allowed_hosts entry, lower case, without port or final
    dot; IPv6 without brackets. None when it is not a plausible host."""
    v = value.strip().lower()
    if v.startswith("["):
        name, close, rest = v[1:].partition("]")
        if not close or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    if v.count(":") > 1:  # a bare IPv6 literal: allowed in the config, never valid in Host
        try:
            return str(ipaddress.IPv6Address(v))
        except ValueError:
            return None
    name, _, port = v.partition(":")
    if port and not re.fullmatch(r"\d{1,5}", port):
        return None
    name = name.rstrip(".")
    if not name or not re.fullmatch(r"[a-z0-9_](?:[a-z0-9_.\-]*[a-z0-9_])?", name):
        return None
    return name


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(web: WebSettings, listen_host: str) -> frozenset[str] | None:
    """The Host names answered (None: any), by the rule in the module docstring."""
    if web.allowed_hosts is not None:
        if "*" in web.allowed_hosts:
            return None
        # the loopback names always: a rebinding page's request carries its own domain, never
        # these, and a local scraper or operator addresses the agent by them
        return frozenset(n for n in map(_host_name, (*web.allowed_hosts, *LOOPBACK_NAMES)) if n)
    if _is_loopback(listen_host):
        return frozenset(n for n in map(_host_name, (*LOOPBACK_NAMES, listen_host)) if n)
    return None


# ---------------------------------------------------------------- basic auth


class Logins:
    """Checks basic-auth logins against bcrypt hashes, with exporter-toolkit's cache."""

    def __init__(self, auth: BasicAuthSettings) -> None:
        self.roles: dict[str, tuple[bytes, bool]] = {}  # user -> (hash, may write)
        for user, hashed in auth.read.items():
            self.roles[user] = (hashed.encode(), False)
        for user, hashed in auth.write.items():
            self.roles[user] = (hashed.encode(), True)
        # an unknown user is checked against the costliest hash: the same time as a known one
        self._dummy = max((h for h, _ in self.roles.values()), key=lambda h: int(h[4:6]), default=b"")
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._one_at_a_time: asyncio.Lock | None = None
        self.bcrypt_runs = 0  # how many bcrypt checks ran (the cache's effect, for tests and figures)

    @property
    def enabled(self) -> bool:
        return bool(self.roles)

    def _lookup(self, user: str) -> tuple[bytes, bool] | None:
        found = None
        given = user.encode()
        for name, entry in self.roles.items():  # every name compared, in constant time each
            if hmac.compare_digest(name.encode(), given):
                found = entry
        return found

    async def check(self, user: str, password: str) -> bool | None:
        """None: no such login; else whether the login may write."""
        entry = self._lookup(user)
        hashed, may_write = entry if entry is not None else (self._dummy, False)
        pw = password.encode()
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, pw))).digest()
        ok = self._cache.get(key)
        if ok is None:
            if self._one_at_a_time is None:
                self._one_at_a_time = asyncio.Lock()
            async with self._one_at_a_time:  # bcrypt is CPU-bound: one core at most
                ok = self._cache.get(key)  # the same login may have been checked meanwhile
                if ok is None:
                    self.bcrypt_runs += 1
                    match = await asyncio.to_thread(bcrypt.checkpw, pw[:BCRYPT_MAX_BYTES], hashed)
                    ok = match and entry is not None and len(pw) <= BCRYPT_MAX_BYTES
                    self._cache[key] = ok
                    while len(self._cache) > CACHE_SIZE:
                        self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return may_write if ok else None


LOGINS = web.AppKey("logins", Logins)
"""The app's :class:`Logins` (its ``bcrypt_runs`` is the cache's effect, for tests and figures)."""


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


# ---------------------------------------------------------------- the middleware


def _refuse(status: int, reason: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=f"{status} {reason}\n", headers=headers or None)


def guard_middleware(web_settings: WebSettings, listen_host: str, logins: Logins
                     ) -> Callable[..., Awaitable[web.StreamResponse]]:
    hosts = allowed_hosts(web_settings, listen_host)
    body_timeout = web_settings.body_timeout_s

    @web.middleware
    async def guard(req: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        host = req.headers.get("Host")
        if hosts is not None and host is not None and _host_name(host) not in hosts:
            return _refuse(421, "Misdirected Request: this agent does not answer to that Host name "
                                "(agent.web.allowed_hosts)")
        write = req.method not in READ_METHODS
        if logins.enabled:
            creds = _basic_credentials(req.headers.get("Authorization", ""))
            may_write = await logins.check(*creds) if creds else None
            if may_write is None:
                return _refuse(401, "Unauthorized", **{"WWW-Authenticate": 'Basic realm="signalpath", charset="UTF-8"'})
            if write and not may_write:
                return _refuse(403, "Forbidden: this needs a write user (agent.web.basic_auth.write)")
        if write:
            origin = req.headers.get("Origin")
            if origin is not None and (host is None or origin.partition("://")[2].lower() != host.lower()):
                return _refuse(403, "Forbidden: a cross-origin write")
            if req.body_exists:
                try:
                    async with asyncio.timeout(body_timeout):
                        await req.read()  # kept by aiohttp: the handler's read()/json() gets it
                except TimeoutError:
                    late = _refuse(408, "Request Timeout: the body did not arrive in time")
                    late.force_close()
                    return late
        resp = await handler(req)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    return guard


# ---------------------------------------------------------------- connections


class ProtocolLog:
    """The logger aiohttp's connection handler writes through (its ``logger=``).

    aiohttp logs a request it could not parse with ``logger.exception`` (a traceback) or, for
    a bad method on a first request, at debug. Those become one rate-limited line with the
    error's class — never the request's bytes, which may carry a credential. Anything else
    (a bug in a handler) keeps its traceback.
    """

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger

    def _malformed(self, args: tuple[Any, ...], exc_info: Any) -> bool:
        if not isinstance(exc_info, HttpProcessingError):
            return False
        remote = args[0] if args else "?"
        self._log.warning("malformed HTTP request from %s answered %d (%s)", remote, exc_info.code or 400,
                          type(exc_info).__name__)
        return True

    def exception(self, msg: str, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        if not self._malformed(args, exc_info):
            self._log.error(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: str, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        if not self._malformed(args, exc_info):
            self._log.debug(msg, *args, exc_info=exc_info, **kw)

    def __getattr__(self, name: str) -> Any:  # info, warning, error, isEnabledFor, ...
        return getattr(self._log, name)


def hide_server_banner() -> None:
    """No ``Server: Python/3.x aiohttp/3.x`` on any response.

    aiohttp sets the header from its module constant while it prepares every response,
    its own 400 pages for unparsable requests included, which no application hook reaches;
    the constant is the one seam. The agent answers ``Server: signalpath``, without a version.
    """
    web_response.SERVER_SOFTWARE = "signalpath"


def runner_options(web_settings: WebSettings) -> dict[str, Any]:
    """aiohttp server options: the header/idle limit, the unread-body linger, the one-line log."""
    lograte.install(("signalpath.api",))
    return {"keepalive_timeout": web_settings.header_timeout_s, "lingering_time": web_settings.body_timeout_s,
            "logger": ProtocolLog(), "access_log": None}


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite with the TLS handshake bounded by ``header_timeout_s`` (asyncio's default
    is 60 s, during which a silent client holds a descriptor)."""

    __slots__ = ("_handshake_timeout",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                 handshake_timeout: float) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        self._handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None)
        sockets = getattr(self._server, "sockets", None)
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def describe(web_settings: WebSettings, listen_host: str) -> None:
    """One line at start for each exposure the operator should know of."""
    secure = web_settings.tls is not None
    if allowed_hosts(web_settings, listen_host) is None and web_settings.allowed_hosts is None:
        log.info("Host header not checked: listening on %s (set agent.web.allowed_hosts to the names "
                 "clients use)", listen_host or "every address")
    if web_settings.basic_auth.read or web_settings.basic_auth.write:
        if not secure and not _is_loopback(listen_host):
            log.warning("basic auth without agent.web.tls: passwords cross the network in clear text")
    elif not _is_loopback(listen_host):
        log.info("the endpoint on %s needs no login (agent.web.basic_auth)", listen_host or "every address")


def hash_password(password: bytes, rounds: int = 12) -> str:
    """A bcrypt hash for ``agent.web.basic_auth``; ValueError for an empty or over-72-byte password."""
    if not password:
        raise ValueError("an empty password")
    if len(password) > BCRYPT_MAX_BYTES:
        raise ValueError(f"bcrypt reads at most {BCRYPT_MAX_BYTES} bytes of a password; this one has {len(password)}")
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds)).decode()


__all__ = ["LOGINS", "BasicAuthSettings", "Logins", "TlsSettings", "WebSettings", "allowed_hosts", "file_problems", "guard_middleware",
           "hash_password", "hide_server_banner", "runner_options", "tls_context"]
