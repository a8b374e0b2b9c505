"""The training cluster this process belongs to, read from TF_CONFIG (no TensorFlow needed).

Vertex AI sets TF_CONFIG itself for a CustomJob with several worker pools (pool 0 is `chief`,
pool 1 `worker`); the Kubernetes template sets it per pod. Without TF_CONFIG a process trains alone.
The chief is task `chief`, or `worker` 0 when the cluster names no chief: it alone writes to the
attempt's workdir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

TF_CONFIG = "TF_CONFIG"
TRAINING_TASKS = ("chief", "worker")  # MultiWorkerMirroredStrategy's task types; ps and evaluator are not used


@dataclass(frozen=True)
class Cluster:
    """How many processes train together (`workers`, the chief included) and which one this is."""

    workers: int = 1
    task_type: str = "worker"
    task_index: int = 0
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (not self.has_chief and self.task_index == 0)

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"


def cluster_from_env(environ: Mapping[str, str] = os.environ) -> Cluster:
    """The Cluster that TF_CONFIG describes; a lone worker without it. ValueError for a TF_CONFIG that
    MultiWorkerMirroredStrategy cannot train on (bad JSON, other task types, a task outside the cluster)."""
    raw = environ.get(TF_CONFIG, "").strip()
    if not raw:
        return Cluster()
    try:
        config = json.loads(raw)
        cluster, task = dict(config.get("cluster") or {}), dict(config.get("task") or {})
    except (ValueError, TypeError, AttributeError) as problem:
        raise ValueError(f"TF_CONFIG is not a JSON object with 'cluster' and 'task': {problem}") from None
    others = sorted(set(cluster) - set(TRAINING_TASKS))
    if others:
        raise ValueError(f"TF_CONFIG names task types {others}: only chief and worker train here")
    if len(cluster.get("chief", [])) > 1:
        raise ValueError("TF_CONFIG names more than one chief")
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in cluster or not 0 <= task_index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG's task {task_type} {task_index} is not in its cluster {cluster}")
    return Cluster(
        workers=sum(len(cluster.get(kind, [])) for kind in TRAINING_TASKS),
        task_type=task_type,
        task_index=task_index,
        has_chief="chief" in cluster,
    )
