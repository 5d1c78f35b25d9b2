"""The studio stage: what the studio probes share, and their config section.

The studio probes (``probes/host.py``, ``probes/gpu.py``, ``probes/video_source.py``
with ``probes/core/audio.py``, ``probes/network.py``) each turn one measurement into
:class:`Finding` s: one per check, with the measured value, the threshold, where the
threshold comes from and a plain-words fix. The same findings feed two readers:

- ``signalpath run``: :func:`evidence_from` folds a component's findings into
  :class:`probes.base.Evidence` for the ``studio`` stage (``fail`` -> DEGRADED, or DOWN
  for faults that mean "off": a missing device, a dead encoder; ``warn`` -> OK with the
  warning in the detail; every ``skip`` leaves the state UNKNOWN when nothing else was
  measured);
- ``signalpath preflight`` (``agent/preflight.py``): one checklist row per finding.

Config: ``streams[].studio`` (:class:`agent.studio_config.StudioSettings`), one section per stream, since
the studio feeds one stream; a studio feeding two streams repeats the section (the
probes are cheap; the host figures then carry both stream labels).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from probes.base import Evidence, State
from probes.core.config import StrictModel
from probes.faults import Fault

STAGE = "studio"


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


STATUS_RANK = {Status.SKIP: 0, Status.PASS: 1, Status.WARN: 2, Status.FAIL: 3}

# faults that mean the component is off, not merely degraded
DOWN_FAULTS = frozenset({Fault.DEVICE_MISSING, Fault.ENCODER_DOWN, Fault.UNREACHABLE, Fault.NIC_DOWN, Fault.SOURCE_GONE})


@dataclass(slots=True)
class Finding:
    """One check's outcome, shared by the studio stage and the preflight checklist.

    ``check`` is a stable dotted id ("host.cpu", "network.uplink"); ``component`` the
    DESIGN vocabulary component ("host", "gpu0", a device's name, "network");
    ``measured``/``needed`` are short human strings ("3.1 Mbit/s", ">= 6 Mbit/s");
    ``source`` names where the threshold comes from; ``fix`` says what to do in plain
    words (empty on pass). ``value``/``threshold`` are the raw numbers (base units).
    """

    check: str
    component: str
    status: Status
    title: str
    measured: str = ""
    needed: str = ""
    source: str = ""
    fix: str = ""
    fault: Fault | None = None
    value: float | None = None
    threshold: float | None = None
    figures: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check, "component": self.component, "status": str(self.status),
                "title": self.title, "measured": self.measured, "needed": self.needed,
                "source": self.source, "fix": self.fix, "fault": self.fault, "value": self.value,
                "threshold": self.threshold}


def grade(value: float, warn: float | None, fail: float | None, *, higher_is_worse: bool = True) -> Status:
    """PASS/WARN/FAIL of ``value`` against optional warn and fail limits."""
    def over(limit: float | None) -> bool:
        if limit is None:
            return False
        return value >= limit if higher_is_worse else value < limit

    if over(fail):
        return Status.FAIL
    if over(warn):
        return Status.WARN
    return Status.PASS


def evidence_from(findings: list[Finding], component: str, stage: str = STAGE) -> Evidence:
    """Fold one component's findings into one Evidence (the worst finding names the fault)."""
    mine = [f for f in findings if f.component == component]
    figures: dict[str, float] = {}
    for f in mine:
        figures.update(f.figures)
        if f.value is not None:
            figures.setdefault(f.check.split(".", 1)[-1], float(f.value))
    measured = [f for f in mine if f.status is not Status.SKIP]
    if not measured:
        detail = "; ".join(f.measured or f.title for f in mine) or "not measured"
        return Evidence(stage, component, State.UNKNOWN, None, detail, None, figures)
    # the worst status; among failures, one that means "off" first
    worst = max(measured, key=lambda f: (STATUS_RANK[f.status], f.fault in DOWN_FAULTS))
    if worst.status is Status.FAIL:
        state = State.DOWN if worst.fault in DOWN_FAULTS else State.DEGRADED
        detail = f"{worst.title}: {worst.measured}" + (f" (needed {worst.needed})" if worst.needed else "")
        return Evidence(stage, component, state, worst.fault, detail, None, figures)
    warns = [f for f in measured if f.status is Status.WARN]
    detail = "; ".join(f"{f.title}: {f.measured}" for f in warns) or "all checks pass"
    return Evidence(stage, component, State.OK, None, detail, None, figures)


class SourceConfig(StrictModel):
    """A capture device or a feed (RTSP, SRT via a URL PyAV opens, a file) to check.

    ``device``: a capture device's name as the OS lists it (Linux:
    ``/sys/class/video4linux/*/name``), checked for presence. ``url``: a feed, opened
    and sampled for ``sample_s`` seconds. ``backup``: a backup source (reported as
    such; checked the same way). ``audio_only``: the feed is an audio input.
    """

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    device: str | None = None
    url: str | None = None
    backup: bool = False
    audio_only: bool = False
    expected_fps: float | None = Field(None, gt=0, le=1000)
    expected_width: int | None = Field(None, gt=0)
    expected_height: int | None = Field(None, gt=0)
    fps_tolerance: float = Field(0.10, ge=0, le=1, description="measured fps below expected by more fails")
    sample_s: float = Field(3.0, gt=0.2, le=60, description="seconds of the feed decoded per check")
    open_timeout_s: float = Field(5.0, gt=0, le=60)
    expect_audio: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if (self.device is None) == (self.url is None):
            raise ValueError(f"source {self.name!r}: give exactly one of device or url")
        return self
