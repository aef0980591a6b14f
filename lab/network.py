"""Bring-up and teardown of the lab's Mininet network.

`Lab` builds the network of a topology model with Open vSwitch (the kernel datapath where
the kernel has it, the userspace datapath elsewhere), writes down what it owns before it
creates it, programs forwarding, and always tears everything down again.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from functools import partial

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSSwitch

from lab import cleanup
from lab.capabilities import Capabilities, detect, run
from lab.links import LabLink
from lab.runstate import PROCESS_MARKER, RunState, load_state, new_run_id, process_start, remove_state
from lab.signals import signals_held
from controllers.flows import render_ofctl
from controllers.planner import static_flows
from topologies.mininet_topo import HybridTopo
from topologies.model import Topology

CONTROLLERS = ("static", "none")


class LabError(RuntimeError):
    """The lab could not be brought up or used; the message says why and what to do."""


class LabSwitch(OVSSwitch):
    """An OVS bridge tagged with the run id, so `lab cleanup` can find it after a crash."""

    def __init__(self, name, run_id: str = "", **params):
        self.run_id = run_id
        super().__init__(name, **params)

    def bridgeOpts(self):
        return super().bridgeOpts() + f" external_ids:hclab-run={self.run_id}"


@dataclass
class Timing:
    build_s: float = 0.0
    forwarding_s: float = 0.0
    teardown_s: float = 0.0


class Lab:
    """One running lab: `with Lab(topology) as lab:` brings it up and always tears it down."""

    def __init__(self, topology: Topology, controller: str = "static",
                 caps: Capabilities | None = None, log=print):
        if controller not in CONTROLLERS:
            raise LabError(f"unknown controller {controller!r} (choose from {', '.join(CONTROLLERS)})")
        self.topology = topology
        self.controller = controller
        self.caps = caps or detect()
        self.log = log
        self.net: Mininet | None = None
        self.state: RunState | None = None
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
        t0 = time.monotonic()
        switch = partial(LabSwitch, run_id=self.state.run_id, datapath=self.caps.datapath,
                         failMode="secure", batch=True)
        # Every process Mininet starts inherits the marker, so a crashed run's shells can be
        # found; it is set only while they are started.
        os.environ[PROCESS_MARKER] = self.state.run_id
        try:
            self.net = Mininet(topo=HybridTopo(self.topology), switch=switch, link=LabLink,
                               controller=None, build=False, autoSetMacs=False,
                               autoStaticArp=False, waitConnected=False)
            self.net.build()
            self._configure_interfaces()
            self.net.start()
        finally:
            del os.environ[PROCESS_MARKER]
        self.timing.build_s = time.monotonic() - t0
        t0 = time.monotonic()
        if self.controller == "static":
            self.install_static_flows()
        self.timing.forwarding_s = time.monotonic() - t0

    def stop(self) -> None:
        """Tear down everything this run owns; safe to call twice and after a failed start."""
        if self.state is None:
            return
        t0 = time.monotonic()
        with signals_held():
            if self.net is not None:
                try:
                    self._stop_network()
                except Exception as exc:  # the sweep below still removes what is left
                    self.log(f"warning: network stop failed ({exc}); sweeping the run's resources")
                self.net = None
            cleanup.remove_run(self.state.run_id, self.state.switches)
            remove_state()
            self.state = None
        self.timing.teardown_s = time.monotonic() - t0

    def _stop_network(self) -> None:
        """Faster than Mininet's stop(): bridges in one OVS transaction, then the shells.

        Killing a host's shell removes its namespace and with it the host's veth pair; the
        switch-to-switch veths that remain are removed in one `ip -batch` by the sweep.
        """
        bridges = [s.name for s in self.net.switches]
        if bridges:
            run(["ovs-vsctl", "--timeout=20", "--no-wait"]
                        + [a for b in bridges for a in ("--", "--if-exists", "del-br", b)],
                        timeout=30)
        nodes = self.net.hosts + self.net.switches
        for node in nodes:
            node.terminate()
        for node in nodes:
            if node.shell is not None:
                node.shell.wait(timeout=5)

    def _configure_interfaces(self) -> None:
        """Switch ports up in one batch; host interfaces with checksum offload off.

        OVS's userspace datapath forwards frames whose TCP/UDP checksum was left to offload
        without filling it in, so TCP never connects while ping works; hosts must compute
        their checksums themselves. Frames OVS sends are already complete.
        """
        ports = [intf.name for sw in self.net.switches for intf in sw.intfList()
                 if intf.name != "lo"]
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
        topo = self.topology
        switches = [s.switch for s in topo.sites.values()]
        interfaces = [f"{s.switch}-eth{port}" for s in topo.sites.values()
                      for port in topo.switch_ports(s.name)]
        self.state = RunState(run_id=new_run_id(), pid=os.getpid(),
                              pid_start=process_start(os.getpid()) or 0, started=time.time(),
                              topology=topo.source, switches=switches,
                              root_interfaces=interfaces, hosts=list(topo.hosts))
        self.state.save()

    # -- forwarding -------------------------------------------------------------------

    def install_static_flows(self) -> None:
        """The controller's lowest-latency flows, installed without a controller.

        One ovs-ofctl per switch, all at once (each waits on its switch's round trip).
        """
        procs = {}
        for switch, flows in static_flows(self.topology).items():
            proc = subprocess.Popen(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", switch, "-"],
                                    stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            proc.stdin.write("".join(render_ofctl(f) + "\n" for f in flows))
            proc.stdin.close()
            procs[switch] = proc
        failures = []
        for switch, proc in procs.items():
            if proc.wait(timeout=30) != 0:
                failures.append(f"{switch}: {proc.stderr.read().strip()}")
            proc.stderr.close()
        if failures:
            raise LabError(f"installing flows failed on {failures[0]}")

    # -- access -----------------------------------------------------------------------

    def host(self, name: str):
        return self.net.get(name)

    def site_host(self, site: str):
        """The first host of a site, which speaks for the site in measurements."""
        hosts = self.topology.hosts_at(site)
        return self.net.get(hosts[0].name) if hosts else None
