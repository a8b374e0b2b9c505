"""reconcile-experiments: find experiments nobody is working on any more and start a run that continues them.

An experiment is abandoned when its owner is gone (flows/ownership.py: lease expired, process gone,
flow run ended in Prefect) or when it was submitted long ago and no run ever claimed it. For each,
the reconciler stores its config where a deployment can read it and starts a `run-experiment` flow
run; that run takes the experiment over and continues from the attempts on disk. It runs when
`towerflow serve` starts, on a schedule, and whenever a `run-experiment` flow run is Crashed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger

from flows.ownership import cancelled_message, enclosing_flow_run_ids, first_cancelled, gone_reason
from flows.submit import store_config
from tasks import store
from trainer.spec import spec_from_dict

ORCHESTRATOR_DEPLOYMENT = "run-experiment/run-experiment"
RECONCILE_DEPLOYMENT = "reconcile-experiments/reconcile-experiments"
PENDING_GRACE_S = 600.0


def abandoned_reason(experiment: store.Experiment, pending_grace_s: float = PENDING_GRACE_S) -> str | None:
    """Why nobody is working on `experiment` any more, or None while someone is (or may soon be)."""
    if experiment.flow_run_id is not None:
        return gone_reason(experiment)
    waited = datetime.now(timezone.utc) - experiment.created_at
    if waited > timedelta(seconds=pending_grace_s):
        return f"submitted {waited.total_seconds():.0f}s ago and never started"
    return None


@flow(name="reconcile-experiments", flow_run_name="reconcile experiments")
def reconcile_experiments(pending_grace_s: float = PENDING_GRACE_S) -> list[dict]:
    """Start a continuing `run-experiment` flow run for every abandoned experiment; returns what was started."""
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    started = []
    unfinished = store.unfinished_experiments()
    for experiment in unfinished:
        # a person stopped it (its flow run, or the sweep it ran in): never started again behind their back
        cancelled = first_cancelled(enclosing_flow_run_ids(experiment.flow_run_id))
        if cancelled:
            store.set_experiment_status(experiment.id, "stopped", message=cancelled_message(cancelled))
            logger.info("experiment %s %r: flow run %s was cancelled; stopped, not continued", experiment.id,
                        experiment.name, cancelled)
            continue
        reason = abandoned_reason(experiment, pending_grace_s)
        if reason is None:
            continue
        spec = spec_from_dict(json.loads(experiment.spec_json), source=f"experiment {experiment.id}")
        run = run_deployment(
            ORCHESTRATOR_DEPLOYMENT,
            parameters={"config": store_config(spec)},
            timeout=0,
            as_subflow=False,
            # one recovery per dead owner, however often the reconciler runs before it starts
            idempotency_key=f"recover-{experiment.config_hash}-{experiment.flow_run_id or 'unclaimed'}",
        )
        logger.warning("experiment %s %r (%s): %s; continuing it in flow run %s", experiment.id, experiment.name,
                       experiment.status, reason, run.name)
        started.append({"experiment_id": experiment.id, "reason": reason, "flow_run_id": str(run.id)})
    if not started:
        logger.info("%d unfinished experiments, none abandoned", len(unfinished))
    return started
