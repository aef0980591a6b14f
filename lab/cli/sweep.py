"""`lab sweep FILE`: every point of a sweep file, each repetition a lab run, then the
aggregated report; on this machine one run at a time, or on a Ray cluster (--cluster)."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.table import Table

from lab.cli.output import console


def cmd_sweep(args) -> int:
    """Every point of a sweep file, each repetition a lab run; the aggregated report."""
    from measurements.report import sweep as sweep_report
    from measurements.sweep import plan, run_local
    from measurements.sweepfile import SweepError, load as load_sweep

    try:
        sweep = load_sweep(args.file)
    except SweepError as exc:  # one line naming the file and the field, as a topology's
        print(exc, file=sys.stderr)
        return 2
    out = Path(args.out or f"results/sweep-{sweep.name}")
    runs = plan(sweep)
    console.print(f"sweep {sweep.name}: {len(sweep.points)} points x {sweep.repetitions} "
                  f"repetitions = {len(runs)} runs, "
                  + (f"on the Ray cluster at {args.cluster}" if args.cluster
                     else "one at a time on this machine") + f"; results in {out}/")
    if args.cluster:
        from measurements.sweep_ray import ClusterError, run_cluster
        try:
            outcome = run_cluster(sweep, out, args.cluster, _print_sweep_event)
        except ClusterError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 1
    else:
        outcome = run_local(sweep, out, _print_sweep_event)
    results = sweep_report.write_report(sweep, runs, out)
    for scenario in sweep_report.scenarios_of(results):
        columns, rows = sweep_report.summary_table(results, scenario)
        table = Table(title=f"{scenario}: mean over repetitions [95 % interval]")
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"{len(outcome.finished)} runs finished now, {len(outcome.skipped)} before, "
                  f"{len(outcome.failed)} failed; {out}/sweep-report.md, sweep-results.json, "
                  + ", ".join(results["plots"]))
    return 1 if outcome.failed or results["runs_missing"] else 0


def _print_sweep_event(event) -> None:
    """One line per run: what happened, where, and the time left."""
    run = event.run
    text = (f"[{event.done}/{event.total}] {event.kind} point {run.point.id} "
            f"({run.point.label}) seed {run.seed}")
    if event.where:
        text += f" on {event.where}"
    if event.seconds is not None:
        text += f" in {event.seconds:.0f} s"
    if event.error:
        text += f": {event.error}"
    if event.left_s:
        text += (f"; about {event.left_s:.0f} s left" if event.left_s < 120
                 else f"; about {event.left_s / 60:.0f} min left")
    console.print(text, markup=False)
