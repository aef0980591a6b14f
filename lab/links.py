"""Mininet's side of the lab's links: interfaces configured in bulk, veths for the delay line.

A link's emulation (delay, jitter, loss, rate, queue) does not pass through Mininet: the lab
builds it from the topology model (lab.emulation). Mininet only creates the interfaces, so
an emulation parameter given to a Mininet link here is an error, never silently dropped
(Mininet's Intf.config would drop it).
"""

from __future__ import annotations

import subprocess

from mininet.link import Intf, Link

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


class LabLink(Link):
    """A Mininet link whose interfaces the lab configures, emulated by lab.emulation.

    With `delay_line=True` a site-to-site link (one with a `link_index`) is built as two veth
    pairs, node1's port <-> hld<N>a and hld<N>b <-> node2's port, so the userspace delay line
    can sit in the middle while Mininet still sees node1:port <-> node2:port. The link itself
    forwards nothing and delays nothing.
    """

    def __init__(self, node1, node2, delay_line: bool = False, link_index: int | None = None,
                 **params):
        unknown = sorted(set(params) - set(LINK_KEYS))
        if unknown:
            raise LinkParamError(f"unknown link parameter {unknown[0]!r} (the lab emulates "
                                 f"links from the topology model; known: {', '.join(LINK_KEYS)})")
        self.link_index = link_index
        self.delay_line_ends = None
        if delay_line and link_index is not None:
            self.delay_line_ends = delay_line_ends(link_index)
        params.setdefault("cls1", LabIntf)
        params.setdefault("cls2", LabIntf)
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1, intfname2, addr1=None, addr2=None, node1=None,
                     node2=None, deleteIntfs=True):
        if self.delay_line_ends is None:
            return Link.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2,
                                     deleteIntfs=deleteIntfs)
        a, b = self.delay_line_ends
        # The delay line's ends stay in the root namespace, where the delay line runs; the
        # switch ports go to their switch's namespace (if it has one). The delay line's ends
        # carry no addresses and no IPv6, so the kernel sends nothing into the link itself.
        commands = (f"link add name {a} type veth peer name {intfname1}{_netns(node1)}\n"
                    f"link add name {b} type veth peer name {intfname2}{_netns(node2)}\n"
                    f"link set dev {a} up\nlink set dev {b} up\n")
        result = subprocess.run(["ip", "-batch", "-"], input=commands, capture_output=True,
                                text=True, timeout=30)
        if result.returncode != 0:
            raise OSError(f"cannot create the delay line's veths for {intfname1}: "
                          f"{result.stderr.strip()}")
        subprocess.run(["sysctl", "-qw"] + [f"net.ipv6.conf.{n}.disable_ipv6=1" for n in (a, b)],
                       capture_output=True, timeout=10)
        return None


def _netns(node) -> str:
    """`ip link add ... peer` suffix putting the peer into the node's namespace."""
    return f" netns {node.pid}" if node is not None and node.inNamespace else ""
