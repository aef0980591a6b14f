"""CPU per part of the lab (measurements/cpuparts.py): which process is which, the sums."""

from __future__ import annotations

import os
from pathlib import Path

from measurements import cpuparts


def fake_proc(root: Path, procs: dict[int, tuple[str, tuple[int, int, int, int]]]) -> Path:
    for pid, (cmdline, (ut, st, cut, cst)) in procs.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + b"\0")
        # comm may hold spaces and parentheses: the fields are read after the last ")".
        fields = ["S", "1"] + ["0"] * 9 + [str(ut), str(st), str(cut), str(cst)] + ["0"] * 5
        (d / "stat").write_text(f"{pid} (a (b) c) " + " ".join(fields) + "\n")
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    return root


def test_processes_are_told_apart_by_their_command_lines():
    assert cpuparts.part_of("/x/python -m lab.delayline --config c") == "delay line"
    assert cpuparts.part_of("ovs-vswitchd unix:/run/hclab/ovs/hldc1/db.sock") == "switches"
    assert cpuparts.part_of("ovs-vswitchd unix:/var/run/openvswitch/db.sock") is None  # not ours
    assert cpuparts.part_of("python -m measurements.dbbench_worker --serve") == "database workload"
    assert cpuparts.part_of("python -m measurements.dbbench_worker /r/writer-mono1.json") == "writers"
    assert cpuparts.part_of("postgres: pg1: lab hclab 10.1.0.2(4) idle") == "postgres"
    assert cpuparts.part_of("/usr/sbin/sshd -D") is None


def test_a_window_sums_each_parts_cpu_and_the_emulators_share(tmp_path: Path):
    tick = cpuparts.TICK_S
    before = cpuparts.snapshot(fake_proc(tmp_path / "a", {
        10: ("python -m lab.delayline", (100, 50, 0, 0)),
        11: ("postgres -D /run/hclab/pg/pg1", (10, 10, 5, 5)),
        12: ("/usr/sbin/sshd -D", (999, 0, 0, 0))}))
    assert set(before) == {10, 11}
    after = cpuparts.snapshot(fake_proc(tmp_path / "b", {
        10: ("python -m lab.delayline", (200, 50, 0, 0)),  # +100 ticks
        11: ("postgres -D /run/hclab/pg/pg1", (10, 10, 25, 5)),  # +20: a reaped backend
        13: ("python -m measurements.inlab probe c.json", (30, 0, 0, 0))}))  # new: all of it
    found = cpuparts.used(before, after, seconds=2.0, cores=2)
    assert found["cpu_s"] == {"delay line": round(100 * tick, 2), "clinic and service probes":
                              round(30 * tick, 2), "postgres": round(20 * tick, 2)}
    assert found["emulator_cpu_s"] == round(100 * tick, 2)
    assert found["machine_share_pct"]["emulator"] == round(100 * 100 * tick / 4.0, 1)


def test_the_calling_process_is_the_labs_orchestration():
    mine = cpuparts.snapshot()[os.getpid()]
    assert mine[0] == "lab (orchestration)" and mine[1] > 0
