"""Static forwarding for a lab without a controller: lowest-latency paths as OVS flows.

Every switch gets, for every host, a flow on the host's MAC and one on ARP requests for its
address, both out of the port toward the host's site along the lowest-latency path. The
topology has loops, so nothing is flooded; anything else is dropped (fail_mode secure).
"""

from __future__ import annotations

import networkx as nx

from topologies.model import Topology

PRIORITY = 100


def static_flows(topology: Topology) -> dict[str, list[str]]:
    """ovs-ofctl flow specs per switch name."""
    routes = dict(nx.all_pairs_dijkstra_path(topology.graph(), weight="delay_ms"))
    flows: dict[str, list[str]] = {}
    for site in topology.sites.values():
        entries = []
        for host in topology.hosts.values():
            if host.site == site.name:
                port = topology.port_to(site.name, host.name)
            else:
                path = routes[site.name].get(host.site)
                if path is None:
                    continue
                port = topology.port_to(site.name, path[1])
            entries.append(f"priority={PRIORITY},dl_dst={host.mac},actions=output:{port}")
            entries.append(f"priority={PRIORITY},arp,arp_tpa={host.ip},actions=output:{port}")
        flows[site.switch] = entries
    return flows
