"""report.md: the run's setup, the findings, then per scenario the main table, the clinics'
latency per region and the database's per placement, and the plots."""

from __future__ import annotations

from lab.health import describe
from measurements.report import recovery
from measurements.report.congestion import table as congestion_table
from measurements.report.tables import COLUMNS, number

PLOTS = (
    ("latency_cdf", "client latency CDF per strategy, one panel per scenario"),
    ("placement_bars", "database read p50 per placement and strategy with 95 % CI"),
    ("failover_timeline", "client requests around the failure, per strategy"),
    ("map", "the sites at their coordinates, links labelled with their delay"),
)
CONGESTION_PLOT = ("congestion", "the watched services' latency over time per strategy, under "
                   "the scheduled delays")


def _congestion(results: dict, scenario: str) -> list[str]:
    """The scenario's schedule table, if its cells played schedules."""
    section = results.get("congestion")
    if not section or not any(c["scenario"] == scenario for c in section["cells"]):
        return []
    title, headings, rows = congestion_table(section, scenario)
    return ["", f"### {title}", "", "Watched: the consumers whose path to their endpoint "
            "crossed a scheduled link when the cell began; moved/back after: seconds from the "
            "delay's rise (fall) to the controller's first change of those paths.", "",
            _row(headings), _row(["---"] * len(headings))] + [_row(r) for r in rows]


def render_markdown(results: dict) -> str:
    setup = results["setup"]
    lines = _setup(setup) + _links(setup)
    lines += ["", "## Findings", ""] + [f"- {s}" for s in results["findings"]]
    for scenario in dict.fromkeys(c["scenario"] for c in results["cells"]):
        cells = [c for c in results["cells"] if c["scenario"] == scenario]
        lines += (_main_table(scenario, cells) + recovery.markdown(cells) + _regions(cells)
                  + _placements(cells) + _model_check(cells))
        lines += _congestion(results, scenario)
    lines += _health(results["cells"])
    plots = PLOTS + ((CONGESTION_PLOT,) if results.get("congestion") else ())
    lines += ["", "## Plots", ""] + [f"- `{png}.png`: {about}" for png, about in plots] + [""]
    lines += [f"![{png}]({png}.png)" for png, _ in plots]
    return "\n".join(lines) + "\n"


def _health(cells: list[dict]) -> list[str]:
    """Whether the emulator kept up in each cell (lab/health.py), plainly."""
    watched = [c for c in cells if c.get("health")]
    if not watched:
        return []
    lines = ["", "## Emulator health", "",
             "Per cell: frames the delay line sent over 250 us late or the kernel dropped "
             "before it read them, switch daemons demoted, the CPU's run queue and steal, the "
             "controller's echo round trip (limits: lab/health.py). Samples taken in a second "
             "when the emulator did not keep up are counted as flagged.", ""]
    bad = [c for c in watched if not c["health"]["kept_up"]]
    if not bad:
        lines.append(f"- In all {len(watched)} cells the emulator kept up.")
    for c in bad:
        flagged = ", ".join(f"{n} {kind}" for kind, n in c["health"]["flagged"].items() if n)
        lines.append(f"- **{c['scenario']} / {c['strategy']}: {describe(c['health'])}.** "
                     f"Flagged samples: {flagged or 'none'}.")
    for c in watched:
        if c["health"]["kept_up"] and any(c["health"]["flagged"].values()):
            flagged = ", ".join(f"{n} {kind}" for kind, n in c["health"]["flagged"].items()
                                if n)
            lines.append(f"- {c['scenario']} / {c['strategy']}: kept up over the cell, but "
                         f"not in {len(c['health']['unhealthy_spans'])} second(s); flagged "
                         f"samples: {flagged}.")
    return lines + _db_health(cells) + _cpu(cells)


def _db_health(cells: list[dict]) -> list[str]:
    """Whether the emulator kept up in the quiet database windows."""
    windows = [(c, block) for c in cells for block in c.get("db_health") or []]
    if not windows:
        return []
    bad = [(c, block) for c, block in windows if not block["kept_up"]]
    if not bad:
        return [f"- In the {len(windows)} database window(s) the emulator kept up."]
    return [f"- Database windows: the emulator kept up in {len(windows) - len(bad)} of "
            f"{len(windows)}."] + [f"  - {c['scenario']} / {c['strategy']}: {describe(block)}."
                                   for c, block in bad]


def _cpu(cells: list[dict]) -> list[str]:
    """Where the CPU went: each part's CPU seconds per cell, the emulator's beside the rest."""
    measured = [c for c in cells if c.get("cpu")]
    if not measured:
        return []
    parts = list(dict.fromkeys(p for c in measured for p in c["cpu"]["cpu_s"]))
    lines = ["", "CPU seconds per part and cell (measurements/cpuparts.py; the machine has "
             f"{measured[0]['cpu']['cores']} cores), and the emulator's and the rest's share "
             "of the machine:", "",
             "| cell | s | " + " | ".join(parts) + " | emulator % | workload % |",
             "|---|---:|" + "---:|" * (len(parts) + 2)]
    for c in measured:
        cpu = c["cpu"]
        lines.append(f"| {c['scenario']} / {c['strategy']} | {cpu['seconds']:.0f} | "
                     + " | ".join(number(cpu["cpu_s"].get(p), 1) for p in parts)
                     + f" | {number(cpu['machine_share_pct']['emulator'], 0)} | "
                     f"{number(cpu['machine_share_pct']['workload'], 0)} |")
    return lines


def _setup(setup: dict) -> list[str]:
    """The title and how the run measured: emulation, strategies, probes, database, times."""
    topo = setup["topology"]
    st = setup["settings"]
    lines = [f"# Strategy comparison: {topo['name']}", "",
             topo.get("description", ""), "",
             "## Setup", "",
             f"- Link emulation: **{setup.get('links_backend')}**, Open vSwitch datapath "
             f"**{setup.get('datapath')}**, controller **{setup.get('controller')}**.",
             f"- Strategies: {', '.join(setup['strategies'])}.",
             _probes(st),
             _database(st),
             f"- Run: bring-up {number(setup.get('bring_up_s'))} s, total "
             f"{number(setup.get('total_s'))} s.",
             "", "Versions: " + ", ".join(f"{k} {v}" for k, v in setup["versions"].items()), "",
             "### Scenarios", ""]
    return lines + [f"- **{s['name']}**: {s['description']}" for s in setup["scenarios"]]


def _database(st: dict) -> str:
    """What the database workload measures, and when."""
    after = st.get("after_operations", ["connect", "read", "page"])
    text = (f"- Database: dbbench's connect, read and page ({st['page_queries']} queries) "
            f"from every placement through the read address, {st['samples']} of each per "
            f"placement and phase; after a failure: {', '.join(after)}")
    if st.get("before_once"):
        text += (" (before a failure the network is the healthy one: its numbers are the "
                 "normal cell's of the same strategy, measured once)")
    if st.get("db_windows") == "quiet":
        text += (". Each window is quiet (the cell's probes and writers stopped) and runs in "
                 "`lab bench db`'s order: a placement near its server alone, the far ones at "
                 "once; the primary's own read and page on its own address come first (the "
                 "model check's server time)")
    return text + "."


def _probes(st: dict) -> str:
    """What the clients, services and writers send, how often, and the failover manager."""
    failover = st.get("failover", {})
    return (f"- Clients: each clinic opens a new TCP connection to the app service's virtual "
            f"address every {st['client_interval_s'] * 1000:g} ms and sends one request "
            f"(latency = connect + request + answer; failed = no answer within "
            f"{st['request_timeout_s']:g} s). Services: each service and monolith host "
            f"connects to the database's read address (the db service) every "
            f"{st['service_interval_s'] * 1000:g} ms. Outage = longest run of failed "
            f"requests after the failure, per source, largest over sources (resolution: "
            f"the probe interval). Writes (in the cells with a failure): each service and "
            f"monolith host writes a "
            f"transaction through the write address (db-write: always the primary) every "
            f"{st.get('writer_interval_s', 0) * 1000:g} ms, each kept in a ledger; a "
            f"failover manager next to the standby promotes it after "
            f"{failover.get('misses', '-')} failed checks of the primary in a row, "
            f"{failover.get('interval_s', 0) * 1000:g} ms apart, "
            f"{failover.get('timeout_s', 0) * 1000:g} ms to answer; then both addresses "
            f"lead to the new primary and the old one is fenced (stopped). Replication: "
            f"{st.get('replication', 'async')}; after the repair the old primary is rebuilt "
            f"from the new one (pg_rewind) keeping every acknowledged write, and the roles "
            f"are {'kept' if st.get('failback') == 'keep' else 'restored'}.")


def _links(setup: dict) -> list[str]:
    """Every link's one-way delay and where it comes from; the calibration's residual."""
    lines = ["", "### Links (one-way delay; a round trip sees it twice)", "",
             "| link | class | km | delay ms | source |", "|---|---|---:|---:|---|"]
    for link in setup["topology"]["links"]:
        lines.append(f"| {link['a']}-{link['b']} | {link['class']} | {link['distance_km']:.0f} "
                     f"| {link['delay_ms']:.3f} | {link['source'].replace('|', '/')} |")
    cal = setup.get("calibration")
    if cal:
        worst = max((l["uncompensated_ms"] for l in cal["links"]), default=0.0)
        lines += ["", f"Calibration: host-switch-host round trip {cal['access_rtt_ms']:.3f} ms; "
                      f"largest per-link residual the lab could not remove: {worst:.3f} ms."]
    return lines


def _row(values: list[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _main_table(scenario: str, cells: list[dict]) -> list[str]:
    """The scenario's heading and its main table (tables.py), a row per strategy."""
    return ["", f"## {scenario}", "",
            "Client latency in ms (all clinics); outage in ms; DB read: median of the "
            "placements' indexed reads before any failure.", "",
            _row([col.heading for col in COLUMNS]), "|---|" + "---:|" * (len(COLUMNS) - 1)] + [
        _row([col.value(c) for col in COLUMNS]) for c in cells]


def _regions(cells: list[dict]) -> list[str]:
    """Per clinic: each strategy's percentiles and the endpoint serving it (and after)."""
    lines = ["", "Per client region: p50 / p95 / p99 ms (endpoint serving it"
                 + (", -> after the failure" if cells[0]["failure"] else "") + ")", "",
             _row(["clinic"] + [c["strategy"] for c in cells]), "|---|" + "---:|" * len(cells)]
    for region in cells[0]["regions"]:
        row = [f"{region['client']} ({region['label'] or region['site']})"]
        for c in cells:
            r = next((x for x in c["regions"] if x["client"] == region["client"]), None)
            if r is None:
                row.append("-")
                continue
            served = r["served_by"] or "-"
            if c["failure"] and r["served_by_after"] != r["served_by"]:
                served += f" -> {r['served_by_after'] or 'none'}"
            row.append(f"{number(r['p50_ms'])} / {number(r['p95_ms'])} / "
                       f"{number(r['p99_ms'])} ({served})")
        lines.append(_row(row))
    return lines


def _placements(cells: list[dict]) -> list[str]:
    """Per database placement, operation and phase: each strategy's median and its CI."""
    ops = [("read", "before"), ("page", "before")] + (
        [("read", "after")] if cells[0]["failure"] else [])
    lines = ["", "Per placement: database p50 ms [bootstrap 95 % CI of the median]", "",
             "| placement | op | phase | " + " | ".join(c["strategy"] for c in cells) + " |",
             "|---|---|---|" + "---:|" * len(cells)]
    for placement in dict.fromkeys(p["placement"] for c in cells for p in c["placements"]):
        for op, phase in ops:
            row = [_placement(c, placement, op, phase) for c in cells]
            if any(x != "-" for x in row):
                kind = next(p["kind"] for c in cells for p in c["placements"]
                            if p["placement"] == placement)
                lines.append(f"| {placement} ({kind}) | {op} | {phase} | " + " | ".join(row)
                             + " |")
    return lines


def _model_check(cells: list[dict]) -> list[str]:
    """The page of each placement against N x the model's RTT + the server's own page."""
    checked = [c for c in cells if c.get("model_check")]
    if not checked:
        return []
    n = checked[0]["model_check"][0]["page_queries"]
    lines = ["", f"Model check: page p50 measured / predicted ms (predicted = {n} x the model's "
             f"round trip to the server the placement reads from, host to switch included, "
             f"+ the primary's own page p50 on its own address)", "",
             "| placement | " + " | ".join(c["strategy"] for c in checked) + " |",
             "|---|" + "---:|" * len(checked)]
    by = [{r["placement"]: r for r in c["model_check"]} for c in checked]
    for placement in dict.fromkeys(r["placement"] for c in checked for r in c["model_check"]):
        row = []
        for rows in by:
            r = rows.get(placement)
            row.append("-" if r is None or r["predicted_page_ms"] is None
                       or r["measured_page_p50_ms"] is None else
                       f"{r['measured_page_p50_ms']:.2f} / {r['predicted_page_ms']:.2f}")
        lines.append(f"| {placement} | " + " | ".join(row) + " |")
    return lines


def _placement(cell: dict, placement: str, op: str, phase: str) -> str:
    p = next((x for x in cell["placements"] if x["placement"] == placement
              and x["operation"] == op and x["phase"] == phase), None)
    if p is None or p["p50_ms"] is None:
        return "-"
    return (f"{p['p50_ms']:.2f} [{p['ci95_low_ms']:.2f}-{p['ci95_high_ms']:.2f}]"
            + (f" ({p['errors']} err)" if p["errors"] else ""))
