"""The writers of a failure cell: each service and monolith host writes through the database's
write address every WRITER_INTERVAL_S, keeping a ledger of what was acknowledged
(measurements/dbbench_worker.py, writer mode), so the cell can count the writes a failure lost.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from lab.procs import stop_process
from measurements.jsonlines import read_json_lines

# In the cells with a failure, each service and monolith host writes through the write
# address this often (not in the others: a dozen more clients would load the 2-core machine
# all along).
WRITER_INTERVAL_S = 0.25
# Before a failure every writer has had this many writes acknowledged, so that the write
# outage and the ledgers start from writers that were writing (their start takes a second
# or two: a Python process, then a connection over a WAN path).
WRITES_BEFORE_FAILURE = 2
WRITERS_START_TIMEOUT_S = 15.0


def id_prefix(scenario: str, strategy: str) -> str:
    """Where the ids of a cell's writes start: unique to the cell within a run."""
    return f"{scenario}/{strategy}/"


def out_file(scratch: Path, host: str) -> Path:
    return scratch / f"writer-{host}.jsonl"


def start(spawn, scratch: Path, hosts: list[str], target: dict, patients: int, seed: int,
          prefix: str) -> dict[str, subprocess.Popen]:
    """A writer on each host (`spawn(host, module, name, config)` starts it inside)."""
    return {h: spawn(h, "measurements.dbbench_worker", f"writer-{h}", {
                "mode": "writer", "primary": target, "patients": patients,
                "interval_s": WRITER_INTERVAL_S, "seed": seed * 1000 + i, "writer": h,
                "id_prefix": f"{prefix}{h}/", "out": str(out_file(scratch, h))})
            for i, h in enumerate(hosts)}


def wait_writing(writers: dict[str, subprocess.Popen], scratch: Path, note) -> None:
    """Until every writer has WRITES_BEFORE_FAILURE writes acknowledged; one that exits or
    does not get there in time is left to the cell's record (no_data), not waited on."""
    deadline = time.monotonic() + WRITERS_START_TIMEOUT_S
    waiting = dict(writers)
    while waiting and time.monotonic() < deadline:
        for host, proc in list(waiting.items()):
            path = out_file(scratch, host)
            acked = sum(1 for r in read_json_lines(path, "sample") if r["ok"]) \
                if path.exists() else 0
            if acked >= WRITES_BEFORE_FAILURE or proc.poll() is not None:
                del waiting[host]
        time.sleep(0.1)
    if waiting:
        note(f"writers not writing after {WRITERS_START_TIMEOUT_S:.0f} s: "
             f"{', '.join(sorted(waiting))}")


def collect(writers: dict[str, subprocess.Popen], scratch: Path, no_data: dict) -> list[dict]:
    """Stop the writers; their writes as probe records of kind "writer". A writer that
    failed or wrote nothing is named in no_data["writers"]: no data, not no failure."""
    records = []
    for host, proc in writers.items():
        code = stop_process(proc)
        mine = read_json_lines(out_file(scratch, host), "sample")
        if code not in (0, None) or not mine:
            no_data.setdefault("writers", {})[host] = (
                f"exited with status {code}" if code else "wrote no records")
        records += [{"kind": "writer", "src": host, "start": r["start"],
                     "latency_ms": r["latency_ms"] if r["ok"] else None, "ok": r["ok"],
                     "served_by": r["server"], "error": r.get("error"), "id": r["id"]}
                    for r in mine]
    return records
