"""`towerflow submit`: validate a config, store it by content hash, record the experiment, emit the event.

The event `towerflow.config.submitted` (payload: config_uri, config_hash, name) triggers the
`run-experiment` deployment. Nothing is stored or emitted for an invalid config.
"""

from __future__ import annotations

import json
import posixpath
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import fsspec
import yaml

from flows.prefect_api import use_found_api
from tasks import store
from tasks.settings import artifacts_root
from trainer.rules import Finding
from trainer.spec import ExperimentSpec
from trainer.validation import ValidationReport, validate_config


NO_API = "no Prefect API: start `towerflow serve` or set PREFECT_API_URL"


class InvalidConfig(ValueError):
    """A config with validation errors: nothing was stored or emitted. `report` has the findings."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(f"{report.source}: invalid config ({len(report.errors)} errors)")


@dataclass(frozen=True)
class Submission:
    """What `submit_config` stored and announced."""

    experiment_id: int
    config_hash: str
    name: str
    config_uri: str
    status: str  # the experiment's stored status: pending for a new one
    created: bool  # False when the same config (by content hash) was submitted before
    warnings: list[Finding]


def config_uri(spec: ExperimentSpec) -> str:
    """Where a submitted config lives: <artifacts root>/configs/<content hash>.yaml (local or gs://)."""
    return f"{artifacts_root(spec.artifacts)}/configs/{spec.content_hash()}.yaml"


def store_config(spec: ExperimentSpec) -> str:
    """Write the normalized spec (overrides applied) to `config_uri(spec)`; loading it gives the same hash."""
    uri = config_uri(spec)
    fs, path = fsspec.core.url_to_fs(uri)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "w") as handle:
        yaml.safe_dump(spec.model_dump(mode="json"), handle, sort_keys=False)
    return uri


def emit_submitted(submission: Submission) -> None:
    """Emit `towerflow.config.submitted` to the configured Prefect API and wait until it is sent."""
    from prefect.events.worker import EventsWorker

    from tasks import events

    events.emit(events.CONFIG_SUBMITTED, submission.config_hash, submission.name,
                config_uri=submission.config_uri, config_hash=submission.config_hash, name=submission.name)
    EventsWorker.drain_all()


def check_config(source: str | Path, overrides: list[str] | None = None) -> ValidationReport:
    """Validate `source`; raise InvalidConfig when it has errors (warnings are allowed)."""
    report = validate_config(source, overrides)
    if not report.ok:
        raise InvalidConfig(report)
    return report


def submit_valid(report: ValidationReport, emit: Callable[[Submission], None] = emit_submitted) -> Submission:
    """Store a valid config, get or create its experiment row (pending when new) and `emit` the event."""
    spec = report.spec
    uri = store_config(spec)
    experiment, created = store.get_or_create_experiment(spec.content_hash(), spec.name, spec.model_dump_json())
    submission = Submission(
        experiment_id=experiment.id, config_hash=spec.content_hash(), name=spec.name, config_uri=uri,
        status=experiment.status, created=created, warnings=report.warnings,
    )
    emit(submission)
    return submission


def submit_config(source: str | Path, overrides: list[str] | None = None,
                  emit: Callable[[Submission], None] = emit_submitted) -> Submission:
    """Validate, store, record and announce `source`; InvalidConfig before anything is stored or emitted."""
    return submit_valid(check_config(source, overrides), emit)


def follow_hint(submission: Submission, api_url: str) -> str:
    """Where to watch a submission: the Prefect UI of the API and `towerflow results`."""
    ui = api_url.rstrip("/").removesuffix("/api") + "/runs"
    return f"follow it in the Prefect UI at {ui} or with: towerflow results {submission.experiment_id}"


def submit_command(config: str, overrides: list[str] | None = None, as_json: bool = False) -> int:
    """`towerflow submit`: print the submission and its warnings; exit 0, 2 if invalid, 1 without an API.

    The event goes to PREFECT_API_URL, else to the API that a running `towerflow serve` recorded.
    """
    try:
        report = check_config(config, overrides)
    except InvalidConfig as error:
        if as_json:
            print(json.dumps({"success": False, "errors": [f.model_dump() for f in error.report.errors]}, indent=2))
            return 2
        for finding in error.report.errors:
            where = f"{finding.field}: " if finding.field else ""
            print(f"{error.report.source}: error: {where}{finding.message} [{finding.code}]", file=sys.stderr)
        return 2
    api_url = use_found_api()
    if api_url is None:
        print(NO_API, file=sys.stderr)
        return 1
    submission = submit_valid(report)
    if as_json:
        warnings = [f.model_dump() for f in submission.warnings]
        print(json.dumps({"success": True, **asdict(submission), "warnings": warnings}, indent=2))
        return 0
    again = "" if submission.created else f" (submitted before; status {submission.status})"
    print(f"submitted {submission.name!r}: experiment {submission.experiment_id}, "
          f"config hash {submission.config_hash}{again}")
    print(f"config stored at {submission.config_uri}")
    for finding in submission.warnings:
        print(f"warning: {finding.field}: {finding.message} [{finding.code}]")
        if finding.suggestion:
            print(f"    suggestion: {finding.suggestion}")
    print(follow_hint(submission, api_url))
    return 0
