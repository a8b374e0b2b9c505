"""What is not there is named in one line within seconds: a Prefect API where nothing listens, a
database that refuses connections, a home directory that cannot be made. Exit 1, no traceback,
nothing half-written."""

from __future__ import annotations

import time

import pytest
import yaml
from faults import towerflow, towerflow_env
from tiny_configs import tiny_config

from flows.prefect_api import free_port

FAST_S = 15.0  # the "~10 s", with room for a loaded CI machine


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(name="fail-fast")))
    return str(path)


def timed(env, *args):
    started = time.monotonic()
    done = towerflow(env, *args, timeout=120)
    return done, time.monotonic() - started


def assert_one_line(done, *named: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in named:
        assert text in lines[0], lines[0]


def dead_api() -> str:
    return f"http://127.0.0.1:{free_port()}/api"


@pytest.mark.parametrize("command", [["run", "CONFIG"], ["submit", "CONFIG"], ["serve"]], ids=" ".join)
def test_a_dead_prefect_api_is_named_and_nothing_is_stored(tmp_path, config, command):
    url = dead_api()  # for serve too: a server of its own would be one that the configured URL never finds
    env = towerflow_env(tmp_path, PREFECT_API_URL=url)
    done, seconds = timed(env, *[config if word == "CONFIG" else word for word in command])
    assert_one_line(done, url)
    assert seconds < FAST_S
    assert not (tmp_path / "towerflow.db").exists() or "fail-fast" not in towerflow(env, "results").stdout


def test_a_database_that_refuses_connections_is_named_with_its_password_masked(tmp_path, config):
    url = f"postgresql://towerflow:s3cret@127.0.0.1:{free_port()}/nowhere"
    env = towerflow_env(tmp_path, TOWERFLOW_DATABASE_URL=url)
    for command in (["run", config], ["results"]):
        done, seconds = timed(env, *command)
        assert_one_line(done, "postgresql+psycopg://towerflow:***@127.0.0.1", "nowhere")
        assert "s3cret" not in done.stderr and seconds < FAST_S


@pytest.mark.parametrize("setting", ["TOWERFLOW_HOME", "PREFECT_HOME"])
def test_a_home_under_a_file_is_named(tmp_path, config, setting):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = towerflow_env(tmp_path, **{setting: str(blocker / "home")})
    done, seconds = timed(env, "run", config)
    assert_one_line(done, f"{setting}={blocker / 'home'}", "cannot be created")
    assert seconds < FAST_S


def test_a_missing_parent_of_the_home_is_created(tmp_path, config):
    env = towerflow_env(tmp_path, TOWERFLOW_HOME=str(tmp_path / "new" / "deeper" / "home"))
    done = towerflow(env, "results", timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "deeper" / "home").is_dir()


def test_debug_shows_the_traceback(tmp_path, config):
    env = towerflow_env(tmp_path, PREFECT_API_URL=dead_api())
    done = towerflow(env, "--debug", "run", config, timeout=60)
    assert done.returncode == 1 and "Traceback" in done.stderr
