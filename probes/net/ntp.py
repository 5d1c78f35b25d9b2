"""The agent's clock offset by NTP (RFC 5905; ntplib, one version-3 request): used by the
studio network probe (probes/network.py, ``studio.network.ntp_server``) and the latency
probe's clock rule (probes/latency.py, ``latency.clock.ntp_server``). Blocking: call it in
a worker thread. Never raises on a silent or unknown server: the reason comes back.
"""

from __future__ import annotations

import socket

from probes.base import HOST_NOT_RESOLVED

__all__ = ["ntp_offset"]


def ntp_offset(server: str, timeout: float) -> tuple[float | None, str | None]:
    """One NTP request (blocking): the local clock's offset from ``server`` in seconds."""
    import ntplib

    host, port = (server.rsplit(":", 1) + ["123"])[:2] if ":" in server else (server, "123")
    try:
        resp = ntplib.NTPClient().request(host, version=3, port=int(port), timeout=timeout)
    except socket.gaierror:
        return None, HOST_NOT_RESOLVED
    except (ntplib.NTPException, OSError) as exc:
        return None, "no answer" if "No response" in str(exc) else exc.__class__.__name__
    return float(resp.offset), None
