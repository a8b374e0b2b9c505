"""Whether a process runs, by pid, and a watcher that stops one process when another is gone.

Light on purpose (the standard library only): the watcher runs as `python -m flows.processes OWNER
SERVER` beside every `towerflow run`, and should cost a few megabytes, not Prefect's import.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def alive(pid: int) -> bool:
    """Whether process `pid` runs: an exited process nobody has reaped yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): the kernel's answer stands
        return True


def stop_when_gone(owner: int, server: int, every_s: float = 1.0) -> None:
    """Wait while both run; once `owner` is gone and `server` still runs, send it SIGTERM."""
    while alive(owner) and alive(server):
        time.sleep(every_s)
    if alive(server):
        os.kill(server, signal.SIGTERM)


if __name__ == "__main__":
    stop_when_gone(int(sys.argv[1]), int(sys.argv[2]))
