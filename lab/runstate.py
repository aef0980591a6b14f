"""The run directory: what a running lab owns, written down before it is created.

Teardown and `lab cleanup` find the lab's resources from here and from the lab's own
markers (a name prefix, an OVS external id, an environment variable on every process the
lab starts), never from a broad pattern. One lab runs at a time per run directory.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_DIR_ENV = "HCLAB_RUN_DIR"
DEFAULT_RUN_DIR = "/run/hclab"
# Set in the environment of every process the lab starts (Mininet shells inherit it), so a
# crashed run's processes can be found without guessing from their command lines.
PROCESS_MARKER = "HCLAB_RUN"
# OVS bridges the lab creates carry this key in external_ids.
BRIDGE_MARKER = "hclab-run"
STATE_FILE = "lab.json"


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV, DEFAULT_RUN_DIR))


@dataclass
class RunState:
    """What one lab run owns; saved as JSON in the run directory."""

    run_id: str
    pid: int
    pid_start: int  # the owner's start time in clock ticks: tells a reused PID apart
    started: float
    topology: str
    switches: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def owner_alive(self) -> bool:
        return pid_alive(self.pid) and process_start(self.pid) == self.pid_start

    def save(self, directory: Path | None = None) -> None:
        directory = directory or run_dir()
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        tmp.replace(directory / STATE_FILE)


def new_run_id() -> str:
    return f"{os.getpid()}-{int(time.time() * 1000)}"


def load_state(directory: Path | None = None) -> RunState | None:
    path = (directory or run_dir()) / STATE_FILE
    try:
        data = json.loads(path.read_text())
        return RunState(**data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(directory: Path | None = None) -> None:
    directory = directory or run_dir()
    for name in (STATE_FILE, STATE_FILE + ".tmp"):
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def marked_processes(run_id: str | None = None) -> list[int]:
    """PIDs whose environment carries the lab's marker (for one run, or for any run)."""
    wanted = f"{PROCESS_MARKER}={run_id}".encode() if run_id else f"{PROCESS_MARKER}=".encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        for var in env.split(b"\0"):
            if (var == wanted) if run_id else var.startswith(wanted):
                found.append(int(entry.name))
                break
    return found


def process_start(pid: int) -> int | None:
    """A process's start time since boot, in clock ticks (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def descendants(pid: int) -> list[int]:
    """All processes below pid (children first found by their parent PID in /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
