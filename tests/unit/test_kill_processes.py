"""Stopping processes by pid: only the process that was found is signalled."""

from __future__ import annotations

import subprocess
import sys

from lab.cleanup import kill_processes


def test_a_found_process_is_stopped_and_a_gone_one_is_skipped():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        assert kill_processes([proc.pid, gone.pid], grace=5) == [proc.pid]
        assert proc.wait(timeout=5) < 0  # it died of our signal
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace():
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                             "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True);"
                             " time.sleep(60)"], stdout=subprocess.PIPE)
    proc.stdout.readline()  # SIGTERM is ignored from here on
    try:
        assert kill_processes([proc.pid], grace=0.2) == [proc.pid]
        assert proc.wait(timeout=5) == -9
    finally:
        if proc.poll() is None:
            proc.kill()
