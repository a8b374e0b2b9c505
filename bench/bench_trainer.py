"""Training throughput of run_attempt vs a stock TFRS model.fit, and the clipping study.

    python bench/bench_trainer.py [--config examples/retail_synthetic.yaml] [--epochs 5] [--rounds 3] [--set k=v]
    python bench/bench_trainer.py --clipping

Throughput: the same data, towers (trainer.model.build_towers), batch, optimizer and seed, trained
by (a) run_attempt (telemetry train step, per-epoch checkpoint, TensorBoard, detector) and (b) a
plain tfrs.Model with the stock train step and model.fit. Examples/s is wall-clock from the end of epoch 1 (tracing) to
the end of the last epoch, per-epoch checkpoints and callbacks included; rounds alternate a/b to share the machine's noise; the best round of each is
printed with the ratio run_attempt / stock (goal >= 0.95).

--clipping: per-variable clipnorm=1.0 vs global_clipnorm=1.0 vs no clipping, on the same spec
and learning rates, with the resulting status, loss/example and recall@k.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import trainer  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from trainer.attempt import run_attempt
from trainer.data import load_experiment_data
from trainer.evaluation import evaluate_model
from trainer.model import build_model, build_optimizer, build_towers, make_dataset, model_columns
from trainer.spec import ExperimentSpec, load_spec


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


def stock_examples_per_s(spec: ExperimentSpec, data) -> tuple[float, float]:
    training = spec.training
    tf_keras.utils.set_random_seed(training.seed)
    model = StockModel(*build_towers(spec, data.train), spec.model.temperature)
    model.compile(optimizer=build_optimizer(training, training.learning_rate))
    dataset = make_dataset(data.train, model_columns(spec), training.batch_size, shuffle_seed=training.seed)
    timer = EpochTimer()
    model.fit(dataset, epochs=training.epochs, callbacks=[timer], verbose=0)
    return after_first_epoch(len(data.train), timer.ends)


def attempt_examples_per_s(spec: ExperimentSpec, rows: int) -> tuple[float, float]:
    ends: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as workdir:
        run_attempt(spec, spec.training.learning_rate, workdir, on_epoch=lambda m: ends.append(_now()))
    return after_first_epoch(rows, ends)


def throughput(spec: ExperimentSpec, rounds: int) -> None:
    data = load_experiment_data(spec)
    print(f"{spec.name}: {len(data.train)} training rows, batch {spec.training.batch_size}, {spec.training.epochs} epochs")
    ours, stock = [], []
    for round_ in range(rounds):
        stock.append(stock_examples_per_s(spec, data))
        ours.append(attempt_examples_per_s(spec, len(data.train)))
        (sw, sc), (ow, oc) = stock[-1], ours[-1]
        print(
            f"round {round_ + 1}: stock fit {sw:,.0f} ex/s ({sc:,.0f} per CPU s), "
            f"run_attempt {ow:,.0f} ex/s ({oc:,.0f} per CPU s)"
        )
    interleaved_step_ratio(spec, data)
    for i, unit in enumerate(("wall-clock", "CPU-time")):
        best_stock, best_ours = max(s[i] for s in stock), max(o[i] for o in ours)
        print(
            f"{unit}: best stock fit {best_stock:,.0f} ex/s, best run_attempt {best_ours:,.0f} ex/s, "
            f"ratio run_attempt/stock {best_ours / best_stock:.3f}"
        )


def interleaved_step_ratio(spec: ExperimentSpec, data, epochs: int = 6) -> None:
    """The train steps alone, epochs alternated stock / telemetry on warm models: the figure the
    machine's noise disturbs least (same model, data and batch; no checkpoints or callbacks)."""
    training = spec.training
    dataset = make_dataset(data.train, model_columns(spec), training.batch_size, shuffle_seed=training.seed)
    models = {}
    for name, make in (("stock", StockModel), ("telemetry", build_model)):
        tf_keras.utils.set_random_seed(training.seed)
        model = make(*build_towers(spec, data.train), spec.model.temperature) if name == "stock" else make(spec, data.train)
        model.compile(optimizer=build_optimizer(training, training.learning_rate))
        model.fit(dataset, epochs=1, verbose=0)  # trace
        models[name] = model
    ratios = []
    for _ in range(epochs):
        seconds = {}
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            seconds[name] = time.perf_counter() - started
        ratios.append(seconds["stock"] / seconds["telemetry"])
    ratios.sort()
    print(
        f"train step alone, {epochs} alternated epochs: examples/s telemetry/stock median {ratios[len(ratios) // 2]:.3f} "
        f"(range {ratios[0]:.3f}..{ratios[-1]:.3f})"
    )


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
    parser.add_argument("--threads", type=int, help="TensorFlow intra/inter-op threads (1: steadiest figures on a busy machine)")
    parser.add_argument("--clipping", action="store_true", help="compare clipnorm / global_clipnorm / none")
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.05, 0.5])
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    spec = load_spec(args.config, [f"training.epochs={args.epochs}", *args.set])
    if args.clipping:
        clipping(spec, args.learning_rates)
    else:
        throughput(spec, args.rounds)


if __name__ == "__main__":
    main()
