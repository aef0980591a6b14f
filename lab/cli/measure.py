"""`lab bench db`, `lab compare`, `lab report`: measurements and their reports, shown."""

from __future__ import annotations

from functools import partial

from rich.table import Table

from controllers.forwarding import make_lab
from lab.cli.output import ConsoleProgress, UsageError, console, fmt
from lab.files import OutDirError
from measurements.arguments import ArgumentError


def print_db_summary(summary: list[dict], model: list[dict]) -> None:
    """The benchmark's tables: latency per placement and operation; the model check."""
    table = Table(title="Database latency per placement (ms; CI: bootstrap 95 % of the median)")
    for col in ("placement", "kind", "operation", "n", "err", "p50", "p95", "p99", "mean",
                "CI95 median"):
        table.add_column(col, justify="left" if col in ("placement", "kind", "operation")
                         else "right")
    previous = None
    for r in summary:
        first = r["placement"] != previous
        previous = r["placement"]
        table.add_row(r["placement"] if first else "", (r["kind"] or "") if first else "",
                      r["operation"], str(r["n"]), str(r["errors"]), fmt(r["p50_ms"], 2),
                      fmt(r["p95_ms"], 2), fmt(r["p99_ms"], 2), fmt(r["mean_ms"], 2),
                      f"{fmt(r['ci95_low_ms'], 2)}-{fmt(r['ci95_high_ms'], 2)}",
                      end_section=False)
    console.print(table)
    if not model:
        return
    check = Table(title="Model check: page of N queries = N x RTT to the primary + server time")
    for col in ("placement", "kind", "N", "RTT p50", "server page", "predicted", "measured p50",
                "measured/predicted"):
        check.add_column(col, justify="left" if col in ("placement", "kind") else "right")
    for m in model:
        check.add_row(m["placement"], m["kind"] or "", str(m["page_queries"]),
                      fmt(m["rtt_p50_ms"]), fmt(m["server_page_p50_ms"], 2),
                      fmt(m["predicted_page_ms"], 2), fmt(m["measured_page_p50_ms"], 2),
                      fmt(m["measured_over_predicted"], 2))
    console.print(check)


def cmd_bench_db(args) -> int:
    """Database access paths from every placement to the lab's PostgreSQL."""
    from measurements.dbbench import run_db_bench

    factory = partial(make_lab, controller=args.controller, links=args.links, core=args.core,
                      strategy=args.strategy, calibrate=not args.no_calibrate, recalibrate=args.recalibrate)
    try:
        with ConsoleProgress() as progress:
            result = run_db_bench(args.topology, samples=args.samples, out_dir=args.out,
                                  page_queries=args.page_queries, replica=args.replica,
                                  replication=args.replication, progress=progress,
                                  lab_factory=factory)
    except (ArgumentError, OutDirError) as exc:
        raise UsageError(str(exc)) from None
    print_db_summary(result.summary, result.model)
    console.print(f"results written to {result.out_dir}/ (samples.csv, summary.json, "
                  f"model_check.json); {result.setup['total_s']:.0f} s in all")
    return 1 if result.errors else 0


def cmd_compare(args) -> int:
    """Strategies under normal operation and failures; the report at the end."""
    from measurements.compare import run_compare

    factory = partial(make_lab, controller=args.controller, links=args.links, core=args.core,
                      calibrate=not args.no_calibrate, recalibrate=args.recalibrate)
    try:
        with ConsoleProgress() as progress:
            result = run_compare(args.topology, strategies=args.strategies.split(","),
                                 scenarios=args.scenarios.split(","), samples=args.samples,
                                 out_dir=args.out, progress=progress, lab_factory=factory,
                                 replication=args.replication, failback=args.failback)
    except (ArgumentError, OutDirError) as exc:
        raise UsageError(str(exc)) from None
    if result.cells:
        print_report(result.out_dir)
    console.print(f"raw samples and report in {result.out_dir}/; {result.seconds:.0f} s in all")
    return 0 if result.cells else 1


def cmd_report(args) -> int:
    """Regenerate report.md, results.json and the plots from a comparison's raw files."""
    print_report(args.dir)
    return 0


def print_report(out_dir) -> None:
    """Write a comparison's report from its raw files and show its main tables."""
    from measurements.report.raw import ReportError
    from measurements.report.tables import main_tables
    from measurements.report.writer import write_report

    try:
        results = write_report(out_dir)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    for title, columns, rows in main_tables(results):
        table = Table(title=title)
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for sentence in results["findings"]:
        console.print(f"- {sentence}")
    console.print(f"{out_dir}/report.md, results.json, " + ", ".join(results["plots"]))
