"""The controller core without a switch: events in, flow changes out; probes; rendering."""

from __future__ import annotations

import heapq
import itertools
import json
import urllib.error
import urllib.request

import pytest

from controllers.core import RoutingCore
from controllers.flows import FlowEntry, GotoTable, Move, Output, SetField, diff, render_ofctl
from controllers.flowsim import ip_packet, send
from controllers.monitor import parse_probe, probe_frame
from controllers.routing import link_id
from controllers.rest import serve
from controllers.services import default_services
from controllers.strategies import UnknownStrategy
from tests.helpers import FakeRestBackend
from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load

DEFAULT = DEFAULT_TOPOLOGY


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
    assert core.options.use_measured is False
    core.set_strategy("hops", 1.5, measured_delays=True)
    assert core.view_strategy()["measured_delays"] is True
    assert walk(core, "svrga", "pg1").sites == ["rga", "dc1"]
    with pytest.raises(UnknownStrategy):
        core.set_strategy("nope", 2.0)
    assert core.strategy.name == "hops"


class ControlPlane:
    """The switches and control channels around a core, as one queue: the controller handles
    one message at a time, each costing `cost_s` (a packet-out or echo request to send, a
    packet-in or echo reply to read), in the order they arrive; those costs are all the CPU
    time it uses. A switch answers an echo at once; a probe reaches the neighbour after its
    link's delay, unless its link is in `cut` (frames dropped, carrier up). The timer ticks
    every tick_s, on time."""

    def __init__(self, core, cost_s: float, now: float = 10.0):
        self.core, self.cost_s = core, cost_s
        self.now = self.free = self.next_tick = now
        self.cpu_s = 0.0
        self.cut: set[frozenset[str]] = set()
        self.lag_s = 0.0  # how far the data plane is behind: every probe arrives this late
        # dpid -> until when its datapath drops probes (cached flows from before the
        # controller's, revalidated in the background) while it answers echoes at once
        self.dropping_until: dict[int, float] = {}
        # dpid -> (from, until) its switch daemon is descheduled: it sends no probe out,
        # answers no echo and reads no port before, then reads the frames that came in
        # the meantime in the worst order (the last first) and answers its echoes after
        self.stalled: dict[int, tuple[float, float]] = {}
        self.queue: list = []  # (arrival, order, handler of the time it is done)
        self.order = itertools.count()

    def run(self, seconds: float, until=lambda: False) -> float:
        """Advance time; returns when `until()` first held, or the end."""
        end = self.now + seconds
        while not until():
            start = max(self.free, self.queue[0][0]) if self.queue else float("inf")
            if start < self.next_tick and start <= end:
                _, _, handle = heapq.heappop(self.queue)
                self.free = self.now = start + self.cost_s
                self.cpu_s += self.cost_s
                handle(self.now)
            elif self.next_tick <= end:
                self.now = self.next_tick
                self.next_tick += self.core.options.tick_s
                self._tick()
            else:
                self.now = end
                break
        return self.now

    def _arrive(self, at: float, handle) -> None:
        heapq.heappush(self.queue, (at, next(self.order), handle))

    def _tick(self) -> None:
        round_, _ = self.core.tick(self.now, self.cpu_s)
        self._send(round_, self.now)

    def _send(self, round_, now: float) -> None:
        for probe in round_.probes:
            self._arrive(now, lambda t, p=probe: self._probe_out(p, t))
        for dpid in round_.echoes:
            xid = next(self.order)
            self.core.echo_sent(dpid, xid, now)
            self._arrive(now, lambda t, d=dpid, x=xid: self._arrive(
                self._awake(d, t), lambda t2: self.core.echo_replied(d, x, t2)))

    def _awake(self, dpid: int, t: float) -> float:
        """When the switch can act on something that reached it at t."""
        start, end = self.stalled.get(dpid, (0.0, 0.0))
        return end if start <= t < end else t

    def _probe_out(self, probe, t: float) -> None:
        d = self.core.monitor.directions[(probe.dpid, probe.port)]
        if link_id(d.src_site, d.dst_site) in self.cut:
            return
        delay = self.core.topology.link_between(d.src_site, d.dst_site).delay_ms / 1000
        arrival = self._awake(d.src_dpid, t) + delay + self.lag_s
        if arrival < self.dropping_until.get(d.dst_dpid, arrival):
            return
        handle = lambda t2: self._send(self.core.probe_in(d.dst_dpid, d.dst_port, probe.data, t2), t2)
        read = self._awake(d.dst_dpid, arrival)
        if read == arrival:
            self._arrive(arrival, handle)
        else:  # read on waking up, before the echoes, the last to come in first
            heapq.heappush(self.queue, (read, -next(self.order), handle))


FAST_S = 0.00001  # a message's cost to the controller on a fast machine
SLOW_S = 0.0015  # under QEMU's software emulation (the test VM: ~0.26 s of CPU for 68 probes)
RGA_LZ1A = frozenset(("rga", "lz1a"))


def test_probes_measure_delay_and_silence_means_down(core):
    plane = ControlPlane(core, FAST_S)
    plane.run(1.0)
    # Within the time the controller takes to send a round (the echo waits behind its probes)
    sample = core.monitor.measurements()[RGA_LZ1A]
    round_ms = (2 * len(core.topology.links) + len(core.topology.sites)) * FAST_S * 1000
    assert sample.delay_ms == pytest.approx(core.topology.link_between("rga", "lz1a").delay_ms, abs=round_ms)
    assert core.monitor.period_s == core.options.probe_interval_s
    # From now on nothing comes back from rga <-> lz1a: down after the probe timeout.
    plane.cut.add(RGA_LZ1A)
    cut_at = plane.now
    found = plane.run(2.0, until=lambda: walk(core, "svrga", "pg1").sites != ["rga", "lz1a", "dc1"])
    assert found - cut_at < 1.0, "silent failure not detected within 1 s"
    assert core.probe_down == {RGA_LZ1A}
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1b", "dc1"]
    # The probes come back again: the link is up again.
    plane.cut.clear()
    plane.run(1.0, until=lambda: not core.probe_down)
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]


def test_a_slow_controller_blames_no_link_and_still_finds_a_cut(core):
    """Rounds of probes cost the controller more than the probe interval: it spaces them out
    instead of falling behind, and a late probe is not a lost one; a real cut still shows."""
    plane = ControlPlane(core, SLOW_S)
    start = plane.now
    plane.run(60.0, until=lambda: bool(core.probe_down))
    assert not core.probe_down, f"healthy links declared down after {plane.now - start:.1f} s"
    assert core.monitor.period_s > 2 * core.options.probe_interval_s
    assert max(core.monitor.rtt_s.values()) < core.monitor.period_s  # no backlog building up
    plane.cut.add(RGA_LZ1A)
    cut_at = plane.now
    found = plane.run(30.0, until=lambda: bool(core.probe_down))
    assert core.probe_down == {RGA_LZ1A}
    assert found - cut_at < (core.options.probe_misses + 1) * core.monitor.period_s
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1b", "dc1"]


def test_a_lagging_data_plane_blames_no_link_and_still_finds_a_cut(core):
    """The datapath falls 0.4 s behind (a loaded machine: frames pass in order, late) while
    the control channels answer echoes at once: a late probe is not a lost one."""
    plane = ControlPlane(core, FAST_S)
    plane.run(1.0)
    plane.lag_s = 0.4
    plane.run(5.0, until=lambda: bool(core.probe_down))
    assert not core.probe_down, "healthy links declared down behind a lagging data plane"
    plane.cut.add(RGA_LZ1A)
    cut_at = plane.now
    found = plane.run(5.0, until=lambda: bool(core.probe_down))
    assert core.probe_down == {RGA_LZ1A}
    assert found - cut_at < 1.0 + plane.lag_s
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1b", "dc1"]


def test_a_switch_that_just_connected_may_drop_probes_for_a_while(core):
    """Bring-up on a busy machine: a new switch's datapath drops probes on cached flows for
    a second while it answers echoes; its links are not blamed, a link cut from the start
    still is."""
    plane = ControlPlane(core, FAST_S)
    plane.dropping_until[dpid(core, "lz1a")] = plane.now + 1.0
    plane.cut.add(frozenset(("rgb", "lz2a")))
    plane.run(5.0, until=lambda: bool(core.probe_down - {frozenset(("rgb", "lz2a"))}))
    assert core.probe_down == {frozenset(("rgb", "lz2a"))}
    assert core.monitor.measurements()[RGA_LZ1A].delay_ms > 0


def test_a_stalled_switch_blames_none_of_its_links(core):
    """One switch daemon is descheduled for longer than `misses` rounds while the others
    return probes: what it did not send was not lost, and what it read in the wrong order
    on waking up was not either."""
    plane = ControlPlane(core, FAST_S)
    plane.run(1.0)
    plane.stalled[dpid(core, "lz1a")] = (plane.now, plane.now + 1.0)
    plane.run(3.0, until=lambda: bool(core.probe_down))
    assert not core.probe_down, "a stalled switch's links declared down"
    plane.cut.add(RGA_LZ1A)
    plane.run(1.0, until=lambda: bool(core.probe_down))
    assert core.probe_down == {RGA_LZ1A}


def test_a_silent_data_center_is_routed_around_at_once_and_back_after_repair(core):
    """Every link of dc1 drops everything, carrier up: the links are found from the far
    ends within about one round and a link's round trip (a suspect link gets its next
    probes at once, a switch whose probes arrive nowhere is cut off), their verdicts reach
    the flows in fewer recomputes than links and none comes back before the repair; after
    it they all come back and stay up."""
    plane = ControlPlane(core, FAST_S)
    plane.run(1.0)
    dc1 = {link_id(k.a, k.b) for k in core.topology.links if "dc1" in (k.a, k.b)}
    recomputes = []
    recompute = core.recompute
    core.recompute = lambda now: recomputes.append(now) or recompute(now)
    plane.cut |= dc1
    cut_at = plane.now
    found = plane.run(2.0, until=lambda: "dc1" not in walk(core, "svrga", "pg2").sites)
    assert found - cut_at < 2 * core.options.probe_interval_s + 0.05
    plane.run(2.0, until=lambda: core.probe_down == dc1)
    assert core.probe_down == dc1
    assert len(recomputes) < len(dc1), f"{len(recomputes)} recomputes for {len(dc1)} links"
    plane.run(2.0, until=lambda: core.probe_down != dc1)
    assert core.probe_down == dc1, "a link of the silent data center came back"
    plane.cut.clear()
    plane.run(1.0, until=lambda: not core.probe_down)
    assert walk(core, "svrga", "pg2").sites == ["rga", "lz1a", "dc1", "dc2"]
    plane.run(3.0, until=lambda: bool(core.probe_down))
    assert not core.probe_down, "a repaired link declared down again"


def test_a_round_lost_everywhere_blames_no_switch(core):
    """The data plane drops every frame for a moment (a machine-wide hiccup): one probe of
    every link is lost, many switches' at once, which is no switch cut off."""
    plane = ControlPlane(core, FAST_S)
    plane.run(1.0)
    plane.cut |= {link_id(k.a, k.b) for k in core.topology.links}
    plane.run(0.05)
    plane.cut.clear()
    plane.run(2.0, until=lambda: bool(core.probe_down))
    assert not core.probe_down, "a moment's loss everywhere declared links down"


def test_a_stall_blames_no_link(core):
    """Nothing comes back, not even echo replies: the controller or switches stall."""
    t = 10.0
    for _ in range(20):
        core.tick(t, 0.0)
        t += core.options.probe_interval_s
    assert not core.probe_down
    assert walk(core, "svrga", "pg1").sites == ["rga", "lz1a", "dc1"]


def test_probe_frame_roundtrip():
    frame = probe_frame(0x4C00000000000003, 7, 42)
    assert len(frame) >= 60 and frame[12:14] == b"\x88\xb5"
    assert parse_probe(frame) == (0x4C00000000000003, 7, 42)
    assert parse_probe(b"\x00" * 60) is None


def test_rest_api():
    backend = FakeRestBackend()
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
        assert call("PUT", "/strategy", b'{"name": "hops"}') == (
            200, {"name": "hops", "measured_delays": None})
        assert call("PUT", "/strategy", b'{"name": "hops", "measured_delays": true}') == (
            200, {"name": "hops", "measured_delays": True})
        assert call("PUT", "/strategy", b'{"name": "hops", "measured_delays": 1}')[0] == 400
        status, body = call("PUT", "/strategy", b'{"name": "fastest"}')
        assert status == 400 and "unknown strategy" in body["error"] and backend.strategy == "hops"
        assert call("PUT", "/strategy", b"not json")[0] == 400
        assert call("PUT", "/strategy", b'{"nom": "hops"}')[0] == 400
        assert call("PUT", "/strategy")[0] == 400
        assert call("GET", "/nothing")[0] == 404
        assert call("PUT", "/paths", b"{}")[0] == 405
    finally:
        server.shutdown()


def measured(core, a: str, b: str, delay_ms: float, now: float) -> None:
    """The monitor heard probes over link a-b, both ways, taking delay_ms."""
    for key, d in core.monitor.directions.items():
        if {d.src_site, d.dst_site} == {a, b}:
            state = core.monitor.state[key]
            state.samples.extend([delay_ms] * state.samples.maxlen)
            state.last_rx = now


def test_with_measured_delays_a_link_whose_delay_rose_is_routed_around_and_back(core):
    assert walk(core, "mono2", "pg1").sites == ["dc2", "dc1"]
    core.set_strategy("latency", 1.0, measured_delays=True)
    measured(core, "dc1", "dc2", 70.0, 3.0)  # above the detour by the Regions (54.5 ms)
    core.tick(3.0, 0.0)
    # The lowest-latency detour: by the Local Zones and both Regions (46.8 ms).
    assert walk(core, "mono2", "pg1").sites == ["dc2", "lz2a", "rgb", "rga", "lz1a", "dc1"]
    measured(core, "dc1", "dc2", 27.5, 5.0)
    core.tick(5.0, 0.0)
    assert walk(core, "mono2", "pg1").sites == ["dc2", "dc1"]


def test_without_measured_delays_the_configured_delay_stands(core):
    measured(core, "dc1", "dc2", 70.0, 3.0)
    core.tick(3.0, 0.0)
    assert walk(core, "mono2", "pg1").sites == ["dc2", "dc1"]
