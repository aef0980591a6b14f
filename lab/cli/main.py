"""The `lab` command line: check and show topologies, bring the lab up, run the main job.

Exit status: 0 success, 1 the lab failed or a check did not pass, 2 bad input (one line
naming the file, the field and the problem; nothing is changed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from controllers.forwarding import CONTROLLER_HELP
from controllers.strategies import COMPARED, STRATEGIES
from lab.cli.checks import check_options
from lab.cli.control import cmd_link_set, cmd_site
from lab.cli.measure import cmd_bench_db, cmd_compare, cmd_report
from lab.cli.output import UsageError, file_commands
from lab.cli.running import cmd_controller, cmd_run, cmd_up, cmd_verify
from lab.cli.sweep import cmd_sweep
from lab.cli.topo import cmd_cleanup, cmd_doctor, cmd_topo_check, cmd_topo_show
from lab.cli.trace import add_trace_commands
from lab.delayline_control import CORES
from lab.emulation import CHOICES
from lab.links import LinkParamError
from lab.network import LabError
from lab.signals import Interrupted, stop_signals_raise
from measurements.compare import DEFAULT_SAMPLES as DEFAULT_COMPARE_SAMPLES
from measurements.dr import FAILBACK_MODES
from measurements.postgres import REPLICATION_MODES
from measurements.scenarios import DEFAULT_SCENARIOS, SCENARIOS
from topologies import DEFAULT_TOPOLOGY
from topologies.model import TopologyError, one_line


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
    p.add_argument("--core", default="auto", choices=CORES,
                   help="the userspace delay line's forwarding core: compiled (built by setup.sh), "
                        "python, or auto: compiled when built (default: %(default)s)")
    p.add_argument("--no-calibrate", action="store_true",
                   help="do not measure and subtract the switching fabric's own latency")
    p.add_argument("--recalibrate", action="store_true",
                   help="measure the fabric again even where a calibration of this machine, "
                        "code and topology is kept (.cache/calibration)")


def _topology_commands(sub) -> None:
    topo = file_commands(sub, "topo", "check or show a topology file", {
        "check": ("validate a topology file", cmd_topo_check),
        "show": ("sites, links with delays and sources, expected RTTs", cmd_topo_show)})
    topo.choices["show"].add_argument("--json", action="store_true", help="print one JSON object")
    add_trace_commands(sub)


def _lab_commands(sub) -> None:
    up = sub.add_parser("up", help="bring the lab up until Ctrl-C")
    _lab_options(up)
    up.add_argument("--cli", action="store_true", help="open the Mininet CLI")
    up.add_argument("--dashboard", action="store_true",
                    help="serve the live dashboard (127.0.0.1; the address is printed)")
    up.add_argument("--port", type=int, default=0,
                    help="port of the dashboard and link control API on 127.0.0.1 "
                         "(default: one the kernel picks)")
    up.add_argument("--measured-delays", action="store_true",
                    help="the controller routes by the link delays it measures where they "
                         "clearly differ from the configured ones (so a link slowed with "
                         "`lab link set` is avoided)")
    up.add_argument("--schedules", action="store_true",
                    help="play the topology's schedules (delay traces) while up")
    up.set_defaults(func=cmd_up)

    link = sub.add_parser("link", help="change a link of the running lab (`lab up`)")
    link_sub = link.add_subparsers(dest="link_command", required=True, metavar="ACTION")
    link_set = link_sub.add_parser("set", help="delay, jitter, loss, rate, ports up or down")
    link_set.add_argument("link", help="link name as in the topology, e.g. dc1-lz1a")
    link_set.add_argument("--delay", type=float, metavar="MS", help="one-way delay")
    link_set.add_argument("--jitter", type=float, metavar="MS", help="uniform jitter")
    link_set.add_argument("--loss", type=float, metavar="PCT", help="loss per frame, each way")
    link_set.add_argument("--rate", type=float, metavar="MBIT", help="rate limit")
    state = link_set.add_mutually_exclusive_group()
    state.add_argument("--up", dest="up", action="store_const", const=True,
                       help="both switch ports up")
    state.add_argument("--down", dest="up", action="store_const", const=False,
                       help="both switch ports down (the controller gets a port-down)")
    link_set.set_defaults(func=cmd_link_set)

    site = sub.add_parser("site", help="cut a site of the running lab off, or restore it")
    site.add_argument("action", choices=("cut", "restore"))
    site.add_argument("site")
    site.set_defaults(func=cmd_site)

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
    ver.add_argument("--schedule", type=float, metavar="SECONDS",
                     help="instead: play the topology's schedules this long and compare the "
                          "delay over time with them (files and schedule.png in --out)")
    ver.add_argument("--out", help="with --schedule: results directory "
                                   "(default: results/schedule-<time>)")
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
    db.add_argument("--replication", choices=REPLICATION_MODES, default="async",
                    help="streaming replication to the standby (sync: every commit waits for "
                         "it) (default: async)")
    db.set_defaults(func=cmd_bench_db)

    cmp_ = sub.add_parser("compare", help="routing strategies under normal operation and "
                          "failures, then the report")
    _lab_options(cmp_)
    cmp_.add_argument("--strategies", default=",".join(COMPARED),
                      help="comma-separated (default: %(default)s); --strategy is not used")
    cmp_.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                      help=f"comma-separated, of {', '.join(SCENARIOS)} (default: %(default)s)")
    cmp_.add_argument("--samples", type=int, default=DEFAULT_COMPARE_SAMPLES,
                      help="database requests per operation, placement and phase "
                           "(default: %(default)s)")
    cmp_.add_argument("--out", help="results directory (default: results/compare-<time>)")
    cmp_.add_argument("--replication", choices=REPLICATION_MODES, default="async",
                      help="streaming replication to the standby (sync: every commit waits for "
                           "it; no acknowledged write is lost when the primary's DC fails) "
                           "(default: async)")
    cmp_.add_argument("--failback", choices=FAILBACK_MODES, default="restore",
                      help="after a promotion and the repair the old primary is rebuilt as a "
                           "standby; restore: it becomes the primary again (default), keep: "
                           "the promoted one stays primary")
    cmp_.set_defaults(func=cmd_compare)
    rep = sub.add_parser("report", help="rebuild a comparison's report from its raw files "
                         "(no lab needed)")
    rep.add_argument("dir")
    rep.set_defaults(func=cmd_report)

    swp = sub.add_parser("sweep", help="run every point of a sweep file (repetitions, "
                         "resumable), then the aggregated report")
    swp.add_argument("file", help="sweep file (YAML; docs/sweeps.md)")
    swp.add_argument("--out", help="results directory (default: results/sweep-<name>); "
                     "runs finished there are skipped")
    swp.add_argument("--cluster", metavar="ADDRESS",
                     help="run the points on this Ray cluster (e.g. HEAD:6379, or auto), one "
                          "lab per worker offering a 'lab' resource")
    swp.set_defaults(func=cmd_sweep)


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
        check_options(args)
        with stop_signals_raise():
            return args.func(args)
    except (TopologyError, UsageError, LinkParamError) as exc:
        print(one_line(f"lab: {exc}" if not isinstance(exc, TopologyError) else str(exc)),
              file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"lab: stopped by {exc}; torn down", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("lab: interrupted; torn down", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        from measurements.cells import CompareError
        from measurements.dbworkload import DbBenchError
        from measurements.postgres import DatabaseError

        if isinstance(exc, (LabError, CompareError, DbBenchError, DatabaseError)):
            print(f"lab: {exc}", file=sys.stderr)
            return 1
        raise
