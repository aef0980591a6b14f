"""The cells of `lab compare`, inside a running lab: the workload, the failures, the records.

`CompareRun` starts what a comparison needs beside the lab (PostgreSQL primary and standby,
the application server, the failover manager next to the standby), then runs each scenario x
strategy cell: the database workload in a quiet window first (in the cell without failure),
then the clients' and services' probes, writers through the write address where a failure
is injected, the failure at a recorded moment, and after it, once probes and writers have
stopped, the reads of a second quiet window (measurements/dbwindows.py says why quiet);
then the repair. What the cells measure is appended to the raw files as it comes
(measurements/compare.py names them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from controllers.launcher import ROUTE_SETTLE_S
from controllers.services import READ_SERVICE, WRITE_SERVICE
from lab.files import open_append, write_json
from lab.health import HealthWatch
from lab.procs import ROOT, child_env, stop_process
from lab.runstate import PROCESS_MARKER, run_dir
from measurements import congestion, cpuparts, writers
from measurements.dbbench import placements_of
from measurements.dbwindows import AFTER_OPERATIONS, DB_OPERATIONS, DbWindows
from measurements.dbworkload import WorkerPool
from measurements.dr import Recovery
from measurements.failback import ledger_ids
from measurements.jsonlines import read_json_lines
from measurements.postgres import SMALL, start_databases
from measurements.progress import Progress
from measurements.scenarios import Scenario
from measurements.writers import id_prefix

CLIENT_INTERVAL_S = 0.025
# Every connection to PostgreSQL costs its postmaster a fork: at 0.1 s the dozen services'
# probes alone were 120 forks/s on the primary, more than it accepted on a loaded 2-core
# machine (its accept queue grew to 155 of 432, and on CI the kernel dropped SYNs).
SERVICE_INTERVAL_S = 0.25
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
APP_SERVICE = "app"


class CompareError(RuntimeError):
    """The comparison could not run; the message says where."""


class CompareRun:
    """One comparison inside a running lab: app server, databases, cells."""

    def __init__(self, lab, topo, out: Path, samples: int, progress: Progress,
                 failure_window_s: float, seed: int = 0, replication: str = "async",
                 failback: str = "restore"):
        self.lab, self.topo, self.out = lab, topo, out
        self.samples, self.progress = samples, progress
        self.seed = seed  # of the writers' random rows (a sweep's repetitions differ by it)
        self.failure_window_s = failure_window_s
        self.replication, self.failback = replication, failback
        self.server: subprocess.Popen | None = None
        self.recovery: Recovery | None = None
        self.pool: WorkerPool | None = None  # the placements' database workers
        self.db: DbWindows | None = None
        self.health: HealthWatch | None = None  # whether the emulator kept up, per cell
        self.dbs = None
        self.before_once = False  # the "before" database phase only in the normal cells
        self.db_start_s = 0.0
        self.scratch: Path | None = None
        self.env = child_env()

    def start(self) -> None:
        self.env[PROCESS_MARKER] = self.lab.state.run_id
        self.scratch = run_dir() / "compare"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        services = {s["name"]: s for s in self.lab.controller.get("topology")["services"]}
        if not {APP_SERVICE, READ_SERVICE, WRITE_SERVICE} <= set(services):
            raise CompareError("the controller has no 'app', 'db' and 'db-write' services "
                               "(the topology needs monolith/service, client and db hosts)")
        self.services = services
        t0 = time.monotonic()
        self.dbs = start_databases(self.lab, size=SMALL, log=self.progress.note,
                                   replication=self.replication)
        self.db_hosts = [db.name for db in self.dbs.servers()]  # whatever their roles become
        self.db_start_s = time.monotonic() - t0
        app = services[APP_SERVICE]
        config = {"servers": [{"name": h, "pid": self.lab.host(h).pid, "port": app["port"]}
                              for h in _endpoint_hosts(app)]}
        path = self._write_config("serve", config)
        self.server = subprocess.Popen([sys.executable, "-m", "measurements.inlab", "serve",
                                        str(path)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       cwd=str(ROOT), env=self.env, text=True)
        if self.server.stdout.readline().strip() != "ready":
            raise CompareError("the application server did not start")
        self.db_env = child_env(self.dbs.client_env(self.lab.state.run_id))
        self.pool = WorkerPool(self.lab, self.db_env, self.scratch)
        self.pool.start([p.host for p in placements_of(self.topo)])
        self.recovery = Recovery(self.dbs, self.lab.controller, self._spawn_in, self.scratch,
                                 FAILOVER, self.failback)
        self.recovery.start()
        self.health = HealthWatch(self.lab)
        self.health.start()
        db = services[READ_SERVICE]
        self.db = DbWindows(self.lab, self.dbs, {"host": db["vip"], "port": db["port"],
                                                 "dbname": self.dbs.dbname, "user": self.dbs.user},
                            self.pool, self.samples, self.progress, self.health, self.out)

    def stop(self) -> None:
        if self.health is not None:
            self.health.stop()
        if self.recovery is not None:
            self.recovery.stop()
        if self.pool is not None:
            self.pool.stop()
        stop_process(self.server)
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

    def _after_cell(self, record: dict, writes: list[dict], step) -> None:
        """The ids of the cell's writes the surviving primary holds; after a promotion (a
        false one too: it is this cell's) fail-back, keeping every acknowledged write."""
        promotion = self.recovery.take_promotion() if self.recovery else None
        if writes:
            record["ledger"] = {"survivor": self.dbs.primary.name, "held": sorted(
                ledger_ids(self.dbs.primary, id_prefix(record["scenario"], record["strategy"])))}
        if promotion is None:
            return
        record["promotion"] = promotion
        step(f"fail-back ({self.failback})")
        record["failback"] = self.recovery.fail_back({w["id"] for w in writes if w["ok"]})

    def _start_writers(self, scenario: str, strategy: str) -> dict[str, subprocess.Popen]:
        """Every service and monolith host writes through the write address, with a ledger."""
        db = self.services[WRITE_SERVICE]
        target = {"host": db["vip"], "port": db["port"], "dbname": self.dbs.dbname,
                  "user": self.dbs.user}
        hosts = [h for h in db["consumers"] if self.topo.hosts[h].role in ("service", "monolith")]
        return writers.start(self._spawn_in, self.scratch, hosts, target,
                             self.dbs.size.patients, self.seed, id_prefix(scenario, strategy))

    def _probe_gaps(self, code: int | None, raw: Path, no_data: dict) -> None:
        """A prober that failed, or whose record lacks requests it sent (its own count),
        gives its groups no data (never "no failure")."""
        found = read_json_lines(raw) if raw.exists() else []
        try:
            sent = json.loads(raw.with_suffix(".sent").read_text())
        except (OSError, ValueError):
            sent = None
        for kind in {t["kind"] for t in self._probe_targets()}:
            got = sum(1 for r in found if r["kind"] == kind)
            if code not in (0, None):
                no_data[kind] = f"the prober exited with status {code}"
            elif sent is None:
                no_data[kind] = "the prober did not say what it sent"
            elif got < sent.get(kind, 0) or not got:
                no_data[kind] = f"{got} of the {sent.get(kind, 0)} requests sent recorded"

    def _write_config(self, name: str, config: dict) -> Path:
        path = self.scratch / f"{name}.json"
        write_json(path, config)
        return path

    # -- cells ---------------------------------------------------------------------------

    def cells(self, scenarios: list[Scenario], strategies: list[str]) -> list[dict]:
        """Every scenario x strategy cell, in that order; one record each.

        The database workload before a failure is the one of the healthy network, which a
        scenario without failure measures: when the run has one, the failure cells skip it
        (their report takes it from there) and run only what the failure changes."""
        self.before_once = before_once(scenarios)
        progress = self.progress
        task = progress.task("cells: warm-up", total=len(scenarios) * len(strategies))
        records = []
        try:
            self._warm_up()
            for scenario in scenarios:
                for strategy in strategies:
                    def step(what: str) -> None:
                        progress.update(task, description=f"cells: {scenario.name} / "
                                                          f"{strategy}: {what}")
                    records.append(self._cell(scenario, strategy, step))
                    progress.update(task, advance=1)
        finally:
            progress.done(task)
        return records

    def _warm_up(self) -> None:
        """One short unrecorded probe run: ARP caches, flows and the servers' first accept."""
        proc = self._start_probe(self.scratch / "warmup.jsonl")
        time.sleep(0.5)
        self._stop_probe(proc)

    def _probe_targets(self) -> list[dict]:
        topo = self.topo
        app, db = self.services[APP_SERVICE], self.services[READ_SERVICE]
        targets = [{"kind": "client", "src": h, "pid": self.lab.host(h).pid, "dst": app["vip"],
                    "port": app["port"], "mode": "request", "interval_s": CLIENT_INTERVAL_S}
                   for h in app["consumers"]]
        targets += [{"kind": "service", "src": h, "pid": self.lab.host(h).pid, "dst": db["vip"],
                     "port": db["port"], "mode": "connect", "interval_s": SERVICE_INTERVAL_S}
                    for h in db["consumers"] if topo.hosts[h].role in ("service", "monolith")]
        return targets

    def _start_probe(self, out: Path) -> subprocess.Popen:
        out.unlink(missing_ok=True)
        out.with_suffix(".sent").unlink(missing_ok=True)
        path = self._write_config("probe", {"targets": self._probe_targets(),
                                            "timeout_s": REQUEST_TIMEOUT_S, "out": str(out),
                                            "sent": str(out.with_suffix(".sent"))})
        return subprocess.Popen([sys.executable, "-m", "measurements.inlab", "probe", str(path)],
                                stdin=subprocess.DEVNULL, stderr=open(out.with_suffix(".err"), "wb"),
                                cwd=str(ROOT), env=self.env)

    def _stop_probe(self, proc: subprocess.Popen) -> int | None:
        return stop_process(proc, timeout=REQUEST_TIMEOUT_S + 10)

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

    def _cell(self, scenario: Scenario, strategy: str, step) -> dict:
        ctl = self.lab.controller
        step("strategy")
        # Only the congestion cells route by measured delays: elsewhere the configured ones
        # stand (probes read the sub-millisecond links high: controllers.core Options).
        ctl.set_strategy(strategy, measured_delays=bool(scenario.scheduled))
        time.sleep(SETTLE_S)
        record = {"scenario": scenario.name, "strategy": strategy, "links_cut": list(scenario.links),
                  "isolated": list(scenario.isolated), "scheduled": list(scenario.scheduled),
                  "start": time.time()}
        record["choices_before"] = self._choices()
        probed = (APP_SERVICE, READ_SERVICE)  # the services the probes measure
        record["expected_rtt_ms"] = self._expected_rtts(
            {k: v for k, v in record["choices_before"].items() if k in probed})
        paths_before = ctl.get("paths")["paths"]
        if not scenario.scheduled and (not scenario.links or not self.before_once):
            step("database workload, quiet")
            self.db.measure((scenario.name, strategy), "before", [], record, DB_OPERATIONS,
                            record["expected_rtt_ms"][READ_SERVICE], server_time=True)
        raw = self.scratch / "requests.jsonl"
        drops_before = self._db_listen_drops()
        traffic = Traffic(self, raw)
        cut_off = [h.name for h in self.topo.hosts.values() if h.site in scenario.isolated]
        try:
            if scenario.scheduled:
                step("schedules playing")
                time.sleep(MIN_BEFORE_S)
                congestion.play(self.lab, scenario, record, self.scratch, self.out)
                record["choices_after"] = self._choices()
            else:
                self._failure(scenario, strategy, record, cut_off, traffic, step)
        finally:
            traffic.stop(record)
        record["end"] = time.time()
        self._probe_gaps(traffic.code, raw, traffic.no_data)
        record.update({"no_data": traffic.no_data} if traffic.no_data else {}, db_listen_drops={
            name: n - drops_before[name] for name, n in self._db_listen_drops().items()})
        self._append_requests(raw, traffic.written, scenario.name, strategy)
        if scenario.links:
            step("waiting for the paths to come back")
            record["recovered"] = self._wait_recovered(paths_before)
        self._after_cell(record, traffic.written, step)
        if scenario.links or "promotion" in record:
            time.sleep(SETTLE_S)
        record["cut_off_hosts"] = cut_off
        return self._keep(record)

    def _keep(self, record: dict) -> dict:
        """Append the cell's record; a cell during which a process of the lab died is
        marked invalid, and the comparison stops there (the network is not the lab's)."""
        if self.lab.died:
            record["invalid"] = self.lab.died
        with open_append(self.out / "cells.jsonl") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.lab.died:
            raise CompareError(f"{record['scenario']} / {record['strategy']}: {self.lab.died}; "
                               f"the cell is marked invalid and the comparison stopped")
        return record

    def _failure(self, scenario: Scenario, strategy: str, record: dict, cut_off: list[str],
                 traffic: "Traffic", step) -> None:
        """Probes (and writers) before the failure, the failure, and once they have stopped
        the reads of a quiet database window in the failed network; then the repair."""
        if scenario.links:
            traffic.writing.update(self._start_writers(scenario.name, strategy))
            step("writers starting")
            writers.wait_writing(traffic.writing, self.scratch, self.progress.note)
        time.sleep(MIN_BEFORE_S)
        if not scenario.links:
            time.sleep(self.failure_window_s / 2)
            return
        step("failure injected")
        record["failure"] = time.time()
        self.lab.emulation.set_loss(set(scenario.links), 100.0)
        try:
            time.sleep(self.failure_window_s)
            record["choices_after"] = self._choices()
            traffic.stop(record)
            step("database workload after the failure, quiet")
            rtt = self._expected_rtts({READ_SERVICE: record["choices_after"][READ_SERVICE]})
            self.db.measure((scenario.name, strategy), "after", cut_off, record,
                            AFTER_OPERATIONS, rtt[READ_SERVICE])
        finally:
            step("repair")
            self.lab.emulation.set_loss(set(scenario.links), 0.0)
            record["repair"] = time.time()

    def _db_listen_drops(self) -> dict[str, int]:
        return {name: listen_drops(self.lab.host(name).pid) for name in self.db_hosts}

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
        with open_append(self.out / "requests.jsonl") as dst:
            for rec in read_json_lines(raw) + written:
                dst.write(json.dumps({"scenario": scenario, "strategy": strategy, **rec,
                                      "site": sites.get(rec["src"])}) + "\n")


class Traffic:
    """A cell's probes and writers, with the CPU they and the lab used and how the emulator
    kept up meanwhile; stopped once: before a quiet database window, or at the cell's end."""

    def __init__(self, run: CompareRun, raw: Path):
        self.run = run
        self.health_start = run.health.mark()
        self.cpu_start, self.t0 = cpuparts.snapshot(), time.monotonic()
        self.prober = run._start_probe(raw)
        self.writing: dict[str, subprocess.Popen] = {}  # host -> its writer (failure cells)
        self.code: int | None = None
        self.written: list[dict] = []
        self.no_data: dict = {}
        self.stopped = False

    def stop(self, record: dict) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:  # before the probes and writers stop: a process's CPU is read while it lives
            record["cpu"] = cpuparts.used(self.cpu_start, cpuparts.snapshot(),
                                          time.monotonic() - self.t0)
        finally:
            try:
                self.code = self.run._stop_probe(self.prober)
            finally:
                self.written = writers.collect(self.writing, self.run.scratch, self.no_data)
                record["health"] = self.run.health.block(self.health_start,
                                                         self.run.health.mark())


def before_once(scenarios: list[Scenario]) -> bool:
    """Whether the run measures the healthy network's database workload once per strategy,
    in a scenario without failure or schedule (the failure cells then skip it)."""
    return any(not s.links and not s.scheduled for s in scenarios)


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
