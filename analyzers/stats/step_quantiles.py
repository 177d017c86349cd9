"""Per-step latency quantiles read from each step's bucket counts, on the log-latency scale.

A percentile line drawn by ``histogram_quantile`` interpolates linearly inside the bucket holding
the rank, so where a log-normal body or tail is far from uniform inside that bucket the line moves
a lot for a small shift of the requests (and little for a large one just under a bound). This
reads a quantile of each step's requests with *log-probit* interpolation instead: between the two
finite bounds whose cumulative shares bracket ``q``, the bound's log is interpolated linearly in
the probit of the share, which is exact for a log-normal (``log le = mu + sigma * probit(F)``).
Outside the bounds with shares strictly between 0 and 1 the line through the nearest two of them
is extended. A shift of every request by a factor ``r`` reads as ``log r`` at every step, wherever
the quantile sits relative to the bounds.

Assumptions, and what happens when they break (docs/statistics.md, "The typical request got
slower"):

* the latency distribution is locally log-normal around the quantile (between two bounds); a
  bimodal mix reads a quantile between its modes, still monotone in a shift of every request;
* a step holds enough requests for its quantile to be read: fewer than :data:`MIN_REQUESTS`
  (or fewer than two bounds with shares strictly between 0 and 1: every request in one bucket)
  make the step missing (NaN), never a value; missing steps count as gaps, and too many of them
  after the deploy make the verdict inconclusive;
* counts per bound are cumulative and non-decreasing: ``increase()`` of each bucket series is
  extrapolated on its own, so small inversions between bounds are repaired by a running maximum,
  and negative counts (a counter reset the back end did not handle) make the step missing.

Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import ndtri

#: Fewest requests in a step for its quantile to be read (below: the step is missing). At 20
#: requests the median's standard error on log latency is about 0.28 sigma (sqrt(pi/2)/sqrt(20)).
MIN_REQUESTS = 20.0


def step_log_quantiles(les: Sequence[float], cumulative: np.ndarray, q: float,
                       min_requests: float = MIN_REQUESTS) -> np.ndarray:
    """The log (natural, of seconds) of quantile ``q`` of each row's requests.

    ``les``: the bucket bounds, sorted, ``+Inf`` last (or absent); ``cumulative``: rows of
    cumulative counts per bound (one row per step; NaN rows are missing steps). Returns one value
    per row, NaN where the quantile cannot be read (see the module doc).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be between 0 and 1, got {q}")
    bounds = np.asarray(les, dtype=float)
    cum = np.atleast_2d(np.asarray(cumulative, dtype=float))
    if cum.shape[1] != bounds.size:
        raise ValueError(f"{cum.shape[1]} count columns for {bounds.size} bucket bounds")
    out = np.full(cum.shape[0], np.nan)
    if bounds.size == 0 or cum.shape[0] == 0:
        return out
    finite = np.isfinite(bounds) & (bounds > 0)
    finite_rows = np.isfinite(cum).all(axis=1)
    filled = np.where(np.isfinite(cum), cum, 0.0)
    total = filled[:, -1] if not np.isfinite(bounds[-1]) else filled.max(axis=1)
    bad = ~finite_rows | (filled.min(axis=1) < 0)
    ok = ~bad & (total >= min_requests) & (total > 0)
    if not ok.any():
        return out
    c = np.maximum.accumulate(np.where(np.isfinite(cum), cum, 0.0), axis=1)[ok][:, finite]
    tot = np.maximum(total[ok], c[:, -1] if c.shape[1] else 0.0)
    share = c / tot[:, None]
    logb = np.log(bounds[finite])
    inner = (share > 0.0) & (share < 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(inner, ndtri(np.clip(share, 1e-300, 1.0 - 1e-16)), np.nan)
    zq = float(ndtri(q))
    n_rows, n_b = z.shape
    cols = np.arange(n_b)
    # the last inner bound at or under the quantile, and the first one over it
    below = np.where(inner & (z <= zq), cols, -1).max(axis=1)
    above = np.where(inner & (z > zq), cols, n_b).min(axis=1)
    first = np.where(inner, cols, n_b).min(axis=1)
    last = np.where(inner, cols, -1).max(axis=1)
    n_inner = inner.sum(axis=1)
    # the pair of inner bounds to interpolate (or extrapolate) between
    lo = below.copy()
    hi = above.copy()
    left = below < 0  # the quantile lies under every inner bound: the first two
    right = above >= n_b  # over every inner bound: the last two
    lo[left] = first[left]
    hi[left] = _next_inner(inner, first)[left]
    hi[right] = last[right]
    lo[right] = _prev_inner(inner, last)[right]
    usable = (n_inner >= 2) & (lo >= 0) & (hi < n_b) & (lo != hi)
    rows = np.flatnonzero(usable)
    za, zb = z[rows, lo[rows]], z[rows, hi[rows]]
    xa, xb = logb[lo[rows]], logb[hi[rows]]
    with np.errstate(divide="ignore", invalid="ignore"):
        val = np.where(zb > za, xa + (xb - xa) * (zq - za) / (zb - za), 0.5 * (xa + xb))
    read = np.full(n_rows, np.nan)
    read[rows] = val
    out[np.flatnonzero(ok)] = read
    return out


def _next_inner(inner: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per row, the first inner column after ``at`` (the column count when none)."""
    n_b = inner.shape[1]
    cols = np.arange(n_b)
    return np.where(inner & (cols[None, :] > at[:, None]), cols, n_b).min(axis=1)


def _prev_inner(inner: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per row, the last inner column before ``at`` (-1 when none)."""
    cols = np.arange(inner.shape[1])
    return np.where(inner & (cols[None, :] < at[:, None]), cols, -1).max(axis=1)
