"""tasks.views: the typed experiment view the store returns and every renderer reads."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import datetime

import pytest

from tasks import store
from tasks.views import AttemptView, EpochView, ExperimentHead, ExperimentView, FindingView, RecallView

NAN, INF = float("nan"), float("inf")


def epoch(number: int, loss: float, grad: float = 0.5) -> dict:
    return {"epoch": number, "loss": loss, "steps": 10, "examples": 640, "buyer_grad_norm_mean": grad,
            "buyer_grad_norm_max": grad, "product_grad_norm_mean": grad, "product_grad_norm_max": grad,
            "nonfinite_steps": 0 if math.isfinite(loss) else 10, "seconds": 1.5, "learning_rate": 0.1,
            "uniform_loss": math.log(256)}


def test_the_store_returns_typed_values_nonfinite_floats_and_timestamps_included(database_url):
    spec = {"name": "demo", "training": {"batch_size": 256, "collapse": {"loss_tolerance": 0.01}}}
    experiment, _ = store.get_or_create_experiment("feedbeef" * 2, "demo", json.dumps(spec))
    store.replace_findings(experiment.id, [{"code": "c", "severity": "warning", "field": "f", "message": "m"}])
    store.record_attempt(experiment.id, 1, 1.0, "diverged", "nan", [epoch(1, 6.0, INF), epoch(2, NAN, -INF)])
    second = store.record_attempt(experiment.id, 2, 0.1, "succeeded", "", [epoch(1, 5.0)])
    store.record_recall(experiment.id, second, {50: 0.4, 10: 0.04}, {10: 0.05, 50: 0.2}, 400, 8000, 90, False)

    view = store.experiment_view(experiment.id)
    assert isinstance(view, ExperimentView)
    assert view.experiment.spec == spec and view.experiment.batch_size == 256 and view.experiment.loss_tolerance == 0.01
    assert isinstance(view.experiment.created_at, datetime) and view.experiment.created_at.utcoffset().seconds == 0
    diverged, succeeded = view.attempts
    assert [e.epoch for e in diverged.epochs] == [1, 2] and diverged.epochs[0].buyer_grad_norm_max == INF
    assert math.isnan(diverged.epochs[1].loss) and diverged.epochs[1].product_grad_norm_mean == -INF
    assert math.isnan(diverged.last_loss) and succeeded.last_loss == 5.0
    assert [(r.k, r.value, r.baseline, r.attempt_id) for r in view.recall] == [(10, 0.04, 0.05, second),
                                                                               (50, 0.4, 0.2, second)]
    assert view.below_popularity_ks == [10]
    assert [f.code for f in view.findings] == ["c"]


@pytest.mark.parametrize(("view", "table", "renamed"), [
    (ExperimentHead, store.Experiment, {"spec_json": "spec"}),
    (FindingView, store.Finding, {}),
    (AttemptView, store.Attempt, {"epochs": None}),
    (EpochView, store.EpochMetric, {}),
    (RecallView, store.RecallResult, {}),
])
def test_every_stored_column_is_in_the_view(view, table, renamed):
    columns = {renamed.get(name, name) for name in table.model_fields} | {v for v in renamed.values() if v}
    extra = {name for name, target in renamed.items() if target is None}
    assert set(view.model_fields) == columns | extra


def test_defaults_when_the_spec_says_nothing_and_views_are_read_only():
    head = ExperimentHead(id=1, config_hash="ab", name="x", status="pending")
    assert head.batch_size is None and head.loss_tolerance == 1e-3
    with pytest.raises(ValueError):
        head.status = "succeeded"
    assert AttemptView(number=1, learning_rate=0.1, status="failed").last_loss is None


def test_of_accepts_a_view_or_a_detail_dict():
    detail = {"experiment": {"id": 3, "config_hash": "ab", "name": "x", "status": "failed"},
              "attempts": [{"number": 1, "learning_rate": "Infinity", "status": "diverged", "epochs": []}]}
    view = ExperimentView.of(detail)
    assert view.attempts[0].learning_rate == INF and view.findings == [] and view.recall == []
    assert ExperimentView.of(view) is view


@pytest.mark.parametrize("module", ["tasks.views", "tasks.wording", "tasks.charts", "tasks.html_report",
                                    "flows.present"])
def test_renderers_import_neither_prefect_nor_tensorflow(module):
    check = f"import sys, {module}; print(sorted({{'prefect', 'tensorflow'}} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
