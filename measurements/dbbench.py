"""`lab bench db`: the database access-path benchmark against a real PostgreSQL in the lab.

Brings the lab up, starts the primary and its standby (measurements/postgres.py), and from
each placement's host (every service and monolith host, in file order) probes the RTT to the
primary with the lab's ICMP prober and runs the workload (measurements/dbbench_worker.py) inside the host:
connect + authenticate, a single-row indexed read, an ORM page of N sequential queries, a
write transaction on the primary and a read from the replica. Meanwhile a sampler on the
standby's host records how long each write takes to be replayed there. The database host
itself runs the same workload over its own address first: that is the server time of the
model check (page = N x RTT + server time).

Files in the output directory (a report can be recomputed from the first two):
    samples.csv       one row per request: placement, operation, start_time, latency_ms, ok
    <topology>.yaml   the topology file the run used
    summary.json      per placement and operation: n, p50, p95, p99, mean, bootstrap CI
    model_check.json  per placement: RTT, server page time, predicted and measured page
    setup.json        the run's settings and timings
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from measurements.postgres import DIRECT_PORT, Database, Databases, DataSize, start_databases
from measurements.stats import DEFAULT_SEED, percentile, summarize
from lab.icmpprobe import measure
from lab.procs import ROOT, child_env, stop_process
from measurements.dbbench_worker import OPERATIONS
from measurements.jsonlines import LineReader

PLACEMENT_ROLES = ("service", "monolith")
CSV_FIELDS = ("placement", "operation", "start_time", "latency_ms", "ok")
RTT_OPERATION = "rtt_ping"
LAG_OPERATION = "replication_lag"
SUMMARY_FIELDS = ("placement", "site", "kind", "operation", "n", "errors", "p50_ms", "p95_ms",
                  "p99_ms", "mean_ms", "ci95_low_ms", "ci95_high_ms")
WORKER_TIMEOUT_S = 1800
NEAR_RTT_MS = 5.0  # placements up to this RTT to the primary run their primary work alone
SOLO_READ_RTT_MS = 20.0  # ... and up to this one their single query (5 % of it is < 1 ms)
STREAM_TARGET_S = 25.0  # work run at once gets enough streams to finish in about this
READ_TARGET_S = 5.0  # the same for the far placements' single-query phase
MAX_STREAMS = 8
PING_IDLE_MS = 0.3  # a ping waits this long after the previous answer, as a client would
# Network round trips per sample of each operation (a page: one per query of its N).
ROUND_TRIPS = {"read": 1, "replica_read": 1, "write": 4, "connect": 4}
LAG_FLAG_PREFIX = "lag-active-"


class DbBenchError(RuntimeError):
    """The benchmark could not run; the message says where."""


@dataclass(frozen=True)
class Sample:
    """One timed request (or ping, or replayed write) from one placement."""

    placement: str
    operation: str
    start_time: float
    latency_ms: float
    ok: bool = True


@dataclass(frozen=True)
class Placement:
    host: str
    site: str
    kind: str  # the site's kind (outpost, localzone, region, datacenter) or "db-host"


@dataclass
class DbBenchResult:
    out_dir: Path
    summary: list[dict]
    model: list[dict]
    setup: dict

    @property
    def errors(self) -> int:
        return sum(r["errors"] for r in self.summary)


# -- result files (no network) -------------------------------------------------------------

def write_samples_csv(path: Path, samples: list[Sample]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for s in samples:
            writer.writerow([s.placement, s.operation, f"{s.start_time:.6f}",
                             f"{s.latency_ms:.4f}", int(s.ok)])


def read_samples_csv(path: Path) -> list[Sample]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CSV_FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(CSV_FIELDS)}")
        return [Sample(r["placement"], r["operation"], float(r["start_time"]),
                       float(r["latency_ms"]), r["ok"] == "1") for r in reader]


def summarize_samples(samples: list[Sample], placements: dict[str, Placement] | None = None,
                      seed: int = DEFAULT_SEED) -> list[dict]:
    """One record per (placement, operation), in order of first appearance; errors excluded."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.placement, s.operation), []).append(s)
    records = []
    for (placement, op), group in groups.items():
        where = (placements or {}).get(placement)
        stats = summarize([s.latency_ms for s in group if s.ok], seed=seed)
        records.append({"placement": placement, "site": where.site if where else None,
                        "kind": where.kind if where else None, "operation": op,
                        **{"errors": sum(not s.ok for s in group)}, **stats.as_dict()})
    return [{k: r[k] for k in SUMMARY_FIELDS} for r in records]


def model_check(summary: list[dict], page_queries: int, server: str) -> list[dict]:
    """Predicted page time N x RTT(placement -> primary) + the server's own page time."""
    by = {(r["placement"], r["operation"]): r for r in summary}
    server_page = by.get((server, "page"), {}).get("p50_ms")
    rows = []
    for r in summary:
        if r["operation"] != "page" or r["placement"] == server:
            continue
        rtt = by.get((r["placement"], RTT_OPERATION), {}).get("p50_ms")
        predicted = (page_queries * rtt + server_page
                     if rtt is not None and server_page is not None else None)
        measured = r["p50_ms"]
        rows.append({"placement": r["placement"], "site": r["site"], "kind": r["kind"],
                     "page_queries": page_queries, "rtt_p50_ms": rtt,
                     "server_page_p50_ms": server_page, "predicted_page_ms": predicted,
                     "measured_page_p50_ms": measured,
                     "measured_over_predicted": (measured / predicted
                                                 if predicted and measured is not None else None)})
    return rows


def _p50(samples: list[Sample]) -> float:
    ok = [s.latency_ms for s in samples if s.ok]
    return percentile(ok, 50) if ok else math.inf


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


# -- the run --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """Work run at once: host -> its operations; target_s None: one stream, run alone."""

    title: str
    work: dict[str, list[str]]
    target_s: float | None


def plan_phases(hosts: list[str], ops: list[str], rtt_ms: dict[str, float]) -> list[Phase]:
    """The order of the benchmark's work, so that every figure is measured undisturbed
    where it must be precise and the run still fits in a few minutes.

    A near placement (RTT to the primary up to NEAR_RTT_MS) is CPU-sensitive: its work on the
    primary runs alone, one placement at a time. So does the single query of a placement up
    to SOLO_READ_RTT_MS, where 5 % of the RTT is under a millisecond. The other single
    queries then run at once: reads cost the server little and a far path allows more. The
    rest (the far placements' work, and every replica read: a far path for the near
    placements) runs at once, split over parallel streams, each request still timed on its
    own connection.
    """
    alone: list[Phase] = []
    far_reads: dict[str, list[str]] = {}
    rest: dict[str, list[str]] = {}
    for host in hosts:
        rtt = rtt_ms[host]
        if rtt <= NEAR_RTT_MS:
            own = [op for op in ops if op != "replica_read"]
        elif rtt <= SOLO_READ_RTT_MS:
            own = ["read"]
        else:
            own = []
        if own:
            alone.append(Phase(f"{host} alone", {host: own}, None))
        if "read" not in own:
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


def placements_of(topology) -> list[Placement]:
    """Every service and monolith host, in file order."""
    return [Placement(h.name, h.site, topology.sites[h.site].kind)
            for h in topology.hosts.values() if h.role in PLACEMENT_ROLES]


def run_db_bench(topology, samples: int = 200, out_dir: str | Path | None = None,
                 page_queries: int = 20, replica: str | None = None,
                 size: DataSize = DataSize(), warmup: int = 5, ping_count: int = 20,
                 placements: list[str] | None = None, port: int = DIRECT_PORT,
                 console: Console | None = None, lab_factory=None) -> DbBenchResult:
    """Bring the lab up, run the database benchmark, write the result files, tear down.

    topology: a topology file (or a loaded Topology); replica: the host to read replica
    reads from (default: the standby); placements: host names to measure from (default:
    every service and monolith host); port: the servers' port (by default one the
    controller's "db" service does not rewrite, so each server is reached directly).
    """
    from topologies.model import Topology
    from topologies.loader import load

    if samples < 1 or page_queries < 1:
        raise ValueError("samples and page_queries must be at least 1")
    topo = topology if isinstance(topology, Topology) else load(topology)
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    out = Path(out_dir or f"results/db-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    if topo.source and Path(topo.source).is_file():
        shutil.copy(topo.source, out / Path(topo.source).name)
    chosen = placements_of(topo)
    if placements is not None:
        unknown = set(placements) - {p.host for p in chosen}
        if unknown:
            raise ValueError(f"not a service or monolith host: {', '.join(sorted(unknown))}")
        chosen = [p for p in chosen if p.host in placements]
    if lab_factory is None:
        from controllers.forwarding import make_lab as lab_factory
    setup = {"topology": str(topo.source), "samples": samples, "page_queries": page_queries,
             "warmup": warmup, "ping_count": ping_count,
             "data": {"patients": size.patients, "appointments": size.appointments,
                      "claims": size.claims},
             "port": port, "seed": DEFAULT_SEED}
    t_start = time.monotonic()
    lab = lab_factory(topo, log=console.print)
    with lab:
        setup["datapath"] = lab.caps.datapath
        setup["links"] = lab.backend
        setup["controller"] = lab.forwarding.kind
        setup["bring_up_s"] = round(lab.timing.build_s + lab.timing.forwarding_s, 3)
        dbs = start_databases(lab, size=size, port=port, log=console.print)
        try:
            bench = _Bench(lab, dbs, samples, page_queries, replica, warmup, ping_count, console)
            setup.update(primary=dbs.primary.name, replica=bench.replica.name if bench.replica
                         else None)
            all_samples, info = bench.run(chosen)
        finally:
            dbs.stop()
    setup["teardown_s"] = round(lab.timing.teardown_s, 3)
    setup["total_s"] = round(time.monotonic() - t_start, 3)
    write_samples_csv(out / "samples.csv", all_samples)
    summary = summarize_samples(all_samples, info)
    model = model_check(summary, page_queries, dbs.primary.name)
    write_json(out / "summary.json", summary)
    write_json(out / "model_check.json", model)
    write_json(out / "setup.json", setup)
    print_summary(console, summary, model)
    console.print(f"results written to {out}/ (samples.csv, summary.json, model_check.json); "
                  f"{setup['total_s']:.0f} s in all")
    return DbBenchResult(out, summary, model, setup)


class _Bench:
    """One benchmark run inside a running lab with its databases."""

    def __init__(self, lab, dbs: Databases, samples: int, page_queries: int,
                 replica: str | None, warmup: int, ping_count: int, console: Console):
        self.lab, self.dbs = lab, dbs
        self.samples, self.page_queries = samples, page_queries
        self.warmup, self.ping_count, self.console = warmup, ping_count, console
        servers = {db.name: db for db in dbs.servers()}
        if replica is not None and replica not in servers:
            raise ValueError(f"replica {replica!r} is not a database host "
                             f"({', '.join(servers)})")
        self.replica: Database | None = servers[replica] if replica else dbs.standby
        self.scratch = dbs.base_dir / "bench"
        self.scratch.mkdir(exist_ok=True)
        self.env = child_env(dbs.client_env(lab.state.run_id))

    def operations(self) -> list[str]:
        return [op for op in OPERATIONS if op != "replica_read" or self.replica is not None]

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
        rtt = {host: _p50(found) for host, found in rtts.items()}
        replica_rtt = self._estimate_rtts([p.host for p in everyone], self.replica.name) \
            if self.replica is not None else {}
        phases = plan_phases([p.host for p in everyone], self.operations(), rtt)
        results: dict[str, list[Sample]] = {p.host: [] for p in everyone}
        lag = self._start_lag_sampler()
        progress = Progress(TextColumn("{task.description:<36}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=self.console)
        try:
            with progress:
                task = progress.add_task("database benchmark", total=sum(
                    len(ops) for phase in phases for ops in phase.work.values()) * self.samples)
                for phase in phases:
                    progress.update(task, description=phase.title)
                    streams = {host: self._streams(ops, rtt[host], replica_rtt.get(host, 0.0),
                                                   phase.target_s)
                               for host, ops in phase.work.items()}
                    found = self._workloads([info[h] for h in phase.work], phase.work, streams,
                                            progress, task)
                    for host, got in found.items():
                        results[host] += got
        finally:
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

    def _streams(self, ops: list[str], rtt_ms: float, replica_rtt_ms: float,
                 target_s: float | None) -> int:
        """Parallel streams (one connection each) to finish a placement's share in target_s."""
        if target_s is None:
            return 1
        per_sample_ms = sum((self.page_queries if op == "page" else ROUND_TRIPS[op])
                            * (replica_rtt_ms if op == "replica_read" else rtt_ms) for op in ops)
        estimate_s = self.samples * per_sample_ms / 1000
        return max(1, min(MAX_STREAMS, self.samples, math.ceil(estimate_s / target_s)))

    # -- pieces ----------------------------------------------------------------------------

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
        config = {"primary": target(self.dbs.primary), "replica": target(self.replica),
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

    def _workloads(self, places: list[Placement], ops: dict[str, list[str]],
                   streams: dict[str, int], progress, task) -> dict[str, list[Sample]]:
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
                config = self._config(f"{place.host}-{i}", operations=ops[place.host],
                                      samples=share, go_file=str(go) if together else None,
                                      seed=zlib.crc32(place.host.encode()) + i, mode="workload")
                running.append((place, config, self._spawn(place.host, config),
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
                    progress.advance(task, sum(r["type"] == "sample" for r in new))
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


# -- output ---------------------------------------------------------------------------------

def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_summary(console: Console, summary: list[dict], model: list[dict]) -> None:
    table = Table(title="Database latency per placement (ms; CI: bootstrap 95 % of the median)")
    for col in ("placement", "kind", "operation", "n", "err", "p50", "p95", "p99", "mean",
                "CI95 median"):
        table.add_column(col, justify="left" if col in ("placement", "kind", "operation")
                         else "right")
    previous = None
    for r in summary:
        first = r["placement"] != previous
        previous = r["placement"]
        table.add_row(r["placement"] if first else "", (r["kind"] or "") if first else "",
                      r["operation"], str(r["n"]), str(r["errors"]), _fmt(r["p50_ms"]),
                      _fmt(r["p95_ms"]), _fmt(r["p99_ms"]), _fmt(r["mean_ms"]),
                      f"{_fmt(r['ci95_low_ms'])}-{_fmt(r['ci95_high_ms'])}",
                      end_section=False)
    console.print(table)
    if not model:
        return
    check = Table(title="Model check: page of N queries = N x RTT to the primary + server time")
    for col in ("placement", "kind", "N", "RTT p50", "server page", "predicted", "measured p50",
                "measured/predicted"):
        check.add_column(col, justify="left" if col in ("placement", "kind") else "right")
    for m in model:
        check.add_row(m["placement"], m["kind"] or "", str(m["page_queries"]),
                      _fmt(m["rtt_p50_ms"], 3), _fmt(m["server_page_p50_ms"]),
                      _fmt(m["predicted_page_ms"]), _fmt(m["measured_page_p50_ms"]),
                      _fmt(m["measured_over_predicted"]))
    console.print(check)
