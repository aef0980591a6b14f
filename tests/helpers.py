"""Helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOPOLOGY = ROOT / "topologies" / "hybrid-cloud.yaml"
LAB = [sys.executable, "-m", "lab.cli"]


def run_lab(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the `lab` command as a user would, from the project root."""
    return subprocess.run(LAB + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)
