"""trainer.datacheck: each data fault named as a finding, on tiny CSV/Parquet files written here."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from trainer.data import DataError, load_experiment_data
from trainer.datacheck import BadDataError, check_data, check_loaded, raise_for_errors
from trainer.rules import Finding
from trainer.spec import ExperimentSpec, spec_from_dict

N_BUYERS, N_PRODUCTS, ROWS_PER_BUYER = 30, 10, 8


def purchases() -> pd.DataFrame:
    """240 rows, 8 per buyer and 24 per product, so the seeded random split leaves nobody cold;
    `age` and `price` are clean numbers."""
    buyers = np.repeat(np.arange(N_BUYERS), ROWS_PER_BUYER)
    products = (buyers + np.tile(np.arange(ROWS_PER_BUYER), N_BUYERS)) % N_PRODUCTS
    return pd.DataFrame(
        {
            "buyer": [f"b{i:02d}" for i in buyers],
            "age": 20.0 + buyers,
            "product": [f"p{i}" for i in products],
            "price": 1.0 + products,
        }
    )


def spec_for(transactions: str, products: str | None = None, split: dict | None = None, **validation) -> ExperimentSpec:
    split = split or {"test_fraction": 0.25, "seed": 1}
    return spec_from_dict(
        {
            "name": "datacheck",
            "data": {"transactions": transactions, "products": products, "split": split},
            "buyer_features": [{"column": "buyer", "type": "id"}, {"column": "age", "type": "numeric"}],
            "product_features": [
                {"column": "product", "type": "id", "is_primary_id": True},
                {"column": "price", "type": "numeric"},
            ],
            "validation": {"min_train_rows": 100, "min_test_pairs": 20, **validation},
            "evaluation": {"ks": [5]},  # below the 10 products
        }
    )


def write(frame: pd.DataFrame, path) -> str:
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return str(path)


def codes(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.code, f.severity, f.field) for f in findings]


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_clean_data_has_no_findings(tmp_path, name):
    data, findings = check_data(spec_for(write(purchases(), tmp_path / name)))
    assert findings == [] and data is not None and len(data.train) == 180


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_non_finite_values_name_the_column_the_count_and_the_first_row(tmp_path, name):
    rows = purchases()
    rows.loc[[7, 100], "age"] = [np.inf, -np.inf]
    rows.loc[50, "age"] = np.nan  # a gap is filled from finite values, never counted as non-finite
    _, findings = check_data(spec_for(write(rows, tmp_path / name)))
    (finding,) = findings
    assert codes(findings) == [("non_finite_values", "error", "buyer_features[1].column")]
    assert finding.message == (
        f"column 'age' has 2 non-finite value(s) (inf, -inf, or too large for float32) in {tmp_path / name}, "
        "first at data row 8"
    )


def test_the_first_row_named_is_the_files_first_whichever_split_holds_it(tmp_path):
    rows = purchases()
    split = load_experiment_data(spec_for(write(rows, tmp_path / "clean.csv")))
    first_train, last_test = int(split.train.index.min()), int(split.test.index.max())
    assert first_train < last_test
    rows.loc[[first_train, last_test], "age"] = np.inf
    (finding,) = check_data(spec_for(write(rows, tmp_path / "t.csv")))[1]
    assert finding.message.endswith(f"has 2 non-finite value(s) (inf, -inf, or too large for float32) in "
                                    f"{tmp_path / 't.csv'}, first at data row {first_train + 1}")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_number_too_large_for_float32_is_non_finite(tmp_path):
    rows = purchases()
    rows.loc[3, "price"] = 1e300
    (finding,) = check_data(spec_for(write(rows, tmp_path / "t.csv")))[1]
    assert finding.field == "product_features[1].column" and "1 non-finite" in finding.message


def test_non_finite_catalogue_values_name_the_catalogue_and_its_row(tmp_path):
    rows = purchases().drop(columns="price")
    catalogue = pd.DataFrame({"product": [f"p{i}" for i in range(N_PRODUCTS)], "price": [1.0] * 9 + [np.inf]})
    spec = spec_for(write(rows, tmp_path / "t.csv"), write(catalogue, tmp_path / "p.csv"))
    (finding,) = check_data(spec)[1]
    assert finding.code == "non_finite_values" and finding.field == "product_features[1].column"
    assert f"in {tmp_path / 'p.csv'}, first at data row 10" in finding.message  # not the joined transaction rows


def test_blank_product_keys_are_an_error_naming_the_column_and_count(tmp_path):
    rows = purchases()
    rows.loc[[4, 9, 30], "product"] = ["   ", "", "\t"]
    _, findings = check_data(spec_for(write(rows, tmp_path / "t.csv")))
    (finding,) = findings
    assert codes(findings) == [("blank_ids", "error", "product_features[0].column")]
    assert "column 'product' is blank in 3 row(s), first at data row 5" in finding.message


def test_blank_catalogue_keys_name_the_catalogue(tmp_path):
    catalogue = pd.DataFrame({"product": ["p0", " ", "p2"], "price": [1.0, 2.0, 3.0]})
    spec = spec_for(write(purchases(), tmp_path / "t.csv"), write(catalogue, tmp_path / "p.csv"))
    (finding,) = check_data(spec)[1]
    assert finding.code == "blank_ids" and finding.message.startswith(f"{tmp_path / 'p.csv'}: column 'product'")


def test_blank_ids_in_a_non_key_id_feature(tmp_path):
    rows = purchases().assign(store=["s1"] * 239 + ["  "])
    spec = spec_for(write(rows, tmp_path / "t.csv"))
    store = spec.buyer_features[0].model_copy(update={"column": "store"})
    spec = spec.model_copy(update={"buyer_features": [*spec.buyer_features, store]})
    (finding,) = check_data(spec)[1]
    assert codes([finding]) == [("blank_ids", "error", "buyer_features[2].column")]
    assert "'store' is blank (missing or whitespace only) in 1 row(s)" in finding.message
    assert finding.message.endswith("first at data row 240")


def test_an_all_missing_numeric_column_is_a_warning(tmp_path):
    rows = purchases().assign(age=np.nan)
    _, findings = check_data(spec_for(write(rows, tmp_path / "t.csv")))
    assert codes(findings) == [("all_missing_numeric", "warning", "buyer_features[1].column")]
    assert "no value in any of the 180 training rows" in findings[0].message


def test_a_partly_missing_numeric_column_is_fine(tmp_path):
    rows = purchases()
    rows.loc[rows.index[:200], "age"] = np.nan
    assert check_data(spec_for(write(rows, tmp_path / "t.csv")))[1] == []


def test_a_value_that_is_no_number_in_a_numeric_column_is_named_with_its_row(tmp_path):
    rows = purchases().astype({"age": object})
    rows.loc[rows.index[[6, 9]], "age"] = ["abc", "12 years"]
    (finding,) = check_data(spec_for(write(rows, tmp_path / "t.csv")))[1]
    assert (finding.code, finding.severity) == ("bad_data", "error")
    assert finding.message == (f"{tmp_path / 't.csv'}: numeric column 'age' has 2 value(s) that are not numbers, "
                               "first 'abc' at data row 7")


@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
def test_a_table_without_rows_names_the_file_not_the_split(tmp_path, name):
    path = write(purchases().iloc[:0], tmp_path / name)
    data, findings = check_data(spec_for(path))
    assert data is None
    assert codes(findings) == [("no_rows", "error", "data.transactions")]
    assert findings[0].message.startswith(f"{path}: no rows") and "test_fraction" not in findings[0].message
    with pytest.raises(DataError, match=f"^{path}: no rows"):
        load_experiment_data(spec_for(path))


def test_an_empty_catalogue_names_the_catalogue(tmp_path):
    catalogue = write(pd.DataFrame({"product": [], "price": []}), tmp_path / "p.csv")
    (finding,) = check_data(spec_for(write(purchases(), tmp_path / "t.csv"), catalogue))[1]
    assert codes([finding]) == [("no_rows", "error", "data.products")]


def test_too_little_data_names_both_counts(tmp_path):
    path = write(purchases().iloc[:40], tmp_path / "t.csv")
    _, findings = check_data(spec_for(path))
    by_code = {f.code: f for f in findings if f.severity == "error"}
    assert set(by_code) == {"too_few_train_rows", "too_few_test_pairs"}
    assert by_code["too_few_train_rows"].message == (
        f"{path}: 40 row(s) leave 30 for training, fewer than validation.min_train_rows (100)"
    )
    assert "has 10 unique (buyer, product) pair(s), fewer than validation.min_test_pairs (20)" in (
        by_code["too_few_test_pairs"].message
    )


def test_the_minimums_are_the_specs(tmp_path):
    path = write(purchases().iloc[:40], tmp_path / "t.csv")
    findings = check_data(spec_for(path, min_train_rows=30, min_test_pairs=10))[1]
    assert not [f for f in findings if f.severity == "error"]


def test_three_rows_are_far_too_little(tmp_path):
    path = write(purchases().iloc[:3], tmp_path / "t.csv")
    errors = [f.code for f in check_data(spec_for(path))[1] if f.severity == "error"]
    assert errors == ["too_few_train_rows", "too_few_test_pairs"]


def test_cold_start_warns_with_counts_and_shares(tmp_path):
    rows = purchases().assign(ts=np.tile(np.arange(ROWS_PER_BUYER), N_BUYERS))  # everyone seen before ts 7
    newcomers = pd.DataFrame(  # the latest 6 rows: 3 new buyers, each buying one new and one known product
        {"buyer": ["n1", "n1", "n2", "n2", "n3", "n3"], "age": 30.0, "product": ["q1", "p1", "q2", "p2", "q1", "p3"]}
    ).assign(price=2.0, ts=ROWS_PER_BUYER)
    path = write(pd.concat([rows, newcomers], ignore_index=True), tmp_path / "t.csv")
    spec = spec_for(path, split={"strategy": "time", "column": "ts", "test_fraction": 0.1})  # test: 25 rows
    data = load_experiment_data(spec)
    findings = {f.code: f for f in check_loaded(spec, data)}
    assert set(findings) == {"cold_start_buyers", "cold_start_products"}
    assert findings["cold_start_buyers"].field == "buyer_features[0].column"
    assert findings["cold_start_products"].field == "product_features[0].column"
    n_buyers, n_products = data.test["buyer"].nunique(), data.test["product"].nunique()
    assert findings["cold_start_buyers"].message.startswith(
        f"3 of {n_buyers} test buyers ({3 / n_buyers:.1%}) never occur in training; "
        "they are in 6 of 25 test rows (24.0%)"
    )
    assert findings["cold_start_products"].message.startswith(
        f"2 of {n_products} test products ({2 / n_products:.1%}) never occur in training; they are in 3 of 25"
    )


def test_a_few_first_time_buyers_are_not_worth_a_warning(tmp_path):
    rows = purchases()
    one = pd.DataFrame({"buyer": ["new"], "age": [30.0], "product": ["p1"], "price": 2.0})
    rows = pd.concat([rows] * 5 + [one], ignore_index=True)  # at most 1 of 300 test rows is cold
    assert check_data(spec_for(write(rows, tmp_path / "t.csv")))[1] == []


def test_unreadable_data_is_one_finding_at_its_field(tmp_path):
    _, findings = check_data(spec_for(str(tmp_path / "absent.csv")))
    assert codes(findings) == [("data_unreadable", "error", "data.transactions")]


def test_raise_for_errors_names_every_error_and_ignores_warnings():
    warning = Finding(code="cold_start_buyers", severity="warning", field="buyer_features[0].column", message="w")
    raise_for_errors([warning])
    errors = [
        Finding(code="no_rows", severity="error", field="data.transactions", message="t.csv: no rows"),
        Finding(code="blank_ids", severity="error", field="product_features[0].column", message="blank"),
    ]
    with pytest.raises(BadDataError) as excinfo:
        raise_for_errors([warning, *errors])
    assert str(excinfo.value) == "bad data: data.transactions: t.csv: no rows; product_features[0].column: blank"
    assert excinfo.value.findings == errors and excinfo.value.field == "data.transactions"
    assert isinstance(excinfo.value, DataError)  # never retried, like every DataError
    again = pickle.loads(pickle.dumps(excinfo.value))  # Prefect stores exceptions in task states
    assert str(again) == str(excinfo.value) and again.findings == errors and again.code == "no_rows"


def test_purchases_of_products_the_catalogue_lacks_are_a_warning_with_both_counts(tmp_path):
    rows = purchases()
    rows.loc[rows["product"] == "p9", "product"] = "gone"  # 24 of 240 rows: a product since dropped
    catalogue = pd.DataFrame({"product": [f"p{i}" for i in range(N_PRODUCTS - 1)], "price": 1.0})
    spec = spec_for(write(rows.drop(columns="price"), tmp_path / "t.csv"), write(catalogue, tmp_path / "p.csv"))
    data = load_experiment_data(spec)
    (finding,) = check_loaded(spec, data)
    assert (finding.code, finding.severity, finding.field) == ("products_outside_catalogue", "warning", "data.products")
    n_train, dropped, n_test = data.stats.n_rows, data.n_test_rows_without_candidate, len(data.test)
    assert 0 < dropped and n_train + n_test + dropped == 240
    assert finding.message.startswith(
        f"{24 - dropped} of {n_train} training rows ({(24 - dropped) / n_train:.1%}) and {dropped} of "
        f"{n_test + dropped} test rows ({dropped / (n_test + dropped):.1%}) buy products that {tmp_path / 'p.csv'} "
        "lacks (e.g. 'gone'): the model can never retrieve them"
    )


def test_a_catalogue_that_has_every_product_bought_says_nothing(tmp_path):
    catalogue = pd.DataFrame({"product": [f"p{i}" for i in range(N_PRODUCTS + 5)], "price": 1.0})  # and unsold ones
    spec = spec_for(write(purchases().drop(columns="price"), tmp_path / "t.csv"), write(catalogue, tmp_path / "p.csv"))
    assert check_data(spec)[1] == []


def test_ids_with_spaces_around_them_are_a_warning_counting_those_with_a_twin(tmp_path):
    rows = purchases()
    rows.loc[rows["buyer"] == "b03", "buyer"] = " b03"  # every row of b03: no twin left
    rows.loc[[0, 1], "buyer"] = "b00 "  # two of b00's eight rows: the rest stay 'b00'
    spec = spec_for(write(rows, tmp_path / "t.parquet"))  # Parquet: CSV readers may strip spaces themselves
    data = load_experiment_data(spec)
    (finding,) = check_loaded(spec, data)
    n_padded = int(data.stats.counts["buyer"].filter(["b00 ", " b03"]).sum())
    assert (finding.code, finding.severity, finding.field) == ("padded_ids", "warning", "buyer_features[0].column")
    assert finding.message.startswith(f"id column 'buyer' has 2 value(s) with spaces around them in {n_padded} "
                                      "training row(s) (e.g. ")
    assert finding.message.endswith("; 1 of them also occur without the spaces, each learned as a second id")


def test_a_k_that_ranks_every_candidate_is_a_warning(tmp_path):
    spec = spec_for(write(purchases(), tmp_path / "t.csv"))
    spec = spec.model_copy(update={"evaluation": spec.evaluation.model_copy(update={"ks": [5, N_PRODUCTS, 50]})})
    (finding,) = check_data(spec)[1]
    assert (finding.code, finding.severity, finding.field) == ("ks_past_the_candidates", "warning", "evaluation.ks")
    assert finding.message == (f"@{N_PRODUCTS}, @50 rank all {N_PRODUCTS} candidates: recall there is 1 for any "
                               "model, popularity's too")


def test_times_in_seconds_and_milliseconds_mixed_are_a_warning_naming_both(tmp_path):
    seconds = 1_704_000_000 + 3600 * np.arange(240)
    rows = purchases().assign(ts=seconds)
    rows.loc[[2, 7], "ts"] = seconds[[2, 7]] * 1000  # two rows written by another exporter
    spec = spec_for(write(rows, tmp_path / "t.csv"), split={"strategy": "time", "column": "ts", "test_fraction": 0.25})
    (finding,) = [f for f in check_data(spec)[1] if f.code == "mixed_time_units"]  # a time split: cold starts too
    assert (finding.severity, finding.field) == ("warning", "data.split.column")
    assert "238 row(s) in seconds (e.g. " in finding.message
    assert f"2 row(s) in milliseconds (e.g. {seconds[2] * 1000} at data row 3)" in finding.message


def test_times_in_one_unit_or_small_numbers_say_nothing(tmp_path):
    for ts in (1_704_000_000_000 + np.arange(240), np.arange(240)):  # milliseconds alone; an ordinal
        rows = purchases().assign(ts=ts)
        split = {"strategy": "time", "column": "ts", "test_fraction": 0.25}
        findings = check_data(spec_for(write(rows, tmp_path / "t.csv"), split=split))[1]
        assert "mixed_time_units" not in [f.code for f in findings]
