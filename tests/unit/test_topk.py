"""TopScores keeps exactly the multiset of each row's highest scores, whatever the tiles and ties."""

import numpy as np
import pytest

from trainer.topk import TopScores


def _streamed_head(scores: np.ndarray, top: int, columns: int) -> np.ndarray:
    best = TopScores(len(scores), top)
    for first in range(0, scores.shape[1], columns):
        best.add(np.ascontiguousarray(scores[:, first : first + columns]))
    return np.sort(best.head(), axis=1)


def _expected_head(scores: np.ndarray, top: int) -> np.ndarray:
    return np.sort(np.sort(scores, axis=1)[:, -top:], axis=1)


@pytest.mark.parametrize("columns", [1, 7, 32, 1000, 5000])
@pytest.mark.parametrize("top", [1, 5, 101])
def test_the_kept_scores_are_each_rows_highest_across_tiles(columns, top):
    rng = np.random.default_rng(columns)
    scores = rng.standard_normal((9, 5000)).astype(np.float32)
    scores[3] = np.sort(scores[3])  # rising scores: every chunk raises the threshold
    scores[4] = np.sort(scores[4])[::-1]  # falling: the first chunk holds them all
    assert np.array_equal(_streamed_head(scores, top, columns), _expected_head(scores, top))


def test_ties_and_excluded_scores_keep_the_same_multiset():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(6, 3000)).astype(np.float32)  # massive ties
    scores[1] = 2.0  # a collapsed model: everything alike
    scores[2, ::2] = -np.inf  # excluded candidates never count
    assert np.array_equal(_streamed_head(scores, 50, 64), _expected_head(scores, 50))


def test_a_row_with_fewer_finite_scores_than_top_is_padded_with_minus_infinity():
    scores = np.full((1, 100), -np.inf, dtype=np.float32)
    scores[0, [5, 50, 97]] = [1.0, 3.0, 2.0]
    head = _streamed_head(scores, 10, 16)
    assert list(head[0, -3:]) == [1.0, 2.0, 3.0] and np.isneginf(head[0, :-3]).all()
