"""Regenerate the "Metric catalog" table in dashboards/README.md from ``agent.metrics.CATALOG``.

    python dashboards/gen_catalog.py          # rewrite the table between the markers
    python dashboards/gen_catalog.py --check  # exit 1 if the README is out of date

The table sits between ``<!-- catalog:begin -->`` and ``<!-- catalog:end -->``; text
outside the markers is left as written. The unit comes from the name's suffix
(DESIGN.md: base units in the name, ``_total`` for counters), every series also
carries ``site``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

BEGIN = "<!-- catalog:begin -->"
END = "<!-- catalog:end -->"
README = Path(__file__).resolve().parent / "README.md"

# longest suffix first: "_bytes_per_second" before "_second(s)" and "_bytes"
_UNITS: tuple[tuple[str, str], ...] = (
    ("_bytes_per_second", "bytes/s"),
    ("_seconds", "seconds"),
    ("_bytes", "bytes"),
    ("_ratio", "ratio"),
    ("_segments", "segments"),
)


class CatalogError(Exception):
    """The README has no (or broken) catalog markers."""


def unit_of(name: str, mtype: str) -> str:
    """The unit a metric's name states; ``_total`` counters count events of that unit or none."""
    base = name.removesuffix("_total")
    for suffix, unit in _UNITS:
        if base.endswith(suffix):
            return unit
    if name.endswith("_total"):
        return "count"
    return "1 (boolean)" if name.endswith(("_success", "_healthy")) else "1"


def render_table(catalog: Mapping[str, object]) -> str:
    """The markdown table, one row per metric in catalog order."""
    rows = ["| name | type | unit | labels | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, d in catalog.items():
        mtype = d.type
        labels = ", ".join(("site", *d.labels))
        meaning = d.help.replace("|", "\\|")
        rows.append(f"| `{name}` | {mtype} | {unit_of(name, mtype)} | {labels} | {meaning} |")
    return "\n".join(rows)


def update_readme(text: str, catalog: Mapping[str, object]) -> str:
    """``text`` with the table between the markers replaced by the one ``catalog`` gives."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise CatalogError(f"README lacks {BEGIN} ... {END}")
    return text[:start + len(BEGIN)] + "\n" + render_table(catalog) + "\n" + text[end:]


def table_in(text: str) -> str:
    """The table currently between the markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise CatalogError(f"README lacks {BEGIN} ... {END}")
    return text[start + len(BEGIN):end].strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README table is out of date")
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from agent.metrics import CATALOG

    text = args.readme.read_text()
    new = update_readme(text, CATALOG)
    if args.check:
        if new != text:
            print(f"{args.readme}: metric catalog is out of date; run python dashboards/gen_catalog.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
