"""The congestion scenario's numbers: how each strategy followed delays that changed.

From the cells that played schedules (measurements/congestion.py) and schedule.jsonl (the
schedules as applied): the pass is cut into segments at every applied change; per strategy,
the latency the watched consumers (those whose path crossed a scheduled link when the cell
began) saw in each segment, by probe kind, and when the controller moved their paths off
the links whose delay rose first ("moved after") and back after it fell ("back after"), and
how often they came back while it was still up ("returns"), from the controller's answers.
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
    for moment in moments:
        delays = {**delays, **moment["delays"]}
        if found and found[-1]["delays"] == delays:
            continue  # no change (a trace's last row repeats the one before)
        if found:
            found[-1]["end"] = moment["time"]
        found.append({"start": moment["time"], "end": end, "delays": dict(delays)})
    return [s for s in found if s["end"] > s["start"]]


def _crossing(paths: dict, links: set[str]) -> int:
    """How many of the watched pairs' paths use one of these links ("a-b" names)."""
    return sum(1 for path in paths.values() if path and any(
        f"{a}-{b}" in links or f"{b}-{a}" in links for a, b in zip(path, path[1:])))


def _reaction(cell: dict, segs: list[dict]) -> dict:
    """When the watched pairs left the links whose delay rose first, and came back.

    moved after: seconds from the rise to the first reading of the controller's paths with at
    most half as many of the pairs over those links as when the cell began; back after: from
    their fall to the first reading with more than half again; returns: how often, while the
    delay was still up, a reading went from at most half back to more (the routing flapping
    back onto the slow links)."""
    none = {"moved_after_s": None, "back_after_s": None, "returns": None, "risen": []}
    rise = next(((a, s) for a, s in zip(segs, segs[1:])
                 if any(s["delays"][k] > a["delays"].get(k, 0) for k in s["delays"])), None)
    if rise is None or not cell.get("watched"):
        return none
    before, rise_seg = rise
    risen = {k for k in rise_seg["delays"] if rise_seg["delays"][k] > before["delays"].get(k, 0)}
    fall = next((s["start"] for a, s in zip(segs, segs[1:]) if s["start"] > rise_seg["start"]
                 and any(s["delays"][k] < a["delays"][k] for k in risen)), None)
    first = _crossing(cell["watched"], risen)
    readings = [(t, _crossing(paths, risen)) for t, paths in cell.get("paths_over_time", [])]
    up = [n for t, n in readings if rise_seg["start"] <= t < (fall or float("inf"))]
    half = first / 2
    moved = next((t for t, n in readings if t >= rise_seg["start"] and n <= half), None)
    back = next((t for t, n in readings if fall is not None and t >= fall and n > half), None)
    returns = sum(1 for a, b in zip(up, up[1:]) if a <= half < b)
    return {"moved_after_s": None if moved is None else round(moved - rise_seg["start"], 2),
            "back_after_s": None if back is None else round(back - fall, 2),
            "returns": returns, "risen": sorted(risen)}


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
        rows.append({
            "scenario": cell["scenario"], "strategy": cell["strategy"],
            "watched": sorted(cell.get("watched", {})), **_reaction(cell, segs),
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
    headings = ["strategy", "pairs watched", "moved after s", "back after s", "returns"] + [
        f"{s['from_s']:.0f}-{s['to_s']:.0f} s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in s["delays_ms"].items()) for s in first]
    rows = []
    for c in cells:
        row = [c["strategy"], str(len(c["watched"])), _num(c["moved_after_s"]),
               _num(c["back_after_s"]), "-" if c["returns"] is None else str(c["returns"])]
        for s in c["segments"][:len(first)]:
            svc = s["service"]
            row.append(f"{_num(svc['p50_ms'])} ({svc['n']})")
        rows.append(row + ["-"] * (len(headings) - len(row)))
    return (f"{scenario}: services' connect p50 ms (n) while the delays follow their "
            f"schedules (one-way ms per segment)", headings, rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
