"""trainer.spec: loading YAML/JSON, defaults, the old platform's format, --set overrides, the content hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from trainer.spec import MAX_NESTING, ExperimentSpec, SpecError, load_spec, nesting, parse_config_text, spec_from_dict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

MINIMAL = {
    "name": "minimal",
    "data": {"transactions": "synthetic-retail://transactions"},
    "buyer_features": [{"column": "customer_id", "type": "id"}],
    "product_features": [{"column": "product_id", "type": "id"}],
}

YAML_BLOCK = """\
# a comment that must not matter
name: hashing
data:
  transactions: synthetic-retail://transactions
  split: {strategy: random, test_fraction: 0.25}
buyer_features:
  - column: customer_id
    type: id
  - {column: region, type: categorical, embedding_dim: 4}
product_features:
  - {column: product_id, type: id, is_primary_id: true}
training:
  learning_rate: 0.05   # trailing comment
  epochs: 3
"""

YAML_REORDERED = """\
training: {epochs: 3, learning_rate: 5.0e-2}
product_features: [{is_primary_id: true, type: id, column: product_id}]
buyer_features:
- {type: id, column: customer_id}
- {embedding_dim: 4, type: categorical, column: region}
data:
    split:
        test_fraction: 0.25
        strategy: random
    transactions: synthetic-retail://transactions
name: hashing
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(excinfo) -> dict[str, str]:
    return dict(excinfo.value.problems)


# --- loading -------------------------------------------------------------------------------


def test_yaml_and_json_load_to_the_same_spec(tmp_path):
    from_yaml = load_spec(write(tmp_path, "c.yaml", YAML_BLOCK))
    from_json = load_spec(write(tmp_path, "c.json", json.dumps(yaml.safe_load(YAML_BLOCK), indent=1)))
    assert from_yaml == from_json
    assert from_yaml.training.learning_rate == 0.05 and from_yaml.data.split.test_fraction == 0.25
    assert [f.column for f in from_yaml.buyer_features] == ["customer_id", "region"]


def test_defaults():
    spec = spec_from_dict(
        {
            **MINIMAL,
            "buyer_features": [
                {"column": "customer_id", "type": "id"},
                {"column": "region"},
                {"column": "cust_value", "type": "numeric"},
                {"column": "bio", "type": "text"},
            ],
        }
    )
    assert [(f.type, f.embedding_dim) for f in spec.buyer_features] == [
        ("id", 32),
        ("categorical", 8),
        ("numeric", None),
        ("text", 16),
    ]
    assert spec.data.products is None and spec.data.split.strategy == "random"
    assert spec.data.split.test_fraction == 0.2
    training = spec.training
    assert (training.optimizer, training.clipnorm, training.global_clipnorm) == ("adagrad", 1.0, None)
    assert spec.evaluation.ks == [5, 10, 50, 100] and spec.validation.on_warning == "proceed"
    assert spec.model.buyer_layers[-1].units == spec.model.output_dim == spec.model.product_layers[-1].units


def test_an_explicit_embedding_dim_wins_over_the_default():
    spec = spec_from_dict({**MINIMAL, "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 7}]})
    assert spec.buyer_features[0].embedding_dim == 7


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"training": {"lr": 0.1}}, "training.lr", "unknown field"),
        ({"buyer_features": [{"column": "a"}, {"column": "b", "colum": "b"}]}, "buyer_features[1].colum", "unknown field"),
        ({"model": {"buyer_layers": [{"type": "dense", "unit": 3}]}}, "model.buyer_layers[0].unit", "unknown field"),
        ({"sweep": {"grid": {"training.epochs": [1, 2]}}}, "sweep", "run it with `towerflow sweep`"),
        ({"training": {"epochs": "many"}}, "training.epochs", "integer"),
        ({"training": {"learning_rate": "fast"}}, "training.learning_rate", "number"),
        ({"product_features": [{"column": "p", "type": "embedding"}]}, "product_features[0].type", "'id'"),
        ({"name": None}, "name", "string"),
    ],
)
def test_structural_problems_name_the_field(change, field, message):
    with pytest.raises(SpecError) as excinfo:
        spec_from_dict({**MINIMAL, **change}, "c.yaml")
    assert message in problems_of(excinfo)[field]
    assert str(excinfo.value).startswith(f"c.yaml: {field}: ")


def test_a_missing_required_field():
    raw = {key: value for key, value in MINIMAL.items() if key != "data"}
    with pytest.raises(SpecError) as excinfo:
        spec_from_dict(raw)
    assert problems_of(excinfo) == {"data": "required field is missing"}


def test_every_problem_is_listed_not_only_the_first():
    with pytest.raises(SpecError) as excinfo:
        spec_from_dict({**MINIMAL, "training": {"lr": 1, "epochs": "x"}, "colour": "red"})
    assert set(problems_of(excinfo)) == {"training.lr", "training.epochs", "colour"}


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("bad.yaml", "name: x\ndata: [unclosed\n", "invalid YAML at line 3"),
        ("tab.yaml", "name: x\n\tdata: 1\n", "invalid YAML at line 2"),
        ("bad.json", '{"name": "x",}', "invalid JSON at line 1"),
        ("list.yaml", "- a\n- b\n", "expected a mapping at the top level, got list"),
        ("empty.yaml", "", "expected a mapping at the top level"),
        ("unsafe.yaml", "name: !!python/object/apply:os.system [echo hi]\n", "invalid YAML"),
        ("twice.yaml", "name: x\ntraining:\n  epochs: 3\nmodel: {}\ntraining:\n  learning_rate: 0.1\n",
         "invalid YAML at line 5 column 1: 'training' appears twice in one mapping; the second would silently "
         "replace the first (first at line 2)"),
        ("twice-inside.yaml", "name: x\ntraining: {epochs: 3, epochs: 4}\n", "invalid YAML at line 2 column 23: "
         "'epochs' appears twice"),
        ("twice.json", '{"name": "x", "training": {"epochs": 3}, "training": {}}', "invalid JSON: 'training' appears "
         "twice in one mapping; the second would silently replace the first"),
    ],
)
def test_unparseable_files_give_a_one_line_reason(tmp_path, name, text, reason):
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as excinfo:
        load_spec(path)
    assert str(excinfo.value).startswith(f"{path}: {reason}")
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", "name: " + "[" * 5000 + "]" * 5000 + "\n"),  # past the parser's own recursion
        ("deep.json", '{"name": ' + "[" * 100000 + "]" * 100000 + "}"),
        ("deep-enough-to-break-a-copy.yaml", "name: x\nmodel: " + "[" * 600 + "]" * 600 + "\n"),
    ],
)
def test_a_config_nested_too_deep_is_refused_in_one_line(tmp_path, name, text):
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as excinfo:
        load_spec(path, ["training.epochs=3"])
    assert str(excinfo.value) == f"{path}: nested more than {MAX_NESTING} levels deep (lists and mappings); " \
                                 "a towerflow config needs five"


def test_nesting_counts_levels_not_aliases():
    bomb = ["lol"] * 9
    for _ in range(9):
        bomb = [bomb] * 9  # a billion laughs: 9**10 leaves, ten distinct lists
    looped: list = []
    looped.append(looped)
    assert nesting("x") == 0 and nesting({}) == 1 and nesting({"a": [{"b": 1}]}) == 3
    assert nesting(bomb) == 10
    assert nesting(looped) == MAX_NESTING + 1


def test_a_too_deep_override_or_mapping_is_refused():
    with pytest.raises(SpecError) as excinfo:
        load_spec(MINIMAL, ["name=" + "[" * 3000 + "]" * 3000])
    assert excinfo.value.source.startswith("--set name=[[[") and "nested more than" in str(excinfo.value)
    with pytest.raises(SpecError, match="nested more than"):
        load_spec({**MINIMAL, "model": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}})


def test_a_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"absent\.yaml: file not found$"):
        load_spec(tmp_path / "absent.yaml")


def test_a_memory_uri():
    import fsspec

    with fsspec.open("memory://spec-test/c.yaml", "w") as handle:
        handle.write(YAML_BLOCK)
    try:
        assert load_spec("memory://spec-test/c.yaml").name == "hashing"
    finally:
        fsspec.filesystem("memory").rm("/spec-test", recursive=True)


# --- the old platform's format -------------------------------------------------------------

LEGACY = {
    "name": "legacy",
    "data": {"transactions": "synthetic-retail://transactions"},
    "buyer_model_features": [
        {"display_name": "customer_id"},
        {"display_name": "cust_value", "type": "float"},
        {"display_name": "region", "type": "string", "embedding_dim": 4},
        {"display_name": "cust_value", "type": "float"},
    ],
    "product_model_features": [
        {"display_name": "sku"},
        {"column": "product_id", "display_name": "Product", "is_primary_id": True},
        {"display_name": "category", "data_type": "STRING"},
    ],
    "buyer_layers": [{"type": "dense", "units": 64}, {"type": "dense", "units": 32}],
    "product_layers": [{"type": "dense", "units": 32}],
    "learning_rate": 0.1,
    "optimizer": "adagrad",
    "epochs": 4,
}


def test_legacy_features_are_normalized_keeping_duplicates():
    spec = spec_from_dict(LEGACY)
    assert [(f.column, f.type) for f in spec.buyer_features] == [
        ("customer_id", "id"),  # no type: an *_id column is an id
        ("cust_value", "numeric"),
        ("region", "categorical"),
        ("cust_value", "numeric"),  # the duplicate stays, for validation to report
    ]
    assert spec.buyer_features[2].embedding_dim == 4
    assert [(f.column, f.type, f.is_primary_id) for f in spec.product_features] == [
        ("sku", "categorical", False),
        ("product_id", "id", True),  # `column` wins over `display_name`; the flag makes it an id
        ("category", "categorical", False),
    ]
    assert spec.product_id_column == "product_id" and spec.buyer_id_column == "customer_id"


def test_legacy_top_level_training_and_layers_move_into_place():
    spec = spec_from_dict(LEGACY)
    assert (spec.training.learning_rate, spec.training.optimizer, spec.training.epochs) == (0.1, "adagrad", 4)
    assert [layer.units for layer in spec.model.buyer_layers] == [64, 32]
    assert [layer.units for layer in spec.model.product_layers] == [32]


def test_legacy_and_current_formats_of_one_experiment_hash_alike():
    current = {
        "name": "legacy",
        "data": LEGACY["data"],
        "buyer_features": [
            {"column": "customer_id", "type": "id"},
            {"column": "cust_value", "type": "numeric"},
            {"column": "region", "type": "categorical", "embedding_dim": 4},
            {"column": "cust_value", "type": "numeric"},
        ],
        "product_features": [
            {"column": "sku", "type": "categorical"},
            {"column": "product_id", "type": "id", "is_primary_id": True},
            {"column": "category"},
        ],
        "model": {"buyer_layers": LEGACY["buyer_layers"], "product_layers": LEGACY["product_layers"]},
        "training": {"learning_rate": 0.1, "optimizer": "adagrad", "epochs": 4},
    }
    assert spec_from_dict(current).content_hash() == spec_from_dict(LEGACY).content_hash()


def test_legacy_unknown_top_level_key_is_still_reported():
    with pytest.raises(SpecError) as excinfo:
        spec_from_dict({**LEGACY, "learning_rte": 0.1})
    assert problems_of(excinfo) == {"learning_rte": "unknown field"}


def test_the_legacy_example_loads_with_its_mistakes():
    spec = load_spec(EXAMPLES / "legacy_platform.json")
    columns = [f.column for f in spec.buyer_features]
    assert columns.count("cust_value") == 2
    assert spec.training.learning_rate == 0.1
    assert sum(layer.type == "dense" for layer in spec.model.buyer_layers) == 3
    assert not any(f.is_primary_id for f in spec.product_features)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.*")), ids=lambda p: p.name)
def test_every_example_parses(path):
    assert load_spec(path).name


# --- overrides -------------------------------------------------------------------------------


def test_a_key_set_again_over_a_merged_mapping_is_not_a_repeat(tmp_path):
    text = "base: &base {epochs: 3, seed: 7}\ntraining:\n  <<: *base\n  epochs: 5\n"
    assert parse_config_text(text, "merge.yaml")["training"] == {"epochs": 5, "seed": 7}


def test_overrides_set_values_parsed_as_yaml():
    spec = load_spec(
        MINIMAL,
        [
            "training.learning_rate=0.01",
            "training.clipnorm=null",
            "evaluation.ks=[1, 2]",
            "data.split.strategy=time",
            "data.split.column=timestamp",
            "name=renamed",
        ],
    )
    assert spec.training.learning_rate == 0.01 and spec.training.clipnorm is None
    assert spec.evaluation.ks == [1, 2] and spec.name == "renamed"
    assert (spec.data.split.strategy, spec.data.split.column) == ("time", "timestamp")
    assert MINIMAL["data"] == {"transactions": "synthetic-retail://transactions"}  # the input is not mutated


def test_an_override_wins_over_the_file(tmp_path):
    path = write(tmp_path, "c.yaml", YAML_BLOCK)
    assert load_spec(path, ["training.epochs=9"]).training.epochs == 9


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ("training.learning_rate", "", "expected key.path=value"),
        ("=3", "", "expected key.path=value"),
        ("name.first=x", "name.first", "name is not a mapping"),
        ("training.lr=0.1", "training.lr", "unknown field (from --set training.lr=0.1)"),
        ("training.epochs=abc", "training.epochs", "as an integer (from --set training.epochs=abc)"),
        ("training.epochs=[1", "training.epochs", "invalid YAML at line 1 column 3"),
        ("name=!!python/object/apply:os.system [echo]", "name", "could not determine a constructor for the tag"),
    ],
)
def test_bad_overrides(override, field, message):
    with pytest.raises(SpecError) as excinfo:
        load_spec(MINIMAL, [override])
    assert message in problems_of(excinfo)[field]


@pytest.mark.parametrize("override", ["training.epochs=[1", "name=!!python/object:os.system x", "name.first=x"])
def test_an_unparseable_override_is_named_as_the_source(override):
    with pytest.raises(SpecError) as excinfo:
        load_spec(MINIMAL, [override])
    assert excinfo.value.source == f"--set {override}"
    assert str(excinfo.value).count("\n") == 0


def test_an_override_of_a_legacy_config_uses_the_current_field_names():
    # `--set training.learning_rate=...` is what the high-learning-rate warning suggests; it must win
    # over the old format's top-level `learning_rate` instead of being silently dropped.
    spec = load_spec(LEGACY, ["training.learning_rate=0.01"])
    assert spec.training.learning_rate == 0.01


def test_overrides_work_on_yaml_with_non_json_scalars(tmp_path):
    # YAML turns an unquoted date into a datetime.date; an override must not crash on it but let
    # validation report the wrong type with its field path.
    path = write(tmp_path, "c.yaml", YAML_BLOCK.replace("name: hashing", "name: 2024-01-01"))
    with pytest.raises(SpecError) as excinfo:
        load_spec(path, ["training.epochs=2"])
    assert "name" in problems_of(excinfo)


# --- the content hash ----------------------------------------------------------------------


def test_hash_ignores_key_order_comments_formatting_and_format(tmp_path):
    reference = load_spec(write(tmp_path, "a.yaml", YAML_BLOCK)).content_hash()
    compact_json = json.dumps(yaml.safe_load(YAML_BLOCK), separators=(",", ":"), sort_keys=True)
    variants = [
        write(tmp_path, "b.yaml", YAML_REORDERED),
        write(tmp_path, "c.json", compact_json),
        write(tmp_path, "d.yaml", "\n\n" + YAML_BLOCK.replace("\n  ", "\n    ") + "# end\n"),  # wider indent
    ]
    assert [load_spec(path).content_hash() for path in variants] == [reference] * 3
    assert len(reference) == 16 and int(reference, 16) >= 0


def test_hash_ignores_spelled_out_defaults():
    explicit = {
        **MINIMAL,
        "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 32, "is_primary_id": False}],
        "training": {"optimizer": "adagrad", "clipnorm": 1.0},
    }
    assert spec_from_dict(explicit).content_hash() == spec_from_dict(MINIMAL).content_hash()


def test_a_field_added_later_with_a_default_leaves_the_hash_alone():
    class Later(ExperimentSpec):
        warmup_epochs: int = 0

    spec = spec_from_dict({**MINIMAL, "training": {"epochs": 4}})
    assert Later(**spec.model_dump()).content_hash() == spec.content_hash()
    assert Later(**spec.model_dump(), warmup_epochs=2).content_hash() != spec.content_hash()


@pytest.mark.parametrize(
    "override",
    [
        "training.learning_rate=0.051",
        "training.epochs=4",
        "data.split.test_fraction=0.3",
        "buyer_features=[{column: region}, {column: customer_id, type: id}]",
        "model.output_dim=16",
        "name=other",
    ],
)
def test_hash_changes_when_a_value_changes(tmp_path, override):
    path = write(tmp_path, "a.yaml", YAML_BLOCK)
    assert load_spec(path, [override]).content_hash() != load_spec(path).content_hash()


def test_with_learning_rate_copies_and_rehashes():
    spec = spec_from_dict(MINIMAL)
    lower = spec.with_learning_rate(0.001)
    assert lower.training.learning_rate == 0.001 and spec.training.learning_rate == 0.1
    assert lower.content_hash() != spec.content_hash()
    assert lower.model_copy(update={"training": spec.training}).content_hash() == spec.content_hash()
