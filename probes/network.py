"""Studio network probe: can this uplink carry the stream to the ingest, on time?

- RTT and jitter to the ingest: ``rtt_samples`` TCP connects to the ingest host:port
  (the SYN / SYN-ACK round trip; no bytes sent), ``rtt_spacing_s`` apart. RTT is the
  median; jitter the mean absolute difference of consecutive samples (RFC 3550 §6.4.1's
  interarrival-jitter idea applied to RTT samples). Colours: RTT green < 100 ms, amber
  100-200 ms, red >= 200 ms (XSplit ingest colours); jitter < 30 ms is a good network
  (Twilio preflight "optimal").
- Uplink throughput: one HTTP POST of ``upload_bytes`` to ``upload_url`` (a speed-test
  endpoint of your ingest provider, or the lab's), timed from the first byte sent to
  the response; needed: >= 1.5 x the target bitrate (THRESHOLDS.md "uplink headroom",
  common encoder guidance). Below 1 x fails (the stream cannot keep up), below 1.5 x warns.
- Clock offset by NTP (ntplib, one request to ``ntp_server``): |offset| >= 100 ms warns
  (THRESHOLDS.md "clock offset": sub-second latency figures need it; chrony keeps a few
  ms over the internet), >= 1 s fails (timestamps and latency figures are meaningless).

Every measurement is one attempt (STYLE.md 4); the probe reports, never retries.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field

from probes.base import HOST_NOT_RESOLVED, Evidence, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.config import StrictModel
from probes.core.studio import STAGE, Finding, Status, evidence_from, grade
from probes.core.thresholds import CLOCK_OFFSET_MAX_S, RTT_FAULT_S
from probes.faults import Fault
from probes.net.ntp import ntp_offset

COMPONENT = "network"


class NetworkConfig(StrictModel):
    """``studio.network``: RTT/jitter to the ingest, uplink throughput, NTP offset."""

    ingest: str | None = Field(None, description="host:port (or an rtmp://, srt://, http(s):// URL) of the ingest")
    rtt_samples: int = Field(5, ge=1, le=100)
    rtt_spacing_s: float = Field(0.1, ge=0, le=10)
    rtt_warn_s: float = Field(0.100, gt=0, description="XSplit ingest colours: amber from 100 ms")
    rtt_fail_s: float = Field(RTT_FAULT_S, gt=0, description="XSplit ingest colours: red from 200 ms")
    jitter_warn_s: float = Field(0.030, gt=0, description="Twilio preflight 'optimal': jitter < 30 ms")
    upload_url: str | None = Field(None, description="HTTP(S) endpoint accepting a POST body (speed test)")
    upload_bytes: int = Field(2_000_000, ge=10_000, le=200_000_000)
    target_bitrate: int = Field(6_000_000, ge=10_000, description="the stream's bitrate, bits/s")
    headroom: float = Field(1.5, ge=1.0, description="uplink needed = headroom x target bitrate")
    ntp_server: str | None = Field(None, description="host or host:port of an NTP server")
    clock_warn_s: float = Field(CLOCK_OFFSET_MAX_S, gt=0, description="THRESHOLDS.md clock offset: < 100 ms")
    clock_fail_s: float = Field(1.0, gt=0)
    connect_timeout_s: float = Field(2.0, gt=0, le=30)


def _host_port(spec: str) -> tuple[str, int]:
    if "://" in spec:
        u = urlsplit(spec)
        default = {"rtmp": 1935, "rtmps": 443, "http": 80, "https": 443, "srt": 9000}.get(u.scheme, 0)
        return u.hostname or "", u.port or default
    host, _, port = spec.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(slots=True)
class RttResult:
    samples: list[float]
    failures: int
    error: str | None = None

    @property
    def rtt(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def jitter(self) -> float | None:
        s = self.samples
        if len(s) < 2:
            return None
        return sum(abs(b - a) for a, b in itertools.pairwise(s)) / (len(s) - 1)


async def tcp_rtt(host: str, port: int, n: int, spacing: float, timeout: float,
                  clock=time.perf_counter) -> RttResult:
    """``n`` TCP connects; each connect's duration is one RTT sample."""
    out = RttResult([], 0)
    for i in range(n):
        if i and spacing:
            await asyncio.sleep(spacing)
        t0 = clock()
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, port)
        except (TimeoutError, OSError) as exc:
            out.failures += 1
            out.error = "timed out" if isinstance(exc, asyncio.TimeoutError) else (
                "connection refused" if isinstance(exc, ConnectionRefusedError) else
                HOST_NOT_RESOLVED if isinstance(exc, socket.gaierror) else exc.__class__.__name__)
            continue
        out.samples.append(clock() - t0)
        writer.close()
        try:
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            pass
    return out


async def upload_rate(url: str, nbytes: int, timeout: float, session: aiohttp.ClientSession | None = None
                      ) -> tuple[float | None, str | None]:
    """POST ``nbytes`` of incompressible data; bits/s from first byte to response, or an error."""
    body = os.urandom(nbytes)
    own = session is None
    s = session or aiohttp.ClientSession()
    try:
        t0 = time.perf_counter()
        async with s.post(url, data=body, timeout=aiohttp.ClientTimeout(total=timeout),
                          headers={"Content-Type": "application/octet-stream"}) as resp:
            await resp.read()
            dt = time.perf_counter() - t0
            if resp.status >= 400:
                return None, f"HTTP {resp.status}"
        return nbytes * 8 / max(dt, 1e-6), None
    except TimeoutError:
        return None, "timed out"
    except aiohttp.ClientError as exc:
        if isinstance(getattr(exc, "os_error", None), socket.gaierror):
            return None, HOST_NOT_RESOLVED
        return None, exc.__class__.__name__
    finally:
        if own:
            await s.close()


# ------------------------------------------------------------------ assessment (pure)


def assess_rtt(r: RttResult, cfg: NetworkConfig, where: str) -> list[Finding]:
    if r.rtt is None:
        return [Finding("network.rtt", COMPONENT, Status.FAIL, "Ingest reachable", f"no connection ({r.error})",
                        "TCP connect to the ingest", f"config studio.network.ingest ({where})",
                        f"{HOST_NOT_RESOLVED}: check the ingest address {where} and the DNS settings"
                        if r.error == HOST_NOT_RESOLVED else
                        f"the ingest {where} does not answer: check the address, the firewall and the uplink",
                        Fault.UNREACHABLE)]
    rtt, jit = r.rtt, r.jitter
    st = grade(rtt, cfg.rtt_warn_s, cfg.rtt_fail_s)
    out = [Finding("network.rtt", COMPONENT, st, "Round trip to the ingest", f"{rtt * 1000:.1f} ms",
                   f"< {cfg.rtt_warn_s * 1000:.0f} ms", "XSplit ingest colours (green < 100 ms, red >= 200 ms)",
                   f"pick a closer ingest server or a wired uplink: {rtt * 1000:.0f} ms round trip"
                   if st is not Status.PASS else "", Fault.RTT_HIGH if st is not Status.PASS else None, rtt,
                   cfg.rtt_warn_s, {"rtt_seconds": rtt, "rtt_failures": float(r.failures)})]
    if r.failures and st is Status.PASS:
        out[0].status = Status.WARN
        out[0].fault = Fault.PACKET_LOSS
        out[0].measured += f", {r.failures} of {r.failures + len(r.samples)} connects failed"
        out[0].fix = "some connections to the ingest failed: check the uplink for loss"
    if jit is not None:
        st = grade(jit, cfg.jitter_warn_s, None)
        out.append(Finding("network.jitter", COMPONENT, st, "Jitter to the ingest", f"{jit * 1000:.1f} ms",
                           f"< {cfg.jitter_warn_s * 1000:.0f} ms", "Twilio preflight 'optimal' (jitter < 30 ms)",
                           "the uplink is unsteady: use a wired connection, stop other traffic"
                           if st is not Status.PASS else "", Fault.JITTER_HIGH if st is not Status.PASS else None,
                           jit, cfg.jitter_warn_s, {"jitter_seconds": jit}))
    return out


def assess_uplink(bps: float | None, error: str | None, cfg: NetworkConfig) -> Finding:
    need = cfg.headroom * cfg.target_bitrate
    src = f"{cfg.headroom:g} x the target bitrate (common encoder guidance)"
    if bps is None:
        return Finding("network.uplink", COMPONENT, Status.FAIL, "Uplink throughput", f"not measured ({error})",
                       f">= {need / 1e6:.1f} Mbit/s", src,
                       "the speed-test upload failed: check studio.network.upload_url and the uplink", Fault.UPLINK_LOW)
    st = grade(bps, need, cfg.target_bitrate, higher_is_worse=False)
    fix = ""
    if st is not Status.PASS:
        fix = (f"close other uploads or lower the bitrate: {bps / 1e6:.1f} Mbit/s measured, "
               f"{need / 1e6:.1f} Mbit/s needed")
    return Finding("network.uplink", COMPONENT, st, "Uplink throughput", f"{bps / 1e6:.1f} Mbit/s",
                   f">= {need / 1e6:.1f} Mbit/s", src, fix, Fault.UPLINK_LOW if st is not Status.PASS else None,
                   bps, need, {"uplink_bits_per_second": bps})


def assess_clock(offset: float | None, error: str | None, cfg: NetworkConfig) -> Finding:
    src = "THRESHOLDS.md clock offset (< 100 ms; chrony documentation)"
    if offset is None:
        return Finding("network.clock", COMPONENT, Status.WARN, "Clock offset (NTP)", f"not measured ({error})",
                       f"< {cfg.clock_warn_s * 1000:.0f} ms", src,
                       "the NTP server does not answer: check studio.network.ntp_server and UDP port 123",
                       Fault.CLOCK_OFFSET)
    st = grade(abs(offset), cfg.clock_warn_s, cfg.clock_fail_s)
    return Finding("network.clock", COMPONENT, st, "Clock offset (NTP)", f"{offset * 1000:+.1f} ms",
                   f"within ±{cfg.clock_warn_s * 1000:.0f} ms", src,
                   f"sync the clock (enable chrony/NTP): off by {offset * 1000:+.0f} ms"
                   if st is not Status.PASS else "", Fault.CLOCK_OFFSET if st is not Status.PASS else None,
                   offset, cfg.clock_warn_s, {"clock_offset_seconds": offset})


async def measure(cfg: NetworkConfig, session: aiohttp.ClientSession | None = None
                  ) -> tuple[list[Finding], dict[str, float]]:
    findings: list[Finding] = []
    values: dict[str, float] = {}
    if cfg.ingest:
        host, port = _host_port(cfg.ingest)
        r = await tcp_rtt(host, port, cfg.rtt_samples, cfg.rtt_spacing_s, cfg.connect_timeout_s)
        findings += assess_rtt(r, cfg, f"{host}:{port}")
        if r.rtt is not None:
            values["rtt"] = r.rtt
        if r.jitter is not None:
            values["jitter"] = r.jitter
    if cfg.upload_url:
        bps, err = await upload_rate(cfg.upload_url, cfg.upload_bytes, max(5.0, cfg.connect_timeout_s * 5), session)
        findings.append(assess_uplink(bps, err, cfg))
        if bps is not None:
            values["uplink"] = bps
    if cfg.ntp_server:
        off, err = await asyncio.to_thread(ntp_offset, cfg.ntp_server, cfg.connect_timeout_s)
        findings.append(assess_clock(off, err, cfg))
        if off is not None:
            values["clock"] = off
    return findings, values


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """Network checks; evidence ``studio``/``network``."""
    cfg: NetworkConfig = target.config
    findings, v = await measure(cfg)
    lab = {"stream": target.stream, "stage": STAGE, "component": COMPONENT}
    names = {"rtt": "signalpath_network_rtt_seconds", "jitter": "signalpath_network_jitter_seconds",
             "uplink": "signalpath_uplink_bits_per_second", "clock": "signalpath_clock_offset_seconds"}
    samples = [Sample(names[k], lab, x) for k, x in v.items()]
    ev = evidence_from(findings, COMPONENT) if findings else Evidence(STAGE, COMPONENT, State.UNKNOWN, None,
                                                                      "nothing configured")
    return ProbeResult(None, ev.detail, samples, [ev], figures={"findings": findings})


__all__ = ["NetworkConfig", "RttResult", "assess_clock", "assess_rtt", "assess_uplink", "measure", "probe",
           "tcp_rtt", "upload_rate"]
