"""What the learning-rate probe (`validation.lr_probe: pick`) saves and costs, measured on real training.

Per case and seed, the same lineage twice, in this process (no Prefect, as `python -m trainer` trains):
without the probe, attempts at the configured rate backing off by `training.backoff` until one succeeds;
with it, `trainer.lr_probe.run_probe` first and the same backoff from the probe's suggestion. Printed:
the probe's suggestion and seconds, attempts and failed (collapsed/diverged) attempts each way, the
seconds of the whole lineage each way (data loading included both ways), recall@10 of the final model, and
in how many runs the probe avoided every collapse-and-backoff that the configured rate had.

    .venv/bin/python bench/bench_lr_probe.py [--only collapse_demo|movielens_lr1|movielens_adagrad10|movielens] [--seeds 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import trainer  # noqa: F401  (tf-keras before TensorFlow)
from trainer.attempt import run_attempt
from trainer.evaluation import evaluate_model
from trainer.lr_probe import run_probe
from trainer.spec import ExperimentSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "collapse_demo": ("examples/collapse_demo.yaml", []),
    "movielens_lr1": ("examples/movielens.yaml", ["training.learning_rate=1.0"]),
    # the shipped MovieLens config (adam, normalized towers) does not collapse even at 1.0: plain dot products
    # under adagrad at 10 do, as the collapse demo does
    "movielens_adagrad10": ("examples/movielens.yaml", ["model.normalize=false", "model.temperature=1.0",
                                                         "training.optimizer=adagrad", "training.learning_rate=10"]),
    "movielens": ("examples/movielens.yaml", []),
}


def lineage(spec: ExperimentSpec, learning_rate: float, root: str) -> dict:
    """Attempts from `learning_rate` with the spec's backoff, as the experiment flow runs them."""
    backoff = spec.training.backoff
    started, results = time.perf_counter(), []
    for number in range(1, backoff.max_retries + 2):
        result = run_attempt(spec, learning_rate, f"{root}/attempt-{number}")
        results.append(result)
        next_rate = learning_rate * backoff.factor
        if result.status in ("succeeded", "failed") or number > backoff.max_retries or next_rate < backoff.min_learning_rate:
            break
        learning_rate = next_rate
    seconds = time.perf_counter() - started
    final = results[-1]
    recall = evaluate_model(spec, final.model_uri).model.get(10) if final.status == "succeeded" else None
    return {"attempts": len(results), "failed": sum(r.status != "succeeded" for r in results),
            "final_lr": final.learning_rate, "status": final.status, "seconds": seconds, "recall10": recall}


def measure(name: str, seed: int) -> dict:
    path, overrides = CASES[name]
    spec = load_spec(str(ROOT / path), [*overrides, f"training.seed={seed}", "validation.lr_probe=pick"])
    with tempfile.TemporaryDirectory() as plain, tempfile.TemporaryDirectory() as probed:
        without = lineage(spec, spec.training.learning_rate, plain)
        curve = run_probe(spec)
        start = curve.suggested_rate or spec.training.learning_rate
        with_probe = lineage(spec, start, probed)
    with_probe["seconds"] += curve.seconds
    return {"case": name, "seed": seed, "configured": spec.training.learning_rate, "probe_lr": curve.suggested_rate,
            "probe_s": curve.seconds, "reading": curve.reason, "without": without, "with": with_probe}


def show(row: dict) -> None:
    a, b = row["without"], row["with"]

    def recall(x):
        return "-" if x is None else f"{x:.4f}"

    print(f"{row['case']:14} seed {row['seed']}: lr {row['configured']:g} -> probe {row['probe_lr'] or 0:.3g} "
          f"({row['probe_s']:.1f}s) | without: {a['attempts']} attempts ({a['failed']} failed), final lr "
          f"{a['final_lr']:g} {a['status']}, {a['seconds']:.1f}s, R@10 {recall(a['recall10'])} | with probe: "
          f"{b['attempts']} attempts ({b['failed']} failed), final lr {b['final_lr']:.3g} {b['status']}, "
          f"{b['seconds']:.1f}s incl. probe, R@10 {recall(b['recall10'])}", flush=True)
    print(f"{'':14} probe read: {row['reading']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for name in args.only or list(CASES):
        for seed in range(42, 42 + args.seeds):
            rows.append(measure(name, seed))
            show(rows[-1])
    had = [r for r in rows if r["without"]["failed"]]
    avoided = [r for r in had if not r["with"]["failed"]]
    saved = sum(r["without"]["seconds"] - r["with"]["seconds"] for r in rows)
    print(f"\nprobe avoided every collapse-and-backoff in {len(avoided)} of {len(had)} runs that had one "
          f"({len(rows)} runs); failed attempts {sum(r['without']['failed'] for r in rows)} -> "
          f"{sum(r['with']['failed'] for r in rows)}; probe cost {sum(r['probe_s'] for r in rows):.1f}s in all, "
          f"net seconds saved {saved:.1f}")


if __name__ == "__main__":
    main()
