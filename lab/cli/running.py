"""`lab up`, `lab run`, `lab verify`, `lab controller`: a lab brought up, looked at, torn down."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from rich.table import Table

from controllers.forwarding import make_lab, parse_controller
from lab.cli.output import UsageError, console, fmt
from lab.files import write_json
from lab.health import describe
from lab.network import LabError
from lab.runstate import run_dir
from lab.schedule import SchedulePlayer, scheduled_links
from lab.switchpriority import PRIORITY
from topologies.loader import load


def _bring_up(args):
    try:
        parse_controller(args.controller)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    topo = load(args.topology)
    lab = make_lab(topo, controller=args.controller, links=args.links, core=args.core,
                   strategy=args.strategy, calibrate=not args.no_calibrate, recalibrate=args.recalibrate,
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
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.measured_at))
        text += (f"; fabric calibrated{f' (kept from {when}; --recalibrate measures again)' if c.reused else ''}: "
                 f"link bases {bases[0]:.3f}-{bases[-1]:.3f} ms one way, "
                 f"{c.per_hop_rtt_ms:+.3f} ms RTT per further link on paths ({c.paths_probed} "
                 f"paths fitted); {left} links shorter than the fabric's own latency")
    if lab.switch_priority:
        text += f"; switch daemons at SCHED_FIFO {PRIORITY} while light"
    return text


def cmd_up(args) -> int:
    """Bring the lab up until Ctrl-C or SIGTERM (or the Mininet CLI's exit); exit 1 if one of
    the lab's processes died meanwhile (lab.watch), after teardown."""
    from dashboard.server import serve_lab

    lab = _bring_up(args)
    died = threading.Event()
    lab.on_death.append(lambda _death: died.set())
    with lab, serve_lab(lab, dashboard=args.dashboard, port=args.port) as server:
        console.print(_up_summary(lab))
        if lab.controller is not None:
            console.print(f"controller REST API: {lab.controller.rest_url}/v1/ "
                          f"(topology, strategy, paths, links, endpoints)")
        console.print(f"link control API: {server.url}/v1/ (lab link set, lab site cut)")
        if args.dashboard:
            console.print(f"dashboard: [bold]{server.url}/[/]")
        with contextlib.ExitStack() as playing:
            if args.schedules:
                schedules = scheduled_links(lab.topology)
                log = run_dir() / "schedule-applied.jsonl"
                playing.enter_context(SchedulePlayer(lab.emulation, schedules, log))
                console.print(f"playing the schedules of {len(schedules)} links; as applied: {log}")
            if args.cli:
                _mininet_cli(lab)
            else:
                console.print("running; press Ctrl-C (or send SIGTERM) to tear down")
                try:
                    while not died.wait(1.0):
                        pass
                except KeyboardInterrupt:  # the way to stop `lab up`: not an error
                    pass
        death = lab.died
    console.print(f"torn down in {lab.timing.teardown_s:.2f} s")
    if death:
        raise LabError(f"{death} while the lab was up; torn down")
    return 0


def _mininet_cli(lab) -> None:
    """Mininet's CLI over the lab's network, showing what its commands print.

    Mininet prints command output at its "output" log level, which the lab keeps quiet while
    it brings the network up; Ctrl-C interrupts the command running in the CLI only (the
    lab's own processes run in sessions of their own).
    """
    from mininet.cli import CLI
    from mininet.log import setLogLevel

    setLogLevel("output")
    try:
        CLI(lab.net)
    finally:
        setLogLevel("warning")


def cmd_run(args) -> int:
    """The quick check: bring the lab up, measure RTTs between all sites, report, tear down."""
    from measurements.probe import site_rtts

    out = Path(args.out or f"results/run-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    lab = _bring_up(args)
    with lab:
        console.print(_up_summary(lab))
        console.print(f"measuring RTT between every pair of sites "
                      f"({args.samples} probes each, both ways, after a warm-up)")
        pairs = site_rtts(lab, samples=args.samples)
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
    write_json(out / "site-rtt.json", report)
    console.print(f"reachability: {len(pairs) - len(unreachable)}/{len(pairs)} site pairs "
                  f"answer; {len(lossy)} with some loss; torn down in {setup['teardown_s']:.2f} s")
    console.print(f"results written to {out}/site-rtt.json")
    return 1 if unreachable else 0


def cmd_verify(args) -> int:
    """Bring the lab up, measure every link and path, compare with the model."""
    from measurements.verify import TOLERANCE, Tolerance, verify

    if args.schedule is not None:
        return _verify_schedule(args)
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
            table.add_row(r["src"], r["dst"], fmt(r["expected_rtt_ms"]), fmt(r["p50_ms"]),
                          fmt(r["p99_ms"]), fmt(r["error_ms"]), str(r["n"]),
                          "ok" if r["pass"] else "[red]FAIL[/]")
        console.print(table)
    failed = sum(not r["pass"] for r in report["links"] + report["paths"])
    console.print(f"{'PASS' if report['pass'] else 'FAIL'}: {failed} of "
                  f"{len(report['links']) + len(report['paths'])} outside {tolerance}; path "
                  f"error |median| {report['median_abs_path_error_ms']} ms, max "
                  f"{report['max_abs_path_error_ms']} ms")
    console.print(f"while measuring, {describe(report['health'])}")
    if args.json:
        write_json(args.json, report)
        console.print(f"report written to {args.json}")
    return 0 if report["pass"] else 1


def _verify_schedule(args) -> int:
    """`lab verify --schedule SECONDS`: the delay over time against the schedules."""
    from measurements.report.scheduleplot import schedule_plot
    from measurements.schedulecheck import verify_schedule

    if args.schedule <= 0:
        raise UsageError("--schedule: must be a positive number of seconds")
    out = Path(args.out or f"results/schedule-{time.strftime('%Y%m%d-%H%M%S')}")
    lab = _bring_up(args)
    with lab:
        console.print(_up_summary(lab))
        console.print(f"playing the schedules for {args.schedule:g} s, probing each scheduled "
                      "link every few ms")
        try:
            report = verify_schedule(lab, args.schedule, out)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    table = Table(title="Delay over time: measured vs scheduled (RTT of probes pinned to "
                        "each link)")
    for col in ("link", "trace", "n", "median |error| ms", "p95 |error| ms", "alignment s"):
        table.add_column(col, justify="left" if col in ("link", "trace") else "right")
    for r in report["links"]:
        table.add_row(r["name"], Path(r["schedule"]["trace"]).name, str(r["n"]),
                      fmt(r["median_abs_error_ms"]), fmt(r["p95_abs_error_ms"]),
                      fmt(r["alignment_s"], 3))
    console.print(table)
    console.print(f"{'PASS' if report['pass'] else 'FAIL'}: median |error| "
                  f"{report['median_abs_error_ms']} ms over {report['n']} samples (target <= "
                  f"{report['targets']['median_abs_error_ms']} ms), largest alignment "
                  f"{report['max_abs_alignment_s']} s (target within "
                  f"{report['targets']['alignment_s']} s)")
    console.print(f"{out}/schedule-check.json, schedule-applied.jsonl, schedule-samples.json, "
                  f"{schedule_plot(out)}")
    return 0 if report["pass"] else 1


def _print_rtt_table(pairs) -> None:
    table = Table(title="Round-trip time between sites (ICMP echo, after warm-up)")
    for col in ("from", "to", "expected ms", "p50 ms", "min ms", "max ms", "n", "loss %"):
        table.add_column(col, justify="right" if col not in ("from", "to") else "left")
    for p in pairs:
        d = p.as_dict()
        table.add_row(p.src, p.dst, fmt(d["expected_rtt_ms"]), fmt(d["p50_ms"]),
                      fmt(d["min_ms"]), fmt(d["max_ms"]), str(d["n"]), f"{d['loss_pct']:.0f}")
    console.print(table)


def cmd_controller(args) -> int:
    """Run the os-ken controller in the foreground until Ctrl-C or SIGTERM."""
    from controllers.launcher import main as run_controller

    argv = ["--topology", args.topology, "--strategy", args.strategy,
            "--ofp-port", str(args.ofp_port), "--rest-port", str(args.rest_port)]
    if args.services:
        argv += ["--services", args.services]
    return run_controller(argv)
