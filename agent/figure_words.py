"""A status cell's figures as a person on shift reads them (shared/UX.md: "numbers a broadcaster
understands").

The probes' figures (``Evidence.figures``, merged per stage/component by :mod:`agent.status`) are
exact and unit-suffixed for machines: ``bw_in_bits_per_second: 574068``, ``latency_s: -0.0004``.
:func:`figure_lines` turns the ones a person needs into at most four short phrases with units and
sensible rounding — "input 574 kbit/s", "1.4 s behind live", "no stalls" — and leaves the rest to
the API and /metrics. Rules:

- durations: under a second in whole milliseconds, under 10 s with one decimal, else whole
  seconds; never negative (a clock a few ms off makes a tiny latency negative: shown as 0 ms);
- bit rates in kbit/s below 1 Mbit/s, else Mbit/s with one decimal;
- one phrase per thing: a player's stalls, stall time and rebuffer share are one phrase;
- a healthy zero is said once in words ("no stalls", "no freezes"), a zero stall time is not shown;
  a playlist's age only when it is older than its target duration.

Pure: no I/O, no clock; ``agent/status.py`` calls it when it serializes the board.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MAX_LINES", "bitrate", "duration", "figure_lines", "percent"]

MAX_LINES = 4


def duration(seconds: float) -> str:
    """``0.0064`` -> "6 ms", ``2.14`` -> "2.1 s", ``75.2`` -> "75 s"; negatives read as 0 ms."""
    s = max(0.0, seconds)
    if s < 1.0:
        return f"{round(s * 1000)} ms"
    if s < 10.0:
        return f"{s:.1f} s"
    return f"{round(s)} s"


def bitrate(bits_per_second: float) -> str:
    """``574068`` -> "574 kbit/s", ``2_450_000`` -> "2.5 Mbit/s"."""
    bps = max(0.0, bits_per_second)
    if bps >= 1e6:
        return f"{bps / 1e6:.1f} Mbit/s"
    return f"{round(bps / 1e3)} kbit/s"


def percent(ratio: float) -> str:
    """``0.348`` -> "35 %", ``0.021`` -> "2.1 %", ``0`` -> "0 %"."""
    p = max(0.0, ratio) * 100
    if p == 0:
        return "0 %"
    if p < 10:
        return f"{p:.1f} %"
    return f"{round(p)} %"


def _num(figs: Mapping[str, Any], key: str) -> float | None:
    v = figs.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _plural(n: float, one: str, many: str) -> str:
    k = round(n)
    return f"{k} {one if k == 1 else many}"


def _worst(figs: Mapping[str, Any], group: str, key: str) -> tuple[str, float] | None:
    """The highest ``key`` over the nested ``group`` (e.g. every rendition's live latency)."""
    nested = figs.get(group)
    if not isinstance(nested, Mapping):
        return None
    best: tuple[str, float] | None = None
    for name, sub in nested.items():
        if isinstance(sub, Mapping):
            v = _num(sub, key)
            if v is not None and (best is None or v > best[1]):
                best = (str(name), v)
    return best


# Each phrase: figures -> text, or None when the figure is absent or not worth a word.
_Phrase = Callable[[Mapping[str, Any]], str | None]


def _if(key: str, say: Callable[[float], str | None]) -> _Phrase:
    def phrase(figs: Mapping[str, Any]) -> str | None:
        v = _num(figs, key)
        return None if v is None else say(v)
    return phrase


def _stalls(figs: Mapping[str, Any]) -> str | None:
    count = _num(figs, "stall_count")
    if count is None:
        return None
    if count == 0:
        return "no stalls"
    # the viewer's session so far (CTA-2066 counts a session): a cell says "ok" once no stall is
    # recent, so the history is told as history, never as a share beside a healthy now
    text = f"{_plural(count, 'stall', 'stalls')} this session"
    stalled = _num(figs, "stall_s")
    if stalled:
        text += f", {duration(stalled)} stalled"
    share = _num(figs, "rebuffer_ratio")
    if share:
        text += f" ({percent(share)} of the session)"
    return text


def _freezes(figs: Mapping[str, Any]) -> str | None:
    n = _num(figs, "freezes")
    if n is None:
        return None
    if n == 0:
        return "no freezes"
    frozen = _num(figs, "freeze_seconds")
    return _plural(n, "freeze", "freezes") + (f" ({duration(frozen)})" if frozen else "")


def _behind_live(figs: Mapping[str, Any]) -> str | None:
    worst = _worst(figs, "renditions", "live_latency_s")
    return None if worst is None else f"{duration(worst[1])} behind live"


def _edge_lag(figs: Mapping[str, Any]) -> str | None:
    worst = _worst(figs, "renditions", "edge_lag_segments")
    if worst is None or worst[1] <= 0:
        return None
    return f"{_plural(worst[1], 'segment', 'segments')} behind the origin"


def _stale_playlist(figs: Mapping[str, Any]) -> str | None:
    """Only when a playlist is older than its target duration: a fresh one needs no word."""
    nested = figs.get("renditions")
    if not isinstance(nested, Mapping):
        return None
    worst: tuple[str, float] | None = None
    for name, sub in nested.items():
        if isinstance(sub, Mapping):
            age, target = _num(sub, "age_s"), _num(sub, "target_duration_s")
            if age is not None and age > (target or 1.0) and (worst is None or age > worst[1]):
                worst = (str(name), age)
    return None if worst is None else f"no new segment for {duration(worst[1])} ({worst[0]})"


# In the order a person reads them; the first MAX_LINES that apply are shown.
_PHRASES: tuple[_Phrase, ...] = (
    # studio: encoder status, encoder host
    _if("running", lambda v: "encoder running" if v else "encoder not running"),
    _if("output_stalled_s", lambda v: f"output stalled for {duration(v)}" if v > 0 else None),
    _if("cpu_ratio", lambda v: f"CPU {percent(v)}"),
    # ingest: nginx-rtmp /stat, WHIP publish
    _if("publisher_present", lambda v: "publisher present" if v else "no publisher"),
    _if("bw_in_bits_per_second", lambda v: f"input {bitrate(v)}"),
    _if("input_stalled_s", lambda v: f"input stalled for {duration(v)}" if v > 0 else None),
    _if("upload_bits_per_second", lambda v: f"upload {bitrate(v)}"),
    # content at the origin: what is wrong first, then what it is
    _if("frozen_s", lambda v: f"frozen for {duration(v)}" if v > 0 else None),
    _if("black_s", lambda v: f"black for {duration(v)}" if v > 0 else None),
    _if("silence_s", lambda v: f"silent for {duration(v)}" if v > 0 else None),
    _if("decode_errors", lambda v: _plural(v, "decode error", "decode errors") if v > 0 else None),
    # HLS: a playlist that stopped, how far behind live viewers are, edges behind the origin
    _stale_playlist,
    _behind_live,
    _edge_lag,
    # a stage's own latency (beacon): what this stage adds
    _if("latency_s", lambda v: f"adds {duration(v)}"),
    # viewers: players (HLS) and WHEP
    _stalls,
    _if("startup_s", lambda v: f"started in {duration(v)}"),
    _if("buffer_s", lambda v: f"buffer {duration(v)}"),
    _if("time_to_first_frame_seconds", lambda v: f"first frame in {duration(v)}"),
    _freezes,
    _if("rtt_seconds", lambda v: f"RTT {duration(v)}"),
    _if("loss_ratio", lambda v: f"{percent(v)} packets lost" if v > 0 else None),
    # content figures last: the picture and sound as they are
    _if("frame_rate", lambda v: f"{round(v)} fps"),
    _if("fps", lambda v: f"{round(v)} fps"),
    _if("bitrate_bps", bitrate),
    _if("audio_rms_dbfs", lambda v: f"audio {round(v)} dBFS"),
)


def figure_lines(figures: Mapping[str, Any]) -> list[str]:
    """At most :data:`MAX_LINES` phrases for a status cell; empty when nothing applies."""
    out: list[str] = []
    for phrase in _PHRASES:
        text = phrase(figures)
        if text and text not in out:
            out.append(text)
            if len(out) == MAX_LINES:
                break
    return out
