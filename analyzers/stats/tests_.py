"""Significance tests used by ``verify_series``: the max-score p-value over change shapes,
a spread test on prewhitened residuals, and a Poisson rate test for low counts.

The noise model they rest on (AR(1) around a level, phi from history) is in
:mod:`analyzers.stats.noise`. A robust score statistic (Huber psi of the prewhitened
residuals) is computed for each candidate change shape (steps at a few lags after the
deploy, linear ramps); the p-value of the largest statistic comes from the joint Gaussian
law of all candidates (Monte Carlo with a fixed seed, the same draws on every CPU: see
:func:`correlated_draws`), so scanning several shapes does not inflate false alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr, ndtri

from analyzers.stats._fast import median as _median
from analyzers.stats.noise import robust_scale


def _norm_sf(x: float) -> float:
    """Standard normal upper tail: what ``scipy.stats.norm.sf`` computes, without its per-call overhead."""
    return float(ndtr(-x))


#: Share of the level test's alpha given to a declared direction (the rest to the opposite).
EXPECT_WEIGHT = 0.8
#: Monte Carlo draws for the max-statistic p-value.
MC_DRAWS = 2000
#: Decimals of the statistics compared in the Monte Carlo count (see :func:`max_stat_pvalue`).
MC_DECIMALS = 9


@lru_cache(maxsize=64)
def _normals(seed: int, k: int) -> np.ndarray:
    """Seeded standard normal draws, cached: the same seed gives the same p-value, fast."""
    z = np.random.default_rng(seed).standard_normal((MC_DRAWS, k))
    z.setflags(write=False)
    return z


def correlated_draws(corr: np.ndarray, seed: int) -> np.ndarray:
    """``MC_DRAWS`` x k normal draws with correlation ``corr``, the same on every CPU.

    The seeded standard normals are multiplied by the **symmetric** square root of ``corr``
    (``V diag(sqrt w) V'``), which is unique: unlike ``V diag(sqrt w)`` it does not depend on
    the signs (or, for repeated eigenvalues, the basis) LAPACK picks for the eigenvectors,
    which differ between BLAS builds and CPU kernels and used to change Monte Carlo p-values
    by a few draws (0.8502 vs 0.8490 on another machine).
    """
    w, v = np.linalg.eigh(corr)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return _normals(seed, corr.shape[0]) @ root


def max_stat_pvalue(t: np.ndarray, hn: np.ndarray, seed: int, side: int = 0,
                    _draws: list[np.ndarray] | None = None) -> float:
    """p-value of the largest of correlated standard normal statistics ``t``.

    ``side=0``: two-sided, max |t|; ``side=+1``/``-1``: one-sided, max t / max -t.
    Correlations come from the normalised regressors ``hn``; Monte Carlo with a fixed
    seed, switching to the Bonferroni bound (also valid) in the far tail. ``_draws``
    (a list, empty or holding the draws of an earlier call on the same ``hn`` and seed)
    lets both sides of one test share the correlated draws.
    """
    k = t.size
    stat = np.abs(t) if side == 0 else side * t
    tmax = float(np.max(stat))
    tails = 2.0 if side == 0 else 1.0
    bonf = min(1.0, k * tails * float(_norm_sf(tmax)))
    if k == 1 or bonf <= 1e-3:
        return bonf
    if _draws:
        z = _draws[0]
    else:
        z = np.ascontiguousarray(correlated_draws(hn.T @ hn, seed).T)
        if _draws is not None:
            _draws.append(z)
    if side == 0:
        zmax = np.maximum(np.max(z, axis=0), -np.min(z, axis=0))  # max |z|, exactly
    elif side > 0:
        zmax = np.max(z, axis=0)
    else:
        zmax = -np.min(z, axis=0)  # max of -z, exactly
    # Compared on a 1e-9 grid: a last-bit difference between CPUs (BLAS kernels) cannot move a
    # draw across the observed statistic unless both sit within 1e-9 of a grid point.
    exceed = int(np.count_nonzero(np.round(zmax, MC_DECIMALS) >= round(tmax, MC_DECIMALS)))
    if exceed < 10:
        return bonf
    return min(bonf, (exceed + 1) / (MC_DRAWS + 1))


def directional_pvalue(t: np.ndarray, hn: np.ndarray, seed: int, expect: str) -> tuple[float, float]:
    """(p-value, sign of the change) for the max-statistic, using a declared direction.

    With ``expect="any"`` the test is two-sided. With ``"increase"``/``"decrease"``
    alpha is split ``EXPECT_WEIGHT`` : ``1 - EXPECT_WEIGHT`` between the declared and
    the opposite direction (a weighted Bonferroni, valid whatever the truth): more power
    for the change the deploy announced, while a move the other way is still caught.
    """
    if expect not in ("increase", "decrease"):
        p = max_stat_pvalue(t, hn, seed)
        best = int(np.argmax(np.abs(t)))
        return p, (1.0 if t[best] > 0 else -1.0)
    s = 1 if expect == "increase" else -1
    draws: list[np.ndarray] = []
    p_exp = max_stat_pvalue(t, hn, seed, side=s, _draws=draws) / EXPECT_WEIGHT
    p_opp = max_stat_pvalue(t, hn, seed, side=-s, _draws=draws) / (1.0 - EXPECT_WEIGHT)
    if p_exp <= p_opp:
        return min(1.0, p_exp), float(s)
    return min(1.0, p_opp), float(-s)


def mann_whitney_two_sided(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Mann-Whitney p-value, equal to ``scipy.stats.mannwhitneyu(x, y).pvalue``.

    Both samples above 8 points: the same normal approximation (tie-corrected, with
    continuity correction) computed directly, without scipy's per-call overhead (this
    runs once per verification). Smaller samples defer to scipy (exact method).
    """
    n1, n2 = x.size, y.size
    if n1 <= 8 or n2 <= 8:
        return float(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    both = np.concatenate([x, y])
    n = n1 + n2
    # Average ranks from one sort (what scipy.stats.rankdata gives: half-integers, so every
    # sum below is exact and does not depend on the order of summation).
    order = np.argsort(both, kind="stable")
    srt = both[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(srt[1:], srt[:-1], out=new_group[1:])
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, n))
    avg = starts + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(n)
    ranks[order] = np.repeat(avg, counts)
    u1 = float(np.sum(ranks[:n1])) - n1 * (n1 + 1) / 2.0
    u = max(u1, n1 * n2 - u1)
    tie = float(np.sum(counts.astype(float) ** 3 - counts))
    sd = np.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie / (n * (n - 1))))
    if sd <= 0:
        return 1.0
    return float(min(1.0, 2.0 * _norm_sf((u - n1 * n2 / 2.0 - 0.5) / sd)))


def spread_test(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Change in spread of prewhitened residuals: Mann-Whitney on absolute deviations.

    Each side is centred on its own median, so a level shift (which moves the centre of
    the prewhitened residuals after the deploy) does not read as a spread change. Rank
    based, so heavy tails and bursts (which arrive at random times) keep it calibrated.
    Returns (two-sided p-value, ratio of robust scales after/before); assumes the
    prewhitened rows are independent.
    """
    before = before[np.isfinite(before)]
    after = after[np.isfinite(after)]
    if before.size < 5 or after.size < 5:
        return 1.0, float("nan")
    # Each side around its own median: a level shift moves the centre, not the spread.
    a = np.abs(before - _median(before))
    b = np.abs(after - _median(after))
    sa, sb = robust_scale(before), robust_scale(after)
    # Ranked on a grid of 1e-9 of the larger scale: two deviations that differ only in their
    # last bits (another CPU's BLAS) tie on every machine instead of swapping ranks.
    unit = max(sa, sb, float(np.max(a, initial=0.0)), float(np.max(b, initial=0.0)))
    if unit > 0 and np.isfinite(unit):
        a, b = np.round(a / unit, MC_DECIMALS), np.round(b / unit, MC_DECIMALS)
    p = mann_whitney_two_sided(b, a)
    return p, (sb / sa if sa > 0 else float("inf"))


@dataclass(frozen=True)
class RateTest:
    """Outcome of :func:`poisson_rate_test`. Rates are events per unit of exposure."""

    p_value: float
    rate_before: float
    rate_after: float
    ratio_ci: tuple[float, float]
    dispersion: float
    method: str


def poisson_rate_test(
    counts_before: np.ndarray,
    counts_after: np.ndarray,
    exposure_before: np.ndarray,
    exposure_after: np.ndarray,
    alpha: float = 0.05,
    expect: str = "any",
) -> RateTest:
    """Compare event rates before/after for low counts (errors a minute, rare events).

    A declared ``expect`` direction gets ``EXPECT_WEIGHT`` of alpha, as in the level test.
    With little overdispersion (Pearson dispersion <= 1.5 on the pre-deploy points) the
    exact conditional test is used: given the total, events after are binomial with the
    after share of the exposure. With more, a quasi-Poisson z-test on the log rate ratio
    with the variance scaled by the dispersion (bursty counts do not become false alarms).
    """
    sb, sa = float(np.sum(counts_before)), float(np.sum(counts_after))
    eb, ea = float(np.sum(exposure_before)), float(np.sum(exposure_after))
    rb = sb / eb if eb > 0 else float("nan")
    ra = sa / ea if ea > 0 else float("nan")
    disp = 1.0
    if counts_before.size >= 3 and sb > 0:
        expected = rb * exposure_before
        ok = expected > 0
        chi = float(np.sum((counts_before[ok] - expected[ok]) ** 2 / expected[ok]))
        disp = max(1.0, chi / max(1, int(ok.sum()) - 1))
    lr = np.log((sa + 0.5) / ea) - np.log((sb + 0.5) / eb)
    se = np.sqrt(disp * (1.0 / (sa + 0.5) + 1.0 / (sb + 0.5)))
    zc = float(ndtri(1 - alpha / 2))
    ci = (float(np.exp(lr - zc * se)), float(np.exp(lr + zc * se)))
    total = int(round(sa + sb))
    if total == 0:
        return RateTest(1.0, rb, ra, ci, disp, "exact Poisson rate test (no events)")
    if disp <= 1.5:
        share = ea / (ea + eb)
        k = int(round(sa))

        def one_sided(up: bool) -> float:
            return float(sps.binomtest(k, total, share, alternative="greater" if up else "less").pvalue)

        two_sided = float(sps.binomtest(k, total, share).pvalue)
        method = "exact Poisson rate test (conditional binomial)"
    else:

        def one_sided(up: bool) -> float:
            return float(_norm_sf((lr if up else -lr) / se))

        two_sided = float(2 * _norm_sf(abs(lr) / se))
        method = f"quasi-Poisson rate test (dispersion {disp:.1f})"
    if expect in ("increase", "decrease"):  # same alpha split as the level test
        up = expect == "increase"
        p = min(1.0, one_sided(up) / EXPECT_WEIGHT, one_sided(not up) / (1.0 - EXPECT_WEIGHT))
    else:
        p = two_sided
    return RateTest(p, rb, ra, ci, disp, method)
