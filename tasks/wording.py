"""The words and numbers every renderer shares: the terminal, the Prefect artifacts and the HTML report.

One place says how a number is rounded, what a lift is, how recall's candidates are described, what an
epoch's verdict is and how a status reads, so the three views never disagree. Pure: no Prefect, no
TensorFlow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from trainer.quality import below_baseline_words

MISSING = "–"
NONFINITE_WORDS = ("NaN", "Infinity", "-Infinity")  # as the store's JSON writes them


class RecallScope(Protocol):
    """What recall was measured over (a stored recall row, or an evaluation result)."""

    n_candidates: int
    n_candidate_rows_before_dedup: int
    n_queries: int
    exclude_seen: bool


def nonfinite_word(value: float) -> str | None:
    """'NaN', 'Infinity' or '-Infinity' for a non-finite float; None for a finite one."""
    if math.isfinite(value):
        return None
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def number(value: float | None, digits: int = 4) -> str:
    """A value to `digits` significant digits; non-finite ones as words, a missing one as a dash."""
    if value is None:
        return MISSING
    return nonfinite_word(value) or f"{value:.{digits}g}"


def share(value: float | None) -> str:
    """A recall (a share of test pairs) to 4 decimals, so a column of them lines up: 0.1484, 0.0920."""
    if value is None:
        return MISSING
    return nonfinite_word(value) or f"{value:.4f}"


def cell(value: Any, digits: int = 4) -> Any:
    """A table cell: a float rounded to `digits` significant digits (non-finite as a word), '' for None."""
    if value is None:
        return ""
    if isinstance(value, float):
        return nonfinite_word(value) or float(f"{value:.{digits}g}")
    return value


def rate(learning_rate: float) -> str:
    """A learning rate as people write it: 0.1, 1e-05."""
    return f"{learning_rate:g}"


def rate_change(previous: float | None, learning_rate: float) -> str | None:
    """'× 0.1' from the previous attempt's rate to this one; None for the first or an unusable rate."""
    if not previous or not math.isfinite(previous) or not math.isfinite(learning_rate):
        return None
    return f"× {learning_rate / previous:.3g}"


def lift(model: float, baseline: float) -> float | None:
    """model / baseline, rounded to 2 decimals; None when the baseline is 0 or either is not finite."""
    if not baseline or not math.isfinite(model) or not math.isfinite(baseline):
        return None
    return round(model / baseline, 2)


def lift_text(model: float, baseline: float) -> str:
    """'2.89×', or a dash when there is no lift."""
    ratio = lift(model, baseline)
    return MISSING if ratio is None else f"{ratio:.2f}×"


def recall_table(recall: Sequence[Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a recall@k table: the model beside popularity with the lift, and beside
    EASE (with the model's ratio to it) when EASE was measured."""
    with_ease = any(r.ease is not None for r in recall)
    headers = ["k", "model", "popularity", "lift", *(["EASE", "model / EASE"] if with_ease else [])]
    rows = []
    for r in recall:
        row = [f"@{r.k}", share(r.value), share(r.baseline), lift_text(r.value, r.baseline)]
        if with_ease:
            row += [share(r.ease), MISSING if r.ease is None else lift_text(r.value, r.ease)]
        rows.append(row)
    return headers, rows


def recall_scope(scope: RecallScope, n_pairs: int | None = None) -> str:
    """'over 400 unique products (8000 rows before de-duplication), 1900 buyers, exclude_seen=False'."""
    pairs = "" if n_pairs is None else f", {n_pairs} test pairs"
    return (
        f"over {scope.n_candidates} unique products ({scope.n_candidate_rows_before_dedup} rows before "
        f"de-duplication), {scope.n_queries} buyers{pairs}, exclude_seen={scope.exclude_seen}"
    )


def below_popularity(ks: Sequence[int]) -> str | None:
    """'below popularity at @5, @10: not worth serving there', or None when the model beats it at every k."""
    return f"{below_baseline_words(ks)}: not worth serving there" if ks else None


def status_word(status: str) -> str:
    """A status as the Prefect UI names states: 'Collapsed', 'Awaiting approval'."""
    return status.replace("_", " ").capitalize()


class EpochLike(Protocol):
    epoch: int
    loss: float
    uniform_loss: float | None
    uniform_gap: float | None
    buyer_grad_norm_mean: float
    product_grad_norm_mean: float
    nonfinite_steps: int
    seconds: float


def epoch_verdict(epoch: EpochLike, loss_tolerance: float) -> str:
    """What one epoch says: non-finite, at the uniform-score loss (collapsing), or learning."""
    if epoch.nonfinite_steps or not math.isfinite(epoch.loss):
        return "non-finite"
    if epoch.uniform_gap is not None and epoch.uniform_gap < loss_tolerance:
        return "at uniform loss"
    return "learning"


def epoch_rows(epochs: Iterable[EpochLike], loss_tolerance: float) -> list[dict[str, Any]]:
    """The columns that explain an attempt, rounded and named for people."""
    return [
        {
            "epoch": e.epoch,
            "loss/example": cell(e.loss),
            "uniform loss": cell(e.uniform_loss),
            "gap": cell(e.uniform_gap, 3),
            "grad norm buyer": cell(e.buyer_grad_norm_mean, 3),
            "grad norm product": cell(e.product_grad_norm_mean, 3),
            "non-finite steps": e.nonfinite_steps,
            "seconds": round(e.seconds, 1),
            "verdict": epoch_verdict(e, loss_tolerance),
        }
        for e in epochs
    ]


def probe_rows(curve: Any) -> list[dict[str, Any]]:
    """A learning-rate probe's rungs (a ProbeCurve), rounded and named for people; `reading` marks the best
    rate, the suggestion's source, and the first failing rate."""

    def reading(point: Any) -> str:
        if point.rate == curve.failure_rate:
            return curve.failure
        return "lowest loss" if point.rate == curve.best_rate else ""

    return [
        {
            "learning rate": float(f"{p.rate:.3g}"),
            "loss/example": cell(p.loss),
            "uniform loss": cell(p.uniform_loss),
            "grad norm buyer": cell(p.buyer_grad_norm, 3),
            "grad norm product": cell(p.product_grad_norm, 3),
            "non-finite steps": p.nonfinite_steps,
            "reading": reading(p),
        }
        for p in curve.points
    ]


MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>#~!|])")
"""What markdown (or HTML inside it) would act on; escaped, each shows as itself."""


def markdown_text(value: Any) -> str:
    """`value` on one line, shown literally by a markdown renderer such as the Prefect UI's: a name, an id or
    a message from a config or a data file can neither format, link nor inject HTML."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table's lines, every cell `markdown_text` (a '|' or a line break cannot break the table)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(map(markdown_text, cells)) + " |"

    return [line(headers), "|" + "---|" * len(headers), *(line(row) for row in rows)]


# --- sweeps and comparisons ------------------------------------------------------------------------


class ProgressLike(Protocol):
    done: int
    running: int
    queued: int


def progress_text(progress: ProgressLike) -> str:
    """'2 done, 1 running, 3 queued (of 6)'."""
    total = progress.done + progress.running + progress.queued
    return f"{progress.done} done, {progress.running} running, {progress.queued} queued (of {total})"


def leaderboard_table(rows: Iterable[Any], k: int) -> tuple[list[str], list[list[Any]]]:
    """Headers and cells of a sweep's leaderboard (`tasks.views.LeaderboardRow`s, best first)."""
    headers = ["#", "point", "status", f"recall@{k}", "popularity", "lift", "attempts", "final lr"]
    cells = [[r.rank, r.name, r.status, share(r.recall), share(r.popularity),
              MISSING if r.recall is None else lift_text(r.recall, r.popularity), r.attempts,
              MISSING if r.final_learning_rate is None else rate(r.final_learning_rate)] for r in rows]
    return headers, cells


def spec_value(value: Any) -> str:
    """A spec field's value in a comparison: 0.05, adam, null, [5, 10]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def comparison_tables(comparison: Any) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """A `tasks.views.Comparison` as three tables (headers, cells): the spec fields that differ, recall@k per
    experiment beside popularity, and each experiment's status, attempts, epochs and final learning rate."""
    views = comparison.experiments
    names = [v.experiment.name for v in views]
    differences = [[path, *(spec_value(value) for value in values)]
                   for path, values in comparison.differences.items()]
    recall = [[f"@{k}", *(MISSING if r is None else f"{share(r.value)} ({lift_text(r.value, r.baseline)})"
                          for r in rows)] for k, rows in comparison.recall_rows()]
    runs = [[v.experiment.name, v.experiment.status, len(v.attempts), sum(a.epochs_run for a in v.attempts),
             MISSING if v.final_attempt is None else rate(v.final_attempt.learning_rate)] for v in views]
    return {
        "differences": (["field", *names], differences),
        "recall": (["k", *(f"{name} (lift)" for name in names)], recall),
        "runs": (["experiment", "status", "attempts", "epochs", "final lr"], runs),
    }
