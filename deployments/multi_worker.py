"""Job variables that launch one attempt on several machines, and the check of a spec against a pool.

The trainer deployment's flow run is the chief: Vertex AI runs it in worker pool 0, the Kubernetes
template in pod 0 of an Indexed Job. The other workers run `python -m trainer` on the same spec,
learning rate and workdir (MultiWorkerMirroredStrategy, TF_CONFIG set by Vertex AI or per pod by the
template). The dispatcher passes `job_variables(...)` with the run; the spec goes to the workdir as
spec.json first, so the workers read exactly the chief's spec.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from trainer.rules import Finding, error
from trainer.spec import ExperimentSpec
from trainer.storage import join, makedirs, write_bytes

SPEC_FILE = "spec.json"
MULTI_WORKER_POOL_TYPES = ("kubernetes", "vertex-ai")  # with the *-multi-worker templates in deployments.pools


def worker_arguments(spec: ExperimentSpec, learning_rate: float, workdir: str) -> list[str]:
    """Write `spec` to `workdir`/spec.json; the `python -m trainer` arguments of the non-chief workers."""
    makedirs(workdir)
    config = join(workdir, SPEC_FILE)
    write_bytes(config, json.dumps(spec.model_dump(mode="json"), indent=2).encode())
    return ["--config", config, "--learning-rate", repr(learning_rate), "--out", workdir]


def job_variables(pool_type: str, spec: ExperimentSpec, learning_rate: float, workdir: str) -> dict[str, Any]:
    """The job variables of the *-multi-worker template for `pool_type` that run this attempt on
    `spec.training.workers` machines (an empty dict for one worker: the GPU templates' single job)."""
    workers = spec.training.workers
    if workers == 1:
        return {}
    args = worker_arguments(spec, learning_rate, workdir)
    if pool_type == "vertex-ai":
        return {"worker_replicas": workers - 1, "worker_args": args}
    if pool_type == "kubernetes":
        return {"workers": workers, "worker_args": shlex.join(args)}
    raise ValueError(f"a {pool_type!r} pool runs one process per flow run; use one of {MULTI_WORKER_POOL_TYPES}")


def pool_findings(spec: ExperimentSpec, pool_type: str | None) -> list[Finding]:
    """An error when `spec.training.workers` > 1 cannot run where attempts run: in-process (`pool_type`
    None: no trainer deployment) or on a pool type that starts one process per flow run."""
    workers = spec.training.workers
    if workers == 1 or pool_type in MULTI_WORKER_POOL_TYPES:
        return []
    where = "in this process (no trainer deployment)" if pool_type is None else f"on a {pool_type!r} work pool"
    return [error(
        "workers_without_engine",
        "training.workers",
        f"training.workers is {workers} but attempts run {where}, one process each",
        "dispatch to a kubernetes or vertex-ai pool from deployments/*_multi_worker.json, or training.workers: 1",
    )]
