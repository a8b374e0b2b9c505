"""Prefect for one machine: the configured API if there is one, else an ephemeral local one, tuned for short runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def _ephemeral() -> bool:
    from prefect.settings import get_current_settings

    return not get_current_settings().api.url


@contextlib.contextmanager
def local_prefect() -> Iterator[None]:
    """Run flows against PREFECT_API_URL when set; otherwise an ephemeral server in this process tree.

    With an ephemeral server, flow-run heartbeats (crash detection for long-lived servers) are turned off:
    each one otherwise adds about a second to every short flow run.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if not _ephemeral():
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
