"""Shared test set-up: markers that skip only where the machine truly lacks something."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _ovs_running() -> bool:
    return bool(shutil.which("ovs-vsctl")) and subprocess.run(
        ["ovs-vsctl", "--timeout=2", "show"], capture_output=True).returncode == 0


def _has_mininet() -> bool:
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        return False
    return bool(shutil.which("mnexec"))


def pytest_collection_modifyitems(config, items):
    reasons = {
        "root": None if os.geteuid() == 0 else "needs root (namespaces, veth pairs)",
        "ovs": None if _ovs_running() else "Open vSwitch is not running (./setup.sh starts it)",
        "mininet": None if _has_mininet() else "Mininet is not installed (./setup.sh installs it)",
        "postgres": None if Path("/usr/lib/postgresql/15/bin/postgres").exists()
        else "PostgreSQL 15 server is not installed (./setup.sh installs it)",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
                break

