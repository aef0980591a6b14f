"""PostgreSQL 15 inside the lab: a primary in the db-primary host, a streaming standby in the
db-standby host.

Each server runs inside its Mininet host (so it is reachable only over the lab's network),
as the postgres user, with its data directory under the lab's run directory
(<run dir>/pg/<host>) and its unix socket in that directory. The primary gets the schema and
a deterministic data set (measurements/schema.sql); the standby is a pg_basebackup of it taken
over the lab network. `Databases.stop()` stops both servers and removes their directories.

Every process started here carries the lab's marker (HCLAB_RUN=<run id>) in its environment,
passed explicitly because runuser may reset it. PostgreSQL's child processes overwrite their
environment block with their process title, so only each postmaster shows the marker in
/proc/PID/environ; its children are found as its descendants, and exit by themselves within
seconds when it dies.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.runstate import PROCESS_MARKER, descendants, pid_alive, run_dir

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_DIR_NAME = "pg"  # under the lab's run directory
# The port of the controller's "db" service (VIP 10.0.0.10:5432, controllers/services.py).
# Its address rewrite is stateless: replies from an endpoint's port 5432 to a consumer leave
# as the VIP, so a consumer cannot reach that endpoint's own address on 5432. Measurements
# of a named server's access path use another port (DIRECT_PORT).
PORT = 5432
DIRECT_PORT = 5433
USER = "hclab"
DBNAME = "clinic"
SLOT = "standby1"
SCHEMA = Path(__file__).with_name("schema.sql")
PATH = f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"
READY_STATES = ("ready", "standby")  # line 8 of postmaster.pid once it accepts connections

# Settings shared by primary and standby (the standby gets a copy with the base backup).
# Parallel query is off and dynamic shared memory lives in the data directory, so nothing
# of a server outlives its data directory.
SERVER_CONF = """
# hclab
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
hot_standby = on
max_connections = 200
shared_buffers = 64MB
dynamic_shared_memory_type = mmap
max_parallel_workers_per_gather = 0
password_encryption = scram-sha-256
log_min_messages = warning
log_connections = off
"""

HBA_CONF = f"""# hclab: the postgres user over the socket in the data directory, the lab user
# and replication from the lab's network only, with a password.
local   all          postgres                 peer
host    all          {USER}      10.0.0.0/8   scram-sha-256
host    replication  {USER}      10.0.0.0/8   scram-sha-256
"""


class DatabaseError(RuntimeError):
    """A database could not be set up or stopped; the message says where and why."""


@dataclass(frozen=True)
class DataSize:
    """Rows loaded into the primary (claims <= appointments)."""

    patients: int = 20_000
    appointments: int = 60_000
    claims: int = 40_000

    def __post_init__(self):
        if self.patients < 1 or self.appointments < 0 or not 0 <= self.claims <= self.appointments:
            raise ValueError(f"bad data size {self}: need patients >= 1, "
                             f"0 <= claims <= appointments")


SMALL = DataSize(patients=300, appointments=900, claims=600)


@dataclass
class Database:
    """One PostgreSQL server running inside one lab host."""

    host: object  # the Mininet host
    name: str
    ip: str
    role: str  # "primary" or "standby"
    data_dir: Path
    env: dict
    port: int = PORT
    proc: subprocess.Popen | None = None
    postmaster_pid: int | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the postmaster inside the host and wait until it accepts connections."""
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")
        try:
            self.proc = self.host.popen(
                as_postgres([str(PG_BIN / "postgres"), "-D", str(self.data_dir),
                             "-c", f"listen_addresses={self.ip}", "-c", f"port={self.port}",
                             "-c", f"unix_socket_directories={self.data_dir}",
                             "-c", f"cluster_name={self.name}"], self.env),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, cwd="/")
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._pid_file()
            if status and len(status) >= 8 and status[7].strip() in READY_STATES:
                self.postmaster_pid = int(status[0])
                return
            if self.proc.poll() is not None:
                raise DatabaseError(f"{self.name}: postgres exited ({self.proc.returncode}): "
                                    f"{self.log_tail()}")
            time.sleep(0.05)
        raise DatabaseError(f"{self.name}: postgres not ready after {timeout:.0f} s: "
                            f"{self.log_tail()}")

    def _pid_file(self) -> list[str] | None:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.data_dir.parent / f"{self.name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def psql(self, sql: str, dbname: str = "postgres", variables: dict | None = None,
             timeout: float = 120.0) -> str:
        """Run SQL through psql as the postgres user, over the socket in the data directory."""
        argv = [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-P", "pager=off",
                "-v", "ON_ERROR_STOP=1", "-h", str(self.data_dir), "-p", str(self.port),
                "-d", dbname, "-f", "-"]
        for key, value in (variables or {}).items():
            argv += ["-v", f"{key}={value}"]
        return run_in(self.host, as_postgres(argv, self.env), self.env, sql, timeout,
                      what=f"{self.name}: psql")

    def stop(self, timeout: float = 15.0) -> None:
        """Immediate shutdown (the data are thrown away), then SIGKILL what is left; idempotent."""
        pid = self.postmaster_pid
        if pid is None and (status := self._pid_file()):
            pid = int(status[0]) if status[0].strip().isdigit() else None
        if pid is not None and pid_alive(pid):
            children = descendants(pid)
            try:
                os.kill(pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.02)
            for p in [pid] + children + descendants(pid):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
        self.postmaster_pid = None


@dataclass
class Databases:
    """The lab's primary and (optional) standby; connection settings for clients."""

    primary: Database
    standby: Database | None
    password: str
    base_dir: Path
    size: DataSize
    stopped: bool = field(default=False)
    reseeds: int = 0

    user: str = USER
    dbname: str = DBNAME

    @property
    def port(self) -> int:
        return self.primary.port

    def conninfo(self, db: Database) -> dict:
        """psycopg.connect() keywords for the lab user (the password goes in PGPASSWORD)."""
        return {"host": db.ip, "port": db.port, "dbname": self.dbname, "user": self.user}

    def client_env(self, run_id: str) -> dict:
        """Environment for a client process the lab starts: the marker and the password."""
        return {"PATH": PATH, "LANG": "C.UTF-8", PROCESS_MARKER: run_id,
                "PGPASSWORD": self.password}

    def servers(self) -> list[Database]:
        return [db for db in (self.standby, self.primary) if db is not None]

    def reseed_standby(self) -> None:
        """Make the standby a fresh streaming copy of the primary again (after a promotion:
        the old primary came back, and two primaries must not stay).

        The copy streams through a new replication slot: the primary's sender to the old
        standby may hold the old one for many seconds (a sender that lost its peer in a cut
        waits on TCP), and pg_terminate_backend cannot hurry a sender blocked on its socket.
        Old slots that nobody uses any more are dropped.
        """
        standby = self.standby
        standby.stop()
        shutil.rmtree(standby.data_dir, ignore_errors=True)
        self.reseeds += 1
        slot = f"{SLOT}_{self.reseeds}"
        self.primary.psql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                          f"WHERE slot_name LIKE '{SLOT}%' AND NOT active;\n")
        _base_backup(standby, self.primary, self.password, self.base_dir, slot, create=True)
        standby.start()

    def stop(self) -> None:
        """Stop the standby, then the primary, and remove their directories; idempotent."""
        errors = []
        for db in self.servers():
            try:
                db.stop()
            except Exception as exc:  # the other server and the directory still go
                errors.append(f"{db.name}: {exc}")
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.stopped = True
        if errors:
            raise DatabaseError("stopping the databases: " + "; ".join(errors))


def as_postgres(argv: list[str], env: dict) -> list[str]:
    """A command line that runs argv as the postgres user with exactly the environment env."""
    return (["runuser", "-u", "postgres", "--", "env", "-i"]
            + [f"{k}={v}" for k, v in env.items() if k != "PGPASSWORD"] + argv)


def run_in(host, argv: list[str], env: dict, stdin: str | None = None, timeout: float = 120.0,
           what: str = "") -> str:
    """Run a command inside a lab host and return its output; DatabaseError if it fails."""
    proc = host.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, env=env, cwd="/", text=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise DatabaseError(f"{what or argv[0]}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise DatabaseError(f"{what or argv[0]} failed ({proc.returncode}): "
                            f"{(err or out).strip()[-500:]}")
    return out


def data_root() -> Path:
    """Where the lab's database directories live: <run dir>/pg."""
    return run_dir() / PG_DIR_NAME


def _chown_postgres(path: Path) -> None:
    shutil.chown(path, "postgres", "postgres")


def start_databases(lab, size: DataSize = DataSize(), standby: bool = True,
                    port: int = PORT, log=print) -> Databases:
    """Start the primary (with its data) and the standby inside the lab; stop() undoes it.

    The hosts are the topology's first db-primary and db-standby hosts. The data
    directories are recorded in the lab's state (extra["postgres"]) before they are made,
    so a crashed run's directories can be found.
    """
    topo = lab.topology
    primaries = topo.hosts_with_role("db-primary")
    standbys = topo.hosts_with_role("db-standby") if standby else []
    if not primaries:
        raise DatabaseError("the topology has no db-primary host")
    if not (PG_BIN / "postgres").exists():
        raise DatabaseError(f"PostgreSQL 15 is not installed ({PG_BIN}): run ./setup.sh")
    run_id = lab.state.run_id
    base = data_root()
    if base.exists():  # a crashed run's leftovers: its processes died with its hosts
        shutil.rmtree(base)
    lab.state.extra["postgres"] = {"base_dir": str(base),
                                   "hosts": [h.name for h in primaries[:1] + standbys[:1]]}
    lab.state.save()
    base.mkdir(parents=True, mode=0o700)
    _chown_postgres(base)
    env = {"PATH": PATH, "LANG": "C.UTF-8", PROCESS_MARKER: run_id}
    password = secrets.token_urlsafe(18)

    def make(host, role):
        data_dir = base / host.name
        return Database(host=lab.host(host.name), name=host.name, ip=host.ip, role=role,
                        data_dir=data_dir, env=env, port=port)

    primary = make(primaries[0], "primary")
    dbs = Databases(primary=primary, standby=make(standbys[0], "standby") if standbys else None,
                    password=password, base_dir=base, size=size)
    try:
        t0 = time.monotonic()
        _init_primary(primary)
        primary.start()
        _load(primary, password, size)
        log(f"primary {primary.name} ({primary.ip}:{port}) up with {size.patients} patients, "
            f"{size.appointments} appointments, {size.claims} claims "
            f"in {time.monotonic() - t0:.1f} s")
        if dbs.standby is not None:
            t0 = time.monotonic()
            _base_backup(dbs.standby, primary, password, base)
            dbs.standby.start()
            log(f"standby {dbs.standby.name} ({dbs.standby.ip}) streaming from "
                f"{primary.name} in {time.monotonic() - t0:.1f} s")
    except BaseException:
        dbs.stop()
        raise
    return dbs


def _init_primary(db: Database) -> None:
    run_in(db.host, as_postgres([str(PG_BIN / "initdb"), "-D", str(db.data_dir),
                                 "-U", "postgres", "-A", "peer",
                                 "--auth-host=scram-sha-256", "-E", "UTF8",
                                 "--locale=C.UTF-8", "--no-sync", "--no-instructions"], db.env),
           db.env, what=f"{db.name}: initdb")
    with open(db.data_dir / "postgresql.conf", "a") as conf:
        conf.write(SERVER_CONF)
    (db.data_dir / "pg_hba.conf").write_text(HBA_CONF)


def _load(db: Database, password: str, size: DataSize) -> None:
    literal = "'" + password.replace("'", "''") + "'"
    db.psql(f"CREATE ROLE {USER} LOGIN REPLICATION PASSWORD {literal};\n"
            f"CREATE DATABASE {DBNAME} OWNER {USER};\n"
            f"SELECT pg_create_physical_replication_slot('{SLOT}');\n")
    db.psql(f"SET ROLE {USER};\n" + SCHEMA.read_text(), dbname=DBNAME,
            variables={"patients": size.patients, "appointments": size.appointments,
                       "claims": size.claims})
    # The failover manager (measurements/failover.py) promotes the standby as the lab user.
    db.psql(f"GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO {USER};\n",
            dbname=DBNAME)


def _base_backup(standby: Database, primary: Database, password: str, base: Path,
                 slot: str = SLOT, create: bool = False) -> None:
    """pg_basebackup -R of the primary through `slot` (made first if `create`), taken from
    inside the standby's host."""
    passfile = base / ".pgpass"
    passfile.write_text(f"{primary.ip}:{primary.port}:*:{USER}:{password}\n")
    passfile.chmod(0o600)
    _chown_postgres(passfile)
    env = dict(standby.env, PGPASSFILE=str(passfile))
    argv = [str(PG_BIN / "pg_basebackup"), "-h", primary.ip, "-p", str(primary.port), "-U", USER,
            "-D", str(standby.data_dir), "-R", "-X", "stream", "-S", slot, "-c", "fast",
            "--no-sync", "-w"] + (["-C"] if create else [])
    run_in(standby.host, as_postgres(argv, env), env, timeout=300,
           what=f"{standby.name}: pg_basebackup from {primary.name}")
    # The copy carries the primary's socket lock file (the socket lives in the data directory).
    for lock in standby.data_dir.glob(".s.PGSQL.*"):
        lock.unlink()
