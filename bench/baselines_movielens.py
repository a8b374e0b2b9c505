"""Classical baselines on MovieLens 100K: popularity, ItemKNN and EASE, on the example's own protocol.

The protocol is the config's (examples/movielens.yaml by default): its split (random 80/20, seed
42), its unique candidates (the 1682 movies), its ks and its exclude_seen, ranked by trainer.recall
as towerflow's evaluation ranks them (trainer.baselines). EASE's l2 penalty is chosen on a
validation split carved from train only (random 80/20 of the training rows, the config's seed;
the test split is never read for it): every candidate l2 and its validation recall is printed, the
best mean recall over the ks wins, and EASE is then refit on the whole training split. ItemKNN
(cosine over all items) has nothing to tune.

With --model-uri (a towerflow export, an attempt's `model/` directory) or --experiment NAME (the
succeeded attempt of a stored experiment, read with `towerflow results NAME --json` from
$TOWERFLOW_HOME), that model is evaluated on the same queries and printed beside them.

    .venv/bin/python bench/baselines_movielens.py                      # seconds on 2 CPU cores
    .venv/bin/python bench/baselines_movielens.py --experiment movielens
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from quality_movielens import EXAMPLE, TOWERFLOW, towerflow_figures
from trainer.baselines import ease, interactions, item_item_recall, item_knn
from trainer.data import ExperimentData, load_experiment_data
from trainer.recall import Queries, build_queries, popularity_recall, popularity_scores
from trainer.spec import ExperimentSpec, load_spec

L2_CANDIDATES = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
VALIDATION_FRACTION = 0.2

Recall = dict[int, float]


class Protocol:
    """One split's training history and evaluation queries, as towerflow's evaluation builds them."""

    def __init__(self, spec: ExperimentSpec, train: pd.DataFrame, test: pd.DataFrame, candidate_ids: np.ndarray):
        buyer, product = spec.buyer_id_column, spec.product_id_column
        self.train, self.product, self.candidate_ids, self.ks = train, product, candidate_ids, spec.evaluation.ks
        seen = train if spec.evaluation.exclude_seen else None
        self.queries: Queries = build_queries(test, buyer, product, candidate_ids, train=seen)
        buyers = np.array(sorted(train[buyer].unique()))
        self.fit = interactions(train, buyer, product, buyers, candidate_ids)
        self.history = interactions(train, buyer, product, self.queries.buyer_ids, candidate_ids)

    def recall(self, weights: np.ndarray) -> Recall:
        return item_item_recall(weights, self.history, self.queries, self.ks)

    def popularity(self) -> Recall:
        scores = popularity_scores(self.train[self.product].to_numpy(), self.candidate_ids)
        return popularity_recall(scores, self.queries, self.ks)


def protocol(spec: ExperimentSpec, data: ExperimentData, test: pd.DataFrame) -> Protocol:
    """`data.train` as history, `test` as the queries, over the unique candidates of `data`."""
    return Protocol(spec, data.train, test, data.candidates[spec.product_id_column].to_numpy())


def tuning_protocol(spec: ExperimentSpec) -> Protocol:
    """Train carved into inner train and validation (the config's split strategy and seed)."""
    training = spec.training.model_copy(update={"validation_fraction": VALIDATION_FRACTION})
    data = load_experiment_data(spec.model_copy(update={"training": training}))
    return protocol(spec, data, data.validation)


def choose_l2(spec: ExperimentSpec) -> tuple[float, dict[float, Recall]]:
    """The l2 with the best mean validation recall over the ks, and every candidate's validation recall."""
    tuning = tuning_protocol(spec)
    scores = {l2: tuning.recall(ease(tuning.fit, l2)) for l2 in L2_CANDIDATES}
    best = max(scores, key=lambda l2: np.mean(list(scores[l2].values())))
    return best, scores


def classical_baselines(spec: ExperimentSpec, data: ExperimentData) -> dict[str, dict[bool, Recall]]:
    """ItemKNN and EASE (l2 chosen on validation carved from train) on the test split, for
    exclude_seen False and True: the rows bench/quality_movielens.py prints beside the model."""
    l2, _ = choose_l2(spec)
    table: dict[str, dict[bool, Recall]] = {"itemknn": {}, f"ease l2={l2:g}": {}}
    for flag in (False, True):
        evaluation = spec.evaluation.model_copy(update={"exclude_seen": flag})
        test = protocol(spec.model_copy(update={"evaluation": evaluation}), data, data.test)
        table["itemknn"][flag] = test.recall(item_knn(test.fit))
        table[f"ease l2={l2:g}"][flag] = test.recall(ease(test.fit, l2))
    return table


def stored_model(name: str) -> tuple[ExperimentSpec, str]:
    """The spec and model URI of stored experiment `name`'s succeeded attempt."""
    shown = subprocess.run([str(TOWERFLOW), "results", name, "--json"], check=True, capture_output=True, text=True)
    spec, model_uri, _ = towerflow_figures(json.loads(shown.stdout))
    return spec, model_uri


def row(label: str, recall: Recall, ks: list[int]) -> str:
    return f"{label:<24}" + "".join(f"{recall[k]:>9.4f}" for k in ks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="the protocol: split, candidates, ks, exclude_seen")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model-uri", help="a towerflow export to evaluate beside the baselines")
    which.add_argument("--experiment", help="a stored experiment whose succeeded attempt to evaluate")
    args = parser.parse_args(argv)
    spec = load_spec(args.config)
    if args.experiment:
        spec, model_uri = stored_model(args.experiment)
    else:
        model_uri = args.model_uri
    ks = spec.evaluation.ks
    header = f"{'':<24}" + "".join(f"{'@' + str(k):>9}" for k in ks)

    start = time.perf_counter()
    l2, validation = choose_l2(spec)
    data = load_experiment_data(spec)
    test = protocol(spec, data, data.test)
    table = {
        "popularity": test.popularity(),
        "itemknn (cosine)": test.recall(item_knn(test.fit)),
        f"ease (l2={l2:g})": test.recall(ease(test.fit, l2)),
    }
    seconds = time.perf_counter() - start
    if model_uri:
        from trainer.evaluation import evaluate_model  # imports TensorFlow

        table[f"towerflow {spec.name}"] = evaluate_model(spec, model_uri, data).model

    split = spec.data.split
    print(
        f"{args.config.name if not args.experiment else args.experiment}: {split.strategy} split, test fraction "
        f"{split.test_fraction} (seed {split.seed}); recall@k over {len(test.candidate_ids)} unique candidates, "
        f"{test.queries.n_queries} test buyers, {test.queries.n_pairs} pairs, exclude_seen={spec.evaluation.exclude_seen}"
    )
    print(f"\nEASE l2 on validation ({VALIDATION_FRACTION:.0%} of train, seed {spec.training.seed}; best mean recall):")
    print(header)
    for candidate, recall in validation.items():
        print(row(f"l2={candidate:g}" + ("  <- chosen" if candidate == l2 else ""), recall, ks))
    print("\ntest:")
    print(header)
    for label, recall in table.items():
        print(row(label, recall, ks))
    print(f"\nbaselines: {seconds:.1f}s (tuning, fitting and ranking)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
