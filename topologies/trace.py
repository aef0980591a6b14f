"""Reading delay traces: a link's delay (and optionally jitter and loss) over time, read from CSV.

A trace file is a header of `# key: value` comment lines (at least `source:`; shipped
traces also say `license:`), then a CSV table whose first row names the columns: `time_s`
and `delay_ms` always, `jitter_ms` and `loss_pct` optionally. Each row's values hold from
its time offset until the next row's (a step function: what the emulator applies is exactly
what the file says, at exactly that time). The first row is at 0 s; offsets strictly
increase. A `Schedule` plays a trace on a link, once (the last row then holds for good) or
looped (the last row ends a pass: the trace starts again at its offset), at a speed (a daily trace
played 1440 times faster takes a minute).

Anything wrong raises `TopologyError`, one line `FILE: line N, column: problem`, as strictly
as a topology file: unknown or repeated columns, a missing value, a number out of range.
The trace, its points and a schedule are the model's (topologies.model).
"""

from __future__ import annotations

import math
from pathlib import Path

from topologies.model import MAX_DELAY_MS, TopologyError, Trace, TracePoint, read_text

COLUMNS = ("time_s", "delay_ms", "jitter_ms", "loss_pct")
REQUIRED = ("time_s", "delay_ms")
RANGES = {"time_s": (0.0, 1e7), "delay_ms": (0.0, MAX_DELAY_MS),
          "jitter_ms": (0.0, MAX_DELAY_MS), "loss_pct": (0.0, 100.0)}
MAX_ROWS = 1_000_000
HEADER_KEYS = ("source", "license", "description")


def load_trace(path: str | Path) -> Trace:
    """Read and validate a trace file."""
    path = Path(path)
    return parse_trace(read_text(path), str(path))


def parse_trace(text: str, file: str = "<trace>") -> Trace:
    """Validate a trace's text; `file` names it in error messages."""
    header: list[tuple[str, str]] = []
    columns: tuple[str, ...] | None = None
    points: list[TracePoint] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}"
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if columns is not None:
                raise TopologyError(file, where, "comments belong in the header, above the columns")
            header.append(_header_line(file, where, stripped[1:]))
            continue
        cells = [c.strip() for c in stripped.split(",")]
        if columns is None:
            columns = _columns(file, where, cells)
            continue
        if len(points) >= MAX_ROWS:
            raise TopologyError(file, where, f"more than {MAX_ROWS} rows")
        points.append(_row(file, where, columns, cells, points))
    keys = [k for k, _ in header]
    if "source" not in keys:
        raise TopologyError(file, "(header)", "needs a '# source: ...' line saying where the "
                            "figures come from")
    if columns is None or not points:
        raise TopologyError(file, "(table)", f"needs a column row ({', '.join(REQUIRED)}, ...) "
                            "and at least one row of values")
    return Trace(file=file, points=tuple(points), header=tuple(header))


def _header_line(file: str, where: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    key, value = key.strip(), value.strip()
    if not sep or key not in HEADER_KEYS:
        raise TopologyError(file, where, f"header lines are '# KEY: value' with KEY one of "
                            f"{', '.join(HEADER_KEYS)}")
    if not value:
        raise TopologyError(file, where, f"{key}: must not be empty")
    return key, value


def _columns(file: str, where: str, cells: list[str]) -> tuple[str, ...]:
    for cell in cells:
        if cell not in COLUMNS:
            raise TopologyError(file, where, f"unknown column {cell!r} (allowed: "
                                f"{', '.join(COLUMNS)})")
    if len(set(cells)) != len(cells):
        raise TopologyError(file, where, "a column is named twice")
    for name in REQUIRED:
        if name not in cells:
            raise TopologyError(file, where, f"column {name!r} is required")
    return tuple(cells)


def _row(file: str, where: str, columns: tuple[str, ...], cells: list[str],
         before: list[TracePoint]) -> TracePoint:
    if len(cells) != len(columns):
        raise TopologyError(file, where, f"{len(cells)} values for {len(columns)} columns")
    values = {}
    for name, cell in zip(columns, cells):
        try:
            value = float(cell)
        except ValueError:
            raise TopologyError(file, f"{where}, {name}", f"{cell!r} is not a number") from None
        low, high = RANGES[name]
        if not math.isfinite(value) or not low <= value <= high:
            raise TopologyError(file, f"{where}, {name}",
                                f"must be between {low:g} and {high:g}, got {cell}")
        values[name] = value
    if not before and values["time_s"] != 0:
        raise TopologyError(file, f"{where}, time_s", "the first row must be at 0 s")
    if before and values["time_s"] <= before[-1].time_s:
        raise TopologyError(file, f"{where}, time_s",
                            f"must be later than the row before ({before[-1].time_s:g} s)")
    return TracePoint(**values)


def format_trace(points: list[TracePoint], header: list[tuple[str, str]]) -> str:
    """A trace file's text: the header, the columns the points use, one row each."""
    columns = list(REQUIRED) + [c for c in COLUMNS[2:]
                                if any(getattr(p, c) is not None for p in points)]
    if any(getattr(p, c) is None for p in points for c in columns):
        raise ValueError("a jitter or loss column needs a value in every row")
    lines = [f"# {key}: {value}" for key, value in header] + [",".join(columns)]
    for p in points:
        lines.append(",".join(f"{getattr(p, c):.10g}" for c in columns))
    return "\n".join(lines) + "\n"
