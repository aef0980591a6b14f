"""Disaster recovery in the report: lost writes, RPO, RTO, split brain and fail-back per cell,
the write latency from each placement, and the sentences that say it in plain words.

The numbers come from the writers' ledgers (their lines in requests.jsonl: id, start,
latency, acknowledged, by which server) and the ids the surviving primary held after the cell
(cells.jsonl "ledger"); the definitions are measurements/ledger.py's.
"""

from __future__ import annotations

from measurements.ledger import compare_ledgers, write_latency
from measurements.report.tables import number


def _ledger(writes: list[dict]) -> list[dict]:
    return [{"src": w["src"], "id": w["id"], "ok": w["ok"], "start": w["start"],
             "latency_ms": w["latency_ms"], "server": w["served_by"], "error": w.get("error")}
            for w in writes]


def recovery(cell: dict, writes: list[dict], replication: str) -> dict | None:
    """The cell's disaster-recovery figures; None where it had no writers with a ledger."""
    if "ledger" not in cell or not all("id" in w for w in writes):
        return None
    ledger = _ledger(writes)
    promotion = cell.get("promotion") or {}
    found = compare_ledgers(ledger, set(cell["ledger"]["held"]), cell.get("failure"),
                            promotion.get("promoted"), promotion.get("new_primary"),
                            promotion.get("old_primary"))
    failback = cell.get("failback")
    return {**found, "replication": replication, "survivor": cell["ledger"]["survivor"],
            "promoted": bool(promotion), "fenced_after_ms": _ms_between(promotion, "promoted",
                                                                       "fenced"),
            "failback": {k: failback[k] for k in ("recovered", "unacknowledged_discarded",
                                                  "method", "restored", "switchover",
                                                  "rows_before", "rows_after", "seconds",
                                                  "steps")
                         if k in failback}
            if failback else None,
            "write_latency": write_latency(ledger, cell.get("failure"))}


def _ms_between(record: dict, start: str, end: str) -> float | None:
    if start not in record or end not in record:
        return None
    return round((record[end] - record[start]) * 1000, 1)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def sentence(cell: dict) -> str | None:
    """"dc-failure / hops, async: 37 of 412 acknowledged writes lost (RPO 0.31 s), RTO 1.70 s,
    ..." for one cell with a ledger."""
    dr = cell.get("dr")
    if not dr or cell["failure"] is None:
        return None
    text = (f"{cell['scenario']} / {cell['strategy']}, {dr['replication']}: {dr['lost']} of "
            f"{dr['acknowledged']} acknowledged writes lost")
    if dr["lost"]:
        text += f" (RPO {_seconds(dr['rpo_s'])})"
    if dr["promoted"]:
        text += (f", RTO {_seconds(dr['rto_s'])}" if dr["rto_s"] is not None
                 else ", the new primary acknowledged no write before the repair")
        text += (f", {dr['split_brain']} acknowledged by the old primary after the promotion "
                 f"(fenced {dr['fenced_after_ms']:.0f} ms after it)"
                 if dr["fenced_after_ms"] is not None else "")
    else:
        text += ", no promotion"
    if dr["refused_read_only"]:
        text += f", {dr['refused_read_only']} refused as read-only"
    fb = dr["failback"]
    if fb:
        text += (f"; fail-back ({fb['method']}, {fb['seconds']:.1f} s) re-applied "
                 f"{fb['recovered']} write(s) only the old primary held, ledger "
                 f"{fb['rows_before']} -> {fb['rows_after']} rows")
    return text + "."


def latency_sentence(cells: list[dict]) -> str | None:
    """Write latency from each placement before the failure, over a scenario's cells."""
    per: dict[str, list[dict]] = {}
    for c in cells:
        for src, row in ((c.get("dr") or {}).get("write_latency") or {}).items():
            per.setdefault(src, []).append(row)
    if not per:
        return None
    replication = next(c["dr"]["replication"] for c in cells if c.get("dr"))
    parts = [f"{src} {_median_of(rows):.1f} ms (n={sum(r['n'] for r in rows)})"
             for src, rows in per.items()]
    return (f"{cells[0]['scenario']}, writes through the write address before the failure "
            f"({replication}; median of the strategies' medians): " + ", ".join(parts) + ".")


def _median_of(rows: list[dict]) -> float:
    values = sorted(r["p50_ms"] for r in rows)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def findings(scenario_cells: list[dict]) -> list[str]:
    out = [s for s in map(sentence, scenario_cells) if s]
    latency = latency_sentence(scenario_cells)
    return out + ([latency] if latency else [])


def markdown(cells: list[dict]) -> list[str]:
    """report.md's disaster-recovery table for one scenario's cells (none without ledgers)."""
    rows = [c for c in cells if c.get("dr") and c["failure"] is not None]
    if not rows:
        return []
    lines = ["", f"Disaster recovery ({rows[0]['dr']['replication']} replication; "
             "measurements/ledger.py has the definitions):", "",
             "| strategy | writes | acknowledged | lost | RPO s | RTO s | split-brain writes "
             "| refused read-only | fail-back |", "|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        dr, fb = c["dr"], c["dr"]["failback"]
        lines.append(f"| {c['strategy']} | {dr['writes']} | {dr['acknowledged']} | {dr['lost']} "
                     f"| {number(dr['rpo_s'], 3)} | {number(dr['rto_s'], 3)} "
                     f"| {dr['split_brain'] if dr['promoted'] else '-'} | {dr['refused_read_only']} "
                     f"| {_failback(fb)} |")
    return lines


def _failback(fb: dict | None) -> str:
    if not fb:
        return "-"
    return (f"{fb['method']}, {fb['recovered']} re-applied, rows {fb['rows_before']} -> "
            f"{fb['rows_after']}, "
            + (f"roles restored ({fb.get('switchover') or 'rebuilt'})" if fb["restored"]
               else "roles kept")
            + (f", {fb['seconds']:.1f} s" if "seconds" in fb else ""))
