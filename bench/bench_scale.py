"""Benchmark how one attempt (1 epoch + evaluation, `python -m trainer`) grows with the transaction log.

For each size, a Parquet file of retail-like transactions is written in chunks (customer ids, product
ids with a Zipf popularity tail, a timestamp; about 15 rows per customer and 60 per product, as the
scaling issue's 3M-row case: 200k customers, 50k products), then one attempt trains on it in a
subprocess, split by time (a cutoff: the last tenth of the year is test), once with the table in memory and
once streamed (`data.streaming: true`, trainer.stream). Printed per size and path: the attempt's peak RSS (the larger of
its process's own ru_maxrss, from wait4, and its process tree's sampled total: the streamed pass runs in a child
process), bytes of peak RSS per row, wall seconds, and training examples per second (from result.json).
The throughput ratio is the streamed path's against the in-memory path's at the same size, in the same run. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_scale.py                        # 1M and 3M rows, in memory and streamed
    .venv/bin/python bench/bench_scale.py --rows 3e7 --paths stream   # 30M rows, streamed only
    .venv/bin/python bench/bench_scale.py --rows 1e6,3e6,1e7     # any sizes
    .venv/bin/python bench/bench_scale.py --rows 1e6 --stages    # where the memory goes, stage by stage
    .venv/bin/python bench/bench_scale.py --rows 1e7 --paths stream --stages   # the same, streamed
    .venv/bin/python bench/bench_scale.py --record bench/scale_results.json   # keep the figures for the plot
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from scale_plot import record

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
CHUNK_ROWS = 1_000_000
ROWS_PER_CUSTOMER, ROWS_PER_PRODUCT = 15, 60


def write_transactions(path: Path, rows: int, seed: int) -> None:
    """`rows` transactions in Parquet, written CHUNK_ROWS at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    customers, products = max(1, rows // ROWS_PER_CUSTOMER), max(1, rows // ROWS_PER_PRODUCT)
    weights = 1.0 / np.arange(1, products + 1)
    cumulative = np.cumsum(weights / weights.sum())
    schema = pa.schema([("customer_id", pa.string()), ("product_id", pa.string()), ("timestamp", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            customer = rng.integers(customers, size=n)
            # a customer's taste: products near a customer-specific offset are likelier (a learnable signal)
            rank = np.searchsorted(cumulative, rng.random(n))
            product = np.where(rng.random(n) < 0.5, (customer * 7919 + rank) % products, rank)
            table = pa.table({
                "customer_id": pa.array(np.char.add("c", customer.astype(str))),
                "product_id": pa.array(np.char.add("p", product.astype(str))),
                "timestamp": pa.array(rng.integers(0, 365 * 86400, size=n)),
            }, schema=schema)
            writer.write_table(table)


YEAR = 365 * 86400
CUTOFF = int(0.9 * YEAR)  # timestamps are uniform over a year: the last 10% of it is the test split


def config(path: Path, streaming: bool = False) -> dict:
    return {
        "name": f"scale-{path.stem}",
        "data": {"transactions": str(path), "streaming": streaming,
                 "split": {"strategy": "time", "column": "timestamp", "cutoff": CUTOFF}},
        "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 32}],
        "product_features": [{"column": "product_id", "type": "id", "embedding_dim": 32}],
        "model": {"output_dim": 32, "buyer_layers": [{"type": "dense", "units": 32}],
                  "product_layers": [{"type": "dense", "units": 32}]},
        "training": {"epochs": 1, "batch_size": 4096, "learning_rate": 0.05},
        "evaluation": {"ks": [10, 100]},
    }


def tree_rss(root: int) -> int:
    """Resident bytes of process `root` and all its descendants now (from /proc; 0 once it is gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) if entry.name.isdigit() else None
        except (OSError, ValueError, IndexError):
            continue
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total


class TreePeak:
    """The highest total resident memory of a process and its descendants, sampled every 0.2 s in a thread
    (the attempt's streaming pass runs in a child process of its own while the attempt waits)."""

    def __init__(self, root: int):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(root,), daemon=True)
        self._thread.start()

    def _sample(self, root: int) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss(root))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_attempt(data: Path, workdir: Path, streaming: bool) -> dict:
    """One attempt in a subprocess: its peak RSS, wall seconds and training examples per second. The peak
    is the larger of the process's own (ru_maxrss from wait4, which covers each process it waited for
    one at a time) and the sampled peak of its process tree together."""
    spec = workdir / "spec.yaml"
    spec.write_text(yaml.safe_dump(config(data, streaming)))
    out = workdir / f"attempt-{'stream' if streaming else 'memory'}"
    command = [sys.executable, "-m", "trainer", "--config", str(spec), "--out", str(out), "--evaluate"]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tree = TreePeak(child.pid)
    output = child.stdout.read()
    tree_peak = tree.stop()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the attempt failed:\n{output[-3000:]}")
    [epoch] = json.loads((out / "result.json").read_text())["epochs"]
    throughput = epoch["examples"] / epoch["seconds"]
    return {"peak_rss": max(usage.ru_maxrss * 1024, tree_peak), "seconds": seconds, "examples_per_s": throughput}


def rss_mib() -> tuple[float, float]:
    """This process's resident set and its peak so far (VmRSS, VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))


class PeakSampler:
    """The highest resident set seen since the last `take()`, sampled every 20 ms in a thread
    (VmHWM only ever rises, so it cannot say what one later stage peaked at)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._lock = threading.Lock()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            resident = rss_mib()[0]
            with self._lock:
                self.peak = max(self.peak, resident)
            time.sleep(0.02)

    def take(self) -> tuple[float, float]:
        """(resident now, peak since the last take), in MiB; the next stage's peak starts here."""
        with self._lock:
            now = rss_mib()[0]
            peak, self.peak = max(self.peak, now), now
        return now, peak


def stages(data: Path, workdir: Path, streaming: bool) -> None:
    """In this process: resident memory after each stage of one attempt and its evaluation, and the
    peak within each stage, with the table in memory or streamed."""
    sampler = PeakSampler()

    def report(stage: str) -> None:
        print("| %s | %.0f | %.0f |" % (stage, *sampler.take()), flush=True)

    print("| stage | RSS MiB after | peak MiB during |\n|---|---|---|")
    report("Parquet written, nothing imported")
    import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
    import tensorflow  # noqa: F401

    report("TensorFlow imported")
    from trainer.attempt import export_model, run_attempt
    from trainer.datacheck import check_loaded
    from trainer.data import load_experiment_data
    from trainer.evaluation import evaluate_model
    from trainer.model import build_model, build_optimizer, model_columns
    from trainer.spec import spec_from_dict
    from trainer.stream_input import training_batches

    spec = spec_from_dict(config(data, streaming))
    loaded = load_experiment_data(spec)
    report("data loaded and split" + (" (the streaming pass)" if streaming else ""))
    model = build_model(spec, loaded.stats, loaded.candidates)
    report("model built")
    dataset = training_batches(loaded, model_columns(spec), 4096, shuffle_seed=1, preprocess=model.preprocess)
    report("training dataset made" + ("" if streaming else " (lookups done)"))
    for _ in dataset.take(20):
        pass
    report("20 batches read")
    check_loaded(spec, loaded)
    report("data check")
    model.compile(optimizer=build_optimizer(spec.training, spec.training.learning_rate))
    model.fit(dataset, epochs=1, verbose=0)
    report("1 epoch (model.fit, no checkpoints)")
    export_model(model, spec, loaded.candidates, str(workdir / "export"))
    report("export_model")
    del loaded, model, dataset
    report("those dropped")
    result = run_attempt(spec, spec.training.learning_rate, str(workdir / "attempt"))
    report(f"run_attempt: load, 1 epoch, export ({result.status})")
    evaluate_model(spec, result.model_uri)
    report("evaluate_model: reload, recall@k")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e6,3e6", help="comma-separated sizes (1e6 = a million rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paths", default="memory,stream",
                        help="memory (the table in memory), stream (data.streaming: true), or both, in that order")
    parser.add_argument("--stages", action="store_true",
                        help="memory at each stage of an attempt, first size and first path only")
    parser.add_argument("--record", type=Path, metavar="JSON", help="keep each size's figures in this file "
                        "(bench/scale_results.json; bench/scale_plot.py draws it)")
    args = parser.parse_args()
    sizes = [int(float(size)) for size in args.rows.split(",")]
    if args.stages:
        with tempfile.TemporaryDirectory(prefix="towerflow-scale-") as scratch:
            data = Path(scratch) / f"tx-{sizes[0]}.parquet"
            write_transactions(data, sizes[0], args.seed)
            stages(data, Path(scratch), streaming=args.paths.split(",")[0] == "stream")
        return
    paths = args.paths.split(",")
    print("| rows | path | Parquet MiB | peak RSS GiB | bytes/row | wall s | train examples/s | vs memory, same rows |")
    print("|---|---|---|---|---|---|---|---|")
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="towerflow-scale-") as scratch:
            data = Path(scratch) / f"tx-{rows}.parquet"
            write_transactions(data, rows, args.seed)
            baseline = None
            for path in paths:
                figures = run_attempt(data, Path(scratch), streaming=path == "stream")
                baseline = baseline or (figures if path == "memory" else None)
                ratio = f"{figures['examples_per_s'] / baseline['examples_per_s']:.2f}x" if baseline else "-"
                print(f"| {rows:,} | {path} | {data.stat().st_size / 2**20:.0f} | {figures['peak_rss'] / GIB:.2f} | "
                      f"{figures['peak_rss'] / rows:.0f} | {figures['seconds']:.0f} | {figures['examples_per_s']:,.0f} | "
                      f"{ratio} |", flush=True)
                if args.record:
                    record(args.record, {"rows": rows, "path": path, "parquet_mib": round(data.stat().st_size / 2**20, 1),
                                         "peak_rss_gib": round(figures["peak_rss"] / GIB, 3),
                                         "seconds": round(figures["seconds"], 1),
                                         "examples_per_s": round(figures["examples_per_s"]),
                                         "measured": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()})

if __name__ == "__main__":
    main()
