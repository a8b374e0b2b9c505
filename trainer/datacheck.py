"""The data check: what is wrong with a spec's data, named as findings before the first epoch.

One cheap pass over the loaded columns (trainer.data) finds what would make training or its
evaluation meaningless: non-finite numbers, blank ids, an all-missing numeric column, too few
training rows or test pairs, test buyers and products never seen in training (cold start).
Findings are `trainer.rules.Finding`s with field paths into the spec, the same wherever the check
runs: `towerflow validate --data`, the flow's data-check task, `run_attempt`. No TensorFlow or
Prefect import here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import astuple

import numpy as np
import pandas as pd

from trainer.data import DataError, ExperimentData, feature_field, feature_fields
from trainer.scanned import experiment_data
from trainer.stats import Flagged, beyond_float32, is_blank
from trainer.rules import Finding, error, warning
from trainer.spec import ExperimentSpec

__all__ = ["BadDataError", "check_data", "check_loaded", "raise_for_errors"]

# Cold start is warned about from this share of test rows on: a few first-time buyers are normal
# (0.1-0.4% in the examples); a test split the model mostly never saw is not.
COLD_START_SHARE = 0.01


class BadDataError(DataError):
    """The data check found errors (in `findings`); the message is `bad data: <field>: <message>; ...`.

    A DataError, so whatever refuses to retry bad data refuses this too.
    """

    def __init__(self, message: str, findings: Sequence[Finding] = ()):
        first = findings[0] if findings else None
        super().__init__(message, field=first.field if first else None, code=first.code if first else "bad_data")
        self.findings = list(findings)


def check_data(spec: ExperimentSpec, scan: str | None = None) -> tuple[ExperimentData | None, list[Finding]]:
    """Load the spec's data and check it: (the data, findings), or (None, [the error]) if it cannot be loaded.
    A streamed spec's pass is kept in (or reused from) the directory `scan` when given (trainer.scanned)."""
    try:
        data = experiment_data(spec, scan)
    except DataError as exc:
        field = exc.field or "data.transactions"
        return None, [error(exc.code, field, str(exc).removeprefix(f"{field}: "))]
    return data, check_loaded(spec, data)


def check_loaded(spec: ExperimentSpec, data: ExperimentData) -> list[Finding]:
    """Every finding about data already loaded by `trainer.data.load_experiment_data`."""
    return [
        *_non_finite(spec, data),
        *_blank_ids(spec, data),
        *_padded_ids(spec, data),
        *_all_missing(spec, data),
        *_too_little(spec, data),
        *_cold_start(spec, data),
        *_outside_catalogue(spec, data),
        *_ks_past_the_candidates(spec, data),
        *_mixed_time_units(spec, data),
    ]


def raise_for_errors(findings: Sequence[Finding]) -> None:
    """BadDataError naming every error finding, if there is one."""
    errors = [finding for finding in findings if finding.severity == "error"]
    if errors:
        raise BadDataError("bad data: " + "; ".join(f"{f.field}: {f.message}" for f in errors), errors)


# --- the checks --------------------------------------------------------------------------------


def _features(spec: ExperimentSpec, kind: str) -> Iterator[tuple[str, str]]:
    """(spec path, column) of each column of feature type `kind`, at its first feature."""
    seen = set()
    for path, feature in feature_fields(spec):
        if feature.type == kind and feature.column not in seen:
            seen.add(feature.column)
            yield path, feature.column


def _sources(spec: ExperimentSpec, data: ExperimentData, column: str) -> Iterator[tuple[str, Flagged, list[pd.Series]]]:
    """(file, what the training rows' statistics flag in the column, the column's loaded values in
    other parts, each indexed by file row) for each file the column came from.

    The transactions (the training rows as counted, the validation and test rows as loaded), unless
    the column was joined from the catalogue; the catalogue (its candidate rows), for a product
    column when there is one.
    """
    if column not in data.joined_columns:
        held = [frame[column] for frame in (data.validation, data.test) if frame is not None]
        yield spec.data.transactions, data.stats.flagged.get(column, Flagged()), held
    if spec.data.products and column in data.candidates.columns:
        yield spec.data.products, Flagged(), [data.candidates[column]]


def _flagged(train: Flagged, parts: list[pd.Series], flag: Callable[[pd.Series], np.ndarray]) -> Flagged:
    """`train`'s flags and the values `flag` marks in the other parts, part by part (the parts are
    never copied into one column)."""
    for values in parts:
        train = train.merge(Flagged.of(values, flag(values)))
    return train


def _non_finite(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    for path, column in _features(spec, "numeric"):
        for uri, train, parts in _sources(spec, data, column):
            count, first = astuple(_flagged(train, parts, beyond_float32))
            if count:
                yield error(
                    "non_finite_values",
                    path,
                    f"column {column!r} has {count} non-finite value(s) (inf, -inf, or too large for "
                    f"float32) in {uri}, first at data row {first}",
                    "fix or drop those rows: a model fed them diverges whatever its learning rate",
                )


def _blank_ids(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    for path, column in _features(spec, "id"):
        for uri, train, parts in _sources(spec, data, column):
            count, first = astuple(_flagged(train, parts, is_blank))
            if count:
                yield error(
                    "blank_ids",
                    path,
                    f"id column {column!r} is blank (missing or whitespace only) in {count} row(s) of "
                    f"{uri}, first at data row {first}",
                    "fill in the ids or drop those rows: a blank id would be learned as one real buyer or product",
                )


def _padded_ids(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    """Ids with spaces around them in the training rows: ' c1' and 'c1' are two ids to the model."""
    for path, column in _features(spec, "id"):
        counts = data.stats.counts.get(column)
        if counts is None or counts.empty:
            continue
        values = counts.index.astype(str)
        stripped = values.str.strip()
        padded = (values != stripped) & (stripped != "")
        if not padded.any():
            continue
        twins = int(stripped[padded].isin(values[~padded]).sum())
        yield warning(
            "padded_ids",
            path,
            f"id column {column!r} has {int(padded.sum())} value(s) with spaces around them in "
            f"{int(counts[padded].sum())} training row(s) (e.g. {values[padded][0]!r}); {twins} of them also "
            "occur without the spaces, each learned as a second id",
            "strip the spaces from the ids where the data is written",
        )


def _all_missing(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    n_train = data.stats.n_rows
    for path, column in _features(spec, "numeric"):
        if n_train and data.numeric_missing.get(column) == n_train:
            yield warning(
                "all_missing_numeric",
                path,
                f"numeric column {column!r} has no value in any of the {n_train} training rows: it is filled with 0 "
                "and tells the model nothing",
                f"fill the column or remove the feature at {path.removesuffix('.column')}",
            )


def _too_little(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    limits = spec.validation
    n_train = data.stats.n_rows
    n_rows = n_train + len(data.test) + data.n_test_rows_without_candidate
    n_rows += 0 if data.validation is None else len(data.validation)
    if n_train < limits.min_train_rows:
        yield error(
            "too_few_train_rows",
            "data.transactions",
            f"{spec.data.transactions}: {n_rows} row(s) leave {n_train} for training, fewer than "
            f"validation.min_train_rows ({limits.min_train_rows})",
            "more data; or lower validation.min_train_rows if a toy run is meant",
        )
    pairs = len(data.test[[spec.buyer_id_column, spec.product_id_column]].drop_duplicates())
    if pairs < limits.min_test_pairs:
        yield error(
            "too_few_test_pairs",
            "data.transactions",
            f"{spec.data.transactions}: the test split has {pairs} unique (buyer, product) pair(s), fewer than "
            f"validation.min_test_pairs ({limits.min_test_pairs}): recall over so few says nothing",
            "more data or a larger data.split.test_fraction; or lower validation.min_test_pairs",
        )


def _cold_start(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    n_test = len(data.test)
    for tower, noun, column in (
        ("product_features", "products", spec.product_id_column),
        ("buyer_features", "buyers", spec.buyer_id_column),
    ):
        test_ids = data.test[column]
        # against the distinct training ids: isin over the whole column converts every row to an object (+0.3 GiB at 1M)
        cold_rows = ~test_ids.isin(data.stats.counts[column].index).to_numpy()
        rows = int(cold_rows.sum())
        if not rows or rows < COLD_START_SHARE * n_test:
            continue
        n_ids, n_cold = test_ids.nunique(), test_ids[cold_rows].nunique()
        yield warning(
            f"cold_start_{noun}",
            feature_field(spec, column, tower),
            f"{n_cold} of {n_ids} test {noun} ({n_cold / n_ids:.1%}) never occur in training; they are in {rows} of "
            f"{n_test} test rows ({rows / n_test:.1%}): the model knows them only by their other features",
            "a time split keeps this realistic; a random split with more history per buyer and product lowers it",
        )


def _outside_catalogue(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    """Transactions whose product the catalogue lacks: trained on, never retrievable, and their test rows
    left out of recall; worth a word once they are 1% of the training or test rows."""
    if not spec.data.products:
        return
    column = spec.product_id_column
    trained = data.stats.counts[column]
    outside = trained[~trained.index.isin(data.candidates[column])]
    n_train, rows = data.stats.n_rows, int(outside.sum())
    dropped = data.n_test_rows_without_candidate
    n_test = len(data.test) + dropped
    if not n_train or rows < COLD_START_SHARE * n_train and dropped < COLD_START_SHARE * n_test:
        return
    example = f" (e.g. {outside.index[0]!r})" if len(outside) else ""
    yield warning(
        "products_outside_catalogue",
        "data.products",
        f"{rows} of {n_train} training rows ({rows / n_train:.1%}) and {dropped} of {n_test} test rows "
        f"({dropped / n_test:.1%}) buy products that {spec.data.products} lacks{example}: the model can never "
        "retrieve them, and those test rows are left out of recall",
        "add them to the catalogue, or check that both files write the product ids the same way",
    )


def _ks_past_the_candidates(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    """ks that rank every candidate: recall there is 1 for any model, and says nothing."""
    n_candidates = len(data.candidates)
    ks = [k for k in spec.evaluation.ks if k >= n_candidates]
    if ks:
        named = ", ".join(f"@{k}" for k in ks)
        verb = "ranks" if len(ks) == 1 else "rank"
        yield warning(
            "ks_past_the_candidates",
            "evaluation.ks",
            f"{named} {verb} all {n_candidates} candidates: recall there is 1 for any model, popularity's too",
            f"ks below {n_candidates}",
        )


EPOCH_UNITS = (("seconds", 1e8), ("milliseconds", 1e11), ("microseconds", 1e14), ("nanoseconds", 1e17))
"""The least value of a time since 1970 in each unit, from 1973 on: in seconds 1e8 is 1973, in milliseconds 1e11."""


def _mixed_time_units(spec: ExperimentSpec, data: ExperimentData) -> Iterator[Finding]:
    """A numeric time column whose times since 1970 are written in more than one unit: ordered as numbers,
    the finer unit's rows all come last, so a time split puts them all in test."""
    column = spec.data.split.column
    frames = [frame for frame in (data.train, data.validation, data.test) if frame is not None]
    if not column or not all(column in f.columns and pd.api.types.is_numeric_dtype(f[column]) for f in frames):
        return
    found: dict[str, tuple[int, float, int]] = {}  # unit -> (rows, an example, its data row)
    for frame in frames:
        values = frame[column].to_numpy(dtype=np.float64)
        units = np.searchsorted([least for _, least in EPOCH_UNITS], values, side="right") - 1
        units[~np.isfinite(values)] = -1  # a missing time is not a unit
        for index in np.unique(units[units >= 0]):
            unit = EPOCH_UNITS[index][0]
            at = np.flatnonzero(units == index)
            rows, example, row = found.get(unit, (0, values[at[0]], int(frame.index[at[0]]) + 1))
            found[unit] = (rows + at.size, example, row)
    if len(found) < 2:
        return
    said = ", ".join(f"{rows} row(s) in {unit} (e.g. {example:.0f} at data row {row})"
                     for unit, (rows, example, row) in found.items())
    yield warning(
        "mixed_time_units",
        "data.split.column",
        f"time column {column!r} seems to count time since 1970 in more than one unit: {said}; ordered as numbers, "
        "the finer unit's rows all come last, and a time split puts them in test",
        "write every time in one unit (or as ISO 8601 text)",
    )
