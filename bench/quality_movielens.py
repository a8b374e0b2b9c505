"""MovieLens 100K quality: towerflow's example against the popularity and TFRS-tutorial baselines.

One protocol for every method: MovieLens 100K ratings, the example's random 80/20 split (seed 42),
recall@5/10/50/100 over the 1682 unique movies (trainer.recall: one query per test user, the
share of test (user, movie) pairs ranked in the user's top k), reported with and without
`evaluation.exclude_seen` (a user's training movies removed from their ranking). The flag only
changes evaluation, so each trained model is evaluated twice, never trained twice.

Methods:
  popularity     training rating counts (trainer.recall.popularity_scores), the same queries.
  itemknn, ease  the classical item-item baselines of bench/baselines_movielens.py (EASE's l2
                 chosen on a validation split carved from train), ranked by trainer.recall.
  tfrs-tutorial  the TFRS basic-retrieval tutorial recipe as a towerflow spec, trained by the same
                 trainer (trainer.attempt.run_attempt): user-id and movie-id embeddings of 32,
                 Adagrad 0.1, batch 8192, 3 epochs, no clipping, temperature 1. One difference
                 from the tutorial's Keras model: a towerflow tower always ends in a dense layer, so
                 each tower is the embedding followed by a linear Dense(32) (no extra capacity:
                 a linear map of a 32-d embedding is still a 32-d embedding).
  movielens.yaml examples/movielens.yaml run through `towerflow run` in a subprocess with a
                 temporary TOWERFLOW_HOME (validation, LR backoff, evaluation, SQL store, as a user
                 runs it); figures read back with `towerflow results --json`, the other
                 exclude_seen value evaluated from the stored model.

Prints the table and the lift of movielens.yaml over the best baseline at recall@10 and @100
(the goal: >= 1.15 at both). Asserts nothing.

    .venv/bin/python bench/quality_movielens.py           # the full protocol, a few minutes on 2 CPU cores
    .venv/bin/python bench/quality_movielens.py --quick   # 1 epoch each: a smoke run of the same protocol
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from trainer.data import ExperimentData, load_experiment_data
from trainer.spec import ExperimentSpec, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "movielens.yaml"
TOWERFLOW = Path(sys.executable).parent / "towerflow"
GOAL_LIFT = 1.15
GOAL_KS = (10, 100)

Recall = dict[int, float]
ByFlag = dict[bool, Recall]  # exclude_seen -> recall@k


def tutorial_config(data: dict, ks: list[int], epochs: int = 3) -> dict:
    """The TFRS basic-retrieval tutorial recipe as a towerflow config on `data` (the `data` section)."""
    return {
        "name": "tfrs-tutorial",
        "data": data,
        "buyer_features": [{"column": "user_id", "type": "id", "embedding_dim": 32}],
        "product_features": [{"column": "item_id", "type": "id", "embedding_dim": 32, "is_primary_id": True}],
        "model": {"output_dim": 32, "buyer_layers": [], "product_layers": [], "logq_correction": False},
        "training": {
            "optimizer": "adagrad",
            "learning_rate": 0.1,
            "clipnorm": None,
            "epochs": epochs,
            "batch_size": 8192,
            "seed": 42,
        },
        "evaluation": {"ks": ks, "exclude_seen": False},
    }


def with_exclude_seen(spec: ExperimentSpec, exclude_seen: bool) -> ExperimentSpec:
    """`spec` with only evaluation.exclude_seen changed."""
    evaluation = spec.evaluation.model_copy(update={"exclude_seen": exclude_seen})
    return spec.model_copy(update={"evaluation": evaluation})


def evaluate_both(spec: ExperimentSpec, model_uri: str, data: ExperimentData) -> tuple[ByFlag, ByFlag]:
    """(model, popularity) recall@k for exclude_seen False and True, from one trained model."""
    from trainer.evaluation import evaluate_model  # imports TensorFlow

    model, popularity = {}, {}
    for flag in (False, True):
        result = evaluate_model(with_exclude_seen(spec, flag), model_uri, data)
        model[flag], popularity[flag] = result.model, result.popularity
    return model, popularity


def train_and_evaluate(spec: ExperimentSpec, workdir: str) -> tuple[ByFlag, ByFlag, float]:
    """Train `spec` once at its learning rate, then evaluate it both ways: (model, popularity, train seconds)."""
    from trainer.attempt import run_attempt  # imports TensorFlow

    data = load_experiment_data(spec)
    start = time.perf_counter()
    result = run_attempt(spec, spec.training.learning_rate, workdir)
    seconds = time.perf_counter() - start
    if result.status != "succeeded":
        raise RuntimeError(f"{spec.name}: attempt {result.status}: {result.reason}")
    return *evaluate_both(spec, result.model_uri, data), seconds


def run_towerflow(config: Path, home: str, overrides: list[str]) -> tuple[dict, float]:
    """`towerflow run CONFIG` in a subprocess, then its stored experiment (`towerflow results --json`)."""
    env = {**os.environ, "TOWERFLOW_HOME": home}
    sets = [arg for override in overrides for arg in ("--set", override)]
    start = time.perf_counter()
    subprocess.run([str(TOWERFLOW), "run", str(config), *sets], env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    name = load_spec(config, overrides).name
    shown = subprocess.run(
        [str(TOWERFLOW), "results", name, "--json"], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(shown.stdout), seconds


def towerflow_figures(detail: dict) -> tuple[ExperimentSpec, str, ByFlag]:
    """From stored results: the spec, the succeeded attempt's model and its recall at the spec's exclude_seen."""
    spec = spec_from_dict(detail["experiment"]["spec"])
    succeeded = [a for a in detail["attempts"] if a["status"] == "succeeded"]
    if not succeeded:
        raise RuntimeError(f"{spec.name}: no attempt succeeded: {detail['experiment']['message']}")
    attempt = succeeded[-1]
    rows = [r for r in detail["recall"] if r["attempt_id"] == attempt["id"]]
    stored = {row["k"]: row["value"] for row in rows}
    return spec, attempt["model_uri"], {spec.evaluation.exclude_seen: stored}


def lift(model: float, baseline: float) -> float:
    return model / baseline if baseline > 0 else float("inf")


def render(table: dict[str, ByFlag], ks: list[int]) -> str:
    """The recall table: one row per method and exclude_seen value."""
    header = f"{'method':<18}{'exclude_seen':<14}" + "".join(f"{'@' + str(k):>9}" for k in ks)
    lines = [header, "-" * len(header)]
    for flag in (False, True):
        for method, by_flag in table.items():
            values = "".join(f"{by_flag[flag][k]:>9.4f}" for k in ks)
            lines.append(f"{method:<18}{str(flag):<14}{values}")
    return "\n".join(lines)


def render_lifts(table: dict[str, ByFlag], candidate: str, baselines: list[str]) -> str:
    """The lift of `candidate` over the best baseline at each goal k, for each exclude_seen value."""
    lines = []
    for flag in (False, True):
        for k in GOAL_KS:
            best = max(baselines, key=lambda method: table[method][flag][k])
            ratio = lift(table[candidate][flag][k], table[best][flag][k])
            verdict = "meets" if ratio >= GOAL_LIFT else "misses"
            lines.append(
                f"exclude_seen={flag!s:<5} recall@{k:<3}: {candidate} {table[candidate][flag][k]:.4f} vs "
                f"{best} {table[best][flag][k]:.4f} = {ratio:.2f}x ({verdict} the {GOAL_LIFT:.2f}x goal)"
            )
    return "\n".join(lines)


def render_versus(table: dict[str, ByFlag], candidate: str, baselines: list[str], ks: list[int]) -> str:
    """`candidate` as a ratio of each classical baseline at every k, at each exclude_seen value."""
    lines = []
    for flag in (False, True):
        for baseline in baselines:
            ratios = "  ".join(f"@{k} {lift(table[candidate][flag][k], table[baseline][flag][k]):.2f}x" for k in ks)
            lines.append(f"exclude_seen={flag!s:<5} {candidate} / {baseline}: {ratios}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch per model: a smoke run of the protocol")
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="the towerflow config to measure")
    args = parser.parse_args(argv)
    epoch_overrides = ["training.epochs=1"] if args.quick else []

    with tempfile.TemporaryDirectory(prefix="quality-movielens-") as tmp:
        detail, towerflow_seconds = run_towerflow(args.config, str(Path(tmp) / "home"), epoch_overrides)
        spec, model_uri, towerflow_recall = towerflow_figures(detail)
        data = load_experiment_data(spec)
        model, popularity = evaluate_both(spec, model_uri, data)
        flag = spec.evaluation.exclude_seen
        model[flag] = towerflow_recall[flag]  # as stored by `towerflow run`
        ks = spec.evaluation.ks
        tutorial = spec_from_dict(tutorial_config(spec.data.model_dump(), ks, epochs=1 if args.quick else 3))
        tutorial_model, _, tutorial_seconds = train_and_evaluate(tutorial, str(Path(tmp) / "tutorial"))

    from baselines_movielens import classical_baselines  # it imports this module's helpers

    classical = classical_baselines(spec, data)
    table = {"popularity": popularity, "tfrs-tutorial": tutorial_model, **classical, args.config.name: model}
    print(f"MovieLens 100K, {spec.data.split.strategy} split {1 - spec.data.split.test_fraction:.0%}/"
          f"{spec.data.split.test_fraction:.0%} (seed {spec.data.split.seed}); recall@k over "
          f"{data.candidates.shape[0]} unique movies, {data.test[spec.buyer_id_column].nunique()} test users"
          + (" [--quick: 1 epoch each]" if args.quick else ""))
    print(render(table, ks))
    print()
    print(render_lifts(table, args.config.name, ["popularity", "tfrs-tutorial"]))
    print()
    print(render_versus(table, args.config.name, list(classical), ks))
    print()
    print(f"time: `towerflow run {args.config.name}` {towerflow_seconds:.0f}s end to end (subprocess); "
          f"tfrs-tutorial training {tutorial_seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
