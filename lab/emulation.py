"""Link emulation on every kernel: netem where the kernel has it, the userspace delay line elsewhere.

The semantics are the same on both backends:
- delay: applied once per direction, so a link's round trip sees 2 x delay;
- jitter: uniform in delay +- jitter (clipped at 0). The delay line keeps each direction in
  order; netem may reorder packets whose delays cross (its own behaviour);
- loss: each packet, each direction, dropped with the given probability;
- rate: HTB on the two switch-side (node-side) interfaces of the link;
- queue limit: packets waiting in the emulator per direction (default 1000, as netem).

netem runs as Mininet's TCIntf does it: netem under HTB on both ends of the link. The
userspace backend puts one delay-line process (lab.delayline) in the middle of every
emulated link: switch A's port <-> hld<N>a ... hld<N>b <-> switch B's port.

One link, one path: an `EmulatedLink` is built from the topology model's `Link` (its
configured delay `delay_ms`, jitter, loss, bandwidth and queue) and carries the one figure
calibration changes, the hold (`hold_ms`: what the emulator holds a frame, per direction,
for the configured delay). A schedule (topologies.trace, played by lab.schedule) changes the
delay packets should see (`delay_ms`, and jitter and loss where its trace has them) at run
time: the emulator then holds `hold_ms + delay_ms - model.delay_ms`, so what the calibration
took off for the fabric stays off. The delay line also gets each link's span (`span_ms`: the
delay less the calibrated per-hop trim, lab.delayline "Chained links"). Changes are made in
place: the delay line re-reads its configuration (SIGHUP), netem takes `tc qdisc change`.
Nothing is read back from Mininet.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab import delaycore
from lab import delayline_control as delayline
from lab.capabilities import Capabilities
from lab.links import delay_line_ends
from lab.procs import stop_process
from topologies.model import Link
from topologies.model import TracePoint

BACKENDS = ("netem", "userspace")
CHOICES = ("auto",) + BACKENDS


class EmulationError(RuntimeError):
    """The requested link emulation cannot run here, or failed to start."""


def resolve_backend(requested: str, caps: Capabilities) -> str:
    """`auto` picks netem when the kernel has it (probed), else the userspace delay line."""
    if requested == "auto":
        return caps.link_backend
    if requested not in BACKENDS:
        raise EmulationError(f"unknown link backend {requested!r} (choose from {', '.join(CHOICES)})")
    if requested == "netem" and not caps.netem:
        raise EmulationError("--links netem: this kernel has no sch_netem (see 'lab doctor'); "
                             "use --links userspace")
    return requested


def resolve_core(requested: str) -> str:
    """The delay line's core: `compiled` must be built (setup.sh); `auto` falls back to python."""
    if requested not in delayline.CORES:
        raise EmulationError(f"unknown delay-line core {requested!r} (choose from {', '.join(delayline.CORES)})")
    try:
        return delaycore.resolve(requested)
    except delaycore.CoreMissing as exc:
        raise EmulationError(str(exc)) from None


def _ms(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") + "ms"


def htb_commands(ifname: str, rate_mbit: float) -> list[list[str]]:
    """A rate limit as TCIntf sets it: an HTB root with one class."""
    return [
        ["tc", "qdisc", "replace", "dev", ifname, "root", "handle", "5:", "htb", "default", "1"],
        ["tc", "class", "replace", "dev", ifname, "parent", "5:", "classid", "5:1", "htb",
         "rate", f"{rate_mbit:g}mbit", "burst", "15k"],
    ]


@dataclass
class EmulatedLink:
    """One site-to-site link as the emulation applies it: the model's link, where, and its hold."""

    model: Link  # configured delay_ms, jitter_ms, loss_pct, bandwidth_mbit, queue_packets
    intf1: str  # switch-side interface at the link's first end
    intf2: str
    ns1: int | None = None  # a process in intf1's network namespace (None: the root one)
    ns2: int | None = None
    hold_ms: float = field(init=False)  # per direction, for model.delay_ms (calibration: less)
    # What packets should see now: the model's, a schedule's (lab.schedule) or a run-time
    # change's (lab.linkcontrol); loss also an injected failure's.
    delay_ms: float = field(init=False)
    jitter_ms: float = field(init=False)
    loss_pct: float = field(init=False)
    bandwidth_mbit: float | None = field(init=False)

    def __post_init__(self):
        self.hold_ms = self.delay_ms = self.model.delay_ms
        self.jitter_ms = self.model.jitter_ms
        self.loss_pct = self.model.loss_pct
        self.bandwidth_mbit = self.model.bandwidth_mbit

    @property
    def applied_hold_ms(self) -> float:
        """What the emulator holds a frame now: the calibrated hold, moved by the schedule."""
        if self.delay_ms == self.model.delay_ms:
            return self.hold_ms
        return max(-delayline.CHAIN_LIMIT * 1000, self.hold_ms + self.delay_ms - self.model.delay_ms)

    @property
    def index(self) -> int:
        return self.model.index

    @property
    def name(self) -> str:
        return self.model.name


def netem_commands(ifname: str, link: EmulatedLink) -> list[list[str]]:
    """netem (under HTB when the link has a rate) holding packets on `ifname` as `link` says."""
    netem = ["netem", "delay", _ms(max(0.0, link.applied_hold_ms))]
    if link.jitter_ms:
        netem.append(_ms(link.jitter_ms))
    if link.loss_pct:
        netem += ["loss", f"{link.loss_pct:g}%"]
    netem += ["limit", str(link.model.queue_packets)]
    if link.bandwidth_mbit:
        return htb_commands(ifname, link.bandwidth_mbit) + [
            ["tc", "qdisc", "replace", "dev", ifname, "parent", "5:1", "handle", "10:"] + netem]
    return [["tc", "qdisc", "replace", "dev", ifname, "root", "handle", "10:"] + netem]


class LinkEmulation:
    """Applies every link's parameters with one backend, and changes holds after calibration."""

    def __init__(self, backend: str, links: list[EmulatedLink], workdir: Path, core: str = "auto"):
        self.backend = backend
        self.core = core  # the delay line's (lab.delaycore), userspace backend only
        self.links = links
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.span_trim_ms = 0.0
        self.lock = threading.Lock()  # a schedule's player and a failure may change links at once

    @property
    def config_path(self) -> Path:
        return self.workdir / "delayline.json"

    @property
    def stats_path(self) -> Path:
        return self.workdir / "delayline-stats.json"

    def start(self) -> None:
        commands = []
        for link in self.links:
            for ns, intf in ((link.ns1, link.intf1), (link.ns2, link.intf2)):
                if self.backend == "netem":
                    commands += [(ns, c) for c in netem_commands(intf, link)]
                elif link.bandwidth_mbit:
                    commands += [(ns, c) for c in htb_commands(intf, link.bandwidth_mbit)]
        run_batch("tc", commands)
        if self.backend == "userspace" and self.links:
            self.workdir.mkdir(parents=True, exist_ok=True)
            delayline.write_config(self.config_path, self._specs())
            try:
                self.process = delayline.start(self.config_path, self.stats_path,
                                               self.workdir / "delayline.ready", timeout=30,
                                               core=self.core)
            except delayline.DelayLineError as exc:
                raise EmulationError(str(exc)) from None

    def set_holds(self, holds: dict[int, float], span_trim_ms: float | None = None) -> None:
        """New hold times (ms, by link index), applied without dropping queued packets.

        span_trim_ms (userspace backend): taken off every link's span, the delay a frame
        coming from another link gets (calibrated: what a switch costs beyond that).
        """
        with self.lock:
            if span_trim_ms is not None:
                self.span_trim_ms = span_trim_ms
            for link in self.links:
                if link.index in holds:
                    # Negative holds (the delay line's, lab.delayline) become 0 under netem.
                    link.hold_ms = holds[link.index]
            self._apply()

    def set_points(self, points: dict[int, TracePoint]) -> None:
        """A schedule's points (by link index) in force: delay, and jitter and loss if given."""
        with self.lock:
            for link in self.links:
                point = points.get(link.index)
                if point is None:
                    continue
                link.delay_ms = point.delay_ms
                if point.jitter_ms is not None:
                    link.jitter_ms = point.jitter_ms
                if point.loss_pct is not None:
                    link.loss_pct = point.loss_pct
            self._apply(set(points))

    def _apply(self, indices: set[int] | None = None) -> None:
        """Links' current hold, jitter and loss in force without dropping queued packets
        (netem: `tc qdisc change` on the links given, or all)."""
        if self.backend == "netem":
            run_batch("tc", [(ns, ["tc", "qdisc", "change"] + netem_commands(intf, link)[-1][3:])
                     for link in self.links if indices is None or link.index in indices
                     for ns, intf in ((link.ns1, link.intf1), (link.ns2, link.intf2))])
        elif self.process is not None:
            delayline.write_config(self.config_path, self._specs())
            delayline.reload(self.process, self.stats_path)

    def set_loss(self, indices, loss_pct: float) -> None:
        """Drop `loss_pct` % of the frames of these links, both ways (100: a silent cut).

        No port goes down: to the switches and the controller the link looks alive.
        """
        with self.lock:
            for link in self.links:
                if link.index in indices:
                    link.loss_pct = loss_pct
            self._apply(set(indices))

    def set_params(self, index: int, delay_ms: float | None = None,
                   jitter_ms: float | None = None, loss_pct: float | None = None,
                   bandwidth_mbit: float | None = None, rate: bool = False) -> None:
        """New figures for one link at run time, applied to that link alone (None: as is;
        `rate`: set bandwidth_mbit, None then meaning no rate limit).

        The calibrated hold moves with the delay (EmulatedLink.applied_hold_ms), so a link set
        to 20 ms still measures 20 ms. Queued frames keep their deadlines. Only what
        changed is touched: HTB cannot change a qdisc in place, so a new rate replaces the
        class, and adding or removing a rate rebuilds the link's qdiscs.
        """
        with self.lock:
            self._set_params(next(link for link in self.links if link.index == index),
                             delay_ms, jitter_ms, loss_pct, bandwidth_mbit, rate)

    def _set_params(self, link: EmulatedLink, delay_ms, jitter_ms, loss_pct, bandwidth_mbit,
                    rate: bool) -> None:
        old_rate = link.bandwidth_mbit
        link.delay_ms = link.delay_ms if delay_ms is None else delay_ms
        link.jitter_ms = link.jitter_ms if jitter_ms is None else jitter_ms
        link.loss_pct = link.loss_pct if loss_pct is None else loss_pct
        if rate:
            link.bandwidth_mbit = bandwidth_mbit
        commands = []
        for ns, intf in ((link.ns1, link.intf1), (link.ns2, link.intf2)):
            rebuild = (old_rate is None) != (link.bandwidth_mbit is None)
            if rebuild and (old_rate is not None or self.backend == "netem"):
                commands.append((ns, ["tc", "qdisc", "del", "dev", intf, "root"]))
            if rebuild and self.backend == "netem":
                commands += [(ns, c) for c in netem_commands(intf, link)]
            elif rebuild and link.bandwidth_mbit is not None:
                commands += [(ns, c) for c in htb_commands(intf, link.bandwidth_mbit)]
            else:
                if link.bandwidth_mbit != old_rate:
                    commands.append((ns, htb_commands(intf, link.bandwidth_mbit)[1]))
                if self.backend == "netem":
                    commands.append((ns, netem_commands(intf, link)[-1]))
        if commands:
            run_batch("tc", commands)
        if self.backend == "userspace":
            self._apply({link.index})

    def stats(self) -> dict:
        """Per-link counters of the delay line (empty for netem)."""
        if self.process is None:
            return {}
        before = delayline.read_stats(self.stats_path)["time"]
        self.process.send_signal(signal.SIGUSR1)  # write the counters now
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            stats = delayline.read_stats(self.stats_path)
            if stats["time"] > before:
                return stats
            time.sleep(0.005)
        return stats

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def _specs(self) -> list[delayline.LinkSpec]:
        specs = []
        for link in self.links:
            a, b = delay_line_ends(link.index)
            specs.append(delayline.LinkSpec(
                name=link.name, ifname_a=a, ifname_b=b, hold_ms=link.applied_hold_ms,
                jitter_ms=link.jitter_ms, loss_pct=link.loss_pct,
                queue_packets=link.model.queue_packets,
                span_ms=max(0.0, link.delay_ms - self.span_trim_ms)))
        return specs


def run_batch(program: str, commands: list[tuple[int | None, list[str]]]) -> None:
    """`tc` or `ip` commands, one `PROGRAM -batch` per network namespace (given by a process
    in it), the namespaces at once; each command is given with its program name first.

    At once because a change can span namespaces (a link's two switches, a site's
    neighbours) and each batch costs a process start: one after the other, cutting a site
    with four links took 230 ms here."""
    by_ns: dict[int | None, list[list[str]]] = {}
    for ns, cmd in commands:
        by_ns.setdefault(ns, []).append(cmd)

    def batch(ns: int | None, cmds: list[list[str]]) -> subprocess.CompletedProcess:
        prefix = [] if ns is None else ["mnexec", "-a", str(ns)]
        return subprocess.run(prefix + [program, "-batch", "-"], input="".join(
            " ".join(cmd[1:]) + "\n" for cmd in cmds), capture_output=True, text=True,
            timeout=60, env=dict(os.environ, LC_ALL="C"))

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(by_ns)))) as pool:
        results = list(pool.map(batch, by_ns, by_ns.values()))
    for result in results:
        if result.returncode != 0:
            raise EmulationError(f"{program} failed: {result.stderr.strip().splitlines()[0]}")
