"""Helpers for the fault-injection tests: real towerflow processes, their logs, and a config slow enough
to be killed in the middle of an attempt."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from tiny_configs import tiny_config

from flows.prefect_api import API_URL_FILE, api_answers, post_json, start_process

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOISE = ("cuda", "E0000", "W0000", "I0000", "absl::InitializeLog")


def towerflow_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A towerflow home, Prefect home and SQLite database of the test's own; no API configured."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PREFECT_API_URL", "TOWERFLOW_TRAINER_DEPLOYMENT", "TOWERFLOW_DATABASE_URL")}
    env.update(TOWERFLOW_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"),
               TOWERFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'towerflow.db'}",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.update(extra)
    return env


def slow_config(tmp_path: Path, name: str, epochs: int = 60, **changes) -> str:
    """About 0.4 s an epoch on two cores: long enough to kill mid-attempt, short enough to finish.
    `changes` as tiny_config's (`validation__on_warning="approve"`)."""
    data = "synthetic-retail://{}?customers=2000&products=200&transactions=60000&clusters=4&seed=3"
    config = tiny_config(name=name, training__epochs=epochs, training__batch_size=128, **changes)
    config["data"] = {"transactions": data.format("transactions"), "products": data.format("products")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def towerflow(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "towerflow"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


def start_towerflow(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """`towerflow ARGS` in its own process group, output appended to `log`."""
    return start_process([str(BIN / "towerflow"), *args], env, log, cwd=str(ROOT))


def wait_for(what: str, check, timeout_s: float = 240.0, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def children(pid: int, command_part: str) -> list[int]:
    """The live child processes of `pid` whose command line holds `command_part` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and command_part in command:
            found.append(int(entry.name))
    return found


def log_text(log: Path) -> str:
    """A log without TensorFlow's start-up noise."""
    if not log.exists():
        return ""
    return "\n".join(line for line in log.read_text(errors="replace").splitlines()
                     if not any(word in line for word in NOISE))


def last_epoch(text: str) -> int:
    """The highest `attempt N epoch E/` number logged so far (0 if none)."""
    return max((int(epoch) for epoch in re.findall(r"epoch (\d+)/\d+:", text)), default=0)


def resumed_at(text: str) -> int:
    """K of the log line "resuming attempt N at epoch K (epochs 1..K-1 restored from checkpoint)"."""
    found = re.search(r"resuming attempt \d+ at epoch (\d+) \(epochs 1\.\.(\d+) restored from checkpoint\)", text)
    assert found, "no 'resuming attempt N at epoch K' line in the log"
    assert int(found.group(2)) == int(found.group(1)) - 1
    return int(found.group(1))


def serve_until_ready(env, log, *options):
    """`towerflow serve OPTIONS`, once its API answers and its three deployments are registered."""
    serve = start_towerflow(env, log, "serve", *options)
    url_file = api_url_file(env)
    api_url = wait_for("serve's API", lambda: url_file.exists() and api_answers(url_file.read_text().strip())
                       and url_file.read_text().strip(), timeout_s=180)
    wait_for("the served deployments", lambda: len(deployments(api_url)) >= 3, timeout_s=180)
    return serve, api_url


def api_url_file(env) -> Path:
    """Where `towerflow serve` records its API URL."""
    return Path(env["TOWERFLOW_HOME"]) / "prefect" / API_URL_FILE


def deployments(api_url):
    try:
        return post_json(api_url, "/deployments/filter", {})
    except OSError:
        return []


def stop_left_server(env) -> None:
    """Stop the `prefect server` that a killed serve left behind (found by its port)."""
    url_file = api_url_file(env)
    if not url_file.exists():
        return
    port = url_file.read_text().strip().rsplit(":", 1)[1].split("/")[0]
    found = subprocess.run(["pgrep", "-f", f"prefect server start --host 127.0.0.1 --port {port}"],
                           capture_output=True, text=True).stdout.split()
    for pid in found:
        os.killpg(int(pid), signal.SIGKILL)
