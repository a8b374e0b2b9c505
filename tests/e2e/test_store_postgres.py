"""tasks.store as deployed: separate processes (orchestrator, workers, re-delivered events) writing at
once, and what the database itself holds for a non-finite loss. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from sqlalchemy import text

from tasks import store

WORKERS = 4
# Each worker imports the store, says "ready", waits for "go" on stdin (so all start together), then
# delivers the same submitted config and records its own attempt with four epochs.
WORKER = """
import json, sys
from tasks import store
print("ready", flush=True)
sys.stdin.readline()
number = int(sys.argv[1])
experiment, created = store.get_or_create_experiment("c0ffee0000000042", "retail", "{}")
epochs = [dict(epoch=e, loss=1.0 / e, buyer_grad_norm_mean=0.1, buyer_grad_norm_max=0.2,
               product_grad_norm_mean=0.1, product_grad_norm_max=0.2, nonfinite_steps=0,
               seconds=0.01, learning_rate=0.1 ** number) for e in range(1, 5)]
store.record_attempt(experiment.id, number, 0.1 ** number, "succeeded", "", epochs)
print(json.dumps({"id": experiment.id, "created": created}), flush=True)
"""


def test_processes_delivering_one_config_make_one_experiment(database_url):
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(number)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for number in range(1, WORKERS + 1)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    assert [worker.returncode for worker in workers] == [0] * WORKERS, [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert len({result["id"] for result in results}) == 1
    assert sum(result["created"] for result in results) == 1

    (experiment,) = store.list_experiments()
    attempts = store.experiment_detail(experiment.id)["attempts"]
    assert [(a["number"], a["learning_rate"], len(a["epochs"])) for a in attempts] == [
        (number, 0.1**number, 4) for number in range(1, WORKERS + 1)
    ]


def test_database_holds_a_diverged_loss_as_nan(database_url):
    experiment, _ = store.get_or_create_experiment("d1e0000000000001", "diverge", "{}")
    epoch = dict(
        epoch=1, loss=math.nan, buyer_grad_norm_mean=math.inf, buyer_grad_norm_max=math.inf,
        product_grad_norm_mean=0.1, product_grad_norm_max=0.2, nonfinite_steps=3, seconds=0.1,
        learning_rate=1.0, val_loss=None,
    )
    store.record_attempt(experiment.id, 1, 1.0, "diverged", "non-finite loss at epoch 1", [epoch])
    engine = store.get_engine()
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT loss::text, pg_typeof(loss)::text, buyer_grad_norm_max::text, val_loss IS NULL FROM epoch_metric"
        )
        expected = ("NaN", "double precision", "Infinity", True)
    else:  # SQLite would turn a NaN parameter into NULL; the store writes the text 'NaN' instead
        query = "SELECT loss, typeof(loss), typeof(buyer_grad_norm_max), val_loss IS NULL FROM epoch_metric"
        expected = ("NaN", "text", "real", 1)
    with engine.connect() as connection:
        assert tuple(connection.execute(text(query)).one()) == expected
