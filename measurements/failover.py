"""The database's failover manager: promotes the standby when the primary stops answering.

    python -m measurements.failover CONFIG.json

Started by `lab compare` inside the standby's host, as a real deployment runs one next to its
standby (Patroni, repmgr, RDS's own): every `interval_s` it opens a TCP connection to the
primary's PostgreSQL port; after `misses` failed attempts in a row (refused, or no answer
within `timeout_s`) it promotes the standby with pg_promote() over its own connection and
exits. A silent cut changes no carrier and resets no connection, so only such active
checks notice it. Output (JSON lines in the config's `out` file, flushed as it goes):

    {"type": "ready", "time": <unix time>}
    {"type": "promoted", "first_miss": <unix time>, "detected": <unix time>,
     "promoted": <unix time>, "ok": true}

config: {"primary": {"host": ip, "port": int}, "standby": {psycopg target}, "interval_s",
"timeout_s", "misses", "out"}. The password comes in PGPASSWORD; SIGTERM stops it quietly.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from pathlib import Path

from measurements.dbbench_worker import Stop, connect, write_line

PROMOTE_WAIT_S = 10


def primary_answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def watch(config: dict, out) -> None:
    """Check the primary until `misses` checks in a row fail, then promote the standby."""
    standby = connect(config["standby"])
    primary = config["primary"]
    interval, misses = config["interval_s"], config["misses"]
    write_line(out, {"type": "ready", "time": time.time()})
    failed, first_miss = 0, None
    try:
        while True:
            started = time.time()
            if primary_answers(primary["host"], primary["port"], config["timeout_s"]):
                failed, first_miss = 0, None
            else:
                failed += 1
                first_miss = first_miss or started
                if failed >= misses:
                    detected = time.time()
                    ok = standby.execute("SELECT pg_promote(true, %s)",
                                         (PROMOTE_WAIT_S,)).fetchone()[0]
                    write_line(out, {"type": "promoted", "first_miss": first_miss,
                                     "detected": detected, "promoted": time.time(),
                                     "ok": bool(ok)})
                    return
            time.sleep(max(0.0, started + interval - time.time()))
    finally:
        standby.close()


def _stop(_signum, _frame):
    raise Stop()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m measurements.failover CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it with SIGTERM
    with open(config["out"], "a") as out:
        try:
            watch(config, out)
        except Stop:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
