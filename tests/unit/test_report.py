"""The comparison report from small synthetic raw files: tables, outages, sentences, plots."""

from __future__ import annotations

import csv
import json

import pytest

from measurements.report.markdown import render_markdown
from measurements.report.raw import ReportError, load_raw
from measurements.report.results import compute, outage_ms
from measurements.report.tables import main_tables
from measurements.report.writer import write_report

T0 = 1_700_000_000.0

SETUP = {
    "topology": {
        "name": "tiny", "description": "two sites and a clinic",
        "sites": [{"name": "dc1", "kind": "datacenter", "lat": 42.0, "lon": -71.0, "label": "DC1"},
                  {"name": "lz1", "kind": "localzone", "lat": 42.3, "lon": -71.1, "label": "LZ1"},
                  {"name": "cl1", "kind": "clinic", "lat": 41.0, "lon": -73.0, "label": "Clinic 1"}],
        "links": [{"index": 1, "a": "dc1", "b": "lz1", "class": "metro", "delay_ms": 1.5,
                   "source": "derived", "distance_km": 30.0, "bandwidth_mbit": None},
                  {"index": 2, "a": "cl1", "b": "dc1", "class": "internet", "delay_ms": 5.0,
                   "source": "derived", "distance_km": 250.0, "bandwidth_mbit": 100}],
        "hosts": [{"name": "pg1", "site": "dc1", "role": "db-primary", "ip": "10.1.0.1"},
                  {"name": "mono1", "site": "dc1", "role": "monolith", "ip": "10.1.0.2"},
                  {"name": "svlz1", "site": "lz1", "role": "service", "ip": "10.2.0.1"},
                  {"name": "c1", "site": "cl1", "role": "client", "ip": "10.3.0.1"}]},
    "topology_file": "tiny.yaml", "versions": {"python": "3.11"},
    "strategies": ["hops", "latency"],
    "scenarios": [{"name": "normal", "description": "no failure", "links": [], "isolated": []},
                  {"name": "dc-failure", "description": "dc1 cut", "links": [1, 2],
                   "isolated": ["dc1"]}],
    "settings": {"samples": 3, "db_operations": ["read"], "page_queries": 5,
                 "client_interval_s": 0.1, "service_interval_s": 0.1, "request_timeout_s": 1.0,
                 "failure_window_s": 1.0},
    "links_backend": "userspace", "datapath": "user", "controller": "builtin",
    "calibration": None, "bring_up_s": 10.0, "total_s": 60.0,
}


def request(scenario, strategy, t, latency, ok=True, src="c1", kind="client", served="mono1"):
    return {"scenario": scenario, "strategy": strategy, "kind": kind, "src": src, "site": "cl1",
            "start": T0 + t, "latency_ms": latency if ok else None, "ok": ok,
            "served_by": served if ok else None, "error": None if ok else "timeout"}


@pytest.fixture
def raw_dir(tmp_path):
    requests = []
    # normal: hops at 20, 30, 40 ... ms from mono1; latency at 2, 3, 4 ... ms from svlz1
    for i in range(10):
        requests.append(request("normal", "hops", i * 0.1, 20.0 + i))
        requests.append(request("normal", "latency", i * 0.1, 2.0 + i, served="svlz1"))
    # dc-failure at t=1.0: hops loses 3 requests (1.0, 1.1, 1.2), answers again at 1.3
    for i in range(20):
        t = i * 0.1
        failed = 10 <= i <= 12
        requests.append(request("dc-failure", "hops", t, 25.0, ok=not failed,
                                served="mono1" if i < 10 else "svlz1"))
        requests.append(request("dc-failure", "latency", t, 3.0, served="svlz1"))
        requests.append(request("dc-failure", "hops", t, 1.0, ok=i != 11, src="svlz1",
                                kind="service"))
        # writes: svlz1 wrote to the primary until the failure, then 0.5 s without (promotion);
        # mono1 was refused by the read-only standby all along (no outage of its own)
        requests.append(request("dc-failure", "hops", t, 2.0, ok=not 10 <= i <= 14,
                                src="svlz1", kind="writer"))
        requests.append({**request("dc-failure", "hops", t, 0.0, ok=False, src="mono1",
                                   kind="writer"), "error": "cannot execute INSERT in a "
                                                            "read-only transaction"})
    with open(tmp_path / "requests.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in requests)
    expected = {"hops": {"app": {"c1": 10.0}, "db": {"svlz1": 5.0, "mono1": 0.1}},
                "latency": {"app": {"c1": 3.0}, "db": {"svlz1": 5.2, "mono1": 2.0}}}
    with open(tmp_path / "requests.jsonl", "a") as f:  # mono1's connects to the db address
        for i in range(5):
            f.write(json.dumps(request("normal", "hops", i * 0.1, 0.3, src="mono1",
                                       kind="service")) + "\n")
            f.write(json.dumps(request("normal", "latency", i * 0.1, 2.5, src="mono1",
                                       kind="service")) + "\n")
    cells = [{"scenario": "normal", "strategy": s, "start": T0, "expected_rtt_ms": expected[s]}
             for s in ("hops", "latency")]
    cells += [{"scenario": "dc-failure", "strategy": s, "start": T0, "failure": T0 + 1.0,
               "repair": T0 + 2.95, "end": T0 + 3.0, "links_cut": [1, 2],
               "promotion": {"first_miss": T0 + 1.05, "detected": T0 + 1.3,
                             "promoted": T0 + 1.45, "ok": True}}
              for s in ("hops", "latency")]
    with open(tmp_path / "cells.jsonl", "w") as f:
        f.writelines(json.dumps(c) + "\n" for c in cells)
    with open(tmp_path / "db.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "strategy", "phase", "placement", "site", "kind", "operation",
                    "start_time", "latency_ms", "ok"])
        for scenario in ("normal", "dc-failure"):
            for strategy in ("hops", "latency"):
                for i, ms in enumerate((4.0, 5.0, 6.0, 100.0)):
                    w.writerow([scenario, strategy, "before", "svlz1", "lz1", "localzone",
                                "read", f"{T0 + i:.6f}", f"{ms:.4f}", int(ms < 100)])
    (tmp_path / "setup.json").write_text(json.dumps(SETUP))
    return tmp_path


def cell(results, scenario, strategy):
    return next(c for c in results["cells"]
                if c["scenario"] == scenario and c["strategy"] == strategy)


def results_with(raw_dir, change) -> dict:
    """The results after `change(cell)` edited every raw cell record in place."""
    path = raw_dir / "cells.jsonl"
    cells = [json.loads(line) for line in path.read_text().splitlines()]
    for c in cells:
        change(c)
    path.write_text("".join(json.dumps(c) + "\n" for c in cells))
    return compute(load_raw(raw_dir))


def test_percentiles_recomputed_from_the_raw_samples(raw_dir):
    results = compute(load_raw(raw_dir))
    hops = cell(results, "normal", "hops")["clients"]
    assert hops["n"] == 10 and hops["p50_ms"] == pytest.approx(24.5)
    assert hops["p99_ms"] == pytest.approx(28.91)  # numpy linear: 20 + 0.99 * 9
    assert cell(results, "normal", "latency")["clients"]["p50_ms"] == pytest.approx(6.5)
    assert hops["outage_ms"] is None and hops["failed"] == 0


def test_outage_is_the_longest_failed_run_before_the_repair(raw_dir):
    results = compute(load_raw(raw_dir))
    hops = cell(results, "dc-failure", "hops")
    assert hops["clients"]["outage_ms"] == pytest.approx(300.0)
    assert hops["clients"]["failed"] == 3
    assert hops["clients"]["failed_pct"] == pytest.approx(15.0)
    assert hops["clients"]["sources_interrupted"] == 1
    assert hops["services"]["outage_ms"] == pytest.approx(100.0, abs=1e-3)
    assert hops["regions"][0]["served_by"] == "mono1"
    assert hops["regions"][0]["served_by_after"] == "svlz1"
    assert cell(results, "dc-failure", "latency")["clients"]["outage_ms"] == 0.0


def test_write_outage_only_over_writers_that_wrote_before(raw_dir):
    results = compute(load_raw(raw_dir))
    hops = cell(results, "dc-failure", "hops")
    writes = hops["writes"]
    assert writes["requests"] == 40 and writes["failed"] == 5 + 20
    assert writes["read_only"] == 20 and writes["writers_measured"] == 1
    assert writes["outage_ms"] == pytest.approx(500.0, abs=1e-3)
    assert hops["promotion_ms"] == pytest.approx(450.0)
    assert cell(results, "normal", "hops")["writes"]["requests"] == 0
    findings = results["findings"]
    assert any("hops: write outage 500.0 ms over 1 writer(s), standby promoted 450 ms after "
               "the failure" in s for s in findings)
    assert any(s.startswith("dc-failure: writes refused as read-only") and
               "hops 50 %" in s for s in findings)


def test_a_promotion_before_the_failure_is_named_a_false_failover(raw_dir):
    def promote_early(c):
        if c["scenario"] == "dc-failure" and c["strategy"] == "hops":
            c["promotion"] = {"first_miss": T0 - 20.5, "detected": T0 - 20.2,
                              "promoted": T0 - 20.0, "ok": True}
    results = results_with(raw_dir, promote_early)
    assert cell(results, "dc-failure", "hops")["promotion_ms"] == pytest.approx(-21000.0)
    assert any("hops: " in s and "standby promoted 21.0 s before the failure (a false "
               "failover" in s for s in results["findings"])
    assert cell(results, "dc-failure", "hops")["false_failover"]
    assert not cell(results, "normal", "hops")["false_failover"]


def test_a_promotion_in_a_cell_without_failure_is_a_false_failover(raw_dir):
    def promote_while_up(c):
        if c["scenario"] == "normal" and c["strategy"] == "latency":
            c["promotion"] = {"first_miss": T0 + 0.2, "detected": T0 + 0.5,
                              "promoted": T0 + 0.6, "ok": True}
    results = results_with(raw_dir, promote_while_up)
    normal = cell(results, "normal", "latency")
    assert normal["false_failover"] and normal["promotion_ms"] is None
    assert not cell(results, "normal", "hops")["false_failover"]
    assert ("normal: the standby was promoted while the primary was up (a false failover: its "
            "manager missed checks of a primary that was up) with latency.") in results["findings"]
    table = render_markdown(results)
    assert "| while up |" in table and table.count("| while up |") == 1


def test_model_differences_name_the_consumers_and_what_was_measured(raw_dir):
    findings = compute(load_raw(raw_dir))["findings"]
    model = next(s for s in findings if s.startswith("normal, latency vs hops"))
    assert "(2 of 3 consumers" in model
    assert "app from c1: expected 3.0 vs 10.0 ms, measured p50 6.5 ms vs 24.5 ms" in model
    assert "db from mono1: expected 2.0 vs 0.1 ms, measured p50 2.5 ms vs 0.3 ms" in model
    assert "expected order for 2 of 2" in model and "other 1 consumers" in model
    assert not any(s.startswith("dc-failure, latency vs hops") for s in findings)


def test_latency_leaves_out_the_database_workload_but_failures_count(raw_dir):
    raw = load_raw(raw_dir)
    raw["cells"][2]["db_phases"] = [[T0 + 1.05, T0 + 1.45]]  # dc-failure / hops
    hops = cell(compute(raw), "dc-failure", "hops")["clients"]
    assert hops["n"] == 20 - 3 - 2  # 3 failed, 2 answered in the window (1.3, 1.4)
    assert hops["failed"] == 3 and hops["outage_ms"] == pytest.approx(300.0)


def test_outage_function_edges():
    reqs = [{"start": t, "ok": ok} for t, ok in ((0, True), (1, False), (2, False), (3, True),
                                                 (4, False))]
    assert outage_ms(reqs, 0) is None  # the last run never ended
    assert outage_ms(reqs, 0, until=4) == 2000.0
    assert outage_ms(reqs, 3, until=4) == 0.0


def test_database_placements_exclude_errors_and_count_them(raw_dir):
    results = compute(load_raw(raw_dir))
    p = cell(results, "normal", "hops")["placements"][0]
    assert (p["placement"], p["operation"], p["phase"]) == ("svlz1", "read", "before")
    assert p["n"] == 3 and p["errors"] == 1 and p["p50_ms"] == pytest.approx(5.0)


def test_sentences_name_the_winner_and_the_outage(raw_dir):
    findings = compute(load_raw(raw_dir))["findings"]
    assert findings[0].startswith("normal: latency gives the clinics the lowest median latency "
                                  "(6.5 ms")
    assert "hops the highest (24.5 ms)" in findings[0]
    assert "served 1 by a localzone" in findings[0] and "1 by a datacenter" in findings[0]
    availability = next(s for s in findings if s.startswith("dc-failure, availability"))
    assert availability.index("latency: no client request failed") < availability.index("hops:")
    assert "longest client outage 300 ms" in availability
    assert "moved to another endpoint" in availability


def test_write_report_files_match_the_numbers(raw_dir):
    results = write_report(raw_dir)
    md = (raw_dir / "report.md").read_text()
    assert "| hops | 24.5 | " in md
    assert "| hops | 25.0 | 25.0 | 25.0 | 15.00 | 300 | 1 |" in md
    assert "| dc1-lz1 | metro | 30 | 1.500 | derived |" in md
    saved = json.loads((raw_dir / "results.json").read_text())
    assert saved["cells"][0]["clients"] == results["cells"][0]["clients"]
    for png in results["plots"]:
        data = (raw_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_the_command_lines_table_is_the_reports_without_the_clinics_interrupted(raw_dir):
    tables = main_tables(compute(load_raw(raw_dir)))
    assert [title for title, _, _ in tables] == ["normal: clinic clients (ms)",
                                                 "dc-failure: clinic clients (ms)"]
    _, columns, rows = tables[1]
    assert columns == ["strategy", "p50", "p95", "p99", "failed %", "outage", "after p50",
                       "service outage", "DB read p50", "writes failed %", "write outage",
                       "promoted after", "lost", "RTO", "emulator"]
    # A run from before the writers kept ledgers: no disaster-recovery figures.
    assert rows == [["hops", "25.0", "25.0", "25.0", "15.00", "300", "25.0", "100", "5.00",
                     "62.5", "500", "450", "-", "-", "-"],
                    ["latency", "3.0", "3.0", "3.0", "0.00", "0", "3.0", "0", "5.00", "-",
                     "no writer", "450", "-", "-", "-"]]


def test_missing_raw_files_are_one_clear_error(tmp_path):
    with pytest.raises(ReportError, match="missing setup.json, cells.jsonl, requests.jsonl"):
        load_raw(tmp_path)


def test_connections_the_database_hosts_dropped_are_named(raw_dir):
    def drops(c):
        c["db_listen_drops"] = {"pg1": 7 if c["strategy"] == "hops" and
                                c["scenario"] == "normal" else 0}
    results = results_with(raw_dir, drops)
    assert cell(results, "normal", "hops")["db_listen_drops"] == {"pg1": 7}
    dropped = [s for s in results["findings"] if "dropped" in s]
    assert len(dropped) == 1 and dropped[0].startswith(
        "normal, hops: the database hosts' kernels dropped 7 connection attempts to pg1")


def test_a_probe_that_measured_nothing_reads_as_no_data_not_as_no_failure(raw_dir):
    def lost(c):
        if c["scenario"] == "dc-failure" and c["strategy"] == "hops":
            c["no_data"] = {"client": "the prober exited with status 1",
                            "writers": {"svc1": "wrote no records"}}
    results = results_with(raw_dir, lost)
    hops = cell(results, "dc-failure", "hops")
    assert hops["clients"]["no_data"] == "the prober exited with status 1"
    assert hops["clients"]["failed_pct"] is None and hops["clients"]["outage_ms"] is None
    assert hops["writes"]["no_data"] == "svc1's writer wrote no records"
    table = dict((t[0], t) for t in main_tables(results))["dc-failure: clinic clients (ms)"]
    row = next(r for r in table[2] if r[0] == "hops")
    assert row[table[1].index("failed %")] == "no data"
    assert row[table[1].index("outage")] == "no data"
    said = [s for s in results["findings"] if "no data for the clinic clients" in s]
    assert said and "not the absence of failures" in said[0]
    availability = next(s for s in results["findings"] if "availability" in s)
    assert "hops: no data" in availability


def test_a_cell_during_which_a_lab_process_died_is_invalid(raw_dir):
    def died(c):
        if c["scenario"] == "normal" and c["strategy"] == "latency":
            c["invalid"] = "the delay line (pid 42) exited with status -9"
    results = results_with(raw_dir, died)
    assert cell(results, "normal", "latency")["invalid"].startswith("the delay line")
    assert any(s.startswith("normal / latency: INVALID: the delay line (pid 42)")
               for s in results["findings"])


def test_the_ledgers_give_report_md_its_disaster_recovery_table(raw_dir):
    """Writers with ledgers (ids, the server that acknowledged): svlz1's writes after the
    failure are missing from the survivor, and the report says so in a table and a sentence."""
    path = raw_dir / "requests.jsonl"
    reqs = [json.loads(line) for line in path.read_text().splitlines()]
    for n, r in enumerate(reqs):
        if r["kind"] == "writer":
            r["id"] = f"{r['scenario']}/{r['strategy']}/{r['src']}/{n}"
            r["served_by"] = "pg1" if r["ok"] else None
    path.write_text("".join(json.dumps(r) + "\n" for r in reqs))
    held = {r["id"] for r in reqs if r["kind"] == "writer" and r["start"] < T0 + 1.0}

    def ledger(c):
        if c["scenario"] == "dc-failure":
            c["ledger"] = {"survivor": "pg2", "held": sorted(held)}
            c["promotion"].update(old_primary="pg1", new_primary="pg2", fenced=T0 + 1.5)
    results = results_with(raw_dir, ledger)
    dr = cell(results, "dc-failure", "hops")["dr"]
    # svlz1 wrote at 1.5 .. 1.9 s (acknowledged by pg1, after the promotion at 1.45 s).
    assert (dr["acknowledged"], dr["lost"], dr["split_brain"], dr["rto_s"]) == (15, 5, 5, None)
    assert dr["refused_read_only"] == 20 and dr["replication"] == "async"
    text = render_markdown(results)
    assert "| hops | 40 | 15 | 5 | 0.402 | - | 5 | 20 | - |" in text
    assert any(s.startswith("dc-failure / hops, async: 5 of 15 acknowledged writes lost (RPO "
                            "0.40 s), the new primary acknowledged no write before the repair")
               for s in results["findings"])
    _, _, rows = main_tables(results)[1]
    assert rows[0][-3:-1] == ["5", "-"]


def test_a_failure_cell_without_a_before_phase_reads_it_from_the_normal_cell(raw_dir):
    # measurements/cells.py: with a normal scenario in the run, the failure cells skip the
    # workload before the failure; their "before" read is the normal cell's, and says so.
    path = raw_dir / "db.csv"
    rows = path.read_text().splitlines()
    kept = [rows[0]] + [r for r in rows[1:] if not r.startswith("dc-failure,")]
    kept.append(f"dc-failure,hops,after,svlz1,lz1,localzone,read,{T0 + 2:.6f},50.0000,1")
    path.write_text("\n".join(kept) + "\n")
    results = compute(load_raw(raw_dir))
    failed, normal = cell(results, "dc-failure", "hops"), cell(results, "normal", "hops")
    assert failed["db_read"] == normal["db_read"] and failed["db_read"]["n"] == 3
    assert (failed["db_read_from"], normal["db_read_from"]) == ("normal", "normal")
    assert [(p["phase"], p["p50_ms"]) for p in failed["placements"]] == [("after", 50.0)]


def test_a_cell_whose_emulator_did_not_keep_up_says_so_and_flags_its_samples(raw_dir):
    # lab/health.py's block for the cell: it fell behind from T0+1 to T0+1.5.
    health = {"seconds": 3.0, "frames": 1000, "late_pct": 4.0, "kernel_dropped": 0,
              "queue_dropped": 0, "switch_demotions": 0, "steal_pct": 0.0,
              "run_queue": {"mean": 5.1, "max": 9, "cores": 2}, "control_rtt_ms": 2.0,
              "kept_up": False, "reasons": ["4.0 % of frames sent over 250 us late"],
              "unhealthy_spans": [[T0 + 1.0, T0 + 1.5]]}

    def change(c):
        if (c["scenario"], c["strategy"]) == ("dc-failure", "hops"):
            c["health"] = health
        elif c["scenario"] == "dc-failure":
            c["health"] = {**health, "kept_up": True, "reasons": [], "unhealthy_spans": []}

    results = results_with(raw_dir, change)
    bad = cell(results, "dc-failure", "hops")["health"]
    # Clients and services every 0.1 s from T0: 1.0 .. 1.4 are in the span; one db row at T0+1.
    assert bad["flagged"] == {"client": 5, "service": 5, "writer": 10, "db": 1}
    assert cell(results, "normal", "hops")["health"] is None  # a run from before health
    rows = {r[0]: r[-1] for r in main_tables(results)[1][2]}
    assert rows == {"hops": "NOT kept up", "latency": "kept up"}
    text = render_markdown(results)
    assert "dc-failure / hops: the emulator did NOT keep up: 4.0 % of frames sent over 250 us " \
           "late" in text and "not to be trusted" in text
    assert "Flagged samples: 5 client, 5 service, 10 writer, 1 db." in text


def test_the_model_check_sets_each_page_against_n_round_trips_and_the_servers_own_page(raw_dir):
    # measurements/dbwindows.py: the primary's own page ("server" phase) and the placements'
    # pages before any failure; the round trips are the model's (the cell's expected_rtt_ms).
    with open(raw_dir / "db.csv", "a", newline="") as f:
        w = csv.writer(f)
        for strategy in ("hops", "latency"):
            for i, ms in enumerate((1.0, 1.2, 1.4)):
                w.writerow(["normal", strategy, "server", "pg1", "dc1", "db-host", "page",
                            f"{T0 + i:.6f}", f"{ms:.4f}", 1])
            for i, ms in enumerate((26.0, 27.0, 40.0)):
                w.writerow(["normal", strategy, "before", "svlz1", "lz1", "localzone", "page",
                            f"{T0 + i:.6f}", f"{ms:.4f}", 1])
    results = compute(load_raw(raw_dir))
    (hops,) = cell(results, "normal", "hops")["model_check"]
    # 5 x 5.0 ms + 1.2 ms; the server's page itself is no placement of the check
    assert (hops["placement"], hops["predicted_page_ms"], hops["measured_page_p50_ms"]) == \
        ("svlz1", pytest.approx(26.2), 27.0)
    (latency,) = cell(results, "normal", "latency")["model_check"]
    assert latency["predicted_page_ms"] == pytest.approx(5 * 5.2 + 1.2)
    assert cell(results, "dc-failure", "hops")["model_check"] == []  # no server page there
    text = render_markdown(results)
    assert "| svlz1 | 27.00 / 26.20 | 27.00 / 27.20 |" in text


def test_database_samples_are_flagged_by_their_own_windows_health(raw_dir):
    # The quiet database windows have health blocks of their own ("db_health"); the cell's
    # (the probes' window) kept up, the first window did not from T0+0.5 to T0+1.5.
    good = {"seconds": 2.0, "frames": 10, "late_pct": 0.0, "kernel_dropped": 0,
            "queue_dropped": 0, "switch_demotions": 0, "steal_pct": 0.0,
            "run_queue": {"mean": 1.0, "max": 2, "cores": 2}, "control_rtt_ms": 1.0,
            "kept_up": True, "reasons": [], "unhealthy_spans": []}
    bad = {**good, "kept_up": False, "late_pct": 3.0,
           "reasons": ["3.0 % of frames sent over 250 us late"],
           "unhealthy_spans": [[T0 + 0.5, T0 + 1.5]]}

    def change(c):
        c["health"] = good
        c["db_health"] = [bad] if (c["scenario"], c["strategy"]) == ("normal", "hops") \
            else [good]

    results = results_with(raw_dir, change)
    assert cell(results, "normal", "hops")["health"]["flagged"]["db"] == 1  # the row at T0+1
    assert cell(results, "normal", "latency")["health"]["flagged"]["db"] == 0
    text = render_markdown(results)
    assert "- Database windows: the emulator kept up in 3 of 4." in text
    assert "  - normal / hops: the emulator did NOT keep up: 3.0 % of frames" in text
