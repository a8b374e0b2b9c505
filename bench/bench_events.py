"""Benchmark the event-driven path on one machine: how long from `towerflow submit` to training.

Starts `towerflow serve` (its own `prefect server start`, both deployments served, 1 s polling),
then submits N tiny configs one after another (tiny synthetic data, 1 epoch; each a new content
hash) and waits for each experiment to end. From the `towerflow.config.submitted` event times and
the Prefect flow-run start/end times it prints, per submission and as medians:

  submit -> orchestrator   event occurred -> run-experiment flow run started
  orchestrator -> trainer  run-experiment started -> first training attempt started
  submit -> training       event occurred -> first training attempt started   (goal: median < 5 s)
  end to end               event occurred -> run-experiment ended
  training                 the attempts' own durations (the baseline: work, not overhead)

A training attempt is the train-attempt task run inside the orchestrator's flow run (serve's default
on one machine), or with --dispatch the train-attempt flow run it dispatches to (as on a GPU pool).

    .venv/bin/python bench/bench_events.py            # 5 submissions, attempts in-process
    .venv/bin/python bench/bench_events.py --dispatch --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from flows.prefect_api import (
    API_URL_FILE,
    api_answers,
    post_json,
    read_events,
    read_flow_runs,
    read_task_runs,
    start_process,
    stop_process,
)

BIN = Path(sys.executable).parent
SUBMITTED = "towerflow.config.submitted"


def tiny_config(seed: int) -> dict:
    data = "customers=300&products=60&transactions=3000&clusters=4&seed=7"
    return {
        "name": f"bench-events-{seed}",
        "data": {"transactions": f"synthetic-retail://transactions?{data}",
                 "products": f"synthetic-retail://products?{data}"},
        "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 8}],
        "product_features": [{"column": "product_id", "type": "id", "embedding_dim": 8, "is_primary_id": True}],
        "model": {"output_dim": 8, "buyer_layers": [{"units": 8}], "product_layers": [{"units": 8}]},
        "training": {"learning_rate": 0.05, "epochs": 1, "batch_size": 512, "seed": seed},
        "evaluation": {"ks": [10]},
    }


def wait_for_api(home: Path, timeout_s: float = 180) -> str:
    record = home / "prefect" / API_URL_FILE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if record.exists() and api_answers(record.read_text().strip()):
            return record.read_text().strip()
        time.sleep(0.5)
    raise RuntimeError(f"towerflow serve did not record a live API in {record}")


def wait_for_deployments(api_url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        names = {d["name"] for d in post_json(api_url, "/deployments/filter", {})}
        if {"run-experiment", "train-attempt"} <= names:
            return
        time.sleep(0.5)
    raise RuntimeError("towerflow serve did not create its deployments")


def wait_until_ended(api_url: str, config_hash: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in read_flow_runs(api_url, "run-experiment") if config_hash in r["parameters"]["config"]]
        if runs and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED") for r in runs):
            return
        time.sleep(1)
    raise RuntimeError(f"the experiment of {config_hash} did not end within {timeout_s}s")


def when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def attempts_of(api_url: str, dispatched: bool) -> dict[str, list[dict]]:
    """The training attempts by orchestrator flow-run id: trainer flow runs, or train-attempt task runs."""
    by_run: dict[str, list[dict]] = {}
    if dispatched:
        for run in read_flow_runs(api_url, "train-attempt"):  # workdir: <root>/<hash>/<orchestrator run>/attempt-N
            by_run.setdefault(run["parameters"]["workdir"].split("/")[-2], []).append(run)
    else:
        for task_run in read_task_runs(api_url, " / attempt "):
            by_run.setdefault(task_run["flow_run_id"], []).append(task_run)
    return by_run


def measure(api_url: str, hashes: list[str], dispatched: bool) -> list[dict[str, float]]:
    events = read_events(api_url, SUBMITTED)
    submitted = {e["resource"]["prefect.resource.id"].rsplit(".", 1)[1]: when(e["occurred"]) for e in events}
    orchestrators = read_flow_runs(api_url, "run-experiment")
    attempts_by_run = attempts_of(api_url, dispatched)
    rows = []
    for config_hash in hashes:
        (run,) = [r for r in orchestrators if config_hash in r["parameters"]["config"]]
        attempts = attempts_by_run[run["id"]]
        first = min(when(t["start_time"]) for t in attempts)
        rows.append({
            "submit -> orchestrator": (when(run["start_time"]) - submitted[config_hash]).total_seconds(),
            "orchestrator -> trainer": (first - when(run["start_time"])).total_seconds(),
            "submit -> training": (first - submitted[config_hash]).total_seconds(),
            "end to end": (when(run["end_time"]) - submitted[config_hash]).total_seconds(),
            "training": sum(t["total_run_time"] for t in attempts),
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dispatch", action="store_true", help="serve --dispatch: attempts as trainer flow runs")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "TOWERFLOW_TRAINER_DEPLOYMENT")}
    env.update(TOWERFLOW_HOME=str(tmp / "home"), TOWERFLOW_DATABASE_URL=f"sqlite:///{tmp / 'towerflow.db'}",
               PREFECT_HOME=str(tmp / "prefect-clients"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_RUNNER_POLL_FREQUENCY="1")
    started = time.monotonic()
    serve_args = [str(BIN / "towerflow"), "serve", *(["--dispatch"] if args.dispatch else [])]
    serve = start_process(serve_args, env, tmp / "serve.log")
    try:
        api_url = wait_for_api(tmp / "home")
        wait_for_deployments(api_url)
        print(f"towerflow serve ready in {time.monotonic() - started:.1f}s (API {api_url}); logs in {tmp}")
        env["PREFECT_API_URL"] = api_url
        hashes = []
        for seed in range(1, args.runs + 1):
            path = tmp / f"config-{seed}.yaml"
            path.write_text(yaml.safe_dump(tiny_config(seed)))
            t0 = time.monotonic()
            done = subprocess.run([str(BIN / "towerflow"), "submit", str(path), "--json"], env=env,
                                  capture_output=True, text=True, check=True)
            submit_s = time.monotonic() - t0
            config_hash = json.loads(done.stdout)["config_hash"]
            hashes.append(config_hash)
            wait_until_ended(api_url, config_hash)
            print(f"submission {seed}: {config_hash} (the submit command took {submit_s:.1f}s)", flush=True)
        rows = measure(api_url, hashes, args.dispatch)
    finally:
        stop_process(serve)
    columns = list(rows[0])
    mode = "attempts dispatched to train-attempt" if args.dispatch else "attempts in-process"
    print(f"\nseconds per submission (local server, 1 s polling, tiny config, 1 epoch, {mode}):")
    print("  ".join(f"{c:>24}" for c in ["#", *columns]))
    for number, row in enumerate(rows, 1):
        print("  ".join([f"{number:>24}", *(f"{row[c]:>24.2f}" for c in columns)]))
    medians = {c: statistics.median(r[c] for r in rows) for c in columns}
    print("  ".join([f"{'median':>24}", *(f"{medians[c]:>24.2f}" for c in columns)]))
    overhead = medians["end to end"] - medians["training"]
    print(f"\nmedian submit -> training start {medians['submit -> training']:.2f}s (goal < 5 s); "
          f"end to end {medians['end to end']:.2f}s = {medians['end to end'] / medians['training']:.1f}x "
          f"the training runs' own time ({overhead:.2f}s of orchestration)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
