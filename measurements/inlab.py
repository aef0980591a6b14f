"""The programs `lab compare` runs beside the lab: the application server and the prober.

Each is one process serving many hosts: it opens its sockets inside the hosts' network
namespaces (lab.netns) and then works from one select loop, so a dozen hosts cost one
process, not a dozen.

    python -m measurements.inlab serve|probe CONFIG.json
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.files import write_json
from lab.netns import Namespaces


class _Stop(Exception):
    pass


def _raise_stop(_signum, _frame):
    raise _Stop()


def serve(config: dict) -> None:
    """The application: on every endpoint host, accept, read a line, answer the host's name."""
    spaces, sel = Namespaces(), selectors.DefaultSelector()
    for server in config["servers"]:
        sock = spaces.socket(server["pid"])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", server["port"]))
        sock.listen(512)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, ("listen", server["name"]))
    print("ready", flush=True)
    try:
        while True:
            for key, _ in sel.select():
                what, name = key.data
                if what == "listen":
                    try:
                        conn, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, ("conn", name))
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(256)
                    if data:
                        conn.send(f"{name}\n".encode())
                except OSError:
                    pass
                sel.unregister(conn)
                conn.close()
    except _Stop:
        pass


@dataclass
class _Request:
    target: dict
    sock: socket.socket
    start: float  # time.time() just before connect
    t0: float  # time.perf_counter() just before connect
    connected: bool = False
    reply: bytes = b""


class Prober:
    """Every target: a new TCP connection every `interval_s` until stopped; one line each.

    mode "request": connect, send a line, read the answer (the serving host's name) until
    the server closes; mode "connect": the handshake only. A request still not done when
    the prober looks after `timeout_s` (or refused, or reset) is written as failed. Once
    stopped it sends no more and lets the requests under way finish or time out: cutting
    them short would count the measurement's own end as failures.
    """

    def __init__(self, config: dict, out):
        self.out, self.timeout = out, config["timeout_s"]
        self.targets = config["targets"]
        self.spaces, self.sel = Namespaces(), selectors.DefaultSelector()
        self.pending: dict[int, _Request] = {}
        self.sent: dict[str, int] = {}  # requests sent per kind: each must have its line
        self.stopping = False
        now = time.monotonic()
        # Spread the first sends over the interval, so the clients do not move in lockstep.
        self.next_send = [now + i * t["interval_s"] / max(1, len(self.targets))
                          for i, t in enumerate(self.targets)]

    def run(self) -> None:
        while self.pending or not self.stopping:
            if not self.stopping:
                self._send_due()
            wait = min([n - time.monotonic() for n in self.next_send] + [0.01])
            self._handle(self.sel.select(max(0.0, wait)))
            self._time_out()
            self.out.flush()

    def _send_due(self) -> None:
        now = time.monotonic()
        for i, target in enumerate(self.targets):
            if now < self.next_send[i]:
                continue
            self.next_send[i] = max(self.next_send[i] + target["interval_s"], now)
            sock = self.spaces.socket(target["pid"])
            sock.setblocking(False)
            req = _Request(target, sock, time.time(), time.perf_counter())
            self.sent[target["kind"]] = self.sent.get(target["kind"], 0) + 1
            err = sock.connect_ex((target["dst"], target["port"]))
            self.pending[id(req)] = req
            if err not in (0, errno.EINPROGRESS):
                self._finish(req, False, os.strerror(err))
                continue
            self.sel.register(sock, selectors.EVENT_WRITE, req)

    def _time_out(self) -> None:
        overdue = [r for r in self.pending.values()
                   if time.perf_counter() - r.t0 > self.timeout]
        if overdue:
            # Look once more without waiting first: answers that came while this process
            # had no CPU (a loaded machine) are answers, not timeouts.
            self._handle(self.sel.select(0))
            for req in overdue:
                if id(req) in self.pending:
                    self._finish(req, False, "timeout")

    def _handle(self, events) -> None:
        for key, _mask in events:
            req = key.data
            if not req.connected:
                self._connected(req)
                continue
            try:  # the answer and the server's close, as far as they came
                while data := req.sock.recv(256):
                    req.reply += data
            except BlockingIOError:
                continue
            except OSError as exc:
                self._finish(req, False, exc.strerror or str(exc))
                continue
            self._finish(req, bool(req.reply), "" if req.reply else "closed without answer")

    def _connected(self, req: _Request) -> None:
        err = req.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish(req, False, os.strerror(err))
            return
        req.connected = True
        if req.target["mode"] == "connect":
            self._finish(req, True)
            return
        try:
            req.sock.send(b"GET\n")
        except OSError as exc:
            self._finish(req, False, exc.strerror or str(exc))
            return
        self.sel.modify(req.sock, selectors.EVENT_READ, req)

    def _finish(self, req: _Request, ok: bool, error: str = "") -> None:
        latency = (time.perf_counter() - req.t0) * 1000
        try:
            self.sel.unregister(req.sock)
        except (KeyError, ValueError):
            pass
        if req.target["mode"] == "connect":
            req.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        req.sock.close()
        self.pending.pop(id(req), None)
        served = req.reply.decode(errors="replace").strip() if ok else ""
        self.out.write(json.dumps({"kind": req.target["kind"], "src": req.target["src"],
                                   "start": round(req.start, 6),
                                   "latency_ms": round(latency, 4) if ok else None, "ok": ok,
                                   "served_by": served or None,
                                   "error": error or None}) + "\n")


def probe(config: dict, out) -> None:
    """Run a Prober until SIGTERM, then until its requests under way are done; then write
    how many requests of each kind it sent (config "sent"), so that the lab can tell a
    complete record from one that lost lines."""
    prober = Prober(config, out)

    def stop(_signum, _frame):
        prober.stopping = True

    signal.signal(signal.SIGTERM, stop)
    prober.run()
    if config.get("sent"):
        write_json(config["sent"], prober.sent)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("serve", "probe"):
        print("usage: python -m measurements.inlab serve|probe CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[1]).read_text())
    if argv[0] == "serve":
        signal.signal(signal.SIGTERM, _raise_stop)
        serve(config)
    else:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it with SIGTERM
        with open(config["out"], "a") as out:
            probe(config, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
