"""Benchmark: does `lab compare`'s database matrix agree with `lab bench db` on one topology?

Target (issue 14): per placement, the comparison's indexed read p50 (its quiet window before
any failure, through the read address) within 0.3 ms + 5 % of the path's round trip of
`lab bench db`'s read through the same address (address_read), for the strategy `lab bench
db` runs (the controller's default); and the comparison's model check (page = N x RTT +
server time) beside it.

    flock /tmp/hclab-lab.lock .venv/bin/python -m benchmarks.bench_db_agreement \\
        [--compare DIR] [--bench DIR] [--samples 10] [--bench-samples 50] [--json FILE]

Without --compare / --bench it runs them (a normal-only comparison of the default strategy,
then the database benchmark), each bringing the lab up and tearing it down. Exit status 1
when a placement is outside the band.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from controllers.strategies import DEFAULT_STRATEGY
from topologies import DEFAULT_TOPOLOGY

BAND_MS, BAND_PCT = 0.3, 5.0


def agreement(compare_dir: Path, bench_dir: Path, strategy: str = DEFAULT_STRATEGY) -> list[dict]:
    """Per placement: the two read p50s, their n, the path RTT (model) and the band."""
    results = json.loads((compare_dir / "results.json").read_text())
    cell = next(c for c in results["cells"]
                if c["strategy"] == strategy and not c["links_cut"] and c["placements"])
    bench = {r["placement"]: r for r in json.loads((bench_dir / "summary.json").read_text())
             if r["operation"] == "address_read"}
    rtt = cell["expected_rtt_ms"]["db"]
    model = {r["placement"]: r for r in cell.get("model_check", [])}
    rows = []
    for p in cell["placements"]:
        if p["operation"] != "read" or p["phase"] != "before" or p["placement"] not in bench:
            continue
        b, host = bench[p["placement"]], p["placement"]
        band = BAND_MS + BAND_PCT / 100 * rtt[host]
        diff = p["p50_ms"] - b["p50_ms"]
        m = model.get(host, {})
        rows.append({"placement": host, "rtt_ms": rtt[host], "compare_p50_ms": p["p50_ms"],
                     "compare_n": p["n"], "bench_p50_ms": b["p50_ms"], "bench_n": b["n"],
                     "diff_ms": round(diff, 3), "band_ms": round(band, 3),
                     "agrees": abs(diff) <= band,
                     "page_measured_ms": m.get("measured_page_p50_ms"),
                     "page_predicted_ms": m.get("predicted_page_ms")})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", type=Path, help="a lab compare result directory")
    p.add_argument("--bench", type=Path, help="a lab bench db result directory")
    p.add_argument("--samples", type=int, default=10, help="the comparison's samples")
    p.add_argument("--bench-samples", type=int, default=50, help="lab bench db's samples")
    p.add_argument("--json", type=Path, help="write the rows there")
    args = p.parse_args(argv)
    if args.compare is None:
        from measurements.compare import run_compare
        from measurements.report.writer import write_report
        args.compare = run_compare(DEFAULT_TOPOLOGY, strategies=[DEFAULT_STRATEGY],
                                   scenarios=["normal"], samples=args.samples).out_dir
        write_report(args.compare)
    if args.bench is None:
        from measurements.dbbench import run_db_bench
        args.bench = run_db_bench(DEFAULT_TOPOLOGY, samples=args.bench_samples).out_dir
    rows = agreement(args.compare, args.bench)
    print(f"compare {args.compare}, bench db {args.bench}; strategy {DEFAULT_STRATEGY}; "
          f"band {BAND_MS} ms + {BAND_PCT:g} % of the RTT")
    print(f"{'placement':10} {'RTT':>7} {'compare p50 (n)':>17} {'bench p50 (n)':>15} "
          f"{'diff':>7} {'band':>6}  page measured / predicted")
    for r in rows:
        page = ("-" if r["page_predicted_ms"] is None else
                f"{r['page_measured_ms']:.2f} / {r['page_predicted_ms']:.2f}")
        print(f"{r['placement']:10} {r['rtt_ms']:7.3f} {r['compare_p50_ms']:10.3f} "
              f"({r['compare_n']:3d}) {r['bench_p50_ms']:8.3f} ({r['bench_n']:3d}) "
              f"{r['diff_ms']:+7.3f} {r['band_ms']:6.3f}  {page}"
              + ("" if r["agrees"] else "  OUTSIDE"))
    ok = sum(r["agrees"] for r in rows)
    print(f"{ok} of {len(rows)} placements agree")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if rows and ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
