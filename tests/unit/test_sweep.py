"""trainer.sweep: a grid over spec fields expanded into checked points, without Prefect or TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.spec import load_spec
from trainer.sweep import SweepError, load_sweep, point_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from tiny_configs import tiny_config  # noqa: E402

LR, TEMPERATURE = "training.learning_rate=0.3,0.1,0.03", "model.temperature=0.05,0.1"


def test_one_point_per_combination_each_named_and_hashed_as_its_own_experiment():
    sweep = load_sweep(tiny_config(name="base"), grid_options=[LR, TEMPERATURE])
    assert [p.name for p in sweep.points][:2] == ["base-learning_rate=0.3-temperature=0.05",
                                                  "base-learning_rate=0.3-temperature=0.1"]
    assert len({p.config_hash for p in sweep.points}) == 6 and len({p.name for p in sweep.points}) == 6
    last = sweep.points[-1]
    assert (last.spec.training.learning_rate, last.spec.model.temperature) == (0.03, 0.1)
    alone = load_spec(tiny_config(name=last.name), ["training.learning_rate=0.03", "model.temperature=0.1"])
    assert last.config_hash == alone.content_hash()  # the same experiment as a plain run of that point


def test_the_sweep_block_is_a_grid_that_options_replace_and_never_part_of_a_points_hash(tmp_path):
    config = tiny_config(name="base")
    plain = load_sweep(config, grid_options=["training.learning_rate=0.1,0.2"])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({**config, "sweep": {"grid": {"training.learning_rate": [0.1, 0.2]},
                                                        "max_points": 4}}))
    from_block = load_sweep(str(path))
    assert [p.config_hash for p in from_block.points] == [p.config_hash for p in plain.points]
    assert from_block.sweep_hash == plain.sweep_hash
    replaced = load_sweep(str(path), grid_options=["training.learning_rate=0.5"])
    assert [p.spec.training.learning_rate for p in replaced.points] == [0.5]
    with pytest.raises(SweepError, match="3 points, more than the maximum of 2"):
        load_sweep(str(path), grid_options=["training.learning_rate=1,2,3"], max_points=2)


def test_base_overrides_apply_to_every_point_and_name_the_points():
    sweep = load_sweep(tiny_config(), ["name=lr", "training.epochs=1"], ["training.learning_rate=0.1,0.2"])
    assert [p.name for p in sweep.points] == ["lr-learning_rate=0.1", "lr-learning_rate=0.2"]
    assert {p.spec.training.epochs for p in sweep.points} == {1}


def test_names_stay_readable_and_unique_when_keys_share_a_last_segment():
    values = {"training.collapse.patience": 2, "training.early_stopping_patience": 3, "model.buyer_layers": [{"units": 8}]}
    assert point_name("x", values) == 'x-patience=2-early_stopping_patience=3-buyer_layers=[{"units":8}]'
    shared = {"training.seed": 1, "data.split.seed": 2}
    assert point_name("x", shared) == "x-training.seed=1-data.split.seed=2"


@pytest.mark.parametrize("options, message", [
    (["model.temprature=0.05,0.1"], "grid key 'model.temprature' is not a spec field"),
    (["model.buyer_layers.units=8"], "grid key 'model.buyer_layers.units' is not a spec field"),
    (["training.learning_rate=abc,0.1"], "grid key 'training.learning_rate': value abc is not valid"),
    (["evaluation.ks=[5],ten"], "grid key 'evaluation.ks': value ten is not valid"),
    ([], "empty grid"),
    (["training.epochs="], "grid key 'training.epochs' has no values"),
    (["training.epochs=1,1"], "repeats the value 1"),
    (["training.epochs=1", "training.epochs=2"], "--grid training.epochs is given twice"),
    (["name=a,b"], "grid key 'name'"),
    (["training.epochs=" + ",".join(map(str, range(1, 66)))], "65 points, more than the maximum of 64"),
    (["nokey"], "expected key.path=value1,value2"),
    (["training.seed=" + "[" * 3000 + "]" * 3000], "--grid training.seed: values nested more than 32 levels deep"),
    (["training.seed=" + "[" * 40 + "]" * 40], "--grid training.seed: values nested more than 32 levels deep"),
])
def test_bad_grids_are_one_error_naming_the_key(options, message):
    with pytest.raises(SweepError) as raised:
        load_sweep(tiny_config(), grid_options=options)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert raised.value.exit_code == 2


def test_a_bad_sweep_block_names_its_field():
    with pytest.raises(SweepError, match="sweep.max_points"):
        load_sweep({**tiny_config(), "sweep": {"grid": {"training.epochs": [1]}, "max_points": 0}})
    with pytest.raises(SweepError, match="sweep.grids: unknown field"):
        load_sweep({**tiny_config(), "sweep": {"grids": {}}})


def test_expanding_a_sweep_imports_neither_prefect_nor_tensorflow():
    code = ("import sys; sys.path.insert(0, 'tests/e2e'); from tiny_configs import tiny_config; "
            "from trainer.sweep import load_sweep; load_sweep(tiny_config(), grid_options=['training.epochs=1,2']); "
            "print(sorted(m for m in ('prefect', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
