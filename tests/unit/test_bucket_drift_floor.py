"""The bucket mix's dispersion is never below 1 without a floor of its own
(analyzers.stats.bucket_drift): the scaled dispersion is ``1 + kappa n`` with ``kappa`` floored
at 0, so a mix that moves less than independent requests would (identical windows: every G is 0)
is judged as independent requests, never as more certain than them."""

from __future__ import annotations

import numpy as np

from analyzers.stats.bucket_drift import drift_adjusted_comparison

LES = (0.01, 0.05, 0.1, 0.5, 1.0, float("inf"))


def test_identical_windows_give_dispersion_one() -> None:
    window = [100.0, 600.0, 1500.0, 2800.0, 2950.0, 3000.0]  # cumulative per le
    res = drift_adjusted_comparison(LES, [window] * 5, window)
    assert res.dispersion == 1.0
    assert res.statistic == 0.0 and res.p_value == 1.0


def test_under_dispersed_windows_never_go_below_one() -> None:
    """Blocks drawn with less spread than a multinomial (rounded expected counts plus a +-1
    jitter, seeded): G per dof well under 1 between adjacent blocks, dispersion exactly 1."""
    probs = np.array([0.03, 0.17, 0.3, 0.43, 0.05, 0.02])
    for seed in range(50):
        rng = np.random.default_rng(seed)
        n = rng.integers(2000, 20000)
        blocks = [np.cumsum(np.rint(probs * n) + rng.integers(-1, 2, probs.size)) for _ in range(6)]
        res = drift_adjusted_comparison(LES, blocks[:5], blocks[5])
        assert res.dispersion == 1.0
