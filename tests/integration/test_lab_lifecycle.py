"""Teardown in every way a lab run can end, and `lab cleanup` (root, OVS, Mininet)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from lab.capabilities import detect
from controllers.forwarding import make_lab
from tests.helpers import DEFAULT_TOPOLOGY, LAB, ROOT, run_lab
from tests.integration.conftest import NOTHING, lab_leftovers, lab_running
from topologies.loader import load

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet]


def test_exception_inside_the_lab_tears_it_down():
    with pytest.raises(RuntimeError, match="boom"):
        with make_lab(load(DEFAULT_TOPOLOGY)):
            assert lab_running()
            raise RuntimeError("boom")
    assert lab_leftovers() == NOTHING


def _start_lab_up() -> subprocess.Popen:
    proc = subprocess.Popen(LAB + ["up"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "running;" in line:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"lab up failed: {proc.stderr.read()}")
    proc.kill()
    raise AssertionError("lab up did not come up in 60 s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_tears_the_lab_down(signum):
    proc = _start_lab_up()
    try:
        assert lab_running()
    finally:
        proc.send_signal(signum)
        status = proc.wait(timeout=60)
    assert status in (0, 130)
    assert lab_leftovers() == NOTHING


def test_cleanup_after_sigkill_removes_only_the_labs_things():
    # Things that are not the lab's, named to look close to it.
    subprocess.run(["ip", "link", "add", "hlusera", "type", "veth", "peer", "name", "hluserb"],
                   check=True)
    subprocess.run(["ovs-vsctl", "add-br", "hluser", "--", "set", "bridge", "hluser",
                    "datapath_type=netdev"], check=True)
    try:
        proc = _start_lab_up()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert lab_leftovers() != NOTHING  # the kill really left things behind
        result = run_lab("cleanup")
        assert result.returncode == 0, result.stderr
        assert "removed" in result.stdout
        assert lab_leftovers() == NOTHING
        assert os.path.exists("/sys/class/net/hlusera")
        assert "hluser" in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True,
                                          text=True).stdout.split()
    finally:
        subprocess.run(["ip", "link", "del", "hlusera"], capture_output=True)
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", "hluser"], capture_output=True)


def test_cleanup_refuses_while_a_lab_runs():
    proc = _start_lab_up()
    try:
        result = run_lab("cleanup")
        assert result.returncode == 1
        assert f"a lab is running (pid {proc.pid})" in result.stderr
        assert lab_running()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert lab_leftovers() == NOTHING


def test_bad_topology_builds_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_TOPOLOGY.read_text().replace("name: pg1,", "name: pg1;x,"))
    result = run_lab("up", "--topology", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}: hosts[0].name:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert lab_leftovers() == NOTHING


def test_main_job_measures_every_pair(tmp_path):
    result = run_lab("run", "--samples", "3", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "site-rtt.json").read_text())
    assert report["reachable_pairs"] == report["total_pairs"] == 19 * 18
    assert all(1 <= p["n"] <= 3 and p["p50_ms"] > 0 for p in report["pairs"])
    # All sources probe at once; a rare lost reply is reported, not hidden.
    assert sum(p["sent"] - p["n"] for p in report["pairs"]) <= 0.02 * 3 * len(report["pairs"])
    assert lab_leftovers() == NOTHING


def test_doctor_reports_what_the_lab_will_use():
    result = run_lab("doctor", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Open vSwitch running" in result.stdout
    if detect().datapath == "user":
        # setup.sh installs the switches' allocator (lab/nsswitch.py).
        assert "libtcmalloc_minimal" in result.stdout
