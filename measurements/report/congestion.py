"""The congestion scenario's numbers: how each strategy followed delays that changed.

From the cells that played schedules (measurements/congestion.py) and schedule.jsonl (the
schedules as applied): the pass is cut into segments at every applied change; per strategy,
the latency the watched consumers (those whose path crossed a scheduled link when the cell
began) saw in each segment, by probe kind, and when the controller moved their paths off
the links after the delay rose ("moved after") and back after it fell ("back after"), both
from the first change of the watched paths in the controller's own answers.
"""

from __future__ import annotations

from measurements.report.raw import quiet
from measurements.stats import percentile

KINDS = ("service", "client")


def segments(lines: list[dict], end: float) -> list[dict]:
    """Applied schedule lines of one cell -> [{start, end, delays: {link name: ms}}]."""
    by_time: dict[float, dict[str, float]] = {}
    for line in sorted(lines, key=lambda x: x["time"]):
        by_time.setdefault(round(line["t_s"], 6), {"time": line["time"], "delays": {}})
        by_time[round(line["t_s"], 6)]["delays"][line["name"]] = line["delay_ms"]
    found, delays = [], {}
    moments = sorted(by_time.values(), key=lambda m: m["time"])
    for i, moment in enumerate(moments):
        delays = {**delays, **moment["delays"]}
        stop = moments[i + 1]["time"] if i + 1 < len(moments) else end
        if stop > moment["time"]:
            found.append({"start": moment["time"], "end": stop, "delays": dict(delays)})
    return found


def _changes(cell: dict) -> list[float]:
    """Times at which any watched path differs from the one before."""
    initial = cell.get("watched", {})
    times, previous = [], initial
    for t, paths in cell.get("paths_over_time", []):
        if paths != previous:
            times.append(t)
        previous = paths
    return times


def _reaction(cell: dict, segs: list[dict]) -> tuple[float | None, float | None]:
    """Seconds from the first rise to the first path change after it, and from the first
    fall after that to the next path change."""
    rise = next((s["start"] for a, s in zip(segs, segs[1:])
                 if any(s["delays"][k] > a["delays"].get(k, 0) for k in s["delays"])), None)
    if rise is None:
        return None, None
    fall = next((s["start"] for a, s in zip(segs, segs[1:]) if s["start"] > rise
                 and any(s["delays"][k] < a["delays"].get(k, 0) for k in s["delays"])), None)
    changes = _changes(cell)
    moved = next((t for t in changes if t >= rise), None)
    back = next((t for t in changes if fall is not None and t >= fall), None)
    return (None if moved is None else round(moved - rise, 2),
            None if back is None else round(back - fall, 2))


def _segment_stats(requests: list[dict], watched_hosts: set[str], seg: dict,
                   busy: list) -> dict:
    out = {}
    for kind in KINDS:
        values = [r["latency_ms"] for r in requests if r["kind"] == kind and r["ok"]
                  and r["src"] in watched_hosts and seg["start"] <= r["start"] < seg["end"]
                  and quiet(r, busy)]
        out[kind] = {"n": len(values),
                     "p50_ms": round(percentile(values, 50), 3) if values else None}
    return out


def compute(raw: dict) -> dict | None:
    """The congestion section's numbers, or None if no cell played a schedule."""
    cells = [c for c in raw["cells"] if "schedule_start" in c]
    if not cells:
        return None
    rows = []
    for cell in cells:
        key = (cell["scenario"], cell["strategy"])
        lines = [x for x in raw.get("schedule", []) if (x["scenario"], x["strategy"]) == key]
        segs = segments(lines, cell["schedule_end"])
        watched_hosts = {k.split(">")[0] for k in cell.get("watched", {})}
        requests = [r for r in raw["requests"] if (r["scenario"], r["strategy"]) == key]
        moved, back = _reaction(cell, segs)
        rows.append({
            "scenario": cell["scenario"], "strategy": cell["strategy"],
            "watched": sorted(cell.get("watched", {})), "moved_after_s": moved,
            "back_after_s": back,
            "segments": [{"from_s": round(s["start"] - cell["schedule_start"], 2),
                          "to_s": round(s["end"] - cell["schedule_start"], 2),
                          "delays_ms": s["delays"],
                          **_segment_stats(requests, watched_hosts, s, cell.get("db_phases", []))}
                         for s in segs]})
    return {"cells": rows}


def table(section: dict, scenario: str) -> tuple[str, list[str], list[list[str]]]:
    """The section as one table (title, headings, a row per strategy), for report.md and
    the command line: when paths moved, and the watched services' connect p50 (n) per
    segment of the schedule."""
    cells = [c for c in section["cells"] if c["scenario"] == scenario]
    first = cells[0]["segments"]
    headings = ["strategy", "pairs watched", "moved after s", "back after s"] + [
        f"{s['from_s']:.0f}-{s['to_s']:.0f} s: "
        + ", ".join(f"{k} {v:g}" for k, v in s["delays_ms"].items()) for s in first]
    rows = []
    for c in cells:
        row = [c["strategy"], str(len(c["watched"])), _num(c["moved_after_s"]),
               _num(c["back_after_s"])]
        for s in c["segments"][:len(first)]:
            svc = s["service"]
            row.append(f"{_num(svc['p50_ms'])} ({svc['n']})")
        rows.append(row + ["-"] * (len(headings) - len(row)))
    return (f"{scenario}: services' connect p50 ms (n) while the delays follow their "
            f"schedules (one-way ms per segment)", headings, rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
