"""The lab's os-ken controller driving switches on the OVS kernel datapath, links on netem.

A triangle (sa-sb 5 ms direct, sa-sc-sb 1 + 1 ms) brought up with the builtin controller
and the default `latency` strategy, links chosen by `auto` (netem on this kernel): every
switch connects to the controller (OpenFlow over TCP, as Mininet's RemoteController),
every host reaches every other, the controller's flows are in the kernel datapath's
switches, and sa -> sb takes the 2 ms detour through sc rather than the 5 ms direct link
(RTT about 4 ms, not 10 ms, within the TCG bias).
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
import urllib.request

import pytest

from lab.capabilities import run
from lab.icmpprobe import measure
from controllers.forwarding import make_lab
from tests.helpers import triangle_topology
from tests.vm.conftest import rtt_ok
from topologies.loader import load

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet]

TOPOLOGY = triangle_topology("vmtri")
REST_PORT = 8089


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("topo") / "triangle.yaml"
    path.write_text(TOPOLOGY)
    with make_lab(load(path), controller="builtin", links="auto", rest_port=REST_PORT,
             log=lambda *_: None) as running:
        yield running
    bridges = run(["ovs-vsctl", "list-br"]).stdout.split()
    assert not {"hlsa", "hlsb", "hlsc"} & set(bridges), f"bridges left behind: {bridges}"


def test_kernel_datapath_and_netem_chosen(lab):
    assert lab.backend == "netem"
    assert lab.caps.datapath == "kernel"
    assert lab.controller is not None


def test_switches_connected_to_the_controller(lab):
    # the controller's own view (GET /v1/topology)
    sites = lab.controller.get("topology")["sites"]
    assert {s["name"]: s["connected"] for s in sites} == {"sa": True, "sb": True, "sc": True}
    # and OVS's: each bridge's active (tcp:) controller connection; OVS refreshes the
    # is_connected column every few seconds, so wait for it
    deadline = time.monotonic() + 20
    while True:
        rows = run(["ovs-vsctl", "--format=csv", "--data=bare", "--no-headings",
                    "--columns=target,is_connected", "list", "controller"], check=True).stdout
        active = [line.split(",") for line in rows.splitlines() if line.startswith("tcp:")]
        if len(active) == 3 and all(ok == "true" for _, ok in active) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(active) == 3 and all(ok == "true" for _, ok in active), rows


def test_every_host_reaches_every_other(lab):
    failures = []
    for a, b in itertools.permutations(("h1", "h2", "h3"), 2):
        out = lab.host(a).cmd(f"ping -c 2 -W 3 {lab.host(b).IP()}")
        if " 0% packet loss" not in out:
            failures.append((a, b, out.strip().splitlines()[-2:]))
    assert not failures, failures


def test_flows_in_the_kernel_datapath_switches(lab):
    for switch in ("hlsa", "hlsb", "hlsc"):
        flows = run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch], check=True).stdout
        assert "dl_dst=" in flows, f"{switch}: no forwarding entries\n{flows}"
    datapath_flows = run(["ovs-dpctl", "dump-flows"], check=True).stdout
    assert datapath_flows.strip(), "no flows in the kernel datapath after the pings"


def test_latency_strategy_takes_the_detour(lab):
    with urllib.request.urlopen(f"http://127.0.0.1:{REST_PORT}/v1/strategy", timeout=10) as resp:
        print("strategy:", json.load(resp))
    samples, sent = measure(lab, [("ab", "h1", "h2")], count=40, warmup=5, gap_ms=20)["ab"]
    assert len(samples) >= 0.9 * sent
    median = statistics.median(samples)
    print(f"h1 -> h2 RTT median {median:.3f} ms (detour sa-sc-sb: 4 ms; direct: 10 ms)")
    assert rtt_ok(median, 4.0), median
