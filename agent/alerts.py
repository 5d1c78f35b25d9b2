"""Alert sinks: incident events out to a signed webhook and to Prometheus Alertmanager.

Every sink owns a bounded queue and one worker task. ``submit(event)`` is synchronous
and O(1): probing and localization never wait on an alert receiver. When the queue is
full the oldest event is dropped and counted (``dropped``), because the newest state of
an incident is what the people on shift need.

Delivery: one POST per event with a per-attempt timeout; a network error, 408, 429 or
5xx is retried with exponential backoff (``backoff_initial_s * 2**n`` capped at
``backoff_max_s``, with jitter) up to ``max_attempts``; any other 4xx is final.

- :class:`WebhookSink`: JSON body ``{"version": "1", "event", "site", "incident"}`` (the
  incident as in ``GET /api/v1/incidents``), signed with
  ``X-Signalpath-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` (the GitHub
  webhook convention), ``X-Signalpath-Event`` and a ``X-Signalpath-Delivery`` id, one per
  notification (incident, event, severity): retries and restarts repeat it, so a receiver can
  de-duplicate. ``reason`` is set when the agent, not the evidence, closed it ("removed from config").
- :class:`AlertmanagerSink`: Alertmanager API v2 ``POST /api/v2/alerts``; firing alerts
  carry ``startsAt`` and are re-sent every ``resend_interval_s`` (Alertmanager resolves
  an alert it has not heard of for ``resolve_timeout``, default 5 min), a resolved
  incident is sent once with ``endsAt``. Labels: alertname, stream, stage, component,
  fault, severity, site; annotations: summary, runbook, evidence, incident_id (and reason).

Across restarts: each sink has a stable :attr:`AlertSink.key` (its kind and a digest of its
URL, never the URL) and reports every delivered event to ``on_delivered``; the agent keeps
that in its incident store and, at start, sends a sink only what it has not been told
(agent/incident_sink.py). Alertmanager's firing alerts are re-asserted at start and then
every ``resend_interval_s`` (:meth:`AlertSink.restore_firing`), as Prometheus does.

Lifecycle (STYLE.md 10): ``await start()`` creates the client and the worker;
``await stop()`` lets the worker drain for at most ``drain_timeout_s``, then cancels and
awaits it and closes the client. URLs may hold tokens: logs name the host only.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import Field, SecretStr, field_validator

from agent.localize import Incident, IncidentEvent, rfc3339
from probes.core.config import StrictModel
from probes.core.redact import not_a_url, redact_url

log = logging.getLogger("signalpath.alerts")

SIGNATURE_HEADER = "X-Signalpath-Signature"


def _check_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(not_a_url(v, "http(s)"))
    return v


def _where(url: str) -> str:
    """scheme://host[:port] only: a webhook URL carries its token in the path."""
    return redact_url(url, path=False)


def split_userinfo(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``url`` without its ``user:password@`` and that userinfo as Basic auth (RFC 7617), so the
    password never sits in a URL a library may log (httpx logs every request's URL at INFO)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host)), httpx.BasicAuth(unquote(parts.username or ""),
                                                                    unquote(parts.password or ""))


class _SinkSettings(StrictModel):
    url: str
    timeout_s: float = Field(5.0, gt=0, le=60, description="per attempt")
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=600)
    queue_size: int = Field(1000, ge=1, le=100_000)

    _v_url = field_validator("url")(classmethod(lambda cls, v: _check_url(v)))


class WebhookSettings(_SinkSettings):
    """YAML ``alerts.webhooks[]``; put the secret in the environment: ``secret: "${HOOK_SECRET}"``."""

    secret: SecretStr


class AlertmanagerSettings(_SinkSettings):
    """YAML ``alerts.alertmanagers[]``: ``url`` is the base, e.g. ``http://127.0.0.1:9093``."""

    resend_interval_s: float = Field(60.0, gt=0, le=3600)
    alertname: str = "SignalpathIncident"


class AlertSettings(StrictModel):
    """YAML ``alerts:``."""

    webhooks: list[WebhookSettings] = Field(default_factory=list)
    alertmanagers: list[AlertmanagerSettings] = Field(default_factory=list)


class _Retry(Exception):
    """A delivery attempt failed in a way worth retrying."""


class _Final(Exception):
    """A delivery attempt failed for good (e.g. HTTP 400)."""


def _check_status(resp: httpx.Response) -> None:
    code = resp.status_code
    if 200 <= code < 300:
        return
    if code in (408, 429) or code >= 500:
        raise _Retry(f"HTTP {code}")
    raise _Final(f"HTTP {code}")


def notification_id(event: IncidentEvent) -> str:
    """One id per notification (incident, event, severity), the same in every run."""
    inc = event.incident
    return hashlib.sha256(f"{inc.id}/{event.kind}/{inc.severity}".encode()).hexdigest()[:32]


class AlertSink:
    """A bounded queue, one worker, retries with backoff. Subclasses implement ``_deliver``."""

    kind = "sink"
    reasserts_firing = False
    """True for a receiver that forgets a firing alert it is not told again (Alertmanager)."""

    def __init__(self, settings: _SinkSettings, *, site: str = "") -> None:
        self.settings = settings
        self.site = site
        self._queue: collections.deque[IncidentEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self.on_delivered: Callable[[AlertSink, IncidentEvent], None] | None = None
        """Called on the event loop after each event this sink delivered."""

    @property
    def key(self) -> str:
        """A stable name for this sink in the incident store: its kind and a digest of its URL."""
        return f"{self.kind}:{hashlib.sha256(self.settings.url.encode()).hexdigest()[:16]}"

    def restore_firing(self, incidents: Iterable[Incident]) -> None:
        """Incidents still open at start; a sink that needs firing alerts re-asserted takes them."""

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        # userinfo travels as httpx auth, not in the URL httpx logs ("HTTP Request: POST <url>")
        self._client = httpx.AsyncClient(timeout=self.settings.timeout_s, follow_redirects=False,
                                         auth=split_userinfo(self.settings.url)[1])
        self._task = asyncio.create_task(self._run(), name=f"alerts-{self.kind}")

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        if task is not None:
            try:
                async with asyncio.timeout(drain_timeout_s):
                    await asyncio.shield(task)
            except (TimeoutError, asyncio.CancelledError):
                pass
            if not task.done():
                task.cancel()
                try:
                    async with asyncio.timeout(5.0):
                        await task
                except (TimeoutError, asyncio.CancelledError):
                    pass
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- intake ----------------------------------------------------------------

    def submit(self, event: IncidentEvent) -> None:
        """Queue one event; never blocks. A full queue drops its oldest event."""
        if len(self._queue) >= self.settings.queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        self._wake.set()

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client of a started sink (deliveries run only between start and stop)."""
        if self._client is None:
            raise RuntimeError(f"the {self.kind} sink is not started")
        return self._client

    @property
    def pending(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "retries": self.retries, "pending": self.pending}

    # -- worker ----------------------------------------------------------------

    def _next_wakeup(self) -> float | None:
        """Seconds until periodic work is due (None: only events wake the worker)."""
        return None

    async def _periodic(self) -> None:
        """Periodic work (Alertmanager re-sends firing alerts)."""

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                timeout = self._next_wakeup()
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    await self._periodic()
                continue
            event = self._queue.popleft()
            if await self._send_with_retries(functools.partial(self._deliver, event),
                                             what=f"{event.kind} {event.incident.id}"):
                if self.on_delivered is not None:
                    self.on_delivered(self, event)

    async def _send_with_retries(self, attempt_fn, *, what: str) -> bool:
        s = self.settings
        for attempt in range(1, s.max_attempts + 1):
            try:
                await attempt_fn()
                self.sent += 1
                return True
            except _Final as exc:
                log.warning("alert %s to %s refused: %s", what, _where(s.url), exc)
                break
            except (_Retry, httpx.HTTPError) as exc:
                reason = exc if isinstance(exc, _Retry) else type(exc).__name__
                if attempt == s.max_attempts or self._stopping:
                    log.warning("alert %s to %s failed after %d attempts: %s", what, _where(s.url), attempt, reason)
                    break
                self.retries += 1
                delay = min(s.backoff_max_s, s.backoff_initial_s * 2 ** (attempt - 1))
                delay = delay / 2 + random.uniform(0, delay / 2)
                self._wake.clear()
                try:  # stop() interrupts a backoff wait
                    async with asyncio.timeout(delay):
                        await self._wait_stopping()
                except TimeoutError:
                    pass
        self.failed += 1
        return False

    async def _wait_stopping(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _deliver(self, event: IncidentEvent) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class WebhookSink(AlertSink):
    """Signed JSON webhook (see the module docstring)."""

    kind = "webhook"

    def __init__(self, settings: WebhookSettings, *, site: str = "") -> None:
        super().__init__(settings, site=site)
        self._secret = settings.secret.get_secret_value().encode()

    def body(self, event: IncidentEvent) -> bytes:
        doc: dict[str, Any] = {"version": "1", "event": event.kind, "site": self.site,
                               "incident": event.incident.to_api()}
        if event.reason:
            doc["reason"] = event.reason
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def signature(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    async def _deliver(self, event: IncidentEvent) -> None:
        body = self.body(event)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.signature(body),
            "X-Signalpath-Event": event.kind,
            "X-Signalpath-Delivery": notification_id(event),
            "User-Agent": "signalpath",
        }
        resp = await self.client.post(split_userinfo(self.settings.url)[0], content=body, headers=headers)
        _check_status(resp)


class AlertmanagerSink(AlertSink):
    """Alertmanager API v2 client (see the module docstring)."""

    kind = "alertmanager"
    reasserts_firing = True
    settings: AlertmanagerSettings

    def __init__(self, settings: AlertmanagerSettings, *, site: str = "", clock=time.time, monotonic=time.monotonic) -> None:
        super().__init__(settings, site=site)
        self._firing: dict[str, dict[str, Any]] = {}
        self._labels: dict[str, dict[str, str]] = {}
        self._clock = clock
        self._monotonic = monotonic
        self._next_resend = monotonic() + settings.resend_interval_s
        self._endpoint = split_userinfo(settings.url)[0].rstrip("/") + "/api/v2/alerts"

    def alert(self, event: IncidentEvent) -> dict[str, Any]:
        inc = event.incident
        labels = {
            "alertname": self.settings.alertname,
            "stream": inc.stream,
            "stage": inc.stage,
            "component": inc.component,
            "fault": inc.fault,
            "severity": inc.severity,
            "site": self.site,
        }
        doc: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": inc.summary,
                "runbook": inc.runbook,
                "evidence": "\n".join(inc.evidence[:20]),
                "incident_id": inc.id,
                **({"reason": event.reason} if event.reason else {}),
            },
            "startsAt": rfc3339(inc.started_at),
        }
        if inc.resolved_at is not None:
            # endsAt must not precede startsAt; a resolution is "now" at the latest
            doc["endsAt"] = rfc3339(max(inc.started_at, min(inc.resolved_at, self._clock())))
        return doc

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        resp = await self.client.post(self._endpoint, json=alerts)
        _check_status(resp)

    async def _deliver(self, event: IncidentEvent) -> None:
        inc = event.incident
        doc = self.alert(event)
        batch = [doc]
        old = self._labels.get(inc.id)
        if old is not None and old != doc["labels"]:
            # the incident changed fault/severity: end the alert under its old labels
            batch.append({"labels": old, "annotations": doc["annotations"], "startsAt": doc["startsAt"],
                          "endsAt": rfc3339(max(inc.started_at, self._clock()))})
        await self._post(batch)
        if inc.resolved_at is None:
            self._firing[inc.id] = doc
            self._labels[inc.id] = doc["labels"]
        else:
            self._firing.pop(inc.id, None)
            self._labels.pop(inc.id, None)

    def restore_firing(self, incidents: Iterable[Incident]) -> None:
        """Re-assert what is still open now (Alertmanager resolves what it has not heard of for
        ``resolve_timeout``; the agent may have been down longer), then every ``resend_interval_s``."""
        for inc in incidents:
            if inc.resolved_at is None:
                doc = self.alert(IncidentEvent("updated", inc))
                self._firing[inc.id] = doc
                self._labels[inc.id] = doc["labels"]
        if self._firing:
            self._next_resend = self._monotonic()
            self._wake.set()

    def _next_wakeup(self) -> float | None:
        return max(0.0, self._next_resend - self._monotonic())

    async def _periodic(self) -> None:
        self._next_resend = self._monotonic() + self.settings.resend_interval_s
        if not self._firing:
            return
        batch = list(self._firing.values())
        await self._send_with_retries(lambda: self._post(batch), what=f"re-send of {len(batch)} firing alerts")


class AlertDispatcher:
    """Fans events out to every sink; one lifecycle for all of them."""

    def __init__(self, sinks: Iterable[AlertSink]) -> None:
        self.sinks = list(sinks)

    @classmethod
    def from_settings(cls, settings: AlertSettings, *, site: str) -> AlertDispatcher:
        sinks: list[AlertSink] = [WebhookSink(w, site=site) for w in settings.webhooks]
        sinks += [AlertmanagerSink(a, site=site) for a in settings.alertmanagers]
        return cls(sinks)

    def submit(self, event: IncidentEvent) -> None:
        for sink in self.sinks:
            sink.submit(event)

    def submit_all(self, events: Iterable[IncidentEvent]) -> None:
        for e in events:
            self.submit(e)

    def restore_firing(self, incidents: Iterable[Incident]) -> None:
        """Incidents still open at start, for the sinks that re-assert firing alerts."""
        incidents = list(incidents)
        for sink in self.sinks:
            sink.restore_firing(incidents)

    def on_delivered(self, callback: Callable[[AlertSink, IncidentEvent], None]) -> None:
        """``callback(sink, event)`` after each event a sink delivered."""
        for sink in self.sinks:
            sink.on_delivered = callback

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        await asyncio.gather(*(s.stop(drain_timeout_s) for s in self.sinks))
