"""iperf3 servers that listen before their client starts.

iperf3 prints "Server listening" once listen() has returned; waiting for that line replaces a
guessed sleep between starting a server and its client (too short a sleep, and the client's
connection is refused on a loaded machine; a long one wastes every run's time).
"""

from __future__ import annotations

import subprocess
from typing import Callable


def start_server(popen: Callable[..., subprocess.Popen], ip: str, port: int) -> subprocess.Popen:
    """`iperf3 -s -1` on ip:port, started by `popen` (a Mininet host's, or one that enters a
    namespace: popen(argv, **popen_kwargs)); returns once it listens. The caller kills it."""
    server = popen(["iperf3", "-s", "-1", "--forceflush", "-B", ip, "-p", str(port)],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said = []
    for line in server.stdout:
        if line.startswith("Server listening"):
            return server
        said.append(line.strip())
    server.wait()
    raise RuntimeError(f"iperf3 server on {ip}:{port} exited: {' '.join(said)[-300:]}")
