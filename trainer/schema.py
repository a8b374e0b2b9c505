"""Read the column names of a spec's data cheaply: a Parquet footer or a CSV header, never the rows.

Built-in datasets (`movielens100k://`, `synthetic-retail://`) declare their columns, so they are
neither downloaded nor generated. Files are opened through trainer.storage: local paths, `file://`,
`memory://`, `gs://`.
"""

from __future__ import annotations

import csv
import io

from trainer.datasets import builtin_columns, is_builtin
from trainer.rules import DataSchema, Finding, data_uri_problem
from trainer.spec import ExperimentSpec

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")


class SchemaError(ValueError):
    """The columns of a data file could not be read; the message names the file."""


def read_columns(uri: str) -> list[str]:
    """The column names of a built-in table, Parquet file or CSV file, without reading its rows."""
    uri = str(uri)
    if is_builtin(uri):
        try:
            return builtin_columns(uri)
        except (ImportError, ValueError) as exc:
            raise SchemaError(str(exc)) from None
    path = uri.lower().split("?", 1)[0]
    if path.endswith(PARQUET_SUFFIXES):
        reader = _parquet_columns
    elif path.endswith(CSV_SUFFIXES):
        reader = _csv_columns
    else:
        raise SchemaError(f"{uri}: unsupported format; expected a .csv or .parquet file or a built-in dataset URI")
    try:
        return reader(uri)
    except FileNotFoundError:
        raise SchemaError(f"{uri}: file not found") from None
    except SchemaError:
        raise
    except Exception as exc:  # any failure to open or decode the file (I/O, auth, corrupt footer)
        raise SchemaError(f"{uri}: cannot be read ({type(exc).__name__}: {exc})") from None


def _parquet_columns(uri: str) -> list[str]:
    import pyarrow.parquet as pq

    from trainer.storage import open_uri

    with open_uri(uri, "rb") as handle:
        return list(pq.read_schema(handle).names)


def _csv_columns(uri: str) -> list[str]:
    from trainer.storage import open_uri

    with open_uri(uri, "rb", compression="infer") as handle:
        header = handle.readline().decode("utf-8-sig")  # decode the header only: the rows stay unread
    columns = next(csv.reader(io.StringIO(header)), [])
    if columns in ([], [""]):
        raise SchemaError(f"{uri}: no header line; expected the column names on the first line")
    return columns


def read_schema(spec: ExperimentSpec) -> tuple[DataSchema, list[Finding]]:
    """The columns of the spec's transactions and catalogue; an unreadable one is an error finding.

    A URI that `rules.data_uris` refuses is never opened (its columns stay unknown).
    """
    columns: dict[str, tuple[str, ...] | None] = {}
    findings: list[Finding] = []
    for table, uri in (("transactions", spec.data.transactions), ("products", spec.data.products)):
        columns[table] = None
        if uri is None or data_uri_problem(uri):
            continue
        try:
            columns[table] = tuple(read_columns(uri))
        except SchemaError as exc:
            findings.append(
                Finding(
                    code="data_unreadable",
                    severity="error",
                    field=f"data.{table}",
                    message=str(exc),
                    suggestion="check the path, or use a built-in dataset such as synthetic-retail://transactions",
                )
            )
    return DataSchema(**columns), findings
