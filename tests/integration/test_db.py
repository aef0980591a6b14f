"""PostgreSQL in the lab (root, OVS, Mininet, PostgreSQL 15): a small data set, few samples."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg
import pytest

from controllers.forwarding import make_lab
from lab.runstate import PROCESS_MARKER, marked_processes
from measurements.postgres import DIRECT_PORT, SMALL, data_root, start_databases
from tests.helpers import DEFAULT_TOPOLOGY
from topologies.loader import load

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet, pytest.mark.postgres]


def postgres_processes() -> list[int]:
    """Every process of the postgres user (the lab's servers are the only ones here)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == _postgres_uid():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _postgres_uid() -> int:
    import pwd
    return pwd.getpwnam("postgres").pw_uid


def wait_gone(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if os.path.exists(f"/proc/{p}")]
        time.sleep(0.05)
    return alive


@pytest.fixture(scope="module")
def db_lab(no_lab_running):
    before = set(postgres_processes())
    with make_lab(load(DEFAULT_TOPOLOGY)) as lab:
        dbs = start_databases(lab, size=SMALL, log=lambda *a: None)
        try:
            yield lab, dbs
        finally:
            dbs.stop()
            dbs.stop()  # idempotent
    assert wait_gone(set(postgres_processes()) - before) == []
    assert not data_root().exists()


def test_servers_run_inside_their_hosts_as_postgres_with_the_marker(db_lab):
    lab, dbs = db_lab
    root_ns = os.readlink("/proc/self/ns/net")
    for db in dbs.servers():
        pid = db.postmaster_pid
        host_ns = os.readlink(f"/proc/{lab.host(db.name).pid}/ns/net")
        assert os.readlink(f"/proc/{pid}/ns/net") == host_ns != root_ns
        assert os.stat(f"/proc/{pid}").st_uid == _postgres_uid()
        assert pid in marked_processes(lab.state.run_id)
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"{PROCESS_MARKER}={lab.state.run_id}".encode() in env
        assert db.data_dir.parent == data_root() and (db.data_dir / "PG_VERSION").exists()


def test_database_is_reachable_only_through_the_lab(db_lab):
    _, dbs = db_lab
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=dbs.primary.ip, port=DIRECT_PORT, dbname=dbs.dbname,
                        user=dbs.user, password=dbs.password, connect_timeout=2)


def test_standby_is_a_hot_standby_with_the_data(db_lab):
    _, dbs = db_lab
    assert dbs.standby.psql("SELECT pg_is_in_recovery()").strip() == "t"
    assert dbs.standby.psql("SELECT count(*) FROM patients", dbname=dbs.dbname).strip() \
        == str(SMALL.patients)


def test_replication_carries_a_write_to_the_standby(db_lab):
    _, dbs = db_lab
    mrn = f"REPL{time.time_ns()}"
    dbs.primary.psql(f"INSERT INTO patients (mrn, name, birth_date, clinic) "
                     f"VALUES ('{mrn}', 'replicated', '2000-01-01', 'bos')", dbname=dbs.dbname)
    deadline = time.monotonic() + 10
    seen = ""
    while time.monotonic() < deadline and seen != "1":
        seen = dbs.standby.psql(f"SELECT count(*) FROM patients WHERE mrn = '{mrn}'",
                                dbname=dbs.dbname).strip()
        time.sleep(0.05)
    assert seen == "1"


def test_a_service_host_reads_the_right_rows_over_the_lab(db_lab):
    lab, dbs = db_lab
    host = lab.host("svlz1a")
    env = dbs.client_env(lab.state.run_id)
    out = host.popen(
        ["/usr/lib/postgresql/15/bin/psql", "-X", "-At", "-P", "pager=off", "-h",
         dbs.primary.ip, "-p", str(DIRECT_PORT), "-U", dbs.user, "-d", dbs.dbname, "-c",
         "SELECT name, mrn FROM patients WHERE patient_id = 42"],
        env=env, stdin=-3, text=True).communicate(timeout=30)[0]
    assert out.strip() == "patient 42|MRN00000042"


READS = """
import statistics, sys, time, psycopg
conn = psycopg.connect(host=sys.argv[1], port=int(sys.argv[2]), user=sys.argv[3],
                       dbname=sys.argv[4], autocommit=True)
times = []
for i in range(40):
    t0 = time.perf_counter()
    conn.execute("SELECT name FROM patients WHERE patient_id = %s", (i + 1,)).fetchone()
    times.append((time.perf_counter() - t0) * 1000)
print(statistics.median(times[5:]))
"""


def median_read_ms(lab, dbs, host_name: str) -> float:
    """Median single-row indexed read from inside a host, after five warm-up reads."""
    import sys

    out = lab.host(host_name).popen(
        [sys.executable, "-c", READS, dbs.primary.ip, str(DIRECT_PORT), dbs.user, dbs.dbname],
        env=dbs.client_env(lab.state.run_id), stdin=-3, text=True).communicate(timeout=60)[0]
    return float(out.strip())


def test_an_outposts_reads_beat_a_regions_by_the_path_rtt_difference(db_lab):
    lab, dbs = db_lab
    paths = {(p["src"], p["dst"]): p["expected_rtt_ms"] for p in lab.topology.lowest_latency_paths()}
    outpost, region = median_read_ms(lab, dbs, "svop1a"), median_read_ms(lab, dbs, "svrga")
    expected = paths[("dc1", "rga")] - paths[("dc1", "op1a")]
    # Tolerance: 1 ms + 10 % (the fabric's residual and the server's own variation).
    assert abs((region - outpost) - expected) <= 1.0 + 0.1 * expected, \
        f"outpost {outpost:.2f} ms, region {region:.2f} ms, expected difference {expected:.2f} ms"
