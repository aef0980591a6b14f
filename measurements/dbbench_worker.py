"""The database workload, run inside a lab host: times each request and writes raw samples.

    python -m measurements.dbbench_worker CONFIG.json
    python -m measurements.dbbench_worker --serve   (one CONFIG.json path a line on stdin)

Started by measurements/dbbench.py with `host.popen`, so its connections leave from the
host's own address over the lab's network. The password comes in PGPASSWORD. Output: one
JSON object per line in the config's `out` file, flushed as it goes (the parent follows it
for progress):

    {"type": "sample", "operation": "read", "start": <unix time>, "latency_ms": 0.41, "ok": true}
    {"type": "phase", "operation": "write", "start": <unix time>, "end": <unix time>}
    {"type": "lag", "commit": <unix time>, "seen": <unix time>, "lag_ms": 1.2, "resolution_ms": 0.6}
    {"type": "ready"}  (lag mode: connected, watching; workload mode with a `go_file`:
                        connected, waiting for that file before the first request)
    {"type": "done"}

`--serve` (lab compare's worker pool, measurements/dbworkload.py `WorkerPool`) runs one job
after another in the same process until stdin closes, so that a comparison's many database
phases do not each pay a dozen Python starts; after each job it writes the job's status
(0 done, 1 failed) to CONFIG.status, and a failed job's error to CONFIG.err.

Modes: `workload` runs the operations in turn (warm-up first, not recorded); `writer` writes
every `interval_s` until SIGTERM (lab compare's continuous write probe); `lag` runs on
the standby's host until SIGTERM and reports, for each transaction it sees replayed, the
time from its commit on the primary to its replay on the standby (the same clock: all hosts
share the machine's), half-way between the two polls that bracket the replay. It polls
every millisecond only while a flag file exists (each workload's write phase creates one in
`lag_flags`), so it does not load the machine otherwise. Writes replayed together count once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import psycopg

# Cheap reads first, the CPU-heavy connections (SCRAM, a new backend each) last: placements
# that run at once then read while the others read too, not while they authenticate.
# address_read / address_write: a read through the read address and a write through the
# write address (the services' addresses, as the application uses them); the others reach a
# named server (the primary, or the replica) directly.
OPERATIONS = ("read", "page", "replica_read", "address_read", "write", "address_write",
              "connect")
# The config's targets (psycopg keywords), each with its own connection when given.
TARGETS = ("primary", "replica", "read_address", "write_address")
LAG_FAST_POLL_S = 0.001
LAG_IDLE_POLL_S = 0.02
LAG_DRAIN_S = 0.3  # the write phase's flag stays this long after the last commit
GO_POLL_S = 0.01
WRITER_CONNECT_TIMEOUT_S = 2  # libpq's shortest connection timeout
WRITER_TCP_TIMEOUT_MS = 1000
# A commit waiting for an answer has no unacknowledged data, so TCP_USER_TIMEOUT never ends
# it: keepalives do, when the server behind the address is gone (fenced, or the address moved).
WRITER_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1,
                     "keepalives_count": 2}


class Stop(Exception):
    """SIGTERM: finish the current line and exit."""


def connect(target: dict, connect_timeout: int = 10, **options) -> psycopg.Connection:
    """A connection as a plain client makes it: TCP, startup, SCRAM; no TLS, no prepares."""
    return psycopg.connect(host=target["host"], port=target["port"], dbname=target["dbname"],
                           user=target["user"], sslmode="disable", gssencmode="disable",
                           connect_timeout=connect_timeout, autocommit=True,
                           prepare_threshold=None, **options)


def write_transaction(conn: psycopg.Connection, rng: random.Random, patients: int,
                      ledger: tuple[str, str] | None = None) -> str | None:
    """A write transaction: a new appointment and its claim, and with `ledger` (write id,
    writer) its ledger row. Returns the name of the server that committed it (cluster_name),
    None if a row did not come back."""
    pid = rng.randint(1, patients)
    with conn.transaction():
        aid = conn.execute(
            "INSERT INTO appointments (patient_id, scheduled_at, status) "
            "VALUES (%s, now(), 'booked') RETURNING appointment_id", (pid,)).fetchone()[0]
        cid = conn.execute(
            "INSERT INTO claims (appointment_id, amount, status, submitted_at) "
            "VALUES (%s, 42.00, 'submitted', now()) RETURNING claim_id", (aid,)).fetchone()
        if ledger is None:
            server = conn.execute("SELECT current_setting('cluster_name')").fetchone()
        else:
            server = conn.execute(
                "INSERT INTO ledger (write_id, writer, appointment_id) VALUES (%s, %s, %s) "
                "RETURNING server", (*ledger, aid)).fetchone()
    return server[0] if aid is not None and cid is not None and server else None


class Workload:
    """The operations of one placement, each checking that it got the right rows back."""

    def __init__(self, config: dict):
        self.config = config
        self.rng = random.Random(config.get("seed", 1))
        self.patients = config["patients"]
        self.page_queries = config["page_queries"]
        self.conns = {name: connect(config[name]) for name in TARGETS if config.get(name)}

    @property
    def primary(self) -> psycopg.Connection:
        return self.conns["primary"]

    def has(self, op: str) -> bool:
        """Whether this placement was given what `op` needs (replica and addresses are optional)."""
        need = {"replica_read": "replica", "address_read": "read_address",
                "address_write": "write_address"}.get(op, "primary")
        return need in self.conns

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()

    def reconnect_broken(self) -> None:
        """After a failed request, replace a connection the failure broke."""
        for name, conn in self.conns.items():
            if conn.broken or conn.closed:
                self.conns[name] = connect(self.config[name])

    def connect(self) -> bool:
        conn = connect(self.config["primary"])
        ok = conn.info.status == psycopg.pq.ConnStatus.OK
        conn.close()
        return ok

    def _read(self, conn) -> bool:
        pid = self.rng.randint(1, self.patients)
        row = conn.execute("SELECT patient_id, mrn, name, birth_date FROM patients "
                           "WHERE patient_id = %s", (pid,)).fetchone()
        return row is not None and row[0] == pid and row[2] == f"patient {pid}"

    def read(self) -> bool:
        return self._read(self.primary)

    def replica_read(self) -> bool:
        return self._read(self.conns["replica"])

    def address_read(self) -> bool:
        return self._read(self.conns["read_address"])

    def page(self) -> bool:
        """One screen of a legacy ORM: the patient, the list, then one query per object.

        Exactly `page_queries` sequential statements: the patient by id, the ids of their
        appointments, then alternately an appointment and its claim, cycling through the
        appointments until the count is reached (the N+1 pattern).
        """
        conn, n = self.primary, self.page_queries
        pid = self.rng.randint(1, self.patients)
        row = conn.execute("SELECT patient_id, name FROM patients WHERE patient_id = %s",
                           (pid,)).fetchone()
        ok = row is not None and row[0] == pid
        if n == 1:
            return ok
        ids = [r[0] for r in conn.execute(
            "SELECT appointment_id FROM appointments WHERE patient_id = %s "
            "ORDER BY scheduled_at LIMIT %s", (pid, max(1, (n - 1) // 2)))]
        issued, i = 2, 0
        while issued < n and ids:
            aid = ids[i % len(ids)]
            appt = conn.execute("SELECT appointment_id, patient_id, scheduled_at, status "
                                "FROM appointments WHERE appointment_id = %s", (aid,)).fetchone()
            ok = ok and appt is not None and appt[1] == pid
            issued += 1
            if issued < n:
                conn.execute("SELECT claim_id, amount, status FROM claims "
                             "WHERE appointment_id = %s", (aid,)).fetchall()
                issued += 1
            i += 1
        while issued < n:  # a patient without appointments: re-read the patient
            conn.execute("SELECT patient_id, name FROM patients WHERE patient_id = %s",
                         (pid,)).fetchone()
            issued += 1
        return ok

    def write(self) -> bool:
        """A write transaction on the primary."""
        return write_transaction(self.primary, self.rng, self.patients) is not None

    def address_write(self) -> bool:
        """A write transaction through the write address."""
        return write_transaction(self.conns["write_address"], self.rng, self.patients) \
            is not None


def run_workload(config: dict, out) -> None:
    work = Workload(config)
    flag = Path(config["lag_flag"]) if config.get("lag_flag") else None
    if config.get("go_file"):  # connected: start when the batch is (the parent makes the file)
        write_line(out, {"type": "ready"})
        go = Path(config["go_file"])
        while not go.exists():
            time.sleep(GO_POLL_S)
    try:
        for op in config["operations"]:
            if not work.has(op):
                continue
            step = getattr(work, op)
            for _ in range(config.get("warmup", 0)):
                step()
            writes = op in ("write", "address_write")
            if writes and flag is not None:
                flag.touch()
            phase_start = time.time()
            for _ in range(config["samples"]):
                start = time.time()
                t0 = time.perf_counter()
                error = None
                try:
                    ok = step()
                except psycopg.Error as exc:
                    ok, error = False, str(exc).strip().splitlines()[0][:200]
                    work.reconnect_broken()
                latency = (time.perf_counter() - t0) * 1000
                record = {"type": "sample", "operation": op, "start": round(start, 6),
                          "latency_ms": round(latency, 4), "ok": bool(ok)}
                if error:
                    record["error"] = error
                write_line(out, record)
            if writes:
                write_line(out, {"type": "phase", "operation": op, "start": phase_start,
                                 "end": time.time()})
                if flag is not None:
                    time.sleep(LAG_DRAIN_S)
                    flag.unlink(missing_ok=True)
    finally:
        if flag is not None:
            flag.unlink(missing_ok=True)
        work.close()


def run_writer(config: dict, out) -> None:
    """A service writing through the database's write address every `interval_s` until
    SIGTERM (or `count` writes), keeping a ledger: each write has a unique id
    (`id_prefix` + a sequence number), and its line says whether it was acknowledged, when
    (start + latency) and by which server.

    A write that breaks the connection makes the next one reconnect. A silently cut path
    would block a write for minutes: TCP_USER_TIMEOUT ends it after WRITER_TCP_TIMEOUT_MS of
    unanswered data, keepalives a wait for an answer that cannot come, and a connection
    attempt gives up after libpq's shortest timeout.
    """
    rng = random.Random(config.get("seed", 1))
    conn, seq = None, 0
    try:
        while config.get("count") is None or seq < config["count"]:
            seq += 1
            write_id = f"{config['id_prefix']}{seq}"
            start, t0, error, server = time.time(), time.perf_counter(), None, None
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect(config["primary"], connect_timeout=WRITER_CONNECT_TIMEOUT_S,
                                   tcp_user_timeout=WRITER_TCP_TIMEOUT_MS, **WRITER_KEEPALIVES)
                server = write_transaction(conn, rng, config["patients"],
                                           (write_id, config["writer"]))
            except psycopg.Error as exc:
                error = (str(exc).strip().splitlines() or ["error"])[0][:200]
                if conn is not None and conn.broken:  # not for a refusal, e.g. read-only
                    conn.close()
                    conn = None
            record = {"type": "sample", "operation": "write", "start": round(start, 6),
                      "latency_ms": round((time.perf_counter() - t0) * 1000, 4),
                      "ok": server is not None, "id": write_id, "server": server}
            if error:
                record["error"] = error
            write_line(out, record)
            time.sleep(max(0.0, start + config["interval_s"] - time.time()))
    except Stop:
        pass
    finally:
        if conn is not None:
            conn.close()


def run_lag(config: dict, out) -> None:
    """Report commit-to-replay time of every transaction seen replayed, until SIGTERM."""
    flags, prefix = Path(config["lag_flags"]), config["lag_flag_prefix"]
    conn = connect(config["replica"])
    query = "SELECT extract(epoch FROM pg_last_xact_replay_timestamp())::float8"
    last = conn.execute(query).fetchone()[0]
    before = time.time()
    write_line(out, {"type": "ready"})
    try:
        while True:
            if not any(flags.glob(prefix + "*")):
                time.sleep(LAG_IDLE_POLL_S)
                last = conn.execute(query).fetchone()[0]
                before = time.time()
                continue
            sent = time.time()
            commit = conn.execute(query).fetchone()[0]
            seen = time.time()
            if commit is not None and commit != last:
                # Replayed after the previous poll was sent and before this one returned.
                low = max(before, commit)
                write_line(out, {"type": "lag", "commit": commit, "seen": seen,
                                 "lag_ms": round(((low + seen) / 2 - commit) * 1000, 4),
                                 "resolution_ms": round((seen - low) / 2 * 1000, 4)})
                last = commit
            before = sent
            time.sleep(LAG_FAST_POLL_S)
    except Stop:
        pass
    finally:
        conn.close()


def write_line(out, record: dict) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


def _stop(_signum, _frame):
    raise Stop()


def run(config: dict) -> int:
    """One job: its mode's work, then "done"; 1 if stopped by SIGTERM."""
    with open(config["out"], "a") as out:
        try:
            mode = config.get("mode", "workload")
            if mode == "lag":
                run_lag(config, out)
            elif mode == "writer":
                run_writer(config, out)
            else:
                run_workload(config, out)
        except Stop:
            return 1
        write_line(out, {"type": "done", "pid": os.getpid()})
    return 0


def serve(jobs) -> int:
    """Run the jobs named on `jobs` (a config path a line) one after another until it ends."""
    for line in jobs:
        path = Path(line.strip())
        try:
            code = run(json.loads(path.read_text()))
        except Stop:
            return 1
        except Exception as exc:  # the job failed; the worker goes on with the next one
            path.with_suffix(".err").write_text(f"{type(exc).__name__}: {exc}\n")
            code = 1
        partial = path.with_suffix(".status-partial")  # renamed: never read half-written
        partial.write_text(f"{code}\n")
        partial.rename(path.with_suffix(".status"))
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    if argv == ["--serve"]:
        return serve(sys.stdin)
    if len(argv) != 1:
        print("usage: python -m measurements.dbbench_worker CONFIG.json | --serve",
              file=sys.stderr)
        return 2
    return run(json.loads(Path(argv[0]).read_text()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
