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
VALIDATION_AWAITING_APPROVAL = "towerflow.validation.awaiting_approval"
VALIDATION_APPROVED = "towerflow.validation.approved"


def experiment_resource(config_hash: str, name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"towerflow.experiment.{config_hash}", "prefect.resource.name": name}


def attempt_resource(config_hash: str, name: str, attempt: int, lr: float | None) -> dict[str, str]:
    """The attempt an event is about, as a related resource the Event Feed shows by name."""
    at = f" @ lr={lr:g}" if lr is not None else ""
    return {"prefect.resource.id": f"towerflow.attempt.{config_hash}.{attempt}", "prefect.resource.role": "attempt",
            "prefect.resource.name": f"{name} attempt {attempt}{at}"}


def emit(event: str, config_hash: str, name: str, /, **payload: Any):
    """Emit a towerflow event about one experiment; returns the Event (None when events are off).

    An `attempt` in the payload also names that attempt (and its `lr`) as a related resource.
    """
    related = []
    if isinstance(payload.get("attempt"), int):
        related.append(attempt_resource(config_hash, name, payload["attempt"], payload.get("lr")))
    return emit_event(event=event, resource=experiment_resource(config_hash, name), related=related, payload=payload)
