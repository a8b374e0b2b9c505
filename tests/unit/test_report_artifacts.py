"""The UI's artifact content: keys that keep configs apart, epoch tables a person can read."""

from __future__ import annotations

import math

from tasks.report import artifact_key, epoch_rows, experiment_slug
from tests.e2e.tiny_configs import tiny_config
from trainer.results import EpochMetrics
from trainer.spec import spec_from_dict


def test_two_configs_with_one_name_get_different_keys():
    first = spec_from_dict(tiny_config(name="movielens"))
    second = spec_from_dict(tiny_config(name="movielens", training__learning_rate=0.01))
    keys = {artifact_key(experiment_slug(spec), "recall") for spec in (first, second)}
    assert len(keys) == 2 and all(key.startswith("movielens-") and key.endswith("-recall") for key in keys)


def test_a_long_name_keeps_its_config_hash_and_the_kind_of_artifact_in_the_key():
    """Keys were the first 100 characters of `name-hash-what`: with a long name, an experiment's report,
    recall and summary shared one key, and so did every config of that name."""
    name = "a-sweep-point-" + "model.buyer_layers=[{units: 128}, {units: 64}]-" * 4
    first = spec_from_dict(tiny_config(name=name))
    second = spec_from_dict(tiny_config(name=name, training__learning_rate=0.01))
    keys = {artifact_key(experiment_slug(spec), what) for spec in (first, second) for what in ("recall", "summary")}
    assert len(keys) == 4
    assert all(len(key) <= 100 and key.startswith("a-sweep-point-model-buyer-layers-") for key in keys)
    assert artifact_key(experiment_slug(first), "recall").endswith(f"-{first.content_hash()[:8]}-recall")


def test_epoch_rows_are_rounded_named_and_say_what_each_epoch_means():
    def epoch(number, loss, gap, nonfinite=0):
        return EpochMetrics(epoch=number, loss=loss, uniform_loss=5.545177, uniform_gap=gap, nonfinite_steps=nonfinite,
                            steps=10, examples=2560, buyer_grad_norm_mean=15606400000.0, buyer_grad_norm_max=2e10,
                            product_grad_norm_mean=4.73022e-7, product_grad_norm_max=1e-6, seconds=1.23456,
                            learning_rate=0.1)

    rows = epoch_rows([epoch(1, 4.912345678, 0.63), epoch(2, 5.5451, 0.00008), epoch(3, math.nan, math.nan, 4)], 1e-3)
    assert list(rows[0]) == ["epoch", "loss/example", "uniform loss", "gap", "grad norm buyer", "grad norm product",
                             "non-finite steps", "seconds", "verdict"]
    assert rows[0]["loss/example"] == 4.912 and rows[0]["grad norm buyer"] == 1.56e10 and rows[0]["seconds"] == 1.2
    assert [row["verdict"] for row in rows] == ["learning", "at uniform loss", "non-finite"]
    assert rows[2]["loss/example"] == "NaN"


def test_a_progress_bar_the_api_no_longer_takes_is_let_go_without_stopping_training(monkeypatch):
    import logging

    import httpx

    from tasks import report

    calls = []

    def update(artifact_id, progress, description=None):
        calls.append(progress)
        if len(calls) == 2:
            raise httpx.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(report, "update_progress_artifact", update)
    monkeypatch.setattr(report, "get_run_logger", lambda: logging.getLogger("test"))
    bar = report.ProgressArtifact("artifact-id", total_steps=4)
    for epoch in range(1, 5):
        bar.advance(f"epoch {epoch}")  # raises nothing
    assert calls == [25.0, 50.0] and bar.lost and bar.done == 4  # asked once after the failure, never again
