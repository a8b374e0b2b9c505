"""Transactions read as a stream (`data.streaming: true`), so the training rows are never all in memory.

`scan(spec)` is the one pass. Every piece of the transactions (a Parquet row group or a CSV file,
shards in name order, read CHUNK_ROWS rows at a time) is prepared as the in-memory path prepares the
whole table (`trainer.data.prepared`: key checks, catalogue join, casts) and split row by row, by a
hash split or a time cutoff (the same rule as `trainer.data.split_transactions`, so a row lands on
the same side either way). Its training rows are counted (`trainer.stats`: vocabularies, numeric
moments, popularity, what the data check flags); each product's latest row (the candidates), the
validation rows and the test rows are kept, being a fraction of the table. The ExperimentData it
returns has no training frame but a TrainStream, which reads the training rows again for each epoch:
the pieces in a seeded order, INTERLEAVE of them read side by side, each window of their chunks
shuffled, so memory holds one window of rows. No TensorFlow import here (trainer.stream_input feeds
the windows to tf.data).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainer.data import (
    DataError,
    ExperimentData,
    Layout,
    blame,
    concat_frames,
    csv_frames,
    cutoff_mask,
    fill_numeric,
    hash_unit,
    in_catalogue,
    joined_columns,
    layout,
    prepared,
    reading,
    unique_candidates,
)
from trainer.datasets import is_builtin, load_builtin
from trainer.errors import ExpectedError
from trainer.rules import DataSchema, data_uri_problem, streaming_split
from trainer.schema import SchemaError, read_shards, table_format
from trainer.spec import ExperimentSpec
from trainer.stats import StatsAccumulator, TrainStats
from trainer.storage import as_pattern, is_pattern, local_path, open_uri

CHUNK_ROWS = 1 << 15
"""Rows read and prepared at a time."""
INTERLEAVE = 8
"""Pieces read side by side in an epoch: a shuffle window holds a chunk of each (262,144 rows)."""
MERGE_ROWS = 1 << 17
"""Candidate rows gathered from chunks before they are merged into the latest per product (at least
as many as that holds: amortized, memory stays within twice the candidates)."""
TRAIN, VALIDATION, TEST = 0, 1, 2


@dataclass(frozen=True)
class Piece:
    """A unit of reading: a Parquet row group, or a whole CSV file or built-in table (`row_group` None),
    and its first row's position among all the transactions' rows."""

    file: str
    row_group: int | None
    first_row: int


class Source:
    """The spec's transactions as prepared chunks, each with the side (TRAIN, VALIDATION, TEST) of its rows."""

    def __init__(self, spec: ExperimentSpec, plan: Layout):
        self.spec, self.plan = spec, plan
        self.uri = spec.data.transactions
        problem = data_uri_problem(self.uri)
        if problem:
            raise DataError(f"{self.uri}: {problem}", code="data_unreadable", field="data.transactions")
        refused = next(streaming_split(spec, DataSchema()), None)
        if refused is not None:  # a spec handed over without validation
            raise DataError(refused.message, field=refused.field)
        with blame("data.transactions"):
            self.kind, self.files = self._files()
        self.columns: list[str] = []  # the transactions' own columns (of those read), once a chunk is read

    def _files(self) -> tuple[str, list[str]]:
        if is_builtin(self.uri):
            return "builtin", [self.uri]
        uri = as_pattern(self.uri)
        try:
            if not is_pattern(uri):
                return table_format(uri), [uri]
            shards = read_shards(uri)
        except SchemaError as exc:
            raise DataError(str(exc), code=exc.code) from None
        return shards.format, list(shards.files)

    def chunks(self, piece: Piece) -> Iterator[pd.DataFrame]:
        """The piece's rows, prepared, CHUNK_ROWS at a time, indexed by their rows' positions."""
        first = piece.first_row
        for chunk in self._raw(piece):
            self.columns = self.columns or list(chunk.columns)
            chunk.index = pd.RangeIndex(first, first + len(chunk))
            first += len(chunk)
            yield prepared(chunk, self.plan, self.uri, sort=False)

    def _raw(self, piece: Piece) -> Iterator[pd.DataFrame]:
        plan, file = self.plan, piece.file
        if self.kind == "builtin":
            with blame("data.transactions"), reading(file, "a built-in dataset"):
                table = load_builtin(file)
            table = table[[column for column in table.columns if column in plan.keep]]
            yield from (table.iloc[start : start + CHUNK_ROWS] for start in range(0, len(table), CHUNK_ROWS))
            return
        with blame("data.transactions"), reading(file, self.kind), open_uri(file, "rb", compression="infer") as handle:
            # string columns as Categoricals of the chunk's own values: a Python string per distinct value,
            # never one per row (a row group's dictionary would bring every value of the group to each chunk)
            if self.kind == "csv":
                yield from csv_frames(handle, file, dict.fromkeys(plan.text, "category"), plan.keep, CHUNK_ROWS)
                return
            reader = pq.ParquetFile(handle, pre_buffer=local_path(file) is None)
            names = [name for name in reader.schema_arrow.names if name in plan.keep]
            for batch in reader.iter_batches(CHUNK_ROWS, row_groups=[piece.row_group], columns=names):
                yield _encoded(batch, plan.text).to_pandas()

    def first_pass(self) -> Iterator[tuple[Piece, pd.DataFrame]]:
        """Every prepared chunk in file order, with its piece (a CSV file's rows are known only once
        read, so the pieces' first rows are found as they pass)."""
        first = 0
        for file in self.files:
            if self.kind != "parquet":
                piece = Piece(file, None, first)
                for chunk in self.chunks(piece):
                    first += len(chunk)
                    yield piece, chunk
                continue
            with blame("data.transactions"), reading(file, "parquet"), open_uri(file, "rb") as handle:
                metadata = pq.ParquetFile(handle).metadata
            for group in range(metadata.num_row_groups):
                piece = Piece(file, group, first)
                yield from ((piece, chunk) for chunk in self.chunks(piece))
                first += metadata.row_group(group).num_rows

    def sides(self, chunk: pd.DataFrame) -> np.ndarray:
        """TRAIN, VALIDATION or TEST for each row, by the rule trainer.data.split_transactions applies."""
        split, plan = self.spec.data.split, self.plan
        if split.strategy == "hash":
            test = hash_unit(chunk, plan.key, f"data.split.test_fraction:{split.seed}") < split.test_fraction
        else:
            test = cutoff_mask(chunk, split)
        sides = np.where(test, TEST, TRAIN)
        training = self.spec.training
        if training.validation_fraction > 0:
            salt = f"training.validation_fraction:{training.seed}"
            sides[~test & (hash_unit(chunk, plan.key, salt) < training.validation_fraction)] = VALIDATION
        return sides


def _encoded(batch: pa.RecordBatch, text: Collection[str]) -> pa.RecordBatch:
    """`batch` with its `text` string columns dictionary-encoded (the dictionary: this batch's values)."""
    columns = [
        column.dictionary_encode()
        if name in text and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type))
        else column
        for name, column in zip(batch.schema.names, batch.columns)
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _compact(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (some of a chunk's) holding only their own categories: what is kept of a chunk must not
    keep every value of the chunk alive."""
    categorical = [c for c in rows.columns if isinstance(rows[c].dtype, pd.CategoricalDtype)]
    return rows.assign(**{column: rows[column].cat.remove_unused_categories() for column in categorical})


@dataclass(frozen=True)
class TrainStream:
    """The training rows, read again from the source for each epoch (or for a pass over their pairs).

    `read_failures` collects what reads raised inside tf.data (trainer.stream_input), newest last.
    """

    source: Source
    pieces: tuple[Piece, ...]
    stats: TrainStats
    read_failures: list[ExpectedError] = field(default_factory=list, compare=False, repr=False)

    def windows(self, seed: int) -> Iterator[pd.DataFrame]:
        """Every training row once, in shuffled windows: the pieces in a seeded order, INTERLEAVE of them
        read side by side, each window (a chunk of each) permuted. Numbers are filled as in memory."""
        rng = np.random.default_rng(seed)
        queue = [self.pieces[i] for i in rng.permutation(len(self.pieces))]
        active: list[Iterator[pd.DataFrame]] = []
        while queue or active:
            while queue and len(active) < INTERLEAVE:
                active.append(self._train_rows(queue.pop()))
            window = []
            for rows in list(active):
                chunk = next(rows, None)
                if chunk is None:
                    active.remove(rows)
                elif len(chunk):
                    window.append(chunk)
            if window:  # a plain concat: categories that differ give object columns, no sort of their union
                rows = pd.concat(window, ignore_index=True)
                yield rows.iloc[rng.permutation(len(rows))]

    def _train_rows(self, piece: Piece) -> Iterator[pd.DataFrame]:
        for chunk in self.source.chunks(piece):
            yield fill_numeric(chunk[self.source.sides(chunk) == TRAIN], self.stats)

    def pairs(self, buyer: str, product: str, buyers: Collection[str] | None = None) -> pd.DataFrame:
        """The training rows' (buyer, product) columns, of `buyers` only when given: one pass."""
        parts = []
        for piece in self.pieces:
            for chunk in self.source.chunks(piece):
                rows = chunk.loc[self.source.sides(chunk) == TRAIN, [buyer, product]]
                parts.append(rows if buyers is None else rows[rows[buyer].isin(buyers)])
        return concat_frames(parts, keep_index=True) if parts else pd.DataFrame(columns=[buyer, product])


def scan(spec: ExperimentSpec) -> ExperimentData:
    """The spec's data in one streaming pass: what trainer.data.load_experiment_data returns, with the
    training rows counted (`stats`) and left in the source (`stream`) instead of held."""
    plan = layout(spec)
    source = Source(spec, plan)
    accumulator = StatsAccumulator(plan.types)
    candidates = _Candidates(plan) if plan.catalogue is None else None
    held: dict[int, list[pd.DataFrame]] = {VALIDATION: [], TEST: []}
    pieces: dict[Piece, None] = {}  # in file order
    n_rows = 0
    for piece, chunk in source.first_pass():
        pieces[piece] = None
        n_rows += len(chunk)
        sides = source.sides(chunk)
        accumulator.add(chunk[sides == TRAIN])
        for side, parts in held.items():
            parts.append(_compact(chunk[sides == side]))
        if candidates is not None:
            candidates.add(chunk)
    if not n_rows:
        raise DataError(f"{spec.data.transactions}: no rows (nothing but the column names)", code="no_rows",
                        field="data.transactions")
    stats = accumulator.finish()
    _check_sides(spec, source, n_rows, stats.n_rows, n_rows - stats.n_rows - sum(map(len, held[VALIDATION])))
    if candidates is None:
        found, n_before = unique_candidates(plan.catalogue, plan.product_id, plan.product_columns, None)
    else:
        found, n_before = candidates.finish(), n_rows
    test = concat_frames(held[TEST], keep_index=True)
    n_test = len(test)
    test = in_catalogue(test, found, spec)
    validation = concat_frames(held[VALIDATION], keep_index=True) if spec.training.validation_fraction > 0 else None
    return ExperimentData(
        train=None,
        validation=None if validation is None else fill_numeric(validation, stats),
        test=fill_numeric(test, stats),
        candidates=fill_numeric(found, stats),
        stats=stats,
        n_candidate_rows_before_dedup=n_before,
        n_test_rows_without_candidate=n_test - len(test),
        joined_columns=joined_columns(plan, source.columns),
        stream=TrainStream(source, tuple(pieces), stats),
    )


def _check_sides(spec: ExperimentSpec, source: Source, n_rows: int, n_train: int, n_test: int) -> None:
    """DataError, as the in-memory split gives it, when the split leaves train or test empty."""
    split = spec.data.split
    if n_test and n_train:
        return
    if split.strategy == "hash":
        key = ", ".join(source.plan.key)
        field, rule = "data.split.test_fraction", f"{split.test_fraction} of {n_rows} rows by the hash of {key}"
    else:
        field, rule = "data.split.cutoff", f"the cutoff {split.cutoff}"
    message = f"{field}: {rule} holds out {'no' if not n_test else 'every'} row"
    raise DataError(message, field=field, code="too_little_data")


class _Candidates:
    """Each product's latest row so far (trainer.data.unique_candidates over every row added), merged
    a batch of chunks at a time."""

    def __init__(self, plan: Layout):
        self.plan = plan
        self.latest: pd.DataFrame | None = None
        self.pending: list[pd.DataFrame] = []

    def add(self, chunk: pd.DataFrame) -> None:
        plan = self.plan
        time = [plan.time_column] if plan.time_column else []
        columns = list(dict.fromkeys([plan.product_id, *plan.product_columns, *time]))
        self.pending.append(self._latest(chunk[columns]))
        if sum(map(len, self.pending)) > max(len(self.latest if self.latest is not None else ()), MERGE_ROWS):
            self._merge()

    def _latest(self, rows: pd.DataFrame) -> pd.DataFrame:
        plan = self.plan
        kept = list(dict.fromkeys([*plan.product_columns, *([plan.time_column] if plan.time_column else [])]))
        return _compact(unique_candidates(rows, plan.product_id, kept, plan.time_column)[0])

    def _merge(self) -> None:
        parts = ([self.latest] if self.latest is not None else []) + self.pending
        self.latest, self.pending = self._latest(concat_frames(parts, keep_index=True)), []

    def finish(self) -> pd.DataFrame:
        self._merge()
        plan = self.plan
        return self.latest[list(dict.fromkeys([plan.product_id, *plan.product_columns]))]
