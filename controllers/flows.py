"""Intended flow entries, built without a switch, and their `ovs-ofctl` rendering.

The routing logic says what each switch should hold as plain dataclasses; the os-ken app
turns them into OpenFlow 1.3 messages and `render_ofctl` into `ovs-ofctl add-flow` text, so
the same flow set can program switches with or without a controller.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Union

TABLE_CLASSIFY = 0  # ARP answers, service address rewrites, probes; the rest goes on
TABLE_FORWARD = 1  # one flow per host MAC: out of the port toward its site

PRIORITY_DEFAULT = 0
PRIORITY_FORWARD = 100
PRIORITY_ARP = 200
PRIORITY_PROBE = 300
PRIORITY_SERVICE = 400

COOKIE = 0x4C48_0000_0000_0000  # "LH": every flow of this controller carries it
COOKIE_MASK = 0xFFFF_0000_0000_0000

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_PROBE = 0x88B5  # IEEE local experimental ethertype: the link delay probes
ARP_REQUEST, ARP_REPLY = 1, 2

IN_PORT = "in_port"
CONTROLLER = "controller"

# OXM field name (as os-ken spells it) -> OVS meta-flow name (matches, set_field, move).
FIELDS: dict[str, str] = {
    "in_port": "in_port",
    "eth_dst": "eth_dst",
    "eth_src": "eth_src",
    "eth_type": "eth_type",
    "ip_proto": "ip_proto",
    "ipv4_src": "ip_src",
    "ipv4_dst": "ip_dst",
    "tcp_src": "tcp_src",
    "tcp_dst": "tcp_dst",
    "udp_src": "udp_src",
    "udp_dst": "udp_dst",
    "arp_op": "arp_op",
    "arp_spa": "arp_spa",
    "arp_tpa": "arp_tpa",
    "arp_sha": "arp_sha",
    "arp_tha": "arp_tha",
}


@dataclass(frozen=True)
class Output:
    """Send out of a port number, back out of the ingress port, or to the controller."""

    port: Union[int, str]


@dataclass(frozen=True)
class SetField:
    field: str
    value: Union[int, str]


@dataclass(frozen=True)
class Move:
    """Copy one whole field into another (Nicira reg_move; OVS supports it in OF 1.3)."""

    src: str
    dst: str


@dataclass(frozen=True)
class GotoTable:
    table: int


Action = Union[Output, SetField, Move, GotoTable]


@dataclass(frozen=True)
class FlowEntry:
    dpid: int
    table: int
    priority: int
    match: dict[str, Union[int, str]] = field(hash=False)
    actions: tuple[Action, ...] = ()
    cookie: int = COOKIE

    @functools.cached_property
    def key(self) -> tuple:
        """What makes two entries the same OpenFlow flow (a later add replaces it)."""
        return (self.dpid, self.table, self.priority, tuple(sorted(self.match.items())))


@dataclass
class FlowChanges:
    """What to send to one switch to go from the flows it has to the flows it should have."""

    dpid: int
    delete: list[FlowEntry] = field(default_factory=list)
    add: list[FlowEntry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.delete or self.add)


def diff(dpid: int, old: list[FlowEntry], new: list[FlowEntry]) -> FlowChanges:
    """Strict deletes for flows no longer wanted, adds for new or changed ones."""
    if old is new:
        return FlowChanges(dpid)
    before = {f.key: f for f in old}
    after = {f.key: f for f in new}
    return FlowChanges(
        dpid=dpid,
        delete=[f for k, f in before.items() if k not in after],
        add=[f for k, f in after.items() if (was := before.get(k)) is not f and was != f],
    )


def render_ofctl(flow: FlowEntry) -> str:
    """The flow as an `ovs-ofctl -O OpenFlow13 add-flow BRIDGE '<this>'` argument."""
    parts = [f"cookie={flow.cookie:#x}", f"table={flow.table}", f"priority={flow.priority}"]
    parts += [f"{FIELDS[k]}={_ofctl_value(k, v)}" for k, v in flow.match.items()]
    actions = ",".join(_render_action(a) for a in flow.actions) or "drop"
    return ",".join(parts) + f",actions={actions}"


def _ofctl_value(name: str, value: Union[int, str]) -> str:
    if isinstance(value, int) and name in ("eth_type", "arp_op", "ip_proto", "in_port", "tcp_src",
                                           "tcp_dst", "udp_src", "udp_dst"):
        return f"{value:#06x}" if name == "eth_type" else str(value)
    return str(value)


def _render_action(action: Action) -> str:
    if isinstance(action, Output):
        if action.port == IN_PORT:
            return "in_port"
        if action.port == CONTROLLER:
            return "controller"
        return f"output:{action.port}"
    if isinstance(action, SetField):
        return f"set_field:{action.value}->{FIELDS[action.field]}"
    if isinstance(action, Move):
        return f"move:{FIELDS[action.src]}->{FIELDS[action.dst]}"
    if isinstance(action, GotoTable):
        return f"goto_table:{action.table}"
    raise TypeError(f"unknown action {action!r}")
