"""The netem backend on a real kernel, with the switches on the OVS kernel datapath.

A line of three sites (sa -5 ms- sb -1.5 ms- sc, one-way) brought up by the lab with
`links="netem"` and statically installed flows (no controller): the switches are system-OVS
bridges on the kernel datapath, every link end carries a netem qdisc with its delay, and
the round trip between hosts is twice the sum of the one-way delays, judged by the median
after a warm-up within the TCG bias (conftest: -0.2 .. +2.5 ms). TCP goes through (checksum
offload stays on with the kernel datapath).
"""

from __future__ import annotations

import statistics
import subprocess

import pytest

from lab.capabilities import run
from lab.icmpprobe import measure
from controllers.forwarding import make_lab
from lab.network import LabSwitch
from tests.vm.conftest import BIAS_HIGH_MS, BIAS_LOW_MS, rtt_ok
from topologies.loader import load

pytestmark = [pytest.mark.vm, pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet]

TOPOLOGY = """
name: vmline
link_classes:
  lan: {inflation: 1.0, equipment_ms: 0.2}
sites:
  - {name: sa, kind: datacenter, lat: 42.0, lon: -71.0}
  - {name: sb, kind: datacenter, lat: 33.0, lon: -112.0}
  - {name: sc, kind: region, lat: 39.0, lon: -77.0}
links:
  - {ends: [sa, sb], class: lan, delay_ms: 5.0, source: test}
  - {ends: [sb, sc], class: lan, delay_ms: 1.5, source: test, bandwidth_mbit: 100}
hosts:
  - {name: h1, site: sa, role: service}
  - {name: h2, site: sb, role: db-primary}
  - {name: h3, site: sc, role: db-standby}
"""
# expected round trips: 2 x the one-way delays along the line
EXPECTED = {"h1>h2": 10.0, "h2>h3": 3.0, "h1>h3": 13.0}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    path = tmp_path_factory.mktemp("topo") / "line.yaml"
    path.write_text(TOPOLOGY)
    with make_lab(load(path), controller="static", links="netem", log=lambda *_: None) as running:
        yield running
    bridges = run(["ovs-vsctl", "list-br"]).stdout.split()
    assert not {"hlsa", "hlsb", "hlsc"} & set(bridges), f"bridges left behind: {bridges}"


def test_backend_and_datapath(lab):
    assert lab.backend == "netem"
    assert lab.caps.datapath == "kernel"
    assert all(isinstance(s, LabSwitch) for s in lab.net.switches)
    for switch in ("hlsa", "hlsb", "hlsc"):
        dp_type = run(["ovs-vsctl", "get", "bridge", switch, "datapath_type"], check=True).stdout.strip()
        assert dp_type in ('""', "system"), f"{switch}: datapath_type {dp_type}"
    dpctl = run(["ovs-dpctl", "show"], check=True).stdout
    assert "system@ovs-system" in dpctl
    for port in ("hlsa-eth2", "hlsb-eth2", "hlsb-eth3", "hlsc-eth2"):
        assert f" {port}" in dpctl, dpctl


def test_netem_qdiscs_carry_the_delays(lab):
    qdiscs = {intf: run(["tc", "qdisc", "show", "dev", intf], check=True).stdout
              for intf in ("hlsa-eth2", "hlsb-eth2", "hlsb-eth3", "hlsc-eth2")}
    for intf in ("hlsa-eth2", "hlsb-eth2"):
        assert "netem" in qdiscs[intf] and "delay 5ms" in qdiscs[intf], qdiscs[intf]
    for intf in ("hlsb-eth3", "hlsc-eth2"):
        assert "htb" in qdiscs[intf], qdiscs[intf]  # the 100 Mbit/s rate, netem under it
        assert "netem" in qdiscs[intf] and "delay 1.5ms" in qdiscs[intf], qdiscs[intf]


def test_rtt_is_twice_the_delay(lab):
    pairs = [(key, *key.split(">")) for key in EXPECTED]
    rtts = measure(lab, pairs, count=40, warmup=5, gap_ms=20)
    report = {}
    for key, expected in EXPECTED.items():
        samples, sent = rtts[key]
        assert len(samples) >= 0.9 * sent, f"{key}: {len(samples)}/{sent} answered"
        report[key] = (expected, round(statistics.median(samples), 3),
                       round(max(samples), 3))
    print(f"RTT (expected, median, max) ms, band -{BIAS_LOW_MS}..+{BIAS_HIGH_MS}: {report}")
    for key, (expected, median, _) in report.items():
        assert rtt_ok(median, expected), f"{key}: median {median} ms, expected {expected} ms"


def test_tcp_through_the_kernel_datapath(lab):
    h1, h3 = lab.host("h1"), lab.host("h3")
    server = h3.popen(["iperf3", "-s", "-1", "-p", "5201"], stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT)
    try:
        out = ""
        for _ in range(20):  # the server needs a moment to listen
            out = h1.cmd(f"iperf3 -c {h3.IP()} -p 5201 -t 2 -f m")
            if "receiver" in out:
                break
            h1.cmd("sleep 0.2")
        assert "receiver" in out, out
        mbit = float([line for line in out.splitlines() if "receiver" in line][0].split()[6])
        print(f"TCP h1 -> h3 through 2 netem links (one limited to 100 Mbit/s): {mbit} Mbit/s")
        assert 5 < mbit <= 110
    finally:
        server.kill()
        server.wait(timeout=5)


def test_a_schedule_point_changes_netem_in_place(lab):
    """`tc qdisc change`: the new delay (and a trace's jitter) in force on both ends, the
    round trip following it, then the configured figures back."""
    from topologies.model import TracePoint

    lab.emulation.set_points({1: TracePoint(0.0, 15.0, 0.0, 0.0)})
    try:
        for intf in ("hlsa-eth2", "hlsb-eth2"):
            qdisc = run(["tc", "qdisc", "show", "dev", intf], check=True).stdout
            assert "delay 15ms" in qdisc, qdisc
        samples, _ = measure(lab, [("h1>h2", "h1", "h2")], count=30, warmup=5, gap_ms=20)["h1>h2"]
        assert rtt_ok(statistics.median(samples), 30.0), statistics.median(samples)
    finally:
        lab.emulation.set_points({1: TracePoint(0.0, 5.0, 0.0, 0.0)})
    assert "delay 5ms" in run(["tc", "qdisc", "show", "dev", "hlsa-eth2"], check=True).stdout
