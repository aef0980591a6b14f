"""Endpoint selection for service addresses: geo-proximity with bias, primary/standby."""

from __future__ import annotations


import pytest

from controllers.flowsim import icmp_packet, l4_packet, send
from controllers.planner import plan
from controllers.routing import NetworkState, link_id
from controllers.services import (
    Endpoint, ServiceError, biased_distance_km, default_services, parse_services,
    service_address, with_endpoints,
)
from controllers.strategies import UnknownStrategy, get_strategy
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

DEFAULT = DEFAULT_TOPOLOGY


@pytest.fixture(scope="module")
def topo():
    return load(DEFAULT)


def app_service(topo, mono1_bias=0):
    """Chicago's choice between Region A (N. Virginia) and the DC1 monolith (Boston)."""
    return parse_services({"services": [{"name": "app", "vip": "10.0.0.20", "consumers": ["cchi"],
                                         "endpoints": ["svrga", {"host": "mono1", "bias": mono1_bias}]}]},
                          topo)


def choice(topo, services, strategy, consumer, state=None):
    return plan(topo, services, get_strategy(strategy), state or NetworkState(), 0.0).endpoints[
        (services[0].name, consumer)]


def test_defaults_are_documented_roles(topo):
    db, write, app = default_services(topo)
    assert (db.name, db.vip, [e.host for e in db.endpoints]) == ("db", "10.0.0.10", ["pg1", "pg2"])
    assert (write.name, write.vip, write.policy) == ("db-write", "10.0.0.11", "fixed")
    pg1, pg2 = topo.hosts["pg1"].ip.split("."), topo.hosts["pg2"].ip.split(".")
    assert [(e.host, e.address) for e in write.endpoints] == [
        ("pg1", f"10.{pg1[1]}.1.{pg1[3]}"), ("pg2", f"10.{pg2[1]}.1.{pg2[3]}")]
    assert set(write.consumers) == set(db.consumers)
    assert set(db.consumers) == {h.name for h in topo.hosts.values() if h.role in ("monolith", "service")}
    assert app.endpoints[0].host == "mono1" and set(app.consumers) == set(
        h.name for h in topo.hosts_with_role("client"))


def test_geo_picks_the_nearest_endpoint(topo):
    services = app_service(topo)
    assert choice(topo, services, "geo", "cchi").host == "svrga"


def test_bias_moves_the_boundary_as_route53_describes(topo):
    consumer = topo.hosts["cchi"]
    near = biased_distance_km(topo, consumer, Endpoint("svrga"))
    far = biased_distance_km(topo, consumer, Endpoint("mono1"))
    assert far > near
    # biased distance = distance x (1 - bias/100): mono1 wins once far x (1 - b/100) < near.
    threshold = 100 * (1 - near / far)
    below, above = int(threshold), int(threshold) + 1
    assert choice(topo, app_service(topo, below), "geo", "cchi").host == "svrga"
    assert choice(topo, app_service(topo, above), "geo", "cchi").host == "mono1"
    assert biased_distance_km(topo, consumer, Endpoint("mono1", above)) == pytest.approx(far * (1 - above / 100))


def test_primary_while_reachable_else_standby(topo):
    services = default_services(topo)
    assert choice(topo, services, "primary-standby", "svlz2a").host == "pg1"
    cut = NetworkState(down_links={link_id("dc1", k) for k in ("op1a", "op1b", "lz1a", "lz1b", "rga", "dc2", "clbos")})
    assert choice(topo, services, "primary-standby", "svlz2a", cut).host == "pg2"
    assert choice(topo, services, "primary-standby", "svlz2a", NetworkState(down_hosts={"pg1"})).host == "pg2"
    assert choice(topo, services, "fixed", "svlz2a", cut).host == "pg1"


def primary_standby_flows(topo):
    services = default_services(topo)
    return services, plan(topo, services, get_strategy("primary-standby"), NetworkState(), 0.0).flows


def test_vip_port_is_rewritten_to_the_endpoint_and_back(topo):
    services, flows = primary_standby_flows(topo)
    db = services[0]
    assert (db.protocol, db.port) == ("tcp", 5432)
    there = send(topo, flows, "svlz2a", l4_packet(topo, "svlz2a", db.vip, db.mac, 40000, 5432))
    assert there.delivered_to == "pg1"
    assert (there.packet["ipv4_dst"], there.packet["tcp_dst"]) == (topo.hosts["pg1"].ip, 5432)
    client = topo.hosts["svlz2a"]
    back = send(topo, flows, "pg1", l4_packet(topo, "pg1", client.ip, client.mac, 5432, 40000))
    assert back.delivered_to == "svlz2a"
    assert (back.packet["ipv4_src"], back.packet["eth_src"]) == (db.vip, db.mac)


def test_icmp_between_an_endpoint_and_a_consumer_is_not_rewritten(topo):
    """The bug this fixes: every packet from pg1 to a consumer used to come from the VIP."""
    _, flows = primary_standby_flows(topo)
    pg1, consumer = topo.hosts["pg1"], topo.hosts["svop1a"]
    ping = send(topo, flows, "svop1a", icmp_packet(topo, "svop1a", pg1.ip, pg1.mac))
    assert ping.delivered_to == "pg1" and ping.packet["ipv4_dst"] == pg1.ip
    pong = send(topo, flows, "pg1", icmp_packet(topo, "pg1", consumer.ip, consumer.mac))
    assert pong.delivered_to == "svop1a"
    assert (pong.packet["ipv4_src"], pong.packet["eth_src"]) == (pg1.ip, pg1.mac)


def test_other_ports_and_protocols_are_not_rewritten(topo):
    services, flows = primary_standby_flows(topo)
    db = services[0]
    pg1, consumer = topo.hosts["pg1"], topo.hosts["svop1a"]
    # From the endpoint, another TCP port or UDP from 5432: untouched.
    for packet in (l4_packet(topo, "pg1", consumer.ip, consumer.mac, 22, 40000),
                   l4_packet(topo, "pg1", consumer.ip, consumer.mac, 5432, 40000, "udp")):
        trace = send(topo, flows, "pg1", packet)
        assert trace.delivered_to == "svop1a" and trace.packet["ipv4_src"] == pg1.ip
    # To the VIP on another port, or with ICMP: the VIP serves nothing there (dropped).
    for packet in (l4_packet(topo, "svop1a", db.vip, db.mac, 40000, 22),
                   icmp_packet(topo, "svop1a", db.vip, db.mac)):
        assert send(topo, flows, "svop1a", packet).delivered_to is None


def test_service_protocol_and_port_from_yaml(topo):
    app, = parse_services({"services": [{"name": "app", "vip": "10.0.0.20", "consumers": ["client"],
                                         "endpoints": ["mono1"]}]}, topo)
    assert (app.protocol, app.port) == ("tcp", 8080)  # the documented default for "app"
    dns, = parse_services({"services": [{"name": "dns", "vip": "10.0.0.53", "consumers": ["client"],
                                         "endpoints": ["mono1"], "protocol": "udp", "port": 53}]}, topo)
    assert (dns.protocol, dns.port, dns.ip_proto) == ("udp", 53, 17)
    flows = plan(topo, [dns], get_strategy("latency"), NetworkState(), 0.0).flows
    trace = send(topo, flows, "cbos", l4_packet(topo, "cbos", dns.vip, dns.mac, 40000, 53, "udp"))
    assert trace.delivered_to == "mono1"


def test_lowest_latency_and_fewest_hops_endpoints(topo):
    services = default_services(topo)
    assert choice(topo, services, "latency", "svlz2a").host == "pg2"
    assert choice(topo, services, "hops", "svrga").host == "pg1"


def test_bad_service_definitions_name_the_field(topo):
    with pytest.raises(ServiceError, match=r"services\[0\]\.endpoints\[0\]\.bias"):
        parse_services({"services": [{"name": "x", "vip": "10.0.0.5", "consumers": ["client"],
                                      "endpoints": [{"host": "pg1", "bias": 100}]}]}, topo)
    with pytest.raises(ServiceError, match=r"vip"):
        parse_services({"services": [{"name": "x", "vip": "10.1.0.1", "consumers": ["client"],
                                      "endpoints": ["pg1"]}]}, topo)
    with pytest.raises(ServiceError, match="unknown key"):
        parse_services({"services": [{"name": "x", "vip": "10.0.0.5", "consumers": ["client"],
                                      "endpoints": ["pg1"], "prot": "tcp", "port": 5432}]}, topo)
    with pytest.raises(ServiceError, match=r"services\[0\]\.port: is required"):
        parse_services({"services": [{"name": "x", "vip": "10.0.0.5", "consumers": ["client"],
                                      "endpoints": ["pg1"]}]}, topo)
    with pytest.raises(ServiceError, match=r"services\[0\]\.port: must be an integer"):
        parse_services({"services": [{"name": "db", "vip": "10.0.0.5", "consumers": ["client"],
                                      "endpoints": ["pg1"], "port": 70000}]}, topo)
    with pytest.raises(ServiceError, match=r"services\[0\]\.protocol"):
        parse_services({"services": [{"name": "db", "vip": "10.0.0.5", "consumers": ["client"],
                                      "endpoints": ["pg1"], "protocol": "sctp"}]}, topo)


def test_unknown_strategy_is_rejected():
    with pytest.raises(UnknownStrategy, match="choose from"):
        get_strategy("fastest")


def _db_flows(topo, strategy, services=None):
    services = services or default_services(topo)
    return services, plan(topo, services, get_strategy(strategy), NetworkState(), 0.0).flows


def _through(topo, flows, consumer, service):
    """A write or read from `consumer` to the service's address, and the server's answer."""
    there = send(topo, flows, consumer, l4_packet(topo, consumer, service.vip, service.mac,
                                                 40000, service.port))
    host = topo.hosts[consumer]
    back = send(topo, flows, there.delivered_to,
                l4_packet(topo, there.delivered_to, host.ip, host.mac, service.port, 40000)
                | {"ipv4_src": there.packet["ipv4_dst"]})
    return there, back


@pytest.mark.parametrize("strategy", ["hops", "latency", "geo", "primary-standby"])
def test_the_write_address_leads_every_consumer_to_the_primary_whatever_the_strategy(topo, strategy):
    services, flows = _db_flows(topo, strategy)
    write = next(s for s in services if s.name == "db-write")
    for consumer in write.consumers:
        there, back = _through(topo, flows, consumer, write)
        assert there.delivered_to == "pg1", consumer
        assert there.packet["ipv4_dst"] == service_address(topo.hosts["pg1"])
        assert (back.delivered_to, back.packet["ipv4_src"]) == (consumer, write.vip)


def test_reads_and_writes_on_one_port_come_back_from_their_own_address(topo):
    """svop2a reads from the nearer pg2 by latency and writes to pg1; svop1a does both on
    pg1: each answer must leave as the address the consumer called."""
    services, flows = _db_flows(topo, "latency")
    read, write = services[0], services[1]
    _, back = _through(topo, flows, "svop2a", read)
    assert back.packet["ipv4_src"] == read.vip
    for service in (read, write):
        there, back = _through(topo, flows, "svop1a", service)
        assert there.delivered_to == "pg1"
        assert back.packet["ipv4_src"] == service.vip


def test_a_promotion_moves_the_write_address_and_unknown_hosts_are_refused(topo):
    services = default_services(topo)
    moved = [with_endpoints(s, ["pg2"]) if s.name == "db-write" else s for s in services]
    _, flows = _db_flows(topo, "geo", moved)
    there, _ = _through(topo, flows, "mono1", moved[1])
    assert there.delivered_to == "pg2"
    for bad in ([], ["pg2", "pg2"], ["svrga"]):
        with pytest.raises(ServiceError):
            with_endpoints(services[1], bad)
