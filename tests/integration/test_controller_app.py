"""The os-ken app on real Open vSwitch bridges, with network namespaces as hosts.

Builds its own three-switch triangle (bridges `hct*`, namespaces `hct-*`, userspace
datapath) before the lab's bring-up exists, and removes all of it afterwards. The controller
routes on configured delays (the default); measured ones are only reported.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

import pytest

from controllers.launcher import start_controller
from tests.helpers import SETTLE_S, triangle_topology, wait_for
from topologies.loader import load

pytestmark = [pytest.mark.root, pytest.mark.ovs]

# The lab numbers datapath ids by site position; 40 unlinked padding sites keep this test's
# ids clear of a lab's bridges running on the same Open vSwitch.
PADDING = 40
TOPOLOGY = triangle_topology("hcttest", padding_sites=PADDING)


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_row(ctl, a: str, b: str) -> dict:
    """The controller's view of link a-b (GET /links)."""
    return next(k for k in ctl.get("links")["links"] if {k["a"], k["b"]} == {a, b})


def require():
    missing = [c for c in ("ovs-vsctl", "ovs-ofctl", "ip", "ethtool", "tc", "ping") if not shutil.which(c)]
    if missing:
        pytest.skip(f"missing programs: {', '.join(missing)}")
    if run("ovs-vsctl", "show", check=False).returncode != 0:
        pytest.skip("Open vSwitch is not running (ovs-ctl start --system-id=random)")


class Triangle:
    """Bridges hct<site>, veths hct<site>-eth<N>, namespaces hct-<host>; remembers what it made."""

    def __init__(self, topo, ofp_port: int):
        self.topo = topo
        self.bridges: list[str] = []
        self.veths: list[str] = []
        self.namespaces: list[str] = []
        self.ofp_port = ofp_port

    def bridge(self, site: str) -> str:
        return "hct" + site

    def iface(self, site: str, port: int) -> str:
        return f"hct{site}-eth{port}"

    def veth(self, a: str, b: str) -> None:
        run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self.veths.append(a)
        for name in (a, b):
            run("ethtool", "-K", name, "tx", "off")

    def build(self) -> None:
        sites = ("sa", "sb", "sc")
        for site in sites:
            br = self.bridge(site)
            run("ovs-vsctl", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                "protocols=OpenFlow13", "fail_mode=secure",
                f"other-config:datapath-id={self.topo.sites[site].dpid}",
                "other-config:disable-in-band=true")
            self.bridges.append(br)
        for site in sites:
            for port, peer in self.topo.switch_ports(site).items():
                name = self.iface(site, port)
                if peer in self.topo.hosts:
                    host = self.topo.hosts[peer]
                    ns = f"hct-{peer}"
                    run("ip", "netns", "add", ns)
                    self.namespaces.append(ns)
                    self.veth(name, f"hct{peer}-0")
                    run("ip", "link", "set", f"hct{peer}-0", "netns", ns)
                    for cmd in (("ip", "link", "set", f"hct{peer}-0", "name", "eth0"),
                                ("ip", "link", "set", "eth0", "address", host.mac),
                                ("ip", "addr", "add", f"{host.ip}/8", "dev", "eth0"),
                                ("ip", "link", "set", "eth0", "up"), ("ip", "link", "set", "lo", "up"),
                                ("ethtool", "-K", "eth0", "tx", "off")):
                        run("ip", "netns", "exec", ns, *cmd)
                elif site < peer:
                    self.veth(name, self.iface(peer, self.topo.port_to(peer, site)))
            for port in self.topo.switch_ports(site):
                name = self.iface(site, port)
                run("ip", "link", "set", name, "up")
                run("ovs-vsctl", "add-port", self.bridge(site), name, "--", "set", "interface", name,
                    f"ofport_request={port}")
        self.veth("hctsink0", "hctsink1")
        run("ip", "link", "set", "hctsink0", "up")
        run("ip", "link", "set", "hctsink1", "up")
        for br in self.bridges:
            run("ovs-vsctl", "set-controller", br, f"tcp:127.0.0.1:{self.ofp_port}")

    def teardown(self) -> None:
        for br in self.bridges:
            run("ovs-vsctl", "--if-exists", "del-br", br, check=False)
        for name in self.veths:
            run("ip", "link", "del", name, check=False)
        for ns in self.namespaces:
            run("ip", "netns", "del", ns, check=False)

    def ping(self, src: str, dst_ip: str, count: int = 5) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", f"hct-{src}", "ping", "-c", str(count), "-i", "0.2", "-W", "2",
                   dst_ip, check=False)

    def out_port(self, site: str, host: str) -> str:
        """The output action of `site`'s forwarding flow for `host` (empty if none)."""
        flows = run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.bridge(site),
                    f"table=1,dl_dst={self.topo.hosts[host].mac}").stdout
        for line in flows.splitlines():
            if "actions=" in line:
                return line.split("actions=")[1].strip()
        return ""

    def wait_out_port(self, site: str, host: str, want: str, timeout: float) -> float:
        """Wait until `site` forwards to `host` out of `want`; returns how long that took."""
        start = time.monotonic()
        wait_for(lambda: self.out_port(site, host) == want, timeout, f"{site} -> {host} {want}", poll=0.01)
        return time.monotonic() - start


@pytest.fixture(scope="module", autouse=True)
def no_lab_running():
    """Replaces the package's check: this module builds its own `hct` network beside any
    running lab and must not sweep the lab's resources (which that check would do)."""
    yield


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require()
    path = tmp_path_factory.mktemp("hct") / "triangle.yaml"
    path.write_text(TOPOLOGY)
    topo = load(path)
    net = Triangle(topo, free_port())
    ctl = None
    try:
        net.build()
        ctl = start_controller(path, "latency", ofp_port=net.ofp_port, rest_port=free_port(),
                               log_path=path.parent / "controller.log")
        deadline = time.monotonic() + 15
        while {s["name"] for s in ctl.get("topology")["sites"] if s["connected"]} != {"sa", "sb", "sc"}:
            assert time.monotonic() < deadline, "switches did not connect"
            time.sleep(0.1)
        yield net, ctl
    finally:
        if ctl is not None:
            ctl.stop()
        net.teardown()


def test_hosts_ping_through_installed_flows(lab):
    net, ctl = lab
    assert net.ping("h1", "10.42.0.1").returncode == 0, net.ping("h1", "10.42.0.1").stdout
    assert net.ping("h1", "10.43.0.1").returncode == 0
    assert net.ping("h2", "10.43.0.1").returncode == 0


SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 5432))
srv.listen()
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    conn.sendall(sys.argv[1].encode())
    conn.close()
"""
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 5432), timeout=3)
print(s.getpeername()[0], s.recv(64).decode())
"""


def tcp_servers(hosts):
    """A name-telling TCP server on port 5432 in each host's namespace; stop them with .kill()."""
    procs = []
    for host in hosts:
        proc = subprocess.Popen(["ip", "netns", "exec", f"hct-{host}", sys.executable, "-c", SERVER, host],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        procs.append(proc)
    return procs


def tcp_ask(src: str, dst_ip: str) -> str:
    """Connect from `src` to dst_ip:5432: '<peer address> <server name>'."""
    return run("ip", "netns", "exec", f"hct-{src}", sys.executable, "-c", CLIENT, dst_ip).stdout.strip()


def test_service_address_is_rewritten_to_the_chosen_endpoint(lab):
    net, ctl = lab
    servers = tcp_servers(["h2", "h3"])
    try:
        assert ctl.get("endpoints")["services"][0]["choices"]["h1"] == "h3"  # the nearer standby
        assert tcp_ask("h1", "10.0.0.10") == "10.0.0.10 h3"
        ctl.set_strategy("primary-standby")
        assert ctl.get("endpoints")["services"][0]["choices"]["h1"] == "h2"
        assert tcp_ask("h1", "10.0.0.10") == "10.0.0.10 h2"
    finally:
        ctl.set_strategy("latency")
        for proc in servers:
            proc.kill()
            proc.wait()


def test_only_the_service_port_is_rewritten(lab):
    """ICMP between a consumer and its chosen endpoint keeps its real addresses (it used to
    come back from the VIP), and the VIP answers nothing but its port."""
    net, ctl = lab
    direct = net.ping("h1", "10.43.0.1", count=3)
    assert direct.returncode == 0 and "from 10.43.0.1" in direct.stdout, direct.stdout
    assert "10.0.0.10" not in direct.stdout
    assert net.ping("h1", "10.0.0.10", count=2).returncode != 0


def test_put_strategy_changes_flows(lab):
    net, ctl = lab
    to_sc, to_sb = f"output:{net.topo.port_to('sa', 'sc')}", f"output:{net.topo.port_to('sa', 'sb')}"
    assert net.out_port("sa", "h2") == to_sc
    paths = {(p["src"], p["dst"]): p["path"] for p in ctl.get("paths")["paths"]}
    assert paths[("h1", "h2")] == ["sa", "sc", "sb"]
    try:
        assert ctl.set_strategy("hops")["name"] == "hops"
        net.wait_out_port("sa", "h2", to_sb, timeout=SETTLE_S)
        assert net.ping("h1", "10.42.0.1").returncode == 0
    finally:
        ctl.set_strategy("latency")
    net.wait_out_port("sa", "h2", to_sc, timeout=SETTLE_S)


def test_measured_delays_are_reported(lab):
    net, ctl = lab
    links = wait_for(lambda: (v := ctl.get("links")) and all(k["measured_ms"] is not None for k in v["links"])
                     and v, SETTLE_S, "a measured delay on every link")
    print("measured:", {f"{k['a']}-{k['b']}": k["measured_ms"] for k in links["links"]}, "control rtt:", links["control_rtt_ms"])
    assert all(0 <= k["measured_ms"] < 100 for k in links["links"]), links


def test_port_down_reroutes(lab):
    net, ctl = lab
    to_sc, to_sb = f"output:{net.topo.port_to('sa', 'sc')}", f"output:{net.topo.port_to('sa', 'sb')}"
    down = net.iface("sc", net.topo.port_to("sc", "sb"))
    run("ip", "link", "set", down, "down")
    try:
        took = net.wait_out_port("sa", "h2", to_sb, timeout=SETTLE_S)
        print(f"reroute after port down: {took * 1000:.0f} ms (including ovs-ofctl polling)")
        assert "port" in link_row(ctl, "sc", "sb")["down_by"]
        assert net.ping("h1", "10.42.0.1").returncode == 0
    finally:
        run("ip", "link", "set", down, "up")
    net.wait_out_port("sa", "h2", to_sc, timeout=SETTLE_S)


def test_silent_failure_reroutes(lab):
    """Both directions of sa-sc stop carrying frames, carrier stays up: only probes notice."""
    net, ctl = lab
    to_sc, to_sb = f"output:{net.topo.port_to('sa', 'sc')}", f"output:{net.topo.port_to('sa', 'sb')}"
    ends = [net.iface("sa", net.topo.port_to("sa", "sc")), net.iface("sc", net.topo.port_to("sc", "sa"))]
    try:
        for dev in ends:
            run("tc", "qdisc", "add", "dev", dev, "clsact")
            run("tc", "filter", "add", "dev", dev, "egress", "u32", "match", "u32", "0", "0",
                "action", "mirred", "egress", "redirect", "dev", "hctsink0")
        took = net.wait_out_port("sa", "h2", to_sb, timeout=SETTLE_S)
        links = ctl.get("links")
        print(f"reroute after silent failure: {took * 1000:.0f} ms "
              f"(probe period {links['probe_period_s'] * 1000:.0f} ms)")
        assert link_row(ctl, "sa", "sc")["down_by"] == ["probe"]
        assert net.ping("h1", "10.42.0.1").returncode == 0
    finally:
        for dev in ends:
            run("tc", "qdisc", "del", "dev", dev, "clsact", check=False)
    net.wait_out_port("sa", "h2", to_sc, timeout=SETTLE_S)


def test_rendered_static_flows_are_accepted_by_ovs_ofctl():
    """Every switch's static flow set of the default topology parses and installs."""
    require()
    from controllers.flows import render_ofctl
    from controllers.planner import static_flows
    from topologies import DEFAULT_TOPOLOGY

    bridge = "hctofctl"
    run("ovs-vsctl", "add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
        "protocols=OpenFlow13", "fail_mode=secure")
    try:
        for switch, flows in static_flows(DEFAULT_TOPOLOGY, "geo").items():
            run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", bridge)
            text = "\n".join(render_ofctl(f) for f in flows) + "\n"
            done = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", bridge, "-"], input=text,
                                  capture_output=True, text=True)
            assert done.returncode == 0, f"{switch}: {done.stderr}"
            dumped = run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge).stdout
            assert len([l for l in dumped.splitlines() if "actions=" in l]) == len(flows)
    finally:
        run("ovs-vsctl", "--if-exists", "del-br", bridge, check=False)
