"""The congestion cell of `lab compare`: the topology's schedules play while the probes run.

Instead of a failure, the links that have a schedule (topologies.trace) follow it for one
pass (lab.schedule's player, its log appended to the run's schedule.jsonl, tagged with the
cell). Every PATH_SAMPLE_S the controller's paths are read back: for each consumer whose
path to its chosen endpoint crossed a scheduled link when the cell began, the path it has
now. The report (measurements/report/congestion.py) sets these against the probes' latency:
whether and when each strategy moved off a link whose delay rose, and what the clients and
services paid meanwhile.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lab.schedule import SchedulePlayer
from measurements.jsonlines import read_json_lines
from measurements.scenarios import Scenario

PATH_SAMPLE_S = 0.25
SETTLE_AFTER_S = 1.0  # probes keep running this long after the pass, at configured delays


def crossing(paths: list[dict], choices: dict, ends: set[frozenset]) -> dict[str, list[str]]:
    """"consumer>endpoint" -> site path, for the chosen endpoints whose path uses a link
    between any of `ends` (pairs of sites)."""
    by_pair = {(p["src"], p["dst"]): p["path"] for p in paths}
    found = {}
    for chosen in choices.values():
        for consumer, endpoint in chosen.items():
            path = by_pair.get((consumer, endpoint)) if endpoint else None
            if path and any(frozenset(hop) in ends for hop in zip(path, path[1:])):
                found[f"{consumer}>{endpoint}"] = path
    return found


def play(lab, scenario: Scenario, record: dict, scratch: Path, out: Path) -> None:
    """One pass of the scenario's schedules; the paths of the pairs they touch, over time."""
    topo = lab.topology
    schedules = {i: topo.links[i - 1].schedule for i in scenario.scheduled}
    ends = {frozenset((topo.links[i - 1].a, topo.links[i - 1].b)) for i in scenario.scheduled}
    ctl = lab.controller
    watched = crossing(ctl.get("paths")["paths"], record["choices_before"], ends)
    record["watched"] = watched
    record["paths_over_time"] = []
    log = scratch / "schedule.jsonl"
    with SchedulePlayer(lab.emulation, schedules, log) as player:
        record["schedule_start"] = player.start_time
        end = time.monotonic() + scenario.schedule_s
        while time.monotonic() < end and player.error is None:
            by_pair = {f"{p['src']}>{p['dst']}": p["path"] for p in ctl.get("paths")["paths"]}
            record["paths_over_time"].append(
                [round(time.time(), 3), {k: by_pair.get(k) for k in watched}])
            time.sleep(PATH_SAMPLE_S)
    if player.error is not None:
        raise player.error
    record["schedule_end"] = time.time()
    time.sleep(SETTLE_AFTER_S)
    with open(out / "schedule.jsonl", "a") as f:
        for line in read_json_lines(log):
            f.write(json.dumps({"scenario": scenario.name, "strategy": record["strategy"],
                                **line}) + "\n")
