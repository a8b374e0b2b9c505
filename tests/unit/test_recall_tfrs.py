"""recall_at_k equals hit counting over TFRS BruteForce top-k product ids."""

import numpy as np
import pandas as pd

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from trainer.recall import build_queries, recall_at_k

KS = [5, 10, 50, 100]


def test_recall_at_k_equals_tfrs_brute_force_hits():
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    rng = np.random.default_rng(42)
    n_candidates, n_buyers, dim = 500, 200, 16
    candidate_ids = np.array([f"p{i}" for i in rng.permutation(n_candidates)])
    candidate_embeddings = rng.standard_normal((n_candidates, dim)).astype(np.float32)
    pairs = rng.integers(0, [n_buyers, n_candidates], size=(800, 2))
    test = pd.DataFrame({"buyer": pairs[:, 0], "product": candidate_ids[pairs[:, 1]]})
    queries = build_queries(test, "buyer", "product", candidate_ids)
    query_embeddings = rng.standard_normal((queries.n_queries, dim)).astype(np.float32)

    index = tfrs.layers.factorized_top_k.BruteForce(k=max(KS))
    index.index_from_dataset(
        tf.data.Dataset.from_tensor_slices((candidate_ids, candidate_embeddings)).batch(128)
    )
    _, top_ids = index(tf.constant(query_embeddings))
    top_ids = top_ids.numpy().astype(str)
    expected = {}
    for k in KS:
        hits = sum(
            len(np.intersect1d(candidate_ids[positives], top_ids[i, :k]))
            for i, positives in enumerate(queries.positives)
        )
        expected[k] = hits / queries.n_pairs

    assert 0 < expected[5] < expected[100] < 1
    assert recall_at_k(query_embeddings, candidate_embeddings, queries, KS, batch_size=64) == expected
