"""Training throughput of run_attempt vs a stock TFRS model.fit, and the clipping study.

    python bench/bench_trainer.py [--config examples/retail_synthetic.yaml] [--epochs 5] [--rounds 3]
                                  [--threads N] [--set k=v]
    python bench/bench_trainer.py --clipping

Throughput: the same data, towers (trainer.model.build_towers), batch, optimizer and seed, trained
by (a) run_attempt (telemetry train step, per-epoch checkpoint, TensorBoard, detector) and (b) a
plain tfrs.Model with the stock train step and model.fit. Each run of an arm is its own
subprocess, started the same way: TensorFlow's intra- and inter-op threads pinned to --threads
before any op runs, the same tf.data Options in both arms' pipelines, the same precision policy and strategy, and the data checked identical across
runs by a fingerprint. The stock arm is the TFRS tutorials' recipe: the frame's raw string columns
sliced into rows, shuffled and batched, the towers' own StringLookups inside the model (and the
step); run_attempt looks them up once in its input pipeline (make_dataset's `preprocess`), gathers
batches of ids by shuffled row index, and compiles the step as `training.jit_compile` says. Runs
alternate a, b, a, b; examples/s is wall-clock (and process CPU time) from the end of epoch 1
(tracing) to the end of the last epoch, per-epoch checkpoints and callbacks included. Printed:
every run, the median of each arm and the median of the per-round ratios run_attempt / stock
(goal >= 1.2).

--clipping: per-variable clipnorm=1.0 vs global_clipnorm=1.0 vs no clipping, on the same spec
and learning rates, with the resulting status, loss/example and recall@k.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

import trainer.attempt
from trainer.attempt import distribution_strategy, run_attempt, use_mixed_precision_if_gpu
from trainer.data import load_experiment_data
from trainer.evaluation import evaluate_model
from trainer.model import build_optimizer, build_towers, frame_tensors, make_dataset, model_columns
from trainer.spec import ExperimentSpec, load_spec

ARMS = ("stock", "run_attempt")


class StockModel(tfrs.Model):
    """The TFRS tutorial model: stock train_step, Retrieval without metrics."""

    def __init__(self, buyer, product, temperature: float):
        super().__init__()
        self.buyer, self.product = buyer, product
        self.task = tfrs.tasks.Retrieval(temperature=temperature)

    def compute_loss(self, features, training=False):
        return self.task(self.buyer(features), self.product(features), compute_metrics=False)


class EpochTimer(tf_keras.callbacks.Callback):
    """Wall-clock time at each epoch end (after everything the epoch does, checkpoints included)."""

    def __init__(self):
        super().__init__()
        self.ends: list[tuple[float, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(_now())


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def after_first_epoch(rows: int, ends: list[tuple[float, float]]) -> tuple[float, float]:
    """Examples per wall-clock second and per process CPU second, from the end of epoch 1 (tracing
    done) to the end of the last epoch. CPU seconds are far less disturbed by other processes."""
    examples = rows * (len(ends) - 1)
    return examples / (ends[-1][0] - ends[0][0]), examples / (ends[-1][1] - ends[0][1])


OPTIONS = tf.data.Options()
"""Both arms' tf.data Options, pinned by `pin`."""


def pin(threads: int) -> None:
    """This process's TensorFlow thread pools, and the tf.data pipeline both arms build, at `threads`.

    run_attempt takes its pipeline from trainer.attempt.make_dataset, which becomes make_dataset
    with the pinned Options here (the trainer's code is unchanged); the stock arm's gets them too."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    OPTIONS.deterministic = True
    OPTIONS.threading.private_threadpool_size = threads
    OPTIONS.threading.max_intra_op_parallelism = 1

    def pinned_dataset(*args, **kwargs) -> tf.data.Dataset:
        return make_dataset(*args, **kwargs).with_options(OPTIONS)

    trainer.attempt.make_dataset = pinned_dataset


def stock_dataset(frame: pd.DataFrame, columns: dict, batch_size: int, seed: int) -> tf.data.Dataset:
    """The TFRS tutorials' input: the frame's raw columns sliced into rows, reshuffled each epoch, batched."""
    dataset = tf.data.Dataset.from_tensor_slices(frame_tensors(frame, columns))
    dataset = dataset.shuffle(len(frame), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(OPTIONS)


def stock_epoch_ends(spec: ExperimentSpec, data) -> list[tuple[float, float]]:
    training = spec.training
    tf_keras.utils.set_random_seed(training.seed)
    use_mixed_precision_if_gpu()
    dataset = stock_dataset(data.train, model_columns(spec), training.batch_size, training.seed)
    with distribution_strategy().scope():
        model = StockModel(*build_towers(spec, data.train), spec.model.temperature)
        model.compile(optimizer=build_optimizer(training, training.learning_rate))
    timer = EpochTimer()
    model.fit(dataset, epochs=training.epochs, callbacks=[timer], verbose=0)
    return timer.ends


def attempt_epoch_ends(spec: ExperimentSpec) -> list[tuple[float, float]]:
    ends: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as workdir:
        run_attempt(spec, spec.training.learning_rate, workdir, on_epoch=lambda m: ends.append(_now()))
    return ends


def measure(spec: ExperimentSpec, arm: str) -> dict:
    """One run of `arm` in this (fresh, pinned) process: examples/s and the data's fingerprint."""
    data = load_experiment_data(spec)
    ends = stock_epoch_ends(spec, data) if arm == "stock" else attempt_epoch_ends(spec)
    wall, cpu = after_first_epoch(len(data.train), ends)
    fingerprint = int(pd.util.hash_pandas_object(data.train).sum() % 2**63)
    return {"wall": wall, "cpu": cpu, "rows": len(data.train), "fingerprint": fingerprint}


def run_arm(arm: str, args: argparse.Namespace) -> dict:
    """`measure` of `arm` in a subprocess of its own, started exactly as the other arm's are."""
    command = [sys.executable, __file__, "--arm", arm, "--config", args.config, "--epochs", str(args.epochs),
               "--threads", str(args.threads), *(f"--set={override}" for override in args.set)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{arm} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def throughput(spec: ExperimentSpec, args: argparse.Namespace) -> None:
    print(f"{spec.name}: batch {spec.training.batch_size}, {spec.training.epochs} epochs, "
          f"{args.threads} intra/inter-op threads per run, {args.rounds} rounds of stock then run_attempt")
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for round_ in range(args.rounds):
        for arm in ARMS:
            runs[arm].append(run_arm(arm, args))
        stock, ours = runs["stock"][-1], runs["run_attempt"][-1]
        print(f"round {round_ + 1}: stock fit {stock['wall']:,.0f} ex/s ({stock['cpu']:,.0f} per CPU s), "
              f"run_attempt {ours['wall']:,.0f} ex/s ({ours['cpu']:,.0f} per CPU s)")
    fingerprints = {run["fingerprint"] for arm in ARMS for run in runs[arm]}
    if len(fingerprints) != 1:
        sys.exit(f"the runs trained on different data (fingerprints {sorted(fingerprints)}): no comparison")
    print(f"identical data in every run: {runs['stock'][0]['rows']:,} training rows, fingerprint {fingerprints.pop():x}")
    for unit, key in (("wall-clock", "wall"), ("CPU-time", "cpu")):
        medians = {arm: statistics.median(run[key] for run in runs[arm]) for arm in ARMS}
        ratios = sorted(o[key] / s[key] for s, o in zip(runs["stock"], runs["run_attempt"]))
        print(f"{unit}: median stock fit {medians['stock']:,.0f} ex/s, median run_attempt {medians['run_attempt']:,.0f} ex/s, "
              f"ratio run_attempt/stock median {statistics.median(ratios):.3f} (rounds {ratios[0]:.3f}..{ratios[-1]:.3f})")


def clipping(spec: ExperimentSpec, learning_rates: list[float]) -> None:
    modes = {"clipnorm=1.0": (1.0, None), "global_clipnorm=1.0": (None, 1.0), "no clipping": (None, None)}
    data = load_experiment_data(spec)
    k = max(spec.evaluation.ks)
    print(f"{spec.name}: optimizer {spec.training.optimizer}, batch {spec.training.batch_size}, {spec.training.epochs} epochs")
    print(f"{'clipping':<20} {'lr':>6} {'status':<10} {'epochs':>6} {'loss/ex':>8} {'pre-clip norm b/p':>18} recall@10 recall@{k}")
    for lr in learning_rates:
        for mode, (clipnorm, global_clipnorm) in modes.items():
            training = spec.training.model_copy(update={"clipnorm": clipnorm, "global_clipnorm": global_clipnorm})
            variant = spec.model_copy(update={"training": training})
            with tempfile.TemporaryDirectory() as workdir:
                result = run_attempt(variant, lr, workdir)
                recall = "-"
                if result.model_uri:
                    evaluation = evaluate_model(variant, result.model_uri, data)
                    recall = f"{evaluation.model[10]:.3f}     {evaluation.model[k]:.3f}"
            last = result.epochs[-1]
            norms = f"{last.buyer_grad_norm_mean:.3g}/{last.product_grad_norm_mean:.3g}"
            print(f"{mode:<20} {lr:>6g} {result.status:<10} {result.epochs_run:>6} {last.loss:>8.3f} {norms:>18} {recall}")
    print(f"uniform-score loss/example (a collapse): {last.uniform_loss:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/retail_synthetic.yaml")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec field")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="TensorFlow intra/inter-op threads in every run")
    parser.add_argument("--clipping", action="store_true", help="compare clipnorm / global_clipnorm / none")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.05, 0.5])
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one measured run, in a subprocess
    args = parser.parse_args()
    spec = load_spec(args.config, [f"training.epochs={args.epochs}", *args.set])
    if args.arm:
        pin(args.threads)
        print(json.dumps(measure(spec, args.arm)))
    elif args.clipping:
        pin(args.threads)
        clipping(spec, args.learning_rates)
    else:
        throughput(spec, args)


if __name__ == "__main__":
    main()
