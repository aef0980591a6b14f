"""A comparison's raw files, read back and checked, and the windows of its cells that timed
latencies leave out (the database workload's).

Anything wrong in them (a missing or unreadable file, a truncated line, a field of the wrong
type, a record naming a host the topology does not have) is a ReportError whose text is one
line naming the file, and the line or field: the report is computed from checked records only.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from measurements.report.schema import CELL, REQUEST, SCHEDULE, SETUP, drop_nulls, problem
from topologies.model import one_line

DB_COLUMNS = ("scenario", "strategy", "phase", "placement", "site", "kind", "operation",
              "start_time", "latency_ms", "ok")


class ReportError(ValueError):
    """The directory does not hold a comparison's raw files; the message says what is wrong."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def load_raw(out_dir: str | Path) -> dict:
    """setup.json, cells.jsonl, requests.jsonl, db.csv and schedule.jsonl (both optional) of
    a comparison."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ReportError(f"{out}: not a directory")
    missing = [n for n in ("setup.json", "cells.jsonl", "requests.jsonl") if not (out / n).exists()]
    if missing:
        raise ReportError(f"{out}: not a comparison's directory (missing {', '.join(missing)})")
    setup = _json(out / "setup.json")
    _check(setup, SETUP, out / "setup.json")
    raw = {"setup": setup, "cells": _lines(out / "cells.jsonl", CELL),
           "requests": _lines(out / "requests.jsonl", REQUEST), "db": _db_rows(out / "db.csv"),
           "schedule": (_lines(out / "schedule.jsonl", SCHEDULE)
                        if (out / "schedule.jsonl").exists() else [])}
    _consistent(raw, out)
    return raw


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _json(path: Path, where: str = "") -> object:
    """One JSON value; a truncated or corrupt one is a ReportError naming the file."""
    text = _text(path)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"{path}{where}: not valid JSON ({_reason(exc)})") from None


def _lines(path: Path, spec) -> list[dict]:
    """Every line of a JSON-lines file, each checked against `spec`; the last line must end
    in a newline (a line without one was cut short)."""
    text = _text(path)
    if text and not text.endswith("\n"):
        raise ReportError(f"{path}: the last line is cut short (no newline at its end)")
    records = []
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ReportError(f"{path}: line {n}: not valid JSON ({_reason(exc)})") from None
        _check(record, spec, path, f"line {n}: ")
        records.append(record)
    return records


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _reason(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]


def _check(value, spec, path: Path, where: str = "") -> None:
    found = problem(value, spec)
    if found:
        raise ReportError(f"{path}: {where}{found}")
    if spec is REQUEST and value["ok"] and value.get("latency_ms") is None:
        raise ReportError(f"{path}: {where}latency_ms: a successful request needs one")
    drop_nulls(value, spec)


def _db_rows(path: Path) -> list[dict]:
    """The database benchmark's samples, typed; none if the run had no db.csv."""
    if not path.exists():
        return []
    reader = csv.DictReader(_text(path).splitlines())
    try:
        if tuple(reader.fieldnames or ()) != DB_COLUMNS:
            raise ReportError(f"{path}: columns {_short(reader.fieldnames)}, expected "
                              f"{', '.join(DB_COLUMNS)}")
        return [_db_row(row, path, n) for n, row in enumerate(reader, 2)]
    except csv.Error as exc:
        raise ReportError(f"{path}: not valid CSV ({exc})") from None


def _db_row(row: dict, path: Path, n: int) -> dict:
    if None in row or None in row.values():
        raise ReportError(f"{path}: line {n}: {len(DB_COLUMNS)} columns expected")
    try:
        row["start_time"] = float(row["start_time"])
        row["latency_ms"] = float(row["latency_ms"])
    except ValueError as exc:
        raise ReportError(f"{path}: line {n}: {exc}") from None
    if not all(math.isfinite(row[k]) for k in ("start_time", "latency_ms")) or \
            row["ok"] not in ("0", "1"):
        raise ReportError(f"{path}: line {n}: start_time and latency_ms must be finite "
                          f"numbers, ok 0 or 1")
    row["ok"] = row["ok"] == "1"
    return row


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _consistent(raw: dict, out: Path) -> None:
    """At least one cell and one site; the names the records use are the setup's: hosts in
    its topology, sites of its hosts, strategies it ran."""
    if not raw["cells"]:
        raise ReportError(f"{out / 'cells.jsonl'}: no cell was recorded (nothing to report)")
    topo = raw["setup"]["topology"]
    if not topo["sites"]:
        raise ReportError(f"{out / 'setup.json'}: topology.sites: is empty")
    sites = {s["name"] for s in topo["sites"]}
    hosts = {h["name"] for h in topo["hosts"]}
    for i, h in enumerate(topo["hosts"]):
        if h["site"] not in sites:
            raise ReportError(f"{out / 'setup.json'}: topology.hosts[{i}].site: unknown site "
                              f"{_short(h['site'])}")
    strategies = set(raw["setup"]["strategies"])
    for n, cell in enumerate(raw["cells"], 1):
        if cell["strategy"] not in strategies:
            raise ReportError(f"{out / 'cells.jsonl'}: record {n}: strategy "
                              f"{_short(cell['strategy'])} is not one setup.json ran")
    for n, r in enumerate(raw["requests"], 1):
        if r["src"] not in hosts:
            raise ReportError(f"{out / 'requests.jsonl'}: record {n}: src {_short(r['src'])} "
                              f"is not a host of setup.json's topology")


def quiet(request: dict, busy: list) -> bool:
    """Sent outside every busy window (the database workload's [start, end])."""
    return not any(start <= request["start"] < (end or float("inf")) for start, end in busy)


def busy_windows(raw: dict) -> dict[tuple[str, str], list]:
    """(scenario, strategy) -> its cell's database-workload windows."""
    return {(c["scenario"], c["strategy"]): c.get("db_phases") or [] for c in raw["cells"]}
