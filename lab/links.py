"""Links of the lab: emulation parameters, validated strictly, on Mininet links.

Parameters use Mininet's TCLink names (delay, jitter, loss, bw, max_queue_size), so the
same topology also runs under `mn --custom ... --link tc`. Unlike Mininet's Intf.config,
which silently drops a parameter it does not know, an unknown or misspelt one is an error.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from mininet.link import Intf, Link

EMULATION_KEYS = ("delay", "jitter", "loss", "bw", "max_queue_size")
# What mininet.link.Link.__init__ itself takes; anything else would be dropped silently.
LINK_KEYS = ("port1", "port2", "intfName1", "intfName2", "addr1", "addr2", "intf", "cls1",
             "cls2", "params1", "params2", "fast")
# Bounds of the emulation parameters (the API's schema states the same ones).
MAX_DELAY_MS = 10_000.0
RATE_MBIT = (0.001, 100_000.0)


class LinkParamError(ValueError):
    """A link was given a parameter the lab does not know or cannot use."""


@dataclass(frozen=True)
class LinkParams:
    """Emulation of one link; the delay applies once per direction (RTT = 2 x delay)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    rate_mbit: float | None = None
    queue_packets: int = 1000

    @classmethod
    def from_mininet(cls, params: dict) -> "LinkParams":
        unknown = sorted(set(params) - set(EMULATION_KEYS))
        if unknown:
            raise LinkParamError(f"unknown link parameter {unknown[0]!r} "
                                 f"(known: {', '.join(EMULATION_KEYS)})")
        return cls(
            delay_ms=_milliseconds("delay", params.get("delay", 0)),
            jitter_ms=_milliseconds("jitter", params.get("jitter", 0)),
            loss_pct=_number("loss", params.get("loss", 0), 0, 100),
            rate_mbit=(_number("bw", params["bw"], *RATE_MBIT)
                       if params.get("bw") is not None else None),
            queue_packets=int(_number("max_queue_size", params.get("max_queue_size", 1000),
                                      1, 1_000_000)),
        )


def _number(key: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LinkParamError(f"link parameter {key!r} must be a number, got {value!r}")
    if not low <= value <= high:
        raise LinkParamError(f"link parameter {key!r} must be between {low:g} and {high:g}, "
                             f"got {value!r}")
    return float(value)


def _milliseconds(key: str, value) -> float:
    """Accept Mininet's '5ms' / '250us' / '1s' strings or a number of milliseconds."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*", value)
        if not match:
            raise LinkParamError(f"link parameter {key!r}: cannot read {value!r} as a time")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}[match.group(2)]
        value = float(match.group(1)) * scale
    return _number(key, value, 0, MAX_DELAY_MS)


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
    """A Mininet link carrying validated emulation parameters for the lab's backend.

    With `delay_line=True` a site-to-site link (one with a `link_index`) is built as two veth
    pairs, node1's port <-> hld<N>a and hld<N>b <-> node2's port, so the userspace delay line
    can sit in the middle while Mininet still sees node1:port <-> node2:port. The link itself
    forwards nothing and delays nothing: `lab.emulation` applies `self.emulation`.
    """

    def __init__(self, node1, node2, delay_line: bool = False, link_index: int | None = None,
                 **params):
        emulation = {k: params.pop(k) for k in list(params) if k in EMULATION_KEYS}
        unknown = sorted(set(params) - set(LINK_KEYS))
        if unknown:
            raise LinkParamError(f"unknown link parameter {unknown[0]!r} "
                                 f"(known: {', '.join(EMULATION_KEYS + LINK_KEYS)})")
        self.emulation = LinkParams.from_mininet(emulation)
        self.link_index = link_index
        self.delay_line_ends = None
        if delay_line and link_index is not None:
            from lab.emulation import delay_line_ends
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
