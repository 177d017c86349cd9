"""A histogram percentile line read back as a shift of the requests' log latency.

``histogram_quantile`` interpolates linearly inside the bucket that holds the rank. Where the
requests' tail is far from uniform inside that bucket (a log-normal tail crossing into a bucket
three times wider, the demo's payments p99 at the 1 s bound), a small shift of every request's
latency moves the line a long way: a 7 % slower tail reads as +30-40 % once the rank crosses the
bound, and as a few percent just under it. The line's noise model, fitted where it sat, then
understates how far it wanders after the deploy (docs/statistics.md, "A percentile line read as
a latency shift").

:func:`lognormal_tail` fits a log-normal to the tail of the bucket counts before the deploy
(probit of the share at or under each bound against the bound's log, on the bounds holding the
before window's p90 and up); :func:`implied_log_shift` maps every value of the line to the shift
``delta`` of the log latency that would make ``histogram_quantile`` of that tail's expected
bucket counts equal to it. A shift of the requests' latency by a factor ``exp(delta)`` is
``delta`` on this scale wherever the rank sits, so a wander across a bound is as large as
elsewhere. Assumption: the tail around the percentile is locally log-normal and only its
location moves (a wider tail reads as a shift of the percentile, which it is). Pure numpy/scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

#: The bounds the tail is fitted on: at least this share of the before window's requests at or
#: under them (its p90 and up), below the last one; fewer than two: those with over half.
TAIL_FROM = 0.9
#: The shifts the map covers (log latency): x0.05 to x20.
SHIFT_SPAN = 3.0
SHIFT_STEP = 0.002


def lognormal_tail(les: Sequence[float], cumulative: Sequence[float]) -> tuple[float, float] | None:
    """``(mu, sigma)`` of the log-normal tail of cumulative bucket counts (sorted bounds, ``+Inf``
    last), or None when fewer than two finite bounds lie in the tail or the fit is not increasing."""
    les_a = np.asarray(les, dtype=float)
    cum = np.asarray(cumulative, dtype=float)
    if cum.size == 0 or not cum[-1] > 0:
        return None
    share = cum / cum[-1]
    finite = np.isfinite(les_a) & (les_a > 0) & (share > 0) & (share < 1)
    for floor in (TAIL_FROM, 0.5):
        use = finite & (share >= floor)
        if use.sum() >= 2:
            break
    else:
        return None
    z = ndtri(share[use])
    x = np.log(les_a[use])
    sigma, mu = np.polyfit(z, x, 1)  # log bound = mu + sigma z
    if not (np.isfinite(sigma) and np.isfinite(mu) and sigma > 0):
        return None
    return float(mu), float(sigma)


def _linear_quantile(les: np.ndarray, cdf: np.ndarray, q: float) -> np.ndarray:
    """``histogram_quantile(q)`` (linear inside the bucket, 0 below the first bound, the highest
    finite bound when the rank lies beyond it) per row of ``cdf`` at the finite bounds ``les``."""
    j = np.array([np.searchsorted(row, q) for row in cdf])
    inside = j < les.size
    jj = np.minimum(j, les.size - 1)
    rows = np.arange(cdf.shape[0])
    lo_b = np.where(jj > 0, les[np.maximum(jj - 1, 0)], 0.0)
    lo_f = np.where(jj > 0, cdf[rows, np.maximum(jj - 1, 0)], 0.0)
    hi_f = cdf[rows, jj]
    frac = (q - lo_f) / np.maximum(hi_f - lo_f, 1e-300)
    return np.where(inside, lo_b + (les[jj] - lo_b) * frac, les[-1])


def implied_log_shift(values: np.ndarray, les: Sequence[float], mu: float, sigma: float, q: float) -> np.ndarray:
    """Each line value as the log-latency shift of the fitted tail that ``histogram_quantile(q)``
    would read as it. NaN where the value is not finite or lies outside what shifts within
    ``SHIFT_SPAN`` can produce (the map saturates there)."""
    les_a = np.asarray(les, dtype=float)
    les_a = les_a[np.isfinite(les_a) & (les_a > 0)]
    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, np.nan)
    if les_a.size == 0 or not 0 < q < 1 or not sigma > 0:
        return out
    d = np.arange(-SHIFT_SPAN, SHIFT_SPAN + SHIFT_STEP / 2, SHIFT_STEP)
    cdf = ndtr((np.log(les_a)[None, :] - mu - d[:, None]) / sigma)
    y = np.maximum.accumulate(_linear_quantile(les_a, cdf, q))
    # strictly increasing support for the interpolation: keep the first of every flat run
    keep = np.concatenate([[True], np.diff(y) > 0])
    y, d = y[keep], d[keep]
    ok = np.isfinite(v) & (v >= y[0]) & (v <= y[-1])
    if y.size >= 2:
        out[ok] = np.interp(v[ok], y, d)
    return out


def shift_to_ratio(delta: float | None) -> float | None:
    """A log-latency shift as the factor it multiplies latency by, minus one (``0.1`` -> ``+10.5 %``)."""
    return None if delta is None or not math.isfinite(delta) else math.expm1(delta)
