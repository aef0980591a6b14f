"""Paths over the site graph as it is now: what is down, and which delays to believe.

Forwarding matches the destination MAC at every switch, so a packet's route is decided hop
by hop; the paths toward one destination must therefore form a tree. `tree_toward` computes
that tree once per destination site, which keeps every switch consistent with the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import networkx as nx

from topologies.model import Topology

# A measured delay replaces the configured one only when it differs by more than this, so
# measurement noise between equal paths cannot make routes flap; a link that really got
# slower (or faster) is seen.
MEASURED_TOLERANCE_MS = 1.0
MEASURED_TOLERANCE_REL = 0.2
MEASURED_MAX_AGE_S = 10.0  # older samples are stale: the prober stopped hearing the link


def link_id(a: str, b: str) -> frozenset[str]:
    return frozenset((a, b))


@dataclass(frozen=True)
class Measurement:
    delay_ms: float  # one way
    at: float  # time of the last sample (same clock as `now`)


@dataclass
class NetworkState:
    """What the controller believes is broken, and what it measured."""

    down_links: set[frozenset[str]] = field(default_factory=set)
    down_sites: set[str] = field(default_factory=set)
    down_hosts: set[str] = field(default_factory=set)
    measured: dict[frozenset[str], Measurement] = field(default_factory=dict)

    def host_up(self, topology: Topology, host: str) -> bool:
        return host not in self.down_hosts and topology.hosts[host].site not in self.down_sites


def effective_delays(topology: Topology, state: NetworkState, now: float) -> dict[frozenset[str], float]:
    """One-way delay per link: configured, unless a fresh measurement clearly disagrees."""
    delays = {}
    for link in topology.links:
        lid = link_id(link.a, link.b)
        delay = link.delay_ms
        sample = state.measured.get(lid)
        if sample is not None and now - sample.at <= MEASURED_MAX_AGE_S:
            margin = max(MEASURED_TOLERANCE_MS, MEASURED_TOLERANCE_REL * link.delay_ms)
            if abs(sample.delay_ms - link.delay_ms) > margin:
                delay = sample.delay_ms
        delays[lid] = delay
    return delays


def live_graph(topology: Topology, state: NetworkState, now: float) -> nx.Graph:
    """The site graph without what is down; edge attribute `delay_ms` is the effective delay."""
    delays = effective_delays(topology, state, now)
    g = nx.Graph()
    g.add_nodes_from(s for s in topology.sites if s not in state.down_sites)
    for link in topology.links:
        lid = link_id(link.a, link.b)
        if lid in state.down_links or link.a in state.down_sites or link.b in state.down_sites:
            continue
        g.add_edge(link.a, link.b, delay_ms=delays[lid])
    return g


Weight = Callable[[str, str, dict], float]  # Dijkstra's edge weight: (u, v, edge data)


def fewest_hops(graph: nx.Graph) -> Weight:
    """One per hop, ties broken by latency (all delays together weigh less than one hop),
    so the choice is deterministic."""
    scale = 1.0 + sum(d["delay_ms"] for _, _, d in graph.edges(data=True))
    return lambda u, v, d: 1.0 + d["delay_ms"] / scale


def lowest_latency(graph: nx.Graph) -> Weight:
    """The effective one-way delay of each link."""
    return lambda u, v, d: d["delay_ms"]


# Path metric name (a Strategy's path_metric) -> the edge weight it routes by, given the live
# graph. A new metric is a new row.
PATH_METRICS: dict[str, Callable[[nx.Graph], Weight]] = {
    "hops": fewest_hops,
    "latency": lowest_latency,
}


def weight(graph: nx.Graph, metric: str) -> Weight:
    """Edge weight for a metric on this graph."""
    try:
        make = PATH_METRICS[metric]
    except (KeyError, TypeError):
        raise ValueError(f"unknown path metric {metric!r} (choose from {', '.join(PATH_METRICS)})") from None
    return make(graph)


@dataclass(frozen=True)
class Tree:
    """Shortest paths from every reachable site toward one destination site."""

    dst: str
    paths: dict[str, list[str]]  # site -> [site, ..., dst]
    cost: dict[str, float]  # site -> metric value along its path

    def next_hop(self, site: str) -> str | None:
        path = self.paths.get(site)
        return path[1] if path and len(path) > 1 else None


def tree_toward(graph: nx.Graph, dst: str, metric: str) -> Tree:
    if dst not in graph:
        return Tree(dst, {}, {})
    cost, paths = nx.single_source_dijkstra(graph, dst, weight=weight(graph, metric))
    return Tree(dst, {site: list(reversed(p)) for site, p in paths.items()}, cost)


def trees(graph: nx.Graph, metric: str) -> dict[str, Tree]:
    """One tree per site of the graph."""
    return {site: tree_toward(graph, site, metric) for site in graph}


def path_delay_ms(graph: nx.Graph, path: list[str]) -> float:
    return sum(graph.edges[u, v]["delay_ms"] for u, v in zip(path, path[1:]))
