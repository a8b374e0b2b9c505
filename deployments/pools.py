"""Work pools from towerflow's base job templates: create a pool, or update its template if it exists.

Templates (JSON files beside this module):
  kubernetes-gpu  pool type `kubernetes`: `gpu_count` -> nvidia.com/gpu limit, node selector, tolerations
  vertex-ai-gpu   pool type `vertex-ai`: machine type, accelerator type and count, maximum run time
  kubernetes-multi-worker  as kubernetes-gpu, an Indexed Job of `workers` pods (TF_CONFIG set per pod)
  vertex-ai-multi-worker   as vertex-ai-gpu, a second worker pool of `worker_replicas` machines
A `process` pool (local workers, the end-to-end test) uses Prefect's own process template.

    python -m deployments.pools gpu --template kubernetes-gpu --concurrency 4
    python -m deployments.pools cpu gpu            # process pools, for local workers

`--concurrency N` caps how many flow runs the pool runs at once (for `gpu`: how many attempts train at
once; extra runs wait as AwaitingConcurrencySlot). Without it a process pool gets one per visible GPU
(at least 1) and a template pool keeps what it had. `--training-limit N` also prepares the API as
`towerflow serve` does: the `towerflow-training` concurrency limit (N attempts at once, wherever they
run) and the automation that marks flow runs Crashed when their heartbeats stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.client.schemas.objects import WorkPool
from prefect.exceptions import ObjectNotFound

TEMPLATES: dict[str, tuple[str, str]] = {  # template name -> (pool type, file)
    "kubernetes-gpu": ("kubernetes", "kubernetes_gpu.json"),
    "vertex-ai-gpu": ("vertex-ai", "vertex_ai_gpu.json"),
    "kubernetes-multi-worker": ("kubernetes", "kubernetes_multi_worker.json"),
    "vertex-ai-multi-worker": ("vertex-ai", "vertex_ai_multi_worker.json"),
}


def template_path(name: str) -> Path:
    if name not in TEMPLATES:
        raise KeyError(f"unknown template {name!r}; known: {', '.join(TEMPLATES)}")
    return Path(__file__).parent / TEMPLATES[name][1]


def load_template(name: str) -> dict[str, Any]:
    """The base job template `name` (see TEMPLATES) as a dict."""
    return json.loads(template_path(name).read_text())


def pool_type(name: str) -> str:
    """The work-pool type that a template is written for."""
    template_path(name)
    return TEMPLATES[name][0]


def process_template() -> dict[str, Any]:
    """Prefect's default base job template for `process` pools (flow runs as local subprocesses)."""
    from prefect.workers.process import ProcessWorker

    return ProcessWorker.get_default_base_job_template()


def visible_gpus() -> int:
    """How many GPUs `nvidia-smi -L` lists here (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(1 for line in listed.splitlines() if line.startswith("GPU "))


async def apply_pool(client: PrefectClient, pool: str, kind: str, base_job_template: dict[str, Any],
                     concurrency_limit: int | None = None) -> WorkPool:
    """Create work pool `pool` of type `kind` with the template, or replace the template of an existing one;
    `concurrency_limit` caps its concurrent flow runs (None leaves the pool's limit as it is).

    The server validates the template (every placeholder declared, defaults valid against the schema).
    """
    try:
        existing = await client.read_work_pool(pool)
    except ObjectNotFound:
        existing = None
    if existing is not None and existing.type != kind:
        raise ValueError(f"work pool {pool!r} exists with type {existing.type!r}, not {kind!r}")
    applied = await client.create_work_pool(
        WorkPoolCreate(name=pool, type=kind, base_job_template=base_job_template), overwrite=True
    )
    if concurrency_limit is None and existing is not None:
        concurrency_limit = existing.concurrency_limit  # replacing the template must not lift the limit
    if concurrency_limit is None:
        return applied
    await client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=concurrency_limit))
    return await client.read_work_pool(pool)


async def apply_pools(pools: dict[str, str], concurrency_limit: int | None = None) -> list[WorkPool]:
    """Apply several pools at once: pool name -> template name, or "process"."""
    async with get_client() as client:
        applied = []
        for pool, template in pools.items():
            if template == "process":
                limit = concurrency_limit or max(visible_gpus(), 1)
                applied.append(await apply_pool(client, pool, "process", process_template(), limit))
            else:
                applied.append(await apply_pool(client, pool, pool_type(template), load_template(template),
                                                concurrency_limit))
        return applied


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.pools", description=__doc__.split("\n")[0])
    parser.add_argument("pools", nargs="+", metavar="POOL", help="work pool names, e.g. gpu")
    parser.add_argument("--template", default="process", choices=["process", *TEMPLATES],
                        help="base job template (default: process, for local workers)")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="at most N flow runs at once in each pool (default for process pools: the visible GPUs, "
                             "at least 1)")
    parser.add_argument("--training-limit", type=int, metavar="N",
                        help="create or update the towerflow-training concurrency limit (N attempts at once) and the "
                             "zombie-run automation, as towerflow serve does")
    args = parser.parse_args(argv)
    for pool in asyncio.run(apply_pools(dict.fromkeys(args.pools, args.template), args.concurrency)):
        print(f"work pool {pool.name!r} (type {pool.type}, concurrency limit {pool.concurrency_limit}) ready")
    if args.training_limit is not None:
        from flows.serve import prepare_api

        prepare_api(args.training_limit)
        print(f"concurrency limit 'towerflow-training' = {args.training_limit}; zombie-run automation ready")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
