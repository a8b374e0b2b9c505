"""No experiment is lost: `towerflow run` and `towerflow serve` killed with SIGKILL mid-attempt, an
orchestrator killed under --dispatch; every time a later run continues the attempt from its last
checkpoint, stores epochs 1..E once each, and nobody has to step in."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from faults import (
    deployments,
    children,
    last_epoch,
    log_text,
    resumed_at,
    serve_until_ready,
    slow_config,
    start_towerflow,
    stop_left_server,
    towerflow,
    towerflow_env,
    wait_for,
)

from flows.prefect_api import post_json, read_flow_runs, stop_process
from flows.processes import alive
from tasks import store

pytestmark = pytest.mark.slow
EPOCHS = 60


def trained_to(log, epoch: int):
    """A wait condition: the log shows `epoch`; fails at once when the experiment already ended."""

    def check():
        ended = [e for e in store.list_experiments() if e.status not in store.ACTIVE_STATUSES]
        assert not ended, f"the experiment ended {ended[0].status}: {ended[0].message}"
        return last_epoch(log_text(log)) >= epoch

    return check


def ended_orchestrators(api_url: str) -> list[str]:
    """The run-experiment flow runs' state names, once none is running: an orchestrator stores the
    result, then publishes its report and summary, so the store says succeeded before Prefect does."""
    def ended():
        return all(run["state_type"] in ("COMPLETED", "CRASHED", "FAILED")
                   for run in read_flow_runs(api_url, "run-experiment"))

    wait_for("the orchestrators to end", ended, timeout_s=60)
    return [run["state_name"] for run in read_flow_runs(api_url, "run-experiment")]


def only_detail() -> dict:
    [experiment] = store.list_experiments()
    return store.experiment_detail(experiment.id)


def assert_trained_once(detail: dict) -> None:
    """Succeeded with one attempt whose stored epochs are exactly 1..EPOCHS."""
    assert detail["experiment"]["status"] == "succeeded", detail["experiment"]["message"]
    [attempt] = detail["attempts"]
    assert [e["epoch"] for e in attempt["epochs"]] == list(range(1, EPOCHS + 1))
    assert detail["recall"], "no recall stored"


@pytest.fixture
def env(tmp_path, monkeypatch):
    env = towerflow_env(tmp_path)
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", env["TOWERFLOW_DATABASE_URL"])
    yield env
    store.dispose_engines()


@contextlib.contextmanager
def training_run(env, config: str, log, epoch: int):
    """A `towerflow run CONFIG` that has trained `epoch` epochs; stopped (its whole group) afterwards."""
    run = start_towerflow(env, log, "run", config)
    try:
        wait_for(f"epoch {epoch}", trained_to(log, epoch))
        yield run
    finally:
        stop_process(run)


def test_a_killed_towerflow_run_is_continued_by_a_plain_rerun_and_force_never_doubles_it(env, tmp_path):
    config = slow_config(tmp_path, "killed-run", EPOCHS)
    log = tmp_path / "first.log"
    with training_run(env, config, log, 3) as first:
        forced = towerflow(env, "run", "--force", config)
        assert forced.returncode == 1 and "Traceback" not in forced.stderr
        assert "is being run by flow run" in forced.stderr and "--force never doubles a live run" in forced.stderr
        [server] = children(first.pid, "prefect.server.api.server:create_app")  # its ephemeral Prefect API
        os.kill(first.pid, signal.SIGKILL)  # the OOM killer's choice: this process alone, no handler runs
        first.wait(timeout=30)
        wait_for("the killed run's ephemeral server to stop", lambda: not alive(server), timeout_s=15)
    killed_at = last_epoch(log_text(log))
    assert killed_at < EPOCHS, "the first run finished before it was killed"

    again = towerflow(env, "run", config)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "taking over experiment" in output and "is gone" in output
    assert resumed_at(output) >= killed_at  # at most the epoch in progress was lost
    assert_trained_once(only_detail())


@contextlib.contextmanager
def interruptible():
    """Children started here can be stopped by SIGINT even when this process ignores it (a shell's background
    job does, and its children inherit that; an exec resets a handler but not an ignored signal)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_run_stopped_by_a_signal_says_so_and_frees_the_experiment_at_once(env, tmp_path, stop):
    config = slow_config(tmp_path, "stopped-run", EPOCHS)
    log = tmp_path / "first.log"
    with interruptible(), training_run(env, config, log, 2) as first:
        # SIGTERM: a node drained, `docker stop`, systemd. Ctrl-C: the terminal signals the whole process group
        os.killpg(first.pid, stop) if stop == signal.SIGINT else os.kill(first.pid, stop)
        first.wait(timeout=60)
    [experiment] = store.list_experiments()
    assert experiment.status == "running" and experiment.message.startswith(f"interrupted by {stop.name} at ")
    said = log_text(log)
    assert "Traceback" not in said, said[-3000:]
    assert first.returncode == 128 + stop  # as a shell reports a process ended by the signal
    stopped = "interrupted" if stop == signal.SIGINT else "terminated by SIGTERM"
    assert (f"towerflow run: {stopped}; its checkpoints are kept: the same `towerflow run` continues it from "
            "the last one") in said.splitlines(), said[-2000:]
    shown = towerflow(env, "results", "stopped-run")
    assert shown.returncode == 0 and "no run is working on it (its lease expired at " in shown.stdout, shown.stdout
    assert "running (unowned)" in towerflow(env, "results").stdout

    again = towerflow(env, "run", config)  # taken over at once, continuing from the last checkpoint
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert "taking over experiment" in output and f"(interrupted by {stop.name} at " in output
    assert_trained_once(only_detail())


def test_a_killed_serve_is_continued_by_the_next_serve_with_nobody_stepping_in(env, tmp_path):
    config = slow_config(tmp_path, "killed-serve", EPOCHS)
    first_log, second_log = tmp_path / "serve-1.log", tmp_path / "serve-2.log"
    serve, api_url = serve_until_ready(env, first_log)
    try:
        submitted = towerflow(env, "submit", config)
        assert submitted.returncode == 0, submitted.stderr
        wait_for("epoch 3 under serve", trained_to(first_log, 3))
        os.killpg(serve.pid, signal.SIGKILL)  # serve and the flow run it started; its API server lives on
        serve.wait(timeout=30)
        killed_at = last_epoch(log_text(first_log))
        assert killed_at < EPOCHS and store.list_experiments()[0].status == "running"

        serve, again_url = serve_until_ready(env, second_log)
        assert again_url == api_url  # the surviving API is reused
        wait_for("the experiment to succeed", lambda: store.list_experiments()[0].status == "succeeded",
                 timeout_s=300)
        states = ended_orchestrators(api_url)
    finally:
        stop_process(serve)
        stop_left_server(env)
    text = log_text(second_log)
    assert "continuing it in flow run" in text and "taking over experiment" in text
    assert resumed_at(text) >= killed_at
    assert_trained_once(only_detail())
    assert states == ["Crashed", "Completed"]  # Prefect agrees with the store: the killed run is Crashed


def test_a_flow_run_cancelled_in_prefect_stops_its_experiment_and_the_reconciler_leaves_it(env, tmp_path):
    config = slow_config(tmp_path, "cancelled", EPOCHS)
    log = tmp_path / "serve.log"
    serve, api_url = serve_until_ready(env, log)
    try:
        assert towerflow(env, "submit", config).returncode == 0
        wait_for("epoch 2 under serve", trained_to(log, 2))
        [experiment] = store.list_experiments()
        cancelling = {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True}  # the UI's Cancel button
        post_json(api_url, f"/flow_runs/{experiment.flow_run_id}/set_state", cancelling)
        wait_for("the experiment to stop", lambda: store.list_experiments()[0].status == "stopped", timeout_s=120)
        [reconcile] = [d for d in deployments(api_url) if d["name"] == "reconcile-experiments"]
        run = post_json(api_url, f"/deployments/{reconcile['id']}/create_flow_run", {})
        wait_for("the reconciler's run", lambda: post_json(api_url, "/flow_runs/filter", {
            "flow_runs": {"id": {"any_": [run["id"]]}}})[0]["state_type"] == "COMPLETED", timeout_s=120)
        wait_for("the orchestrator to be Cancelled", lambda: read_flow_runs(api_url, "run-experiment")[0]["state_type"]
                 == "CANCELLED", timeout_s=60)
        orchestrators = read_flow_runs(api_url, "run-experiment")
    finally:
        stop_process(serve)
        stop_left_server(env)
    [stopped] = store.list_experiments()
    assert stopped.message.startswith(f"cancelled in Prefect (flow run {experiment.flow_run_id}) at "), stopped.message
    assert [run["state_type"] for run in orchestrators] == ["CANCELLED"]  # nobody started it again
    assert last_epoch(log_text(log)) < EPOCHS


def test_an_orchestrator_killed_under_dispatch_is_recovered_and_waits_for_its_live_trainer(env, tmp_path):
    config = slow_config(tmp_path, "killed-orchestrator", EPOCHS)
    log = tmp_path / "serve.log"
    serve, api_url = serve_until_ready(env, log, "--dispatch")
    try:
        assert towerflow(env, "submit", config).returncode == 0
        wait_for("epoch 3 on the trainer", trained_to(log, 3))
        owner = store.list_experiments()[0].owner
        os.kill(int(owner.rsplit(":", 1)[1]), signal.SIGKILL)  # only the orchestrator's flow run process
        wait_for("the experiment to succeed", lambda: store.list_experiments()[0].status == "succeeded",
                 timeout_s=300)
        orchestrators = ended_orchestrators(api_url)
        trainers = read_flow_runs(api_url, "train-attempt")
    finally:
        stop_process(serve)
    text = log_text(log)
    assert "taking over experiment" in text and "is still training in flow run" in text
    assert "resuming attempt" not in text  # the trainer was never interrupted, so nothing was retrained
    assert_trained_once(only_detail())
    assert orchestrators == ["Crashed", "Completed"]
    assert [run["state_name"] for run in trainers] == ["Completed"]  # one trainer run: never doubled


@pytest.mark.parametrize("when", ["training", "awaiting_approval"])
def test_a_towerflow_run_cancelled_in_prefect_stops_at_once(env, tmp_path, when):
    """`towerflow run` against a Prefect server: its flow run has no deployment, so no runner kills it on
    Cancel; the run itself sees the cancel and stops, while training or while paused for approval."""
    approval = dict(validation__on_warning="approve", validation__approval_timeout_s=600, training__learning_rate=0.5,
                    model__buyer_layers=[{"units": 16}, {"units": 16}, {"units": 8}])  # draws high_learning_rate
    config = slow_config(tmp_path, f"cancel-{when}", EPOCHS, **(approval if when == "awaiting_approval" else {}))
    serve, api_url = serve_until_ready(env, tmp_path / "serve.log")
    log = tmp_path / "run.log"
    run = start_towerflow({**env, "PREFECT_API_URL": api_url}, log, "run", config)
    try:
        if when == "training":
            wait_for("epoch 2", trained_to(log, 2))
        else:
            wait_for("the approval pause", lambda: store.list_experiments()
                     and store.list_experiments()[0].status == "awaiting_approval")
        [experiment] = store.list_experiments()
        cancelling = {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True}  # the UI's Cancel button
        post_json(api_url, f"/flow_runs/{experiment.flow_run_id}/set_state", cancelling)
        run.wait(timeout=60)
        [flow_run] = read_flow_runs(api_url, "run-experiment")
    finally:
        stop_process(run)
        stop_process(serve)
        stop_left_server(env)
    [stopped] = store.list_experiments()
    assert stopped.status == "stopped", (stopped.status, stopped.message)
    assert stopped.message.startswith(f"cancelled in Prefect (flow run {experiment.flow_run_id}) at ")
    assert run.returncode != 0 and "Traceback" not in log_text(log), log_text(log)[-3000:]
    assert flow_run["state_type"] == "CANCELLED", flow_run["state_name"]
    assert last_epoch(log_text(log)) < EPOCHS


def test_a_towerflow_sweep_cancelled_in_prefect_stops_its_point_and_starts_no_other(env, tmp_path):
    """Cancel on a `towerflow sweep`'s own flow run (the parent of its points in the UI): the point in
    progress watches its sweep's run too and stops, the points after it never start, and the sweep's
    run ends Cancelled."""
    config = slow_config(tmp_path, "cancel-sweep", EPOCHS)
    serve, api_url = serve_until_ready(env, tmp_path / "serve.log")
    log = tmp_path / "sweep.log"
    sweep = start_towerflow({**env, "PREFECT_API_URL": api_url}, log, "sweep", config, "--grid", "training.seed=1,2")
    try:
        wait_for("epoch 2 of the first point", trained_to(log, 2))
        [sweep_run] = read_flow_runs(api_url, "run-sweep")
        cancelling = {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True}  # the UI's Cancel button
        post_json(api_url, f"/flow_runs/{sweep_run['id']}/set_state", cancelling)
        sweep.wait(timeout=60)
        [sweep_run] = read_flow_runs(api_url, "run-sweep")
        point_runs = read_flow_runs(api_url, "run-experiment")
    finally:
        stop_process(sweep)
        stop_process(serve)
        stop_left_server(env)
    text = log_text(log)
    [stopped] = store.list_experiments()  # the second point was never started
    assert stopped.status == "stopped", (stopped.status, stopped.message)
    assert stopped.message.startswith(f"cancelled in Prefect (flow run {sweep_run['id']}) at ")
    assert sweep.returncode == 1 and "Traceback" not in text, text[-3000:]
    assert "sweep stopped: cancelled in Prefect" in text and "1 queued (of 2)" in text, text[-3000:]
    assert sweep_run["state_type"] == "CANCELLED", sweep_run["state_name"]
    assert [run["state_type"] for run in point_runs] == ["CANCELLED"]
    assert last_epoch(text) < EPOCHS
