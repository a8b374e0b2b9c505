"""The training-attempt task: in this process, or dispatched to the trainer deployment on a GPU pool."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.outage import lost_api
from tasks.report import ProgressArtifact
from tasks.settings import scan_dir
from trainer.errors import ExpectedError
from trainer.spec import ExperimentSpec

TRAINER_DEPLOYMENT_ENV = "TOWERFLOW_TRAINER_DEPLOYMENT"
TRAINING_LIMIT = "towerflow-training"  # the global concurrency limit every training attempt takes a slot of
VERDICT_STATES = ("Collapsed", "Diverged")  # attempt task runs that ended with a verdict, not an error


def describe_epoch(number: int, total_epochs: int, metrics) -> str:
    return (
        f"attempt {number} epoch {metrics.epoch}/{total_epochs}: loss/example {metrics.loss:.4f}, "
        f"grad norm buyer {metrics.buyer_grad_norm_mean:.3g} product {metrics.product_grad_norm_mean:.3g}, "
        f"{metrics.seconds:.1f}s"
    )


@contextlib.contextmanager
def training_slot(number: int) -> Iterator[None]:
    """Hold a slot of the `towerflow-training` concurrency limit while training (on a Prefect server).

    The limit (created by `towerflow serve`, or `prefect gcl create towerflow-training --limit N`)
    bounds how many attempts train at once; the others wait here, saying so in their logs. Its
    slots are leases, so a killed trainer's slot comes back by itself. An ephemeral API (one
    `towerflow run`) trains one attempt at a time anyway and takes no slot.
    """
    from prefect.concurrency.sync import concurrency
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        yield
        return
    logger = get_run_logger()
    logger.info("attempt %d: waiting for a training slot (concurrency limit %r)", number, TRAINING_LIMIT)
    waited = time.monotonic()
    with concurrency(TRAINING_LIMIT, occupy=1, lease_duration=60, raise_on_lease_renewal_failure=False):
        logger.info("attempt %d: training slot acquired after %.0fs", number, time.monotonic() - waited)
        try:
            yield
        finally:
            logger.info("attempt %d: releasing the training slot", number)


def train_here(spec: ExperimentSpec, number: int, learning_rate: float, workdir: str,
               on_epoch_done: Callable[[], None] | None = None, progress_id: str | None = None, start=None):
    """Run one attempt in this process with live progress (logs, and the run's progress artifact
    `progress_id`, a new one if None).

    `on_epoch_done()` runs after each epoch's checkpoint (the orchestrator renews its lease there);
    `start` (a StartPoint) is the earlier attempt's checkpoint a rollback retry starts from.
    """
    from trainer.attempt import run_attempt

    logger = get_run_logger()
    with training_slot(number):
        progress = ProgressArtifact(progress_id or ProgressArtifact.create(spec), spec.training.epochs)

        def on_epoch(metrics) -> None:
            line = describe_epoch(number, spec.training.epochs, metrics)
            logger.info(line)
            progress.advance(line)
            if on_epoch_done is not None:
                on_epoch_done()

        logger.info("attempt %d @ lr=%g in %s", number, learning_rate, workdir)
        return run_attempt(spec, learning_rate, workdir, on_epoch=on_epoch, say=logger.info, name=f"attempt {number}",
                           start=start, scan=scan_dir(spec))


def attempt_tag(spec: ExperimentSpec, number: int) -> str:
    """The tag of every trainer flow run of one attempt, so a recovered orchestrator can find them."""
    return f"towerflow-attempt:{spec.content_hash()[:16]}:{number}"


def _live_trainer_run(tag: str):
    """A trainer flow run of this attempt that has not ended (its orchestrator died; it did not)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    unfinished = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]
    query = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]),
                          state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=query, limit=1)
    return runs[0] if runs else None


def _wait_until_final(flow_run_id, poll_s: float = 2.0):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(poll_s)


def work_pool_type(deployment: str) -> str:
    """The type of the work pool that `deployment` ("flow/name") runs on (process, kubernetes, ...)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        pool = client.read_deployment_by_name(deployment).work_pool_name
        return client.read_work_pool(pool).type


def launch_variables(deployment: str, spec: ExperimentSpec, learning_rate: float, workdir: str) -> dict:
    """The job variables that start `spec.training.workers` machines for one attempt (none for one)."""
    if spec.training.workers == 1:
        return {}
    from deployments.multi_worker import job_variables

    return job_variables(work_pool_type(deployment), spec, learning_rate, workdir)


def train_on_deployment(deployment: str, spec: ExperimentSpec, number: int, learning_rate: float, workdir: str,
                        progress_id: str | None = None, start=None):
    """Run one attempt as a flow run of the trainer deployment and wait for its persisted result.

    A trainer run of the same attempt that is still going (its orchestrator was killed, it was not)
    is waited for instead of being doubled; a new one resumes from the attempt's checkpoints.
    """
    from prefect.deployments import run_deployment

    from trainer.results import AttemptResult

    tag = attempt_tag(spec, number)
    run = _live_trainer_run(tag)
    if run is not None:
        get_run_logger().info("attempt %d is still training in flow run %s: waiting for it", number, run.name)
        run = _wait_until_final(run.id)
    if run is None or not run.state or not run.state.is_completed():
        run = run_deployment(
            deployment,
            parameters={
                "spec": spec.model_dump(mode="json"),
                "number": number,
                "learning_rate": learning_rate,
                "workdir": workdir,
                "progress_id": progress_id,
                "start": start.model_dump() if start else None,
            },
            tags=[tag],
            job_variables=launch_variables(deployment, spec, learning_rate, workdir),
            poll_interval=1,
            as_subflow=True,
        )
    if not run.state or not run.state.is_completed():
        raise RuntimeError(f"trainer flow run {run.name} ended {run.state.name if run.state else 'without a state'}")
    return AttemptResult.model_validate(run.state.result())


def is_infrastructure_fault(task, task_run, state) -> bool:
    """Retry condition: anything but a ValueError (bad data or spec: the same on every try), an expected
    error (a lost lease, a database down for the whole retry budget), the Prefect API gone, or a verdict
    (collapse)."""
    if state.name in VERDICT_STATES:
        return False
    try:
        state.result()
    except (ValueError, ExpectedError):
        return False
    except Exception as exc:
        return lost_api(exc) is None  # with the API gone, a retry could not even take a training slot
    return False


@task(
    name="train-attempt",
    task_run_name="{spec.name} / attempt {number} @ lr={learning_rate:g}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=is_infrastructure_fault,
    cache_policy=NO_CACHE,
)
def train_attempt(spec: ExperimentSpec, number: int, learning_rate: float, workdir: str,
                  on_epoch_done: Callable[[], None] | None = None, progress_id: str | None = None, start=None):
    """One training attempt. An infrastructure fault (a killed worker, a lost GPU) is retried at the same
    learning rate and resumes from the attempt's last checkpoint; bad data (a ValueError) is not retried;
    collapse and divergence are results, not exceptions: the task run ends in a Failed state named
    Collapsed or Diverged (red in the UI, never retried) that carries the AttemptResult."""
    deployment = os.environ.get(TRAINER_DEPLOYMENT_ENV)
    if deployment:
        result = train_on_deployment(deployment, spec, number, learning_rate, workdir, progress_id, start)
    else:
        result = train_here(spec, number, learning_rate, workdir, on_epoch_done, progress_id, start)
    return verdict_state(result)


def verdict_state(result):
    """The AttemptResult itself (Completed) when it succeeded, else a Failed state named by its verdict."""
    from prefect.states import Failed

    from tasks.wording import status_word

    if result.status in ("collapsed", "diverged"):
        return Failed(name=status_word(result.status), message=result.reason, data=result)
    return result


@task(name="evaluate", task_run_name="{spec.name} / evaluate attempt {number}", cache_policy=NO_CACHE)
def evaluate(spec: ExperimentSpec, number: int, model_uri: str):
    """Recall@k of the exported model and of popularity, over unique products."""
    from trainer.evaluation import evaluate_model

    return evaluate_model(spec, model_uri, scan=scan_dir(spec))
