"""Plain-text views of stored experiments for the terminal (`towerflow run`, `results`, `sweep`, `compare`).

Words and numbers come from `tasks.wording`, like the Prefect artifacts' and the HTML report's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tasks import wording
from tasks.views import Comparison, ExperimentView, SweepView
from trainer.results import EpochMetrics


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [list(header), *[[str(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


def render_experiment_list(experiments: list[dict[str, Any]]) -> str:
    """One line per experiment (`store.as_dict` rows), newest first."""
    if not experiments:
        return "no experiments yet: try `towerflow run examples/movielens.yaml`"
    rows = [[e["id"], e["name"], e["status"] + (" (unowned)" if e.get("unowned") else ""), e["config_hash"],
             e["updated_at"][:19], e["message"] or ""] for e in experiments]
    return "\n".join(_table(["id", "name", "status", "hash", "updated", "message"], rows))


def render_experiment(detail: ExperimentView | Mapping[str, Any], unowned: str | None = None,
                      checkpointed: Mapping[int, Sequence[EpochMetrics]] | None = None) -> str:
    """One experiment: header, findings, the attempt lineage, and recall beside the popularity baseline;
    `unowned` says why no run is working on it although it is unfinished; `checkpointed` (attempt number ->
    epochs) how far running attempts have got, their epochs being stored only once they end."""
    view = ExperimentView.of(detail)
    experiment = view.experiment
    lines = [f"experiment {experiment.id} {experiment.name!r} [{experiment.status}]  hash {experiment.config_hash}"]
    if experiment.message:
        lines.append(f"  {experiment.message}")
    if unowned:
        lines.append(f"  no run is working on it ({unowned}): run its config again, or let `towerflow serve` "
                     "recover it; it continues from its last checkpoint")
    if view.findings:
        lines += ["", "findings:"]
        lines += [f"  {f.severity:<7} {f.field}: {f.message}" for f in view.findings]
    if view.attempts:
        lines += ["", "attempts:"]
        rows = [[a.number, wording.rate(a.learning_rate), a.status, a.epochs_run, a.reason] for a in view.attempts]
        for row, attempt in zip(rows, view.attempts):
            so_far = (checkpointed or {}).get(attempt.number) if attempt.status == "running" else None
            if so_far:
                row[3:] = [f"{len(so_far)} of {experiment.epochs}", f"epoch {so_far[-1].epoch} checkpointed: "
                           f"loss/example {so_far[-1].loss:.4f} (uniform scores: {so_far[-1].uniform_loss:.4f})"]
        lines += ["  " + line for line in _table(["#", "learning rate", "status", "epochs", "reason"], rows)]
    if view.recall:
        lines += ["", f"recall {wording.recall_scope(view.recall[0])}:"]
        headers, rows = wording.recall_table(view.recall)
        lines += ["  " + line for line in _table(headers, rows)]
        below = wording.below_popularity(view.below_popularity_ks)
        if below:
            lines.append(f"  {below}")
    return "\n".join(lines)


def render_leaderboard(view: SweepView, k: int) -> str:
    """A sweep's points ranked by recall@k, with its progress."""
    sweep = view.sweep
    lines = [f"sweep {sweep.id} {sweep.name!r}  hash {sweep.sweep_hash}: {wording.progress_text(view.progress())}",
             "grid: " + "; ".join(f"{key} = {', '.join(map(wording.spec_value, values))}"
                                  for key, values in sweep.grid.items()), ""]
    return "\n".join(lines + _table(*wording.leaderboard_table(view.leaderboard(k), k)))


def render_comparison(comparison: Comparison) -> str:
    """Experiments side by side: the spec fields that differ, recall@k, attempts and epochs."""
    tables = wording.comparison_tables(comparison)
    lines = ["spec fields that differ:"]
    headers, rows = tables["differences"]
    lines += ["  " + line for line in _table(headers, rows)] if rows else ["  none (besides the name)"]
    for title, key in (("recall@k (lift over popularity):", "recall"), ("runs:", "runs")):
        headers, rows = tables[key]
        lines += ["", title, *("  " + line for line in _table(headers, rows))]
    return "\n".join(lines)
