"""Print what the GPU probe reports on this machine (run on a real NVIDIA GPU).

    .venv/bin/python tests/perf/gpu_check.py

Prints the driver's readings (probes/gpu.py NvmlBackend), the findings and the metric
samples; on a machine without NVML it prints the "unavailable" path instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from probes import gpu
from probes.base import ProbeContext, ProbeTarget
from probes.gpu import GpuConfig, NvmlBackend, NvmlUnavailable


def main() -> int:
    try:
        import pynvml

        print("nvidia-ml-py", getattr(pynvml, "__version__", "?"))
        readings = NvmlBackend().read()
        for r in readings:
            print(json.dumps(asdict(r), indent=1))
    except NvmlUnavailable as exc:
        print("NVML unavailable:", exc)
    res = asyncio.run(gpu.probe(ProbeTarget("gpu", "check", "studio", "gpu", GpuConfig()), ProbeContext(state={})))
    for f in res.figures["findings"]:
        print(f"{f.status:5} {f.component:6} {f.title}: {f.measured} (needed {f.needed})")
    for s in res.samples:
        print(s.name, dict(s.labels), s.value)
    for e in res.evidence:
        print("evidence", e.stage, e.component, e.state, e.fault, e.detail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
