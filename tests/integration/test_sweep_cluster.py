"""`lab sweep --cluster` on a local Ray cluster (root, OVS, Mininet, PostgreSQL 15): a head
without labs and one worker node offering one "lab" resource, both on 127.0.0.1. The Ray
worker process running the point's lab is killed (SIGKILL) during the run; Ray runs the
task again, the new attempt clears what the killed lab left, and the point completes once."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lab.runstate import load_state, marked_processes
from measurements.sweep import RUN_FILE, plan
from measurements.report.raw import load_raw
from measurements.report.results import compute
from measurements.sweep_ray import LAB_RESOURCE, run_cluster
from measurements.sweepfile import parse_sweep
from tests.helpers import DEFAULT_TOPOLOGY, SETTLE_S, wait_for

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet, pytest.mark.postgres]

ONE_POINT = {"name": "cluster-kill", "topology": str(DEFAULT_TOPOLOGY), "base": {
    "controller.strategies": ["latency"], "scenarios": ["normal"],
    "workload": {"samples": 1, "failure_window_s": 1}, "lab.calibrate": False}}


@pytest.fixture
def ray_cluster(monkeypatch):
    """A head (no "lab") and one worker node with one "lab", bound to 127.0.0.1."""
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # Ray turns 127.0.0.1 in an address into the machine's outward address (for clusters
    # of several machines), where nothing of this test listens: keep the driver on loopback.
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    common = {"node_ip_address": "127.0.0.1", "num_cpus": 1,
              "object_store_memory": 100 * 1024 * 1024}
    # Ray's files (sessions, Unix sockets of at most 107 characters, the current cluster's
    # address) in a short folder of this test's own, not in a /tmp/ray another user may have.
    with tempfile.TemporaryDirectory(prefix="hclab-ray-", dir="/tmp") as tmp:
        monkeypatch.setenv("RAY_TMPDIR", tmp)
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no reports to Ray's servers
        cluster = Cluster(initialize_head=True, head_node_args={
            **common, "include_dashboard": False})
        try:
            cluster.add_node(**common, resources={LAB_RESOURCE: 1})
            yield cluster
        finally:
            cluster.shutdown()


def kill_the_lab_owner(killed: list[int]) -> None:
    """Once a lab is up (its state file names a live owner, not this process), a little
    after, SIGKILL its owner: the Ray worker process running the point."""
    state = wait_for(lambda: (s := load_state()) and s.owner_alive() and s.pid != os.getpid()
                     and s, 120, "a lab started by the Ray worker")
    time.sleep(2)  # into the bring-up
    os.kill(state.pid, signal.SIGKILL)
    killed.append(state.pid)


def test_a_point_whose_worker_is_killed_runs_again_and_is_counted_once(ray_cluster, tmp_path):
    sweep = parse_sweep(ONE_POINT, "cluster-kill.yaml")
    [run] = plan(sweep)
    killed: list[int] = []
    killer = threading.Thread(target=kill_the_lab_owner, args=(killed,), daemon=True)
    killer.start()
    events = []
    t0 = time.monotonic()
    outcome = run_cluster(sweep, tmp_path, ray_cluster.address, events.append)
    seconds = time.monotonic() - t0
    killer.join(SETTLE_S)
    assert killed, "the lab's owner was never killed"
    print(f"\nworker process {killed[0]} killed during the point; "
          f"events: {[(e.kind, e.run.id, e.where) for e in events]}; {seconds:.0f} s")

    assert outcome.failed == {}
    assert outcome.finished == [run.id]
    assert [e.kind for e in events] == ["finished"]  # one result, counted once
    ran = json.loads((tmp_path / "runs" / run.id / RUN_FILE).read_text())
    assert ran["pid"] != killed[0]  # the second attempt, in a new worker process
    assert compute(load_raw(tmp_path / "runs" / run.id))["cells"]  # its raw files are whole
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [run.id]  # no attempt left
    assert not Path(tempfile.gettempdir(), "hclab-sweep", run.id).exists()
    assert marked_processes() == []  # the killed lab's processes were cleared, the new ones stopped
    assert load_state() is None
