"""A running default topology: reachability, TCP, addresses, datapath (root, OVS, Mininet)."""

from __future__ import annotations

import os
import subprocess

import pytest

from controllers.forwarding import make_lab
from measurements.probe import site_rtts
from lab.switchpriority import PRIORITY
from tests.helpers import DEFAULT_TOPOLOGY, SETTLE_S, iperf3, wait_for
from tests.integration.conftest import NOTHING, lab_leftovers
from topologies.loader import load

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet]


@pytest.fixture(scope="module")
def running_lab(no_lab_running):
    with make_lab(load(DEFAULT_TOPOLOGY)) as lab:
        yield lab
    assert lab_leftovers() == NOTHING


def test_every_site_reaches_every_other_without_loss(running_lab):
    pairs = site_rtts(running_lab, samples=3, warmup=1)
    sites = len(running_lab.topology.sites)
    assert len(pairs) == sites * (sites - 1)
    failed = [(p.src, p.dst, p.loss_pct) for p in pairs if p.loss_pct > 0]
    assert failed == []


def test_tcp_transfer_between_hosts(running_lab):
    data = iperf3(running_lab.host("pg1"), running_lab.host("svrgb"), 5301, "-t 1")
    assert data["end"]["sum_received"]["bytes"] >= 1024 * 1024


def test_hosts_get_their_model_addresses(running_lab):
    for host in running_lab.topology.hosts.values():
        node = running_lab.host(host.name)
        assert node.IP() == host.ip
        assert node.MAC() == host.mac


def test_switches_use_the_detected_datapath(running_lab):
    switch = running_lab.net.get("hldc1")
    if running_lab.caps.datapath == "user":
        # One OVS per site, in the site's own namespace (see lab/nsswitch.py).
        kind = subprocess.run(["ovs-vsctl", f"--db={switch.db}", "get", "bridge", "hldc1",
                               "datapath_type"], capture_output=True, text=True).stdout.strip()
        assert kind == "netdev"
        daemons = switch.daemon_pids()
        assert len(daemons) == 2
        assert all(os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/proc/{switch.pid}/ns/net")
                   != os.readlink("/proc/self/ns/net") for pid in daemons)
        # The forwarding (main) thread runs real-time while light: it is idle here, so it
        # is raised within a few watch windows even if an earlier test made it busy.
        vswitchd, ovsdb = daemons
        wait_for(lambda: os.sched_getscheduler(vswitchd) == os.SCHED_FIFO, SETTLE_S,
                 "the switch's main thread real-time")
        assert os.sched_getparam(vswitchd).sched_priority == PRIORITY
        assert os.sched_getscheduler(ovsdb) == os.SCHED_OTHER
        # Its allocator is tcmalloc (lab/nsswitch.py; setup.sh installs it).
        assert "libtcmalloc_minimal" in open(f"/proc/{vswitchd}/maps").read()
    else:
        kind = subprocess.run(["ovs-vsctl", "get", "bridge", "hldc1", "datapath_type"],
                              capture_output=True, text=True).stdout.strip()
        assert kind in ('""', "system")


def test_the_health_watch_reads_the_running_emulator(running_lab):
    # lab/health.py on the real lab: the delay line's frames, the controller's echo, the
    # switch daemons' priority and the CPU are all read (whether they kept up depends on
    # this machine's load; the limits themselves are unit-tested).
    from lab.health import HealthWatch

    watch = HealthWatch(running_lab)
    watch.start()
    try:
        start = watch.mark()
        pairs = site_rtts(running_lab, samples=3, warmup=1)
        block = watch.block(start, watch.mark())
    finally:
        watch.stop()
    if running_lab.backend == "userspace":
        # Every probe and answer crosses at least one emulated link.
        assert block["frames"] >= 2 * sum(len(p.samples) for p in pairs), block
        assert block["late_pct"] is not None and block["kernel_dropped"] is not None
    if running_lab.caps.datapath == "user":
        assert block["switch_demotions"] is not None
    assert block["control_rtt_ms"] is not None and block["control_rtt_ms"] > 0
    assert block["run_queue"]["max"] >= 1 and block["seconds"] > 0
    assert block["kept_up"] == (block["reasons"] == [])
