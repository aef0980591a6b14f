"""Where the machine's CPU went during a window: the emulator's parts beside the workload's.

On 2 cores the lab's own workload competes with the emulator it measures through, so a
comparison records, per cell, the CPU seconds each part used. Processes are told apart by
their command lines (PARTS); a process that exits is counted through its parent (the kernel
adds a reaped child's CPU to the parent's cutime/cstime), which counts a child alive at the
window's start and reaped before its end with its whole lifetime, a small overcount for the
lab's short-lived children (PostgreSQL's per-connection backends).
"""

from __future__ import annotations

import os
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
EMULATOR = ("delay line", "switches", "controller")
# (part, what its command line contains): the first that matches names the process.
PARTS = (
    ("delay line", ("lab.delayline",)),
    ("switches", ("ovs-vswitchd unix:/run/hclab", "ovsdb-server /run/hclab")),
    ("controller", ("controllers.launcher",)),
    ("clinic and service probes", ("measurements.inlab probe",)),
    ("application server", ("measurements.inlab serve",)),
    ("database workload", ("measurements.dbbench_worker --serve",)),
    ("writers", ("measurements.dbbench_worker",)),
    ("failover manager", ("measurements.failover",)),
    ("postgres", ("postgres",)),
)


def part_of(cmdline: str) -> str | None:
    for part, needles in PARTS:
        if any(needle in cmdline for needle in needles):
            return part
    return None


def snapshot(proc: Path = Path("/proc")) -> dict[int, tuple[str, float]]:
    """pid -> (part, CPU seconds so far, its reaped children's included) of the lab's
    processes; the calling process is "lab (orchestration)"."""
    found = {}
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry.name)
        part = "lab (orchestration)" if pid == me else part_of(cmdline)
        if part is None:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        found[pid] = (part, (utime + stime + cutime + cstime) * TICK_S)
    return found


def used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
         seconds: float, cores: int | None = None) -> dict:
    """CPU seconds per part between two snapshots, each part's share of the machine, and the
    emulator's and the workload's totals."""
    cores = cores or os.cpu_count() or 1
    per_part: dict[str, float] = {}
    for pid, (part, total) in after.items():
        start = before.get(pid, (part, 0.0))[1]
        per_part[part] = per_part.get(part, 0.0) + max(0.0, total - start)
    emulator = sum(v for k, v in per_part.items() if k in EMULATOR)
    workload = sum(v for k, v in per_part.items() if k not in EMULATOR)
    capacity = seconds * cores
    return {"seconds": round(seconds, 3), "cores": cores,
            "cpu_s": {k: round(v, 2) for k, v in sorted(per_part.items(), key=lambda kv: -kv[1])},
            "emulator_cpu_s": round(emulator, 2), "workload_cpu_s": round(workload, 2),
            "machine_share_pct": {"emulator": round(100 * emulator / capacity, 1) if capacity else None,
                                  "workload": round(100 * workload / capacity, 1) if capacity else None}}
