"""The kernel's same-page merging (KSM) for the switch daemons, on while a lab comes up.

Why: every site's ovs-vswitchd allocates, for its main thread, the userspace datapath's
exact-match and signature-match flow caches (about 5.5 and 4 MiB) and fills them with the
same empty entries, so nearly all of its 17 MiB is the same pages in every switch. KSM keeps
one copy. The switch daemons ask for it (`allow_merging`, the prctl PR_SET_MEMORY_MERGE of
Linux 6.4 and later, inherited over fork and exec here on 6.18) and `Merging` runs the
kernel's scanner while the lab comes up, then restores its settings. Nothing else on the machine is merged: the
scanner only looks at processes that asked, so a killed run's scanner, left on, has nothing
to scan once its switches are gone. Where the kernel has no KSM it is a no-op.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

KSM = Path("/sys/kernel/mm/ksm")
PR_SET_MEMORY_MERGE = 67
# Pages scanned per wake-up (every 20 ms by default): 1 GB/s while the switches start, so
# that merging keeps up with a bring-up of hundreds of them.
PAGES_TO_SCAN = 5000

_prctl = ctypes.CDLL(None, use_errno=True).prctl


def allow_merging() -> None:
    """Let the kernel merge this process's pages and its children's (a Popen preexec_fn:
    nothing but one system call; a kernel without it just leaves the pages unmerged)."""
    _prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)


class Merging:
    """The scanner on while the switches start, off once the lab is up (`settle`): merged pages
    stay merged, and each is copied again only at its first write. Left scanning (20 MB/s, the
    kernel's default rate), it cost every path about 0.05 ms of round trip (`lab verify
    --no-calibrate`, default topology). `settle` and `stop` put back the settings that were
    there: a machine whose owner runs the scanner keeps it running."""

    SETTINGS = ("pages_to_scan", "run")  # restored in this order: the scanner stops last

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def start(self) -> "Merging":
        try:
            self.saved = {name: (KSM / name).read_text().strip() for name in self.SETTINGS}
            (KSM / "pages_to_scan").write_text(str(PAGES_TO_SCAN))
            (KSM / "run").write_text("1")
        except OSError:  # no KSM in this kernel, or not ours to change
            self.stop()
        return self

    def settle(self) -> None:
        """The lab is up: the scanner goes back to the machine's own settings (off, unless
        its owner runs it); what it merged stays merged."""
        self._restore()

    def _restore(self) -> None:
        for name, value in self.saved.items():
            try:
                (KSM / name).write_text(value)
            except OSError:
                pass

    def stop(self) -> None:
        self._restore()
        self.saved = {}
