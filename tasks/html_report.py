"""A self-contained HTML page for one stored experiment: what happened, drawn so a person sees it.

Input is `tasks.store.experiment_detail(id)` (plain values; non-finite floats as the strings
'NaN'/'Infinity'/'-Infinity'). The page has no scripts and loads nothing: inline CSS and inline
SVG drawn here. Per attempt one chart with two log-scale panels: loss per example (with the
uniform-score loss log(batch size) as a reference: a collapsed model sits on it) and each tower's
gradient norm (mean and max). Then the learning-rate lineage, recall@k beside the popularity
baseline, and the validation findings. Pure Python: no Prefect, no TensorFlow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

Detail = dict[str, Any]

# Chart geometry (SVG user units; the SVG scales to the page width).
PANEL_W, PANEL_H = 440, 250
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 14, 30, 40
CHART_W = 2 * PANEL_W + 20
MIN_LOG_RATIO = 1.6  # a flat series still gets a y-range wide enough for three ticks
EPOCH_COLUMNS = (
    "epoch", "loss", "uniform_loss", "val_loss", "buyer_grad_norm_mean", "buyer_grad_norm_max",
    "product_grad_norm_mean", "product_grad_norm_max", "nonfinite_steps", "learning_rate", "seconds",
)


def render_report(detail: Detail) -> str:
    """The whole HTML page for one experiment (see the module docstring)."""
    experiment = detail["experiment"]
    attempts = detail["attempts"]
    title = f"towerflow · {experiment['name']} (#{experiment['id']})"
    body = [
        _header(experiment),
        _section("Training attempts", _attempt_charts(attempts, experiment.get("spec") or {})),
        _section("Learning-rate lineage", _lineage_table(attempts)),
        _section("Recall@k against the popularity baseline", _recall(detail["recall"])),
        _section("Validation findings", _findings(detail["findings"])),
        _spec_block(experiment.get("spec")),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{_CSS}</style>",
            "</head><body><main>",
            *body,
            "</main></body></html>",
        ]
    )


def write_report(detail: Detail, path: str | Path) -> str:
    """Write `render_report(detail)` to a local path or an fsspec URL (gs://...); return its URI."""
    fs, fs_path = fsspec.core.url_to_fs(str(path))
    if isinstance(fs, LocalFileSystem):
        Path(fs_path).parent.mkdir(parents=True, exist_ok=True)
    with fs.open(fs_path, "w", encoding="utf-8") as out:
        out.write(render_report(detail))
    return Path(fs_path).resolve().as_uri() if isinstance(fs, LocalFileSystem) else str(path)


def report_filename(detail: Detail) -> str:
    """`<name>-<id>.html`, the name reduced to letters, digits, dots, dashes and underscores."""
    experiment = detail["experiment"]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(experiment["name"])).strip("-.") or "experiment"
    return f"{slug}-{experiment['id']}.html"


# --- values -------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A stored float (number or 'NaN'/'Infinity' string) as a float; None stays None."""
    if value is None:
        return None
    return float(value)


def _fmt(value: Any, digits: int = 4) -> str:
    number = _number(value)
    if number is None:
        return "–"
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return f"{number:.{digits}g}"


# --- page parts ---------------------------------------------------------------------------------


def _header(experiment: dict[str, Any]) -> str:
    status = str(experiment["status"])
    facts = [
        ("config hash", experiment.get("config_hash")),
        ("created", experiment.get("created_at")),
        ("updated", experiment.get("updated_at")),
        ("flow run", experiment.get("flow_run_id")),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts if v)
    message = f'<p class="message">{escape(experiment["message"])}</p>' if experiment.get("message") else ""
    return (
        f'<header><h1>{escape(str(experiment["name"]))} <span class="muted">#{experiment["id"]}</span> '
        f"{_badge(status)}</h1>{message}<dl>{items}</dl></header>"
    )


def _badge(status: str) -> str:
    return f'<span class="badge status-{escape(status)}">{escape(status)}</span>'


def _section(title: str, content: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{content}</section>"


def _table(css_class: str, headers: Sequence[str], rows: Sequence[str]) -> str:
    """A table with escaped `headers` over `rows` (each already a `<tr>...</tr>`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _lineage_table(attempts: list[dict[str, Any]]) -> str:
    if not attempts:
        return '<p class="muted">No attempt was made.</p>'
    rows = []
    previous: float | None = None
    for attempt in attempts:
        rate = _number(attempt["learning_rate"])
        change = ""
        if previous and rate is not None and math.isfinite(rate):
            change = f' <span class="muted">(× {rate / previous:.3g})</span>'
        previous = rate
        rows.append(
            f'<tr class="lineage-row"><td>{attempt["number"]}</td><td class="num">{_fmt(rate)}{change}</td>'
            f'<td>{_badge(str(attempt["status"]))}</td><td class="num">{attempt.get("epochs_run", "")}</td>'
            f'<td class="num">{_fmt(_final_loss(attempt))}</td>'
            f'<td>{escape(attempt.get("reason") or "")}</td></tr>'
        )
    return _table("lineage", ("attempt", "learning rate", "status", "epochs", "last loss", "reason"), rows)


def _final_loss(attempt: dict[str, Any]) -> Any:
    epochs = attempt.get("epochs") or []
    return epochs[-1]["loss"] if epochs else None


def _findings(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return '<p class="muted">No findings: the config passed every rule.</p>'
    rows = [
        f'<tr class="finding"><td>{_badge(f["severity"])}</td><td><code>{escape(f["field"] or "")}</code></td>'
        f'<td>{escape(f["message"])}</td><td>{escape(f.get("suggestion") or "")}</td>'
        f'<td class="muted">{escape(f["code"])}</td></tr>'
        for f in findings
    ]
    return _table("findings", ("severity", "field", "message", "suggestion", "code"), rows)


def _spec_block(spec: Any) -> str:
    if not spec:
        return ""
    text = json.dumps(spec, indent=2, default=str)
    return f"<section><details><summary>Experiment spec</summary><pre>{escape(text)}</pre></details></section>"


# --- attempt charts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One line: a value per epoch (None: not recorded; nan/inf: marked, never drawn)."""

    label: str
    style: str  # CSS class: colour and dash
    points: list[tuple[int, float | None]]


def _attempt_charts(attempts: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    if not attempts:
        return '<p class="muted">No attempt was made.</p>'
    losses = [_loss_series(a) for a in attempts]
    grads = [_grad_series(a) for a in attempts]
    uniform = [_uniform_loss(a, spec) for a in attempts]
    # Gradient norms share one axis across attempts, so a collapse and its recovery compare at a glance;
    # each loss panel has its own range around the uniform-score line, so a recovery's fall stays
    # visible beside an exploded attempt's 1e7.
    last_epoch = max([len(a.get("epochs") or []) for a in attempts] + [1])
    grad_axis = Axis(_log_range(_values(grads)), last_epoch)
    figures = []
    for attempt, loss, grad, reference in zip(attempts, losses, grads, uniform):
        number = attempt["number"]
        loss_axis = Axis(_log_range([*_values([loss]), reference]), last_epoch)
        if attempt.get("epochs"):
            panels = _panel(0, "loss per example", loss, loss_axis, number, reference) + _panel(
                PANEL_W + 20, "gradient norm (pre-clip)", grad, grad_axis, number
            )
        else:
            panels = _no_epochs()
        caption = (
            f"Attempt {number} · learning rate {_fmt(attempt['learning_rate'])} · "
            f'{_badge(str(attempt["status"]))} <span class="reason">{escape(attempt.get("reason") or "")}</span>'
        )
        figures.append(
            f'<figure class="attempt" id="attempt-{number}"><figcaption>{caption}</figcaption>'
            f'<svg class="chart attempt-chart" data-attempt="{number}" viewBox="0 0 {CHART_W} {PANEL_H}" '
            f'role="img" aria-label="attempt {number}: loss and gradient norms per epoch">{panels}</svg>'
            f"{_epoch_table(attempt)}</figure>"
        )
    return _LEGEND + "".join(figures)


def _loss_series(attempt: dict[str, Any]) -> list[Series]:
    epochs = attempt.get("epochs") or []
    series = [Series("train loss", "loss", [(e["epoch"], _number(e["loss"])) for e in epochs])]
    if any(e.get("val_loss") is not None for e in epochs):
        val_loss = [(e["epoch"], _number(e.get("val_loss"))) for e in epochs]
        series.append(Series("validation loss", "val-loss", val_loss))
    return series


def _uniform_loss(attempt: dict[str, Any], spec: dict[str, Any]) -> float | None:
    """The loss per example of uniform scores: the mean recorded `uniform_loss`, else log(batch size)."""
    recorded = [_number(e.get("uniform_loss")) for e in attempt.get("epochs") or []]
    finite = [v for v in recorded if v is not None and math.isfinite(v)]
    if finite:
        return sum(finite) / len(finite)
    batch_size = (spec.get("training") or {}).get("batch_size")
    return math.log(batch_size) if batch_size and batch_size > 1 else None


def _grad_series(attempt: dict[str, Any]) -> list[Series]:
    epochs = attempt.get("epochs") or []
    return [
        Series(f"{tower} {stat}", f"{tower}-{stat}",
               [(e["epoch"], _number(e[f"{tower}_grad_norm_{stat}"])) for e in epochs])
        for tower in ("buyer", "product")
        for stat in ("mean", "max")
    ]


def _values(groups: list[list[Series]]) -> list[float | None]:
    return [value for group in groups for s in group for _, value in s.points]


def _log_range(values: Sequence[float | None]) -> tuple[float, float]:
    """log10 bounds covering every positive finite value, padded; (-1, 1) when there is none."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not positive:
        return -1.0, 1.0
    low, high = math.log10(min(positive)), math.log10(max(positive))
    pad = max((high - low) * 0.06, (math.log10(MIN_LOG_RATIO) - (high - low)) / 2)
    return low - pad, high + pad


def _log_ticks(low: float, high: float) -> list[float]:
    """Tick values between 10**low and 10**high: decades, or 1-2-5, or 1..9 per decade when narrow."""
    span = high - low
    if span > 2.5:
        multipliers: Sequence[float] = (1,)
    elif span > 1:
        multipliers = (1, 2, 5)
    else:
        multipliers = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    ticks = [
        m * 10.0**d
        for d in range(math.floor(low), math.ceil(high) + 1)
        for m in multipliers
        if low <= math.log10(m * 10.0**d) <= high
    ]
    stride = max(1, math.ceil(len(ticks) / 7))
    return ticks[::stride]


@dataclass(frozen=True)
class Axis:
    """A panel's scales: epochs 1..last_epoch across, log10 `log_range` up (pixels within the panel)."""

    log_range: tuple[float, float]
    last_epoch: int
    left: float = 0.0  # the panel's offset in its chart
    top: ClassVar[float] = MARGIN_T
    bottom: ClassVar[float] = PANEL_H - MARGIN_B

    @property
    def x0(self) -> float:
        return self.left + MARGIN_L

    @property
    def x1(self) -> float:
        return self.left + PANEL_W - MARGIN_R

    def x(self, epoch: int) -> float:
        if self.last_epoch == 1:
            return (self.x0 + self.x1) / 2
        return self.x0 + (epoch - 1) / (self.last_epoch - 1) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        low, high = self.log_range
        return self.bottom - (math.log10(value) - low) / (high - low) * (self.bottom - self.top)


def _panel(
    left: float, title: str, series: list[Series], axis: Axis, attempt: int, reference: float | None = None
) -> str:
    """One log-scale panel: axes, ticks, the reference line, a polyline per series, off-axis marks."""
    axis = replace(axis, left=left)
    x0, x1, low, high = axis.x0, axis.x1, *axis.log_range
    parts = [
        f'<g class="panel" data-scale="log" data-range="{10**low:.3g}..{10**high:.3g}">',
        f'<text class="panel-title" x="{x0}" y="{MARGIN_T - 12}">{escape(title)}</text>',
        f'<text class="axis-label" x="{x1}" y="{MARGIN_T - 12}" text-anchor="end">log scale</text>',
        f'<rect class="plot" x="{x0}" y="{axis.top}" width="{x1 - x0}" height="{axis.bottom - axis.top}"/>',
    ]
    for tick in _log_ticks(low, high):
        y = axis.y(tick)
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick y-tick" x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    stride = max(1, math.ceil(axis.last_epoch / 10))
    for epoch in range(1, axis.last_epoch + 1, stride):
        x = axis.x(epoch)
        parts.append(f'<text class="tick" x="{x:.1f}" y="{axis.bottom + 16}" text-anchor="middle">{epoch}</text>')
    parts.append(f'<text class="axis-label" x="{(x0 + x1) / 2}" y="{PANEL_H - 6}" text-anchor="middle">'
                 "epoch</text>")
    if reference is not None:
        y = axis.y(reference)
        parts.append(
            f'<line class="reference uniform" x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}">'
            f"<title>uniform-score loss log(batch) = {_fmt(reference)}</title></line>"
            f'<text class="uniform-label" x="{x1 - 4}" y="{y - 5:.1f}" text-anchor="end">'
            f"uniform scores {_fmt(reference, 3)}</text>"
        )
    for s in series:
        parts.extend(_series_marks(s, axis, attempt))
    parts.append("</g>")
    return "".join(parts)


def _series_marks(s: Series, axis: Axis, attempt: int) -> list[str]:
    """A polyline per run of plottable points, a dot per point, and a cross per value off the log axis."""
    marks: list[str] = []
    runs: list[list[str]] = [[]]
    for epoch, value in s.points:
        if value is None:
            runs.append([])
            continue
        x = axis.x(epoch)
        tip = escape(f"attempt {attempt}, epoch {epoch}, {s.label}: {_fmt(value, 6)}")
        if not math.isfinite(value) or value <= 0:  # no place on a log axis: a labelled cross at the edge
            runs.append([])
            marks.append(_edge_mark(s, epoch, value, x, axis.bottom - 9 if value <= 0 else axis.top + 9, tip))
            continue
        y = axis.y(value)
        runs[-1].append(f"{x:.1f},{y:.1f}")
        marks.append(f'<circle class="dot {s.style}" cx="{x:.1f}" cy="{y:.1f}" r="2.6">'
                     f"<title>{tip}</title></circle>")
    lines = [
        f'<polyline class="line {s.style}" points="{" ".join(run)}"><title>{escape(s.label)}</title></polyline>'
        for run in runs
        if len(run) > 1
    ]
    return lines + marks


def _edge_mark(s: Series, epoch: int, value: float, x: float, y: float, tip: str) -> str:
    """A red cross labelled with the value (NaN, ±∞, 0) for a point a log axis cannot place."""
    kind = "offscale" if math.isfinite(value) else "nonfinite"
    text = _fmt(value)
    text = {"Infinity": "+∞", "-Infinity": "−∞"}.get(text, text)
    cross = f"M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x - 5:.1f},{y + 5:.1f}L{x + 5:.1f},{y - 5:.1f}"
    return (
        f'<g class="{kind} {s.style}" data-epoch="{epoch}" data-series="{escape(s.label)}"><title>{tip}</title>'
        f'<path class="cross" d="{cross}"/><text x="{x + 8:.1f}" y="{y + 4:.1f}">{text}</text></g>'
    )


def _no_epochs() -> str:
    return (
        f'<text class="empty" x="{CHART_W / 2}" y="{PANEL_H / 2}" text-anchor="middle">'
        "no epoch finished in this attempt</text>"
    )


def _epoch_table(attempt: dict[str, Any]) -> str:
    epochs = attempt.get("epochs") or []
    if not epochs:
        return ""
    rows = ["<tr>" + "".join(f'<td class="num">{_cell(e.get(c))}</td>' for c in EPOCH_COLUMNS) + "</tr>"
            for e in epochs]
    table = _table("epochs", [c.replace("_", " ") for c in EPOCH_COLUMNS], rows)
    return f"<details><summary>epoch values</summary>{table}</details>"


def _cell(value: Any) -> str:
    """An epoch value: integers as they are, floats to 4 significant digits, non-finite ones in red."""
    if isinstance(value, int):
        return str(value)
    number = _number(value)
    if number is None or math.isfinite(number):
        return _fmt(number)
    return f'<span class="nonfinite-value">{_fmt(number)}</span>'


# --- recall -----------------------------------------------------------------------------------------


def _recall(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">No recall: no attempt produced a model to evaluate.</p>'
    first = rows[0]
    about = (
        f'<p class="muted">over {first["n_candidates"]} unique products '
        f'({first["n_candidate_rows_before_dedup"]} rows before de-duplication), {first["n_queries"]} buyers, '
        f'exclude_seen={first["exclude_seen"]}</p>'
    )
    body = [
        f'<tr class="recall-row" data-k="{r["k"]}"><td>@{r["k"]}</td><td class="num">{_fmt(r["value"])}</td>'
        f'<td class="num">{_fmt(r["baseline"])}</td><td class="num">{_lift(r["value"], r["baseline"])}</td></tr>'
        for r in rows
    ]
    table = _table("recall", ("k", "model", "popularity", "lift"), body)
    return about + f'<div class="recall-grid">{_recall_chart(rows)}{table}</div>'


def _lift(model: Any, baseline: Any) -> str:
    m, b = _number(model), _number(baseline)
    if m is None or b is None or not b or not math.isfinite(m / b):
        return "–"
    return f"{m / b:.2f}×"


def _recall_chart(rows: list[dict[str, Any]]) -> str:
    """Horizontal bars per k: the model above, the popularity baseline below, values at the bar ends."""
    bar, gap, left, width = 13, 12, 56, 520
    top = 26
    height = top + len(rows) * (2 * bar + gap) + 10
    values = [_number(v) for r in rows for v in (r["value"], r["baseline"])]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    scale_max = min(1.0, max(finite + [1e-9]) * 1.2) or 1.0
    plot_w = width - left - 60
    parts = [
        f'<svg class="chart recall-chart" viewBox="0 0 {width} {height}" role="img" aria-label="recall at k">',
        f'<rect class="swatch model" x="{left}" y="6" width="12" height="10"/>'
        f'<text class="legend-text" x="{left + 16}" y="15">model</text>',
        f'<rect class="swatch popularity" x="{left + 80}" y="6" width="12" height="10"/>'
        f'<text class="legend-text" x="{left + 96}" y="15">popularity baseline</text>',
    ]
    for i, row in enumerate(rows):
        y = top + i * (2 * bar + gap)
        parts.append(f'<text class="tick" x="{left - 8}" y="{y + bar + 4}" text-anchor="end">@{row["k"]}</text>')
        for j, (key, style) in enumerate((("value", "model"), ("baseline", "popularity"))):
            value = _number(row[key])
            shown = value if value is not None and math.isfinite(value) else 0.0
            w = max(shown / scale_max * plot_w, 1.0)
            yy = y + j * bar
            parts.append(
                f'<rect class="bar {style}" x="{left}" y="{yy}" width="{w:.1f}" height="{bar - 2}">'
                f"<title>recall@{row['k']} {style}: {_fmt(row[key])}</title></rect>"
                f'<text class="bar-value" x="{left + w + 4:.1f}" y="{yy + bar - 4}">{_fmt(row[key], 3)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


# --- style ------------------------------------------------------------------------------------------

_LEGEND = (
    '<p class="legend">'
    '<span class="key loss">train loss</span><span class="key val-loss">validation loss</span>'
    '<span class="key uniform">uniform-score loss log(batch): a collapsed model sits on it</span>'
    '<span class="key buyer-mean">buyer tower mean</span><span class="key buyer-max">buyer max</span>'
    '<span class="key product-mean">product tower mean</span><span class="key product-max">product max</span>'
    '<span class="key nonfinite-key">× NaN/∞ (not drawn)</span></p>'
)

_CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --loss:#111827; --val:#7c3aed; --uniform:#9ca3af;
  --buyer:#2563eb; --product:#ea580c; --bad:#dc2626; }
body { margin:0; background:#f9fafb; color:var(--ink);
  font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width:980px; margin:0 auto; padding:24px 20px 48px; }
h1 { font-size:22px; margin:0 0 6px; }
h2 { font-size:17px; margin:28px 0 10px; }
header dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; margin:8px 0 0; color:var(--muted); }
header dd { margin:0; font-family:ui-monospace, monospace; font-size:12px; }
.message { margin:4px 0; }
.muted { color:var(--muted); font-weight:normal; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
  background:#e5e7eb; color:var(--ink); vertical-align:middle; }
.status-succeeded { background:#dcfce7; color:#166534; }
.status-collapsed, .status-warning { background:#fef3c7; color:#92400e; }
.status-diverged, .status-failed, .status-error, .status-halted, .status-stopped { background:#fee2e2; color:#991b1b; }
.status-running, .status-pending, .status-awaiting_approval { background:#dbeafe; color:#1e40af; }
figure.attempt { margin:0 0 18px; padding:10px 12px 6px; background:#fff; border:1px solid var(--line);
  border-radius:8px; }
figcaption { font-weight:600; margin-bottom:4px; }
.reason { color:var(--muted); font-weight:normal; font-size:13px; }
svg.chart { width:100%; height:auto; display:block; font-size:11px; }
.plot { fill:none; stroke:var(--line); }
.grid { stroke:#f1f5f9; }
.tick { fill:var(--muted); }
.panel-title { font-weight:600; font-size:12px; fill:var(--ink); }
.axis-label { fill:var(--muted); font-style:italic; }
.uniform-label { fill:var(--muted); font-size:10px; }
.empty { fill:var(--muted); font-size:14px; }
.line { fill:none; stroke-width:2; stroke-linejoin:round; }
.dot { stroke:none; }
.reference.uniform { stroke:var(--uniform); stroke-dasharray:3 3; stroke-width:1.5; }
.line.loss { stroke:var(--loss); } .dot.loss { fill:var(--loss); }
.line.val-loss { stroke:var(--val); stroke-dasharray:5 3; } .dot.val-loss { fill:var(--val); }
.line.buyer-mean { stroke:var(--buyer); } .dot.buyer-mean { fill:var(--buyer); }
.line.product-mean { stroke:var(--product); } .dot.product-mean { fill:var(--product); }
.line.buyer-max, .line.product-max { stroke-dasharray:5 3; stroke-width:1.2; opacity:.7; }
.dot.buyer-max, .dot.product-max { opacity:.7; }
.line.buyer-max { stroke:var(--buyer); } .dot.buyer-max { fill:var(--buyer); }
.line.product-max { stroke:var(--product); } .dot.product-max { fill:var(--product); }
.nonfinite .cross, .offscale .cross { stroke:var(--bad); stroke-width:2.2; }
.nonfinite text, .offscale text { fill:var(--bad); font-weight:700; }
.nonfinite-value { color:var(--bad); font-weight:700; }
.legend { display:flex; flex-wrap:wrap; gap:4px 16px; font-size:12px; color:var(--muted); margin:0 0 10px; }
.key::before { content:""; display:inline-block; width:22px; margin:0 6px 3px 0; border-top:2px solid;
  vertical-align:middle; }
.key.loss::before { border-color:var(--loss); }
.key.val-loss::before { border-top-style:dashed; border-color:var(--val); }
.key.uniform::before { border-top-style:dashed; border-color:var(--uniform); }
.key.buyer-mean::before { border-color:var(--buyer); }
.key.buyer-max::before { border-top-style:dashed; border-color:var(--buyer); }
.key.product-mean::before { border-color:var(--product); }
.key.product-max::before { border-top-style:dashed; border-color:var(--product); }
.key.nonfinite-key { color:var(--bad); }
.key.nonfinite-key::before { display:none; }
table { border-collapse:collapse; background:#fff; font-size:13px; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:12px; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
table.lineage, table.findings { width:100%; }
details { margin:6px 0; }
summary { cursor:pointer; color:var(--muted); font-size:12px; }
table.epochs { font-size:11px; margin-top:4px; }
table.epochs th, table.epochs td { padding:2px 6px; }
.recall-grid { display:grid; grid-template-columns:minmax(0, 3fr) minmax(0, 2fr); gap:16px; align-items:start; }
.bar.model, .swatch.model { fill:var(--buyer); }
.bar.popularity, .swatch.popularity { fill:var(--uniform); }
.bar-value, .legend-text { fill:var(--ink); font-size:11px; }
pre { background:#fff; border:1px solid var(--line); padding:10px; overflow:auto; font-size:12px; }
"""
