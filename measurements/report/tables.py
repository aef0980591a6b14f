"""The main table, one per scenario: a row per strategy with the clinics' latency, the
outages, the database read, the promotion, the acknowledged writes lost and the RTO. report.md shows it (markdown.py) and the
command line prints it from main_tables, so both say the same in the same format."""

from __future__ import annotations

from typing import Callable, NamedTuple

from measurements.report.congestion import table as congestion_table


def number(v: float | None, digits: int = 1) -> str:
    """A number as the tables write it: fixed digits, "-" for none."""
    return "-" if v is None else f"{v:.{digits}f}"


def _outage(row: dict, failure) -> str:
    if failure is None:
        return "-"
    if row.get("no_data"):
        return "no data"
    return "not recovered" if row["outage_ms"] is None else f"{row['outage_ms']:.0f}"


def _write_outage(cell: dict) -> str:
    if cell["failure"] is not None and not cell["writes"]["writers_measured"]:
        return "no writer"
    return _outage(cell["writes"], cell["failure"])


def _promoted(cell: dict) -> str:
    """The "promoted after" column: ms after the failure, or "while up" with no failure."""
    if cell["false_failover"] and cell["failure"] is None:
        return "while up"
    return number(cell["promotion_ms"], 0)


def _interrupted(cell: dict) -> str:
    count = cell["clients"]["sources_interrupted"]
    return str(count) if cell["failure"] and count is not None else "-"


def _failed(row: dict, digits: int) -> str:
    """A group's failed share; "no data" where its probe measured nothing."""
    return "no data" if row.get("no_data") else number(row["failed_pct"], digits)


class Column(NamedTuple):
    heading: str  # in report.md
    value: Callable[[dict], str]  # of a cell (one strategy in one scenario)
    short: str | None = None  # on the command line if other than the heading; "": not there


COLUMNS = (
    Column("strategy", lambda c: c["strategy"]),
    Column("p50", lambda c: number(c["clients"]["p50_ms"])),
    Column("p95", lambda c: number(c["clients"]["p95_ms"])),
    Column("p99", lambda c: number(c["clients"]["p99_ms"])),
    Column("failed %", lambda c: _failed(c["clients"], 2)),
    Column("client outage", lambda c: _outage(c["clients"], c["failure"]), "outage"),
    Column("clinics interrupted", _interrupted, ""),
    Column("p50 after failure", lambda c: number(c["clients"]["after_p50_ms"]), "after p50"),
    Column("service outage", lambda c: _outage(c["services"], c["failure"])),
    Column("DB read p50", lambda c: number(c["db_read"]["p50_ms"], 2) + (
        f" ({c['db_read_from']})" if c.get("db_read_from", c["scenario"]) != c["scenario"]
        else "")),
    Column("writes failed %", lambda c: _failed(c["writes"], 1)),
    Column("write outage", _write_outage),
    Column("promoted after", _promoted),
    Column("writes lost", lambda c: str(c["dr"]["lost"]) if c.get("dr") else "-", "lost"),
    Column("RTO s", lambda c: number(c["dr"]["rto_s"], 2) if c.get("dr") else "-", "RTO"),
    Column("emulator", lambda c: "-" if not c.get("health") else
           "kept up" if c["health"]["kept_up"] else "NOT kept up"),
)
CONSOLE_COLUMNS = tuple(c for c in COLUMNS if c.short != "")


def main_tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per scenario, for the command line: the table's title, its column headings and a row
    of text per strategy (the first column is the strategy, the others numbers)."""
    tables = []
    for scenario in dict.fromkeys(c["scenario"] for c in results["cells"]):
        rows = [[col.value(c) for col in CONSOLE_COLUMNS]
                for c in results["cells"] if c["scenario"] == scenario]
        tables.append((f"{scenario}: clinic clients (ms)",
                       [col.short or col.heading for col in CONSOLE_COLUMNS], rows))
        section = results.get("congestion")
        if section and any(c["scenario"] == scenario for c in section["cells"]):
            tables.append(congestion_table(section, scenario))
    return tables
