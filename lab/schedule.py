"""Playing links' schedules in a running lab, and logging them as applied.

A `SchedulePlayer` takes the links that follow a schedule (topologies.trace: by link index),
starts them all at one moment, and at each time any of them changes puts the new points in
force through the link emulation (lab.emulation `set_points`: the delay line's reload, or
`tc qdisc change`). Every change is appended to a JSON-lines log as it was applied:

    {"t_s": scheduled run time, "applied_s": run time once in force, "time": wall clock,
     "link": index, "name": "a-b", "delay_ms": .., "jitter_ms": .., "loss_pct": ..,
     "hold_ms": what the emulator holds now}

On stop every link goes back to its configured delay, jitter and loss.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
from collections.abc import Iterator
import time
from pathlib import Path

from topologies.model import Schedule, TracePoint

def timeline(schedules: dict[int, Schedule]) -> Iterator[tuple[float, dict[int, TracePoint]]]:
    """The changes of all schedules (run time s, link index -> point), grouped by moment."""
    def tagged(index: int, schedule: Schedule):
        return ((t, index, point) for t, point in schedule.iter_changes())

    merged = heapq.merge(*[tagged(i, s) for i, s in schedules.items()], key=lambda c: c[:2])
    for t, group in itertools.groupby(merged, key=lambda c: round(c[0], 6)):
        yield t, {index: point for _, index, point in group}


class SchedulePlayer:
    """Plays `schedules` (link index -> Schedule) on `emulation` in a thread of its own."""

    def __init__(self, emulation, schedules: dict[int, Schedule], log_path: Path):
        self.emulation = emulation
        self.schedules = schedules
        self.log_path = Path(log_path)
        self.start_time: float | None = None  # wall clock at run time 0
        self._start_mono = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> "SchedulePlayer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        self._start_mono = time.monotonic()
        self.start_time = time.time()
        self._thread = threading.Thread(target=self._run, name="schedule", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop playing and give every scheduled link its configured figures back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        names = {link.index: link.model for link in self.emulation.links}
        self.emulation.set_points({i: TracePoint(0.0, names[i].delay_ms, names[i].jitter_ms,
                                                 names[i].loss_pct) for i in self.schedules})

    def __enter__(self) -> "SchedulePlayer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            for t, points in timeline(self.schedules):
                if self._stop.wait(max(0.0, self._start_mono + t - time.monotonic())):
                    return
                self.emulation.set_points(points)
                self._log(t, points)
        except BaseException as exc:  # noted for the caller: a thread cannot raise to it
            self.error = exc

    def _log(self, t: float, points: dict[int, TracePoint]) -> None:
        applied = time.monotonic() - self._start_mono
        links = {link.index: link for link in self.emulation.links}
        with open(self.log_path, "a") as f:
            for index in points:
                link = links[index]
                f.write(json.dumps({
                    "t_s": round(t, 6), "applied_s": round(applied, 6),
                    "time": round(self.start_time + applied, 6), "link": index,
                    "name": link.name, "delay_ms": link.delay_ms, "jitter_ms": link.jitter_ms,
                    "loss_pct": link.loss_pct, "hold_ms": round(link.applied_hold_ms, 4)}) + "\n")


def scheduled_links(topology) -> dict[int, Schedule]:
    """The topology's links that follow a schedule, by index."""
    return {link.index: link.schedule for link in topology.links if link.schedule is not None}
