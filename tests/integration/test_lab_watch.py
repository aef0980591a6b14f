"""Nothing fails silently (root, OVS, Mininet): when a process of the running lab dies, `lab
up` notices within a second, says which one, tears down and exits 1; the Mininet CLI shows
what its commands print, and Ctrl-C stops the command, not the lab."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pexpect
import pytest

from lab.runstate import load_state, marked_processes
from tests.helpers import LAB, ROOT, wait_for
from tests.integration.conftest import NOTHING, lab_leftovers

pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.mininet]

# What each vital part's command line holds, and the words `lab up` must name it with.
PARTS = {
    "delay line": (b"lab.delayline", "the delay line"),
    "relay": (b"socat", "the OpenFlow relay"),
    "controller": (b"controllers.launcher", "the controller"),
    "switch daemon": (b"ovs-vswitchd", "OVS daemon"),
    "host shell": (b"mininet:pg1", "pg1's shell"),
}


def cmdline(pid: int) -> bytes:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""


def the_labs(part: bytes) -> int:
    """The pid of the running lab's process whose command line holds `part`."""
    state = load_state()
    pids = [p for p in marked_processes(state.run_id) if part in cmdline(p)] if state else []
    return pids[0] if pids else 0


@pytest.mark.parametrize("kind", list(PARTS))
def test_lab_up_names_a_process_that_died_and_exits_1_after_teardown(kind):
    marker, words = PARTS[kind]
    lab = subprocess.Popen(LAB + ["up", "--no-calibrate"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        for line in lab.stdout:
            if line.startswith("running;"):
                break
        else:
            pytest.fail(f"lab up did not come up (exit {lab.wait()})")
        victim = wait_for(lambda: the_labs(marker), 10, f"the lab's {kind}")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        rest = lab.stdout.read()
        code = lab.wait(timeout=120)
    finally:
        if lab.poll() is None:
            lab.send_signal(signal.SIGTERM)
            lab.wait(timeout=60)
    assert code == 1, rest
    assert f"{words}" in rest and f"(pid {victim})" in rest and "torn down" in rest, rest
    assert time.monotonic() - killed < 60  # noticed, torn down and gone: not hung
    assert lab_leftovers() == NOTHING


def test_the_mininet_cli_shows_output_and_ctrl_c_stops_only_the_command():
    cli = pexpect.spawn(LAB[0], LAB[1:] + ["up", "--no-calibrate", "--cli"], cwd=str(ROOT),
                        encoding="utf-8", timeout=120, dimensions=(50, 160))
    try:
        cli.expect("mininet> ")
        cli.sendline("pg1 echo hello-from-pg1")
        cli.expect("hello-from-pg1\r?\n")
        cli.expect("mininet> ")
        cli.sendline("pg1 ping -c 2 -i 0.2 svrgb")
        cli.expect("2 received")
        cli.expect("mininet> ")
        cli.sendline("pg1 ping -i 0.2 svrgb")
        cli.expect("bytes from")
        cli.sendintr()  # Ctrl-C: the ping stops, the lab does not
        cli.expect("mininet> ")
        cli.sendline("pg1 ping -c 1 svrgb")
        cli.expect("1 received", timeout=30)
        cli.expect("mininet> ")
        cli.sendline("exit")
        cli.expect(pexpect.EOF, timeout=120)
    finally:
        cli.close(force=not cli.eof())
    assert cli.exitstatus == 0, cli.before
    assert lab_leftovers() == NOTHING
