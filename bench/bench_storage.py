"""What gs:// costs, measured against a GCS emulator on loopback (gcp-storage-emulator, in memory).

1. Per epoch, in one attempt on a gs:// workdir: seconds TensorFlow takes to write the checkpoint to
   the local staging directory, and seconds the push of that epoch to the bucket takes (checkpoint
   files, the index, epochs.json, TensorBoard events); the ratio push / local checkpoint.
2. `towerflow run` wall time of the same experiment with data, config and artifacts on local paths
   and in the bucket.

    .venv/bin/python bench/bench_storage.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BUCKET = "bench"
BIN = Path(sys.executable).parent
DATA = "synthetic-retail://{}?customers=2000&products=200&transactions=60000&clusters=4&seed=3"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_emulator() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
         "--default-bucket", BUCKET, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the emulator did not start")


def spec_dict(name: str, epochs: int, transactions: str, products: str, artifacts: str) -> dict:
    return {
        "name": name, "artifacts": artifacts,
        "data": {"transactions": transactions, "products": products},
        "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 16}],
        "product_features": [{"column": "product_id", "type": "id", "embedding_dim": 16, "is_primary_id": True},
                             {"column": "category", "type": "categorical", "embedding_dim": 4}],
        "model": {"output_dim": 16, "buyer_layers": [{"units": 16}], "product_layers": [{"units": 16}]},
        "training": {"learning_rate": 0.05, "epochs": epochs, "batch_size": 512},
        "evaluation": {"ks": [10, 50]},
    }


def sync_cost(epochs: int) -> None:
    """Part 1: local checkpoint write vs push to the bucket, per epoch of one in-process attempt."""
    from trainer import attempt, storage
    from trainer.spec import spec_from_dict

    timings: dict[str, list[float]] = {"checkpoint": [], "push": []}

    def timed(key, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                timings[key].append(time.perf_counter() - started)
        return wrapper

    attempt._Checkpoints.save = timed("checkpoint", attempt._Checkpoints.save)
    storage.Mirror.push = timed("push", storage.Mirror.push)
    raw = spec_dict("bench-sync", epochs, DATA.format("transactions"), DATA.format("products"), f"gs://{BUCKET}/sync")
    spec = spec_from_dict(raw, source="bench")
    result = attempt.run_attempt(spec, 0.05, f"gs://{BUCKET}/sync/attempt-1")
    pushes = timings["push"][:len(timings["checkpoint"])]  # the per-epoch pushes; the last one carries the export
    local, push = statistics.median(timings["checkpoint"]), statistics.median(pushes)
    print(f"1. one attempt, {result.epochs_run} epochs on gs:// (median per epoch): local checkpoint "
          f"{local * 1000:.1f} ms, push to the bucket {push * 1000:.1f} ms, ratio push/local {push / local:.1f}; "
          f"final push with the export {timings['push'][-1] * 1000:.0f} ms")


def run_wall(config: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "towerflow"), "run", config], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    return time.monotonic() - started


def run_cost(epochs: int, endpoint: str) -> None:
    """Part 2: `towerflow run`, everything local against everything in the bucket."""
    from trainer import storage
    from trainer.datasets import load_builtin

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        tables = {}
        for table, name in (("transactions", "tx.csv.gz"), ("products", "products.parquet")):
            frame = load_builtin(DATA.format(table))
            path = local / name
            frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
            storage.write_bytes(f"gs://{BUCKET}/{name}", path.read_bytes())
            tables[table] = name
        configs = {}
        for where, root in (("local", str(local)), ("gs://", f"gs://{BUCKET}")):
            spec = spec_dict(f"bench-run-{where[:2]}", epochs, f"{root}/{tables['transactions']}",
                             f"{root}/{tables['products']}", f"{root}/artifacts")
            configs[where] = f"{root}/configs/run.yaml"
            storage.write_bytes(configs[where], yaml.safe_dump(spec).encode())
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "TOWERFLOW_DATABASE_URL")}
        env |= {"TOWERFLOW_HOME": str(local / "home"), "PREFECT_HOME": str(local / "prefect"),
                "STORAGE_EMULATOR_HOST": endpoint}
        walls = {where: run_wall(config, env) for where, config in configs.items()}
    print(f"2. towerflow run, {epochs} epochs: local paths {walls['local']:.1f} s, gs:// {walls['gs://']:.1f} s "
          f"({walls['gs://'] - walls['local']:+.1f} s, ratio {walls['gs://'] / walls['local']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    emulator, endpoint = start_emulator()
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    try:
        sync_cost(args.epochs)
        run_cost(args.epochs, endpoint)
    finally:
        os.killpg(emulator.pid, signal.SIGTERM)
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
