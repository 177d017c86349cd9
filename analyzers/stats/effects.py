"""Effect size in the metric's units with a confidence interval that respects memory.

The point estimate is the Hodges-Lehmann shift (median of all after-minus-before
differences): robust to outliers and bursts, equal to the difference in means for
symmetric noise. The interval is the wider of two honest intervals:

* a moving-block bootstrap (blocks of about ``2 / (1 - phi)`` points, seeded), which
  needs no model but is too narrow when a window holds only a few blocks;
* a Gaussian interval from the AR(1) model, whose variance of the difference of the
  two window means is computed exactly from ``sigma**2 phi**|i - j|`` (gaps included).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from analyzers.stats._fast import median as _median
from analyzers.stats._fast import median_rows as _median_rows

#: Bootstrap replicates (seeded).
BOOT = 200
#: Pairs used for a Hodges-Lehmann estimate beyond which a seeded subsample is used.
MAX_PAIRS = 200_000


def hodges_lehmann(before: np.ndarray, after: np.ndarray, seed: int = 0) -> float:
    """Median of ``after_i - before_j`` over all pairs (finite values only)."""
    a = before[np.isfinite(before)]
    b = after[np.isfinite(after)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    if a.size * b.size > MAX_PAIRS:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, b.size, MAX_PAIRS)
        j = rng.integers(0, a.size, MAX_PAIRS)
        return _median(b[i] - a[j])
    return _median(np.subtract.outer(b, a).ravel())


def _block_resample(x: np.ndarray, block: int, rng: np.random.Generator, reps: int) -> np.ndarray:
    n = x.size
    block = max(1, min(block, n))
    nb = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(reps, nb))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(reps, -1)[:, :n]
    return x[idx]


def ar1_diff_se(tpos_before: np.ndarray, tpos_after: np.ndarray, sigma: float, phi: float) -> float:
    """Standard error of mean(after) - mean(before) for AR(1) noise with marginal sd ``sigma``.

    Exact for up to 3,000 points; beyond, the cross-window covariance (which only
    reduces the variance) is dropped, which errs on the wide side.
    """
    nb, na = tpos_before.size, tpos_after.size
    if nb == 0 or na == 0:
        return float("nan")
    if phi <= 0:
        return sigma * float(np.sqrt(1.0 / nb + 1.0 / na))
    if nb + na <= 3000:
        t = np.concatenate([tpos_before, tpos_after])
        c = np.concatenate([np.full(nb, -1.0 / nb), np.full(na, 1.0 / na)])
        if np.issubdtype(t.dtype, np.integer):  # whole-step lags: phi**lag from a table (the same numbers)
            lag = np.abs(t[:, None] - t[None, :])
            cov = (phi ** np.arange(int(lag.max()) + 1, dtype=float))[lag]
        else:
            t = t.astype(float)
            cov = phi ** np.abs(t[:, None] - t[None, :])
        return sigma * float(np.sqrt(max(c @ cov @ c, 0.0)))
    infl = (1 + phi) / (1 - phi)
    return sigma * float(np.sqrt(infl / nb + infl / na))


def shift_with_ci(
    before: np.ndarray,
    after: np.ndarray,
    tpos_before: np.ndarray,
    tpos_after: np.ndarray,
    sigma: float,
    phi: float,
    alpha: float,
    seed: int,
) -> tuple[float, tuple[float, float]]:
    """Hodges-Lehmann shift of ``after`` vs ``before`` with a (1 - alpha) interval (see module doc)."""
    hl = hodges_lehmann(before, after, seed)
    a = before[np.isfinite(before)]
    b = after[np.isfinite(after)]
    z = float(ndtri(1 - alpha / 2))
    se_model = ar1_diff_se(tpos_before, tpos_after, sigma, phi)
    se_boot = 0.0
    if a.size >= 3 and b.size >= 3:
        rng = np.random.default_rng(seed)
        # rounded first: a last-bit difference in phi must not change the block length
        block = int(np.ceil(round(2.0 / max(1e-3, 1.0 - phi), 9)))
        ra = _block_resample(a, block, rng, BOOT)
        rb = _block_resample(b, block, rng, BOOT)
        diffs = _median_rows(rb) - _median_rows(ra)
        se_boot = float(np.std(diffs))
    se = max(se_model if np.isfinite(se_model) else 0.0, se_boot)
    return hl, (hl - z * se, hl + z * se)
