"""Retail-like quality: does a config beat popularity at every k on repeat-heavy, skewed data?

The data is `synthetic-retail://` with weak personal taste, repeat purchases and a popularity tail
(RETAIL below: 5000 customers, 2000 products, 100k purchases, 20 clusters, 30% of purchases inside
the customer's cluster, `repeat=0.1`, popularity skew 1.2; 37% of purchases re-buy a product), split by time
(the last 20% of purchases are the test), evaluated as towerflow evaluates it: recall@5/10/50/100
over the 2000 unique products, seen products kept (a re-purchase is a hit), beside popularity on
the same queries.

Two arms, as the quality issue asks: the post-mortem's config (adagrad, lr 0.1, a 3-layer buyer
tower, everything else at towerflow's defaults) and towerflow's defaults as they are. Each
candidate overrides both arms' configs (dotted paths, as bench/tune_movielens.py does).

    .venv/bin/python bench/quality_retail.py                 # validation: every candidate, both arms
    .venv/bin/python bench/quality_retail.py --test          # the test split, spec defaults only
    .venv/bin/python bench/quality_retail.py --test --only defaults no-logq

Without --test only a validation split is read: the last 20% (by time) of the training rows,
trained on the rest. With --test each arm is trained on the training rows and scored on the
test rows, by default with no override (what a user gets from the defaults). Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from quality_movielens import train_and_evaluate
from trainer.data import load_table, split_transactions
from trainer.spec import SplitSpec, spec_from_dict
from tune_movielens import override

RETAIL = "customers=5000&products=2000&transactions=100000&clusters=20&seed=7&affinity=0.3&repeat=0.1&skew=1.2"
SPLIT = {"strategy": "time", "column": "timestamp", "test_fraction": 0.2}
KS = [5, 10, 50, 100]

FEATURES = {
    "buyer_features": [
        {"column": "customer_id", "type": "id", "embedding_dim": 32},
        {"column": "customer_age", "type": "numeric"},
        {"column": "region", "type": "categorical", "embedding_dim": 4},
        {"column": "cust_value", "type": "numeric"},
    ],
    "product_features": [
        {"column": "product_id", "type": "id", "embedding_dim": 32, "is_primary_id": True},
        {"column": "category", "type": "categorical", "embedding_dim": 8},
        {"column": "price", "type": "numeric"},
        {"column": "description", "type": "text", "embedding_dim": 16},
    ],
}
ARMS: dict[str, dict[str, Any]] = {
    "post-mortem": {
        "training": {"optimizer": "adagrad", "learning_rate": 0.1},
        "model": {"buyer_layers": [{"units": 128}, {"units": 64}, {"units": 32}]},
    },
    "defaults": {},
}
CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no-logq": {"model.logq_correction": False},  # the default until the quality issue
    "norm-t0.1": {"model.normalize": True, "model.temperature": 0.1},
    "e10": {"training.epochs": 10},
    "history": {"buyer_features[4]": {"column": "bought", "type": "history", "embedding_dim": 32}},
    "catalogue": {"model.negatives": "catalogue"},
}  # fmt: skip
"""Candidate name -> overrides applied to every arm."""


def arm_config(arm: str, data: dict) -> dict:
    return {"name": f"retail-{arm}", "data": data, **FEATURES, **ARMS[arm], "evaluation": {"ks": KS}}


def retail_data(transactions: str, params: str) -> dict:
    return {"transactions": transactions, "products": f"synthetic-retail://products?{params}", "split": SPLIT}


def lifts(model: dict[int, float], popularity: dict[int, float]) -> str:
    return "  ".join(f"@{k} {model[k]:.4f} ({model[k] / popularity[k]:.2f}x)" for k in KS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    parser.add_argument("--test", action="store_true", help="score on the test split (default candidate: defaults)")
    parser.add_argument("--params", default=RETAIL, help=f"the synthetic-retail parameters (default {RETAIL})")
    args = parser.parse_args(argv)
    chosen = args.only or (["defaults"] if args.test else list(CANDIDATES))
    unknown = [name for name in chosen if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s): {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")

    with tempfile.TemporaryDirectory(prefix="quality-retail-") as tmp:
        if args.test:
            data = retail_data(f"synthetic-retail://transactions?{args.params}", args.params)
        else:
            rows = load_table(f"synthetic-retail://transactions?{args.params}")
            train, _ = split_transactions(rows, SplitSpec(**SPLIT))
            train.to_parquet(Path(tmp) / "train.parquet", index=False)
            data = retail_data(str(Path(tmp) / "train.parquet"), args.params)
        print(f"retail-like data ({args.params}), time split, {'test' if args.test else 'validation carved from train'}")
        for name in chosen:
            for arm in ARMS:
                spec = spec_from_dict(override(arm_config(arm, data), CANDIDATES[name]), f"{name}/{arm}")
                model, popularity, seconds = train_and_evaluate(spec, str(Path(tmp) / f"{name}-{arm}"))
                below = [k for k in KS if model[False][k] <= popularity[False][k]]
                print(
                    f"{name:<20} {arm:<12} {lifts(model[False], popularity[False])}  "
                    f"{'below popularity at ' + ', '.join(f'@{k}' for k in below) if below else 'beats popularity at every k'}"
                    f"  {seconds:.0f}s",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
