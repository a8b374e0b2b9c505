"""Persistence tasks: each writes one attempt or one evaluation in a single transaction."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import store


@task(name="persist-attempt", task_run_name="persist attempt {number}", cache_policy=NO_CACHE)
def persist_attempt(experiment_id: int, number: int, result, flow_run_id: str | None) -> int:
    """Store the attempt's outcome and epochs (replacing its `running` row; its start time is kept)."""
    return store.record_attempt(
        experiment_id,
        number=number,
        learning_rate=result.learning_rate,
        status=result.status,
        reason=result.reason,
        epochs=[epoch.model_dump() for epoch in result.epochs],
        model_uri=result.model_uri,
        flow_run_id=flow_run_id,
    )


@task(name="persist-recall", task_run_name="persist recall of attempt {number}", cache_policy=NO_CACHE)
def persist_recall(experiment_id: int, attempt_id: int, evaluation, number: int) -> None:
    """Store recall@k of attempt `number` (row `attempt_id`) beside popularity."""
    store.record_recall(
        experiment_id,
        attempt_id,
        values=evaluation.model,
        baseline=evaluation.popularity,
        n_candidates=evaluation.n_candidates,
        n_candidate_rows_before_dedup=evaluation.n_candidate_rows_before_dedup,
        n_queries=evaluation.n_queries,
        exclude_seen=evaluation.exclude_seen,
        ease=evaluation.ease,
    )
