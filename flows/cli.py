"""The `towerflow` command: one subcommand per function, each registered in `build_parser`.

This module imports neither TensorFlow nor Prefect; a command that needs them imports them inside
its own function, so `towerflow validate` stays fast. Exit codes: 0 success, 1 failure,
2 invalid config or usage. An expected failure (a dead API or database, an unusable home directory)
is one line on stderr and exit 1 (an error with an `exit_code`, a bad sweep grid, exits with that);
`--debug` (or TOWERFLOW_DEBUG=1) shows its traceback too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from flows.local import debugging
from tasks.outage import PrefectAPILost, lost_api
from trainer.errors import ExpectedError, Resumable
from trainer.validation import ValidationReport, validate_config

if TYPE_CHECKING:
    from tasks.store import Experiment

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
RESUMABLE = {  # what a Ctrl-C or SIGTERM leaves, for commands that a rerun continues
    "run": "its checkpoints are kept: the same `towerflow run` continues it from the last one",
    "sweep": "the same `towerflow sweep` continues its points from their last checkpoints",
}


def validate_command(args: argparse.Namespace) -> int:
    """`towerflow validate CONFIG [--data]`: report findings; exit 0 when valid (warnings allowed), 2 otherwise."""
    report = validate_config(args.config, args.overrides, check_data=args.data)
    if args.json:
        print(report.model_dump_json(indent=2))
    elif report.spec is None:
        for finding in report.findings:
            where = f"{finding.field}: " if finding.field else ""
            print(f"{report.source}: {where}{finding.message}", file=sys.stderr)
    else:
        print(render_report(report))
    return EXIT_OK if report.ok else EXIT_INVALID


class UnreachableAPI(ExpectedError):
    """PREFECT_API_URL is set and nothing answers there."""


def preflight(*, api: bool = True, ephemeral_prefect: bool = False) -> None:
    """Fail in seconds, in one line, before Prefect or TensorFlow start: an unusable TOWERFLOW_HOME (or,
    for an ephemeral API, PREFECT_HOME), a PREFECT_API_URL that does not answer (`api`), an unreachable
    database."""
    from flows.prefect_api import api_answers
    from tasks import store
    from tasks.settings import towerflow_home, usable_directory

    towerflow_home()
    api_url = os.environ.get("PREFECT_API_URL")
    if api and api_url and not api_answers(api_url, timeout=5.0):
        raise UnreachableAPI(f"PREFECT_API_URL={api_url} does not answer")
    if ephemeral_prefect and not api_url:
        usable_directory(Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser(), "PREFECT_HOME")
    store.check_database()


def run_command(args: argparse.Namespace) -> int:
    """`towerflow run CONFIG`: the whole experiment flow in this process; 0 succeeded, 1 failed, 2 invalid."""
    report = validate_config(args.config, args.overrides)
    if not report.ok:  # fail before booting Prefect or TensorFlow
        print(render_report(report), file=sys.stderr)
        return EXIT_INVALID
    preflight(ephemeral_prefect=True)
    from flows.local import local_prefect

    with local_prefect():
        from flows.experiment import run_experiment
        from flows.present import render_experiment
        from tasks import store

        state = run_experiment(_config_source(args.config), args.overrides, args.force, return_state=True)
        failure = None if state.is_completed() else state.result(raise_on_failure=False)
        with store.retrying_for(0):  # show what is stored, if the database answers now
            try:
                experiment = store.find_experiment(report.config_hash)
                if experiment is not None:
                    print()
                    print(render_experiment(store.experiment_view(experiment.id), _unowned(experiment)))
            except store.DatabaseUnavailable:
                pass
        if state.is_cancelled():
            print(f"\nexperiment stopped: {state.message}", file=sys.stderr)
            return EXIT_FAILED
        if failure is not None:
            reason = failure if isinstance(failure, ExpectedError) else state.message
            if isinstance(failure, store.DatabaseUnavailable):
                reason = f"{reason} (what was trained is kept on disk: run again once it answers, nothing retrains)"
            ended = "stopped" if isinstance(failure, Resumable) else "failed"  # a rerun continues it
            print(f"\nexperiment {ended}: {reason}", file=sys.stderr)
            if isinstance(failure, PrefectAPILost):
                leave_now(EXIT_FAILED)
            return EXIT_FAILED
        summary = state.result()
        if summary.get("live_run"):
            print(f"\n(flow run {summary['live_run']} is running this exact config now; not started twice)")
        elif summary["reused"]:
            print("\n(stored result of an earlier run of this exact config; --force runs it again)")
        return EXIT_OK if summary["experiment"]["status"] == "succeeded" else EXIT_FAILED


def _config_source(config: str) -> str:
    """An absolute path for local files, so a deployment or worker elsewhere reads the same file."""
    from pathlib import Path

    return config if "://" in config else str(Path(config).resolve())


def sweep_command(args: argparse.Namespace) -> int:
    """`towerflow sweep CONFIG --grid k=v1,v2 ...`: every grid point checked before anything is written, then
    run here one after another (or `--submit`ted); 0 when every point succeeded, 1 otherwise, 2 invalid."""
    from trainer.spec import SpecError
    from trainer.sweep import load_sweep

    source = _config_source(args.config)
    try:
        sweep = load_sweep(source, args.overrides, args.grid, args.max_points)
    except SpecError as error:
        print(f"towerflow sweep: {error}", file=sys.stderr)
        return EXIT_INVALID
    reports = [validate_config(point.config, point.overrides) for point in sweep.points]
    for point, report in zip(sweep.points, reports):
        if not report.ok:
            print(f"point {point.name}: " + render_report(report), file=sys.stderr)
            return EXIT_INVALID
    if args.submit:
        return _submit_sweep(sweep, reports)
    preflight(ephemeral_prefect=True)
    from flows.local import local_prefect

    with local_prefect():
        from flows.present import render_leaderboard
        from flows.sweep import record, run_sweep
        from tasks import store

        state = run_sweep(source, args.overrides, args.grid, args.max_points, args.k, return_state=True)
        if not state.is_cancelled():
            state.result()  # a sweep that failed outside its points raises, as it always did
        view = store.sweep_view(record(sweep))
        print()
        print(render_leaderboard(view, args.k))
        if state.is_cancelled():
            print(f"\nsweep stopped: {state.message}", file=sys.stderr)
            return EXIT_FAILED
        print(f"\n(towerflow results --sweep {sweep.name} ranks them again; towerflow compare NAME NAME ... "
              "compares points)")
    return EXIT_OK if all(p.status == "succeeded" for p in view.points) else EXIT_FAILED


def _submit_sweep(sweep, reports: list[ValidationReport]) -> int:
    """Submit every point to the deployments (needs a Prefect API, as `towerflow submit`)."""
    from flows.prefect_api import api_answers, use_found_api
    from flows.submit import NO_API
    from flows.sweep import submit_sweep

    preflight(api=False)
    api_url = use_found_api()
    if api_url is None or not api_answers(api_url):
        print(NO_API if api_url is None else f"the Prefect API at {api_url} does not answer: nothing submitted",
              file=sys.stderr)
        return EXIT_FAILED
    sweep_id, submissions = submit_sweep(sweep, reports)
    print(f"sweep {sweep_id} {sweep.name!r}: submitted {len(submissions)} points")
    for submission in submissions:
        again = "" if submission.created else f" (submitted before; {submission.status})"
        print(f"  {submission.name}: experiment {submission.experiment_id}, hash {submission.config_hash}{again}")
    print(f"follow them with: towerflow results --sweep {sweep.name}")
    return EXIT_OK


def compare_command(args: argparse.Namespace) -> int:
    """`towerflow compare A B [C...]`: the spec fields that differ, recall@k side by side, attempts and epochs;
    `--html PATH` writes the comparison page with the loss curves overlaid. 2 when one is unknown."""
    import json

    from flows.present import render_comparison
    from tasks import store
    from tasks.views import Comparison

    if len(args.experiments) < 2:
        print("towerflow compare: give two or more experiments", file=sys.stderr)
        return EXIT_INVALID
    preflight(api=False)
    experiments = []
    for key in args.experiments:
        found = _stored_experiment("compare", key)
        if found is None:
            return EXIT_INVALID
        experiments.append(found)
    comparison = Comparison(experiments=[store.experiment_view(e.id) for e in experiments])
    if args.html:
        from tasks.html_report import write_comparison

        written = write_comparison(comparison, args.html)
    print(json.dumps(comparison.summary(), indent=2) if args.json else render_comparison(comparison))
    if args.html:
        print(written, file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def results_command(args: argparse.Namespace) -> int:
    """`towerflow results [NAME|ID]`: experiments, or one experiment's attempts and recall;
    `--sweep NAME`: the sweep's points ranked by recall@k."""
    import json

    from flows.present import render_experiment, render_experiment_list
    from tasks import store

    preflight(api=False)
    if args.sweep is not None:
        return _sweep_results(args)
    if args.experiment is None:
        experiments = [store.as_dict(e) | {"unowned": _unowned(e)} for e in store.list_experiments()]
        print(json.dumps(experiments, indent=2) if args.json else render_experiment_list(experiments))
        return EXIT_OK
    experiment = _stored_experiment("results", args.experiment)
    if experiment is None:
        return EXIT_INVALID
    unowned = _unowned(experiment)
    if args.json:
        detail = store.experiment_detail(experiment.id)
        print(json.dumps(detail | {"experiment": detail["experiment"] | {"unowned": unowned}}, indent=2))
    else:
        view = store.experiment_view(experiment.id)
        print(render_experiment(view, unowned, _checkpointed(view)))
    return EXIT_OK


def _checkpointed(view) -> dict[int, list]:
    """The epochs each running attempt of `view` has checkpointed so far, read from its workdir."""
    from tasks.settings import artifacts_root, attempt_workdir
    from trainer.results import checkpointed_epochs

    try:
        root = artifacts_root(view.experiment.spec.get("artifacts"))
    except ExpectedError:  # TOWERFLOW_ARTIFACTS is refused: the run that trains says so; the rest still shows
        return {}
    experiment = view.experiment
    return {a.number: checkpointed_epochs(attempt_workdir(root, experiment.config_hash, a.number))
            for a in view.attempts if a.status == "running"}


def _unowned(experiment) -> str | None:
    """Why nobody is working on an unfinished experiment (its run was killed or interrupted), or None."""
    from flows.ownership import gone_reason
    from tasks import store

    if experiment.status not in store.ACTIVE_STATUSES or experiment.flow_run_id is None:
        return None
    return gone_reason(experiment, ask_prefect=False)


def _sweep_results(args: argparse.Namespace) -> int:
    import json

    from flows.present import render_leaderboard
    from tasks import store

    sweep = _stored("results", args.sweep, store.find_sweep, "sweep")
    if sweep is None:
        return EXIT_INVALID
    view = store.sweep_view(sweep.id)
    if view.ks and args.k not in view.ks:
        print(f"towerflow results: recall@{args.k} was not measured in sweep {sweep.name!r} "
              f"(measured: {', '.join(map(str, view.ks))})", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps({"sweep": view.sweep.model_dump(mode="json"), "k": args.k,
                          "progress": view.progress().model_dump(),
                          "leaderboard": [row.model_dump() for row in view.leaderboard(args.k)]}, indent=2))
    else:
        print(render_leaderboard(view, args.k))
    return EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    """`towerflow report NAME|ID [--out PATH] [--serve]`: write the experiment's HTML report and print its URI;
    with --serve, serve it on 127.0.0.1 and print its http:// URL until Ctrl-C."""
    from tasks import store
    from tasks.html_report import report_filename, write_report
    from tasks.settings import towerflow_home

    preflight(api=False)
    experiment = _stored_experiment("report", args.experiment)
    if experiment is None:
        return EXIT_INVALID
    view = store.experiment_view(experiment.id)
    path = Path(args.out) if args.out else towerflow_home() / "reports" / report_filename(view)
    written = write_report(view, path)
    if not args.serve:
        print(written)
        return EXIT_OK
    from flows.report_server import ReportServer

    with ReportServer(Path(path).resolve().parent, port=args.port) as server:
        print(f"serving {server.url_of(path.resolve())} (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def _stored(command: str, key: str, find: Callable[[str], Any], noun: str) -> Any:
    """The row `find` gives for `key` (a name, number or hash prefix); None (said on stderr) when there is none."""
    try:
        row = find(key)
    except LookupError as exc:
        print(f"towerflow {command}: {exc}", file=sys.stderr)
        return None
    if row is None:
        print(f"towerflow {command}: no {noun} named or numbered {key!r}", file=sys.stderr)
    return row


def _stored_experiment(command: str, key: str) -> Experiment | None:
    """The experiment named, numbered or hash-prefixed by `key`; None (said on stderr) when there is none."""
    from tasks import store

    return _stored(command, key, store.find_experiment, "experiment")


def render_report(report: ValidationReport) -> str:
    """Findings grouped by severity, one line each (field path, message, code), suggestions indented."""
    errors, warnings = report.errors, report.warnings
    verdict = "valid" if report.ok else "INVALID"
    lines = [f"{report.source}: {verdict} ({_count(errors, 'error')}, {_count(warnings, 'warning')})"]
    for title, findings in (("Errors", errors), ("Warnings", warnings)):
        if findings:
            lines.append(f"{title}:")
        for finding in findings:
            lines.append(f"  {finding.field}: {finding.message} [{finding.code}]")
            if finding.suggestion:
                lines.append(f"      suggestion: {finding.suggestion}")
    if report.spec is not None:
        lines.append(f"experiment {report.spec.name!r}, config hash {report.config_hash}")
    return "\n".join(lines)


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG and repeated --set key.path=value, shared by every command that takes a config."""
    parser.add_argument("config", metavar="CONFIG", help="experiment spec: a YAML/JSON path or URI (gs://...)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set training.learning_rate=0.01 (repeatable)",
    )


def submit_command(args: argparse.Namespace) -> int:
    """`towerflow submit CONFIG`: validate, store by content hash, emit `towerflow.config.submitted`; a config
    with a `sweep:` block submits every point of its grid."""
    from flows.submit import submit_command as submit
    from trainer.sweep import has_sweep_block

    if has_sweep_block(args.config):
        return sweep_command(argparse.Namespace(config=args.config, overrides=args.overrides, grid=[],
                                                max_points=None, submit=True, k=10))

    preflight(api=False)  # submit checks the API it finds itself
    return submit(args.config, args.overrides, args.json)


def serve_command(args: argparse.Namespace) -> int:
    """`towerflow serve`: a local Prefect API and both deployments with their triggers, until Ctrl-C."""
    from flows.serve import serve_command as serve

    preflight()
    return serve(dispatch=args.dispatch, max_training=args.max_training)


def watch_command(args: argparse.Namespace) -> int:
    """`towerflow watch DIR|gs://prefix`: submit new or changed configs, by content hash."""
    from flows.watch import watch_command as watch

    preflight(api=False)
    return watch(args.location, args.interval, args.once)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="towerflow", description="Train and evaluate two-tower retrieval models, orchestrated by Prefect."
    )
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of expected errors too (also TOWERFLOW_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check a config (and its data's columns) without training",
        description="Check a config and its data's columns. Exit 0 when valid (warnings allowed), 2 otherwise.",
    )
    _add_config_arguments(validate)
    validate.add_argument("--json", action="store_true", help="print a machine-readable report")
    validate.add_argument("--data", action="store_true",
                          help="also load the data and run the flow's data check (non-finite numbers, blank ids, "
                               "too little data, cold start), still without TensorFlow or Prefect")
    validate.set_defaults(handler=validate_command)

    run = commands.add_parser(
        "run",
        help="run a whole experiment now, in this process",
        description="Validate, train with automatic learning-rate backoff, evaluate and store one experiment. "
        "Exit 0 succeeded, 1 failed, 2 invalid config.",
    )
    _add_config_arguments(run)
    run.add_argument("--force", action="store_true", help="run again even if this exact config already ran")
    run.set_defaults(handler=run_command)

    sweep = commands.add_parser(
        "sweep",
        help="run (or submit) one experiment per point of a grid over spec fields",
        description="Expand --grid options (and the config's sweep: block) into one experiment per point, "
        "check every point, then run them here one after another, or --submit them to the deployments. "
        "A finished point is never trained again. Exit 0 every point succeeded, 1 some did not, "
        "2 invalid grid or config.",
    )
    _add_config_arguments(sweep)
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="a spec field and its values, e.g. --grid training.learning_rate=0.3,0.1 (repeatable)")
    sweep.add_argument("--max-points", type=_positive_int, metavar="N",
                       help="refuse a grid of more than N points (default: sweep.max_points, else 64)")
    sweep.add_argument("--submit", action="store_true",
                       help="submit the points to the deployments (as towerflow submit) instead of running them here")
    sweep.add_argument("--k", type=_positive_int, default=10, help="rank the leaderboard by recall@K (default 10)")
    sweep.set_defaults(handler=sweep_command)

    results = commands.add_parser("results", help="show stored experiments, attempts and recall")
    results.add_argument("experiment", nargs="?", metavar="NAME|ID", help="an experiment's name, id or hash prefix")
    results.add_argument("--sweep", metavar="NAME|ID", help="a sweep's leaderboard: its points ranked by recall@k")
    results.add_argument("--k", type=_positive_int, default=10, help="with --sweep: rank by recall@K (default 10)")
    results.add_argument("--json", action="store_true", help="print machine-readable JSON")
    results.set_defaults(handler=results_command)

    report = commands.add_parser(
        "report",
        help="write one experiment's self-contained HTML report",
        description="Write an HTML page (no network needed to view it) with each attempt's loss and gradient "
        "norms, the learning-rate lineage, recall@k against popularity and the findings; print its URI. "
        "Exit 2 when no experiment matches.",
    )
    report.add_argument("experiment", metavar="NAME|ID", help="an experiment's name, id or hash prefix")
    report.add_argument("--out", metavar="PATH", help="where to write (default $TOWERFLOW_HOME/reports/NAME-ID.html)")
    report.add_argument("--serve", action="store_true", help="serve it on 127.0.0.1 and print its http:// URL")
    report.add_argument("--port", type=int, default=0, help="port for --serve (default: a free one)")
    report.set_defaults(handler=report_command)

    compare = commands.add_parser(
        "compare",
        help="compare experiments: the spec fields that differ, recall@k, attempts and epochs",
        description="Show only the spec fields that differ (dotted paths), recall@k side by side with the lift "
        "over popularity, attempts and epochs. Exit 2 when an experiment is unknown.",
    )
    compare.add_argument("experiments", nargs="+", metavar="NAME|ID", help="two or more experiments")
    compare.add_argument("--json", action="store_true", help="print machine-readable JSON")
    compare.add_argument("--html", metavar="PATH", help="also write an HTML comparison (loss curves overlaid)")
    compare.set_defaults(handler=compare_command)

    submit = commands.add_parser(
        "submit",
        help="validate a config and emit towerflow.config.submitted (run by `serve` or the workers)",
        description="Validate CONFIG; exit 2 on errors before anything is stored. Otherwise store it by "
        "content hash, record the experiment and emit towerflow.config.submitted to the Prefect API "
        "(PREFECT_API_URL, else the one `towerflow serve` started).",
    )
    _add_config_arguments(submit)
    submit.add_argument("--json", action="store_true", help="print the submission or the errors as JSON")
    submit.set_defaults(handler=submit_command)

    serve = commands.add_parser(
        "serve",
        help="serve the deployments with their triggers on a local Prefect API (one machine, no workers)",
        description="Start or reuse a local Prefect API on 127.0.0.1 and serve run-experiment (triggered by "
        "towerflow.config.submitted) and train-attempt in this process until Ctrl-C. Attempts run in the "
        "orchestrator's flow run unless --dispatch.",
    )
    serve.add_argument("--dispatch", action="store_true",
                       help="run each attempt as a flow run of train-attempt (as on a GPU pool) instead of in-process")
    serve.add_argument("--max-training", type=_positive_int, metavar="N",
                       default=int(os.environ.get("TOWERFLOW_MAX_TRAINING", "1")),
                       help="at most N attempts train at once; the rest wait for a slot "
                            "(default 1, or TOWERFLOW_MAX_TRAINING)")
    serve.set_defaults(handler=serve_command)

    watch = commands.add_parser(
        "watch",
        help="submit new or changed configs from a folder or gs:// prefix",
        description="Submit every *.yaml, *.yml and *.json config under LOCATION whose content hash was not "
        "submitted before; report broken files and skip them.",
    )
    watch.add_argument("location", metavar="LOCATION", help="a folder or a URL prefix (gs://bucket/configs)")
    watch.add_argument("--interval", type=float, default=5.0, help="seconds between scans (default 5)")
    watch.add_argument("--once", action="store_true", help="scan once and exit")
    watch.set_defaults(handler=watch_command)

    return parser


def leave_now(code: int) -> NoReturn:
    """Exit at once, once the Prefect API is gone: Prefect's exit handlers would spend a minute or more
    retrying to send it the logs and events it can no longer take (the ephemeral server, if any, is
    stopped by its watcher when this process is gone)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Terminated(BaseException):
    """SIGTERM (`docker stop`, a drained node, systemd), raised where the signal lands, as Ctrl-C raises
    KeyboardInterrupt; a BaseException, so that no `except Exception` on the way out swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def terminated_as_exception(command: str) -> Iterator[None]:
    """For a command a rerun continues, SIGTERM raises Terminated instead of ending the process on the spot,
    so the command says so in one line and stops what it started. A flow run takes SIGTERM over while it
    runs (its run is recorded as interrupted) and sends it again to this handler once it has done so."""
    if command not in RESUMABLE or threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: object) -> NoReturn:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        os.environ["TOWERFLOW_DEBUG"] = "1"
    try:
        with terminated_as_exception(args.command):
            return args.handler(args)
    except BrokenPipeError:  # `towerflow results | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except ExpectedError as error:
        if debugging():
            raise
        print(f"towerflow {args.command}: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_FAILED)
    except Exception as error:  # the Prefect API went away under a command that needed it: one line
        lost = lost_api(error)
        if lost is None or debugging():
            raise
        print(f"towerflow {args.command}: {lost}", file=sys.stderr)
        leave_now(EXIT_FAILED)
    except KeyboardInterrupt:  # Ctrl-C: one line, not the traceback of wherever it landed
        if debugging():
            raise
        after = f"; {RESUMABLE[args.command]}" if args.command in RESUMABLE else ""
        print(f"\ntowerflow {args.command}: interrupted{after}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as stop:
        if debugging():
            raise
        print(f"towerflow {args.command}: terminated by {stop}; {RESUMABLE[args.command]}", file=sys.stderr)
        return 128 + stop.signum  # as a shell reports a process ended by the signal


if __name__ == "__main__":
    sys.exit(main())
