"""The emulator's health over a window (lab/health.py): figures, limits, unhealthy spans."""

from __future__ import annotations

import time
from pathlib import Path

from lab import health
from lab.health import LATE_KEY, Counters, CpuSample, HealthWatch, delay_line_totals, read_cpu


def direction(forwarded: int, late: int, overflow: int = 0, dropped: int = 0) -> dict:
    return {"forwarded": forwarded, LATE_KEY: late, "rx_overflow": overflow, "dropped": dropped}


def test_the_delay_lines_counters_are_summed_over_links_and_directions():
    stats = {"links": {"l1": {"a_to_b": direction(10, 1, 2, 3), "b_to_a": direction(5, 0)},
                       "l2": {"a_to_b": direction(1, 1), "b_to_a": direction(0, 0)}}}
    assert delay_line_totals(stats) == {"frames": 16, "late": 2, "kernel_dropped": 2,
                                        "queue_dropped": 3}
    assert delay_line_totals({}) is None  # netem: no delay line


def test_proc_stat_gives_the_run_queue_steal_and_total(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 5 20 0 0\ncpu0 1 2 3\nprocs_running 7\n")
    sample = read_cpu(stat)
    assert (sample.running, sample.steal, sample.total) == (7, 20, 985)


def test_a_window_within_the_limits_kept_up_and_one_beyond_says_why():
    a = Counters(0.0, frames=0, late=0, kernel_dropped=0, queue_dropped=0, demotions=0,
                 control_rtt_ms=1.0)
    b = Counters(1.0, frames=1000, late=5, kernel_dropped=0, queue_dropped=40, demotions=0,
                 control_rtt_ms=2.0)
    cpu = [CpuSample(0.1, 1, 0, 0), CpuSample(0.9, 3, 1, 200)]
    good = health.summarize(a, b, cpu, cores=2)
    assert (good["late_pct"], good["queue_dropped"], good["run_queue"]["mean"]) == (0.5, 40, 2.0)
    assert health.verdict(good) == []  # a link's own queue limit is the model's, not a fault
    worse = Counters(1.0, frames=1000, late=30, kernel_dropped=4, queue_dropped=0, demotions=2,
                     control_rtt_ms=250.0)
    cpu = [CpuSample(0.1, 6, 0, 0), CpuSample(0.9, 6, 30, 200)]
    assert health.verdict(health.summarize(a, worse, cpu, cores=2)) == [
        "3.0 % of frames sent over 250 us late", "4 frames dropped before the delay line read them",
        "switch daemons demoted 2 times", "15.0 % CPU steal", "run queue 6.0 on 2 cores",
        "controller echo round trip 250 ms"]


class Emulation:
    """A delay line whose frames run late from the fourth reading on (the first is the
    watch's start, the second the window's)."""

    def __init__(self):
        self.readings = 0

    def stats(self) -> dict:
        self.readings += 1
        late = 0 if self.readings < 4 else 100 * (self.readings - 3)
        return {"links": {"l": {"a_to_b": direction(1000 * self.readings, late),
                                "b_to_a": direction(0, 0)}}}


class Lab:
    emulation = Emulation()
    switch_priority = None
    controller = None


def test_a_watch_finds_the_seconds_in_which_the_emulator_fell_behind(monkeypatch):
    monkeypatch.setattr(health, "COUNTER_INTERVAL_S", 0.05)
    monkeypatch.setattr(health, "SAMPLE_INTERVAL_S", 0.01)
    # A calm CPU: only the delay line's lateness may decide (this machine's may be busy).
    monkeypatch.setattr(health, "read_cpu", lambda: CpuSample(time.time(), 1, 0, 100))
    watch = HealthWatch(Lab(), cores=2)
    watch.start()
    try:
        start = watch.mark()
        time.sleep(0.4)
        block = watch.block(start, watch.mark())
    finally:
        watch.stop()
    assert not block["kept_up"] and block["reasons"][0].endswith("over 250 us late")
    assert block["frames"] > 0 and block["run_queue"]["cores"] == 2
    assert block["unhealthy_spans"], block
    # Each span is one counter interval inside the window (the first readings had no late
    # frames: the window's first interval is not among them). Spans are rounded to 1 ms.
    t0 = start.counters.time
    assert all(t0 - 1e-3 <= a <= b <= t0 + block["seconds"] + 2e-3
               for a, b in block["unhealthy_spans"]), (t0, block)
    assert block["unhealthy_spans"][0][0] > t0 + 0.01
