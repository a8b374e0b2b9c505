"""The train-attempt task retries infrastructure faults only: bad data fails the same way every time."""

from __future__ import annotations

from prefect.states import Failed

from tasks.training import is_infrastructure_fault
from trainer.data import DataError


def test_bad_data_is_not_retried_but_a_crashed_worker_is():
    assert not is_infrastructure_fault(None, None, Failed(data=DataError("x.csv: file not found")))
    assert not is_infrastructure_fault(None, None, Failed(data=ValueError("training.optimizer: unknown")))
    assert is_infrastructure_fault(None, None, Failed(data=RuntimeError("worker lost")))
    assert is_infrastructure_fault(None, None, Failed(data=OSError("gs:// unreachable")))
