"""The `lab` command line: check and show topologies, bring the lab up, run the main job.

Exit status: 0 success, 1 the lab failed or a check did not pass, 2 bad input (one line
naming the file, the field and the problem; nothing is changed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from controllers.forwarding import CONTROLLER_HELP
from controllers.strategies import COMPARED, STRATEGIES
from lab.cli.measure import cmd_bench_db, cmd_compare, cmd_report
from lab.cli.output import UsageError
from lab.cli.running import cmd_controller, cmd_run, cmd_up, cmd_verify
from lab.cli.topo import cmd_cleanup, cmd_doctor, cmd_topo_check, cmd_topo_show
from lab.emulation import CHOICES
from lab.links import LinkParamError
from lab.network import LabError
from lab.signals import Interrupted, stop_signals_raise
from measurements.compare import DEFAULT_SAMPLES as DEFAULT_COMPARE_SAMPLES
from measurements.scenarios import SCENARIOS
from topologies import DEFAULT_TOPOLOGY
from topologies.model import TopologyError


# -- argument parsing ---------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _topology_commands(sub)
    _lab_commands(sub)
    _measure_commands(sub)
    _other_commands(sub)
    return parser


def _lab_options(p) -> None:
    """The options of every command that brings a lab up."""
    p.add_argument("--topology", default=str(DEFAULT_TOPOLOGY),
                   help="topology file (default: %(default)s)")
    p.add_argument("--controller", default="builtin", metavar="KIND",
                   help=f"{CONTROLLER_HELP} (default: %(default)s)")
    p.add_argument("--strategy", default="latency", choices=sorted(STRATEGIES),
                   help="routing strategy of the controller (default: %(default)s)")
    p.add_argument("--links", default="auto", choices=CHOICES,
                   help="link emulation: netem where the kernel has it, else the "
                        "userspace delay line (default: %(default)s)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="do not measure and subtract the switching fabric's own latency")


def _topology_commands(sub) -> None:
    topo = sub.add_parser("topo", help="check or show a topology file")
    topo_sub = topo.add_subparsers(dest="topo_command", required=True, metavar="ACTION")
    check = topo_sub.add_parser("check", help="validate a topology file")
    check.add_argument("file")
    check.set_defaults(func=cmd_topo_check)
    show = topo_sub.add_parser("show", help="sites, links with delays and sources, expected RTTs")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=cmd_topo_show)


def _lab_commands(sub) -> None:
    up = sub.add_parser("up", help="bring the lab up until Ctrl-C")
    _lab_options(up)
    up.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="the quick check: bring up, measure RTTs between all "
                         "sites, report, tear down")
    _lab_options(run)
    run.add_argument("--samples", type=int, default=10, help="probes counted per site pair")
    run.add_argument("--out", help="results directory (default: results/run-<time>)")
    run.set_defaults(func=cmd_run)

    ver = sub.add_parser("verify", help="measure every link and path against the model")
    _lab_options(ver)
    ver.add_argument("--samples", type=int, default=50, help="probes counted per link and path")
    ver.add_argument("--tolerance-ms", type=float,
                     help="allowed |median error| in ms (default: 0.2 netem, 0.3 userspace)")
    ver.add_argument("--tolerance-pct", type=float,
                     help="plus this percentage of the expected RTT (default: 2)")
    ver.add_argument("--json", help="write the report here")
    ver.set_defaults(func=cmd_verify)


def _measure_commands(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks inside the lab")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    db = bench_sub.add_parser("db", help="database access paths from every placement to PostgreSQL")
    _lab_options(db)
    db.add_argument("--samples", type=int, default=200, help="requests per operation and placement")
    db.add_argument("--out", help="results directory (default: results/db-<time>)")
    db.add_argument("--page-queries", type=int, default=20, help="queries per ORM page (N)")
    db.add_argument("--replica", help="host replica reads go to (default: the db-standby host)")
    db.add_argument("--replication", choices=("async", "sync"), default="async",
                    help="streaming replication to the standby (sync: every commit waits for "
                         "it) (default: async)")
    db.set_defaults(func=cmd_bench_db)

    cmp_ = sub.add_parser("compare", help="routing strategies under normal operation and "
                          "failures, then the report")
    _lab_options(cmp_)
    cmp_.add_argument("--strategies", default=",".join(COMPARED),
                      help="comma-separated (default: %(default)s); --strategy is not used")
    cmp_.add_argument("--scenarios", default=",".join(SCENARIOS),
                      help="comma-separated (default: %(default)s)")
    cmp_.add_argument("--samples", type=int, default=DEFAULT_COMPARE_SAMPLES,
                      help="database requests per operation, placement and phase "
                           "(default: %(default)s)")
    cmp_.add_argument("--out", help="results directory (default: results/compare-<time>)")
    cmp_.add_argument("--replication", choices=("async", "sync"), default="async",
                      help="streaming replication to the standby (sync: every commit waits for "
                           "it; no acknowledged write is lost when the primary's DC fails) "
                           "(default: async)")
    cmp_.add_argument("--failback", choices=("restore", "keep"), default="restore",
                      help="after a promotion and the repair the old primary is rebuilt as a "
                           "standby; restore: it becomes the primary again (default), keep: "
                           "the promoted one stays primary")
    cmp_.set_defaults(func=cmd_compare)
    rep = sub.add_parser("report", help="rebuild a comparison's report from its raw files "
                         "(no lab needed)")
    rep.add_argument("dir")
    rep.set_defaults(func=cmd_report)


def _other_commands(sub) -> None:
    ctl = sub.add_parser("controller", help="run the os-ken controller in the foreground "
                         "(attach a lab with `lab up --controller tcp:127.0.0.1:PORT`)")
    ctl.add_argument("--topology", default=str(DEFAULT_TOPOLOGY),
                     help="topology file (default: %(default)s)")
    ctl.add_argument("--strategy", default="latency", choices=sorted(STRATEGIES),
                     help="routing strategy (default: %(default)s)")
    ctl.add_argument("--ofp-port", type=int, default=6653,
                     help="OpenFlow port on 127.0.0.1 (default: %(default)s)")
    ctl.add_argument("--rest-port", type=int, default=8080,
                     help="REST API port on 127.0.0.1, 0 disables it (default: %(default)s)")
    ctl.add_argument("--services", help="services YAML (default: from host roles; "
                     "db TCP 5432, app TCP 8080)")
    ctl.set_defaults(func=cmd_controller)

    sub.add_parser("doctor", help="what this machine supports and what the lab will use"
                   ).set_defaults(func=cmd_doctor)
    sub.add_parser("cleanup", help="remove what a killed lab run left (only the lab's own)"
                   ).set_defaults(func=cmd_cleanup)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "samples", 1) < 1:
            raise UsageError("--samples: must be at least 1")
        with stop_signals_raise():
            return args.func(args)
    except (TopologyError, UsageError, LinkParamError) as exc:
        print(f"lab: {exc}" if not isinstance(exc, TopologyError) else str(exc), file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"lab: stopped by {exc}; torn down", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("lab: interrupted; torn down", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        from measurements.dbworkload import DbBenchError
        from measurements.postgres import DatabaseError

        if isinstance(exc, (LabError, DbBenchError, DatabaseError)):
            print(f"lab: {exc}", file=sys.stderr)
            return 1
        raise
