"""The database workload's worker pool (measurements/dbworkload.py WorkerPool): one process
serving job after job, a failed job reported and survived, a dead worker replaced."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from lab.procs import child_env
from measurements.dbworkload import WorkerPool


class Host:
    def popen(self, argv, **kwargs):
        return subprocess.Popen(argv, **kwargs)


class Lab:
    def host(self, _name):
        return Host()


def job(tmp: Path, name: str, **config) -> Path:
    """A workload job that needs no server (no operations) unless `config` says otherwise."""
    path = tmp / f"{name}.json"
    path.write_text(json.dumps({"mode": "workload", "patients": 1, "page_queries": 1,
                                "operations": [], "samples": 0, "out": str(tmp / f"{name}.jsonl"),
                                **config}))
    return path


def finish(found, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while found.poll() is None:
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.05)
    return found.returncode


def test_one_worker_serves_jobs_in_turn_and_survives_a_failed_one(tmp_path: Path) -> None:
    pool = WorkerPool(Lab(), child_env(), tmp_path)
    try:
        pool.start(["h1"])
        worker = pool.procs["h1"]
        assert finish(pool.submit("h1", job(tmp_path, "a"))) == 0
        lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
        assert lines[-1]["type"] == "done" and lines[-1]["pid"] == worker.pid
        # Nothing listens on port 1 of loopback: the job fails, the worker goes on.
        bad = job(tmp_path, "b", primary={"host": "127.0.0.1", "port": 1, "dbname": "x",
                                          "user": "x"})
        assert finish(pool.submit("h1", bad)) == 1
        assert "OperationalError" in bad.with_suffix(".err").read_text()
        assert finish(pool.submit("h1", job(tmp_path, "c"))) == 0
        assert pool.procs["h1"].pid == worker.pid
    finally:
        pool.stop()
    assert worker.poll() is not None


def test_a_dead_worker_fails_its_job_and_is_replaced(tmp_path: Path) -> None:
    pool = WorkerPool(Lab(), child_env(), tmp_path)
    try:
        pool.start(["h1"])
        first = pool.procs["h1"]
        # A job that waits for a go file nobody makes: the worker is killed under it.
        waiting = pool.submit("h1", job(tmp_path, "w", go_file=str(tmp_path / "never")))
        first.kill()
        assert finish(waiting) != 0
        assert "the pool's worker exited" in waiting.config.with_suffix(".err").read_text()
        assert finish(pool.submit("h1", job(tmp_path, "d"))) == 0
        assert pool.procs["h1"].pid != first.pid
    finally:
        pool.stop()
