"""trainer.baselines: EASE's closed form, ItemKNN's cosine, and both beating popularity where co-occurrence is planted."""

import numpy as np
import pandas as pd
import pytest

from trainer.baselines import ease, interactions, item_item_recall, item_knn
from trainer.recall import build_queries, popularity_recall, popularity_scores


def test_ease_solves_each_columns_ridge_regression_on_the_other_items():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 6)) < 0.4).astype(np.float32)
    weights = ease(x, l2=2.0)
    assert np.all(np.diag(weights) == 0)
    for j in range(6):  # column j: regress item j on every other item, ridge penalty 2
        others = np.delete(np.arange(6), j)
        a = x[:, others].astype(np.float64)
        expected = np.linalg.solve(a.T @ a + 2.0 * np.eye(5), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="positive l2"):
        ease(x, l2=0.0)


def test_item_knn_is_the_cosine_of_item_columns_with_a_zero_diagonal():
    x = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=np.float32)  # item 2: nobody bought it
    weights = item_knn(x)
    np.testing.assert_allclose(weights, [[0, 2 / np.sqrt(6), 0], [2 / np.sqrt(6), 0, 0], [0, 0, 0]], rtol=1e-6)


def test_interactions_are_binary_and_ignore_unknown_buyers_and_products():
    frame = pd.DataFrame({"b": ["u1", "u1", "u2", "u9", "u2"], "p": ["x", "x", "y", "x", "zz"]})
    matrix = interactions(frame, "b", "p", np.array(["u1", "u2"]), np.array(["x", "y"]))
    np.testing.assert_array_equal(matrix, [[1, 0], [0, 1]])


def _planted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four item pairs (a_g, b_g) bought together by group g, plus a hit everyone buys. Test buyers
    bought a_g and the hit in train and b_g in test: popularity ranks the other a's first."""
    train, test = [], []
    for u in range(80):
        g, buyer = u % 4, f"u{u}"
        train += [(buyer, f"a{g}"), (buyer, "hit")]
        (train if u < 60 else test).append((buyer, f"b{g}"))
    columns = ["buyer", "product"]
    return pd.DataFrame(train, columns=columns), pd.DataFrame(test, columns=columns)


def test_ease_and_item_knn_beat_popularity_where_co_occurrence_is_planted():
    train, test = _planted()
    candidates = np.array(sorted(set(train["product"])))
    queries = build_queries(test, "buyer", "product", candidates, train=train)  # seen products excluded
    everyone = np.array(sorted(set(train["buyer"])))
    fit = interactions(train, "buyer", "product", everyone, candidates)
    history = interactions(train, "buyer", "product", queries.buyer_ids, candidates)
    ks = [1, 3]
    popularity = popularity_recall(popularity_scores(train["product"], candidates), queries, ks)
    assert popularity == {1: 0.0, 3: 0.0}  # the three other a's (20 buyers each) outrank every b (15)
    assert item_item_recall(ease(fit, l2=1.0), history, queries, ks) == {1: 1.0, 3: 1.0}
    assert item_item_recall(item_knn(fit), history, queries, ks) == {1: 1.0, 3: 1.0}
