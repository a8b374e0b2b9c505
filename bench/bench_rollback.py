"""Rollback-and-cut against retry-from-scratch: epochs spent to a successful model, and its recall.

Each config is run twice through `towerflow run` (a subprocess with a temporary TOWERFLOW_HOME),
once with `training.backoff.restart: scratch` and once with `last_healthy`; the stored attempts
(`towerflow results --json`) give the epochs every attempt trained (inherited epochs not counted
again), where each attempt started, and the final recall@10. Asserts nothing.

    .venv/bin/python bench/bench_rollback.py                     # examples/collapse_demo.yaml
    .venv/bin/python bench/bench_rollback.py --config my.yaml --set training.epochs=20
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOWERFLOW = Path(sys.executable).parent / "towerflow"
STARTED = re.compile(r"^started from attempt (\d+)'s epoch (\d+)")


def run(config: Path, restart: str, sets: list[str], home: str) -> tuple[dict, float]:
    env = {**os.environ, "TOWERFLOW_HOME": home}
    args = [arg for value in [*sets, f"training.backoff.restart={restart}"] for arg in ("--set", value)]
    start = time.perf_counter()
    subprocess.run([str(TOWERFLOW), "run", str(config), *args], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - start
    experiments = json.loads(subprocess.run([str(TOWERFLOW), "results", "--json"], env=env, check=True,
                                            capture_output=True, text=True).stdout)
    name = experiments[0]["name"]
    detail = subprocess.run([str(TOWERFLOW), "results", name, "--json"], env=env, check=True, capture_output=True,
                            text=True).stdout
    return json.loads(detail), seconds


def summary(detail: dict) -> tuple[int, list[str], float | None]:
    """Epochs trained over all attempts (inherited ones once), each attempt's start, final recall@10."""
    trained, starts = 0, []
    for attempt in detail["attempts"]:
        started = STARTED.match(attempt["reason"])
        inherited = int(started.group(2)) if started else 0
        trained += attempt["epochs_run"] - inherited
        starts.append(f"#{attempt['number']} lr {attempt['learning_rate']:g} {attempt['status']}"
                      + (f" (from #{started.group(1)} epoch {started.group(2)})" if started else ""))
    recall = {row["k"]: row["value"] for row in detail["recall"]}
    return trained, starts, recall.get(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "collapse_demo.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a spec override, as towerflow run")
    args = parser.parse_args(argv)
    print(f"{args.config.name} {' '.join(args.sets)}")
    for restart in ("scratch", "last_healthy"):
        with tempfile.TemporaryDirectory(prefix="bench-rollback-") as home:
            detail, seconds = run(args.config, restart, args.sets, home)
        trained, starts, recall = summary(detail)
        shown = "none" if recall is None else f"{recall:.4f}"
        print(f"  {restart:<13} {detail['experiment']['status']:<10} epochs trained {trained:>3}  "
              f"recall@10 {shown}  {seconds:.0f}s  attempts: {'; '.join(starts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
