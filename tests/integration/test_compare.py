"""`run_compare` end to end (root, OVS, Mininet, PostgreSQL 15): two strategies, normal and
dc-failure, few samples, then the report checked against the raw samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lab.runstate import marked_processes
from measurements.compare import run_compare
from measurements.postgres import data_root
from tests.helpers import DEFAULT_TOPOLOGY

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet, pytest.mark.postgres]


def test_short_compare_writes_a_report_that_matches_its_raw_samples(tmp_path):
    result = run_compare(DEFAULT_TOPOLOGY, strategies=["latency", "primary-standby"],
                         scenarios=["normal", "dc-failure"], samples=2, out_dir=tmp_path)
    for name in ("requests.jsonl", "db.csv", "cells.jsonl", "setup.json", DEFAULT_TOPOLOGY.name,
                 "report.md", "results.json"):
        assert (tmp_path / name).exists(), name
    setup = json.loads((tmp_path / "setup.json").read_text())
    assert set(setup["versions"]) >= {"openvswitch", "mininet", "postgresql", "os-ken",
                                      "kernel", "python"}
    assert len(result.cells) == 4

    # A table cell recomputed by hand from the raw samples equals the report's.
    requests = [json.loads(line) for line in open(tmp_path / "requests.jsonl")]
    cells = [json.loads(line) for line in open(tmp_path / "cells.jsonl")]
    busy = next(c["db_phases"] for c in cells
                if c["scenario"] == "normal" and c["strategy"] == "latency")
    latencies = [r["latency_ms"] for r in requests if r["scenario"] == "normal"
                 and r["strategy"] == "latency" and r["kind"] == "client" and r["ok"]
                 and not any(a <= r["start"] < b for a, b in busy)]
    assert len(busy) == 1 and len(latencies) > 50
    p50 = float(np.percentile(latencies, 50))
    results = json.loads((tmp_path / "results.json").read_text())
    normal = next(c for c in results["cells"]
                  if c["scenario"] == "normal" and c["strategy"] == "latency")
    assert normal["clients"]["p50_ms"] == pytest.approx(p50)
    # Without a failure no request fails, not even those under way when a cell ends.
    for c in results["cells"]:
        if c["scenario"] == "normal":
            assert c["clients"]["failed"] == 0 and c["services"]["failed"] == 0, c["strategy"]
    assert f"| latency | {p50:.1f} |" in (tmp_path / "report.md").read_text()

    # The failure was seen from the clients' side: primary-standby's clients all used the
    # primary data center's monolith, lost requests and came back within the window.
    failover = next(c for c in results["cells"]
                    if c["scenario"] == "dc-failure" and c["strategy"] == "primary-standby")
    assert failover["clients"]["failed"] > 0
    assert failover["clients"]["outage_ms"] is not None
    assert all(r["served_by_after"] and r["served_by_after"] != r["served_by"]
               for r in failover["regions"])

    # Disaster recovery: the failover manager promoted the standby, the writers that wrote to
    # the primary before the failure wrote again (to the promoted standby) before the repair,
    # and after the repair the standby was re-seeded and streams from the primary again.
    for c in cells:  # the model's round trips along the installed paths, for the report
        assert set(c["expected_rtt_ms"]) == {"app", "db"}
        assert c["expected_rtt_ms"]["db"]["svop1a"] == pytest.approx(0.4, abs=0.05)
    for c in cells:
        if c["scenario"] == "dc-failure":
            assert c["failure"] < c["promotion"]["promoted"] < c["repair"], c["strategy"]
            assert c["promotion"]["ok"] and c["reseed_s"] > 0
        else:
            assert "promotion" not in c
    writes = failover["writes"]
    assert writes["writers_measured"] >= 1 and writes["outage_ms"] is not None
    # The report's promotion time is the raw one (how fast promotion is, is a benchmark's
    # business: the order above is what must hold on any machine).
    dr = next(c for c in cells if c["scenario"] == "dc-failure" and c["strategy"] == "primary-standby")
    promoted_after_s = dr["promotion"]["promoted"] - dr["failure"]
    assert failover["promotion_ms"] == pytest.approx(promoted_after_s * 1000, abs=0.1)
    assert failover["promotion_ms"] > 0
    assert all(c["writes"]["requests"] == 0 for c in results["cells"]
               if c["scenario"] == "normal")  # writers run only in the cells with a failure

    for png in ("latency_cdf.png", "placement_bars.png", "failover_timeline.png", "map.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
    assert not data_root().exists()
    assert marked_processes() == []
