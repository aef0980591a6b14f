"""Routing logic against a fake flow table: where packets really go, hop by hop."""

from __future__ import annotations


import pytest

from controllers.flowsim import ip_packet, send
from controllers.planner import plan, static_flows
from controllers.routing import Measurement, NetworkState, link_id
from controllers.services import default_services
from controllers.strategies import get_strategy
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

DEFAULT = DEFAULT_TOPOLOGY


@pytest.fixture(scope="module")
def topo():
    return load(DEFAULT)


def route(topo, strategy, src, dst, state=None, now=0.0):
    result = plan(topo, default_services(topo), get_strategy(strategy), state or NetworkState(), now)
    d = topo.hosts[dst]
    return send(topo, result.flows, src, ip_packet(topo, src, d.ip, d.mac))


def test_hops_and_latency_differ_where_the_topology_says(topo):
    # Region A to DC1: the direct Direct Connect link (7.07 ms) is one hop; through the
    # Boston Local Zone (4.38 + 0.68 ms) is faster but two hops.
    hops = route(topo, "hops", "svrga", "pg1")
    latency = route(topo, "latency", "svrga", "pg1")
    assert hops.delivered_to == latency.delivered_to == "pg1"
    assert hops.sites == ["rga", "dc1"]
    assert latency.sites == ["rga", "lz1a", "dc1"]


def test_every_host_reaches_every_host(topo):
    result = plan(topo, default_services(topo), get_strategy("latency"), NetworkState(), 0.0)
    for src in topo.hosts:
        for dst, d in topo.hosts.items():
            if src != dst:
                assert send(topo, result.flows, src, ip_packet(topo, src, d.ip, d.mac)).delivered_to == dst


def test_latency_paths_match_the_model(topo):
    expected = {(p["src"], p["dst"]): p["path"] for p in topo.lowest_latency_paths()}
    trace = route(topo, "latency", "pg1", "csea")
    assert trace.sites == expected[("dc1", "clsea")]


def test_recomputed_after_a_link_fails(topo):
    state = NetworkState(down_links={link_id("lz1a", "rga")})
    trace = route(topo, "latency", "svrga", "pg1", state)
    assert trace.delivered_to == "pg1"
    assert trace.sites == ["rga", "lz1b", "dc1"]
    state.down_links.add(link_id("lz1b", "rga"))
    assert route(topo, "latency", "svrga", "pg1", state).sites == ["rga", "dc1"]


def test_a_down_site_is_routed_around(topo):
    state = NetworkState(down_sites={"lz1a"})
    assert "lz1a" not in route(topo, "latency", "svrga", "pg1", state).sites


def test_unreachable_host_gets_no_flow(topo):
    state = NetworkState(down_links={link_id("clbos", "lz1a"), link_id("clbos", "dc1")})
    assert route(topo, "latency", "svrga", "cbos", state).delivered_to is None


def test_measured_delay_moves_paths_only_when_clearly_different(topo):
    slower = NetworkState(measured={link_id("lz1a", "rga"): Measurement(9.0, 100.0)})
    assert route(topo, "latency", "svrga", "pg1", slower, now=100.0).sites == ["rga", "lz1b", "dc1"]
    noisy = NetworkState(measured={link_id("lz1a", "rga"): Measurement(4.9, 100.0)})
    assert route(topo, "latency", "svrga", "pg1", noisy, now=100.0).sites == ["rga", "lz1a", "dc1"]
    stale = slower
    assert route(topo, "latency", "svrga", "pg1", stale, now=1000.0).sites == ["rga", "lz1a", "dc1"]


def test_arp_is_answered_at_the_first_switch(topo):
    flows = plan(topo, default_services(topo), get_strategy("latency"), NetworkState(), 0.0).flows
    h = topo.hosts["cbos"]
    request = {"eth_src": h.mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806, "arp_op": 1,
               "arp_sha": h.mac, "arp_spa": h.ip, "arp_tha": "00:00:00:00:00:00",
               "arp_tpa": topo.hosts["pg1"].ip}
    trace = send(topo, flows, "cbos", request)
    assert trace.delivered_to == "cbos" and trace.sites == ["clbos"]
    reply = trace.packet
    assert reply["arp_op"] == 2 and reply["arp_sha"] == topo.hosts["pg1"].mac
    assert reply["arp_spa"] == topo.hosts["pg1"].ip and reply["arp_tpa"] == h.ip
    assert reply["eth_dst"] == h.mac and reply["arp_tha"] == h.mac


def test_broadcast_is_not_flooded(topo):
    flows = plan(topo, default_services(topo), get_strategy("latency"), NetworkState(), 0.0).flows
    trace = send(topo, flows, "cbos", {"eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0800})
    assert trace.delivered_to is None and len(trace.hops) == 1


def test_static_flows_cover_every_switch_without_probes(topo):
    flows = static_flows(DEFAULT)
    assert set(flows) == {s.switch for s in topo.sites.values()}
    assert all(f.match.get("eth_type") != 0x88B5 for entries in flows.values() for f in entries)


def test_every_strategy_names_a_path_metric_and_an_endpoint_policy_that_exist():
    from controllers.routing import PATH_METRICS
    from controllers.services import ENDPOINT_POLICIES
    from controllers.strategies import COMPARED, STRATEGIES

    assert all(s.path_metric in PATH_METRICS and s.endpoint_policy in ENDPOINT_POLICIES
               for s in STRATEGIES.values())
    assert set(COMPARED) <= set(STRATEGIES)
