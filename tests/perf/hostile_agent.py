"""One agent, a healthy stream (origin + 2 edges, tests/livehls.py) and a stream whose edges are
hostile servers (tests/hostile.py): what the agent's memory, CPU and status API do meanwhile.

    .venv/bin/python tests/perf/hostile_agent.py [--seconds 60] [--kinds endless_header,...]

Prints every 10 s the agent's RSS (MiB) and CPU seconds used, and at the end the status API's
latency (timed from a separate process, every 50 ms: median, p95, worst), the incidents the
healthy stream opened (expected: none) and what each hostile edge's status says.
Issue 15 measured, before the HTTP client bounded response heads: 167 MiB -> 1.2 GiB in 120 s,
96 CPU-s, status API 8.7 s, false P1 incidents on the healthy stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile import HostileServer, rss_mib
from livehls import Endpoint, Timeline

from agent.app import Agent
from agent.config import parse_config

_POLLER = """
import sys, time, urllib.request
url, secs = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        r.read()
    print(round((time.perf_counter() - t0) * 1000, 1), flush=True)
    time.sleep(0.05)
"""


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main(seconds: float, kinds: list[str]) -> None:
    tl = Timeline(seg_dur=1.0)
    origin, edges = Endpoint(tl), {"edge-a": Endpoint(tl), "edge-b": Endpoint(tl)}
    for e in (origin, *edges.values()):
        await e.start()
    hostile = [HostileServer(k, interval_s=1.0) for k in kinds]
    for h in hostile:
        await h.__aenter__()
    conf = {
        "agent": {"listen": "127.0.0.1:0", "site": "perf"},
        "incidents": {"path": tempfile.mkdtemp(prefix="sp-inc-") + "/incidents.db"},
        "streams": [
            {"name": "main", "origin": origin.master_url,
             "edges": [{"name": n, "url": e.master_url} for n, e in edges.items()],
             "hls": {"interval_s": 1.0, "timeout_s": 5.0}},
            {"name": "hostile", "origin": origin.master_url,
             "edges": [{"name": h.kind.replace("_", "-"), "url": h.base + "/live.m3u8"} for h in hostile],
             "hls": {"interval_s": 1.0, "timeout_s": 5.0}},
        ],
    }
    try:
        async with Agent(parse_config(conf)) as agent:
            rss0, cpu0 = rss_mib(), cpu_s()
            print(f"start: RSS {rss0:.0f} MiB")
            poller = await asyncio.create_subprocess_exec(sys.executable, "-c", _POLLER,
                                                          agent.url + "/api/v1/status", str(seconds),
                                                          stdout=asyncio.subprocess.PIPE)
            t0 = time.monotonic()
            comm = asyncio.ensure_future(poller.communicate())
            while not comm.done():
                await asyncio.wait([comm], timeout=10)
                print(f"{time.monotonic() - t0:5.0f} s: RSS {rss_mib():.0f} MiB, CPU {cpu_s() - cpu0:.1f} s")
            out, _ = comm.result()
            lat = sorted(float(x) for x in out.decode().split())
            print(f"status API: {len(lat)} calls, median {statistics.median(lat):.1f} ms, "
                  f"p95 {lat[int(0.95 * (len(lat) - 1))]:.1f} ms, worst {lat[-1]:.1f} ms")
            opened = agent.incidents.localizer.open_incidents("main")
            print(f"healthy stream: {len(opened)} open incident(s)",
                  [(i.stage, i.component, i.fault, i.severity) for i in opened])
            for s in agent.board.as_json()["streams"]:
                if s["name"] == "hostile":
                    for c in s["stages"]:
                        if c["stage"] in ("cdn", "playback"):
                            print(f"  {c['stage']}/{c['component']}: {c['state']}: {'; '.join(c['reasons'])[:160]}")
            print(f"hostile servers wrote {sum(h.sent for h in hostile) / 1e6:.1f} MB over "
                  f"{sum(h.connections for h in hostile)} connections; RSS {rss0:.0f} -> {rss_mib():.0f} MiB")
            print(json.dumps({"rss0_mib": rss0, "rss1_mib": rss_mib(), "cpu_s": cpu_s() - cpu0,
                              "api_p95_ms": lat[int(0.95 * (len(lat) - 1))], "api_worst_ms": lat[-1],
                              "healthy_incidents": len(opened)}))
    finally:
        for h in hostile:
            await h.__aexit__(None, None, None)
        for e in (origin, *edges.values()):
            await e.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--kinds", default="endless_header,endless_lines,slowloris,endless_trailer")
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.kinds.split(",")))
