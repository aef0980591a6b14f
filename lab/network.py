"""Bring-up and teardown of the lab's Mininet network.

`Lab` builds the network of a topology model with Open vSwitch (the kernel datapath where
the kernel has it, the userspace datapath elsewhere), writes down what it owns before it
creates it, emulates its links from the model (lab.emulation), lets the forwarding it was
handed program the switches (lab.forwarding; controllers.forwarding.make_lab builds a Lab
with the one `--controller` names), calibrates the switching fabric's own latency out of
the emulated delays (lab.calibration: it returns the holds, the Lab applies them), and
always tears everything down again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

from lab import calibration_cache, cleanup
from lab.calibration import calibrate
from lab.capabilities import Capabilities, detect, run
from lab.emulation import EmulatedLink, EmulationError, LinkEmulation, resolve_backend, resolve_core
from lab.forwarding import Forwarding, ForwardingError
from lab.links import LabHost, LabLink, VethBatch
from lab.nsswitch import NamespacedOVSSwitch
from lab.pagemerge import Merging
from lab.procs import stop_process
from lab.runstate import (PROCESS_MARKER, RunState, load_state, new_run_id, process_start,
                          remove_state, run_dir)
from lab.signals import signals_held
from lab.switchpriority import SwitchPriority
from lab.watch import StepTimeout, Watch, bounded, pid_check, process_check
from topologies.mininet_topo import HybridTopo
from topologies.model import Topology


class LabError(RuntimeError):
    """The lab could not be brought up or used; the message says why and what to do."""


def _netns_pid(node) -> int | None:
    """A process in the node's network namespace, or None for the root namespace."""
    return node.pid if node.inNamespace else None


class LabSwitch(OVSSwitch):
    """A system-OVS bridge tagged with the run id, so `lab cleanup` can find it after a crash.

    Used with the kernel datapath; with the userspace datapath see lab.nsswitch.
    """

    def __init__(self, name, run_id: str = "", **params):
        self.run_id = run_id
        super().__init__(name, **params)

    def bridgeOpts(self):
        return super().bridgeOpts() + f" external_ids:hclab-run={self.run_id}"


# ovs-ofctl processes programming switches at the same time (Lab.ofctl).
OFCTL_AT_ONCE = 16

# Bring-up steps after building the network (Timing.build_s is every step before these).
AFTER_BUILD = ("forwarding", "calibration")


@dataclass
class Timing:
    """Seconds each step of bring-up (`up`) and teardown (`down`) took, in the order run.

    The steps are what lab.network does one after the other, so a benchmark can say which one
    grows with the topology (benchmarks.bench_bringup).
    """

    up: dict[str, float] = field(default_factory=dict)
    down: dict[str, float] = field(default_factory=dict)
    teardown_s: float = 0.0  # the whole teardown, steps and what is between them

    @contextlib.contextmanager
    def step(self, name: str, down: bool = False):
        t0 = time.monotonic()
        try:
            yield
        finally:
            steps = self.down if down else self.up
            steps[name] = steps.get(name, 0.0) + time.monotonic() - t0

    @property
    def build_s(self) -> float:
        return sum(t for name, t in self.up.items() if name not in AFTER_BUILD)

    @property
    def forwarding_s(self) -> float:
        return self.up.get("forwarding", 0.0)

    @property
    def calibration_s(self) -> float:
        return self.up.get("calibration", 0.0)

    @property
    def up_s(self) -> float:
        return sum(self.up.values())


class Lab:
    """One running lab: `with Lab(topology) as lab:` brings it up and always tears it down."""

    def __init__(self, topology: Topology, forwarding: Forwarding, links: str = "auto",
                 core: str = "auto", calibrate: bool = True, recalibrate: bool = False,
                 caps: Capabilities | None = None, log=print):
        self.topology = topology
        self.forwarding = forwarding
        self.caps = caps or detect()
        try:
            self.backend = resolve_backend(links, self.caps)
            self.core = resolve_core(core)
        except EmulationError as exc:
            raise LabError(str(exc)) from None
        self.calibrate = calibrate
        self.recalibrate = recalibrate  # measure even where lab.calibration_cache has one
        self.log = log
        self.net: Mininet | None = None
        self.state: RunState | None = None
        self.relay: subprocess.Popen | None = None  # unix socket -> controller, for namespaced switches
        self.emulation: LinkEmulation | None = None
        self.switch_priority: SwitchPriority | None = None  # userspace datapath only
        self.merging: Merging | None = None  # the switch daemons' pages; userspace datapath only
        self.calibration = None  # lab.calibration.Calibration once measured
        self.timing = Timing()
        self.watch: Watch | None = None
        self.on_death: list = []  # called with a sentence when a process of the lab dies

    @property
    def controller(self):
        """The lab's own controller (REST), or None."""
        return self.forwarding.controller

    # -- life cycle -------------------------------------------------------------------

    def __enter__(self) -> "Lab":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (namespaces, veth pairs, OVS bridges)")
        if not self.caps.ovs_running:
            raise LabError("Open vSwitch is not running: run ./setup.sh (it starts it)")
        if self.caps.mininet is None:
            raise LabError("Mininet is not installed: run ./setup.sh")
        self._claim_run_dir()
        setLogLevel("warning")
        # Every process the lab starts (Mininet's shells, the controller, the delay line)
        # inherits the marker, so a crashed run's processes can be found.
        os.environ[PROCESS_MARKER] = self.state.run_id
        try:
            self._start()
        finally:
            del os.environ[PROCESS_MARKER]

    def _start(self) -> None:
        try:
            self._bring_up()
        except StepTimeout as exc:
            raise LabError(str(exc)) from None
        self.watch = Watch(self._vital_parts(), self._died).start()

    def _bring_up(self) -> None:
        """Each step bounded in time, so that a step that hangs is named, not waited for."""
        size = len(self.topology.sites) + len(self.topology.hosts) + len(self.topology.links)
        step = self.timing.step
        try:
            with step("controller"), bounded("controller", 90):
                self.forwarding.start(run_dir())
        except ForwardingError as exc:
            raise LabError(f"the controller did not start: {exc}") from None
        with bounded("network", 60 + 2 * size):
            self._build_network()
        try:
            with step("link emulation"), bounded("link emulation", 60 + size):
                self.emulation.start()
        except EmulationError as exc:
            raise LabError(str(exc)) from None
        try:
            with step("forwarding"), bounded("forwarding", 90 + size):
                self.forwarding.ready(self)
        except ForwardingError as exc:
            raise LabError(str(exc)) from None
        if self.merging:
            self.merging.settle()
        # Calibration pins probe flows and expects the lab's own routing: not with a foreign
        # controller (which may remove the pins) or with none.
        if self.calibrate and self.backend == "userspace" and self.forwarding.owns_flows:
            with step("calibration"):
                key = calibration_cache.fingerprint(self.topology, self.caps, self.backend)
                self.calibration = None if self.recalibrate else calibration_cache.load(key)
                if self.calibration is None:
                    with bounded("calibration", 300 + 10 * len(self.topology.links)):
                        self.calibration = calibrate(self)
                    calibration_cache.save(key, self.calibration)
                self.emulation.set_holds(self.calibration.holds,
                                         span_trim_ms=self.calibration.span_trim_ms)

    def _build_network(self) -> None:
        """Mininet's hosts, switches and links; interfaces up; the emulation prepared."""
        openflow = self.forwarding.openflow_address()
        if self.caps.datapath == "user":
            socket_path = self._start_relay(*openflow) if openflow else None
            self.merging = Merging().start()
            switch = partial(NamespacedOVSSwitch, ovs_dir=run_dir() / "ovs",
                             controller_socket=socket_path)
        else:
            switch = partial(LabSwitch, run_id=self.state.run_id, datapath="kernel",
                             failMode="secure", batch=True)
        veths = VethBatch()
        link = partial(LabLink, delay_line=self.backend == "userspace", veths=veths)
        self.net = Mininet(topo=HybridTopo(self.topology, lab_links=True), switch=switch,
                           host=LabHost, link=link, controller=None, build=False, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        if openflow and self.caps.datapath != "user":
            self.net.addController(RemoteController("hlc0", ip=openflow[0], port=openflow[1]))
        step = self.timing.step
        with step("nodes"):
            self.net.build()
        with step("links"):
            veths.create()
        with step("interfaces"):
            self._configure_interfaces()
        with step("switches"):
            self.net.start()
        with step("switch priority"):
            self._raise_switches()
        self.emulation = LinkEmulation(self.backend, self._emulated_links(), run_dir(), self.core)

    def _vital_parts(self) -> list:
        """What must stay alive for the network to be the one the lab claims (lab.watch)."""
        parts = [(f"the {name} (pid {proc.pid})", process_check(proc))
                 for name, proc in self.forwarding.processes()]
        if self.emulation.process is not None:
            parts.append((f"the delay line (pid {self.emulation.process.pid})",
                          process_check(self.emulation.process)))
        if self.relay is not None:
            parts.append((f"the OpenFlow relay (pid {self.relay.pid})", process_check(self.relay)))
        for sw in self.net.switches:
            if isinstance(sw, NamespacedOVSSwitch):
                parts += [(f"switch {sw.name}'s OVS daemon (pid {pid})", pid_check(pid))
                          for pid in sw.daemon_pids()]
        parts += [(f"{node.name}'s shell (pid {node.shell.pid})", process_check(node.shell))
                  for node in self.net.hosts + self.net.switches if node.shell is not None]
        return parts

    def _died(self, death: str) -> None:
        self.log(f"lab: {death}: the network is no longer the one the lab set up")
        for callback in self.on_death:
            callback(death)

    @property
    def died(self) -> str | None:
        """Which of the lab's processes died since it came up (lab.watch), or None."""
        return self.watch.death if self.watch is not None else None

    def _raise_switches(self) -> None:
        """Namespaced switches' main threads real-time while light (lab.switchpriority)."""
        tids = [s.vswitchd_pid() for s in self.net.switches if isinstance(s, NamespacedOVSSwitch)]
        tids = [tid for tid in tids if tid is not None]
        if not tids:
            return
        self.switch_priority = SwitchPriority(tids)
        if not self.switch_priority.start():
            self.log("warning: switch daemons stay at normal priority (SCHED_FIFO not permitted)")
            self.switch_priority = None

    def _start_relay(self, host: str, port: int) -> Path:
        """A Unix socket that switches in their own namespaces reach the controller through."""
        path = run_dir() / "openflow.sock"
        path.unlink(missing_ok=True)
        self.relay = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{path},fork,mode=600",
             f"TCP:{host}:{port},nodelay"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # a Ctrl-C in the terminal (the Mininet CLI) is not its
        deadline = time.monotonic() + 5
        while not path.exists():
            if self.relay.poll() is not None or time.monotonic() > deadline:
                raise LabError("the OpenFlow relay (socat) did not start")
            time.sleep(0.01)
        return path

    def _emulated_links(self) -> list[EmulatedLink]:
        """Every link of the model, with the switch ports and namespaces at its two ends."""
        topo = self.topology
        links = []
        for link in topo.links:
            a, b = self.net.get(topo.sites[link.a].switch), self.net.get(topo.sites[link.b].switch)
            links.append(EmulatedLink(
                link, intf1=f"{a.name}-eth{topo.port_to(link.a, link.b)}",
                intf2=f"{b.name}-eth{topo.port_to(link.b, link.a)}",
                ns1=_netns_pid(a), ns2=_netns_pid(b)))
        return links

    def stop(self) -> None:
        """Tear down everything this run owns; safe to call twice and after a failed start."""
        if self.state is None:
            return
        t0 = time.monotonic()
        if self.watch is not None:
            self.watch.stop()
        with signals_held():
            for part, stop in (("switch priority", self.switch_priority
                                and self.switch_priority.stop),
                               ("link emulation", self.emulation and self.emulation.stop),
                               ("forwarding", self.forwarding.stop),
                               ("relay", self.relay and (lambda: stop_process(self.relay))),
                               ("network", self.net and self._stop_network),
                               ("page merging", self.merging and self.merging.stop)):
                if stop:
                    try:
                        with self.timing.step(part, down=True):
                            stop()
                    except Exception as exc:  # the sweep below still removes what is left
                        self.log(f"warning: stopping the {part} failed ({exc}); sweeping")
            self.switch_priority = self.emulation = self.relay = self.net = self.merging = None
            with self.timing.step("sweep", down=True):
                cleanup.remove_run(self.state.run_id, self.state.switches)
            remove_state()
            self.state = None
        self.timing.teardown_s = time.monotonic() - t0

    def _stop_network(self) -> None:
        """Faster than Mininet's stop(): bridges at once, then the shells.

        Namespaced switches go with their daemons and their namespace; system-OVS bridges
        are deleted in one OVS transaction. Killing a node's shell removes its namespace and
        the veths in it; root-namespace veths that remain are removed by the sweep.
        """
        namespaced = [s for s in self.net.switches if isinstance(s, NamespacedOVSSwitch)]
        cleanup.kill_processes([pid for s in namespaced for pid in s.daemon_pids()], grace=0)
        bridges = [s.name for s in self.net.switches if s not in namespaced]
        if bridges:
            run(["ovs-vsctl", "--timeout=20", "--no-wait"]
                + [a for b in bridges for a in ("--", "--if-exists", "del-br", b)], timeout=30)
        nodes = self.net.hosts + self.net.switches
        for node in nodes:
            node.terminate()
        for node in nodes:
            if node.shell is not None:
                node.shell.wait(timeout=5)

    def _configure_interfaces(self) -> None:
        """Root-namespace switch ports up in one batch; hosts configured all at once
        (lab.links.LabHost), their checksum offload off.

        OVS's userspace datapath forwards frames whose TCP/UDP checksum was left to offload
        without filling it in, so TCP never connects while ping works; hosts must compute
        their checksums themselves. Frames OVS sends are already complete. (Namespaced
        switches bring their own ports up when they start.)
        """
        ports = [intf.name for sw in self.net.switches if not sw.inNamespace
                 for intf in sw.intfList() if intf.name != "lo"]
        if ports:
            run(["ip", "-batch", "-"], input="".join(f"link set dev {p} up\n" for p in ports))
        offload = "off" if self.caps.datapath == "user" else "on"
        for host in self.net.hosts:
            host.sendCmd(host.setup_command(offload))
        failed = [(host, out) for host in self.net.hosts if (out := host.waitOutput().strip())]
        if failed:
            host, out = failed[0]
            raise LabError(f"configuring host {host.name}'s interface failed: {out.splitlines()[-1]}")

    def _claim_run_dir(self) -> None:
        previous = load_state()
        if previous is not None:
            if previous.owner_alive():
                raise LabError(f"a lab is already running (pid {previous.pid}); stop it first, "
                               f"or run 'lab cleanup' if that process is stuck")
            self.log(f"a previous run (pid {previous.pid}) did not tear down; cleaning it up")
            cleanup.cleanup()
        self.state = RunState(run_id=new_run_id(), pid=os.getpid(),
                              pid_start=process_start(os.getpid()) or 0, started=time.time(),
                              topology=self.topology.source,
                              switches=[s.switch for s in self.topology.sites.values()])
        self.state.save()

    # -- forwarding -------------------------------------------------------------------

    def ofctl_target(self, switch: str) -> str:
        """What ovs-ofctl needs to reach a switch (its name, or its own daemon's socket)."""
        node = self.net.get(switch)
        return node.ofctl_target if isinstance(node, NamespacedOVSSwitch) else switch

    def ofctl(self, command: str, flows: dict[str, list[str]]) -> None:
        """`ovs-ofctl --bundle COMMAND SWITCH -` for every switch, OFCTL_AT_ONCE at a time
        (each waits on its switch). A bundle is one transaction: the switch revalidates once,
        not after every flow (10x the default topology, 81,632 flows: the switches' CPU 15.8
        -> 5.0 s, all flows in 12.2 -> 4.9 s). All at once, 950 switches' ovs-ofctl would
        hold their parsed flows in memory together and wait their turn on 2 cores past any
        timeout."""
        waiting, running, failures = list(flows.items()), {}, []
        while waiting or running:
            while waiting and len(running) < OFCTL_AT_ONCE:
                switch, lines = waiting.pop()
                proc = subprocess.Popen(
                    ["ovs-ofctl", "-O", "OpenFlow13", "--bundle", command,
                     self.ofctl_target(switch), "-"],
                    stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                proc.stdin.write("".join(line + "\n" for line in lines))
                proc.stdin.close()
                running[switch] = proc
            switch, proc = next(iter(running.items()))
            if proc.wait(timeout=30) != 0:
                failures.append(f"{switch}: {proc.stderr.read().strip()}")
            proc.stderr.close()
            del running[switch]
        if failures:
            raise LabError(f"ovs-ofctl {command} failed on {failures[0]}")

    # -- access -----------------------------------------------------------------------

    def host(self, name: str):
        return self.net.get(name)

    def site_host(self, site: str):
        """The first host of a site, which speaks for the site in measurements."""
        hosts = self.topology.hosts_at(site)
        return self.net.get(hosts[0].name) if hosts else None
