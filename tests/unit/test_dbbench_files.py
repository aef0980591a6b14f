"""Result files of the database benchmark: samples.csv, summary.json, the model check."""

from __future__ import annotations

import json

import pytest

from lab.files import write_json
from measurements.dbbench import placements_of
from measurements.dbresults import (CSV_FIELDS, SUMMARY_FIELDS, Placement, Sample, model_check,
                                    read_samples_csv, summarize_samples, write_samples_csv)
from tests.helpers import DEFAULT_TOPOLOGY
from topologies.loader import load


def _samples() -> list[Sample]:
    rows = [Sample("pg1", "rtt_ping", 1.0, 0.02), Sample("pg1", "page", 2.0, 2.0),
            Sample("pg1", "page", 2.1, 4.0)]
    rows += [Sample("svrga", "rtt_ping", 3.0 + i, 10.0) for i in range(5)]
    rows += [Sample("svrga", "page", 4.0 + i, 200.0 + i) for i in range(5)]
    rows.append(Sample("svrga", "page", 9.5, 0.0, ok=False))
    return rows


def test_samples_csv_round_trip(tmp_path):
    path = tmp_path / "samples.csv"
    write_samples_csv(path, _samples())
    header = path.read_text().splitlines()[0]
    assert header == ",".join(CSV_FIELDS) == "placement,operation,start_time,latency_ms,ok"
    back = read_samples_csv(path)
    assert [(s.placement, s.operation, s.ok) for s in back] == \
        [(s.placement, s.operation, s.ok) for s in _samples()]
    assert back[4].latency_ms == pytest.approx(10.0)


def test_samples_csv_with_other_columns_is_refused(tmp_path):
    path = tmp_path / "samples.csv"
    path.write_text("placement,op,latency\nx,y,1\n")
    with pytest.raises(ValueError, match="columns"):
        read_samples_csv(path)


def test_summary_records_per_placement_and_operation(tmp_path):
    where = {"pg1": Placement("pg1", "dc1", "db-host"),
             "svrga": Placement("svrga", "rga", "region")}
    summary = summarize_samples(_samples(), where)
    assert [(r["placement"], r["operation"]) for r in summary] == [
        ("pg1", "rtt_ping"), ("pg1", "page"), ("svrga", "rtt_ping"), ("svrga", "page")]
    page = summary[3]
    assert list(page) == list(SUMMARY_FIELDS)
    assert page["n"] == 5 and page["errors"] == 1  # the failed request is counted, not timed
    assert page["p50_ms"] == pytest.approx(202.0)
    assert page["site"] == "rga" and page["kind"] == "region"
    assert page["ci95_low_ms"] <= page["p50_ms"] <= page["ci95_high_ms"]
    write_json(tmp_path / "summary.json", summary)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_model_check_predicts_n_round_trips_plus_server_time():
    summary = summarize_samples(_samples())
    rows = model_check(summary, page_queries=20, server="pg1")
    assert len(rows) == 1
    row = rows[0]
    assert row["placement"] == "svrga"
    assert row["server_page_p50_ms"] == pytest.approx(3.0)
    assert row["predicted_page_ms"] == pytest.approx(20 * 10.0 + 3.0)
    assert row["measured_page_p50_ms"] == pytest.approx(202.0)
    assert row["measured_over_predicted"] == pytest.approx(202.0 / 203.0)


def test_placements_are_the_service_and_monolith_hosts():
    places = placements_of(load(DEFAULT_TOPOLOGY))
    assert [p.host for p in places][:3] == ["mono1", "mono2", "svop1a"]
    assert {p.kind for p in places} == {"datacenter", "outpost", "localzone", "region"}
    assert len(places) == 12
