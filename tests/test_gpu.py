"""GPU probe: the recorded NVML backend (a real H200's answers) and the no-GPU path here."""

from __future__ import annotations

from pathlib import Path

from probes import gpu
from probes.base import ProbeContext, ProbeTarget, State
from probes.core.studio import Status
from probes.gpu import GpuConfig, NvmlBackend, NvmlUnavailable, RecordedBackend

REC = str(Path(__file__).parent / "fixtures" / "nvml-h200.json")


def test_recorded_idle_parses_and_keeps_nvml_errors():
    [r] = RecordedBackend(REC, "idle").read()
    assert r.name == "NVIDIA H200" and r.utilization == 0.0 and r.encoder_utilization == 0.0
    assert r.encoder_sessions == 0 and r.memory_total == 150754820096 and r.temperature_c == 36.0
    assert r.errors["fan_speed_pct"].startswith("Not Supported")
    f = {x.check: x for x in gpu.assess([r], GpuConfig())}
    assert f["gpu.encoder"].status is Status.PASS and f["gpu.encoder"].component == "gpu0"
    assert all(x.status is Status.PASS for x in f.values())


def test_recorded_under_load_warns():
    [r] = RecordedBackend(REC, "under_load[5]").read()
    f = {x.check: x for x in gpu.assess([r], GpuConfig())}
    assert r.utilization == 1.0
    assert f["gpu.utilization"].status is Status.WARN and f["gpu.utilization"].fault == "gpu_overload"
    tight = {x.check: x for x in gpu.assess([r], GpuConfig(encoder_warn_ratio=0.01, encoder_fail_ratio=0.02))}
    assert tight["gpu.encoder"].status is Status.PASS  # NVENC idle on this data-centre GPU: 0 %


def test_no_nvml_here_is_unavailable_not_an_error():
    try:
        NvmlBackend().read()
    except NvmlUnavailable:
        pass
    else:  # pragma: no cover - a machine with an NVIDIA GPU
        return
    import asyncio

    t = ProbeTarget("gpu", "main", "studio", "gpu", GpuConfig())
    res = asyncio.run(gpu.probe(t, ProbeContext(state={})))
    assert res.ok and res.evidence[0].state is State.UNKNOWN and res.samples == []
    assert res.figures["findings"][0].status is Status.SKIP
    req = asyncio.run(gpu.probe(ProbeTarget("gpu", "main", "studio", "gpu", GpuConfig(required=True)),
                                ProbeContext(state={})))
    assert req.evidence[0].state is State.DOWN and req.evidence[0].fault == "device_missing"


async def test_probe_samples_from_recording():
    t = ProbeTarget("gpu", "main", "studio", "gpu", GpuConfig(recorded=REC, recorded_snapshot="under_load[5]"))
    res = await gpu.probe(t, ProbeContext(state={}))
    s = {x.name: x for x in res.samples}
    assert s["signalpath_gpu_utilization_ratio"].value == 1.0
    assert s["signalpath_gpu_encoder_utilization_ratio"].value == 0.0
    assert s["signalpath_gpu_memory_used_bytes"].labels["component"] == "gpu0"
    assert res.evidence[0].component == "gpu0" and res.evidence[0].state is State.OK
