"""What the command line shows: the console, numbers in tables, progress of long runs.

Measurements report progress through measurements.progress.Progress; `ConsoleProgress` shows
it to a person: a live bar on a terminal, and where output goes to a file or a CI log (no
terminal), one line per step with the time so far and the time left, so a long run is never
silent for minutes.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

# Wide enough for the tables when output goes to a file or a CI log.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def file_commands(sub, name: str, help: str, actions: dict):
    """`lab NAME ACTION FILE`: one subcommand per action (name -> (help, function)); returns
    the group (its `.choices`: the actions' parsers, for options and actions of their own)."""
    group = sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", required=True,
                                                           metavar="ACTION")
    for action, (action_help, func) in actions.items():
        parser = group.add_parser(action, help=action_help)
        parser.add_argument("file")
        parser.set_defaults(func=func)
    return group


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class ConsoleProgress:
    """A measurements.progress.Progress for the console; use as a context manager."""

    def __init__(self, out: Console = console, live: bool | None = None):
        self.out = out
        self.live = out.is_terminal if live is None else live
        self.bar = Progress(TextColumn("{task.description:<58}"), BarColumn(),
                            TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            console=out) if self.live else None
        self.started = time.monotonic()
        self.tasks: dict[int, list] = {}  # id -> [description, total, completed, started]
        self.next_id = 0

    def __enter__(self) -> "ConsoleProgress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def task(self, description: str, total: float) -> int:
        if self.bar is not None:
            return self.bar.add_task(description, total=total)
        self.next_id += 1
        self.tasks[self.next_id] = [description, total, 0.0, time.monotonic()]
        self._line(self.next_id)
        return self.next_id

    def update(self, task: int, description: str | None = None, advance: float = 0) -> None:
        if self.bar is not None:
            self.bar.update(task, description=description, advance=advance)
            return
        state = self.tasks.get(task)
        if state is None:
            return
        state[2] += advance
        if description is not None and description != state[0]:
            state[0] = description
            self._line(task)

    def done(self, task: int) -> None:
        if self.bar is not None:
            self.bar.remove_task(task)
        else:
            self.tasks.pop(task, None)

    def note(self, text: str) -> None:
        self.out.print(text)

    def _line(self, task: int) -> None:
        """One line: time so far, the step, and how far its task is with the time left."""
        description, total, completed, started = self.tasks[task]
        line = f"[{time.monotonic() - self.started:6.0f} s] {description}"
        if total:
            line += f" ({completed:.0f}/{total:.0f}"
            if completed:
                left = (time.monotonic() - started) / completed * (total - completed)
                line += f", about {left:.0f} s left"
            line += ")"
        self.out.print(line, soft_wrap=True)
