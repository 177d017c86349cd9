"""The finite-horizon boundary holds its error rate when a Brownian motion is watched up to the
horizon, and is tighter at the horizon than the all-time line."""

import math

import numpy as np
import pytest

from analyzers.stats.sequential_bounds import horizon_crossing, horizon_line, line_offset


@pytest.mark.parametrize("tilt", [0.0, 0.3, 0.6])
def test_crossing_rate_of_a_watched_brownian_motion_stays_within_alpha(tilt):
    alpha, steps, n = 0.01, 400, 40_000
    a, b = horizon_line(alpha, 1.0, tilt)
    assert horizon_crossing(a, b, 1.0) == pytest.approx(alpha, rel=1e-6)
    rng = np.random.default_rng(20261207)
    t = np.arange(1, steps + 1) / steps
    walks = np.cumsum(rng.normal(0.0, math.sqrt(1.0 / steps), (n, steps)), axis=1)
    rate = float((walks >= a + b * t).any(axis=1).mean())
    # discrete looks cross less often than continuous monitoring; 4 binomial SDs of slack
    assert rate <= alpha + 4 * math.sqrt(alpha * (1 - alpha) / n)
    # ...but not much less: 400 looks come close to continuous monitoring
    assert rate >= 0.6 * alpha


def test_flat_line_is_the_reflection_principle_and_beats_the_all_time_line():
    a, b = horizon_line(0.01, 1.0, 0.0)
    assert b == 0.0
    assert a == pytest.approx(2.5758, abs=1e-3)  # z_{0.995}
    assert float(line_offset(np.array([1.0]), 0.01, 1.0)[0]) == pytest.approx(3.035, abs=1e-3)


def test_horizon_scales_with_intrinsic_time():
    a1, b1 = horizon_line(0.01, 1.0, 0.4)
    a9, b9 = horizon_line(0.01, 9.0, 0.4)
    assert a9 == pytest.approx(3 * a1, rel=1e-6)
    assert b9 == pytest.approx(b1 / 3, rel=1e-6)


def test_tilt_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="tilt"):
        horizon_line(0.01, 1.0, 1.0)
