"""flows.processes: liveness by pid (zombies are not alive) and the watcher that stops an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from flows.processes import alive, stop_when_gone


def sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_a_running_process_is_alive_an_exited_one_is_not_even_before_it_is_reaped():
    assert alive(os.getpid())
    child = sleeper(0)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not alive(child.pid)
    child.wait()
    assert not alive(child.pid)


def test_the_watcher_stops_the_server_once_its_owner_is_gone():
    owner, server = sleeper(0.3), sleeper(60)
    try:
        stop_when_gone(owner.pid, server.pid, every_s=0.05)
        assert server.wait(timeout=10) == -signal.SIGTERM
    finally:
        server.kill()
        owner.wait()


def test_the_watcher_leaves_alone_a_server_that_ended_first():
    owner, server = sleeper(60), sleeper(0)
    try:
        stop_when_gone(owner.pid, server.pid, every_s=0.05)  # returns once the server is gone
        assert owner.poll() is None
    finally:
        owner.kill()
        server.wait()
