"""A scripted fault tour over the lab (data + an async runner), for ``signalpath demo``.

Each step waits, optionally injecting a fault for a while first, and says in plain
words what happens and where the agent should localize it (stage/component, the
DESIGN.md localization principle).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import LabError

if TYPE_CHECKING:
    from .lab import Lab


@dataclass(frozen=True, slots=True)
class TourStep:
    """Inject ``fault`` on ``target`` for ``for_s`` (if any), then wait ``wait_s`` in total."""

    title: str
    wait_s: float
    fault: str | None = None
    target: str | None = None
    for_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    expect_stage: str | None = None
    expect_component: str | None = None


DEFAULT_TOUR: tuple[TourStep, ...] = (
    TourStep("healthy: every stage green", wait_s=60),
    TourStep("edge-b keeps serving an old playlist", wait_s=60, fault="edge_stale", target="edge-b",
             for_s=45, expect_stage="cdn", expect_component="edge-b"),
    TourStep("the 180p rendition stops advancing at the transcoder", wait_s=50, fault="rendition_stall",
             target="180p", for_s=35, expect_stage="transcode", expect_component="180p"),
    TourStep("the studio audio goes silent", wait_s=50, fault="silent_audio", target="encoder",
             for_s=35, expect_stage="studio", expect_component="source"),
    TourStep("the origin answers 503", wait_s=40, fault="origin_5xx", target="origin", for_s=25,
             expect_stage="origin", expect_component="origin"),
    TourStep("healthy again", wait_s=30),
)


def _hms(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


async def run_tour(lab: Lab, steps: tuple[TourStep, ...] | list[TourStep] = DEFAULT_TOUR,
                   say: Callable[[str], None] = print, *,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                   wall: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """Run ``steps`` in order; returns the fault records it created (ground truth).

    A step whose fault the lab refuses is reported with ``say`` and skipped; the tour
    goes on. Cancelling the task stops the tour; faults it started end with their
    ``for_s``, or when the lab stops.
    """
    records: list[dict[str, Any]] = []
    total = len(steps)
    for i, step in enumerate(steps, 1):
        where = ""
        if step.expect_stage:
            where = f" (expect: {step.expect_stage}/{step.expect_component})"
        if step.fault is None:
            say(f"[{_hms(wall())}] tour {i}/{total}: {step.title} — {step.wait_s:g} s")
        else:
            try:
                rec = await lab.inject(step.fault, step.target, step.for_s, dict(step.params) or None)
            except LabError as exc:
                say(f"[{_hms(wall())}] tour {i}/{total}: could not inject {step.fault}: {exc}")
                continue
            records.append(rec.to_json())
            dur = f" for {step.for_s:g} s" if step.for_s else ""
            say(f"[{_hms(wall())}] tour {i}/{total}: {step.title} — fault {step.fault} on "
                f"{rec.target}{dur}{where}")
        if step.fault is not None and step.for_s is not None and step.for_s < step.wait_s:
            await sleep(step.for_s)
            say(f"[{_hms(wall())}] tour {i}/{total}: {step.fault} on {step.target} ended; "
                f"recovering for {step.wait_s - step.for_s:g} s")
            await sleep(step.wait_s - step.for_s)
        else:
            await sleep(step.wait_s)
    say(f"[{_hms(wall())}] tour finished")
    return records
