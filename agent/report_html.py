"""The post-broadcast report as one self-contained HTML file (agent/report.py computes it).

Plots are drawn by matplotlib (Agg, SVG inlined: no script, no font or image fetched; text
stays text, so it prints sharp and scales on a phone). Sections: the plain-words summary;
the signal path as swimlanes per stream (one lane per stage/component coloured by state,
incidents as bars by severity); stage latency and glass-to-glass; per-edge segment download
ratio; availability against the objective; time to localize and to resolve per incident
with the five-minute target; fault types (Pareto) and complaint types (explained or not);
the virtual viewers' funnel; the incident table.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agent.report import Report, duration_words

STATE_COLOURS = {"ok": "#2e9e5b", "degraded": "#e0a030", "down": "#c8362e", "unknown": "#b9bec5"}
SEVERITY_COLOURS = {"P1": "#8e1b14", "P2": "#d9661f", "P3": "#c9a227"}
_LOCK = threading.Lock()  # pyplot's state is global: one figure at a time, whoever calls


@contextmanager
def _figure(width: float, height: float) -> Iterator[Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with _LOCK, matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                                       "axes.spines.right": False, "figure.dpi": 100}):
        fig = plt.figure(figsize=(width, height))
        try:
            yield fig
        finally:
            plt.close(fig)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or DOCTYPE


def _clock(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%H:%M:%S")


def _time_axis(ax: Any, r: Report) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.set_xlim(0, max(1.0, r.input.end - r.input.start))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _clock(r.input.start + x)))
    ax.set_xlabel("time (UTC)")


def swimlanes(r: Report, stream: str) -> str:
    lanes = [ln for ln in r.lanes if ln.stream == stream]
    if not lanes:
        return ""
    t0 = r.input.start
    with _figure(9.0, 0.9 + 0.38 * len(lanes)) as fig:
        ax = fig.add_subplot()
        names = [f"{ln.stage}/{ln.component}" for ln in lanes]
        step = r.input.steps[0].step if r.input.steps else 10.0
        for y, ln in enumerate(lanes):
            runs: list[tuple[float, float, str]] = []
            for t, state in zip(ln.times, ln.states, strict=True):
                if runs and runs[-1][2] == state and abs(runs[-1][0] + runs[-1][1] - (t - t0)) < 1e-6:
                    runs[-1] = (runs[-1][0], runs[-1][1] + step, state)
                else:
                    runs.append((t - t0, step, state))
            for state in STATE_COLOURS:
                bars = [(x, w) for x, w, s in runs if s == state]
                if bars:
                    ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=STATE_COLOURS[state], linewidth=0)
            for state in ("degraded", "down"):  # a shorter bad spell within a step: a band on its top
                marks = [(t - t0, step) for t, b in zip(ln.times, ln.blips, strict=True) if b == state]
                if marks:
                    ax.broken_barh(marks, (y - 0.4, 0.25), facecolors=STATE_COLOURS[state], linewidth=0)
        if r.input.steps:
            stored = max(s.t + s.step for s in r.input.steps if s.stream == stream) - t0
            if stored < r.input.end - t0 - step:  # the newest steps are not stored yet (or the agent stopped)
                ax.axvline(stored, color="#555", linestyle=":", linewidth=1)
                ax.annotate("history ends", (stored, -0.55), fontsize=7, color="#555")
        for inc in r.incidents:
            if inc.stream != stream:
                continue
            place = inc.place
            if place not in names:
                continue
            y = names.index(place)
            end = (inc.started_at + inc.resolved_s) if inc.resolved_s is not None else r.input.end
            x0 = max(0.0, inc.started_at - t0)
            ax.broken_barh([(x0, max(1.0, end - t0 - x0))], (y - 0.15, 0.3), facecolors="none",
                           edgecolors=SEVERITY_COLOURS.get(inc.severity, "#000"), linewidth=1.6)
            ax.annotate(f"{inc.severity} {inc.fault}", (x0, y + 0.42), fontsize=7, va="bottom",
                        color=SEVERITY_COLOURS.get(inc.severity, "#000"),
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
        ax.set_yticks(range(len(lanes)), names)
        ax.set_ylim(-0.6, len(lanes) - 0.4)
        ax.invert_yaxis()
        _time_axis(ax, r)
        from matplotlib.patches import Patch

        handles = [Patch(color=c, label=s) for s, c in STATE_COLOURS.items()]
        handles += [Patch(facecolor="none", edgecolor=c, label=f"{s} incident") for s, c in SEVERITY_COLOURS.items()]
        ax.legend(handles=handles, ncols=7, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25),
                  frameon=False)
        return _svg(fig)


def lines(r: Report, figures: list[str], title: str, ylabel: str, *, threshold: float | None = None,
          per_edge_max: bool = False, worst: bool = False) -> str:
    """One line per series of ``figures``: each step's mean, or its max with ``worst``."""
    data: dict[str, list[tuple[float, float]]] = {}
    for name in figures:
        for label, triples in r.series.get(name, {}).items():
            points = [(t, hi if worst else mean) for t, mean, hi in triples]
            if per_edge_max:  # one line per edge: the worst rendition at each step
                stream, place, *_ = label.split(" ")
                key = f"{stream} {place}" if len(r.input.streams) > 1 else place
                merged = dict(data.get(key, []))
                for t, v in points:
                    merged[t] = max(v, merged.get(t, v))
                data[key] = sorted(merged.items())
            else:
                shown = label.split(" ", 1)[1] if len(r.input.streams) == 1 else label  # one stream: its name once
                key = f"{FIGURE_NAMES.get(name, name)}, {shown}" if len(figures) > 1 else shown
                data[key] = points
    if not data:
        return ""
    span = max(1.0, r.input.end - r.input.start)
    bucket = span / MAX_POINTS if max(len(p) for p in data.values()) > MAX_POINTS else 0.0
    if bucket:  # a day of 10-s steps is 8,640 points a line: the worst of each bucket is drawn
        title += f" (worst of each {duration_words(bucket)})"
        data = {k: _worst_per_bucket(p, r.input.start, bucket) for k, p in data.items()}
    with _figure(9.0, 3.0) as fig:
        ax = fig.add_subplot()
        for label, points in sorted(data.items()):
            ax.plot([t - r.input.start for t, _ in points], [v for _, v in points], label=label, linewidth=1.2)
        if threshold is not None:
            ax.axhline(threshold, color="#c8362e", linestyle="--", linewidth=1)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left", fontsize=9)
        _time_axis(ax, r)
        ax.legend(fontsize=7, ncols=3, frameon=False)
        return _svg(fig)


MAX_POINTS = 600  # per plotted line
FIGURE_NAMES = {"stage_latency_s": "stage latency", "glass_to_glass_s": "glass-to-glass",
                "download_ratio": "download ratio", "live_latency_s": "live latency"}


def _whole_numbers(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _worst_per_bucket(points: list[tuple[float, float]], start: float, bucket: float) -> list[tuple[float, float]]:
    out: dict[int, tuple[float, float]] = {}
    for t, v in points:
        b = int((t - start) // bucket)
        if b not in out or v > out[b][1]:
            out[b] = (start + b * bucket, v)
    return [out[b] for b in sorted(out)]


def availability(r: Report) -> str:
    rows = [a for a in r.availability if a.ratio is not None]
    if not rows:
        return ""
    with _figure(9.0, 0.8 + 0.3 * len(rows)) as fig:
        ax = fig.add_subplot()
        labels = [f"{a.stream} {a.place}" if len(r.input.streams) > 1 else a.place for a in rows]
        values = [100 * (a.ratio or 0.0) for a in rows]
        colours = [STATE_COLOURS["ok"] if a.meets else STATE_COLOURS["down"] for a in rows]
        ax.barh(range(len(rows)), values, color=colours)
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        low = min(values + [100 * r.input.objective])
        ax.set_xlim(max(0.0, low - (100 - low) * 0.5 - 0.05), 100)
        ax.axvline(100 * r.input.objective, color="#333", linestyle="--", linewidth=1)
        ax.annotate(f"objective {r.input.objective:.1%}", (100 * r.input.objective, -0.6), fontsize=7, ha="right")
        for y, v in enumerate(values):
            ax.annotate(f"{v:.2f} %", (v, y), fontsize=7, va="center", ha="right", color="white")
        ax.set_xlabel("availability, % of measured time")
        return _svg(fig)


def times(r: Report) -> str:
    if not r.incidents:
        return ""
    with _figure(9.0, 0.9 + 0.3 * len(r.incidents)) as fig:
        ax = fig.add_subplot()
        ys = range(len(r.incidents))
        resolve = [x.resolved_s if x.resolved_s is not None else r.input.end - x.started_at for x in r.incidents]
        ax.barh(ys, resolve, color="#9bb7d4", label="to resolve (open: to the end)")
        ax.barh(ys, [x.localized_s for x in r.incidents], height=0.4, color="#1f4e79", label="to localize")
        ax.axvline(r.input.target_s, color="#c8362e", linestyle="--", linewidth=1)
        ax.annotate(f"target {duration_words(r.input.target_s)}", (r.input.target_s, -0.6), fontsize=7)
        ax.set_yticks(list(ys), [f"{x.place} {x.fault}" for x in r.incidents])
        ax.invert_yaxis()
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlabel("seconds from the fault's first evidence (log scale)")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        return _svg(fig)


def pareto(items: list[tuple[str, int]], title: str) -> str:
    if not items:
        return ""
    with _figure(9.0, 3.0) as fig:
        ax = fig.add_subplot()
        names, counts = [n for n, _ in items], [c for _, c in items]
        ax.bar(range(len(items)), counts, color="#1f4e79")
        _whole_numbers(ax)
        ax.set_xticks(range(len(items)), names, rotation=30, ha="right")
        ax.set_ylabel("count")
        total, run, cum = sum(counts), 0, []
        for c in counts:
            run += c
            cum.append(100 * run / total)
        ax2 = ax.twinx()
        ax2.plot(range(len(items)), cum, color="#d9661f", marker="o", linewidth=1.2)
        ax2.set_ylim(0, 105)
        ax2.set_ylabel("cumulative %")
        ax.set_title(title, loc="left", fontsize=9)
        return _svg(fig)


def complaints(r: Report) -> str:
    if not r.complaints:
        return ""
    with _figure(9.0, 3.0) as fig:
        ax = fig.add_subplot()
        xs = range(len(r.complaints))
        explained = [e for _, e, _u in r.complaints]
        ax.bar(xs, explained, color=STATE_COLOURS["ok"], label="explained by an incident")
        ax.bar(xs, [u for _, _e, u in r.complaints], bottom=explained, color=STATE_COLOURS["down"],
               label="unexplained")
        ax.set_xticks(list(xs), [t for t, _e, _u in r.complaints], rotation=30, ha="right")
        ax.set_ylabel("complaints")
        _whole_numbers(ax)
        ax.legend(fontsize=7, frameon=False)
        return _svg(fig)


def funnel(r: Report) -> str:
    steps = r.funnel.steps(r.input.startup_target_s, r.input.rebuffer_target)
    if not r.funnel.attempts:
        return ""
    with _figure(9.0, 2.4) as fig:
        ax = fig.add_subplot()
        ax.barh(range(len(steps)), [n for _, n in steps], color="#1f4e79")
        ax.set_yticks(range(len(steps)), [s for s, _ in steps])
        ax.invert_yaxis()
        for y, (_s, n) in enumerate(steps):
            ax.annotate(f"{n} ({n / r.funnel.attempts:.0%})", (n, y), fontsize=7, va="center")
        ax.set_xlabel("virtual viewers")
        return _svg(fig)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:980px;padding:12px;color:#1b1f24}
h1{font-size:1.4em;margin:.2em 0} h2{font-size:1.1em;margin:1.4em 0 .3em;border-bottom:1px solid #d0d4d9}
.meta{color:#555;font-size:.9em} .summary{background:#f3f5f8;border-left:4px solid #1f4e79;padding:8px 12px}
svg{width:100%;height:auto} table{border-collapse:collapse;width:100%;font-size:.85em}
.plot,.table{overflow-x:auto} .plot svg{min-width:620px}
td,th{border-bottom:1px solid #e3e6ea;padding:3px 6px;text-align:left;vertical-align:top}
.P1{color:#8e1b14;font-weight:600}.P2{color:#d9661f;font-weight:600}.P3{color:#8a6d00}
.note{color:#555;font-size:.85em} section{break-inside:avoid;page-break-inside:avoid}
@media (max-width:600px){body{font-size:14px;padding:6px} td,th{padding:2px 3px} table{min-width:560px}}
@media print{body{max-width:none} h2{break-after:avoid}}
"""


def render(r: Report) -> str:
    """The whole report: one HTML document with every plot inline."""
    inp = r.input
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>{e(inp.title if 'signalpath' in inp.title else inp.title + ': signalpath report')}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(inp.title)}</h1>",
             f"<p class='meta'>{e(_stamp(inp.start))} to {e(_stamp(inp.end))} "
             f"({e(duration_words(inp.end - inp.start))}); streams {e(', '.join(inp.streams))}; "
             f"figures from {e(inp.source)}</p>",
             f"<p class='summary' id='summary'>{e(r.summary)}</p>"]

    def section(sid: str, title: str, body: str, empty: str) -> None:
        # a plot keeps a legible width on a phone and scrolls sideways in its box
        box = f"<div class='{'table' if body.startswith('<table') else 'plot'}'>{body}</div>" if body else \
            f"<p class='note'>{e(empty)}</p>"
        parts.append(f"<section id='{sid}'><h2>{e(title)}</h2>{box}</section>")

    for stream in inp.streams:
        section(f"lanes-{_id(stream)}", f"The signal path of {stream} over time", swimlanes(r, stream),
                "No history for this stream in the window.")
    section("latency", "Stage latency and glass-to-glass",
            lines(r, ["stage_latency_s", "glass_to_glass_s"], "seconds each stage adds; glass-to-glass",
                  "seconds"), "No latency measured (the latency probe is off or found no segment times).")
    section("download", "Segment download ratio per edge",
            lines(r, ["download_ratio"], "download time / segment duration, slowest of each step (above 1: "
                  "viewers stall)", "ratio", threshold=1.0, per_edge_max=True, worst=True),
            "No segment downloads measured.")
    section("availability", "Availability against the objective", availability(r), "Nothing measured.")
    section("times", "Time to localize and to resolve", times(r), "No incident in this window.")
    section("faults", "Fault types by frequency", pareto(r.faults, "incidents by fault"), "No incident.")
    section("complaints", "Viewer complaints by type", complaints(r), "No complaint recorded.")
    section("funnel", "Viewer experience (virtual viewers)", funnel(r), "No virtual viewer started in the window.")
    rows = "".join(
        f"<tr><td class='{e(x.severity)}'>{e(x.severity)}</td><td>{e(_clock(x.started_at))}</td>"
        f"<td>{e(x.stream)} {e(x.place)}</td><td>{e(x.fault)}</td><td>{x.localized_s:.1f} s</td>"
        f"<td>{e(duration_words(x.resolved_s)) if x.resolved_s is not None else 'open'}</td>"
        f"<td>{e(x.summary)}</td></tr>" for x in r.incidents)
    section("incidents", "Incidents",
            ("<table><tr><th>sev</th><th>began</th><th>where</th><th>fault</th><th>localized</th>"
             f"<th>resolved after</th><th>what</th></tr>{rows}</table>") if rows else "", "No incident.")
    parts.append("<p class='note'>signalpath post-broadcast report. Availability: ok time / measured time "
                 "(unknown counts neither way); time to localize: first bad evidence to the incident.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _stamp(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _id(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)
