"""Bring-up and teardown of the lab's Mininet network.

`Lab` builds the network of a topology model with Open vSwitch (the kernel datapath where
the kernel has it, the userspace datapath elsewhere), writes down what it owns before it
creates it, emulates its links (lab.emulation), programs forwarding (the os-ken controller,
or the same flows installed statically), calibrates the switching fabric's own latency out
of the emulated delays (lab.calibration), and always tears everything down again.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

from controllers.flows import render_ofctl
from controllers.launcher import ControllerError, ControllerProcess, start_controller
from controllers.planner import static_flows
from lab import cleanup
from lab.calibration import calibrate
from lab.capabilities import Capabilities, detect, run
from lab.emulation import EmulatedLink, EmulationError, LinkEmulation, resolve_backend
from lab.links import LabLink
from lab.nsswitch import NamespacedOVSSwitch
from lab.runstate import (PROCESS_MARKER, RunState, load_state, new_run_id, process_start,
                          remove_state, run_dir)
from lab.signals import signals_held
from lab.switchpriority import SwitchPriority
from topologies.mininet_topo import HybridTopo
from topologies.model import Topology

CONTROLLER_HELP = "builtin (the lab's os-ken controller), static (its flows, no controller), " \
                  "none (no flows), or tcp:HOST:PORT (your OpenFlow 1.3 controller)"


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


def parse_controller(spec: str) -> tuple[str, str, int]:
    """'builtin' | 'static' | 'none' | 'tcp:HOST:PORT' -> (kind, host, port)."""
    if spec in ("builtin", "static", "none"):
        return spec, "127.0.0.1", 6653
    kind, _, rest = spec.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--controller {spec!r}: expected {CONTROLLER_HELP}")
    return "remote", host, int(port)


@dataclass
class Timing:
    build_s: float = 0.0
    forwarding_s: float = 0.0
    calibration_s: float = 0.0
    teardown_s: float = 0.0

    @property
    def up_s(self) -> float:
        return self.build_s + self.forwarding_s + self.calibration_s


class Lab:
    """One running lab: `with Lab(topology) as lab:` brings it up and always tears it down."""

    def __init__(self, topology: Topology, controller: str = "builtin", links: str = "auto",
                 strategy: str = "latency", calibrate: bool = True, ofp_port: int = 6653,
                 rest_port: int = 8080, caps: Capabilities | None = None, log=print,
                 measured_delays: bool = False):
        try:
            self.controller_kind, self.controller_host, port = parse_controller(controller)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        self.ofp_port = ofp_port if self.controller_kind == "builtin" else port
        self.rest_port = rest_port
        # the builtin controller routes by the delays it measures where they clearly differ
        self.measured_delays = measured_delays
        self.topology = topology
        self.strategy = strategy
        self.caps = caps or detect()
        try:
            self.backend = resolve_backend(links, self.caps)
        except EmulationError as exc:
            raise LabError(str(exc)) from None
        self.calibrate = calibrate
        self.log = log
        self.net: Mininet | None = None
        self.state: RunState | None = None
        self.controller: ControllerProcess | None = None
        self.relay: subprocess.Popen | None = None  # unix socket -> controller, for namespaced switches
        self.emulation: LinkEmulation | None = None
        self.switch_priority: SwitchPriority | None = None  # userspace datapath only
        self.calibration = None  # lab.calibration.Calibration once measured
        self.timing = Timing()

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
        t0 = time.monotonic()
        if self.controller_kind == "builtin":
            try:
                self.controller = start_controller(
                    self.topology.source, strategy=self.strategy, ofp_port=self.ofp_port,
                    rest_port=self.rest_port, log_path=run_dir() / "controller.log",
                    extra_args=("--measured-delays",) if self.measured_delays else ())
            except ControllerError as exc:
                raise LabError(f"the controller did not start: {exc}") from None
        if self.caps.datapath == "user":
            socket_path = None
            if self.controller_kind in ("builtin", "remote"):
                socket_path = self._start_relay()
            switch = partial(NamespacedOVSSwitch, ovs_dir=run_dir() / "ovs",
                             controller_socket=socket_path)
        else:
            switch = partial(LabSwitch, run_id=self.state.run_id, datapath="kernel",
                             failMode="secure", batch=True)
        link = partial(LabLink, delay_line=self.backend == "userspace")
        self.net = Mininet(topo=HybridTopo(self.topology), switch=switch, link=link,
                           controller=None, build=False, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        if self.controller_kind in ("builtin", "remote") and self.caps.datapath != "user":
            self.net.addController(RemoteController("hlc0", ip=self.controller_host,
                                                    port=self.ofp_port))
        self.net.build()
        self._configure_interfaces()
        self.net.start()
        self._raise_switches()
        self.emulation = LinkEmulation(self.backend, self._emulated_links(), run_dir())
        try:
            self.emulation.start()
        except EmulationError as exc:
            raise LabError(str(exc)) from None
        self.timing.build_s = time.monotonic() - t0
        t0 = time.monotonic()
        if self.controller_kind == "static":
            self.install_static_flows()
        elif self.controller is not None:
            try:
                self.controller.wait_for_switches(timeout=30)
            except ControllerError as exc:
                raise LabError(str(exc)) from None
        self.timing.forwarding_s = time.monotonic() - t0
        # Calibration pins probe flows and expects the lab's own routing: not with a foreign
        # controller (which may remove the pins) or with none.
        if (self.calibrate and self.backend == "userspace"
                and self.controller_kind in ("builtin", "static")):
            t0 = time.monotonic()
            self.calibration = calibrate(self)
            self.emulation.set_holds(self.calibration.holds,
                                     span_trim_ms=self.calibration.span_trim_ms)
            self.timing.calibration_s = time.monotonic() - t0

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

    def _start_relay(self) -> Path:
        """A Unix socket that switches in their own namespaces reach the controller through."""
        path = run_dir() / "openflow.sock"
        path.unlink(missing_ok=True)
        self.relay = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{path},fork,mode=600",
             f"TCP:{self.controller_host}:{self.ofp_port},nodelay"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not path.exists():
            if self.relay.poll() is not None or time.monotonic() > deadline:
                raise LabError("the OpenFlow relay (socat) did not start")
            time.sleep(0.01)
        return path

    def _emulated_links(self) -> list[EmulatedLink]:
        topo = self.topology
        links = []
        for link in topo.links:
            a, b = topo.sites[link.a], topo.sites[link.b]
            mn_link = self.net.linksBetween(self.net.get(a.switch), self.net.get(b.switch))[0]
            links.append(EmulatedLink(
                index=link.index, name=link.name,
                intf1=f"{a.switch}-eth{topo.port_to(link.a, link.b)}",
                intf2=f"{b.switch}-eth{topo.port_to(link.b, link.a)}",
                params=mn_link.emulation, ns1=_netns_pid(mn_link.intf1.node),
                ns2=_netns_pid(mn_link.intf2.node)))
        return links

    def stop(self) -> None:
        """Tear down everything this run owns; safe to call twice and after a failed start."""
        if self.state is None:
            return
        t0 = time.monotonic()
        with signals_held():
            for part, stop in (("switch priority", self.switch_priority
                                and self.switch_priority.stop),
                               ("link emulation", self.emulation and self.emulation.stop),
                               ("controller", self.controller and self.controller.stop),
                               ("relay", self.relay and self.relay.kill),
                               ("network", self.net and self._stop_network)):
                if stop:
                    try:
                        stop()
                    except Exception as exc:  # the sweep below still removes what is left
                        self.log(f"warning: stopping the {part} failed ({exc}); sweeping")
            if self.relay is not None:
                self.relay.wait(timeout=5)
            self.switch_priority = self.emulation = self.controller = self.relay = self.net = None
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
        """Root-namespace switch ports up in one batch; hosts' checksum offload off.

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
            intf = host.defaultIntf()
            host.cmd(f"ethtool -K {intf} tx {offload} rx {offload} >/dev/null 2>&1; "
                     f"ip link set dev {intf} up")

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

    def install_static_flows(self) -> None:
        """The controller's flows for the chosen strategy, installed without a controller."""
        self.ofctl("add-flows", {switch: [render_ofctl(f) for f in flows] for switch, flows
                                 in static_flows(self.topology, self.strategy).items()})

    def ofctl_target(self, switch: str) -> str:
        """What ovs-ofctl needs to reach a switch (its name, or its own daemon's socket)."""
        node = self.net.get(switch)
        return node.ofctl_target if isinstance(node, NamespacedOVSSwitch) else switch

    def ofctl(self, command: str, flows: dict[str, list[str]]) -> None:
        """`ovs-ofctl COMMAND SWITCH -` for every switch at once (each waits on its switch)."""
        procs = {}
        for switch, lines in flows.items():
            proc = subprocess.Popen(
                ["ovs-ofctl", "-O", "OpenFlow13", command, self.ofctl_target(switch), "-"],
                stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            proc.stdin.write("".join(line + "\n" for line in lines))
            proc.stdin.close()
            procs[switch] = proc
        failures = []
        for switch, proc in procs.items():
            if proc.wait(timeout=30) != 0:
                failures.append(f"{switch}: {proc.stderr.read().strip()}")
            proc.stderr.close()
        if failures:
            raise LabError(f"ovs-ofctl {command} failed on {failures[0]}")

    # -- access -----------------------------------------------------------------------

    def host(self, name: str):
        return self.net.get(name)

    def site_host(self, site: str):
        """The first host of a site, which speaks for the site in measurements."""
        hosts = self.topology.hosts_at(site)
        return self.net.get(hosts[0].name) if hosts else None
