"""recall@k scored and ranked on a TensorFlow device: the GPU, when evaluation finds one.

The same queries, pessimistic ties and hits as trainer.recall (its batch bookkeeping and rank counting
are shared); only scoring and the top-k selection move: one matmul and one `tf.math.top_k` per batch of
queries on the device, so only each row's max(ks) + 1 highest scores cross back to the host. TF32 is
switched off meanwhile, so GPU scores are float32 products like the CPU's (equal within float rounding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from trainer.recall import Queries, batch_pairs, checked_embeddings, hits_at, ranking_depth

DEVICE_BATCH_BYTES = 2**30
"""Cap on one batch's score matrix on the device (1 GiB: 268 queries at a million candidates)."""


def gpu_device() -> str | None:
    """The first visible GPU as a TensorFlow device name, or None."""
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else None


@contextlib.contextmanager
def _float32_products() -> Iterator[None]:
    enabled = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(enabled)


@tf.function(reduce_retracing=True)
def _rank(queries, candidates, pair_index, exclude_index, top):
    """Each row's `top` highest scores, with excluded candidates at -inf, and the pairs' scores."""
    scores = tf.matmul(queries, candidates, transpose_b=True)
    positive_scores = tf.gather_nd(scores, pair_index)
    removed = tf.fill(tf.shape(exclude_index)[:1], tf.constant(-np.inf, tf.float32))
    scores = tf.tensor_scatter_nd_update(scores, exclude_index, removed)
    return tf.math.top_k(scores, k=top, sorted=False).values, positive_scores


def recall_on_device(
    query_embeddings: np.ndarray,
    candidate_embeddings: np.ndarray,
    queries: Queries,
    ks: Sequence[int],
    device: str,
    max_batch_bytes: int = DEVICE_BATCH_BYTES,
) -> dict[int, float]:
    """recall@k as trainer.recall.recall_at_k computes it, scored and ranked on `device` ("/GPU:0")."""
    queries_f, candidates_f = checked_embeddings(query_embeddings, candidate_embeddings, queries)
    n_candidates = len(candidates_f)
    ks_array, top = ranking_depth(ks, queries, n_candidates)
    rows = max(1, min(queries.n_queries, max_batch_bytes // (4 * n_candidates)))
    hits = np.zeros(len(ks_array), dtype=np.int64)
    with _float32_products(), tf.device(device):
        candidates = tf.constant(candidates_f)
        for start in range(0, queries.n_queries, rows):
            stop = min(start + rows, queries.n_queries)
            pair_rows, pair_cols, exclude_rows, exclude_cols = batch_pairs(queries, start, stop, n_candidates)
            head, positive_scores = _rank(
                tf.constant(queries_f[start:stop]), candidates,
                tf.constant(np.stack([pair_rows, pair_cols], axis=1)),
                tf.constant(np.stack([exclude_rows, exclude_cols], axis=1).reshape(-1, 2)),
                tf.constant(top),
            )
            hits += hits_at(head.numpy(), pair_rows, positive_scores.numpy(), ks_array)
    return {int(k): float(h) / queries.n_pairs for k, h in zip(ks_array, hits)}
