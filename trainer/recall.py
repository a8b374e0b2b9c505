"""recall@k over unique candidates, and the popularity baseline (numpy only, no TensorFlow).

A query is one test buyer; its positives are the candidate rows of the products it bought in the
test split. recall@k is the share of unique test (buyer, product) pairs whose product ranks within
the buyer's top k over *all* candidates, one row per unique product id (ranking against
transaction rows instead lets popular products crowd out everything: the post-mortem's bug).

Ranking is exact brute force, batched over queries: one batch holds a (queries x candidates)
float32 score matrix, reused across batches, so peak memory is that buffer plus the embeddings.
Ties are pessimistic: a positive tied with other candidates ranks after all of them, so a
collapsed model that scores everything alike gets recall ~0, never 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_BATCH_BYTES = 256 * 2**20
"""Default cap on one batch's score matrix (256 MiB): 671 queries per batch at 100k candidates."""


@dataclass(frozen=True)
class Queries:
    """Evaluation queries: one per test buyer, with candidate row indices.

    positives[i]: candidate rows of buyer_ids[i]'s test products (unique).
    exclude[i]: candidate rows removed from buyer_ids[i]'s ranking (their training products);
    a row that is also one of the buyer's positives stays ranked.
    n_candidates: number of candidates the indices refer to, when known; recall_at_k then
    checks the candidate embeddings have exactly that many rows.
    """

    buyer_ids: np.ndarray
    positives: list[np.ndarray]
    exclude: list[np.ndarray] | None = None
    n_candidates: int | None = None

    def __post_init__(self) -> None:
        n = len(self.buyer_ids)
        object.__setattr__(self, "positives", _index_arrays(self.positives, "positives", n))
        if self.exclude is not None:
            object.__setattr__(self, "exclude", _index_arrays(self.exclude, "exclude", n))

    @property
    def n_queries(self) -> int:
        """Number of queries (test buyers)."""
        return len(self.buyer_ids)

    @property
    def n_pairs(self) -> int:
        """Number of unique test (buyer, product) pairs: recall's denominator."""
        return sum(len(p) for p in self.positives)


def build_queries(
    test: pd.DataFrame,
    buyer_column: str,
    product_column: str,
    candidate_ids: np.ndarray,
    train: pd.DataFrame | None = None,
) -> Queries:
    """One query per unique test buyer (sorted by id), positives mapped to candidate rows.

    candidate_ids must be unique (one row per product); every test product must be among them.
    With train given, exclude holds each buyer's training products that are candidates.
    """
    import pandas as pd

    index = pd.Index(candidate_ids)
    if not index.is_unique:
        duplicated = index[index.duplicated()].unique()
        raise ValueError(
            f"candidate_ids has {len(duplicated)} duplicated ids (e.g. {list(duplicated[:3])}): "
            "candidates must be one row per unique product id, not transaction rows"
        )
    pairs = _columns(test, "test", buyer_column, product_column).drop_duplicates()
    rows = index.get_indexer(pairs[product_column])
    missing = rows < 0
    if missing.any():
        unknown = pairs[product_column][missing].unique()
        raise ValueError(
            f"test column '{product_column}': {int(missing.sum())} pairs name products that are "
            f"not candidates (e.g. {list(unknown[:3])})"
        )
    codes, buyer_ids = pd.factorize(pairs[buyer_column], sort=True)
    positives = _group(codes, rows, len(buyer_ids))

    exclude = None
    if train is not None:
        seen = _columns(train, "train", buyer_column, product_column)
        seen_codes = pd.Index(buyer_ids).get_indexer(seen[buyer_column])
        seen_rows = index.get_indexer(seen[product_column])
        known = (seen_codes >= 0) & (seen_rows >= 0)
        exclude = _group(seen_codes[known], seen_rows[known], len(buyer_ids))
    return Queries(np.asarray(buyer_ids), positives, exclude, n_candidates=len(index))


def recall_at_k(
    query_embeddings: np.ndarray,
    candidate_embeddings: np.ndarray,
    queries: Queries,
    ks: Sequence[int],
    batch_size: int = 1024,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> dict[int, float]:
    """recall@k of a model: query i (row i of query_embeddings) scores candidate j by their dot product.

    Queries are scored batch_size at a time, fewer when a batch's float32 score matrix would exceed
    max_batch_bytes. Pass float32 C-contiguous embeddings to avoid copies.
    """
    queries_f = _embeddings(query_embeddings, "query_embeddings")
    candidates_f = _embeddings(candidate_embeddings, "candidate_embeddings")
    if queries_f.shape[1] != candidates_f.shape[1]:
        raise ValueError(
            f"query_embeddings have dimension {queries_f.shape[1]} but candidate_embeddings "
            f"have {candidates_f.shape[1]}"
        )
    if len(queries_f) != queries.n_queries:
        raise ValueError(
            f"query_embeddings have {len(queries_f)} rows for {queries.n_queries} queries"
        )
    n_candidates = len(candidates_f)
    rows = _batch_rows(batch_size, max_batch_bytes, n_candidates, queries.n_queries)

    def score(start: int, stop: int, out: np.ndarray) -> None:
        np.matmul(queries_f[start:stop], candidates_f.T, out=out)

    return _recall(score, n_candidates, queries, ks, rows)


def popularity_scores(train_product_ids: Sequence, candidate_ids: np.ndarray) -> np.ndarray:
    """Training purchase count of each candidate (float32); ids that are not candidates are ignored."""
    import pandas as pd

    rows = pd.Index(candidate_ids).get_indexer(pd.Index(train_product_ids))
    counts = np.bincount(rows[rows >= 0], minlength=len(candidate_ids))
    return counts.astype(np.float32)


def popularity_recall(
    scores: np.ndarray,
    queries: Queries,
    ks: Sequence[int],
    batch_size: int = 1024,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> dict[int, float]:
    """recall@k of ranking every buyer's candidates by the same scores (e.g. popularity_scores)."""
    scores_f = np.asarray(scores, dtype=np.float32)
    if scores_f.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per candidate), got shape {scores_f.shape}")
    _check_finite(scores_f, "scores")
    n_candidates = len(scores_f)
    rows = _batch_rows(batch_size, max_batch_bytes, n_candidates, queries.n_queries)

    def score(start: int, stop: int, out: np.ndarray) -> None:
        out[:] = scores_f

    return _recall(score, n_candidates, queries, ks, rows)


def _recall(
    score: Callable[[int, int, np.ndarray], None],
    n_candidates: int,
    queries: Queries,
    ks: Sequence[int],
    rows: int,
) -> dict[int, float]:
    """Shared ranking loop: score(start, stop, out) fills out with the batch's scores."""
    ks_array = _ks(ks)
    _check_queries(queries, n_candidates)
    if queries.n_pairs == 0:
        raise ValueError("queries have no test pairs: recall is undefined")
    buffer = np.empty((rows, n_candidates), dtype=np.float32)
    hits = np.zeros(len(ks_array), dtype=np.int64)
    for start in range(0, queries.n_queries, rows):
        stop = min(start + rows, queries.n_queries)
        batch = buffer[: stop - start]
        score(start, stop, batch)
        hits += _batch_hits(batch, queries, start, stop, ks_array)
    return {int(k): float(h) / queries.n_pairs for k, h in zip(ks_array, hits)}


def _batch_hits(
    scores: np.ndarray, queries: Queries, start: int, stop: int, ks: np.ndarray
) -> np.ndarray:
    """Hits at each k for queries start..stop; scores (one row per query) is overwritten."""
    positives = queries.positives[start:stop]
    pair_rows = np.repeat(np.arange(stop - start), [len(p) for p in positives])
    pair_cols = np.concatenate(positives)
    positive_scores = scores[pair_rows, pair_cols]
    if queries.exclude is not None:
        exclude = queries.exclude[start:stop]
        exclude_rows = np.repeat(np.arange(stop - start), [len(e) for e in exclude])
        scores[exclude_rows, np.concatenate(exclude)] = -np.inf
        scores[pair_rows, pair_cols] = positive_scores
    # Only ranks below max(ks) matter: keep each row's max(ks) + 1 highest scores. A positive
    # outside them, or tied with the lowest of them, ranks at max(ks) or worse: a miss at every k.
    n_candidates = scores.shape[1]
    top = min(int(ks.max()) + 1, n_candidates)
    if top < n_candidates:
        scores.partition(n_candidates - top, axis=1)
    head = scores[:, n_candidates - top :]
    # Pessimistic 0-based rank: every other candidate scoring >= the positive ranks before it.
    ranks = np.count_nonzero(head[pair_rows] >= positive_scores[:, None], axis=1) - 1
    return np.count_nonzero(ranks[:, None] < ks[None, :], axis=0)


def _index_arrays(arrays: Sequence, name: str, n_queries: int) -> list[np.ndarray]:
    """arrays as a list of 1-D int64 arrays, one per query."""
    if len(arrays) != n_queries:
        raise ValueError(f"Queries: {len(arrays)} {name} arrays for {n_queries} buyer_ids")
    result = []
    for i, rows in enumerate(arrays):
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"Queries.{name}[{i}] must be 1-D candidate indices, got {rows!r}")
        result.append(rows.astype(np.int64, copy=False))
    return result


def _columns(frame: pd.DataFrame, name: str, *columns: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r} (columns: {list(frame.columns)})")
    return frame[list(columns)]


def _group(codes: np.ndarray, rows: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Unique sorted rows per group code 0..n_groups-1."""
    pairs = np.unique(np.stack([codes, rows]).astype(np.int64), axis=1)
    bounds = np.searchsorted(pairs[0], np.arange(1, n_groups))
    return np.split(pairs[1], bounds)


def _embeddings(array: np.ndarray, name: str) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x dimension), got shape {array.shape}")
    _check_finite(array, name)
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    bad = array.size - np.count_nonzero(np.isfinite(array))
    if bad:
        raise ValueError(f"{name} contain {bad} non-finite values (NaN or inf)")


def _ks(ks: Sequence[int]) -> np.ndarray:
    values = list(ks)
    if not values:
        raise ValueError("ks is empty")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"ks must be positive integers, got {k!r}")
    return np.array(sorted(set(values)), dtype=np.int64)


def _check_queries(queries: Queries, n_candidates: int) -> None:
    if queries.n_candidates is not None and queries.n_candidates != n_candidates:
        raise ValueError(
            f"queries index {queries.n_candidates} candidates but {n_candidates} candidate "
            "rows were given: score the same unique candidates the queries were built from"
        )
    lists = [("positives", queries.positives)]
    if queries.exclude is not None:
        lists.append(("exclude", queries.exclude))
    for name, arrays in lists:
        flat = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
        bad = np.flatnonzero((flat < 0) | (flat >= n_candidates))
        if bad.size:
            i = int(np.searchsorted(np.cumsum([len(a) for a in arrays]), bad[0], side="right"))
            raise ValueError(
                f"queries.{name}[{i}] (buyer {queries.buyer_ids[i]}) has candidate index "
                f"{flat[bad[0]]}, outside 0..{n_candidates - 1}"
            )


def _batch_rows(batch_size: int, max_batch_bytes: int, n_candidates: int, n_queries: int) -> int:
    """Queries per batch: batch_size, capped by max_batch_bytes of float32 scores, at least 1."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if max_batch_bytes <= 0:
        raise ValueError(f"max_batch_bytes must be positive, got {max_batch_bytes}")
    if n_candidates == 0:
        raise ValueError("there are no candidates")
    by_memory = max(1, max_batch_bytes // (4 * n_candidates))
    return max(1, min(batch_size, by_memory, n_queries))
