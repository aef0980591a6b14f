"""Raw packet sockets and wake-up tuning for the delay line (lab.delayline).

AF_PACKET sockets with PACKET_VNET_HDR (offloaded TCP/UDP frames keep their partial
checksums and GSO metadata: without it they leave with bad checksums), our own
transmissions hidden (PACKET_IGNORE_OUTGOING), kernel receive timestamps (SO_TIMESTAMPNS)
as the time base, small forced buffers; timer slack 1 ns, SCHED_FIFO 1, and the measured
wake-up lead of the forwarding loop's wait.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import time
from typing import Callable

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
PR_SET_TIMERSLACK = 29
MSG_DONTWAIT = socket.MSG_DONTWAIT
# Large enough for a 64 KiB GSO frame plus Ethernet and virtio_net_hdr.
RX_BUFFER = 1 << 17
# Receive buffer per socket (the kernel doubles it). Frames wait here only when
# the loop is saturated; a small buffer bounds that extra queueing (about 1 ms of
# 64 KiB TCP frames at 10 Gbit/s, 1000 small frames) instead of letting TCP fill
# megabytes and turn a 1 ms link into a 10 ms one. Overflow is counted (rx_overflow).
RCV_BUFFER = 1 << 20
SND_BUFFER = 4 << 20


def open_socket(ifname: str) -> socket.socket:
    """A raw socket on one interface that keeps virtio_net_hdr and kernel timestamps.

    Opened with protocol 0 and given ETH_P_ALL by the bind: a socket opened with a protocol
    is already hooked into the stack, and binding it unhooks it first, which waits for an RCU
    grace period (200 sockets on lo: 2.9 s opened with ETH_P_ALL, 0.008 s this way).
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for force, plain, size in ((SO_RCVBUFFORCE, socket.SO_RCVBUF, RCV_BUFFER),
                                   (SO_SNDBUFFORCE, socket.SO_SNDBUF, SND_BUFFER)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, size)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
        sock.bind((ifname, ETH_P_ALL))  # CPython converts it to network order
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{ifname}: {exc.strerror}") from None
    # Frames that arrived before the bind finished belong to no link timing: drop them.
    while True:
        try:
            sock.recv(RX_BUFFER, MSG_DONTWAIT)
        except BlockingIOError:
            break
    rx_overflow(sock)
    return sock


def rx_overflow(sock: socket.socket) -> int:
    """Frames the kernel dropped because our receive buffer was full, since the last call."""
    try:
        _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return drops


def set_timer_slack() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(1), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_realtime() -> bool:
    """SCHED_FIFO priority 1: above normal tasks, below every other real-time task."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return True
    except (OSError, AttributeError):
        return False


def calibrate_lead(wait: Callable[[float], object], samples: int = 300, sleep: float = 200e-6) -> float:
    """Measure how late `wait(sleep)` (the loop's own wait) wakes up; the loop wakes this much
    before a deadline."""
    late = []
    clock = time.time
    for _ in range(samples):
        t0 = clock()
        wait(sleep)
        late.append(clock() - t0 - sleep)
    late.sort()
    p90 = late[int(len(late) * 0.9)]
    return min(max(p90 + 5e-6, 15e-6), 150e-6)
