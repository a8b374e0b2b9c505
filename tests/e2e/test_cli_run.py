"""`towerflow run` as a user types it: exit 0 succeeded, 1 failed (also when the stored result is a
failure), 2 invalid config; the results printed; nothing written for an invalid config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_configs import tiny_config

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """One towerflow home and one Prefect home for the module (Prefect's database is made once)."""
    tmp = tmp_path_factory.mktemp("cli-run")
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "TOWERFLOW_TRAINER_DEPLOYMENT", "TOWERFLOW_DATABASE_URL")}
    env.update(TOWERFLOW_HOME=str(tmp / "home"), PREFECT_HOME=str(tmp / "prefect"))
    return env


def write_config(tmp_path: Path, **training) -> str:
    changes = {f"training__{key}": value for key, value in training.items()}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="cli-run", evaluation__ks=[10, 50], **changes)))
    return str(path)


def towerflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "towerflow"), *args], env=env, capture_output=True, text=True, timeout=600)


def test_an_invalid_config_exits_2_before_anything_runs_or_is_stored(env, tmp_path):
    done = towerflow(env, "run", write_config(tmp_path, optimizer="adamw"))
    assert done.returncode == 2
    assert "training.optimizer" in done.stderr and "Traceback" not in done.stderr
    assert not (Path(env["TOWERFLOW_HOME"]) / "towerflow.db").exists()


def test_a_successful_run_exits_0_and_prints_attempts_and_recall(env, tmp_path):
    done = towerflow(env, "run", write_config(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[succeeded]" in done.stdout and "@50" in done.stdout and "popularity" in done.stdout
    assert "attempt 1 epoch 2/2: loss/example" in done.stdout + done.stderr  # live progress


def test_all_attempts_failing_exits_1_and_so_does_its_stored_result(env, tmp_path):
    config = write_config(tmp_path, learning_rate=1e30, clipnorm=None, backoff={"max_retries": 1, "factor": 0.5})
    first = towerflow(env, "run", config)
    assert first.returncode == 1
    assert "[failed]" in first.stdout and first.stdout.count("diverged") >= 2  # both attempts, with reasons
    again = towerflow(env, "run", config)
    assert again.returncode == 1 and "stored result of an earlier run" in again.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (mounting needs root, as on CI), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no small disk to fill: mount failed ({done.stderr.strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_and_a_rerun_continues_once_there_is_room(env, tmp_path, small_disk):
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="full-disk", artifacts=str(small_disk / "runs"),
                                               training__epochs=20)))
    full = towerflow(env, "run", str(path))
    assert full.returncode == 1 and "Traceback" not in full.stderr
    said = full.stderr.strip().splitlines()
    assert any(line.startswith("experiment stopped: attempt 1: cannot write ") and line.endswith(
        ": No space left on device; make room and run the same config again: it continues from the last checkpoint")
        for line in said), full.stderr[-2000:]
    assert "out of memory" not in full.stdout + full.stderr  # TensorFlow calls a full disk resource exhaustion too
    assert "[running]" in full.stdout and "no run is working on it (its lease expired at " in full.stdout
    assert "no run is working on it (its lease expired at " in towerflow(env, "results", "full-disk").stdout

    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    again = towerflow(env, "run", str(path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "taking over experiment" in again.stdout + again.stderr and "[succeeded]" in again.stdout


def test_a_sweep_stops_at_the_point_that_found_the_disk_full(env, tmp_path, small_disk):
    path = tmp_path / "full-sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="full-sweep", artifacts=str(small_disk / "runs"))))
    done = towerflow(env, "sweep", str(path), "--grid", "training.learning_rate=0.05,0.03")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert any(line.startswith("towerflow sweep: attempt 1: cannot write ") and "No space left on device" in line
               for line in done.stderr.splitlines()), done.stderr[-2000:]
    assert "point 1/2" in done.stdout + done.stderr and "point 2/2" not in done.stdout + done.stderr
