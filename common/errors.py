"""The base of every expected failure.

Each package defines one subclass (TrainerError, SandboxError, IndexError_, ...).
The CLI turns any of them into one line, ``assistant: error: <what> (<hint>)``,
and exits with ``exit_code``; tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations


class AssistantError(Exception):
    """An expected failure with a one-line message and an optional hint."""

    exit_code = 1

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.what} ({self.hint})" if self.hint else self.what


class UsageError(AssistantError):
    """Bad flags or arguments: exit code 2, like argparse."""

    exit_code = 2
