"""Bad input to `towerflow sweep`, `results --sweep` and `compare`: exit 2, one line naming the key or name,
no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from tiny_configs import tiny_config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def towerflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "TOWERFLOW_DATABASE_URL")}
    env.update(TOWERFLOW_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"))
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("grid, named", [
    (["model.temprature=0.05,0.1"], "grid key 'model.temprature' is not a spec field"),
    (["training.learning_rate=abc,0.1"], "grid key 'training.learning_rate': value abc is not valid"),
    ([], "empty grid"),
    (["training.epochs=" + ",".join(map(str, range(1, 66)))], "65 points, more than the maximum of 64"),
])
def test_a_bad_grid_exits_2_in_one_line_and_writes_nothing(tmp_path, grid, named):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    done = towerflow(tmp_path, "sweep", str(config), *(f"--grid={option}" for option in grid))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"towerflow sweep: {done.stderr.strip().split(': ', 1)[1]}"]
    assert named in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()


def test_a_grid_point_that_breaks_a_rule_is_named_and_nothing_runs(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(name="t")))
    done = towerflow(tmp_path, "sweep", str(config), "--grid", "training.learning_rate=0.1,-1", "--max-points", "4")
    assert done.returncode == 2
    assert "point t-learning_rate=-1" in done.stderr and "training.learning_rate must be > 0" in done.stderr
    assert not (tmp_path / "home").exists()


def test_an_unknown_sweep_or_experiment_exits_2_naming_it(tmp_path):
    sweep = towerflow(tmp_path, "results", "--sweep", "nosuch")
    assert sweep.returncode == 2 and sweep.stderr.strip() == "towerflow results: no sweep named or numbered 'nosuch'"
    compare = towerflow(tmp_path, "compare", "nosuch", "other")
    assert compare.returncode == 2
    assert compare.stderr.strip() == "towerflow compare: no experiment named or numbered 'nosuch'"
