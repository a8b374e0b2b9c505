"""What a person sees in the Prefect UI: artifacts for findings, epochs, recall, lineage, progress."""

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


def artifact_key(name: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{name}-{what}".lower()).strip("-")
    return slug[:100]


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return value if not math.isfinite(value) else float(f"{value:.6g}")
    return value


def publish_findings(name: str, findings: Iterable, what: str = "findings") -> None:
    rows = [
        {"severity": f.severity, "code": f.code, "field": f.field, "message": f.message, "suggestion": f.suggestion or ""}
        for f in findings
    ]
    if rows:
        create_table_artifact(rows, key=artifact_key(name, what), description=f"{name}: {what.replace('-', ' ')}")


def publish_epochs(name: str, number: int, learning_rate: float, epochs: Iterable) -> None:
    rows = [{key: _fmt(value) for key, value in epoch.model_dump().items()} for epoch in epochs]
    if rows:
        create_table_artifact(
            rows,
            key=artifact_key(name, f"attempt-{number}-epochs"),
            description=f"{name}: per-epoch metrics of attempt {number} @ lr={learning_rate:g}",
        )


def publish_recall(name: str, evaluation) -> None:
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
        f"{name}: recall@k over {evaluation.n_candidates} unique products "
        f"({evaluation.n_candidate_rows_before_dedup} rows before de-duplication), "
        f"{evaluation.n_queries} buyers, {evaluation.n_pairs} test pairs, exclude_seen={evaluation.exclude_seen}"
    )
    create_table_artifact(rows, key=artifact_key(name, "recall"), description=description)


def lineage_markdown(name: str, attempts: Iterable) -> str:
    lines = [f"# {name}: attempt lineage", "", "| attempt | learning rate | status | epochs | reason |", "|---|---|---|---|---|"]
    for number, result in enumerate(attempts, start=1):
        lines.append(f"| {number} | {result.learning_rate:g} | {result.status} | {result.epochs_run} | {result.reason} |")
    return "\n".join(lines)


def publish_lineage(name: str, attempts: list) -> None:
    create_markdown_artifact(lineage_markdown(name, attempts), key=artifact_key(name, "lineage"))


class ProgressArtifact:
    """A progress bar in the UI that advances one step per training epoch."""

    def __init__(self, name: str, total_steps: int):
        self.total = max(total_steps, 1)
        self.done = 0
        self.artifact_id = create_progress_artifact(0.0, key=artifact_key(name, "progress"), description=name)

    def advance(self, description: str) -> None:
        self.done = min(self.done + 1, self.total)
        update_progress_artifact(self.artifact_id, 100.0 * self.done / self.total, description=description)
