"""Entering another network namespace for a moment, to open sockets there.

A socket stays in the namespace it was made in, so one process can serve many namespaces:
enter, open the socket, come back. setns applies to the calling thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from typing import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns {what}: {os.strerror(err)}")


@contextlib.contextmanager
def inside(ns_path: str) -> Iterator[None]:
    """Run the block in the network namespace at `ns_path` (/run/netns/NAME or
    /proc/PID/ns/net), then return to the thread's own."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(ns_path, os.O_RDONLY)
    try:
        _setns(target, ns_path)
        try:
            yield
        finally:
            _setns(own, "back")
    finally:
        os.close(own)
        os.close(target)


class Namespaces:
    """Opens sockets in the network namespaces of other processes, for a whole program's life.

    Keeps one handle per namespace (by a process in it), so a prober that opens a socket per
    request enters a namespace without reopening /proc each time.
    """

    def __init__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self.fds: dict[int, int] = {}

    def socket(self, pid: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
               proto: int = 0) -> socket.socket:
        if pid not in self.fds:
            self.fds[pid] = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        _setns(self.fds[pid], f"/proc/{pid}/ns/net")
        try:
            return socket.socket(family, kind, proto)
        finally:
            _setns(self.home, "back")


def named(name: str) -> str:
    """The path of a namespace made with `ip netns add NAME`."""
    return f"/run/netns/{name}"
