"""The ledger comparison (lost writes, RPO, RTO, split brain) and the report's sentences."""

from __future__ import annotations

import pytest

from measurements.ledger import compare_ledgers, write_latency
from measurements.report.recovery import findings, recovery

FAILURE, PROMOTED = 1000.0, 1002.0


def w(src, n, start, server, ok=True, latency_ms=10.0, error=None):
    return {"src": src, "id": f"c/{src}/{n}", "ok": ok, "start": start,
            "latency_ms": latency_ms if ok else None, "server": server if ok else None,
            "error": error}


WRITES = [
    w("svop1a", 1, 999.0, "pg1"),  # before the failure, replicated
    w("mono1", 1, 1000.2, "pg1"),  # acknowledged by the cut-off primary: lost
    w("mono1", 2, 1000.5, "pg1", latency_ms=20.0),  # lost too
    w("svop1a", 2, 1000.4, None, ok=False, error="timeout"),
    w("mono1", 3, 1002.01, "pg1"),  # the old primary after the promotion: split brain, lost
    w("svop1a", 3, 1003.0, "pg2", latency_ms=30.0),  # the first write on the new primary
    w("svop1a", 4, 1003.5, "pg2"),
]
HELD = {"c/svop1a/1", "c/svop1a/3", "c/svop1a/4"}


def test_lost_writes_are_the_acknowledged_ones_the_survivor_lacks():
    found = compare_ledgers(WRITES, HELD, FAILURE, PROMOTED, "pg2", "pg1")
    assert (found["writes"], found["acknowledged"], found["lost"]) == (7, 6, 3)
    assert found["lost_ids"] == ["c/mono1/1", "c/mono1/2", "c/mono1/3"]
    # RPO: from the first lost write's start to the last one's acknowledgement.
    assert found["rpo_s"] == pytest.approx(1002.02 - 1000.2)
    assert found["rto_s"] == pytest.approx(1003.03 - FAILURE)
    assert found["split_brain"] == 1 and found["refused_read_only"] == 0


def test_nothing_lost_and_a_write_refused_as_read_only():
    refused = w("svlz2a", 1, 1001.0, None, ok=False,
                error="cannot execute INSERT in a read-only transaction")
    everything = {x["id"] for x in WRITES}
    found = compare_ledgers(WRITES + [refused], everything, FAILURE, PROMOTED, "pg2", "pg1")
    assert (found["lost"], found["rpo_s"], found["refused_read_only"]) == (0, 0.0, 1)


def test_without_a_promotion_there_is_no_rto_and_no_split_brain():
    found = compare_ledgers(WRITES, HELD, FAILURE)
    assert (found["rto_s"], found["split_brain"], found["lost"]) == (None, 0, 3)


def test_write_latency_per_placement_before_the_failure():
    assert write_latency(WRITES, FAILURE) == {"svop1a": {"p50_ms": 10.0, "n": 1}}
    assert write_latency(WRITES, None)["svop1a"] == {"p50_ms": 10.0, "n": 3}


def cell(strategy="hops", held=HELD, failback=None, promotion=True):
    return {"scenario": "dc-failure", "strategy": strategy, "failure": FAILURE,
            "ledger": {"survivor": "pg2", "held": sorted(held)},
            **({"promotion": {"promoted": PROMOTED, "fenced": PROMOTED + 0.04,
                              "old_primary": "pg1", "new_primary": "pg2"}} if promotion else {}),
            **({"failback": failback} if failback else {})}


def requests(writes):
    return [{"kind": "writer", "src": x["src"], "id": x["id"], "ok": x["ok"],
             "start": x["start"], "latency_ms": x["latency_ms"], "served_by": x["server"],
             "error": x["error"]} for x in writes]


def test_the_report_says_it_in_plain_words():
    failback = {"recovered": 3, "unacknowledged_discarded": 0, "method": "pg_rewind",
                "restored": True, "rows_before": 120, "rows_after": 123, "seconds": 4.24,
                "recovered_ids": []}
    lossy = {**cell(failback=failback), "dr": None}
    lossy["dr"] = recovery(lossy, requests(WRITES), "async")
    safe = {**cell("latency", held={x["id"] for x in WRITES}), "dr": None}
    safe["dr"] = recovery(safe, requests(WRITES), "async")
    said = findings([lossy, safe])
    assert said[0] == ("dc-failure / hops, async: 3 of 6 acknowledged writes lost (RPO 1.82 s), "
                       "RTO 3.03 s, 1 acknowledged by the old primary after the promotion "
                       "(fenced 40 ms after it); fail-back (pg_rewind, 4.2 s) re-applied 3 "
                       "write(s) only the old primary held, ledger 120 -> 123 rows.")
    assert said[1].startswith("dc-failure / latency, async: 0 of 6 acknowledged writes lost, "
                              "RTO 3.03 s, 1 acknowledged")
    assert said[2] == ("dc-failure, writes through the write address before the failure "
                       "(async; median of the strategies' medians): svop1a 10.0 ms (n=2).")


def test_a_run_without_ledgers_has_no_recovery_figures():
    old = requests(WRITES)
    for r in old:
        del r["id"]
    assert recovery(cell(), old, "async") is None
    assert recovery({k: v for k, v in cell().items() if k != "ledger"}, requests(WRITES),
                    "sync") is None
