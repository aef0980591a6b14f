"""Statistics over latency samples: percentiles and the bootstrap CI on known data."""

from __future__ import annotations

import numpy as np
import pytest

from measurements.stats import bootstrap_median_ci, percentile, summarize


def test_percentiles_interpolate_linearly_between_order_statistics():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # order does not matter
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)  # 4 + 0.8 * (5 - 4)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_rejects_empty_input_and_bad_rank():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_bootstrap_of_constant_data_is_that_constant():
    assert bootstrap_median_ci([7.0] * 50) == (7.0, 7.0)


def test_bootstrap_is_seeded_and_brackets_the_median():
    data = np.random.default_rng(1).normal(10.0, 2.0, size=400)
    low, high = bootstrap_median_ci(data, seed=3)
    assert (low, high) == bootstrap_median_ci(data, seed=3)  # reproducible
    assert low < float(np.median(data)) < high
    # Standard error of the median of N(10, 2), n = 400: 1.2533 * 2 / 20 = 0.125;
    # a 95 % interval is about +-1.96 of that, wide 0.49. The bootstrap lands near it.
    assert 0.3 < high - low < 0.75
    assert low > 9.5 and high < 10.5


def test_bootstrap_interval_narrows_with_more_samples():
    rng = np.random.default_rng(7)
    small = bootstrap_median_ci(rng.exponential(1.0, 50))
    large = bootstrap_median_ci(rng.exponential(1.0, 5000))
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_summary_of_known_data():
    s = summarize([float(v) for v in range(1, 101)])
    assert s.n == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p95_ms == pytest.approx(95.05)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.ci95_low_ms < 50.5 < s.ci95_high_ms
    assert set(s.as_dict()) == {"n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "ci95_low_ms",
                                "ci95_high_ms"}


def test_summary_of_nothing_has_no_figures():
    s = summarize([])
    assert s.n == 0 and s.p50_ms is None and s.ci95_low_ms is None
