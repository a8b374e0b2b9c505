"""The typed view of one stored experiment: what every renderer (terminal, Prefect artifacts, HTML) reads.

`tasks.store.experiment_view(id)` returns an `ExperimentView`; `ExperimentView.of(detail)` reads the
JSON-ready dict of `store.experiment_detail(id)` (non-finite floats as 'NaN'/'Infinity'/'-Infinity',
timestamps as ISO strings) into one. It sits beside the store, whose rows it mirrors, and imports
neither Prefect nor TensorFlow nor the database, so renderers stay pure.

A sweep's view (`store.sweep_view`) holds its members' experiment views and ranks them (`leaderboard`);
a `Comparison` of experiment views says which spec fields differ and lines up their recall.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from trainer.probe_curve import ProbeCurve
from trainer.quality import below_popularity_ks
from trainer.results import EpochMetrics
from trainer.spec import CollapseSpec, TrainingSpec


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Row(_View):
    """A row that belongs to an experiment (its ids, when read from the store)."""

    id: int | None = None
    experiment_id: int | None = None


class ExperimentHead(_View):
    """The experiment row, with `spec` parsed from its stored JSON."""

    id: int
    config_hash: str
    name: str
    status: str
    message: str | None = None
    flow_run_id: str | None = None
    owner: str | None = None
    lease_expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    spec: dict[str, Any] = {}

    @property
    def batch_size(self) -> int | None:
        """The spec's training batch size, when it says one."""
        return (self.spec.get("training") or {}).get("batch_size")

    @property
    def epochs(self) -> int:
        """The epochs each attempt trains at most."""
        return int((self.spec.get("training") or {}).get("epochs", TrainingSpec().epochs))

    @property
    def loss_tolerance(self) -> float:
        """How close to the uniform-score loss an epoch counts as scoring everything alike."""
        collapse = (self.spec.get("training") or {}).get("collapse") or {}
        return float(collapse.get("loss_tolerance", CollapseSpec().loss_tolerance))


class FindingView(_Row):
    code: str
    severity: str
    field: str
    message: str
    suggestion: str | None = None


class EpochView(EpochMetrics):
    """One stored epoch: `EpochMetrics` (so epoch verdicts read it) with its row ids; older rows may lack counts."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    attempt_id: int | None = None
    steps: int | None = None
    examples: int | None = None


class AttemptView(_Row):
    number: int
    learning_rate: float
    status: str
    reason: str = ""
    epochs_run: int = 0
    model_uri: str | None = None
    flow_run_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    epochs: list[EpochView] = []

    @property
    def last_loss(self) -> float | None:
        """The loss per example of the last stored epoch."""
        return self.epochs[-1].loss if self.epochs else None


class RecallView(_Row):
    """recall@k of the model and of popularity (`baseline`) on the same queries and candidates."""

    attempt_id: int | None = None
    k: int
    value: float
    baseline: float
    ease: float | None = None
    n_candidates: int
    n_candidate_rows_before_dedup: int
    n_queries: int
    exclude_seen: bool


class ProbeView(ProbeCurve):
    """The stored learning-rate probe: its curve and reading, and the mode it ran in (warn | pick)."""

    mode: str


class ExperimentView(_View):
    """One experiment: its row, findings, attempts by number (each with its epochs), recall by k, its probe."""

    experiment: ExperimentHead
    findings: list[FindingView] = []
    attempts: list[AttemptView] = []
    recall: list[RecallView] = []
    lr_probe: ProbeView | None = None

    @property
    def rate_from_probe(self) -> bool:
        """Whether the first attempt trained at the probe's suggestion (`lr_probe: pick`, or chosen on the form)."""
        probe, first = self.lr_probe, self.attempts[0] if self.attempts else None
        return probe is not None and first is not None and first.learning_rate == probe.suggested_rate

    @classmethod
    def of(cls, view: ExperimentView | Mapping[str, Any]) -> ExperimentView:
        """`view` itself, or the view of an `experiment_detail` dict."""
        return view if isinstance(view, cls) else cls.model_validate(view)

    @property
    def below_popularity_ks(self) -> list[int]:
        """Every k where the model does not beat popularity (see `trainer.quality`)."""
        return below_popularity_ks({r.k: r.value for r in self.recall}, {r.k: r.baseline for r in self.recall})

    @property
    def final_attempt(self) -> AttemptView | None:
        """The last attempt of the lineage (the one recall was measured on, when it succeeded)."""
        return self.attempts[-1] if self.attempts else None

    def recall_at(self, k: int) -> RecallView | None:
        return next((r for r in self.recall if r.k == k), None)


# --- sweeps and comparisons ------------------------------------------------------------------------


class SweepPointHead(_View):
    """A sweep's member as stored: its experiment's name and config hash, and the grid values it sets."""

    name: str
    config_hash: str
    values: dict[str, Any] = {}


class SweepHead(_View):
    """The sweep row: its name, grid and members in grid order."""

    id: int
    sweep_hash: str
    name: str
    grid: dict[str, list[Any]]
    points: list[SweepPointHead]
    created_at: datetime | None = None


class PointView(_View):
    """A member and its experiment (None while no run has started it: queued)."""

    point: SweepPointHead
    experiment: ExperimentView | None = None

    @property
    def status(self) -> str:
        return "queued" if self.experiment is None else self.experiment.experiment.status


class Progress(_View):
    """How far a sweep is: points ended (succeeded or not), being worked on, not started."""

    done: int
    running: int
    queued: int


class LeaderboardRow(_View):
    """A point's place in its sweep: recall@k beside popularity, and how it got there."""

    rank: int
    name: str
    values: dict[str, Any]
    status: str
    experiment_id: int | None
    recall: float | None
    popularity: float | None
    attempts: int
    final_learning_rate: float | None


class SweepView(_View):
    """One sweep with each member's experiment view."""

    sweep: SweepHead
    points: list[PointView]

    def progress(self) -> Progress:
        statuses = [p.status for p in self.points]
        running = sum(s in ("running", "awaiting_approval") for s in statuses)
        queued = sum(s in ("queued", "pending") for s in statuses)
        return Progress(done=len(statuses) - running - queued, running=running, queued=queued)

    def leaderboard(self, k: int) -> list[LeaderboardRow]:
        """Points by recall@k, best first; points without recall@k (failed, unfinished) after them, in grid order."""
        scored = [(p, p.experiment.recall_at(k) if p.experiment else None) for p in self.points]
        ranked = sorted(scored, key=lambda item: -item[1].value if item[1] else float("inf"))
        rows = []
        for rank, (point, recall) in enumerate(ranked, start=1):
            view = point.experiment
            final = view.final_attempt if view else None
            rows.append(LeaderboardRow(
                rank=rank, name=point.point.name, values=point.point.values, status=point.status,
                experiment_id=view.experiment.id if view else None,
                recall=recall.value if recall else None, popularity=recall.baseline if recall else None,
                attempts=len(view.attempts) if view else 0,
                final_learning_rate=final.learning_rate if final else None))
        return rows

    @property
    def ks(self) -> list[int]:
        """Every k measured for some point."""
        return sorted({r.k for p in self.points if p.experiment for r in p.experiment.recall})


def dotted_items(value: Any, path: str = "") -> dict[str, Any]:
    """A spec as {dotted path: leaf value}: `training.learning_rate`, `buyer_features[0].column`."""
    if isinstance(value, Mapping) and value:
        return {k: v for key, item in value.items()
                for k, v in dotted_items(item, f"{path}.{key}" if path else str(key)).items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in dotted_items(item, f"{path}[{i}]").items()}
    return {path: value}


class Comparison(_View):
    """Experiments side by side: the spec fields that differ, recall@k per experiment, attempts and epochs."""

    experiments: list[ExperimentView]

    @property
    def differences(self) -> dict[str, list[Any]]:
        """{dotted path: each experiment's value (None where its spec lacks it)}, for paths whose values differ;
        the name is left out (it always differs)."""
        flat = [dotted_items(v.experiment.spec) for v in self.experiments]
        paths = sorted({path for items in flat for path in items} - {"name"})
        return {path: [items.get(path) for items in flat] for path in paths
                if len({json.dumps(items.get(path), sort_keys=True, default=str) for items in flat}) > 1}

    @property
    def ks(self) -> list[int]:
        return sorted({r.k for v in self.experiments for r in v.recall})

    def recall_rows(self) -> list[tuple[int, list[RecallView | None]]]:
        """Per k, each experiment's recall row (None where it has none)."""
        return [(k, [v.recall_at(k) for v in self.experiments]) for k in self.ks]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the differing fields and, per experiment, status, attempts, epochs, final rate, recall."""
        return {
            "differences": self.differences,
            "experiments": [{
                "id": v.experiment.id, "name": v.experiment.name, "config_hash": v.experiment.config_hash,
                "status": v.experiment.status, "attempts": len(v.attempts),
                "epochs": sum(a.epochs_run for a in v.attempts),
                "final_learning_rate": v.final_attempt.learning_rate if v.final_attempt else None,
                "recall": {r.k: {"model": r.value, "popularity": r.baseline} for r in v.recall},
            } for v in self.experiments],
        }
