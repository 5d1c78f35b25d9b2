"""Localization benchmark: every lab fault, several times, against ground truth.

Runs the embedded lab and an agent watching it (the `signalpath demo` config), then for
each fault of the catalog: inject it, wait for the first incident, compare its
stage/component with the expected root cause (DESIGN.md "Localization principle"), time
to localize = incident.localized_at - the lab's recorded fault start; clear the fault and
wait for every incident to resolve. Finally a healthy run counts false incidents.

    .venv/bin/python tests/perf/localize_bench.py --repeat 3 --healthy-minutes 10
    .venv/bin/python tests/perf/localize_bench.py --only edge_stale,origin_5xx --repeat 1 --healthy-minutes 0

Prints one row per fault: correct/total, median and p95 time to localize, what was found.
Target: all correct, p95 <= 15 s at 2-s segments, zero false incidents.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.app import Agent  # noqa: E402
from agent.config import parse_config  # noqa: E402
from agent.demo import lab_agent_config  # noqa: E402
from agent.lab import Lab, LabConfig  # noqa: E402

# fault -> (target, params, expected (stage, component))
CATALOG: dict[str, tuple[str | None, dict, tuple[str, str]]] = {
    "encoder_stop": ("encoder", {}, ("studio", "encoder")),
    "frozen_video": ("encoder", {}, ("studio", "source")),
    "black_video": ("encoder", {}, ("studio", "source")),
    "silent_audio": ("encoder", {}, ("studio", "source")),
    "av_desync": ("encoder", {"ms": 300}, ("studio", "source")),
    "ingest_drop": ("ingest", {}, ("ingest", "ingest")),
    "ingest_latency": ("ingest", {"ms": 2000}, ("ingest", "ingest")),
    "ingest_starve": ("ingest", {"rate": 0.5}, ("ingest", "ingest")),
    "transcoder_stall": ("transcoder", {}, ("transcode", "transcoder")),
    "rendition_stall": ("180p", {}, ("transcode", "180p")),
    "transcoder_slow": ("transcoder", {}, ("transcode", "transcoder")),
    "origin_5xx": ("origin", {}, ("origin", "origin")),
    "origin_down": ("origin", {}, ("origin", "origin")),
    "edge_down": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_stale": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_404_segments": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_slow_first_byte": ("edge-b", {"ms": 3000}, ("cdn", "edge-b")),
    "edge_throttle": ("edge-b", {}, ("cdn", "edge-b")),
    "edge_delay": ("edge-b", {"ms": 5000}, ("cdn", "edge-b")),
    "corrupt_segment": ("180p", {}, ("transcode", "180p")),  # the analysed (lowest) rendition
    "keyframe_interval": ("transcoder", {}, ("transcode", "transcoder")),
    "webrtc_refuse": ("whip", {}, ("ingest", "whip")),
    "webrtc_stall": ("whep", {}, ("playback", "whep")),
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def quiet(agent: Agent, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not agent.incidents.localizer.open_incidents():
            return True
        await asyncio.sleep(0.5)
    return False


async def run(args: argparse.Namespace) -> None:
    faults = [f for f in CATALOG if not args.only or f in args.only.split(",")]
    rows = []
    async with Lab(LabConfig()) as lab:
        conf = lab_agent_config(lab, "127.0.0.1:0", site="bench", webrtc=True)
        conf["incidents"] = {"path": tempfile.mkdtemp(prefix="sp-bench-") + "/incidents.db"}
        stream = conf["streams"][0]
        for entry in [*stream.get("ingest", {}).get("whip", []), *stream.get("whep", [])]:
            entry["interval_s"] = args.webrtc_interval  # the default 30 s would dominate time to localize
        async with Agent(parse_config(conf)) as agent:
            await asyncio.sleep(args.settle)
            if not await quiet(agent, 60):
                print("the healthy lab has open incidents before the benchmark:", file=sys.stderr)
            for fault in faults:
                target, params, expected = CATALOG[fault]
                times, found, correct, extra = [], [], 0, []
                for _ in range(args.repeat):
                    seen_before = {i.id for i in agent.incidents.localizer.open_incidents()}
                    try:
                        rec = await lab.inject(fault, target, None, params or None)
                    except Exception as exc:  # the lab refused: report, go on
                        found.append(f"refused: {exc}")
                        break
                    deadline = time.monotonic() + args.timeout
                    hit = None
                    while time.monotonic() < deadline and hit is None:
                        new = [i for i in agent.incidents.localizer.open_incidents() if i.id not in seen_before]
                        if new:
                            hit = min(new, key=lambda i: i.localized_at)
                        else:
                            await asyncio.sleep(0.2)
                    if hit is None:
                        found.append("none")
                    else:
                        found.append(f"{hit.stage}/{hit.component} {hit.fault}")
                        if (hit.stage, hit.component) == expected:
                            correct += 1
                            times.append(hit.localized_at - rec.started_at)
                    await asyncio.sleep(args.hold)  # let the fault last: later symptoms count too
                    opened = [i for i in agent.incidents.localizer.open_incidents() if i.id not in seen_before]
                    extra.extend(f"{i.stage}/{i.component} {i.fault}" for i in opened
                                 if (i.stage, i.component) != expected)
                    await lab.clear_all()
                    await quiet(agent, 90)
                rows.append((fault, f"{expected[0]}/{expected[1]}", correct, args.repeat, times, found, extra))
                t = f"{statistics.median(times):5.1f} {pct(times, 0.95):5.1f}" if times else "    -     -"
                print(f"{fault:22s} {rows[-1][1]:22s} {correct}/{args.repeat}  {t}  {sorted(set(found))}"
                      f"  other incidents: {sorted(set(extra)) or 'none'}", flush=True)
            false_incidents = 0
            if args.healthy_minutes > 0:
                before = {i.id for i in await agent.incidents.store.list("all")}
                await asyncio.sleep(args.healthy_minutes * 60)
                after = await agent.incidents.store.list("all")
                false_incidents = len([i for i in after if i.id not in before])
    print()
    print(f"{'fault':22s} {'expected':22s} ok    median p95 (s)  other incidents during the fault")
    all_times = [t for r in rows for t in r[4]]
    for fault, exp, ok, n, times, found, extra in rows:
        t = f"{statistics.median(times):5.1f} {pct(times, 0.95):5.1f}" if times else "    -     -"
        print(f"{fault:22s} {exp:22s} {ok}/{n}  {t}   {', '.join(sorted(set(extra))) or '-'}")
    if all_times:
        print(f"all faults: {sum(r[2] for r in rows)}/{sum(r[3] for r in rows)} correct; time to localize "
              f"median {statistics.median(all_times):.1f} s, p95 {pct(all_times, 0.95):.1f} s (target <= 15 s)")
    if args.healthy_minutes > 0:
        print(f"false incidents in a {args.healthy_minutes:g}-minute healthy run: {false_incidents} (target 0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an incident")
    ap.add_argument("--healthy-minutes", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--webrtc-interval", type=float, default=10.0, help="WHIP/WHEP probe interval, s")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds a fault lasts after its first incident")
    ap.add_argument("--only", help="comma-separated fault names")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
