"""Signals that stop the lab turn into exceptions, so teardown in `finally` always runs.

Python runs `finally` on Ctrl-C (KeyboardInterrupt) but not when SIGTERM or SIGHUP kill the
process; here they raise `Interrupted` instead. While teardown runs, further signals are
held off so that a second Ctrl-C cannot leave the machine half cleaned.
"""

from __future__ import annotations

import contextlib
import signal


class Interrupted(KeyboardInterrupt):
    """The lab was asked to stop by a signal."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise(signum, _frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_signals_raise():
    """Within the block, SIGINT, SIGTERM and SIGHUP raise Interrupted."""
    previous = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def signals_held():
    """Within the block, stop signals are blocked (delivered when it ends)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
