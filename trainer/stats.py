"""What preprocessing is fitted on: the training rows' counts per value and numeric moments.

`TrainStats.of(frame, types)` counts a frame at once; a `StatsAccumulator` counts the same rows a
piece at a time as a stream passes them (trainer.stream), and gives the same statistics: counts
summed, moments merged exactly (Chan et al.'s pairwise update), so the streamed and in-memory paths
fit the same vocabularies, normalizations and sampling probabilities. No TensorFlow import here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MERGE_VALUES = 1 << 17
"""Per-chunk counts gathered before they are summed (at least as many as the sum so far holds:
amortized, memory stays within twice the vocabulary)."""
TEXT_TYPES = ("id", "categorical", "text")
"""Feature types whose values are strings counted per value."""


def is_blank(values: pd.Series) -> np.ndarray:
    """Which values are missing, empty or only whitespace (for an id: no id at all); a categorical
    column is tested on its categories, never spelled out row by row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        blank_category = np.append(values.cat.categories.astype(str).str.strip() == "", True)  # code -1: missing
        return blank_category[values.cat.codes.to_numpy()]
    return (values.isna() | values.astype(str).str.strip().eq("")).to_numpy()


def value_counts(values: pd.Series) -> pd.Series:
    """Rows per value (the values as strings, those present only); a Categorical is counted by its
    codes, never spelled out row by row."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        counts = values.astype(str).value_counts(sort=False)
        return counts.set_axis(counts.index.astype(object))
    counts = values.value_counts(sort=False)
    counts = counts[counts > 0]
    # Python strings, not Arrow's: summing a stream's counts hashes them, and Arrow's are hashed by converting
    return pd.Series(counts.to_numpy(), index=pd.Index(counts.index.astype(str), dtype=object, name=values.name))


def tokens_of(counts: pd.Series) -> pd.Series:
    """Rows per whitespace-separated token, from rows per text (`counts`): a token twice in a text counts
    twice, and each distinct text is split once."""
    per_text = pd.DataFrame({"token": counts.index.str.split(), "rows": counts.to_numpy()}).explode("token")
    return per_text.dropna().groupby("token")["rows"].sum()


@dataclass(frozen=True)
class Moments:
    """A numeric column's finite values (count, mean, sum of squared deviations) and its missing (NaN) count."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    missing: int = 0

    @classmethod
    def of(cls, values: pd.Series | np.ndarray) -> Moments:
        numbers = np.asarray(values, dtype=np.float64)
        finite = numbers[np.isfinite(numbers)]
        if not finite.size:
            return cls(missing=int(np.isnan(numbers).sum()))
        mean = float(finite.mean())
        with np.errstate(over="ignore"):  # numbers past float32 are the data check's to name
            m2 = float(((finite - mean) ** 2).sum())
        return cls(finite.size, mean, m2, int(np.isnan(numbers).sum()))

    def merge(self, other: Moments) -> Moments:
        count = self.count + other.count
        if not count:
            return Moments(missing=self.missing + other.missing)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Moments(count, mean, m2, self.missing + other.missing)

    @property
    def variance(self) -> float:
        """The variance of the finite values (1.0 when there is none)."""
        return self.m2 / self.count if self.count else 1.0


@dataclass(frozen=True)
class Flagged:
    """Values a data check flags in a column: how many, and the data row of the first (1 = the first
    row after any header; None when there is none)."""

    count: int = 0
    first: int | None = None

    @classmethod
    def of(cls, values: pd.Series, flags: np.ndarray) -> Flagged:
        """`flags` (one per value of `values`, whose index holds the rows' positions in their file)."""
        if not flags.any():
            return cls()
        return cls(int(flags.sum()), int(values.index[flags].min()) + 1)

    def merge(self, other: Flagged) -> Flagged:
        firsts = [row for row in (self.first, other.first) if row is not None]
        return Flagged(self.count + other.count, min(firsts) if firsts else None)


def beyond_float32(values: pd.Series) -> np.ndarray:
    """Which numbers are infinite or too large for float32 (missing ones are not)."""
    return np.abs(values.to_numpy(dtype=np.float64)) > np.finfo(np.float32).max


@dataclass(frozen=True)
class TrainStats:
    """Training rows, rows per value of each string column (values as strings, those present only),
    the moments of each numeric column, and what the data check flags in the training rows: blank
    values of each id column, numbers beyond float32 in each numeric column."""

    n_rows: int
    counts: Mapping[str, pd.Series] = field(default_factory=dict)
    moments: Mapping[str, Moments] = field(default_factory=dict)
    flagged: Mapping[str, Flagged] = field(default_factory=dict)

    @classmethod
    def of(cls, frame: pd.DataFrame, types: Mapping[str, str]) -> TrainStats:
        """The statistics of `frame`'s columns named in `types` (column -> feature type) that it has."""
        accumulator = StatsAccumulator(types)
        accumulator.add(frame)
        return accumulator.finish()

    def __contains__(self, column: str) -> bool:
        return column in self.counts or column in self.moments

    def token_counts(self, column: str) -> pd.Series:
        """Rows per whitespace-separated token of text `column`."""
        return tokens_of(self.counts[column])


class StatsAccumulator:
    """TrainStats of rows added a frame at a time. Counts are merged in batches, not per frame, so a
    vocabulary of millions is not re-added for every frame."""

    def __init__(self, types: Mapping[str, str]):
        self.text = [column for column, kind in types.items() if kind in TEXT_TYPES]
        self.numeric = [column for column, kind in types.items() if kind == "numeric"]
        self.ids = [column for column, kind in types.items() if kind == "id"]
        self.n_rows = 0
        self._counts: dict[str, list[pd.Series]] = {}
        self._moments: dict[str, Moments] = {}
        self._flagged: dict[str, Flagged] = {}

    def add(self, frame: pd.DataFrame) -> None:
        self.n_rows += len(frame)
        for column in self.text:
            if column in frame.columns:
                pending = self._counts.setdefault(column, [])
                pending.append(value_counts(frame[column]))
                if sum(map(len, pending[1:])) > max(len(pending[0]), MERGE_VALUES):
                    self._counts[column] = [_summed(pending)]
        for column in self.numeric:
            if column in frame.columns:
                self._moments[column] = self._moments.get(column, Moments()).merge(Moments.of(frame[column]))
                self._flag(column, frame[column], beyond_float32)
        for column in self.ids:
            if column in frame.columns:
                self._flag(column, frame[column], is_blank)

    def _flag(self, column: str, values: pd.Series, flags: Callable[[pd.Series], np.ndarray]) -> None:
        self._flagged[column] = self._flagged.get(column, Flagged()).merge(Flagged.of(values, flags(values)))

    def finish(self) -> TrainStats:
        counts = {column: _summed(parts) for column, parts in self._counts.items()}
        return TrainStats(self.n_rows, counts, dict(self._moments), dict(self._flagged))


def _summed(parts: Iterable[pd.Series]) -> pd.Series:
    parts = list(parts)
    if len(parts) == 1:
        return parts[0]
    total = pd.concat(parts).groupby(level=0, sort=False).sum()
    return total.set_axis(pd.Index(total.index, dtype=object, name=parts[0].index.name))  # as value_counts gives
