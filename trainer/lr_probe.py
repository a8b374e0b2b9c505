"""The learning-rate range test (Smith 2015) run before an experiment's first attempt: the TensorFlow side.

A fresh model of the spec, with the spec's optimizer and clipping, trains `validation.lr_probe_steps`
steps on shuffled training batches, one Keras epoch per rate of `trainer.probe_curve.probe_rates`. So the
train step's own telemetry (`trainer.gradients`: loss per example, the model's uniform-score loss,
per-tower pre-clip gradient norms, non-finite steps; reset by Keras when an epoch begins) measures each
rate, and `EpochMonitor` stops the ladder at the first failing rate. `trainer.probe_curve.analyse` reads
the curve. Nothing is written to disk: the probe's weights are thrown away.
"""

from __future__ import annotations

import time

import tf_keras

from trainer.attempt import use_mixed_precision_if_gpu
from trainer.data import ExperimentData, load_experiment_data
from trainer.gradients import EpochMetrics, EpochMonitor
from trainer.model import build_model, build_optimizer, model_columns
from trainer.stream_input import read_failures_named, training_batches
from trainer.probe_curve import ProbeCurve, ProbePoint, analyse, first_failure, probe_rates
from trainer.spec import ExperimentSpec


def probe_point(metrics: EpochMetrics) -> ProbePoint:
    """One rung of the ladder from the epoch telemetry of its steps."""
    return ProbePoint(
        rate=metrics.learning_rate, loss=metrics.loss, uniform_loss=metrics.uniform_loss,
        buyer_grad_norm=metrics.buyer_grad_norm_mean, product_grad_norm=metrics.product_grad_norm_mean,
        nonfinite_steps=metrics.nonfinite_steps, steps=metrics.steps,
    )


def run_probe(spec: ExperimentSpec, data: ExperimentData | None = None) -> ProbeCurve:
    """Range-test `spec`'s model (on `data`, loaded from the spec if None) and read the curve."""
    started = time.perf_counter()
    training = spec.training
    data = data if data is not None else load_experiment_data(spec)
    tf_keras.utils.set_random_seed(training.seed)
    use_mixed_precision_if_gpu()  # as the attempts train
    rates = probe_rates(training.learning_rate)
    steps = max(1, spec.validation.lr_probe_steps // len(rates))
    batches = training_batches(data, model_columns(spec), training.batch_size, training.seed)
    model = build_model(spec, data.stats, data.candidates)
    model.compile(optimizer=build_optimizer(training, rates[0]))
    points: list[ProbePoint] = []

    def record(metrics: EpochMetrics) -> bool:
        points.append(probe_point(metrics))
        return first_failure(points) is not None

    with read_failures_named(data.stream):
        model.fit(
            batches.repeat(), epochs=len(rates), steps_per_epoch=steps, verbose=0,
            callbacks=[tf_keras.callbacks.LearningRateScheduler(lambda epoch, _: rates[epoch]), EpochMonitor(record)],
        )
    return analyse(points, seconds=time.perf_counter() - started)
