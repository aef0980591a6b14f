"""`lab topo check|show`, `lab doctor`, `lab cleanup`: commands that bring no lab up."""

from __future__ import annotations

import json
import sys

from rich.table import Table

from lab import cleanup as cleanup_mod
from lab import delaycore
from lab.capabilities import detect
from lab.cli.output import console, fmt
from lab.nsswitch import ALLOCATOR
from topologies.loader import load


def cmd_topo_check(args) -> int:
    topo = load(args.file)
    print(f"{args.file}: ok ({len(topo.sites)} sites, {len(topo.links)} links, "
          f"{len(topo.hosts)} hosts)")
    return 0


def cmd_topo_show(args) -> int:
    topo = load(args.file)
    if args.json:
        print(json.dumps(topo.as_dict(), indent=2))
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
                      fmt(l.bandwidth_mbit, 0), l.delay_source)
    console.print(links)
    paths = Table(title="Expected RTT between sites along the lowest-latency path")
    for col in ("from", "to", "RTT ms", "path"):
        paths.add_column(col)
    for p in topo.lowest_latency_paths():
        paths.add_row(p["src"], p["dst"], fmt(p["expected_rtt_ms"]), " > ".join(p["path"]))
    console.print(paths)
    return 0


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
    table.add_row("compiled delay-line core (lab/_delaycore.c)", yes(delaycore.MISSING is None),
                  f"delay-line core: {delaycore.resolve('auto')}"
                  + ("" if delaycore.MISSING is None else ": run ./setup.sh"))
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
