"""Recovery and training concurrency, measured on real processes (issue: no experiment is ever lost).

1. `towerflow run` killed with SIGKILL after epoch K (three kills at different epochs), then run again:
   seconds from the restart to "resuming attempt N at epoch K", and epochs lost (completed before the kill but
   not restored; the goal is 0: at most the epoch in progress is lost).
2. `towerflow serve` killed with SIGKILL (its process group) mid-attempt, then started again: seconds
   from the restart to "resuming attempt N at epoch K" (the reconciler's start-up run, the takeover, and the wait
   for the dead run's training slot to lapse).
3. Ten submissions to one `serve`, `--max-training 1` against `--max-training 10`: total wall time and
   the mean seconds one attempt spends training (slot acquired -> released), same run, same configs.

    .venv/bin/python bench/bench_recovery.py [--only run|serve|limits]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from flows.prefect_api import API_URL_FILE, api_answers, post_json, start_process, stop_process

ROOT = Path(__file__).resolve().parents[1]
TOWERFLOW = str(Path(sys.executable).parent / "towerflow")
DATA = "synthetic-retail://{}?customers=2000&products=200&transactions=60000&clusters=4&seed=3"
TINY = "synthetic-retail://{}?customers=300&products=60&transactions=4000&clusters=4&seed=3"


def config(path: Path, name: str, epochs: int, data: str = DATA, seed: int = 42) -> str:
    spec = {
        "name": name,
        "data": {"transactions": data.format("transactions"), "products": data.format("products")},
        "buyer_features": [{"column": "customer_id", "type": "id", "embedding_dim": 8}],
        "product_features": [{"column": "product_id", "type": "id", "embedding_dim": 8, "is_primary_id": True}],
        "model": {"output_dim": 8, "buyer_layers": [{"units": 8}], "product_layers": [{"units": 8}]},
        "training": {"learning_rate": 0.05, "epochs": epochs, "batch_size": 128, "seed": seed},
        "evaluation": {"ks": [5, 10]},
    }
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "TOWERFLOW_DATABASE_URL")}
    env.update(TOWERFLOW_HOME=str(home / "home"), PREFECT_HOME=str(home / "prefect"),
               TOWERFLOW_DATABASE_URL=f"sqlite:///{home / 'towerflow.db'}", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def wait_until(check, timeout_s: float = 600.0, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise TimeoutError("gave up waiting")


def read(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def epochs_done(log: Path) -> int:
    return max((int(e) for e in re.findall(r"epoch (\d+)/\d+:", read(log))), default=0)


def resumed(log: Path) -> int | None:
    found = re.search(r"resuming attempt \d+ at epoch (\d+)", read(log))
    return int(found.group(1)) if found else None


def kill_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def bench_run(kill_after: tuple[int, ...] = (3, 8, 14)) -> None:
    print("1. towerflow run, kill -9 after epoch K, run again")
    print(f"   {'K':>3} {'done before kill':>17} {'restored':>9} {'lost':>5} {'restart -> resumed (s)':>23}")
    for k in kill_after:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env, cfg = environment(tmp), config(tmp / "run.yaml", "bench-run", epochs=40)
            first, second = tmp / "first.log", tmp / "second.log"
            run = start_process([TOWERFLOW, "run", cfg], env, first, cwd=str(ROOT))
            wait_until(lambda: epochs_done(first) >= k)
            kill_group(run)
            done = epochs_done(first)
            started = time.monotonic()
            again = start_process([TOWERFLOW, "run", cfg], env, second, cwd=str(ROOT))
            at = wait_until(lambda: resumed(second))
            seconds = time.monotonic() - started
            again.wait(timeout=600)
            print(f"   {k:>3} {done:>17} {at - 1:>9} {done - (at - 1):>5} {seconds:>23.1f}")


def serve(env: dict[str, str], log: Path, *options: str) -> tuple[subprocess.Popen, str]:
    process = start_process([TOWERFLOW, "serve", *options], env, log, cwd=str(ROOT))
    url_file = Path(env["TOWERFLOW_HOME"]) / "prefect" / API_URL_FILE
    url = wait_until(lambda: url_file.exists() and api_answers(url_file.read_text().strip())
                     and url_file.read_text().strip(), timeout_s=180)
    wait_until(lambda: len(post_json(url, "/deployments/filter", {})) >= 3, timeout_s=180)
    return process, url


def submit(env: dict[str, str], cfg: str) -> None:
    subprocess.run([TOWERFLOW, "submit", cfg], env=env, check=True, capture_output=True, cwd=str(ROOT))


def stop_server(url: str) -> None:
    port = url.rsplit(":", 1)[1].split("/")[0]
    pids = subprocess.run(["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True).stdout.split()
    for pid in pids:
        os.killpg(int(pid), signal.SIGKILL)


def bench_serve() -> None:
    print("2. towerflow serve, kill -9 of its process group mid-attempt, serve again")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env, cfg = environment(tmp), config(tmp / "served.yaml", "bench-serve", epochs=40)
        first, second = tmp / "serve-1.log", tmp / "serve-2.log"
        process, url = serve(env, first)
        submit(env, cfg)
        wait_until(lambda: epochs_done(first) >= 5)
        kill_group(process)
        done = epochs_done(first)
        started = time.monotonic()
        process, _ = serve(env, second)
        at = wait_until(lambda: resumed(second))
        seconds = time.monotonic() - started
        wait_until(lambda: "Finished in state Completed()" in read(second).split("resuming attempt")[-1])
        stop_process(process)
        stop_server(url)
    print(f"   epochs done before the kill {done}, restored {at - 1}, lost {done - (at - 1)}; "
          f"serve restart -> training resumed {seconds:.1f}s")


def training_seconds(log: Path) -> list[float]:
    """Seconds each attempt held its training slot, read off the serve log."""
    spans: dict[str, list[datetime]] = {}
    pattern = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) \| \w+ +\| Task run '([^']+ / attempt \d+)[^']*' - attempt \d+: "
                         r"(training slot acquired|releasing the training slot)")
    for found in pattern.finditer(read(log)):
        spans.setdefault(found.group(2), []).append(datetime.strptime(found.group(1), "%H:%M:%S.%f"))
    return [(times[-1] - times[0]).total_seconds() for times in spans.values() if len(times) == 2]


def bench_limits(submissions: int = 10) -> None:
    print(f"3. {submissions} submissions to one serve: --max-training 1 against 10")
    print(f"   {'limit':>5} {'total wall (s)':>15} {'mean training per attempt (s)':>30}")
    for limit in (1, submissions):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            env, log = environment(tmp), tmp / "serve.log"
            configs = [config(tmp / f"c{n}.yaml", f"c{n}", epochs=8, data=TINY, seed=n) for n in range(submissions)]
            process, url = serve(env, log, "--max-training", str(limit))
            started = time.monotonic()
            for cfg in configs:
                submit(env, cfg)
            wait_until(lambda: read(log).count("; recall@10 ") >= submissions, timeout_s=1800, every_s=1)
            wall = time.monotonic() - started
            stop_process(process)
            seconds = training_seconds(log)
        print(f"   {limit:>5} {wall:>15.1f} {statistics.mean(seconds):>30.1f}  ({len(seconds)} attempts)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["run", "serve", "limits"])
    only = parser.parse_args().only
    for name, bench in (("run", bench_run), ("serve", bench_serve), ("limits", bench_limits)):
        if only in (None, name):
            bench()


if __name__ == "__main__":
    main()
