"""The switch-priority watcher on real processes: real-time while light, normal while busy (root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from lab.switchpriority import PRIORITY, SwitchPriority
from tests.helpers import SETTLE_S, wait_for

pytestmark = [pytest.mark.root]

IDLE = "import time; time.sleep(60)"
# Busy until SIGUSR1, then idle: the test decides when the busy phase ends, not a clock.
BUSY_UNTIL_SIGNALLED = """
import signal, time
busy = [True]
signal.signal(signal.SIGUSR1, lambda *_: busy.clear())
while busy:
    pass
time.sleep(60)
"""


def policy(pid: int) -> tuple[int, int]:
    return os.sched_getscheduler(pid), os.sched_getparam(pid).sched_priority


@pytest.fixture
def children():
    procs = []

    def spawn(code: str) -> subprocess.Popen:
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
        return procs[-1]

    yield spawn
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_busy_thread_goes_back_to_normal_and_returns_once_light(children):
    idle, busy = children(IDLE).pid, children(BUSY_UNTIL_SIGNALLED).pid
    watcher = SwitchPriority([idle, busy])
    assert watcher.start()
    try:
        assert policy(idle) == (os.SCHED_FIFO, PRIORITY)
        wait_for(lambda: policy(busy)[0] == os.SCHED_OTHER, SETTLE_S, "the busy thread demoted")
        assert watcher.demotions >= 1
        assert policy(idle) == (os.SCHED_FIFO, PRIORITY)
        os.kill(busy, signal.SIGUSR1)  # once the thread sleeps it is raised again
        wait_for(lambda: policy(busy) == (os.SCHED_FIFO, PRIORITY), SETTLE_S, "the thread raised again")
    finally:
        watcher.stop()


def test_a_thread_that_ends_while_watched_is_dropped(children):
    child = children(IDLE)
    pid = child.pid
    watcher = SwitchPriority([pid])
    assert watcher.start()
    try:
        child.kill()
        child.wait()
        wait_for(lambda: pid not in watcher.realtime, SETTLE_S, "the ended thread dropped")
        assert watcher._thread.is_alive()
    finally:
        watcher.stop()
    assert watcher._thread is None
