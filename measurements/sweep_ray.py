"""`lab sweep --cluster ADDRESS`: a sweep's runs on a Ray cluster, one lab per worker machine.

Every worker machine offers one custom resource "lab" (`ray start ... --resources
'{"lab": 1}'`) and each run asks for it, so Ray runs at most one lab per machine at a time
and queues the rest. A run is a Ray task: it runs in a scratch folder on the worker and
returns the finished folder as a gzipped tar archive; the caller commits each archive as it
comes back (measurements.sweep.commit: atomic, by run id, a second copy dropped). A worker
process or machine lost during a run fails that task with a system error, which Ray answers
by running the task again, elsewhere if the machine is gone (up to MAX_RETRIES times); the
lost attempt returns nothing, so nothing is counted twice. A run that fails on its own (the
lab did not come up, say) is not retried here: it is reported, and runs again at the next
`lab sweep`.
"""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

from measurements.sweep import (SweepEvent, SweepOutcome, Tracker, attempt_dir, commit,
                                execute, keep_failed, prepare)
from measurements.sweepfile import Sweep

LAB_RESOURCE = "lab"
MAX_RETRIES = 3  # attempts after a lost worker, per run


def pack(folder: Path) -> bytes:
    """A folder as a gzipped tar archive (its contents at the archive's top)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)
    return buffer.getvalue()


def unpack(archive: bytes, folder: Path) -> Path:
    """An archive from `pack` into the new folder `folder`."""
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        for member in members:  # Python 3.11.2 has no extraction filter: only plain
            name = Path(member.name)  # files and folders inside `folder`
            if name.is_absolute() or ".." in name.parts or not (member.isfile()
                                                                  or member.isdir()):
                raise ValueError(f"unexpected archive member {member.name!r}")
        tar.extractall(folder, members=members)
    return folder


def run_on_worker(run) -> dict:
    """The Ray task: one run in a scratch folder of this machine, returned as an archive.

    The scratch folder is named after the run, so an attempt killed on this machine leaves
    nothing the next one trips over. A failure comes back as {"error": ...} with the end of
    the lab's log."""
    scratch = Path(tempfile.gettempdir()) / "hclab-sweep" / run.id
    shutil.rmtree(scratch, ignore_errors=True)
    t0 = time.monotonic()
    where = socket.gethostname()
    try:
        execute(run, scratch)
        return {"archive": pack(scratch), "seconds": time.monotonic() - t0, "where": where}
    except Exception as exc:  # noqa: BLE001 - reported to the caller, who decides
        log = scratch / "lab.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        return {"error": f"{type(exc).__name__}: {exc}", "log_tail": tail, "where": where}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class ClusterError(RuntimeError):
    """The cluster cannot run the sweep; the message says why."""


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address must answer: Ray itself retries an unreachable one for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", or a ray:// client address: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address}: "
                           f"{exc.strerror or exc}") from None


def run_cluster(sweep: Sweep, out: Path, address: str,
                progress: Callable[[SweepEvent], None]) -> SweepOutcome:
    """The sweep's unfinished runs on the Ray cluster at `address`, results as they finish."""
    import ray

    check_reachable(address)
    runs = prepare(sweep, out)
    ray.init(address=address, logging_level="ERROR", log_to_driver=False,
             configure_logging=True)
    try:
        labs = int(ray.cluster_resources().get(LAB_RESOURCE, 0))
        tracker = Tracker(out, runs, progress, parallel=labs)
        if tracker.todo and not labs:
            raise ClusterError(f"the Ray cluster at {address} has no worker offering a "
                               f"{LAB_RESOURCE!r} resource (start workers with "
                               f"--resources '{{\"{LAB_RESOURCE}\": 1}}')")
        task = ray.remote(run_on_worker).options(
            resources={LAB_RESOURCE: 1}, num_cpus=0, max_retries=MAX_RETRIES,
            retry_exceptions=False)
        pending = {task.remote(run): run for run in tracker.todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # retries used up: workers kept dying
                tracker.failed(run, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            if "error" in result:
                work = attempt_dir(out, run)
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                (work / "lab.log").write_text(result["log_tail"])
                kept = keep_failed(out, run, work)
                tracker.failed(run, f"{result['error']} (end of its log in {kept})",
                               result["where"])
                continue
            work = attempt_dir(out, run)
            shutil.rmtree(work, ignore_errors=True)
            unpack(result["archive"], work)
            tracker.finished(run, result["seconds"], result["where"], commit(out, run, work))
    finally:
        ray.shutdown()
    return tracker.outcome
