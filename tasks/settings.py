"""Where towerflow keeps things: TOWERFLOW_HOME, the artifacts root, an attempt's working directory."""

from __future__ import annotations

import os
from pathlib import Path


def towerflow_home() -> Path:
    """TOWERFLOW_HOME, default ~/.towerflow (created on first use)."""
    home = Path(os.environ.get("TOWERFLOW_HOME") or Path.home() / ".towerflow").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def artifacts_root(spec_artifacts: str | None = None) -> str:
    """The spec's `artifacts` root (local or gs://), else TOWERFLOW_ARTIFACTS, else $TOWERFLOW_HOME/artifacts."""
    root = spec_artifacts or os.environ.get("TOWERFLOW_ARTIFACTS") or str(towerflow_home() / "artifacts")
    return root.rstrip("/")


def attempt_workdir(root: str, config_hash: str, run_id: str, number: int) -> str:
    """One directory per attempt of one flow run: a retried task resumes from its checkpoints there."""
    return f"{root}/{config_hash}/{run_id}/attempt-{number}"
