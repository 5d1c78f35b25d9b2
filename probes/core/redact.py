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

``redact_text`` does the same to every URL inside free text (library error messages and
log lines) and can also mask literal secrets (a stream key met outside a URL). In free text it
also masks what libraries print without a scheme:

- the query of a request path (``"POST /hook?token=… HTTP/1.1"``, urllib3 and aiohttp.access
  lines): every value, as in a URL;
- a credential-like parameter anywhere (``token=``, ``key=``, ``secret=``, ``password=``,
  ``auth=``, ``sig=``/``signature=``, ``X-Amz-*=``…: :data:`SECRET_PARAM_RE`);
- an ``Authorization``/``Proxy-Authorization``/``X-Api-Key``/``Cookie`` header's value and a
  ``Bearer`` credential (RFC 6750 §2.1 spelling).

With ``path=False`` every URL keeps only ``scheme://host[:port]`` (config errors: a webhook or
a mistyped RTMP URL may carry its token in the path). Neither function raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
KEYED_SCHEMES = frozenset({"rtmp", "rtmps", "rtmpt", "rtmpe", "rtmpte", "rtmpts", "srt"})
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
SECRET_PARAM_RE = re.compile(
    r"(?i)[A-Za-z0-9_.-]*(?:token|secret|passw(?:or)?d|pwd|auth|signature|credential|session|ticket|jwt)"
    r"[A-Za-z0-9_.-]*|(?:[A-Za-z0-9_.-]*[_.-])?(?:api|access|stream|private)?key(?:[_.-]?(?:pair[_.-]?)?id)?|"
    r"sig|hdnts|hdnea|policy|x-amz-[a-z0-9-]+|x-goog-[a-z0-9-]+")
"""Query/form parameter names whose value is a credential (CDN tokens: Akamai ``hdnts``, AWS
``X-Amz-Signature``/``X-Amz-Credential``, CloudFront ``Policy``/``Signature``/``Key-Pair-Id``)."""
_PARAM_RE = re.compile(r"(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]+)=([^&\s'\"<>;,)]+)")  # name=value; the name decides
_PATH_QUERY_RE = re.compile(r"(?<![A-Za-z0-9*])(/[^\s?#'\"<>]*)\?([^\s#'\"<>]+)")
_HEADER_RE = re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|cookie|set-cookie)"
                        r"(['\"]?\s*[:=,]\s*(?:b?['\"])?)((?:Bearer|Basic|Digest|Token|Negotiate)\s+)?[^'\"\s,;})\]]+")
_BEARER_RE = re.compile(r"\bBearer\s+[A-Za-z0-9\-._~+/]+=*")
_HEADERS = ("authorization", "api-key", "cookie", "auth-token")


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


def not_a_url(value: object, kind: str) -> str:
    """The error for a config value that should be a ``kind`` URL (e.g. ``"http(s)"``, ``"rtmp(s)://"``),
    safe to print: a value that parses as ``scheme://host`` is quoted as ``scheme://host[:port]``
    only; anything else is not quoted at all — without its ``scheme://`` a password
    (``user:pw@host``), a stream key in a path or a token cannot be told from the rest.

    >>> not_a_url("ftp://u:pw@files.example/k", "http(s)")
    "'ftp://***@files.example' is not an http(s) URL"
    >>> not_a_url("amuser:pw@127.0.0.1:9093", "http(s)")
    'not an http(s) URL (no scheme://host; the value is not shown: it may hold a secret)'
    """
    text = value.strip() if isinstance(value, str) else ""
    if _URL_RE.fullmatch(text) and urlsplit(text).hostname:
        return f"{redact_url(text, path=False)!r} is not an {kind} URL"
    return f"not an {kind} URL (no scheme://host; the value is not shown: it may hold a secret)"


def redact_text(text: str, secrets: Iterable[str] = (), *, path: bool = True) -> str:
    """``text`` with every literal in ``secrets`` masked, every URL in it redacted (``path=False``:
    shown as ``scheme://host[:port]``) and every credential met outside a URL masked (see the
    module docstring).

    >>> redact_text('urllib3: "POST /hook?token=abc&x=1 HTTP/1.1" 200; Authorization: Bearer xyz')
    'urllib3: "POST /hook?token=***&x=*** HTTP/1.1" 200; Authorization: Bearer ***'
    """
    if not isinstance(text, str):
        text = str(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    # each pass only where its marker is: most log lines have none and cost a few substring tests
    if "://" in text:
        text = _URL_RE.sub(lambda m: _redact_one(m.group(0), path=path), text)
    if "?" in text:
        text = _PATH_QUERY_RE.sub(lambda m: f"{m.group(1)}?{_mask_query(m.group(2))}", text)
    if "=" in text:
        text = _PARAM_RE.sub(lambda m: f"{m.group(1)}={MASK}" if SECRET_PARAM_RE.fullmatch(m.group(1)) else m.group(0),
                             text)
    lowered = text.lower()
    if any(h in lowered for h in _HEADERS):
        text = _HEADER_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    if "Bearer" in text:
        text = _BEARER_RE.sub(f"Bearer {MASK}", text)
    return text


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
    return urlunsplit((parts.scheme, netloc, shown, _mask_query(parts.query), ""))


def _mask_query(query: str) -> str:
    return "&".join(
        f"{item.partition('=')[0]}={MASK}" if "=" in item else MASK  # a bare item may be a token
        for item in query.split("&") if item
    )
