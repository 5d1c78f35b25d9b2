"""CPU cost of a WHIP signalling check (probes/whip.py ``check_interval_s``) against a full publish.

The lab's WebRTC endpoint (agent/lab/webrtc.py) runs in a child process, the probe in this
one, so each side's CPU is its own: this process's ``time.process_time()`` (all threads) and
the child's user + system time (psutil). One full publish first (a check needs one to
repeat), then ``--checks`` checks back to back, then ``--publishes`` full publishes (a
``WhipProbeConfig`` used directly always publishes); per attempt: agent CPU, endpoint CPU,
wall time. Ends with what 30 s of the defaults cost: one publish and 14 checks.

    .venv/bin/python tests/perf/whip_check_cpu.py [--checks 50] [--publishes 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from probes.base import ProbeContext, ProbeResult, ProbeTarget
from probes.whip import WhipIngest, WhipProbeConfig
from probes.whip import probe as whip_probe

LOOP = ("127.0.0.1",)


async def serve() -> None:
    """The child: the endpoint on a free port, printed; runs until stdin closes."""
    from agent.lab.webrtc import WebRtcEndpoint

    async with WebRtcEndpoint() as ep:
        print(ep.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def measure(target: ProbeTarget, ctx: ProbeContext, child: psutil.Process, n: int,
                  want_check: bool) -> tuple[float, float, float]:
    """Mean agent CPU-s, endpoint CPU-s and wall s of ``n`` attempts."""
    agent = endpoint = wall = 0.0
    for _ in range(n):
        c0, e0, w0 = time.process_time(), sum(child.cpu_times()[:2]), time.monotonic()
        ctx.deadline = ctx.clock() + target.timeout  # as agent/runner.py does
        r: ProbeResult = await whip_probe(target, ctx)
        w1 = time.monotonic()
        await asyncio.sleep(0.2)  # the endpoint's share of the DELETE and the peer's close lands
        agent += time.process_time() - c0
        endpoint += sum(child.cpu_times()[:2]) - e0
        wall += w1 - w0
        if bool(r.figures.get("check_only")) != want_check or r.evidence[0].state.value != "ok":
            raise SystemExit(f"unexpected attempt: {r.detail} {r.figures}")
    return agent / n, endpoint / n, wall / n


async def main(a: argparse.Namespace) -> None:
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        child = psutil.Process(proc.pid)
        url = f"http://127.0.0.1:{port}/whip/main"
        ingest = WhipIngest(url=url, ice_host_addresses=LOOP, seconds=a.seconds)
        t_check = ProbeTarget("whip", "main", "ingest", "whip", ingest, url, ingest.job_interval_s, ingest.timeout_s)
        ctx = ProbeContext(state={})
        await measure(t_check, ctx, child, 1, want_check=False)  # the publish the checks repeat
        await measure(t_check, ctx, child, 3, want_check=True)  # warm-up
        check = await measure(t_check, ctx, child, a.checks, want_check=True)
        direct = WhipProbeConfig(ice_host_addresses=LOOP, seconds=a.seconds)
        t_pub = ProbeTarget("whip", "main", "ingest", "whip", direct, url, 30.0, ingest.timeout_s)
        pub = await measure(t_pub, ProbeContext(state={}), child, a.publishes, want_check=False)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)
    print("per attempt (mean), agent CPU / endpoint CPU / wall:")
    for label, (ag, ep, w) in ((f"check ({a.checks})", check), (f"full publish, {a.seconds:g} s ({a.publishes})", pub)):
        print(f"  {label:<28} {ag * 1000:7.1f} ms  {ep * 1000:7.1f} ms  {w:6.2f} s")
    per30 = [pub[i] + 14 * check[i] for i in range(2)]
    print(f"30 s at the defaults (1 publish + 14 checks): agent {per30[0]:.2f} CPU-s ({per30[0] / 30:.1%} of a core), "
          f"endpoint {per30[1]:.2f} CPU-s ({per30[1] / 30:.1%}); publishes only: agent {pub[0] / 30:.1%}, "
          f"endpoint {pub[1] / 30:.1%}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checks", type=int, default=50)
    ap.add_argument("--publishes", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    asyncio.run(serve() if args.serve else main(args))
