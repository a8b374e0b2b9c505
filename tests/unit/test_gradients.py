"""Gradient telemetry inside the train step and the collapse / divergence detector."""

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tf_keras

from trainer.gradients import CollapseDetector, EpochMetrics, EpochMonitor
from trainer.model import build_model, build_optimizer, make_dataset, model_columns
from trainer.spec import CollapseSpec, spec_from_dict

SPEC = spec_from_dict(
    {
        "name": "tiny",
        "data": {"transactions": "memory://unused.csv"},
        "buyer_features": [{"column": "buyer", "type": "id", "embedding_dim": 8}],
        "product_features": [{"column": "item", "type": "id", "embedding_dim": 8}],
        "model": {"output_dim": 8, "logq_correction": False, "buyer_layers": [{"units": 16}, {"units": 8}], "product_layers": [{"units": 8}]},
        "training": {"collapse": {"patience": 2}},
    }
)
COLUMNS = model_columns(SPEC)


def _frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Buyer b<i> mostly buys item i % 10: learnable structure."""
    rng = np.random.default_rng(seed)
    buyers = rng.integers(0, 40, rows)
    items = np.where(rng.random(rows) < 0.9, buyers % 10, rng.integers(0, 10, rows))
    return pd.DataFrame({"buyer": [f"b{b}" for b in buyers], "item": [f"i{i}" for i in items]})


def _model(learning_rate: float, clipnorm: float | None = 1.0, frame: pd.DataFrame | None = None):
    tf_keras.utils.set_random_seed(0)
    model = build_model(SPEC, _frame() if frame is None else frame)
    training = SPEC.training.model_copy(update={"clipnorm": clipnorm})
    model.compile(optimizer=build_optimizer(training, learning_rate))
    return model




def test_train_step_reports_each_towers_global_gradient_norm_before_clipping():
    model = _model(learning_rate=0.1, clipnorm=1e-3)
    batch = next(iter(make_dataset(_frame(), COLUMNS, batch_size=64)))
    model.compute_loss(batch)  # build
    expected = {}
    with tf.GradientTape(persistent=True) as tape:
        loss = model.compute_loss(batch, training=True)
    for name, tower in model.towers().items():  # dense gradients: repeated ids summed
        dense = [tf.convert_to_tensor(g) for g in tape.gradient(loss, tower.trainable_variables)]
        expected[name] = float(tf.linalg.global_norm(dense))
    logs = {key: float(value) for key, value in model.train_step(batch).items()}
    for name in ("buyer", "product"):
        assert logs[f"{name}_grad_norm_max"] == pytest.approx(expected[name], rel=1e-4)
        assert logs[f"{name}_grad_norm_max"] > 100 * 1e-3  # far above the clip threshold: pre-clip
    assert logs["loss"] == pytest.approx(float(loss) / 64, rel=1e-5)
    assert logs["steps"] == 1 and logs["examples"] == 64 and logs["nonfinite_steps"] == 0


def test_epoch_loss_is_the_mean_per_example_over_all_batches_not_the_last_batch_sum():
    frame = _frame(rows=10)
    model = _model(learning_rate=0.0, frame=frame)  # weights stay fixed: the loss is computable
    dataset = make_dataset(frame, COLUMNS, batch_size=4)  # batches of 4, 4, 2
    batch_losses = [float(model.compute_loss(batch)) for batch in dataset]
    history = model.fit(dataset, epochs=1, verbose=0).history
    assert history["loss"][0] == pytest.approx(sum(batch_losses) / 10, rel=1e-5)
    assert history["loss"][0] != pytest.approx(batch_losses[-1], rel=1e-3)
    assert history["uniform_loss"][0] == pytest.approx((8 * math.log(4) + 2 * math.log(2)) / 10, rel=1e-6)


def test_a_model_scoring_everything_alike_has_loss_log_batch_size_on_every_step(score_everything_alike):
    frame = _frame(rows=10)
    model = _model(learning_rate=0.0, frame=frame)
    dataset = make_dataset(frame, COLUMNS, batch_size=4)
    model.compute_loss(next(iter(dataset)))
    score_everything_alike(model)
    logs = model.fit(dataset, epochs=1, verbose=0).history
    assert logs["uniform_gap"][0] < 1e-6
    assert logs["loss"][0] == pytest.approx(logs["uniform_loss"][0], abs=1e-6)


def test_an_injected_nan_is_counted_as_a_non_finite_step_and_diverges():
    model = _model(learning_rate=0.1)
    dataset = make_dataset(_frame(rows=64), COLUMNS, batch_size=32)
    model.compute_loss(next(iter(dataset)))
    kernel = model.buyer.stack[0].kernel
    kernel.assign(tf.fill(kernel.shape, math.nan))
    detector = CollapseDetector(SPEC.training.collapse, batch_size=32)
    model.fit(dataset, epochs=3, verbose=0, callbacks=[EpochMonitor(lambda m: detector.observe(m) is not None)])
    assert detector.verdict.status == "diverged" and detector.verdict.epoch == 1
    assert "non-finite loss or gradient in 2 of 2 steps" in detector.verdict.reason


# --- the detector, on EpochMetrics ------------------------------------------------------------


def _epoch(epoch: int, loss: float = 5.0, gap: float = 1.0, norm: float = 10.0, steps: int = 8, nonfinite: int = 0):
    return EpochMetrics(
        epoch=epoch, loss=loss, steps=steps, examples=steps * 1024, buyer_grad_norm_mean=norm,
        buyer_grad_norm_max=norm, product_grad_norm_mean=norm, product_grad_norm_max=norm,
        nonfinite_steps=nonfinite, seconds=1.0, learning_rate=0.1, uniform_gap=gap, uniform_loss=math.log(1024),
    )  # fmt: skip


UNIFORM = dict(loss=math.log(1024), gap=2e-7, norm=3e-4)  # a collapse as measured: norms far above 1e-7


def _run(detector: CollapseDetector, epochs: list[EpochMetrics]):
    for m in epochs:
        detector.observe(m)
    return detector.verdict


def test_uniform_scores_for_patience_epochs_is_a_collapse_even_with_gradient_norms_above_the_floor():
    detector = CollapseDetector(CollapseSpec(patience=3), batch_size=1024)
    verdict = _run(detector, [_epoch(1), _epoch(2, **UNIFORM), _epoch(3, **UNIFORM)])
    assert verdict is None  # two uniform epochs < patience 3
    verdict = _run(detector, [_epoch(4, **UNIFORM)])
    assert (verdict.status, verdict.epoch) == ("collapsed", 4)
    assert verdict.reason.startswith("collapsed at epoch 4: loss/example 6.931 = log(1024) for 3 epochs")
    assert "buyer grad norm 0.0003" in verdict.reason


def test_an_attempt_ending_at_uniform_scores_is_collapsed_however_few_epochs_it_ran():
    one_epoch = CollapseDetector(CollapseSpec(patience=3), batch_size=1024)
    assert _run(one_epoch, [_epoch(1, **UNIFORM)]) is None  # patience 3 > epochs run: no early stop
    verdict = one_epoch.conclude()
    assert (verdict.status, verdict.epoch) == ("collapsed", 1)
    assert verdict.reason.startswith("collapsed at epoch 1: loss/example 6.931 = log(1024) for 1 epoch until training ended")
    after_learning = CollapseDetector(CollapseSpec(patience=3), batch_size=1024)
    _run(after_learning, [_epoch(1), _epoch(2), _epoch(3, **UNIFORM), _epoch(4, loss=math.nan, steps=0)])
    assert after_learning.conclude().epoch == 3  # the last epoch with steps decides, not an empty one


def test_an_attempt_ending_just_off_uniform_scores_is_not_collapsed():
    tolerance = CollapseSpec().loss_tolerance
    near = dict(loss=math.log(1024) - 2 * tolerance, gap=2 * tolerance, norm=3e-4)
    detector = CollapseDetector(CollapseSpec(patience=3), batch_size=1024)
    assert _run(detector, [_epoch(1, **UNIFORM), _epoch(2, **near)]) is None
    assert detector.conclude() is None  # a uniform epoch earlier, then learning: a success


def test_a_healthy_epoch_breaks_the_streak_and_epochs_without_steps_are_ignored():
    detector = CollapseDetector(CollapseSpec(patience=2), batch_size=1024)
    assert _run(detector, [_epoch(1, **UNIFORM), _epoch(2), _epoch(3, **UNIFORM)]) is None
    assert _run(detector, [_epoch(4, loss=math.nan, steps=0)]) is None  # neither counts nor breaks
    assert _run(detector, [_epoch(5, **UNIFORM)]).epoch == 5


def test_gradient_norm_floor_is_a_further_collapse_signal_and_non_finite_loss_diverges():
    flat = CollapseDetector(CollapseSpec(patience=2, min_grad_norm=1e-7), batch_size=1024)
    verdict = _run(flat, [_epoch(1, norm=1e-9), _epoch(2, norm=1e-9)])
    assert verdict.status == "collapsed" and "gradient norm below 1e-07" in verdict.reason
    diverged = CollapseDetector(CollapseSpec(), batch_size=1024)
    assert _run(diverged, [_epoch(1), _epoch(2, loss=math.inf)]).status == "diverged"


def test_training_that_ends_worse_than_uniform_scores_is_diverged_not_succeeded():
    uniform = math.log(1024)
    exploded = dict(loss=892.0, gap=885.0)  # measured: lr 10 on a shallow tower, never collapsing
    detector = CollapseDetector(CollapseSpec(patience=2), batch_size=1024)
    assert _run(detector, [_epoch(1, **exploded), _epoch(2, **exploded)]) is None  # no early verdict
    verdict = detector.conclude()
    assert (verdict.status, verdict.epoch) == ("diverged", 2)
    assert "loss/example 892 above the uniform-score loss 6.931" in verdict.reason
    came_down = CollapseDetector(CollapseSpec(patience=2), batch_size=1024)
    assert _run(came_down, [_epoch(1, **exploded), _epoch(2, loss=uniform * 1.04)]) is None
    assert came_down.conclude().status == "collapsed"  # within the explosion margin, but no better than alike


def test_an_attempt_ending_no_better_than_uniform_scores_is_collapsed_even_when_its_steps_vary():
    # measured: lr 1.0 on a deep buyer tower exploded to 37.5, came back down and ended at 6.4771 against
    # the uniform-score loss 6.475, its steps 0.002 off uniform on average (above the 1e-3 tolerance)
    uniform = 6.475
    ended = dict(loss=6.4771, gap=0.0021, norm=11.6)
    detector = CollapseDetector(CollapseSpec(patience=2), batch_size=512)
    epochs = [_epoch(1, loss=37.5, gap=31.0), _epoch(2, loss=9.35, gap=2.9), _epoch(3, **ended)]
    assert _run(detector, [m.model_copy(update={"uniform_loss": uniform}) for m in epochs]) is None
    verdict = detector.conclude()
    assert (verdict.status, verdict.epoch) == ("collapsed", 3)
    assert "loss/example 6.4771, no better than the uniform-score loss 6.4750" in verdict.reason


# --- the post-mortem's bug: a stats logger that resets the accumulators ------------------------


class StatsLogger(tf_keras.callbacks.Callback):
    """The old GradientStatsCallback: logs the accumulated norms, then resets the accumulators."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.telemetry.reset_state()


class OldCollapseCallback(tf_keras.callbacks.Callback):
    """The old GradientCollapseCallback: reads the accumulators (sum / max(count, 1)) at epoch end."""

    def __init__(self, min_grad_norm: float = 1e-7, patience: int = 2):
        super().__init__()
        self.min_grad_norm, self.patience, self.streak, self.stopped_at = min_grad_norm, patience, 0, None

    def on_epoch_end(self, epoch, logs=None):
        telemetry = self.model.telemetry
        norm = float(telemetry.norm_sum["buyer"]) / max(float(telemetry.norm_count["buyer"]), 1.0)
        self.streak = self.streak + 1 if norm < self.min_grad_norm else 0
        if self.streak >= self.patience:
            self.stopped_at, self.model.stop_training = epoch + 1, True


def _train_with(callbacks_before, callbacks_after, epochs: int = 4):
    model = _model(learning_rate=0.05)
    detector = CollapseDetector(SPEC.training.collapse, batch_size=64)
    seen: list[EpochMetrics] = []

    def handle(m: EpochMetrics) -> bool:
        seen.append(m)
        return detector.observe(m) is not None

    callbacks = [*callbacks_before, EpochMonitor(handle), *callbacks_after]
    model.fit(make_dataset(_frame(), COLUMNS, batch_size=64), epochs=epochs, verbose=0, callbacks=callbacks)
    return detector.verdict, seen


def test_callback_order_cannot_make_the_detector_read_a_reset_accumulator():
    old = OldCollapseCallback()
    _train_with([StatsLogger(), old], [])
    assert old.stopped_at == 2  # the bug shape reproduced: a healthy run stopped by reading zeros

    verdict_first, logger_first = _train_with([StatsLogger()], [])
    verdict_last, logger_last = _train_with([], [StatsLogger()])
    assert verdict_first is None and verdict_last is None  # healthy: not stopped
    assert [m.epoch for m in logger_first] == [1, 2, 3, 4]
    for a, b in zip(logger_first, logger_last):
        assert a.model_dump(exclude={"seconds", "val_loss"}) == pytest.approx(b.model_dump(exclude={"seconds", "val_loss"}), rel=1e-5)
    assert logger_first[-1].loss < logger_first[0].loss and min(m.buyer_grad_norm_mean for m in logger_first) > 1e-3


def test_telemetry_is_global_under_two_replicas_with_mixed_precision():
    """The GPU code path (MirroredStrategy + mixed_float16 + loss scaling) on two logical CPUs:
    gradients are summed across replicas before their norms are taken; counts are global; the
    uniform-score loss is the global batch's (candidates are gathered across replicas)."""
    script = textwrap.dedent(
        """
        import json, sys
        import trainer, tensorflow as tf, tf_keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        tf_keras.mixed_precision.set_global_policy("mixed_float16")
        sys.path.insert(0, "tests/unit")
        import test_gradients as t
        from trainer.model import build_model, build_optimizer, make_dataset
        frame = t._frame(rows=256)
        with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
            model = build_model(t.SPEC, frame)
            model.compile(optimizer=build_optimizer(t.SPEC.training, 0.05))
        history = model.fit(make_dataset(frame, t.COLUMNS, 64), epochs=2, verbose=0).history
        print(json.dumps({"optimizer": type(model.optimizer).__name__, **history}))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    logs = json.loads(run.stdout.strip().splitlines()[-1])
    assert logs["optimizer"].startswith("LossScaleOptimizer")
    assert logs["examples"] == [256, 256] and logs["steps"] == [4, 4] and logs["nonfinite_steps"] == [0, 0]
    assert logs["uniform_loss"][0] == pytest.approx(math.log(64), rel=1e-6)
    assert all(0 < n < 1e3 for n in logs["buyer_grad_norm_mean"] + logs["product_grad_norm_max"])
    assert logs["loss"][1] < logs["loss"][0]


@pytest.mark.parametrize(
    ("epochs", "healthy"),
    [
        ([_epoch(1), _epoch(2), _epoch(3, **UNIFORM), _epoch(4, **UNIFORM)], 2),  # the epoch before the streak
        ([_epoch(1), _epoch(2), _epoch(3, loss=math.nan, nonfinite=3)], 2),  # diverged at 3
        ([_epoch(1, loss=40.0, gap=30.0), _epoch(2, **UNIFORM), _epoch(3, **UNIFORM)], None),  # exploded, then flat
        ([_epoch(1, loss=40.0), _epoch(2, **UNIFORM), _epoch(3, loss=7.0, gap=0.1), _epoch(4, **UNIFORM)], None),  # noise above uniform
        ([_epoch(1, **UNIFORM), _epoch(2, **UNIFORM)], None),  # never healthy
        ([_epoch(1), _epoch(2, **UNIFORM), _epoch(3), _epoch(4, **UNIFORM)], 3),  # only the trailing run counts
    ],
)
def test_the_last_healthy_epoch_is_the_one_before_the_failure_signal_began(epochs, healthy):
    from trainer.results import last_healthy_epoch

    assert last_healthy_epoch(epochs, CollapseSpec(patience=2)) == healthy


def test_a_rollback_starts_where_the_healthy_epochs_checkpoint_lives():
    from trainer.results import StartPoint, rollback_point

    epochs = [_epoch(1), _epoch(2), _epoch(3), _epoch(4, **UNIFORM), _epoch(5, **UNIFORM)]
    collapse = CollapseSpec(patience=2)
    assert rollback_point(2, epochs, None, "/w/attempt-2", collapse) == StartPoint(attempt=2, epoch=3, workdir="/w/attempt-2")
    inherited = StartPoint(attempt=1, epoch=3, workdir="/w/attempt-1")  # attempt 2 began at attempt 1's epoch 3
    assert rollback_point(2, epochs, inherited, "/w/attempt-2", collapse) == inherited
    assert rollback_point(2, [_epoch(1, **UNIFORM), _epoch(2, **UNIFORM)], None, "/w/attempt-2", collapse) is None
