"""lab.iperf.start_server returns only once its server accepts connections (127.0.0.1 only)."""

import shutil
import socket
import subprocess

import pytest

from lab.iperf import start_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


needs_iperf3 = pytest.mark.skipif(not shutil.which("iperf3"),
                                  reason="iperf3 is not installed (./setup.sh installs it)")


@needs_iperf3
def test_the_server_listens_when_returned():
    port = free_port()
    server = start_server(subprocess.Popen, "127.0.0.1", port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # refused unless it already listened: no retry, no sleep
    finally:
        server.kill()
        server.wait()


@needs_iperf3
def test_a_server_that_cannot_listen_is_an_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{port} exited"):
            start_server(subprocess.Popen, "127.0.0.1", port)
