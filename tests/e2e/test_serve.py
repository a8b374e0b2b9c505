"""One machine, as the README's event-driven section runs it: `towerflow serve` in one terminal,
`towerflow watch DIR --once` in another; the config's event starts the served orchestrator, whose
attempts run in its own flow run; Ctrl-C (SIGINT to the process group) stops everything serve started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.prefect_api import API_URL_FILE, api_answers, read_flow_runs, read_task_runs, start_process, stop_process
from tasks import store
from tiny_configs import tiny_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
def wait_for(what: str, check, timeout_s: float = 240.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def test_serve_runs_a_watched_config_in_process_and_stops_on_ctrl_c(tmp_path, monkeypatch):
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "TOWERFLOW_TRAINER_DEPLOYMENT")}
    env.update(TOWERFLOW_HOME=str(tmp_path / "home"), TOWERFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'tf.db'}",
               PREFECT_HOME=str(tmp_path / "prefect-clients"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", env["TOWERFLOW_DATABASE_URL"])
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "served.yaml").write_text(yaml.safe_dump(tiny_config(name="served", training__epochs=1)))

    serve = start_process([str(BIN / "towerflow"), "serve"], env, tmp_path / "serve.log", cwd=str(ROOT))
    api_url = None
    try:
        url_file = tmp_path / "home" / "prefect" / API_URL_FILE
        api_url = wait_for("serve's API", lambda: url_file.exists() and api_answers(url_file.read_text().strip())
                           and url_file.read_text().strip())
        wait_for("the served deployments", lambda: api_answers(api_url) and _deployments(api_url) >= 2)

        watch = [str(BIN / "towerflow"), "watch", str(configs), "--once"]
        first = subprocess.run(watch, env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        experiment = wait_for("the experiment to end", lambda: _ended(store.list_experiments()))
        detail = store.experiment_detail(experiment.id)
        assert detail["experiment"]["status"] == "succeeded", detail["experiment"]["message"]
        assert [a["status"] for a in detail["attempts"]] == ["succeeded"]

        (orchestrator,) = read_flow_runs(api_url, "run-experiment")
        attempts = read_task_runs(api_url, " / attempt ")
        assert [t["flow_run_id"] for t in attempts] == [orchestrator["id"]]  # in-process, not dispatched
        assert read_flow_runs(api_url, "train-attempt") == []

        again = subprocess.run(watch, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and len(store.list_experiments()) == 1
        assert len(read_flow_runs(api_url, "run-experiment")) == 1  # an unchanged file never resubmits
        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C in a terminal: one SIGINT to the foreground group
        assert serve.wait(timeout=60) == 0
        assert not api_answers(api_url)  # the server serve started is gone too
    finally:
        stop_process(serve)  # only does something when the test failed above


def _deployments(api_url: str) -> int:
    from flows.prefect_api import post_json

    return len(post_json(api_url, "/deployments/filter", {}))


def _ended(experiments):
    return next((e for e in experiments if e.status not in ("pending", "running")), None)
