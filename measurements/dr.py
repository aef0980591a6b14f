"""Disaster recovery beside `lab compare`: the failover manager, fencing, the addresses, fail-back.

`Recovery` starts the failover manager (measurements/failover.py) next to the standby and
follows what it writes. The moment it has promoted the standby, `Recovery` (as the cluster
manager of a real deployment would: Patroni's callbacks, a DNS or VIP update):

1. fences the old primary (measurements/failback.py `fence`: stopped through a path the
   network failure does not cut), so it acknowledges no write from anywhere after that
   (the record's "fenced": when its shutdown began);
2. leads the write address ("db-write", which always leads to its first server) and the read
   address ("db", which no longer offers the old primary) to the new primary (the
   controller's PUT /v1/endpoints). This comes first: it takes milliseconds, while the
   old primary's exit can take seconds (its shutdown starts refusing writes at once, then
   waits for a standby that is cut off: `fence`).

After the cell's repair, `fail_back` brings the old primary back as a standby of the new one
without losing an acknowledged write, restores the roles (or keeps them), leads both addresses
to the primary then the standby again, and starts a new failover manager.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from controllers.services import READ_SERVICE, WRITE_SERVICE
from lab.procs import stop_process
from measurements.failback import fail_back, fence
from measurements.jsonlines import LineReader
from measurements.postgres import Databases

POLL_S = 0.02
READY_TIMEOUT_S = 20.0
FAILBACK_MODES = ("restore", "keep")


class RecoveryError(RuntimeError):
    """The failover manager did not start, or a fail-back failed; the message says why."""


class Recovery:
    """The failover manager's process, the reaction to its promotion, and fail-back."""

    def __init__(self, dbs: Databases, controller, spawn, scratch: Path, settings: dict,
                 failback: str = "restore"):
        """spawn(host, module, name, config) starts `python -m module` inside a lab host."""
        if failback not in FAILBACK_MODES:
            raise ValueError(f"failback must be one of {', '.join(FAILBACK_MODES)}")
        self.dbs, self.controller, self.spawn = dbs, controller, spawn
        self.scratch, self.settings, self.failback = scratch, settings, failback
        self.process = None
        self.promotion: dict | None = None  # the failover manager's record, plus ours
        self.old_primary = None
        self._watch: threading.Thread | None = None
        self._stop = threading.Event()
        self._busy = threading.Event()  # between the promotion's line and the reaction's end
        self.error: Exception | None = None
        self.runs = 0

    def start(self) -> None:
        """The failover manager next to the standby; returns once it watches the primary."""
        standby = self.dbs.standby
        if standby is None:
            return
        self.runs += 1
        out = self.scratch / f"failover-{self.runs}.jsonl"
        out.unlink(missing_ok=True)
        self.process = self.spawn(standby.name, "measurements.failover", f"failover-{self.runs}", {
            **self.settings, "primary": {"host": self.dbs.primary.ip, "port": self.dbs.port},
            "standby": self.dbs.conninfo(standby), "out": str(out)})
        reader = LineReader(out)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(r["type"] == "ready" for r in reader.read()):
                self._stop.clear()
                self._watch = threading.Thread(target=self._follow, args=(reader,),
                                               name="failover-watch", daemon=True)
                self._watch.start()
                return
            time.sleep(0.05)
        raise RecoveryError(f"{standby.name}: the failover manager did not start: "
                            f"{out.with_suffix('.err').read_text(errors='replace')[-500:]}")

    def _follow(self, reader: LineReader) -> None:
        while not self._stop.is_set():
            for record in reader.read():
                if record["type"] == "promoted":
                    self._busy.set()
                    try:
                        self.promoted(record)
                    except Exception as exc:  # handed to the cell by take_promotion
                        self.error = exc
                    finally:
                        self._busy.clear()
                    return
            time.sleep(POLL_S)

    def promoted(self, record: dict) -> None:
        """The standby was promoted: lead both addresses to it (a few ms), then fence the old
        primary (its fast shutdown refuses new sessions and ends the others at once; the
        process may take seconds to exit if its standby was cut off silently)."""
        old, new = self.dbs.primary, self.dbs.standby
        self.controller.set_endpoints(WRITE_SERVICE, [new.name, old.name])  # leads to the first
        self.controller.set_endpoints(READ_SERVICE, [new.name])
        moved = time.time()
        fence(old)
        self.dbs.primary, self.dbs.standby, self.dbs.fenced = new, None, old
        self.old_primary = old
        self.promotion = {**record, "old_primary": old.name, "new_primary": new.name,
                          "addresses_moved": moved, "fenced": moved, "fence_done": time.time()}

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
            self._watch = None
        stop_process(self.process)
        self.process = None

    def take_promotion(self) -> dict | None:
        """The promotion since the last call (None if none), once the reaction to it is done."""
        while self._busy.is_set():
            time.sleep(POLL_S)
        if self.error is not None:
            error, self.error = self.error, None
            raise RecoveryError(f"reacting to the promotion: {error}") from error
        promotion, self.promotion = self.promotion, None
        return promotion

    def fail_back(self, acknowledged: set[str]) -> dict:
        """After a promotion and the repair: the old primary back without losing a write."""
        self.stop()
        old, self.old_primary = self.old_primary, None
        result = fail_back(self.dbs, old, acknowledged, restore=self.failback == "restore")
        with result.step("endpoints and failover manager"):
            order = [self.dbs.primary.name, self.dbs.standby.name]
            for service in (WRITE_SERVICE, READ_SERVICE):
                self.controller.set_endpoints(service, order)
            self.start()
        return result.as_dict()
