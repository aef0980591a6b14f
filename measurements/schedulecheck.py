"""`lab verify --schedule`: the delay over time, measured along each link's schedule.

While a player (lab.schedule) runs the topology's schedules, ICMP probes pinned to each
scheduled link (as `lab verify` measures links) sample its round trip every few
milliseconds, each sample with its send time. A probe sent at t crosses the link at t one
way and at t + d(t) back (the emulator holds a frame by the delay in force when it comes in),
so its expected round trip is d(t) + d(t + d(t)), d the schedule's one-way delay.

Two figures per link, and for all links together:
- error: the median of |measured - expected| round trip over all samples (the changes'
  instants included; the median is what a single late sample cannot move);
- time alignment: the shift of the schedule (within +-MAX_SHIFT_S) that best fits the
  samples (least mean |error|): how late the measured delay follows the scheduled one.
The target (issue 20): median error <= 0.2 ms and alignment within 100 ms.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from lab.calibration import pinned, representative
from lab.icmpprobe import measure_series
from lab.schedule import SchedulePlayer, scheduled_links
from lab.files import write_json
from topologies.model import Schedule

ERROR_TARGET_MS = 0.2
ALIGNMENT_TARGET_S = 0.1
MAX_SHIFT_S = 0.5
SHIFT_STEP_S = 0.002
GAP_MS = 3.0  # between two probes (of any link), as calibration probes


def delays_at(schedule: Schedule, t: np.ndarray) -> np.ndarray:
    """The schedule's one-way delay at each run time in t (Schedule.at, for arrays)."""
    points = schedule.trace.points
    offsets = np.maximum(np.asarray(t, dtype=float), 0.0) * schedule.speed
    if schedule.loop and np.isfinite(schedule.trace.period_s):
        offsets = np.mod(offsets, schedule.trace.period_s)
    times = np.array([p.time_s for p in points])
    index = np.clip(np.searchsorted(times, offsets, side="right") - 1, 0, len(points) - 1)
    return np.array([p.delay_ms for p in points])[index]


def expected_rtt(schedule: Schedule, t: np.ndarray) -> np.ndarray:
    """Round trip of probes sent at run times t: one way at t, back at t + that delay."""
    go = delays_at(schedule, t)
    return go + delays_at(schedule, np.asarray(t) + go / 1000)


def alignment(schedule: Schedule, t: np.ndarray, rtt: np.ndarray) -> float:
    """The shift (s) of the schedule that fits the samples best (least mean |error|)."""
    shifts = np.arange(-MAX_SHIFT_S, MAX_SHIFT_S + SHIFT_STEP_S / 2, SHIFT_STEP_S)
    costs = [float(np.mean(np.abs(rtt - expected_rtt(schedule, t - s)))) for s in shifts]
    return round(float(shifts[int(np.argmin(costs))]), 4)


def compare(schedule: Schedule, t: np.ndarray, rtt: np.ndarray) -> dict:
    """The error and the alignment of one link's samples (run times t, RTTs ms)."""
    errors = rtt - expected_rtt(schedule, t)
    shift = alignment(schedule, t, rtt) if errors.size else None
    abs_median = float(np.median(np.abs(errors))) if errors.size else None
    return {"n": int(errors.size),
            "median_abs_error_ms": None if abs_median is None else round(abs_median, 4),
            "median_error_ms": round(float(np.median(errors)), 4) if errors.size else None,
            "p95_abs_error_ms": round(float(np.percentile(np.abs(errors), 95)), 4)
            if errors.size else None,
            "alignment_s": shift}


def verify_schedule(lab, duration_s: float, out_dir: Path, gap_ms: float = GAP_MS) -> dict:
    """Play the topology's schedules for `duration_s`, probing every scheduled link all along.

    Writes schedule-applied.jsonl (the player's log), schedule-samples.json (every sample)
    and schedule-check.json (this report) in out_dir."""
    topo = lab.topology
    schedules = scheduled_links(topo)
    links = [topo.links[i - 1] for i in schedules
             if representative(topo, topo.links[i - 1].a) and representative(topo, topo.links[i - 1].b)]
    if not links:
        raise ValueError(f"{topo.source}: no link with a schedule has hosts at both ends")
    pairs = [(str(link.index), representative(topo, link.a), representative(topo, link.b))
             for link in links]
    count = max(1, int(duration_s * 1000 / (gap_ms * len(pairs))))
    out_dir.mkdir(parents=True, exist_ok=True)
    with pinned(lab, links):
        measure_series(lab, pairs, count=50, warmup=3, gap_ms=gap_ms)  # paths and ARP warm
        with SchedulePlayer(lab.emulation, schedules, out_dir / "schedule-applied.jsonl") as player:
            series = measure_series(lab, pairs, count=count, warmup=0, gap_ms=gap_ms)
    if player.error is not None:
        raise player.error
    report = {"duration_s": duration_s, "gap_ms": gap_ms, "backend": lab.backend,
              "targets": {"median_abs_error_ms": ERROR_TARGET_MS,
                          "alignment_s": ALIGNMENT_TARGET_S}, "links": []}
    samples = {}
    all_err = []
    for link in links:
        found, sent = series[str(link.index)]
        t = np.array([s - player.start_time for s, _ in found])
        rtt = np.array([r for _, r in found])
        row = {"index": link.index, "name": link.name, "sent": sent,
               "schedule": schedules[link.index].as_dict(), **compare(schedules[link.index], t, rtt)}
        report["links"].append(row)
        samples[link.name] = {
            "t_s": [round(x, 6) for x in t], "rtt_ms": [round(x, 4) for x in rtt],
            "scheduled": [[round(c, 6), p.delay_ms]
                          for c, p in schedules[link.index].changes(float(t.max(initial=0)))]}
        all_err.extend(np.abs(rtt - expected_rtt(schedules[link.index], t)))
    report["n"] = len(all_err)
    report["median_abs_error_ms"] = round(float(statistics.median(all_err)), 4) if all_err else None
    shifts = [abs(r["alignment_s"]) for r in report["links"] if r["alignment_s"] is not None]
    report["max_abs_alignment_s"] = max(shifts) if shifts else None
    report["pass"] = (report["median_abs_error_ms"] is not None and bool(shifts)
                      and report["median_abs_error_ms"] <= ERROR_TARGET_MS
                      and report["max_abs_alignment_s"] <= ALIGNMENT_TARGET_S)
    write_json(out_dir / "schedule-samples.json", samples)
    write_json(out_dir / "schedule-check.json", report)
    return report
