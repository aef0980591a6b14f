"""Benchmark: what the switches' real-time priority costs everything else under bulk traffic.

The default topology (userspace datapath: one OVS per site) with every host pinging pg1 ten
times a second, bulk TCP from pg1 to svop1a over dc1-op1a, and a CPU-bound process at
normal priority. Three phases on one bring-up, each `--seconds` long: the switches' main
threads as the lab runs them (SCHED_FIFO while light, lab.switchpriority), always SCHED_FIFO,
and always normal priority. Per phase: the share of a core the CPU-bound process got (the
issue-3 target: at least half a core), the switch daemons' CPU and the TCP throughput.

    .venv/bin/python -m benchmarks.bench_switch_priority [--seconds 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.cpu import cpu_seconds
from controllers.forwarding import make_lab
from lab.iperf import start_server
from lab.signals import stop_signals_raise
from lab.switchpriority import set_realtime
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

PORT = 5399


def phase(lab, daemons: list[int], seconds: float) -> dict:
    """Bulk TCP pg1 -> svop1a beside a CPU-bound process; the middle of the run is measured."""
    src, dst = lab.host("pg1"), lab.host("svop1a")
    server = start_server(dst.popen, dst.IP(), PORT)
    hog = None
    try:
        client = src.popen(["iperf3", "-c", dst.IP(), "-p", str(PORT), "-t", str(seconds), "-J"],
                           stdout=subprocess.PIPE)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(2)
        h0, d0, t0 = cpu_seconds(hog.pid), sum(map(cpu_seconds, daemons)), time.monotonic()
        time.sleep(seconds - 3)
        dt = time.monotonic() - t0
        hog_core = (cpu_seconds(hog.pid) - h0) / dt
        switches_core = (sum(map(cpu_seconds, daemons)) - d0) / dt
        out = client.communicate(timeout=seconds + 30)[0]
        report = json.loads(out[out.index(b"{"):])
        return {"hog_core": round(hog_core, 3), "switches_core": round(switches_core, 3),
                "tcp_gbps": round(report["end"]["sum_received"]["bits_per_second"] / 1e9, 3),
                "seconds_measured": round(dt, 2)}
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        server.kill()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase (default 8)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.seconds < 4:
        parser.error("--seconds: at least 4 (2 s of ramp-up and 1 s at the end are not measured)")
    stop_signals_raise()
    results = {}
    with make_lab(load(DEFAULT_TOPOLOGY), controller="static", calibrate=False) as lab:
        if lab.switch_priority is None:
            print("the lab runs no namespaced userspace switches here (kernel datapath, or "
                  "SCHED_FIFO not permitted): nothing to measure", file=sys.stderr)
            return 1
        daemons = list(lab.switch_priority.tids)  # the switches' main threads = their pids
        pings = [h.popen(["ping", "-q", "-i", "0.1", lab.host("pg1").IP()])
                 for h in lab.net.hosts if h.name != "pg1"]
        try:
            results["realtime while light (the lab)"] = phase(lab, daemons, args.seconds)
            results["realtime while light (the lab)"]["demotions"] = lab.switch_priority.demotions
            lab.switch_priority.stop()
            for pid in daemons:
                set_realtime(pid, True)
            results["always realtime"] = phase(lab, daemons, args.seconds)
            for pid in daemons:
                set_realtime(pid, False)
            results["always normal"] = phase(lab, daemons, args.seconds)
        finally:
            for ping in pings:
                ping.kill()
                ping.wait()
    for name, row in results.items():
        print(f"switches {name}: CPU-bound process {row['hog_core']:.2f} core (target >= 0.5), "
              f"switch daemons {row['switches_core']:.2f} core, TCP {row['tcp_gbps']:.2f} Gbit/s "
              f"({row['seconds_measured']} s measured)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
