"""trainer.rules: for each rule a case where it fires and a near miss where it does not."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import pytest

from trainer.rules import OPTIMIZERS, DataSchema, Finding, check, suggested_learning_rate
from trainer.spec import ExperimentSpec, spec_from_dict

TRANSACTIONS = (
    "customer_id", "customer_age", "region", "cust_value", "product_id", "category", "price", "description",
    "timestamp",
)  # fmt: skip
CATALOGUE = ("product_id", "category", "price", "description")
SCHEMA = DataSchema(transactions=TRANSACTIONS)

BASE = {
    "name": "rules-base",
    "data": {"transactions": "memory://rules/transactions.csv"},
    "buyer_features": [
        {"column": "customer_id", "type": "id"},
        {"column": "customer_age", "type": "numeric"},
        {"column": "region", "type": "categorical"},
    ],
    "product_features": [
        {"column": "product_id", "type": "id", "is_primary_id": True},
        {"column": "category", "type": "categorical"},
        {"column": "description", "type": "text"},
    ],
    "model": {
        "output_dim": 32,
        "buyer_layers": [{"type": "dense", "units": 64}, {"type": "dense", "units": 32}],
        "product_layers": [{"type": "dense", "units": 32}],
    },
    "training": {"optimizer": "adagrad", "learning_rate": 0.05, "clipnorm": 1.0},
}


def spec_with(change: Callable[[dict], object] | None = None) -> ExperimentSpec:
    """BASE with `change` applied to a deep copy of its raw mapping."""
    raw = copy.deepcopy(BASE)
    if change is not None:
        change(raw)
    return spec_from_dict(raw)


def put(path: str, value: object) -> Callable[[dict], None]:
    """A change that sets a dotted path (integer parts index lists), creating mappings on the way."""

    def change(raw: dict) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return change


def both(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        for one in changes:
            one(raw)

    return change


def add_buyer(column: str, type_: str = "numeric") -> Callable[[dict], None]:
    return lambda raw: raw["buyer_features"].append({"column": column, "type": type_})


def dense(n: int) -> list[dict]:
    return [{"type": "dense", "units": 32} for _ in range(n)]


def codes_at(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(finding.code, finding.field) for finding in findings}


def test_the_base_spec_is_clean():
    assert check(spec_with(), SCHEMA) == []


# (id, change, schema, code, field, severity): the rule must fire with this code at this field.
FIRES = [
    ("blank name", put("name", " "), None, "blank_name", "name", "error"),
    ("name with a newline", put("name", "deep\ntowers"), None, "unprintable_name", "name", "error"),
    ("duplicate column", add_buyer("region", "categorical"), SCHEMA, "duplicate_column", "buyer_features[3].column", "error"),
    ("two primary ids", put("product_features.1.is_primary_id", True), SCHEMA, "multiple_primary_ids", "product_features[1].is_primary_id", "error"),
    ("buyer column not in data", add_buyer("loyalty"), SCHEMA, "missing_column", "buyer_features[3].column", "error"),
    ("product column not in catalogue", both(put("data.products", "cat.csv"), put("product_features.1.column", "price_band")), DataSchema(TRANSACTIONS, CATALOGUE), "missing_column", "product_features[1].column", "error"),
    ("product key not in transactions", put("data.products", "cat.csv"), DataSchema(("customer_id", "customer_age", "region"), CATALOGUE), "missing_column", "product_features[0].column", "error"),
    ("time column not in data", put("data.split", {"strategy": "time", "column": "ts"}), SCHEMA, "missing_column", "data.split.column", "error"),
    ("time column of a random split not in data", put("data.split.column", "ts"), SCHEMA, "missing_column", "data.split.column", "error"),
    ("unknown optimizer", put("training.optimizer", "adamw"), None, "unknown_optimizer", "training.optimizer", "error"),
    ("negative learning rate", put("training.learning_rate", -0.1), None, "out_of_range", "training.learning_rate", "error"),
    ("zero learning rate", put("training.learning_rate", 0), None, "out_of_range", "training.learning_rate", "error"),
    ("nan learning rate", put("training.learning_rate", float("nan")), None, "not_finite", "training.learning_rate", "error"),
    ("infinite learning rate", put("training.learning_rate", float("inf")), None, "not_finite", "training.learning_rate", "error"),
    ("zero epochs", put("training.epochs", 0), None, "out_of_range", "training.epochs", "error"),
    ("negative batch size", put("training.batch_size", -8), None, "out_of_range", "training.batch_size", "error"),
    ("zero k", put("evaluation.ks", [5, 0]), None, "out_of_range", "evaluation.ks[1]", "error"),
    ("no ks", put("evaluation.ks", []), None, "no_ks", "evaluation.ks", "error"),
    ("buyer tower too wide", put("model.buyer_layers.1.units", 16), None, "tower_output_mismatch", "model.buyer_layers[1].units", "error"),
    ("product tower too wide", put("model.output_dim", 64), None, "tower_output_mismatch", "model.product_layers[0].units", "error"),
    ("no features", put("buyer_features", []), None, "empty_tower", "buyer_features", "error"),
    ("zero members", put("model.members", 0), None, "out_of_range", "model.members", "error"),
    ("members past any ensemble", put("model.members", 1000), None, "out_of_range", "model.members", "error"),
    ("a logQ weight of zero", put("model.logq_weight", 0), None, "out_of_range", "model.logq_weight", "error"),
    ("an embedding past any model", put("buyer_features.0.embedding_dim", 100_000_000), None, "out_of_range", "buyer_features[0].embedding_dim", "error"),
    ("ids past int32", put("buyer_features.0.hash_buckets", 2**31), None, "out_of_range", "buyer_features[0].hash_buckets", "error"),
    ("a layer past any model", put("model.product_layers.0.units", 70_000), None, "out_of_range", "model.product_layers[0].units", "error"),
    ("dense without units", put("model.buyer_layers.0", {"type": "dense"}), None, "dense_without_units", "model.buyer_layers[0].units", "error"),
    ("dropout without rate", put("model.buyer_layers.0", {"type": "dropout"}), None, "dropout_without_rate", "model.buyer_layers[0].rate", "error"),
    ("dropout rate 1", put("model.buyer_layers.0", {"type": "dropout", "rate": 1.0}), None, "out_of_range", "model.buyer_layers[0].rate", "error"),
    ("negative dropout rate", put("model.product_layers", [{"type": "dropout", "rate": -0.1}, *dense(1)]), None, "out_of_range", "model.product_layers[0].rate", "error"),
    ("unknown activation", put("model.buyer_layers.0.activation", "rectifier"), None, "unknown_activation", "model.buyer_layers[0].activation", "error"),
    ("test fraction 1", put("data.split.test_fraction", 1.0), None, "out_of_range", "data.split.test_fraction", "error"),
    ("test fraction 0", put("data.split.test_fraction", 0.0), None, "out_of_range", "data.split.test_fraction", "error"),
    ("time split without column", put("data.split.strategy", "time"), None, "time_split_without_column", "data.split.column", "error"),
    ("hashed text", put("product_features.2.hash_buckets", 1000), None, "hash_buckets_unsupported", "product_features[2].hash_buckets", "error"),
    ("one hash bucket", put("buyer_features.0.hash_buckets", 1), None, "out_of_range", "buyer_features[0].hash_buckets", "error"),
    ("numeric vocabulary", put("buyer_features.1.vocabulary", "ages.txt"), None, "vocabulary_unsupported", "buyer_features[1].vocabulary", "error"),
    ("vocabulary and hashing", both(put("buyer_features.0.vocabulary", "ids.txt"), put("buyer_features.0.hash_buckets", 1000)), None, "vocabulary_and_hashing", "buyer_features[0].hash_buckets", "error"),
    ("cutoff on a random split", put("data.split.cutoff", "2024-06-01"), None, "split_option_unused", "data.split.cutoff", "error"),
    ("key on a time split", put("data.split", {"strategy": "time", "column": "timestamp", "key": ["customer_id"]}), None, "split_option_unused", "data.split.key", "error"),
    ("empty hash key", put("data.split", {"strategy": "hash", "key": []}), None, "empty_split_key", "data.split.key", "error"),
    ("hash key not in the data", put("data.split", {"strategy": "hash", "key": ["customer_id", "order"]}), SCHEMA, "missing_column", "data.split.key[1]", "error"),
    ("cutoff and test fraction", put("data.split", {"strategy": "time", "column": "timestamp", "cutoff": 5, "test_fraction": 0.1}), None, "test_fraction_ignored", "data.split.test_fraction", "warning"),
    ("backoff factor 1", put("training.backoff.factor", 1.0), None, "out_of_range", "training.backoff.factor", "error"),
    ("backoff factor 0", put("training.backoff.factor", 0.0), None, "out_of_range", "training.backoff.factor", "error"),
    ("patience 0", put("training.collapse.patience", 0), None, "out_of_range", "training.collapse.patience", "error"),
    ("embedding dim 0", put("buyer_features.0.embedding_dim", 0), None, "out_of_range", "buyer_features[0].embedding_dim", "error"),
    ("clipnorm 0", put("training.clipnorm", 0.0), None, "out_of_range", "training.clipnorm", "error"),
    ("negative weight decay", put("training.weight_decay", -0.01), None, "out_of_range", "training.weight_decay", "error"),
    ("negative global clipnorm", both(put("training.clipnorm", None), put("training.global_clipnorm", -1.0)), None, "out_of_range", "training.global_clipnorm", "error"),
    ("both clipnorms", put("training.global_clipnorm", 1.0), None, "conflicting_clipping", "training.global_clipnorm", "error"),
    ("high lr, deep buyer tower", both(put("training.learning_rate", 0.1), put("model.buyer_layers", dense(3))), None, "high_learning_rate", "training.learning_rate", "warning"),
    ("high lr, deep product tower", both(put("training.learning_rate", 2.0), put("model.product_layers", dense(4))), None, "high_learning_rate", "training.learning_rate", "warning"),
    ("no primary id", put("product_features.0.is_primary_id", False), None, "no_primary_id", "product_features", "warning"),
    ("clipping off", put("training.clipnorm", None), None, "clipping_disabled", "training.clipnorm", "warning"),
    ("product feature in buyer tower", add_buyer("category", "categorical"), None, "product_column_in_buyer_tower", "buyer_features[3].column", "warning"),
    ("catalogue column in buyer tower", both(put("data.products", "cat.csv"), add_buyer("price")), DataSchema(TRANSACTIONS, CATALOGUE), "product_column_in_buyer_tower", "buyer_features[3].column", "warning"),
    ("relative artifacts", put("artifacts", "runs/artifacts"), None, "unsafe_artifacts", "artifacts", "error"),
    ("artifacts climbing out", put("artifacts", "../../../../tmp/elsewhere"), None, "unsafe_artifacts", "artifacts", "error"),
    ("absolute artifacts with ..", put("artifacts", "/srv/towerflow/../../etc"), None, "unsafe_artifacts", "artifacts", "error"),
    ("artifacts in the home of whoever runs it", put("artifacts", "~/artifacts"), None, "unsafe_artifacts", "artifacts", "error"),
    ("artifacts bucket with ..", put("artifacts", "gs://bucket/a/../../other"), None, "unsafe_artifacts", "artifacts", "error"),
    ("artifacts over ftp", put("artifacts", "ftp://host/artifacts"), None, "unsafe_artifacts", "artifacts", "error"),
    ("transactions over http", put("data.transactions", "http://example.com/t.csv"), None, "refused_data_uri", "data.transactions", "error"),
    ("catalogue over https", put("data.products", "https://example.com/p.parquet"), None, "refused_data_uri", "data.products", "error"),
    ("transactions on s3", put("data.transactions", "s3://bucket/t.csv"), None, "refused_data_uri", "data.transactions", "error"),
    ("bad built-in parameter", put("data.transactions", "synthetic-retail://transactions?customers=abc"), None, "bad_dataset_uri", "data.transactions", "error"),
    ("unknown built-in table", put("data.products", "movielens100k://users"), None, "bad_dataset_uri", "data.products", "error"),
    ("no training rows required", put("validation.min_train_rows", 0), None, "out_of_range", "validation.min_train_rows", "error"),
    ("no test pairs required", put("validation.min_test_pairs", 0), None, "out_of_range", "validation.min_test_pairs", "error"),
    ("history in the product tower", lambda raw: raw["product_features"].append({"column": "bought", "type": "history"}), None, "history_in_product_tower", "product_features[3].type", "error"),
    ("history named like a data column", add_buyer("cust_value", "history"), SCHEMA, "history_column_in_data", "buyer_features[3].column", "error"),
    ("normalized at temperature 1", put("model.normalize", True), None, "weak_normalized_temperature", "model.temperature", "warning"),
    ("zero workers", put("training.workers", 0), None, "out_of_range", "training.workers", "error"),
    ("negative gpus per worker", put("training.gpus_per_worker", -1), None, "out_of_range", "training.gpus_per_worker", "error"),
    ("global batch smaller than the replicas", both(put("training.workers", 4), put("training.gpus_per_worker", 2), put("training.batch_size", 7)), None, "batch_smaller_than_replicas", "training.batch_size", "error"),
    ("global batch uneven over workers", both(put("training.workers", 3), put("training.batch_size", 1024)), None, "uneven_replica_batch", "training.batch_size", "warning"),
    ("streaming a random split", put("data.streaming", True), None, "streaming_split", "data.split.strategy", "error"),
    ("streaming a time split by fraction", both(put("data.streaming", True), put("data.split", {"strategy": "time", "column": "timestamp"})), None, "streaming_split", "data.split.strategy", "error"),
    ("streaming a time split with validation", both(put("data.streaming", True), put("data.split", {"strategy": "time", "column": "timestamp", "cutoff": 5}), put("training.validation_fraction", 0.1)), None, "streaming_split", "training.validation_fraction", "error"),
    ("streaming a purchase history", both(put("data.streaming", True), put("data.split.strategy", "hash"), add_buyer("bought", "history")), None, "streaming_history", "buyer_features[3].type", "error"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "schema", "code", "field", "severity"), [c[1:] for c in FIRES], ids=[c[0] for c in FIRES])
def test_rule_fires(change, schema, code, field, severity):
    findings = check(spec_with(change), schema)
    matching = [f for f in findings if (f.code, f.field) == (code, field)]
    assert matching, f"expected {code} at {field}, got {codes_at(findings)}"
    assert all(f.severity == severity and f.message for f in matching)


# (id, change, schema, code): the rule must stay silent.
NEAR_MISSES = [
    ("a name in any script, with spaces", put("name", "名前 deep towers"), None, "unprintable_name"),
    ("same column in both towers is no duplicate", add_buyer("product_id", "id"), SCHEMA, "duplicate_column"),
    ("one primary id per tower", put("buyer_features.0.is_primary_id", True), SCHEMA, "multiple_primary_ids"),
    ("column present in data", add_buyer("cust_value"), SCHEMA, "missing_column"),
    ("columns unknown: nothing to compare", add_buyer("loyalty"), None, "missing_column"),
    ("product column in catalogue only", both(put("data.products", "cat.csv"), put("product_features.1.column", "price")), DataSchema(("customer_id", "customer_age", "region", "product_id"), CATALOGUE), "missing_column"),
    ("time column present", put("data.split", {"strategy": "time", "column": "timestamp"}), SCHEMA, "missing_column"),
    ("tiny positive learning rate", put("training.learning_rate", 1e-9), None, "out_of_range"),
    ("one epoch, batch of one, k of one", both(put("training.epochs", 1), put("training.batch_size", 1), put("evaluation.ks", [1])), None, "out_of_range"),
    ("no dense layer: the model appends Dense(output_dim)", put("model.product_layers", [{"type": "dropout", "rate": 0.1}]), None, "tower_output_mismatch"),
    ("last dense matches, dropout after it", put("model.buyer_layers", [{"type": "dense", "units": 128}, {"type": "dense", "units": 32}, {"type": "dropout", "rate": 0.2}]), None, "tower_output_mismatch"),
    ("dropout rate 0", put("model.buyer_layers", [{"type": "dropout", "rate": 0.0}, *dense(1)]), None, "out_of_range"),
    ("known activation", put("model.buyer_layers.0.activation", "leaky_relu"), None, "unknown_activation"),
    ("test fraction just below 1", put("data.split.test_fraction", 0.99), None, "out_of_range"),
    ("time split with column", put("data.split", {"strategy": "time", "column": "timestamp"}), None, "time_split_without_column"),
    ("hashed id", put("buyer_features.0.hash_buckets", 2), None, "hash_buckets_unsupported"),
    ("text vocabulary", put("product_features.2.vocabulary", "words.txt"), None, "vocabulary_unsupported"),
    ("cutoff on a time split", put("data.split", {"strategy": "time", "column": "timestamp", "cutoff": 5}), None, "split_option_unused"),
    ("cutoff alone", put("data.split", {"strategy": "time", "column": "timestamp", "cutoff": 5}), None, "test_fraction_ignored"),
    ("hash key in the data", put("data.split", {"strategy": "hash", "key": ["customer_id", "timestamp"]}), SCHEMA, "missing_column"),
    ("backoff factor just below 1", put("training.backoff.factor", 0.99), None, "out_of_range"),
    ("patience 1", put("training.collapse.patience", 1), None, "out_of_range"),
    ("embedding dim 1", put("buyer_features.0.embedding_dim", 1), None, "out_of_range"),
    ("global clipnorm alone", both(put("training.clipnorm", None), put("training.global_clipnorm", 5.0)), None, "conflicting_clipping"),
    ("global clipnorm alone is clipping", both(put("training.clipnorm", None), put("training.global_clipnorm", 5.0)), None, "clipping_disabled"),
    ("lr just below 0.1, deep tower", both(put("training.learning_rate", 0.099), put("model.buyer_layers", dense(3))), None, "high_learning_rate"),
    ("high lr, two dense layers plus dropout", both(put("training.learning_rate", 0.5), put("model.buyer_layers", [*dense(2), {"type": "dropout", "rate": 0.1}])), None, "high_learning_rate"),
    ("primary id on a later feature", both(put("product_features.0.is_primary_id", False), put("product_features.1.is_primary_id", True)), None, "no_primary_id"),
    ("buyer column not in catalogue", both(put("data.products", "cat.csv"), add_buyer("cust_value")), DataSchema(TRANSACTIONS, CATALOGUE), "product_column_in_buyer_tower"),
    ("absolute artifacts", put("artifacts", "/srv/towerflow/artifacts"), None, "unsafe_artifacts"),
    ("artifacts in a bucket", put("artifacts", "gs://bucket/towerflow"), None, "unsafe_artifacts"),
    ("artifacts by file URI", put("artifacts", "file:///srv/towerflow"), None, "unsafe_artifacts"),
    ("a dotted name is no .. segment", put("artifacts", "/srv/v1..2/artifacts"), None, "unsafe_artifacts"),
    ("local relative data", put("data.transactions", "data/t.csv"), None, "refused_data_uri"),
    ("data in a bucket", put("data.transactions", "gs://bucket/t.parquet"), None, "refused_data_uri"),
    ("data by file URI", put("data.products", "file:///srv/p.csv"), None, "refused_data_uri"),
    ("valid built-in parameters", put("data.transactions", "synthetic-retail://transactions?customers=50&clusters=2"), None, "bad_dataset_uri"),
    ("one training row required", put("validation.min_train_rows", 1), None, "out_of_range"),
    ("a history is derived, not read from the data", add_buyer("bought", "history"), SCHEMA, "missing_column"),
    ("a history under a new name", add_buyer("bought", "history"), SCHEMA, "history_column_in_data"),
    ("normalized at temperature 0.1", both(put("model.normalize", True), put("model.temperature", 0.1)), None, "weak_normalized_temperature"),
    ("one worker, visible GPUs", both(put("training.workers", 1), put("training.gpus_per_worker", 0)), None, "out_of_range"),
    ("global batch of one per replica", both(put("training.workers", 4), put("training.gpus_per_worker", 2), put("training.batch_size", 8)), None, "batch_smaller_than_replicas"),
    ("global batch even over workers", both(put("training.workers", 4), put("training.batch_size", 1024)), None, "uneven_replica_batch"),
    ("any batch on one worker of visible GPUs", put("training.batch_size", 1023), None, "uneven_replica_batch"),
    ("streaming a hash split, with validation", both(put("data.streaming", True), put("data.split.strategy", "hash"), put("training.validation_fraction", 0.1)), None, "streaming_split"),
    ("streaming a time split by cutoff", both(put("data.streaming", True), put("data.split", {"strategy": "time", "column": "timestamp", "cutoff": 5})), None, "streaming_split"),
    ("a random split in memory", put("data.split.strategy", "random"), None, "streaming_split"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "schema", "code"), [c[1:] for c in NEAR_MISSES], ids=[c[0] for c in NEAR_MISSES])
def test_rule_stays_silent(change, schema, code):
    findings = check(spec_with(change), schema)
    assert code not in {f.code for f in findings}, codes_at(findings)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_whitelisted_optimizer_is_accepted(optimizer):
    assert check(spec_with(put("training.optimizer", optimizer))) == []


def test_http_data_is_allowed_only_by_the_environment(monkeypatch):
    spec = spec_with(put("data.transactions", "https://example.com/t.csv"))
    monkeypatch.delenv("TOWERFLOW_ALLOW_HTTP_DATA", raising=False)
    (finding,) = [f for f in check(spec) if f.code == "refused_data_uri"]
    assert finding.message.startswith("https://example.com/t.csv: ") and "TOWERFLOW_ALLOW_HTTP_DATA=1" in finding.message
    monkeypatch.setenv("TOWERFLOW_ALLOW_HTTP_DATA", "1")
    assert "refused_data_uri" not in {f.code for f in check(spec)}


def test_bad_builtin_parameters_are_all_named():
    uri = "synthetic-retail://transactions?customers=abc&bogus=1"
    (finding,) = [f for f in check(spec_with(put("data.transactions", uri))) if f.code == "bad_dataset_uri"]
    assert finding.message.startswith(f"{uri}: ") and "customers" in finding.message and "bogus" in finding.message


def test_unsafe_artifacts_message_names_the_value():
    (finding,) = [f for f in check(spec_with(put("artifacts", "../elsewhere"))) if f.code == "unsafe_artifacts"]
    assert finding.message == "artifacts '../elsewhere' is a relative path: it would depend on where the worker runs"


def test_duplicate_names_the_column_and_both_paths():
    (finding,) = check(spec_with(add_buyer("region", "categorical")))
    assert "'region'" in finding.message
    assert "buyer_features[2].column" in finding.message  # where it first appeared
    assert finding.suggestion and "buyer_features[3]" in finding.suggestion


def test_every_repeat_is_reported_not_just_the_first():
    spec = spec_with(both(add_buyer("region", "categorical"), add_buyer("region", "categorical")))
    assert codes_at(check(spec)) == {
        ("duplicate_column", "buyer_features[3].column"),
        ("duplicate_column", "buyer_features[4].column"),
    }


def test_missing_column_names_the_data_path_and_a_close_match():
    spec = spec_with(add_buyer("cust_valu"))
    (finding,) = check(spec, SCHEMA)
    assert "memory://rules/transactions.csv" in finding.message
    assert "'cust_valu'" in finding.message
    assert finding.suggestion == "did you mean 'cust_value'?"


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_header_separated_otherwise_is_named(separator):
    findings = check(spec_with(), DataSchema(transactions=(separator.join(TRANSACTIONS),)))
    assert findings and {f.code for f in findings} == {"missing_column"}
    assert {f.suggestion for f in findings} == {f"the header is separated by {separator!r}; towerflow reads CSV "
                                                "separated by ','"}


def test_missing_catalogue_column_names_the_catalogue_path():
    spec = spec_with(both(put("data.products", "gs://shop/catalogue.parquet"), put("product_features.1.column", "colour")))
    (finding,) = check(spec, DataSchema(TRANSACTIONS, CATALOGUE))
    assert "gs://shop/catalogue.parquet" in finding.message


def test_unknown_optimizer_lists_the_whitelist_and_suggests_a_close_name():
    (finding,) = check(spec_with(put("training.optimizer", "Adam")))
    assert all(name in finding.message for name in OPTIMIZERS)
    assert finding.suggestion == "did you mean 'adam'?"


def test_out_of_range_message_states_the_limit_and_the_value():
    (finding,) = check(spec_with(put("training.backoff.factor", 1.5)))
    assert finding.message == "training.backoff.factor must be in (0, 1), got 1.5"


def test_tower_mismatch_suggests_the_output_dim():
    (finding,) = check(spec_with(put("model.buyer_layers.1.units", 16)))
    assert "16" in finding.message and "32" in finding.message
    assert finding.suggestion == "set model.buyer_layers[1].units to 32"


@pytest.mark.parametrize("rate", [0.1, 0.3, 10.0])
def test_high_learning_rate_suggests_a_concrete_lower_rate(rate):
    spec = spec_with(both(put("training.learning_rate", rate), put("model.buyer_layers", dense(3))))
    (finding,) = check(spec)
    suggested = float(re.search(r"learning_rate: ([0-9.e-]+)", finding.suggestion).group(1))
    assert 0 < suggested < rate and suggested < 0.1
    assert "3 dense layers" in finding.message and "model.buyer_layers" in finding.message


@pytest.mark.parametrize(
    ("product_features", "fallback"),
    [
        ([{"column": "sku", "type": "categorical"}, {"column": "item_key", "type": "id"}], "item_key"),
        ([{"column": "sku", "type": "categorical"}, {"column": "brand", "type": "categorical"}], "sku"),
    ],
)
def test_no_primary_id_names_the_fallback_column(product_features, fallback):
    spec = spec_with(put("product_features", product_features))
    (finding,) = [f for f in check(spec) if f.code == "no_primary_id"]
    assert fallback == spec.product_id_column
    assert f"'{fallback}'" in finding.message


def test_all_problems_are_reported_at_once():
    spec = spec_with(
        both(
            add_buyer("region", "categorical"),
            put("training.optimizer", "adamw"),
            put("training.learning_rate", -1),
            put("training.clipnorm", None),
        )
    )
    assert {f.code for f in check(spec)} == {"duplicate_column", "unknown_optimizer", "out_of_range", "clipping_disabled"}


def test_missing_column_lists_a_long_schema_briefly():
    wide = DataSchema(transactions=TRANSACTIONS + tuple(f"extra_{i}" for i in range(40)))
    (finding,) = check(spec_with(add_buyer("loyalty")), wide)
    assert "customer_id" in finding.message and "(34 more)" in finding.message and "extra_39" not in finding.message


@pytest.mark.parametrize(
    ("rate", "suggested"), [(10.0, 0.01), (0.1, 0.01), (0.05, 0.005), (-1.0, 0.01), (float("nan"), 0.01)]
)
def test_suggested_learning_rate(rate, suggested):
    assert suggested_learning_rate(spec_with(put("training.learning_rate", rate))) == pytest.approx(suggested)
