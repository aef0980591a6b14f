"""Helpers shared by the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from controllers.strategies import UnknownStrategy
from lab.iperf import start_server
from topologies import DEFAULT_TOPOLOGY  # noqa: F401  (the tests import it from here)

ROOT = Path(__file__).resolve().parent.parent
LAB = [sys.executable, "-m", "lab.cli"]


def triangle_topology(name: str, padding_sites: int = 0) -> str:
    """A three-site triangle whose direct sa-sb link (5 ms) is slower than the way over sc
    (1 + 1 ms): hop count and latency choose different paths. `padding_sites` unlinked
    clinics come first (they move the triangle's datapath ids)."""
    padding = "".join(f"  - {{name: p{i}, kind: clinic, lat: 0.0, lon: 0.0}}\n"
                      for i in range(padding_sites))
    return f"""name: {name}
link_classes:
  lan: {{inflation: 1.0, equipment_ms: 0.2}}
sites:
{padding}  - {{name: sa, kind: datacenter, lat: 42.0, lon: -71.0}}
  - {{name: sb, kind: datacenter, lat: 33.0, lon: -112.0}}
  - {{name: sc, kind: region, lat: 39.0, lon: -77.0}}
links:
  - {{ends: [sa, sb], class: lan, delay_ms: 5.0, source: test}}
  - {{ends: [sa, sc], class: lan, delay_ms: 1.0, source: test}}
  - {{ends: [sc, sb], class: lan, delay_ms: 1.0, source: test}}
hosts:
  - {{name: h1, site: sa, role: service}}
  - {{name: h2, site: sb, role: db-primary}}
  - {{name: h3, site: sc, role: db-standby}}
"""


# How long a test waits for the lab to react to a change (a reroute, a priority change): long,
# because a loaded CI machine is slow. Tests check what happens; how fast it happens is
# measured by the developer benchmarks in benchmarks/ (e.g. bench_controller: reroutes).
SETTLE_S = 10.0


def wait_for(condition, timeout: float, what: str, poll: float = 0.05):
    """Poll `condition` until it is true (and return its value); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not within {timeout:g} s"
        time.sleep(poll)
    return result


def run_lab(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the `lab` command as a user would, from the project root."""
    return subprocess.run(LAB + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def iperf3(server, client, port: int, *client_args: str) -> dict:
    """One iperf3 run between two Mininet hosts; the server is started and stopped by PID."""
    srv = start_server(server.popen, server.IP(), port)
    try:
        out = client.cmd(f"iperf3 -c {server.IP()} -p {port} -J " + " ".join(client_args))
        return json.loads(out[out.index("{"):])
    finally:
        srv.kill()
        srv.wait()


# -- namespaces and veth pairs of the delay-line tests ----------------------------------------

def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class ScratchNetwork:
    """Namespaces and veth pairs one test module makes; close() removes every one of them.

    Names left by an earlier, killed run fail the fixture at once rather than being reused.
    """

    def __init__(self, namespaces: tuple[str, ...], devices: tuple[str, ...]) -> None:
        import pytest

        for ns in namespaces:
            if Path(f"/run/netns/{ns}").exists():
                pytest.fail(f"namespace {ns} exists from an earlier run; remove it: ip netns del {ns}")
        for dev in devices:
            if Path(f"/sys/class/net/{dev}").exists():
                pytest.fail(f"interface {dev} exists from an earlier run; remove it: ip link del {dev}")
        self.namespaces: list[str] = []
        self.devices: list[str] = []

    def namespace(self, name: str) -> None:
        """A network namespace with IPv6 off (no stray frames) and loopback up."""
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        for key in ("all", "default"):
            sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def veth(self, ns: str, inner: str, outer: str) -> None:
        """A veth pair: `inner` in namespace `ns`, `outer` in the root one, both up, IPv6 off."""
        sh("ip", "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer)
        self.devices.append(outer)
        sh("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1")
        sh("ip", "link", "set", outer, "up")
        sh("ip", "-n", ns, "link", "set", inner, "up")

    def close(self) -> None:
        for dev in self.devices:
            sh("ip", "link", "del", dev, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


def pin_neighbours(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    """Static ARP entries between two (namespace, device, address) ends: no ARP frames."""
    macs = [json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]["address"]
            for ns, dev, _ in (a, b)]
    for (ns, dev, _), (_, _, peer_ip), mac in ((a, b, macs[1]), (b, a, macs[0])):
        sh("ip", "-n", ns, "neigh", "replace", peer_ip, "lladdr", mac, "dev", dev, "nud", "permanent")


def delay_line_counters(proc, stats_path) -> dict:
    """The delay line's per-link counters, written on demand (SIGUSR1)."""
    from lab import delayline_control as delayline

    before = delayline.read_stats(stats_path)["time"]
    proc.send_signal(signal.SIGUSR1)
    end = time.monotonic() + 2
    while time.monotonic() < end:
        stats = delayline.read_stats(stats_path)
        if stats["time"] != before:
            return stats["links"]
        time.sleep(0.005)
    raise AssertionError("no stats after SIGUSR1")


class FakeRestBackend:
    """What the controller's REST API serves, without a controller: two strategies."""

    def __init__(self):
        self.strategy = "latency"

    def view(self, resource):
        return {"resource": resource, "strategy": self.strategy}

    def set_strategy(self, name, measured_delays=None):
        if name not in ("latency", "hops"):
            raise UnknownStrategy(f"unknown strategy {name!r}")
        self.strategy = name
        return {"name": name, "measured_delays": measured_delays}

    def set_endpoints(self, service, hosts):
        if service != "db" or sorted(hosts) != ["pg1", "pg2"]:
            raise ValueError(f"service {service!r} is not served by {hosts!r}")
        return {"db": hosts}
