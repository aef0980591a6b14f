"""Helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOPOLOGY = ROOT / "topologies" / "hybrid-cloud.yaml"
LAB = [sys.executable, "-m", "lab.cli"]


def triangle_topology(name: str, padding_sites: int = 0) -> str:
    """A three-site triangle whose direct sa-sb link (5 ms) is slower than the way over sc
    (1 + 1 ms): hop count and latency choose different paths. `padding_sites` unlinked
    clinics come first (they move the triangle's datapath ids)."""
    padding = "".join(f"  - {{name: p{i}, kind: clinic, lat: 0.0, lon: 0.0}}\n"
                      for i in range(padding_sites))
    return f"""name: {name}
link_classes:
  lan: {{inflation: 1.0, equipment_ms: 0.2}}
sites:
{padding}  - {{name: sa, kind: datacenter, lat: 42.0, lon: -71.0}}
  - {{name: sb, kind: datacenter, lat: 33.0, lon: -112.0}}
  - {{name: sc, kind: region, lat: 39.0, lon: -77.0}}
links:
  - {{ends: [sa, sb], class: lan, delay_ms: 5.0, source: test}}
  - {{ends: [sa, sc], class: lan, delay_ms: 1.0, source: test}}
  - {{ends: [sc, sb], class: lan, delay_ms: 1.0, source: test}}
hosts:
  - {{name: h1, site: sa, role: service}}
  - {{name: h2, site: sb, role: db-primary}}
  - {{name: h3, site: sc, role: db-standby}}
"""


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
