"""The typed view of one stored experiment: what every renderer (terminal, Prefect artifacts, HTML) reads.

`tasks.store.experiment_view(id)` returns an `ExperimentView`; `ExperimentView.of(detail)` reads the
JSON-ready dict of `store.experiment_detail(id)` (non-finite floats as 'NaN'/'Infinity'/'-Infinity',
timestamps as ISO strings) into one. It sits beside the store, whose rows it mirrors, and imports
neither Prefect nor TensorFlow nor the database, so renderers stay pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from trainer.quality import below_popularity_ks
from trainer.results import EpochMetrics
from trainer.spec import CollapseSpec


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
    n_candidates: int
    n_candidate_rows_before_dedup: int
    n_queries: int
    exclude_seen: bool


class ExperimentView(_View):
    """One experiment: its row, findings, attempts by number (each with its epochs), recall by k."""

    experiment: ExperimentHead
    findings: list[FindingView] = []
    attempts: list[AttemptView] = []
    recall: list[RecallView] = []

    @classmethod
    def of(cls, view: ExperimentView | Mapping[str, Any]) -> ExperimentView:
        """`view` itself, or the view of an `experiment_detail` dict."""
        return view if isinstance(view, cls) else cls.model_validate(view)

    @property
    def below_popularity_ks(self) -> list[int]:
        """Every k where the model does not beat popularity (see `trainer.quality`)."""
        return below_popularity_ks({r.k: r.value for r in self.recall}, {r.k: r.baseline for r in self.recall})
