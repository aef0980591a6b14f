"""Real-time priority for the lab's switch daemons while they are light.

Why: with the userspace datapath each switch's ovs-vswitchd forwards frames from its main
thread, which poll() wakes. At normal priority a woken switch waits behind whatever else runs
(probes, the controller, PostgreSQL, other switches, the delay line's capped spin), and on a
2-core machine that wait made the tail of every path. Measured with `lab verify` on the
default topology (measurements in the README): median p99 - p50 over the 171 site paths
4.8-5.3 ms at normal priority, 0.38-0.59 ms with the switches' main threads at SCHED_FIFO 2;
paths more than 0.2 ms off their model 3-7 (verify failing) against 0-1 (passing). Priority
2 is above the delay line's 1: a switch's few microseconds of work do not wait for the delay
line's spin before a deadline.

A switch forwarding bulk traffic at real-time priority would take whole cores from everything
else (benchmarks/bench_switch_priority.py: bulk TCP over dc1-op1a with the switches always
at SCHED_FIFO, a normal CPU-bound process got 0.06-0.07 of a core; 0.50-0.52 with this
watcher). So a watcher measures each main thread's CPU every WINDOW_S and sends one that used
more than DEMOTE_SHARE of a CPU back to normal priority, and raises it again once it used
less than PROMOTE_SHARE: real-time wake-ups for light traffic, fair sharing for bulk.
"""

from __future__ import annotations

import os
import threading
import time

PRIORITY = 2
WINDOW_S = 0.1
DEMOTE_SHARE = 0.3
PROMOTE_SHARE = 0.1


def wants_realtime(realtime: bool, share: float) -> bool:
    """Whether a switch whose main thread used `share` of a CPU should run real-time next."""
    if realtime:
        return share <= DEMOTE_SHARE
    return share < PROMOTE_SHARE


def cpu_seconds(tid: int) -> float:
    """Seconds a thread has run, from the scheduler's own account (schedstat, in ns)."""
    with open(f"/proc/{tid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def set_realtime(tid: int, realtime: bool) -> None:
    if realtime:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(PRIORITY))
    else:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))


class SwitchPriority:
    """Keeps the given main threads at SCHED_FIFO PRIORITY while each is light."""

    def __init__(self, tids: list[int]):
        self.tids = list(tids)
        self.realtime: dict[int, bool] = {}
        self.demotions = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Raise every thread and start watching; False (nothing changed) where not permitted."""
        for tid in self.tids:
            try:
                set_realtime(tid, True)
            except ProcessLookupError:  # a switch that died is reported by the bring-up
                continue
            except PermissionError:
                for raised in list(self.realtime):
                    self._set(raised, False)
                self.realtime.clear()
                return False
            self.realtime[tid] = True
        self._thread = threading.Thread(target=self._watch, name="switch-priority", daemon=True)
        self._thread.start()
        return True

    def summary(self) -> dict:
        return {"policy": f"SCHED_FIFO {PRIORITY} while a switch uses at most "
                          f"{DEMOTE_SHARE:.0%} of a CPU", "switches": len(self.tids),
                "realtime_now": sum(self.realtime.values()), "demotions": self.demotions}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _set(self, tid: int, realtime: bool) -> None:
        try:
            set_realtime(tid, realtime)
        except (ProcessLookupError, PermissionError):
            self.realtime.pop(tid, None)

    def _watch(self) -> None:
        last = {tid: used for tid in self.realtime if (used := self._cpu(tid)) is not None}
        then = time.monotonic()
        while not self._stop.wait(WINDOW_S):
            now = time.monotonic()
            for tid in list(self.realtime):
                used = self._cpu(tid)
                if used is None or tid not in last:  # the switch went away (teardown)
                    self.realtime.pop(tid)
                    continue
                share = (used - last[tid]) / (now - then)
                last[tid] = used
                want = wants_realtime(self.realtime[tid], share)
                if want != self.realtime[tid]:
                    self.demotions += not want
                    self.realtime[tid] = want
                    self._set(tid, want)
            then = now

    @staticmethod
    def _cpu(tid: int) -> float | None:
        try:
            return cpu_seconds(tid)
        except (OSError, ValueError, IndexError):
            return None
