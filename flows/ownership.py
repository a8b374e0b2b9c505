"""Who owns a running experiment, and whether that owner is still alive.

The experiment row holds a lease (tasks/store.py); this module keeps it fresh from the owning flow
run and decides, for anyone else, whether the owner is gone: its lease expired, its process on this
host no longer exists, or Prefect reports its flow run ended (Crashed, Failed, Cancelled, Completed).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from datetime import datetime, timezone

from flows.processes import alive
from tasks import store
from trainer.errors import ExpectedError

LEASE_ENV = "TOWERFLOW_LEASE_S"
DEFAULT_LEASE_S = 120.0
RENEW_EVERY_S = 30.0
CANCEL_POLL_S = 3.0
MAX_SUBFLOW_DEPTH = 8  # subflow levels looked up for a cancel

log = logging.getLogger("towerflow.lease")


class LeaseLost(ExpectedError):
    """Another run took this experiment over (this run's lease expired while it was cut off)."""


def lease_seconds() -> float:
    """How long a lease lasts without renewal (TOWERFLOW_LEASE_S, default 120 s; renewed every 30 s)."""
    return float(os.environ.get(LEASE_ENV, DEFAULT_LEASE_S))


def owner_token() -> str:
    """This process, as `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_gone(owner: str | None) -> bool:
    """True when `owner` (host:pid) ran on this host and that process no longer exists."""
    host, _, pid = (owner or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


def flow_run_state(flow_run_id: str | None):
    """The Prefect state of a flow run, or None when the API does not know it (or cannot be asked)."""
    if not flow_run_id:
        return None
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(flow_run_id).state
    except Exception:  # another API's run, or no API: the lease and the process decide
        return None


def gone_reason(experiment: store.Experiment, ask_prefect: bool = True) -> str | None:
    """Why the experiment's owner is gone, or None while it may still be working (asking Prefect about
    its flow run too, unless `ask_prefect` is False)."""
    now = datetime.now(timezone.utc)
    if experiment.lease_expires_at is not None and not experiment.lease_live(now):
        return f"its lease expired at {experiment.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
    if _process_gone(experiment.owner):
        return f"its process {experiment.owner} is gone"
    if not ask_prefect:
        return None
    state = flow_run_state(experiment.flow_run_id)
    if state is not None and state.is_final():
        return f"Prefect reports its flow run {experiment.flow_run_id} {state.name}"
    return None


def cancelled_in_prefect(flow_run_id: str | None) -> bool:
    """Whether a person cancelled the flow run in Prefect (Cancelling or Cancelled): its experiment
    is stopped, not recovered."""
    state = flow_run_state(flow_run_id)
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def first_cancelled(flow_run_ids: list[str]) -> str | None:
    """The first of `flow_run_ids` that a person cancelled in Prefect, or None."""
    return next((run_id for run_id in flow_run_ids if cancelled_in_prefect(run_id)), None)


def enclosing_flow_runs(flow_run) -> list:
    """`flow_run` and the flow runs it runs in as a subflow (a sweep's point, then its sweep), innermost
    first: cancelling any of them cancels it. Just `flow_run` where the API cannot say more."""
    from prefect.client.orchestration import get_client

    runs = [flow_run]
    try:
        with get_client(sync_client=True) as client:
            while runs[-1].parent_task_run_id is not None and len(runs) < MAX_SUBFLOW_DEPTH:
                parent_task = client.read_task_run(runs[-1].parent_task_run_id)
                runs.append(client.read_flow_run(parent_task.flow_run_id))
    except Exception:  # no API to ask: the run's own cancel still counts
        pass
    return runs


def enclosing_flow_run_ids(flow_run_id: str | None) -> list[str]:
    """The ids of `enclosing_flow_runs` of the flow run `flow_run_id` (just it where the API cannot say)."""
    if not flow_run_id:
        return []
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(flow_run_id)
    except Exception:
        return [flow_run_id]
    return [str(run.id) for run in enclosing_flow_runs(flow_run)]


class CancelWatch:
    """Makes Cancel in the Prefect UI stop a flow run that no runner watches (`towerflow run`, `sweep`).

    A served run is cancelled by its runner, which sends its process SIGTERM. A run started in a
    process of its own has no deployment and nobody to do that, so Prefect would mark it Cancelling
    and let it train on. This watcher polls the states of the run and of the runs it is a subflow of
    every few seconds and, once one is Cancelling or Cancelled, sends this process SIGTERM itself: the
    flow then stops the way a served run does. It only acts for a flow in the main thread (where
    Python delivers signals).
    """

    def __init__(self, flow_run_ids: list[str], has_deployment: bool):
        self.flow_run_ids = flow_run_ids
        self.active = not has_deployment and threading.current_thread() is threading.main_thread()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # no SIGTERM once the watched block has ended
        self._thread = threading.Thread(target=self._loop, name="towerflow-cancel-watch", daemon=True)

    def __enter__(self) -> CancelWatch:
        if self.active:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(CANCEL_POLL_S):
            cancelled = first_cancelled(self.flow_run_ids)
            if cancelled:
                with self._lock:
                    if not self._stop.is_set():
                        log.warning("flow run %s was cancelled in Prefect; stopping", cancelled)
                        os.kill(os.getpid(), signal.SIGTERM)
                return


def cancelled_message(flow_run_id: str, then: str = "`towerflow run --force CONFIG` starts it again") -> str:
    """What a stopped experiment (or sweep) says when its flow run was cancelled in Prefect (now, as far as
    we know), and `then` what starts it again."""
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"
    return f"cancelled in Prefect (flow run {flow_run_id}) at {when}; {then}"


def mark_crashed(flow_run_id: str | None, reason: str) -> None:
    """Tell Prefect a flow run that still looks alive is dead, so the UI agrees with the store."""
    state = flow_run_state(flow_run_id)
    if state is None or state.is_final():
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message=f"towerflow: {reason}"), force=True)


class LeaseKeeper:
    """Renews the owning run's lease every 30 s in a background thread (and on `renew()` each epoch).

    When the renewal finds another owner, `lost` is set and `check()` raises LeaseLost, so a run
    that was cut off stops instead of training beside its successor.
    """

    def __init__(self, experiment_id: int, flow_run_id: str, owner: str | None = None):
        self.experiment_id = experiment_id
        self.flow_run_id = flow_run_id
        self.owner = owner or owner_token()
        self.lost = False
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="towerflow-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def renew(self) -> None:
        try:
            with store.retrying_for(0):
                if not store.renew_lease(self.experiment_id, self.flow_run_id, self.owner, lease_seconds()):
                    self.lost = True
        except store.DatabaseUnavailable as error:  # a blip: the next renewal tries again
            if not self._failing:
                log.warning("lease of experiment %s not renewed (retried every epoch and every %.0fs): %s",
                            self.experiment_id, RENEW_EVERY_S, error)
            self._failing = True
            return
        if self._failing:
            log.info("lease of experiment %s renewed again", self.experiment_id)
        self._failing = False

    def check(self) -> None:
        self.renew()
        if self.lost:
            raise LeaseLost(f"experiment {self.experiment_id} was taken over by another run; this run stops")

    def _loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                self.renew()
            except Exception:  # never let the thread die silently mid-run; the next tick retries
                continue
