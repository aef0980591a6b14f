"""`lab bench db`'s samples and what is computed from them, with no network: the result files.

samples.csv holds one row per request; summary.json and model_check.json are computed from
those rows alone, so a benchmark's figures can be recomputed and checked without the lab.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from lab.files import atomic_write
from measurements.stats import DEFAULT_SEED, percentile, summarize

CSV_FIELDS = ("placement", "operation", "start_time", "latency_ms", "ok")
RTT_OPERATION = "rtt_ping"
LAG_OPERATION = "replication_lag"
SUMMARY_FIELDS = ("placement", "site", "kind", "operation", "n", "errors", "p50_ms", "p95_ms",
                  "p99_ms", "mean_ms", "ci95_low_ms", "ci95_high_ms")


@dataclass(frozen=True)
class Sample:
    """One timed request (or ping, or replayed write) from one placement."""

    placement: str
    operation: str
    start_time: float
    latency_ms: float
    ok: bool = True


@dataclass(frozen=True)
class Placement:
    host: str
    site: str
    kind: str  # the site's kind (outpost, localzone, region, datacenter) or "db-host"


def write_samples_csv(path: Path, samples: list[Sample]) -> None:
    """samples.csv, written atomically (lab.files)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(CSV_FIELDS)
    for s in samples:
        writer.writerow([s.placement, s.operation, f"{s.start_time:.6f}",
                         f"{s.latency_ms:.4f}", int(s.ok)])
    atomic_write(path, text.getvalue())


def read_samples_csv(path: Path) -> list[Sample]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CSV_FIELDS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {list(CSV_FIELDS)}")
        return [Sample(r["placement"], r["operation"], float(r["start_time"]),
                       float(r["latency_ms"]), r["ok"] == "1") for r in reader]


def summarize_samples(samples: list[Sample], placements: dict[str, Placement] | None = None,
                      seed: int = DEFAULT_SEED) -> list[dict]:
    """One record per (placement, operation), in order of first appearance; errors excluded."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.placement, s.operation), []).append(s)
    records = []
    for (placement, op), group in groups.items():
        where = (placements or {}).get(placement)
        stats = summarize([s.latency_ms for s in group if s.ok], seed=seed)
        records.append({"placement": placement, "site": where.site if where else None,
                        "kind": where.kind if where else None, "operation": op,
                        **{"errors": sum(not s.ok for s in group)}, **stats.as_dict()})
    return [{k: r[k] for k in SUMMARY_FIELDS} for r in records]


def model_check(summary: list[dict], page_queries: int, server: str) -> list[dict]:
    """Predicted page time N x RTT(placement -> the server it reads from) + the server's own
    page time."""
    by = {(r["placement"], r["operation"]): r for r in summary}
    server_page = by.get((server, "page"), {}).get("p50_ms")
    rows = []
    for r in summary:
        if r["operation"] != "page" or r["placement"] == server:
            continue
        rtt = by.get((r["placement"], RTT_OPERATION), {}).get("p50_ms")
        predicted = (page_queries * rtt + server_page
                     if rtt is not None and server_page is not None else None)
        measured = r["p50_ms"]
        rows.append({"placement": r["placement"], "site": r["site"], "kind": r["kind"],
                     "page_queries": page_queries, "rtt_p50_ms": rtt,
                     "server_page_p50_ms": server_page, "predicted_page_ms": predicted,
                     "measured_page_p50_ms": measured,
                     "measured_over_predicted": (measured / predicted
                                                 if predicted and measured is not None else None)})
    return rows


def p50(samples: list[Sample]) -> float:
    ok = [s.latency_ms for s in samples if s.ok]
    return percentile(ok, 50) if ok else math.inf
