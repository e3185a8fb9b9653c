"""User-facing errors.

Every mistake a user can make in a task, a config or a plan is raised as a `ConfigError` that names the
field, says what is wrong and what to do. The CLI prints it on one line and exits with code 2.
"""

from __future__ import annotations


class TrexError(Exception):
    """Base class of trex-ray's own errors."""


class ConfigError(TrexError, ValueError):
    """A bad value in a task, config, plan or command line: names the field and the fix."""

    def __init__(self, field: str, problem: str, fix: str = ""):
        self.field = field
        self.problem = problem
        self.fix = fix
        msg = f"{field}: {problem}"
        if fix:
            msg += f" -- {fix}"
        super().__init__(msg)


class TrialError(TrexError):
    """A trial failed; carries the stage (data/train/eval) for the node's result."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")
