"""From topology, services, strategy and network state to the flows every switch should hold.

This is the whole routing decision, pure and deterministic: the os-ken app, the lab's
controller-less mode (`static_flows` + `render_ofctl`) and the unit tests all use it.

Per switch:
- table 0: ARP requests for any host or service address are answered on the spot from the
  model (nothing is flooded: the topology has loops); a consumer's packets to a service
  address and port are rewritten to its chosen endpoint, and the endpoint's answers from
  that port back to the service address (nothing else between the two is touched); delay
  probes go to the controller; everything else goes on to table 1.
- table 1: one flow per host MAC, out of the port toward the host's site.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from controllers.flows import (
    ARP_REPLY, ARP_REQUEST, CONTROLLER, ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_PROBE, IN_PORT,
    PRIORITY_ARP, PRIORITY_DEFAULT, PRIORITY_FORWARD, PRIORITY_PROBE, PRIORITY_SERVICE,
    TABLE_CLASSIFY, TABLE_FORWARD, FlowEntry, GotoTable, Move, Output, SetField,
)
from controllers.routing import NetworkState, Tree, live_graph, path_delay_ms, trees
from controllers.services import Endpoint, Service, choose_endpoint, default_services
from controllers.strategies import Strategy, get_strategy
from topologies.model import Topology
from topologies.loader import load


@dataclass
class Plan:
    """The decision for one moment: trees per destination site, endpoints, flows."""

    strategy: Strategy
    graph: nx.Graph
    trees: dict[str, Tree]
    endpoints: dict[tuple[str, str], Endpoint | None]  # (service, consumer host) -> choice
    flows: dict[int, list[FlowEntry]] = field(default_factory=dict)  # dpid -> entries


def plan(topology: Topology, services: list[Service], strategy: Strategy, state: NetworkState,
         now: float, probes: bool = True) -> Plan:
    """Compute the flows of every switch that is up; `probes` adds the probe-to-controller flow."""
    graph = live_graph(topology, state, now)
    route_trees = trees(graph, strategy.path_metric)
    endpoints = {
        (svc.name, consumer): choose_endpoint(svc.policy or strategy.endpoint_policy, svc, topology.hosts[consumer],
                                              topology, state, graph, route_trees)
        for svc in services for consumer in svc.consumers
    }
    result = Plan(strategy, graph, route_trees, endpoints)
    for site in topology.sites.values():
        if site.name in state.down_sites:
            continue
        dpid = int(site.dpid, 16)
        entries = [FlowEntry(dpid, TABLE_CLASSIFY, PRIORITY_DEFAULT, {}, (GotoTable(TABLE_FORWARD),))]
        entries += _arp_flows(dpid, topology, services)
        if probes:
            entries.append(FlowEntry(dpid, TABLE_CLASSIFY, PRIORITY_PROBE,
                                     {"eth_type": ETH_TYPE_PROBE}, (Output(CONTROLLER),)))
        entries += _service_flows(dpid, site.name, topology, services, endpoints)
        entries += _forward_flows(dpid, site.name, topology, route_trees)
        result.flows[dpid] = entries
    return result


# The ARP answers and forwarding entries are built from a handful of hashable values: the
# same values give the same (cached) object, so a recompute builds only what changed and
# `diff` recognises the rest by identity (a silent data center's reroute: about half the CPU).
CACHED_ENTRIES = 1 << 16


@functools.lru_cache(maxsize=CACHED_ENTRIES)
def _arp_responder(dpid: int, ip: str, mac: str) -> FlowEntry:
    """Turn an ARP request for `ip` into the reply and send it back where it came from."""
    return FlowEntry(dpid, TABLE_CLASSIFY, PRIORITY_ARP,
                     {"eth_type": ETH_TYPE_ARP, "arp_op": ARP_REQUEST, "arp_tpa": ip},
                     (Move("eth_src", "eth_dst"), SetField("eth_src", mac),
                      SetField("arp_op", ARP_REPLY), Move("arp_sha", "arp_tha"),
                      Move("arp_spa", "arp_tpa"), SetField("arp_sha", mac),
                      SetField("arp_spa", ip), Output(IN_PORT)))


def _arp_flows(dpid: int, topology: Topology, services: list[Service]) -> list[FlowEntry]:
    owners = [(h.ip, h.mac) for h in topology.hosts.values()] + [(s.vip, s.mac) for s in services]
    owners += list(dict.fromkeys((e.address, topology.hosts[e.host].mac) for s in services
                                 for e in s.endpoints if e.address))  # hosts' second addresses
    return [_arp_responder(dpid, ip, mac) for ip, mac in owners]


def _service_flows(dpid: int, site: str, topology: Topology, services: list[Service],
                   endpoints: dict[tuple[str, str], Endpoint | None]) -> list[FlowEntry]:
    entries = []
    for svc in services:
        for consumer_name in svc.consumers:
            consumer = topology.hosts[consumer_name]
            chosen = endpoints[(svc.name, consumer_name)]
            if consumer.site != site or chosen is None:
                continue
            endpoint = topology.hosts[chosen.host]
            address = chosen.address or endpoint.ip
            l4 = {"eth_type": ETH_TYPE_IP, "ip_proto": svc.ip_proto}
            entries.append(FlowEntry(
                dpid, TABLE_CLASSIFY, PRIORITY_SERVICE,
                {**l4, "ipv4_src": consumer.ip, "ipv4_dst": svc.vip, f"{svc.protocol}_dst": svc.port},
                (SetField("eth_dst", endpoint.mac), SetField("ipv4_dst", address),
                 GotoTable(TABLE_FORWARD))))
            entries.append(FlowEntry(
                dpid, TABLE_CLASSIFY, PRIORITY_SERVICE,
                {**l4, "ipv4_src": address, "ipv4_dst": consumer.ip, f"{svc.protocol}_src": svc.port},
                (SetField("eth_src", svc.mac), SetField("ipv4_src", svc.vip),
                 GotoTable(TABLE_FORWARD))))
    return entries


def _forward_flows(dpid: int, site: str, topology: Topology, route_trees: dict[str, Tree]) -> list[FlowEntry]:
    entries = []
    for host in topology.hosts.values():
        if host.site == site:
            port = topology.port_to(site, host.name)
        else:
            tree = route_trees.get(host.site)
            hop = tree.next_hop(site) if tree else None
            if hop is None:
                continue
            port = topology.port_to(site, hop)
        entries.append(_forward_entry(dpid, host.mac, port))
    return entries


@functools.lru_cache(maxsize=CACHED_ENTRIES)
def _forward_entry(dpid: int, mac: str, port: int) -> FlowEntry:
    return FlowEntry(dpid, TABLE_FORWARD, PRIORITY_FORWARD, {"eth_dst": mac}, (Output(port),))


def host_paths(topology: Topology, result: Plan) -> list[dict]:
    """Site path and expected one-way delay between every ordered pair of hosts."""
    rows = []
    for src in topology.hosts.values():
        for dst in topology.hosts.values():
            if src.name == dst.name:
                continue
            tree = result.trees.get(dst.site)
            path = tree.paths.get(src.site) if tree else None
            rows.append({"src": src.name, "dst": dst.name, "path": path or [],
                         "delay_ms": round(path_delay_ms(result.graph, path), 4) if path else None})
    return rows


def static_flows(topology: Topology | str | Path, strategy: str = "latency",
                 services: list[Service] | None = None, now: float = 0.0) -> dict[str, list[FlowEntry]]:
    """The flows of every switch (keyed by bridge name) with nothing down and no measurements.

    For a lab without a controller: program them with `ovs-ofctl -O OpenFlow13 add-flow
    BRIDGE "$(render_ofctl(flow))"`. No probe flows (no one would answer them).
    """
    if not isinstance(topology, Topology):
        topology = load(topology)
    services = default_services(topology) if services is None else services
    result = plan(topology, services, get_strategy(strategy), NetworkState(), now, probes=False)
    by_dpid = {int(site.dpid, 16): site.switch for site in topology.sites.values()}
    return {by_dpid[dpid]: entries for dpid, entries in result.flows.items()}
