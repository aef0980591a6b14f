"""`lab sweep`: every point of a sweep file, each repetition a lab run of its own.

A run is one repetition of one point: a whole `run_compare` (bring-up, the point's cells,
teardown) on the point's own topology file, with the repetition's seed. It is done in a
scratch folder and then committed: renamed, whole, to OUT/runs/<run id>/, where the run id
says which point (a hash of everything the run depends on) and which seed. A run already
there is finished: a second `lab sweep` skips it, and a second copy of the same run (a
cluster that ran it twice) is dropped, never counted. This module runs the points one at a
time on this machine; measurements.sweep_ray runs them on a Ray cluster; both report through
`progress(SweepEvent)` and print nothing.

    OUT/sweep.yaml                the sweep file of the latest start
    OUT/runs/<point>-s<seed>/     a finished run: run.json (point, seed, where, how long),
                                  the point's topology and services.yaml (its geo biases)
                                  beside compare's raw files, results.json, lab.log
    OUT/failed/<run id>-<time>/   a run that failed, kept to look at (it runs again next time)
    OUT/sweep-report.md, sweep-results.json, sweep-<parameter>.png   (measurements.report.sweep)
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from lab.files import write_json
from measurements.progress import LogProgress
from measurements.sweepfile import Point, Sweep

RUN_FILE = "run.json"  # written last: a run folder with it is complete


@dataclass(frozen=True)
class RunSpec:
    """One repetition of one point: all a machine needs to run it, the caller's files aside."""

    sweep: str
    point: Point
    repetition: int
    seed: int

    @property
    def id(self) -> str:
        return f"{self.point.id}-s{self.seed}"


@dataclass(frozen=True)
class SweepEvent:
    """What the command line shows: one line per event."""

    kind: str  # "skipped" (finished before), "started", "finished", "failed"
    run: RunSpec
    done: int  # runs finished, this start and before
    total: int
    seconds: float | None = None  # how long the run took
    left_s: float | None = None  # an estimate of the time the remaining runs take
    where: str = ""  # the machine that ran it
    error: str = ""


@dataclass
class SweepOutcome:
    out: Path
    finished: list[str] = field(default_factory=list)  # run ids finished by this start
    skipped: list[str] = field(default_factory=list)  # run ids finished before
    failed: dict[str, str] = field(default_factory=dict)  # run id -> error


def plan(sweep: Sweep) -> list[RunSpec]:
    """Every run: the first repetition of every point, then the second, ..."""
    return [RunSpec(sweep.name, point, r, seed) for r, seed in enumerate(sweep.seeds())
            for point in sweep.points]


def run_dir(out: Path, run: RunSpec) -> Path:
    return Path(out) / "runs" / run.id


def is_finished(out: Path, run: RunSpec) -> bool:
    return (run_dir(out, run) / RUN_FILE).exists()


def execute(run: RunSpec, work: Path, lab_factory=None) -> Path:
    """Run one point's repetition into the empty folder `work` and return it.

    The lab's own output goes to work/lab.log. Raises whatever the run raises."""
    from measurements.compare import run_compare

    point = run.point
    if lab_factory is None:
        from controllers.forwarding import make_lab as lab_factory
    started = time.time()
    # The comparison writes into `work` only when it is empty (earlier results are never
    # overwritten): the point's files and the log wait beside it, then join its raw files.
    with tempfile.TemporaryDirectory(prefix="hclab-point-") as scratch:
        inputs = Path(scratch)
        topology = inputs / point.topology_name  # run_compare copies it next to its raw files
        topology.write_text(point.topology_yaml)
        services = None
        if point.services_yaml:
            services = inputs / "services.yaml"
            services.write_text(point.services_yaml)
        factory = partial(lab_factory, links=point.links, calibrate=point.calibrate,
                          services=services)
        try:
            with open(inputs / "lab.log", "w") as log:
                result = run_compare(topology, strategies=list(point.strategies),
                                     scenarios=list(point.scenarios), samples=point.samples,
                                     out_dir=work, progress=LogProgress(log),
                                     lab_factory=factory,
                                     failure_window_s=point.failure_window_s, seed=run.seed)
        finally:
            work.mkdir(parents=True, exist_ok=True)
            for name in ("lab.log", "services.yaml"):
                if (inputs / name).exists():
                    shutil.copy(inputs / name, work / name)
    if not result.cells:
        raise RuntimeError("the run measured no cell (see lab.log)")
    record = {"id": run.id, "sweep": run.sweep, "point": point.id, "label": point.label,
              "swept": point.swept, "params": point.params, "repetition": run.repetition,
              "seed": run.seed, "host": socket.gethostname(), "pid": os.getpid(),
              "started": started, "seconds": round(time.time() - started, 3)}
    write_json(work / RUN_FILE, record)
    return work


def commit(out: Path, run: RunSpec, finished: Path) -> bool:
    """Move a finished run folder into place, whole; False (and dropped) if it is there."""
    if not (finished / RUN_FILE).exists():
        raise ValueError(f"{finished} is not a finished run (no {RUN_FILE})")
    target = run_dir(out, run)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(finished, target)  # atomic; fails if the target is a folder with files
    except OSError:
        if not is_finished(out, run):
            raise
        shutil.rmtree(finished)
        return False
    return True


def keep_failed(out: Path, run: RunSpec, work: Path) -> Path | None:
    """A failed attempt's folder, moved to OUT/failed/ for a look (None if it has nothing)."""
    if not work.exists():
        return None
    dest = Path(out) / "failed" / f"{run.id}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(work), dest)
    return dest


def attempt_dir(out: Path, run: RunSpec) -> Path:
    """Scratch folder of a run under way in OUT/runs/ (the same file system as its target)."""
    return Path(out) / "runs" / f".attempt-{run.id}"


class Tracker:
    """Counts finished runs and estimates the time left; hands events to `progress`."""

    def __init__(self, out: Path, runs: list[RunSpec], progress: Callable[[SweepEvent], None],
                 parallel: int = 1):
        self.outcome = SweepOutcome(Path(out))
        self.progress, self.parallel, self.total = progress, max(1, parallel), len(runs)
        self.durations: list[float] = []
        self.todo = []
        for run in runs:
            if is_finished(out, run):
                self.outcome.skipped.append(run.id)
                self.progress(SweepEvent("skipped", run, self.done, self.total))
            else:
                self.todo.append(run)

    @property
    def done(self) -> int:
        return len(self.outcome.skipped) + len(self.outcome.finished)

    def left_s(self) -> float | None:
        if not self.durations:
            return None
        remaining = self.total - self.done - len(self.outcome.failed)
        return sum(self.durations) / len(self.durations) * remaining / self.parallel

    def started(self, run: RunSpec, where: str = "") -> None:
        self.progress(SweepEvent("started", run, self.done, self.total, left_s=self.left_s(),
                                 where=where))

    def finished(self, run: RunSpec, seconds: float, where: str, counted: bool) -> None:
        if counted:
            self.outcome.finished.append(run.id)
            self.durations.append(seconds)
        self.progress(SweepEvent("finished" if counted else "skipped", run, self.done,
                                 self.total, seconds, self.left_s(), where))

    def failed(self, run: RunSpec, error: str, where: str = "") -> None:
        self.outcome.failed[run.id] = error
        self.progress(SweepEvent("failed", run, self.done, self.total, left_s=self.left_s(),
                                 where=where, error=error))


def prepare(sweep: Sweep, out: Path) -> list[RunSpec]:
    """The output folder with the sweep file in it; every run of the sweep."""
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if Path(sweep.file).is_file():
        shutil.copyfile(sweep.file, out / "sweep.yaml")
    return plan(sweep)


def run_local(sweep: Sweep, out: Path, progress: Callable[[SweepEvent], None],
              lab_factory=None) -> SweepOutcome:
    """The sweep's unfinished runs, one at a time on this machine."""
    tracker = Tracker(out, prepare(sweep, out), progress)
    for run in tracker.todo:
        work = attempt_dir(out, run)
        shutil.rmtree(work, ignore_errors=True)  # what a killed attempt left
        tracker.started(run, socket.gethostname())
        t0 = time.monotonic()
        try:
            execute(run, work, lab_factory)
        except Exception as exc:  # noqa: BLE001 - the run failed; the sweep goes on
            kept = keep_failed(out, run, work)
            tracker.failed(run, f"{type(exc).__name__}: {exc}" + (f" (kept in {kept})"
                                                                  if kept else ""))
            continue
        tracker.finished(run, time.monotonic() - t0, socket.gethostname(),
                         commit(out, run, work))
    return tracker.outcome
