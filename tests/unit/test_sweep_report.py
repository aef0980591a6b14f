"""A sweep without a lab: runs committed once by id, finished runs skipped, and the report's
numbers recomputed by hand from the runs' results (intervals across repetitions)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from measurements.report import sweep as sweep_report
from measurements.sweep import RUN_FILE, Tracker, commit, plan, run_dir, run_local
from measurements.sweep_ray import pack, unpack
from measurements.sweepfile import parse_sweep

SWEEP = {"name": "unit", "repetitions": 3, "seed": 5,
         "base": {"controller.strategies": ["latency", "geo"], "scenarios": ["normal"],
                  "workload.samples": 1},
         "grid": {"link_class.metro.delay_scale": [1, 2]}}


def fake_results(p50: dict[str, float], db: float) -> dict:
    """A results.json as `lab report` writes it, reduced to what the sweep reads."""
    return {"cells": [{"scenario": "normal", "strategy": strategy, "failure": None,
                       "clients": {"p50_ms": value, "p99_ms": 2 * value, "failed_pct": 0.0,
                                   "outage_ms": None},
                       "services": {"outage_ms": None}, "db_read": {"p50_ms": db}}
                      for strategy, value in p50.items()]}


def finished_folder(tmp_path, run, p50: dict[str, float], db: float = 3.0):
    folder = tmp_path / f"work-{run.id}"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(fake_results(p50, db)))
    (folder / RUN_FILE).write_text(json.dumps({"id": run.id}))
    return folder


@pytest.fixture
def sweep():
    return parse_sweep(SWEEP, "unit.yaml")


def test_a_run_is_committed_once_and_a_second_copy_is_dropped(sweep, tmp_path):
    run = plan(sweep)[0]
    out = tmp_path / "out"
    assert commit(out, run, finished_folder(tmp_path, run, {"latency": 1.0}))
    second = finished_folder(tmp_path, run, {"latency": 99.0})
    assert not commit(out, run, second)
    assert not second.exists()
    results = json.loads((run_dir(out, run) / "results.json").read_text())
    assert results["cells"][0]["clients"]["p50_ms"] == 1.0  # the first copy stays


def test_an_unfinished_folder_is_not_committed(sweep, tmp_path):
    run = plan(sweep)[0]
    folder = finished_folder(tmp_path, run, {"latency": 1.0})
    (folder / RUN_FILE).unlink()
    with pytest.raises(ValueError, match="not a finished run"):
        commit(tmp_path / "out", run, folder)


def test_a_run_travels_as_an_archive_unchanged(sweep, tmp_path):
    run = plan(sweep)[0]
    folder = finished_folder(tmp_path, run, {"latency": 1.0})
    (folder / "point").mkdir()
    (folder / "point" / "t.yaml").write_text("name: t\n")
    copy = unpack(pack(folder), tmp_path / "copy")
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == \
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    assert (copy / "point" / "t.yaml").read_text() == "name: t\n"


def test_runs_come_first_repetition_first_and_finished_ones_are_skipped(sweep, tmp_path):
    runs = plan(sweep)
    assert len(runs) == 6 and [r.seed for r in runs] == [5, 5, 6, 6, 7, 7]
    assert len({r.id for r in runs}) == 6
    out = tmp_path / "out"
    commit(out, runs[0], finished_folder(tmp_path, runs[0], {"latency": 1.0}))
    events = []
    tracker = Tracker(out, runs, events.append)
    assert [r.id for r in tracker.todo] == [r.id for r in runs[1:]]
    assert [(e.kind, e.run.id, e.done) for e in events] == [("skipped", runs[0].id, 1)]


def test_the_local_runner_runs_what_is_left_and_keeps_a_failed_run_aside(sweep, tmp_path,
                                                                           monkeypatch):
    runs = plan(sweep)
    out = tmp_path / "out"
    commit(out, runs[0], finished_folder(tmp_path, runs[0], {"latency": 1.0}))
    ran = []

    def fake_execute(run, work, lab_factory=None):
        ran.append(run.id)
        work.mkdir(parents=True)
        (work / "lab.log").write_text("bring-up\n")
        if run.id == runs[1].id:
            raise RuntimeError("the lab did not come up")
        (work / "results.json").write_text(json.dumps(fake_results({"latency": 1.0}, 3.0)))
        (work / RUN_FILE).write_text("{}")
        return work

    monkeypatch.setattr("measurements.sweep.execute", fake_execute)
    events = []
    outcome = run_local(sweep, out, events.append)
    assert ran == [r.id for r in runs[1:]]
    assert outcome.skipped == [runs[0].id]
    assert outcome.finished == [r.id for r in runs[2:]]
    assert list(outcome.failed) == [runs[1].id] and "did not come up" in outcome.failed[runs[1].id]
    [kept] = (out / "failed").iterdir()
    assert (kept / "lab.log").read_text() == "bring-up\n"
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r.id for r in runs
                                                                     if r.id != runs[1].id)
    finished = [e for e in events if e.kind == "finished"]
    assert finished[-1].done == 5 and finished[-1].total == 6
    assert finished[0].left_s is not None and finished[-1].left_s == 0


def test_intervals_across_repetitions_are_student_t_of_the_runs_own_figures(sweep, tmp_path):
    runs = plan(sweep)
    out = tmp_path / "out"
    p50 = {}  # (point label, strategy) -> the p50 of each repetition
    for i, run in enumerate(runs):
        values = {"latency": 10.0 + i, "geo": 20.0 + i * i}
        for strategy, value in values.items():
            p50.setdefault((run.point.label, strategy), []).append(value)
        commit(out, run, finished_folder(tmp_path, run, values, db=4.0))
    results = sweep_report.write_report(sweep, runs, out)
    assert results["runs_missing"] == [] and len(results["rows"]) == 4
    for row in results["rows"]:
        values = p50[(row["label"], row["strategy"])]
        metric = row["metrics"]["client_p50_ms"]
        mean, sem = np.mean(values), stats.sem(values)
        low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
        assert metric["values"] == values and metric["n"] == 3
        assert (metric["mean"], metric["ci95_low"], metric["ci95_high"]) == \
            pytest.approx((mean, low, high))
        assert row["metrics"]["db_read_p50_ms"]["ci95_low"] == 4.0  # no spread, no width
        assert "client_outage_ms" not in row["metrics"]  # no failure in these cells
    report = (out / "sweep-report.md").read_text()
    row = results["rows"][0]
    assert f"| {sweep_report.cell_text(row['metrics']['client_p50_ms'])} |" in report
    png = (out / "sweep-link_class.metro.delay_scale.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert json.loads((out / "sweep-results.json").read_text())["rows"] == results["rows"]


def test_a_report_of_a_sweep_under_way_counts_what_is_missing(sweep, tmp_path):
    runs = plan(sweep)
    out = tmp_path / "out"
    commit(out, runs[0], finished_folder(tmp_path, runs[0], {"latency": 7.0, "geo": 8.0}))
    results = sweep_report.aggregate(sweep, runs, out)
    assert results["runs_finished"] == [runs[0].id]
    assert results["runs_missing"] == [r.id for r in runs[1:]]
    [latency, geo] = results["rows"]
    assert latency["metrics"]["client_p50_ms"] == {
        "n": 1, "mean": 7.0, "ci95_low": None, "ci95_high": None, "min": 7.0, "max": 7.0,
        "values": [7.0]}
    assert sweep_report.cell_text(latency["metrics"]["client_p50_ms"]) == "7.00"
    shutil.rmtree(run_dir(out, runs[0]))
    assert sweep_report.aggregate(sweep, runs, out)["rows"] == []
