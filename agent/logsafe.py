"""No secret in a log line, whoever writes it (issue 15 item 5).

Our own code shows URLs through ``redact_url``, but libraries log what they are given: httpx
writes ``HTTP Request: POST http://am:PASSWORD@host/api/v2/alerts`` at INFO, urllib3 and
aiohttp.access write request lines with their query (``/hook?token=…``), a traceback may
quote a URL or a key. :func:`install` makes every log record safe before any handler sees
it: the message (``msg % args``), the traceback text and the stack text go through
:func:`probes.core.redact.redact_text` (URL userinfo, query values, RTMP stream keys, request
paths' queries, credential-like parameters, ``Authorization``/``Bearer`` values) with the
configured secrets (:func:`config_secrets`) masked verbatim as well.

How: a wrapper around the LogRecord factory (``logging.setLogRecordFactory``), not a handler
filter. A record is built only after its logger's level let it through (``Logger.isEnabledFor``
runs first), so a DEBUG line of a logger at INFO costs nothing; and every record of every
logger — httpx, httpcore, urllib3, aiohttp.*, aioice, aiortc, opentelemetry, ours — passes
through it, whichever handler then writes it: ``basicConfig``'s, pytest's caplog, one a library
or a test adds later. A handler filter would miss handlers added after it was installed, a
logger filter every record that only propagates to it. A record with nothing to mask is left
as it was (its ``msg`` and ``args`` untouched); one with something gets its redacted message as
``msg`` and no ``args``. ``exc_info`` stays for code that inspects it; the text every
``logging.Formatter`` prints (``exc_text``) is the redacted one.

Installed by ``signalpath run`` and ``preflight`` and by every :class:`agent.app.Agent` (library
use, tests); installing again adds that config's secrets. Logging is process-wide, so this is
too (like agent/lograte.py): the secrets of every config seen in the process are masked.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, SecretStr

from probes.core.redact import SECRET_PARAM_RE, redact_text, rtmp_stream_key

MIN_SECRET_LEN = 4
"""Shorter literals are not masked verbatim (a 1-3 character "secret" would mask digits and
words in every line); inside URLs and headers they are masked by position anyway."""
_SECRET_FIELDS = frozenset({"secret", "bearer_token", "token", "password", "key", "api_key", "stream_key"})
_NAME_FIELDS = frozenset({"name", "site", "stream", "component"})
_FORMATTER = logging.Formatter()
_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_installed = False


def install(secrets: Iterable[str] = ()) -> None:
    """Redact every log record from now on; ``secrets`` are masked verbatim as well (added to
    those of earlier calls). Idempotent: the factory is wrapped once."""
    global _secrets, _installed
    new = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LEN}
    with _lock:
        if not new <= _secrets:
            _secrets = _secrets | new
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            scrub(record)
            return record

        logging.setLogRecordFactory(factory)


def scrub(record: logging.LogRecord) -> None:
    """Redact ``record`` in place (see the module docstring); never raises."""
    secrets = _secrets
    try:
        message = record.getMessage()
    except Exception:  # a broken format: logging reports it when it emits; keep it as it is
        message = None
    if message is not None:
        clean = redact_text(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        try:
            record.exc_text = redact_text(_FORMATTER.formatException(record.exc_info), secrets)
        except Exception:  # a traceback that cannot be formatted: logging says so itself
            pass
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info, secrets)


def config_secrets(config: Any) -> set[str]:
    """Every secret a config holds, as literals to mask: ``SecretStr`` values, fields named like
    a secret (``secret``, ``bearer_token``, ``key``…), header values (and the credential after
    their scheme: ``Bearer X`` → ``X``), and in every URL the userinfo (and its base64, as a
    Basic header carries it), credential-like query values and the RTMP/SRT stream key.
    Values equal to a name (stream, site, component) are no secret worth masking: they are on
    every label already."""
    found: set[str] = set()
    names: set[str] = set()
    _walk(config, "", found, names)
    return {s for s in found if len(s) >= MIN_SECRET_LEN and s not in names}


def _walk(node: Any, field: str, found: set[str], names: set[str]) -> None:
    if isinstance(node, SecretStr):
        _add_value(node.get_secret_value(), found)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            _walk(getattr(node, name, None), name, found, names)
    elif isinstance(node, Mapping):
        for k, v in node.items():
            key = str(k)
            if field == "headers" and isinstance(v, str):
                _add_value(v, found)
            else:
                _walk(v, key, found, names)
    elif isinstance(node, (list, tuple, set, frozenset)):
        for v in node:
            _walk(v, field, found, names)
    elif isinstance(node, str):
        if field in _NAME_FIELDS:
            names.add(node)
        elif field.lower() in _SECRET_FIELDS:
            _add_value(node, found)
        elif "://" in node:
            _add_url(node, found)


def _add_value(value: str, found: set[str]) -> None:
    """A secret value; a header like ``Bearer X`` also gives ``X``."""
    found.add(value)
    scheme, _, credential = value.partition(" ")
    if credential and scheme.isalpha():
        found.add(credential.strip())


def _add_url(url: str, found: set[str]) -> None:
    try:
        parts = urlsplit(url.strip())
        user, password = parts.username, parts.password
    except ValueError:
        return
    if user is not None:
        user, pw = unquote(user), unquote(password) if password is not None else None
        if pw:
            found.add(pw)
            found.add(base64.b64encode(f"{user}:{pw}".encode()).decode())
        elif user:
            found.add(user)  # a token given as the user (https://TOKEN@host)
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if SECRET_PARAM_RE.fullmatch(name):
            found.add(value)
    key = rtmp_stream_key(url.strip())
    if key:
        found.add(unquote(key))

