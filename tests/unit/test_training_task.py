"""The train-attempt task retries infrastructure faults only: bad data fails the same way every time."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from tasks.training import is_infrastructure_fault, verdict_state
from tests.e2e.tiny_configs import tiny_config
from trainer.data import DataError
from trainer.results import AttemptResult
from trainer.spec import spec_from_dict


def test_bad_data_is_not_retried_but_a_crashed_worker_is():
    assert not is_infrastructure_fault(None, None, Failed(data=DataError("x.csv: file not found")))
    assert not is_infrastructure_fault(None, None, Failed(data=ValueError("training.optimizer: unknown")))
    assert is_infrastructure_fault(None, None, Failed(data=RuntimeError("worker lost")))
    assert is_infrastructure_fault(None, None, Failed(data=OSError("gs:// unreachable")))


def test_the_prefect_api_gone_is_named_and_not_retried():
    import httpx

    from tasks.outage import PrefectAPILost, lost_api

    refused = httpx.ConnectError("[Errno 111] Connection refused")
    try:
        try:
            raise refused
        except httpx.ConnectError as error:  # as Prefect's concurrency slots raise it, from the client's error
            raise RuntimeError("Unable to acquire concurrency slots on ['towerflow-training']") from error
    except RuntimeError as wrapped:
        slots = wrapped
    lost = lost_api(slots)
    assert isinstance(lost, PrefectAPILost) and "stopped answering ([Errno 111] Connection refused)" in str(lost)
    assert str(lost).endswith("run the same command again once it answers: it continues from the last checkpoint")
    assert lost_api(RuntimeError("worker lost")) is None and lost_api(None) is None
    assert not is_infrastructure_fault(None, None, Failed(data=slots))
    assert not is_infrastructure_fault(None, None, Failed(data=refused))


@pytest.mark.parametrize("status", ["collapsed", "diverged"])
def test_a_collapsed_or_diverged_attempt_ends_in_a_named_failed_state_that_is_never_retried(status):
    result = AttemptResult(status=status, reason="loss at log(256)", learning_rate=0.5, epochs=[], epochs_run=3,
                           model_uri=None, workdir="/w")
    state = verdict_state(result)
    assert state.is_failed() and state.name == status.capitalize() and state.message == "loss at log(256)"
    assert state.result(raise_on_failure=False) == result  # the flow still reads the attempt's result
    assert not is_infrastructure_fault(None, None, state)
    succeeded = result.model_copy(update={"status": "succeeded"})
    assert verdict_state(succeeded) is succeeded


def test_the_approval_form_preselects_nothing_and_speaks_in_words():
    from pydantic import ValidationError

    from flows.experiment import STOP, SUGGESTED, ApprovalDecision

    schema = ApprovalDecision.model_json_schema()
    assert schema["required"] == ["decision"] and "default" not in schema["properties"]["decision"]
    assert schema["properties"]["decision"]["title"] == "Your decision"
    assert SUGGESTED in schema["properties"]["decision"]["enum"] and STOP in schema["properties"]["decision"]["enum"]
    with pytest.raises(ValidationError):
        ApprovalDecision(decision="proceed")  # the old raw enum name is no answer


def test_a_multi_worker_attempt_is_dispatched_with_its_pools_job_variables(monkeypatch, tmp_path):
    from tasks import training

    spec = spec_from_dict(tiny_config(training__workers=3))
    monkeypatch.setattr(training, "work_pool_type", lambda deployment: {"train-attempt/gpu": "vertex-ai"}[deployment])
    variables = training.launch_variables("train-attempt/gpu", spec, 0.05, str(tmp_path))
    assert variables["worker_replicas"] == 2
    assert variables["worker_args"][-2:] == ["--out", str(tmp_path)] and (tmp_path / "spec.json").exists()

    monkeypatch.setattr(training, "work_pool_type", lambda deployment: pytest.fail("one worker asks no pool"))
    one_worker = spec_from_dict(tiny_config(training__workers=1))
    assert training.launch_variables("train-attempt/gpu", one_worker, 0.05, str(tmp_path)) == {}
