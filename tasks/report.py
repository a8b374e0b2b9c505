"""What a person sees in the Prefect UI: artifacts for findings, epochs, recall, lineage, progress.

Keys carry the config hash (`movielens-2e60cb58-recall`), so two configs with one name never share a history.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from trainer.spec import ExperimentSpec


def artifact_key(name: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{name}-{what}".lower()).strip("-")
    return slug[:100]


def experiment_slug(spec: ExperimentSpec) -> str:
    """The experiment's name and short config hash: artifact keys of two configs named alike never mix."""
    return f"{spec.name}-{spec.content_hash()[:8]}"


def _fmt(value: Any, digits: int = 4) -> Any:
    """A rounded number for a table cell; non-finite values as words (a table cell cannot say NaN)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return float(f"{value:.{digits}g}")
    return value


def publish_findings(slug: str, findings: Iterable, what: str = "findings") -> None:
    rows = [
        {"severity": f.severity, "code": f.code, "field": f.field, "message": f.message, "suggestion": f.suggestion or ""}
        for f in findings
    ]
    if rows:
        create_table_artifact(rows, key=artifact_key(slug, what), description=f"{slug}: {what.replace('-', ' ')}")


def epoch_verdict(epoch, loss_tolerance: float) -> str:
    """What one epoch says: non-finite, at the uniform-score loss (collapsing), or learning."""
    if epoch.nonfinite_steps or not math.isfinite(epoch.loss):
        return "non-finite"
    if epoch.uniform_gap is not None and epoch.uniform_gap < loss_tolerance:
        return "at uniform loss"
    return "learning"


def epoch_rows(epochs: Iterable, loss_tolerance: float) -> list[dict[str, Any]]:
    """The columns that explain an attempt, rounded and named for people."""
    return [
        {
            "epoch": e.epoch,
            "loss/example": _fmt(e.loss),
            "uniform loss": _fmt(e.uniform_loss),
            "gap": _fmt(e.uniform_gap, 3),
            "grad norm buyer": _fmt(e.buyer_grad_norm_mean, 3),
            "grad norm product": _fmt(e.product_grad_norm_mean, 3),
            "non-finite steps": e.nonfinite_steps,
            "seconds": round(e.seconds, 1),
            "verdict": epoch_verdict(e, loss_tolerance),
        }
        for e in epochs
    ]


def publish_epochs(spec: ExperimentSpec, number: int, result) -> None:
    rows = epoch_rows(result.epochs, spec.training.collapse.loss_tolerance)
    if rows:
        create_table_artifact(
            rows,
            key=artifact_key(experiment_slug(spec), f"attempt-{number}-epochs"),
            description=f"{spec.name}: attempt {number} @ lr={result.learning_rate:g}, {result.status}: {result.reason}",
        )


def publish_recall(spec: ExperimentSpec, evaluation) -> None:
    rows = [
        {
            "k": k,
            "recall": round(evaluation.model[k], 4),
            "popularity": round(evaluation.popularity[k], 4),
            "lift": round(evaluation.model[k] / evaluation.popularity[k], 2) if evaluation.popularity[k] else None,
        }
        for k in sorted(evaluation.model)
    ]
    description = (
        f"{spec.name}: recall@k over {evaluation.n_candidates} unique products "
        f"({evaluation.n_candidate_rows_before_dedup} rows before de-duplication), "
        f"{evaluation.n_queries} buyers, {evaluation.n_pairs} test pairs, exclude_seen={evaluation.exclude_seen}"
    )
    create_table_artifact(rows, key=artifact_key(experiment_slug(spec), "recall"), description=description)


def lineage_markdown(name: str, attempts: Iterable) -> str:
    lines = [f"# {name}: attempt lineage", "", "| attempt | learning rate | status | epochs | reason |", "|---|---|---|---|---|"]
    for number, result in enumerate(attempts, start=1):
        lines.append(f"| {number} | {result.learning_rate:g} | {result.status.capitalize()} | {result.epochs_run} | "
                     f"{result.reason} |")
    return "\n".join(lines)


def publish_lineage(spec: ExperimentSpec, attempts: list) -> None:
    """One lineage card per run, once its attempts are decided."""
    create_markdown_artifact(lineage_markdown(spec.name, attempts), key=artifact_key(experiment_slug(spec), "lineage"))


class ProgressArtifact:
    """One progress bar per run in the UI: each attempt fills it epoch by epoch (`artifact_id` from `create`)."""

    def __init__(self, artifact_id, total_steps: int):
        self.artifact_id = artifact_id
        self.total = max(total_steps, 1)
        self.done = 0

    @staticmethod
    def create(spec: ExperimentSpec):
        """A new progress artifact for a run of `spec`; its id."""
        return create_progress_artifact(0.0, key=artifact_key(experiment_slug(spec), "progress"),
                                        description=f"{spec.name}: training")

    def advance(self, description: str) -> None:
        self.done = min(self.done + 1, self.total)
        update_progress_artifact(self.artifact_id, 100.0 * self.done / self.total, description=description)
