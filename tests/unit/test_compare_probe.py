"""lab compare's prober (measurements.inlab probe) on 127.0.0.1: an answer that came while
the prober had no CPU counts as an answer, not as a timeout; and the count of connection
attempts a full accept queue dropped, which tells a slow server from a lossy network."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
ANSWER_AFTER_S = 0.3
STALL_S = 1.5  # longer than the prober's timeout


def slow_server(listener: socket.socket, stop: threading.Event) -> None:
    """Reads a line, answers 'srv' ANSWER_AFTER_S later, closes: requests stay in flight."""
    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(64)
            time.sleep(ANSWER_AFTER_S)
            conn.sendall(b"srv\n")

    listener.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


@pytest.mark.root  # the prober enters the target's network namespace (setns)
def test_answers_that_came_while_the_prober_was_stopped_are_not_timeouts(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    stop = threading.Event()
    server = threading.Thread(target=slow_server, args=(listener, stop), daemon=True)
    server.start()
    out = tmp_path / "requests.jsonl"
    config = tmp_path / "probe.json"
    sent = tmp_path / "requests.sent"
    config.write_text(json.dumps({
        "timeout_s": 1.0, "out": str(out), "sent": str(sent),
        "targets": [{"kind": "client", "src": "here", "pid": os.getpid(), "dst": "127.0.0.1",
                     "port": listener.getsockname()[1], "mode": "request",
                     "interval_s": 0.05}]}))
    prober = subprocess.Popen([sys.executable, "-m", "measurements.inlab", "probe",
                               str(config)], cwd=str(ROOT))
    try:  # once answers come in (a slow start must not leave nothing in flight)
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 3, 30,
                 "the prober's first answers")
        prober.send_signal(signal.SIGSTOP)  # a prober starved of CPU, with requests in flight
        time.sleep(STALL_S)
        prober.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        prober.send_signal(signal.SIGTERM)
        assert prober.wait(timeout=10) == 0
    finally:
        if prober.poll() is None:
            prober.kill()
        stop.set()
        server.join()
        listener.close()
    requests = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(requests) > 20
    assert all(r["ok"] and r["served_by"] == "srv" for r in requests), \
        [r for r in requests if not r["ok"]][:3]
    stalled = [r for r in requests if r["latency_ms"] > STALL_S * 1000 * 0.8]
    assert stalled, "no request was in flight across the stall"
    # Every request it sent has its line: the count the lab checks the record against.
    assert json.loads(sent.read_text()) == {"client": len(requests)}


def test_listen_drops_counts_connections_a_full_accept_queue_refused():
    """A listener that never accepts, with a backlog of 1: its kernel drops the later SYNs,
    and listen_drops (this process's network namespace) counts them."""
    from measurements.cells import listen_drops

    before = listen_drops(os.getpid())
    listener = socket.create_server(("127.0.0.1", 0), backlog=1)
    clients = []
    try:
        for _ in range(6):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
            clients.append(c)
        wait_for(lambda: listen_drops(os.getpid()) - before >= 3, 5,
                 "3 dropped connection attempts")
    finally:
        for c in clients:
            c.close()
        listener.close()
