"""Every number of a comparison's report, from its raw records (results.json holds them).

Definitions used throughout:
- client latency: one request from a clinic client to the app service's virtual address
  (new TCP connection + request + answer), successful requests only;
- failed share: failed requests / requests sent, over the whole cell;
- outage: for each source, the longest run of failed requests sent between the failure and
  one request timeout before the repair (a request still waiting at the repair could fail
  from the failback), from the first failed request's send time to the send time of the next
  successful one (0 if none failed; None if it never recovered before the repair); a cell's
  outage is the largest over its sources. Its resolution is the probe interval;
- latency percentiles leave out the requests sent while the database workload ran (it loads
  both cores of the machine; the cell's "db_phases"); failures and outages count them all.
  (Runs since the database windows are quiet, measurements/dbwindows.py, send none then.)
- model check: a placement's page of N queries before the failure against N x the model's
  round trip to the server it reads from (plus the calibrated host -> switch -> host round
  trip, which no link holds) + the primary's own page on its own address (the "server"
  phase), as `lab bench db` checks it with its pings (measurements/dbresults.py);
- after failure: successful requests sent between the failure and the repair. (Failed
  requests after the repair, while traffic moves back, still count in the failed share.)
- writes (cells with a failure): each service and monolith host writes a transaction
  through the write address ("db-write", always the current primary) every few hundred ms;
  the write outage is taken over the writers whose last write before the failure succeeded;
  "read-only" counts writes a standby refused (none is expected: the write address never
  leads to a standby);
- disaster recovery ("dr"): lost writes, RPO, RTO, split-brain writes and the fail-back, from
  the writers' ledgers and the surviving primary's (measurements/ledger.py,
  measurements/report/recovery.py);
- dropped connection attempts: those the database hosts' kernels dropped because
  PostgreSQL did not accept them fast enough (accept queue full): the emulation host was
  too loaded for the run, and the failures they caused say nothing about the network;
- promotion: from the failure to the failover manager's pg_promote() returning, from its
  own record (the standby's host shares the machine's clock); negative when the standby was
  promoted before the failure, "while up" in a cell without a failure: a false failover (the
  manager missed checks of a primary that was up).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from measurements.dbresults import RTT_OPERATION, model_check
from measurements.dbwindows import SERVER_PHASE
from measurements.report import congestion
from measurements.report.findings import findings
from measurements.report.raw import quiet
from measurements.report.recovery import recovery
from measurements.stats import summarize


def stats(values: list[float]) -> dict:
    s = summarize(values)
    return {"n": s.n, "p50_ms": s.p50_ms, "p95_ms": s.p95_ms, "p99_ms": s.p99_ms,
            "ci95_low_ms": s.ci95_low_ms, "ci95_high_ms": s.ci95_high_ms}


def outage_ms(requests: list[dict], since: float, until: float | None = None) -> float | None:
    """Longest run of failed requests sent in [since, until) (see the module docstring)."""
    best, run_start = 0.0, None
    for r in sorted(requests, key=lambda r: r["start"]):
        if r["start"] < since or (until is not None and r["start"] >= until):
            continue
        if not r["ok"]:
            if run_start is None:
                run_start = r["start"]
        elif run_start is not None:
            best = max(best, (r["start"] - run_start) * 1000)
            run_start = None
    return None if run_start is not None else best


def _max_outage(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else max(values, default=0.0)


def _group_stats(requests: list[dict], failure: float | None,
                 repair: float | None = None, cut_off: frozenset = frozenset(),
                 busy: list = ()) -> dict:
    """Percentiles (outside the busy windows), failed share, and the outage over the
    sources not cut off themselves."""
    ok = [r["latency_ms"] for r in requests if r["ok"] and quiet(r, busy)]
    row = {**stats(ok), "requests": len(requests),
           "failed": sum(not r["ok"] for r in requests)}
    row["failed_pct"] = 100.0 * row["failed"] / row["requests"] if requests else None
    if failure is not None:
        by_src = defaultdict(list)
        for r in requests:
            if r["src"] not in cut_off:  # a host in an isolated site has no way around
                by_src[r["src"]].append(r)
        outages = {src: outage_ms(rs, failure, repair) for src, rs in by_src.items()}
        row["outage_ms"] = _max_outage(list(outages.values()))
        row["sources_interrupted"] = sum(1 for v in outages.values() if v != 0.0)
        after = [r["latency_ms"] for r in requests if r["ok"] and r["start"] >= failure
                 and (repair is None or r["start"] < repair) and quiet(r, busy)]
        row["after_p50_ms"] = stats(after)["p50_ms"]
    else:
        row["outage_ms"] = None
        row["sources_interrupted"] = 0
        row["after_p50_ms"] = None
    return row


def _writes(writes: list[dict], failure: float | None, repair: float | None,
            cut_off: frozenset, busy: list) -> dict:
    """Write stats; the outage only over writers that wrote successfully before the failure."""
    refused = set(cut_off)
    if failure is not None:
        for src in {r["src"] for r in writes}:
            before = [r for r in writes if r["src"] == src and r["start"] < failure]
            if not before or not max(before, key=lambda r: r["start"])["ok"]:
                refused.add(src)
    row = _group_stats(writes, failure, repair, frozenset(refused), busy)
    row["read_only"] = sum(1 for r in writes if not r["ok"] and "read-only" in (r["error"] or ""))
    row["writers_measured"] = len({r["src"] for r in writes} - refused)
    return row


def compute(raw: dict) -> dict:
    """Every number of the report, from the raw records."""
    setup = raw["setup"]
    by_cell = defaultdict(list)
    for r in raw["requests"]:
        by_cell[(r["scenario"], r["strategy"])].append(r)
    db_by_cell = defaultdict(list)
    for r in raw["db"]:
        db_by_cell[(r["scenario"], r["strategy"])].append(r)
    # A failure cell of a run with a healthy scenario has no "before" phase of its own: the
    # healthy cell of its strategy measured that network (measurements/cells.py).
    healthy = {c["strategy"]: c["scenario"] for c in raw["cells"]
               if not c.get("links_cut") and not c.get("scheduled")}
    cells = []
    for cell in raw["cells"]:
        key = (cell["scenario"], cell["strategy"])
        db = db_by_cell.get(key, [])
        before_from = None if _reads(db, "before") else healthy.get(cell["strategy"])
        before = _reads(db_by_cell.get((before_from, cell["strategy"]), []), "before") \
            if before_from else []
        cells.append(_cell(cell, by_cell.get(key, []), db, setup, before, before_from))
    results = {"setup": setup, "cells": cells, "congestion": congestion.compute(raw)}
    results["findings"] = findings(results)
    return results


def _reads(db: list[dict], phase: str) -> list[float]:
    """The successful reads' latencies of one phase."""
    return [r["latency_ms"] for r in db if r["ok"] and r["phase"] == phase
            and r["operation"] == "read"]


def _cell(cell: dict, reqs: list[dict], db: list[dict], setup: dict,
          before_elsewhere: list[float], before_from: str | None) -> dict:
    """One (scenario, strategy) cell's numbers, from its requests and database samples; the
    reads before its failure from the healthy cell `before_from` where it measured none."""
    failure, repair = cell.get("failure"), cell.get("repair")
    if repair is not None:
        # A request still waiting at the repair cannot be told from the failback: the
        # outage window ends one request timeout before the repair.
        repair -= setup["settings"]["request_timeout_s"]
    busy = cell.get("db_phases", [])
    clients = [r for r in reqs if r["kind"] == "client"]
    services = [r for r in reqs if r["kind"] == "service"]
    writes = [r for r in reqs if r["kind"] == "writer"]
    cut_off = frozenset(cell.get("cut_off_hosts", ()))
    db_before = _reads(db, "before") or before_elsewhere
    placements = _placements(db)
    no_data = cell.get("no_data", {})
    return {"scenario": cell["scenario"], "strategy": cell["strategy"],
            "failure": failure, "links_cut": cell.get("links_cut", []),
            "invalid": cell.get("invalid"),
            "clients": _missing(_group_stats(clients, failure, repair, busy=busy),
                                no_data.get("client")),
            "services": _missing(_group_stats(services, failure, repair, cut_off, busy),
                                 no_data.get("service")),
            "writes": _missing(_writes(writes, failure, repair, cut_off, busy),
                               _writers_missing(no_data.get("writers"))),
            "dr": recovery(cell, writes, setup["settings"].get("replication", "async")),
            "promotion_ms": _promotion_ms(cell),
            "false_failover": _false_failover(cell),
            "db_listen_drops": cell.get("db_listen_drops", {}),
            "db_read": stats(db_before),
            "db_read_from": before_from or cell["scenario"],
            "db_errors": sum(not r["ok"] for r in db),
            "regions": _regions(clients, failure, repair, busy, setup),
            "placements": placements,
            "model_check": _model_check(placements, cell, setup),
            "db_health": cell.get("db_health"),
            "service_p50_ms": {src: stats([r["latency_ms"] for r in services
                                           if r["src"] == src and r["ok"]
                                           and quiet(r, busy)])["p50_ms"]
                               for src in dict.fromkeys(r["src"] for r in services)},
            "expected_rtt_ms": cell.get("expected_rtt_ms"),
            "health": _health(cell.get("health"), cell.get("db_health") or [], reqs, db),
            "cpu": cell.get("cpu")}


def _health(health: dict | None, db_health: list[dict], reqs: list[dict],
            db: list[dict]) -> dict | None:
    """The cell's emulator health (lab/health.py), with how many of its samples were taken
    in a second when the emulator did not keep up (flagged, kept: the figures say so); the
    database samples by their own windows' health."""
    if health is None:
        return None
    spans = health.get("unhealthy_spans", []) + [
        span for block in db_health for span in block.get("unhealthy_spans", [])]

    def flagged(times: list[float]) -> int:
        return sum(1 for t in times if any(a <= t < b for a, b in spans))

    return {**health, "flagged": {
        kind: flagged([r["start"] for r in reqs if r["kind"] == kind])
        for kind in ("client", "service", "writer")} | {
        "db": flagged([r["start_time"] for r in db])}}


def _missing(row: dict, why: str | None) -> dict:
    """A group whose probe measured nothing (or too little): no failed share and no outage,
    so that it reads as no data, never as no failure."""
    if why is None:
        return row
    return {**row, "no_data": why, "failed_pct": None, "outage_ms": None,
            "sources_interrupted": None}


def _writers_missing(writers: dict | None) -> str | None:
    if not writers:
        return None
    return "; ".join(f"{host}'s writer {how}" for host, how in writers.items())


def _regions(clients: list[dict], failure: float | None, repair: float | None, busy: list,
             setup: dict) -> list[dict]:
    """Per clinic client, in the topology's host order: the endpoint that served most of its
    requests before the failure and after it, and its own statistics."""
    sites = {s["name"]: s for s in setup["topology"]["sites"]}
    hosts = {h["name"]: h for h in setup["topology"]["hosts"]}
    regions = []
    for src in sorted({r["src"] for r in clients}, key=lambda h: list(hosts).index(h)):
        mine = [r for r in clients if r["src"] == src]
        before = Counter(r["served_by"] for r in mine if r["ok"]
                         and (failure is None or r["start"] < failure))
        after = Counter(r["served_by"] for r in mine if r["ok"] and failure is not None
                        and failure <= r["start"] < (repair or float("inf")))
        site = hosts[src]["site"]
        regions.append({"client": src, "site": site, "label": sites[site]["label"],
                        "served_by": before.most_common(1)[0][0] if before else None,
                        "served_by_after": after.most_common(1)[0][0] if after else None,
                        **_group_stats(mine, failure, repair, busy=busy)})
    return regions


def _placements(db: list[dict]) -> list[dict]:
    """Database statistics per placement, operation and phase, in the order first seen."""
    placements = []
    for placement in dict.fromkeys(r["placement"] for r in db):
        for op in dict.fromkeys(r["operation"] for r in db if r["placement"] == placement):
            for phase in dict.fromkeys(r["phase"] for r in db):
                rows = [r for r in db if r["placement"] == placement
                        and r["operation"] == op and r["phase"] == phase]
                if not rows:
                    continue
                placements.append({"placement": placement, "site": rows[0]["site"],
                                   "kind": rows[0]["kind"], "operation": op, "phase": phase,
                                   "errors": sum(not r["ok"] for r in rows),
                                   **stats([r["latency_ms"] for r in rows if r["ok"]])})
    return placements


def _model_check(placements: list[dict], cell: dict, setup: dict) -> list[dict]:
    """Each placement's page before the failure against the model (none without the
    primary's own page: runs before the server phase, or a cell with no "before" window)."""
    server = next((p["placement"] for p in placements if p["phase"] == SERVER_PHASE
                   and p["operation"] == "page" and p["p50_ms"] is not None), None)
    rtt = (cell.get("expected_rtt_ms") or {}).get("db") or {}
    # The model's round trip leaves out host -> switch -> host, which calibration measured.
    access = (setup.get("calibration") or {}).get("access_rtt_ms") or 0.0
    if server is None:
        return []
    before = [p for p in placements if p["phase"] == "before"]
    where = {p["placement"]: p for p in before}
    summary = [p for p in placements if p["phase"] == SERVER_PHASE] + before + [
        {"placement": host, "operation": RTT_OPERATION, "p50_ms": ms + access,
         "site": where[host]["site"], "kind": where[host]["kind"]}
        for host, ms in rtt.items() if host in where and ms is not None]
    return model_check(summary, setup["settings"]["page_queries"], server)


def _promotion_ms(cell: dict) -> float | None:
    promotion, failure = cell.get("promotion"), cell.get("failure")
    if not promotion or failure is None:
        return None
    return round((promotion["promoted"] - failure) * 1000, 1)


def _false_failover(cell: dict) -> bool:
    """The standby was promoted while the primary was up: with no failure, or before it."""
    promotion, failure = cell.get("promotion"), cell.get("failure")
    return bool(promotion) and (failure is None or promotion["promoted"] < failure)
