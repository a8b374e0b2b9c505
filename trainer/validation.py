"""Validate a config end to end: parse it, read its data's columns, run the rules (and, on
request, the data check over its rows).

`validate_config` never raises for a bad config: a file that cannot be read or parsed, an
unknown field or a wrong type becomes an `invalid_config` error finding with its field path.
This is what `towerflow validate` and the Prefect validate task call.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, computed_field

from trainer.rules import Finding, check
from trainer.schema import read_schema
from trainer.spec import ExperimentSpec, SpecError, load_spec


class ValidationReport(BaseModel):
    """The outcome of validating one config: the parsed spec (None if unparseable) and its findings."""

    source: str
    spec: ExperimentSpec | None = None
    findings: list[Finding] = []

    @computed_field
    @property
    def ok(self) -> bool:
        """True when nothing stops training (warnings allowed)."""
        return self.spec is not None and not self.errors

    @computed_field
    @property
    def config_hash(self) -> str | None:
        return self.spec.content_hash() if self.spec is not None else None

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "warning"]


def validate_config(
    source: str | Path | dict, overrides: list[str] | None = None, *, check_data: bool = False
) -> ValidationReport:
    """Load `source` (path, URI or mapping) with `--set` style overrides and report every finding.

    With `check_data`, a config without errors also gets `trainer.datacheck`'s findings: its data
    is loaded (without TensorFlow) and checked as the flow checks it before the first epoch.
    """
    name = "<config>" if isinstance(source, dict) else str(source)
    try:
        spec = load_spec(source, overrides)
    except SpecError as exc:
        origin = "" if exc.source == name else f"{exc.source}: "  # e.g. a bad --set override
        findings = [
            Finding(code="invalid_config", severity="error", field=field, message=f"{origin}{message}")
            for field, message in exc.problems
        ]
        return ValidationReport(source=name, findings=findings)
    schema, findings = read_schema(spec)
    findings += check(spec, schema)
    if check_data and not any(finding.severity == "error" for finding in findings):
        from trainer.datacheck import check_data as check_rows  # pandas: paid only when asked for

        findings += check_rows(spec)[1]
    return ValidationReport(source=name, spec=spec, findings=findings)
