"""`towerflow sweep` end to end: a real in-process sweep of two tiny points, rerun without training again,
then its leaderboard and the comparison of its points."""

from __future__ import annotations

import json

import pytest
import yaml
from faults import towerflow, towerflow_env
from tiny_configs import tiny_config


@pytest.mark.slow
def test_a_sweep_runs_each_point_once_ranks_them_and_compares_them(tmp_path):
    env = towerflow_env(tmp_path)
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**tiny_config(name="tiny", training__epochs=1),
                                      "sweep": {"grid": {"training.learning_rate": [0.05, 0.01]}}}))
    first = towerflow(env, "sweep", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 done, 0 running, 0 queued (of 2)" in first.stdout
    assert "1 done, 0 running, 1 queued (of 2)" in first.stderr  # progress as the points go
    assert first.stdout.count("succeeded") == 2

    again = towerflow(env, "sweep", str(config))
    assert again.returncode == 0 and "epoch 1/1" not in again.stdout + again.stderr  # nothing trained twice
    assert again.stderr.count("was already run") == 2

    board = json.loads(towerflow(env, "results", "--sweep", "tiny", "--json").stdout)
    rows = board["leaderboard"]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["recall"] >= rows[1]["recall"]
    assert {r["name"] for r in rows} == {"tiny-learning_rate=0.05", "tiny-learning_rate=0.01"}
    assert all(r["attempts"] == 1 for r in rows)

    page = tmp_path / "compare.html"
    compared = towerflow(env, "compare", "tiny-learning_rate=0.05", "tiny-learning_rate=0.01", "--html", str(page))
    assert compared.returncode == 0, compared.stderr
    assert compared.stdout.splitlines()[3].split()[0] == "training.learning_rate"
    assert 'class="key series-1"' in page.read_text()
