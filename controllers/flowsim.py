"""Walk a packet through intended flow entries, switch by switch (like Faucet's fakeoftable).

Answers "where does this packet go" without a switch, so the routing logic can be tested
(and a flow set checked before it is installed) by following the model's wiring.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controllers.flows import IN_PORT, FlowEntry, GotoTable, Move, Output, SetField
from controllers.services import PROTOCOLS
from topologies.model import Topology


@dataclass
class Hop:
    site: str
    in_port: int
    out_port: int | str | None  # None: dropped here


@dataclass
class Trace:
    hops: list[Hop] = field(default_factory=list)
    delivered_to: str | None = None  # host name, or None if dropped or sent back
    packet: dict = field(default_factory=dict)  # the fields as they arrived

    @property
    def sites(self) -> list[str]:
        return [h.site for h in self.hops]


def matches(flow: FlowEntry, packet: dict) -> bool:
    return all(packet.get(k) == v for k, v in flow.match.items())


def lookup(flows: list[FlowEntry], table: int, packet: dict) -> FlowEntry | None:
    """The highest-priority matching entry (ties are a configuration error: first wins)."""
    best = None
    for f in flows:
        if f.table == table and matches(f, packet) and (best is None or f.priority > best.priority):
            best = f
    return best


def process(flows: list[FlowEntry], packet: dict) -> tuple[dict, int | str | None]:
    """Run one switch's pipeline: the rewritten packet and where it leaves (None: dropped)."""
    packet = dict(packet)
    table = 0
    while True:
        entry = lookup(flows, table, packet)
        if entry is None:
            return packet, None
        next_table = None
        for action in entry.actions:
            if isinstance(action, SetField):
                packet[action.field] = action.value
            elif isinstance(action, Move):
                packet[action.dst] = packet.get(action.src)
            elif isinstance(action, Output):
                return packet, packet["in_port"] if action.port == IN_PORT else action.port
            elif isinstance(action, GotoTable):
                next_table = action.table
        if next_table is None:
            return packet, None
        table = next_table


def send(topology: Topology, flows: dict[int, list[FlowEntry]], src_host: str, packet: dict,
         max_hops: int = 64) -> Trace:
    """Inject `packet` from `src_host` and follow it until a host gets it or it is dropped."""
    host = topology.hosts[src_host]
    site, in_port = host.site, topology.port_to(host.site, src_host)
    trace = Trace()
    for _ in range(max_hops):
        packet = dict(packet, in_port=in_port)
        packet, out = process(flows.get(int(topology.sites[site].dpid, 16), []), packet)
        trace.hops.append(Hop(site, in_port, out))
        if not isinstance(out, int):
            trace.packet = packet
            return trace
        peer = topology.switch_ports(site)[out]
        if peer in topology.hosts:
            trace.delivered_to, trace.packet = peer, packet
            return trace
        site, in_port = peer, topology.port_to(peer, site)
    raise RuntimeError(f"forwarding loop: {trace.sites[:10]}...")


def ip_packet(topology: Topology, src: str, dst_ip: str, dst_mac: str) -> dict:
    """An IPv4 packet from host `src` as its IP stack would send it (no transport header)."""
    h = topology.hosts[src]
    return {"eth_src": h.mac, "eth_dst": dst_mac, "eth_type": 0x0800, "ipv4_src": h.ip, "ipv4_dst": dst_ip}


def icmp_packet(topology: Topology, src: str, dst_ip: str, dst_mac: str) -> dict:
    """An ICMP packet (a ping or its answer) from host `src`."""
    return dict(ip_packet(topology, src, dst_ip, dst_mac), ip_proto=1)


def l4_packet(topology: Topology, src: str, dst_ip: str, dst_mac: str, src_port: int,
              dst_port: int, protocol: str = "tcp") -> dict:
    """A TCP or UDP segment from host `src`, port `src_port`, to `dst_ip`:`dst_port`."""
    return dict(ip_packet(topology, src, dst_ip, dst_mac), ip_proto=PROTOCOLS[protocol],
                **{f"{protocol}_src": src_port, f"{protocol}_dst": dst_port})
