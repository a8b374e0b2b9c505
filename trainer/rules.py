"""Validation rules: an experiment spec (plus, when known, its data's columns) -> findings.

Pure functions, no I/O: `trainer.schema` reads the columns, `trainer.validation` puts the two
together. Every rule reports each problem it sees as a `Finding` with a field path into the
spec, so a user fixes everything in one pass instead of one error per run.

Numeric limits live in one table (`BOUNDS`); the structural rules are small functions listed
in `RULES`. Adding a rule means adding a row or a function to one of them.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from trainer.datasets import builtin_columns, is_builtin
from trainer.spec import ExperimentSpec, FeatureSpec, LayerSpec, feature_paths

OPTIMIZERS = ("adagrad", "adam", "rmsprop", "sgd")  # the names trainer.model builds, spelled exactly
# the activation names tf-keras resolves
ACTIVATIONS = (
    "elu", "exponential", "gelu", "hard_sigmoid", "leaky_relu", "linear", "mish", "relu", "relu6", "selu",
    "sigmoid", "silu", "softmax", "softplus", "softsign", "swish", "tanh",
)  # fmt: skip
HIGH_LEARNING_RATE = 0.1
DEEP_TOWER_DENSE_LAYERS = 3
SAFE_LEARNING_RATE = 0.01
DATA_SCHEMES = ("file", "gs", "memory")  # besides plain local paths and the built-in datasets
ARTIFACT_SCHEMES = ("file", "gs", "memory")
ALLOW_HTTP_DATA = "TOWERFLOW_ALLOW_HTTP_DATA"  # =1 lets data be read from http(s):// URLs


class Finding(BaseModel):
    """One problem in a spec: where it is (`field`), what is wrong, and how to fix it."""

    model_config = ConfigDict(frozen=True)

    code: str
    severity: Literal["error", "warning"]
    field: str
    message: str
    suggestion: str | None = None


@dataclass(frozen=True)
class DataSchema:
    """The column names of the data a spec points at; None where they are unknown."""

    transactions: tuple[str, ...] | None = None
    products: tuple[str, ...] | None = None


def check(spec: ExperimentSpec, schema: DataSchema | None = None) -> list[Finding]:
    """Run every rule on `spec` (and on its data's columns, where `schema` knows them)."""
    schema = schema or DataSchema()
    findings = list(_check_bounds(spec))
    for rule in RULES:
        findings.extend(rule(spec, schema))
    return findings


# --- numeric limits ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """A numeric limit on every value at `path` (`[]` = each item of a list; None values are skipped)."""

    path: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = False
    high_inclusive: bool = False
    suggestion: str | None = None

    def allows(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            return False
        return True

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            left = "[" if self.low_inclusive else "("
            right = "]" if self.high_inclusive else ")"
            return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f"{'>=' if self.low_inclusive else '>'} {_number(self.low)}"
        return f"{'<=' if self.high_inclusive else '<'} {_number(self.high)}"


def _positive(path: str, suggestion: str | None = None) -> Bound:
    return Bound(path, low=0, suggestion=suggestion)


MAX_WIDTH = 65_536
"""The most values an embedding or a layer may have: far past any retrieval model, so only a slip (a
100000000 meant as 128) is refused, before TensorFlow tries to allocate it."""
MAX_BUCKETS = 2**31 - 1  # looked-up ids are int32 (trainer.model.ID_DTYPE)


def _size(path: str) -> Bound:
    return Bound(path, low=0, high=MAX_WIDTH, high_inclusive=True, suggestion="a size such as 32, 64 or 128")


def _buckets(path: str) -> Bound:
    return Bound(path, low=2, high=MAX_BUCKETS, low_inclusive=True, high_inclusive=True,
                 suggestion="hash_buckets: about 2x the distinct ids")


BOUNDS: tuple[Bound, ...] = (
    _positive("training.learning_rate", "a learning rate such as 0.05 (adagrad) or 0.001 (adam)"),
    _positive("training.epochs"),
    _positive("training.batch_size", "a batch size such as 1024"),
    _positive("training.clipnorm", "clipnorm: 1.0, or null to disable clipping"),
    _positive("training.global_clipnorm", "global_clipnorm: 1.0, or null to disable it"),
    _positive("training.weight_decay", "weight_decay: 0.1, or null for none"),
    Bound("training.validation_fraction", low=0, high=1, low_inclusive=True),
    Bound("training.early_stopping_patience", low=1, low_inclusive=True),
    Bound("training.workers", low=1, low_inclusive=True, suggestion="workers: 1 (one process), or the machines to train on"),
    Bound("training.gpus_per_worker", low=0, low_inclusive=True, suggestion="gpus_per_worker: 0 (every visible GPU)"),
    Bound("training.collapse.patience", low=1, low_inclusive=True, suggestion="patience: 3"),
    Bound("training.collapse.min_grad_norm", low=0, low_inclusive=True),
    _positive("training.collapse.loss_tolerance"),
    Bound("training.backoff.factor", low=0, high=1, suggestion="factor: 0.1 (each retry uses a tenth of the rate)"),
    Bound("training.backoff.max_retries", low=0, low_inclusive=True),
    _positive("training.backoff.min_learning_rate"),
    Bound("data.split.test_fraction", low=0, high=1, suggestion="test_fraction: 0.2"),
    _positive("evaluation.ks[]", "ks such as [5, 10, 50, 100]"),
    _size("model.output_dim"),
    Bound("model.members", low=1, high=64, low_inclusive=True, high_inclusive=True,
          suggestion="members: 1 (one tower pair), or 2-4 for an ensemble"),
    _positive("model.temperature"),
    _positive("model.logq_weight", "logq_weight: 1 (the unbiased correction), up to about 1.5 to discount popular products"),
    _positive("evaluation.ease_l2", "ease_l2: 300"),
    Bound("evaluation.ease_max_candidates", low=1, low_inclusive=True),
    _size("model.buyer_layers[].units"),
    _size("model.product_layers[].units"),
    Bound("model.buyer_layers[].rate", low=0, high=1, low_inclusive=True, suggestion="a dropout rate such as 0.1"),
    Bound("model.product_layers[].rate", low=0, high=1, low_inclusive=True, suggestion="a dropout rate such as 0.1"),
    _size("buyer_features[].embedding_dim"),
    _size("product_features[].embedding_dim"),
    _buckets("buyer_features[].hash_buckets"),
    _buckets("product_features[].hash_buckets"),
    _positive("validation.approval_timeout_s"),
    Bound("validation.min_train_rows", low=1, low_inclusive=True),
    Bound("validation.min_test_pairs", low=1, low_inclusive=True),
    Bound("validation.lr_probe_steps", low=20, low_inclusive=True, suggestion="lr_probe_steps: 200 (20 rates, 10 steps each)"),
)


def _check_bounds(spec: ExperimentSpec) -> Iterator[Finding]:
    for bound in BOUNDS:
        for field, value in _values_at(spec, bound.path):
            if value is None:
                continue
            if not math.isfinite(value):
                yield error("not_finite", field, f"{field} must be a finite number, got {value}", bound.suggestion)
            elif not bound.allows(value):
                message = f"{field} must be {bound.describe()}, got {_number(value)}"
                yield error("out_of_range", field, message, bound.suggestion)


def _values_at(obj: Any, path: str, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (concrete field path, value) for a dotted path where `name[]` means each item."""
    head, _, rest = path.partition(".")
    name = head.removesuffix("[]")
    value = getattr(obj, name)
    here = f"{prefix}.{name}" if prefix else name
    items = [(f"{here}[{i}]", item) for i, item in enumerate(value)] if head.endswith("[]") else [(here, value)]
    for item_path, item in items:
        if rest:
            yield from _values_at(item, rest, item_path)
        else:
            yield item_path, item


# --- structural rules ----------------------------------------------------------------------

Rule = Callable[[ExperimentSpec, DataSchema], Iterable[Finding]]
_TOWERS = (("buyer", "buyer_features", "buyer_layers"), ("product", "product_features", "product_layers"))


def _towers(spec: ExperimentSpec) -> Iterator[tuple[str, str, list[FeatureSpec], str, list[LayerSpec]]]:
    """(tower name, features path, features, layers path, layers) for the buyer and product towers."""
    for tower, features_key, layers_key in _TOWERS:
        yield tower, features_key, getattr(spec, features_key), f"model.{layers_key}", getattr(spec.model, layers_key)


def experiment_name(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    if not spec.name.strip():
        yield error("blank_name", "name", "the experiment has no name: results, reports and the Prefect UI list it by name",
                    "name: a few words saying what this experiment tries, e.g. movielens-deeper-towers")
    elif not spec.name.isprintable():
        yield error("unprintable_name", "name", f"the name {spec.name!r} holds a control character (a newline, a tab)",
                    "name: one line of printable characters")


def empty_tower(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    for tower, path, features, _, _ in _towers(spec):
        if not features:
            yield error("empty_tower", path, f"the {tower} tower has no features", f"add at least the {tower} id column")


def duplicate_columns(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    for tower, path, features, _, _ in _towers(spec):
        first_seen: dict[str, int] = {}
        for i, feature in enumerate(features):
            if feature.column in first_seen:
                first = f"{path}[{first_seen[feature.column]}].column"
                yield error(
                    "duplicate_column",
                    f"{path}[{i}].column",
                    f"column {feature.column!r} appears twice in the {tower} tower (first at {first})",
                    f"remove {path}[{i}]: each column feeds a tower once",
                )
            else:
                first_seen[feature.column] = i


def multiple_primary_ids(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    for tower, path, features, _, _ in _towers(spec):
        flagged = [i for i, feature in enumerate(features) if feature.is_primary_id]
        for i in flagged[1:]:
            first = features[flagged[0]].column
            yield error(
                "multiple_primary_ids",
                f"{path}[{i}].is_primary_id",
                f"{features[i].column!r} is marked is_primary_id but {first!r} ({path}[{flagged[0]}]) already is",
                "mark exactly one column of the tower as its key with is_primary_id: true",
            )


def no_primary_id(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    features = spec.product_features
    if features and not any(feature.is_primary_id for feature in features):
        chosen = spec.product_id_column
        index = next(i for i, feature in enumerate(features) if feature.column == chosen)
        why = "the first id feature" if features[index].type == "id" else "the first feature, as no feature is an id"
        yield warning(
            "no_primary_id",
            "product_features",
            f"no product feature has is_primary_id: true; the product key falls back to {chosen!r} ({why})",
            f"set is_primary_id: true on the product key (product_features[{index}] if {chosen!r} is right)",
        )


def unknown_optimizer(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    name = spec.training.optimizer
    if name not in OPTIMIZERS:
        yield error(
            "unknown_optimizer",
            "training.optimizer",
            f"unknown optimizer {name!r}; supported: {', '.join(OPTIMIZERS)}",
            _did_you_mean(name.lower(), OPTIMIZERS) or "optimizer: adagrad",
        )


def layer_structure(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    for tower, _, _, path, layers in _towers(spec):
        for i, layer in enumerate(layers):
            here = f"{path}[{i}]"
            if layer.type == "dense" and layer.units is None:
                yield error("dense_without_units", f"{here}.units", f"dense layer {here} has no units", "units: 32")
            if layer.type == "dropout" and layer.rate is None:
                yield error("dropout_without_rate", f"{here}.rate", f"dropout layer {here} has no rate", "rate: 0.1")
            if layer.activation is not None and layer.activation not in ACTIVATIONS:
                yield error(
                    "unknown_activation",
                    f"{here}.activation",
                    f"unknown activation {layer.activation!r}; supported: {', '.join(ACTIVATIONS)}",
                    _did_you_mean(layer.activation.lower(), ACTIVATIONS),
                )


def tower_output_sizes(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """A tower's output is its last dense layer (a tower without one gets a Dense(output_dim) appended)."""
    output_dim = spec.model.output_dim
    for tower, _, _, path, layers in _towers(spec):
        dense = [i for i, layer in enumerate(layers) if layer.type == "dense"]
        if not dense:
            continue
        last = dense[-1]
        units = layers[last].units
        if units is not None and units != output_dim:
            yield error(
                "tower_output_mismatch",
                f"{path}[{last}].units",
                f"the {tower} tower outputs {units} values (its last dense layer) but model.output_dim is "
                f"{output_dim}: the buyer and product embeddings could not be dotted",
                f"set {path}[{last}].units to {output_dim}",
            )


def clipping(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    training = spec.training
    if training.clipnorm is not None and training.global_clipnorm is not None:
        yield error(
            "conflicting_clipping",
            "training.global_clipnorm",
            "clipnorm and global_clipnorm are both set; an optimizer takes only one of them",
            "keep clipnorm: 1.0 and set global_clipnorm: null",
        )
    elif training.clipnorm is None and training.global_clipnorm is None:
        yield warning(
            "clipping_disabled",
            "training.clipnorm",
            "gradient clipping is off (clipnorm and global_clipnorm are null): one exploding step can "
            "collapse the model, as in the post-mortem",
            "clipnorm: 1.0",
        )


def replica_batch(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """The global batch is split across workers x GPUs per worker (at least the replicas known from the spec)."""
    training = spec.training
    replicas = training.workers * max(training.gpus_per_worker, 1)
    if replicas <= 1 or training.batch_size <= 0:
        return
    if training.batch_size < replicas:
        yield error(
            "batch_smaller_than_replicas",
            "training.batch_size",
            f"training.batch_size {training.batch_size} is the global batch, split over {replicas} replicas "
            f"(workers x gpus_per_worker): some replicas would train on nothing",
            f"batch_size: {replicas * 256} or fewer workers",
        )
    elif training.batch_size % replicas:
        yield warning(
            "uneven_replica_batch",
            "training.batch_size",
            f"training.batch_size {training.batch_size} does not divide over {replicas} replicas: their "
            f"batches differ in size and the smallest sets the pace",
            f"batch_size: {training.batch_size // replicas * replicas}",
        )


def time_split_column(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    split = spec.data.split
    if split.strategy == "time" and not split.column:
        yield error(
            "time_split_without_column",
            "data.split.column",
            "a time split needs the timestamp column to order transactions by",
            "column: timestamp",
        )


def split_options(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """`cutoff` belongs to a time split and `key` to a hash split; a cutoff makes test_fraction moot."""
    split = spec.data.split
    for option, strategy in (("cutoff", "time"), ("key", "hash")):
        if getattr(split, option) is not None and split.strategy != strategy:
            message = f"data.split.{option} applies to strategy {strategy!r} only, not {split.strategy!r}"
            yield error("split_option_unused", f"data.split.{option}", message, f"strategy: {strategy}")
    if split.key == []:
        yield error("empty_split_key", "data.split.key", "data.split.key lists no column", "key: [customer_id, product_id]")
    if split.strategy == "time" and split.cutoff is not None and "test_fraction" in split.model_fields_set:
        message = f"data.split.test_fraction {split.test_fraction} is ignored: the cutoff {split.cutoff} decides the test rows"
        yield warning("test_fraction_ignored", "data.split.test_fraction", message, "remove test_fraction or cutoff")


def empty_ks(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    if not spec.evaluation.ks:
        yield error("no_ks", "evaluation.ks", "evaluation.ks is empty: no recall@k to compute", "ks: [5, 10, 50, 100]")


def high_learning_rate(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    rate = spec.training.learning_rate
    if not (math.isfinite(rate) and rate >= HIGH_LEARNING_RATE):
        return
    deep = [
        f"the {tower} tower's {n} dense layers ({path})"
        for tower, _, _, path, layers in _towers(spec)
        if (n := sum(layer.type == "dense" for layer in layers)) >= DEEP_TOWER_DENSE_LAYERS
    ]
    if deep:
        lower = _number(suggested_learning_rate(spec))
        yield warning(
            "high_learning_rate",
            "training.learning_rate",
            f"learning rate {_number(rate)} is high for {' and '.join(deep)}: deep towers at such a rate tend "
            "to collapse to scoring every product alike",
            f"training.learning_rate: {lower} (or --set training.learning_rate={lower})",
        )


def suggested_learning_rate(spec: ExperimentSpec) -> float:
    """A safer learning rate than the spec's: a tenth of it, at most 0.01 (0.01 if it is not a positive number).

    The post-mortem's deep tower collapsed at 0.1 and trained at 0.005.
    """
    rate = spec.training.learning_rate
    return min(SAFE_LEARNING_RATE, rate / 10) if math.isfinite(rate) and rate > 0 else SAFE_LEARNING_RATE


def product_column_in_buyer_tower(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    product_columns = {feature.column: f"product_features[{i}]" for i, feature in enumerate(spec.product_features)}
    catalogue = set(schema.products or ())
    for i, feature in enumerate(spec.buyer_features):
        if feature.column in product_columns:
            where = f"a product tower column ({product_columns[feature.column]})"
        elif feature.column in catalogue:
            where = f"a column of the product catalogue ({spec.data.products})"
        else:
            continue
        yield warning(
            "product_column_in_buyer_tower",
            f"buyer_features[{i}].column",
            f"buyer feature {feature.column!r} is {where}: the buyer tower would see the product it is meant to "
            "predict (target leakage), so test recall overstates the model",
            f"remove buyer_features[{i}], or replace it with a per-buyer aggregate computed from training data only",
        )


def history_features(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """A `history` feature is derived from the buyer's training purchases: buyer tower only, and
    under a name the data does not already use (towerflow would silently replace that column)."""
    for i, feature in enumerate(spec.product_features):
        if feature.type == "history":
            yield error(
                "history_in_product_tower",
                f"product_features[{i}].type",
                f"product feature {feature.column!r} is a purchase history, which describes a buyer",
                f"move product_features[{i}] to buyer_features",
            )
    columns = set(schema.transactions or ()) | set(schema.products or ())
    for i, feature in enumerate(spec.buyer_features):
        if feature.type == "history" and feature.column in columns:
            yield error(
                "history_column_in_data",
                f"buyer_features[{i}].column",
                f"{feature.column!r} is a column of the data, but a history feature is derived by towerflow "
                "from the buyer's training purchases",
                f"name the history feature something the data does not use, e.g. {feature.column + '_history'!r}",
            )


def streaming_split(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """A streamed table is split row by row as it passes: by a hash split or a time cutoff, never by
    a share of all the rows (that needs them all at once); nor is a history feature derived from it."""
    if not spec.data.streaming:
        return
    split = spec.data.split
    if split.strategy == "random" or (split.strategy == "time" and split.cutoff is None):
        how = "a random split" if split.strategy == "random" else "a time split by test_fraction"
        yield error(
            "streaming_split",
            "data.split.strategy",
            f"data.streaming reads rows one batch at a time, but {how} needs every row at once",
            "strategy: hash (a seeded hash of each row's key), or strategy: time with a cutoff",
        )
    if split.strategy == "time" and spec.training.validation_fraction > 0:
        yield error(
            "streaming_split",
            "training.validation_fraction",
            "data.streaming with a time split cannot carve the latest training rows for validation as they pass",
            "training.validation_fraction: 0, or strategy: hash",
        )
    for path, feature in feature_paths(spec):
        if feature.type == "history":
            yield error(
                "streaming_history",
                f"{path}.type",
                f"{feature.column!r} is a purchase history, which needs every training row of a buyer at once; "
                "data.streaming never holds them",
                "remove the history feature or set data.streaming: false",
            )


def feature_vocabularies(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """`hash_buckets` replaces the vocabulary of an id or a category; `vocabulary` names one for any
    string feature; a feature has at most one of the two."""
    for path, feature in feature_paths(spec):
        if feature.hash_buckets is not None and feature.type not in ("id", "categorical"):
            message = f"hash_buckets hashes an id or a category, not a {feature.type} feature ({feature.column!r})"
            yield error("hash_buckets_unsupported", f"{path}.hash_buckets", message, "remove hash_buckets")
        if feature.vocabulary is not None and feature.type == "numeric":
            message = f"numeric feature {feature.column!r} has no vocabulary"
            yield error("vocabulary_unsupported", f"{path}.vocabulary", message, "remove vocabulary")
        if feature.vocabulary is not None and feature.hash_buckets is not None:
            message = f"{feature.column!r} names a vocabulary and hash_buckets: it can be looked up or hashed, not both"
            yield error("vocabulary_and_hashing", f"{path}.hash_buckets", message, "keep one of the two")


NORMALIZED_TEMPERATURE_MAX = 0.5


def normalized_temperature(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    """Normalized embeddings score within +-1/temperature: at temperature 1 the softmax can hardly
    separate a buyer's product from the rest, and the loss stays near the uniform-score loss."""
    model = spec.model
    if model.normalize and model.temperature > NORMALIZED_TEMPERATURE_MAX:
        yield warning(
            "weak_normalized_temperature",
            "model.temperature",
            f"model.normalize scores are cosines / temperature, within +-{1 / model.temperature:g} at temperature "
            f"{model.temperature:g}: too flat for the softmax to learn much",
            "temperature: 0.1 (0.05-0.2 is the usual range with normalized embeddings)",
        )


def missing_columns(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    transactions = spec.data.transactions
    catalogue_known = spec.data.products is not None
    wanted: list[tuple[str, str, str | None, Sequence[str] | None]] = [
        (f"buyer_features[{i}].column", f.column, transactions, schema.transactions)
        for i, f in enumerate(spec.buyer_features)
        if f.type != "history"
    ]
    for i, feature in enumerate(spec.product_features):
        field = f"product_features[{i}].column"
        if catalogue_known:
            wanted.append((field, feature.column, spec.data.products, schema.products))
        else:
            wanted.append((field, feature.column, transactions, schema.transactions))
    if catalogue_known and spec.product_features:
        key = spec.product_id_column
        index = next(i for i, feature in enumerate(spec.product_features) if feature.column == key)
        wanted.append((f"product_features[{index}].column", key, transactions, schema.transactions))
    if spec.data.split.column:  # read for any strategy: it also picks each product's latest row
        wanted.append(("data.split.column", spec.data.split.column, transactions, schema.transactions))
    if spec.data.split.strategy == "hash":
        key = enumerate(spec.data.split.key or [])
        wanted += [(f"data.split.key[{i}]", column, transactions, schema.transactions) for i, column in key]
    for field, column, uri, columns in wanted:
        if columns is not None and column not in columns:
            yield error(
                "missing_column",
                field,
                f"column {column!r} is not in {uri} (it has: {_listing(columns)})",
                _separated_otherwise(column, columns) or _did_you_mean(column, columns),
            )


def data_uri_problem(uri: str) -> str | None:
    """Why towerflow must not read `uri`, or None; decided from the text alone, nothing is opened.

    Allowed: local paths, file://, gs://, memory:// and the built-in datasets with a known table
    and valid parameters; http(s):// only with TOWERFLOW_ALLOW_HTTP_DATA=1.
    """
    scheme = urlsplit(uri).scheme
    if is_builtin(uri):
        try:
            builtin_columns(uri)
        except ValueError as exc:
            return str(exc).removeprefix(f"{uri}: ")
        return None
    if scheme in ("http", "https"):
        if os.environ.get(ALLOW_HTTP_DATA) == "1":
            return None
        return f"data is not read over {scheme}:// unless {ALLOW_HTTP_DATA}=1"
    if scheme and scheme not in DATA_SCHEMES:
        return f"unsupported scheme {scheme}://: use a local path, file://, gs://, memory:// or a built-in dataset"
    return None


def data_uris(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    for table in ("transactions", "products"):
        uri = getattr(spec.data, table)
        problem = uri and data_uri_problem(uri)
        if problem:
            code = "bad_dataset_uri" if is_builtin(uri) else "refused_data_uri"
            suggestion = None if is_builtin(uri) else "copy the file to gs:// or a local path"
            yield error(code, f"data.{table}", f"{uri}: {problem}", suggestion)


def artifacts_problem(root: str) -> str | None:
    """Why `root` cannot be an artifacts root, or None: it must be an absolute local path or a
    file://, gs:// or memory:// URI, without `..` segments (so a config cannot aim writes elsewhere)."""
    parts = urlsplit(root)
    if parts.scheme and parts.scheme not in ARTIFACT_SCHEMES:
        return f"uses an unsupported scheme ({parts.scheme}://): use an absolute path, file://, gs:// or memory://"
    if not parts.scheme and not root.startswith("/"):
        return "is a relative path: it would depend on where the worker runs"
    if ".." in f"{parts.netloc}{parts.path}".split("/"):
        return "has a '..' segment: the artifacts root must say where it is without leaving it"
    return None


def artifacts_path(spec: ExperimentSpec, schema: DataSchema) -> Iterator[Finding]:
    problem = spec.artifacts is not None and artifacts_problem(spec.artifacts)
    if problem:
        suggestion = "an absolute path such as /srv/towerflow/artifacts, or gs://bucket/artifacts"
        yield error("unsafe_artifacts", "artifacts", f"artifacts {spec.artifacts!r} {problem}", suggestion)


RULES: tuple[Rule, ...] = (
    experiment_name,
    data_uris,
    artifacts_path,
    empty_tower,
    duplicate_columns,
    multiple_primary_ids,
    missing_columns,
    history_features,
    streaming_split,
    feature_vocabularies,
    normalized_temperature,
    unknown_optimizer,
    layer_structure,
    tower_output_sizes,
    clipping,
    replica_batch,
    time_split_column,
    split_options,
    empty_ks,
    high_learning_rate,
    no_primary_id,
    product_column_in_buyer_tower,
)


# --- helpers -------------------------------------------------------------------------------


def error(code: str, field: str, message: str, suggestion: str | None = None) -> Finding:
    """An error finding (the shorthand every rule and the data check use)."""
    return Finding(code=code, severity="error", field=field, message=message, suggestion=suggestion)


def warning(code: str, field: str, message: str, suggestion: str | None = None) -> Finding:
    """A warning finding."""
    return Finding(code=code, severity="warning", field=field, message=message, suggestion=suggestion)


def _did_you_mean(name: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _separated_otherwise(name: str, columns: Sequence[str]) -> str | None:
    """A hint when the header holds `name` between semicolons, tabs or bars: a file separated by those
    reads as one column."""
    for separator in (";", "\t", "|"):
        if any(name in column.split(separator) for column in columns if separator in column):
            return f"the header is separated by {separator!r}; towerflow reads CSV separated by ','"
    return None


def _listing(names: Sequence[str], limit: int = 15) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


def _number(value: float) -> str:
    """A count as written (100000000, not 1e+08); other numbers short (0.1, 1e-06)."""
    return str(value) if isinstance(value, int) else f"{value:g}"
