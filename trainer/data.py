"""Experiment data: load tables, split them, derive the unique candidates, cast by feature type.

Tables come from built-in dataset URIs (`movielens100k://ratings`) or from CSV (`.csv`,
`.csv.gz`, `.csv.bz2`, `.csv.zst`) and Parquet (`.parquet`, `.pq`) files or shards of them (a glob
or a folder) through trainer.storage: local paths, `file://`, `memory://`, `gs://`.
No TensorFlow import here.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import warnings
import hashlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainer.datasets import is_builtin, load_builtin
from trainer.errors import ExpectedError
from trainer.memory import release_freed_memory
from trainer.rules import data_uri_problem
from trainer.schema import SchemaError, read_columns, read_shards, repeated_column, table_format
from trainer.spec import ExperimentSpec, FeatureSpec, SplitSpec, feature_paths
from trainer.stats import TEXT_TYPES, TrainStats, is_blank
from trainer.storage import StorageError, Unreachable, as_pattern, is_pattern, local_path, named, open_uri

if TYPE_CHECKING:
    from trainer.stream import TrainStream

HISTORY_LIMIT = 100  # a `history` feature holds a buyer's most recent training purchases, at most this many


class DataError(ValueError, ExpectedError):
    """Data that cannot be loaded or used; the message names the path or column at fault, so it is
    printed and logged in one line (an ExpectedError) and never retried (a ValueError).

    `field` is the spec path to blame (`data.transactions`, `product_features[0].column`) when
    known, and `code` the finding code the data check reports it under.
    """

    def __init__(self, message: str, *, field: str | None = None, code: str = "bad_data"):
        super().__init__(message)
        self.field = field
        self.code = code


@contextlib.contextmanager
def blame(field: str) -> Iterator[None]:
    """Give a DataError raised inside this block `field`, unless its raiser named one."""
    try:
        yield
    except DataError as exc:
        exc.field = exc.field or field
        raise


# --- loading -------------------------------------------------------------------------------


def load_table(
    uri: str, *, text_columns: Collection[str] = (), columns: Collection[str] | None = None, as_categories: bool = False
) -> pd.DataFrame:
    """Load a built-in dataset URI, a CSV/Parquet file or shards of one (local, file://, memory://, gs://).

    Shards (a glob, or a folder or prefix, its trailing `/` optional) must agree in format and columns
    (`trainer.schema.read_shards`); they are read in name order into one frame, indexed 0..n-1,
    wholly in memory. `text_columns` are read as strings from CSV files, so ids such as `00042`
    keep their zeros. With `columns`, only those of them the table has are read (Parquet reads
    just their column chunks, CSV parses just their fields), in the table's order; the caller
    names any that are missing. With `as_categories`, `text_columns` come back as pandas
    Categoricals, each distinct value held once (Parquet string columns are read as dictionaries,
    never as one string per row). A URI that `rules.data_uri_problem` refuses is never opened.
    Errors have code `data_unreadable` unless the shards disagree (their SchemaError's code).
    """
    uri = str(uri)
    problem = data_uri_problem(uri)
    if problem:
        raise DataError(f"{uri}: {problem}", code="data_unreadable")
    if is_builtin(uri):
        try:
            table = load_builtin(uri)
        except (ValueError, ImportError, OSError) as exc:
            raise DataError(str(exc) if uri in str(exc) else f"{uri}: {exc}", code="data_unreadable") from None
        return table if columns is None else table[[column for column in table.columns if column in columns]]
    uri = as_pattern(uri)
    try:
        if not is_pattern(uri):
            return _read_file(uri, table_format(uri), text_columns, columns, as_categories)
        shards = read_shards(uri)
    except SchemaError as exc:
        raise DataError(str(exc), code=exc.code) from None
    frames = [_read_file(file, shards.format, text_columns, columns, as_categories) for file in shards.files]
    return concat_frames(frames)


def concat_frames(frames: list[pd.DataFrame], keep_index: bool = False) -> pd.DataFrame:
    """The shards' frames one after another, indexed 0..n-1 (or keeping their index); a categorical
    column stays categorical (its categories the union of the shards'), where a plain concat would
    spell out every row."""
    for column in frames[0].columns:
        if isinstance(frames[0][column].dtype, pd.CategoricalDtype):
            parts = [frame[column] for frame in frames]
            union = pd.api.types.union_categoricals(parts, sort_categories=True).categories
            frames = [frame.assign(**{column: frame[column].cat.set_categories(union)}) for frame in frames]
    return pd.concat(frames, ignore_index=not keep_index)


def _read_file(
    uri: str, kind: str, text_columns: Collection[str], columns: Collection[str] | None, as_categories: bool
) -> pd.DataFrame:
    with reading(uri, kind), open_uri(uri, "rb", compression="infer") as handle:
        if kind == "parquet":
            schema = pq.read_schema(handle)
            handle.seek(0)
            names = None if columns is None else [name for name in schema.names if name in columns]
            # pre-buffering (parallel reads of every column chunk) only pays where reads are slow:
            # on a local file it held the chunks twice (10M rows: +0.1 GiB at the peak)
            remote = local_path(uri) is None
            dictionary = string_columns(schema, text_columns) if as_categories else []
            table = pq.read_table(handle, columns=names, read_dictionary=dictionary, pre_buffer=remote)
            return table.to_pandas(split_blocks=True, self_destruct=True)  # frees each column once converted
        rows = concat_frames(list(csv_frames(handle, uri, dict.fromkeys(text_columns, str), columns)), keep_index=True)
        categories = {column: "category" for column in text_columns if as_categories and column in rows}
        return rows.astype(categories)


def string_columns(schema: pa.Schema, columns: Collection[str]) -> list[str]:
    """Those of `columns` that `schema` holds as strings (read as dictionaries: each value once)."""
    return [field.name for field in schema if field.name in columns
            and (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))]


TRAILING = "\x00past the header"  # the name a field past the header's last one is read under
CSV_CHUNK_ROWS = 1 << 16  # a whole CSV file is read this many rows at a time, each keeping only the columns asked for


def csv_frames(
    handle: IO[bytes], uri: str, dtypes: Mapping[str, object], columns: Collection[str] | None,
    chunksize: int = CSV_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """The rows of the CSV file `handle` (at `uri`), `chunksize` at a time, indexed by their positions
    in the file: `dtypes` per column, only `columns` if given.

    A row with more fields than the header is a DataError naming it, never a value dropped: pandas'
    `usecols` ignores the fields of a longer row, so every column is parsed and the unwanted ones
    dropped per chunk. A delimiter ending every line is allowed (the empty field it makes is dropped);
    pandas would drop a value in that field silently, so it is read under a name of its own.
    """
    header, first = _first_rows(handle)
    problem = repeated_column(header)
    if problem:  # pandas would read the second as `name.1`, and the spec's `name` would mean the first
        raise DataError(f"{uri}: {problem}", code="repeated_column")
    if len(first) > len(header) + 1:
        message = f"{uri}: data row 1 has {len(first)} fields, the header names {len(header)} columns"
        raise DataError(message, code="data_unreadable")
    trailing = len(first) > len(header)
    options = {"index_col": False, "dtype": dtypes, "chunksize": chunksize}
    if trailing:
        options |= {"header": 0, "names": [*header, TRAILING], "dtype": {**dtypes, TRAILING: str}}
    with pd.read_csv(handle, **options) as chunks:
        for chunk in chunks:
            if trailing:
                past = chunk.pop(TRAILING).notna().to_numpy()
                if past.any():
                    row = int(chunk.index[past][0]) + 1
                    raise DataError(f"{uri}: data row {row} has a value past the header's {len(header)} columns",
                                    code="data_unreadable")
            yield chunk if columns is None else chunk[[column for column in chunk.columns if column in columns]]


def _first_rows(handle: IO[bytes]) -> tuple[list[str], list[str]]:
    """The header's fields and the first data row's ([] for none), read from `handle`, which is then
    rewound."""
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    rows = csv.reader(text)
    header, first = next(rows, []), next(rows, [])
    text.detach()
    handle.seek(0)
    return header, first


@contextlib.contextmanager
def reading(uri: str, kind: str) -> Iterator[None]:
    """DataError (code `data_unreadable`) naming `uri` for whatever reading it as `kind` raises, except
    storage that stopped answering (storage.Unreachable: an outage is not bad data)."""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{named(uri)}: file not found", code="data_unreadable") from None
    except Unreachable:
        raise  # an outage, not bad data: the run stops and the next one continues
    except StorageError as exc:
        raise DataError(str(exc), code="data_unreadable") from None
    except UnicodeDecodeError as exc:  # pandas' offset counts from the start of the chunk it was reading
        message = f"{uri}: is not UTF-8 text ({exc.reason}: byte {exc.object[exc.start]:#04x}); save it as UTF-8"
        raise DataError(message, code="data_unreadable") from None
    except (ValueError, OSError, ImportError, csv.Error) as exc:
        if isinstance(exc, DataError):
            raise
        detail = " ".join(str(exc).split())  # pandas' parser errors end in a newline
        raise DataError(f"{uri}: cannot be read as {kind}: {detail}", code="data_unreadable") from None


def _read(uri: str, text_columns: Collection[str], columns: Collection[str]) -> pd.DataFrame:
    """A spec's table (only `columns`), its index the row positions in the file (0 = first data
    row); DataError if empty."""
    rows = load_table(uri, text_columns=text_columns, columns=columns, as_categories=True).reset_index(drop=True)
    if rows.empty:
        raise DataError(f"{uri}: no rows (nothing but the column names)", code="no_rows")
    return rows


# --- splitting -----------------------------------------------------------------------------


def _test_size(n_rows: int, fraction: float, field: str) -> int:
    if not 0.0 < fraction < 1.0:
        raise DataError(f"{field}: must be between 0 and 1 (exclusive), got {fraction}", field=field)
    n_test = int(round(n_rows * fraction))
    if n_test < 1 or n_test >= n_rows:
        message = f"{field}: {fraction} of {n_rows} rows leaves an empty split"
        raise DataError(message, field=field, code="too_little_data")
    return n_test


def _sort_key(df: pd.DataFrame, column: str) -> pd.Series:
    """The time column as something orderable: numbers and datetimes as they are, text parsed as either."""
    field = "data.split.column"
    if column not in df.columns:
        columns = ", ".join(map(str, df.columns))
        raise DataError(f"time column {column!r} is not in the data (columns: {columns})", field=field)
    values = df[column]
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        values = _parsed_times(values, column, df.index)
    missing = values.isna().to_numpy()
    if missing.any():
        first = int(df.index[np.argmax(missing)]) + 1
        message = f"time column {column!r}: {int(missing.sum())} row(s) have no value, first at data row {first}"
        raise DataError(message, field=field)
    return values


def _parsed_times(values: pd.Series, column: str, rows: pd.Index) -> pd.Series:
    """Text times as numbers or dates, whichever more of them are; DataError naming the first value
    that is not (its row numbered as in the file)."""
    field = "data.split.column"
    try:
        with warnings.catch_warnings():  # "could not infer format": each value is then parsed on its own
            warnings.simplefilter("ignore", UserWarning)
            dates = pd.to_datetime(values, errors="coerce")
        numbers = pd.to_numeric(values, errors="coerce")
    except (ValueError, TypeError) as exc:  # e.g. dates in mixed time zones
        raise DataError(f"time column {column!r}: not numbers or dates ({exc})", field=field) from None
    parsed, kind = (numbers, "a number") if numbers.notna().sum() >= dates.notna().sum() else (dates, "a date")
    unparsed = (parsed.isna() & values.notna()).to_numpy()
    if unparsed.any():
        first = int(np.argmax(unparsed))
        value, row, count = values.iloc[first], int(rows[first]) + 1, int(unparsed.sum())
        if kind == "a date" and _is_date(value):  # pandas reads a column in the format of its first date
            model = int(np.argmax(parsed.notna().to_numpy()))
            message = (f"time column {column!r} mixes date formats: {values.iloc[model]!r} at data row "
                       f"{int(rows[model]) + 1}, {value!r} at data row {row} ({count} row(s) not in the first's "
                       "format); write every time in one format, e.g. ISO 8601 (2026-01-31T09:30:00)")
        else:
            message = (f"time column {column!r}: {value!r} at data row {row} is not {kind}, as the column's "
                       f"other values are ({count} such row(s))")
        raise DataError(message, field=field)
    return parsed


def _is_date(value: object) -> bool:
    """Whether `value` reads as a date on its own, in whatever format."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return bool(pd.to_datetime(pd.Series([value]), errors="coerce", format="mixed").notna().all())


def split_transactions(
    df: pd.DataFrame, split: SplitSpec, key: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test), each part keeping the input order and the input's index labels.

    random: a seeded permutation picks `round(len * test_fraction)` test rows. time: that many of
    the latest rows by `split.column` go to test, so every test time is >= every train time; with
    `split.cutoff`, the rows at or after the cutoff instead. hash: a row is a test row when the
    seeded hash of its `split.key` columns (default `key`) falls below `test_fraction`, so about
    that fraction is held out and a row's side follows from its own values (equal keys, same side).
    """
    if split.strategy == "time" and split.cutoff is not None:
        return _cut(df, split)
    return _split(df, split, split.test_fraction, split.seed, "data.split.test_fraction", split.key or key)


def _split(
    df: pd.DataFrame, split: SplitSpec, fraction: float, seed: int, field: str, key: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_test = _test_size(len(df), fraction, field)
    if split.strategy == "hash":
        is_test = hash_unit(df, key, f"{field}:{seed}") < fraction
        return _parts(df, is_test, field, f"{fraction} of {len(df)} rows by the hash of {', '.join(key)}")
    if split.strategy == "random":
        is_test = np.zeros(len(df), dtype=bool)
        is_test[np.random.default_rng(seed).permutation(len(df))[:n_test]] = True
    else:
        if split.column is None:
            raise DataError("data.split.column: strategy 'time' needs the time column", field="data.split.column")
        is_test = _latest(_orderable(_sort_key(df, split.column)), n_test)
    return df[~is_test], df[is_test]


def _orderable(times: pd.Series) -> np.ndarray:
    """The times as a numpy array that orders as they do (zoned dates in UTC, not as objects)."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.to_numpy()


def _latest(times: np.ndarray, n: int) -> np.ndarray:
    """A mask of the `n` latest rows by time, of rows at the same time the later ones in the file:
    what a stable sort would put last, found by a partition (no sort, no index arrays of every row)."""
    threshold = np.partition(times, len(times) - n)[len(times) - n]
    later = times > threshold
    at_threshold = np.flatnonzero(times == threshold)
    later[at_threshold[len(at_threshold) - (n - int(later.sum())) :]] = True
    return later


def _parts(df: pd.DataFrame, is_test: np.ndarray, field: str, rule: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows not flagged, rows flagged); DataError naming `field` and the `rule` if either is empty."""
    n_test = int(is_test.sum())
    if n_test == 0 or n_test == len(df):
        message = f"{field}: {rule} holds out {'no' if n_test == 0 else 'every'} row"
        raise DataError(message, field=field, code="too_little_data")
    return df[~is_test], df[is_test]


def hash_unit(df: pd.DataFrame, key: Sequence[str], salt: str) -> np.ndarray:
    """A number in [0, 1) per row from its `key` values and `salt`: equal keys give equal numbers,
    whatever the row order; other salts give independent numbers."""
    if not key:
        raise DataError("data.split.key: strategy 'hash' needs the columns that identify a row", field="data.split.key")
    with blame("data.split.key"):
        _require_columns(df, key, "data.split.key")
    hash_key = hashlib.blake2b(salt.encode(), digest_size=8).hexdigest()  # the 16 characters pandas wants
    hashed = pd.util.hash_pandas_object(df[list(key)], index=False, hash_key=hash_key).to_numpy()
    return (hashed >> np.uint64(11)) / float(2**53)


def _cut(df: pd.DataFrame, split: SplitSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows before `split.cutoff`, rows at or after it) by the time column."""
    times = _sort_key(df, split.column)
    rule = f"{split.cutoff} (times run from {times.min()} to {times.max()})"
    return _parts(df, cutoff_mask(df, split), "data.split.cutoff", rule)


def cutoff_mask(df: pd.DataFrame, split: SplitSpec) -> np.ndarray:
    """Which rows are at or after `split.cutoff` by the time column."""
    times = _sort_key(df, split.column)
    return (times >= _as_time(split.cutoff, times)).to_numpy()


def _as_time(value: str | float, times: pd.Series) -> pd.Timestamp | float:
    """`value` as the kind of thing `times` holds (a date for dates, a number for numbers)."""
    field = "data.split.cutoff"
    if pd.api.types.is_datetime64_any_dtype(times):
        try:
            cutoff = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise DataError(f"{field}: {value!r} is not a date, and the time column holds dates", field=field) from None
        zone = times.dt.tz
        if zone is not None and cutoff.tzinfo is None:
            return cutoff.tz_localize(zone)
        return cutoff if zone is not None else cutoff.tz_localize(None)
    if isinstance(value, int | float):
        return value
    try:
        return float(value)
    except (ValueError, TypeError):
        raise DataError(f"{field}: {value!r} is not a number, and the time column holds numbers", field=field) from None


# --- candidates ----------------------------------------------------------------------------


def _require_columns(df: pd.DataFrame, columns: Collection[str], where: str, uri: str | None = None) -> None:
    """DataError naming the `columns` that `df` lacks and what it has (all of `uri`'s columns,
    when `df` was read from it with only some)."""
    missing = [column for column in columns if column not in df.columns]
    if missing:
        has = df.columns
        with contextlib.suppress(SchemaError):
            has = read_columns(uri) if uri else has
        raise DataError(f"{where}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, has))})")


def unique_candidates(
    rows: pd.DataFrame, product_id: str, columns: list[str], time_column: str | None
) -> tuple[pd.DataFrame, int]:
    """One row per product id (the latest by `time_column`, else the last occurrence), sorted by id,
    each keeping its index label in `rows`.

    Returns (candidates with `product_id` first then `columns`, number of rows before de-duplication).
    """
    kept = [product_id, *dict.fromkeys(c for c in columns if c != product_id)]
    _require_columns(rows, [*kept, *([time_column] if time_column else [])], "candidates")
    n_rows = len(rows)
    if time_column:  # a product's rows at its latest time, in file order; the last of them is its latest
        times = pd.Series(_orderable(_sort_key(rows, time_column)), index=rows.index)
        latest_time = times.groupby(rows[product_id], observed=True, sort=False).transform("max")
        rows = rows[(times == latest_time).to_numpy()]
    latest = rows[kept].drop_duplicates(product_id, keep="last")
    return latest.sort_values(product_id, kind="stable"), n_rows


# --- the experiment's data -----------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentData:
    """Everything training and evaluation read, already split, de-duplicated and cast.

    Every frame's index is its rows' positions in the file they came from (0 = the first data
    row): transactions for train, validation and test; the catalogue, when given, for candidates.
    `stats` are the training rows' counts and moments (what preprocessing is fitted on). `train` is
    the training rows, or None when they are streamed (`data.streaming`): `stream` then reads them
    again for each epoch (trainer.stream). `n_test_rows_without_candidate` counts test rows dropped
    because their product is not in the catalogue (always 0 when candidates come from the
    transactions); `joined_columns` are the product columns the transactions lacked and took from
    the catalogue. Numeric values missing in a row are filled with the mean of the finite training
    values (0 when there is none); `numeric_missing` counts them per column in the training rows.
    """

    train: pd.DataFrame | None
    validation: pd.DataFrame | None
    test: pd.DataFrame
    candidates: pd.DataFrame
    stats: TrainStats
    n_candidate_rows_before_dedup: int
    n_test_rows_without_candidate: int = 0
    joined_columns: tuple[str, ...] = ()
    stream: TrainStream | None = None

    @property
    def numeric_missing(self) -> dict[str, int]:
        return {column: moments.missing for column, moments in self.stats.moments.items()}

    def train_pairs(self, buyer: str, product: str, buyers: Collection[str] | None = None) -> pd.DataFrame:
        """The training rows' (buyer, product) columns, of `buyers` only when given (a pass over the
        stream when the rows are streamed)."""
        if self.train is None:
            return self.stream.pairs(buyer, product, buyers)
        pairs = self.train[[buyer, product]]
        return pairs if buyers is None else pairs[pairs[buyer].isin(buyers)]


def feature_fields(spec: ExperimentSpec) -> Iterator[tuple[str, FeatureSpec]]:
    """(spec path of its column, feature) for every feature, buyer tower first."""
    for path, feature in feature_paths(spec):
        yield f"{path}.column", feature


def feature_field(spec: ExperimentSpec, column: str, tower: str = "") -> str:
    """The spec path of `column`'s first feature (in `tower`, e.g. "product_features", if given)."""
    return next(path for path, feature in feature_fields(spec) if feature.column == column and path.startswith(tower))


def purchase_histories(train: pd.DataFrame, buyer: str, product: str, time_column: str | None) -> pd.Series:
    """Buyer id -> their most recent HISTORY_LIMIT training purchases, as space-separated product ids
    (oldest first; by `time_column`, else in file order). A product bought twice appears twice."""
    rows = train.sort_values(time_column, kind="stable") if time_column else train
    recent = rows.groupby(buyer, sort=False).tail(HISTORY_LIMIT)
    return recent.groupby(buyer, sort=False)[product].agg(" ".join)


def with_histories(frame: pd.DataFrame, columns: Collection[str], buyer: str, histories: pd.Series) -> pd.DataFrame:
    """`frame` with each `history` column set to its buyer's purchase history ("" for a buyer who
    bought nothing in training), a Categorical: rows of one buyer share one string, so memory grows
    with buyers."""
    if not columns:
        return frame
    buyers = frame[buyer].astype("category")
    per_buyer = histories.reindex(buyers.cat.categories).fillna("").to_numpy()
    codes, spelled = pd.factorize(np.append(per_buyer, ""))  # the last one: a buyer with no id (code -1)
    values = pd.Categorical.from_codes(codes[buyers.cat.codes.to_numpy()], categories=spelled)
    return frame.assign(**{column: pd.Series(values, index=frame.index) for column in columns})


def feature_types(spec: ExperimentSpec) -> dict[str, str]:
    """Column -> feature type over both towers; DataError if one column has two types."""
    types: dict[str, str] = {}
    for path, feature in feature_fields(spec):
        if types.setdefault(feature.column, feature.type) != feature.type:
            message = f"column {feature.column!r} is declared both {types[feature.column]} and {feature.type}"
            raise DataError(message, field=path.replace(".column", ".type"))
    return types


def as_strings(values: pd.Series) -> np.ndarray:
    """`values` as a numpy array of Python strings; a Categorical's rows share its categories'
    string objects (no string is made per row)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        if codes.size == 0 or codes.min() >= 0:
            return values.cat.categories.astype(str).to_numpy(dtype=object)[codes]
    return values.astype(str).to_numpy(dtype=object)


def _spelled(values: pd.Series) -> pd.Series:
    """Strings, missing -> ''; whole-number floats (ids read as float because of gaps) lose the '.0'."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.fillna("").astype(str)
    if pd.api.types.is_float_dtype(values):
        present = values.dropna()
        if (present % 1 == 0).all():
            values = values.astype("Int64")
    return values.astype(object).where(values.notna(), "").astype(str)


def _as_text(values: pd.Series, sort: bool = True) -> pd.Series:
    """`values` as a Categorical of strings (`_spelled`), its categories sorted unless told not to: 4
    bytes a row where a string per row took ~14 (ids) to hundreds (text), and sorting it sorts the strings."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return _spelled(values).astype("category")
    spelled = _spelled(pd.Series(values.cat.categories))
    if spelled.duplicated().any():
        return _spelled(values.astype(object)).astype("category")  # two categories spell the same
    values = values.cat.rename_categories(spelled.to_numpy())
    if values.isna().any():
        values = values if "" in values.cat.categories else values.cat.add_categories([""])
        values = values.fillna("")
    if not sort:
        return values
    return values.cat.reorder_categories(values.cat.categories.sort_values())  # code point order, vectorized


def _cast_text(df: pd.DataFrame, columns: Collection[str], sort: bool = True) -> pd.DataFrame:
    return df.assign(**{column: _as_text(df[column], sort) for column in columns if column in df.columns})


def _as_numbers(df: pd.DataFrame, columns: Collection[str], where: str) -> pd.DataFrame:
    """Numeric columns as float64 (missing kept as NaN until the train means are known)."""
    out = {}
    for column in columns:
        if column in df.columns:
            try:
                out[column] = pd.to_numeric(df[column]).astype("float64")
            except (ValueError, TypeError):
                raise DataError(f"{where}: {_non_numeric(df, column)}") from None
    return df.assign(**out)


def _non_numeric(df: pd.DataFrame, column: str) -> str:
    """What is not a number in `df[column]` (rows numbered as in the file): how many, the first and its row."""
    values = df[column]
    bad = (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy()
    first = int(np.argmax(bad))
    return (f"numeric column {column!r} has {int(bad.sum())} value(s) that are not numbers, first "
            f"{values.iloc[first]!r} at data row {int(df.index[first]) + 1}")


def _fill_numeric(df: pd.DataFrame, means: dict[str, float]) -> pd.DataFrame:
    return df.assign(**{c: df[c].fillna(m).astype("float32") for c, m in means.items() if c in df.columns})


def _require_ids(df: pd.DataFrame, keys: Mapping[str, str], where: str) -> None:
    """Every row of `df` (numbered as in the file) has each key column (column -> spec path)."""
    for column, path in keys.items():
        blank = is_blank(df[column])
        if blank.any():
            first = int(df.index[blank][0]) + 1
            message = f"{where}: column {column!r} is blank in {int(blank.sum())} row(s), first at data row {first}"
            raise DataError(message, field=path, code="blank_ids")


@dataclass(frozen=True)
class Layout:
    """What a spec reads from its transactions and how: the kept columns by feature type, the split's
    key, the buyer and product key columns (column -> spec path), and the catalogue to join."""

    types: dict[str, str]
    history: list[str]
    text: list[str]
    numeric: list[str]
    keep: list[str]
    key: list[str]
    keys: dict[str, str]
    time_column: str | None
    product_columns: list[str]
    catalogue: pd.DataFrame | None = None
    joined: tuple[str, ...] = ()

    @property
    def buyer_id(self) -> str:
        return next(iter(self.keys))

    @property
    def product_id(self) -> str:
        return list(self.keys)[1]


def layout(spec: ExperimentSpec) -> Layout:
    """The spec's Layout, its catalogue (`data.products`) read, checked and cast when there is one."""
    types = feature_types(spec)
    history = [column for column, kind in types.items() if kind == "history"]
    types = {column: kind for column, kind in types.items() if kind != "history"}  # derived after the split
    text = [column for column, kind in types.items() if kind in TEXT_TYPES]
    numeric = [column for column, kind in types.items() if kind == "numeric"]
    product_id, buyer_id = spec.product_id_column, spec.buyer_id_column
    if product_id is None or buyer_id is None:
        raise DataError("buyer_features and product_features: each tower needs at least one feature")
    product_columns = list(dict.fromkeys(feature.column for feature in spec.product_features))
    split = spec.data.split
    time_column = split.column if split.column else None
    keep = [*types, *([time_column] if time_column and time_column not in types else [])]
    key = split.key or [buyer_id, product_id, *([time_column] if time_column else [])]
    keep += [column for column in key if column not in keep]
    keys = {buyer_id: feature_field(spec, buyer_id, "buyer_features")}
    keys[product_id] = feature_field(spec, product_id, "product_features")
    plan = Layout(types, history, text, numeric, keep, key, keys, time_column, product_columns)
    if not spec.data.products:
        return plan
    catalogue_uri = spec.data.products
    with blame("data.products"):
        catalogue = _read(catalogue_uri, text, product_columns)
        _require_columns(catalogue, product_columns, catalogue_uri, catalogue_uri)
        _require_ids(catalogue, {product_id: keys[product_id]}, catalogue_uri)
        catalogue = _as_numbers(_cast_text(catalogue, text), numeric, catalogue_uri)
    return dataclasses.replace(plan, catalogue=catalogue)


def prepared(rows: pd.DataFrame, plan: Layout, source: str, sort: bool = True) -> pd.DataFrame:
    """Transaction rows (all of them, or a piece of a stream) checked, joined with the catalogue's
    product columns and cast by feature type, keeping their index (their rows' file positions); a
    stream's pieces need not `sort` their categories (nothing orders rows by a piece's categories)."""
    with blame("data.transactions"):
        _require_columns(rows, plan.keys, source, source)
        _require_ids(rows, plan.keys, source)
    if plan.catalogue is not None:
        product_id = plan.product_id
        joined = [column for column in plan.product_columns if column not in rows.columns]
        latest = plan.catalogue.drop_duplicates(product_id, keep="last")[[product_id, *joined]]
        index = rows.index
        rows = _cast_text(rows, [product_id]).merge(latest, on=product_id, how="left")  # keeps the rows' order
        rows.index = index
    with blame("data.transactions"):
        _require_columns(rows, plan.keep, source, source)
        return _as_numbers(_cast_text(rows[plan.keep], plan.text, sort), plan.numeric, source)


def joined_columns(plan: Layout, columns: Collection[str]) -> tuple[str, ...]:
    """The product columns the transactions (with `columns`) take from the catalogue."""
    if plan.catalogue is None:
        return ()
    return tuple(column for column in plan.product_columns if column not in columns)


def load_experiment_data(spec: ExperimentSpec) -> ExperimentData:
    """Load, join, split and cast the spec's data.

    Transactions are read from `data.transactions`. With `data.products` (which must have every
    product feature column), the product feature columns the transactions lack are joined from
    the catalogue on the product id, candidates are the catalogue's unique products (its last row
    per id), and test rows whose product is not in the catalogue are dropped and counted.
    Without it, candidates are the unique products of all transactions (the latest row per
    product by `data.split.column` when set, else the last occurrence).

    `training.validation_fraction` > 0 carves a validation set from train (same strategy as the
    test split, seeded by `training.seed`); test rows are never used for it.

    Columns are cast by feature type: id/categorical/text become strings (missing -> ""), held as
    Categoricals with sorted categories (`_as_text`: each distinct string once, 4 bytes a row),
    numeric become float32 with missing values filled by the mean of the finite training values
    (0 when there is none). Only the spec's feature columns (and the split's time column) are kept.
    A `history` feature's column is not read but derived from the training rows only (after the
    split and any validation carve): every row, train, validation or test, gets its buyer's
    training purchases (`purchase_histories`), so nothing from a held-out row reaches a query.

    DataError (with its `field` and `code`) for what leaves no data to check: a table that cannot
    be read or has no rows, a missing column, a blank buyer or product key, a split that would be
    empty. Faults in the values (non-finite numbers, blank ids, too little data) are the data
    check's findings: see `trainer.datacheck`.
    """
    if spec.data.streaming:
        from trainer.stream import scan  # the streamed path: the same preparation, a piece at a time

        return scan(spec)
    plan = layout(spec)
    source = spec.data.transactions
    with blame("data.transactions"):
        rows = _read(source, plan.text, plan.keep)
    joined = joined_columns(plan, rows.columns)
    rows = prepared(rows, plan, source)
    product_id, buyer_id, time_column = plan.product_id, plan.buyer_id, plan.time_column
    if plan.catalogue is not None:
        candidates, n_before = unique_candidates(plan.catalogue, product_id, plan.product_columns, None)
    else:
        candidates, n_before = unique_candidates(rows, product_id, plan.product_columns, time_column)

    split = spec.data.split
    train, test = split_transactions(rows, split, plan.key)
    del rows  # its copies in train and test are all that is needed from here (0.12 GiB at 3M rows, ad hoc probe)
    validation = None
    if spec.training.validation_fraction > 0:
        fraction, seed = spec.training.validation_fraction, spec.training.seed
        train, validation = _split(train, split, fraction, seed, "training.validation_fraction", plan.key)

    n_test = len(test)
    test = in_catalogue(test, candidates, spec)
    stats = TrainStats.of(train, plan.types)
    history = plan.history
    histories = purchase_histories(train, buyer_id, product_id, time_column) if history else pd.Series(dtype=object)

    def finish(frame: pd.DataFrame) -> pd.DataFrame:
        return with_histories(fill_numeric(frame, stats), history, buyer_id, histories)

    data = ExperimentData(
        train=finish(train),
        validation=None if validation is None else finish(validation),
        test=finish(test),
        candidates=fill_numeric(candidates, stats),
        stats=stats,
        n_candidate_rows_before_dedup=n_before,
        n_test_rows_without_candidate=n_test - len(test),
        joined_columns=joined,
    )
    release_freed_memory()
    return data


def in_catalogue(test: pd.DataFrame, candidates: pd.DataFrame, spec: ExperimentSpec) -> pd.DataFrame:
    """The test rows whose product is a candidate; DataError if none is."""
    n_test = len(test)
    test = test[test[spec.product_id_column].isin(candidates[spec.product_id_column])]
    if test.empty:
        message = f"{spec.data.products}: none of the {n_test} test rows has its product in the catalogue"
        raise DataError(message, field="data.products")
    return test


def fill_numeric(frame: pd.DataFrame, stats: TrainStats) -> pd.DataFrame:
    """`frame`'s numeric columns as float32, missing values filled with the training mean."""
    return _fill_numeric(frame, {column: moments.mean for column, moments in stats.moments.items()})
