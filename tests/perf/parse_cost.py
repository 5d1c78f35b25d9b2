"""What parsing a big valid playlist costs (probes/core/playlist.py), and so whether the probes
must parse it off the event loop (probes.core.playlist.parse_body's threshold).

    .venv/bin/python tests/perf/parse_cost.py

Bodies (built here, deterministic):

- a 2.5-MB master playlist: 16 variants and, to make up the size, EXT-X-MEDIA subtitle
  renditions in many languages (a packager's "every language" ladder); only 16 of each kind
  are kept, but the library reads every line;
- a 6-hour event playlist at 2-s segments (10,800 segments, EXT-X-PROGRAM-DATE-TIME on each),
  as one of its 5 renditions;
- the usual live window: 6 segments (the hot path, for comparison);
- the 6-hour playlist with a bad line at its end (the error path: the diagnosis re-parses
  prefixes to find the line).

Prints, per body: its size, the median and max of ``repeat`` parses (ms), and the cost per MB.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from probes.core.playlist import PARSE_INLINE_MAX_BYTES, PlaylistError, parse


def master_2_5mb() -> str:
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for i in range(16):
        h = 144 + 60 * i
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={200_000 * (i + 1)},AVERAGE-BANDWIDTH={180_000 * (i + 1)},'
                     f'RESOLUTION={h * 16 // 9}x{h},CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=30.000,'
                     f'AUDIO="aud",SUBTITLES="subs"')
        lines.append(f"video/{h}p/index.m3u8?token=abcdef0123456789&session=s{i}")
    i = 0
    while sum(len(x) + 1 for x in lines) < 2_500_000:
        lines.append(f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="Subtitles {i}",LANGUAGE="l{i:05d}",'
                     f'AUTOSELECT=YES,DEFAULT=NO,FORCED=NO,URI="subs/l{i:05d}/index.m3u8?token=abcdef0123456789"')
        i += 1
    return "\n".join(lines) + "\n"


def event_playlist(hours: float = 6.0, seg_s: float = 2.0) -> str:
    n = int(hours * 3600 / seg_s)
    t0 = dt.datetime(2026, 11, 30, 10, 0, 0, tzinfo=dt.UTC)
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", f"#EXT-X-TARGETDURATION:{int(seg_s)}", "#EXT-X-MEDIA-SEQUENCE:0",
             "#EXT-X-PLAYLIST-TYPE:EVENT", '#EXT-X-MAP:URI="init.mp4"']
    for i in range(n):
        pdt = (t0 + dt.timedelta(seconds=i * seg_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines += [f"#EXT-X-PROGRAM-DATE-TIME:{pdt}", f"#EXTINF:{seg_s:.3f},", f"seg_{i:06d}.m4s"]
    return "\n".join(lines) + "\n"


def live_window() -> str:
    return "\n".join(["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:100",
                      *[f"#EXTINF:2.000,\nseg_{100 + i}.ts" for i in range(6)]]) + "\n"


def cost(text: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            parse(text, "http://origin.example/live/main/index.m3u8")
        except PlaylistError:
            pass
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    event = event_playlist()
    bodies = [("live window, 6 segments", live_window(), 200),
              ("master, 16 variants + EXT-X-MEDIA", master_2_5mb(), 5),
              ("6-hour event rendition, 2-s segments", event, 5),
              ("6-hour event, bad last line (error path)", event + "#EXT-X-BYTERANGE:x@y\nlast.m4s\n", 3)]
    print(f"inline parse threshold (PARSE_INLINE_MAX_BYTES): {PARSE_INLINE_MAX_BYTES} bytes")
    print(f"{'body':44} {'bytes':>10} {'median ms':>10} {'max ms':>8} {'ms/MB':>7}")
    for name, text, repeat in bodies:
        ms = cost(text, repeat)
        size = len(text.encode())
        print(f"{name:44} {size:>10} {statistics.median(ms):>10.2f} {max(ms):>8.2f} "
              f"{statistics.median(ms) / (size / 1e6):>7.0f}")
    print("5 renditions of the event playlist: 5 x the event row per reload when they all change")


if __name__ == "__main__":
    main()
