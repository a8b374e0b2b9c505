"""The experiment spec: what a user submits, parsed, normalized and hashed.

The spec checks structure (known keys, right types); whether the values make sense
(a positive learning rate, a column the data has) is the job of `trainer.rules`, so that
every problem is reported as a finding with a field path instead of stopping at the first.
No TensorFlow or Prefect import here.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FeatureType = Literal["id", "categorical", "numeric", "text", "history"]
"""`history` is derived, not read: the buyer's training purchases (product ids), see trainer.data."""
DEFAULT_EMBEDDING_DIM = {"id": 32, "categorical": 8, "numeric": None, "text": 16, "history": 32}


class SpecError(ValueError):
    """A config that cannot be read or parsed into an ExperimentSpec.

    `problems` holds (field path, message) pairs; str(error) is a one-line reason.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        detail = "; ".join(f"{field}: {msg}" if field else msg for field, msg in problems)
        super().__init__(f"{source}: {detail}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSpec(_Strict):
    """How transactions are held out: `random` (a seeded permutation), `time` (the latest rows by
    `column`, or those at or after `cutoff`) or `hash` (a seeded hash of each row's `key` columns:
    a row's side depends on its values alone, not on row order, shards or the other rows)."""

    strategy: Literal["random", "time", "hash"] = "random"
    test_fraction: float = 0.2
    seed: int = 42
    column: str | None = None  # the timestamp column, for strategy "time"
    cutoff: str | int | float | None = None  # strategy "time": test = rows at or after this time (default: by test_fraction)
    key: list[str] | None = None  # strategy "hash": the row's key columns (default: buyer id, product id, `column`)

    @field_validator("cutoff", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        """YAML reads `cutoff: 2024-06-01` as a date; keep it as its ISO text, as JSON would give it."""
        return value.isoformat() if isinstance(value, datetime.date) else value


class DataSpec(_Strict):
    transactions: str
    products: str | None = None
    split: SplitSpec = SplitSpec()
    streaming: bool = False
    """Read the transactions as a stream (trainer.stream): one pass for the vocabularies, statistics,
    candidates and test rows, then every epoch reads the shards again through a shuffle window, so
    training rows are never all in memory. Needs a split that a row decides alone (`hash`, or `time`
    with a `cutoff`)."""


class FeatureSpec(_Strict):
    column: str
    type: FeatureType = "categorical"
    embedding_dim: int | None = None
    is_primary_id: bool = False
    vocabulary: str | None = None
    """A file (local or a URI) of one value per line (tokens, for text; product ids, for a history),
    used as the vocabulary instead of counting the training rows; values not in it share one row."""
    hash_buckets: int | None = None
    """id and categorical: hash each value into this many embeddings, with no vocabulary at all
    (for id spaces too large to enumerate; unrelated values may share a row)."""

    @model_validator(mode="after")
    def _default_embedding_dim(self) -> FeatureSpec:
        if self.embedding_dim is None and DEFAULT_EMBEDDING_DIM[self.type] is not None:
            object.__setattr__(self, "embedding_dim", DEFAULT_EMBEDDING_DIM[self.type])
        return self


class LayerSpec(_Strict):
    type: Literal["dense", "dropout"] = "dense"
    units: int | None = None
    activation: str | None = None  # default: relu, except the last dense layer of a tower (linear)
    rate: float | None = None  # dropout rate


class ModelSpec(_Strict):
    output_dim: int = 32
    buyer_layers: list[LayerSpec] = Field(default_factory=lambda: [LayerSpec(units=32)])
    product_layers: list[LayerSpec] = Field(default_factory=lambda: [LayerSpec(units=32)])
    temperature: float = 1.0
    normalize: bool = False  # L2-normalize both towers' outputs: scores are cosines / temperature
    negatives: Literal["in_batch", "catalogue"] = "in_batch"
    """The softmax's negatives: the batch's other purchases (scales to any catalogue), or every
    unique candidate (the full softmax: the product tower runs over the whole catalogue each step,
    so for catalogues of some thousands of products; logQ correction is then not needed or applied)."""
    members: int = 1
    """Tower pairs trained side by side on the same batches, each initialised apart and trained on its
    own softmax: an ensemble in one model. A tower's embedding is its members' side by side, so a score
    (one dot product, one index) is the sum of the members' scores. Costs `members` times the training
    and the embedding size; validation allows 1 to 64."""
    logq_correction: bool = True
    """Subtract log(product's share of training rows) from the in-batch logits (Yi et al. 2019).

    In-batch negatives are drawn in proportion to popularity, so without it the model learns
    lift, log p(product | buyer) / p(product), and ranks popular products too low. On by default:
    without it, retail-like data (bench/quality_retail.py) came out at 0.29x popularity's
    recall@5, with it at 1.10x (validation split carved from train)."""
    logq_weight: float = 1.0
    """How much of log(share) logQ correction subtracts: 1 is the unbiased correction; above 1 also
    discounts popular products, as a recommender that must find more than the bestsellers wants (on
    MovieLens 100K, 1.3 gained +3% validation recall@10 over 1, bench/tune_movielens.py)."""


class CollapseSpec(_Strict):
    patience: int = 3
    min_grad_norm: float = 1e-7
    loss_tolerance: float = 1e-3  # |loss/example - log(batch)| below this counts as uniform scores


class BackoffSpec(_Strict):
    factor: float = 0.1
    max_retries: int = 3
    min_learning_rate: float = 1e-6
    restart: Literal["scratch", "last_healthy"] = "scratch"
    """Where a retry starts: fresh weights, or the failed attempt's last healthy epoch (the last one
    before the collapse or divergence signal began), continuing to training.epochs at the lower rate."""


class TrainingSpec(_Strict):
    optimizer: str = "adagrad"
    learning_rate: float = 0.1
    clipnorm: float | None = 1.0
    global_clipnorm: float | None = None
    weight_decay: float | None = None  # decoupled weight decay (AdamW-style) on every weight; null: none
    epochs: int = 6
    batch_size: int = 1024
    seed: int = 42
    validation_fraction: float = 0.0  # carved from train for early stopping; never the test split
    early_stopping_patience: int | None = None
    workers: int = 1  # training processes (MultiWorkerMirroredStrategy via TF_CONFIG); batch_size stays global
    gpus_per_worker: int = 0  # 0: every GPU the worker sees
    jit_compile: bool | None = None  # XLA-compile the train step; None: where it is faster (trainer.model)
    collapse: CollapseSpec = CollapseSpec()
    backoff: BackoffSpec = BackoffSpec()


class EvaluationSpec(_Strict):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 50, 100])
    exclude_seen: bool = False
    on_below_baseline: Literal["warn", "fail"] = "warn"  # a model not beating popularity at some k: warn or fail
    baselines: list[Literal["popularity", "ease"]] = Field(default_factory=lambda: ["popularity"])
    """Baselines measured beside the model on the same queries; popularity always (the verdict needs it).
    EASE (Steck 2019) inverts a candidates x candidates matrix, so only up to ease_max_candidates."""
    ease_max_candidates: int = 20_000
    ease_l2: float = 300.0  # EASE's penalty (chosen on MovieLens' validation split: bench/baselines_movielens.py)


class ValidationSpec(_Strict):
    on_warning: Literal["proceed", "halt", "approve"] = "proceed"
    approval_timeout_s: int = 3600
    min_train_rows: int = 100  # the data check's floor: fewer training rows is an error
    min_test_pairs: int = 20  # fewer unique test (buyer, product) pairs cannot measure recall
    lr_probe: Literal["off", "warn", "pick"] = "off"  # a learning-rate range test before the first attempt
    lr_probe_steps: int = 200  # its train steps, over every probed rate (trainer.lr_probe)


class ExperimentSpec(_Strict):
    name: str
    data: DataSpec
    buyer_features: list[FeatureSpec]
    product_features: list[FeatureSpec]
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    validation: ValidationSpec = ValidationSpec()
    artifacts: str | None = None  # root for checkpoints and exports; default $TOWERFLOW_HOME/artifacts

    @property
    def product_id_column(self) -> str | None:
        """The product key: the `is_primary_id` feature, else the first `id` feature, else the first."""
        return _key_column(self.product_features)

    @property
    def buyer_id_column(self) -> str | None:
        """The buyer key used to group test rows into queries (same fallback as products)."""
        return _key_column(self.buyer_features)

    def content_hash(self) -> str:
        """A stable hash of the normalized spec: key order, comments and formatting do not change it."""
        return spec_hash(self)

    def with_learning_rate(self, learning_rate: float) -> ExperimentSpec:
        training = self.training.model_copy(update={"learning_rate": learning_rate})
        return self.model_copy(update={"training": training})


def _key_column(features: list[FeatureSpec]) -> str | None:
    for feature in features:
        if feature.is_primary_id:
            return feature.column
    for feature in features:
        if feature.type == "id":
            return feature.column
    return features[0].column if features else None


def feature_paths(spec: ExperimentSpec) -> Iterator[tuple[str, FeatureSpec]]:
    """(spec path of the feature, e.g. `buyer_features[0]`, the feature) for every feature, buyer tower first."""
    for tower in ("buyer_features", "product_features"):
        for i, feature in enumerate(getattr(spec, tower)):
            yield f"{tower}[{i}]", feature


def spec_hash(spec: ExperimentSpec) -> str:
    """Only values that differ from their defaults count, so a field a later towerflow adds (with a
    default) leaves every stored config's hash, experiment and attempts where they were."""
    values = _without_empty(spec.model_dump(mode="json", exclude_defaults=True))
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _without_empty(values: dict) -> dict:
    """`values` less the sections that hold nothing but defaults (left as `{}` by exclude_defaults)."""
    pruned = {key: _without_empty(value) if isinstance(value, dict) else value for key, value in values.items()}
    return {key: value for key, value in pruned.items() if value != {}}


# --- the old platform's format -------------------------------------------------------------

_LEGACY_TYPES = {
    "string": "categorical",
    "str": "categorical",
    "embedding": "id",
    "float": "numeric",
    "int": "numeric",
    "integer": "numeric",
    "numerical": "numeric",
}
_LEGACY_TRAINING_KEYS = ("optimizer", "learning_rate", "clipnorm", "epochs", "batch_size", "seed")
_LEGACY_MODEL_KEYS = ("output_dim", "buyer_layers", "product_layers")


def _is_legacy(raw: dict) -> bool:
    return "buyer_model_features" in raw or "product_model_features" in raw


def _legacy_feature(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    item = dict(item)
    display_name = item.pop("display_name", None)
    column = item.get("column") or display_name
    feature: dict[str, Any] = {"column": column}
    kind = item.pop("type", None) or item.pop("data_type", None)
    if kind is None:
        is_id = item.get("is_primary_id") or str(column).endswith("_id")
        kind = "id" if is_id else "categorical"
    feature["type"] = _LEGACY_TYPES.get(str(kind).lower(), kind)
    for key in ("embedding_dim", "is_primary_id"):
        if key in item:
            feature[key] = item[key]
    return feature


def normalize_legacy(raw: dict) -> dict:
    """Turn the old platform's feature JSON into this spec's shape, keeping its mistakes visible.

    `buyer_model_features` / `product_model_features` become the two towers' features (an item's
    `column`, else its `display_name`, names the data column); top-level training and layer keys
    move under `training` and `model`. Duplicates are kept so that validation reports them.
    """
    raw = dict(raw)
    out: dict[str, Any] = {}
    out["buyer_features"] = [_legacy_feature(f) for f in raw.pop("buyer_model_features", []) or []]
    out["product_features"] = [_legacy_feature(f) for f in raw.pop("product_model_features", []) or []]
    training = dict(raw.pop("training", {}) or {})
    model = dict(raw.pop("model", {}) or {})
    for section, keys in ((training, _LEGACY_TRAINING_KEYS), (model, _LEGACY_MODEL_KEYS)):
        for key in keys:
            if key in raw:
                section.setdefault(key, raw.pop(key))  # a nested value (e.g. from --set) wins
    if training:
        out["training"] = training
    if model:
        out["model"] = model
    out.update(raw)
    return out


# --- loading -----------------------------------------------------------------------------


def read_config_text(source: str | Path) -> str:
    """Read a config from a local path or any fsspec URI (gs://, memory://)."""
    from trainer.storage import open_uri

    source = str(source)
    try:
        with open_uri(source, "r", encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise SpecError(source, [("", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, [("", f"cannot be read ({exc})")]) from None


MAX_NESTING = 32
"""How deep a config's lists and mappings may nest (towerflow's own fields nest five deep): deeper
input is refused at once, before anything recursive (validation, a copy) walks it."""


def parse_config_text(text: str, source: str = "<config>") -> dict:
    """Parse YAML or JSON safely (no object construction) into a mapping."""
    try:
        if source.endswith(".json"):
            raw = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            raw = load_yaml(text)
    except json.JSONDecodeError as exc:
        raise SpecError(source, [("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except _RepeatedKey as exc:
        raise SpecError(source, [("", f"invalid JSON: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError(source, [("", _yaml_problem(exc))]) from None
    except RecursionError:  # the parser itself gave up
        raise SpecError(source, [("", _too_deep())]) from None
    if not isinstance(raw, dict):
        raise SpecError(source, [("", f"expected a mapping at the top level, got {type(raw).__name__}")])
    return shallow(raw, source)


class _RepeatedKey(ValueError):
    """A JSON object that names one key twice."""


def _repeated(key: Any) -> str:
    return f"{key!r} appears twice in one mapping; the second would silently replace the first"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object as a dict, refusing a repeated key (json keeps the last without a word)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _RepeatedKey(_repeated(key))
        found[key] = value
    return found


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (YAML requires unique keys; PyYAML keeps the
    last without a word, so a second `training:` block would replace the first whole). A key set again over
    a merged one (`<<: *defaults`) is allowed, as YAML's merge means it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"{_repeated(key)} (first at line {seen[key]})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML as PyYAML's safe_load reads it (no object construction), but refusing a repeated key."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)


def shallow(raw: dict, source: str = "<config>") -> dict:
    """`raw`, once it is known to nest at most MAX_NESTING deep; else SpecError."""
    if nesting(raw) > MAX_NESTING:
        raise SpecError(source, [("", _too_deep())])
    return raw


def nesting(value: Any) -> int:
    """How many levels of lists and mappings `value` nests (0 for a scalar), counted up to MAX_NESTING + 1.
    Level by level, each distinct object once per level: YAML aliases that repeat one list a billion times
    cost nothing, and a list that holds itself stops at the limit."""
    level, depth = ([value] if isinstance(value, (dict, list)) else []), 0
    while level and depth <= MAX_NESTING:
        inner = {}
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            inner.update((id(child), child) for child in children if isinstance(child, (dict, list)))
        level, depth = list(inner.values()), depth + 1
    return depth


def _too_deep() -> str:
    return f"nested more than {MAX_NESTING} levels deep (lists and mappings); a towerflow config needs five"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """'invalid YAML at line L column C: problem', from a PyYAML error."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"invalid YAML{where}: {problem}"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` overrides (values parsed as safe YAML) to a raw config.

    A malformed override raises SpecError with source `--set <override>`.
    """
    raw = copy.deepcopy(raw)
    for override in overrides:
        path, sep, value = override.partition("=")
        if not sep or not path:
            raise SpecError("--set", [("", f"expected key.path=value, got {override!r}")])
        keys = path.split(".")
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {override}", [(path, f"{key} is not a mapping")])
        try:
            node[keys[-1]] = parsed = load_yaml(value)
        except yaml.YAMLError as exc:
            raise SpecError(f"--set {override}", [(path, _yaml_problem(exc))]) from None
        except RecursionError:
            raise SpecError(f"--set {override}", [(path, _too_deep())]) from None
        if nesting(parsed) + len(keys) > MAX_NESTING:
            raise SpecError(f"--set {override}", [(path, _too_deep())])
    return raw


def _name_overrides(error: SpecError, overrides: list[str]) -> SpecError:
    """The same error, each problem at (or under) an override's path naming that override."""
    by_path = {override.partition("=")[0]: override for override in overrides}
    problems = []
    for field, message in error.problems:
        override = next((o for path, o in by_path.items() if _is_under(field, path)), None)
        problems.append((field, f"{message} (from --set {override})" if override else message))
    return SpecError(error.source, problems)


def _is_under(field: str, path: str) -> bool:
    return field == path or field.startswith((f"{path}.", f"{path}["))


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def spec_from_dict(raw: dict, source: str = "<config>") -> ExperimentSpec:
    """Build a spec from a mapping in either format; structural problems raise SpecError."""
    if _is_legacy(raw):
        raw = normalize_legacy(raw)
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"]
            if error["loc"] == ("sweep",):
                message = "a sweep, not one experiment: run it with `towerflow sweep` (or submit it)"
            elif error["type"] == "extra_forbidden":
                message = "unknown field"
            elif error["type"] == "missing":
                message = "required field is missing"
            problems.append((_field_path(error["loc"]), message))
        raise SpecError(source, problems) from None


def load_spec(source: str | Path | dict, overrides: list[str] | None = None) -> ExperimentSpec:
    """Load a spec from a path/URI (YAML or JSON) or a mapping, applying `--set` overrides."""
    if isinstance(source, dict):
        raw, name = shallow(source), "<config>"
    else:
        name = str(source)
        raw = parse_config_text(read_config_text(name), name)
    if overrides:
        raw = apply_overrides(raw, overrides)
    try:
        return spec_from_dict(raw, name)
    except SpecError as exc:
        raise _name_overrides(exc, overrides or []) from None
