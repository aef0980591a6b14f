"""`run_db_bench` end to end (root, OVS, Mininet, PostgreSQL 15): small data, few samples."""

from __future__ import annotations

import json

import pytest

from lab.runstate import marked_processes
from measurements.dbbench import run_db_bench
from measurements.postgres import SMALL, data_root
from tests.helpers import DEFAULT_TOPOLOGY
from tests.integration.test_db import postgres_processes, wait_gone

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet, pytest.mark.postgres]


def test_db_bench_end_to_end_then_nothing_left(tmp_path):
    """After the module's lab: the benchmark's own run, small, from two placements."""
    before = set(postgres_processes())
    result = run_db_bench(DEFAULT_TOPOLOGY, samples=3, out_dir=tmp_path, size=SMALL,
                          placements=["mono1", "svrga"], warmup=1, ping_count=3,
                          page_queries=5)
    assert result.errors == 0
    ops = {(r["placement"], r["operation"]) for r in result.summary}
    for placement in ("pg1", "mono1", "svrga"):
        for op in ("rtt_ping", "connect", "read", "page", "write", "replica_read"):
            assert (placement, op) in ops
    assert all(r["n"] == 3 for r in result.summary
               if r["operation"] not in ("rtt_ping", "replication_lag"))
    assert ("pg2", "replication_lag") in ops
    # The services' addresses, as the application uses them, from the consumers only; the
    # write address leads to the primary, so a far placement's write through it costs what
    # a write to the primary itself does.
    for placement in ("mono1", "svrga"):
        assert {(placement, "address_read"), (placement, "address_write")} <= ops
    assert not {("pg1", "address_read"), ("pg1", "address_write")} & ops
    p50 = {(r["placement"], r["operation"]): r["p50_ms"] for r in result.summary}
    direct, through = p50[("svrga", "write")], p50[("svrga", "address_write")]
    assert abs(through - direct) < 0.25 * direct + 1.0, (direct, through)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == result.summary
    assert (tmp_path / "samples.csv").read_text().startswith(
        "placement,operation,start_time,latency_ms,ok\n")
    assert (tmp_path / DEFAULT_TOPOLOGY.name).exists()
    assert [m["placement"] for m in result.model] == ["mono1", "svrga"]
    assert wait_gone(set(postgres_processes()) - before) == []
    assert not data_root().exists()
    assert marked_processes() == []
