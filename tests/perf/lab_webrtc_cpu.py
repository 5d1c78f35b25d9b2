"""CPU cost of the lab's WebRTC endpoint and of the WHIP/WHEP probes at their default interval.

Runs the embedded lab in this process (``LabConfig.webrtc`` on or off) and, with
``--probes``, one WHIP and one WHEP probe every ``--interval`` seconds (default 30 s,
``seconds`` 3, the probes' defaults), both in this process too, so the figure is lab +
endpoint + both probe peers. Prints the share of one core (user + system, all threads,
psutil) over the window, and the mean CPU seconds per WHIP and per WHEP attempt.

    .venv/bin/python tests/perf/lab_webrtc_cpu.py [--seconds 60] [--probes] [--no-webrtc]

``--compare-whep``: the cost of keeping a WHEP session open (probes/whep.py ``keep_open``),
in one run on one lab: ``--seconds`` each of the lab and its endpoint alone, then with a WHEP
session per attempt every 30 s (3 s of media), then with one session kept open and reported
every 2 s; each phase's share of one core and its difference to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from agent.lab import Lab, LabConfig
from agent.runner import close_held
from probes.base import ProbeContext, ProbeTarget
from probes.whep import WhepProbeConfig
from probes.whep import probe as whep_probe
from probes.whip import WhipProbeConfig
from probes.whip import probe as whip_probe

LOOP = ("127.0.0.1",)


async def prober(kind: str, url: str, interval: float, costs: list[float], proc: psutil.Process,
                 keep_open: bool = False) -> None:
    if kind == "whip":
        t = ProbeTarget("whip", "main", "ingest", "whip", WhipProbeConfig(ice_host_addresses=LOOP), url, interval, 10)
        fn = whip_probe
    else:
        t = ProbeTarget("whep", "main", "playback", "whep", WhepProbeConfig(ice_host_addresses=LOOP, keep_open=keep_open),
                        url, interval, 10)
        fn = whep_probe
    ctx = ProbeContext(state={})
    loop = asyncio.get_running_loop()
    nxt = loop.time()
    try:
        while True:
            c0 = sum(proc.cpu_times()[:2])
            ctx.deadline = ctx.clock() + t.timeout  # as agent/runner.py does
            r = await asyncio.wait_for(fn(t, ctx), 10)
            costs.append(sum(proc.cpu_times()[:2]) - c0)  # includes the lab's share meanwhile
            if not r.ok:
                print(f"{kind}: {r.detail}", file=sys.stderr)
            nxt += interval
            await asyncio.sleep(max(0.0, nxt - loop.time()))
    finally:
        await close_held([ctx.state])  # a kept session: DELETE it, as the runner does


async def share_over(proc: psutil.Process, seconds: float) -> float:
    """Percent of one core this process used over the next ``seconds``."""
    c0, w0 = proc.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, w1 = proc.cpu_times(), time.monotonic()
    return 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (w1 - w0)


async def compare_whep(a: argparse.Namespace) -> None:
    proc = psutil.Process()
    rows = []
    async with Lab(LabConfig(webrtc=True)) as lab:
        await asyncio.sleep(a.warmup)
        for label, interval, keep in (("lab + WebRTC endpoint, no viewer", None, False),
                                      ("+ WHEP, a 3-s session every 30 s", 30.0, False),
                                      ("+ WHEP, one session kept open, reported every 2 s", 2.0, True)):
            task = None
            if interval is not None:
                task = asyncio.create_task(prober("whep", lab.whep_url(), interval, [], proc, keep_open=keep))
                await asyncio.sleep(a.warmup)
            rows.append((label, await share_over(proc, a.seconds)))
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    base = rows[0][1]
    print(f"WHEP cost, {a.seconds:g} s per phase, this process (lab, endpoint, probe), % of one core:")
    for label, share in rows:
        print(f"  {label:<52} {share:5.1f} %  ({share - base:+.1f})")


async def main(a: argparse.Namespace) -> None:
    proc = psutil.Process()
    costs: dict[str, list[float]] = {"whip": [], "whep": []}
    async with Lab(LabConfig(webrtc=not a.no_webrtc)) as lab:
        tasks = []
        await asyncio.sleep(a.warmup)
        if a.probes:
            tasks = [asyncio.create_task(prober("whip", lab.whip_url(), a.interval, costs["whip"], proc)),
                     asyncio.create_task(prober("whep", lab.whep_url(), a.interval, costs["whep"], proc))]
        c0, w0 = proc.cpu_times(), time.monotonic()
        await asyncio.sleep(a.seconds)
        c1, w1 = proc.cpu_times(), time.monotonic()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    share = 100.0 * ((c1.user - c0.user) + (c1.system - c0.system)) / (w1 - w0)
    per = ", ".join(f"{k}: {len(v)} attempts, {sum(v) / len(v):.2f} CPU-s each (lab included)"
                    for k, v in costs.items() if v)
    print(f"lab{' + WebRTC endpoint' if not a.no_webrtc else ' (no WebRTC)'}"
          f"{f' + WHIP/WHEP probes every {a.interval:g} s' if a.probes else ''}: {share:.1f} % of one core "
          f"over {w1 - w0:.1f} s{'; ' + per if per else ''}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--interval", type=float, default=30.0)
    ap.add_argument("--probes", action="store_true")
    ap.add_argument("--no-webrtc", action="store_true")
    ap.add_argument("--compare-whep", action="store_true", help="lab alone, WHEP per attempt, WHEP kept open")
    args = ap.parse_args()
    asyncio.run(compare_whep(args) if args.compare_whep else main(args))
