"""Benchmark: bring-up and teardown time of the default topology and of larger copies of it.

A topology N times larger is N copies of the default one (names suffixed with the copy's
number), their Regions chained by backbone links so the whole stays connected. Each size is
brought up and torn down `--repeat` times; the table shows the median and the range.

    .venv/bin/python -m benchmarks.bench_bringup [--scales 1,2,5,10] [--repeat 3]
        [--controller static|builtin] [--calibrate] [--json FILE]

By default it times the network itself (switches, hosts, links, emulation, static flows);
`--controller builtin --calibrate` times what `lab up` does by default. Below the table, the
median time of each step of bring-up and teardown (lab.network.Timing) per size, to show
which step grows fastest. Memory, the most of the repeats: the lab's processes with their
proportional set sizes summed (PSS, shared pages split), the drop of the kernel's
MemAvailable (the kernel's own share too, but also anything else the machine did meanwhile),
and this process's peak resident size.
Targets on the project's 2-core machine: default up < 3 s and down < 2 s; 10x up <= 30 s and
down <= 10 s.

A size whose lab would not fit in memory is not brought up: each site costs about
MIB_PER_SITE at the peak of bring-up, before the kernel has merged the switch daemons'
identical pages (lab.pagemerge; 10x, 190 sites: MemAvailable fell by 3,160 MiB at most, 2,499
MiB once up; 5,070 MiB before page merging, when an ovs-vswitchd took 16.7 MiB PSS and an
ovsdb-server 5.9, against 3.1 and 1.6 once merged), and a size needing more than
MEMORY_SHARE of MemAvailable is reported as skipped, with what it needs, and the exit status
is 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from controllers.forwarding import make_lab
from lab.runstate import marked_processes
from lab.signals import stop_signals_raise
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load


def scaled(data: dict, factor: int) -> dict:
    """`factor` copies of a topology, sites suffixed with the copy number, Regions chained."""
    if factor == 1:
        return data
    out = {k: v for k, v in data.items() if k not in ("sites", "links", "hosts")}
    out["name"] = f"x{factor}"
    out["sites"], out["links"], out["hosts"] = [], [], []
    regions = [s["name"] for s in data["sites"] if s["kind"] == "region"]
    for k in range(1, factor + 1):
        rename = {s["name"]: f"{s['name'][:7 - len(str(k))]}{k}" for s in data["sites"]}
        for site in data["sites"]:
            site = copy.deepcopy(site)
            for key in ("name", "datacenter", "region"):
                if key in site:
                    site[key] = rename[site[key]]
            out["sites"].append(site)
        for link in data["links"]:
            link = copy.deepcopy(link)
            link["ends"] = [rename[e] for e in link["ends"]]
            out["links"].append(link)
        for i, host in enumerate(data["hosts"], start=1):
            out["hosts"].append({"name": f"h{k}x{i}", "site": rename[host["site"]],
                                 "role": host["role"] if k == 1 or not host["role"].startswith("db-")
                                 else "service"})
        if k > 1:
            out["links"].append({"ends": [f"{regions[0][:7 - len(str(k - 1))]}{k - 1}",
                                          f"{regions[0][:7 - len(str(k))]}{k}"],
                                 "class": "backbone"})
    return out


def lab_memory_mib(run_id: str) -> tuple[int, float]:
    """The lab's processes (this one and those carrying its run's marker) and the sum of their
    proportional set sizes (PSS: shared pages split among their users), in MiB."""
    pids = [os.getpid(), *marked_processes(run_id)]
    total_kib = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kib += sum(int(line.split()[1]) for line in text.splitlines()
                         if line.startswith("Pss:"))
    return len(pids), total_kib / 1024


def available_mib() -> float:
    """The kernel's estimate of memory available to new work (its own share included)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


MIB_PER_SITE = 17
MEMORY_SHARE = 0.8


def too_big(sites: int) -> str | None:
    """Why a lab of `sites` sites is not brought up here (None: it fits)."""
    need, have = sites * MIB_PER_SITE, available_mib()
    if need <= MEMORY_SHARE * have:
        return None
    return (f"needs about {need / 1024:.1f} GiB ({sites} sites x {MIB_PER_SITE} MiB), "
            f"{have / 1024:.1f} GiB available")


def measure(factor: int, repeat: int, controller: str, calibrate: bool) -> dict:
    data = scaled(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()), factor)
    if (why := too_big(len(data["sites"]))) is not None:
        return {"scale": factor, "sites": len(data["sites"]), "skipped": why}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)  # the controller reads the topology from a file
    try:
        topo = load(f.name)
        ups, downs, steps, memory = [], [], {}, []
        for _ in range(repeat):
            lab = make_lab(topo, controller=controller, calibrate=calibrate, log=lambda *_: None)
            before = available_mib()
            t0 = time.monotonic()
            with lab:
                ups.append(time.monotonic() - t0)
                processes, pss = lab_memory_mib(lab.state.run_id)
                memory.append((processes, pss, before - available_mib()))
            downs.append(lab.timing.teardown_s)
            for name, t in [*lab.timing.up.items(), *(("down: " + n, t)
                                                      for n, t in lab.timing.down.items())]:
                steps.setdefault(name, []).append(t)
    finally:
        Path(f.name).unlink()
    return {"scale": factor, "sites": len(topo.sites), "links": len(topo.links),
            "hosts": len(topo.hosts), "n": repeat,
            "up_median_s": statistics.median(ups), "up_min_s": min(ups), "up_max_s": max(ups),
            "down_median_s": statistics.median(downs), "down_min_s": min(downs),
            "down_max_s": max(downs),
            "steps_median_s": {name: statistics.median(t) for name, t in steps.items()},
            "processes": max(m[0] for m in memory),
            "lab_pss_max_mib": max(m[1] for m in memory),
            "available_drop_max_mib": max(m[2] for m in memory),
            "bench_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,2,5,10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--controller", default="static", choices=("static", "builtin"))
    parser.add_argument("--calibrate", action="store_true", help="include the fabric calibration")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    try:
        scales = [int(s) for s in args.scales.split(",")]
    except ValueError:
        parser.error(f"--scales: a comma-separated list of whole numbers, not {args.scales!r}")
    if not scales or min(scales) < 1 or args.repeat < 1:
        parser.error("--scales and --repeat must be 1 or more")
    rows, skipped = [], []
    print(f"{'scale':>5} {'sites':>5} {'links':>5} {'hosts':>5} {'n':>2}  "
          f"{'up s (median, min-max)':>24}  {'down s (median, min-max)':>24}  "
          f"{'procs':>5} {'PSS MiB':>8} {'avail drop':>10} {'bench RSS':>9}")
    with stop_signals_raise():
        for factor in scales:
            r = measure(factor, args.repeat, args.controller, args.calibrate)
            if "skipped" in r:
                skipped.append(r)
                print(f"{r['scale']:>5} {r['sites']:>5}  skipped: {r['skipped']}", flush=True)
                continue
            rows.append(r)
            print(f"{r['scale']:>5} {r['sites']:>5} {r['links']:>5} {r['hosts']:>5} {r['n']:>2}  "
                  f"{r['up_median_s']:>8.2f} ({r['up_min_s']:.2f}-{r['up_max_s']:.2f})"
                  f"{'':>6}  {r['down_median_s']:>8.2f} ({r['down_min_s']:.2f}-"
                  f"{r['down_max_s']:.2f}){'':>6}  {r['processes']:>5} "
                  f"{r['lab_pss_max_mib']:>8.0f} {r['available_drop_max_mib']:>10.0f} "
                  f"{r['bench_peak_rss_mib']:>9.0f}", flush=True)
    print("\nsteps, median s" + "".join(f"{'x' + str(r['scale']):>9}" for r in rows))
    for name in rows[0]["steps_median_s"] if rows else ():
        print(f"  {name:<26}" + "".join(f"{r['steps_median_s'].get(name, 0.0):>9.2f}"
                                        for r in rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows + skipped, indent=1))
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
