"""PostgreSQL 15 inside the lab: a primary in the db-primary host, a streaming standby in the
db-standby host.

Each server runs inside its Mininet host (so it is reachable only over the lab's network),
as the postgres user, with its data directory under the lab's run directory
(<run dir>/pg/<host>) and its unix socket beside it (<run dir>/pg/<host>.socket: pg_rewind
and pg_basebackup copy a data directory whole, and a socket is no file to copy). The primary
gets the schema and a deterministic data set (measurements/schema.sql); the standby is a
pg_basebackup of it taken over the lab network. Each server listens on its host's address (the read address "db" leads
there) and on a second address of the host (the write address "db-write" leads there:
controllers/services.py). Replication is asynchronous, or synchronous (`replication="sync"`:
the primary names the standby in synchronous_standby_names; synchronous_commit stays on).
Fencing, fail-back and the ledger of writes: measurements/failback.py. `Databases.stop()` stops
both servers and removes their directories, at the end of the lab only.

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

from controllers.services import service_address
from lab.runstate import PROCESS_MARKER, descendants, pid_alive, run_dir

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_DIR_NAME = "pg"  # under the lab's run directory
# The port of the controller's database services (the read address "db" 10.0.0.10:5432, the
# write address "db-write" 10.0.0.11:5432; controllers/services.py). Their address rewrite is
# stateless: replies from an endpoint's port 5432 to a consumer leave as the service's
# address, so a consumer cannot reach a server by its own address on 5432. A named server is
# reached on DIRECT_PORT instead, which netfilter in the server's host forwards to PORT: the
# reply then leaves from DIRECT_PORT and the rewrite leaves it alone. So one server serves
# both the addresses and the direct measurements (lab bench db measures both).
PORT = 5432
DIRECT_PORT = 5433
NFT_TABLE = "hclab"  # in the database hosts' own network namespaces, gone with them
USER = "hclab"
DBNAME = "clinic"
SCHEMA = Path(__file__).with_name("schema.sql")
PATH = f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin"
READY_STATES = ("ready", "standby")  # line 8 of postmaster.pid once it accepts connections
REPLICATION_MODES = ("async", "sync")

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
# pg_rewind rebuilds a fenced old primary from the new one (fail-back) without a full copy.
wal_log_hints = on
wal_keep_size = 256MB
password_encryption = scram-sha-256
log_min_messages = warning
log_connections = off
"""

HBA_CONF = f"""# hclab: the postgres user over the server's own socket, the lab user
# and replication from the lab's network only, with a password.
local   all          postgres                 peer
host    all          {USER}      10.0.0.0/8   scram-sha-256
host    replication  {USER}      10.0.0.0/8   scram-sha-256
"""


# What pg_rewind needs on its source without a superuser (PostgreSQL 15 documentation).
REWIND_FUNCTIONS = ("pg_ls_dir(text, boolean, boolean)", "pg_stat_file(text, boolean)",
                    "pg_read_binary_file(text)", "pg_read_binary_file(text, bigint, bigint, boolean)")


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
    role: str  # "primary", "standby" or "fenced"
    data_dir: Path
    env: dict
    port: int = PORT
    write_ip: str | None = None  # the host's second address, where the write address leads
    proc: subprocess.Popen | None = None
    postmaster_pid: int | None = None

    def start(self, timeout: float = 30.0, local_only: bool = False) -> None:
        """Start the postmaster inside the host and wait until it accepts connections.

        local_only: on its unix socket only, unreachable over the network
        (a fenced server read for what it holds)."""
        listen = "" if local_only else ",".join(filter(None, (self.ip, self.write_ip)))
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        _chown_postgres(self.socket_dir)
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")
        try:
            self.proc = self.host.popen(
                as_postgres([str(PG_BIN / "postgres"), "-D", str(self.data_dir),
                             "-c", f"listen_addresses={listen}", "-c", f"port={self.port}",
                             "-c", f"unix_socket_directories={self.socket_dir}",
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

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / f"{self.name}.socket"

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
        """Run SQL through psql as the postgres user, over the server's unix socket."""
        argv = [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-P", "pager=off",
                "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(self.port),
                "-d", dbname, "-f", "-"]
        for key, value in (variables or {}).items():
            argv += ["-v", f"{key}={value}"]
        return run_in(self.host, as_postgres(argv, self.env), self.env, sql, timeout,
                      what=f"{self.name}: psql")

    def stop(self, timeout: float = 15.0, fast: bool = False) -> None:
        """Immediate shutdown (at the lab's end), or a fast one (`fast`: clients are cut off,
        committed data stay and a primary sends its standby all it has), then SIGKILL what is
        left; idempotent. The data directory stays."""
        pid = self.postmaster_pid
        if pid is None and (status := self._pid_file()):
            pid = int(status[0]) if status[0].strip().isdigit() else None
        if pid is not None and pid_alive(pid):
            children = descendants(pid)
            try:
                os.kill(pid, signal.SIGINT if fast else signal.SIGQUIT)
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
    replication: str = "async"  # REPLICATION_MODES
    fenced: Database | None = None  # an old primary after a promotion, until its fail-back

    user: str = USER
    dbname: str = DBNAME

    @property
    def port(self) -> int:
        return self.primary.port

    def conninfo(self, db: Database) -> dict:
        """psycopg.connect() keywords for the lab user to reach this server itself, whatever
        the services' addresses lead to (DIRECT_PORT; the password goes in PGPASSWORD)."""
        return {"host": db.ip, "port": DIRECT_PORT, "dbname": self.dbname, "user": self.user}

    def address(self, ip: str) -> dict:
        """psycopg.connect() keywords for a service's address (read or write address)."""
        return {"host": ip, "port": self.port, "dbname": self.dbname, "user": self.user}

    def client_env(self, run_id: str) -> dict:
        """Environment for a client process the lab starts: the marker and the password."""
        return {"PATH": PATH, "LANG": "C.UTF-8", PROCESS_MARKER: run_id,
                "PGPASSWORD": self.password}

    def servers(self) -> list[Database]:
        return [db for db in (self.standby, self.primary) if db is not None]

    def set_sync(self) -> None:
        """Synchronous replication to the standby (replication "sync"), else none. Set on the
        primary after the standby's copy was taken, so a promoted standby never waits for
        itself."""
        names = self.standby.name if self.replication == "sync" and self.standby else ""
        self.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}';\n"
                          "SELECT pg_reload_conf();\n")

    def stop(self) -> None:
        """Stop the standby, then the primary, and remove their directories; idempotent."""
        errors = []
        for db in self.servers() + ([self.fenced] if self.fenced else []):
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


def start_databases(lab, size: DataSize = DataSize(), standby: bool = True, log=print,
                    replication: str = "async") -> Databases:
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
    if replication not in REPLICATION_MODES:
        raise ValueError(f"replication must be one of {', '.join(REPLICATION_MODES)}, "
                         f"got {replication!r}")
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

    make = lambda host, role: _server(lab, host, role, base, env, PORT)  # noqa: E731
    primary = make(primaries[0], "primary")
    dbs = Databases(primary=primary, standby=make(standbys[0], "standby") if standbys else None,
                    password=password, base_dir=base, size=size, replication=replication)
    try:
        t0 = time.monotonic()
        _init_primary(primary)
        primary.start()
        _load(primary, password, size)
        log(f"primary {primary.name} ({primary.ip}:{PORT}) up with {size.patients} patients, "
            f"{size.appointments} appointments, {size.claims} claims "
            f"in {time.monotonic() - t0:.1f} s")
        if dbs.standby is not None:
            t0 = time.monotonic()
            base_backup(dbs.standby, primary, password, base)
            dbs.standby.start()
            dbs.set_sync()
            log(f"standby {dbs.standby.name} ({dbs.standby.ip}) streaming from "
                f"{primary.name} ({replication}) in {time.monotonic() - t0:.1f} s")
    except BaseException:
        dbs.stop()
        raise
    return dbs


def _server(lab, host, role: str, base: Path, env: dict, port: int) -> Database:
    """A server in `host`, which gets its second address (where the write address leads)."""
    node = lab.host(host.name)
    write_ip = service_address(host)
    run_in(node, ["ip", "addr", "replace", f"{write_ip}/32", "dev", str(node.defaultIntf())],
           env, what=f"{host.name}: the write address {write_ip}")
    # From other hosts (prerouting) and from this host itself (output: the standby's own
    # lag sampler and failover manager).
    dnat = f"ip daddr {host.ip} tcp dport {DIRECT_PORT} dnat to {host.ip}:{port}"
    run_in(node, ["nft", "-f", "-"], env, stdin=(
        f"table ip {NFT_TABLE} {{\n"
        f"  chain prerouting {{ type nat hook prerouting priority dstnat; {dnat}; }}\n"
        f"  chain output {{ type nat hook output priority -100; {dnat}; }}\n}}\n"),
        what=f"{host.name}: nft, port {DIRECT_PORT} to {port}")
    return Database(host=node, name=host.name, ip=host.ip, role=role, data_dir=base / host.name,
                    env=env, port=port, write_ip=write_ip)


def _init_primary(db: Database) -> None:
    run_in(db.host, as_postgres([str(PG_BIN / "initdb"), "-D", str(db.data_dir),
                                 "-U", "postgres", "-A", "peer",
                                 "--auth-host=scram-sha-256", "-E", "UTF8",
                                 "--locale=C.UTF-8", "--no-sync", "--no-instructions",
                                 # 1 MB WAL segments, not 16: pg_rewind copies the segments
                                 # after the fork whole, 38 MB in 3.5 s over the DC-to-DC line.
                                 "--wal-segsize=1"], db.env),
           db.env, what=f"{db.name}: initdb")
    with open(db.data_dir / "postgresql.conf", "a") as conf:
        conf.write(SERVER_CONF)
    (db.data_dir / "pg_hba.conf").write_text(HBA_CONF)


def _load(db: Database, password: str, size: DataSize) -> None:
    literal = "'" + password.replace("'", "''") + "'"
    db.psql(f"CREATE ROLE {USER} LOGIN REPLICATION PASSWORD {literal};\n"
            f"CREATE DATABASE {DBNAME} OWNER {USER};\n")
    db.psql(f"SET ROLE {USER};\n" + SCHEMA.read_text(), dbname=DBNAME,
            variables={"patients": size.patients, "appointments": size.appointments,
                       "claims": size.claims})
    # The failover manager (measurements/failover.py) promotes the standby as the lab user;
    # pg_rewind (fail-back, measurements/failback.py) reads the new primary's files as it.
    db.psql(f"GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO {USER};\n"
            + "".join(f"GRANT EXECUTE ON FUNCTION {f} TO {USER};\n" for f in REWIND_FUNCTIONS),
            dbname=DBNAME)


def write_passfile(base: Path, password: str, servers: list[Database]) -> Path:
    """The lab user's password for each server, in a file only postgres reads."""
    passfile = base / ".pgpass"
    passfile.write_text("".join(f"{d.ip}:{d.port}:*:{USER}:{password}\n" for d in servers))
    passfile.chmod(0o600)
    _chown_postgres(passfile)
    return passfile


def base_backup(standby: Database, primary: Database, password: str, base: Path) -> None:
    """pg_basebackup -R of the primary, taken from inside the standby's host. No replication
    slot: a fenced server's slot would hold WAL for ever; wal_keep_size covers the lab's
    standby falling behind."""
    passfile = write_passfile(base, password, [primary, standby])
    env = dict(standby.env, PGPASSFILE=str(passfile))
    argv = [str(PG_BIN / "pg_basebackup"), "-h", primary.ip, "-p", str(primary.port), "-U", USER,
            "-D", str(standby.data_dir), "-R", "-X", "stream", "-c", "fast",
            "--no-sync", "-w"]
    run_in(standby.host, as_postgres(argv, env), env, timeout=300,
           what=f"{standby.name}: pg_basebackup from {primary.name}")
