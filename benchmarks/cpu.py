"""CPU time of a process from /proc/PID/stat, for the benchmarks that measure CPU shares."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """User plus system CPU time of a whole process (all threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """CPU time of a whole process (all threads), in seconds."""
    return cpu_ticks(pid) / CLK_TCK


def cpu_share(pid: int, seconds: float) -> float:
    """Fraction of one core used by pid over the next `seconds`."""
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
