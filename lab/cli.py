"""The `lab` command line: check and show topologies, bring the lab up, run the main job.

Exit status: 0 success, 1 the lab failed or a check did not pass, 2 bad input (one line
naming the file, the field and the problem; nothing is changed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lab import cleanup as cleanup_mod
from controllers.strategies import STRATEGIES
from lab.capabilities import detect
from lab.emulation import CHOICES
from lab.network import CONTROLLER_HELP, Lab, LabError, parse_controller
from lab.nsswitch import ALLOCATOR
from lab.links import LinkParamError
from lab.signals import Interrupted, stop_signals_raise
from lab.switchpriority import PRIORITY
from measurements.compare import DEFAULT_SAMPLES as DEFAULT_COMPARE_SAMPLES
from topologies.mininet_topo import DEFAULT_TOPOLOGY
from topologies.model import Topology, TopologyError, load

# Wide enough for the tables when output goes to a file or a CI log.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# -- lab topo ---------------------------------------------------------------------------

def topology_json(topo: Topology) -> dict:
    return {
        "name": topo.name,
        "sites": [{"name": s.name, "kind": s.kind, "lat": s.lat, "lon": s.lon, "label": s.label,
                   "datacenter": s.datacenter, "region": s.region} for s in topo.sites.values()],
        "links": [{"a": l.a, "b": l.b, "class": l.link_class, "delay_ms": round(l.delay_ms, 4),
                   "source": l.delay_source, "distance_km": round(l.distance_km, 1),
                   "bandwidth_mbit": l.bandwidth_mbit, "jitter_ms": l.jitter_ms,
                   "loss_pct": l.loss_pct, "queue_packets": l.queue_packets} for l in topo.links],
        "hosts": [{"name": h.name, "site": h.site, "role": h.role, "ip": h.ip, "mac": h.mac}
                  for h in topo.hosts.values()],
        "paths": topo.lowest_latency_paths(),
    }


def cmd_topo_check(args) -> int:
    topo = load(args.file)
    print(f"{args.file}: ok ({len(topo.sites)} sites, {len(topo.links)} links, "
          f"{len(topo.hosts)} hosts)")
    return 0


def cmd_topo_show(args) -> int:
    topo = load(args.file)
    if args.json:
        print(json.dumps(topology_json(topo), indent=2))
        return 0
    sites = Table(title=f"Sites of {topo.name} ({args.file})")
    for col in ("site", "kind", "lat", "lon", "placed in / parent", "hosts", "label"):
        sites.add_column(col)
    for s in topo.sites.values():
        where = ", ".join(x for x in (s.datacenter, s.region) if x)
        hosts = ", ".join(f"{h.name} ({h.role})" for h in topo.hosts_at(s.name))
        sites.add_row(s.name, s.kind, f"{s.lat:.2f}", f"{s.lon:.2f}", where, hosts, s.label)
    console.print(sites)
    links = Table(title="Links (one-way delay; a round trip sees twice this)")
    for col in ("link", "class", "km", "delay ms", "Mbit/s", "source of the delay"):
        links.add_column(col)
    for l in topo.links:
        links.add_row(l.name, l.link_class, f"{l.distance_km:.0f}", f"{l.delay_ms:.3f}",
                      _fmt(l.bandwidth_mbit, 0), l.delay_source)
    console.print(links)
    paths = Table(title="Expected RTT between sites along the lowest-latency path")
    for col in ("from", "to", "RTT ms", "path"):
        paths.add_column(col)
    for p in topo.lowest_latency_paths():
        paths.add_row(p["src"], p["dst"], _fmt(p["expected_rtt_ms"]), " > ".join(p["path"]))
    console.print(paths)
    return 0


# -- lab doctor / cleanup ----------------------------------------------------------------

def cmd_doctor(args) -> int:
    caps = detect()
    table = Table(title="What this machine supports, and what the lab will use")
    table.add_column("feature")
    table.add_column("found")
    table.add_column("the lab uses")
    yes = lambda ok: "[green]yes[/]" if ok else "[red]no[/]"  # noqa: E731
    table.add_row("kernel", caps.kernel, "")
    table.add_row("sch_netem (tc qdisc netem)", yes(caps.netem),
                  f"link emulation: {caps.link_backend}")
    table.add_row("OVS kernel datapath (openvswitch module)", yes(caps.ovs_kernel),
                  f"OVS datapath: {caps.datapath}")
    table.add_row("Open vSwitch running", yes(caps.ovs_running) + f" {caps.ovs or ''}",
                  "" if caps.ovs_running else "run ./setup.sh")
    table.add_row("Mininet", caps.mininet or "[red]missing[/]", "")
    table.add_row("PostgreSQL server", caps.postgres or "[red]missing[/]", "")
    table.add_row("os-ken", caps.os_ken or "[red]missing[/]", "")
    if caps.datapath == "user":
        table.add_row("tcmalloc (for the userspace switches)", ALLOCATOR or "[red]missing[/]",
                      "preloaded into each switch" if ALLOCATOR else "glibc malloc: run ./setup.sh")
    console.print(table)
    return 0 if caps.ovs_running and caps.mininet else 1


def cmd_cleanup(args) -> int:
    try:
        report = cleanup_mod.cleanup()
    except cleanup_mod.LabRunning as exc:
        print(f"lab cleanup: {exc}", file=sys.stderr)
        return 1
    print(f"lab cleanup: {report.summary()}")
    for kind in ("processes", "bridges", "interfaces", "namespaces"):
        items = getattr(report, kind)
        if items:
            print(f"  {kind}: {' '.join(map(str, items))}")
    return 0


# -- lab up / run -----------------------------------------------------------------------

def _bring_up(args):
    try:
        parse_controller(args.controller)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    topo = load(args.topology)
    lab = Lab(topo, controller=args.controller, links=args.links, strategy=args.strategy,
              calibrate=not args.no_calibrate,
              measured_delays=getattr(args, "measured_delays", False))
    console.print(f"bringing up [bold]{topo.name}[/] ({len(topo.sites)} sites, "
                  f"{len(topo.links)} links, {len(topo.hosts)} hosts): OVS datapath "
                  f"{lab.caps.datapath}, link emulation {lab.backend}, controller "
                  f"{args.controller}, strategy {args.strategy}")
    return lab


def _up_summary(lab) -> str:
    t = lab.timing
    text = (f"up in {t.up_s:.2f} s (network {t.build_s:.2f} s, forwarding "
            f"{t.forwarding_s:.2f} s, calibration {t.calibration_s:.2f} s)")
    if lab.calibration:
        c = lab.calibration
        bases = sorted(link.base_ms for link in c.links)
        left = sum(1 for link in c.links if link.uncompensated_ms > 0)
        text += (f"; fabric calibrated: link bases {bases[0]:.3f}-{bases[-1]:.3f} ms one way, "
                 f"{c.per_hop_rtt_ms:+.3f} ms RTT per further link on paths ({c.paths_probed} "
                 f"paths fitted); {left} links shorter than the fabric's own latency")
    if lab.switch_priority:
        text += f"; switch daemons at SCHED_FIFO {PRIORITY} while light"
    return text


def cmd_up(args) -> int:
    from dashboard.server import serve_lab

    lab = _bring_up(args)
    with lab, serve_lab(lab, dashboard=args.dashboard, port=args.port) as server:
        console.print(_up_summary(lab))
        if lab.controller is not None:
            console.print(f"controller REST API: {lab.controller.rest_url}/v1/ "
                          f"(topology, strategy, paths, links, endpoints)")
        console.print(f"link control API: {server.url}/v1/ (lab link set, lab site cut)")
        if args.dashboard:
            console.print(f"dashboard: [bold]{server.url}/[/]")
        if args.cli:
            from mininet.cli import CLI
            CLI(lab.net)
        else:
            console.print("running; press Ctrl-C (or send SIGTERM) to tear down")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:  # the way to stop `lab up`: not an error
                pass
    console.print(f"torn down in {lab.timing.teardown_s:.2f} s")
    return 0


def _control(method: str, path: str, body: dict) -> int:
    """One request to the running lab's control API (its address is in the run state)."""
    from dashboard.client import ControlError, request

    try:
        reply = request(method, path, body)
    except ControlError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2 if exc.status in (400, 404) else 1
    for link in reply.get("site", {}).get("links", []) if reply.get("site") else [reply["link"]]:
        console.print(f"{link['name']}: {'up' if link['up'] else 'DOWN'}, delay "
                      f"{link['delay_ms']:g} ms, jitter {link['jitter_ms']:g} ms, loss "
                      f"{link['loss_pct']:g} %, rate {_fmt(link['rate_mbit'], 0)} Mbit/s")
    console.print(f"applied in {reply['apply_ms']:.1f} ms")
    return 0


def cmd_link_set(args) -> int:
    body = {k: v for k, v in (("delay_ms", args.delay), ("jitter_ms", args.jitter),
                              ("loss_pct", args.loss), ("rate_mbit", args.rate),
                              ("up", args.up)) if v is not None}
    if not body:
        raise UsageError("lab link set: give at least one of --delay, --jitter, --loss, "
                         "--rate, --up, --down")
    return _control("PUT", f"links/{args.link}", body)


def cmd_site(args) -> int:
    return _control("PUT", f"sites/{args.site}", {"cut": args.action == "cut"})


def cmd_run(args) -> int:
    """The main job: bring the lab up, check reachability, measure RTTs, report, tear down."""
    from lab.probe import site_rtts

    out = Path(args.out or f"results/run-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    lab = _bring_up(args)
    with lab:
        console.print(_up_summary(lab))
        console.print(f"measuring RTT between every pair of sites "
                      f"({args.samples} pings each after a warm-up round)")
        pairs = site_rtts(lab, samples=args.samples, progress=lambda i, n: console.print(
            f"  [{i}/{n}] sources done", end="\r"))
        setup = {"topology": str(args.topology), "datapath": lab.caps.datapath,
                 "links": lab.backend, "controller": args.controller, "strategy": args.strategy,
                 "bring_up_s": round(lab.timing.up_s, 3),
                 "calibration": lab.calibration.as_dict() if lab.calibration else None}
    setup["teardown_s"] = round(lab.timing.teardown_s, 3)
    unreachable = [p for p in pairs if not p.samples]
    lossy = [p for p in pairs if p.samples and p.loss_pct > 0]
    _print_rtt_table(pairs)
    report = {"setup": setup, "pairs": [p.as_dict() for p in pairs],
              "reachable_pairs": len(pairs) - len(unreachable), "total_pairs": len(pairs)}
    (out / "site-rtt.json").write_text(json.dumps(report, indent=1))
    console.print(f"reachability: {len(pairs) - len(unreachable)}/{len(pairs)} site pairs "
                  f"answer; {len(lossy)} with some loss; torn down in {setup['teardown_s']:.2f} s")
    console.print(f"results written to {out}/site-rtt.json")
    return 1 if unreachable else 0


def cmd_verify(args) -> int:
    """Bring the lab up, measure every link and path, compare with the model."""
    from lab.verify import TOLERANCE, Tolerance, verify

    lab = _bring_up(args)
    with lab:
        console.print(_up_summary(lab))
        default_ms, default_pct = TOLERANCE[lab.backend]
        tolerance = Tolerance(default_ms if args.tolerance_ms is None else args.tolerance_ms,
                              default_pct if args.tolerance_pct is None else args.tolerance_pct)
        console.print(f"measuring {len(lab.topology.links)} links and every site-to-site path, "
                      f"{args.samples} probes each; tolerance {tolerance}")
        report = verify(lab, samples=args.samples, tolerance=tolerance)
    for kind in ("links", "paths"):
        table = Table(title=f"{kind.capitalize()}: expected RTT from the model vs measured "
                            f"(backend {report['backend']})")
        for col in ("from", "to", "expected ms", "p50 ms", "p99 ms", "error ms", "n", ""):
            table.add_column(col, justify="left" if col in ("from", "to") else "right")
        for r in report[kind]:
            table.add_row(r["src"], r["dst"], _fmt(r["expected_rtt_ms"]), _fmt(r["p50_ms"]),
                          _fmt(r["p99_ms"]), _fmt(r["error_ms"]), str(r["n"]),
                          "ok" if r["pass"] else "[red]FAIL[/]")
        console.print(table)
    failed = sum(not r["pass"] for r in report["links"] + report["paths"])
    console.print(f"{'PASS' if report['pass'] else 'FAIL'}: {failed} of "
                  f"{len(report['links']) + len(report['paths'])} outside {tolerance}; path "
                  f"error |median| {report['median_abs_path_error_ms']} ms, max "
                  f"{report['max_abs_path_error_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        console.print(f"report written to {args.json}")
    return 0 if report["pass"] else 1


def _print_rtt_table(pairs) -> None:
    table = Table(title="Round-trip time between sites (ping, after warm-up)")
    for col in ("from", "to", "expected ms", "p50 ms", "min ms", "max ms", "n", "loss %"):
        table.add_column(col, justify="right" if col not in ("from", "to") else "left")
    for p in pairs:
        d = p.as_dict()
        table.add_row(p.src, p.dst, _fmt(d["expected_rtt_ms"]), _fmt(d["p50_ms"]),
                      _fmt(d["min_ms"]), _fmt(d["max_ms"]), str(d["n"]), f"{d['loss_pct']:.0f}")
    console.print(table)


def cmd_bench_db(args) -> int:
    """Database access paths from every placement to the lab's PostgreSQL."""
    from measurements.dbbench import run_db_bench

    factory = partial(Lab, controller=args.controller, links=args.links, strategy=args.strategy,
                      calibrate=not args.no_calibrate)
    try:
        result = run_db_bench(args.topology, samples=args.samples, out_dir=args.out,
                              page_queries=args.page_queries, replica=args.replica,
                              console=console, lab_factory=factory)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 1 if result.errors else 0


def cmd_compare(args) -> int:
    """Strategies under normal operation and failures; the report at the end."""
    from measurements.compare import run_compare

    factory = partial(Lab, controller=args.controller, links=args.links,
                      calibrate=not args.no_calibrate)
    try:
        result = run_compare(args.topology, strategies=args.strategies.split(","),
                             scenarios=args.scenarios.split(","), samples=args.samples,
                             out_dir=args.out, console=console, lab_factory=factory)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0 if result.cells else 1


def cmd_report(args) -> int:
    """Regenerate report.md, results.json and the plots from a comparison's raw files."""
    from measurements.report import ReportError, print_main_table, write_report

    try:
        results = write_report(args.dir)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    print_main_table(console, results)
    console.print(f"{args.dir}/report.md, results.json, " + ", ".join(results["plots"]))
    return 0


def cmd_controller(args) -> int:
    """Run the os-ken controller in the foreground until Ctrl-C or SIGTERM."""
    from controllers.launcher import main as run_controller

    argv = ["--topology", args.topology, "--strategy", args.strategy,
            "--ofp-port", str(args.ofp_port), "--rest-port", str(args.rest_port)]
    if args.services:
        argv += ["--services", args.services]
    return run_controller(argv)


# -- argument parsing ---------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    topo = sub.add_parser("topo", help="check or show a topology file")
    topo_sub = topo.add_subparsers(dest="topo_command", required=True, metavar="ACTION")
    check = topo_sub.add_parser("check", help="validate a topology file")
    check.add_argument("file")
    check.set_defaults(func=cmd_topo_check)
    show = topo_sub.add_parser("show", help="sites, links with delays and sources, expected RTTs")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=cmd_topo_show)

    def lab_options(p):
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

    up = sub.add_parser("up", help="bring the lab up until Ctrl-C")
    lab_options(up)
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

    run = sub.add_parser("run", help="the main job: bring up, measure, report, tear down")
    lab_options(run)
    run.add_argument("--samples", type=int, default=10, help="pings counted per site pair")
    run.add_argument("--out", help="results directory (default: results/run-<time>)")
    run.set_defaults(func=cmd_run)

    ver = sub.add_parser("verify", help="measure every link and path against the model")
    lab_options(ver)
    ver.add_argument("--samples", type=int, default=50, help="probes counted per link and path")
    ver.add_argument("--tolerance-ms", type=float,
                     help="allowed |median error| in ms (default: 0.2 netem, 0.3 userspace)")
    ver.add_argument("--tolerance-pct", type=float,
                     help="plus this percentage of the expected RTT (default: 2)")
    ver.add_argument("--json", help="write the report here")
    ver.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="benchmarks inside the lab")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    db = bench_sub.add_parser("db", help="database access paths from every placement to PostgreSQL")
    lab_options(db)
    db.add_argument("--samples", type=int, default=200, help="requests per operation and placement")
    db.add_argument("--out", help="results directory (default: results/db-<time>)")
    db.add_argument("--page-queries", type=int, default=20, help="queries per ORM page (N)")
    db.add_argument("--replica", help="host replica reads go to (default: the db-standby host)")
    db.set_defaults(func=cmd_bench_db)

    cmp_ = sub.add_parser("compare", help="routing strategies under normal operation and "
                          "failures, then the report")
    lab_options(cmp_)
    cmp_.add_argument("--strategies", default="hops,latency,geo,primary-standby",
                      help="comma-separated (default: %(default)s); --strategy is not used")
    cmp_.add_argument("--scenarios", default="normal,dc-failure,lz-cut,service-link-cut",
                      help="comma-separated (default: %(default)s)")
    cmp_.add_argument("--samples", type=int, default=DEFAULT_COMPARE_SAMPLES,
                      help="database requests per operation, placement and phase "
                           "(default: %(default)s)")
    cmp_.add_argument("--out", help="results directory (default: results/compare-<time>)")
    cmp_.set_defaults(func=cmd_compare)
    rep = sub.add_parser("report", help="rebuild a comparison's report from its raw files "
                         "(no lab needed)")
    rep.add_argument("dir")
    rep.set_defaults(func=cmd_report)

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
    return parser


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
        from measurements.dbbench import DbBenchError
        from measurements.postgres import DatabaseError

        if isinstance(exc, (LabError, DbBenchError, DatabaseError)):
            print(f"lab: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
