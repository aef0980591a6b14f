"""The command line's progress display: without a terminal, one line per step, with the
time left once some of the work is done (a CI log is never silent for minutes)."""

from __future__ import annotations

import io
import time

from rich.console import Console

from lab.cli.output import ConsoleProgress


def test_without_a_terminal_each_step_is_one_line_with_the_time_left():
    buffer = io.StringIO()
    out = Console(file=buffer, width=160, force_terminal=False)
    with ConsoleProgress(out) as progress:
        assert not progress.live
        cells = progress.task("cells: warm-up", total=4)
        progress.update(cells, description="cells: normal / hops: strategy")
        progress.update(cells, advance=5)  # units of work: no new step, no new line
        time.sleep(0.05)
        progress.update(cells, advance=-4)
        progress.update(cells, description="cells: normal / latency: strategy")
        inner = progress.task("database before", total=10)
        progress.update(inner, advance=10)
        progress.done(inner)
        progress.note("a warning worth a line")
        progress.done(cells)
    lines = buffer.getvalue().splitlines()
    assert lines[0].endswith("cells: warm-up (0/4)") and lines[0].startswith("[")
    assert lines[1].endswith("cells: normal / hops: strategy (0/4)")
    assert "cells: normal / latency: strategy (1/4, about" in lines[2]
    assert lines[2].endswith(" s left)")
    assert lines[3].endswith("database before (0/10)")
    assert lines[4] == "a warning worth a line"
    assert len(lines) == 5
