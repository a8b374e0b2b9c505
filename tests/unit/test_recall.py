"""recall@k over unique candidates: hand examples, ties, exclusion, batching, popularity, errors."""

import numpy as np
import pandas as pd
import pytest

from trainer.recall import (
    Queries,
    build_queries,
    popularity_recall,
    popularity_scores,
    recall_at_k,
    usable_cpus,
)

# Candidates c0..c3 and two buyers; scores are the dot products.
CANDIDATES = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
BUYERS = np.array([[1, 0], [0, 2]], dtype=np.float32)
# Buyer A (1, 0) scores c0..c3 as 1, 0, 1, -1; buyer B (0, 2) as 0, 2, 2, 0.
# A's positives c0, c1; B's positive c3.
#   A/c0: score 1, tied with c2 -> pessimistic 0-based rank 1 (hit from k=2)
#   A/c1: score 0, below c0 and c2 -> rank 2 (hit from k=3)
#   B/c3: score 0, below c1 and c2, tied with c0 -> rank 3 (hit from k=4)
HAND_QUERIES = Queries(np.array(["A", "B"]), [np.array([0, 1]), np.array([3])])
HAND_EXPECTED = {1: 0.0, 2: 1 / 3, 3: 2 / 3, 4: 1.0}
# exclude_seen: A saw c2 -> removed, so A/c0 ranks 0 and A/c1 ranks 1.
# B saw c1 (removed) and c3 (a positive: stays), so B/c3 ranks after c2 and c0: rank 2.
HAND_EXCLUDE = [np.array([2]), np.array([1, 3])]
HAND_EXPECTED_EXCLUDED = {1: 1 / 3, 2: 2 / 3, 3: 1.0, 4: 1.0}


def _reference_recall(query_embeddings, candidate_embeddings, queries, ks):
    """Pessimistic rank per pair by a plain comparison over each full score row."""
    hits = dict.fromkeys(ks, 0)
    for i, positives in enumerate(queries.positives):
        scores = candidate_embeddings @ query_embeddings[i]
        if queries.exclude is not None:
            removed = np.setdiff1d(queries.exclude[i], positives)
            scores[removed] = -np.inf
        for p in positives:
            rank = np.count_nonzero(scores >= scores[p]) - 1
            for k in ks:
                hits[k] += rank < k
    return {k: hits[k] / queries.n_pairs for k in ks}


def _random_case(seed, n_queries=23, n_candidates=40, dim=3, integer=False):
    rng = np.random.default_rng(seed)
    if integer:  # small integers: many exact ties
        q = rng.integers(-2, 3, (n_queries, dim)).astype(np.float32)
        c = rng.integers(-2, 3, (n_candidates, dim)).astype(np.float32)
    else:
        q = rng.standard_normal((n_queries, dim)).astype(np.float32)
        c = rng.standard_normal((n_candidates, dim)).astype(np.float32)
    positives = [rng.choice(n_candidates, rng.integers(1, 5), replace=False) for _ in range(n_queries)]
    exclude = [rng.choice(n_candidates, rng.integers(0, 8), replace=False) for _ in range(n_queries)]
    queries = Queries(np.arange(n_queries), positives, exclude)
    return q, c, queries


def test_hand_example():
    assert recall_at_k(BUYERS, CANDIDATES, HAND_QUERIES, [1, 2, 3, 4]) == pytest.approx(HAND_EXPECTED)


def test_hand_example_with_exclusion_keeps_positives():
    queries = Queries(HAND_QUERIES.buyer_ids, HAND_QUERIES.positives, HAND_EXCLUDE)
    assert recall_at_k(BUYERS, CANDIDATES, queries, [1, 2, 3, 4]) == pytest.approx(
        HAND_EXPECTED_EXCLUDED
    )


def test_counts_for_the_caller():
    assert HAND_QUERIES.n_queries == 2
    assert HAND_QUERIES.n_pairs == 3


def test_all_equal_scores_give_zero_recall_not_one():
    q, c, queries = _random_case(0)
    collapsed = np.zeros_like(c)  # every candidate scores 0 for every buyer
    result = recall_at_k(q, collapsed, Queries(queries.buyer_ids, queries.positives), [1, 10, 39])
    assert result == {1: 0.0, 10: 0.0, 39: 0.0}
    assert recall_at_k(q, collapsed, Queries(queries.buyer_ids, queries.positives), [40]) == {40: 1.0}


@pytest.mark.parametrize("integer", [False, True])
def test_matches_full_comparison_reference_with_ties_and_exclusion(integer):
    q, c, queries = _random_case(1, integer=integer)
    ks = [1, 3, 5, 10, 45]
    expected = _reference_recall(q, c, queries, ks)
    assert recall_at_k(q, c, queries, ks) == pytest.approx(expected)
    plain = Queries(queries.buyer_ids, queries.positives)
    assert recall_at_k(q, c, plain, ks) == pytest.approx(_reference_recall(q, c, plain, ks))


def test_batch_size_does_not_change_the_result():
    q, c, queries = _random_case(2, integer=True)
    ks = [1, 5, 10]
    full = recall_at_k(q, c, queries, ks, batch_size=len(q))
    assert recall_at_k(q, c, queries, ks, batch_size=1) == full
    assert recall_at_k(q, c, queries, ks, batch_size=7) == full
    # The smallest tiles (one candidate each) rank the same.
    assert recall_at_k(q, c, queries, ks, batch_size=1024, tile_bytes=1) == full


def _product_vectors():
    # Buyer (1, 0) scores: "pop" 0.9, "p1" 0.8, "p2" 0.1, "p3" 0.0.
    return {
        "pop": [0.9, 0.0],
        "p1": [0.8, 0.1],
        "p2": [0.1, 0.5],
        "p3": [0.0, 1.0],
    }


def test_transaction_row_candidates_differ_from_unique_candidates():
    """The post-mortem's bug: popular products repeated per transaction crowd out the positive."""
    vectors = _product_vectors()
    transactions = pd.DataFrame(
        {"buyer": ["x"] * 5 + ["y", "z"], "product": ["pop"] * 5 + ["p2", "p3"]}
    )
    test = pd.DataFrame({"buyer": ["b"], "product": ["p1"]})
    buyer = np.array([[1.0, 0.0]], dtype=np.float32)

    # Old way: one candidate per transaction row (plus the test row).
    rows = pd.concat([transactions, test])["product"].to_numpy()
    row_embeddings = np.array([vectors[p] for p in rows], dtype=np.float32)
    with pytest.raises(ValueError, match="duplicated ids"):
        build_queries(test, "buyer", "product", rows)
    first_row = int(np.flatnonzero(rows == "p1")[0])
    old = Queries(np.array(["b"]), [np.array([first_row])])
    # p1 (0.8) sits below five copies of "pop" (0.9): rank 5, a miss at k=2.
    assert recall_at_k(buyer, row_embeddings, old, [2, 6]) == {2: 0.0, 6: 1.0}

    # Unique candidates: p1 ranks 1 behind the single "pop": a hit at k=2.
    candidate_ids = pd.unique(rows)
    unique_embeddings = np.array([vectors[p] for p in candidate_ids], dtype=np.float32)
    queries = build_queries(test, "buyer", "product", candidate_ids)
    assert queries.n_candidates == 4
    assert recall_at_k(buyer, unique_embeddings, queries, [1, 2]) == {1: 0.0, 2: 1.0}
    with pytest.raises(ValueError, match="4 candidates but 8 candidate rows"):
        recall_at_k(buyer, row_embeddings, queries, [2])


# Popularity hand example. Candidates p0..p3; training purchases:
#   p0 x2 (A, C), p1 x1 (C), p2 x3 (A, B, C), p3 x1 (C); p9 is not a candidate (ignored).
# Counts: p0 2, p1 1, p2 3, p3 1. Test: A bought p0 (twice: one pair); B bought p1 and p3.
CATALOGUE = np.array(["p0", "p1", "p2", "p3"])
TRAIN = pd.DataFrame(
    {
        "buyer": ["A", "B", "C", "A", "C", "C", "C", "C"],
        "product": ["p2", "p2", "p2", "p0", "p0", "p1", "p3", "p9"],
    }
)
TEST = pd.DataFrame({"buyer": ["B", "A", "A", "B"], "product": ["p3", "p0", "p0", "p1"]})


def test_build_queries_maps_unique_pairs_and_training_products():
    queries = build_queries(TEST, "buyer", "product", CATALOGUE, train=TRAIN)
    assert list(queries.buyer_ids) == ["A", "B"]
    assert [list(p) for p in queries.positives] == [[0], [1, 3]]
    assert [list(e) for e in queries.exclude] == [[0, 2], [2]]
    assert (queries.n_queries, queries.n_pairs, queries.n_candidates) == (2, 3, 4)
    assert build_queries(TEST, "buyer", "product", CATALOGUE).exclude is None


def test_a_product_bought_again_is_excluded_once_and_exclusions_are_in_candidate_order():
    again = pd.concat([TRAIN, pd.DataFrame({"buyer": ["A", "B", "A"], "product": ["p2", "p2", "p3"]})])
    queries = build_queries(TEST, "buyer", "product", CATALOGUE, train=again)
    assert [list(e) for e in queries.exclude] == [[0, 2, 3], [2]]


def test_popularity_hand_example():
    scores = popularity_scores(TRAIN["product"], CATALOGUE)
    assert scores.tolist() == [2.0, 1.0, 3.0, 1.0]
    queries = build_queries(TEST, "buyer", "product", CATALOGUE)
    # A/p0 (2) ranks 1 behind p2; B/p1 and B/p3 (1, tied) rank 3 behind p2, p0 and each other.
    assert popularity_recall(scores, queries, [1, 2, 3, 4]) == pytest.approx(
        {1: 0.0, 2: 1 / 3, 3: 1 / 3, 4: 1.0}
    )


def test_popularity_with_exclusion():
    scores = popularity_scores(TRAIN["product"], CATALOGUE)
    queries = build_queries(TEST, "buyer", "product", CATALOGUE, train=TRAIN)
    # A saw p2 (removed) and p0 (its positive, kept): p0 ranks 0.
    # B saw p2 (removed): p1 and p3 rank 2, behind p0 and each other.
    assert popularity_recall(scores, queries, [1, 2, 3, 4]) == pytest.approx(
        {1: 1 / 3, 2: 1 / 3, 3: 1.0, 4: 1.0}
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query_embeddings": np.ones((2, 3), np.float32)}, "dimension 3 but candidate_embeddings have 2"),
        ({"query_embeddings": np.ones((3, 2), np.float32)}, "3 rows for 2 queries"),
        ({"query_embeddings": np.ones(2, np.float32)}, "must be 2-D"),
        ({"candidate_embeddings": np.full((4, 2), np.nan, np.float32)}, "8 non-finite"),
        ({"ks": [0, 5]}, "positive integers, got 0"),
        ({"ks": [2.5]}, "positive integers, got 2.5"),
        ({"ks": []}, "ks is empty"),
        ({"batch_size": 0}, "batch_size must be positive"),
        (
            {"queries": Queries(np.array(["A", "B"]), [np.array([0]), np.array([1, 4])])},
            r"positives\[1\] \(buyer B\) has candidate index 4, outside 0\.\.3",
        ),
        (
            {"queries": Queries(np.array(["A"]), [np.array([0])], [np.array([-1])])},
            r"exclude\[0\] \(buyer A\) has candidate index -1, outside 0\.\.3",
        ),
        ({"queries": Queries(np.array(["A"]), [np.array([], np.int64)])}, "no test pairs"),
    ],
)
def test_input_errors(kwargs, message):
    arguments = {
        "query_embeddings": BUYERS,
        "candidate_embeddings": CANDIDATES,
        "queries": HAND_QUERIES,
        "ks": [1],
    }
    if "queries" in kwargs and "query_embeddings" not in kwargs:
        arguments["query_embeddings"] = BUYERS[: kwargs["queries"].n_queries]
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        recall_at_k(**arguments)


def test_queries_shape_errors():
    with pytest.raises(ValueError, match="1 positives arrays for 2 buyer_ids"):
        Queries(np.array(["A", "B"]), [np.array([0])])
    with pytest.raises(ValueError, match=r"positives\[0\] must be 1-D candidate indices"):
        Queries(np.array(["A"]), [np.array([0.5])])


def test_build_queries_errors():
    with pytest.raises(ValueError, match="test has no column 'customer'"):
        build_queries(TEST, "customer", "product", CATALOGUE)
    with pytest.raises(ValueError, match="train has no column 'product'"):
        build_queries(TEST, "buyer", "product", CATALOGUE, train=TRAIN.rename(columns={"product": "item"}))
    with pytest.raises(ValueError, match=r"'product': 1 pairs name products that are not candidates.*'p3'"):
        build_queries(TEST, "buyer", "product", CATALOGUE[:3])
    with pytest.raises(ValueError, match="1 duplicated ids"):
        build_queries(TEST, "buyer", "product", np.array(["p0", "p1", "p2", "p3", "p0"]))
    with pytest.raises(ValueError, match="scores must be 1-D"):
        popularity_recall(np.ones((4, 1)), HAND_QUERIES, [1])


def test_no_tensorflow_import():
    import subprocess
    import sys

    code = "import sys, trainer.recall; print('tensorflow' in sys.modules, 'prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_threads_follow_the_cpus_this_process_may_use_not_the_machine(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 3}, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert usable_cpus() == 2
    monkeypatch.delattr("os.sched_getaffinity", raising=False)
    assert usable_cpus() == 64
