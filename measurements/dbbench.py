"""`lab bench db`: the database access-path benchmark against a real PostgreSQL in the lab.

Brings the lab up, starts the primary and its standby (measurements/postgres.py), and from
each placement's host (every service and monolith host, in file order) probes the RTT to the
primary with the lab's ICMP prober and runs the workload (measurements/dbworkload.py) inside
the host: connect + authenticate, a single-row indexed read, an ORM page of N sequential
queries, a write transaction on the primary and a read from the replica. Meanwhile a sampler
on the standby's host records how long each write takes to be replayed there. The database
host itself runs the same workload over its own address first: that is the server time of
the model check (page = N x RTT + server time).

Files in the output directory (a report can be recomputed from the first two):
    samples.csv       one row per request: placement, operation, start_time, latency_ms, ok
    <topology>.yaml   the topology file the run used
    summary.json      per placement and operation: n, p50, p95, p99, mean, bootstrap CI
    model_check.json  per placement: RTT, server page time, predicted and measured page
    setup.json        the run's settings and timings
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lab.files import copy_file, results_dir, write_json
from controllers.services import READ_SERVICE, WRITE_SERVICE
from measurements.arguments import ArgumentError
from measurements.dbresults import (Placement, model_check, summarize_samples,
                                    write_samples_csv)
from measurements.dbworkload import DbWorkload
from measurements.postgres import DIRECT_PORT, REPLICATION_MODES, DataSize, start_databases
from measurements.progress import SILENT, Progress
from measurements.stats import DEFAULT_SEED
from topologies.loader import load
from topologies.model import Topology

PLACEMENT_ROLES = ("service", "monolith")


@dataclass
class DbBenchResult:
    out_dir: Path
    summary: list[dict]
    model: list[dict]
    setup: dict

    @property
    def errors(self) -> int:
        return sum(r["errors"] for r in self.summary)


def placements_of(topology) -> list[Placement]:
    """Every service and monolith host, in file order."""
    return [Placement(h.name, h.site, topology.sites[h.site].kind)
            for h in topology.hosts.values() if h.role in PLACEMENT_ROLES]


def _chosen(topo: Topology, samples: int, page_queries: int, replica: str | None,
            placements: list[str] | None) -> list[Placement]:
    """The placements to measure from; a ValueError for a bad argument, before the lab."""
    if samples < 1 or page_queries < 1:
        raise ArgumentError("samples and page_queries must be at least 1")
    chosen = placements_of(topo)
    if placements is not None:
        unknown = set(placements) - {p.host for p in chosen}
        if unknown:
            raise ArgumentError(f"not a service or monolith host: {', '.join(sorted(unknown))}")
        chosen = [p for p in chosen if p.host in placements]
    databases = [h.name for role in ("db-primary", "db-standby")
                 for h in topo.hosts_with_role(role)]
    if replica is not None and replica not in databases:
        raise ArgumentError(f"--replica: {replica!r} is not a database host "
                         f"({', '.join(databases) or 'none'})")
    return chosen


def run_db_bench(topology, samples: int = 200, out_dir: str | Path | None = None,
                 page_queries: int = 20, replica: str | None = None,
                 size: DataSize = DataSize(), warmup: int = 5, ping_count: int = 20,
                 placements: list[str] | None = None,
                 progress: Progress = SILENT, lab_factory=None,
                 replication: str = "async") -> DbBenchResult:
    """Bring the lab up, run the database benchmark, write the result files, tear down.

    topology: a topology file (or a loaded Topology); replica: the host to read replica
    reads from (default: the standby); placements: host names to measure from (default:
    every service and monolith host). Each server is measured directly (DIRECT_PORT: the
    services' address rewrite leaves it alone), and the services' addresses as the
    application uses them: reads through the read address, writes through the write
    address (the operations address_read and address_write). replication: async or sync
    (every commit waits for the standby: the write figures then include the primary's
    round trip to it); out_dir: new or empty (earlier results are never overwritten), by
    default results/db-<time>. Bad arguments are a ValueError before
    the lab comes up.
    """
    topo = topology if isinstance(topology, Topology) else load(topology)
    chosen = _chosen(topo, samples, page_queries, replica, placements)
    if replication not in REPLICATION_MODES:
        raise ArgumentError(f"--replication: must be {' or '.join(REPLICATION_MODES)}, "
                         f"got {replication!r}")
    out = results_dir(out_dir, "db")
    if topo.source and Path(topo.source).is_file():
        copy_file(topo.source, out / Path(topo.source).name)
    if lab_factory is None:
        from controllers.forwarding import make_lab as lab_factory
    setup = {"topology": str(topo.source), "samples": samples, "page_queries": page_queries,
             "warmup": warmup, "ping_count": ping_count,
             "data": {"patients": size.patients, "appointments": size.appointments,
                      "claims": size.claims},
             "port": DIRECT_PORT, "seed": DEFAULT_SEED, "replication": replication}
    t_start = time.monotonic()
    lab = lab_factory(topo, log=progress.note)
    with lab:
        setup["datapath"] = lab.caps.datapath
        setup["links"] = lab.backend
        setup["controller"] = lab.forwarding.kind
        setup["bring_up_s"] = round(lab.timing.build_s + lab.timing.forwarding_s, 3)
        dbs = start_databases(lab, size=size, log=progress.note,
                              replication=replication)
        try:
            addresses = _service_addresses(lab, dbs)
            bench = DbWorkload(lab, dbs, samples, page_queries, replica, warmup, ping_count,
                               progress, addresses=addresses)
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
    return DbBenchResult(out, summary, model, setup)


def _service_addresses(lab, dbs) -> dict:
    """The read and write addresses the controller serves (none without a controller of the
    lab's: static flows or no forwarding have no service addresses)."""
    if lab.controller is None:
        return {}
    services = {s["name"]: s for s in lab.controller.get("topology")["services"]}
    return {key: dbs.address(services[name]["vip"])
            for key, name in (("read_address", READ_SERVICE), ("write_address", WRITE_SERVICE))
            if name in services}
