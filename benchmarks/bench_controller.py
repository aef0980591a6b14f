"""Benchmark: how fast the os-ken controller sets up paths and fails over, on the default lab.

The controller programs every switch proactively (all paths when a switch connects, the
changed ones when anything changes), so no packet ever waits for a reactive flow set-up.
What is timed instead, each `--repeat` times, under a continuous 1 ms ICMP probe (one
process, kernel receive timestamps):

- strategy change: from `PUT /v1/strategy` until the first probe that travels the new path
  (cden <-> svop2a, whose fewest-hops and lowest-latency paths differ by about 40 ms RTT);
- first packet: the round trip of a host's first packet to another site with a cold ARP
  cache (the first switch answers ARP from the model), minus the steady round trip after;
- port down: the outage (from the first probe lost to the first answered again) after a
  switch port on the pair's path goes down (`ip link set dev ... down` where the switch runs: a port-status
  event reaches the controller);
- silent data-center failure: the outage after every link of dc1 drops everything in the
  delay line (carrier stays up, no event reaches the controller: only its probes notice),
  on a pair whose path crosses dc1 without ending there.

    flock /tmp/hclab-lab.lock .venv/bin/python -m benchmarks.bench_controller [--repeat 5] [--json FILE]

Targets (issue 15): port down <= 50 ms, silent failure <= 300 ms (DNS health-check failover
takes tens of seconds). Teardown runs on any exit (exceptions, Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

from controllers.forwarding import make_lab
from lab.icmpprobe import ICMP_ECHOREPLY, SO_TIMESTAMPNS, echo_request, open_socket_in
from lab.signals import stop_signals_raise
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

INTERVAL_S = 0.001
TARGETS_MS = {"port_down_outage": 50.0, "silent_dc_outage": 300.0}


class Prober(threading.Thread):
    """Echo requests every INTERVAL_S from one host to another until stopped.

    `sent[seq]` is the send time (time.time()), `rtt_ms[seq]` the round trip of the
    answered ones (kernel receive timestamp minus send time).
    """

    def __init__(self, lab, src: str, dst: str, interval: float = INTERVAL_S):
        super().__init__(daemon=True)
        self.sock = open_socket_in(lab.host(src).pid)
        self.dst = lab.host(dst).IP()
        self.interval = interval
        self.icmp_id = (os.getpid() ^ id(self)) & 0xFFFF
        self.sent: list[float] = []
        self.rtt_ms: dict[int, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        next_send = time.monotonic()
        while not self._done.is_set():
            now = time.monotonic()
            if now >= next_send:
                seq = len(self.sent)
                if seq > 0xFFFF:
                    raise RuntimeError("a probe run is limited to 65536 probes")
                packet = echo_request(self.icmp_id, seq)
                self.sent.append(time.time())
                try:
                    self.sock.sendto(packet, (self.dst, 0))
                except OSError:
                    pass  # no route for a moment: counts as lost
                next_send = max(next_send + self.interval, now)
            readable, _, _ = select.select([self.sock], [], [], max(0.0, next_send - time.monotonic()))
            if readable:
                self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(2048, 256)
            except BlockingIOError:
                return
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, ident, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind != ICMP_ECHOREPLY or ident != self.icmp_id or seq >= len(self.sent):
                continue
            stamp = next((struct.unpack("qq", d[:16]) for lvl, t, d in anc
                          if lvl == socket.SOL_SOCKET and t == SO_TIMESTAMPNS), None)
            received = stamp[0] + stamp[1] * 1e-9 if stamp else time.time()
            self.rtt_ms[seq] = (received - self.sent[seq]) * 1000

    def finish(self, linger: float = 0.3) -> None:
        """Stop sending, collect late answers for `linger` seconds, close."""
        self._done.set()
        self.join()
        end = time.monotonic() + linger
        while (left := end - time.monotonic()) > 0:
            if select.select([self.sock], [], [], left)[0]:
                self._drain()
        self.sock.close()


def outage_ms(probe: Prober, since: float) -> tuple[float | None, int]:
    """Longest run of unanswered probes sent after `since`: (first answered again - first
    lost, in ms; 0 if none was lost; None if the run never ended) and the probes lost."""
    first = next((i for i, t in enumerate(probe.sent) if t >= since), len(probe.sent))
    best, lost, run_start = 0.0, 0, None
    for seq in range(first, len(probe.sent)):
        if seq not in probe.rtt_ms:
            lost += 1
            if run_start is None:
                run_start = seq
        elif run_start is not None:
            best = max(best, (probe.sent[seq] - probe.sent[run_start]) * 1000)
            run_start = None
    return (None if run_start is not None else best), lost


def path_of(lab, src: str, dst: str) -> list[str]:
    return next(p["path"] for p in lab.controller.get("paths")["paths"]
                if p["src"] == src and p["dst"] == dst)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def steady(lab, src: str, dst: str, seconds: float = 0.3) -> float:
    """Median RTT of a short probe run."""
    probe = Prober(lab, src, dst)
    probe.start()
    time.sleep(seconds)
    probe.finish()
    return statistics.median(probe.rtt_ms.values())


def bench_strategy_change(lab, repeat: int) -> list[dict]:
    """Time from PUT /v1/strategy to the first probe sent that took the new path."""
    src, dst = "cden", "svop2a"
    rtt = {}
    for name in ("latency", "hops"):
        lab.controller.set_strategy(name)
        time.sleep(0.2)
        rtt[name] = steady(lab, src, dst)
    threshold = (rtt["latency"] + rtt["hops"]) / 2
    rows = []
    for i in range(repeat):
        for name in ("latency", "hops"):  # the lab is on the other one
            probe = Prober(lab, src, dst)
            probe.start()
            time.sleep(0.2)
            t0 = time.time()
            lab.controller.set_strategy(name)
            time.sleep(0.3 + max(rtt.values()) / 1000)
            probe.finish()
            new = [seq for seq, r in sorted(probe.rtt_ms.items()) if probe.sent[seq] >= t0
                   and (r > threshold) == (name == "hops")]
            lost = sum(1 for seq, t in enumerate(probe.sent) if t >= t0 and seq not in probe.rtt_ms)
            rows.append({"to": name, "setup_ms": (probe.sent[new[0]] - t0) * 1000 if new else None,
                         "lost": lost})
    lab.controller.set_strategy("latency")
    return rows


def bench_first_packet(lab, repeat: int) -> list[dict]:
    """A cold ARP cache: the first packet's RTT above the steady RTT that follows it."""
    pairs = [("mono2", "svrga"), ("svlz2b", "pg1"), ("cphl", "svop2a")]
    rows = []
    for i in range(repeat):
        src, dst = pairs[i % len(pairs)]
        lab.host(src).cmd("ip neigh flush all")
        probe = Prober(lab, src, dst, interval=0.005)
        probe.start()
        time.sleep(0.5)
        probe.finish()
        if 0 not in probe.rtt_ms:
            rows.append({"pair": f"{src}>{dst}", "first_ms": None, "extra_ms": None})
            continue
        rest = [r for seq, r in probe.rtt_ms.items() if seq >= 10]
        rows.append({"pair": f"{src}>{dst}", "first_ms": probe.rtt_ms[0],
                     "extra_ms": probe.rtt_ms[0] - statistics.median(rest)})
    return rows


def outage_runs(lab, src: str, dst: str, repeat: int, cut, settle, repair,
                what: dict) -> list[dict]:
    """Cut, measure the outage under the 1 ms probe, repair, wait for the original path."""
    original = path_of(lab, src, dst)
    rows = []
    for _ in range(repeat):
        probe = Prober(lab, src, dst)
        probe.start()
        time.sleep(0.3)
        t0 = time.time()
        try:
            cut()
            settle()
            detour = path_of(lab, src, dst)
        finally:
            probe.finish()
            repair()
        ms, lost = outage_ms(probe, t0)
        rows.append({**what, "outage_ms": ms, "lost": lost, "detour": detour})
        wait_until(lambda: path_of(lab, src, dst) == original, 5, "the original path back")
        time.sleep(0.3)
    return rows


def bench_port_down(lab, repeat: int) -> list[dict]:
    src, dst, a, b = "svrga", "pg1", "rga", "lz1a"
    topo = lab.topology
    original = path_of(lab, src, dst)
    assert [a, b] == original[:2], original
    switch = lab.net.get(topo.sites[a].switch)  # its ports may live in its namespace
    port = f"{switch.name}-eth{topo.port_to(a, b)}"
    return outage_runs(lab, src, dst, repeat,
                       cut=lambda: switch.cmd(f"ip link set dev {port} down"),
                       settle=lambda: time.sleep(0.7),
                       repair=lambda: switch.cmd(f"ip link set dev {port} up"),
                       what={"link": f"{a}-{b}"})


def bench_silent_dc(lab, repeat: int, site: str = "dc1") -> list[dict]:
    topo = lab.topology
    src, dst = "svrga", "pg2"
    original = path_of(lab, src, dst)
    assert site in original[1:-1], f"{src} -> {dst} does not cross {site}: {original}"
    indices = {link.index for link in topo.links if site in (link.a, link.b)}

    def settle():
        wait_until(lambda: site not in path_of(lab, src, dst), 5, f"route around silent {site}")
        time.sleep(0.5)

    return outage_runs(lab, src, dst, repeat,
                       cut=lambda: lab.emulation.set_loss(indices, 100.0), settle=settle,
                       repair=lambda: lab.emulation.set_loss(indices, 0.0),
                       what={"site": site})


def summary(name: str, values: list[float | None]) -> dict:
    got = [v for v in values if v is not None]
    row = {"measure": name, "n": len(values), "failed": len(values) - len(got)}
    if got:
        row.update(median=statistics.median(got), min=min(got), max=max(got))
    target = TARGETS_MS.get(name)
    if target is not None:
        row["target"] = target
        row["pass"] = bool(got) and not row["failed"] and row["max"] <= target
    return row


def print_summary(table: list[dict]) -> None:
    """The rows of `summary` as a table: n, failures, median, min, max, target, pass."""
    print(f"{'measure':<28} {'n':>3} {'fail':>4} {'median':>9} {'min':>9} {'max':>9} {'target':>8}  ok")
    for r in table:
        cells = [f"{r[k]:>9.2f}" if k in r else f"{'-':>9}" for k in ("median", "min", "max")]
        print(f"{r['measure']:<28} {r['n']:>3} {r['failed']:>4} {' '.join(cells)} "
              f"{r.get('target', '-'):>8}  {'' if 'pass' not in r else 'yes' if r['pass'] else 'NO'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the raw results and the summary here")
    args = parser.parse_args()
    results: dict = {}
    with stop_signals_raise():
        lab = make_lab(load(args.topology), controller="builtin", strategy="latency", log=lambda *_: None)
        t0 = time.monotonic()
        with lab:
            results["bring_up_s"] = round(time.monotonic() - t0, 3)
            results["timing"] = dataclasses.asdict(lab.timing)
            results["strategy_change"] = bench_strategy_change(lab, args.repeat)
            results["first_packet"] = bench_first_packet(lab, args.repeat)
            results["port_down"] = bench_port_down(lab, args.repeat)
            results["silent_dc"] = bench_silent_dc(lab, args.repeat)
            results["controller_log"] = str(lab.controller.log_path)
    table = [
        summary("strategy_change_setup", [r["setup_ms"] for r in results["strategy_change"]]),
        summary("strategy_change_lost_probes", [r["lost"] for r in results["strategy_change"]]),
        summary("first_packet_extra", [r["extra_ms"] for r in results["first_packet"]]),
        summary("port_down_outage", [r["outage_ms"] for r in results["port_down"]]),
        summary("silent_dc_outage", [r["outage_ms"] for r in results["silent_dc"]]),
    ]
    results["summary"] = table
    print(f"bring-up {results['bring_up_s']:.2f} s; probes every {INTERVAL_S * 1000:g} ms; "
          f"{args.repeat} repetitions")
    print_summary(table)
    print("units: ms, except strategy_change_lost_probes (probes lost during the change)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("pass", True) for r in table) else 1


if __name__ == "__main__":
    sys.exit(main())
