"""`lab compare`: routing strategies side by side, under normal operation and under failures.

The lab comes up once (with the PostgreSQL primary and standby and a tiny application
server on every app endpoint); strategies change at run time over the controller's REST API
and failures are injected and repaired between cells. For each scenario x strategy cell:

- clients: every clinic client opens a new TCP connection to the "app" service's virtual
  address every CLIENT_INTERVAL_S and sends one request; the endpoint the controller chose
  answers with its host name. This continuous probe is both the client workload (latency =
  connect + request + reply) and the outage measure: a request unanswered within
  REQUEST_TIMEOUT_S is a failure, so an outage is seen from the clients' side, never assumed;
- services: every service and monolith host opens a TCP connection to the "db" service's
  virtual address every SERVICE_INTERVAL_S (connect only): the outage seen by services;
- database: the dbbench worker (connect, indexed read, ORM page) from every placement to the
  db virtual address, before the failure and again after the controller moved the traffic;
- failure (not in "normal"): at a recorded moment, while both probes run, the scenario's
  links drop 100 % of their frames in the link emulation (a silent cut: carrier stays up,
  only the controller's own probes notice); repaired at the end of the cell.

Raw files in the output directory (`lab report DIR` recomputes everything from them):
    requests.jsonl  one line per probe request: scenario, strategy, kind (client|service),
                    src, site, start, latency_ms, ok, served_by, error
    db.csv          one row per database request: scenario, strategy, phase, placement,
                    site, kind, operation, start_time, latency_ms, ok
    cells.jsonl     one line per cell: times (start, failure, repair, end), links cut,
                    hosts cut off, endpoint choices before and after the failure, connection
                    attempts the database hosts' kernels dropped (accept queue full)
    setup.json      topology summary (every delay and its source), link backend, datapath,
                    calibration, versions of the tools, settings, timings
    controller-events.log  what the lab's controller logged during the run (strategy changes,
                    ports, links found silent and back): the network's side of a failure
    <topology>.yaml the topology file the run used

    python -m measurements.compare serve|probe CONFIG.json   (the in-lab helpers, internal)
"""

from __future__ import annotations

import csv
import ctypes
import errno
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from controllers.launcher import ROUTE_SETTLE_S
from measurements.jsonlines import read_json_lines

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("hops", "latency", "geo", "primary-standby")
SCENARIOS = ("normal", "dc-failure", "lz-cut", "service-link-cut")
DEFAULT_SAMPLES = 10  # database requests per operation, placement and phase
DB_OPERATIONS = ("connect", "read", "page")
PAGE_QUERIES = 5
CLIENT_INTERVAL_S = 0.025
# Every connection to PostgreSQL costs its postmaster a fork: at 0.1 s the dozen services'
# probes alone were 120 forks/s on the primary, more than it accepted on a loaded 2-core
# machine (its accept queue grew to 155 of 432, and on CI the kernel dropped SYNs).
SERVICE_INTERVAL_S = 0.25
# In the cells with a failure, each service and monolith host writes through the db VIP this
# often (not in the others: a dozen more clients would load the 2-core machine all along).
WRITER_INTERVAL_S = 0.25
# The failover manager (measurements/failover.py) in the standby's host: a check of the
# primary every 0.1 s, 0.5 s to answer, promotion after 3 misses in a row. The standby's
# round trip to the primary is 60 ms in the default topology, but the database workload
# loads both cores and stretches it: up to 0.25 s measured with three busy processes beside
# a run, and a 0.2 s timeout promoted the standby of a primary that was up (CI, 2026-11-27).
FAILOVER = {"interval_s": 0.1, "timeout_s": 0.5, "misses": 3}
REQUEST_TIMEOUT_S = 1.0
# Probes keep running this long after a failure is injected: detection (about 1 s), the
# promotion (3 checks of 0.5 s), then the writers' reconnect (up to 3 s: dbbench_worker).
FAILURE_WINDOW_S = 5.0
SETTLE_S = ROUTE_SETTLE_S  # after a strategy change or a repair
MIN_BEFORE_S = 1.0  # probes run at least this long before a failure
APP_SERVICE, DB_SERVICE = "app", "db"
DB_FIELDS = ("scenario", "strategy", "phase", "placement", "site", "kind", "operation",
             "start_time", "latency_ms", "ok")
CLONE_NEWNET = 0x40000000


class CompareError(RuntimeError):
    """The comparison could not run; the message says where."""


@dataclass(frozen=True)
class Scenario:
    """A failure: the links it cuts and the sites it leaves with no link at all."""

    name: str
    description: str
    links: tuple[int, ...] = ()  # link indices (1-based, file order)
    isolated: tuple[str, ...] = ()  # sites whose every link is cut


def scenarios_of(topology, names=SCENARIOS) -> list[Scenario]:
    """The named scenarios on this topology (the primary's DC, the first LZ and Outpost)."""
    topo = topology
    primary = topo.hosts_with_role("db-primary")
    dc = topo.hosts[primary[0].name].site if primary else next(
        (s.name for s in topo.sites.values() if s.kind == "datacenter"), None)
    lz = next((s.name for s in topo.sites.values() if s.kind == "localzone"), None)
    outpost = next((s for s in topo.sites.values() if s.kind == "outpost"), None)

    def links_of(site):
        return tuple(l.index for l in topo.links if site in (l.a, l.b))

    found = []
    for name in names:
        if name == "normal":
            found.append(Scenario(name, "no failure"))
        elif name == "dc-failure" and dc:
            found.append(Scenario(name, f"data center {dc} (the database primary's) cut off "
                                  f"silently: all its links drop every frame", links_of(dc), (dc,)))
        elif name == "lz-cut" and lz:
            found.append(Scenario(name, f"Local Zone {lz} cut off: all its links drop every "
                                  f"frame", links_of(lz), (lz,)))
        elif name == "service-link-cut" and outpost and outpost.region:
            link = topo.link_between(outpost.name, outpost.region)
            found.append(Scenario(name, f"Outpost {outpost.name}'s service link to "
                                  f"{outpost.region} cut", (link.index,)))
        elif name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
        else:
            raise ValueError(f"scenario {name!r} needs a site this topology does not have")
    return found


# -- in-lab helpers: one process each, sockets opened inside the hosts' namespaces ----------

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Namespaces:
    """Makes sockets inside other network namespaces (a socket stays where it was made)."""

    def __init__(self):
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.fds: dict[int, int] = {}

    def socket(self, pid: int) -> socket.socket:
        if pid not in self.fds:
            self.fds[pid] = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        _setns(self.fds[pid])
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(self.home)


class _Stop(Exception):
    pass


def _raise_stop(_signum, _frame):
    raise _Stop()


def serve(config: dict) -> None:
    """The application: on every endpoint host, accept, read a line, answer the host's name."""
    spaces, sel = Namespaces(), selectors.DefaultSelector()
    for server in config["servers"]:
        sock = spaces.socket(server["pid"])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", server["port"]))
        sock.listen(512)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, ("listen", server["name"]))
    print("ready", flush=True)
    try:
        while True:
            for key, _ in sel.select():
                what, name = key.data
                if what == "listen":
                    try:
                        conn, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, ("conn", name))
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(256)
                    if data:
                        conn.send(f"{name}\n".encode())
                except OSError:
                    pass
                sel.unregister(conn)
                conn.close()
    except _Stop:
        pass


@dataclass
class _Request:
    target: dict
    sock: socket.socket
    start: float  # time.time() just before connect
    t0: float  # time.perf_counter() just before connect
    connected: bool = False
    reply: bytes = b""


def probe(config: dict, out) -> None:
    """Every target: a new TCP connection every `interval_s` until SIGTERM; one line each.

    mode "request": connect, send a line, read the answer (the serving host's name) until
    the server closes; mode "connect": the handshake only. A request still not done when
    the prober looks after `timeout_s` (or refused, or reset) is written as failed. On
    SIGTERM it sends no more and lets the requests under way finish or time out: cutting
    them short would count the measurement's own end as failures.
    """
    stop_requested = []
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop_requested.append(True))
    spaces, sel = Namespaces(), selectors.DefaultSelector()
    timeout = config["timeout_s"]
    targets = config["targets"]
    now = time.monotonic()
    # Spread the first sends over the interval, so the clients do not move in lockstep.
    next_send = [now + i * t["interval_s"] / max(1, len(targets)) for i, t in enumerate(targets)]
    pending: dict[int, _Request] = {}

    def finish(req: _Request, ok: bool, error: str = "") -> None:
        latency = (time.perf_counter() - req.t0) * 1000
        try:
            sel.unregister(req.sock)
        except (KeyError, ValueError):
            pass
        if req.target["mode"] == "connect":
            req.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        req.sock.close()
        pending.pop(id(req), None)
        served = req.reply.decode(errors="replace").strip() if ok else ""
        out.write(json.dumps({"kind": req.target["kind"], "src": req.target["src"],
                              "start": round(req.start, 6),
                              "latency_ms": round(latency, 4) if ok else None, "ok": ok,
                              "served_by": served or None, "error": error or None}) + "\n")

    def handle(events) -> None:
        for key, _mask in events:
            req = key.data
            if not req.connected:
                err = req.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(req, False, os.strerror(err))
                    continue
                req.connected = True
                if req.target["mode"] == "connect":
                    finish(req, True)
                    continue
                try:
                    req.sock.send(b"GET\n")
                except OSError as exc:
                    finish(req, False, exc.strerror or str(exc))
                    continue
                sel.modify(req.sock, selectors.EVENT_READ, req)
                continue
            try:  # the answer and the server's close, as far as they came
                while data := req.sock.recv(256):
                    req.reply += data
            except BlockingIOError:
                continue
            except OSError as exc:
                finish(req, False, exc.strerror or str(exc))
                continue
            finish(req, bool(req.reply), "" if req.reply else "closed without answer")

    while pending or not stop_requested:
        now = time.monotonic()
        if not stop_requested:
            for i, target in enumerate(targets):
                if now < next_send[i]:
                    continue
                next_send[i] = max(next_send[i] + target["interval_s"], now)
                sock = spaces.socket(target["pid"])
                sock.setblocking(False)
                req = _Request(target, sock, time.time(), time.perf_counter())
                err = sock.connect_ex((target["dst"], target["port"]))
                pending[id(req)] = req
                if err not in (0, errno.EINPROGRESS):
                    finish(req, False, os.strerror(err))
                    continue
                sel.register(sock, selectors.EVENT_WRITE, req)
        wait = min([n - time.monotonic() for n in next_send] + [0.01])
        handle(sel.select(max(0.0, wait)))
        overdue = [r for r in pending.values() if time.perf_counter() - r.t0 > timeout]
        if overdue:
            # Look once more without waiting first: answers that came while this process
            # had no CPU (a loaded machine) are answers, not timeouts.
            handle(sel.select(0))
            for req in overdue:
                if id(req) in pending:
                    finish(req, False, "timeout")
        out.flush()


def _helper_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("serve", "probe"):
        print("usage: python -m measurements.compare serve|probe CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[1]).read_text())
    if argv[0] == "serve":
        signal.signal(signal.SIGTERM, _raise_stop)
        serve(config)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it with SIGTERM
        with open(config["out"], "a") as out:
            probe(config, out)
    return 0


# -- the run --------------------------------------------------------------------------------

def tool_versions() -> dict:
    """Versions of the tools the lab runs on ("missing" where one is not installed)."""
    from measurements.postgres import PG_BIN

    def first_line(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "missing"

    try:
        from importlib.metadata import version
        osken = version("os-ken")
    except Exception:
        osken = "missing"
    try:
        import mininet.net
        mininet_version = mininet.net.VERSION
    except Exception:
        mininet_version = "missing"
    return {"openvswitch": first_line(["ovs-vswitchd", "--version"]),
            "mininet": mininet_version,
            "postgresql": first_line([str(PG_BIN / "postgres"), "--version"]),
            "os-ken": osken, "kernel": platform.release(),
            "python": platform.python_version(), "os": first_line(["cat", "/etc/debian_version"])}


def topology_summary(topo) -> dict:
    return {"name": topo.name, "description": topo.description,
            "sites": [{"name": s.name, "kind": s.kind, "lat": s.lat, "lon": s.lon,
                       "label": s.label} for s in topo.sites.values()],
            "links": [{"index": l.index, "a": l.a, "b": l.b, "class": l.link_class,
                       "delay_ms": round(l.delay_ms, 4), "source": l.delay_source,
                       "distance_km": round(l.distance_km, 1),
                       "bandwidth_mbit": l.bandwidth_mbit} for l in topo.links],
            "hosts": [{"name": h.name, "site": h.site, "role": h.role, "ip": h.ip}
                      for h in topo.hosts.values()]}


@dataclass
class CompareResult:
    out_dir: Path
    seconds: float
    cells: list[dict] = field(default_factory=list)


def run_compare(topology, strategies=STRATEGIES, scenarios=SCENARIOS,
                samples: int = DEFAULT_SAMPLES, out_dir: str | Path | None = None,
                console: Console | None = None, lab_factory=None, report: bool = True,
                failure_window_s: float = FAILURE_WINDOW_S, seed: int = 0) -> CompareResult:
    """Bring the lab up once, run every scenario x strategy cell, write the raw files.

    samples: database requests per operation, placement and phase (the probes' counts follow
    from their intervals and the cell's length). seed: of the writers' random rows (a
    sweep's repetitions differ by it). Writes the report at the end unless `report` is
    false. Teardown always runs.
    """
    from topologies.model import Topology, load

    if samples < 1:
        raise ValueError("samples must be at least 1")
    from controllers.strategies import STRATEGIES as KNOWN
    unknown = [s for s in strategies if s not in KNOWN]
    if unknown or not strategies:
        raise ValueError(f"unknown strategy {unknown[0] if unknown else '(none)'!r} "
                         f"(choose from {', '.join(KNOWN)})")
    topo = topology if isinstance(topology, Topology) else load(topology)
    chosen = scenarios_of(topo, scenarios)
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    out = Path(out_dir or f"results/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("requests.jsonl", "db.csv", "cells.jsonl"):
        (out / name).unlink(missing_ok=True)
    if topo.source and Path(topo.source).is_file():
        shutil.copy(topo.source, out / Path(topo.source).name)
    if lab_factory is None:
        from lab.network import Lab as lab_factory
    setup = {"topology": topology_summary(topo), "topology_file": Path(topo.source).name,
             "versions": tool_versions(), "strategies": list(strategies),
             "scenarios": [{"name": s.name, "description": s.description, "links": list(s.links),
                            "isolated": list(s.isolated)} for s in chosen],
             "settings": {"samples": samples, "db_operations": list(DB_OPERATIONS),
                          "page_queries": PAGE_QUERIES, "client_interval_s": CLIENT_INTERVAL_S,
                          "service_interval_s": SERVICE_INTERVAL_S,
                          "writer_interval_s": WRITER_INTERVAL_S, "failover": FAILOVER,
                          "request_timeout_s": REQUEST_TIMEOUT_S,
                          "failure_window_s": failure_window_s, "seed": seed}}
    t_start = time.monotonic()
    result = CompareResult(out, 0.0)
    lab = lab_factory(topo, strategy=strategies[0], log=console.print)
    with lab:
        setup["links_backend"] = lab.backend
        setup["datapath"] = lab.caps.datapath
        setup["controller"] = lab.controller_kind
        setup["calibration"] = lab.calibration.as_dict() if lab.calibration else None
        setup["bring_up_s"] = round(lab.timing.up_s, 3)
        run = _Run(lab, topo, out, samples, console, failure_window_s, seed)
        log = getattr(lab.controller, "log_path", None)  # None: a controller of the user's
        log_start = log.stat().st_size if log and log.exists() else 0
        try:
            run.start()
            setup["databases_s"] = round(run.db_start_s, 3)
            _write_json(out / "setup.json", setup)
            result.cells = run.cells(chosen, list(strategies))
        finally:
            run.stop()
            if log and log.exists():
                _keep_controller_events(log, log_start, out / "controller-events.log")
    setup["teardown_s"] = round(lab.timing.teardown_s, 3)
    result.seconds = time.monotonic() - t_start
    setup["total_s"] = round(result.seconds, 3)
    _write_json(out / "setup.json", setup)
    if report:
        from measurements.report import print_main_table, write_report
        results = write_report(out)
        print_main_table(console, results)
    console.print(f"raw samples and report in {out}/; {result.seconds:.0f} s in all")
    return result


class _Run:
    """One comparison inside a running lab: app server, databases, cells."""

    def __init__(self, lab, topo, out: Path, samples: int, console: Console,
                 failure_window_s: float, seed: int = 0):
        self.lab, self.topo, self.out = lab, topo, out
        self.samples, self.console = samples, console
        self.failure_window_s, self.seed = failure_window_s, seed
        self.server: subprocess.Popen | None = None
        self.failover: subprocess.Popen | None = None
        self.dbs = None
        self.db_start_s = 0.0
        self.scratch: Path | None = None
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))

    def start(self) -> None:
        from lab.runstate import PROCESS_MARKER, run_dir
        from measurements.postgres import PORT, SMALL, start_databases

        self.env[PROCESS_MARKER] = self.lab.state.run_id
        self.scratch = run_dir() / "compare"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        services = {s["name"]: s for s in self.lab.controller.get("topology")["services"]}
        if APP_SERVICE not in services or DB_SERVICE not in services:
            raise CompareError("the controller has no 'app' and 'db' services "
                               "(the topology needs monolith/service, client and db hosts)")
        self.services = services
        t0 = time.monotonic()
        self.dbs = start_databases(self.lab, size=SMALL, port=PORT, log=self.console.print)
        self.db_start_s = time.monotonic() - t0
        app = services[APP_SERVICE]
        config = {"servers": [{"name": h, "pid": self.lab.host(h).pid, "port": app["port"]}
                              for h in _endpoint_hosts(app)]}
        path = self._write_config("serve", config)
        self.server = subprocess.Popen([sys.executable, "-m", "measurements.compare", "serve",
                                        str(path)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       cwd=str(ROOT), env=self.env, text=True)
        if self.server.stdout.readline().strip() != "ready":
            raise CompareError("the application server did not start")
        self.db_env = {**self.dbs.client_env(self.lab.state.run_id), "PYTHONPATH": str(ROOT)}
        self._start_failover()

    def stop(self) -> None:
        for proc in (self.server, self.failover):
            _terminate(proc)
        if self.dbs is not None:
            self.dbs.stop()

    def _spawn_in(self, host: str, module: str, name: str, config: dict) -> subprocess.Popen:
        """python -m module CONFIG inside a lab host, with the databases' client env."""
        path = self._write_config(name, config)
        Path(config["out"]).unlink(missing_ok=True)
        with open(path.with_suffix(".err"), "wb") as err:
            return self.lab.host(host).popen([sys.executable, "-m", module, str(path)],
                                             stdin=subprocess.DEVNULL, stdout=err,
                                             stderr=subprocess.STDOUT, cwd=str(ROOT),
                                             env=self.db_env)

    def _start_failover(self) -> None:
        """The failover manager next to the standby; waits until it watches."""
        standby = self.dbs.standby
        if standby is None:
            return
        out = self.scratch / "failover.jsonl"
        self.failover = self._spawn_in(standby.name, "measurements.failover", "failover", {
            **FAILOVER, "primary": {"host": self.dbs.primary.ip, "port": self.dbs.port},
            "standby": self.dbs.conninfo(standby), "out": str(out)})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.failover.poll() is None:
            if read_json_lines(out, "ready"):
                return
            time.sleep(0.05)
        raise CompareError(f"{standby.name}: the failover manager did not start: "
                           f"{out.with_suffix('.err').read_text(errors='replace')[-500:]}")

    def _after_promotion(self, record: dict, step) -> None:
        """If the standby was promoted: note when, then make it a standby of the primary again."""
        if self.failover is None:
            return
        promoted = read_json_lines(self.scratch / "failover.jsonl", "promoted")
        if not promoted:
            return
        record["promotion"] = promoted[0]
        step("re-seeding the standby from the primary")
        _terminate(self.failover)
        t0 = time.monotonic()
        self.dbs.reseed_standby()
        record["reseed_s"] = round(time.monotonic() - t0, 3)
        self._start_failover()

    def _start_writers(self) -> dict[str, subprocess.Popen]:
        """Every service and monolith host writes through the db service's address."""
        db = self.services[DB_SERVICE]
        target = {"host": db["vip"], "port": db["port"], "dbname": self.dbs.dbname,
                  "user": self.dbs.user}
        return {h: self._spawn_in(h, "measurements.dbbench_worker", f"writer-{h}", {
                    "mode": "writer", "primary": target, "patients": self.dbs.size.patients,
                    "interval_s": WRITER_INTERVAL_S, "seed": self.seed * 1000 + i,
                    "out": str(self.scratch / f"writer-{h}.jsonl")})
                for i, h in enumerate(db["consumers"])
                if self.topo.hosts[h].role in ("service", "monolith")}

    def _writer_requests(self, writers: dict[str, subprocess.Popen]) -> list[dict]:
        """Stop the writers; their writes as probe records of kind "writer"."""
        for proc in writers.values():
            _terminate(proc)
        return [{"kind": "writer", "src": host, "start": r["start"],
                 "latency_ms": r["latency_ms"] if r["ok"] else None, "ok": r["ok"],
                 "served_by": None, "error": r.get("error")}
                for host in writers
                for r in read_json_lines(self.scratch / f"writer-{host}.jsonl", "sample")]

    def _write_config(self, name: str, config: dict) -> Path:
        path = self.scratch / f"{name}.json"
        _write_json(path, config)
        return path

    # -- cells ---------------------------------------------------------------------------

    def cells(self, scenarios: list[Scenario], strategies: list[str]) -> list[dict]:
        total = len(scenarios) * len(strategies)
        progress = Progress(TextColumn("{task.description:<58}"), BarColumn(),
                            TextColumn("{task.completed:.0f}/{task.total:.0f} cells"),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            console=self.console)
        records = []
        with progress:
            task = progress.add_task("warm-up", total=total)
            self._warm_up()
            for scenario in scenarios:
                for strategy in strategies:
                    def step(what: str) -> None:
                        progress.update(task, description=f"{scenario.name} / {strategy}: {what}")
                    records.append(self._cell(scenario, strategy, step, progress))
                    progress.advance(task)
        return records

    def _warm_up(self) -> None:
        """One short unrecorded probe run: ARP caches, flows and the servers' first accept."""
        proc = self._start_probe(self.scratch / "warmup.jsonl")
        time.sleep(0.5)
        self._stop_probe(proc)

    def _probe_targets(self) -> list[dict]:
        topo = self.topo
        app, db = self.services[APP_SERVICE], self.services[DB_SERVICE]
        targets = [{"kind": "client", "src": h, "pid": self.lab.host(h).pid, "dst": app["vip"],
                    "port": app["port"], "mode": "request", "interval_s": CLIENT_INTERVAL_S}
                   for h in app["consumers"]]
        targets += [{"kind": "service", "src": h, "pid": self.lab.host(h).pid, "dst": db["vip"],
                     "port": db["port"], "mode": "connect", "interval_s": SERVICE_INTERVAL_S}
                    for h in db["consumers"] if topo.hosts[h].role in ("service", "monolith")]
        return targets

    def _start_probe(self, out: Path) -> subprocess.Popen:
        out.unlink(missing_ok=True)
        path = self._write_config("probe", {"targets": self._probe_targets(),
                                            "timeout_s": REQUEST_TIMEOUT_S, "out": str(out)})
        return subprocess.Popen([sys.executable, "-m", "measurements.compare", "probe", str(path)],
                                stdin=subprocess.DEVNULL, stderr=open(out.with_suffix(".err"), "wb"),
                                cwd=str(ROOT), env=self.env)

    def _stop_probe(self, proc: subprocess.Popen) -> None:
        _terminate(proc, timeout=REQUEST_TIMEOUT_S + 10)

    def _expected_rtts(self, choices: dict) -> dict:
        """The model's round trip from each consumer to its chosen endpoint, along the path
        the controller installed: service -> consumer -> ms (None: no path)."""
        delays = {(p["src"], p["dst"]): p["delay_ms"]
                  for p in self.lab.controller.get("paths")["paths"]}
        return {svc: {consumer: (round(2 * delays[(consumer, endpoint)], 4)
                                 if endpoint and delays.get((consumer, endpoint)) is not None
                                 else None)
                      for consumer, endpoint in chosen.items()}
                for svc, chosen in choices.items()}

    def _choices(self) -> dict:
        return {s["name"]: s["choices"] for s in self.lab.controller.get("endpoints")["services"]}

    def _cell(self, scenario: Scenario, strategy: str, step, progress) -> dict:
        ctl = self.lab.controller
        step("strategy")
        ctl.set_strategy(strategy)
        time.sleep(SETTLE_S)
        record = {"scenario": scenario.name, "strategy": strategy, "links_cut": list(scenario.links),
                  "isolated": list(scenario.isolated), "start": time.time()}
        record["choices_before"] = self._choices()
        record["expected_rtt_ms"] = self._expected_rtts(record["choices_before"])
        paths_before = ctl.get("paths")["paths"]
        raw = self.scratch / "requests.jsonl"
        drops_before = self._db_listen_drops()
        prober = self._start_probe(raw)
        writers: dict[str, subprocess.Popen] = {}
        cut_off = [h.name for h in self.topo.hosts.values() if h.site in scenario.isolated]
        db_rows: list[list] = []
        try:
            if scenario.links:
                writers = self._start_writers()
            step("database workload")
            t0 = time.monotonic()
            db_rows += self._db_phase(scenario, strategy, "before", [], progress, record)
            time.sleep(max(0.0, MIN_BEFORE_S - (time.monotonic() - t0)))
            if scenario.links:
                step("failure injected")
                record["failure"] = time.time()
                self.lab.emulation.set_loss(set(scenario.links), 100.0)
                try:
                    time.sleep(self.failure_window_s)
                    record["choices_after"] = self._choices()
                    step("database workload after the failure")
                    db_rows += self._db_phase(scenario, strategy, "after", cut_off, progress,
                                              record)
                finally:
                    step("repair")
                    self.lab.emulation.set_loss(set(scenario.links), 0.0)
                    record["repair"] = time.time()
            else:
                time.sleep(self.failure_window_s / 2)
        finally:
            self._stop_probe(prober)
            written = self._writer_requests(writers)
        record["end"] = time.time()
        record["db_listen_drops"] = {name: n - drops_before[name]
                                     for name, n in self._db_listen_drops().items()}
        self._append_requests(raw, written, scenario.name, strategy)
        self._append_db(db_rows)
        if scenario.links:
            step("waiting for the paths to come back")
            record["recovered"] = self._wait_recovered(paths_before)
        self._after_promotion(record, step)  # in any cell: a false failover is this cell's
        if scenario.links or "promotion" in record:
            time.sleep(SETTLE_S)
        record["cut_off_hosts"] = cut_off
        with open(self.out / "cells.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def _db_listen_drops(self) -> dict[str, int]:
        return {db.name: listen_drops(self.lab.host(db.name).pid) for db in self.dbs.servers()}

    def _wait_recovered(self, paths_before: list, timeout: float = 15.0) -> bool:
        want = {(p["src"], p["dst"]): p["path"] for p in paths_before}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = {(p["src"], p["dst"]): p["path"] for p in self.lab.controller.get("paths")["paths"]}
            if now == want:
                return True
            time.sleep(0.1)
        return False

    def _append_requests(self, raw: Path, written: list[dict], scenario: str,
                         strategy: str) -> None:
        sites = {h.name: h.site for h in self.topo.hosts.values()}
        with open(self.out / "requests.jsonl", "a") as dst:
            for rec in read_json_lines(raw) + written:
                dst.write(json.dumps({"scenario": scenario, "strategy": strategy, **rec,
                                      "site": sites.get(rec["src"])}) + "\n")

    def _append_db(self, rows: list[list]) -> None:
        path = self.out / "db.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(DB_FIELDS)
            writer.writerows(rows)

    def _db_phase(self, scenario: Scenario, strategy: str, phase: str, skip: list[str],
                  progress, record: dict) -> list[list]:
        """The dbbench workload from every placement not cut off, all at once, via the VIP.

        Its start and end go in the cell's record ("db_phases"): it loads both cores, so
        the report leaves the probes' latencies of that time out (not their failures)."""
        record.setdefault("db_phases", []).append([time.time(), None])
        from measurements.dbbench import DbBenchError, placements_of

        places = [p for p in placements_of(self.topo) if p.host not in skip]
        bench = _VipBench(self.lab, self.dbs, self.samples, self.services[DB_SERVICE],
                          self.console)
        task = progress.add_task(f"  database {phase}", total=len(places) * len(DB_OPERATIONS)
                                 * self.samples)
        try:
            found = bench._workloads(places, {p.host: list(DB_OPERATIONS) for p in places},
                                     {p.host: 1 for p in places}, progress, task)
        except DbBenchError as exc:
            self.console.print(f"[yellow]{scenario.name} / {strategy} ({phase}): {exc}")
            found = {}
        finally:
            progress.remove_task(task)
            record["db_phases"][-1][1] = time.time()
        where = {p.host: p for p in places}
        return [[scenario.name, strategy, phase, s.placement, where[s.placement].site,
                 where[s.placement].kind, s.operation, f"{s.start_time:.6f}",
                 f"{s.latency_ms:.4f}", int(s.ok)]
                for samples in found.values() for s in samples]


def listen_drops(pid: int) -> int:
    """Connection attempts dropped in the network namespace of `pid` because a listener's
    accept queue was full (TcpExt ListenDrops): a server too slow to accept, not the network."""
    lines = Path(f"/proc/{pid}/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:]))["ListenDrops"])
    raise RuntimeError(f"/proc/{pid}/net/netstat has no TcpExt counters")


def _endpoint_hosts(service: dict) -> list[str]:
    return [e["host"] if isinstance(e, dict) else e for e in service["endpoints"]]


def _vip_bench_class():
    from measurements.dbbench import _Bench

    class VipBench(_Bench):
        """dbbench's workload runner, aimed at the db service's virtual address."""

        def __init__(self, lab, dbs, samples, db_service, console):
            super().__init__(lab, dbs, samples, PAGE_QUERIES, None, 1, 0, console)
            self.vip = {"host": db_service["vip"], "port": db_service["port"],
                        "dbname": dbs.dbname, "user": dbs.user}

        def _config(self, name: str, **extra) -> Path:
            return super()._config(name, **{**extra, "primary": self.vip, "replica": None})

    return VipBench


def _VipBench(*args):
    return _vip_bench_class()(*args)


def _terminate(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _keep_controller_events(log: Path, start: int, dest: Path) -> None:
    """The lab controller's own lines (not os-ken's, not debug) from byte `start` of its log."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    dest.write_text("".join(line + "\n" for line in lines
                            if " HybridLabApp " in line and " DEBUG " not in line))


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
