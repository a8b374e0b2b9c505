"""The failures towerflow expects and reports in one line (no traceback unless --debug)."""

from __future__ import annotations


class ExpectedError(Exception):
    """A failure whose message says everything a user needs: what is wrong and where.

    The CLI prints it as one line and exits 1; towerflow's Prefect log handlers drop its traceback.
    """


class OutOfMemory(ExpectedError):
    """An attempt's model or batch does not fit the device's memory: a lower learning rate cannot fix
    it, so the attempt fails (recorded, in one line) and the experiment stops."""


class NoSpaceLeft(ExpectedError):
    """A write found its device full (or the quota spent): nothing is wrong with the config, so the attempt is
    not failed; once there is room, the same run continues it from its last checkpoint."""
