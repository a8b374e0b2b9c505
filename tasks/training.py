"""The training-attempt task: in this process, or dispatched to the trainer deployment on a GPU pool."""

from __future__ import annotations

import os

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.report import ProgressArtifact
from trainer.spec import ExperimentSpec

TRAINER_DEPLOYMENT_ENV = "TOWERFLOW_TRAINER_DEPLOYMENT"


def describe_epoch(number: int, total_epochs: int, metrics) -> str:
    return (
        f"attempt {number} epoch {metrics.epoch}/{total_epochs}: loss/example {metrics.loss:.4f}, "
        f"grad norm buyer {metrics.buyer_grad_norm_mean:.3g} product {metrics.product_grad_norm_mean:.3g}, "
        f"{metrics.seconds:.1f}s"
    )


def train_here(spec: ExperimentSpec, number: int, learning_rate: float, workdir: str):
    """Run one attempt in this process with live progress (logs and a progress artifact)."""
    from trainer.attempt import run_attempt

    logger = get_run_logger()
    progress = ProgressArtifact(spec.name, spec.training.epochs)

    def on_epoch(metrics) -> None:
        line = describe_epoch(number, spec.training.epochs, metrics)
        logger.info(line)
        progress.advance(line)

    logger.info("attempt %d @ lr=%g in %s", number, learning_rate, workdir)
    return run_attempt(spec, learning_rate, workdir, on_epoch=on_epoch)


def train_on_deployment(deployment: str, spec: ExperimentSpec, number: int, learning_rate: float, workdir: str):
    """Run one attempt as a flow run of the trainer deployment and wait for its persisted result."""
    from prefect.deployments import run_deployment

    from trainer.attempt import AttemptResult

    run = run_deployment(
        deployment,
        parameters={
            "spec": spec.model_dump(mode="json"),
            "number": number,
            "learning_rate": learning_rate,
            "workdir": workdir,
        },
        poll_interval=1,
        as_subflow=True,
    )
    if not run.state or not run.state.is_completed():
        raise RuntimeError(f"trainer flow run {run.name} ended {run.state.name if run.state else 'without a state'}")
    return AttemptResult.model_validate(run.state.result())


def is_infrastructure_fault(task, task_run, state) -> bool:
    """Retry condition: anything but a ValueError (bad data or spec: the same on every try)."""
    try:
        state.result()
    except ValueError:
        return False
    except Exception:
        return True
    return False


@task(
    name="train-attempt",
    task_run_name="{spec.name} / attempt {number} @ lr={learning_rate:g}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=is_infrastructure_fault,
    cache_policy=NO_CACHE,
)
def train_attempt(spec: ExperimentSpec, number: int, learning_rate: float, workdir: str):
    """One training attempt. An infrastructure fault (a killed worker, a lost GPU) is retried at the same
    learning rate and resumes from the attempt's last checkpoint; bad data (a ValueError) is not retried;
    collapse and divergence are results, not exceptions."""
    deployment = os.environ.get(TRAINER_DEPLOYMENT_ENV)
    if deployment:
        return train_on_deployment(deployment, spec, number, learning_rate, workdir)
    return train_here(spec, number, learning_rate, workdir)


@task(name="evaluate", task_run_name="{spec.name} / evaluate attempt {number}", cache_policy=NO_CACHE)
def evaluate(spec: ExperimentSpec, number: int, model_uri: str):
    """Recall@k of the exported model and of popularity, over unique products."""
    from trainer.evaluation import evaluate_model

    return evaluate_model(spec, model_uri)
