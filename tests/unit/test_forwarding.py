"""Static forwarding: every host reachable from every switch along lowest-latency paths."""

from __future__ import annotations

import re

import networkx as nx

from lab.forwarding import static_flows
from tests.helpers import DEFAULT_TOPOLOGY
from topologies.model import load


def walk(topo, flows, src_site: str, mac: str) -> list[str]:
    """Follow dl_dst flows from a site's switch until a host port; return the sites visited."""
    site, visited = src_site, [src_site]
    for _ in range(len(topo.sites) + 1):
        spec = next(f for f in flows[topo.sites[site].switch] if f"dl_dst={mac}," in f)
        port = int(re.search(r"output:(\d+)", spec).group(1))
        peer = topo.switch_ports(site)[port]
        if peer in topo.hosts:
            return visited
        site = peer
        visited.append(site)
    raise AssertionError(f"loop from {src_site} to {mac}: {visited}")


def test_every_site_reaches_every_host_along_the_lowest_latency_path():
    topo = load(DEFAULT_TOPOLOGY)
    flows = static_flows(topo)
    for src in topo.sites:
        for host in topo.hosts.values():
            path = walk(topo, flows, src, host.mac)
            assert path[-1] == host.site
            assert path == nx.dijkstra_path(topo.graph(), src, host.site, weight="delay_ms")


def test_arp_requests_follow_the_same_ports():
    topo = load(DEFAULT_TOPOLOGY)
    for switch, entries in static_flows(topo).items():
        for host in topo.hosts.values():
            mac_port = next(f for f in entries if f"dl_dst={host.mac}," in f).rsplit(":", 1)[1]
            arp_port = next(f for f in entries if f"arp_tpa={host.ip}," in f).rsplit(":", 1)[1]
            assert mac_port == arp_port
