"""recall on a TensorFlow device equals trainer.recall's, ties and exclusions included (run here on the CPU
device; evaluation takes this path on a GPU)."""

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import pytest
from test_recall import BUYERS, CANDIDATES, HAND_EXCLUDE, HAND_EXPECTED_EXCLUDED, HAND_QUERIES, _random_case

from trainer.device_recall import recall_on_device
from trainer.recall import Queries, recall_at_k


def test_the_hand_example_with_exclusion_ranks_the_same_on_a_device():
    queries = Queries(HAND_QUERIES.buyer_ids, HAND_QUERIES.positives, HAND_EXCLUDE)
    assert recall_on_device(BUYERS, CANDIDATES, queries, [1, 2, 3, 4], "/CPU:0") == pytest.approx(
        HAND_EXPECTED_EXCLUDED)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_give_identical_recall_in_batches_of_any_size(seed):
    q, c, queries = _random_case(seed, n_queries=57, n_candidates=300, dim=4, integer=True)
    ks = [1, 5, 10, 50]
    expected = recall_at_k(q, c, queries, ks)
    assert recall_on_device(q, c, queries, ks, "/CPU:0") == expected
    assert recall_on_device(q, c, queries, ks, "/CPU:0", max_batch_bytes=4 * 300 * 5) == expected


def test_float_scores_agree_within_rounding():
    q, c, queries = _random_case(3, n_queries=200, n_candidates=2000, dim=16)
    ks = [5, 10, 100]
    on_device = recall_on_device(q, c, queries, ks, "/CPU:0")
    assert on_device == pytest.approx(recall_at_k(q, c, queries, ks), abs=1 / queries.n_pairs)
