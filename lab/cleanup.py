"""Removing what a lab run owns: after a normal stop, and after a run that was killed.

Only the lab's own resources are touched, found by its markers: processes whose
environment carries HCLAB_RUN, OVS bridges whose external_ids carry hclab-run (or that the
run's state file names), root-namespace interfaces whose names follow the lab's patterns,
named namespaces starting with "hclab-", and the run directory's ovs/ and pg/ folders (the
per-switch OVS daemons' databases, PostgreSQL's data). Never `mn -c`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from lab.capabilities import run
from lab.runstate import (BRIDGE_MARKER, RunState, descendants, load_state, marked_processes,
                          pid_alive, process_start, remove_state, run_dir)

# Switch ports ("hl<site>-eth<N>") and the delay line's veth ends ("hld<N>a"/"hld<N>b").
LAB_INTERFACE = re.compile(r"^hl[a-z][a-z0-9]{0,6}-eth[0-9]{1,2}$|^hld[0-9]{1,5}[ab]$")
LAB_BRIDGE = re.compile(r"^hl[a-z][a-z0-9]{0,6}$")
LAB_NETNS_PREFIX = "hclab-"


@dataclass
class CleanupReport:
    processes: list[int] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.processes or self.bridges or self.interfaces or self.namespaces)

    def summary(self) -> str:
        if self.empty():
            return "nothing of the lab's was left"
        return (f"removed {len(self.processes)} processes, {len(self.bridges)} bridges, "
                f"{len(self.interfaces)} interfaces, {len(self.namespaces)} namespaces")


def lab_bridges(named: list[str] = ()) -> list[str]:
    """Bridges carrying the lab's external id, plus lab-pattern bridges the state names."""
    result = run(["ovs-vsctl", "--timeout=5", "--format=csv", "--data=bare", "--no-headings",
                  "--columns=name,external_ids", "list", "bridge"])
    if result.returncode != 0:
        return []
    found = []
    for line in result.stdout.splitlines():
        name, _, ids = line.partition(",")
        if LAB_BRIDGE.match(name) and (f"{BRIDGE_MARKER}=" in ids or name in named):
            found.append(name)
    return found


def lab_interfaces() -> list[str]:
    """Root-namespace interfaces named by the lab's patterns."""
    result = run(["ip", "-o", "link", "show"])
    names = []
    for line in result.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if LAB_INTERFACE.match(name):
                names.append(name)
    return names


def lab_namespaces() -> list[str]:
    result = run(["ip", "netns", "list"])
    return [line.split()[0] for line in result.stdout.splitlines()
            if line.split() and line.split()[0].startswith(LAB_NETNS_PREFIX)]


def kill_processes(pids: list[int], grace: float = 1.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever is still there after `grace` seconds.

    Each process is held by a pidfd from the moment it is checked to be the one that was
    found (the same start time), and signalled through it: a pid reused meanwhile by another
    process is never signalled.
    """
    starts = {pid: process_start(pid) for pid in pids}
    held = {}
    for pid, start in starts.items():
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # gone already
            continue
        if start is None or process_start(pid) != start:
            os.close(fd)
            continue
        held[pid] = fd
    try:
        for fd in held.values():
            _pidfd_signal(fd, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in held):
            time.sleep(0.02)
        for fd in held.values():
            _pidfd_signal(fd, signal.SIGKILL)
    finally:
        for fd in held.values():
            os.close(fd)
    return list(held)


def _pidfd_signal(fd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:  # it exited: the pidfd still names it, and nothing else
        pass


def delete_interfaces(names: list[str]) -> None:
    if names:
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(
            f"link del dev {n}\n" for n in names), capture_output=True, text=True, timeout=30)


def remove_run(run_id: str | None, named_switches: list[str] = ()) -> CleanupReport:
    """Remove one run's resources (run_id) or those of any lab run (None)."""
    report = CleanupReport()
    marked = marked_processes(run_id)
    # PostgreSQL rewrites its children's environment (their process titles), so the marker
    # survives only on the postmaster: its descendants are the lab's too.
    report.processes = kill_processes(sorted({p for pid in marked for p in [pid, *descendants(pid)]}))
    report.bridges = lab_bridges(list(named_switches))
    if report.bridges:
        run(["ovs-vsctl", "--timeout=20"] + [arg for b in report.bridges
                                              for arg in ("--", "--if-exists", "del-br", b)],
            timeout=30)
    # A bridge's own interface can outlive the bridge for a moment (OVS removes it
    # asynchronously), so it is deleted here too, and the sweep waits until all are gone.
    bridge_names = set(report.bridges) | {b for b in named_switches if LAB_BRIDGE.match(b)}
    leftovers = lab_interfaces() + sorted(_existing_interfaces(bridge_names))
    delete_interfaces(leftovers)
    report.interfaces = leftovers
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (lab_interfaces() or _existing_interfaces(bridge_names)):
        time.sleep(0.05)
    for ns in lab_namespaces():
        run(["ip", "netns", "del", ns])
        report.namespaces.append(ns)
    # Databases, sockets and logs of the per-switch Open vSwitch daemons; PostgreSQL's data
    # directories, and the shared memory a killed postmaster leaves behind.
    shutil.rmtree(run_dir() / "ovs", ignore_errors=True)
    remove_postgres_shared_memory(run_dir() / "pg")
    shutil.rmtree(run_dir() / "pg", ignore_errors=True)
    (run_dir() / "openflow.sock").unlink(missing_ok=True)
    return report


def remove_postgres_shared_memory(pg_root) -> None:
    """`ipcrm` the System V segment each postmaster.pid names (line 7: key, id), if unused."""
    for pidfile in sorted(pg_root.glob("*/postmaster.pid")):
        lines = pidfile.read_text(errors="replace").splitlines()
        if len(lines) < 7 or len(lines[6].split()) != 2:
            continue
        shm_id = lines[6].split()[1]
        info = run(["ipcs", "-m", "-i", shm_id]).stdout
        if "nattch=0" in info.replace(" ", ""):
            run(["ipcrm", "-m", shm_id])


def _existing_interfaces(names) -> set[str]:
    return {n for n in names if os.path.exists(f"/sys/class/net/{n}")}


class LabRunning(RuntimeError):
    """Cleanup refused: a live lab owns the resources."""


def cleanup() -> CleanupReport:
    """`lab cleanup`: repair what a killed run left; refuse while a lab is running."""
    state: RunState | None = load_state()
    if state and state.pid != os.getpid() and state.owner_alive():
        raise LabRunning(f"a lab is running (pid {state.pid}); stop it with Ctrl-C or "
                         f"'kill {state.pid}', it tears itself down")
    report = remove_run(None, state.switches if state else [])
    remove_state()
    return report

