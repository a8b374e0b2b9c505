"""trainer.data: loading tables, splits, candidate de-duplication, the experiment's data."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pandas as pd
import pytest

from trainer import storage
from trainer.data import DataError, load_experiment_data, load_table, split_transactions, unique_candidates
from trainer.spec import ExperimentSpec, SplitSpec, spec_from_dict

SMALL = "synthetic-retail://transactions?customers=200&products=50&transactions=3000&clusters=5"


@pytest.fixture
def memory_dir():
    """A fresh memory:// folder, removed afterwards."""
    folder = f"memory://test-data-{uuid.uuid4().hex}"
    yield folder
    filesystem = fsspec.filesystem("memory")
    if filesystem.exists(folder):
        filesystem.rm(folder, recursive=True)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"buyer": ["007", "008", "009"], "product": ["p1", "p2", "p1"], "amount": [1.5, np.nan, 3.0]}
    )


# --- load_table ----------------------------------------------------------------------------


def test_csv_from_memory_keeps_text_columns_as_text(memory_dir):
    uri = f"{memory_dir}/rows.csv"
    with fsspec.open(uri, "w") as handle:
        _frame().to_csv(handle, index=False)
    loaded = load_table(uri, text_columns=["buyer"])
    assert loaded["buyer"].tolist() == ["007", "008", "009"]
    assert loaded["amount"].isna().tolist() == [False, True, False]
    assert load_table(uri)["buyer"].tolist() == [7, 8, 9]  # without the hint, CSV inference wins


def test_a_csv_whose_first_row_holds_a_long_text_reads_as_pandas_reads_it(memory_dir):
    """The header and first row go through Python's csv module, whose default limit (128 KiB a field)
    ended the data check in a traceback; pandas has no such limit."""
    uri = f"{memory_dir}/rows.csv"
    description = "word " * 100_000
    storage.write_bytes(uri, f"buyer,product,description\nb1,p1,{description}\nb2,p2,short\n".encode())
    loaded = load_table(uri, text_columns=["buyer", "product", "description"])
    assert loaded["description"].tolist() == [description, "short"]


def test_csv_rows_ending_in_a_delimiter_keep_their_columns(memory_dir):
    uri = f"{memory_dir}/rows.csv"
    storage.write_bytes(uri, b"buyer,product\nb1,p1,\nb2,p2,\nb3,p3,\n")
    for columns in (None, ["buyer", "product"]):  # pandas made the first column the index: every column shifted
        loaded = load_table(uri, text_columns=["buyer", "product"], columns=columns)
        assert loaded.columns.tolist() == ["buyer", "product"]
        assert loaded.values.tolist() == [["b1", "p1"], ["b2", "p2"], ["b3", "p3"]]


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["b1,p1,x", "b2,p2", "b3,p3"], "data row 1 has a value past the header's 2 columns"),
        (["b1,p1,", "b2,p2,", "b3,p3,x"], "data row 3 has a value past the header's 2 columns"),
        (["b1,p1,x,y", "b2,p2"], "data row 1 has 4 fields, the header names 2 columns"),
        (["b1,p1", "b2,p2", "b3,Toy Story, The"], "cannot be read as csv: Error tokenizing data. "
                                                  "C error: Expected 2 fields in line 4, saw 3"),
    ],
    ids=["first row", "a row of a file whose rows end in a delimiter", "two more", "a later row"],
)
def test_a_csv_value_past_the_header_is_an_error_naming_its_row(memory_dir, lines, error):
    uri = f"{memory_dir}/rows.csv"
    storage.write_bytes(uri, "\n".join(["buyer,product", *lines, ""]).encode())
    for columns in (None, ["buyer"]):  # pandas' usecols dropped a later row's extra fields silently
        with pytest.raises(DataError) as raised:
            load_table(uri, text_columns=["buyer", "product"], columns=columns)
        assert str(raised.value) == f"{uri}: {error}"


def test_parquet_from_memory(memory_dir):
    uri = f"{memory_dir}/rows.parquet"
    _frame().to_parquet(uri)
    pd.testing.assert_frame_equal(load_table(uri), _frame(), check_dtype=False)


@pytest.mark.parametrize("name", ["rows.csv", "rows.csv.gz", "rows.csv.bz2", "rows.parquet", "rows.pq"])
def test_local_files_by_path_and_file_url(tmp_path, name):
    path = tmp_path / name
    if name.endswith(("parquet", "pq")):
        _frame().to_parquet(path)
    else:
        _frame().to_csv(path, index=False)
    for uri in (str(path), path.as_uri()):
        loaded = load_table(uri, text_columns=["buyer"])
        assert loaded["buyer"].tolist() == ["007", "008", "009"]
        assert loaded["product"].tolist() == ["p1", "p2", "p1"]


def test_builtin_uri_goes_to_the_dataset():
    assert len(load_table(SMALL)) == 3000


@pytest.mark.parametrize("uri_of", [lambda tmp: str(tmp / "absent.csv"), lambda tmp: "memory://nowhere/absent.parquet"])
def test_missing_file_names_the_path(tmp_path, uri_of):
    uri = uri_of(tmp_path)
    with pytest.raises(DataError, match=f"^{uri}: file not found"):
        load_table(uri)


def test_http_data_is_refused_before_any_access(monkeypatch):
    monkeypatch.delenv("TOWERFLOW_ALLOW_HTTP_DATA", raising=False)
    monkeypatch.setattr(fsspec, "open", None)  # any attempt to open would fail differently
    with pytest.raises(DataError, match=r"^http://example\.com/t\.csv: data is not read over http:// unless"):
        load_table("http://example.com/t.csv")


def test_unknown_format_is_refused_before_any_access():
    with pytest.raises(DataError, match=r"gs://bucket/rows\.json: unsupported format.*\.parquet"):
        load_table("gs://bucket/rows.json")


def test_unreadable_content_names_the_path(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_text("this is not parquet")
    with pytest.raises(DataError, match=f"{path}: cannot be read as parquet"):
        load_table(str(path))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=f"{empty}: cannot be read as csv"):
        load_table(str(empty))


def test_text_in_another_encoding_than_utf8_says_so(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("buyer,product\nb1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError) as raised:
        load_table(str(path))
    assert str(raised.value) == f"{path}: is not UTF-8 text (invalid continuation byte: byte 0xe9); save it as UTF-8"


def test_builtin_errors_become_data_errors_naming_the_uri():
    with pytest.raises(DataError, match=r"synthetic-retail://transactions\?colour=red: unknown parameter"):
        load_table("synthetic-retail://transactions?colour=red")
    with pytest.raises(DataError, match="movielens100k://users"):
        load_table("movielens100k://users")


# --- split_transactions --------------------------------------------------------------------


def _rows(n: int = 101) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({"row": np.arange(n), "ts": rng.integers(0, 20, size=n)})  # many tied times


@pytest.mark.parametrize("strategy", ["random", "time"])
def test_split_takes_the_exact_fraction_and_every_row_once(strategy):
    train, test = split_transactions(_rows(), SplitSpec(strategy=strategy, test_fraction=0.3, column="ts"))
    assert len(test) == round(101 * 0.3) and len(train) == 101 - len(test)
    assert sorted([*train["row"], *test["row"]]) == list(range(101))
    assert train["row"].is_monotonic_increasing and test["row"].is_monotonic_increasing


def test_random_split_is_seeded():
    first = split_transactions(_rows(), SplitSpec(seed=1))[1]["row"].tolist()
    assert split_transactions(_rows(), SplitSpec(seed=1))[1]["row"].tolist() == first
    assert split_transactions(_rows(), SplitSpec(seed=2))[1]["row"].tolist() != first


def test_time_split_puts_the_latest_rows_in_test():
    train, test = split_transactions(_rows(), SplitSpec(strategy="time", test_fraction=0.25, column="ts"))
    assert test["ts"].min() >= train["ts"].max()


def _tied_times(kind: str, n: int = 500) -> pd.Series:
    """Times with many ties: small integers, or those as naive or zoned dates."""
    ticks = np.random.default_rng(len(kind)).integers(0, 12, size=n)
    if kind == "numbers":
        return pd.Series(ticks)
    dates = pd.to_datetime(ticks, unit="D", origin="2026-01-01")
    return pd.Series(dates.tz_localize("Europe/Paris") if kind == "zoned dates" else dates)


@pytest.mark.parametrize("kind", ["numbers", "dates", "zoned dates"])
@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.97])
def test_time_split_holds_out_what_a_stable_sort_puts_last(kind, fraction):
    rows = pd.DataFrame({"ts": _tied_times(kind), "row": np.arange(500)})
    train, test = split_transactions(rows, SplitSpec(strategy="time", test_fraction=fraction, column="ts"))
    n_test = round(500 * fraction)
    by_time = np.argsort(rows["ts"].to_numpy(), kind="stable")  # ties: the later file row sorts later
    assert test["row"].tolist() == sorted(by_time[len(rows) - n_test :])
    assert train["row"].tolist() == sorted(by_time[: len(rows) - n_test])


@pytest.mark.parametrize("kind", ["numbers", "zoned dates"])
def test_candidates_keep_a_products_latest_row_and_of_tied_rows_the_last(kind):
    rows = pd.DataFrame({"ts": _tied_times(kind), "row": np.arange(500)})
    rows["product"] = pd.Categorical([f"p{i % 37}" for i in range(500)])
    candidates, before = unique_candidates(rows, "product", ["row"], "ts")
    expected = rows.iloc[np.argsort(rows["ts"].to_numpy(), kind="stable")].drop_duplicates("product", keep="last")
    assert before == 500
    assert candidates["row"].tolist() == expected.sort_values("product")["row"].tolist()


def test_time_split_parses_text_dates():
    rows = pd.DataFrame({"row": range(4), "when": ["2024-03-01", "2024-01-15", "2024-12-31", "2024-02-01"]})
    train, test = split_transactions(rows, SplitSpec(strategy="time", test_fraction=0.5, column="when"))
    assert test["row"].tolist() == [0, 2]


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (SplitSpec(strategy="time", column="when"), r"time column 'when' is not in the data \(columns: row, ts\)"),
        (SplitSpec(strategy="time"), "data.split.column: strategy 'time' needs"),
        (SplitSpec(test_fraction=1.5), "data.split.test_fraction: must be between 0 and 1"),
        (SplitSpec(test_fraction=0.001), "data.split.test_fraction: 0.001 of 101 rows leaves an empty split"),
    ],
)
def test_split_errors_name_the_problem(split, message):
    with pytest.raises(DataError, match=message):
        split_transactions(_rows(), split)


def test_time_split_refuses_missing_times():
    rows = _rows().astype({"ts": "float64"})
    rows.loc[3, "ts"] = np.nan
    with pytest.raises(DataError, match="time column 'ts': 1 row"):
        split_transactions(rows, SplitSpec(strategy="time", column="ts"))


def _keyed_rows(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(8)
    return pd.DataFrame({"buyer": rng.integers(0, 50, n).astype(str), "product": rng.integers(0, 90, n).astype(str),
                         "ts": rng.integers(0, 10**6, n)})


def test_hash_split_follows_each_rows_values_not_the_row_order_or_the_other_rows():
    rows, split, key = _keyed_rows(), SplitSpec(strategy="hash", test_fraction=0.2), ["buyer", "product", "ts"]
    test = split_transactions(rows, split, key)[1]
    assert 0.17 < len(test) / len(rows) < 0.23
    shuffled = rows.sample(frac=1.0, random_state=1)
    assert sorted(split_transactions(shuffled, split, key)[1].index) == sorted(test.index)
    half = rows.iloc[::2]  # as one shard of two: each row keeps its side
    assert sorted(split_transactions(half, split, key)[1].index) == sorted(test.index[test.index % 2 == 0])
    assert sorted(split_transactions(rows, split.model_copy(update={"seed": 7}), key)[1].index) != sorted(test.index)


def test_hash_split_puts_equal_keys_on_one_side_and_prefers_the_specs_key():
    rows = pd.concat([_keyed_rows(500)] * 2, ignore_index=True)  # every row twice
    train, test = split_transactions(rows, SplitSpec(strategy="hash", key=["buyer", "product", "ts"]))
    key = ["buyer", "product", "ts"]
    assert train.merge(test, on=key).empty
    by_buyer = split_transactions(rows, SplitSpec(strategy="hash", key=["buyer"]), ["product"])[1]
    assert set(by_buyer["buyer"]).isdisjoint(set(rows.drop(by_buyer.index)["buyer"]))


def test_hash_split_errors_name_the_key():
    with pytest.raises(DataError, match="data.split.key: strategy 'hash' needs the columns"):
        split_transactions(_keyed_rows(), SplitSpec(strategy="hash"))
    with pytest.raises(DataError, match=r"data.split.key: missing column\(s\) shop") as info:
        split_transactions(_keyed_rows(), SplitSpec(strategy="hash", key=["buyer", "shop"]))
    assert info.value.field == "data.split.key"


@pytest.mark.parametrize(("times", "cutoff"), [
    (np.arange(100), 70),
    (pd.date_range("2024-01-01", periods=100, freq="D"), "2024-03-11"),
    (pd.date_range("2024-01-01", periods=100, freq="D").strftime("%Y-%m-%d"), "2024-03-11"),
    (pd.date_range("2024-01-01", periods=100, freq="D", tz="UTC"), "2024-03-11"),
])
def test_a_cutoff_puts_the_rows_at_or_after_it_in_test(times, cutoff):
    rows = pd.DataFrame({"row": range(100), "when": times}).sample(frac=1.0, random_state=2)
    train, test = split_transactions(rows, SplitSpec(strategy="time", column="when", cutoff=cutoff))
    assert sorted(test["row"]) == list(range(70, 100)) and sorted(train["row"]) == list(range(70))


@pytest.mark.parametrize(("cutoff", "message"), [
    (500, r"data.split.cutoff: 500 \(times run from 0 to 99\) holds out no row"),
    (0, "data.split.cutoff: 0 .* holds out every row"),
    ("June", "data.split.cutoff: 'June' is not a number, and the time column holds numbers"),
])
def test_a_cutoff_that_leaves_an_empty_side_or_is_not_a_time_is_named(cutoff, message):
    rows = pd.DataFrame({"when": np.arange(100)})
    with pytest.raises(DataError, match=message) as info:
        split_transactions(rows, SplitSpec(strategy="time", column="when", cutoff=cutoff))
    assert info.value.field == "data.split.cutoff"


# --- unique_candidates ---------------------------------------------------------------------


def _purchases() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product": ["b", "a", "b", "a", "c"],
            "price": [2.0, 1.0, 2.5, 1.1, 9.0],
            "ts": [10, 30, 5, 20, 1],
            "buyer": ["u1", "u2", "u3", "u4", "u5"],
        }
    )


def test_candidates_keep_the_latest_row_per_product_by_time():
    candidates, before = unique_candidates(_purchases(), "product", ["product", "price"], "ts")
    assert before == 5
    assert candidates.to_dict("list") == {"product": ["a", "b", "c"], "price": [1.0, 2.0, 9.0]}


def test_candidates_without_time_keep_the_last_occurrence():
    candidates, before = unique_candidates(_purchases(), "product", ["price"], None)
    assert before == 5
    assert candidates.to_dict("list") == {"product": ["a", "b", "c"], "price": [1.1, 2.5, 9.0]}


def test_candidates_name_missing_columns():
    with pytest.raises(DataError, match="missing column.* colour"):
        unique_candidates(_purchases(), "product", ["colour"], None)


# --- load_experiment_data ------------------------------------------------------------------


def _spec(transactions: str, products: str | None = None, **overrides: dict) -> ExperimentSpec:
    raw = {
        "name": "t",
        "data": {"transactions": transactions, "products": products, "split": {"test_fraction": 0.25, "seed": 3}},
        "buyer_features": [{"column": "customer_id", "type": "id"}, {"column": "customer_age", "type": "numeric"}],
        "product_features": [
            {"column": "product_id", "type": "id", "is_primary_id": True},
            {"column": "category", "type": "categorical"},
            {"column": "price", "type": "numeric"},
        ],
    }
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value}
    return spec_from_dict(raw)


def test_experiment_data_from_transactions_alone():
    spec = _spec(SMALL, data={"transactions": SMALL, "split": {"strategy": "time", "column": "timestamp"}})
    data = load_experiment_data(spec)
    rows = load_table(SMALL)
    assert data.validation is None and data.n_test_rows_without_candidate == 0
    assert len(data.train) + len(data.test) == len(rows)
    assert data.test["timestamp"].min() >= data.train["timestamp"].max()
    assert list(data.train.columns) == ["customer_id", "customer_age", "product_id", "category", "price", "timestamp"]
    assert data.n_candidate_rows_before_dedup == len(rows)
    assert sorted(data.candidates["product_id"]) == sorted(rows["product_id"].unique())
    assert list(data.candidates.columns) == ["product_id", "category", "price"]
    assert data.train["customer_age"].dtype == np.float32 and data.candidates["price"].dtype == np.float32
    assert pd.api.types.is_string_dtype(data.train["customer_id"])


def _write_csv(frame: pd.DataFrame, uri: str) -> str:
    with fsspec.open(uri, "w") as handle:
        frame.to_csv(handle, index=False)
    return uri


def test_catalogue_joins_missing_features_and_supplies_the_candidates(memory_dir):
    transactions = pd.DataFrame(
        {
            "customer_id": [f"{i:03d}" for i in range(12)],
            "customer_age": [20.0, np.nan, 40.0, 30.0, 25.0, 35.0, 45.0, 50.0, 22.0, 33.0, 44.0, 55.0],
            "product_id": ["p1", "p2", "p3", "p1", "p2", "p9", "p1", "p2", "p3", "p9", "p1", "p2"],
            "price": [1.0, 2.0, 3.0, 1.0, 2.0, 9.0, 1.0, 2.0, 3.0, 9.0, 1.0, 2.0],
        }
    )
    catalogue = pd.DataFrame(
        {
            "product_id": ["p1", "p2", "p3", "p4", "p2"],
            "category": ["x", "y", None, "w", "y2"],
            "price": [1, 2, 3, 4, 5],
        }
    )
    spec = _spec(_write_csv(transactions, f"{memory_dir}/t.csv"), _write_csv(catalogue, f"{memory_dir}/p.csv"))
    data = load_experiment_data(spec)

    assert data.n_candidate_rows_before_dedup == 5
    assert data.candidates.to_dict("list") == {
        "product_id": ["p1", "p2", "p3", "p4"],
        "category": ["x", "y2", "", "w"],
        "price": [1.0, 5.0, 3.0, 4.0],
    }
    everything = pd.concat([data.train, data.test])
    assert everything["customer_id"].str.len().eq(3).all()  # ids keep their leading zeros
    assert dict(zip(everything["product_id"], everything["category"])) == {"p1": "x", "p2": "y2", "p3": "", "p9": ""}
    assert "p9" not in set(data.test["product_id"])
    dropped = split_transactions(transactions, spec.data.split)[1]["product_id"].eq("p9").sum()
    assert data.n_test_rows_without_candidate == dropped
    train_ages = split_transactions(transactions, spec.data.split)[0]["customer_age"]
    filled = everything.loc[everything["customer_id"] == "001", "customer_age"].iloc[0]
    assert filled == pytest.approx(train_ages.mean()) and everything["customer_age"].notna().all()


def test_catalogue_must_have_every_product_feature(memory_dir):
    catalogue = _write_csv(pd.DataFrame({"product_id": ["p0000"], "category": ["x"]}), f"{memory_dir}/p.csv")
    with pytest.raises(DataError, match=f"{catalogue}: missing column.* price"):
        load_experiment_data(_spec(SMALL, catalogue))


def _with_buyer_feature(spec, column: str, kind: str):
    feature = spec.buyer_features[0].model_copy(update={"column": column, "type": kind})
    return spec.model_copy(update={"buyer_features": [*spec.buyer_features, feature]})


def test_missing_transaction_column_names_it_and_the_source():
    with pytest.raises(DataError, match=r"synthetic-retail://transactions\?.*missing column\(s\) loyalty"):
        load_experiment_data(_with_buyer_feature(_spec(SMALL), "loyalty", "numeric"))


def test_validation_is_carved_from_train_never_from_test():
    plain = load_experiment_data(_spec(SMALL))
    carved = load_experiment_data(_spec(SMALL, training={"validation_fraction": 0.2, "seed": 9}))
    pd.testing.assert_frame_equal(carved.test, plain.test)
    assert len(carved.validation) == round(len(plain.train) * 0.2)
    assert len(carved.train) + len(carved.validation) == len(plain.train)
    key = ["customer_id", "product_id", "price", "customer_age"]
    validation_rows = carved.validation.merge(plain.train[key].drop_duplicates(), on=key)
    assert len(validation_rows) == len(carved.validation)  # every validation row comes from train


def test_conflicting_feature_types_are_refused():
    with pytest.raises(DataError, match="column 'price' is declared both categorical and numeric"):
        load_experiment_data(_with_buyer_feature(_spec(SMALL), "price", "categorical"))


# --- purchase histories ----------------------------------------------------------------------


def _history_spec(**overrides: dict) -> ExperimentSpec:
    spec = _spec(SMALL, **overrides)
    history = spec.buyer_features[0].model_copy(update={"column": "bought", "type": "history"})
    return spec.model_copy(update={"buyer_features": [*spec.buyer_features, history]})


@pytest.mark.parametrize("validation_fraction", [0.0, 0.2])
def test_every_row_gets_its_buyers_training_purchases_and_nothing_held_out(validation_fraction):
    data = load_experiment_data(_history_spec(training={"validation_fraction": validation_fraction}))
    bought = data.train.groupby("customer_id")["product_id"].apply(list)
    frames = [data.train, data.test, *([data.validation] if data.validation is not None else [])]
    for frame in frames:
        for buyer, history in frame[["customer_id", "bought"]].drop_duplicates().itertuples(index=False):
            assert history.split() == (bought[buyer][-100:] if buyer in bought.index else [])


def test_a_history_keeps_the_most_recent_purchases_in_time_order_with_repeats():
    rows = pd.DataFrame({"b": ["u"] * 150 + ["v"], "p": [f"p{i % 120}" for i in range(150)] + ["p0"], "t": [*range(150, 0, -1), 0]})
    from trainer.data import HISTORY_LIMIT, purchase_histories

    histories = purchase_histories(rows, "b", "p", "t")
    expected = [f"p{i % 120}" for i in range(HISTORY_LIMIT - 1, -1, -1)]  # t = 150 - i: the latest are the first rows
    assert histories["u"].split() == expected
    assert histories["v"] == "p0"


def test_history_columns_are_not_read_from_the_data():
    data = load_experiment_data(_history_spec())  # the synthetic table has no column "bought"
    assert "bought" in data.train.columns and "bought" not in load_table(SMALL).columns


def test_a_hash_split_carves_validation_independently_of_test():
    spec = _spec(SMALL, data={"split": {"strategy": "hash", "test_fraction": 0.25, "seed": 42}},
                 training={"validation_fraction": 0.2, "seed": 42})  # one seed for both: the salts differ
    data = load_experiment_data(spec)
    n = len(load_table(SMALL))
    assert 0.2 < len(data.test) / n < 0.3 and 0.15 < len(data.validation) / (n - len(data.test)) < 0.25
    assert not set(data.test.index) & set(data.validation.index)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_only_the_specs_columns_are_read_and_a_missing_one_is_named_with_the_files_columns(memory_dir, kind):
    rows = load_table(SMALL).assign(note="x" * 200)  # a wide column no feature uses
    uri = f"{memory_dir}/tx.{kind}"
    _write_csv(rows, uri) if kind == "csv" else rows.to_parquet(uri, index=False)
    projected = load_table(uri, text_columns=["customer_id"], columns=["product_id", "customer_id", "absent"])
    assert list(projected.columns) == [c for c in rows.columns if c in ("customer_id", "product_id")]
    assert "note" not in load_experiment_data(_spec(uri)).train.columns
    with pytest.raises(DataError, match=rf"tx.{kind}: missing column\(s\) loyalty \(has: .*note"):
        load_experiment_data(_with_buyer_feature(_spec(uri), "loyalty", "numeric"))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_text_columns_are_held_once_per_value_as_sorted_categories_with_the_same_values(memory_dir, kind):
    rows = load_table(SMALL)
    rows.loc[[5, 9, 12], "category"] = [None, " ", ""]  # missing, blank and empty: Parquet keeps "" apart from None
    uri = f"{memory_dir}/tx.{kind}"
    _write_csv(rows, uri) if kind == "csv" else rows.to_parquet(uri, index=False)
    data = load_experiment_data(_spec(uri))
    for column in ("customer_id", "product_id", "category"):
        values = data.train[column]
        assert isinstance(values.dtype, pd.CategoricalDtype), column
        assert list(values.cat.categories) == sorted(values.cat.categories), column
        expected = rows.loc[data.train.index, column].fillna("").astype(str)
        assert values.astype(str).tolist() == expected.tolist(), column
    assert data.train.sort_values("product_id")["product_id"].astype(str).is_monotonic_increasing


def test_a_blank_id_is_found_among_categories_as_among_strings():
    from trainer.data import is_blank

    values = pd.Series(["a", None, " ", "", "b"])
    assert is_blank(values.astype("category")).tolist() == is_blank(values).tolist() == [False, True, True, True, False]


@pytest.mark.parametrize("as_category", [False, True])
def test_values_and_tokens_are_counted_per_row_present_values_only(as_category):
    from trainer.stats import tokens_of, value_counts

    values = pd.Series(["red shoe", "red red hat", "", "red shoe", "blue"])
    unused = pd.Series(pd.Categorical(values, categories=[*sorted(set(values)), "never"]))
    values = unused if as_category else values
    assert value_counts(values).to_dict() == {"red shoe": 2, "red red hat": 1, "": 1, "blue": 1}
    assert tokens_of(value_counts(values)).to_dict() == {"red": 4, "shoe": 2, "hat": 1, "blue": 1}


@pytest.mark.parametrize("values", [["b", "a", "b"], ["b", None, "a"], []])
def test_a_categorical_spells_its_rows_as_its_strings_would(values):
    from trainer.data import as_strings

    plain = pd.Series(values, dtype=object)
    assert as_strings(plain.astype("category")).tolist() == as_strings(plain).tolist() == plain.astype(str).tolist()


# --- shards --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_shards_load_as_the_single_file_does_in_name_order(memory_dir, kind):
    rows = load_table(SMALL)
    parts = np.array_split(np.random.default_rng(0).permutation(len(rows)), 3)  # shards out of time order
    single = f"{memory_dir}/all.{kind}"
    ordered = pd.concat([rows.iloc[part] for part in parts], ignore_index=True)
    for i, part in reversed(list(enumerate(parts))):  # written last to first: only the names give the order
        shard, uri = rows.iloc[part], f"{memory_dir}/tx/part-{i}.{kind}"
        _write_csv(shard, uri) if kind == "csv" else shard.to_parquet(uri, index=False)
    _write_csv(ordered, single) if kind == "csv" else ordered.to_parquet(single, index=False)
    storage.write_bytes(f"{memory_dir}/tx/_SUCCESS", b"")
    time_split = {"transactions": single, "split": {"strategy": "time", "column": "timestamp", "test_fraction": 0.25}}
    expected = load_experiment_data(_spec(single, data=time_split))
    for pattern in (f"{memory_dir}/tx/part-*.{kind}", f"{memory_dir}/tx/", f"{memory_dir}/tx"):
        pd.testing.assert_frame_equal(load_table(pattern, text_columns=["customer_id"]), load_table(single, text_columns=["customer_id"]))
        data = load_experiment_data(_spec(pattern, data={**time_split, "transactions": pattern}))
        for part in ("train", "test", "candidates"):
            pd.testing.assert_frame_equal(getattr(data, part), getattr(expected, part))
        assert data.test["timestamp"].min() >= data.train["timestamp"].max()


def test_a_shard_with_other_columns_is_refused_before_its_rows_are_read(memory_dir):
    _write_csv(_frame(), f"{memory_dir}/tx/part-0.csv")
    _write_csv(_frame().rename(columns={"amount": "amout"}), f"{memory_dir}/tx/part-1.csv")
    with pytest.raises(DataError, match=r"part-1\.csv differs from .*part-0\.csv: missing amount; extra amout$") as info:
        load_table(f"{memory_dir}/tx/*.csv")
    assert info.value.code == "shard_schemas_differ"


def test_a_column_named_twice_in_a_csv_header_is_an_error(memory_dir):
    uri = f"{memory_dir}/rows.csv"
    storage.write_bytes(uri, b"buyer,product,buyer\nb1,p1,b9\n")
    with pytest.raises(DataError) as raised:  # pandas read the second as buyer.1: the spec's buyer meant the first
        load_table(uri, text_columns=["buyer"], columns=["buyer", "product"])
    assert str(raised.value) == f"{uri}: column 'buyer' appears 2 times in the header; each column needs a name of its own"
    assert raised.value.code == "repeated_column"


@pytest.mark.parametrize(
    ("times", "error"),
    [
        (["3", "1", "yesterday", "2"], "'yesterday' at data row 3 is not a number, as the column's other values are "
                                       "(1 such row(s))"),
        (["2024-01-03", "2024-13-45", "2024-01-01", "2024-01-02"], "'2024-13-45' at data row 2 is not a date, as the "
                                                                   "column's other values are (1 such row(s))"),
        (["3", "", "1", "2"], "1 row(s) have no value, first at data row 2"),
        (["03/01/2024 10:00", "2024-01-01T09:00:00", "02/01/2024 08:00", "2024-01-02T07:00:00"],
         "mixes date formats: '03/01/2024 10:00' at data row 1, '2024-01-01T09:00:00' at data row 2 (2 row(s) not in "
         "the first's format); write every time in one format, e.g. ISO 8601 (2026-01-31T09:30:00)"),
    ],
    ids=["numbers", "dates", "blank", "two-date-formats"],
)
def test_a_time_value_that_cannot_be_ordered_is_named_by_its_row(memory_dir, times, error):
    uri = f"{memory_dir}/rows.csv"
    rows = [f"b{i},p{i},{time}" for i, time in enumerate(times)]
    storage.write_bytes(uri, "\n".join(["buyer,product,ts", *rows, ""]).encode())
    frame = load_table(uri, text_columns=["buyer", "product"])
    with pytest.raises(DataError) as raised:
        split_transactions(frame, SplitSpec(strategy="time", column="ts", test_fraction=0.25))
    assert str(raised.value) in (f"time column 'ts': {error}", f"time column 'ts' {error}")
    assert raised.value.field == "data.split.column"
