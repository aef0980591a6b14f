"""The Mininet Topo built from a topology model: one OVS switch per site, hosts at their site.

Switch ports are numbered as `Topology.switch_ports` says, so the controller, which reads
the same file, knows every port without asking Mininet.
"""

from __future__ import annotations

from pathlib import Path

from mininet.topo import Topo

from topologies import DEFAULT_TOPOLOGY
from topologies.loader import load
from topologies.model import Topology


def tc_link_params(link) -> dict:
    """A model link's emulation parameters under Mininet's TCLink names (`mn --link tc`)."""
    params = {"delay": f"{link.delay_ms:.6g}ms", "max_queue_size": link.queue_packets}
    if link.jitter_ms:
        params["jitter"] = f"{link.jitter_ms:.6g}ms"
    if link.loss_pct:
        params["loss"] = link.loss_pct
    if link.bandwidth_mbit:
        params["bw"] = link.bandwidth_mbit
    return params


class HybridTopo(Topo):
    """Sites as switches, hosts on their site's switch, site-to-site links.

    lab_links: the lab's own network (lab.network), which emulates each link from the model
    and only needs its number; otherwise each link carries TCLink's parameters, for plain
    Mininet (`mn --custom topologies/hybrid.py --link tc`).
    """

    def build(self, topology: Topology | str | Path = DEFAULT_TOPOLOGY, lab_links: bool = False):
        if not isinstance(topology, Topology):
            topology = load(topology)
        self.model = topology
        for site in topology.sites.values():
            self.addSwitch(site.switch, dpid=site.dpid, protocols="OpenFlow13")
        for host in topology.hosts.values():
            self.addHost(host.name, ip=f"{host.ip}/8", mac=host.mac)
            site = topology.sites[host.site]
            self.addLink(host.name, site.switch, port1=0,
                         port2=topology.port_to(host.site, host.name))
        for link in topology.links:
            a, b = topology.sites[link.a], topology.sites[link.b]
            self.addLink(a.switch, b.switch, port1=topology.port_to(link.a, link.b),
                         port2=topology.port_to(link.b, link.a),
                         **({"link_index": link.index} if lab_links else tc_link_params(link)))
