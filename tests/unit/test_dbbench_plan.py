"""The database benchmark's schedule: what runs alone and what runs at once."""

from __future__ import annotations

from measurements.dbbench_worker import OPERATIONS
from measurements.dbworkload import (ADDRESS_OPERATIONS, NEAR_RTT_MS, READ_TARGET_S,
                                     SOLO_READ_RTT_MS, STREAM_TARGET_S, plan_phases)

RTT = {"pg1": 0.01, "svop1a": 0.3, "svrga": 9.5, "svrgb": 72.0}
SERVER_OPS = [op for op in OPERATIONS if op not in ADDRESS_OPERATIONS]  # pg1 is no consumer
WORK = {h: list(SERVER_OPS if h == "pg1" else OPERATIONS) for h in RTT}


def test_every_operation_of_every_placement_is_planned_once():
    phases = plan_phases(WORK, RTT)
    planned = [(host, op) for phase in phases for host, ops in phase.work.items() for op in ops]
    assert sorted(planned) == sorted((h, op) for h in RTT for op in WORK[h])


def test_near_work_and_mid_reads_run_alone_first():
    assert 0.3 <= NEAR_RTT_MS < 9.5 <= SOLO_READ_RTT_MS < 72.0
    phases = plan_phases(WORK, RTT)
    alone = [p for p in phases if p.target_s is None]
    assert [p.work for p in alone] == [
        {"pg1": ["read", "page", "write", "connect"]},
        {"svop1a": ["read", "page", "address_read", "write", "address_write", "connect"]},
        {"svrga": ["read"]}]
    assert phases[:len(alone)] == alone  # before anything runs at once


def test_far_reads_then_everything_else_at_once():
    phases = plan_phases(WORK, RTT)
    reads, rest = phases[-2:]
    assert reads.work == {"svrgb": ["read"]} and reads.target_s == READ_TARGET_S
    assert rest.target_s == STREAM_TARGET_S
    assert rest.work == {"pg1": ["replica_read"], "svop1a": ["replica_read"],
                         "svrga": ["page", "replica_read", "address_read", "write",
                                   "address_write", "connect"],
                         "svrgb": ["page", "replica_read", "address_read", "write",
                                   "address_write", "connect"]}


def test_without_a_replica_and_without_far_placements():
    ops = [op for op in OPERATIONS if op != "replica_read"]
    phases = plan_phases({"pg1": ops, "svop1a": ops}, RTT)
    assert all(p.target_s is None for p in phases) and len(phases) == 2


def test_work_without_reads_gets_no_read_phase_of_its_own():
    # lab compare's windows after a failure may ask for other operations only
    phases = plan_phases({"svrgb": ["connect"]}, {"svrgb": 60.0})
    assert [(p.work, p.target_s) for p in phases] == [({"svrgb": ["connect"]}, STREAM_TARGET_S)]


def test_a_read_through_the_address_to_a_near_server_runs_alone_however_far_the_primary():
    # svop2a reads the DC2 standby 1.3 ms away through the read address; the primary is 55 ms
    # away. svrga's read-address server is far: its read through the address runs at once.
    work = {"svop2a": ["read", "address_read", "write"], "svrga": ["read", "address_read"]}
    phases = plan_phases(work, {"svop2a": 55.0, "svrga": 9.5}, {"svop2a": 1.3, "svrga": 72.0})
    alone = [p.work for p in phases if p.target_s is None]
    assert alone == [{"svop2a": ["address_read"]}, {"svrga": ["read"]}]
    assert phases[-1].work == {"svop2a": ["write"], "svrga": ["address_read"]}
