"""Synthetic delay patterns for traces: a daily sine, a step change, periodic spikes.

Each pattern returns the points of a trace (topologies.trace) from its parameters alone, so
the same command line always writes the same file; `lab trace generate` writes them with a
header that records the command as the trace's source.
"""

from __future__ import annotations

import math

from topologies.model import TracePoint

DAY_S = 86_400.0


def _times(duration_s: float, step_s: float) -> list[float]:
    if step_s <= 0 or duration_s <= 0:
        raise ValueError("duration and step must be positive")
    if duration_s / step_s > 100_000:
        raise ValueError("more than 100000 rows: use a longer step")
    return [i * step_s for i in range(int(math.floor(duration_s / step_s + 1e-9)) + 1)]


def sine(base_ms: float, amplitude_ms: float, period_s: float = DAY_S,
         duration_s: float = DAY_S, step_s: float = 900.0, peak_s: float | None = None,
         ) -> list[TracePoint]:
    """base + amplitude x cos(2 pi (t - peak) / period), sampled every step (a daily load)."""
    peak = period_s / 2 if peak_s is None else peak_s
    if amplitude_ms > base_ms:
        raise ValueError("the amplitude may not exceed the base (delays stay >= 0)")
    return [TracePoint(t, round(base_ms + amplitude_ms * math.cos(2 * math.pi * (t - peak)
                                                                  / period_s), 4))
            for t in _times(duration_s, step_s)]


def step(base_ms: float, to_ms: float, at_s: float, duration_s: float) -> list[TracePoint]:
    """base until `at_s`, then `to_ms` until the end (a route change)."""
    if not 0 < at_s < duration_s:
        raise ValueError("the step must come after 0 and before the end")
    return [TracePoint(0.0, base_ms), TracePoint(at_s, to_ms),
            TracePoint(duration_s, to_ms)]


def spikes(base_ms: float, height_ms: float, every_s: float, width_s: float,
           duration_s: float, first_s: float | None = None) -> list[TracePoint]:
    """base, rising by `height_ms` for `width_s` every `every_s` (congestion episodes)."""
    if not 0 < width_s < every_s:
        raise ValueError("a spike must be shorter than the time between spikes")
    first = every_s - width_s if first_s is None else first_s
    points = [TracePoint(0.0, base_ms)]
    t = first
    while t + width_s < duration_s:
        if t > 0:
            points.append(TracePoint(t, base_ms + height_ms))
        else:
            points[0] = TracePoint(0.0, base_ms + height_ms)
        points.append(TracePoint(t + width_s, base_ms))
        t += every_s
    points.append(TracePoint(duration_s, base_ms))
    return points


PATTERNS = {"sine": sine, "step": step, "spikes": spikes}
