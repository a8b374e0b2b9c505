"""`towerflow submit`: validate a config, store it by content hash, record the experiment, emit the event.

The event `towerflow.config.submitted` (payload: config_uri, config_hash, name) triggers the
`run-experiment` deployment. Nothing is stored or emitted for an invalid config. Delivery is
confirmed: the event is POSTed to the API, and a submission the API did not accept leaves no
`pending` experiment behind that nothing would ever pick up.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from flows.prefect_api import api_answers, use_found_api
from tasks import store
from tasks.settings import artifacts_root
from trainer import storage
from trainer.errors import ExpectedError
from trainer.rules import Finding
from trainer.spec import ExperimentSpec
from trainer.validation import ValidationReport, validate_config

NO_API = "no Prefect API: start `towerflow serve` or set PREFECT_API_URL"


class NotDelivered(ExpectedError):
    """The Prefect API did not accept the event: nothing will run the submission."""


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
    storage.write_bytes(uri, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False).encode())
    return uri


def emit_submitted(submission: Submission) -> None:
    """POST `towerflow.config.submitted` to the configured Prefect API; NotDelivered unless it is accepted."""
    from prefect.client.orchestration import get_client
    from prefect.events import Event
    from prefect.settings import get_current_settings

    from tasks import events

    event = Event(event=events.CONFIG_SUBMITTED,
                  resource=events.experiment_resource(submission.config_hash, submission.name),
                  payload={"config_uri": submission.config_uri, "config_hash": submission.config_hash,
                           "name": submission.name})
    api_url = get_current_settings().api.url
    try:
        with get_client(sync_client=True) as client:
            client.request("POST", "/events", json=[event.model_dump(mode="json")]).raise_for_status()
    except Exception as error:
        raise NotDelivered(f"the Prefect API at {api_url} did not accept {events.CONFIG_SUBMITTED}: "
                           f"{type(error).__name__}: {error}") from None


def check_config(source: str | Path, overrides: list[str] | None = None) -> ValidationReport:
    """Validate `source`; raise InvalidConfig when it has errors (warnings are allowed)."""
    report = validate_config(source, overrides)
    if not report.ok:
        raise InvalidConfig(report)
    return report


def relative_data_paths(spec: ExperimentSpec) -> list[Finding]:
    """A warning for each data path given relative: the flow of a submitted config reads it from the folder
    it runs in (`towerflow serve`'s, or a worker's), which need not be the submitter's."""
    paths = {"data.transactions": spec.data.transactions, "data.products": spec.data.products}
    return [
        Finding(code="relative_data_path", severity="warning", field=field,
                message=f"{uri!r} is a relative path: the flow that trains reads it from the folder it runs in "
                        f"(towerflow serve's, or a worker's), not necessarily from {Path.cwd()}",
                suggestion=f"give an absolute path ({Path(uri).resolve()}) or a URI")
        for field, uri in paths.items() if uri and storage.named(uri) != uri
    ]


def submit_valid(report: ValidationReport, emit: Callable[[Submission], None] = emit_submitted) -> Submission:
    """Store a valid config, get or create its experiment row (pending when new) and `emit` the event.

    When `emit` fails, a row this call created is withdrawn again, so no orphan `pending` is left.
    """
    spec = report.spec
    uri = store_config(spec)
    experiment, created = store.get_or_create_experiment(spec.content_hash(), spec.name, spec.model_dump_json())
    submission = Submission(
        experiment_id=experiment.id, config_hash=spec.content_hash(), name=spec.name, config_uri=uri,
        status=experiment.status, created=created, warnings=[*report.warnings, *relative_data_paths(spec)],
    )
    try:
        emit(submission)
    except BaseException:
        if created:
            store.delete_if_pending(experiment.id)
        raise
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
    if not api_answers(api_url):
        print(f"the Prefect API at {api_url} does not answer: nothing submitted", file=sys.stderr)
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
