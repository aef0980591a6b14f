"""Entering another network namespace for a moment, to open sockets there.

A socket stays in the namespace it was made in, so one process can serve many namespaces:
enter, open the socket, come back. setns applies to the calling thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
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


def named(name: str) -> str:
    """The path of a namespace made with `ip netns add NAME`."""
    return f"/run/netns/{name}"
