"""Integration tests share one machine: each module starts with no lab running."""

from __future__ import annotations

import os

import pytest

from lab import cleanup
from lab.runstate import load_state, marked_processes, run_dir
from topologies.loader import load
from tests.helpers import DEFAULT_TOPOLOGY


def lab_leftovers() -> dict:
    """Everything of the lab's that could survive a run."""
    return {
        "interfaces": cleanup.lab_interfaces(),
        "bridges": cleanup.lab_bridges([f"hl{s}" for s in load(DEFAULT_TOPOLOGY).sites]),
        "namespaces": cleanup.lab_namespaces(),
        "processes": marked_processes(),
        "mininet_shells": mininet_shells(),
        "state": load_state() is not None,
        "switch_dirs": (run_dir() / "ovs").exists(),
    }


def lab_running() -> bool:
    """A lab owns the machine: its state file names a live process and it has switches."""
    state = load_state()
    return bool(state and state.owner_alive() and marked_processes(state.run_id))


def mininet_shells() -> list[int]:
    """Mininet host shells named after the default topology's hosts."""
    hosts = set(load(DEFAULT_TOPOLOGY).hosts)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        tags = [arg[8:].decode() for arg in cmd if arg.startswith(b"mininet:")]
        if tags and tags[0] in hosts:
            found.append(int(pid))
    return found


NOTHING = {"interfaces": [], "bridges": [], "namespaces": [], "processes": [],
           "mininet_shells": [], "state": False, "switch_dirs": False}


@pytest.fixture(scope="module", autouse=True)
def no_lab_running():
    """Fail early if someone else's lab holds the machine; sweep a crashed one."""
    state = load_state()
    if state and state.owner_alive():
        pytest.fail(f"a lab is already running (pid {state.pid}); these tests need the machine")
    cleanup.cleanup()
    yield


