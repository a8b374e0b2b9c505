"""The GPU unit: one training attempt as its own flow, deployed on the `gpu` work pool.

`run_experiment` dispatches here with `run_deployment` when TOWERFLOW_TRAINER_DEPLOYMENT is set.
The attempt's result crosses processes (and machines) as a persisted Prefect result, so its storage
must be readable by the orchestrator too: TOWERFLOW_RESULTS names it, a local folder on one machine
or a gs:// prefix across machines (default $TOWERFLOW_HOME/results; a URL needs `save_results_block`
once per Prefect API, which `towerflow serve` does). The attempt itself resumes from
the checkpoints in `workdir`, so a retried dispatch continues where a killed worker stopped.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow

from tasks.settings import towerflow_home
from tasks.training import train_here
from trainer.spec import spec_from_dict

RESULTS_ENV = "TOWERFLOW_RESULTS"
RESULTS_BLOCK = "towerflow-results"


def results_location() -> str:
    """TOWERFLOW_RESULTS (a local folder, or a URL such as gs://bucket/results), else $TOWERFLOW_HOME/results."""
    return os.environ.get(RESULTS_ENV) or str(towerflow_home() / "results")


def result_storage(location: str | None = None) -> Path | str:
    """The trainer's result storage: a local folder as a Path, a URL as the saved block that points at it.

    Prefect records a local result by its absolute path, so any process on the machine reads it back;
    a URL needs a storage block saved on the API (`save_results_block`), which both sides load by id.
    """
    location = location or results_location()
    if "://" in location:
        return f"remote-file-system/{RESULTS_BLOCK}"
    return Path(location).expanduser().resolve()


def save_results_block(location: str | None = None) -> str | None:
    """Save the RemoteFileSystem block for a URL location (once per API); returns its slug, None if local."""
    location = location or results_location()
    if "://" not in location:
        return None
    from prefect.filesystems import RemoteFileSystem

    RemoteFileSystem(basepath=location.rstrip("/")).save(RESULTS_BLOCK, overwrite=True)
    return f"remote-file-system/{RESULTS_BLOCK}"


@flow(
    name="train-attempt",
    flow_run_name="{spec[name]} / attempt {number} @ lr={learning_rate:g}",
    persist_result=True,
    result_storage=result_storage(),
)
def train_attempt_flow(spec: dict, number: int, learning_rate: float, workdir: str,
                       progress_id: str | None = None, start: dict | None = None) -> dict:
    """Train attempt `number` of `spec` at `learning_rate` in `workdir`; returns the AttemptResult as JSON.
    `progress_id` is the orchestrator's progress artifact, which the epochs advance; `start` the
    earlier attempt's checkpoint a rollback retry starts from."""
    from trainer.results import StartPoint

    result = train_here(spec_from_dict(spec, source="train-attempt parameter 'spec'"), number, learning_rate, workdir,
                        progress_id=progress_id, start=StartPoint.model_validate(start) if start else None)
    return result.model_dump(mode="json")
