"""End to end, event-driven, as deployed: a real Prefect server, work pools, workers and prefect.yaml.

`prefect server start` on a free loopback port with its own PREFECT_HOME, the `cpu` and `gpu` pools
(process type), one `prefect worker` per pool, both deployments from prefect.yaml, then
`towerflow submit`: the event starts run-experiment on `cpu`, which dispatches every attempt to
train-attempt on `gpu`. Every process shares one SQLite database and is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from flows.prefect_api import read_events, read_flow_runs, start_process, start_server, stop_process
from tasks import store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXPERIMENT_TIMEOUT_S = 600


def run(command: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of a running server with pools, workers and deployments (stopped afterwards)."""
    tmp = tmp_path_factory.mktemp("event-driven")
    env = {
        **os.environ,
        "TOWERFLOW_HOME": str(tmp / "home"),
        "TOWERFLOW_DATABASE_URL": f"sqlite:///{tmp / 'towerflow.db'}",
        "TOWERFLOW_RESULTS": str(tmp / "results"),
        "PREFECT_HOME": str(tmp / "prefect-clients"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    env.pop("TOWERFLOW_TRAINER_DEPLOYMENT", None)  # the cpu pool's job variables set it
    server = start_server(home=tmp / "prefect-server")
    workers = []
    try:
        env["PREFECT_API_URL"] = server.api_url
        run([str(BIN / "python"), "-m", "deployments.pools", "cpu", "gpu"], env)
        run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env)
        for pool in ("cpu", "gpu"):
            command = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                       "--name", f"e2e-{pool}"]
            workers.append(start_process(command, env, tmp / f"worker-{pool}.log", cwd=str(ROOT)))
        yield env
    finally:
        for worker in workers:
            stop_process(worker)
        server.stop()


@pytest.fixture
def database(stack, monkeypatch) -> None:
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", stack["TOWERFLOW_DATABASE_URL"])


def wait_for_experiment(config_hash: str, timeout_s: float = EXPERIMENT_TIMEOUT_S) -> dict:
    """Poll the database until the experiment has ended; returns its stored detail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        experiment = store.find_experiment(config_hash)
        if experiment is not None and experiment.status not in ("pending", "running"):
            return store.experiment_detail(experiment.id)
        time.sleep(2)
    raise AssertionError(f"experiment {config_hash} did not end within {timeout_s}s")


def wait_for_runs(api_url: str, flow_name: str, count: int, timeout_s: float = 120) -> list[dict]:
    """The flow runs of `flow_name` once at least `count` have reached a final state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in read_flow_runs(api_url, flow_name) if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        if len(runs) >= count:
            return runs
        time.sleep(1)
    raise AssertionError(f"fewer than {count} finished {flow_name} runs within {timeout_s}s")


def test_a_submitted_config_runs_on_the_pools_with_its_backoff_recorded(stack, database):
    submitted = run([str(BIN / "towerflow"), "submit", "examples/collapse_demo.yaml", "--json"], stack)
    submission = json.loads(submitted.stdout)
    assert submission["success"] and submission["status"] == "pending"
    assert submission["config_uri"].endswith(f"/configs/{submission['config_hash']}.yaml")
    assert [w["code"] for w in submission["warnings"]].count("high_learning_rate") == 1

    detail = wait_for_experiment(submission["config_hash"])

    assert detail["experiment"]["id"] == submission["experiment_id"]
    assert detail["experiment"]["status"] == "succeeded", detail["experiment"]["message"]
    attempts = detail["attempts"]
    assert len(attempts) >= 2
    assert attempts[0]["status"] == "collapsed" and "collapsed" in attempts[0]["reason"]
    assert attempts[-1]["status"] == "succeeded"
    assert [a["learning_rate"] for a in attempts] == pytest.approx([10.0 * 0.1**i for i in range(len(attempts))])
    assert all(r["value"] > r["baseline"] for r in detail["recall"] if r["k"] == max(x["k"] for x in detail["recall"]))

    api_url = stack["PREFECT_API_URL"]
    (orchestrator,) = wait_for_runs(api_url, "run-experiment", 1)
    assert orchestrator["work_pool_name"] == "cpu" and orchestrator["state_type"] == "COMPLETED"
    assert orchestrator["parameters"]["config"] == submission["config_uri"]
    trainers = wait_for_runs(api_url, "train-attempt", len(attempts))
    assert {t["work_pool_name"] for t in trainers} == {"gpu"}
    assert sorted(t["parameters"]["number"] for t in trainers) == list(range(1, len(attempts) + 1))


def test_the_same_event_delivered_twice_gives_one_experiment(stack, database, tmp_path):
    config = yaml.safe_load((ROOT / "examples/collapse_demo.yaml").read_text())
    config["name"] = "delivered-twice"
    config["data"]["transactions"] = "synthetic-retail://transactions?customers=200&products=40&transactions=3000"
    config["data"]["products"] = "synthetic-retail://products?customers=200&products=40&transactions=3000"
    config["training"].update(learning_rate=0.05, epochs=1)
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(config))
    before = len(read_flow_runs(stack["PREFECT_API_URL"], "run-experiment"))
    script = (
        "import sys\n"
        "from flows.submit import emit_submitted, submit_config\n"
        "submission = submit_config(sys.argv[1], emit=lambda s: (emit_submitted(s), emit_submitted(s)))\n"
        "print(submission.config_hash)\n"
    )
    config_hash = run([str(BIN / "python"), "-c", script, str(path)], stack).stdout.split()[-1]

    runs = wait_for_runs(stack["PREFECT_API_URL"], "run-experiment", before + 2)
    detail = wait_for_experiment(config_hash)

    mine = [r for r in runs if config_hash in r["parameters"]["config"]]
    assert len(mine) == 2 and {r["state_type"] for r in mine} == {"COMPLETED"}
    assert [e.config_hash for e in store.list_experiments()].count(config_hash) == 1
    assert detail["experiment"]["status"] == "succeeded"
    assert [a["number"] for a in detail["attempts"]] == [1]


def test_an_invalid_config_is_refused_before_anything_is_stored_or_emitted(stack, database, tmp_path):
    config = yaml.safe_load((ROOT / "examples/collapse_demo.yaml").read_text())
    config["name"] = "never-stored"
    config["training"]["learning_rate"] = -1.0
    path = tmp_path / "invalid.yaml"
    path.write_text(yaml.safe_dump(config))
    events_before = submitted_events(stack["PREFECT_API_URL"])

    done = subprocess.run([str(BIN / "towerflow"), "submit", str(path)], env=stack, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 2, done.stderr
    assert "training.learning_rate" in done.stderr
    assert "never-stored" not in [e.name for e in store.list_experiments()]
    stored = Path(stack["TOWERFLOW_HOME"]) / "artifacts" / "configs"
    assert not any("never-stored" in p.read_text() for p in stored.glob("*.yaml"))
    assert submitted_events(stack["PREFECT_API_URL"]) == events_before



def submitted_events(api_url: str) -> int:
    return len(read_events(api_url, "towerflow.config.submitted"))
