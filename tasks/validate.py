"""The validation tasks: the config's and the data's findings before any GPU is spent, shown in the UI and as events;
and the learning-rate probe (`validation.lr_probe`), a short measured range test before the first attempt."""

from __future__ import annotations

import os

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from deployments.multi_worker import pool_findings
from tasks import events
from tasks.report import experiment_slug, publish_findings, publish_probe
from tasks.settings import scan_dir
from tasks.training import TRAINER_DEPLOYMENT_ENV, work_pool_type
from trainer.probe_curve import ProbeCurve, probe_finding
from trainer.rules import Finding, suggested_learning_rate
from trainer.spec import ExperimentSpec
from trainer.validation import ValidationReport, validate_config


@task(name="validate", task_run_name="validate {source_label}", cache_policy=NO_CACHE)
def validate(config: str | dict, overrides: list[str] | None = None, source_label: str = "config") -> ValidationReport:
    """Load and check a config; publish its findings; emit `validation.failed` / `validation.warned`."""
    logger = get_run_logger()
    report = validate_config(config, overrides)
    if report.spec is not None:
        report.findings.extend(where_attempts_run(report.spec))
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


def where_attempts_run(spec: ExperimentSpec) -> list[Finding]:
    """An error when `training.workers` > 1 but attempts run where only one process each can: in this
    process (no trainer deployment) or on a pool type without a multi-worker template."""
    if spec.training.workers == 1:
        return []
    deployment = os.environ.get(TRAINER_DEPLOYMENT_ENV)
    return pool_findings(spec, work_pool_type(deployment) if deployment else None)


@task(name="check-data", task_run_name="check the data of {spec.name}", cache_policy=NO_CACHE)
def check_data(spec: ExperimentSpec) -> list[Finding]:
    """One pass over the loaded data before the first epoch (non-finite numbers, blank ids, too little
    data, cold start); its findings are published like the config's and errors emit `validation.failed`."""
    from trainer.datacheck import check_data as check

    logger = get_run_logger()
    _, findings = check(spec, scan_dir(spec))
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


@task(name="lr-probe", task_run_name="probe the learning rate of {spec.name}", cache_policy=NO_CACHE)
def probe_learning_rate(spec: ExperimentSpec) -> ProbeCurve:
    """The learning-rate range test (`trainer.lr_probe`); its curve is published as a table artifact."""
    from trainer.lr_probe import run_probe
    from trainer.scanned import experiment_data

    curve = run_probe(spec, experiment_data(spec, scan_dir(spec)))  # a streamed spec's one kept pass
    publish_probe(spec, curve)
    get_run_logger().info("learning-rate probe, %d rates in %.1fs: %s", len(curve.points), curve.seconds, curve.reason)
    return curve


def probe_findings(spec: ExperimentSpec, curve: ProbeCurve) -> list[Finding]:
    """With `lr_probe: warn`, the probe's `lr_probe_suggests` warning when the configured rate is past its best
    one; published, logged and emitted (`validation.warned`) like the config's warnings."""
    if spec.validation.lr_probe != "warn":
        return []
    finding = probe_finding(curve, spec.training.learning_rate, suggested_learning_rate(spec))
    if finding is None:
        return []
    publish_findings(experiment_slug(spec), [finding], what="probe-findings")
    get_run_logger().warning("warning %s at %s: %s", finding.code, finding.field, finding.message)
    events.emit(events.VALIDATION_WARNED, spec.content_hash(), spec.name, findings=[f"{finding.field}: {finding.message}"],
                suggested_lr=curve.suggested_rate)
    return [finding]
