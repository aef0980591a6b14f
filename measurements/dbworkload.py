"""The database workload of `lab bench db` and `lab compare`, run inside a lab's hosts.

Each placement's host runs measurements/dbbench_worker.py with its share of the operations;
the phases (`plan_phases`) keep the figures that must be precise undisturbed. A sampler on
the standby's host records how long each write takes to be replayed there.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from controllers.services import READ_SERVICE
from lab.files import write_json
from lab.icmpprobe import measure
from lab.procs import ROOT, child_env, stop_process
from measurements.dbbench_worker import OPERATIONS
from measurements.dbresults import LAG_OPERATION, RTT_OPERATION, Placement, Sample, p50
from measurements.jsonlines import LineReader
from measurements.postgres import Database, Databases
from measurements.progress import SILENT, Progress
from measurements.stats import percentile

WORKER_TIMEOUT_S = 1800
NEAR_RTT_MS = 5.0  # placements up to this RTT to the primary run their primary work alone
SOLO_READ_RTT_MS = 20.0  # ... and up to this one their single query (5 % of it is < 1 ms)
STREAM_TARGET_S = 25.0  # work run at once gets enough streams to finish in about this
READ_TARGET_S = 5.0  # the same for the far placements' single-query phase
MAX_STREAMS = 8
PING_IDLE_MS = 0.3  # a ping waits this long after the previous answer, as a client would
# Network round trips per sample of each operation (a page: one per query of its N).
ADDRESS_OPERATIONS = ("address_read", "address_write")
ROUND_TRIPS = {"read": 1, "replica_read": 1, "address_read": 1, "write": 4, "address_write": 4,
               "connect": 4}
LAG_FLAG_PREFIX = "lag-active-"


class DbBenchError(RuntimeError):
    """The benchmark could not run; the message says where."""


@dataclass(frozen=True)
class Phase:
    """Work run at once: host -> its operations; target_s None: one stream, run alone."""

    title: str
    work: dict[str, list[str]]
    target_s: float | None


def plan_phases(work: dict[str, list[str]], rtt_ms: dict[str, float],
                read_rtt_ms: dict[str, float] | None = None) -> list[Phase]:
    """The order of the benchmark's work (host -> its operations), so that every figure is
    measured undisturbed where it must be precise and the run still fits in a few minutes.

    A near placement (RTT to the primary up to NEAR_RTT_MS) is CPU-sensitive: its work on the
    primary runs alone, one placement at a time. So does the single query of a placement up
    to SOLO_READ_RTT_MS, where 5 % of the RTT is under a millisecond. The other single
    queries then run at once: reads cost the server little and a far path allows more. The
    rest (the far placements' work, and every replica read: a far path for the near
    placements) runs at once, split over parallel streams, each request still timed on its
    own connection. read_rtt_ms: the RTT to the server the read address leads each host to;
    where given, a read through it runs alone up to SOLO_READ_RTT_MS whatever the primary's
    distance (a DC2 service reads its DC2 standby 1.3 ms away: measured among the far
    placements' streams, it read 0.3-0.4 ms high).
    """
    alone: list[Phase] = []
    far_reads: dict[str, list[str]] = {}
    rest: dict[str, list[str]] = {}
    for host, ops in work.items():
        rtt = rtt_ms[host]
        if rtt <= NEAR_RTT_MS:
            own = [op for op in ops if op != "replica_read"]
        elif rtt <= SOLO_READ_RTT_MS:
            own = ["read"]
        else:
            own = []
        if read_rtt_ms is not None and host in read_rtt_ms and "address_read" in ops:
            alone_read = read_rtt_ms[host] <= SOLO_READ_RTT_MS
            own = [op for op in ops if (op in own and op != "address_read")
                   or (op == "address_read" and alone_read)]
        if own:
            alone.append(Phase(f"{host} alone", {host: own}, None))
        if "read" in ops and "read" not in own:
            far_reads[host] = ["read"]
        left = [op for op in ops if op not in own and op != "read"]
        if left:
            rest[host] = left
    phases = alone
    if far_reads:
        phases.append(Phase(f"{len(far_reads)} far placements: reads", far_reads,
                            READ_TARGET_S))
    if rest:
        phases.append(Phase(f"{len(rest)} placements at once", rest, STREAM_TARGET_S))
    return phases


class PooledJob:
    """A job given to a pool worker, polled like the process a job otherwise has."""

    def __init__(self, proc: subprocess.Popen, config: Path, pool_err: Path):
        self.proc, self.config, self.pool_err = proc, config, pool_err
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            status = self.config.with_suffix(".status")  # written whole (a rename)
            if status.exists():
                self.returncode = int(status.read_text())
            elif self.proc.poll() is not None:  # the worker itself died: its error is the job's
                self.returncode = self.proc.returncode or 1
                tail = self.pool_err.read_text(errors="replace")[-800:] \
                    if self.pool_err.exists() else ""
                self.config.with_suffix(".err").write_text(
                    f"the pool's worker exited ({self.proc.returncode}): {tail}")
        return self.returncode

    def kill(self) -> None:
        self.proc.kill()

    def wait(self) -> int | None:
        self.proc.wait()
        return self.poll()


class WorkerPool:
    """One long-lived dbbench worker (`--serve`) per host, for a whole comparison.

    A phase of `lab compare` used to start a dozen Python processes and wait 2-4 s for them
    on the 2-core machine before its first request: 28 phases, over 80 s of a run. A worker
    that died is started again at the next job."""

    def __init__(self, lab, env: dict, scratch: Path):
        self.lab, self.env, self.scratch = lab, env, scratch
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, hosts: list[str]) -> None:
        """Start the hosts' workers now (their imports then overlap other work)."""
        for host in hosts:
            self._worker(host)

    def _err(self, host: str) -> Path:
        return self.scratch / f"pool-{host}.err"

    def _worker(self, host: str) -> subprocess.Popen:
        proc = self.procs.get(host)
        if proc is None or proc.poll() is not None:
            with open(self._err(host), "ab") as err:
                proc = self.lab.host(host).popen(
                    [sys.executable, "-m", "measurements.dbbench_worker", "--serve"],
                    stdin=subprocess.PIPE, stdout=err, stderr=subprocess.STDOUT,
                    cwd=str(ROOT), env=self.env, text=True)
            self.procs[host] = proc
        return proc

    def submit(self, host: str, config: Path) -> PooledJob:
        config.with_suffix(".status").unlink(missing_ok=True)
        config.with_suffix(".err").write_text("")
        proc = self._worker(host)
        try:
            proc.stdin.write(f"{config}\n")
            proc.stdin.flush()
        except BrokenPipeError:  # it died since: a new one takes the job
            proc.wait()
            proc = self._worker(host)
            proc.stdin.write(f"{config}\n")
            proc.stdin.flush()
        return PooledJob(proc, config, self._err(host))

    def stop(self) -> None:
        """Close the workers' job queues; they exit after their current job."""
        for proc in self.procs.values():
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            stop_process(proc)
        self.procs.clear()


class DbWorkload:
    """The database workload from the lab's placements, inside a running lab with its databases.

    through: an address ({host, port, dbname, user}) every request goes to instead of the
    servers themselves (lab compare: the db service's virtual address); no replica reads then.
    addresses: {"read_address": {...}, "write_address": {...}}: the services' addresses, for
    the operations address_read and address_write (lab bench db).
    """

    def __init__(self, lab, dbs: Databases, samples: int, page_queries: int,
                 replica: str | None, warmup: int, ping_count: int,
                 progress: Progress = SILENT, through: dict | None = None,
                 addresses: dict | None = None, pool: WorkerPool | None = None):
        self.lab, self.dbs, self.through = lab, dbs, through
        self.pool = pool  # run the jobs of `workloads` there instead of a process each
        self.addresses = addresses or {}
        self.samples, self.page_queries = samples, page_queries
        self.warmup, self.ping_count, self.progress = warmup, ping_count, progress
        servers = {db.name: db for db in dbs.servers()}
        if replica is not None and replica not in servers:
            raise ValueError(f"replica {replica!r} is not a database host "
                             f"({', '.join(servers)})")
        self.replica: Database | None = None if through else servers[replica] if replica \
            else dbs.standby
        self.scratch = dbs.base_dir / "bench"
        self.scratch.mkdir(exist_ok=True)
        self.env = child_env(dbs.client_env(lab.state.run_id))

    def operations(self) -> list[str]:
        optional = {"replica_read": self.replica is not None,
                    "address_read": "read_address" in self.addresses,
                    "address_write": "write_address" in self.addresses}
        return [op for op in OPERATIONS if optional.get(op, True)]

    def run(self, placements: list[Placement]) -> tuple[list[Sample], dict[str, Placement]]:
        """Ping every placement, then run the phases of `plan_phases`, each phase at once."""
        primary = self.dbs.primary
        topo = self.lab.topology
        server = Placement(primary.name, topo.hosts[primary.name].site, "db-host")
        everyone = [server] + placements
        info = {p.host: p for p in everyone}
        if self.dbs.standby is not None:
            standby = self.dbs.standby.name
            info[standby] = Placement(standby, topo.hosts[standby].site, "db-standby")
        rtts = {p.host: self._ping(p) for p in everyone}
        rtt = {host: p50(found) for host, found in rtts.items()}
        replica_rtt = self._estimate_rtts([p.host for p in everyone], self.replica.name) \
            if self.replica is not None else {}
        ops = self.operations()  # the database host is no consumer of the addresses
        work = {p.host: [op for op in ops if p.kind != "db-host" or op not in ADDRESS_OPERATIONS]
                for p in everyone}
        lag = self._start_lag_sampler()
        task = self.progress.task("database benchmark",
                                  total=sum(map(len, work.values())) * self.samples)
        try:
            results = self.run_phases(work, info, rtt, replica_rtt, task,
                                      self._read_rtts(rtt, replica_rtt))
        finally:
            self.progress.done(task)
            lag_records = self._stop_lag_sampler(lag)
        samples: list[Sample] = []
        order = {op: i for i, op in enumerate(OPERATIONS)}
        for place in everyone:
            got = sorted(results[place.host], key=lambda s: (order[s.operation], s.start_time))
            samples += rtts[place.host] + got
        if self.dbs.standby is not None:
            samples += [Sample(self.dbs.standby.name, LAG_OPERATION, r["commit"], r["lag_ms"])
                        for r in lag_records]
        return samples, info

    def run_phases(self, work: dict[str, list[str]], info: dict[str, Placement],
                   rtt_ms: dict[str, float], replica_rtt_ms: dict[str, float],
                   task: int, read_rtt_ms: dict[str, float] | None = None
                   ) -> dict[str, list[Sample]]:
        """Each placement's operations (host -> ops), in the phases of `plan_phases`: the
        precise figures measured undisturbed; rtt_ms to the server each host reads from."""
        results: dict[str, list[Sample]] = {host: [] for host in work}
        for phase in plan_phases(work, rtt_ms, read_rtt_ms):
            self.progress.update(task, description=phase.title)
            streams = {host: self._streams(ops, rtt_ms[host], replica_rtt_ms.get(host, 0.0),
                                           phase.target_s)
                       for host, ops in phase.work.items()}
            found = self.workloads([info[h] for h in phase.work], phase.work, streams, task)
            for host, got in found.items():
                results[host] += got
        return results

    def _streams(self, ops: list[str], rtt_ms: float, replica_rtt_ms: float,
                 target_s: float | None) -> int:
        """Parallel streams (one connection each) to finish a placement's share in target_s."""
        if target_s is None:
            return 1
        per_sample_ms = sum((self.page_queries if op == "page" else ROUND_TRIPS[op])
                            * (replica_rtt_ms if op == "replica_read" else rtt_ms) for op in ops)
        estimate_s = self.samples * per_sample_ms / 1000  # inf where no path is known
        wanted = math.ceil(estimate_s / target_s) if math.isfinite(estimate_s) else MAX_STREAMS
        return max(1, min(MAX_STREAMS, self.samples, wanted))

    # -- pieces ----------------------------------------------------------------------------

    def _read_rtts(self, rtt: dict[str, float], replica_rtt: dict[str, float]
                   ) -> dict[str, float] | None:
        """The RTT from each host to the server the read address leads it to (the primary's
        or the replica's, already measured), for planning; None without a read address."""
        if "read_address" not in self.addresses or self.lab.controller is None:
            return None
        choices = next((s["choices"] for s in self.lab.controller.get("endpoints")["services"]
                        if s["name"] == READ_SERVICE), {})
        replica = self.replica.name if self.replica is not None else None
        return {host: replica_rtt[host] if choices.get(host) == replica and host in replica_rtt
                else ms for host, ms in rtt.items()}

    def _estimate_rtts(self, hosts: list[str], target: str) -> dict[str, float]:
        """A quick RTT from each host to `target` (a few probes at once), for planning."""
        found = measure(self.lab, [(h, h, target) for h in hosts if h != target], count=3,
                        warmup=1)
        return {h: (percentile(found[h][0], 50) if found.get(h, ([], 0))[0] else 0.0)
                for h in hosts}

    def _ping(self, place: Placement) -> list[Sample]:
        """RTT from the placement's host to the primary, with the lab's ICMP prober.

        Kernel timestamps: ping's own process scheduling would add tenths of a ms, more
        than the whole path to an Outpost. One probe at a time, each PING_IDLE_MS after the
        previous answer: a request/response client leaves the path idle between requests,
        and waking the idle switches and delay line costs it up to tenths of a ms that a
        stream of overlapping probes would not see.
        """
        started = time.time()
        key = [("rtt", place.host, self.dbs.primary.name)]
        quick, _ = measure(self.lab, key, count=3, warmup=1)["rtt"]
        gap_ms = (max(quick) if quick else 0.0) + PING_IDLE_MS
        rtts, sent = measure(self.lab, key, count=self.ping_count, warmup=3,
                             gap_ms=gap_ms)["rtt"]
        found = [Sample(place.host, RTT_OPERATION, started, rtt) for rtt in rtts]
        return found + [Sample(place.host, RTT_OPERATION, started, 0.0, ok=False)] * (sent - len(rtts))

    def _config(self, name: str, **extra) -> Path:
        target = lambda db: self.dbs.conninfo(db) if db else None  # noqa: E731
        config = {"primary": self.through or target(self.dbs.primary),
                  "replica": target(self.replica),
                  "patients": self.dbs.size.patients, "page_queries": self.page_queries,
                  "samples": self.samples, "warmup": self.warmup,
                  "lag_flag": str(self.scratch / f"{LAG_FLAG_PREFIX}{name}"),
                  "out": str(self.scratch / f"{name}.jsonl")}
        config.update(extra)
        path = self.scratch / f"{name}.json"
        write_json(path, config)
        Path(config["out"]).unlink(missing_ok=True)
        return path

    def _spawn(self, host_name: str, config: Path) -> subprocess.Popen:
        err = open(config.with_suffix(".err"), "wb")
        try:
            return self.lab.host(host_name).popen(
                [sys.executable, "-m", "measurements.dbbench_worker", str(config)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                cwd=str(ROOT), env=self.env)
        finally:
            err.close()

    def workloads(self, places: list[Placement], ops: dict[str, list[str]],
                  streams: dict[str, int], task: int) -> dict[str, list[Sample]]:
        """Run each placement's operations (split over its streams), all at once.

        Workers start together only once all are connected (a go file): starting a dozen
        Python processes takes seconds of CPU, which the first requests would otherwise
        measure.
        """
        go = self.scratch / "go"
        go.unlink(missing_ok=True)
        together = sum(streams[p.host] for p in places) > 1
        running = []  # (placement, config, process, reader)
        for place in places:
            k = streams[place.host]
            for i in range(k):
                share = self.samples // k + (1 if i < self.samples % k else 0)
                # Only the operations through them need the addresses (the database host
                # is no consumer of them, and cannot reach them).
                uses = set(ops[place.host]) & set(ADDRESS_OPERATIONS)
                config = self._config(f"{place.host}-{i}", operations=ops[place.host],
                                      **(self.addresses if uses else {}), samples=share, go_file=str(go) if together else None,
                                      seed=zlib.crc32(place.host.encode()) + i, mode="workload")
                job = self.pool.submit(place.host, config) if self.pool \
                    else self._spawn(place.host, config)
                running.append((place, config, job,
                                LineReader(self.scratch / f"{place.host}-{i}.jsonl")))
        records: dict[Path, list[dict]] = {config: [] for _, config, _, _ in running}
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        try:
            while together:  # until every worker is connected, or one has stopped
                for _, config, _, reader in running:
                    records[config] += reader.read()
                if all(any(r["type"] == "ready" for r in records[config])
                       or proc.poll() is not None for _, config, proc, _ in running):
                    go.touch()
                    break
                if time.monotonic() > deadline:
                    raise DbBenchError(f"workers not connected after {WORKER_TIMEOUT_S} s")
                time.sleep(0.02)
            while True:
                for _, config, proc, reader in running:
                    new = reader.read()
                    records[config] += new
                    self.progress.update(task, advance=sum(r["type"] == "sample" for r in new))
                if all(proc.poll() is not None for _, _, proc, _ in running):
                    for _, config, _, reader in running:
                        records[config] += reader.read()
                    break
                if time.monotonic() > deadline:
                    raise DbBenchError(f"workload still running after {WORKER_TIMEOUT_S} s")
                time.sleep(0.1)
        finally:
            for _, _, proc, _ in running:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        found: dict[str, list[Sample]] = {p.host: [] for p in places}
        for place, config, proc, _ in running:
            got = records[config]
            if proc.returncode != 0 or not got or got[-1]["type"] != "done":
                tail = config.with_suffix(".err").read_text(errors="replace").strip()[-800:]
                raise DbBenchError(f"{place.host}: workload failed ({proc.returncode}): {tail}")
            found[place.host] += [Sample(place.host, r["operation"], r["start"],
                                         r["latency_ms"], r["ok"])
                                  for r in got if r["type"] == "sample"]
        return found

    def _start_lag_sampler(self):
        standby = self.dbs.standby
        if standby is None:
            return None
        config = self._config("lag", mode="lag", replica=self.dbs.conninfo(standby),
                              lag_flags=str(self.scratch), lag_flag_prefix=LAG_FLAG_PREFIX)
        proc = self._spawn(standby.name, config)
        reader = LineReader(self.scratch / "lag.jsonl")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(r["type"] == "ready" for r in reader.read()):
                return proc, reader
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        tail = config.with_suffix(".err").read_text(errors="replace").strip()[-800:]
        raise DbBenchError(f"{standby.name}: replication-lag sampler did not start: {tail}")

    def _stop_lag_sampler(self, lag) -> list[dict]:
        if lag is None:
            return []
        proc, reader = lag
        stop_process(proc, timeout=10)
        return [r for r in reader.read_all() if r["type"] == "lag"]
