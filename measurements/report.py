"""`lab report DIR`: the comparison's report, recomputed from its raw files alone (no lab).

Reads what measurements/compare.py wrote (setup.json, cells.jsonl, requests.jsonl, db.csv)
and writes report.md (setup, one table per scenario, sentences generated from the numbers),
results.json (the same numbers) and the PNG plots (measurements/plots.py).

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
  both cores of the machine; the cell's "db_phases"); failures and outages count them all;
- after failure: successful requests sent between the failure and the repair. (Failed
  requests after the repair, while traffic moves back, still count in the failed share.)
- writes (cells with a failure): each service and monolith host writes a transaction
  through the db service's address every few hundred ms; the write outage is taken over the writers whose last write
  before the failure succeeded (a writer sent to the read-only standby has no outage to
  measure: its refusals count as failed writes); "read-only" counts refused writes;
- dropped connection attempts: those the database hosts' kernels dropped because
  PostgreSQL did not accept them fast enough (accept queue full): the emulation host was
  too loaded for the run, and the failures they caused say nothing about the network;
- promotion: from the failure to the failover manager's pg_promote() returning, from its
  own record (the standby's host shares the machine's clock); negative when the standby was
  promoted before the failure, "while up" in a cell without a failure: a false failover (the
  manager missed checks of a primary that was up).
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

from measurements.stats import summarize

REPORT_FILES = ("report.md", "results.json")
MODEL_DIFF_MS = 0.5  # expected round trips closer than this count as the same
FALSE_FAILOVER = "a false failover: its manager missed checks of a primary that was up"


class ReportError(ValueError):
    """The directory does not hold a comparison's raw files; the message says what is missing."""


# -- reading -----------------------------------------------------------------------------------

def load_raw(out_dir: str | Path) -> dict:
    out = Path(out_dir)
    missing = [n for n in ("setup.json", "cells.jsonl", "requests.jsonl") if not (out / n).exists()]
    if missing:
        raise ReportError(f"{out}: not a comparison's directory (missing {', '.join(missing)})")
    cells = [json.loads(line) for line in open(out / "cells.jsonl") if line.strip()]
    requests = [json.loads(line) for line in open(out / "requests.jsonl") if line.strip()]
    db = []
    if (out / "db.csv").exists():
        with open(out / "db.csv", newline="") as f:
            for row in csv.DictReader(f):
                row["start_time"] = float(row["start_time"])
                row["latency_ms"] = float(row["latency_ms"])
                row["ok"] = row["ok"] == "1"
                db.append(row)
    return {"setup": json.loads((out / "setup.json").read_text()), "cells": cells,
            "requests": requests, "db": db}


# -- numbers ---------------------------------------------------------------------------------

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


def quiet(request: dict, busy: list) -> bool:
    """Sent outside every busy window (the database workload's [start, end])."""
    return not any(start <= request["start"] < (end or float("inf")) for start, end in busy)


def busy_windows(raw: dict) -> dict[tuple[str, str], list]:
    """(scenario, strategy) -> its cell's database-workload windows."""
    return {(c["scenario"], c["strategy"]): c.get("db_phases", []) for c in raw["cells"]}


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
    sites = {s["name"]: s for s in setup["topology"]["sites"]}
    hosts = {h["name"]: h for h in setup["topology"]["hosts"]}
    by_cell = defaultdict(list)
    for r in raw["requests"]:
        by_cell[(r["scenario"], r["strategy"])].append(r)
    db_by_cell = defaultdict(list)
    for r in raw["db"]:
        db_by_cell[(r["scenario"], r["strategy"])].append(r)
    cells = []
    for cell in raw["cells"]:
        key = (cell["scenario"], cell["strategy"])
        failure, repair = cell.get("failure"), cell.get("repair")
        if repair is not None:
            # A request still waiting at the repair cannot be told from the failback: the
            # outage window ends one request timeout before the repair.
            repair -= setup["settings"]["request_timeout_s"]
        reqs = by_cell.get(key, [])
        busy = cell.get("db_phases", [])
        clients = [r for r in reqs if r["kind"] == "client"]
        services = [r for r in reqs if r["kind"] == "service"]
        writes = [r for r in reqs if r["kind"] == "writer"]
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
        placements = []
        db = db_by_cell.get(key, [])
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
        db_before = [r["latency_ms"] for r in db if r["ok"] and r["phase"] == "before"
                     and r["operation"] == "read"]
        cells.append({"scenario": cell["scenario"], "strategy": cell["strategy"],
                      "failure": failure, "links_cut": cell.get("links_cut", []),
                      "clients": _group_stats(clients, failure, repair, busy=busy),
                      "services": _group_stats(services, failure, repair,
                                               frozenset(cell.get("cut_off_hosts", ())), busy),
                      "writes": _writes(writes, failure, repair,
                                        frozenset(cell.get("cut_off_hosts", ())), busy),
                      "promotion_ms": _promotion_ms(cell),
                      "false_failover": _false_failover(cell),
                      "db_listen_drops": cell.get("db_listen_drops", {}),
                      "db_read": stats(db_before),
                      "db_errors": sum(not r["ok"] for r in db),
                      "regions": regions, "placements": placements,
                      "service_p50_ms": {src: stats([r["latency_ms"] for r in services
                                                     if r["src"] == src and r["ok"]
                                                     and quiet(r, busy)])["p50_ms"]
                                         for src in dict.fromkeys(r["src"] for r in services)},
                      "expected_rtt_ms": cell.get("expected_rtt_ms")})
    results = {"setup": setup, "cells": cells}
    results["findings"] = findings(results)
    return results


def _promotion_ms(cell: dict) -> float | None:
    promotion, failure = cell.get("promotion"), cell.get("failure")
    if not promotion or failure is None:
        return None
    return round((promotion["promoted"] - failure) * 1000, 1)


def _false_failover(cell: dict) -> bool:
    """The standby was promoted while the primary was up: with no failure, or before it."""
    promotion, failure = cell.get("promotion"), cell.get("failure")
    return bool(promotion) and (failure is None or promotion["promoted"] < failure)


def _promoted(cell: dict) -> str:
    """The "promoted after" column: ms after the failure, or "while up" with no failure."""
    if cell["false_failover"] and cell["failure"] is None:
        return "while up"
    return _f(cell["promotion_ms"], 0)


# -- sentences -------------------------------------------------------------------------------

def _kind_of(host: str | None, setup: dict) -> str:
    hosts = {h["name"]: h for h in setup["topology"]["hosts"]}
    sites = {s["name"]: s for s in setup["topology"]["sites"]}
    if host not in hosts:
        return "nothing"
    return sites[hosts[host]["site"]]["kind"]


def _served(cell: dict, setup: dict) -> str:
    kinds = Counter(_kind_of(r["served_by"], setup) for r in cell["regions"])
    return ", ".join(f"{n} by a {k}" for k, n in kinds.most_common())


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _measured(cell: dict, service: str, consumer: str) -> float | None:
    """The measured p50 behind an expected round trip: a clinic's request to the app
    address, a service's TCP connect to the db address (outside the database workload)."""
    if service == "app":
        found = [r["p50_ms"] for r in cell["regions"] if r["client"] == consumer]
        return found[0] if found else None
    return cell["service_p50_ms"].get(consumer)


def expected_differences(base: dict, other: dict) -> tuple[list[dict], int]:
    """Consumers whose expected round trip differs between two strategies' cells, with what
    was measured; and how many were expected to be the same."""
    differ, same = [], 0
    for service, consumers in (other.get("expected_rtt_ms") or {}).items():
        for consumer, rtt in consumers.items():
            ref = (base.get("expected_rtt_ms") or {}).get(service, {}).get(consumer)
            if rtt is None or ref is None:
                continue
            if abs(rtt - ref) <= MODEL_DIFF_MS:
                same += 1
                continue
            differ.append({"service": service, "consumer": consumer, "expected_base_ms": ref,
                           "expected_ms": rtt, "measured_base_ms": _measured(base, service, consumer),
                           "measured_ms": _measured(other, service, consumer)})
    return differ, same


def model_findings(cells: list[dict]) -> list[str]:
    """Where the model says a strategy should beat hops (or lose to it), what was measured."""
    base = next((c for c in cells if c["strategy"] == "hops"), None)
    out = []
    for cell in cells:
        if base is None or cell is base or cell["strategy"] == "primary-standby":
            continue
        differ, same = expected_differences(base, cell)
        if not differ and not same:
            continue
        if not differ:
            out.append(f"{cell['scenario']}, {cell['strategy']} vs hops: the model expects no "
                       f"difference here (same endpoint and round trip for all {same} "
                       f"consumers).")
            continue
        agree = sum(1 for d in differ if d["measured_ms"] is not None
                    and d["measured_base_ms"] is not None
                    and (d["measured_ms"] < d["measured_base_ms"])
                    == (d["expected_ms"] < d["expected_base_ms"]))
        parts = [f"{d['service']} from {d['consumer']}: expected {d['expected_ms']:.1f} vs "
                 f"{d['expected_base_ms']:.1f} ms, measured p50 {_ms(d['measured_ms'])} vs "
                 f"{_ms(d['measured_base_ms'])}" for d in differ]
        out.append(f"{cell['scenario']}, {cell['strategy']} vs hops, where the model expects "
                   f"a difference ({len(differ)} of {len(differ) + same} consumers; round "
                   f"trips along the installed paths; measured: a clinic's request, a "
                   f"service's TCP connect to the db address): " + "; ".join(parts)
                   + f". Measured in the expected order for {agree} of {len(differ)}; the "
                   f"other {same} consumers get the same endpoint and round trip.")
    return out


def findings(results: dict) -> list[str]:
    """A few sentences per scenario, each stating a comparison the table shows."""
    setup = results["setup"]
    out = []
    scenarios = list(dict.fromkeys(c["scenario"] for c in results["cells"]))
    for scenario in scenarios:
        cells = [c for c in results["cells"] if c["scenario"] == scenario]
        timed = [c for c in cells if c["clients"]["p50_ms"] is not None]
        if not timed:
            out.append(f"{scenario}: no client request succeeded.")
            continue
        best = min(timed, key=lambda c: c["clients"]["p50_ms"])
        worst = max(timed, key=lambda c: c["clients"]["p50_ms"])
        text = (f"{scenario}: {best['strategy']} gives the clinics the lowest median latency "
                f"({_ms(best['clients']['p50_ms'])}, p99 {_ms(best['clients']['p99_ms'])})")
        if worst is not best:
            text += (f", {worst['strategy']} the highest ({_ms(worst['clients']['p50_ms'])}): "
                     f"with {best['strategy']} the {len(best['regions'])} clinics are served "
                     f"{_served(best, setup)}; with {worst['strategy']} {_served(worst, setup)}")
        out.append(text + ".")
        out += model_findings([c for c in cells if c["failure"] is None])
        for c in cells:
            dropped = {host: n for host, n in c["db_listen_drops"].items() if n}
            if dropped:
                out.append(f"{scenario}, {c['strategy']}: the database hosts' kernels dropped "
                           + ", ".join(f"{n} connection attempts to {host}"
                                       for host, n in dropped.items())
                           + " (PostgreSQL did not accept them fast enough: the machine running "
                           "the lab was too loaded; failures then are not the network's).")
        unprompted = [c["strategy"] for c in cells if c["false_failover"] and c["failure"] is None]
        if unprompted:
            out.append(f"{scenario}: the standby was promoted while the primary was up "
                       f"({FALSE_FAILOVER}) with {', '.join(unprompted)}.")
        refused = [c for c in cells if c["writes"]["read_only"]]
        if refused:
            out.append(f"{scenario}: writes refused by the read-only standby (the db address "
                       f"sends some services to the nearer standby): " + "; ".join(
                           f"{c['strategy']} {100 * c['writes']['read_only'] / c['writes']['requests']:.0f} %"
                           for c in refused) + "; " + (", ".join(
                           c["strategy"] for c in cells if c not in refused) or "none")
                       + " sent every write to the primary.")
        if any(c["failure"] is not None for c in cells):
            def key(c):
                o = c["clients"]["outage_ms"]
                return (o is None, o if o is not None else 0, c["clients"]["failed_pct"] or 0)
            ranked = sorted(cells, key=key)
            parts = []
            for c in ranked:
                o = c["clients"]["outage_ms"]
                desc = "never recovered" if o is None else (
                    "no client request failed" if o == 0 and not c["clients"]["failed"]
                    else f"longest client outage {o:.0f} ms "
                         f"({c['clients']['sources_interrupted']} of {len(c['regions'])} clinics "
                         f"interrupted, {c['clients']['failed_pct']:.1f} % of requests failed)")
                moved = sum(1 for r in c["regions"] if r["served_by_after"]
                            and r["served_by_after"] != r["served_by"])
                if moved:
                    desc += f", {moved} clinic(s) moved to another endpoint"
                parts.append(f"{c['strategy']}: {desc}")
            out.append(f"{scenario}, availability: " + "; ".join(parts) + ".")
            wr = [c for c in cells if c["writes"]["requests"]]
            if wr:
                parts = []
                for c in wr:
                    w = c["writes"]
                    desc = (f"write outage {_ms(w['outage_ms'])} over {w['writers_measured']} "
                            f"writer(s)" if w["writers_measured"] else "no writer wrote before")
                    promotion = c["promotion_ms"]
                    if promotion is not None and promotion < 0:
                        desc += (f", standby promoted {-promotion / 1000:.1f} s before the "
                                 f"failure ({FALSE_FAILOVER})")
                    elif promotion is not None:
                        desc += f", standby promoted {promotion:.0f} ms after the failure"
                    parts.append(f"{c['strategy']}: {desc}")
                out.append(f"{scenario}, writes through the db address: " + "; ".join(parts)
                           + ".")
            svc = [c for c in cells if c["services"]["requests"]]
            if svc:
                s_best = min(svc, key=lambda c: (c["services"]["outage_ms"] is None,
                                                 c["services"]["outage_ms"] or 0))
                out.append(f"{scenario}, services reaching the database: the shortest outage "
                           f"is with {s_best['strategy']} "
                           f"({_ms(s_best['services']['outage_ms'])}); "
                           + "; ".join(f"{c['strategy']} {_ms(c['services']['outage_ms'])}"
                                       for c in svc if c is not s_best) + ".")
    return out


# -- writing ---------------------------------------------------------------------------------

def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _outage(row: dict, failure) -> str:
    if failure is None:
        return "-"
    return "not recovered" if row["outage_ms"] is None else f"{row['outage_ms']:.0f}"


def _write_outage(cell: dict) -> str:
    if cell["failure"] is not None and not cell["writes"]["writers_measured"]:
        return "no writer"
    return _outage(cell["writes"], cell["failure"])


def render_markdown(results: dict) -> str:
    setup = results["setup"]
    topo = setup["topology"]
    st = setup["settings"]
    lines = [f"# Strategy comparison: {topo['name']}", "",
             topo.get("description", ""), "",
             "## Setup", "",
             f"- Link emulation: **{setup.get('links_backend')}**, Open vSwitch datapath "
             f"**{setup.get('datapath')}**, controller **{setup.get('controller')}**.",
             f"- Strategies: {', '.join(setup['strategies'])}.",
             f"- Clients: each clinic opens a new TCP connection to the app service's virtual "
             f"address every {st['client_interval_s'] * 1000:g} ms and sends one request "
             f"(latency = connect + request + answer; failed = no answer within "
             f"{st['request_timeout_s']:g} s). Services: each service and monolith host "
             f"connects to the db service's virtual address every "
             f"{st['service_interval_s'] * 1000:g} ms. Outage = longest run of failed "
             f"requests after the failure, per source, largest over sources (resolution: "
             f"the probe interval). Writes (in the cells with a failure): each service and "
             f"monolith host writes a "
             f"transaction through the db service's virtual address every "
             f"{st.get('writer_interval_s', 0) * 1000:g} ms; a failover manager next to the "
             f"standby promotes it after {st.get('failover', {}).get('misses', '-')} failed "
             f"checks of the primary in a row, "
             f"{st.get('failover', {}).get('interval_s', 0) * 1000:g} ms apart, "
             f"{st.get('failover', {}).get('timeout_s', 0) * 1000:g} ms to answer (after a "
             f"promotion the standby is re-seeded from the primary).",
             f"- Database: dbbench's connect, read and page ({st['page_queries']} queries) "
             f"from every placement through the db virtual address, {st['samples']} of each "
             f"per placement and phase.",
             f"- Run: bring-up {_f(setup.get('bring_up_s'))} s, total {_f(setup.get('total_s'))} s.",
             "", "Versions: " + ", ".join(f"{k} {v}" for k, v in setup["versions"].items()), "",
             "### Scenarios", ""]
    lines += [f"- **{s['name']}**: {s['description']}" for s in setup["scenarios"]]
    lines += ["", "### Links (one-way delay; a round trip sees it twice)", "",
              "| link | class | km | delay ms | source |", "|---|---|---:|---:|---|"]
    for link in topo["links"]:
        lines.append(f"| {link['a']}-{link['b']} | {link['class']} | {link['distance_km']:.0f} "
                     f"| {link['delay_ms']:.3f} | {link['source'].replace('|', '/')} |")
    cal = setup.get("calibration")
    if cal:
        worst = max((l["uncompensated_ms"] for l in cal["links"]), default=0.0)
        lines += ["", f"Calibration: host-switch-host round trip {cal['access_rtt_ms']:.3f} ms; "
                      f"largest per-link residual the lab could not remove: {worst:.3f} ms."]
    lines += ["", "## Findings", ""] + [f"- {s}" for s in results["findings"]]
    for scenario in dict.fromkeys(c["scenario"] for c in results["cells"]):
        cells = [c for c in results["cells"] if c["scenario"] == scenario]
        lines += ["", f"## {scenario}", "",
                  "Client latency in ms (all clinics); outage in ms; DB read: median of the "
                  "placements' indexed reads before any failure.", "",
                  "| strategy | p50 | p95 | p99 | failed % | client outage | clinics interrupted "
                  "| p50 after failure | service outage | DB read p50 | writes failed % "
                  "| write outage | promoted after |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in cells:
            cl, sv = c["clients"], c["services"]
            lines.append(f"| {c['strategy']} | {_f(cl['p50_ms'])} | {_f(cl['p95_ms'])} | "
                         f"{_f(cl['p99_ms'])} | {_f(cl['failed_pct'], 2)} | "
                         f"{_outage(cl, c['failure'])} | "
                         f"{cl['sources_interrupted'] if c['failure'] else '-'} | "
                         f"{_f(cl['after_p50_ms'])} | {_outage(sv, c['failure'])} | "
                         f"{_f(c['db_read']['p50_ms'], 2)} | {_f(c['writes']['failed_pct'], 1)} | "
                         f"{_write_outage(c)} | {_promoted(c)} |")
        lines += ["", "Per client region: p50 / p95 / p99 ms (endpoint serving it"
                      + (", -> after the failure" if cells[0]["failure"] else "") + ")", "",
                  "| clinic | " + " | ".join(c["strategy"] for c in cells) + " |",
                  "|---|" + "---:|" * len(cells)]
        for i, region in enumerate(cells[0]["regions"]):
            row = [f"{region['client']} ({region['label'] or region['site']})"]
            for c in cells:
                r = next((x for x in c["regions"] if x["client"] == region["client"]), None)
                if r is None:
                    row.append("-")
                    continue
                served = r["served_by"] or "-"
                if c["failure"] and r["served_by_after"] != r["served_by"]:
                    served += f" -> {r['served_by_after'] or 'none'}"
                row.append(f"{_f(r['p50_ms'])} / {_f(r['p95_ms'])} / {_f(r['p99_ms'])} ({served})")
            lines.append("| " + " | ".join(row) + " |")
        ops = [("read", "before"), ("page", "before")] + (
            [("read", "after")] if cells[0]["failure"] else [])
        lines += ["", "Per placement: database p50 ms [bootstrap 95 % CI of the median]", "",
                  "| placement | op | phase | " + " | ".join(c["strategy"] for c in cells) + " |",
                  "|---|---|---|" + "---:|" * len(cells)]
        order = list(dict.fromkeys(p["placement"] for c in cells for p in c["placements"]))
        for placement in order:
            for op, phase in ops:
                row = []
                for c in cells:
                    p = next((x for x in c["placements"] if x["placement"] == placement
                              and x["operation"] == op and x["phase"] == phase), None)
                    row.append("-" if p is None or p["p50_ms"] is None else
                               f"{p['p50_ms']:.2f} [{p['ci95_low_ms']:.2f}-{p['ci95_high_ms']:.2f}]"
                               + (f" ({p['errors']} err)" if p["errors"] else ""))
                if any(x != "-" for x in row):
                    kind = next(p["kind"] for c in cells for p in c["placements"]
                                if p["placement"] == placement)
                    lines.append(f"| {placement} ({kind}) | {op} | {phase} | " + " | ".join(row) + " |")
    lines += ["", "## Plots", "",
              "- `latency_cdf.png`: client latency CDF per strategy, one panel per scenario",
              "- `placement_bars.png`: database read p50 per placement and strategy with 95 % CI",
              "- `failover_timeline.png`: client requests around the failure, per strategy",
              "- `map.png`: the sites at their coordinates, links labelled with their delay", ""]
    for png in ("latency_cdf", "placement_bars", "failover_timeline", "map"):
        lines.append(f"![{png}]({png}.png)")
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path) -> dict:
    """report.md, results.json and the plots in out_dir, from its raw files only."""
    from measurements import plots

    out = Path(out_dir)
    raw = load_raw(out)
    results = compute(raw)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "report.md").write_text(render_markdown(results))
    results["plots"] = plots.write_all(raw, results, out)
    return results


def print_main_table(console, results: dict) -> None:
    from rich.table import Table

    for scenario in dict.fromkeys(c["scenario"] for c in results["cells"]):
        table = Table(title=f"{scenario}: clinic clients (ms)")
        for col in ("strategy", "p50", "p95", "p99", "failed %", "outage", "after p50",
                    "service outage", "DB read p50", "writes failed %", "write outage",
                    "promoted after"):
            table.add_column(col, justify="left" if col == "strategy" else "right")
        for c in results["cells"]:
            if c["scenario"] != scenario:
                continue
            cl, sv = c["clients"], c["services"]
            table.add_row(c["strategy"], _f(cl["p50_ms"]), _f(cl["p95_ms"]), _f(cl["p99_ms"]),
                          _f(cl["failed_pct"], 2), _outage(cl, c["failure"]),
                          _f(cl["after_p50_ms"]), _outage(sv, c["failure"]),
                          _f(c["db_read"]["p50_ms"], 2), _f(c["writes"]["failed_pct"], 1),
                          _write_outage(c), _promoted(c))
        console.print(table)
    for sentence in results["findings"]:
        console.print(f"- {sentence}")
