"""deployments.multi_worker: the per-attempt job variables, and where workers > 1 cannot run."""

import json

import pytest

from deployments.multi_worker import job_variables, pool_findings
from trainer.spec import spec_from_dict
from trainer.storage import read_bytes

RAW = {
    "name": "mw",
    "data": {"transactions": "memory://mw/t.csv"},
    "buyer_features": [{"column": "buyer", "type": "id"}],
    "product_features": [{"column": "item", "type": "id"}],
}


def spec(workers: int):
    return spec_from_dict({**RAW, "training": {"workers": workers}})


def test_workers_get_the_chiefs_spec_learning_rate_and_workdir(tmp_path):
    one = spec(3)
    vertex = job_variables("vertex-ai", one, 0.1 / 3, str(tmp_path))
    assert vertex["worker_replicas"] == 2
    args = vertex["worker_args"]
    assert args[args.index("--out") + 1] == str(tmp_path)
    assert float(args[args.index("--learning-rate") + 1]) == 0.1 / 3  # exactly: the workdir's claim compares it
    stored = spec_from_dict(json.loads(read_bytes(args[args.index("--config") + 1])))
    assert stored.content_hash() == one.content_hash()
    kubernetes = job_variables("kubernetes", one, 0.1 / 3, str(tmp_path))
    assert kubernetes == {"workers": 3, "worker_args": " ".join(args)}


def test_one_worker_needs_no_variables_and_a_process_pool_cannot_run_several(tmp_path):
    assert job_variables("process", spec(1), 0.1, str(tmp_path)) == {}
    with pytest.raises(ValueError, match="one process per flow run"):
        job_variables("process", spec(2), 0.1, str(tmp_path))


@pytest.mark.parametrize(("workers", "pool", "fires"), [
    (2, None, True), (2, "process", True), (2, "kubernetes", False), (2, "vertex-ai", False), (1, None, False),
])
def test_workers_are_checked_against_where_attempts_run(workers, pool, fires):
    findings = pool_findings(spec(workers), pool)
    assert [(f.code, f.field, f.severity) for f in findings] == (
        [("workers_without_engine", "training.workers", "error")] if fires else [])
