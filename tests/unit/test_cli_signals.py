"""How `towerflow` ends when a signal stops a command that a rerun continues."""

from __future__ import annotations

import os
import signal

import pytest

from flows import cli


def signalled(signum: int):
    def handler(_args):
        os.kill(os.getpid(), signum)
        raise AssertionError("the signal did not stop the command")

    return handler


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_sigterm_ends_a_resumable_command_in_one_line_with_the_shells_exit_code(monkeypatch, capsys, command):
    monkeypatch.setattr(cli, f"{command}_command", signalled(signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)

    assert cli.main([command, "any.yaml"]) == 128 + signal.SIGTERM
    said = capsys.readouterr().err.splitlines()
    assert said == [f"towerflow {command}: terminated by SIGTERM; {cli.RESUMABLE[command]}"]
    assert signal.getsignal(signal.SIGTERM) is previous  # the command's handler does not outlive it


def test_a_command_with_nothing_to_continue_keeps_the_default_sigterm(monkeypatch):
    seen = []

    def results(_args) -> int:
        seen.append(signal.getsignal(signal.SIGTERM))
        return 0

    monkeypatch.setattr(cli, "results_command", results)
    cli.main(["results"])
    assert seen == [signal.getsignal(signal.SIGTERM)]  # a command with nothing to continue keeps the default


def test_debug_shows_the_traceback_of_a_terminated_command(monkeypatch):
    monkeypatch.setattr(cli, "run_command", signalled(signal.SIGTERM))
    monkeypatch.setenv("TOWERFLOW_DEBUG", "1")
    with pytest.raises(cli.Terminated, match="SIGTERM"):
        cli.main(["run", "any.yaml"])
