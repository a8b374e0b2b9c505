"""Classical item-item baselines, EASE and ItemKNN (numpy only, no TensorFlow).

Both score a buyer's candidates from their training history: with X the binary (buyers x
candidates) matrix of training purchases, buyer u scores candidate j by (X W)[u, j], W an
(candidates x candidates) weight matrix with a zero diagonal (an item never recommends itself).
Ranking reuses trainer.recall: the history rows are the query embeddings and W^T the candidate
embeddings, so ties, unique candidates and seen-exclusion are exactly those of towerflow's
evaluation. W is dense: fine for catalogues up to some 20k products (EASE inverts W's size).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from trainer.recall import Queries, recall_at_k

if TYPE_CHECKING:
    import pandas as pd


def interactions(
    frame: pd.DataFrame, buyer_column: str, product_column: str, buyer_ids: np.ndarray, candidate_ids: np.ndarray
) -> np.ndarray:
    """Binary float32 (buyer_ids x candidate_ids) matrix: 1 where the buyer bought the candidate in
    `frame` (repeats count once); rows naming other buyers or products are ignored."""
    import pandas as pd

    rows = pd.Index(buyer_ids).get_indexer(frame[buyer_column])
    cols = pd.Index(candidate_ids).get_indexer(frame[product_column])
    known = (rows >= 0) & (cols >= 0)
    matrix = np.zeros((len(buyer_ids), len(candidate_ids)), dtype=np.float32)
    matrix[rows[known], cols[known]] = 1.0
    return matrix


def ease(matrix: np.ndarray, l2: float) -> np.ndarray:
    """EASE (Steck 2019): W = argmin ||X - X W||^2 + l2 ||W||^2 subject to diag(W) = 0, in closed
    form: P = (X^T X + l2 I)^-1, W = I - P diag(P)^-1, i.e. W_ij = -P_ij / P_jj off the diagonal."""
    if l2 <= 0:
        raise ValueError(f"EASE needs a positive l2 penalty, got {l2}")
    x = np.asarray(matrix, dtype=np.float64)
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def item_knn(matrix: np.ndarray) -> np.ndarray:
    """ItemKNN: W_ij = cosine similarity of candidates i and j over buyers (their columns of X),
    zero diagonal; a candidate nobody bought is similar to nothing."""
    x = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(x, axis=0)
    weights = (x.T @ x) / np.maximum(np.outer(norms, norms), np.finfo(np.float32).tiny)
    np.fill_diagonal(weights, 0.0)
    return weights


def item_item_recall(weights: np.ndarray, history: np.ndarray, queries: Queries, ks: Sequence[int]) -> dict[int, float]:
    """recall@k of ranking query i's candidates by (history @ weights)[i] (history: one row per query,
    in queries.buyer_ids order), through trainer.recall.recall_at_k."""
    return recall_at_k(history, np.ascontiguousarray(np.transpose(weights)), queries, ks)
