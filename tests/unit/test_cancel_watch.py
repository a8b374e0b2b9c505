"""flows.ownership.CancelWatch: Cancel in the Prefect UI reaches a run that no runner watches, as SIGTERM."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from flows import ownership


class Terminated(Exception):
    pass


@pytest.fixture
def sigterm_raises():
    """SIGTERM raises Terminated in this (the main) thread, as Prefect's handler raises TerminationSignal."""
    def handler(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def cancelled(monkeypatch):
    """Prefect's answer to 'was this run cancelled?': the runs in `cancelled`, switched by the test; each
    question is counted."""
    answer = {"cancelled": set(), "asked": 0}

    def cancelled_in_prefect(flow_run_id):
        answer["asked"] += 1
        return flow_run_id in answer["cancelled"]

    monkeypatch.setattr(ownership, "cancelled_in_prefect", cancelled_in_prefect)
    monkeypatch.setattr(ownership, "CANCEL_POLL_S", 0.02)
    return answer


@pytest.mark.parametrize("cancelled_run", ["point", "sweep"])
def test_a_cancelled_run_without_a_deployment_gets_sigterm(sigterm_raises, cancelled, cancelled_run):
    """The run's own cancel, or the cancel of the run it is a subflow of (a sweep's point, its sweep)."""
    with pytest.raises(Terminated):
        with ownership.CancelWatch(["point", "sweep"], has_deployment=False):
            time.sleep(0.2)
            assert cancelled["asked"] > 2  # it polls both while neither is cancelled, and sends nothing
            cancelled["cancelled"].add(cancelled_run)
            time.sleep(5)


def test_first_cancelled_names_the_run_that_was_cancelled(cancelled):
    assert ownership.first_cancelled(["point", "sweep"]) is None
    cancelled["cancelled"].add("sweep")
    assert ownership.first_cancelled(["point", "sweep"]) == "sweep"


def test_a_served_run_is_left_to_its_runner(sigterm_raises, cancelled):
    cancelled["cancelled"].add("run-1")
    with ownership.CancelWatch(["run-1"], has_deployment=True):
        time.sleep(0.2)
    assert cancelled["asked"] == 0


def test_a_flow_outside_the_main_thread_is_not_watched(sigterm_raises, cancelled):
    cancelled["cancelled"].add("run-1")
    watches = []

    def in_a_thread():
        with ownership.CancelWatch(["run-1"], has_deployment=False) as watch:
            watches.append(watch)
            time.sleep(0.2)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()
    assert not watches[0].active and cancelled["asked"] == 0


def test_no_signal_once_the_watched_block_has_ended(sigterm_raises, cancelled):
    with ownership.CancelWatch(["run-1"], has_deployment=False):
        time.sleep(0.1)
    cancelled["cancelled"].add("run-1")
    asked = cancelled["asked"]
    time.sleep(0.2)  # a Terminated here would fail the test
    assert cancelled["asked"] == asked
