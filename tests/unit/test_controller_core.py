"""The controller core without a switch: events in, flow changes out; probes; rendering."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from controllers.core import RoutingCore
from controllers.flows import FlowEntry, GotoTable, Move, Output, SetField, diff, render_ofctl
from controllers.flowsim import ip_packet, send
from controllers.monitor import parse_probe, probe_frame
from controllers.rest import serve
from controllers.services import default_services
from controllers.strategies import UnknownStrategy
from topologies.model import load

DEFAULT = Path(__file__).resolve().parents[2] / "topologies" / "hybrid-cloud.yaml"


@pytest.fixture
def core():
    topo = load(DEFAULT)
    c = RoutingCore(topo, default_services(topo), "latency")
    for site in topo.sites.values():
        c.switch_up(int(site.dpid, 16), 0.0)
    return c


def dpid(core, site):
    return int(core.topology.sites[site].dpid, 16)


def walk(core, src, dst):
    d = core.topology.hosts[dst]
    return send(core.topology, core.installed, src, ip_packet(core.topology, src, d.ip, d.mac))


def test_render_ofctl():
    flow = FlowEntry(0x4C00000000000001, 0, 400, {"eth_type": 0x0800, "ipv4_src": "10.1.0.2", "ipv4_dst": "10.0.0.10"},
                     (SetField("eth_dst", "02:4c:00:00:02:01"), SetField("ipv4_dst", "10.2.0.1"), GotoTable(1)))
    assert render_ofctl(flow) == (
        "cookie=0x4c48000000000000,table=0,priority=400,eth_type=0x0800,ip_src=10.1.0.2,ip_dst=10.0.0.10,"
        "actions=set_field:02:4c:00:00:02:01->eth_dst,set_field:10.2.0.1->ip_dst,goto_table:1")
    arp = FlowEntry(1, 0, 200, {"eth_type": 0x0806, "arp_op": 1}, (Move("arp_spa", "arp_tpa"), Output("in_port")))
    assert render_ofctl(arp).endswith("arp_op=1,actions=move:arp_spa->arp_tpa,in_port")
    assert render_ofctl(FlowEntry(1, 1, 100, {"eth_dst": "02:4c:00:00:01:01"}, (Output(3),))).endswith(
        "eth_dst=02:4c:00:00:01:01,actions=output:3")
    assert render_ofctl(FlowEntry(1, 0, 1, {}, ())).endswith("priority=1,actions=drop")


def test_diff_sends_only_what_changed():
    a = FlowEntry(1, 1, 100, {"eth_dst": "m1"}, (Output(1),))
    b = FlowEntry(1, 1, 100, {"eth_dst": "m2"}, (Output(2),))
    moved = FlowEntry(1, 1, 100, {"eth_dst": "m2"}, (Output(3),))
    change = diff(1, [a, b], [moved])
    assert change.add == [moved] and change.delete == [a]
    assert not diff(1, [a], [a])


def test_port_down_reroutes_only_affected_flows(core):
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]
    port = core.topology.port_to("rga", "lz1a")
    changes = core.port_status(dpid(core, "rga"), port, False, 1.0)
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1b", "dc1"]
    touched = {c.dpid for c in changes}
    assert dpid(core, "rga") in touched and all(not c.delete or c.add for c in changes)
    core.port_status(dpid(core, "rga"), port, True, 2.0)
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]


def test_switch_down_is_routed_around(core):
    core.switch_down(dpid(core, "lz1a"), 1.0)
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1b", "dc1"]


def test_strategy_change_and_rejection(core):
    core.set_strategy("hops", 1.0)
    assert walk(core, "svrga", "pg1").sites == ["rga", "dc1"]
    with pytest.raises(UnknownStrategy):
        core.set_strategy("nope", 2.0)
    assert core.strategy.name == "hops"


def test_probes_measure_delay_and_silence_means_down(core):
    now = 10.0
    probes, _ = core.tick(now)
    assert len(probes) == 2 * len(core.topology.links)
    ports = core.monitor.directions

    def back(p, t):  # the probe arrives on the neighbour's port after the link's delay
        d = ports[(p.dpid, p.port)]
        delay = core.topology.link_between(d.src_site, d.dst_site).delay_ms / 1000
        core.probe_in(d.dst_dpid, d.dst_port, p.data, t + delay)

    def echoes(t):  # both switches answer the controller's echo 1 ms later
        for i, d in enumerate(sorted(core.connected)):
            core.echo_sent(d, i, t)
            core.echo_replied(d, i, t + 0.001)

    for p in probes:
        back(p, now)
    echoes(now)
    sample = core.monitor.measurements()[frozenset(("rga", "lz1a"))]
    assert sample.delay_ms == pytest.approx(core.topology.link_between("rga", "lz1a").delay_ms)
    # From now on nothing comes back from rga -> lz1a: down after the probe timeout.
    quiet = (dpid(core, "rga"), core.topology.port_to("rga", "lz1a"))
    t = now
    while walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]:
        t += core.options.probe_interval_s
        assert t < now + 1.0, "silent failure not detected within 1 s"
        probes, _ = core.tick(t)
        for p in probes:
            if (p.dpid, p.port) != quiet:
                back(p, t)
        echoes(t)
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1b", "dc1"]
    # The probes come back again: the link is up again.
    t += core.options.probe_interval_s
    for p in core.tick(t)[0]:
        back(p, t)
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]


def test_a_stall_blames_no_link(core):
    """Nothing comes back, not even echo replies: the controller or switches stall."""
    t = 10.0
    for _ in range(20):
        probes, changes = core.tick(t)
        t += core.options.probe_interval_s
    assert not core.probe_down
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]


def test_probe_frame_roundtrip():
    frame = probe_frame(0x4C00000000000003, 7, 42)
    assert len(frame) >= 60 and frame[12:14] == b"\x88\xb5"
    assert parse_probe(frame) == (0x4C00000000000003, 7, 42)
    assert parse_probe(b"\x00" * 60) is None


class FakeBackend:
    def __init__(self):
        self.strategy = "latency"

    def view(self, resource):
        return {"resource": resource, "strategy": self.strategy}

    def set_strategy(self, name):
        if name not in ("latency", "hops"):
            raise UnknownStrategy(f"unknown strategy {name!r}")
        self.strategy = name
        return {"name": name}


def test_rest_api():
    backend = FakeBackend()
    server = serve(backend, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def call(method, path, body=None):
        req = urllib.request.Request(base + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    try:
        assert call("GET", "/links") == (200, {"resource": "links", "strategy": "latency"})
        assert call("PUT", "/strategy", b'{"name": "hops"}') == (200, {"name": "hops"})
        status, body = call("PUT", "/strategy", b'{"name": "fastest"}')
        assert status == 400 and "unknown strategy" in body["error"] and backend.strategy == "hops"
        assert call("PUT", "/strategy", b"not json")[0] == 400
        assert call("PUT", "/strategy", b'{"nom": "hops"}')[0] == 400
        assert call("PUT", "/strategy")[0] == 400
        assert call("GET", "/nothing")[0] == 404
        assert call("PUT", "/paths", b"{}")[0] == 405
    finally:
        server.shutdown()
