"""Secrets out of every URL and message that leaves a probe.

Metrics never carry URLs, but logs, errors, spans, status reasons and incidents may
mention one, and then only redacted. Stream keys and tokens ride in URLs
(``rtmp://host/app/KEY``, ``https://cdn/live.m3u8?token=…``, ``rtmp://user:pw@host/…``),
so anything that shows a URL shows ``redact_url(url)``:

- userinfo → ``***@``;
- every query value → ``***`` (keys are kept: they say what was there; a bare item
  ``?TOKEN`` is masked whole);
- the fragment is dropped;
- for RTMP-family and SRT URLs the last path segment — the stream key in
  ``rtmp://host[:port]/app[/inst]/KEY`` — becomes ``***``. A path of a single segment
  is the application name alone and is kept.

``redact_text`` does the same to every URL inside free text (library error messages)
and can also mask literal secrets (a stream key met outside a URL). Neither raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
KEYED_SCHEMES = frozenset({"rtmp", "rtmps", "rtmpt", "rtmpe", "rtmpte", "rtmpts", "srt"})
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def redact_url(url: str, *, path: bool = True) -> str:
    """``url`` safe to show (see the module docstring); ``path=False`` keeps only
    ``scheme://host[:port]`` (webhook URLs carry their token in the path).

    >>> redact_url("rtmp://user:pw@ingest.example:1935/live/sk-123?token=x")
    'rtmp://***@ingest.example:1935/live/***?token=***'
    >>> redact_url("https://cdn.example/live/main.m3u8?token=abc&v=1")
    'https://cdn.example/live/main.m3u8?token=***&v=***'

    Text that is not a single URL (an error message with URLs inside) goes through
    :func:`redact_text`.
    """
    if not isinstance(url, str):
        return "<not a URL>"
    stripped = url.strip()
    if not _URL_RE.fullmatch(stripped):
        return redact_text(url)
    return _redact_one(stripped, path=path)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted and every literal in ``secrets`` masked."""
    if not isinstance(text, str):
        text = str(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL_RE.sub(lambda m: _redact_one(m.group(0)), text)


def rtmp_stream_key(url: str) -> str | None:
    """The stream key of an RTMP URL (last of two or more path segments), else None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    segments = [s for s in parts.path.split("/") if s]
    return segments[-1] if parts.scheme.lower() in KEYED_SCHEMES and len(segments) >= 2 else None


def _redact_one(url: str, path: bool = True) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    if "@" in parts.netloc:
        netloc = f"{MASK}@{netloc}"
    if not path:
        return urlunsplit((parts.scheme, netloc, "", "", ""))
    shown = parts.path
    if parts.scheme.lower() in KEYED_SCHEMES:
        segments = shown.split("/")
        nonempty = [i for i, s in enumerate(segments) if s]
        if len(nonempty) >= 2:
            segments[nonempty[-1]] = MASK
            shown = "/".join(segments)
    query = "&".join(
        f"{item.partition('=')[0]}={MASK}" if "=" in item else MASK  # a bare item may be a token
        for item in parts.query.split("&") if item
    )
    return urlunsplit((parts.scheme, netloc, shown, query, ""))
