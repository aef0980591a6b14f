"""Both forwarding cores of the delay line (lab.delayline's Python core and the compiled one,
lab/_delaycore.c) forward the same way: tested without root over Unix datagram socket pairs,
which carry frames and kernel timestamps as the packet sockets do.

Each link: host_a <-> [line_a  core  line_b] <-> host_b. Timing bounds allow a noisy 2-core
machine: a frame may leave late by milliseconds, never early.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import time
from typing import Iterator

import pytest

from lab import delaycore, delayline
from lab.delaycore import HotParams
from lab.delayline import CHAIN_LIMIT, make_core
from lab.delayline_control import LinkSpec, write_config

SO_TIMESTAMPNS = 35


def frame(seq: int, size: int = 120) -> bytes:
    """A frame whose chain key (bytes 24-88) is unique to seq."""
    return bytes(24) + struct.pack("!I", seq) + bytes(size - 28)


def seq_of(data: bytes) -> int:
    return struct.unpack_from("!I", data, 24)[0]


class Rig:
    """A core and its links over socket pairs; the core runs only inside forward()."""

    def __init__(self, name: str) -> None:
        self.core = make_core(name)
        self.hosts: list[tuple[socket.socket, socket.socket]] = []
        self.sockets: list[socket.socket] = []

    def link(self, params: HotParams) -> int:
        host_a, line_a = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        host_b, line_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (line_a, line_b, host_a, host_b):
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setblocking(False)
        self.sockets += [host_a, line_a, host_b, line_b]
        index = self.core.add_link(line_a, line_b)
        self.core.set_params(index, params)
        self.hosts.append((host_a, host_b))
        return index

    def forward(self, seconds: float, wake_fd: int = -1) -> None:
        self.core.run(time.time() + seconds, wake_fd)

    def received(self, sock: socket.socket) -> list[tuple[int, float]]:
        """(seq, kernel timestamp) of every frame waiting on a host socket."""
        got = []
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(1 << 16, 64)
            except BlockingIOError:
                return got
            sec, nsec = struct.unpack_from("qq", anc[0][2])
            got.append((seq_of(data), sec + nsec * 1e-9))

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.core.close()


@pytest.fixture(params=["compiled", "python"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "compiled" and delaycore.MISSING:
        pytest.fail(delaycore.MISSING)  # setup.sh builds it: missing is a broken set-up
    rig = Rig(request.param)
    rig.core.set_lead(50e-6, 100e-6)
    rig.core.start(time.time())
    try:
        yield rig
    finally:
        rig.close()


def params(**changes: float) -> HotParams:
    return HotParams(0.0, 0.0, 0.0, 0.0, 1000, False)._replace(**changes)


def test_a_frame_leaves_after_its_hold_and_not_before(rig: Rig) -> None:
    index = rig.link(params(delay=0.02))
    host_a, host_b = rig.hosts[0]
    sent = time.time()
    for seq in range(5):
        host_a.send(frame(seq))
    rig.forward(0.01)
    assert rig.received(host_b) == []
    rig.forward(0.03)
    got = rig.received(host_b)
    assert [s for s, _ in got] == list(range(5))
    assert all(0.02 <= stamp - sent <= 0.02 + 0.005 for _, stamp in got), [t - sent for _, t in got]
    a_to_b, b_to_a = rig.core.counters(index)
    assert a_to_b["forwarded"] == 5 and a_to_b["queued"] == 0 and b_to_a["forwarded"] == 0
    assert rig.core.clock_kinds()["realtime"] == 5


def test_both_directions_at_hold_0(rig: Rig) -> None:
    index = rig.link(params())
    host_a, host_b = rig.hosts[0]
    host_a.send(frame(1))
    host_b.send(frame(2))
    rig.forward(0.005)
    assert [s for s, _ in rig.received(host_b)] == [1]
    assert [s for s, _ in rig.received(host_a)] == [2]
    assert [c["forwarded"] for c in rig.core.counters(index)] == [1, 1]


def test_loss_and_queue_limit_are_counted(rig: Rig) -> None:
    lossy = rig.link(params(loss=1.0))
    short = rig.link(params(delay=0.05, limit=5))
    rig.hosts[lossy][0].send(frame(0))
    for seq in range(8):
        rig.hosts[short][0].send(frame(seq))
    rig.forward(0.07)
    assert rig.received(rig.hosts[lossy][1]) == []
    assert rig.core.counters(lossy)[0]["lost"] == 1
    assert [s for s, _ in rig.received(rig.hosts[short][1])] == list(range(5))
    counters = rig.core.counters(short)[0]
    assert (counters["forwarded"], counters["dropped"]) == (5, 3)


def test_jitter_does_not_reorder_unless_asked(rig: Rig) -> None:
    ordered = rig.link(params(delay=0.005, jitter=0.004))
    free = rig.link(params(delay=0.005, jitter=0.004, reorder=True))
    for seq in range(60):
        rig.hosts[ordered][0].send(frame(seq))
        rig.hosts[free][0].send(frame(seq))
    rig.forward(0.02)
    assert [s for s, _ in rig.received(rig.hosts[ordered][1])] == list(range(60))
    overtaken = [s for s, _ in rig.received(rig.hosts[free][1])]
    assert sorted(overtaken) == list(range(60)) and overtaken != list(range(60))


def test_a_frame_from_another_link_is_timed_from_its_due_time(rig: Rig) -> None:
    """Link 2 holds 10 ms but chains with span 2 ms: the frame re-sent into it (the switch
    between) is due 2 ms after it was due off link 1, moved by at most CHAIN_LIMIT."""
    first = rig.link(params())
    second = rig.link(params(delay=0.01, span=0.002))
    rig.hosts[first][0].send(frame(7))
    rig.forward(0.002)
    (seq, left), = rig.received(rig.hosts[first][1])
    rig.hosts[second][0].send(frame(seq))
    rig.hosts[second][0].send(frame(8))  # never crossed link 1: not chained
    resent = time.time()
    rig.forward(0.03)
    got = dict(rig.received(rig.hosts[second][1]))
    assert rig.core.counters(second)[0]["chained"] == 1
    assert rig.core.counters(first)[0]["chained"] == 0
    # Due at most CHAIN_LIMIT earlier than its hold alone; frame 8 keeps order behind it.
    assert resent + 0.01 - CHAIN_LIMIT - 0.001 <= got[7] <= resent + 0.01 - CHAIN_LIMIT + 0.005
    assert got[8] >= got[7]


def test_run_returns_when_the_wake_fd_is_readable(rig: Rig) -> None:
    rig.link(params())
    wake_r, wake_w = os.pipe()
    try:
        os.write(wake_w, b"x")
        t0 = time.monotonic()
        rig.forward(5.0, wake_r)
        assert time.monotonic() - t0 < 1.0
    finally:
        os.close(wake_r)
        os.close(wake_w)


def test_more_link_ends_than_select_takes(rig: Rig) -> None:
    """A 50x topology has thousands of link ends: select() stops at descriptor 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 4096")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    try:
        links = [rig.link(params()) for _ in range(600)]
        last = rig.hosts[links[-1]]
        assert last[0].fileno() > 1024
        last[0].send(frame(600))
        rig.forward(0.01)
        assert [s for s, _ in rig.received(last[1])] == [600]
    finally:
        rig.close()
        rig.sockets = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_auto_takes_the_compiled_core_only_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delaycore, "MISSING", "not built (test)")
    assert delaycore.resolve("auto") == "python"
    with pytest.raises(delaycore.CoreMissing, match="--core compiled: not built"):
        delaycore.resolve("compiled")
    monkeypatch.setattr(delaycore, "MISSING", None)
    assert delaycore.resolve("auto") == "compiled"
    assert delaycore.resolve("python") == "python"


def test_asking_for_a_missing_compiled_core_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.json"
    write_config(config, [LinkSpec("l1", "dltx1a", "dltx1b", 1.0)])
    monkeypatch.setattr(delaycore, "MISSING", "lab/_delaycore.c is not built (test); run ./setup.sh")
    assert delayline.main(["--config", str(config), "--core", "compiled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--core compiled: lab/_delaycore.c is not built" in err[0], err
