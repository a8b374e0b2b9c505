"""A local Prefect API for one machine: find it, start it (`prefect server start`), stop what was started.

No Prefect import: these helpers manage processes and URLs, so a command can pick its API before
Prefect reads its settings. Every process is started in its own process group and stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.settings import towerflow_home

API_URL_FILE = "api-url"
SERVER_START_TIMEOUT_S = 120.0


def prefect_home() -> Path:
    """The PREFECT_HOME of the server that `towerflow serve` starts: $TOWERFLOW_HOME/prefect."""
    return towerflow_home() / "prefect"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_answers(api_url: str, timeout: float = 2.0) -> bool:
    """True when `api_url` (ending in /api) answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def recorded_api_url() -> str | None:
    """The API that a running `towerflow serve` recorded under TOWERFLOW_HOME, if it still answers."""
    path = prefect_home() / API_URL_FILE
    if not path.exists():
        return None
    url = path.read_text().strip()
    return url if url and api_answers(url) else None


def find_api_url() -> str | None:
    """PREFECT_API_URL when set, else the API recorded by `towerflow serve` (None if there is none)."""
    return os.environ.get("PREFECT_API_URL") or recorded_api_url()


def use_found_api() -> str | None:
    """Set PREFECT_API_URL to `find_api_url()` for this process (call before Prefect is imported)."""
    url = find_api_url()
    if url:
        os.environ["PREFECT_API_URL"] = url
    return url


def prefect_executable() -> str:
    """The `prefect` script of this interpreter's environment (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "prefect"
    return str(beside) if beside.exists() else (shutil.which("prefect") or "prefect")


def start_process(command: list[str], env: dict[str, str], log_path: Path, cwd: str | None = None) -> subprocess.Popen:
    """Start `command` in a new process group, its output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a process group started by `start_process`: SIGINT, SIGINT again, SIGTERM, then SIGKILL.

    An idle `prefect worker` only stops on a second signal; each step waits up to `grace_s`.
    """
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_s if sig != signal.SIGKILL else None)
        except subprocess.TimeoutExpired:
            continue
    _kill_group_leftovers(process.pid)


def _kill_group_leftovers(pgid: int) -> None:
    """Children that outlived their group leader (a flow-run subprocess) get SIGKILL."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class LocalServer:
    """A `prefect server start` subprocess on 127.0.0.1 with its own PREFECT_HOME."""

    process: subprocess.Popen
    api_url: str
    home: Path

    def stop(self) -> None:
        stop_process(self.process)
        record = self.home / API_URL_FILE
        if record.exists() and record.read_text().strip() == self.api_url:
            record.unlink()


def server_env(home: Path) -> dict[str, str]:
    """The environment of a local server: its own PREFECT_HOME, no analytics, no API URL of its own."""
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def start_server(home: Path | None = None, port: int | None = None, record: bool = False,
                 timeout_s: float = SERVER_START_TIMEOUT_S) -> LocalServer:
    """Start `prefect server start` on 127.0.0.1 and wait until its API answers.

    `record` writes the API URL to $PREFECT_HOME/api-url, where `towerflow submit` and `watch` find it.
    """
    home = home or prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    command = [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    env = server_env(home) | {"PREFECT_UI_API_URL": api_url}  # the UI it serves talks to this API, not :4200
    process = start_process(command, env, home / "server.log")
    server = LocalServer(process, api_url, home)
    deadline = time.monotonic() + timeout_s
    while not api_answers(api_url, timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"prefect server on port {port} did not start; see {home / 'server.log'}")
        time.sleep(0.25)
    if record:
        (home / API_URL_FILE).write_text(api_url)
    return server


RETRIED_STATUSES = (429, 502, 503)
"""What Prefect's own client retries: a busy server (on SQLite, a locked database answers 503)."""


def post_json(api_url: str, path: str, body: dict, attempts: int = 5) -> Any:
    """POST `body` to the REST API at `path` (e.g. /flow_runs/filter); the decoded JSON answer. A busy
    server's answer (RETRIED_STATUSES) is retried after 0.5, 1, 2, ... s, as Prefect's client does."""
    request = urllib.request.Request(f"{api_url.rstrip('/')}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code not in RETRIED_STATUSES or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2**attempt)


def read_flow_runs(api_url: str, flow_name: str) -> list[dict]:
    """The flow runs of flow `flow_name` as the REST API returns them (oldest first)."""
    return post_json(api_url, "/flow_runs/filter",
                     {"flows": {"name": {"any_": [flow_name]}}, "sort": "EXPECTED_START_TIME_ASC"})


def read_task_runs(api_url: str, name_like: str) -> list[dict]:
    """The task runs whose name contains `name_like`, as the REST API returns them (oldest first)."""
    return post_json(api_url, "/task_runs/filter",
                     {"task_runs": {"name": {"like_": name_like}}, "sort": "EXPECTED_START_TIME_ASC"})


def read_events(api_url: str, event: str, limit: int = 50) -> list[dict]:
    """The stored events named `event`: the newest `limit` (at most 50, the server's page) of the last day."""
    return post_json(api_url, "/events/filter", {"filter": {"event": {"name": [event]}}, "limit": limit})["events"]
