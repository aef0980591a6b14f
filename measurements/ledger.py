"""What a failover cost in writes, from the writers' ledgers and the surviving primary's.

Every writer of `lab compare` keeps a ledger: one line per write with its unique id, when it
started, how long it took, whether it was acknowledged and by which server. After a failure
cell the ids the surviving primary holds are read (measurements/failback.py, `ledger_ids`).
`compare_ledgers` puts the two side by side:

- lost: acknowledged writes the surviving primary does not hold;
- RPO: the span of time those writes cover, from the start of the first to the
  acknowledgement of the last (0 when none was lost);
- RTO: from the failure to the first write acknowledged by the new primary (None without a
  promotion, or when the new primary acknowledged nothing in the cell);
- split brain: writes the old primary acknowledged after the standby's promotion;
- refused as read-only: writes a server refused because it was a standby.
"""

from __future__ import annotations

from statistics import median

READ_ONLY = "read-only"  # in PostgreSQL's "cannot execute ... in a read-only transaction"


def acked_at(write: dict) -> float:
    """When the writer had the acknowledgement (unix time)."""
    return write["start"] + write["latency_ms"] / 1000


def compare_ledgers(writes: list[dict], held: set[str], failure: float | None,
                    promoted: float | None = None, new_primary: str | None = None,
                    old_primary: str | None = None) -> dict:
    """The cell's lost writes, RPO, RTO and split-brain writes (module docstring)."""
    acked = [w for w in writes if w["ok"]]
    lost = sorted((w for w in acked if w["id"] not in held), key=lambda w: w["start"])
    rto = None
    if failure is not None and promoted is not None:
        firsts = [acked_at(w) for w in acked if w["server"] == new_primary
                  and acked_at(w) > failure]
        rto = round(min(firsts) - failure, 4) if firsts else None
    split = [w for w in acked if promoted is not None and w["server"] == old_primary
             and acked_at(w) > promoted]
    return {"writes": len(writes), "acknowledged": len(acked), "lost": len(lost),
            "lost_ids": [w["id"] for w in lost][:20],
            "rpo_s": round(max(map(acked_at, lost)) - lost[0]["start"], 4) if lost else 0.0,
            "rto_s": rto, "split_brain": len(split),
            "refused_read_only": sum(1 for w in writes
                                     if not w["ok"] and READ_ONLY in (w.get("error") or ""))}


def write_latency(writes: list[dict], before: float | None) -> dict[str, dict]:
    """Per writer: the median latency of its acknowledged writes that started before
    `before` (the failure; None: all), with their count."""
    per: dict[str, list[float]] = {}
    for w in writes:
        if w["ok"] and (before is None or w["start"] < before):
            per.setdefault(w["src"], []).append(w["latency_ms"])
    return {src: {"p50_ms": round(median(v), 3), "n": len(v)} for src, v in sorted(per.items())}
