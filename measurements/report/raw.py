"""A comparison's raw files, read back, and the windows of its cells that timed latencies
leave out (the database workload's)."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class ReportError(ValueError):
    """The directory does not hold a comparison's raw files; the message says what is missing."""


def load_raw(out_dir: str | Path) -> dict:
    """setup.json, cells.jsonl, requests.jsonl, db.csv and schedule.jsonl (both optional) of
    a comparison."""
    out = Path(out_dir)
    missing = [n for n in ("setup.json", "cells.jsonl", "requests.jsonl") if not (out / n).exists()]
    if missing:
        raise ReportError(f"{out}: not a comparison's directory (missing {', '.join(missing)})")
    cells = [json.loads(line) for line in open(out / "cells.jsonl") if line.strip()]
    requests = [json.loads(line) for line in open(out / "requests.jsonl") if line.strip()]
    schedule = ([json.loads(line) for line in open(out / "schedule.jsonl") if line.strip()]
                if (out / "schedule.jsonl").exists() else [])
    return {"setup": json.loads((out / "setup.json").read_text()), "cells": cells,
            "requests": requests, "db": _db_rows(out / "db.csv"), "schedule": schedule}


def _db_rows(path: Path) -> list[dict]:
    """The database benchmark's samples, typed; none if the run had no db.csv."""
    db = []
    if path.exists():
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                row["start_time"] = float(row["start_time"])
                row["latency_ms"] = float(row["latency_ms"])
                row["ok"] = row["ok"] == "1"
                db.append(row)
    return db


def quiet(request: dict, busy: list) -> bool:
    """Sent outside every busy window (the database workload's [start, end])."""
    return not any(start <= request["start"] < (end or float("inf")) for start, end in busy)


def busy_windows(raw: dict) -> dict[tuple[str, str], list]:
    """(scenario, strategy) -> its cell's database-workload windows."""
    return {(c["scenario"], c["strategy"]): c.get("db_phases", []) for c in raw["cells"]}
