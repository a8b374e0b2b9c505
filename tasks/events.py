"""towerflow's Prefect events: one resource per experiment, keyed by the config's content hash.

Users build Prefect automations on these (e.g. notify on `towerflow.attempt.collapsed`).
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

CONFIG_SUBMITTED = "towerflow.config.submitted"
VALIDATION_WARNED = "towerflow.validation.warned"
VALIDATION_FAILED = "towerflow.validation.failed"
ATTEMPT_COLLAPSED = "towerflow.attempt.collapsed"
ATTEMPT_DIVERGED = "towerflow.attempt.diverged"
ATTEMPT_RETRYING = "towerflow.attempt.retrying"
EVALUATION_BELOW_BASELINE = "towerflow.evaluation.below_baseline"
EXPERIMENT_COMPLETED = "towerflow.experiment.completed"
EXPERIMENT_FAILED = "towerflow.experiment.failed"
EXPERIMENT_RECOVERED = "towerflow.experiment.recovered"


def experiment_resource(config_hash: str, name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"towerflow.experiment.{config_hash}", "prefect.resource.name": name}


def emit(event: str, config_hash: str, name: str, /, **payload: Any):
    """Emit a towerflow event about one experiment; returns the Event (None when events are off)."""
    return emit_event(event=event, resource=experiment_resource(config_hash, name), payload=payload)
