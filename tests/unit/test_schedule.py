"""Playing schedules (lab.schedule) against a fake emulation, checking measured delay
against a schedule (measurements.schedulecheck), and the congestion report's numbers."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from lab.schedule import SchedulePlayer, timeline
from measurements.report import congestion
from measurements.schedulecheck import compare, expected_rtt
from tests.unit.test_emulation import emulated
from topologies.model import Schedule, TracePoint
from topologies.trace import parse_trace

STEP = "# source: test\ntime_s,delay_ms\n0,20\n0.3,40\n0.6,20\n"


def schedule(text: str = STEP, loop: bool = False, speed: float = 1.0) -> Schedule:
    return Schedule(parse_trace(text, "t.csv"), loop=loop, speed=speed)


def test_the_timeline_merges_links_changing_at_the_same_moment():
    moments = list(itertools.islice(timeline({1: schedule(loop=True), 2: schedule(speed=2)}), 5))
    assert [(t, sorted(points)) for t, points in moments] == [
        (0.0, [1, 2]), (0.15, [2]), (0.3, [1, 2]), (0.6, [1]), (0.9, [1])]


class FakeEmulation:
    def __init__(self):
        self.links = [emulated(20.0)]
        self.calls: list[tuple[float, dict]] = []

    def set_points(self, points):
        self.calls.append((time.monotonic(), points))
        for link in self.links:
            if link.index in points:
                link.delay_ms = points[link.index].delay_ms


def test_the_player_applies_each_change_on_time_logs_it_and_restores_the_link(tmp_path):
    emulation = FakeEmulation()
    log = tmp_path / "applied.jsonl"
    with SchedulePlayer(emulation, {1: schedule()}, log) as player:
        t0 = time.monotonic()
        time.sleep(0.8)
    assert player.error is None
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["t_s"], x["delay_ms"], x["hold_ms"]) for x in lines] == [
        (0.0, 20, 20.0), (0.3, 40, 40.0), (0.6, 20, 20.0)]
    # On time within a noisy machine's scheduling: applied at most 50 ms late.
    assert all(0 <= x["applied_s"] - x["t_s"] < 0.05 for x in lines)
    assert all(abs(at - t0 - x["t_s"]) < 0.05 for (at, _), x in zip(emulation.calls, lines))
    assert emulation.calls[-1][1][1].delay_ms == 20.0  # stop: the configured delay again


def test_the_check_finds_the_lag_and_the_error_of_measured_samples():
    s = schedule(loop=True)
    t = np.arange(0, 6, 0.004)
    noise = np.random.default_rng(7).normal(0, 0.05, t.size)
    lagged = expected_rtt(s, t - 0.04) + 0.1 + noise  # 40 ms late and 0.1 ms high
    row = compare(s, t, lagged)
    assert row["alignment_s"] == pytest.approx(0.04, abs=0.006)
    assert row["median_error_ms"] == pytest.approx(0.1, abs=0.02)
    assert row["n"] == t.size
    # A probe crossing a change sees the old delay one way and the new one back.
    assert expected_rtt(s, np.array([0.29]))[0] == 60


def test_the_congestion_section_times_the_reroute_from_the_rise_and_the_fall():
    applied = [{"scenario": "congestion", "strategy": "latency", "t_s": t, "time": 100 + t,
                "name": "dc1-dc2", "delay_ms": d}
               for t, d in ((0, 27.5), (4, 70), (10, 27.5), (14, 27.5))]
    cell = {"scenario": "congestion", "strategy": "latency", "schedule_start": 100,
            "schedule_end": 114, "watched": {"mono2>pg1": ["dc2", "dc1"]},
            "paths_over_time": [[100 + t, {"mono2>pg1": ["dc2", "dc1"] if t < 5.5 or t >= 11
                                           else ["dc2", "rgb", "rga", "dc1"]}]
                                for t in np.arange(0, 14, 0.25)]}
    requests = [{"scenario": "congestion", "strategy": "latency", "kind": "service",
                 "src": "mono2", "ok": True, "start": 100 + t,
                 "latency_ms": 110.0 if 4 <= t < 5.5 else 55.0}
                for t in np.arange(0, 14, 0.25)]
    section = congestion.compute({"cells": [cell], "schedule": applied, "requests": requests})
    row, = section["cells"]
    assert (row["moved_after_s"], row["back_after_s"], row["returns"]) == (1.5, 1.0, 0)
    assert [(s["from_s"], s["to_s"], s["service"]["n"]) for s in row["segments"]] == [
        (0, 4, 16), (4, 10, 24), (10, 14, 16)]
    title, headings, rows = congestion.table(section, "congestion")
    assert headings[5] == "0-4 s: dc1-dc2 27.5"
    assert rows[0][:5] == ["latency", "1", "1.50", "1.00", "0"]
