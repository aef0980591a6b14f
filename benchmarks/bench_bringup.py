"""Benchmark: bring-up and teardown time of the default topology and of larger copies of it.

A topology N times larger is N copies of the default one (names suffixed with the copy's
number), their Regions chained by backbone links so the whole stays connected. Each size is
brought up and torn down `--repeat` times; the table shows the median and the range.

    .venv/bin/python -m benchmarks.bench_bringup [--scales 1,2,5,10] [--repeat 3]
        [--controller static|builtin] [--calibrate] [--json FILE]

By default it times the network itself (switches, hosts, links, emulation, static flows);
`--controller builtin --calibrate` times what `lab up` does by default.
Targets on the project's 2-core machine: default up < 3 s and down < 2 s; 10x up < 30 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from controllers.forwarding import make_lab
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


def measure(factor: int, repeat: int, controller: str, calibrate: bool) -> dict:
    data = scaled(yaml.safe_load(DEFAULT_TOPOLOGY.read_text()), factor)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)  # the controller reads the topology from a file
    try:
        topo = load(f.name)
        ups, downs = [], []
        for _ in range(repeat):
            lab = make_lab(topo, controller=controller, calibrate=calibrate, log=lambda *_: None)
            t0 = time.monotonic()
            with lab:
                ups.append(time.monotonic() - t0)
            downs.append(lab.timing.teardown_s)
    finally:
        Path(f.name).unlink()
    return {"scale": factor, "sites": len(topo.sites), "links": len(topo.links),
            "hosts": len(topo.hosts), "n": repeat,
            "up_median_s": statistics.median(ups), "up_min_s": min(ups), "up_max_s": max(ups),
            "down_median_s": statistics.median(downs), "down_min_s": min(downs),
            "down_max_s": max(downs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,2,5,10")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--controller", default="static", choices=("static", "builtin"))
    parser.add_argument("--calibrate", action="store_true", help="include the fabric calibration")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    rows = []
    print(f"{'scale':>5} {'sites':>5} {'links':>5} {'hosts':>5} {'n':>2}  "
          f"{'up s (median, min-max)':>24}  {'down s (median, min-max)':>24}")
    with stop_signals_raise():
        for factor in (int(s) for s in args.scales.split(",")):
            r = measure(factor, args.repeat, args.controller, args.calibrate)
            rows.append(r)
            print(f"{r['scale']:>5} {r['sites']:>5} {r['links']:>5} {r['hosts']:>5} {r['n']:>2}  "
                  f"{r['up_median_s']:>8.2f} ({r['up_min_s']:.2f}-{r['up_max_s']:.2f})"
                  f"{'':>6}  {r['down_median_s']:>8.2f} ({r['down_min_s']:.2f}-"
                  f"{r['down_max_s']:.2f})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
