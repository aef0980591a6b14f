"""Statistics over latency samples: percentiles, the mean and a bootstrap CI of the median.

Pure numpy, no network: summaries are computed from saved raw samples, so a report can be
regenerated without rerunning the lab. The bootstrap is seeded, so the same samples always
give the same interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 20240501


@dataclass(frozen=True)
class Summary:
    """The figures reported for one series of latencies (milliseconds)."""

    n: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    ci95_low_ms: float | None
    ci95_high_ms: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics."""
    if len(values) == 0:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    return float(np.percentile(np.asarray(values, dtype=float), q, method="linear"))


def bootstrap_median_ci(values: Sequence[float], confidence: float = 0.95,
                        resamples: int = DEFAULT_RESAMPLES,
                        seed: int = DEFAULT_SEED) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (seeded, reproducible)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap of no values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    # In chunks, so that large series do not allocate resamples x n at once.
    chunk = max(1, 2_000_000 // data.size)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, data.size, size=(stop - start, data.size))
        medians[start:stop] = np.median(data[idx], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def summarize(values: Sequence[float], seed: int = DEFAULT_SEED,
              resamples: int = DEFAULT_RESAMPLES) -> Summary:
    """Percentiles, mean and the bootstrap CI of the median; None figures for no values."""
    if len(values) == 0:
        return Summary(0, None, None, None, None, None, None)
    data = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(data, [50, 95, 99], method="linear")
    low, high = bootstrap_median_ci(data, seed=seed, resamples=resamples)
    return Summary(n=int(data.size), p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99),
                   mean_ms=float(data.mean()), ci95_low_ms=low, ci95_high_ms=high)
