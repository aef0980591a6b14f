"""Endpoint selection for service addresses: geo-proximity with bias, primary/standby."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.flowsim import ip_packet, send
from controllers.planner import plan
from controllers.routing import NetworkState, link_id
from controllers.services import (
    Endpoint, ServiceError, biased_distance_km, default_services, parse_services,
)
from controllers.strategies import UnknownStrategy, get_strategy
from topologies.model import load

DEFAULT = Path(__file__).resolve().parents[2] / "topologies" / "hybrid-cloud.yaml"


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
    db, app = default_services(topo)
    assert (db.name, db.vip, [e.host for e in db.endpoints]) == ("db", "10.0.0.10", ["pg1", "pg2"])
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


def test_vip_is_rewritten_to_the_endpoint_and_back(topo):
    services = default_services(topo)
    flows = plan(topo, services, get_strategy("primary-standby"), NetworkState(), 0.0).flows
    db = services[0]
    there = send(topo, flows, "svlz2a", ip_packet(topo, "svlz2a", db.vip, db.mac))
    assert there.delivered_to == "pg1" and there.packet["ipv4_dst"] == topo.hosts["pg1"].ip
    pg1, client = topo.hosts["pg1"], topo.hosts["svlz2a"]
    back = send(topo, flows, "pg1", ip_packet(topo, "pg1", client.ip, client.mac))
    assert back.delivered_to == "svlz2a"
    assert (back.packet["ipv4_src"], back.packet["eth_src"]) == (db.vip, db.mac)


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
                                      "endpoints": ["pg1"], "port": 5432}]}, topo)


def test_unknown_strategy_is_rejected():
    with pytest.raises(UnknownStrategy, match="choose from"):
        get_strategy("fastest")
