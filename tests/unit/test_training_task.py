"""The train-attempt task retries infrastructure faults only: bad data fails the same way every time."""

from __future__ import annotations

import pytest
from prefect.states import Failed

from tasks.training import is_infrastructure_fault, verdict_state
from trainer.data import DataError
from trainer.results import AttemptResult


def test_bad_data_is_not_retried_but_a_crashed_worker_is():
    assert not is_infrastructure_fault(None, None, Failed(data=DataError("x.csv: file not found")))
    assert not is_infrastructure_fault(None, None, Failed(data=ValueError("training.optimizer: unknown")))
    assert is_infrastructure_fault(None, None, Failed(data=RuntimeError("worker lost")))
    assert is_infrastructure_fault(None, None, Failed(data=OSError("gs:// unreachable")))


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
