"""bench_scale.py's measured sizes: kept in a JSON file (one entry per size, the latest run's) and drawn as
an SVG of peak RSS and wall time against rows, both on log axes, one line per path (the table in memory,
data.streaming), with the scaling issue's memory goals.

    .venv/bin/python bench/scale_plot.py bench/scale_results.json bench/scale.svg
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from tasks.charts import log_range, log_ticks  # the report's log axes

GOALS = [(3_000_000, 1.5), (30_000_000, 2.5)]  # (rows, peak RSS GiB) the scaling issue asks for
PATHS = {"memory": "table in memory", "stream": "data.streaming"}  # bench_scale's paths, as the legend names them
WIDTH, HEIGHT, GAP = 420, 260, 30
LEFT, RIGHT, TOP, BOTTOM = 58, 40, 30, 42


def record(path: Path, measured: dict) -> None:
    """Put `measured` (a row of bench_scale's table, with its `rows` and `path`) into the file at `path`,
    replacing that size and path's earlier entry; entries stay sorted by path and rows."""
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [entry for entry in entries if _key(entry) != _key(measured)] + [measured]
    path.write_text(json.dumps(sorted(entries, key=_key), indent=2) + "\n")


def _key(entry: dict) -> tuple[str, int]:
    return entry.get("path", "memory"), entry["rows"]


def _panel(entries: Sequence[dict], key: str, title: str, unit: str, left: float, goals: Sequence[tuple]) -> str:
    xs = [entry["rows"] for entry in entries] + [rows for rows, _ in goals]
    ys = [entry[key] for entry in entries] + [value for _, value in goals]
    (x_low, x_high), (y_low, y_high) = log_range(xs), log_range(ys)

    def x(value: float) -> float:
        return left + LEFT + (math.log10(value) - x_low) / (x_high - x_low) * (WIDTH - LEFT - RIGHT)

    def y(value: float) -> float:
        return HEIGHT - BOTTOM - (math.log10(value) - y_low) / (y_high - y_low) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<text x="{left + LEFT}" y="18" class="title">{title}</text>']
    for tick in log_ticks(y_low, y_high):
        x0, x1 = left + LEFT, left + WIDTH - RIGHT
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>')
        parts.append(f'<text x="{left + LEFT - 6}" y="{y(tick) + 4:.1f}" class="y">{tick:g} {unit}</text>')
    for tick in log_ticks(x_low, x_high):
        parts.append(f'<text x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" class="x">{tick / 1e6:g}M</text>')
    parts.append(f'<text x="{left + WIDTH / 2}" y="{HEIGHT - 8}" class="x">transactions (rows)</text>')
    for i, path in enumerate(PATHS):
        series = [entry for entry in entries if entry.get("path", "memory") == path]
        if not series:
            continue
        below = HEIGHT - BOTTOM - 8 - 14 * (len(PATHS) - 1 - i)  # lower right: the lines rise to the upper right
        parts.append(f'<text x="{left + WIDTH - RIGHT}" y="{below}" class="legend {path}">{PATHS[path]}</text>')
        points = " ".join(f"{x(entry['rows']):.1f},{y(entry[key]):.1f}" for entry in series)
        parts.append(f'<polyline points="{points}" class="measured {path}"/>')
        for entry in series:
            cx, cy = x(entry["rows"]), y(entry[key])
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" class="measured {path}"/>')
            label = f"{entry[key]:.2f}" if unit == "GiB" else f"{entry[key]:.0f}"
            parts.append(f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" class="value {path}">{label}</text>')
    for rows, value in goals:
        cx, cy = x(rows), y(value)
        parts.append(f'<path d="M{cx - 5:.1f},{cy - 5:.1f}L{cx + 5:.1f},{cy + 5:.1f}M{cx - 5:.1f},{cy + 5:.1f}'
                     f'L{cx + 5:.1f},{cy - 5:.1f}" class="goal"/>')
        parts.append(f'<text x="{cx + 7:.1f}" y="{cy + 14:.1f}" class="goal">goal {value:g} {unit}</text>')
    return "\n".join(parts)


def plot(entries: Sequence[dict]) -> str:
    """The SVG: peak RSS (the goals as crosses) and wall seconds, each against rows."""
    panels = [
        _panel(entries, "peak_rss_gib", "peak RSS of one attempt", "GiB", 0, GOALS),
        _panel(entries, "seconds", "wall time of one attempt", "s", WIDTH + GAP, ()),
    ]
    style = (
        "text{font:11px sans-serif;fill:#333}.title{font-weight:bold}.y{text-anchor:end}.x{text-anchor:middle}"
        ".grid{stroke:#ddd}.measured{stroke:#1f77b4;fill:none;stroke-width:2}circle.measured{fill:#1f77b4}"
        ".goal{stroke:#d62728;stroke-width:2;fill:#d62728}text.goal{stroke:none}.value,.legend{fill:#1f77b4}"
        ".legend{text-anchor:end}.measured.stream{stroke:#2ca02c}circle.stream,.value.stream,.legend.stream{fill:#2ca02c}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * WIDTH + GAP}" height="{HEIGHT}" '
        f'viewBox="0 0 {2 * WIDTH + GAP} {HEIGHT}"><style>{style}</style>\n' + "\n".join(panels) + "\n</svg>\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: scale_plot.py RESULTS.json OUT.svg", file=sys.stderr)
        return 2
    results, out = map(Path, argv)
    out.write_text(plot(json.loads(results.read_text())))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
