"""How a long measurement tells the command line where it is: calls, never output.

Measurements do not print. The command line hands them a `Progress` (a bar on a terminal,
one line per step elsewhere) and they call it; `SILENT` ignores everything, for callers
that want none.
"""

from __future__ import annotations

import time
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


class LogProgress(Silent):
    """A Progress for a run nobody watches (a sweep's point): each step and note as one
    line of a log file, with the time."""

    def __init__(self, log):
        self.log = log
        self.steps: dict[int, str] = {}

    def task(self, description: str, total: float) -> int:
        task = len(self.steps) + 1
        self.steps[task] = description
        self._line(description)
        return task

    def update(self, task: int, description: str | None = None, advance: float = 0) -> None:
        if description is not None and description != self.steps.get(task):
            self.steps[task] = description
            self._line(description)

    def note(self, text: str) -> None:
        self._line(text)

    def _line(self, text: str) -> None:
        self.log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.log.flush()
