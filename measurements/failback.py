"""Promotion, fencing and fail-back of the lab's PostgreSQL pair, keeping every acknowledged write.

- `fence(old)`: the old primary is stopped (a fast shutdown: its clients are cut off, what it
  committed stays in its data directory). The lab does it through the host's process table,
  a path the network failure does not cut, the way a power or IPMI fence reaches a server
  whose network is gone (STONITH). It answers nothing after that, over any address.
- `ledger_ids(db, prefix)`: the writers' ids a server holds (its ledger table), read over the
  unix socket, so a fenced server can be read without being reachable.
- `fail_back(dbs, acknowledged, restore)`: after the repair, the acknowledged writes that only
  the fenced old primary holds (async replication, before the fence) are re-applied on the new
  primary; the old primary is rebuilt as a standby of the new one (pg_rewind, else a
  pg_basebackup into an emptied directory); with `restore` the roles then switch back (a clean
  switchover: the stopped primary follows the promoted one as it is, rebuilt only if not). No data directory is emptied while it holds an acknowledged write no other
  server has (`guard_removal`); the ledger is counted before and after, and a fail-back that
  would lose a row raises.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from measurements.postgres import (DBNAME, PG_BIN, USER, Database, DatabaseError, Databases,
                                   as_postgres, base_backup, run_in, write_passfile)

CATCH_UP_TIMEOUT_S = 60.0
# A switched-over primary follows the promoted standby without pg_rewind when it streams and
# catches up within this; else it is rebuilt (pg_rewind costs 5-6 s over the DC-to-DC line:
# it copies the source's current WAL segment whole).
FOLLOW_TIMEOUT_S = 10.0
# A fenced primary's fast shutdown ends its sessions at once, then waits for its standby to
# confirm the last WAL; a standby cut off silently never does (until wal_sender_timeout, 60 s):
# after this long the rest of it is killed. What it committed is on disk either way.
FENCE_WAIT_S = 3.0
# Settings a copy brings from its source that must not follow it (a standby's connection and
# slot, a primary's synchronous standby: a promoted copy would wait for itself).
ROLE_SETTINGS = ("primary_conninfo", "primary_slot_name", "synchronous_standby_names")


class DataLossRefused(DatabaseError):
    """Removing or rebuilding a data directory would discard an acknowledged write."""


@dataclass
class FailBack:
    """What a fail-back did: rows counted, writes re-applied, how the old primary came back."""

    rows_before: int = 0
    rows_after: int = 0
    recovered: list[str] = field(default_factory=list)  # acknowledged ids re-applied
    unacknowledged_discarded: int = 0  # committed on the fenced server, never acknowledged
    method: str = ""  # pg_rewind | pg_basebackup
    restored: bool = False
    switchover: str = ""  # how the switched-over primary came back: followed | pg_rewind | ...
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # seconds each step took, in order

    @contextmanager
    def step(self, name: str):
        """Time one step: a fail-back's length is a cost of the strategy's recovery."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - t0, 3)

    def as_dict(self) -> dict:
        return {"rows_before": self.rows_before, "rows_after": self.rows_after,
                "recovered": len(self.recovered), "recovered_ids": self.recovered,
                "unacknowledged_discarded": self.unacknowledged_discarded,
                "method": self.method, "restored": self.restored,
                "switchover": self.switchover,
                "seconds": round(self.seconds, 3), "steps": self.steps}


def _sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def fence(db: Database) -> None:
    """Stop the old primary (fast shutdown; its data directory stays) and mark it fenced."""
    db.stop(timeout=FENCE_WAIT_S, fast=True)
    db.role = "fenced"


def promote(db: Database) -> None:
    """Promote a standby and wait until it accepts writes."""
    db.psql("SELECT pg_promote(true, 30);\n")
    db.role = "primary"


def ledger_ids(db: Database, prefix: str = "") -> set[str]:
    """The write ids `db` holds whose id starts with `prefix`."""
    out = db.psql(f"SELECT write_id FROM ledger WHERE starts_with(write_id, {_sql_text(prefix)});\n",
                  dbname=DBNAME)
    return set(out.split())


def ledger_rows(db: Database) -> int:
    return int(db.psql("SELECT count(*) FROM ledger;\n", dbname=DBNAME).strip())


def guard_removal(db: Database, others: list[Database], acknowledged: set[str]) -> None:
    """Raise DataLossRefused if `db` holds an acknowledged write that none of `others` holds.

    `db` must be running (local_only will do); `others` too."""
    held_elsewhere: set[str] = set()
    for other in others:
        held_elsewhere |= ledger_ids(other)
    only_here = (ledger_ids(db) & acknowledged) - held_elsewhere
    if only_here:
        raise DataLossRefused(f"{db.name}: holds {len(only_here)} acknowledged writes no other "
                              f"server has (e.g. {sorted(only_here)[0]}): its data directory "
                              f"stays")


def _reapply(old: Database, new: Database, ids: set[str]) -> None:
    """Re-apply writes `old` holds on `new`: the appointment, its claim and the ledger row."""
    if not ids:
        return
    rows = old.psql("SELECT l.write_id, l.writer, a.patient_id, l.written_at, l.server "
                    "FROM ledger l JOIN appointments a USING (appointment_id) "
                    f"WHERE l.write_id IN ({', '.join(map(_sql_text, sorted(ids)))});\n",
                    dbname=DBNAME)
    script = ""
    for line in rows.splitlines():
        write_id, writer, patient, at, server = line.split("|")
        script += (
            "WITH a AS (INSERT INTO appointments (patient_id, scheduled_at, status) "
            f"VALUES ({int(patient)}, {_sql_text(at)}, 'booked') RETURNING appointment_id), "
            "c AS (INSERT INTO claims (appointment_id, amount, status, submitted_at) "
            f"SELECT appointment_id, 42.00, 'submitted', {_sql_text(at)} FROM a) "
            "INSERT INTO ledger (write_id, writer, appointment_id, server, written_at, "
            f"recovered_from) SELECT {_sql_text(write_id)}, {_sql_text(writer)}, appointment_id, "
            f"{_sql_text(server)}, {_sql_text(at)}, {_sql_text(old.name)} FROM a;\n")
    if script:
        new.psql(script, dbname=DBNAME)


def recover_acknowledged(old: Database, new: Database, acknowledged: set[str],
                         result: FailBack) -> None:
    """Re-apply on `new` the acknowledged writes only the fenced `old` holds (read over its
    socket, unreachable from the network), then check that none is left only there."""
    old.start(local_only=True)
    try:
        only_old = ledger_ids(old) - ledger_ids(new)
        missing = only_old & acknowledged
        _reapply(old, new, missing)
        result.recovered = sorted(missing)
        result.unacknowledged_discarded = len(only_old - acknowledged)
        guard_removal(old, [new], acknowledged)
    finally:
        old.stop(fast=True)


def _standby_config(db: Database, primary: Database, passfile: Path) -> None:
    """`db` follows `primary`: standby.signal, and its own connection settings only."""
    auto = db.data_dir / "postgresql.auto.conf"
    kept = [line for line in auto.read_text().splitlines()
            if not line.split("=")[0].strip() in ROLE_SETTINGS] if auto.exists() else []
    kept.append(f"primary_conninfo = 'host={primary.ip} port={primary.port} user={USER} "
                f"passfile={passfile} application_name={db.name}'")
    auto.write_text("\n".join(kept) + "\n")
    (db.data_dir / "standby.signal").touch()
    for path in (auto, db.data_dir / "standby.signal"):
        shutil.chown(path, "postgres", "postgres")


def rebuild(db: Database, primary: Database, dbs: Databases, acknowledged: set[str]) -> str:
    """Make the stopped `db` a streaming standby of `primary`: pg_rewind, or, if that fails, a
    new base backup into its emptied directory (only after `guard_removal` passed)."""
    passfile = write_passfile(dbs.base_dir, dbs.password, [db, primary])
    # pg_rewind reads the source's timeline from its control file, which a just-promoted
    # server updates only at its next checkpoint (PostgreSQL's pg_rewind documentation).
    primary.psql("CHECKPOINT;\n")
    source = (f"host={primary.ip} port={primary.port} user={USER} dbname={DBNAME} "
              f"passfile={passfile}")
    try:
        run_in(db.host, as_postgres([str(PG_BIN / "pg_rewind"), "-D", str(db.data_dir),
                                     f"--source-server={source}", "--no-sync"], db.env),
               db.env, timeout=300, what=f"{db.name}: pg_rewind from {primary.name}")
        method = "pg_rewind"
    except DatabaseError:
        db.start(local_only=True)
        try:
            guard_removal(db, [primary], acknowledged)
        finally:
            db.stop(fast=True)
        _empty(db.data_dir)
        base_backup(db, primary, dbs.password, dbs.base_dir)
        method = "pg_basebackup"
    _standby_config(db, primary, passfile)
    db.start()
    db.role = "standby"
    return method


def _empty(data_dir: Path) -> None:
    """Empty a data directory whose writes `guard_removal` found elsewhere (pg_basebackup
    needs an empty one); the directory itself stays, owned by postgres."""
    for child in data_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def wait_caught_up(standby: Database, primary: Database,
                   timeout: float = CATCH_UP_TIMEOUT_S) -> None:
    """Until `standby` has replayed everything `primary` has written so far."""
    target = primary.psql("SELECT pg_current_wal_lsn();\n").strip()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = standby.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn;\n").strip()
        if done == "t":
            return
        time.sleep(0.1)
    raise DatabaseError(f"{standby.name}: not caught up with {primary.name} after {timeout:.0f} s")


def switchover(dbs: Databases, acknowledged: set[str]) -> str:
    """Swap a healthy pair's roles without losing a write: the primary stops cleanly (it sends
    its standby everything first), the standby is promoted, the old primary follows it."""
    old, new = dbs.primary, dbs.standby
    # Streaming, not only caught up: a standby just rebuilt holds the primary's WAL from
    # pg_rewind's copy before it connects, and a primary with no standby connected sends
    # its shutdown checkpoint to nobody.
    if not streams_from(new, old, FOLLOW_TIMEOUT_S):
        raise DatabaseError(f"switchover: {new.name} does not stream from {old.name} after "
                            f"{FOLLOW_TIMEOUT_S:.0f} s: {new.log_tail()}")
    wait_caught_up(new, old)
    old.stop(fast=True)
    old.role = "fenced"
    # Its shutdown checkpoint must be replayed before the promotion, or the new timeline
    # forks off before it and `old` cannot follow.
    wait_replayed(new, shutdown_checkpoint(old), FOLLOW_TIMEOUT_S)
    promote(new)
    dbs.primary, dbs.standby = new, old
    return follow(old, new, dbs, acknowledged)


def shutdown_checkpoint(db: Database) -> str:
    """The stopped `db`'s last checkpoint location (pg_controldata), the end of its WAL."""
    out = run_in(db.host, as_postgres([str(PG_BIN / "pg_controldata"), "-D", str(db.data_dir)],
                                      db.env), db.env, what=f"{db.name}: pg_controldata")
    for line in out.splitlines():
        if line.startswith("Latest checkpoint location:"):
            return line.split(":", 1)[1].strip()
    raise DatabaseError(f"{db.name}: pg_controldata gave no checkpoint location")


def wait_replayed(standby: Database, lsn: str, timeout: float) -> bool:
    """Until `standby` has replayed the record at `lsn` (False if not within `timeout`:
    what follows then finds out and rebuilds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standby.psql(f"SELECT pg_last_wal_replay_lsn() > '{lsn}'::pg_lsn;\n").strip() == "t":
            return True
        time.sleep(0.05)
    return False


def follow(db: Database, primary: Database, dbs: Databases, acknowledged: set[str]) -> str:
    """Make the cleanly stopped `db`, whose standby `primary` received all its WAL before
    being promoted, a standby of it as it is: its history is a prefix of the new timeline,
    so it needs no rewind (PostgreSQL's documented switchover). Checked: it must catch up
    with `primary` within FOLLOW_TIMEOUT_S, else it is stopped and rebuilt."""
    _standby_config(db, primary, write_passfile(dbs.base_dir, dbs.password, [db, primary]))
    db.start()
    db.role = "standby"
    if streams_from(db, primary, FOLLOW_TIMEOUT_S):
        return "followed"
    db.stop(fast=True)
    return rebuild(db, primary, dbs, acknowledged)


def streams_from(standby: Database, primary: Database, timeout: float) -> bool:
    """Whether `standby` receives `primary`'s current timeline up to a record written now
    (a replay position alone can be ahead of a timeline that forked off before it)."""
    primary.psql("CHECKPOINT;\n")  # a record on the primary's timeline, after any fork
    lsn, wal = primary.psql("SELECT pg_current_wal_lsn(), "
                            "pg_walfile_name(pg_current_wal_lsn());\n").strip().split("|")
    timeline = int(wal[:8], 16)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = standby.psql(f"SELECT received_tli, flushed_lsn >= '{lsn}'::pg_lsn FROM "
                           f"pg_stat_wal_receiver WHERE status = 'streaming';\n").strip()
        if row == f"{timeline}|t":
            return True
        time.sleep(0.1)
    return False


def fail_back(dbs: Databases, old: Database, acknowledged: set[str], restore: bool) -> FailBack:
    """After a promotion and the repair: bring the fenced `old` back without losing an
    acknowledged write; `restore`: it is the primary again. `dbs.primary` is the new primary."""
    t0 = time.monotonic()
    result = FailBack(rows_before=ledger_rows(dbs.primary))
    with result.step("re-apply"):
        recover_acknowledged(old, dbs.primary, acknowledged, result)
    with result.step("rebuild"):
        result.method = rebuild(old, dbs.primary, dbs, acknowledged)
    dbs.standby, dbs.fenced = old, None
    with result.step("catch-up"):
        wait_caught_up(old, dbs.primary)
    if restore:
        with result.step("switchover"):
            result.switchover = switchover(dbs, acknowledged)
        with result.step("catch-up after switchover"):
            wait_caught_up(dbs.standby, dbs.primary)
        result.restored = True
    with result.step("replication mode"):
        dbs.set_sync()
    result.rows_after = ledger_rows(dbs.primary)
    result.seconds = time.monotonic() - t0
    if result.rows_after < result.rows_before + len(result.recovered):
        raise DataLossRefused(f"fail-back: the primary holds {result.rows_after} ledger rows, "
                              f"{result.rows_before} before and {len(result.recovered)} re-applied")
    return result
