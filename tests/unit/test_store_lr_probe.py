"""The learning-rate probe in the store (SQLite and PostgreSQL): a table of its own, read back into the view."""

import json
import math

import pytest

from tasks import store
from trainer.probe_curve import ProbePoint, analyse


def _curve(last_loss: float):
    points = [ProbePoint(rate=r, loss=loss, uniform_loss=5.5, buyer_grad_norm=1.0, product_grad_norm=2.0, steps=10)
              for r, loss in [(1e-3, 5.5), (1e-2, 4.0), (1e-1, last_loss)]]
    return analyse(points, seconds=2.5)


def test_a_probe_is_stored_replaced_read_into_the_view_and_forgotten_with_a_reset(database_url):
    experiment, _ = store.get_or_create_experiment("h1", "probed", "{}")
    assert store.experiment_detail(experiment.id)["lr_probe"] is None
    store.record_lr_probe(experiment.id, "warn", _curve(5.5))
    store.record_lr_probe(experiment.id, "pick", _curve(math.nan))  # replaces: one probe per experiment
    detail = store.experiment_detail(experiment.id)
    assert detail["lr_probe"]["mode"] == "pick" and detail["lr_probe"]["points"][2]["loss"] == "NaN"
    json.dumps(detail, allow_nan=False)
    probe = store.experiment_view(experiment.id).lr_probe
    assert probe.failure == "diverged" and probe.suggested_rate == pytest.approx(1e-2) and math.isnan(probe.points[2].loss)
    store.reset_experiment(experiment.id)
    assert store.experiment_detail(experiment.id)["lr_probe"] is None
