"""What this machine supports, probed rather than configured.

The lab runs on kernels with and without sch_netem and the openvswitch module (see
DESIGN.md, decisions 1 and 2), so it detects both and picks its backends from what it finds.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def run(cmd: list[str], timeout: float = 10, check: bool = False,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command quietly, capturing its output as text."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check,
                          input=input)


def netem_available() -> bool:
    """True when a netem qdisc can be added (tried in a scratch namespace, then removed)."""
    if not shutil.which("tc") or not shutil.which("ip"):
        return False
    ns = f"hclab-probe-{os.getpid()}"
    if run(["ip", "netns", "add", ns]).returncode != 0:
        return False
    try:
        run(["ip", "-n", ns, "link", "add", "hlprobe0", "type", "dummy"])
        result = run(["tc", "-n", ns, "qdisc", "add", "dev", "hlprobe0", "root", "netem",
                      "delay", "1ms"])
        return result.returncode == 0
    finally:
        run(["ip", "netns", "del", ns])


def ovs_kernel_datapath() -> bool:
    """True when the openvswitch kernel module is loaded or can be loaded."""
    if Path("/sys/module/openvswitch").exists():
        return True
    if shutil.which("modprobe"):
        run(["modprobe", "-q", "openvswitch"])
    return Path("/sys/module/openvswitch").exists()


def ovs_running() -> bool:
    return bool(shutil.which("ovs-vsctl")) and run(["ovs-vsctl", "--timeout=2", "show"]).returncode == 0


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def postgres_version() -> str | None:
    binary = PG_BIN / "postgres"
    if not binary.exists():
        return None
    return run([str(binary), "--version"]).stdout.split()[2]  # postgres (PostgreSQL) 15.x ...


def mininet_version() -> str | None:
    try:
        from mininet.net import VERSION
    except ImportError:
        return None
    return VERSION


def ovs_version() -> str | None:
    if not shutil.which("ovs-vsctl"):
        return None
    out = run(["ovs-vsctl", "--version"]).stdout.split()
    return out[3] if len(out) > 3 else None


@dataclass
class Capabilities:
    netem: bool
    ovs_kernel: bool
    ovs_running: bool
    ovs: str | None
    mininet: str | None
    postgres: str | None
    os_ken: str | None
    kernel: str

    @property
    def link_backend(self) -> str:
        """The link-emulation backend `--links auto` picks."""
        return "netem" if self.netem else "userspace"

    @property
    def datapath(self) -> str:
        """The OVS datapath the lab uses: Mininet's 'kernel' or 'user' (netdev)."""
        return "kernel" if self.ovs_kernel else "user"


def detect() -> Capabilities:
    return Capabilities(
        netem=netem_available(),
        ovs_kernel=ovs_kernel_datapath(),
        ovs_running=ovs_running(),
        ovs=ovs_version(),
        mininet=mininet_version(),
        postgres=postgres_version(),
        os_ken=version_of("os-ken"),
        kernel=os.uname().release,
    )
