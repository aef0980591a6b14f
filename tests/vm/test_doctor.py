"""`lab doctor` on a real kernel: netem and the OVS kernel datapath are found, and chosen."""

from __future__ import annotations

import re

from lab.emulation import resolve_backend
from tests.helpers import run_lab


def test_doctor_reports_netem_and_kernel_datapath():
    result = run_lab("doctor", timeout=60)
    print(result.stdout)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for what in ("sch_netem", "OVS kernel datapath"):
        row = [line for line in lines if what in line]
        assert row and re.search(r"\byes\b", row[0]), f"{what}: {row}"


def test_auto_picks_netem_and_the_kernel_datapath(caps):
    assert caps.netem and caps.ovs_kernel
    assert resolve_backend("auto", caps) == "netem"
    assert caps.datapath == "kernel"
