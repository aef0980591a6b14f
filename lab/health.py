"""Whether the emulator kept up while something was measured: the health of a window.

A delay the lab claims holds only while the machine keeps up with the emulation. On a
2-core machine the lab's own workload can starve it, and a figure taken then measures the
machine, not the network. `HealthWatch` samples, in a thread of its own, every
SAMPLE_INTERVAL_S: the CPU's run queue (procs_running) and steal time (/proc/stat); every
COUNTER_INTERVAL_S: the delay line's counters (frames sent more than 250 us late, frames
the kernel dropped because it did not read them in time), the switch daemons demoted from
real-time priority (userspace datapath) and the controller's echo round trip to each switch
(GET /v1/links). `block(start, end)` sums a window up and says whether the emulator kept up
(LIMITS); the spans of COUNTER_INTERVAL_S in which it did not are listed, so that samples
taken in them can be flagged one by one. Frames dropped by a link's own queue limit are the
model's (a bottleneck), not the emulator's, and are reported apart.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_INTERVAL_S = 0.25
COUNTER_INTERVAL_S = 1.0
# A window in which any of these is exceeded did not keep up.
LIMITS = {
    "late_pct": 1.0,  # share of frames sent more than 250 us after their due time
    "kernel_dropped": 0,  # frames the kernel dropped before the delay line read them
    "switch_demotions": 0,  # switch daemons demoted from real-time priority
    "steal_pct": 5.0,  # CPU time the hypervisor took
    "run_queue_per_core": 2.0,  # mean runnable threads per core
    "control_rtt_ms": 100.0,  # the controller's echo round trip to a switch, at most
}
LATE_KEY = "late_over_250us"


@dataclass
class Counters:
    """Cumulative counters at one moment (None: not available on this lab)."""

    time: float
    frames: int | None = None
    late: int | None = None
    kernel_dropped: int | None = None
    queue_dropped: int | None = None
    demotions: int | None = None
    control_rtt_ms: float | None = None  # the largest over the switches, now


@dataclass
class CpuSample:
    time: float
    running: int
    steal: int
    total: int


@dataclass
class Mark:
    """Where a window starts or ends: the counters then, and how many CPU samples came before."""

    counters: Counters
    samples: int


def read_cpu(stat: Path = Path("/proc/stat")) -> CpuSample:
    """Runnable threads now, and the cumulative steal and total CPU jiffies."""
    steal = total = running = 0
    for line in stat.read_text().splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            total = sum(values[:8])  # guest time is already counted in user
            steal = values[7] if len(values) > 7 else 0
        elif line.startswith("procs_running"):
            running = int(line.split()[1])
    return CpuSample(time.time(), running, steal, total)


def delay_line_totals(stats: dict) -> dict[str, int] | None:
    """The delay line's counters summed over links and directions (None: no delay line)."""
    links = stats.get("links")
    if not links:
        return None
    directions = [d for link in links.values() for d in link.values()]
    return {"frames": sum(d["forwarded"] for d in directions),
            "late": sum(d.get(LATE_KEY, 0) for d in directions),
            "kernel_dropped": sum(d.get("rx_overflow", 0) for d in directions),
            "queue_dropped": sum(d.get("dropped", 0) for d in directions)}


class HealthWatch:
    """Samples the emulator's health for the lifetime of a lab (start/stop)."""

    def __init__(self, lab, cores: int | None = None):
        self.lab = lab
        self.cores = cores or os.cpu_count() or 1
        self.cpu: list[CpuSample] = []
        self.counters: list[Counters] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._reading = threading.Lock()  # one SIGUSR1 round trip to the delay line at a time
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.counters.append(self.read_counters())
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def read_counters(self) -> Counters:
        with self._reading:
            return self._read_counters()

    def _read_counters(self) -> Counters:
        found = Counters(time.time())
        emulation = getattr(self.lab, "emulation", None)
        totals = delay_line_totals(emulation.stats()) if emulation is not None else None
        if totals:
            found.frames, found.late = totals["frames"], totals["late"]
            found.kernel_dropped, found.queue_dropped = totals["kernel_dropped"], totals["queue_dropped"]
        priority = getattr(self.lab, "switch_priority", None)
        if priority is not None:
            found.demotions = priority.summary()["demotions"]
        controller = getattr(self.lab, "controller", None)
        if controller is not None:
            try:
                rtts = controller.get("links").get("control_rtt_ms", {})
                found.control_rtt_ms = max(rtts.values(), default=None)
            except Exception:  # noqa: BLE001 - a busy controller is what is measured
                found.control_rtt_ms = None
        return found

    def _run(self) -> None:
        next_counters = time.monotonic() + COUNTER_INTERVAL_S
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            sample = read_cpu()
            with self._lock:
                self.cpu.append(sample)
            if time.monotonic() >= next_counters:
                next_counters += COUNTER_INTERVAL_S
                counters = self.read_counters()
                with self._lock:
                    self.counters.append(counters)

    def mark(self) -> Mark:
        """The state now, to start or end a window with."""
        counters = self.read_counters()
        with self._lock:
            self.counters.append(counters)
            return Mark(counters, len(self.cpu))

    def block(self, start: Mark, end: Mark) -> dict:
        """The window's health: what was measured, whether it kept up, and why not."""
        with self._lock:
            cpu = self.cpu[max(0, start.samples - 1):end.samples]
            counters = sorted((c for c in self.counters
                               if start.counters.time <= c.time <= end.counters.time),
                              key=lambda c: c.time)  # the thread's and mark()'s interleave
        figures = summarize(start.counters, end.counters, cpu, self.cores)
        reasons = verdict(figures)
        bad = [[round(a.time, 3), round(b.time, 3)] for a, b in zip(counters, counters[1:])
               if verdict(summarize(a, b, [s for s in cpu if a.time <= s.time <= b.time],
                                    self.cores))]
        return {"seconds": round(end.counters.time - start.counters.time, 3), **figures,
                "kept_up": not reasons, "reasons": reasons, "unhealthy_spans": bad}


def _delta(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else b - a


def summarize(a: Counters, b: Counters, cpu: list[CpuSample], cores: int) -> dict:
    """The figures of LIMITS between two counter readings and the CPU samples within."""
    frames, late = _delta(a.frames, b.frames), _delta(a.late, b.late)
    steal = total = None
    if len(cpu) >= 2:
        steal, total = cpu[-1].steal - cpu[0].steal, cpu[-1].total - cpu[0].total
    rtts = [c for c in (a.control_rtt_ms, b.control_rtt_ms) if c is not None]
    return {
        "frames": frames,
        "late_pct": round(100.0 * late / frames, 3) if frames else (0.0 if frames == 0 else None),
        "kernel_dropped": _delta(a.kernel_dropped, b.kernel_dropped),
        "queue_dropped": _delta(a.queue_dropped, b.queue_dropped),
        "switch_demotions": _delta(a.demotions, b.demotions),
        "steal_pct": round(100.0 * steal / total, 2) if total else None,
        "run_queue": {"mean": round(statistics.fmean(s.running for s in cpu), 2),
                      "max": max(s.running for s in cpu), "cores": cores} if cpu else None,
        "control_rtt_ms": max(rtts) if rtts else None,
    }


def verdict(figures: dict) -> list[str]:
    """Why the emulator did not keep up, in words (empty: it kept up)."""
    reasons = []
    over = lambda key: figures.get(key) is not None and figures[key] > LIMITS[key]  # noqa: E731
    if over("late_pct"):
        reasons.append(f"{figures['late_pct']:.1f} % of frames sent over 250 us late")
    if over("kernel_dropped"):
        reasons.append(f"{figures['kernel_dropped']} frames dropped before the delay line "
                       f"read them")
    if over("switch_demotions"):
        reasons.append(f"switch daemons demoted {figures['switch_demotions']} times")
    if over("steal_pct"):
        reasons.append(f"{figures['steal_pct']:.1f} % CPU steal")
    queue = figures.get("run_queue")
    if queue and queue["mean"] > LIMITS["run_queue_per_core"] * queue["cores"]:
        reasons.append(f"run queue {queue['mean']:.1f} on {queue['cores']} cores")
    if over("control_rtt_ms"):
        reasons.append(f"controller echo round trip {figures['control_rtt_ms']:.0f} ms")
    return reasons


def describe(health: dict) -> str:
    """One sentence on a window's health, for people."""
    parts = []
    if health.get("frames") is not None:
        parts.append(f"{health['frames']} frames, {health['late_pct']:.2f} % over 250 us late, "
                     f"{health['kernel_dropped']} dropped unread")
    if health.get("run_queue"):
        q = health["run_queue"]
        parts.append(f"run queue {q['mean']:.1f} (max {q['max']}) on {q['cores']} cores")
    if health.get("steal_pct") is not None:
        parts.append(f"steal {health['steal_pct']:.1f} %")
    if health.get("control_rtt_ms") is not None:
        parts.append(f"controller echo up to {health['control_rtt_ms']:.1f} ms")
    figures = "; ".join(parts) or "no figures"
    if health["kept_up"]:
        return f"the emulator kept up ({figures})"
    return (f"the emulator did NOT keep up: {', '.join(health['reasons'])} ({figures}); "
            f"numbers measured then are not to be trusted")
