"""The k highest scores of each row, kept while score tiles stream past (numba, no TensorFlow).

`TopScores` holds, per query row, a small buffer of candidate scores and a threshold: the lowest
of the `top` highest scores seen so far. A tile's row is scanned in chunks; a chunk with nothing
above the threshold (almost all of them, once the threshold has risen) costs one vectorised
comparison, so ranking adds about one cheap pass over scores that are still in cache, instead of a
partition of every full row. The kernel releases the GIL, so query batches rank in parallel threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CHUNK = 32
"""Scores compared at once before any is kept: wide enough to vectorise, narrow enough that a chunk
holding a high score rarely holds many ordinary ones."""


@njit(nogil=True, cache=True, inline="always")
def _above(row: np.ndarray, first: int, last: int, threshold: np.float32) -> int:
    count = 0
    for j in range(first, last):
        count += row[j] > threshold
    return count


@njit(nogil=True, cache=True)
def _select_highest(values: np.ndarray, size: int, top: int) -> np.float32:
    """Move the `top` highest of values[:size] into values[:top] (in no order; quickselect, descending)
    and return the lowest of them. Hand-written, like the loops here: numba's np.partition and slice
    arithmetic take seconds to compile."""
    lo, hi, k = 0, size - 1, top - 1
    while lo < hi:
        a, b, c = values[lo], values[(lo + hi) // 2], values[hi]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi
        while i <= j:
            while values[i] > pivot:
                i += 1
            while values[j] < pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    lowest = values[0]
    for j in range(1, top):
        lowest = min(lowest, values[j])
    return lowest


@njit(nogil=True, cache=True)
def _keep(tile: np.ndarray, kept: np.ndarray, sizes: np.ndarray, thresholds: np.ndarray, top: int) -> None:
    """Add each row of `tile` to its buffer in `kept`: every score above the row's threshold is kept,
    and a full buffer is cut back to its `top` highest, raising the threshold to the lowest of them."""
    capacity = kept.shape[1]
    for r in range(tile.shape[0]):
        row, buffer, size, threshold = tile[r], kept[r], sizes[r], thresholds[r]
        for first in range(0, tile.shape[1], CHUNK):
            last = min(first + CHUNK, tile.shape[1])
            if _above(row, first, last, threshold) == 0:
                continue
            if size + CHUNK > capacity:
                threshold = _select_highest(buffer, size, top)
                size = top
            for j in range(first, last):  # branch-free: write every score, advance past the kept ones
                buffer[size] = row[j]
                size += row[j] > threshold
        sizes[r], thresholds[r] = size, threshold


@njit(nogil=True, cache=True)
def _head(kept: np.ndarray, sizes: np.ndarray, head: np.ndarray) -> None:
    top = head.shape[1]
    for r in range(len(sizes)):
        size = sizes[r]
        if size > top:
            _select_highest(kept[r], size, top)
            size = top
        for j in range(size):
            head[r, j] = kept[r, j]


class TopScores:
    """The `top` highest scores of each of `rows` rows, over tiles of their columns given in any order.

    Scores equal to the threshold are not kept: they cannot change the multiset of the `top` highest
    values, which is all `head` promises (rows with fewer than `top` finite scores are padded with -inf).
    """

    def __init__(self, rows: int, top: int):
        self.top = top
        self.kept = np.empty((rows, 4 * top + CHUNK), dtype=np.float32)
        self.sizes = np.zeros(rows, dtype=np.int64)
        self.thresholds = np.full(rows, -np.inf, dtype=np.float32)

    def add(self, tile: np.ndarray) -> None:
        """Take a (rows x columns) float32 C-contiguous tile of scores."""
        _keep(tile, self.kept, self.sizes, self.thresholds, self.top)

    def head(self) -> np.ndarray:
        """(rows x top) array: each row's `top` highest scores, in no particular order."""
        head = np.full((len(self.sizes), self.top), -np.inf, dtype=np.float32)
        _head(self.kept, self.sizes, head)
        return head
