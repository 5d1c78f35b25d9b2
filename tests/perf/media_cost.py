"""CPU cost of decoding + analysing one 2-s 360p segment, as % of its duration.

Target (DESIGN.md): <= 5 % of the segment's duration on one core. The decoder runs
with one thread (``DecodeOptions(decoder_threads=1)``) so process CPU time is one core's
work. Three contents: the lab-like moving pattern, FFmpeg's ``testsrc2`` (what the
real-software lab pushes), and a noisy picture at 1.5 Mbit/s (a worst case for H.264
decoding). Run: ``.venv/bin/python tests/perf/media_cost.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (the segment maker)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import av
import numpy as np
from test_media_synth import make_segment

from probes.core.media_analysis import MediaAnalyser
from probes.core.segment_decode import DecodeOptions, decode_segment

SECONDS = 2.0


def testsrc2_segment(bitrate: int = 800_000) -> bytes:
    """2 s of lavfi testsrc2 640x360@30 + a 1 kHz sine, H.264 veryfast + AAC, in MPEG-TS."""
    src = av.open("testsrc2=size=640x360:rate=30", format="lavfi")
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mpegts")
    vs = out.add_stream("libx264", rate=30)
    vs.width, vs.height, vs.pix_fmt, vs.bit_rate = 640, 360, "yuv420p", bitrate
    vs.options = {"preset": "veryfast", "g": "60", "keyint_min": "60", "sc_threshold": "0"}
    as_ = out.add_stream("aac", rate=48_000, layout="mono")
    for i, frame in enumerate(src.decode(video=0)):
        if i >= int(SECONDS * 30):
            break
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = i, Fraction(1, 30)
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    src.close()
    for k in range(int(SECONDS * 48_000) // 1024):
        t = (k * 1024 + np.arange(1024)) / 48_000
        af = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :],
                                        format="fltp", layout="mono")  # fmt: skip
        af.sample_rate, af.pts, af.time_base = 48_000, k * 1024, Fraction(1, 48_000)
        for p in as_.encode(af):
            out.mux(p)
    for p in as_.encode(None):
        out.mux(p)
    out.close()
    return buf.getvalue()


def measure(data: bytes, runs: int) -> tuple[float, float, int]:
    """Median CPU seconds per segment (decode + analyse), decode share, frames."""
    opts = DecodeOptions(decoder_threads=1)
    totals, decodes = [], []
    frames = 0
    for _ in range(runs):
        analyser = MediaAnalyser()
        t0 = time.process_time()
        seg = decode_segment(data, opts)
        t1 = time.process_time()
        analyser.feed(seg, segment_duration=SECONDS)
        t2 = time.process_time()
        totals.append(t2 - t0)
        decodes.append(t1 - t0)
        frames = seg.video_frames
        assert seg.decode_errors == 0, seg.error
    return statistics.median(totals), statistics.median(decodes), frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    contents = {
        "moving pattern, 800 kbit/s": make_segment(
            seconds=SECONDS, width=640, height=360, fps=30, preset="veryfast", bitrate=800_000
        ),
        "testsrc2, 800 kbit/s": testsrc2_segment(),
        "noise, 1.5 Mbit/s (worst case)": make_segment(
            seconds=SECONDS, width=640, height=360, fps=30, video="noise", preset="veryfast", bitrate=1_500_000
        ),
    }
    print(f"decode + analyse one {SECONDS:g}-s 640x360 30 fps H.264 + AAC segment, one decoder thread, "
          f"median of {args.runs} runs")  # fmt: skip
    worst = 0.0
    for name, data in contents.items():
        total, dec, frames = measure(data, args.runs)
        pct = 100 * total / SECONDS
        worst = max(worst, pct)
        print(f"  {name:34s} {len(data) / 1024:7.0f} KiB {frames:3d} frames  "
              f"{total * 1000:6.1f} ms CPU (decode {dec * 1000:5.1f} ms) = {pct:4.1f} % of the segment")  # fmt: skip
    verdict = "PASS" if worst <= 5.0 else "OVER TARGET"
    print(f"worst: {worst:.1f} % of one core per segment duration (target <= 5 %): {verdict}")


if __name__ == "__main__":
    main()
