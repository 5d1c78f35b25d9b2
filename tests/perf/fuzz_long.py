"""The fuzz suite's long mode (issue 15 item 3): the targets of tests/fuzzing.py — the playlist
parser (structured playlists and mutated packager playlists), the HLS analysis over snapshot
sequences and the player model — run for ``--examples`` inputs in all (100,000 by default,
shared out by each target's weight), with the same strategies and properties as
tests/test_fuzz.py's bounded run.

    nice .venv/bin/python tests/perf/fuzz_long.py [--examples N] [--only NAME] [--seed S]

Prints, per target: inputs tried, crashes, distinct crash signatures (exception type, the
innermost frame in agent/, probes/ or tests/, and the message with its numbers masked), wall
time and rate; the first input of each signature is shown, to be added to tests/test_fuzz.py as
an explicit example once fixed. A crash does not stop the run: the count is the figure (target
0). Hypothesis runs generation only (no shrinking), in chunks of ``--chunk`` inputs with seeds
``seed``, ``seed + 1``... (so memory stays flat and a run is repeatable), with no example
database and its home in a temporary folder: nothing is written to the checkout. The figures
are what this machine did; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fuzzing import TARGETS
from hypothesis import HealthCheck, Phase, given, seed, settings

_NUMBER = re.compile(r"\d+(\.\d+)?")


def signature(exc: BaseException) -> str:
    """Where and what, without the numbers that differ from one input to the next."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if any(part in f.filename for part in ("/agent/", "/probes/", "/tests/"))]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    what = _NUMBER.sub("N", str(exc).splitlines()[0] if str(exc) else "")[:100]
    return f"{type(exc).__name__} at {where}: {what}"


def run_target(name: str, examples: int, chunk: int, first_seed: int) -> dict[str, Any]:
    strategy, check, _ = TARGETS[name]
    tried = crashes = 0
    found: dict[str, tuple[int, str]] = {}  # signature -> (count, repr of the first input)
    slowest = 0.0
    t0 = time.perf_counter()
    done = 0
    part = 0
    while done < examples:
        n = min(chunk, examples - done)

        @seed(first_seed + part)
        @settings(max_examples=n, database=None, deadline=None, derandomize=False, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(strategy)
        def one(case: Any) -> None:
            nonlocal tried, crashes, slowest
            tried += 1
            c0 = time.perf_counter()
            try:
                check(case)
            except Exception as exc:  # the count is the figure; a crash does not stop the run
                crashes += 1
                sig = signature(exc)
                count, first = found.get(sig, (0, repr(case)[:600]))
                found[sig] = (count + 1, first)
            slowest = max(slowest, time.perf_counter() - c0)

        before = tried
        one()
        done += n
        part += 1
        print(f"  {name}: {tried:,} tried, {crashes} crashes, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)
        if tried == before:  # the strategy has nothing left to give: do not spin
            break
    wall = time.perf_counter() - t0
    return {"name": name, "tried": tried, "crashes": crashes, "signatures": found, "wall_s": wall,
            "slowest_s": slowest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100_000, help="inputs in all, shared by the targets' weights")
    ap.add_argument("--only", choices=sorted(TARGETS), action="append", help="run this target only (repeatable)")
    ap.add_argument("--chunk", type=int, default=2000, help="inputs per Hypothesis run (one seed each)")
    ap.add_argument("--seed", type=int, default=20261130)
    args = ap.parse_args()
    names = args.only or list(TARGETS)
    total_weight = sum(TARGETS[n][2] for n in names)
    rows = []
    for name in names:
        share = max(1, round(args.examples * TARGETS[name][2] / total_weight))
        r = run_target(name, share, args.chunk, args.seed)
        rows.append(r)
        print(f"{name:26} tried {r['tried']:>7,}  crashes {r['crashes']:>5}  signatures {len(r['signatures']):>3}  "
              f"wall {r['wall_s']:8.1f} s  {r['tried'] / r['wall_s']:7.1f} inputs/s  "
              f"slowest input {r['slowest_s'] * 1000:7.1f} ms", flush=True)
        for sig, (count, first) in sorted(r["signatures"].items(), key=lambda kv: -kv[1][0]):
            print(f"    {count:>6} x {sig}\n           first: {first}", flush=True)
    tried = sum(r["tried"] for r in rows)
    crashes = sum(r["crashes"] for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    print(f"{'total':26} tried {tried:>7,}  crashes {crashes:>5}  signatures "
          f"{sum(len(r['signatures']) for r in rows):>3}  wall {wall:8.1f} s  {tried / wall:7.1f} inputs/s")


if __name__ == "__main__":
    main()
