"""Mininet's side of the lab's links: interfaces configured in bulk, veths for the delay line.

A link's emulation (delay, jitter, loss, rate, queue) does not pass through Mininet: the lab
builds it from the topology model (lab.emulation). Mininet only creates the interfaces, so
an emulation parameter given to a Mininet link here is an error, never silently dropped
(Mininet's Intf.config would drop it).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mininet.link import Intf, Link
from mininet.node import Host

# What mininet.link.Link.__init__ itself takes; anything else would be dropped silently.
LINK_KEYS = ("port1", "port2", "intfName1", "intfName2", "addr1", "addr2", "intf", "cls1",
             "cls2", "params1", "params2", "fast")


class LinkParamError(ValueError):
    """A link was given a parameter the lab does not know or cannot use."""


def delay_line_ends(index: int) -> tuple[str, str]:
    """Names of the delay line's two interfaces for link number `index` (1-based)."""
    return f"hld{index}a", f"hld{index}b"


class LabIntf(Intf):
    """An interface configured in bulk by the lab rather than one command at a time.

    Mininet configures each interface with several shell round trips, which dominates
    bring-up at scale; the lab brings all switch ports up in one `ip -batch` and sets each
    host's interface in one command (`Lab._configure_interfaces`).
    """

    def config(self, **params):
        if params:
            raise LinkParamError(f"unknown interface parameter {sorted(params)[0]!r}")
        return {}


class VethBatch:
    """Veth pairs gathered while Mininet builds the network, then created by one `ip -batch`.

    Mininet makes each pair with a process or a shell round trip of its own: 559 pairs at 10x
    the default topology took 5.1 s of a 13.7 s build. Each end is created straight in its
    node's namespace. The delay line's ends (`quiet`) stay in the root namespace and get no
    IPv6 before they come up, so the kernel sends nothing into the link itself.
    """

    def __init__(self):
        self.commands: list[str] = []
        self.quiet: list[str] = []

    def add(self, name1: str, node1, name2: str, node2, addr1: str | None = None,
            addr2: str | None = None, quiet: bool = False) -> None:
        """A pair name1 (in node1's namespace, MAC addr1) <-> name2; a node None is the root
        namespace, an address None the kernel's choice."""
        self.commands.append(f"link add name {name1}{_netns(node1)}{_address(addr1)} type veth "
                             f"peer name {name2}{_netns(node2)}{_address(addr2)}\n")
        if quiet:
            self.quiet.append(name1)

    def create(self) -> None:
        if self.commands:
            _ip_batch("".join(self.commands))
        for name in self.quiet:
            Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")
        if self.quiet:
            _ip_batch("".join(f"link set dev {name} up\n" for name in self.quiet))
        self.commands, self.quiet = [], []


def _ip_batch(commands: str) -> None:
    result = subprocess.run(["ip", "-batch", "-"], input=commands, capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise OSError(f"cannot create the lab's veth pairs: {result.stderr.strip()}")


class LabHost(Host):
    """A Mininet host whose interface the lab configures in one command (`setup_command`).

    Mininet's own configuration takes four shell round trips per host, one host after the
    other; the lab sends every host its one command and then waits for them all.
    """

    def config(self, mac=None, ip=None, defaultRoute=None, lo="up", **_params):
        """Only recorded here (the interface may not exist yet): see `setup_command`."""
        if defaultRoute is not None or lo != "up":
            raise LinkParamError("the lab's hosts take an address and a MAC only")
        intf = self.defaultIntf()
        if intf is not None:
            intf.mac = mac
            intf.ip, intf.prefixLen = ip.split("/") if ip else (None, None)
        return {}

    def setup_command(self, offload: str) -> str:
        """The shell command that gives the interface its MAC and address and brings it up,
        with checksum offload `offload` ("on"/"off"); it prints nothing unless it fails."""
        intf = self.defaultIntf()
        steps = ["link set dev lo up"]
        if intf is not None:
            if intf.mac:
                steps.append(f"link set dev {intf} address {intf.mac}")
            if intf.ip:
                steps.append(f"addr add {intf.ip}/{intf.prefixLen} dev {intf}")
            steps.append(f"link set dev {intf} up")
        ethtool = f"ethtool -K {intf} tx {offload} rx {offload} >/dev/null 2>&1; " if intf else ""
        return ethtool + "printf '" + "\\n".join(steps) + "\\n' | ip -batch -"


class LabLink(Link):
    """A Mininet link whose interfaces the lab configures, emulated by lab.emulation.

    With `delay_line=True` a site-to-site link (one with a `link_index`) is built as two veth
    pairs, node1's port <-> hld<N>a and hld<N>b <-> node2's port, so the userspace delay line
    can sit in the middle while Mininet still sees node1:port <-> node2:port. The link itself
    forwards nothing and delays nothing.
    """

    def __init__(self, node1, node2, delay_line: bool = False, link_index: int | None = None,
                 veths: VethBatch | None = None, **params):
        unknown = sorted(set(params) - set(LINK_KEYS))
        if unknown:
            raise LinkParamError(f"unknown link parameter {unknown[0]!r} (the lab emulates "
                                 f"links from the topology model; known: {', '.join(LINK_KEYS)})")
        self.link_index = link_index
        self.veths = veths  # None: the veths are created at once
        self.delay_line_ends = None
        if delay_line and link_index is not None:
            self.delay_line_ends = delay_line_ends(link_index)
        params.setdefault("cls1", LabIntf)
        params.setdefault("cls2", LabIntf)
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None,
                     node2=None, deleteIntfs=True):
        batch = self.veths or VethBatch()
        if self.delay_line_ends is None:
            batch.add(intfname1, node1, intfname2, node2, addr1, addr2)
        else:
            # The delay line's ends stay in the root namespace, where the delay line runs; the
            # switch ports go to their switch's namespace (if it has one).
            a, b = self.delay_line_ends
            batch.add(a, None, intfname1, node1, quiet=True)
            batch.add(b, None, intfname2, node2, quiet=True)
        if self.veths is None:
            batch.create()


def _netns(node) -> str:
    """`ip link add ... peer` suffix putting the peer into the node's namespace."""
    return f" netns {node.pid}" if node is not None and node.inNamespace else ""


def _address(mac: str | None) -> str:
    return f" address {mac}" if mac else ""
