"""The os-ken application: a thin layer between OpenFlow 1.3 and `RoutingCore`.

Every handler takes the event's time, asks the core what should change and sends it; all
flow-mods go out through `_send_changes`, all probes and echo requests through `_send_round`
(as Faucet's valve_ryuapp does with its Valve). The launcher sets `HybridLabApp.config`
before os-ken's AppManager instantiates the app.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from controllers.core import Options, RoutingCore
from controllers.flows import (
    CONTROLLER, COOKIE_MASK, ETH_TYPE_PROBE, IN_PORT, FlowChanges, FlowEntry,
    GotoTable, Move, Output, SetField,
)
from controllers.monitor import Round
from controllers.rest import serve
from controllers.services import Service, default_services
from topologies.model import Topology

FIELD_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48, "arp_spa": 32, "arp_tpa": 32}


@dataclass
class AppConfig:
    topology: Topology
    strategy: str = "latency"
    services: list[Service] | None = None  # None: default_services(topology)
    options: Options = field(default_factory=Options)
    rest_host: str = "127.0.0.1"
    rest_port: int = 8080  # 0: no REST API


class HybridLabApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    config: AppConfig | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config is None:
            raise RuntimeError("HybridLabApp.config must be set before the app starts (see launcher)")
        cfg = self.config
        services = default_services(cfg.topology) if cfg.services is None else cfg.services
        self.core = RoutingCore(cfg.topology, services, cfg.strategy, cfg.options)
        self.lock = threading.RLock()  # os-ken's event thread, the timer and REST share the core
        self.datapaths: dict[int, object] = {}
        self.rest = None
        self.reroute_cpu_s = 0.0  # CPU time spent computing and sending flow changes

    def start(self):
        thread = super().start()
        self.threads.append(hub.spawn(self._timer))
        if self.config.rest_port:
            self.rest = serve(self, self.config.rest_host, self.config.rest_port)
        self.logger.info("strategy %s, REST on %s:%s", self.core.strategy.name,
                         self.config.rest_host, self.config.rest_port)
        return thread

    def close(self):
        if self.rest is not None:
            self.rest.shutdown()

    # OpenFlow events

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev):
        dp = ev.msg.datapath
        if not self.core.known(dp.id):
            self.logger.warning("switch %016x is not in the topology: ignored", dp.id)
            return
        ofp, parser = dp.ofproto, dp.ofproto_parser
        dp.send_msg(parser.OFPFlowMod(dp, command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                      match=parser.OFPMatch()))
        with self.lock:
            self.datapaths[dp.id] = dp
            self._reroute(self.core.switch_up, dp.id, ev.timestamp)
        dp.send_msg(parser.OFPPortDescStatsRequest(dp, 0))
        self.logger.info("switch %s connected", self.core.site_of[dp.id])

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def state_change(self, ev):
        dp = ev.datapath
        with self.lock:
            if dp.id is None or self.datapaths.get(dp.id) is not dp:
                return
            del self.datapaths[dp.id]
            self._reroute(self.core.switch_down, dp.id, ev.timestamp)
        self.logger.warning("switch %s disconnected", self.core.site_of[dp.id])

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def port_desc(self, ev):
        dp = ev.msg.datapath
        with self.lock:
            for port in ev.msg.body:
                if not self._port_up(dp.ofproto, port):
                    self._reroute(self.core.port_status, dp.id, port.port_no, False, ev.timestamp)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev):
        msg, dp = ev.msg, ev.msg.datapath
        if not self.core.known(dp.id):
            return
        up = msg.reason != dp.ofproto.OFPPR_DELETE and self._port_up(dp.ofproto, msg.desc)
        with self.lock:
            self._reroute(self.core.port_status, dp.id, msg.desc.port_no, up, ev.timestamp)
        self.logger.info("switch %s port %d %s", self.core.site_of[dp.id], msg.desc.port_no,
                         "up" if up else "down")

    @staticmethod
    def _port_up(ofp, port) -> bool:
        return not (port.state & ofp.OFPPS_LINK_DOWN or port.config & ofp.OFPPC_PORT_DOWN)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev):
        msg = ev.msg
        data = bytes(msg.data)
        if len(data) < 14 or int.from_bytes(data[12:14], "big") != ETH_TYPE_PROBE:
            return
        with self.lock:
            self._send_round(self.core.probe_in(msg.datapath.id, msg.match["in_port"], data, ev.timestamp))

    @set_ev_cls(ofp_event.EventOFPEchoReply, MAIN_DISPATCHER)
    def echo_reply(self, ev):
        with self.lock:
            self.core.echo_replied(ev.msg.datapath.id, ev.msg.xid, ev.timestamp)

    # Timer: probes, echo requests, silent failures

    def _timer(self):
        while self.is_active:
            with self.lock:
                now = time.time()
                before = set(self.core.probe_down)
                cpu0 = time.process_time()
                round_, changes = self.core.tick(now, self._own_cpu_s())
                if changes:
                    self._send_changes(changes)
                    self.reroute_cpu_s += time.process_time() - cpu0
                if self.core.probe_down != before:
                    self._log_probe_verdicts(before, changes, time.time() - now)
                self._send_round(round_)
            hub.sleep(self.core.options.tick_s)

    def _own_cpu_s(self) -> float:
        """The CPU time the controller's probing took so far: without what answering the
        REST API took (a client polling it should not slow probing down) nor computing and
        sending flow changes (a reroute should not space out the rounds that follow it)."""
        rest = self.rest.cpu_s if self.rest is not None else 0.0
        return time.process_time() - rest - self.reroute_cpu_s

    def _reroute(self, event, *args) -> None:
        """Hand a switch's event to the core and send the flow changes it returns (REST
        requests send theirs themselves: their CPU time is the REST API's)."""
        cpu0 = time.process_time()
        self._send_changes(event(*args))
        self.reroute_cpu_s += time.process_time() - cpu0

    def _log_probe_verdicts(self, before: set, changes: list[FlowChanges], took_s: float) -> None:
        """The links that changed, and what the reroute and the probing cost (where a slow
        failover lost its time)."""
        for lid in self.core.probe_down - before:
            self.logger.warning("link %s silent: down", "-".join(sorted(lid)))
        for lid in before - self.core.probe_down:
            self.logger.info("link %s answers probes again: up", "-".join(sorted(lid)))
        monitor = self.core.monitor
        self.logger.info("rerouted: %d flow mods in %.1f ms; probe period %.1f ms (slowest echo "
                         "%.1f ms, controller CPU per round %.1f ms)",
                         sum(len(c.add) + len(c.delete) for c in changes), took_s * 1000,
                         monitor.period_s * 1000, max(monitor.rtt_s.values(), default=0.0) * 1000,
                         monitor.round_cpu_s * 1000)

    # Sending: the only places that talk to switches

    def _send_round(self, round_: Round) -> None:
        """The probes, then the echo requests (each behind its switch's packet-outs)."""
        for probe in round_.probes:
            dp = self.datapaths.get(probe.dpid)
            if dp is None:
                continue
            ofp, parser = dp.ofproto, dp.ofproto_parser
            dp.send_msg(parser.OFPPacketOut(dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                                            actions=[parser.OFPActionOutput(probe.port)], data=probe.data))
        for dpid in round_.echoes:
            dp = self.datapaths.get(dpid)
            if dp is None:
                continue
            echo = dp.ofproto_parser.OFPEchoRequest(dp, data=b"hclab")
            dp.set_xid(echo)
            self.core.echo_sent(dpid, echo.xid, time.time())
            dp.send_msg(echo)

    def _send_changes(self, changes: list[FlowChanges]) -> None:
        """Every switch's adds before any switch's deletes: a reroute needs only the adds (a
        delete removes a flow toward what became unreachable), so they reach the switches
        first."""
        for deleting in (False, True):
            for change in changes:
                dp = self.datapaths.get(change.dpid)
                if dp is None:
                    continue
                command = dp.ofproto.OFPFC_DELETE_STRICT if deleting else dp.ofproto.OFPFC_ADD
                for entry in change.delete if deleting else change.add:
                    dp.send_msg(self._flow_mod(dp, entry, command))

    @staticmethod
    def _flow_mod(dp, entry: FlowEntry, command: int):
        ofp, parser = dp.ofproto, dp.ofproto_parser
        actions, instructions = [], []
        for action in entry.actions:
            if isinstance(action, Output):
                port = {IN_PORT: ofp.OFPP_IN_PORT, CONTROLLER: ofp.OFPP_CONTROLLER}.get(action.port, action.port)
                actions.append(parser.OFPActionOutput(port, ofp.OFPCML_NO_BUFFER))
            elif isinstance(action, SetField):
                actions.append(parser.OFPActionSetField(**{action.field: action.value}))
            elif isinstance(action, Move):
                actions.append(parser.NXActionRegMove(src_field=action.src, dst_field=action.dst,
                                                      n_bits=FIELD_BITS[action.dst]))
            elif isinstance(action, GotoTable):
                instructions.append(parser.OFPInstructionGotoTable(action.table))
        if actions:
            instructions.insert(0, parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
        return parser.OFPFlowMod(dp, cookie=entry.cookie, cookie_mask=COOKIE_MASK, table_id=entry.table,
                                 command=command, priority=entry.priority, match=parser.OFPMatch(**entry.match),
                                 instructions=instructions, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)

    # REST backend

    def view(self, resource: str) -> dict:
        with self.lock:
            now = time.time()
            return {
                "topology": self.core.view_topology,
                "strategy": self.core.view_strategy,
                "paths": lambda: self.core.view_paths(now),
                "links": lambda: self.core.view_links(now),
                "endpoints": lambda: self.core.view_endpoints(now),
            }[resource]()

    def set_strategy(self, name: str, measured_delays: bool | None = None) -> dict:
        with self.lock:
            self._send_changes(self.core.set_strategy(name, time.time(), measured_delays))
            self.logger.info("strategy %s, measured delays %s", name,
                             "on" if self.core.options.use_measured else "off")
            return self.core.view_strategy()

    def set_endpoints(self, service: str, hosts: list[str]) -> dict:
        with self.lock:
            now = time.time()
            self._send_changes(self.core.set_endpoints(service, hosts, now))
            self.logger.info("service %s served by %s", service, ", ".join(hosts))
            return self.core.view_endpoints(now)
