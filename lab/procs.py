"""The lab's child processes: one environment for the Python ones, one way to stop any.

Every Python program the lab starts (the delay line, the controller, the programs it runs
inside the hosts) imports the project's packages, whatever directory it runs in; and every
child is stopped the same way: SIGTERM, a grace time, then SIGKILL, and always reaped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_env(base: dict | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) with the project on PYTHONPATH."""
    env = dict(os.environ if base is None else base, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def stop_process(proc: subprocess.Popen | None, timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status (None: no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
