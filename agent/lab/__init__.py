"""The embedded live lab: a whole live pipeline in one process on loopback, with faults.

studio (synthetic camera + tone, H.264/AAC via PyAV) → ingest → transcoder (ladder of
renditions, 2-s segments, IDRs aligned) → packager + origin (HLS over aiohttp) → CDN
edges (caching proxies) — each stage can be broken on purpose, and the lab reports
the ground truth (fault start/end times, true per-stage delays) over a control API.

Ingest choice: an in-process hand-off, not RTMP. The studio encoder's packets go
through :class:`agent.lab.ingest.Ingest`, an in-memory queue, to the transcoder. A
real RTMP server in Python would cost CPU the 50 %-of-one-core budget cannot spare
and adds nothing the tests need; the real-protocol path is covered by the separate
nginx-rtmp + ffmpeg lab. The hand-off still fails the ways an ingest does: it drops
the publisher (``ingest_drop``), adds latency (``ingest_latency``), starves the
transcoder (``ingest_starve``), and shows a stat page (``GET /ingest/stat`` on the
control port) the way nginx-rtmp's ``/stat`` does.

URLs (each server on its own loopback port, port 0 by default):

- origin master ``/live/<stream>.m3u8``, media ``/live/<stream>/<rendition>.m3u8``,
  segment ``/live/<stream>/<rendition>/<seq>.ts`` (the same paths on every edge);
- control API: see :mod:`agent.lab.api`.

Modules: ``config`` (LabConfig), ``faults`` (catalog + FaultBook), ``studio``,
``ingest``, ``transcoder``, ``packager``, ``servers`` (origin, edges), ``api``
(control server), ``lab`` (Lab), ``control`` (client), ``cli``, ``tour``.
"""

from __future__ import annotations

from .config import LabConfig, RenditionConfig
from .errors import FaultNotFound, FaultRequestError, LabControlError, LabError
from .faults import CATALOG, FaultRecord
from .lab import Lab

__all__ = [
    "CATALOG", "FaultNotFound", "FaultRecord", "FaultRequestError", "Lab", "LabConfig",
    "LabControlError", "LabError", "RenditionConfig",
]
