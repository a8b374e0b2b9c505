"""Training telemetry, measured inside the train step, for the collapse / divergence detector.

`TelemetryModel.train_step` measures, inside the step and at no measurable cost, the task loss,
the batch size, how far the loss per example is from log(batch size) (the loss of a model that
scores every candidate alike), each tower's global gradient norm before clipping, and whether
anything was non-finite. `EpochTelemetry`, a Keras metric, accumulates those over the epoch.

Why the detector cannot read a reset value (the post-mortem's bug, where a stats callback reset
the accumulators before the collapse callback read them): Keras itself resets metrics at the
*beginning* of each epoch, and the epoch's summary reaches callbacks as plain numbers in the
epoch `logs`. The detector reads `EpochMetrics` built from those logs, never the accumulators,
so no callback (or callback order) can change what it sees.

Why loss per example and not only gradient norms: a collapsed retrieval model scores all B
in-batch candidates alike, so its loss per example is exactly log(B), while float32 rounding
keeps its gradient norms at 1e-5..1e-2, far above the post-mortem's 1e-7 floor, which therefore
never fires. The uniform-score test is made per step against log(that step's batch size), so a
last partial batch does not blur it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

# the result types live in trainer.results (no TensorFlow) and are importable from here as before
from trainer.results import CollapseDetector, EpochMetrics, Verdict  # noqa: F401

TOWERS = ("buyer", "product")
_SUMS = ("loss_sum", "examples", "steps", "gap_sum", "uniform_sum", "nonfinite_steps")


def _zero(metric: tf_keras.metrics.Metric, name: str) -> tf.Variable:
    """A scalar metric accumulator starting at 0; every replica holds the same (already reduced) value."""
    return metric.add_weight(name=name, initializer="zeros", aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class EpochTelemetry(tf_keras.metrics.Metric):
    """Per-epoch sums of the step telemetry; `result()` is the epoch summary as a flat dict.

    Keras resets it when an epoch (or an evaluation) begins. Under a distribution strategy the
    train step reduces its inputs across replicas first, so every replica holds the same totals.
    """

    def __init__(self, towers: tuple[str, ...] = TOWERS, name: str = "telemetry"):
        super().__init__(name=name, dtype="float32")  # accumulators stay float32 under mixed precision
        self.towers = towers
        self.sums = {key: _zero(self, key) for key in _SUMS}
        self.norm_sum = {t: _zero(self, f"{t}_norm_sum") for t in towers}
        self.norm_max = {t: _zero(self, f"{t}_norm_max") for t in towers}
        self.norm_count = {t: _zero(self, f"{t}_norm_count") for t in towers}

    def update_state(self, sums: dict[str, tf.Tensor], norms: dict[str, tf.Tensor], finite) -> None:
        """Add one step: `sums` from `step_sums` (reduced over replicas), norms pre-clip."""
        for key, value in sums.items():
            self.sums[key].assign_add(value)
        self.sums["steps"].assign_add(1.0)
        self.sums["nonfinite_steps"].assign_add(1.0 - tf.cast(finite, tf.float32))
        for tower, norm in norms.items():
            ok = tf.math.is_finite(norm)
            self.norm_sum[tower].assign_add(tf.where(ok, norm, 0.0))
            self.norm_max[tower].assign(tf.where(ok, tf.maximum(self.norm_max[tower], norm), self.norm_max[tower]))
            self.norm_count[tower].assign_add(tf.cast(ok, tf.float32))

    def result(self) -> dict[str, tf.Tensor]:
        examples = self.sums["examples"]
        out = {
            "loss": tf.math.divide_no_nan(self.sums["loss_sum"], examples),
            "examples": examples,
            "steps": self.sums["steps"],
            "uniform_gap": tf.math.divide_no_nan(self.sums["gap_sum"], examples),
            "uniform_loss": tf.math.divide_no_nan(self.sums["uniform_sum"], examples),
            "nonfinite_steps": self.sums["nonfinite_steps"],
        }
        nan = tf.constant(math.nan)
        for tower in self.towers:
            count = self.norm_count[tower]
            out[f"{tower}_grad_norm_mean"] = tf.where(count > 0, self.norm_sum[tower] / tf.maximum(count, 1.0), nan)
            out[f"{tower}_grad_norm_max"] = tf.where(count > 0, self.norm_max[tower], nan)
        return out


class ValidationLoss(tf_keras.metrics.Metric):
    """Loss per example over a whole evaluation (not the last batch's sum, as Keras would report)."""

    def __init__(self, name: str = "validation_loss"):
        super().__init__(name=name, dtype="float32")  # accumulators stay float32 under mixed precision
        self.loss_sum = _zero(self, "loss_sum")
        self.examples = _zero(self, "examples")

    def update_state(self, loss_sum, batch_size) -> None:
        self.loss_sum.assign_add(tf.cast(loss_sum, tf.float32))
        self.examples.assign_add(tf.cast(batch_size, tf.float32))

    def result(self) -> tf.Tensor:
        return tf.math.divide_no_nan(self.loss_sum, self.examples)


def step_sums(
    loss_sum: tf.Tensor, features: dict[str, tf.Tensor], uniform_sum: tf.Tensor | None = None
) -> dict[str, tf.Tensor]:
    """One step's loss sum, batch size B and uniform-score loss sum (float32: B log B unless the model
    gives its own `uniform_sum`), summed over replicas, and the step's |loss - uniform|."""
    batch = tf.cast(tf.shape(next(iter(features.values())))[0], tf.float32)
    loss_sum = tf.cast(loss_sum, tf.float32)
    uniform = batch * tf.math.log(batch) if uniform_sum is None else tf.cast(uniform_sum, tf.float32)
    loss_sum, batch, uniform = _cross_replica_sum([loss_sum, batch, uniform])
    return {"loss_sum": loss_sum, "examples": batch, "gap_sum": tf.abs(loss_sum - uniform), "uniform_sum": uniform}


def _squared_norm(gradient) -> tf.Tensor:
    """Squared L2 norm of a gradient as a dense tensor would have it (float32).

    An embedding's gradient is IndexedSlices with one row per lookup; rows of a repeated id must
    be summed first (tf.linalg.global_norm does not), which costs O(batch), not O(vocabulary).
    """
    if isinstance(gradient, tf.IndexedSlices):
        unique, position = tf.unique(gradient.indices)
        gradient = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(unique)[0])
    return tf.reduce_sum(tf.square(tf.cast(gradient, tf.float32)))


def _cross_replica_sum(values: list):
    """Sum each tensor of `values` over replicas under a multi-replica strategy (None stays None)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    present = [i for i, value in enumerate(values) if value is not None]
    reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [values[i] for i in present])
    out = list(values)
    for i, value in zip(present, reduced):
        out[i] = value
    return out


class TelemetryModel(tfrs.Model):
    """A tfrs.Model whose train step also records loss per example, per-tower gradient norms and
    non-finite steps in `self.telemetry`. Subclasses define `compute_loss` and `towers()`.

    The step mirrors tfrs.Model.train_step (loss + regularization, one apply_gradients), plus:
    loss scaling when the optimizer is a LossScaleOptimizer (mixed precision), and, under a
    multi-replica strategy, gradients summed across replicas *before* the norms are taken and
    applied (so norms and clipping see the global gradient, as on one device).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.telemetry = EpochTelemetry()
        self.validation_loss = ValidationLoss()

    def towers(self) -> dict[str, tf_keras.layers.Layer]:
        raise NotImplementedError

    def uniform_loss_sum(self, features: dict[str, tf.Tensor]) -> tf.Tensor | None:
        """This replica's loss sum if every candidate were scored alike; None means B log B (a softmax
        over this replica's own batch)."""
        return None

    def _tower_gradient_norms(self, gradients, variables) -> dict[str, tf.Tensor]:
        norms = {}
        for name, tower in self.towers().items():
            owned = {v.ref() for v in tower.trainable_variables}
            grads = [g for g, v in zip(gradients, variables) if g is not None and v.ref() in owned]
            norms[name] = tf.sqrt(tf.add_n([_squared_norm(g) for g in grads])) if grads else tf.constant(0.0)
        return norms

    def train_step(self, features):
        optimizer = self.optimizer
        loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            loss = self.compute_loss(features, training=True)
            total_loss = loss + tf.add_n(self.losses) if self.losses else loss
            target = optimizer.get_scaled_loss(total_loss) if loss_scaled else total_loss
        variables = self.trainable_variables  # read after the forward pass: towers build lazily
        gradients = tape.gradient(target, variables)
        if loss_scaled:
            gradients = optimizer.get_unscaled_gradients(gradients)
        gradients = _cross_replica_sum(list(gradients))
        norms = self._tower_gradient_norms(gradients, variables)
        optimizer.apply_gradients(zip(gradients, variables), skip_gradients_aggregation=True)

        sums = step_sums(loss, features, self.uniform_loss_sum(features))
        finite = tf.math.is_finite(sums["loss_sum"])
        if not loss_scaled:  # with loss scaling, overflowing gradients are expected and the step is skipped
            for norm in norms.values():
                finite = tf.logical_and(finite, tf.math.is_finite(norm))
        self.telemetry.update_state(sums, norms, finite)
        return self.telemetry.result()

    def test_step(self, features):
        sums = step_sums(self.compute_loss(features, training=False), features)
        self.validation_loss.update_state(sums["loss_sum"], sums["examples"])
        return {"loss": self.validation_loss.result()}


def epoch_metrics_from_logs(epoch: int, logs: dict, seconds: float, learning_rate: float) -> EpochMetrics:
    """EpochMetrics of 1-based `epoch` from Keras epoch-end `logs` (this module's train step)."""
    val_loss = logs.get("val_loss")
    return EpochMetrics(
        epoch=epoch,
        loss=float(logs["loss"]),
        steps=int(logs["steps"]),
        examples=int(logs["examples"]),
        buyer_grad_norm_mean=float(logs["buyer_grad_norm_mean"]),
        buyer_grad_norm_max=float(logs["buyer_grad_norm_max"]),
        product_grad_norm_mean=float(logs["product_grad_norm_mean"]),
        product_grad_norm_max=float(logs["product_grad_norm_max"]),
        nonfinite_steps=int(logs["nonfinite_steps"]),
        seconds=seconds,
        learning_rate=learning_rate,
        val_loss=None if val_loss is None else float(val_loss),
        uniform_gap=float(logs["uniform_gap"]),
        uniform_loss=float(logs["uniform_loss"]),
    )


class EpochMonitor(tf_keras.callbacks.Callback):
    """Turns each epoch's logs into EpochMetrics and hands them to `handle`, which returns True to
    stop training. It reads only the logs (never the accumulators), so callback order is irrelevant."""

    def __init__(self, handle: Callable[[EpochMetrics], bool]):
        super().__init__()
        self.handle = handle
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        learning_rate = float(tf_keras.backend.get_value(self.model.optimizer.learning_rate))
        metrics = epoch_metrics_from_logs(epoch + 1, logs, time.perf_counter() - self.started, learning_rate)
        if self.handle(metrics):
            self.model.stop_training = True
