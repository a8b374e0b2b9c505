"""What a spec's data URI holds, read cheaply: its files, their format and their columns (a
Parquet footer or a CSV header, never the rows).

A data URI is one file, a built-in dataset, or shards: a glob (`gs://bucket/tx/part-*.parquet`)
or a folder or prefix (its trailing `/` optional), whose files must share one format and one schema.
Built-in datasets (`movielens100k://`, `synthetic-retail://`) declare their columns, so they are
neither downloaded nor generated. Files are opened through trainer.storage: local paths, `file://`,
`memory://`, `gs://`.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from urllib.parse import urlsplit

from trainer.datasets import builtin_columns, is_builtin
from trainer.rules import DataSchema, Finding, data_uri_problem
from trainer.spec import ExperimentSpec, feature_paths
from trainer.storage import StorageError, as_pattern, expand, is_pattern, local_path, named, open_uri
from trainer.vocabulary import VocabularyError, read_vocabulary

FORMATS = {".csv": "csv", ".csv.gz": "csv", ".csv.bz2": "csv", ".csv.zst": "csv", ".parquet": "parquet", ".pq": "parquet"}
SUGGESTIONS = {
    "data_unreadable": "check the path, or use a built-in dataset such as synthetic-retail://transactions",
    "no_shards": "check the pattern; shards are matched by name, files starting with _ or . are skipped",
    "mixed_formats": "put each format's shards under their own glob, e.g. part-*.parquet",
    "shard_schemas_differ": "rewrite the differing shard with the first shard's columns",
    "repeated_column": "rename one of them: the spec names a column, and each name must say which",
}
HEADER_READERS = 16  # shards whose headers are read at once (each a request on an object store)


class SchemaError(ValueError):
    """The columns of a spec's data could not be read, or its shards disagree; the message names
    the file or pattern, `code` the finding it is reported as."""

    def __init__(self, message: str, code: str = "data_unreadable"):
        super().__init__(message)
        self.code = code


class Shards(NamedTuple):
    """A data URI's files (sorted by name; one for a single file), their format, their columns and each
    column's type (Arrow's, from a Parquet footer; '' for CSV)."""

    files: list[str]
    format: str
    columns: list[str]
    types: dict[str, str]


def table_format(uri: str) -> str:
    """'csv' or 'parquet', from the path's suffix; SchemaError for anything else (or for a path that
    names nothing: a typo is no format problem)."""
    path = str(uri).split("?", 1)[0].lower()
    for suffix, kind in FORMATS.items():
        if path.endswith(suffix):
            return kind
    if not _names_something(uri):
        raise SchemaError(f"{uri}: no such file or folder")
    expected = ", ".join(FORMATS)
    raise SchemaError(f"{uri}: unsupported format; expected a path ending in {expected} (or a folder or glob of them)")


def _names_something(uri: str) -> bool:
    """Whether `uri` exists, asked of local paths only (an object store is not asked just for a
    better message; the read that follows reports what is wrong)."""
    if urlsplit(str(uri)).scheme not in ("", "file"):
        return True
    return os.path.exists(local_path(uri))


def read_columns(uri: str) -> list[str]:
    """The column names of a built-in table, a Parquet or CSV file, or agreeing shards, without reading rows."""
    return list(read_column_types(uri))


def read_column_types(uri: str) -> dict[str, str]:
    """Column -> type (as `Shards.types`; '' for a built-in table) of what `uri` names, without reading rows."""
    uri = str(uri)
    if is_builtin(uri):
        try:
            return dict.fromkeys(builtin_columns(uri), "")
        except (ImportError, ValueError) as exc:
            raise SchemaError(str(exc)) from None
    return read_shards(uri).types


def read_shards(uri: str) -> Shards:
    """The files `uri` (a file, a glob, or a folder or prefix, with or without its trailing `/`) names
    and their agreed columns: every shard's header is read and compared
    with the first shard's (names; for Parquet also types; order does not count).

    SchemaError naming the pattern when nothing matches or formats are mixed, the shard when one
    cannot be read or its schema differs from the first shard's.
    """
    uri = as_pattern(uri)
    files = _files(uri)
    kinds = {file: table_format(file) for file in files}
    if len(set(kinds.values())) > 1:
        first = files[0]
        other = next(file for file in files if kinds[file] != kinds[first])
        message = f"{uri}: mixes formats ({first} is {kinds[first]}, {other} is {kinds[other]}); use one format per glob"
        raise SchemaError(message, code="mixed_formats")
    with ThreadPoolExecutor(min(HEADER_READERS, len(files))) as pool:
        schemas = list(pool.map(_schema, files))
    for file, schema in zip(files[1:], schemas[1:]):
        differences = _differences(schemas[0], schema)
        if differences:
            message = f"{uri}: shard {file} differs from {files[0]}: {'; '.join(differences)}"
            raise SchemaError(message, code="shard_schemas_differ")
    return Shards(files, kinds[files[0]], list(schemas[0]), schemas[0])


def _files(uri: str) -> list[str]:
    if not is_pattern(uri):
        return [uri]
    try:
        files = expand(uri)
    except StorageError as exc:
        raise SchemaError(str(exc)) from None
    if not files:
        what = "no data files in this folder" if uri.endswith("/") else "no file matches this pattern"
        raise SchemaError(f"{uri}: {what}", code="no_shards")
    return files


def _differences(expected: dict[str, str], got: dict[str, str]) -> list[str]:
    """What `got` (column -> type) lacks, adds or types differently from `expected`, in words."""
    missing = [column for column in expected if column not in got]
    extra = [column for column in got if column not in expected]
    retyped = [f"{c} is {got[c]}, not {t}" for c, t in expected.items() if c in got and got[c] != t]
    return [
        *([f"missing {', '.join(missing)}"] if missing else []),
        *([f"extra {', '.join(extra)}"] if extra else []),
        *retyped,
    ]


def _schema(uri: str) -> dict[str, str]:
    """Column -> type of one file (types from a Parquet footer; '' for CSV, whose header has none)."""
    reader = _parquet_schema if table_format(uri) == "parquet" else _csv_schema
    try:
        columns = reader(uri)
    except FileNotFoundError:
        raise SchemaError(f"{named(uri)}: file not found") from None
    except SchemaError:
        raise
    except Exception as exc:  # any failure to open or decode the file (I/O, auth, corrupt footer)
        raise SchemaError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from None
    problem = repeated_column([name for name, _ in columns])
    if problem:
        raise SchemaError(f"{uri}: {problem}", code="repeated_column")
    return dict(columns)


def repeated_column(names: list[str]) -> str | None:
    """What is wrong with a header that names a column more than once; None when none is."""
    counts = Counter(names)
    name = next((name for name in names if counts[name] > 1), None)
    if name is None:
        return None
    return f"column {name!r} appears {counts[name]} times in the header; each column needs a name of its own"


def _parquet_schema(uri: str) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    with open_uri(uri, "rb") as handle:
        return [(field.name, str(field.type)) for field in pq.read_schema(handle)]


PARQUET_MAGIC = b"PAR1"


def _csv_schema(uri: str) -> list[tuple[str, str]]:
    with open_uri(uri, "rb", compression="infer") as handle:
        line = handle.readline()  # the header only: the rows stay unread
    header = _header_text(uri, line)
    columns = next(csv.reader(io.StringIO(header)), [])
    if columns in ([], [""]):
        raise SchemaError(f"{uri}: no header line; expected the column names on the first line")
    return [(column, "") for column in columns]


def _header_text(uri: str, line: bytes) -> str:
    """A CSV file's first line as text; SchemaError when it is not a text header (a Parquet or other
    binary file under a .csv name, text in another encoding than UTF-8)."""
    if line.startswith(PARQUET_MAGIC):
        raise SchemaError(f"{uri}: is a Parquet file, not CSV; name it .parquet")
    try:
        header = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"{uri}: the header line is not UTF-8 text (byte {line[exc.start]:#04x} at position "
                          f"{exc.start}); save the file as UTF-8 CSV") from None
    if any(character < " " and character not in "\t\r\n" for character in header):
        raise SchemaError(f"{uri}: the first line holds control characters: not a CSV text file (a binary file?)")
    return header


def read_schema(spec: ExperimentSpec) -> tuple[DataSchema, list[Finding]]:
    """The columns of the spec's transactions and catalogue; an unreadable one is an error finding.

    A URI that `rules.data_uris` refuses is never opened (its columns stay unknown).
    """
    columns: dict[str, tuple[str, ...] | None] = {}
    findings: list[Finding] = []
    nested: dict[str, str] = {}  # column -> 'data.TABLE holds TYPE'
    for table, uri in (("transactions", spec.data.transactions), ("products", spec.data.products)):
        columns[table] = None
        if uri is None or data_uri_problem(uri):
            continue
        try:
            types = read_column_types(uri)
            columns[table] = tuple(types)
            nested |= {column: f"data.{table} holds {kind}" for column, kind in types.items() if _is_nested(kind)}
        except SchemaError as exc:
            findings.append(
                Finding(
                    code=exc.code,
                    severity="error",
                    field=f"data.{table}",
                    message=str(exc),
                    suggestion=SUGGESTIONS.get(exc.code, SUGGESTIONS["data_unreadable"]),
                )
            )
    return DataSchema(**columns), [*findings, *_nested_findings(spec, nested), *_vocabulary_findings(spec)]


NESTED_TYPES = ("list<", "large_list<", "fixed_size_list<", "list_view<", "struct<", "map<", "dictionary<values=list")


def _is_nested(arrow_type: str) -> bool:
    return arrow_type.startswith(NESTED_TYPES)


def _nested_findings(spec: ExperimentSpec, nested: dict[str, str]) -> Iterator[Finding]:
    """An error for each feature on a column of lists, structs or maps (Parquet): stringified, each
    distinct list would become an id of its own, and the model would train on that without a word."""
    for path, feature in feature_paths(spec):
        if feature.column in nested:
            yield Finding(code="nested_column", severity="error", field=f"{path}.column",
                          message=f"column {feature.column!r}: {nested[feature.column]} values; a feature takes one "
                                  "string or number per row",
                          suggestion="flatten the column to one value per row (or, for a history, one "
                                     "space-separated text)")


def _vocabulary_findings(spec: ExperimentSpec) -> Iterator[Finding]:
    """An error for each vocabulary file that cannot be read or holds nothing (it is read whole)."""
    for path, feature in feature_paths(spec):
        if feature.vocabulary is None or feature.type == "numeric":
            continue
        try:
            read_vocabulary(feature.vocabulary)
        except VocabularyError as exc:
            suggestion = "one value per line, or remove vocabulary to count the training rows"
            yield Finding(code="vocabulary_unreadable", severity="error", field=f"{path}.vocabulary",
                          message=str(exc), suggestion=suggestion)
