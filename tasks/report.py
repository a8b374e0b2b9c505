"""What a person sees in the Prefect UI: artifacts for findings, epochs, recall, lineage, progress, summary.

Keys carry the config hash (`movielens-2e60cb58-recall`), so two configs with one name never share a history.
Words and numbers come from `tasks.wording`, like the terminal's and the HTML report's.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from tasks import wording
from tasks.views import ExperimentView, SweepView
from tasks.wording import epoch_rows, epoch_verdict, markdown_text
from trainer.spec import ExperimentSpec

__all__ = [
    "artifact_key", "experiment_slug", "epoch_rows", "epoch_verdict", "publish_findings", "publish_epochs",
    "publish_recall", "publish_lineage", "lineage_markdown", "summary_markdown", "publish_summary",
    "ProgressArtifact", "leaderboard_markdown", "publish_leaderboard", "publish_probe",
]


ARTIFACT_KEY_LENGTH = 100


def artifact_key(name: str, what: str) -> str:
    """`name-what` in what Prefect artifact keys allow (lowercase letters, digits and dashes), at most
    ARTIFACT_KEY_LENGTH long: a long name is cut in its middle, so the key keeps `what` and the name's
    end (an experiment's config hash), and two kinds of artifact, or two configs, never share a key."""
    name, what = _key_slug(name), _key_slug(what)
    room = ARTIFACT_KEY_LENGTH - len(what) - 1
    if len(name) > room:
        name = f"{name[: room - 10].rstrip('-')}-{name[-9:].lstrip('-')}"
    return f"{name}-{what}"


def _key_slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def experiment_slug(spec: ExperimentSpec) -> str:
    """The experiment's name and short config hash: artifact keys of two configs named alike never mix."""
    return f"{spec.name}-{spec.content_hash()[:8]}"


def publish_findings(slug: str, findings: Iterable, what: str = "findings") -> None:
    rows = [
        {"severity": f.severity, "code": f.code, "field": f.field, "message": f.message, "suggestion": f.suggestion or ""}
        for f in findings
    ]
    if rows:
        create_table_artifact(rows, key=artifact_key(slug, what), description=f"{slug}: {what.replace('-', ' ')}")


def publish_epochs(spec: ExperimentSpec, number: int, result) -> None:
    rows = epoch_rows(result.epochs, spec.training.collapse.loss_tolerance)
    if rows:
        create_table_artifact(
            rows,
            key=artifact_key(experiment_slug(spec), f"attempt-{number}-epochs"),
            description=(f"{markdown_text(spec.name)}: attempt {number} @ lr={wording.rate(result.learning_rate)}, "
                         f"{result.status}: {result.reason}"),
        )


def publish_probe(spec: ExperimentSpec, curve) -> None:
    """The learning-rate probe's curve (a ProbeCurve), one row per rate, its reading in the description."""
    create_table_artifact(wording.probe_rows(curve), key=artifact_key(experiment_slug(spec), "lr-probe"),
                          description=f"{markdown_text(spec.name)}: learning-rate probe ({spec.validation.lr_probe}, "
                                      f"{curve.seconds:.1f}s): {curve.reason}")


def publish_recall(spec: ExperimentSpec, evaluation) -> None:
    rows = [
        {
            "k": k,
            "recall": wording.cell(evaluation.model[k]),
            "popularity": wording.cell(evaluation.popularity[k]),
            "lift": wording.lift(evaluation.model[k], evaluation.popularity[k]),
            **({} if evaluation.ease is None else {
                "ease": wording.cell(evaluation.ease[k]), "model / ease": wording.lift(evaluation.model[k], evaluation.ease[k]),
            }),
        }
        for k in sorted(evaluation.model)
    ]
    description = f"{spec.name}: recall@k {wording.recall_scope(evaluation, evaluation.n_pairs)}"
    create_table_artifact(rows, key=artifact_key(experiment_slug(spec), "recall"), description=description)


def _lineage_table(numbered: Iterable[tuple[int, Any]]) -> list[str]:
    """(number, attempt) pairs as a markdown table; statuses read as the attempts' task-run states."""
    rows = [[number, wording.rate(a.learning_rate), wording.status_word(a.status), a.epochs_run, a.reason]
            for number, a in numbered]
    return wording.markdown_table(["attempt", "learning rate", "status", "epochs", "reason"], rows)


def lineage_markdown(name: str, attempts: Iterable, origin: str | None = None) -> str:
    """The lineage card: attempts (AttemptResult, in order) with their learning rates and statuses; `origin`
    says where the first attempt's rate came from when not from the config."""
    note = ["", f"Attempt 1's learning rate: {markdown_text(origin)}."] if origin else []
    title = f"# {markdown_text(name)}: attempt lineage"
    return "\n".join([title, "", *_lineage_table(enumerate(attempts, start=1)), *note])


def publish_lineage(spec: ExperimentSpec, attempts: list, origin: str | None = None) -> None:
    """One lineage card per run, once its attempts are decided."""
    create_markdown_artifact(lineage_markdown(spec.name, attempts, origin),
                             key=artifact_key(experiment_slug(spec), "lineage"))


def summary_markdown(view: ExperimentView) -> str:
    """The key figures of a stored experiment, for a markdown artifact: recall@k against popularity with the
    lift (and every k where the model does not beat it), the attempts' lineage, the findings."""
    experiment = view.experiment
    lines = [f"# {markdown_text(experiment.name)}: {wording.status_word(experiment.status)}"]
    if experiment.message:
        lines += ["", markdown_text(experiment.message)]
    lines += ["", "## Recall@k against popularity", ""]
    if view.recall:
        lines += [f"recall {wording.recall_scope(view.recall[0])}", ""]
        lines += wording.markdown_table(*wording.recall_table(view.recall))
        below = wording.below_popularity(view.below_popularity_ks)
        if below:
            lines += ["", f"**{below}**"]
    else:
        lines.append("No recall: no attempt produced a model to evaluate.")
    lines += ["", "## Attempts", ""]
    lines += _lineage_table((a.number, a) for a in view.attempts) if view.attempts else ["No attempt was made."]
    lines += ["", "## Findings", ""]
    if view.findings:
        lines += wording.markdown_table(["severity", "field", "message", "suggestion"],
                                        [[f.severity, f.field, f.message, f.suggestion or ""] for f in view.findings])
    else:
        lines.append("No findings: the config passed every rule.")
    return "\n".join(lines)


def publish_summary(spec: ExperimentSpec, view: ExperimentView) -> None:
    """The summary card of a run (`summary_markdown`), so the UI shows the outcome without leaving it."""
    create_markdown_artifact(summary_markdown(view), key=artifact_key(experiment_slug(spec), "summary"),
                             description=f"{markdown_text(spec.name)}: recall@k against popularity, attempts, findings")


def sweep_slug(view: SweepView) -> str:
    """`sweep-<name>-<short sweep hash>`: the key prefix of a sweep's artifacts."""
    return f"sweep-{view.sweep.name}-{view.sweep.sweep_hash[:8]}"


def leaderboard_markdown(view: SweepView, k: int) -> str:
    """The sweep's leaderboard card: its progress, grid and points ranked by recall@k."""
    sweep = view.sweep
    grid = [f"- {markdown_text(key)}: {markdown_text(', '.join(map(wording.spec_value, values)))}"
            for key, values in sweep.grid.items()]
    return "\n".join([f"# Sweep {markdown_text(sweep.name)}: leaderboard by recall@{k}", "",
                      wording.progress_text(view.progress()), "", "Grid:", "", *grid, "",
                      *wording.markdown_table(*wording.leaderboard_table(view.leaderboard(k), k))])


def publish_leaderboard(view: SweepView, k: int) -> None:
    """The leaderboard as a table artifact (one row per point, best first) and as a markdown card."""
    headers, cells = wording.leaderboard_table(view.leaderboard(k), k)
    slug = sweep_slug(view)
    create_table_artifact([dict(zip(headers, row)) for row in cells], key=artifact_key(slug, "leaderboard"),
                          description=f"sweep {markdown_text(view.sweep.name)}: points by recall@{k}")
    create_markdown_artifact(leaderboard_markdown(view, k), key=artifact_key(slug, "summary"),
                             description=f"sweep {markdown_text(view.sweep.name)}: "
                                         f"{wording.progress_text(view.progress())}")


class ProgressArtifact:
    """One progress bar per run in the UI: each attempt fills it epoch by epoch (`artifact_id` from `create`)."""

    def __init__(self, artifact_id, total_steps: int):
        self.artifact_id = artifact_id
        self.total = max(total_steps, 1)
        self.done = 0
        self.lost = False

    @staticmethod
    def create(spec: ExperimentSpec):
        """A new progress artifact for a run of `spec`; its id."""
        return create_progress_artifact(0.0, key=artifact_key(experiment_slug(spec), "progress"),
                                        description=f"{markdown_text(spec.name)}: training")

    def advance(self, description: str) -> None:
        """One step more; a bar the API no longer takes is let go (said once): training goes on, its
        checkpoints and epochs are kept whatever becomes of the view."""
        self.done = min(self.done + 1, self.total)
        if self.lost:
            return
        try:
            update_progress_artifact(self.artifact_id, 100.0 * self.done / self.total, description=description)
        except Exception as exc:
            self.lost = True
            get_run_logger().warning("the progress bar is no longer updated: %s: %s", type(exc).__name__, exc)
