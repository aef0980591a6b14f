"""`lab trace check|show|generate`: delay traces (topologies.trace), no lab brought up."""

from __future__ import annotations

import shlex
import sys

from rich.table import Table

from lab.cli.output import UsageError, console, file_commands
from lab.files import atomic_write
from topologies.trace import format_trace, load_trace, parse_trace
from topologies.tracegen import PATTERNS


def cmd_trace_check(args) -> int:
    trace = load_trace(args.file)
    delays = [p.delay_ms for p in trace.points]
    print(f"{args.file}: ok ({len(trace.points)} rows over {trace.points[-1].time_s:g} s, "
          f"delay {min(delays):g}-{max(delays):g} ms)")
    return 0


def cmd_trace_show(args) -> int:
    trace = load_trace(args.file)
    for key, value in trace.header:
        console.print(f"{key}: {value}")
    table = Table(title=f"{args.file} ({len(trace.points)} rows)")
    for col in ("time s", "delay ms", "jitter ms", "loss %"):
        table.add_column(col, justify="right")
    for p in trace.points:
        table.add_row(f"{p.time_s:g}", f"{p.delay_ms:g}", *("" if v is None else f"{v:g}"
                                                             for v in (p.jitter_ms, p.loss_pct)))
    console.print(table)
    return 0


def cmd_trace_generate(args) -> int:
    """Write a synthetic pattern as a trace file (its command line as the source)."""
    params = {k: v for k, v in vars(args).items()
              if k in ("base_ms", "amplitude_ms", "period_s", "duration_s", "step_s", "to_ms",
                       "at_s", "height_ms", "every_s", "width_s") and v is not None}
    try:
        points = PATTERNS[args.pattern](**params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"trace generate {args.pattern}: {exc}") from None
    header = [("source", "synthetic: lab trace generate " + shlex.join(sys.argv[3:])),
              ("license", "CC0-1.0 (generated)"),
              ("description", args.description or f"{args.pattern} pattern")]
    text = format_trace(points, header)
    parse_trace(text, args.out)  # what we write must read back
    atomic_write(args.out, text)
    print(f"{args.out}: {len(points)} rows")
    return 0


def add_trace_commands(sub) -> None:
    trace = file_commands(sub, "trace", "check, show or generate a delay trace (CSV)", {
        "check": ("validate a trace file", cmd_trace_check),
        "show": ("a trace's header and rows", cmd_trace_show)})
    gen = trace.add_parser("generate", help="a synthetic pattern: sine (daily load), "
                           "step (route change), spikes (congestion)")
    gen.add_argument("pattern", choices=sorted(PATTERNS))
    gen.add_argument("--out", required=True, help="trace file to write")
    gen.add_argument("--base-ms", type=float, required=True, help="one-way delay at rest")
    gen.add_argument("--duration-s", type=float, help="length of the trace (sine default: a day)")
    gen.add_argument("--amplitude-ms", type=float, help="sine: half the swing")
    gen.add_argument("--period-s", type=float, help="sine: default a day")
    gen.add_argument("--step-s", type=float, help="sine: time between rows (default 900)")
    gen.add_argument("--to-ms", type=float, help="step: the delay after the change")
    gen.add_argument("--at-s", type=float, help="step: when it changes")
    gen.add_argument("--height-ms", type=float, help="spikes: added during a spike")
    gen.add_argument("--every-s", type=float, help="spikes: time between spike starts")
    gen.add_argument("--width-s", type=float, help="spikes: length of a spike")
    gen.add_argument("--description", help="header line describing the trace")
    gen.set_defaults(func=cmd_trace_generate)
