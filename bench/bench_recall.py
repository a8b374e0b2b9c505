"""Benchmark trainer.recall: speed against TFRS FactorizedTopK (Streaming), and peak memory.

(a) recall_at_k against the bare matrix product it is built on, side by side in one run: the same
    scores as one numpy matmul per 256 MiB batch of queries (the whole score matrix, written to
    memory), and the same tiled products in the same threads with no ranking; then against
    tfrs.metrics.FactorizedTopK(candidates=Streaming(k=max ks)) over a tf.data of candidate
    embeddings, fed (query, true candidate) embedding rows as a stock TFRS evaluate does: wall time
    of each, the ratio, and both recall values.
(b) peak RSS of recall_at_k at --rss-candidates, measured in a subprocess that never imports
    TensorFlow, beside the size of the embeddings themselves (run first, before this process
    imports TensorFlow, since a child's ru_maxrss starts from its parent's at fork).

Embeddings are synthetic (fixed seed): each query is the mean of its positives' embeddings plus
noise, so recall is far from 0 and 1 and a wrong ranking shows. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_recall.py            # 100k candidates x 20k queries; RSS at 1M
    .venv/bin/python bench/bench_recall.py --quick    # smoke run in seconds
    .venv/bin/python bench/bench_recall.py --large    # 1M candidates x 100k queries against the matmul
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from trainer.recall import DEFAULT_BATCH_SIZE, DEFAULT_TILE_BYTES, Queries, _tile_shape, recall_at_k, usable_cpus

MIB = 2**20
MATMUL_BATCH_BYTES = 256 * MIB


def make_case(
    n_candidates: int, n_queries: int, dim: int, positives: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, Queries]:
    """Candidate and query embeddings (float32) and queries with `positives` positives each."""
    rng = np.random.default_rng(seed)
    candidates = rng.standard_normal((n_candidates, dim), dtype=np.float32)
    if positives == 1:
        rows = rng.integers(n_candidates, size=(n_queries, 1))
    else:
        rows = np.stack([rng.choice(n_candidates, positives, replace=False) for _ in range(n_queries)])
    queries = candidates[rows].mean(axis=1) + noise * rng.standard_normal(
        (n_queries, dim), dtype=np.float32
    )
    return queries, candidates, Queries(np.arange(n_queries), list(rows), n_candidates=n_candidates)


def tfrs_recall(
    query_embeddings: np.ndarray,
    candidate_embeddings: np.ndarray,
    queries: Queries,
    ks: list[int],
    pair_batch: int,
    candidate_batch: int,
    by_id: bool,
) -> tuple[dict[int, float], float]:
    """Stock TFRS evaluation: FactorizedTopK over Streaming, one row per (query, positive) pair.

    by_id=False is the default TFRS evaluation (score-based: the positive's score, computed
    apart, against the retrieved scores); by_id=True matches retrieved candidate row ids.
    """
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    pair_query, positive_rows = queries.positives.pairs(0, queries.n_queries)
    candidates = tf.data.Dataset.from_tensor_slices(candidate_embeddings)
    if by_id:
        ids = tf.data.Dataset.range(len(candidate_embeddings))
        candidates = tf.data.Dataset.zip((ids, candidates))
    streaming = tfrs.layers.factorized_top_k.Streaming(k=max(ks)).index_from_dataset(
        candidates.batch(candidate_batch)
    )
    metric = tfrs.metrics.FactorizedTopK(candidates=streaming, ks=ks)
    pairs = tf.data.Dataset.from_tensor_slices(
        (query_embeddings[pair_query], candidate_embeddings[positive_rows], positive_rows)
    ).batch(pair_batch)

    @tf.function
    def update(query: tf.Tensor, true_candidate: tf.Tensor, true_id: tf.Tensor) -> None:
        metric.update_state(query, true_candidate, true_id if by_id else None)

    update(*next(iter(pairs)))  # trace outside the timing
    metric.reset_states()
    start = time.perf_counter()
    for batch in pairs:
        update(*batch)
    seconds = time.perf_counter() - start
    return {k: float(v) for k, v in zip(ks, metric.result())}, seconds


def bare_matmul_seconds(q: np.ndarray, c: np.ndarray) -> float:
    """Seconds for the whole score matrix, one numpy matmul per 256 MiB batch of queries into one
    buffer (touched once beforehand, so no page faults are timed)."""
    rows = max(1, min(len(q), MATMUL_BATCH_BYTES // (4 * len(c))))
    buffer = np.ones((rows, len(c)), dtype=np.float32)
    start = time.perf_counter()
    for first in range(0, len(q), rows):
        batch = q[first : first + rows]
        np.matmul(batch, c.T, out=buffer[: len(batch)])
    return time.perf_counter() - start


def tiled_matmul_seconds(q: np.ndarray, c: np.ndarray) -> float:
    """Seconds for the same products recall_at_k computes (its batches, tiles and threads), unranked."""
    rows, columns = _tile_shape(DEFAULT_BATCH_SIZE, DEFAULT_TILE_BYTES, len(c), len(q))
    starts = range(0, len(q), rows)
    threads = min(usable_cpus(), len(starts))

    def batch(first: int) -> None:
        tile = np.empty((rows, columns), dtype=np.float32)
        block = q[first : first + rows]
        for column in range(0, len(c), columns):
            part = c[column : column + columns]
            np.matmul(block, part.T, out=tile[: len(block), : len(part)])

    start = time.perf_counter()
    with threadpool_limits(1 if threads > 1 else None), ThreadPoolExecutor(threads) as pool:
        list(pool.map(batch, starts))
    return time.perf_counter() - start


def bench_speed(args: argparse.Namespace) -> None:
    print(
        f"(a) speed: {args.candidates} candidates x {args.queries} queries "
        f"({args.positives} positive(s) each), d={args.dim}, ks={args.ks}"
    )
    q, c, queries = make_case(
        args.candidates, args.queries, args.dim, args.positives, args.noise, args.seed
    )
    recall_at_k(q[:10], c[:1000], Queries(queries.buyer_ids[:10], [queries.positives[i] % 1000 for i in range(10)]),
                args.ks)  # load the compiled kernel outside the timing
    ours, times = None, {"matmul": [], "ours": [], "tiled": []}
    for _ in range(args.repeat):  # the arms take turns, so a noisy spell hits them alike
        times["matmul"].append(bare_matmul_seconds(q, c))
        start = time.perf_counter()
        ours = recall_at_k(q, c, queries, args.ks)
        times["ours"].append(time.perf_counter() - start)
        times["tiled"].append(tiled_matmul_seconds(q, c))
    matmul_seconds, ours_seconds, tiled_seconds = (float(np.median(times[arm])) for arm in ("matmul", "ours", "tiled"))
    print(f"  median of {args.repeat} turns each; every turn's ratio to the matmul: "
          + ", ".join(f"{o / m:.2f}x" for o, m in zip(times["ours"], times["matmul"])))
    print(f"  recall_at_k:                          {ours_seconds:8.2f} s")
    print(f"  the score matrix alone (numpy matmul): {matmul_seconds:7.2f} s  "
          f"ratio {ours_seconds / matmul_seconds:.2f}x "
          "(goal <= 1.5x)")
    print(f"  the same tiles alone, same threads:    {tiled_seconds:7.2f} s  ratio {ours_seconds / tiled_seconds:.2f}x")
    if args.skip_tfrs:
        return
    theirs, theirs_seconds = tfrs_recall(
        q, c, queries, args.ks, args.pair_batch, args.candidate_batch, args.tfrs_ids
    )
    mode = "id-based" if args.tfrs_ids else "score-based"
    print(
        f"  TFRS FactorizedTopK(Streaming), {mode}, candidate batch {args.candidate_batch}, "
        f"pair batch {args.pair_batch}: {theirs_seconds:.2f} s"
    )
    print(f"  ratio TFRS / recall_at_k:    {theirs_seconds / ours_seconds:8.1f}x")
    print("  k      recall_at_k   TFRS        |diff|")
    for k in args.ks:
        print(f"  {k:<6} {ours[k]:.6f}      {theirs[k]:.6f}    {abs(ours[k] - theirs[k]):.2e}")
    print(f"  (one pair is 1/{queries.n_pairs} = {1 / queries.n_pairs:.1e})")
    if not args.tfrs_ids:
        print(
            "  score-based TFRS can lose a pair at rank k-1: the positive's own copy among the\n"
            "  retrieved scores, summed in another order, may come out a few ulps higher than the\n"
            "  positive's score and count as a better candidate. --tfrs-ids compares ids instead."
        )


def rss_child(args: argparse.Namespace) -> None:
    """Runs in the subprocess: builds the case, runs recall_at_k, prints memory figures as JSON."""
    q, c, queries = make_case(
        args.rss_candidates, args.queries, args.dim, args.positives, args.noise, args.seed
    )
    before = _vm_hwm_kib()
    start = time.perf_counter()
    recall = recall_at_k(q, c, queries, args.ks)
    seconds = time.perf_counter() - start
    figures = {
        "embeddings_bytes": q.nbytes + c.nbytes,
        "hwm_before_kib": before,
        "hwm_after_kib": _vm_hwm_kib(),
        "seconds": seconds,
        "recall": recall,
    }
    print(json.dumps(figures))


def bench_rss(args: argparse.Namespace) -> None:
    print(
        f"(b) peak memory: {args.rss_candidates} candidates x {args.queries} queries, d={args.dim} "
        "(subprocess without TensorFlow)"
    )
    command = [sys.executable, __file__, "--rss-child", *_forwarded(args)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    max_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  embeddings (queries + candidates):   {figures['embeddings_bytes'] / MIB:8.0f} MiB")
    print(f"  VmHWM after building the data:       {figures['hwm_before_kib'] / 1024:8.0f} MiB")
    print(f"  VmHWM after recall_at_k:             {figures['hwm_after_kib'] / 1024:8.0f} MiB")
    print(f"  ru_maxrss of the subprocess:         {max_rss_mib:8.0f} MiB  (goal <= 2048 MiB)")
    print(f"  recall_at_k time: {figures['seconds']:.1f} s; recall: {figures['recall']}")


def _vm_hwm_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--rss-candidates={args.rss_candidates}",
        f"--queries={args.queries}",
        f"--dim={args.dim}",
        f"--positives={args.positives}",
        f"--noise={args.noise}",
        f"--seed={args.seed}",
        f"--ks={','.join(map(str, args.ks))}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000, help="unique candidates for (a)")
    parser.add_argument("--rss-candidates", type=int, default=1_000_000, help="candidates for (b)")
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--positives", type=int, default=1, help="test products per query")
    parser.add_argument("--noise", type=float, default=1.0, help="query noise around its positives")
    parser.add_argument("--ks", type=lambda s: [int(k) for k in s.split(",")], default=[5, 10, 50, 100])
    parser.add_argument("--pair-batch", type=int, default=4096, help="TFRS evaluate batch size")
    parser.add_argument("--candidate-batch", type=int, default=128, help="TFRS candidate dataset batch")
    parser.add_argument("--tfrs-ids", action="store_true", help="id-based TFRS evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="turns of the speed arms (medians printed)")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--large", action="store_true",
                        help="1M candidates x 100k queries, against the matmul only (no TFRS, no RSS run)")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-tfrs", action="store_true", help="only recall_at_k against the bare matmul")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args)
        return
    if args.quick:
        args.candidates, args.rss_candidates, args.queries = 5_000, 50_000, 1_000
    if args.large:
        args.candidates, args.queries, args.skip_tfrs, args.skip_rss, args.repeat = 1_000_000, 100_000, True, True, 1
    if not args.skip_rss:  # first: the subprocess must not fork from a process holding TensorFlow
        bench_rss(args)
    if not args.skip_speed:
        bench_speed(args)


if __name__ == "__main__":
    main()
