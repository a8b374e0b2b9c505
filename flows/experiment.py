"""The experiment flow: validate -> warning policy -> attempts with learning-rate backoff -> evaluate -> persist.

Prefect's own retries cannot change a task's arguments, so the learning-rate backoff is this flow's loop;
Prefect task retries handle infrastructure faults (same learning rate, resumed from the attempt's checkpoint).

Nothing is lost when a run dies: the experiment's attempts live in `<artifacts>/<config hash>/attempt-N`,
so whichever run comes next (a rerun, a recovery by the reconciler) takes the experiment over once its
owner's lease has lapsed or its owner is known dead, replays the lineage (finished attempts return their
stored result, the unfinished one resumes from its last checkpoint) and persists what is missing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.context import get_run_context
from prefect.exceptions import ExternalSignal
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run as current_flow_run
from prefect.settings import get_current_settings
from prefect.states import Cancelled
from pydantic import Field

from flows.local import quiet_expected_errors
from flows.ownership import (
    CancelWatch,
    LeaseKeeper,
    LeaseLost,
    cancelled_message,
    enclosing_flow_runs,
    first_cancelled,
    gone_reason,
    lease_seconds,
    mark_crashed,
    owner_token,
)
from flows.prefect_api import api_answers
from flows.report_server import served_report_url
from tasks import events, store
from tasks.html_report import report_filename, write_report
from tasks.outage import PrefectAPILost, lost_api
from tasks.persist import persist_attempt, persist_recall
from tasks.report import (
    ProgressArtifact,
    artifact_key,
    experiment_slug,
    publish_epochs,
    publish_lineage,
    publish_recall,
    publish_summary,
)
from tasks.settings import artifacts_root, attempt_workdir, experiment_dir
from tasks.training import VERDICT_STATES, evaluate, train_attempt
from tasks.validate import check_data, probe_findings, probe_learning_rate, validate
from tasks.wording import markdown_text
from trainer import storage
from trainer.errors import ExpectedError, NoSpaceLeft, OutOfMemory, Resumable
from trainer.probe_curve import ProbeCurve
from trainer.quality import baseline_finding, below_popularity_ks
from trainer.results import rollback_point
from trainer.rules import Finding, suggested_learning_rate
from trainer.spec import ExperimentSpec, SpecError, load_spec

API_CHECK_TIMEOUT_S = 5.0

quiet_expected_errors()  # also in the flow-run processes that a runner or worker starts from this entrypoint


class ExperimentStopped(ExpectedError):
    """The experiment ended without a model: invalid config, halted, stopped, every attempt failed, or a
    live run already has it."""


SUGGESTED, CONFIGURED, STOP = ("Train at the suggested learning rate", "Train at the configured learning rate",
                               "Stop: do not train")


class ApprovalDecision(RunInput):
    """The form a person fills in the Prefect UI when `validation.on_warning: approve` pauses a run.

    Nothing is preselected: training at a flagged rate takes a deliberate choice.
    """

    decision: Literal[SUGGESTED, CONFIGURED, STOP] = Field(title="Your decision")


def _run_name() -> str:
    parameters = current_flow_run.parameters
    try:
        spec = load_spec(parameters["config"], parameters.get("overrides"))
    except (SpecError, KeyError):
        return "invalid-config"
    return f"{spec.name} ({spec.content_hash()[:8]})"


def _warning_lines(findings: list[Finding]) -> list[str]:
    return [f"{f.field}: {f.message}" + (f" ({f.suggestion})" if f.suggestion else "") for f in findings]


def _apply_warning_policy(spec: ExperimentSpec, warnings: list[Finding], experiment_id: int,
                          measured: float | None = None) -> float:
    """Decide, by `validation.on_warning`, whether and at which learning rate to train. `measured` is the
    learning-rate probe's suggestion: trained at with `lr_probe: pick`, and the form's suggested rate."""
    learning_rate = spec.training.learning_rate
    policy = spec.validation.on_warning
    if not warnings or policy == "proceed":
        return measured if measured is not None and spec.validation.lr_probe == "pick" else learning_rate
    lines = _warning_lines(warnings)
    if policy == "halt":
        message = "halted on validation warnings (validation.on_warning: halt): " + "; ".join(lines)
        store.set_experiment_status(experiment_id, "halted", message=message)
        raise ExperimentStopped(message)

    suggested = measured if measured is not None else suggested_learning_rate(spec)
    source = " (measured by the learning-rate probe)" if measured is not None else ""
    timeout = spec.validation.approval_timeout_s
    description = "\n".join(
        [f"## {markdown_text(spec.name)}: {len(warnings)} validation warning(s)", "",
         *[f"- **{markdown_text(f.field)}**: {markdown_text(f.message)}"
           + (f"  \n  *suggestion:* {markdown_text(f.suggestion)}" if f.suggestion else "") for f in warnings], "",
         f"Configured learning rate **{learning_rate:g}**; suggested **{suggested:g}**{source}.",
         f"This run waits **{timeout:g} s** (`validation.approval_timeout_s`) for a decision, then fails."]
    )
    config_hash = spec.content_hash()
    store.set_experiment_status(experiment_id, "awaiting_approval", message="; ".join(lines))
    events.emit(events.VALIDATION_AWAITING_APPROVAL, config_hash, spec.name, warnings=lines, lr=learning_rate,
                suggested_lr=suggested, timeout_s=timeout)
    logger = get_run_logger()
    logger.warning("waiting up to %gs for a person to approve training (%d warning(s)); answer the form on this "
                   "flow run's page", timeout, len(warnings))
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalDecision.with_initial_data(description=description),
            timeout=timeout,
            poll_interval=2,
        )
    except Exception as exc:  # Prefect raises on a pause that times out
        message = f"no approval within {timeout:g}s: {exc}"
        store.set_experiment_status(experiment_id, "failed", message=message)
        raise ExperimentStopped(message) from exc
    chosen = suggested if answer.decision == SUGGESTED else learning_rate
    events.emit(events.VALIDATION_APPROVED, config_hash, spec.name, decision=answer.decision,
                lr=None if answer.decision == STOP else chosen)
    if answer.decision == STOP:
        message = "stopped by a person at the approval step"
        store.set_experiment_status(experiment_id, "stopped", message=message)
        raise ExperimentStopped(message)
    logger.info("approved by the form: training at lr=%g (was %g)", chosen, learning_rate)
    store.set_experiment_status(experiment_id, "running", message=f"approved: {answer.decision.lower()} ({chosen:g})")
    return chosen


def _train_with_backoff(spec: ExperimentSpec, experiment_id: int, learning_rate: float, run_id: str,
                        lease: LeaseKeeper, origin: str | None = None):
    """Attempts at lr, lr*factor, ... until one succeeds, max_retries, or min_learning_rate; `origin` says
    where lr came from when not from the config (the lineage card shows it).

    A run that took the experiment over replays the same lineage: attempts that ended return their
    stored result at once, the unfinished one resumes from its checkpoint.
    """
    logger = get_run_logger()
    backoff = spec.training.backoff
    config_hash = spec.content_hash()
    root = artifacts_root(spec.artifacts)
    results, attempt_ids = [], []
    progress_id = str(ProgressArtifact.create(spec))
    start = None  # with backoff.restart: last_healthy, the failed attempt's last healthy checkpoint
    for number in range(1, backoff.max_retries + 2):
        workdir = attempt_workdir(root, config_hash, number)
        store.record_attempt(experiment_id, number, learning_rate, "running", "", [], flow_run_id=run_id)
        state = train_attempt(spec, number, learning_rate, workdir, on_epoch_done=lease.check, progress_id=progress_id,
                              start=start, return_state=True)
        if state.is_completed() or state.name in VERDICT_STATES:
            result = state.result(raise_on_failure=False)
        else:
            result = _failed_attempt(learning_rate, workdir, state)
        results.append(result)
        attempt_ids.append(persist_attempt(experiment_id, number, result, run_id))
        _require_api()
        publish_epochs(spec, number, result)
        if result.status in ("succeeded", "failed"):
            break
        event = events.ATTEMPT_COLLAPSED if result.status == "collapsed" else events.ATTEMPT_DIVERGED
        events.emit(event, config_hash, spec.name, attempt=number, lr=learning_rate, reason=result.reason)
        next_rate = learning_rate * backoff.factor
        if number > backoff.max_retries or next_rate < backoff.min_learning_rate:
            break
        if backoff.restart == "last_healthy":
            start = rollback_point(number, result.epochs, result.start, result.workdir, spec.training.collapse)
        where = f" from attempt {start.attempt}'s epoch {start.epoch}" if start else ""
        logger.warning("attempt %d %s: %s; retrying at lr=%g%s", number, result.status, result.reason, next_rate, where)
        events.emit(events.ATTEMPT_RETRYING, config_hash, spec.name, attempt=number + 1, lr=next_rate,
                    previous_lr=learning_rate, previous_status=result.status)
        learning_rate = next_rate
    publish_lineage(spec, results, origin)
    return results, attempt_ids


def _release(experiment_id: int, run_id: str, watched: list[str], interruption: BaseException) -> str | None:
    """Record that this run was interrupted and end its lease now, so `results` says so and the next run
    continues the experiment without waiting for the lease to lapse; or, when a person cancelled the flow
    run (or a flow run it is a subflow of, in `watched`) in Prefect, stop the experiment and return the
    message saying so (best effort: the database or the API may be gone)."""
    # Prefect cancels by SIGTERM: a signal is a person's Cancel when one of the watched runs says so
    cancelled = first_cancelled(watched) if isinstance(interruption, ExternalSignal) else None
    if cancelled:
        _best_effort(store.set_experiment_status, experiment_id, "stopped", message=cancelled_message(cancelled))
        return cancelled_message(cancelled)
    signal_name = signal.Signals(getattr(interruption, "signal", signal.SIGINT)).name
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    _best_effort(store.release_lease, experiment_id, run_id, f"interrupted by {signal_name} at {when}")
    return None


def _require_api() -> None:
    """PrefectAPILost at once when the configured Prefect API stopped answering (training goes on without it,
    its result is stored; each later call to the API would spend a minute retrying before it failed)."""
    url = get_current_settings().api.url
    if url and not api_answers(url, timeout=API_CHECK_TIMEOUT_S):
        raise PrefectAPILost.saying("no answer to its health check")


def _best_effort(write: Callable[..., object], *args, **kwargs) -> None:
    """One store write, not retried, and skipped when the database does not answer or cannot write (it may
    be gone, or on the full disk)."""
    try:
        with store.retrying_for(0):
            write(*args, **kwargs)
    except (store.DatabaseUnavailable, NoSpaceLeft):
        pass


def _failed_attempt(learning_rate: float, workdir: str, state):
    from trainer.data import DataError
    from trainer.results import AttemptResult

    try:
        state.result()
        reason = f"attempt ended {state.name}"
    except (OutOfMemory, DataError) as exc:
        reason = str(exc)  # names what is wrong: a lower learning rate would not fit, nor read the data
    except ExpectedError:
        raise  # a lost lease, a database down for the whole budget, a full disk: it ends this run, not the attempt
    except Exception as exc:
        lost = lost_api(exc)
        if lost is not None:
            raise lost from None
        reason = f"{type(exc).__name__}: {exc}"
    return AttemptResult(status="failed", reason=reason, learning_rate=learning_rate, epochs=[], epochs_run=0,
                         model_uri=None, workdir=workdir)


@flow(name="run-experiment", flow_run_name=_run_name)
def run_experiment(config: str | dict, overrides: list[str] | None = None, force: bool = False) -> dict:
    """Run one experiment end to end; returns its stored summary (`towerflow results --json` shape), or a
    Cancelled state when a person cancelled the flow run in Prefect (the experiment is then `stopped`).

    The run first claims the experiment: a finished one returns its stored result (`force` reruns it
    from scratch), one that a live run owns is left to it (`force` refuses, naming that run), one whose
    owner is gone is taken over and continued where the owner stopped.
    """
    logger = get_run_logger()
    label = config if isinstance(config, str) else "config"
    report = validate(config, overrides, source_label=label)
    if not report.ok:
        _refuse(report)
    spec = report.spec
    config_hash = spec.content_hash()
    run_id = str(get_run_context().flow_run.id)

    experiment, _ = store.get_or_create_experiment(config_hash, spec.name, spec.model_dump_json())
    gone: dict[str, str] = {}

    def owner_gone(current: store.Experiment) -> bool:
        reason = gone_reason(current)
        if reason:
            gone["reason"] = reason
        return reason is not None

    owner = owner_token()
    claim = store.claim_experiment(experiment.id, run_id, owner, lease_seconds(), force=force, owner_gone=owner_gone)
    if claim.outcome == "live":
        holder = claim.previous
        message = (f"experiment {experiment.id} ({config_hash[:8]}) is being run by flow run {holder.flow_run_id} "
                   f"({holder.owner}, lease until {holder.lease_expires_at:%H:%M:%S} UTC)")
        if force:
            raise ExperimentStopped(f"{message}: --force never doubles a live run")
        logger.info("%s; not starting a second run", message)
        return store.experiment_detail(experiment.id) | {"reused": True, "live_run": holder.flow_run_id}
    if claim.outcome == "finished":
        logger.info("experiment %s (%s) was already run; returning the stored result (use --force to run again)",
                    experiment.id, config_hash)
        return store.experiment_detail(experiment.id) | {"reused": True}
    if force:
        _forget_attempts(spec)
    if claim.outcome == "taken_over":
        previous = claim.previous
        reason = gone.get("reason") or gone_reason(previous, ask_prefect=False) or "its lease expired"
        if previous.message and not gone:  # an interrupted run says so when it ends its lease
            reason = f"{reason} ({previous.message})"
        logger.warning("taking over experiment %s from flow run %s: %s; continuing where it stopped",
                       experiment.id, previous.flow_run_id, reason)
        mark_crashed(previous.flow_run_id, f"experiment {experiment.id} taken over by flow run {run_id}: {reason}")
        events.emit(events.EXPERIMENT_RECOVERED, config_hash, spec.name, reason=reason,
                    previous_flow_run=previous.flow_run_id, flow_run=run_id)
    runs = enclosing_flow_runs(get_run_context().flow_run)
    watched = [str(run.id) for run in runs]
    has_runner = any(run.deployment_id is not None for run in runs)  # its runner sends SIGTERM on Cancel
    api_answers_still = True  # else the report is written without its Prefect artifacts
    storage_answers_still = True  # else no report is written: it would go to the storage that stopped answering
    try:
        with LeaseKeeper(experiment.id, run_id, owner) as lease, CancelWatch(watched, has_runner):
            _execute(spec, report.findings, experiment.id, run_id, lease)
    except store.DatabaseUnavailable:
        raise  # the experiment stays claimed; its lease lapses and the next run persists what is on disk
    except LeaseLost:
        raise  # another run owns the experiment now: it, not this run, says how it ends
    except ExperimentStopped:
        raise
    except Resumable as error:  # a full disk, a lost API or storage: once it is back, the next run continues
        api_answers_still = not isinstance(error, PrefectAPILost)
        storage_answers_still = not isinstance(error, storage.Unreachable)
        _best_effort(store.release_lease, experiment.id, run_id, str(error))
        raise
    except (KeyboardInterrupt, ExternalSignal) as interruption:  # Ctrl-C, SIGTERM: say so, and free it at once
        cancelled = _release(experiment.id, run_id, watched, interruption)
        if cancelled:  # the run ends Cancelled, as the person asked, rather than Crashed
            return Cancelled(message=cancelled)
        raise
    except Exception as exc:  # anything unexpected still ends the experiment visibly, never "running" forever
        lost = lost_api(exc)
        if lost is not None:  # Prefect's engine could not report a state: the experiment itself is fine
            api_answers_still = False
            _best_effort(store.release_lease, experiment.id, run_id, str(lost))
            raise lost from None
        message = f"{type(exc).__name__}: {exc}"
        store.set_experiment_status(experiment.id, "failed", message=message)
        events.emit(events.EXPERIMENT_FAILED, config_hash, spec.name, reason=message)
        raise
    finally:
        if storage_answers_still:
            _link_report(spec, experiment.id, publish=api_answers_still)
    return store.experiment_detail(experiment.id) | {"reused": False}


def _forget_attempts(spec: ExperimentSpec) -> None:
    """`--force`: remove the experiment's attempt directories, so every attempt trains from scratch."""
    uri = experiment_dir(artifacts_root(spec.artifacts), spec.content_hash())
    fs, path = storage.filesystem(uri)
    with storage.failing_as_storage_error(uri):
        for attempt in fs.glob(f"{path}/attempt-*"):
            fs.rm(attempt, recursive=True)


def _link_report(spec: ExperimentSpec, experiment_id: int, publish: bool = True) -> None:
    """Write the HTML report beside the experiment's attempts; unless `publish` is False (the API is gone),
    publish the run's summary card and link the report over http(s) from a Prefect artifact (never file://:
    a browser refuses it); without a report server, say how to open it. Never raises."""
    try:
        with store.retrying_for(0):
            view = store.experiment_view(experiment_id)
        root = artifacts_root(spec.artifacts)
        written = write_report(view, f"{experiment_dir(root, spec.content_hash())}/{report_filename(view)}")
        if not publish:
            return
        publish_summary(spec, view)
        key = artifact_key(experiment_slug(spec), "report")
        url = served_report_url(written, root)
        if url is None:
            create_markdown_artifact(f"The HTML report of {markdown_text(spec.name)} is at {markdown_text(written)}; "
                                     f"open it in a browser with `towerflow report {experiment_id} --serve`.", key=key)
            return
        create_link_artifact(url, link_text=f"{spec.name} report", key=key,  # the UI shows a link's text as it is
                             description=f"{markdown_text(spec.name)}: loss and gradient norms per attempt, "
                                         "learning-rate lineage, recall@k against popularity, validation findings")
    except Exception as exc:  # a report is a view: failing to draw it must not fail the experiment
        get_run_logger().warning("HTML report of experiment %s not written: %s: %s", experiment_id,
                                 type(exc).__name__, exc)


def _probe(spec: ExperimentSpec, experiment_id: int) -> ProbeCurve | None:
    """The learning-rate probe's curve (`validation.lr_probe`), stored with the experiment: the stored one
    when an earlier run already probed, else measured now; None when the probe is off."""
    if spec.validation.lr_probe == "off":
        return None
    stored = store.experiment_view(experiment_id).lr_probe
    if stored is not None:
        return stored
    curve = probe_learning_rate(spec)
    store.record_lr_probe(experiment_id, spec.validation.lr_probe, curve)
    return curve


def _starting_learning_rate(spec: ExperimentSpec, findings: list[Finding], experiment_id: int,
                            probe: ProbeCurve | None) -> tuple[float, str | None]:
    """The first attempt's rate and, when not the configured one, where it came from: the stored one when an
    earlier run already began (its warning policy, approval included, was decided then), else the warning
    policy's answer on the warnings, with the probe's suggestion (`probe`) as its measured rate."""
    view = store.experiment_view(experiment_id)
    first = next(iter(view.attempts), None)
    if first is not None:
        get_run_logger().info("continuing the lineage begun by an earlier run: attempt 1 at lr=%g",
                              first.learning_rate)
        return first.learning_rate, _probe_origin(spec, first.learning_rate) if view.rate_from_probe else None
    warnings = [f for f in findings if f.severity == "warning"]
    measured = probe.suggested_rate if probe is not None else None
    learning_rate = _apply_warning_policy(spec, warnings, experiment_id, measured)
    if probe is not None and measured is None and spec.validation.lr_probe == "pick":
        get_run_logger().warning("the learning-rate probe suggested no rate (%s): training at the configured "
                                 "lr=%g", probe.reason, learning_rate)
    if measured is None or learning_rate != measured:
        return learning_rate, None
    origin = _probe_origin(spec, learning_rate)
    get_run_logger().info("training at %s (validation.lr_probe: %s); the probe read: %s", origin,
                          spec.validation.lr_probe, probe.reason)
    return learning_rate, origin


def _probe_origin(spec: ExperimentSpec, learning_rate: float) -> str:
    """Where attempt 1's rate came from, for the log, the lineage card and the experiment's summary."""
    return f"the learning-rate probe's suggestion {learning_rate:g}, configured {spec.training.learning_rate:g}"


def _refuse(report) -> None:
    """Stop on an invalid config. A submitted one whose experiment waits `pending` (valid where it was submitted,
    not where this flow runs: a relative data path, a file gone since) ends failed with the errors as findings,
    so neither `results` nor the reconciler, which would start it again and again, takes it for waiting."""
    message = "invalid config: " + "; ".join(_warning_lines(report.errors))
    stored = store.experiment_by_hash(report.config_hash) if report.spec is not None else None
    if stored is not None and stored.status == "pending":
        store.replace_findings(stored.id, report.findings)
        _fail(report.spec, stored.id, message, attempts=0)
    raise ExperimentStopped(message)


def _fail(spec: ExperimentSpec, experiment_id: int, message: str, **payload) -> None:
    """End the experiment as failed, say so as an event, and stop the flow run."""
    store.set_experiment_status(experiment_id, "failed", message=message)
    events.emit(events.EXPERIMENT_FAILED, spec.content_hash(), spec.name, reason=message, **payload)
    raise ExperimentStopped(message)


def _execute(spec: ExperimentSpec, findings: list[Finding], experiment_id: int, run_id: str,
             lease: LeaseKeeper) -> None:
    logger = get_run_logger()
    config_hash = spec.content_hash()
    data_findings = check_data(spec)
    store.replace_findings(experiment_id, [*findings, *data_findings])
    data_errors = [f for f in data_findings if f.severity == "error"]
    if data_errors:
        _fail(spec, experiment_id, "bad data: " + "; ".join(_warning_lines(data_errors)), attempts=0)
    probe = _probe(spec, experiment_id)
    if probe is not None:
        findings = [*findings, *probe_findings(spec, probe)]
        store.replace_findings(experiment_id, [*findings, *data_findings])
    learning_rate, origin = _starting_learning_rate(spec, findings, experiment_id, probe)
    results, attempt_ids = _train_with_backoff(spec, experiment_id, learning_rate, run_id, lease, origin)
    final = results[-1]
    if final.status != "succeeded":
        message = (final.reason if final.reason.startswith("bad data:") else
                   f"no attempt succeeded after {len(results)}: last {final.status} "
                   f"at lr={final.learning_rate:g}: {final.reason}")
        _fail(spec, experiment_id, message, attempts=len(results), lr=final.learning_rate)

    evaluation = evaluate(spec, len(results), final.model_uri)
    if "ease" in spec.evaluation.baselines and evaluation.ease is None:
        logger.warning("EASE not measured: %d candidates, more than evaluation.ease_max_candidates (%d)",
                       evaluation.n_candidates, spec.evaluation.ease_max_candidates)
    persist_recall(experiment_id, attempt_ids[-1], evaluation, len(results))
    publish_recall(spec, evaluation)
    below = baseline_finding(evaluation.model, evaluation.popularity)
    if below:
        logger.warning("%s", below.message)
        store.replace_findings(experiment_id, [*findings, *data_findings, below])
        events.emit(events.EVALUATION_BELOW_BASELINE, config_hash, spec.name, ks=below_popularity_ks(
            evaluation.model, evaluation.popularity), recall=evaluation.model, baseline=evaluation.popularity)
        if spec.evaluation.on_below_baseline == "fail":
            _fail(spec, experiment_id, f"refused (evaluation.on_below_baseline: fail): {below.message}",
                  attempts=len(results), lr=final.learning_rate, recall=evaluation.model)
    summary = f"succeeded on attempt {len(results)} at lr={final.learning_rate:g}"
    if origin:
        summary += f"; attempt 1 at {origin}"
    store.set_experiment_status(experiment_id, "succeeded", message=summary)
    events.emit(events.EXPERIMENT_COMPLETED, config_hash, spec.name, attempts=len(results),
                lr=final.learning_rate, recall=evaluation.model, baseline=evaluation.popularity)
    k = 10 if 10 in evaluation.model else min(evaluation.model)
    logger.info("%s; recall@%d %.4f vs popularity %.4f%s", summary, k, evaluation.model[k],
                evaluation.popularity[k], f"; {below.message.split(' (')[0]}" if below else "")
