"""`python -m trainer --config C --learning-rate X --out DIR [--evaluate]`: one attempt without Prefect.

Prints one line per epoch, then the verdict (and recall with --evaluate); result.json (and
evaluation.json) land in DIR. Exit status 0 when the attempt succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from trainer.cluster import cluster_from_env
from trainer.errors import ExpectedError
from trainer.results import EpochMetrics
from trainer.spec import SpecError, load_spec
from trainer.storage import join, write_bytes


def _print_epoch(m: EpochMetrics) -> None:
    val = f" val {m.val_loss:.4f}" if m.val_loss is not None else ""
    print(
        f"epoch {m.epoch}: loss/example {m.loss:.4f} (uniform {m.uniform_loss:.4f}){val}; "
        f"grad norm buyer {m.buyer_grad_norm_mean:.3g} (max {m.buyer_grad_norm_max:.3g}), "
        f"product {m.product_grad_norm_mean:.3g} (max {m.product_grad_norm_max:.3g}); "
        f"non-finite steps {m.nonfinite_steps}/{m.steps}; {m.seconds:.1f}s",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="experiment spec (YAML/JSON, local or gs://)")
    parser.add_argument("--learning-rate", type=float, help="default: the spec's training.learning_rate")
    parser.add_argument("--out", required=True, help="the attempt's workdir (local or gs://)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a spec field")
    parser.add_argument("--evaluate", action="store_true", help="compute recall@k after a successful attempt")
    args = parser.parse_args(argv)

    try:
        spec = load_spec(args.config, args.set)
    except SpecError as error:
        print(f"invalid config: {error}", file=sys.stderr)
        return 1
    learning_rate = args.learning_rate if args.learning_rate is not None else spec.training.learning_rate
    if spec.data.streaming and cluster_from_env().workers == 1:  # the pass first, while this process is small
        from trainer.scanned import ensure_scanned, workdir_scan

        try:
            ensure_scanned(spec, workdir_scan(args.out))
        except ExpectedError as error:
            print(error, file=sys.stderr)
            return 1
    from trainer.attempt import run_attempt  # imports TensorFlow

    print(f"{spec.name}: attempt at learning rate {learning_rate:g} in {args.out}", flush=True)
    try:
        result = run_attempt(spec, learning_rate, args.out, on_epoch=_print_epoch)
    except ExpectedError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{result.status}: {result.reason}", flush=True)
    if result.status != "succeeded":
        return 1
    print(f"model: {result.model_uri}")
    if args.evaluate and cluster_from_env().is_chief:  # one evaluation, by the worker that wrote the export
        from trainer.evaluation import evaluate_model

        evaluation = evaluate_model(spec, result.model_uri)
        write_bytes(join(args.out, "evaluation.json"), evaluation.model_dump_json(indent=2).encode())
        print(f"{evaluation.n_queries} queries, {evaluation.n_pairs} pairs, {evaluation.n_candidates} candidates")
        for k in sorted(evaluation.model):
            print(f"recall@{k}: model {evaluation.model[k]:.4f}  popularity {evaluation.popularity[k]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
