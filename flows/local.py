"""Prefect for one machine: the configured API if there is one, else an ephemeral local one, tuned for short runs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from trainer.errors import ExpectedError

DEBUG_ENV = "TOWERFLOW_DEBUG"


def debugging() -> bool:
    """TOWERFLOW_DEBUG=1 (or `towerflow --debug`): show tracebacks of expected errors too."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def _ephemeral() -> bool:
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


class _ExpectedErrorsInOneLine(logging.Filter):
    """Drop the traceback of an expected error from a log record: its message already says it all. gcsfs
    logs the traceback of a request it gives up on, then raises: towerflow names that failure in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (isinstance(record.exc_info[1], ExpectedError) or record.name.startswith("gcsfs")):
            record.exc_info = record.exc_text = None
        return True


def quiet_expected_errors() -> None:
    """Install the one-line filter on Prefect's log handlers (unless debugging), and let towerflow's own
    loggers (PREFECT_LOGGING_EXTRA_LOGGERS=towerflow: the run's logs in the UI) reach the console too."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # the handlers exist from here on
    logging.getLogger("towerflow").propagate = True
    if debugging():
        return
    one_line = _ExpectedErrorsInOneLine()
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _ExpectedErrorsInOneLine) for f in handler.filters):
                handler.addFilter(one_line)


@contextlib.contextmanager
def local_prefect() -> Iterator[None]:
    """Run flows against PREFECT_API_URL when set; otherwise an ephemeral server in this process tree.

    With an ephemeral server, flow-run heartbeats (crash detection for long-lived servers) are turned off:
    each one otherwise adds about a second to every short flow run.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "towerflow")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    quiet_expected_errors()
    if not _ephemeral():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        _start_ephemeral_server()
        yield


def _start_ephemeral_server() -> None:
    """Start the ephemeral Prefect server the flows will use (Prefect's own, shared with its clients) in a
    session of its own, with a small process beside it that stops the server if this process dies without
    stopping it: a process killed with SIGKILL (the OOM killer, `kill -9`) runs no atexit handler, and the
    server would live on as an orphan holding a port and the Prefect database.

    Its own session, because Ctrl-C in a terminal signals the whole foreground process group: the server
    stopped at once, and the interrupted run then spent a minute retrying the dead API to report that it
    crashed. Now only towerflow hears Ctrl-C; it reports, and stops the server on its way out (atexit)."""
    import subprocess
    import sys

    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    with _new_sessions():
        server.start()
    subprocess.Popen(  # its own session too: Ctrl-C in the terminal reaches this process, not it
        [sys.executable, "-m", "flows.processes", str(os.getpid()), str(server.server_process.pid)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


@contextlib.contextmanager
def _new_sessions() -> Iterator[None]:
    """Processes started inside (by code that offers no say in how) begin sessions of their own."""
    import functools
    import subprocess

    popen = subprocess.Popen
    subprocess.Popen = functools.partial(popen, start_new_session=True)
    try:
        yield
    finally:
        subprocess.Popen = popen
