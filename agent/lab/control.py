"""Client of the lab's control API (stdlib only; used by ``signalpath lab ...``).

Every function takes the control URL (e.g. ``http://127.0.0.1:9330``) and raises
:class:`LabControlError` with the server's message (HTTP 400/404) or with a plain
"cannot reach the lab" message; the URL in messages never carries credentials.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from probes.core.redact import redact_url

from .errors import LabControlError

DEFAULT_CONTROL_PORT = 9330
DEFAULT_CONTROL_URL = f"http://127.0.0.1:{DEFAULT_CONTROL_PORT}"
ENV_CONTROL_URL = "SIGNALPATH_LAB_CONTROL"


def default_control_url() -> str:
    return os.environ.get(ENV_CONTROL_URL) or DEFAULT_CONTROL_URL


def _call(method: str, url: str, body: Any = None, timeout: float = 5.0) -> Any:
    if not url.startswith(("http://", "https://")):
        raise LabControlError(f"control URL {url!r} is not an http(s) URL")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        raise LabControlError(str(message), status=exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LabControlError(
            f"cannot reach the lab control API at {redact_url(url)} ({reason}); is `signalpath lab run` or "
            f"`signalpath demo` running? Both listen on port {DEFAULT_CONTROL_PORT} unless it was taken; "
            f"otherwise pass the 'lab control' URL they print as --control URL (or set ${ENV_CONTROL_URL})") from None


def inject(control_url: str, name: str, target: str | None = None, for_s: float | None = None,
           params: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Start a fault; returns its record (id, started_at, ends_at, ...)."""
    body: dict[str, Any] = {"name": name}
    if target is not None:
        body["target"] = target
    if for_s is not None:
        body["for_s"] = for_s
    if params:
        body["params"] = params
    return _call("POST", control_url.rstrip("/") + "/faults", body, timeout)


def list_faults(control_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``{"now", "active": [...], "history": [...]}``."""
    return _call("GET", control_url.rstrip("/") + "/faults", timeout=timeout)


def clear(control_url: str, fault_id: int | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
    """End one fault (by id) or every active fault; returns the ended records."""
    if fault_id is None:
        return _call("DELETE", control_url.rstrip("/") + "/faults", timeout=timeout)["cleared"]
    return [_call("DELETE", control_url.rstrip("/") + f"/faults/{int(fault_id)}", timeout=timeout)]


def truth(control_url: str, timeout: float = 5.0) -> dict[str, Any]:
    return _call("GET", control_url.rstrip("/") + "/truth", timeout=timeout)


def catalog(control_url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    return _call("GET", control_url.rstrip("/") + "/catalog", timeout=timeout)
