"""Sweeps on Prefect: every grid point is an ordinary experiment, run here or submitted to the deployments.

`run_sweep` (the `run-sweep` flow) runs one `run-experiment` subflow per point, one after another, so each
point keeps its own claim, backoff lineage and stored result: a rerun returns a finished point's result
without training it again and continues an unfinished one. It logs the sweep's progress after every point
and ends with the leaderboard artifact. Cancelled in Prefect, it stops the point in progress (which watches
the sweep's run as well as its own) and starts no other. `submit_sweep` submits every point as `towerflow
submit` does. Both record the `sweep` row that groups the points.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Cancelled, State

from flows.experiment import run_experiment
from flows.ownership import cancelled_in_prefect, cancelled_message
from flows.submit import Submission, submit_valid
from tasks import store, wording
from tasks.report import publish_leaderboard
from trainer.errors import Resumable
from trainer.spec import SpecError
from trainer.sweep import Sweep, SweepError, load_sweep
from trainer.validation import ValidationReport

DEFAULT_K = 10


def record(sweep: Sweep) -> int:
    """Store (or find) the sweep row of `sweep`; its id."""
    points = [{"name": p.name, "config_hash": p.config_hash, "values": p.values} for p in sweep.points]
    row = store.record_sweep(sweep.sweep_hash, sweep.name, sweep.grid, points)
    assert row.id is not None
    return row.id


def _run_name() -> str:
    parameters = current_flow_run.parameters
    try:
        sweep = load_sweep(parameters["config"], parameters.get("overrides"), parameters.get("grid"),
                           parameters.get("max_points"))
    except (SpecError, SweepError, KeyError):
        return "invalid-sweep"
    return f"sweep {sweep.name} ({sweep.sweep_hash[:8]})"


@flow(name="run-sweep", flow_run_name=_run_name)
def run_sweep(config: str | dict, overrides: list[str] | None = None, grid: list[str] | None = None,
              max_points: int | None = None, k: int = DEFAULT_K) -> dict | State:
    """Run every point of the sweep of `config` (see `trainer.sweep.load_sweep`) in turn; publish the
    leaderboard by recall@k. Returns the sweep id and the leaderboard rows, or a Cancelled state once a
    person cancelled the sweep's flow run."""
    logger = get_run_logger()
    run_id = current_flow_run.id
    sweep = load_sweep(config, overrides, grid, max_points)
    sweep_id = record(sweep)
    total = len(sweep.points)
    logger.info("sweep %s (%s): %d points; %s", sweep.name, sweep.sweep_hash, total,
                wording.progress_text(store.sweep_view(sweep_id).progress()))
    for number, point in enumerate(sweep.points, start=1):
        if cancelled_in_prefect(run_id):
            break
        logger.info("sweep %s: point %d/%d %s", sweep.name, number, total, point.name)
        state = run_experiment(point.config, point.overrides, return_state=True)
        stopped = state.result(raise_on_failure=False) if state.is_failed() else None
        if isinstance(stopped, Resumable):  # a full disk, the API gone: every later point would stop the same way
            raise stopped
        ended = "stopped" if state.is_cancelled() else "failed"
        outcome = "finished" if state.is_completed() else f"{ended}: {state.message}"
        logger.info("sweep %s: %s %s; %s", sweep.name, point.name, outcome,
                    wording.progress_text(store.sweep_view(sweep_id).progress()))
    view = store.sweep_view(sweep_id)
    publish_leaderboard(view, k)
    if cancelled_in_prefect(run_id):
        message = cancelled_message(run_id, f"{wording.progress_text(view.progress())}; the same `towerflow sweep` "
                                            "runs the points not started")
        logger.warning("sweep %s stopped: %s", sweep.name, message)
        return Cancelled(message=message)
    return {"sweep_id": sweep_id, "leaderboard": [row.model_dump() for row in view.leaderboard(k)]}


def submit_sweep(sweep: Sweep, reports: list[ValidationReport]) -> tuple[int, list[Submission]]:
    """Record the sweep and submit each point's validated config (`reports`, in point order) to the
    deployments. A point submitted before is announced again; its run finds it claimed or finished (by
    content hash), so nothing trains twice."""
    sweep_id = record(sweep)
    return sweep_id, [submit_valid(report) for report in reports]
