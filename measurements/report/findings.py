"""The report's findings: a few sentences per scenario, each stating a comparison the tables
show, generated from the numbers (results.py) so that they never disagree with them."""

from __future__ import annotations

from collections import Counter

from measurements.report import recovery

MODEL_DIFF_MS = 0.5  # expected round trips closer than this count as the same
FALSE_FAILOVER = "a false failover: its manager missed checks of a primary that was up"


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
                           "expected_ms": rtt,
                           "measured_base_ms": _measured(base, service, consumer),
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
    out = []
    for scenario in dict.fromkeys(c["scenario"] for c in results["cells"]):
        cells = [c for c in results["cells"] if c["scenario"] == scenario]
        out += _scenario_findings(scenario, cells, results["setup"])
    return out


def _untrusted(scenario: str, cells: list[dict]) -> list[str]:
    """Cells the lab could not measure properly: said first, in plain words."""
    out = []
    for c in cells:
        if c.get("invalid"):
            out.append(f"{scenario} / {c['strategy']}: INVALID: {c['invalid']} during the cell; "
                       f"none of its figures is to be trusted")
        for group, label in (("clients", "clinic clients"), ("services", "services"),
                             ("writes", "writes")):
            if c[group].get("no_data"):
                out.append(f"{scenario} / {c['strategy']}: no data for the {label} "
                           f"({c[group]['no_data']}): a missing measurement, not the absence "
                           f"of failures")
    return out


def _scenario_findings(scenario: str, cells: list[dict], setup: dict) -> list[str]:
    untrusted = _untrusted(scenario, cells)
    timed = [c for c in cells if c["clients"]["p50_ms"] is not None]
    if not timed:
        return untrusted + [f"{scenario}: no client request succeeded."]
    out = untrusted + [_fastest(scenario, timed, setup)]
    out += model_findings([c for c in cells if c["failure"] is None])
    out += _listen_drops(scenario, cells)
    out += _unprompted(scenario, cells)
    out += _read_only(scenario, cells)
    if any(c["failure"] is not None for c in cells):
        out.append(_availability(scenario, cells))
        out += recovery.findings(cells)
        out += _write_outages(scenario, cells)
        out += _service_outages(scenario, cells)
    return out


def _fastest(scenario: str, timed: list[dict], setup: dict) -> str:
    """The strategies with the lowest and the highest clients' median, and who served them."""
    best = min(timed, key=lambda c: c["clients"]["p50_ms"])
    worst = max(timed, key=lambda c: c["clients"]["p50_ms"])
    text = (f"{scenario}: {best['strategy']} gives the clinics the lowest median latency "
            f"({_ms(best['clients']['p50_ms'])}, p99 {_ms(best['clients']['p99_ms'])})")
    if worst is not best:
        text += (f", {worst['strategy']} the highest ({_ms(worst['clients']['p50_ms'])}): "
                 f"with {best['strategy']} the {len(best['regions'])} clinics are served "
                 f"{_served(best, setup)}; with {worst['strategy']} {_served(worst, setup)}")
    return text + "."


def _listen_drops(scenario: str, cells: list[dict]) -> list[str]:
    out = []
    for c in cells:
        dropped = {host: n for host, n in c["db_listen_drops"].items() if n}
        if dropped:
            out.append(f"{scenario}, {c['strategy']}: the database hosts' kernels dropped "
                       + ", ".join(f"{n} connection attempts to {host}"
                                   for host, n in dropped.items())
                       + " (PostgreSQL did not accept them fast enough: the machine running "
                       "the lab was too loaded; failures then are not the network's).")
    return out


def _unprompted(scenario: str, cells: list[dict]) -> list[str]:
    """The strategies whose standby was promoted in a cell without a failure."""
    unprompted = [c["strategy"] for c in cells if c["false_failover"] and c["failure"] is None]
    if not unprompted:
        return []
    return [f"{scenario}: the standby was promoted while the primary was up "
            f"({FALSE_FAILOVER}) with {', '.join(unprompted)}."]


def _read_only(scenario: str, cells: list[dict]) -> list[str]:
    refused = [c for c in cells if c["writes"]["read_only"]]
    if not refused:
        return []
    return [f"{scenario}: writes refused as read-only (a server the write address led to "
            f"was a standby): " + "; ".join(
                f"{c['strategy']} {100 * c['writes']['read_only'] / c['writes']['requests']:.0f} %"
                for c in refused) + "; " + (", ".join(
                c["strategy"] for c in cells if c not in refused) or "none")
            + " sent every write to the primary."]


def _availability(scenario: str, cells: list[dict]) -> str:
    """The strategies from the shortest clients' outage to the longest, with what moved."""
    def key(c):
        o = c["clients"]["outage_ms"]
        return (o is None, o if o is not None else 0, c["clients"]["failed_pct"] or 0)
    parts = []
    for c in sorted(cells, key=key):
        o = c["clients"]["outage_ms"]
        if c["clients"].get("no_data"):
            parts.append(f"{c['strategy']}: no data")
            continue
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
    return f"{scenario}, availability: " + "; ".join(parts) + "."


def _write_outages(scenario: str, cells: list[dict]) -> list[str]:
    wr = [c for c in cells if c["writes"]["requests"] and not c["writes"].get("no_data")]
    if not wr:
        return []
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
    return [f"{scenario}, writes through the write address: " + "; ".join(parts) + "."]


def _service_outages(scenario: str, cells: list[dict]) -> list[str]:
    svc = [c for c in cells if c["services"]["requests"] and not c["services"].get("no_data")]
    if not svc:
        return []
    s_best = min(svc, key=lambda c: (c["services"]["outage_ms"] is None,
                                     c["services"]["outage_ms"] or 0))
    return [f"{scenario}, services reaching the database: the shortest outage "
            f"is with {s_best['strategy']} "
            f"({_ms(s_best['services']['outage_ms'])}); "
            + "; ".join(f"{c['strategy']} {_ms(c['services']['outage_ms'])}"
                        for c in svc if c is not s_best) + "."]
