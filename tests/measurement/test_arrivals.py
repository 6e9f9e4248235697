"""The arrival schedule: Poisson by default, gamma for bursts, bounded by duration and count."""

from __future__ import annotations

import random
import statistics

import pytest

from swiftshot.benchmarks.arrivals import arrival_times


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip([0.0, *times], times, strict=False)]


def test_poisson_arrivals_have_the_asked_mean_and_exponential_spread():
    times = arrival_times(50.0, 400.0, rng=random.Random(1))
    gaps = _gaps(times)
    assert len(times) == pytest.approx(50 * 400, rel=0.03)
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.03)
    # Exponential gaps: standard deviation equals the mean (coefficient of variation 1).
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_changes_spread_not_rate(burstiness):
    gaps = _gaps(arrival_times(20.0, 1000.0, burstiness=burstiness, rng=random.Random(2)))
    assert statistics.fmean(gaps) == pytest.approx(1 / 20, rel=0.05)
    cv2 = (statistics.stdev(gaps) / statistics.fmean(gaps)) ** 2
    assert cv2 == pytest.approx(1 / burstiness, rel=0.15)


def test_schedule_is_increasing_and_bounded():
    times = arrival_times(100.0, 3.0, rng=random.Random(3))
    assert all(0 < a < b for a, b in zip(times, times[1:], strict=False))
    assert times[-1] < 3.0
    assert len(arrival_times(100.0, 3.0, max_requests=7, rng=random.Random(3))) == 7
    assert arrival_times(100.0, 3.0, max_requests=7, rng=random.Random(3)) == times[:7]


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0, "duration_s": 1}, "rate"),
    ({"rate": 1, "duration_s": 0}, "duration"),
    ({"rate": 1, "duration_s": 1, "burstiness": 0}, "burstiness"),
    ({"rate": 1, "duration_s": 1, "max_requests": 0}, "max requests"),
])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        arrival_times(**kwargs)
