"""Noticing that one of the lab's own processes died: the network is then not what it claims.

A dead delay line leaves every emulated link cut; a dead relay or controller leaves the
switches without their controller; a dead switch daemon or host shell takes its site or host
off the network. None of that makes a noise by itself. `Watch` looks at each vital part a
few times a second and reports the first death once, naming the part, so that `lab up`
stops and says so, and `lab compare` marks its cell invalid instead of measuring a broken
network.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable

INTERVAL_S = 0.25  # a death is noticed within this (and well within 1 s)

# A vital part: its name, and a check that returns None while it lives, else how it died.
Part = tuple[str, Callable[[], str | None]]


def process_check(proc) -> Callable[[], str | None]:
    """Check of a child process (a subprocess.Popen) of this process."""
    def check():
        code = proc.poll()
        return None if code is None else f"exited with status {code}"
    return check


def pid_check(pid: int) -> Callable[[], str | None]:
    """Check of a process that is not this process's child (a daemon that detached)."""
    def check():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "is gone"
        except PermissionError:
            pass
        return None
    return check


class Watch:
    """Checks the parts every INTERVAL_S in a thread; calls `on_death(text)` once."""

    def __init__(self, parts: list[Part], on_death: Callable[[str], None],
                 interval: float = INTERVAL_S):
        self.parts, self.on_death, self.interval = parts, on_death, interval
        self.death: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-watch", daemon=True)

    def start(self) -> "Watch":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before teardown stops the parts on purpose)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def check(self) -> str | None:
        """The first part found dead, as a sentence, or None."""
        for name, check in self.parts:
            how = check()
            if how is not None:
                return f"{name} {how}"
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            death = self.check()
            if death is not None and not self._stop.is_set():
                self.death = death
                self.on_death(death)
                return


class StepTimeout(Exception):
    """A step of the lab's bring-up did not finish in its time; the message names it."""


@contextlib.contextmanager
def bounded(step: str, seconds: float):
    """Within the block, raise StepTimeout after `seconds` (main thread only: SIGALRM).

    A step that waits for a process that never answers (Mininet waiting for a host's shell)
    would otherwise hang the lab silently.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum, _frame):
        raise StepTimeout(f"bring-up step '{step}' did not finish within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
