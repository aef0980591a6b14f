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
- congestion (instead of a failure): the links that have a schedule follow it for one pass
  while the probes run (measurements/congestion.py), the controller's paths read back;
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
    schedule.jsonl  the congestion scenario's schedules as applied: scenario, strategy, then
                    lab.schedule's log line (scheduled and applied time, link, delay, hold)
    <topology>.yaml the topology file the run used

The cells themselves: measurements/cells.py; the programs beside the lab (the application
server and the prober): measurements/inlab.py; the failures: measurements/scenarios.py;
the report (a stage of its own): measurements/report/.
"""

from __future__ import annotations

import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from controllers.strategies import COMPARED, STRATEGIES
from lab.files import atomic_write, copy_file, results_dir, write_json
from measurements.arguments import ArgumentError
from measurements.cells import (CLIENT_INTERVAL_S, FAILOVER, FAILURE_WINDOW_S, REQUEST_TIMEOUT_S,
                                SERVICE_INTERVAL_S, CompareRun, before_once)
from measurements.dbwindows import AFTER_OPERATIONS, DB_OPERATIONS, PAGE_QUERIES
from measurements.dr import FAILBACK_MODES
from measurements.postgres import PG_BIN, REPLICATION_MODES
from measurements.progress import SILENT, Progress
from measurements.scenarios import DEFAULT_SCENARIOS, scenarios_of
from measurements.writers import WRITER_INTERVAL_S
from topologies.loader import load
from topologies.model import Topology

DEFAULT_SAMPLES = 10  # database requests per operation, placement and phase


def tool_versions() -> dict:
    """Versions of the tools the lab runs on ("missing" where one is not installed)."""
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


@dataclass
class CompareResult:
    out_dir: Path
    seconds: float
    cells: list[dict] = field(default_factory=list)


def _setup(topo, strategies, chosen: list, samples: int, failure_window_s: float,
           replication: str, failback: str) -> dict:
    """What setup.json says before the lab is up: topology, tools, cells and settings."""
    return {"topology": topo.as_dict(paths=False), "topology_file": Path(topo.source).name,
            "versions": tool_versions(), "strategies": list(strategies),
            "scenarios": [{"name": s.name, "description": s.description, "links": list(s.links),
                           "isolated": list(s.isolated), "scheduled": list(s.scheduled),
                           "schedule_s": s.schedule_s} for s in chosen],
            "settings": {"samples": samples, "db_operations": list(DB_OPERATIONS),
                         "after_operations": list(AFTER_OPERATIONS), "db_windows": "quiet",
                         "before_once": before_once(chosen),
                         "page_queries": PAGE_QUERIES, "client_interval_s": CLIENT_INTERVAL_S,
                         "service_interval_s": SERVICE_INTERVAL_S,
                         "writer_interval_s": WRITER_INTERVAL_S, "failover": FAILOVER,
                         "request_timeout_s": REQUEST_TIMEOUT_S,
                         "failure_window_s": failure_window_s, "replication": replication,
                         "failback": failback}}


def run_compare(topology, strategies=COMPARED, scenarios=DEFAULT_SCENARIOS,
                samples: int = DEFAULT_SAMPLES, out_dir: str | Path | None = None,
                progress: Progress = SILENT, lab_factory=None,
                failure_window_s: float = FAILURE_WINDOW_S, seed: int = 0,
                replication: str = "async", failback: str = "restore") -> CompareResult:
    """Bring the lab up once, run every scenario x strategy cell, write the raw files.

    samples: database requests per operation, placement and phase (the probes' counts follow
    from their intervals and the cell's length); seed: of the writers' random rows (a
    sweep's repetitions differ by it); replication: async or sync streaming to the standby;
    failback: after a promotion, restore the original roles or keep the new ones
    (measurements/dr.py). Teardown always runs. The report is the
    next stage's (measurements.report.writer.write_report).
    """
    if samples < 1:
        raise ArgumentError("samples must be at least 1")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ArgumentError(f"unknown strategy {unknown[0] if unknown else '(none)'!r} "
                         f"(choose from {', '.join(STRATEGIES)})")
    topo = topology if isinstance(topology, Topology) else load(topology)
    chosen = scenarios_of(topo, scenarios)
    if replication not in REPLICATION_MODES or failback not in FAILBACK_MODES:
        raise ArgumentError(f"replication must be {' or '.join(REPLICATION_MODES)}, failback "
                         f"{' or '.join(FAILBACK_MODES)} (got {replication!r}, {failback!r})")
    out = results_dir(out_dir, "compare")
    if topo.source and Path(topo.source).is_file():
        copy_file(topo.source, out / Path(topo.source).name)
    copied = set()
    for link in topo.links:  # beside it, the traces its schedules play (same relative path)
        if link.schedule and Path(topo.source).is_file():
            trace = Path(link.schedule.trace.file).resolve()
            home = Path(topo.source).resolve().parent
            dest = out / (trace.relative_to(home) if trace.is_relative_to(home)
                          else Path("traces") / trace.name)
            if dest not in copied:
                dest.parent.mkdir(parents=True, exist_ok=True)
                copy_file(trace, dest)
                copied.add(dest)
    if lab_factory is None:
        from controllers.forwarding import make_lab as lab_factory
    setup = _setup(topo, strategies, chosen, samples, failure_window_s, replication, failback)
    setup["settings"]["seed"] = seed
    t_start = time.monotonic()
    result = CompareResult(out, 0.0)
    lab = lab_factory(topo, strategy=strategies[0], log=progress.note)
    with lab:
        setup["links_backend"] = lab.backend
        setup["datapath"] = lab.caps.datapath
        setup["controller"] = lab.forwarding.kind
        setup["calibration"] = lab.calibration.as_dict() if lab.calibration else None
        setup["bring_up_s"] = round(lab.timing.up_s, 3)
        run = CompareRun(lab, topo, out, samples, progress, failure_window_s, seed, replication,
                         failback)
        log = getattr(lab.controller, "log_path", None)  # None: a controller of the user's
        log_start = log.stat().st_size if log and log.exists() else 0
        try:
            run.start()
            setup["databases_s"] = round(run.db_start_s, 3)
            write_json(out / "setup.json", setup)
            result.cells = run.cells(chosen, list(strategies))
        finally:
            run.stop()
            if log and log.exists():
                _keep_controller_events(log, log_start, out / "controller-events.log")
    setup["teardown_s"] = round(lab.timing.teardown_s, 3)
    result.seconds = time.monotonic() - t_start
    setup["total_s"] = round(result.seconds, 3)
    write_json(out / "setup.json", setup)
    return result


def _keep_controller_events(log: Path, start: int, dest: Path) -> None:
    """The lab controller's own lines (not os-ken's, not debug) from byte `start` of its log."""
    with open(log, "rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    atomic_write(dest, "".join(line + "\n" for line in lines
                               if " HybridLabApp " in line and " DEBUG " not in line))
