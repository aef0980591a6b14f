"""The controller's memory and reactions, without os-ken (the role of Faucet's Valve).

Every event (switch up or down, port status, probe, timer tick, strategy change) updates the
network state, recomputes the plan and returns, per switch, the flow changes to send. The
core remembers what it has installed, so a change sends only the difference: a failover
touches just the flows whose next hop moved.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

from controllers.flows import FlowChanges, diff
from controllers.monitor import DelayMonitor, Round
from controllers.planner import Plan, host_paths, plan
from controllers.routing import NetworkState, effective_delays, link_id
from controllers.services import Service, with_endpoints
from controllers.strategies import STRATEGIES, Strategy, get_strategy
from topologies.model import Topology


@dataclass(frozen=True)
class Options:
    probe_interval_s: float = 0.1  # the shortest; longer on a slow machine (monitor.py)
    # How often the timer runs: it sends the rounds that are due (a suspect link's come
    # sooner than the interval) and applies the probes' verdicts of the last tick at once
    # (a silent data center cuts 7 links, found within a few ms: one recompute, not 7).
    tick_s: float = 0.01
    probe_misses: int = 3  # lost probes in a row (with the switches answering) mean a link is down
    # Let measured delays override configured ones where they clearly differ. Off by
    # default: probes through a Python controller and the userspace datapath read ~1-2 ms
    # high on a loaded machine, more than the sub-millisecond links they would override.
    use_measured: bool = False
    recompute_interval_s: float = 1.0  # how often measured delays may move paths


class RoutingCore:
    def __init__(self, topology: Topology, services: list[Service], strategy: str = "latency",
                 options: Options = Options()):
        self.topology = topology
        self.services = services
        self.defined = {s.name: s for s in services}  # as configured: the endpoints allowed
        self.strategy: Strategy = get_strategy(strategy)
        self.options = options
        self.state = NetworkState()
        self.monitor = DelayMonitor(topology, options.probe_interval_s, options.probe_misses)
        self.site_of = {int(s.dpid, 16): s.name for s in topology.sites.values()}
        self.connected: set[int] = set()
        self.installed: dict[int, list] = {}
        self.port_down: set[frozenset[str]] = set()
        self.probe_down: set[frozenset[str]] = set()
        self.current: Plan | None = None
        self._last_recompute = float("-inf")

    def known(self, dpid: int) -> bool:
        return dpid in self.site_of

    def switch_up(self, dpid: int, now: float) -> list[FlowChanges]:
        """A switch connected: it gets its full flow set (the app clears it first)."""
        self.connected.add(dpid)
        self.installed[dpid] = []
        self.state.down_sites.discard(self.site_of[dpid])
        self.monitor.switch_connected(dpid, now)
        return self.recompute(now)

    def switch_down(self, dpid: int, now: float) -> list[FlowChanges]:
        """A switch that was connected is gone: route around its site."""
        self.connected.discard(dpid)
        self.installed.pop(dpid, None)
        self.state.down_sites.add(self.site_of[dpid])
        self.monitor.switch_disconnected(dpid)
        return self.recompute(now)

    def port_status(self, dpid: int, port: int, up: bool, now: float) -> list[FlowChanges]:
        peer = self.topology.switch_ports(self.site_of[dpid]).get(port)
        if peer is None:
            return []
        if peer in self.topology.hosts:
            (self.state.down_hosts.discard if up else self.state.down_hosts.add)(peer)
        else:
            lid = link_id(self.site_of[dpid], peer)
            (self.port_down.discard if up else self.port_down.add)(lid)
        return self.recompute(now)

    def echo_sent(self, dpid: int, xid: int, now: float) -> None:
        self.monitor.echo_sent(dpid, xid, now)

    def echo_replied(self, dpid: int, xid: int, now: float) -> None:
        """An echo reply proves the switch alive: probes lost before it now count (at the
        next tick)."""
        self.monitor.echo_replied(dpid, xid, now)

    def probe_in(self, dpid: int, in_port: int, data: bytes, now: float) -> Round:
        """A probe came back: the echo requests to send at once (see monitor.drains)."""
        self.monitor.probe_received(dpid, in_port, data, now)
        return self.monitor.drains()

    def tick(self, now: float, cpu_s: float) -> tuple[Round, list[FlowChanges]]:
        """Every tick_s: changes for links that went quiet or answer again, and the probes
        and echo requests due. `cpu_s`: the controller's CPU time so far."""
        changes = self._check_silent(now)
        if (not changes and self.options.use_measured
                and now - self._last_recompute >= self.options.recompute_interval_s):
            changes = self.recompute(now)
        return self.monitor.next_round(now, cpu_s, self.options.tick_s), changes

    def _check_silent(self, now: float) -> list[FlowChanges]:
        if not self.monitor.news:
            return []
        silent = self.monitor.silent()
        if silent == self.probe_down:
            return []
        self.probe_down = silent
        return self.recompute(now)

    def set_strategy(self, name: str, now: float,
                     measured_delays: bool | None = None) -> list[FlowChanges]:
        """Switch strategy, and (unless None) whether measured delays may override configured
        ones; an unknown name raises UnknownStrategy and changes nothing."""
        self.strategy = get_strategy(name)
        if measured_delays is not None:
            self.options = dataclasses.replace(self.options, use_measured=measured_delays)
        return self.recompute(now)

    def set_endpoints(self, service: str, hosts: list[str], now: float) -> list[FlowChanges]:
        """Serve `service` by `hosts` in that order (a promotion moves the write address to
        the new primary); an unknown service or host raises ValueError and changes nothing."""
        if service not in self.defined:
            raise ValueError(f"unknown service {service!r} (choose from {', '.join(self.defined)})")
        new = with_endpoints(self.defined[service], hosts)
        self.services = [new if s.name == service else s for s in self.services]
        return self.recompute(now)

    def recompute(self, now: float) -> list[FlowChanges]:
        self.state.down_links = self.port_down | self.probe_down
        self.state.measured = self.monitor.measurements() if self.options.use_measured else {}
        self.current = plan(self.topology, self.services, self.strategy, self.state, now)
        self._last_recompute = now
        changes = []
        for dpid in sorted(self.connected):
            wanted = self.current.flows.get(dpid, [])
            change = diff(dpid, self.installed.get(dpid, []), wanted)
            self.installed[dpid] = wanted
            if change:
                changes.append(change)
        return changes

    def _plan(self, now: float) -> Plan:
        if self.current is None:
            self.recompute(now)
        return self.current

    # Views for the REST API: plain JSON-ready data.

    def view_topology(self) -> dict:
        t = self.topology
        return {
            "name": t.name,
            "sites": [{"name": s.name, "kind": s.kind, "lat": s.lat, "lon": s.lon, "switch": s.switch,
                       "dpid": s.dpid, "connected": int(s.dpid, 16) in self.connected,
                       "up": s.name not in self.state.down_sites} for s in t.sites.values()],
            "links": [{"a": k.a, "b": k.b, "class": k.link_class, "delay_ms": k.delay_ms,
                       "up": link_id(k.a, k.b) not in self.state.down_links} for k in t.links],
            "hosts": [{"name": h.name, "site": h.site, "role": h.role, "ip": h.ip, "mac": h.mac,
                       "up": self.state.host_up(t, h.name)} for h in t.hosts.values()],
            "services": [{"name": s.name, "vip": s.vip, "mac": s.mac, "protocol": s.protocol, "port": s.port,
                          "endpoints": [{"host": e.host, "bias": e.bias,
                                         "address": e.address or t.hosts[e.host].ip}
                                        for e in s.endpoints],
                          "policy": s.policy, "consumers": list(s.consumers)}
                         for s in self.services],
        }

    def view_strategy(self) -> dict:
        s = self.strategy
        return {"name": s.name, "path_metric": s.path_metric, "endpoint_policy": s.endpoint_policy,
                "description": s.description, "available": list(STRATEGIES),
                "measured_delays": self.options.use_measured}

    def view_paths(self, now: float) -> dict:
        return {"strategy": self.strategy.name, "paths": host_paths(self.topology, self._plan(now))}

    def view_links(self, now: float) -> dict:
        measured = self.monitor.measurements()
        effective = effective_delays(self.topology, self.state, now)
        rows = []
        for k in self.topology.links:
            lid = link_id(k.a, k.b)
            sample = measured.get(lid)
            rows.append({
                "a": k.a, "b": k.b, "configured_ms": k.delay_ms,
                "measured_ms": round(sample.delay_ms, 4) if sample else None,
                "sample_age_s": round(now - sample.at, 3) if sample else None,
                "effective_ms": round(effective[lid], 4),
                "up": lid not in self.state.down_links,
                "down_by": [r for r, s in (("port", self.port_down), ("probe", self.probe_down)) if lid in s],
            })
        return {"control_rtt_ms": {self.site_of[d]: round(r * 1000, 4) for d, r in self.monitor.rtt_s.items()},
                "probe_period_s": round(self.monitor.period_s, 4),
                "probe_margin_ms": round(self.monitor.margin * 1000, 4),
                "links": rows}

    def view_endpoints(self, now: float) -> dict:
        chosen = self._plan(now).endpoints
        return {"strategy": self.strategy.name, "services": [
            {"name": s.name, "vip": s.vip, "mac": s.mac, "protocol": s.protocol, "port": s.port,
             "endpoints": [e.host for e in s.endpoints],
             "choices": {c: (chosen[(s.name, c)].host if chosen[(s.name, c)] else None)
                         for c in s.consumers}}
            for s in self.services]}
