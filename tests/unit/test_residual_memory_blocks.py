"""The residual-memory factor is the larger of the pooled ratio (every block's squared sub-block
sums over every block's squared residuals) and the mean of each history block's own ratio.

What it assumes: the ratio, not the scale, is the same in every block (a day whose noise grows
and falls with its level keeps the same memory). Pooled sums weigh each block by its variance, so
when the white noise is much larger in some blocks (a p99 read in a wide histogram bucket, low
traffic at night) while the slow wander is not, the noisy blocks set the factor and the quiet
ones, where the wander matters most, are under-stated. The series that breaks even the average:
the memory of the quiet part is larger than the day's average, and the average does not know
which part the deploy is in."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.stats import noise

L, BLOCKS, PHI, SPAN = 180, 16, 0.3, 30


def _history(seed: int, white_sd: np.ndarray, wander_sd: np.ndarray) -> np.ndarray:
    """AR(0.9) wander (per-block scale ``wander_sd``) plus white noise (per-block ``white_sd``)."""
    rng = np.random.default_rng(seed)
    n = BLOCKS * L
    e = rng.normal(size=n) * np.sqrt(1 - 0.81)
    w = np.zeros(n)
    for i in range(1, n):
        w[i] = 0.9 * w[i - 1] + e[i]
    return w * np.repeat(wander_sd, L) + rng.normal(size=n) * np.repeat(white_sd, L)


def _factor(h: np.ndarray) -> float:
    hist = noise.history_phi(h, L)
    assert hist is not None
    return noise.residual_memory(hist, PHI, SPAN)


def _hist(h: np.ndarray) -> noise.HistoryPhi:
    hist = noise.history_phi(h, L)
    assert hist is not None and hist.resid is not None
    return hist


def _sub_sums(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = _hist(h).resid
    assert w is not None
    w = w[:, 1:] - PHI * w[:, :-1]
    k = w.shape[1] // SPAN
    sub = w[:, w.shape[1] - k * SPAN:].reshape(w.shape[0], k, SPAN)
    return np.sum(sub.sum(axis=2) ** 2, axis=1), np.sum(sub * sub, axis=(1, 2))


def _mean_ratio(h: np.ndarray) -> float:
    ss, den = _sub_sums(h)
    return float(np.mean(ss / den))


def _pooled(h: np.ndarray) -> float:
    """The former rule: every block's squared sub-block sums over every block's squared rows."""
    hist = noise.history_phi(h, L)
    assert hist is not None and hist.resid is not None
    w = hist.resid[:, 1:] - PHI * hist.resid[:, :-1]
    k = w.shape[1] // SPAN
    sub = w[:, w.shape[1] - k * SPAN:].reshape(w.shape[0], k, SPAN)
    f = float(np.sum(sub.sum(axis=2) ** 2) / np.sum(sub * sub)) / noise._white_after_line(w.shape[1], SPAN)
    return max(1.0, f)


def test_a_day_whose_noise_scales_as_a_whole_keeps_its_memory() -> None:
    ones, alt = np.ones(BLOCKS), np.array([1.0, 4.0] * (BLOCKS // 2))
    for seed in range(4):
        same = _factor(_history(seed, ones, ones))
        scaled = _factor(_history(seed, alt, alt))  # wander and white noise x4 in every other block
        # the blocks' mean ratio is the homogeneous day's; the factor (the larger of it and the
        # pooled ratio, where the x4 blocks weigh 16 times as much) is never below it
        assert scaled >= 0.9 * same, (seed, same, scaled)
        assert _mean_ratio(_history(seed, alt, alt)) == pytest.approx(_mean_ratio(_history(seed, ones, ones)), rel=0.05)


def test_noisy_blocks_do_not_hide_the_wander_of_the_quiet_ones() -> None:
    ones, alt = np.ones(BLOCKS), np.array([1.0, 4.0] * (BLOCKS // 2))
    for seed in range(4):
        quiet = _factor(_history(seed, ones, ones))
        loud = _factor(_history(seed, 4.0 * ones, ones))
        mixed = _factor(_history(seed, alt, ones))  # white noise x4 in every other block, same wander
        # the average of the two kinds of block; pooled sums gave about the loud blocks' own
        pooled = _pooled(_history(seed, alt, ones))
        assert mixed > 1.5 * loud and mixed > 1.5 * pooled, (seed, quiet, loud, mixed, pooled)
        assert pooled < 1.3 * loud, (seed, quiet, loud, mixed, pooled)
        # what it cannot do: tell which kind of block the deploy sits in
        assert mixed < quiet, (seed, quiet, loud, mixed)
