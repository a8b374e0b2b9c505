"""Evaluate an exported attempt: recall@k of the model and of popularity over unique candidates.

The exported model (see trainer.attempt) is used as served: its `embed_buyers` signature embeds
each test buyer from the features of their latest test row, and its candidate embeddings + ids
(one row per unique product) are ranked by trainer.recall, or on the GPU when one is visible
(trainer.device_recall: same numbers within float rounding). Popularity ranks the same candidates
by training purchase counts, on the same queries; with `evaluation.baselines` naming `ease`, so
does EASE fitted on the training purchases (trainer.baselines), for catalogues up to
`evaluation.ease_max_candidates`.
"""

from __future__ import annotations

import gc
import io
import posixpath

import numpy as np
import pandas as pd
import tensorflow as tf
from pydantic import BaseModel

from trainer.attempt import CANDIDATE_EMBEDDINGS, CANDIDATE_IDS, SAVED_MODEL_DIR
from trainer.baselines import ease, interactions, item_item_recall
from trainer.data import ExperimentData
from trainer.device_recall import gpu_device, recall_on_device
from trainer.memory import keep_less_freed_memory
from trainer.model import frame_tensors, graph_name, input_dtype
from trainer.recall import Queries, build_queries, count_scores, popularity_recall, recall_at_k
from trainer.scanned import experiment_data, workdir_scan
from trainer.spec import ExperimentSpec
from trainer.storage import join, local_copy, read_bytes

EMBED_BATCH = 4096


class EvaluationResult(BaseModel):
    """recall@k (k -> share of test pairs found) of the model and of popularity, with the counts behind them."""

    model: dict[int, float]
    popularity: dict[int, float]
    ease: dict[int, float] | None = None  # when evaluation.baselines asks for it and the catalogue is small enough
    n_candidates: int
    n_candidate_rows_before_dedup: int
    n_queries: int
    n_pairs: int
    exclude_seen: bool


def latest_rows(test: pd.DataFrame, buyer_column: str, buyer_ids: np.ndarray, time_column: str | None) -> pd.DataFrame:
    """Each buyer's latest test row (by `time_column`, else the last in frame order), in `buyer_ids` order."""
    rows = test.sort_values(time_column, kind="stable") if time_column else test
    latest = rows.drop_duplicates(buyer_column, keep="last").set_index(buyer_column)
    return latest.loc[buyer_ids].reset_index()


def load_array(uri: str) -> np.ndarray:
    """A .npy array from a local path or URI."""
    return np.load(io.BytesIO(read_bytes(uri)), allow_pickle=False)


def load_saved_model(uri: str):
    """The SavedModel at `uri` (downloaded first when remote: TensorFlow loads local paths only)."""
    with local_copy(uri) as path:
        return tf.saved_model.load(path)


def embed_buyers(saved_model, spec: ExperimentSpec, rows: pd.DataFrame) -> np.ndarray:
    """Query embeddings of `rows` through the exported `embed_buyers` signature."""
    signature = saved_model.signatures["embed_buyers"]
    columns = {f.column: input_dtype(f) for f in spec.buyer_features}
    tensors = frame_tensors(rows, columns)
    parts = []
    for start in range(0, len(rows), EMBED_BATCH):
        batch = {graph_name(column): tf.constant(values[start : start + EMBED_BATCH])
                 for column, values in tensors.items()}
        parts.append(signature(**batch)["embeddings"].numpy())
    return np.concatenate(parts, axis=0)


def model_recall(query_embeddings: np.ndarray, candidate_embeddings: np.ndarray, queries: Queries,
                 ks: list[int]) -> dict[int, float]:
    """recall@k of the model's embeddings: on the first visible GPU, else on the CPU."""
    device = gpu_device()
    if device is None:
        return recall_at_k(query_embeddings, candidate_embeddings, queries, ks)
    return recall_on_device(query_embeddings, candidate_embeddings, queries, ks, device)


def ease_recall(spec: ExperimentSpec, data: ExperimentData, candidate_ids: np.ndarray, queries: Queries) -> dict[int, float] | None:
    """recall@k of EASE fitted on the training purchases, on `queries`; None unless `evaluation.baselines`
    names it and the catalogue has at most `evaluation.ease_max_candidates` products."""
    evaluation = spec.evaluation
    if "ease" not in evaluation.baselines or len(candidate_ids) > evaluation.ease_max_candidates:
        return None
    buyer, product = spec.buyer_id_column, spec.product_id_column
    train = data.train_pairs(buyer, product)
    buyers = np.array(sorted(train[buyer].unique()))
    weights = ease(interactions(train, buyer, product, buyers, candidate_ids), evaluation.ease_l2)
    history = interactions(train, buyer, product, queries.buyer_ids, candidate_ids)
    return item_item_recall(weights, history, queries, evaluation.ks)


def evaluate_model(spec: ExperimentSpec, model_uri: str, data: ExperimentData | None = None,
                   scan: str | None = None) -> EvaluationResult:
    """recall@k (spec.evaluation.ks) of the model exported at `model_uri` and of popularity on the test split
    of `data`, else the spec's (a streamed spec's pass reused from `scan`, by default the `scan` directory
    beside the export, where `python -m trainer` keeps it)."""
    keep_less_freed_memory()
    gc.collect()  # a finished attempt's model (its traced functions hold it in cycles): its tensors go back to the pool
    scan = scan or workdir_scan(posixpath.dirname(model_uri.rstrip("/")))
    data = data if data is not None else experiment_data(spec, scan)
    buyer_column, product_column = spec.buyer_id_column, spec.product_id_column
    candidate_ids = load_array(join(model_uri, CANDIDATE_IDS))
    candidate_embeddings = load_array(join(model_uri, CANDIDATE_EMBEDDINGS))
    exclude_seen = spec.evaluation.exclude_seen
    seen = data.train_pairs(buyer_column, product_column, data.test[buyer_column].unique()) if exclude_seen else None
    queries = build_queries(data.test, buyer_column, product_column, candidate_ids, train=seen)
    del seen
    ks = spec.evaluation.ks
    saved_model = load_saved_model(join(model_uri, SAVED_MODEL_DIR))
    rows = latest_rows(data.test, buyer_column, queries.buyer_ids, spec.data.split.column)
    query_embeddings = embed_buyers(saved_model, spec, rows)
    popularity = count_scores(data.stats.counts[product_column], candidate_ids)
    return EvaluationResult(
        model=model_recall(query_embeddings, candidate_embeddings, queries, ks),
        popularity=popularity_recall(popularity, queries, ks),
        ease=ease_recall(spec, data, candidate_ids, queries),
        n_candidates=len(candidate_ids),
        n_candidate_rows_before_dedup=data.n_candidate_rows_before_dedup,
        n_queries=queries.n_queries,
        n_pairs=queries.n_pairs,
        exclude_seen=exclude_seen,
    )
