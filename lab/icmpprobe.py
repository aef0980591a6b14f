"""A microsecond round-trip prober: ICMP echo from inside the lab's hosts, in one process.

ping prints 0.1 ms steps above 10 ms and costs a process per pair. This prober enters each
source host's network namespace only to open a raw ICMP socket there (a socket stays in
the namespace it was made in), then sends and receives for every pair from one select
loop. The far host's kernel answers, so no echo server adds its own scheduling delay.
Receive times are the kernel's timestamps (SO_TIMESTAMPNS); send times are read just
before sendto, a few microseconds early at most.

    python -m lab.icmpprobe < request.json > result.json

request: {"pairs": [{"key": str, "pid": int, "src": ip, "dst": ip}], "count": int,
          "warmup": int, "gap_ms": float, "timeout_s": float}
result:  {"rtt_ms": {key: [float, ...]}, "sent_at": {key: [wall-clock send time, ...]},
          "sent": {key: int}}
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time

from lab.netns import inside
from lab.procs import child_env
from lab.runstate import PROCESS_MARKER

SO_TIMESTAMPNS = 35
ICMP_ECHO, ICMP_ECHOREPLY = 8, 0

def open_socket_in(pid: int) -> socket.socket:
    """A raw ICMP socket inside the network namespace of process `pid`."""
    with inside(f"/proc/{pid}/ns/net"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(False)
    return sock


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"hclab-probe-pad-" * 2
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, checksum(header + payload), ident, seq) + payload


def probe(pairs: list[dict], count: int, warmup: int = 2, gap_ms: float = 0.5,
          timeout_s: float = 2.0) -> dict:
    """Probe every pair `warmup + count` times, round robin; keep the last `count` RTTs."""
    sockets: dict[int, socket.socket] = {}
    for pair in pairs:
        if pair["pid"] not in sockets:
            sockets[pair["pid"]] = open_socket_in(pair["pid"])
    # Each pair gets its own ICMP identifier; replies are matched on (identifier, sequence).
    ident_base = os.getpid() & 0x7F00
    idents = {ident_base + i: p for i, p in enumerate(pairs)}
    ident_of = {p["key"]: ident for ident, p in idents.items()}
    sent_at: dict[tuple[int, int], float] = {}
    rtts, sent_times = ({p["key"]: [] for p in pairs} for _ in range(2))  # ms; when sent
    sent = {p["key"]: 0 for p in pairs}
    by_fd = {s.fileno(): s for s in sockets.values()}
    pid_of = {s.fileno(): pid for pid, s in sockets.items()}

    def drain(wait: float) -> None:
        readable, _, _ = select.select(list(by_fd), [], [], max(wait, 0))
        for fd in readable:
            sock = by_fd[fd]
            while True:
                try:
                    data, anc, _, _ = sock.recvmsg(2048, 256)
                except BlockingIOError:
                    break
                ihl = (data[0] & 0x0F) * 4
                kind, _, _, ident, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                # A raw socket also sees the echo requests other sources send to its host,
                # and replies meant for another pair: only our own replies count.
                if kind != ICMP_ECHOREPLY or idents.get(ident, {}).get("pid") != pid_of[fd]:
                    continue
                start = sent_at.pop((ident, seq), None)
                if start is None:
                    continue
                stamp = next((struct.unpack("qq", d[:16]) for lvl, t, d in anc
                              if lvl == socket.SOL_SOCKET and t == SO_TIMESTAMPNS), None)
                received = stamp[0] + stamp[1] * 1e-9 if stamp else time.time()
                if seq >= warmup:
                    rtts[idents[ident]["key"]].append((received - start) * 1000.0)
                    sent_times[idents[ident]["key"]].append(start)

    gap = gap_ms / 1000.0
    for seq in range(warmup + count):
        for pair in pairs:
            ident = ident_of[pair["key"]]
            sock = sockets[pair["pid"]]
            packet = echo_request(ident, seq)
            start = time.time()
            sock.sendto(packet, (pair["dst"], 0))
            sent_at[(ident, seq)] = start
            if seq >= warmup:
                sent[pair["key"]] += 1
            next_send = time.monotonic() + gap
            while (left := next_send - time.monotonic()) > 0:
                drain(left)
    deadline = time.monotonic() + timeout_s
    while sent_at and time.monotonic() < deadline:
        drain(deadline - time.monotonic())
    for sock in sockets.values():
        sock.close()
    return {"rtt_ms": rtts, "sent_at": sent_times, "sent": sent}


def main() -> int:
    request = json.load(sys.stdin)
    result = probe(request["pairs"], request["count"], request.get("warmup", 2),
                   request.get("gap_ms", 0.5), request.get("timeout_s", 2.0))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def measure(lab, pairs: list[tuple[str, str, str]], count: int, warmup: int = 2,
            gap_ms: float = 0.5, timeout_s: float = 2.0) -> dict[str, tuple[list[float], int]]:
    """Probe (key, source host, destination host) pairs of a running lab from one process.

    Returns key -> (RTT samples in ms, probes counted). The prober carries the run's marker,
    so `lab cleanup` finds it if the lab dies while it runs.
    """
    data = _run(lab, pairs, count, warmup, gap_ms, timeout_s)
    return {key: (data["rtt_ms"][key], data["sent"][key]) for key, _, _ in pairs}


def measure_series(lab, pairs: list[tuple[str, str, str]], count: int, warmup: int = 2,
                   gap_ms: float = 0.5, timeout_s: float = 2.0,
                   ) -> dict[str, tuple[list[tuple[float, float]], int]]:
    """As `measure`, each sample with its send time: key -> ([(wall time, RTT ms)], sent)."""
    data = _run(lab, pairs, count, warmup, gap_ms, timeout_s)
    return {key: (list(zip(data["sent_at"][key], data["rtt_ms"][key])), data["sent"][key])
            for key, _, _ in pairs}


def _run(lab, pairs, count, warmup, gap_ms, timeout_s) -> dict:
    request = {"pairs": [{"key": key, "pid": lab.host(src).pid, "src": lab.host(src).IP(),
                          "dst": lab.host(dst).IP()} for key, src, dst in pairs],
               "count": count, "warmup": warmup, "gap_ms": gap_ms, "timeout_s": timeout_s}
    # A guard against a hung prober, not a deadline: slow machines (software emulation)
    # take far longer than gap_ms per probe.
    budget = (count + warmup) * len(pairs) * max(gap_ms, 10.0) / 1000 + timeout_s + 60
    result = subprocess.run([sys.executable, "-m", "lab.icmpprobe"], input=json.dumps(request),
                            capture_output=True, text=True, timeout=budget,
                            env=child_env(**{PROCESS_MARKER: lab.state.run_id}))
    if result.returncode != 0:
        raise RuntimeError(f"prober failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)
