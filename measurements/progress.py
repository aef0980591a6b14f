"""How a long measurement tells the command line where it is: calls, never output.

Measurements do not print. The command line hands them a `Progress` (a bar on a terminal,
one line per step elsewhere) and they call it; `SILENT` ignores everything, for callers
that want none.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def task(self, description: str, total: float) -> int:
        """A new task of `total` units of work; returns its id."""

    def update(self, task: int, description: str | None = None, advance: float = 0) -> None:
        """What the task does now, and the units done since the last call."""

    def done(self, task: int) -> None:
        """The task is over."""

    def note(self, text: str) -> None:
        """A line worth keeping: a warning, a fact about the run."""


class Silent:
    """A Progress that shows nothing."""

    def task(self, description: str, total: float) -> int:
        return 0

    def update(self, task: int, description: str | None = None, advance: float = 0) -> None:
        pass

    def done(self, task: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


SILENT = Silent()
