"""What gathering in-batch candidates across replicas costs per training step.

Two logical CPU devices under MirroredStrategy, examples/movielens.yaml's towers, data and global
batch (1024: 512 per replica); the same model trained with cross-replica negatives (every query
against the global batch's candidates, towerflow's default) and without (each replica's own half,
TFRS's default). Rounds alternate the two after a warm-up that traces both; the best round of each
is compared. Prints steps/s of each and the ratio. Asserts nothing.

    .venv/bin/python bench/bench_cross_replica.py                 # 3 rounds of 30 steps each
    .venv/bin/python bench/bench_cross_replica.py --steps 10 --rounds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "movielens.yaml")
    parser.add_argument("--steps", type=int, default=30, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    cpu = tf.config.list_physical_devices("CPU")[0]  # before any TensorFlow op
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tf_keras

    from trainer.data import load_experiment_data
    from trainer.model import build_model, build_optimizer, make_dataset, model_columns
    from trainer.spec import load_spec

    spec = load_spec(args.config)
    training = spec.training
    data = load_experiment_data(spec)
    dataset = make_dataset(data.train, model_columns(spec), training.batch_size, shuffle_seed=training.seed).repeat()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    models = {}
    for gather in (True, False):
        with strategy.scope():
            tf_keras.utils.set_random_seed(training.seed)
            model = build_model(spec, data.train)
            model.cross_replica_negatives = gather
            model.compile(optimizer=build_optimizer(training, training.learning_rate))
        model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # trace
        models[gather] = model

    best = dict.fromkeys(models, 0.0)
    for _ in range(args.rounds):
        for gather, model in models.items():
            start = time.perf_counter()
            model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
            best[gather] = max(best[gather], args.steps / (time.perf_counter() - start))

    per_replica = training.batch_size // strategy.num_replicas_in_sync
    print(f"{args.config.name}: global batch {training.batch_size} on 2 logical CPU devices ({per_replica} per replica); "
          f"best of {args.rounds} rounds of {args.steps} steps")
    print(f"  cross-replica negatives ({training.batch_size} per query): {best[True]:.2f} steps/s")
    print(f"  per-replica negatives   ({per_replica} per query):  {best[False]:.2f} steps/s")
    print(f"  ratio (gather / per-replica): {best[True] / best[False]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
