"""Tests that need a real kernel: sch_netem and the Open vSwitch kernel datapath.

They run inside the QEMU test VM (tests/vm/run.sh, `make vm-test`), where both exist; on a
kernel without them (such as the Firecracker kernel CI's host tests run on) they skip.
"""

from __future__ import annotations

import os

import pytest

from lab import cleanup
from lab.capabilities import detect
from lab.runstate import load_state

# QEMU's software emulation (TCG) adds 0.5-1.8 ms to a netem round trip (DESIGN.md,
# decision 6; timer wake-ups of an emulated CPU). RTTs are judged by their median after a
# warm-up, at most BIAS_LOW_MS under and BIAS_HIGH_MS over the configured round trip.
BIAS_LOW_MS = 0.2
BIAS_HIGH_MS = 2.5


@pytest.fixture(scope="session")
def caps():
    return detect()


@pytest.fixture(scope="session", autouse=True)
def real_kernel(caps):
    """Skip unless this machine has netem and the OVS kernel datapath, and nothing else runs a lab."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = [what for what, ok in (("sch_netem", caps.netem),
                                     ("the openvswitch kernel module", caps.ovs_kernel),
                                     ("a running Open vSwitch", caps.ovs_running),
                                     ("Mininet", caps.mininet is not None)) if not ok]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: runs in the real-kernel VM (make vm-test)")
    state = load_state()
    if state and state.owner_alive():
        pytest.fail(f"a lab is already running (pid {state.pid}); these tests need the machine")
    cleanup.cleanup()
    yield


def rtt_ok(median_ms: float, expected_ms: float) -> bool:
    return expected_ms - BIAS_LOW_MS <= median_ms <= expected_ms + BIAS_HIGH_MS
