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


def iperf3(server, client, port: int, *client_args: str) -> dict:
    """One iperf3 run between two Mininet hosts; the server is started and stopped by PID."""
    import json
    import time

    srv = server.popen(["iperf3", "-s", "-1", "-B", server.IP(), "-p", str(port)])
    try:
        time.sleep(0.3)
        out = client.cmd(f"iperf3 -c {server.IP()} -p {port} -J " + " ".join(client_args))
        return json.loads(out[out.index("{"):])
    finally:
        srv.kill()
        srv.wait()
