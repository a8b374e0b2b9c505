"""The failures towerflow expects and reports in one line (no traceback unless --debug)."""

from __future__ import annotations


class ExpectedError(Exception):
    """A failure whose message says everything a user needs: what is wrong and where.

    The CLI prints it as one line and exits 1; towerflow's Prefect log handlers drop its traceback.
    """


class OutOfMemory(ExpectedError):
    """An attempt's model or batch does not fit the device's memory: a lower learning rate cannot fix
    it, so the attempt fails (recorded, in one line) and the experiment stops."""


class Resumable(ExpectedError):
    """The run stopped for a cause outside the experiment: nothing is marked failed, and once the cause is
    gone the same run continues the experiment from its last checkpoint."""


class NoSpaceLeft(Resumable):
    """A write found its device full (or the quota spent)."""

    @classmethod
    def writing(cls, what: str, reason: str) -> NoSpaceLeft:
        """`what` could not be written for `reason` (No space left on device, ...), and what to do."""
        return cls(f"{what}: {reason}; make room and run the same config again: it continues from the last checkpoint")
