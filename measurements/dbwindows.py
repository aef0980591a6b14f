"""The database windows of `lab compare`: quiet, and planned the way `lab bench db` plans.

Why: run beside the probes (and the writers), the placements' requests measured the lab's
own CPU load on 2 cores more than the network: an Outpost's indexed read read 1.9-4.9 ms p50
in the comparison where `lab bench db` read 0.48 ms on the same path. So a cell stops its
probes and writers before a window (measurements/cells.py), and the window runs its work in
the phases of `plan_phases` (a near placement alone, the far ones at once), from the model's
round trip to the server each placement reads from. The primary's host also runs the page on
its own address, unrecorded by any network: the server time of the model check (page =
N x RTT + server time, measurements/report/results.py).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

from lab.files import open_append
from measurements.dbbench import placements_of
from measurements.dbresults import Placement
from measurements.dbworkload import DbBenchError, DbWorkload

DB_OPERATIONS = ("connect", "read", "page")
# After a failure the workload reads only: connections are what the services' probes measure
# all along (every SERVICE_INTERVAL_S, through the failure), and a page is PAGE_QUERIES
# reads on the same path. It is most of a failure cell's time otherwise (12 s of 20 in
# dc-failure: each far placement's samples follow one another at 60-70 ms round trips).
AFTER_OPERATIONS = ("read",)
SERVER_OPERATIONS = ("read", "page")
SERVER_PHASE = "server"  # the primary's own requests on its own address (db.csv's phase)
PAGE_QUERIES = 5
DB_FIELDS = ("scenario", "strategy", "phase", "placement", "site", "kind", "operation",
             "start_time", "latency_ms", "ok")


class DbWindows:
    """The comparison's database windows, each appended to db.csv as it ends.

    read_address: {host, port, dbname, user}, where the placements send every request (the
    read address: the strategy maps it to a server). A window's start and end go in the
    cell's record ("db_phases"), and whether the emulator kept up in it ("db_health")."""

    def __init__(self, lab, dbs, read_address: dict, pool, samples: int, progress, health,
                 out: Path):
        self.lab, self.dbs, self.read_address, self.pool = lab, dbs, read_address, pool
        self.samples, self.progress, self.health, self.out = samples, progress, health, out
        self.topo = lab.topology

    def measure(self, cell: tuple[str, str], phase: str, skip: list[str], record: dict,
                operations: tuple[str, ...], rtt_ms: dict[str, float | None],
                server_time: bool = False) -> int:
        """One window: `operations` from every placement not in `skip`, through the read
        address; with server_time, the primary's own read and page first. rtt_ms: the
        model's round trip from each placement to the server it reads from (None: no path).
        The number of samples written; a workload that failed is noted, its window empty."""
        mark = self.health.mark()
        record.setdefault("db_phases", []).append([time.time(), None])
        places = [p for p in placements_of(self.topo) if p.host not in skip]
        task = self.progress.task(f"database {phase}",
                                  total=(len(places) * len(operations)
                                         + server_time * len(SERVER_OPERATIONS)) * self.samples)
        rows: list[list] = []
        try:
            if server_time:
                rows += self._server(cell, task)
            rows += self._placements(cell, phase, places, operations, rtt_ms, task)
        except DbBenchError as exc:
            self.progress.note(f"{cell[0]} / {cell[1]} ({phase}): {exc}")
        finally:
            self.progress.done(task)
            record["db_phases"][-1][1] = time.time()
            record.setdefault("db_health", []).append(self.health.block(mark, self.health.mark()))
        self._append(rows)
        return len(rows)

    def _placements(self, cell, phase: str, places: list[Placement], operations, rtt_ms,
                    task: int) -> list[list]:
        workload = DbWorkload(self.lab, self.dbs, self.samples, PAGE_QUERIES, None, 1, 0,
                              self.progress, through=self.read_address, pool=self.pool)
        rtt = {p.host: math.inf if rtt_ms.get(p.host) is None else rtt_ms[p.host]
               for p in places}
        found = workload.run_phases({p.host: list(operations) for p in places},
                                    {p.host: p for p in places}, rtt, {}, task)
        return _rows(cell, phase, {p.host: p for p in places}, found)

    def _server(self, cell, task: int) -> list[list]:
        """The primary's read and page on its own address (its own host, one stream)."""
        primary = self.dbs.primary
        place = Placement(primary.name, self.topo.hosts[primary.name].site, "db-host")
        workload = DbWorkload(self.lab, self.dbs, self.samples, PAGE_QUERIES, None, 1, 0,
                              self.progress, pool=self.pool)
        found = workload.workloads([place], {place.host: list(SERVER_OPERATIONS)},
                                   {place.host: 1}, task)
        return _rows(cell, SERVER_PHASE, {place.host: place}, found)

    def _append(self, rows: list[list]) -> None:
        path = self.out / "db.csv"
        new = not path.exists()
        with open_append(path, newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(DB_FIELDS)
            writer.writerows(rows)


def _rows(cell: tuple[str, str], phase: str, where: dict[str, Placement],
          found: dict) -> list[list]:
    return [[cell[0], cell[1], phase, s.placement, where[s.placement].site,
             where[s.placement].kind, s.operation, f"{s.start_time:.6f}",
             f"{s.latency_ms:.4f}", int(s.ok)]
            for samples in found.values() for s in samples]
