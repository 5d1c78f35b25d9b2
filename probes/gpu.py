"""GPU probe (NVIDIA, via NVML / nvidia-ml-py): is the GPU encoder keeping up?

Per GPU: utilization (SM busy, ``nvmlDeviceGetUtilizationRates``), encoder utilization
(NVENC, ``nvmlDeviceGetEncoderUtilization`` → percent and its sampling period in µs),
encoder sessions (``nvmlDeviceGetEncoderSessions``), memory used/total (bytes) and core
temperature (°C). No NVML (no driver, no library, no GPU) is the ``unavailable`` state:
evidence UNKNOWN and a ``skip`` finding, never a probe failure. A query NVML answers
with an error (``NVML_ERROR_NOT_SUPPORTED``, code 3, e.g. the fan of a data-centre GPU)
leaves that one figure out.

Thresholds: encoder utilization >= 90 % warns, >= 98 % fails (NVENC saturated: frames
queue and the encoder drops them; NVIDIA Video Codec SDK application note — NVENC
throughput is fixed per chip, so near 100 % means no headroom); GPU utilization >= 95 %
warns (the 3D/compute load of the production software can starve the encoder);
temperature >= the slowdown limit (else 85 °C) warns (clocks throttle there, NVML
``NVML_TEMPERATURE_THRESHOLD_SLOWDOWN``); memory used >= 95 % warns.

Backend seam (STYLE.md 12): :class:`NvmlBackend` talks to the driver;
:class:`RecordedBackend` replays ``tests/fixtures/nvml-h200.json`` (recorded on a real
H200, driver 580: snapshots of the same queries, NVML errors kept as
``{"nvml_error": "Not Supported", "code": 3}``). Both return :class:`GpuReading` s.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field

from probes.base import Evidence, ProbeContext, ProbeResult, ProbeTarget, Sample, State
from probes.core.config import StrictModel
from probes.core.studio import STAGE, Finding, Status, evidence_from, grade
from probes.faults import Fault


class GpuConfig(StrictModel):
    """``studio.gpu``: GPU checks; ``recorded`` replays a recorded NVML file (tests)."""

    required: bool = Field(False, description="no NVIDIA GPU fails the check instead of skipping it")
    encoder_warn_ratio: float = Field(0.90, gt=0, le=1)
    encoder_fail_ratio: float = Field(0.98, gt=0, le=1)
    utilization_warn_ratio: float = Field(0.95, gt=0, le=1)
    memory_warn_ratio: float = Field(0.95, gt=0, le=1)
    temperature_warn_c: float = Field(85.0, gt=0)
    recorded: str | None = Field(None, description="path of a recorded NVML JSON (tests); None: the driver")
    recorded_snapshot: str = Field("idle", description="'idle' or 'under_load[N]'")


class NvmlUnavailable(Exception):
    """NVML cannot be used here (no library, no driver, no device)."""


@dataclass(slots=True)
class GpuReading:
    index: int
    name: str
    utilization: float | None = None  # 0-1
    memory_utilization: float | None = None
    encoder_utilization: float | None = None  # 0-1
    encoder_sessions: int | None = None
    encoder_fps: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    temperature_c: float | None = None
    slowdown_c: float | None = None
    errors: dict[str, str] = field(default_factory=dict)  # query -> NVML error text


class GpuBackend(Protocol):
    def read(self) -> list[GpuReading]: ...


def _err(v: Any) -> str | None:
    if isinstance(v, dict) and "nvml_error" in v:
        return f"{v['nvml_error']} (code {v.get('code')})"
    return None


def reading_from_record(index: int, rec: dict[str, Any]) -> GpuReading:
    """One recorded device snapshot → reading; recorded NVML errors are kept per query."""
    r = GpuReading(index, str(rec.get("name", f"gpu{index}")))

    def take(key: str) -> Any:
        v = rec.get(key)
        e = _err(v)
        if e is not None:
            r.errors[key] = e
            return None
        return v

    u = take("utilization")
    if isinstance(u, dict):
        r.utilization = float(u["gpu"]) / 100.0
        r.memory_utilization = float(u["memory"]) / 100.0
    enc = take("encoder_utilization")
    if isinstance(enc, (list, tuple)) and enc:
        r.encoder_utilization = float(enc[0]) / 100.0  # [percent, sampling period µs]
    sessions = take("encoder_sessions")
    if isinstance(sessions, list):
        r.encoder_sessions = len(sessions)
    stats = take("encoder_stats")
    if isinstance(stats, (list, tuple)) and len(stats) >= 2:
        r.encoder_fps = float(stats[1])  # (sessionCount, averageFps, averageLatency µs)
    mem = take("memory")
    if isinstance(mem, dict):
        r.memory_used, r.memory_total = int(mem["used"]), int(mem["total"])
    t = take("temperature_gpu_c")
    if t is not None:
        r.temperature_c = float(t)
    slow = take("temperature_slowdown_c")
    if slow is not None:
        r.slowdown_c = float(slow)
    for key, v in rec.items():
        e = _err(v)
        if e is not None:
            r.errors.setdefault(key, e)
    return r


class RecordedBackend:
    """Replays a recorded NVML JSON (see the module docstring)."""

    def __init__(self, path: str, snapshot: str = "idle") -> None:
        self.path = path
        self.snapshot = snapshot

    def read(self) -> list[GpuReading]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise NvmlUnavailable(f"recorded NVML file unreadable: {exc.__class__.__name__}") from None
        if not data.get("count"):
            raise NvmlUnavailable("no NVIDIA GPU in the recording")
        if self.snapshot == "idle":
            recs = [data["idle"]]
        elif self.snapshot.startswith("under_load[") and self.snapshot.endswith("]"):
            recs = [data["under_load"][int(self.snapshot[11:-1])]]
        else:
            raise NvmlUnavailable(f"no snapshot {self.snapshot!r} in the recording")
        return [reading_from_record(i, r) for i, r in enumerate(recs)]


class NvmlBackend:
    """The real driver through nvidia-ml-py (``pynvml``). Blocking: call in a thread."""

    def read(self) -> list[GpuReading]:
        try:
            import pynvml as n
        except ImportError:
            raise NvmlUnavailable("nvidia-ml-py is not installed") from None
        try:
            n.nvmlInit()
        except n.NVMLError as exc:
            raise NvmlUnavailable(f"NVML not available: {exc}") from None
        try:
            count = n.nvmlDeviceGetCount()
            if count == 0:
                raise NvmlUnavailable("no NVIDIA GPU")
            return [self._one(n, i) for i in range(count)]
        finally:
            try:
                n.nvmlShutdown()
            except n.NVMLError:
                pass

    @staticmethod
    def _one(n: Any, i: int) -> GpuReading:
        h = n.nvmlDeviceGetHandleByIndex(i)
        rec: dict[str, Any] = {}

        def q(key: str, fn: Any) -> None:
            try:
                rec[key] = fn()
            except n.NVMLError as exc:
                rec[key] = {"nvml_error": str(exc), "code": getattr(exc, "value", None)}

        q("name", lambda: n.nvmlDeviceGetName(h))
        q("utilization", lambda: (lambda u: {"gpu": u.gpu, "memory": u.memory})(n.nvmlDeviceGetUtilizationRates(h)))
        q("encoder_utilization", lambda: list(n.nvmlDeviceGetEncoderUtilization(h)))
        q("encoder_sessions", lambda: list(n.nvmlDeviceGetEncoderSessions(h)))
        q("encoder_stats", lambda: list(n.nvmlDeviceGetEncoderStats(h)))
        q("memory", lambda: (lambda m: {"total": m.total, "free": m.free, "used": m.used})(
            n.nvmlDeviceGetMemoryInfo(h)))
        q("temperature_gpu_c", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU))
        q("temperature_slowdown_c", lambda: n.nvmlDeviceGetTemperatureThreshold(
            h, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN))
        name = rec.get("name")
        if isinstance(name, bytes):
            rec["name"] = name.decode()
        return reading_from_record(i, rec)


def backend_for(cfg: GpuConfig) -> GpuBackend:
    return RecordedBackend(cfg.recorded, cfg.recorded_snapshot) if cfg.recorded else NvmlBackend()


# ------------------------------------------------------------------ assessment (pure)


def assess(readings: list[GpuReading] | None, cfg: GpuConfig, why: str = "") -> list[Finding]:
    """Findings per GPU; ``readings`` None means NVML is unavailable (``why``)."""
    src = "NVIDIA Video Codec SDK: NVENC throughput is fixed per chip; near 100 % has no headroom"
    if readings is None:
        st = Status.FAIL if cfg.required else Status.SKIP
        return [Finding("gpu.nvml", "gpu", st, "NVIDIA GPU", f"unavailable ({why})" if why else "unavailable",
                        "an NVIDIA GPU with its driver" if cfg.required else "", "config studio.gpu.required",
                        "install the NVIDIA driver or check that the GPU is seen (nvidia-smi)" if cfg.required
                        else "", Fault.DEVICE_MISSING if cfg.required else None)]
    out: list[Finding] = []
    for r in readings:
        comp = f"gpu{r.index}"
        if r.encoder_utilization is not None:
            e = r.encoder_utilization
            st = grade(e, cfg.encoder_warn_ratio, cfg.encoder_fail_ratio)
            sessions = f", {r.encoder_sessions} session(s)" if r.encoder_sessions is not None else ""
            out.append(Finding("gpu.encoder", comp, st, f"{r.name} encoder (NVENC)", f"{e * 100:.0f} %{sessions}",
                               f"< {cfg.encoder_warn_ratio * 100:.0f} %", src,
                               f"the GPU encoder is saturated: stop other encodes or lower resolution/preset "
                               f"({e * 100:.0f} % busy)" if st is not Status.PASS else "",
                               Fault.GPU_OVERLOAD if st is not Status.PASS else None, e, cfg.encoder_warn_ratio,
                               {"encoder_utilization_ratio": e,
                                **({"encoder_sessions": float(r.encoder_sessions)}
                                   if r.encoder_sessions is not None else {})}))
        if r.utilization is not None:
            st = grade(r.utilization, cfg.utilization_warn_ratio, None)
            out.append(Finding("gpu.utilization", comp, st, f"{r.name} utilization", f"{r.utilization * 100:.0f} %",
                               f"< {cfg.utilization_warn_ratio * 100:.0f} %",
                               "broadcast practice: leave the GPU headroom for the encoder",
                               "other GPU work (effects, games, ML) competes with the encoder: stop it"
                               if st is not Status.PASS else "", Fault.GPU_OVERLOAD if st is not Status.PASS else None,
                               r.utilization, cfg.utilization_warn_ratio, {"utilization_ratio": r.utilization}))
        if r.memory_used is not None and r.memory_total:
            m = r.memory_used / r.memory_total
            st = grade(m, cfg.memory_warn_ratio, None)
            out.append(Finding("gpu.memory", comp, st, f"{r.name} memory",
                               f"{r.memory_used / 2**30:.1f} of {r.memory_total / 2**30:.0f} GiB",
                               f"< {cfg.memory_warn_ratio * 100:.0f} % used", "NVML memory info",
                               "GPU memory nearly full: close other GPU programs" if st is not Status.PASS else "",
                               Fault.GPU_OVERLOAD if st is not Status.PASS else None, float(r.memory_used),
                               cfg.memory_warn_ratio * r.memory_total, {"memory_used_bytes": float(r.memory_used)}))
        if r.temperature_c is not None:
            limit = r.slowdown_c or cfg.temperature_warn_c
            st = grade(r.temperature_c, limit, None)
            out.append(Finding("gpu.temperature", comp, st, f"{r.name} temperature", f"{r.temperature_c:.0f} °C",
                               f"< {limit:.0f} °C", "NVML slowdown threshold (else 85 °C)",
                               "the GPU is throttling from heat: check airflow and fans" if st is not Status.PASS
                               else "", Fault.HOST_OVERHEAT if st is not Status.PASS else None, r.temperature_c, limit,
                               {"temperature_celsius": r.temperature_c}))
    return out


def samples(readings: list[GpuReading], labels: dict[str, str]) -> list[Sample]:
    out: list[Sample] = []
    for r in readings:
        lab = {**labels, "component": f"gpu{r.index}"}
        if r.utilization is not None:
            out.append(Sample("signalpath_gpu_utilization_ratio", lab, r.utilization))
        if r.encoder_utilization is not None:
            out.append(Sample("signalpath_gpu_encoder_utilization_ratio", lab, r.encoder_utilization))
        if r.encoder_sessions is not None:
            out.append(Sample("signalpath_gpu_encoder_sessions", lab, float(r.encoder_sessions)))
        if r.memory_used is not None:
            out.append(Sample("signalpath_gpu_memory_used_bytes", lab, float(r.memory_used)))
        if r.temperature_c is not None:
            out.append(Sample("signalpath_gpu_temperature_celsius", lab, r.temperature_c))
    return out


async def measure(cfg: GpuConfig, backend: GpuBackend | None = None
                  ) -> tuple[list[Finding], list[GpuReading] | None]:
    b = backend or backend_for(cfg)
    try:
        readings = await asyncio.to_thread(b.read)
    except NvmlUnavailable as exc:
        return assess(None, cfg, str(exc)), None
    return assess(readings, cfg), readings


async def probe(target: ProbeTarget, ctx: ProbeContext) -> ProbeResult:
    """GPU checks; evidence ``studio``/``gpuN`` (or ``studio``/``gpu`` UNKNOWN when unavailable)."""
    cfg: GpuConfig = target.config
    backend = ctx.shared.get("gpu_backend")
    findings, readings = await measure(cfg, backend)
    labels = {"stream": target.stream, "stage": STAGE, "component": "gpu"}
    if readings is None:
        f = findings[0]
        state = State.DOWN if f.status is Status.FAIL else State.UNKNOWN
        return ProbeResult(None, f.measured, [],
                           [Evidence(STAGE, "gpu", state, f.fault, f"NVIDIA GPU {f.measured}")],
                           figures={"findings": findings, "gpu": "unavailable"})
    evidence = [evidence_from(findings, f"gpu{r.index}") for r in readings]
    return ProbeResult(None, "; ".join(e.detail for e in evidence), samples(readings, labels), evidence,
                       figures={"findings": findings})
