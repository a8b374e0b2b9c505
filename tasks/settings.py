"""Where towerflow keeps things: TOWERFLOW_HOME, the artifacts root, an experiment's attempt directories."""

from __future__ import annotations

import os
from pathlib import Path

from trainer.errors import ExpectedError
from trainer.rules import artifacts_problem
from trainer.spec import ExperimentSpec


class UnusableDirectory(ExpectedError):
    """A home directory that cannot be created or written."""


def usable_directory(path: Path, setting: str) -> Path:
    """Create `path` (and missing parents) and check it is writable; one-line error naming `setting`."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UnusableDirectory(f"{setting}={path} cannot be created: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UnusableDirectory(f"{setting}={path} is not writable")
    return path


def towerflow_home() -> Path:
    """TOWERFLOW_HOME, default ~/.towerflow (created on first use)."""
    home = Path(os.environ.get("TOWERFLOW_HOME") or Path.home() / ".towerflow").expanduser()
    return usable_directory(home, "TOWERFLOW_HOME")


class UntrustedArtifactsRoot(ExpectedError):
    """TOWERFLOW_ARTIFACTS names a place towerflow will not write to."""


def artifacts_root(spec_artifacts: str | None = None) -> str:
    """The spec's `artifacts` root (local or gs://; validated with the spec), else TOWERFLOW_ARTIFACTS
    (checked here by the same rule), else $TOWERFLOW_HOME/artifacts."""
    configured = os.environ.get("TOWERFLOW_ARTIFACTS")
    if not spec_artifacts and configured:
        problem = artifacts_problem(configured)
        if problem:
            raise UntrustedArtifactsRoot(f"TOWERFLOW_ARTIFACTS={configured} {problem}")
    root = spec_artifacts or configured or str(towerflow_home() / "artifacts")
    return root.rstrip("/")


def experiment_dir(root: str, config_hash: str) -> str:
    """Everything of one experiment: its attempts and its report, whichever flow run made them."""
    return f"{root}/{config_hash}"


def scan_dir(spec: ExperimentSpec) -> str:
    """Where a streamed experiment's one pass over its data is kept (trainer.scanned): its data check,
    every attempt and the evaluation read it, not the whole table again."""
    return f"{experiment_dir(artifacts_root(spec.artifacts), spec.content_hash())}/scan"


def attempt_workdir(root: str, config_hash: str, number: int) -> str:
    """Attempt `number` of an experiment: any later run of the experiment resumes or reuses it there."""
    return f"{experiment_dir(root, config_hash)}/attempt-{number}"
