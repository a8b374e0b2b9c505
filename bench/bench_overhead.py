"""Orchestration overhead of `towerflow run`: the wall time that is not spent inside training attempts.

Runs `towerflow run CONFIG --force` twice in a subprocess with a fresh TOWERFLOW_HOME, database and
PREFECT_HOME, and times each from outside: the first ("cold") creates Prefect's database (its
migrations take most of a fresh machine's first run); the second ("warm") is every later run.
Then it reads that run's task runs from the Prefect database it left behind and the epochs from the
towerflow database, and prints:

  wall            the subprocess, start to exit: Python, imports, the ephemeral Prefect API, everything
  attempts        the train-attempt task runs, start to end: data, towers, epochs, checkpoints, export
    epochs        of which the stored epoch seconds (the rest is the attempts' setup and export)
  evaluation      the evaluate task run: recall@k over unique products and the popularity baseline
  overhead        wall - attempts, as a share of wall (goal < 10 %); and without evaluation too
  where the overhead goes: before the run-experiment flow run starts (Python, imports, starting the
                  ephemeral Prefect API), inside the flow run but outside its tasks, after it ends
  imports         a baseline measured in the same run: a fresh `python -c "import flows.experiment"`

    .venv/bin/python bench/bench_overhead.py                              # examples/movielens.yaml
    .venv/bin/python bench/bench_overhead.py --set training.epochs=1      # quicker, overhead weighs more
    .venv/bin/python bench/bench_overhead.py --config examples/collapse_demo.yaml
    .venv/bin/python bench/bench_overhead.py --api-url http://127.0.0.1:4200/api   # a running server
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def fresh_environment(tmp: Path, api_url: str | None) -> dict[str, str]:
    """This process's environment with its own towerflow home and database, and Prefect either
    ephemeral (its own PREFECT_HOME) or the running API at `api_url`."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "TOWERFLOW_TRAINER_DEPLOYMENT", "TOWERFLOW_ARTIFACTS")}
    env.update(TOWERFLOW_HOME=str(tmp / "home"), TOWERFLOW_DATABASE_URL=f"sqlite:///{tmp / 'towerflow.db'}",
               PREFECT_HOME=str(tmp / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Start (epoch seconds), duration and exit code of `command` (its output goes to `log`)."""
    started, clock = time.time(), time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
    return started, time.perf_counter() - clock, code


def prefect_runs() -> tuple[float, float, dict[str, float]]:
    """From the Prefect database in PREFECT_HOME: the latest flow run's start and end (epoch seconds),
    and seconds per task function (train_attempt, evaluate, ...) summed over its task runs."""
    from prefect.client.orchestration import get_client

    totals: dict[str, float] = defaultdict(float)
    with get_client(sync_client=True) as client:
        flow_run = max(client.read_flow_runs(), key=lambda run: run.start_time)
        for run in client.read_task_runs():
            if run.flow_run_id == flow_run.id and run.start_time and run.end_time:
                function = run.task_key.rsplit("-", 1)[0]  # task_key is "<function qualname>-<code hash>"
                totals[function] += (run.end_time - run.start_time).total_seconds()
    return flow_run.start_time.timestamp(), flow_run.end_time.timestamp(), dict(totals)


def epoch_seconds() -> tuple[float, int, str]:
    """Sum of the stored epoch seconds, the number of attempts, and the experiment's status."""
    from tasks import store

    (experiment,) = store.list_experiments()
    detail = store.experiment_detail(experiment.id)
    seconds = sum(float(e["seconds"]) for a in detail["attempts"] for e in a["epochs"])
    return seconds, len(detail["attempts"]), experiment.status


def measure(label: str, command: list[str], env: dict[str, str], log: Path) -> None:
    """Run `command` once and print where its wall time went."""
    started, wall, code = timed(command, env, log)
    os.environ.update(env)  # read what the run left: its Prefect database and its towerflow database
    flow_start, flow_end, tasks = prefect_runs()
    epochs, attempts_made, status = epoch_seconds()
    attempts = tasks.get("train_attempt", 0.0)
    evaluation = tasks.get("evaluate", 0.0)
    others = {name: seconds for name, seconds in sorted(tasks.items()) if name not in ("train_attempt", "evaluate")}

    print(f"\n{label}: exit {code}, experiment {status}, {attempts_made} attempt(s)  (log: {log})")
    rows = [
        ("wall (towerflow run, subprocess)", wall),
        (f"attempts ({attempts_made} train-attempt task runs)", attempts),
        ("  of which epochs (stored seconds)", epochs),
        ("  of which setup and export", attempts - epochs),
        ("evaluation (evaluate task run)", evaluation),
        *((f"other tasks: {name}", seconds) for name, seconds in others.items()),
        ("before the flow run (imports, Prefect API start)", flow_start - started),
        ("in the flow run, outside its tasks", flow_end - flow_start - sum(tasks.values())),
        ("after the flow run (API stop, exit)", started + wall - flow_end),
    ]
    for row_label, seconds in rows:
        print(f"  {row_label:<48} {seconds:8.2f} s")
    overhead, without_evaluation = wall - attempts, wall - attempts - evaluation
    print(f"  overhead = wall - attempts = {overhead:.2f} s = {100 * overhead / wall:.1f} % of wall (goal < 10 %)")
    print(f"  without evaluation        = {without_evaluation:.2f} s = {100 * without_evaluation / wall:.1f} % of wall")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "examples" / "movielens.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to towerflow run (repeatable)")
    parser.add_argument("--api-url", help="a running Prefect API (e.g. towerflow serve's) instead of an ephemeral one")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    env = fresh_environment(tmp, args.api_url)

    _, imports_s, _ = timed([sys.executable, "-c", "import flows.experiment"], env, tmp / "imports.log")
    print(f"baseline: python -c 'import flows.experiment' {imports_s:.2f} s")
    command = [str(BIN / "towerflow"), "run", args.config, "--force"]
    command += [item for override in args.overrides for item in ("--set", override)]
    print(f"running: {' '.join(command)}", flush=True)
    name = f"{Path(args.config).name} {' '.join(args.overrides)}".strip()
    if args.api_url:
        measure(f"{name}, against the running API {args.api_url}", command, env, tmp / "run.log")
        return 0
    measure(f"{name}, cold (new Prefect database)", command, env, tmp / "run-cold.log")
    measure(f"{name}, warm (Prefect database exists)", command, env, tmp / "run-warm.log")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
