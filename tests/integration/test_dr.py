"""Disaster recovery in the lab (root, OVS, Mininet, PostgreSQL 15): the write address, fencing,
a deliberately lost write found by the ledgers, and a fail-back that keeps every write.

One lab for the module (no calibration: these are checks of where writes land, not of
timing); the tests run in file order and leave pg1 primary, pg2 its standby.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from controllers.forwarding import make_lab
from lab.procs import ROOT, child_env, stop_process
from lab.files import write_json
from measurements import failback
from measurements.dbbench import placements_of
from measurements.dr import Recovery
from measurements.failback import (DataLossRefused, fail_back, guard_removal, ledger_ids,
                                   ledger_rows, promote, rebuild, wait_caught_up)
from measurements.jsonlines import read_json_lines
from measurements.ledger import compare_ledgers
from measurements.postgres import PORT, SMALL, start_databases
from tests.helpers import DEFAULT_TOPOLOGY
from topologies.loader import load

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet, pytest.mark.postgres]


@pytest.fixture(scope="module")
def dr_lab(no_lab_running, tmp_path_factory):
    topo = load(DEFAULT_TOPOLOGY)
    with make_lab(topo, calibrate=False) as lab:
        dbs = start_databases(lab, size=SMALL, log=lambda *a: None)
        scratch = tmp_path_factory.mktemp("dr")
        scratch.chmod(0o755)
        try:
            yield lab, dbs, scratch
        finally:
            dbs.stop()


def write_from(lab, dbs, scratch, hosts: list[str], prefix: str, count: int = 2) -> list[dict]:
    """`count` ledger writes through the write address from each host, all at once."""
    write = next(s for s in lab.controller.get("topology")["services"] if s["name"] == "db-write")
    env = child_env(dbs.client_env(lab.state.run_id))
    procs = {}
    for i, host in enumerate(hosts):
        config = scratch / f"{prefix.strip('/').replace('/', '-')}-{host}.json"
        out = config.with_suffix(".jsonl")
        write_json(config, {"mode": "writer", "writer": host, "id_prefix": f"{prefix}{host}/",
                            "count": count, "interval_s": 0.05, "seed": i, "out": str(out),
                            "patients": dbs.size.patients,
                            "primary": {"host": write["vip"], "port": write["port"],
                                        "dbname": dbs.dbname, "user": dbs.user}})
        procs[host] = (lab.host(host).popen([sys.executable, "-m", "measurements.dbbench_worker",
                                             str(config)], stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                            cwd=str(ROOT), env=env), out)
    writes = []
    for host, (proc, out) in procs.items():
        try:
            proc.wait(timeout=60)
        finally:
            stop_process(proc)
        writes += [dict(r, src=host) for r in read_json_lines(out, "sample")]
    return writes


def connection_error(lab, host, ip: str, dbs) -> str:
    """What a lab user's connection from `host` to ip:5432 gets: "" if it connects."""
    code = ("import psycopg\n"
            "try:\n"
            f"    psycopg.connect(host={ip!r}, port={PORT}, dbname={dbs.dbname!r}, "
            f"user={dbs.user!r}, connect_timeout=3, sslmode='disable').close()\n"
            "except psycopg.Error as exc:\n"
            "    print((str(exc).strip().splitlines() or ['error'])[0])\n")
    proc = host.popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True,
                      env=child_env(dbs.client_env(lab.state.run_id)))
    return proc.communicate(timeout=30)[0].strip()


class FakeSpawn:
    """Recovery's spawn, for tests that promote by hand: no failover manager."""

    def __call__(self, *args):
        raise AssertionError("no failover manager in these tests")


def recovery_of(lab, dbs, scratch) -> Recovery:
    return Recovery(dbs, lab.controller, FakeSpawn(), scratch, {})


def addresses_to(lab, primary: str, standby: str) -> None:
    """Both database addresses back to the primary then the standby (Recovery.fail_back's
    last step, here after failback.fail_back)."""
    for service in ("db-write", "db"):
        lab.controller.set_endpoints(service, [primary, standby])


def wait_links_up(lab, timeout: float = 30.0) -> None:
    """Until the controller sees every link up again (after a repair)."""
    deadline = time.monotonic() + timeout
    while not all(link["up"] for link in lab.controller.get("links")["links"]):
        assert time.monotonic() < deadline, "links still down after the repair"
        time.sleep(0.2)


def placements(lab) -> list[str]:
    return [p.host for p in placements_of(lab.topology)]


def test_writes_reach_the_primary_from_every_placement_then_only_the_promoted_standby(dr_lab):
    lab, dbs, scratch = dr_lab
    hosts = placements(lab)
    before = write_from(lab, dbs, scratch, hosts, "move/before/")
    assert len(before) == 2 * len(hosts)
    assert [(w["src"], w["ok"], w["server"]) for w in before if not (w["ok"] and w["server"] == "pg1")] == []
    pg1, pg2 = dbs.primary, dbs.standby
    # Where pg1's own addresses can be tried from (a database consumer's answers from port
    # 5432 come back from the service addresses): its own host, and a clinic's over the lab.
    clinic = lab.host(lab.topology.hosts_with_role("client")[0].name)
    tries = [(host, ip) for host in (pg1.host, clinic) for ip in (pg1.ip, pg1.write_ip)]
    assert [connection_error(lab, host, ip, dbs) for host, ip in tries] == [""] * 4

    recovery = recovery_of(lab, dbs, scratch)
    promote(pg2)
    recovery.promoted({"type": "promoted", "promoted": time.time()})
    assert (dbs.primary, pg1.role) == (pg2, "fenced")
    after = write_from(lab, dbs, scratch, hosts, "move/after/")
    assert [(w["src"], w["ok"], w["server"]) for w in after if not (w["ok"] and w["server"] == "pg2")] == []
    # The fenced old primary acknowledges nothing, from anywhere, on any of its addresses; the
    # services of its own data center reach only the new primary (above).
    for host, ip in tries:
        assert connection_error(lab, host, ip, dbs) != "", (host.name, ip)

    acknowledged = {w["id"] for w in before + after if w["ok"]}
    result = fail_back(dbs, pg1, acknowledged, restore=True)
    assert (dbs.primary, dbs.standby, result.restored) == (pg1, pg2, True)
    addresses_to(lab, "pg1", "pg2")
    again = write_from(lab, dbs, scratch, hosts, "move/again/", count=1)
    assert all(w["ok"] and w["server"] == "pg1" for w in again)
    wait_caught_up(pg2, pg1)
    for db in (pg1, pg2):
        assert acknowledged <= ledger_ids(db, "move/")


def test_a_write_lost_in_a_cut_is_found_kept_from_removal_and_recovered_at_fail_back(
        dr_lab, monkeypatch):
    lab, dbs, scratch = dr_lab
    pg1, pg2 = dbs.primary, dbs.standby
    site = lab.topology.hosts[pg2.name].site
    cut = {link.index for link in lab.topology.links if site in (link.a, link.b)}
    lab.emulation.set_loss(cut, 100.0)
    failure = time.time()
    try:
        writes = write_from(lab, dbs, scratch, ["mono1"], "lost/", count=3)
        assert all(w["ok"] and w["server"] == "pg1" for w in writes), writes
        promote(pg2)  # over its socket: the network to it is cut
        promoted = time.time()
        recovery_of(lab, dbs, scratch).promoted({"type": "promoted", "promoted": promoted})
    finally:
        lab.emulation.set_loss(cut, 0.0)
    wait_links_up(lab)

    found = compare_ledgers(writes, ledger_ids(pg2, "lost/"), failure, promoted, "pg2", "pg1")
    assert (found["acknowledged"], found["lost"]) == (3, 3)
    assert found["lost_ids"] == [w["id"] for w in writes]
    assert found["rpo_s"] > 0 and found["split_brain"] == 0

    acknowledged = {w["id"] for w in writes}
    pg1.start(local_only=True)
    try:
        with pytest.raises(DataLossRefused):
            guard_removal(pg1, [pg2], acknowledged)
    finally:
        pg1.stop(fast=True)
    real_run_in = failback.run_in

    def no_rewind(host, argv, *args, **kwargs):
        if any("pg_rewind" in a for a in argv):
            raise failback.DatabaseError("pg_rewind refused (test)")
        return real_run_in(host, argv, *args, **kwargs)

    monkeypatch.setattr(failback, "run_in", no_rewind)
    with pytest.raises(DataLossRefused):  # the fallback would empty the directory: refused
        rebuild(pg1, pg2, dbs, acknowledged)
    monkeypatch.undo()
    assert (pg1.data_dir / "PG_VERSION").exists()

    rows_before = ledger_rows(pg2)
    result = fail_back(dbs, pg1, acknowledged, restore=True)
    addresses_to(lab, "pg1", "pg2")
    assert sorted(result.recovered) == sorted(acknowledged)
    # The switchover back was clean: the old standby followed the new primary as it was.
    assert (result.method, result.switchover) == ("pg_rewind", "followed"), result
    assert result.rows_before == rows_before
    assert result.rows_after == rows_before + 3
    assert acknowledged <= ledger_ids(pg1, "lost/")
    wait_caught_up(pg2, pg1)
    assert acknowledged <= ledger_ids(pg2, "lost/")


def test_with_sync_replication_a_write_in_a_cut_is_never_acknowledged_so_none_is_lost(dr_lab):
    lab, dbs, scratch = dr_lab
    pg1, pg2 = dbs.primary, dbs.standby
    dbs.replication = "sync"
    dbs.set_sync()
    try:
        first = write_from(lab, dbs, scratch, ["mono1"], "sync/ok/", 1)
        assert [w["server"] for w in first] == ["pg1"], first
        site = lab.topology.hosts[pg2.name].site
        cut = {link.index for link in lab.topology.links if site in (link.a, link.b)}
        lab.emulation.set_loss(cut, 100.0)
        failure = time.time()
        try:
            waiting = {}
            # The commit waits for the cut-off standby: no answer while the primary runs.
            writer = threading.Thread(target=lambda: waiting.update(
                writes=write_from(lab, dbs, scratch, ["mono1"], "sync/cut/", 1)), daemon=True)
            writer.start()
            time.sleep(3)
            assert "writes" not in waiting
            promote(pg2)
            promoted = time.time()
            recovery_of(lab, dbs, scratch).promoted({"type": "promoted", "promoted": promoted})
            writer.join(60)
        finally:
            lab.emulation.set_loss(cut, 0.0)
        wait_links_up(lab)
        writes = waiting["writes"]
        assert len(writes) == 1 and not writes[0]["ok"]  # ended by the fence, unacknowledged
        found = compare_ledgers(writes, ledger_ids(pg2, "sync/"), failure, promoted, "pg2", "pg1")
        assert (found["acknowledged"], found["lost"]) == (0, 0)
        result = fail_back(dbs, pg1, set(), restore=True)
        addresses_to(lab, "pg1", "pg2")
        # It was committed on pg1 (then never acknowledged): the fail-back drops it, knowingly.
        assert result.recovered == [] and result.unacknowledged_discarded == 1
    finally:
        dbs.replication = "async"
        dbs.set_sync()

