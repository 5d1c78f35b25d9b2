"""Soak: the agent (`signalpath run`, its own process) for an hour against the lab with faults
cycling, and a stream of hostile servers beside it (tests/hostile.py).

    .venv/bin/python tests/perf/soak.py [--minutes 60] [--warmup 5] [--sample 30]

The lab runs in this process with WebRTC on (WHIP/WHEP every 30 s); the agent is a
subprocess watching the lab's stream plus a stream whose two edges never finish a response
(``endless_header``, ``slowloris``). Every ``--fault-every`` seconds one lab fault (the
localization bench's catalog, in turn) is injected for ``--fault-for`` seconds and cleared.

Every ``--sample`` seconds it reads the agent process (psutil: RSS, open file descriptors,
threads, CPU) and times one status API call. Prints a line per sample and at the end:

- RSS and open-FD growth: the median of the last quarter of samples against the median of the
  first samples after the warm-up, in % (issue 15: target < 10 %). The warm-up is, by default,
  one whole cycle of the fault list (23 faults x ``--fault-every``: 23 min): until every fault
  has run once, new code paths, caches and the incident store still grow for the first time;
  a leak is what keeps growing as the same faults come round again;
- probe loops that died: a probe target whose ``signalpath_probe_duration_seconds`` (rewritten
  on every attempt) did not change across 4 samples in a row; and every log line of the agent
  with a traceback, "never retrieved", "did not stop" or "raised";
- whether the agent was still answering and exited cleanly on SIGTERM (exit status 0, bounded).

The agent's log goes to a temporary folder, removed at the end (its path is printed first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile import HostileServer
from localize_bench import CATALOG

from agent.demo import lab_agent_config
from agent.lab import Lab, LabConfig

_BAD_LOG = re.compile(r"Traceback|never retrieved|did not stop|raised|Task was destroyed")
_DURATION = re.compile(r'^signalpath_probe_duration_seconds\{([^}]*)\} (\S+)$', re.M)


def _get(url: str, timeout: float = 10.0) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    return (time.perf_counter() - t0) * 1000, body


async def _wait_url(url: str, proc: asyncio.subprocess.Process, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise SystemExit(f"the agent exited with status {proc.returncode} before it answered")
        try:
            await asyncio.to_thread(_get, url, 2.0)
            return
        except OSError:
            await asyncio.sleep(0.5)
    raise SystemExit(f"the agent did not answer {url} within {within_s:.0f} s")


def _growth(values: list[float], first: int) -> tuple[float, float, float]:
    """(baseline, end, growth %): median of the first ``first`` values against the last quarter's."""
    base = statistics.median(values[:first])
    end = statistics.median(values[-max(1, len(values) // 4):])
    return base, end, (end - base) / base * 100 if base else 0.0


async def main(args: argparse.Namespace) -> int:
    scratch = tempfile.TemporaryDirectory(prefix="sp-soak-")
    root = Path(scratch.name)
    log_path = root / "agent.log"
    print(f"agent log: {log_path} (removed at the end)", flush=True)
    hostile = [HostileServer("endless_header"), HostileServer("slowloris", interval_s=1.0)]
    for h in hostile:
        await h.__aenter__()
    faults = [f for f in CATALOG if not args.only or f in args.only.split(",")]
    if args.warmup is None:  # one whole cycle of the faults (see the module docstring)
        args.warmup = (len(faults) * args.fault_every + args.fault_for) / 60
    samples: list[dict[str, Any]] = []
    durations: dict[str, list[str]] = {}
    injected: list[str] = []
    rc: int | None = None
    try:
        async with Lab(LabConfig()) as lab:
            conf = lab_agent_config(lab, "127.0.0.1:0", site="soak", webrtc=True,
                                    incidents_path=str(root / "incidents.db"))
            # a fixed port: the agent is another process; 0 would hide where it listens
            with __import__("socket").socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            conf["agent"]["listen"] = f"127.0.0.1:{port}"
            conf["agent"]["log_level"] = "info"
            conf["streams"].append({
                "name": "hostile", "origin": conf["streams"][0]["origin"],
                "edges": [{"name": h.kind.replace("_", "-"), "url": h.base + "/live.m3u8"} for h in hostile],
                "hls": {"interval_s": 1.0, "timeout_s": 5.0}})
            cfg = root / "soak.yaml"
            cfg.write_text(yaml.safe_dump(conf))
            url = f"http://127.0.0.1:{port}"
            with open(log_path, "wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agent.cli", "run", "-c", str(cfg), stdout=log, stderr=log)
                try:
                    await _wait_url(url + "/api/v1/status", proc, 60)
                    p = psutil.Process(proc.pid)
                    t0 = time.monotonic()
                    next_fault = t0 + args.fault_every
                    fault_i, clear_at = 0, None
                    end = t0 + args.minutes * 60
                    while time.monotonic() < end and proc.returncode is None:
                        now = time.monotonic()
                        if clear_at is not None and now >= clear_at:
                            await lab.clear_all()
                            clear_at = None
                        if clear_at is None and now >= next_fault and faults:
                            name = faults[fault_i % len(faults)]
                            fault_i += 1
                            target, params, _ = CATALOG[name]
                            try:
                                await lab.inject(name, target, None, params or None)
                                injected.append(name)
                                clear_at = now + args.fault_for
                            except Exception as exc:  # the lab refused: go on with the next
                                print(f"  lab refused {name}: {exc}", flush=True)
                            next_fault = now + args.fault_every
                        with p.oneshot():
                            cpu = p.cpu_times()
                            row = {"t_s": now - t0, "rss_mib": p.memory_info().rss / 2**20, "fds": p.num_fds(),
                                   "threads": p.num_threads(), "cpu_s": cpu.user + cpu.system}
                        try:
                            row["api_ms"], _ = await asyncio.to_thread(_get, url + "/api/v1/status")
                            _, metrics = await asyncio.to_thread(_get, url + "/metrics")
                            for labels, value in _DURATION.findall(metrics.decode()):
                                durations.setdefault(labels, []).append(value)
                        except OSError as exc:
                            row["api_ms"] = float("nan")
                            print(f"  the agent did not answer: {exc}", flush=True)
                        samples.append(row)
                        print(f"{row['t_s']:6.0f} s  RSS {row['rss_mib']:6.1f} MiB  FDs {row['fds']:4d}  "
                              f"threads {row['threads']:3d}  CPU {row['cpu_s']:7.1f} s  status API "
                              f"{row['api_ms']:6.1f} ms  fault: {injected[-1] if clear_at else '-'}", flush=True)
                        await asyncio.sleep(max(0.0, args.sample - (time.monotonic() - now)))
                    await lab.clear_all()
                finally:
                    if proc.returncode is None:
                        t_stop = time.monotonic()
                        proc.send_signal(signal.SIGTERM)
                        try:
                            async with asyncio.timeout(20):
                                rc = await proc.wait()
                            print(f"agent stopped on SIGTERM in {time.monotonic() - t_stop:.1f} s, exit status {rc}")
                        except TimeoutError:
                            proc.kill()
                            await proc.wait()
                            print("agent did not stop within 20 s of SIGTERM: killed")
                    else:
                        rc = proc.returncode
                        print(f"agent exited by itself with status {rc}")
    finally:
        for h in hostile:
            await h.__aexit__(None, None, None)
        bad = [line for line in log_path.read_text(errors="replace").splitlines() if _BAD_LOG.search(line)]
        scratch.cleanup()

    first = max(1, sum(1 for s in samples if s["t_s"] < args.warmup * 60)) if samples else 0
    if len(samples) < 4:
        print("too few samples for growth figures")
        return 1
    after = [s for s in samples if s["t_s"] >= args.warmup * 60] or samples
    n0 = max(1, min(len(after) // 4, 3))
    print()
    print(f"soak: {samples[-1]['t_s'] / 60:.1f} min, {len(samples)} samples, {len(injected)} faults injected "
          f"({len(set(injected))} kinds), warm-up {args.warmup:g} min ({first} samples) left out of the baseline")
    ok = True
    for key, unit in (("rss_mib", "MiB"), ("fds", "FDs"), ("threads", "threads")):
        base, end, g = _growth([float(s[key]) for s in after], n0)
        top = max(s[key] for s in samples)
        print(f"  {key:8s} baseline {base:7.1f} {unit}, end {end:7.1f} {unit}, growth {g:+5.1f} % "
              f"(max {top:.1f}; target < 10 %)")
        ok &= key == "threads" or g < 10
    api = sorted(s["api_ms"] for s in samples if s["api_ms"] == s["api_ms"])
    if api:
        print(f"  status API: median {statistics.median(api):.1f} ms, p95 {api[int(0.95 * (len(api) - 1))]:.1f} ms, "
              f"worst {api[-1]:.1f} ms over {len(api)} calls; unanswered {len(samples) - len(api)}")
    cpu = samples[-1]["cpu_s"] - samples[0]["cpu_s"]
    print(f"  agent CPU: {cpu:.0f} s over {samples[-1]['t_s'] - samples[0]['t_s']:.0f} s "
          f"({cpu / max(1.0, samples[-1]['t_s'] - samples[0]['t_s']) * 100:.1f} % of one core)")
    dead = sorted(k for k, vals in durations.items() if len(vals) >= 4 and len(set(vals[-4:])) == 1)
    print(f"  probe targets: {len(durations)}; loops that stopped attempting: {len(dead)}"
          + "".join(f"\n    {k}" for k in dead))
    print(f"  agent log lines with a traceback / dead task: {len(bad)}" + "".join(f"\n    {b[:200]}" for b in bad[:20]))
    print(f"  exit on SIGTERM: status {rc}")
    ok &= not dead and not bad and rc == 0
    print(json.dumps({"minutes": samples[-1]["t_s"] / 60, "samples": len(samples), "faults": len(injected),
                      "rss": _growth([s["rss_mib"] for s in after], n0), "fds": _growth([float(s["fds"]) for s in after], n0),
                      "dead_loops": len(dead), "bad_log_lines": len(bad), "exit": rc}))
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=None,
                    help="minutes left out of the growth baseline (default: one whole cycle of the faults)")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--fault-every", type=float, default=60.0, help="seconds between fault injections")
    ap.add_argument("--fault-for", type=float, default=20.0, help="seconds each fault lasts")
    ap.add_argument("--only", help="comma-separated fault names (default: the bench's whole catalog)")
    sys.exit(asyncio.run(main(ap.parse_args())))
