"""The validation tasks: the config's and the data's findings before any GPU is spent, shown in the UI and as events."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks import events
from tasks.report import experiment_slug, publish_findings
from trainer.rules import Finding
from trainer.spec import ExperimentSpec
from trainer.validation import ValidationReport, validate_config


@task(name="validate", task_run_name="validate {source_label}", cache_policy=NO_CACHE)
def validate(config: str | dict, overrides: list[str] | None = None, source_label: str = "config") -> ValidationReport:
    """Load and check a config; publish its findings; emit `validation.failed` / `validation.warned`."""
    logger = get_run_logger()
    report = validate_config(config, overrides)
    name = report.spec.name if report.spec else source_label
    config_hash = report.spec.content_hash() if report.spec else "invalid"
    publish_findings(experiment_slug(report.spec) if report.spec else "invalid-config", report.findings)
    for finding in report.findings:
        log = logger.error if finding.severity == "error" else logger.warning
        log("%s %s at %s: %s", finding.severity, finding.code, finding.field or "<config>", finding.message)
    summary = [f"{f.field}: {f.message}" for f in report.findings]
    if report.errors:
        events.emit(events.VALIDATION_FAILED, config_hash, name, findings=summary)
    elif report.warnings:
        events.emit(events.VALIDATION_WARNED, config_hash, name, findings=summary)
    return report


@task(name="check-data", task_run_name="check the data of {spec.name}", cache_policy=NO_CACHE)
def check_data(spec: ExperimentSpec) -> list[Finding]:
    """One pass over the loaded data before the first epoch (non-finite numbers, blank ids, too little
    data, cold start); its findings are published like the config's and errors emit `validation.failed`."""
    from trainer.datacheck import check_data as check

    logger = get_run_logger()
    _, findings = check(spec)
    config_hash = spec.content_hash()
    publish_findings(experiment_slug(spec), findings, what="data-findings")
    for finding in findings:
        log = logger.error if finding.severity == "error" else logger.warning
        log("data %s %s at %s: %s", finding.severity, finding.code, finding.field, finding.message)
    errors = [f"{f.field}: {f.message}" for f in findings if f.severity == "error"]
    if errors:
        events.emit(events.VALIDATION_FAILED, config_hash, spec.name, findings=errors, reason="bad data")
    elif not findings:
        logger.info("data check: nothing wrong with the data of %s", spec.name)
    return findings
