"""A PostgreSQL that refuses connections in the middle of a run (ALTER DATABASE ... ALLOW_CONNECTIONS
false, existing sessions terminated), as in a failover: within the retry budget the run rides it out;
past it the run fails in one line naming the database, and the next run stores the attempt that is
on disk without training it again."""

from __future__ import annotations

import json
import secrets

import pytest
from faults import log_text, slow_config, start_towerflow, towerflow, towerflow_env, wait_for

from flows.prefect_api import stop_process

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
EPOCHS = 30


@pytest.fixture
def outage_database(postgres_admin, postgres_url):
    """A database of its own (ALLOW_CONNECTIONS is per database) and a switch that refuses or allows it."""
    from sqlalchemy.engine import make_url

    connection, _ = postgres_admin
    name = f"towerflow_outage_{secrets.token_hex(4)}"
    connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name, query={}).render_as_string(hide_password=False)

    def refuse(refused: bool) -> None:
        connection.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if refused else "true"}')
        if refused:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

    yield url, refuse
    refuse(False)
    connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def run_with_outage(env, tmp_path, refuse, name: str):
    """Start `towerflow run`, refuse connections once it trains; return the process, its log, the config."""
    config = slow_config(tmp_path, name, EPOCHS)
    log = tmp_path / f"{name}.log"
    run = start_towerflow(env, log, "run", config)
    wait_for("training to start", lambda: "epoch 2/" in log_text(log) or run.poll() is not None)
    refuse(True)
    return run, log, config


def test_an_outage_shorter_than_the_budget_is_ridden_out(outage_database, tmp_path):
    url, refuse = outage_database
    env = towerflow_env(tmp_path, TOWERFLOW_DATABASE_URL=url, TOWERFLOW_DB_RETRY_S="120")
    run, log, _ = run_with_outage(env, tmp_path, refuse, "short-outage")
    try:
        wait_for("a store write to retry", lambda: "retrying record_attempt" in log_text(log), timeout_s=120)
        refuse(False)
        assert run.wait(timeout=300) == 0, log_text(log)[-3000:]
    finally:
        stop_process(run)
    text = log_text(log)
    assert "not currently accepting connections" in text and "Traceback" not in text
    detail = json.loads(towerflow(env, "results", "short-outage", "--json").stdout)
    assert detail["experiment"]["status"] == "succeeded"
    [attempt] = detail["attempts"]
    assert [e["epoch"] for e in attempt["epochs"]] == list(range(1, EPOCHS + 1))


def test_an_outage_past_the_budget_fails_in_one_line_and_the_next_run_stores_without_retraining(
        outage_database, tmp_path):
    url, refuse = outage_database
    env = towerflow_env(tmp_path, TOWERFLOW_DATABASE_URL=url, TOWERFLOW_DB_RETRY_S="3")
    run, log, config = run_with_outage(env, tmp_path, refuse, "long-outage")
    try:
        assert run.wait(timeout=300) == 1
    finally:
        stop_process(run)
    text = log_text(log)
    [failed] = [line for line in text.splitlines() if "experiment failed" in line]
    assert "unreachable for 3s" in failed and url.rsplit("/", 1)[1] in failed, failed  # one line, the URL named
    assert "Traceback" not in text

    refuse(False)
    again = towerflow(env, "run", config)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "attempt 1 already ended succeeded: reusing its result from" in output
    assert "epoch 1/" not in output  # not one epoch trained again
    assert "[succeeded]" in again.stdout
