"""A self-contained HTML page for one stored experiment: what happened, drawn so a person sees it.

Rendered from `tasks/templates/report.html` (Jinja2, autoescaped) over an `ExperimentView` (or the
`store.experiment_detail` dict it is read from), with the geometry of `tasks.charts` and the words of
`tasks.wording`. The page has no scripts and loads nothing: inline CSS and inline SVG. First the learning-rate
probe, when one ran (loss and gradient norms per probed rate, its reading and suggestion). Per attempt one
chart with two log-scale panels (loss per example with the uniform-score loss log(batch size) as a
reference, and each tower's gradient norm), then the learning-rate lineage, recall@k beside the
popularity baseline (naming every k where the model does not beat it), and the validation findings.
The comparison page (`render_comparison`) of a `tasks.views.Comparison` shares the CSS and the chart panel:
the spec fields that differ, the final attempts' losses overlaid, recall@k side by side, attempts and epochs.
Pure Python: no Prefect, no TensorFlow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from tasks import charts, wording
from tasks.views import Comparison, ExperimentView
from trainer import storage

Detail = ExperimentView | Mapping[str, Any]


def _edge_label(value: float) -> str:
    """The label of a cross for a value a log axis cannot place: NaN, +∞, −∞ or the value itself."""
    return {"Infinity": "+∞", "-Infinity": "−∞"}.get(wording.number(value), wording.number(value))


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ", timespec="seconds")


_ENV = Environment(loader=PackageLoader("tasks", "templates"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(
    px=lambda value: f"{value:.1f}", number=wording.number, edge_label=_edge_label, when=_when,
    pretty_json=lambda spec: json.dumps(spec, indent=2, default=str),
)
_ENV.globals.update(
    rate_change=wording.rate_change, lift_text=wording.lift_text, recall_scope=wording.recall_scope,
    below_popularity=wording.below_popularity, epoch_rows=wording.epoch_rows, probe_rows=wording.probe_rows,
    recall_table=wording.recall_table, zip=zip,
    nonfinite_words=wording.NONFINITE_WORDS, chart_w=charts.CHART_W, panel_w=charts.PANEL_W, panel_h=charts.PANEL_H,
)


def render_report(detail: Detail) -> str:
    """The whole HTML page for one experiment (see the module docstring)."""
    view = ExperimentView.of(detail)
    return _ENV.get_template("report.html").render(
        view=view,
        charts=charts.attempt_charts(view.attempts, view.experiment.batch_size),
        probe_panels=charts.probe_panels(view.lr_probe),
        recall_chart=charts.recall_chart(view.recall),
    )


def render_comparison(comparison: Comparison) -> str:
    """The whole HTML page comparing experiments (see the module docstring)."""
    names = [v.experiment.name for v in comparison.experiments]
    return _ENV.get_template("compare.html").render(
        comparison=comparison, names=names, tables=wording.comparison_tables(comparison),
        overlay=charts.loss_overlay([(name, v.final_attempt) for name, v in zip(names, comparison.experiments)]),
    )


def write_report(detail: Detail, path: str | Path) -> str:
    """Write `render_report(detail)` to a local path or a URI (gs://...); return its URI (file:// when local)."""
    return _write(render_report(detail), path)


def write_comparison(comparison: Comparison, path: str | Path) -> str:
    """Write `render_comparison(comparison)` like `write_report`; return its URI."""
    return _write(render_comparison(comparison), path)


def _write(page: str, path: str | Path) -> str:
    uri = str(path)
    storage.write_bytes(uri, page.encode())
    local = storage.local_path(uri)
    return Path(local).resolve().as_uri() if local is not None else uri


def report_filename(detail: Detail) -> str:
    """`<name>-<id>.html`, the name reduced to letters, digits, dots, dashes and underscores and to its
    first 100 of them (a file name has 255 bytes at most)."""
    experiment = ExperimentView.of(detail).experiment
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment.name)[:100].strip("-.") or "experiment"
    return f"{slug}-{experiment.id}.html"
