"""The experiment flow end to end: a real Prefect API (a local test server), a real database, real training.

Tiny synthetic data keeps each training run to seconds; the collapse demo runs the shipped example itself.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tasks import events, store
from tiny_configs import TINY_DATA, tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def towerflow_env(prefect_api, tmp_path, monkeypatch):
    """A fresh SQLite database and artifacts root per test; events captured as (name, payload)."""
    monkeypatch.setenv("TOWERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOWERFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'towerflow.db'}")
    monkeypatch.delenv("TOWERFLOW_TRAINER_DEPLOYMENT", raising=False)
    emitted: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "emit_event", lambda event, resource, payload, related: emitted.append((event, payload)))
    yield emitted
    store.dispose_engines()


def deep_high_lr(**changes) -> dict:
    """A config that draws the high-learning-rate warning (LR >= 0.1, >= 3 dense buyer layers)."""
    layers = [{"units": 16}, {"units": 16}, {"units": 8}]
    return tiny_config(model__buyer_layers=layers, training__learning_rate=0.5, **changes)


def only_experiment() -> dict:
    experiments = store.list_experiments()
    assert len(experiments) == 1, [e.name for e in experiments]
    return store.experiment_detail(experiments[0].id)


def test_a_run_trains_evaluates_and_stores_everything(towerflow_env):
    from flows.experiment import run_experiment

    summary = run_experiment(tiny_config())
    detail = only_experiment()
    assert summary["experiment"]["id"] == detail["experiment"]["id"] and summary["reused"] is False
    assert detail["experiment"]["status"] == "succeeded"
    [attempt] = detail["attempts"]
    assert attempt["status"] == "succeeded" and [e["epoch"] for e in attempt["epochs"]] == [1, 2]
    elapsed = datetime.fromisoformat(attempt["finished_at"]) - datetime.fromisoformat(attempt["started_at"])
    assert elapsed.total_seconds() >= sum(e["seconds"] for e in attempt["epochs"])  # the attempt's real span
    assert [r["k"] for r in detail["recall"]] == [5, 10]
    assert detail["recall"][0]["n_candidates"] == 60
    names = [name for name, _ in towerflow_env]
    assert names[-1] == events.EXPERIMENT_COMPLETED
    assert set(towerflow_env[-1][1]["recall"]) == {5, 10}


def test_a_streamed_experiment_reads_its_data_in_one_pass_for_check_attempts_and_evaluation(
        towerflow_env, tmp_path, monkeypatch):
    """The data check's pass (in a child process) is kept beside the attempts; the learning-rate probe,
    every attempt and the evaluation load it instead of reading the stream again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import trainer.scanned as scanned
    import trainer.stream as stream
    from flows.experiment import run_experiment
    from tasks.settings import scan_dir
    from trainer.datasets import load_builtin
    from trainer.spec import load_spec

    rows = load_builtin(TINY_DATA.format(table="transactions"))
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp_path / "tx.parquet", row_group_size=1000)
    config = tiny_config(training__learning_rate=1e30, training__clipnorm=None,
                         training__backoff={"max_retries": 1, "factor": 1e-31},  # attempt 1 diverges, 2 succeeds
                         validation__lr_probe="warn", validation__lr_probe_steps=20)
    config["data"] = {"transactions": str(tmp_path / "tx.parquet"), "streaming": True,
                      "split": {"strategy": "hash", "test_fraction": 0.2}}
    passes, passes_here = [], []
    real, real_here = scanned._scan_in_child, stream.scan
    monkeypatch.setattr(scanned, "_scan_in_child", lambda *args: passes.append(args) or real(*args))
    monkeypatch.setattr(stream, "scan", lambda *args: passes_here.append(args) or real_here(*args))

    run_experiment(config)
    detail = only_experiment()
    assert detail["experiment"]["status"] == "succeeded", detail["experiment"]["message"]
    assert [a["status"] for a in detail["attempts"]] == ["diverged", "succeeded"] and detail["recall"]
    assert [directory for _, directory in passes] == [scan_dir(load_spec(config))]  # one pass, for everything
    assert passes_here == [] and detail["lr_probe"], detail.get("lr_probe")  # none in this process, the probe's too


def test_the_same_config_twice_gives_one_experiment_and_the_stored_result(towerflow_env):
    from flows.experiment import run_experiment

    first = run_experiment(tiny_config())
    again = run_experiment(tiny_config())
    assert again["reused"] is True and again["experiment"]["id"] == first["experiment"]["id"]
    assert len(only_experiment()["attempts"]) == 1
    forced = run_experiment(tiny_config(), force=True)
    assert forced["reused"] is False and len(store.list_experiments()) == 1


def test_a_crashed_attempt_is_retried_at_the_same_rate_and_resumes_from_its_checkpoint(towerflow_env, monkeypatch):
    import flows.experiment
    from tasks import training

    crashes, reported = [], []

    def crash_once_after_epoch_1(self, description):  # the worker dies once, after epoch 1's checkpoint
        reported.append(description.split(":")[0])
        if not crashes and "epoch 1/" in description:
            crashes.append(description)
            raise RuntimeError("worker lost")

    monkeypatch.setattr(training.ProgressArtifact, "advance", crash_once_after_epoch_1)
    monkeypatch.setattr(flows.experiment, "train_attempt", training.train_attempt.with_options(retry_delay_seconds=0))
    flows.experiment.run_experiment(tiny_config(training__epochs=3))
    [attempt] = only_experiment()["attempts"]
    assert crashes and attempt["status"] == "succeeded" and attempt["learning_rate"] == 0.05
    assert [e["epoch"] for e in attempt["epochs"]] == [1, 2, 3]  # epoch 1 kept from before the crash
    assert reported == ["attempt 1 epoch 1/3", "attempt 1 epoch 2/3", "attempt 1 epoch 3/3"]  # not trained twice


def test_an_invalid_config_fails_and_leaves_no_rows(towerflow_env):
    from flows.experiment import run_experiment

    config = tiny_config(training__optimizer="adamw", training__learning_rate=-1)
    state = run_experiment(config, return_state=True)
    assert state.is_failed()
    assert "training.optimizer" in state.message and "training.learning_rate" in state.message
    assert store.list_experiments() == []
    assert [name for name, _ in towerflow_env] == [events.VALIDATION_FAILED]


def test_a_submitted_config_refused_where_the_flow_runs_ends_failed_not_pending(towerflow_env, tmp_path, monkeypatch):
    from flows.experiment import run_experiment
    from flows.submit import check_config, submit_valid
    from trainer.data import load_table

    submitter, server = tmp_path / "submitter", tmp_path / "serve"
    server.mkdir()
    (submitter / "data").mkdir(parents=True)
    load_table(TINY_DATA.format(table="transactions")).to_csv(submitter / "data" / "tx.csv", index=False)
    config = tiny_config(data={"transactions": "data/tx.csv"})
    (submitter / "tiny.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(submitter)
    submission = submit_valid(check_config("tiny.yaml"), emit=lambda submitted: None)

    monkeypatch.chdir(server)  # where `towerflow serve` runs the triggered flow: no data/tx.csv here
    state = run_experiment(submission.config_uri, return_state=True)
    assert state.is_failed() and f"data/tx.csv (relative to {server}): file not found" in state.message
    detail = only_experiment()
    assert detail["experiment"]["status"] == "failed"  # not `pending`, which the reconciler would start forever
    assert detail["experiment"]["message"].startswith("invalid config: data.transactions: data/tx.csv (relative")
    assert [f["code"] for f in detail["findings"]] == ["data_unreadable"]

    store.set_experiment_status(detail["experiment"]["id"], "succeeded")
    assert run_experiment(submission.config_uri, return_state=True).is_failed()
    assert only_experiment()["experiment"]["status"] == "succeeded"  # a stored result is never overwritten


def test_several_workers_without_an_engine_fail_validation_naming_the_field(towerflow_env):
    from flows.experiment import run_experiment

    state = run_experiment(tiny_config(training__workers=2), return_state=True)  # attempts would run in-process
    assert state.is_failed() and "training.workers" in state.message
    assert store.list_experiments() == []


def test_halt_policy_fails_naming_the_warnings(towerflow_env):
    from flows.experiment import run_experiment

    state = run_experiment(deep_high_lr(validation={"on_warning": "halt"}), return_state=True)
    assert state.is_failed()
    assert "validation.on_warning: halt" in state.message and "training.learning_rate" in state.message
    detail = only_experiment()
    assert detail["experiment"]["status"] == "halted" and detail["attempts"] == []
    assert any(f["code"] == "high_learning_rate" for f in detail["findings"])


def _wait_for_paused_run(timeout: float = 120.0):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                return runs[0]
            time.sleep(0.5)
    raise AssertionError("the flow never paused for approval")


def approve_in_the_ui(config: dict, decision: str):
    """Run the flow in a thread; once it pauses for approval, answer the form through the API as a
    person would in the UI. Returns the flow's final state and the experiment's status while paused."""
    from prefect.flow_runs import resume_flow_run

    from flows.experiment import run_experiment

    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(state=run_experiment(config, return_state=True)))
    runner.start()
    try:
        paused = _wait_for_paused_run()
        status_while_paused = only_experiment()["experiment"]["status"]
        resume_flow_run(paused.id, run_input={"decision": decision})
    finally:
        runner.join(timeout=300)
    return outcome["state"], status_while_paused


def test_approve_policy_pauses_and_resumes_with_the_suggested_learning_rate(towerflow_env):
    from trainer.rules import suggested_learning_rate
    from trainer.spec import load_spec

    config = deep_high_lr(validation={"on_warning": "approve", "approval_timeout_s": 120})
    from flows.experiment import SUGGESTED

    state, status_while_paused = approve_in_the_ui(config, SUGGESTED)
    assert status_while_paused == "awaiting_approval" and state.is_completed()
    [attempt] = only_experiment()["attempts"]
    suggested = suggested_learning_rate(load_spec(config))
    assert attempt["learning_rate"] == pytest.approx(suggested)
    names = [name for name, _ in towerflow_env]
    assert names.index(events.VALIDATION_AWAITING_APPROVAL) < names.index(events.VALIDATION_APPROVED)
    approved = dict(towerflow_env)[events.VALIDATION_APPROVED]
    assert approved["lr"] == pytest.approx(suggested) and approved["decision"] == SUGGESTED


def test_approve_policy_stop_ends_the_experiment_without_training(towerflow_env):
    config = deep_high_lr(validation={"on_warning": "approve", "approval_timeout_s": 120})
    from flows.experiment import STOP

    state, _ = approve_in_the_ui(config, STOP)
    assert state.is_failed() and "stopped by a person" in state.message
    detail = only_experiment()
    assert detail["experiment"]["status"] == "stopped" and detail["attempts"] == []


@pytest.mark.slow
def test_collapse_demo_recovers_by_backing_off_the_learning_rate(towerflow_env):
    from flows.experiment import run_experiment

    config_path = ROOT / "examples" / "collapse_demo.yaml"
    factor = yaml.safe_load(config_path.read_text())["training"]["backoff"]["factor"]
    run_experiment(str(config_path))
    detail = only_experiment()
    attempts = detail["attempts"]
    assert detail["experiment"]["status"] == "succeeded"
    assert len(attempts) >= 2
    assert attempts[0]["status"] == "collapsed" and "collapsed at epoch" in attempts[0]["reason"]
    assert attempts[-1]["status"] == "succeeded"
    for earlier, later in zip(attempts, attempts[1:]):
        assert later["learning_rate"] == pytest.approx(earlier["learning_rate"] * factor)
    assert all(r["value"] > r["baseline"] for r in detail["recall"])
    names = [name for name, _ in towerflow_env]
    assert events.ATTEMPT_COLLAPSED in names and events.ATTEMPT_RETRYING in names
    retry = next(payload for name, payload in towerflow_env if name == events.ATTEMPT_RETRYING)
    assert retry["attempt"] == 2 and retry["lr"] == pytest.approx(attempts[1]["learning_rate"])


def test_bad_data_fails_the_experiment_before_any_attempt_naming_the_column(towerflow_env, tmp_path):
    from flows.experiment import run_experiment

    rows = ["customer_id,product_id,age", *(f"c{i % 40},p{i % 25},{'inf' if i == 17 else i % 50}" for i in range(400))]
    (tmp_path / "tx.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(data={"transactions": str(tmp_path / "tx.csv")},
                         buyer_features=[{"column": "customer_id", "type": "id"}, {"column": "age", "type": "numeric"}],
                         product_features=[{"column": "product_id", "type": "id", "is_primary_id": True}])
    state = run_experiment(config, return_state=True)
    assert state.is_failed() and "bad data: buyer_features[1].column" in state.message
    detail = only_experiment()
    assert detail["experiment"]["status"] == "failed" and detail["experiment"]["message"].startswith("bad data:")
    assert detail["attempts"] == []  # never trained, so never backed off either
    assert any(f["code"] == "non_finite_values" and "'age'" in f["message"] for f in detail["findings"])
    failed = [payload for name, payload in towerflow_env if name == events.VALIDATION_FAILED]
    assert failed and failed[0]["reason"] == "bad data"


def test_an_attempt_out_of_memory_fails_once_in_one_line_without_a_retry(towerflow_env, monkeypatch):
    import trainer.attempt
    from flows.experiment import run_experiment
    from trainer.errors import OutOfMemory

    calls = []

    def out_of_memory(spec, learning_rate, workdir, **kwargs):
        calls.append(learning_rate)
        raise OutOfMemory(f"{kwargs['name']}: out of memory allocating a float tensor of shape [301,10000000] on CPU:0")

    monkeypatch.setattr(trainer.attempt, "run_attempt", out_of_memory)
    state = run_experiment(tiny_config(), return_state=True)
    assert state.is_failed() and calls == [0.05]  # neither retried by the task nor backed off to a lower rate
    [attempt] = only_experiment()["attempts"]
    assert attempt["status"] == "failed"
    assert attempt["reason"] == "attempt 1: out of memory allocating a float tensor of shape [301,10000000] on CPU:0"
    assert only_experiment()["experiment"]["message"].endswith(attempt["reason"])


@pytest.mark.parametrize("policy", ["warn", "fail"])
def test_a_model_below_popularity_at_any_k_is_named_and_refused_on_request(towerflow_env, monkeypatch, policy):
    import flows.experiment
    from prefect import task

    from trainer.evaluation import EvaluationResult

    @task(name="evaluate")
    def loses_at_5(spec, number, model_uri):  # beats popularity at @10 only: the old largest-k rule saw nothing
        return EvaluationResult(model={5: 0.10, 10: 0.40}, popularity={5: 0.20, 10: 0.30}, n_candidates=60,
                                n_candidate_rows_before_dedup=60, n_queries=50, n_pairs=50, exclude_seen=False)

    monkeypatch.setattr(flows.experiment, "evaluate", loses_at_5)
    state = flows.experiment.run_experiment(tiny_config(evaluation__on_below_baseline=policy), return_state=True)
    detail = only_experiment()
    [finding] = [f for f in detail["findings"] if f["code"] == "below_popularity_baseline"]
    assert "below popularity at @5 " in finding["message"] and "@10" not in finding["message"]
    below = [payload for name, payload in towerflow_env if name == events.EVALUATION_BELOW_BASELINE]
    assert below and below[0]["ks"] == [5]
    if policy == "warn":
        assert state.is_completed() and detail["experiment"]["status"] == "succeeded"
    else:
        assert state.is_failed() and detail["experiment"]["status"] == "failed"
        assert "evaluation.on_below_baseline: fail" in detail["experiment"]["message"]


def test_a_run_whose_experiment_was_taken_over_stops_and_leaves_it_to_the_new_owner(towerflow_env, monkeypatch):
    import flows.experiment
    from tasks import training

    reported = []

    def taken_over_after_epoch_1(self, description):  # meanwhile another run decided this one was dead
        reported.append(description)
        if "epoch 1/" in description:
            [experiment] = store.list_experiments()
            store.claim_experiment(experiment.id, "the-new-owner", "elsewhere:1", 60, owner_gone=lambda e: True)

    monkeypatch.setattr(training.ProgressArtifact, "advance", taken_over_after_epoch_1)
    state = flows.experiment.run_experiment(tiny_config(training__epochs=3), return_state=True)
    assert state.is_failed() and "taken over by another run" in state.message
    assert len(reported) == 1  # it stopped at the first epoch boundary after losing the lease
    experiment = only_experiment()["experiment"]
    assert (experiment["status"], experiment["flow_run_id"]) == ("running", "the-new-owner")  # left as it found it


def test_lr_probe_pick_trains_at_the_measured_rate_and_says_so(towerflow_env):
    from flows.experiment import run_experiment

    run_experiment(deep_high_lr(validation={"lr_probe": "pick", "lr_probe_steps": 100}))
    detail = only_experiment()
    probe, first = detail["lr_probe"], detail["attempts"][0]
    assert probe["mode"] == "pick" and len(probe["points"]) >= 2
    assert first["learning_rate"] == pytest.approx(probe["suggested_rate"]) and first["learning_rate"] < 0.5
    assert detail["experiment"]["status"] == "succeeded"
    assert "learning-rate probe's suggestion" in detail["experiment"]["message"]
    assert not any(f["code"] == "lr_probe_suggests" for f in detail["findings"])  # pick acts; it does not warn
    from tasks.html_report import render_report

    assert "attempt 1 trained at it" in render_report(detail)


def test_lr_probe_warn_adds_a_finding_that_the_halt_policy_stops_on(towerflow_env):
    from flows.experiment import run_experiment

    config = tiny_config(training__learning_rate=5.0, validation={"lr_probe": "warn", "lr_probe_steps": 100,
                                                                  "on_warning": "halt"})
    state = run_experiment(config, return_state=True)
    assert state.is_failed() and "validation.on_warning: halt" in state.message
    detail = only_experiment()
    finding = next(f for f in detail["findings"] if f["code"] == "lr_probe_suggests")
    assert finding["field"] == "training.learning_rate" and f"{detail['lr_probe']['suggested_rate']:g}" in finding["suggestion"]
    assert detail["attempts"] == [] and detail["experiment"]["status"] == "halted"
    warned = [payload for name, payload in towerflow_env if name == events.VALIDATION_WARNED]
    assert warned and warned[-1]["suggested_lr"] == pytest.approx(detail["lr_probe"]["suggested_rate"])


def test_the_reconciler_stops_a_cancelled_experiment_and_continues_a_crashed_one(towerflow_env, monkeypatch):
    """Every run died before saying how it ended: the one a person cancelled must stay stopped, and so must
    a sweep's point whose sweep a person cancelled; the one that crashed is continued."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed

    from flows import reconcile
    from trainer.spec import load_spec

    @flow
    def placeholder():
        pass

    @task
    def point():
        pass

    started = []
    monkeypatch.setattr("prefect.deployments.run_deployment",
                        lambda name, **kwargs: started.append(kwargs["parameters"]) or FakeRun())
    experiments, cancelled_runs = {}, {}
    with get_client(sync_client=True) as client:
        sweep_run = client.create_flow_run(placeholder)
        client.set_flow_run_state(sweep_run.id, Cancelled(), force=True)
        parent_task = client.create_task_run(point, sweep_run.id, dynamic_key="0")
        for name, ended, parent in (("cancelled", Cancelled(), None), ("crashed", Crashed(), None),
                                    ("in-cancelled-sweep", Crashed(), parent_task.id)):
            spec = load_spec(tiny_config(name=name))
            experiment, _ = store.get_or_create_experiment(spec.content_hash(), name, spec.model_dump_json())
            run = client.create_flow_run(placeholder, parent_task_run_id=parent)
            store.claim_experiment(experiment.id, str(run.id), "elsewhere:1", 600)  # a live lease, on another host
            client.set_flow_run_state(run.id, ended, force=True)
            experiments[name] = experiment.id
            cancelled_runs[name] = run.id if parent is None else sweep_run.id

    reconcile.reconcile_experiments()
    for name in ("cancelled", "in-cancelled-sweep"):
        stopped = store.experiment_detail(experiments[name])["experiment"]
        assert stopped["status"] == "stopped", (name, stopped["status"], stopped["message"])
        assert stopped["message"].startswith(f"cancelled in Prefect (flow run {cancelled_runs[name]}) at "), name
    assert [load_spec(p["config"]).name for p in started] == ["crashed"]  # the cancelled ones are not started again


class FakeRun:
    id = "00000000-0000-0000-0000-000000000000"
    name = "fake-run"
