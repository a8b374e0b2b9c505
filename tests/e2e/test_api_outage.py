"""The Prefect API killed under a running `towerflow run` (a server restarted, its pod gone): training goes on
without it and its result is stored; the run then stops in one line, leaving the experiment unfinished rather
than failed, and the next run, once an API answers, reuses the trained attempt instead of training it again."""

from __future__ import annotations

import os
import signal

import pytest
from faults import last_epoch, log_text, slow_config, start_towerflow, towerflow, towerflow_env, wait_for

from flows.prefect_api import start_server, stop_process
from tasks import store

pytestmark = pytest.mark.slow
EPOCHS = 200  # about 0.4 s each: the API dies early in training


def test_a_prefect_api_that_dies_mid_run_costs_no_training(tmp_path, monkeypatch):
    env = towerflow_env(tmp_path)
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", env["TOWERFLOW_DATABASE_URL"])
    server = start_server(home=tmp_path / "prefect-server")
    config = slow_config(tmp_path, "api-outage", EPOCHS)
    log = tmp_path / "run.log"
    run = start_towerflow(env | {"PREFECT_API_URL": server.api_url}, log, "run", config)
    try:
        wait_for("training to start", lambda: last_epoch(log_text(log)) >= 3 or run.poll() is not None)
        os.killpg(server.process.pid, signal.SIGKILL)  # the API is gone, not stopped politely
        server.process.wait(timeout=30)
        assert run.wait(timeout=420) == 1
    finally:
        stop_process(run)
        server.stop()
    text = log_text(log)
    assert "Traceback" not in text, text[-3000:]
    said = f"the Prefect API at {server.api_url} stopped answering ("
    assert any(said in line and line.endswith("run the same command again once it answers: it continues from the "
                                              "last checkpoint") for line in text.splitlines()), text[-3000:]
    [experiment] = store.list_experiments()
    assert experiment.status == "running" and said in experiment.message  # unfinished, its lease ended: not failed
    [attempt] = store.experiment_detail(experiment.id)["attempts"]
    assert attempt["status"] == "succeeded" and len(attempt["epochs"]) == EPOCHS  # trained on without the API

    server = start_server(home=tmp_path / "prefect-server")  # the API is back (on another port, same database)
    try:
        again = towerflow(env | {"PREFECT_API_URL": server.api_url}, "run", config)
    finally:
        server.stop()
        store.dispose_engines()
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "taking over experiment" in output and "attempt 1 already ended succeeded: reusing its result" in output
