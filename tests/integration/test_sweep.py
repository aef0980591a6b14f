"""`lab sweep` end to end on this machine (root, OVS, Mininet, PostgreSQL 15): two points, each
a real lab run with its own topology and services, the aggregated report checked against the
runs' own results, and a second start that finds both done."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from lab.runstate import marked_processes
from measurements.sweep import plan
from measurements.sweepfile import load
from tests.helpers import run_lab

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet, pytest.mark.postgres]

TWO_POINTS = {
    "name": "two-points",
    "base": {"controller.strategies": ["geo"], "scenarios": ["normal"],
             "workload": {"samples": 1, "failure_window_s": 1}, "lab.calibrate": False},
    "points": [{}, {"link_class.metro.delay_scale": 2, "controller.geo_bias.mono1": 90}],
}


def test_two_points_run_as_two_labs_and_the_report_matches_their_results(tmp_path):
    sweep_file = tmp_path / "two.yaml"
    sweep_file.write_text(yaml.safe_dump(TWO_POINTS))
    out = tmp_path / "out"
    first = run_lab("sweep", str(sweep_file), "--out", str(out), timeout=900)
    print(first.stdout[-3000:])
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert first.stdout.count(" finished point ") == 2  # one line per point
    sweep = load(sweep_file)
    base, changed = (out / "runs" / run.id for run in plan(sweep))

    # Each lab ran its point's topology: the metro links' delays doubled in the second.
    def delays(run):
        setup = json.loads((run / "setup.json").read_text())
        return {(l["a"], l["b"]): l["delay_ms"] for l in setup["topology"]["links"]
                if l["class"] == "metro"}
    assert delays(changed) == pytest.approx({k: 2 * v for k, v in delays(base).items()}, rel=1e-3)

    # ... and its services: a geo bias of 90 draws more clinics to mono1.
    def served_by_mono1(run):
        [cell] = [json.loads(line) for line in open(run / "cells.jsonl")]
        return Counter(cell["choices_before"]["app"].values())["mono1"]
    assert served_by_mono1(changed) > served_by_mono1(base)

    # The aggregated table is the runs' own figures (one repetition: no interval).
    results = json.loads((out / "sweep-results.json").read_text())
    assert results["runs_missing"] == [] and len(results["rows"]) == 2
    for run, row in zip((base, changed), results["rows"]):
        [cell] = json.loads((run / "results.json").read_text())["cells"]
        metric = row["metrics"]["client_p50_ms"]
        assert metric["values"] == [cell["clients"]["p50_ms"]] and metric["ci95_low"] is None
    report = (out / "sweep-report.md").read_text()
    assert f"| {results['rows'][1]['metrics']['client_p50_ms']['mean']:.2f} |" in report
    assert marked_processes() == []

    # A second start finds both runs done: nothing runs again, the report is made again.
    again = run_lab("sweep", str(sweep_file), "--out", str(out), timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count(" skipped point ") == 2 and " finished point " not in again.stdout
    assert "0 runs finished now, 2 before, 0 failed" in again.stdout
