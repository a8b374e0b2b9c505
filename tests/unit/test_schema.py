"""trainer.schema (columns read cheaply) and trainer.validation (spec + schema + rules -> report)."""

from __future__ import annotations

import copy
import gzip

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.datasets import builtin_columns
from trainer.rules import DataSchema
from trainer.schema import SchemaError, read_columns, read_schema, read_shards
from trainer.spec import spec_from_dict
from trainer.validation import validate_config

COLUMNS = ["customer_id", "region", "product_id", "category"]


def write_csv(path, columns=COLUMNS, rows=(("c1", "north", "p1", "shoes"),)) -> str:
    path.write_text("\n".join(",".join(row) for row in [columns, *rows]) + "\n")
    return str(path)


def write_parquet(path, columns=COLUMNS) -> str:
    pq.write_table(pa.table({column: ["x"] for column in columns}), path)
    return str(path)


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    yield fs
    fs.rm("/schema-test", recursive=True)


def test_csv_columns_come_from_the_header_line(tmp_path):
    assert read_columns(write_csv(tmp_path / "t.csv")) == COLUMNS


def test_csv_header_is_read_without_the_rows(tmp_path):
    # a body that no CSV parser would accept: only the header may be read
    path = tmp_path / "t.csv"
    path.write_bytes(b"a,b\n" + b"\xff\xfe not text \x00" * 1000)
    assert read_columns(str(path)) == ["a", "b"]


def test_csv_quoted_header_and_file_uri(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('"id","unit price",name\n1,2,x\n')
    assert read_columns(f"file://{path}") == ["id", "unit price", "name"]


def test_parquet_columns_come_from_the_schema(tmp_path):
    assert read_columns(write_parquet(tmp_path / "t.parquet")) == COLUMNS


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_column_named_twice_is_a_schema_error(tmp_path, kind):
    columns = [*COLUMNS, "region"]
    if kind == "csv":
        uri = write_csv(tmp_path / "t.csv", columns, [("c1", "north", "p1", "shoes", "south")])
    else:
        uri = str(tmp_path / "t.parquet")
        pq.write_table(pa.Table.from_arrays([pa.array(["x"])] * len(columns), names=columns), uri)
    with pytest.raises(SchemaError) as raised:
        read_columns(uri)
    assert str(raised.value) == f"{uri}: column 'region' appears 2 times in the header; each column needs a name of its own"
    assert raised.value.code == "repeated_column"


def test_memory_uris(memory_fs):
    with memory_fs.open("/schema-test/t.csv", "w") as handle:
        handle.write("a,b,c\n1,2,3\n")
    with memory_fs.open("/schema-test/t.parquet", "wb") as handle:
        pq.write_table(pa.table({"x": [1], "y": [2]}), handle)
    assert read_columns("memory://schema-test/t.csv") == ["a", "b", "c"]
    assert read_columns("memory://schema-test/t.parquet") == ["x", "y"]


def test_builtin_columns_need_no_data():
    uri = "synthetic-retail://transactions?customers=10&products=5&clusters=2&seed=1"
    assert read_columns(uri) == builtin_columns(uri)
    assert "cust_value" in read_columns(uri)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("absent.csv", None, "file not found"),
        ("absent.parquet", None, "file not found"),
        ("empty.csv", "", "no header line"),
        ("bad.parquet", "not parquet", "cannot be read"),
        ("binary.csv", "\x00\x01\x02\x7fgarbage\n", "the first line holds control characters: not a CSV text file"),
        ("latin1.csv", "caf\xe9,price\n", "the header line is not UTF-8 text (byte 0xe9 at position 3)"),
        ("t.xlsx", "a,b\n", "unsupported format"),
        ("transactions", None, "no such file or folder"),  # a typo, not a format
    ],
)
def test_unreadable_data_raises_a_schema_error_naming_the_path(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    with pytest.raises(SchemaError) as info:
        read_columns(str(path))
    assert reason in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_parquet_file_named_csv_is_named_so(tmp_path):
    path = tmp_path / "rows.csv"
    pq.write_table(pa.table({"a": [1]}), path)
    with pytest.raises(SchemaError, match="rows.csv: is a Parquet file, not CSV; name it .parquet"):
        read_columns(str(path))


def test_unknown_builtin_table_is_a_schema_error():
    with pytest.raises(SchemaError, match="synthetic-retail://nope: unknown table"):
        read_columns("synthetic-retail://nope")


def test_compressed_csv(tmp_path):
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("a,b\n1,2\n")
    assert read_columns(str(path)) == ["a", "b"]


def spec_for(transactions: str, products: str | None = None):
    return spec_from_dict(
        {
            "name": "schema-test",
            "data": {"transactions": transactions, "products": products},
            "buyer_features": [{"column": "customer_id", "type": "id"}, {"column": "region"}],
            "product_features": [{"column": "product_id", "type": "id", "is_primary_id": True}, {"column": "category"}],
        }
    )


def test_read_schema_reads_both_tables(tmp_path):
    catalogue = write_parquet(tmp_path / "p.parquet", ["product_id", "category", "price"])
    schema, findings = read_schema(spec_for(write_csv(tmp_path / "t.csv"), catalogue))
    assert findings == []
    assert schema == DataSchema(tuple(COLUMNS), ("product_id", "category", "price"))


@pytest.mark.parametrize(("values", "kind"), [([[1], [2]], None), ([{"a": 1}, {"a": 2}], None),
                                            ([[("k", 1)], [("k", 2)]], pa.map_(pa.string(), pa.int64()))],
                         ids=["list", "struct", "map"])
def test_a_feature_on_a_nested_parquet_column_is_an_error_at_the_feature(tmp_path, values, kind):
    """A list, struct or map column would be stringified, each distinct value an id of its own."""
    table = pa.table({"customer_id": pa.array(values, type=kind), "region": ["n", "s"],
                      "product_id": ["p1", "p2"], "category": ["c", "d"]})
    pq.write_table(table, tmp_path / "t.parquet")
    schema, findings = read_schema(spec_for(str(tmp_path / "t.parquet")))
    assert schema.transactions == tuple(COLUMNS)
    (finding,) = findings
    assert (finding.code, finding.severity, finding.field) == ("nested_column", "error", "buyer_features[0].column")
    assert finding.message.startswith("column 'customer_id': data.transactions holds ")
    assert finding.message.endswith(" values; a feature takes one string or number per row")


def test_read_schema_without_a_catalogue_leaves_products_unknown(tmp_path):
    schema, findings = read_schema(spec_for(write_csv(tmp_path / "t.csv")))
    assert findings == [] and schema.products is None


def test_unreadable_catalogue_is_an_error_at_data_products(tmp_path):
    missing = str(tmp_path / "nowhere" / "p.csv")
    schema, findings = read_schema(spec_for(write_csv(tmp_path / "t.csv"), missing))
    assert schema.transactions == tuple(COLUMNS) and schema.products is None
    (finding,) = findings
    assert (finding.code, finding.severity, finding.field) == ("data_unreadable", "error", "data.products")
    assert missing in finding.message


def _with_region_vocabulary(spec, vocabulary: str):
    region = spec.buyer_features[1].model_copy(update={"vocabulary": vocabulary})
    return spec.model_copy(update={"buyer_features": [spec.buyer_features[0], region]})


@pytest.mark.parametrize(("content", "reason"), [(None, "file not found"), ("\n  \n", "holds no value")])
def test_an_unreadable_or_empty_vocabulary_file_is_an_error_at_its_feature(tmp_path, content, reason):
    vocabulary = tmp_path / "regions.txt"
    if content is not None:
        vocabulary.write_text(content)
    spec = _with_region_vocabulary(spec_for(write_csv(tmp_path / "t.csv")), str(vocabulary))
    (finding,) = read_schema(spec)[1]
    assert (finding.code, finding.field) == ("vocabulary_unreadable", "buyer_features[1].vocabulary")
    assert f"{vocabulary}: {reason}" in finding.message
    vocabulary.write_text("north\nsouth\n")
    assert read_schema(spec)[1] == []


def test_a_vocabulary_over_http_is_refused_unopened(tmp_path, monkeypatch):
    monkeypatch.delenv("TOWERFLOW_ALLOW_HTTP_DATA", raising=False)
    spec = _with_region_vocabulary(spec_for(write_csv(tmp_path / "t.csv")), "http://127.0.0.1:9/regions.txt")
    (finding,) = read_schema(spec)[1]
    assert finding.field == "buyer_features[1].vocabulary" and "not read over http://" in finding.message


# --- validate_config -------------------------------------------------------------------------

RAW = {
    "name": "validate-test",
    "data": {"transactions": "placeholder"},
    "buyer_features": [{"column": "customer_id", "type": "id"}, {"column": "region"}],
    "product_features": [{"column": "product_id", "type": "id", "is_primary_id": True}, {"column": "category"}],
}


def raw_for(transactions: str, **training) -> dict:
    raw = copy.deepcopy(RAW)
    raw["data"]["transactions"] = transactions
    raw["training"] = training
    return raw


def test_valid_config_report(tmp_path):
    report = validate_config(raw_for(write_csv(tmp_path / "t.csv")))
    assert report.ok and report.findings == []
    assert report.spec is not None and report.config_hash == report.spec.content_hash()
    assert report.source == "<config>"


def test_warnings_alone_keep_a_config_valid(tmp_path):
    report = validate_config(raw_for(write_csv(tmp_path / "t.csv"), clipnorm=None))
    assert report.ok
    assert [w.code for w in report.warnings] == ["clipping_disabled"] and report.errors == []


def test_schema_and_rule_findings_are_reported_together(tmp_path):
    transactions = write_csv(tmp_path / "t.csv", ["customer_id", "product_id", "category"], [("c", "p", "k")])
    report = validate_config(raw_for(transactions, optimizer="adamax"))
    assert not report.ok
    assert {(f.code, f.field) for f in report.errors} == {
        ("missing_column", "buyer_features[1].column"),
        ("unknown_optimizer", "training.optimizer"),
    }


def test_missing_data_file_is_an_error_naming_the_path(tmp_path):
    missing = str(tmp_path / "t.csv")
    report = validate_config(raw_for(missing))
    assert [(f.code, f.field) for f in report.errors] == [("data_unreadable", "data.transactions")]
    assert missing in report.errors[0].message


def test_config_problems_become_invalid_config_findings_with_paths(tmp_path):
    raw = raw_for(write_csv(tmp_path / "t.csv"), lr=0.1, epochs="many")
    report = validate_config(raw)
    assert report.spec is None and not report.ok and report.config_hash is None
    assert {(f.code, f.field) for f in report.findings} == {
        ("invalid_config", "training.lr"),
        ("invalid_config", "training.epochs"),
    }


def test_unreadable_config_file(tmp_path):
    report = validate_config(tmp_path / "absent.yaml")
    (finding,) = report.findings
    assert (finding.code, finding.field) == ("invalid_config", "")
    assert "file not found" in finding.message and report.source == str(tmp_path / "absent.yaml")


def test_overrides_are_applied_before_the_rules(tmp_path):
    raw = raw_for(write_csv(tmp_path / "t.csv"))
    assert validate_config(raw).ok
    report = validate_config(raw, ["training.learning_rate=-1"])
    assert [(f.code, f.field) for f in report.errors] == [("out_of_range", "training.learning_rate")]


def test_a_malformed_override_names_the_option(tmp_path):
    (finding,) = validate_config(raw_for(write_csv(tmp_path / "t.csv")), ["learning_rate"]).findings
    assert finding.code == "invalid_config" and finding.message.startswith("--set: ")


def test_report_json_round_trip(tmp_path):
    report = validate_config(raw_for(str(tmp_path / "missing.csv"), learning_rate=float("nan")))
    data = report.model_dump(mode="json")
    assert data["ok"] is False and data["config_hash"] == report.spec.content_hash()
    assert {f["code"] for f in data["findings"]} == {"data_unreadable", "not_finite"}


@pytest.mark.parametrize(
    ("transactions", "code"),
    [
        ("http://example.com/t.csv", "refused_data_uri"),
        ("synthetic-retail://transactions?customers=abc&bogus=1", "bad_dataset_uri"),
    ],
)
def test_a_refused_data_uri_is_reported_and_never_opened(monkeypatch, transactions, code):
    def no_reading(*args, **kwargs):
        raise AssertionError(f"opened {args}")

    monkeypatch.delenv("TOWERFLOW_ALLOW_HTTP_DATA", raising=False)
    monkeypatch.setattr(fsspec, "open", no_reading)
    report = validate_config(raw_for(transactions))
    assert [(f.code, f.field) for f in report.errors] == [(code, "data.transactions")]


def test_check_data_adds_the_data_checks_findings(tmp_path):
    rows = [("c1", "north", "p1", "shoes")] * 3  # 3 rows: far too little to train on
    raw = raw_for(write_csv(tmp_path / "t.csv", rows=rows))
    assert validate_config(raw).ok  # the header alone looks fine
    report = validate_config(raw, check_data=True)
    assert not report.ok
    assert [(f.code, f.field) for f in report.errors] == [
        ("too_few_train_rows", "data.transactions"),
        ("too_few_test_pairs", "data.transactions"),
    ]


def test_check_data_waits_for_a_valid_config(tmp_path, monkeypatch):
    import trainer.datacheck

    monkeypatch.setattr(trainer.datacheck, "check_data", None)  # calling it would fail
    report = validate_config(raw_for(str(tmp_path / "absent.csv")), check_data=True)
    assert [f.code for f in report.errors] == ["data_unreadable"]


# --- shards --------------------------------------------------------------------------------


def write_shards(folder, columns_by_name: dict[str, list[str]]) -> str:
    """Files in `folder` by name, each CSV or Parquet (by suffix) with the given columns."""
    folder.mkdir(exist_ok=True)
    for name, columns in columns_by_name.items():
        (write_parquet if name.endswith(".parquet") else write_csv)(folder / name, columns)
    return str(folder)


def test_shards_agreeing_in_any_column_order_give_their_columns(tmp_path):
    folder = write_shards(tmp_path / "tx", {"part-0.csv": COLUMNS, "part-1.csv": COLUMNS[::-1]})
    for uri in (f"{folder}/part-*.csv", f"{folder}/"):
        shards = read_shards(uri)
        assert shards.files == [f"{folder}/part-0.csv", f"{folder}/part-1.csv"]
        assert (shards.format, shards.columns) == ("csv", COLUMNS)
        assert read_columns(uri) == COLUMNS


def test_parquet_shards_with_a_column_of_another_type_differ(tmp_path):
    folder = tmp_path / "tx"
    write_shards(folder, {"part-0.parquet": COLUMNS})
    pq.write_table(pa.table({**{c: ["x"] for c in COLUMNS}, "region": [1]}), folder / "part-1.parquet")
    with pytest.raises(SchemaError, match=r"shard .*part-1\.parquet differs from .*part-0\.parquet: region is int64, not string$"):
        read_columns(f"{folder}/*.parquet")


@pytest.mark.parametrize(
    ("shards", "pattern", "code", "message"),
    [
        ({"part-0.csv": COLUMNS}, "{folder}/part-*.parquet", "no_shards", "{folder}/part-*.parquet: no file matches this pattern"),
        ({}, "{folder}/", "no_shards", "{folder}/: no data files in this folder"),
        ({"a.csv": COLUMNS, "b.parquet": COLUMNS}, "{folder}/*", "mixed_formats",
         "{folder}/*: mixes formats ({folder}/a.csv is csv, {folder}/b.parquet is parquet); use one format per glob"),
        ({"part-0.csv": COLUMNS, "part-1.csv": COLUMNS, "part-2.csv": ["customer_id", "regoin", "product_id", "category", "price"]},
         "{folder}/", "shard_schemas_differ",
         "{folder}/: shard {folder}/part-2.csv differs from {folder}/part-0.csv: missing region; extra regoin, price"),
        ({"part-0.parquet": COLUMNS, "part-1.parquet": COLUMNS}, "{folder}/*.parquet", "data_unreadable",
         "{folder}/part-1.parquet: cannot be read (ArrowInvalid: "),
        ({"part-0.csv": COLUMNS, "notes.txt": COLUMNS}, "{folder}/", "data_unreadable", "{folder}/notes.txt: unsupported format"),
        ({"a.csv": COLUMNS, "b.parquet": COLUMNS}, "{folder}", "mixed_formats",
         "{folder}/: mixes formats ({folder}/a.csv is csv, {folder}/b.parquet is parquet); use one format per glob"),
    ],
    ids=["no match", "empty folder", "mixed formats", "a shard differs", "an unreadable shard", "not a data file",
         "a folder without its slash"],
)  # fmt: skip
def test_bad_shards_are_one_error_naming_the_pattern_or_shard(tmp_path, shards, pattern, code, message):
    folder = write_shards(tmp_path / "tx", shards)
    if code == "data_unreadable" and "parquet" in pattern:
        (tmp_path / "tx" / "part-1.parquet").write_text("not parquet")
    schema, findings = read_schema(spec_for(write_csv(tmp_path / "t.csv"), pattern.format(folder=folder)))
    (finding,) = findings
    assert (finding.code, finding.severity, finding.field) == (code, "error", "data.products")
    assert finding.message.startswith(message.format(folder=folder)) and "\n" not in finding.message
    assert schema.products is None
