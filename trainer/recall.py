"""recall@k over unique candidates, and the popularity baseline (numpy only, no TensorFlow).

A query is one test buyer; its positives are the candidate rows of the products it bought in the
test split. recall@k is the share of unique test (buyer, product) pairs whose product ranks within
the buyer's top k over *all* candidates, one row per unique product id (ranking against
transaction rows instead lets popular products crowd out everything: the post-mortem's bug).

Ranking is exact brute force, fused with scoring: a batch of queries is scored one cache-sized tile of
candidates at a time (a BLAS product), and each tile goes straight to `trainer.topk.TopScores`, which
keeps every query's highest scores; no full score matrix is ever written. Batches rank in parallel
threads (BLAS runs single-threaded meanwhile), so peak memory is a tile per thread plus the
embeddings, and ranking costs about 1.5x the bare matrix product (bench/bench_recall.py).
Ties are pessimistic: a positive tied with other candidates ranks after all of them, so a
collapsed model that scores everything alike gets recall ~0, never 1.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from trainer.topk import TopScores

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BATCH_SIZE = 128
"""Queries ranked together, by one thread."""
DEFAULT_TILE_BYTES = 4 * 2**20
"""Default size of one score tile (4 MiB, about a core's share of the cache): 8192 candidates for a
batch of 128 queries."""


@dataclass(frozen=True)
class Ragged:
    """Candidate rows per query, query i's being values[offsets[i]:offsets[i + 1]]: one flat array
    and its offsets, where an array per query cost ~100 bytes of numpy object each (two lists of
    500k buyers: 0.1 GiB)."""

    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: Sequence, name: str) -> Ragged:
        """One 1-D array of candidate indices per query (lists or arrays) as a Ragged."""
        parts = []
        for i, rows in enumerate(arrays):
            rows = np.asarray(rows)
            if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
                raise ValueError(f"Queries.{name}[{i}] must be 1-D candidate indices, got {rows!r}")
            parts.append(rows.astype(np.int64, copy=False))
        offsets = np.concatenate(([0], np.cumsum([len(rows) for rows in parts], dtype=np.int64)))
        return cls(np.concatenate(parts) if parts else np.empty(0, np.int64), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def pairs(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(row within start..stop, candidate index) of every value of queries start..stop."""
        rows = np.repeat(np.arange(stop - start), np.diff(self.offsets[start : stop + 1]))
        return rows, self.values[self.offsets[start] : self.offsets[stop]]


@dataclass(frozen=True)
class Queries:
    """Evaluation queries: one per test buyer, with candidate row indices.

    positives[i]: candidate rows of buyer_ids[i]'s test products (unique).
    exclude[i]: candidate rows removed from buyer_ids[i]'s ranking (their training products);
    a row that is also one of the buyer's positives stays ranked.
    Either is given as a Ragged or one array (or list) per query, and held as a Ragged.
    n_candidates: number of candidates the indices refer to, when known; recall_at_k then
    checks the candidate embeddings have exactly that many rows.
    """

    buyer_ids: np.ndarray
    positives: Ragged | Sequence
    exclude: Ragged | Sequence | None = None
    n_candidates: int | None = None

    def __post_init__(self) -> None:
        n = len(self.buyer_ids)
        object.__setattr__(self, "positives", _ragged(self.positives, "positives", n))
        if self.exclude is not None:
            object.__setattr__(self, "exclude", _ragged(self.exclude, "exclude", n))

    @property
    def n_queries(self) -> int:
        """Number of queries (test buyers)."""
        return len(self.buyer_ids)

    @property
    def n_pairs(self) -> int:
        """Number of unique test (buyer, product) pairs: recall's denominator."""
        return len(self.positives.values)


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
    positives = _group(codes, rows, len(buyer_ids), len(index))

    exclude = None
    if train is not None:
        seen = _columns(train, "train", buyer_column, product_column)
        seen_codes = pd.Index(buyer_ids).get_indexer(seen[buyer_column])
        seen_rows = index.get_indexer(seen[product_column])
        known = (seen_codes >= 0) & (seen_rows >= 0)
        exclude = _group(seen_codes[known], seen_rows[known], len(buyer_ids), len(index))
    return Queries(np.asarray(buyer_ids), positives, exclude, n_candidates=len(index))


def recall_at_k(
    query_embeddings: np.ndarray,
    candidate_embeddings: np.ndarray,
    queries: Queries,
    ks: Sequence[int],
    batch_size: int = DEFAULT_BATCH_SIZE,
    tile_bytes: int = DEFAULT_TILE_BYTES,
) -> dict[int, float]:
    """recall@k of a model: query i (row i of query_embeddings) scores candidate j by their dot product.

    Queries are ranked batch_size at a time, against tiles of candidates whose float32 scores take at
    most tile_bytes (at least one candidate). Pass float32 C-contiguous embeddings to avoid copies.
    """
    queries_f, candidates_f = checked_embeddings(query_embeddings, candidate_embeddings, queries)

    def score(start: int, stop: int, first: int, last: int, out: np.ndarray) -> None:
        np.matmul(queries_f[start:stop], candidates_f[first:last].T, out=out)

    return _recall(score, len(candidates_f), queries, ks, batch_size, tile_bytes)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset, `taskset`), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def checked_embeddings(query_embeddings: np.ndarray, candidate_embeddings: np.ndarray,
                       queries: Queries) -> tuple[np.ndarray, np.ndarray]:
    """Both embeddings as finite float32 C-contiguous matrices of one dimension, one query row per query."""
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
    return queries_f, candidates_f


def popularity_scores(train_product_ids: Sequence, candidate_ids: np.ndarray) -> np.ndarray:
    """Training purchase count of each candidate (float32); ids that are not candidates are ignored.

    Counted first, then looked up: only the distinct ids are ever hashed against the candidates (a
    column of millions of strings indexed row by row was turned into as many Python objects)."""
    import pandas as pd

    return count_scores(pd.Series(train_product_ids).value_counts(), candidate_ids)


def count_scores(counts: pd.Series, candidate_ids: np.ndarray) -> np.ndarray:
    """Each candidate's count in `counts` (product id -> training rows), 0 where absent (float32)."""
    import pandas as pd

    return counts.reindex(pd.Index(candidate_ids), fill_value=0).to_numpy(dtype=np.float32)


def popularity_recall(
    scores: np.ndarray,
    queries: Queries,
    ks: Sequence[int],
    batch_size: int = DEFAULT_BATCH_SIZE,
    tile_bytes: int = DEFAULT_TILE_BYTES,
) -> dict[int, float]:
    """recall@k of ranking every buyer's candidates by the same scores (e.g. popularity_scores)."""
    scores_f = np.asarray(scores, dtype=np.float32)
    if scores_f.ndim != 1:
        raise ValueError(f"scores must be 1-D (one per candidate), got shape {scores_f.shape}")
    _check_finite(scores_f, "scores")

    def score(start: int, stop: int, first: int, last: int, out: np.ndarray) -> None:
        out[:] = scores_f[first:last]

    return _recall(score, len(scores_f), queries, ks, batch_size, tile_bytes)


def _recall(
    score: Callable[[int, int, int, int, np.ndarray], None],
    n_candidates: int,
    queries: Queries,
    ks: Sequence[int],
    batch_size: int,
    tile_bytes: int,
) -> dict[int, float]:
    """Shared ranking loop: score(start, stop, first, last, out) fills out with the scores of queries
    start..stop for candidates first..last."""
    ks_array, top = ranking_depth(ks, queries, n_candidates)
    rows, columns = _tile_shape(batch_size, tile_bytes, n_candidates, queries.n_queries)
    buffers = threading.local()

    def batch_hits(start: int) -> np.ndarray:
        stop = min(start + rows, queries.n_queries)
        if getattr(buffers, "tile", None) is None:
            buffers.tile = np.empty(rows * columns, dtype=np.float32)
        return _batch_hits(score, buffers.tile, queries, start, stop, n_candidates, columns, top, ks_array)

    starts = range(0, queries.n_queries, rows)
    threads = min(usable_cpus(), len(starts))
    with threadpool_limits(1 if threads > 1 else None), ThreadPoolExecutor(threads) as pool:
        hits = sum(pool.map(batch_hits, starts))
    return {int(k): float(h) / queries.n_pairs for k, h in zip(ks_array, hits)}


def _batch_hits(
    score: Callable[[int, int, int, int, np.ndarray], None], buffer: np.ndarray, queries: Queries,
    start: int, stop: int, n_candidates: int, columns: int, top: int, ks: np.ndarray,
) -> np.ndarray:
    """Hits at each k for queries start..stop, scored tile by tile into `buffer`."""
    pair_rows, pair_cols, exclude_rows, exclude_cols = batch_pairs(queries, start, stop, n_candidates)
    by_pair, by_exclusion = np.argsort(pair_cols, kind="stable"), np.argsort(exclude_cols, kind="stable")
    pair_cuts = np.searchsorted(pair_cols[by_pair], np.arange(0, n_candidates + columns, columns))
    exclude_cuts = np.searchsorted(exclude_cols[by_exclusion], np.arange(0, n_candidates + columns, columns))
    positive_scores = np.empty(len(pair_cols), dtype=np.float32)
    best = TopScores(stop - start, top)
    for tile_number, first in enumerate(range(0, n_candidates, columns)):
        last = min(first + columns, n_candidates)
        tile = buffer[: (stop - start) * (last - first)].reshape(stop - start, last - first)
        score(start, stop, first, last, tile)
        mine = by_exclusion[exclude_cuts[tile_number] : exclude_cuts[tile_number + 1]]
        tile[exclude_rows[mine], exclude_cols[mine] - first] = -np.inf
        mine = by_pair[pair_cuts[tile_number] : pair_cuts[tile_number + 1]]
        positive_scores[mine] = tile[pair_rows[mine], pair_cols[mine] - first]
        best.add(tile)
    return hits_at(best.head(), pair_rows, positive_scores, ks)


def ranking_depth(ks: Sequence[int], queries: Queries, n_candidates: int) -> tuple[np.ndarray, int]:
    """The sorted unique ks, and how many of each row's highest scores decide them (max(ks) + 1, at most
    every candidate); checks the queries against the candidates first."""
    ks_array = _ks(ks)
    _check_queries(queries, n_candidates)
    if queries.n_pairs == 0:
        raise ValueError("queries have no test pairs: recall is undefined")
    return ks_array, min(int(ks_array.max()) + 1, n_candidates)


def batch_pairs(queries: Queries, start: int, stop: int, n_candidates: int) -> tuple[np.ndarray, ...]:
    """For queries start..stop, as (batch row, candidate column) index arrays: their test pairs, and the
    candidates removed from their ranking (their exclude lists less their own positives, which stay
    ranked): (pair_rows, pair_cols, exclude_rows, exclude_cols)."""
    pair_rows, pair_cols = queries.positives.pairs(start, stop)
    if queries.exclude is None:
        return pair_rows, pair_cols, np.empty(0, np.int64), np.empty(0, np.int64)
    rows, cols = queries.exclude.pairs(start, stop)
    kept = ~np.isin(rows * n_candidates + cols, pair_rows * n_candidates + pair_cols)
    return pair_rows, pair_cols, rows[kept], cols[kept]


def hits_at(head: np.ndarray, pair_rows: np.ndarray, positive_scores: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Hits at each k from each batch row's `top` = max(ks) + 1 highest scores (`head`) and the pairs'
    scores. A positive outside the head, or tied with the lowest of it, ranks at max(ks) or worse: a miss
    at every k. Ranks are pessimistic: every other candidate scoring >= the positive ranks before it."""
    ranks = np.count_nonzero(head[pair_rows] >= positive_scores[:, None], axis=1) - 1
    return np.count_nonzero(ranks[:, None] < ks[None, :], axis=0)


def _ragged(arrays: Ragged | Sequence, name: str, n_queries: int) -> Ragged:
    ragged = arrays if isinstance(arrays, Ragged) else Ragged.from_arrays(arrays, name)
    if len(ragged) != n_queries:
        raise ValueError(f"Queries: {len(ragged)} {name} arrays for {n_queries} buyer_ids")
    return ragged


def _columns(frame: pd.DataFrame, name: str, *columns: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r} (columns: {list(frame.columns)})")
    return frame[list(columns)]


def _group(codes: np.ndarray, rows: np.ndarray, n_groups: int, n_rows: int) -> Ragged:
    """Unique sorted rows (0..n_rows-1) per group code 0..n_groups-1.

    One int64 key per pair, sorted in place and de-duplicated: the only copies of every pair are
    the keys and the result (a unique over the stacked pairs made several)."""
    keys = np.asarray(codes, dtype=np.int64) * n_rows
    keys += rows
    keys.sort()
    if keys.size:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    offsets = np.searchsorted(keys, np.arange(n_groups + 1, dtype=np.int64) * n_rows)
    return Ragged(np.remainder(keys, n_rows, out=keys), offsets)


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
    for name, ragged in lists:
        bad = np.flatnonzero((ragged.values < 0) | (ragged.values >= n_candidates))
        if bad.size:
            i = int(np.searchsorted(ragged.offsets, bad[0], side="right")) - 1
            raise ValueError(
                f"queries.{name}[{i}] (buyer {queries.buyer_ids[i]}) has candidate index "
                f"{ragged.values[bad[0]]}, outside 0..{n_candidates - 1}"
            )


def _tile_shape(batch_size: int, tile_bytes: int, n_candidates: int, n_queries: int) -> tuple[int, int]:
    """(queries per batch, candidates per tile): batch_size queries (fewer when there are fewer), and as
    many candidates as fit tile_bytes of float32 scores, at least one."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if tile_bytes <= 0:
        raise ValueError(f"tile_bytes must be positive, got {tile_bytes}")
    if n_candidates == 0:
        raise ValueError("there are no candidates")
    rows = max(1, min(batch_size, n_queries))
    return rows, max(1, min(n_candidates, tile_bytes // (4 * rows)))
