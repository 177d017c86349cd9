"""Low counts in the sequential verdict: a gamma-mixture Poisson confidence sequence for the
event rate after the deploy (events per exposure: per step, or per request when denominators are
given), against an exact (Garwood) interval for the rate before it.

For a rate ``l0`` the mixture of Poisson likelihood ratios over a gamma prior (mean: the rate
before the deploy, shape 1, fixed before any look) is a test martingale; the sequence keeps the
rates whose martingale stays below ``1 / alpha`` (Ville). Overdispersion found before the deploy
(quasi-Poisson) tempers the log likelihood ratio by its factor. The interval for the rate change
is the after sequence less the before interval (union bound over the two).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special as sp
from scipy import stats as sps


def rate_bounds(x: np.ndarray, t: np.ndarray, xb: float, tb: float, disp: float,
                 a_up: float, a_down: float, a_b: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of (after rate - before rate): gamma-mixture Poisson CS after, Garwood before."""
    lam_b_lo = 0.0 if xb <= 0 else float(sps.gamma.ppf(a_b / 2, xb)) / tb
    lam_b_hi = float(sps.gamma.ppf(1 - a_b / 2, xb + 1)) / tb
    prior_a = 1.0
    prior_b = 1.0 / max(xb / tb, 0.5 / tb)  # prior mean: the rate before (fixed before any look)
    lo = np.full(x.size, -np.inf)
    hi = np.full(x.size, np.inf)
    grid = None
    for i in range(x.size):
        if t[i] <= 0:
            continue
        if grid is None or i % 1 == 0:
            est = x[i] / t[i]
            top = max(est, lam_b_hi) * 4 + 10.0 / t[i]
            grid = np.linspace(0.0, top, 2001)[1:]
        # log M(l0) = log mixture marginal - log Poisson likelihood at l0, tempered by 1/disp
        log_mix = (prior_a * math.log(prior_b) + sp.gammaln(prior_a + x[i]) - sp.gammaln(prior_a)
                   - (prior_a + x[i]) * math.log(prior_b + t[i]))
        log_m = (log_mix - (x[i] * np.log(grid) - grid * t[i])) / disp
        keep_up = grid[log_m < math.log(1.0 / a_up)]
        keep_down = grid[log_m < math.log(1.0 / a_down)]
        if keep_up.size:
            lo[i] = keep_up.min() - lam_b_hi
        else:
            lo[i] = grid[-1] - lam_b_hi
        if keep_down.size:
            hi[i] = keep_down.max() - lam_b_lo
        else:
            hi[i] = grid[0] - lam_b_lo
    return lo, hi


def count_path(y: np.ndarray, counts: Any, pre_start: int, d: int, post_end: int, skip: int,
               times_all: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, float, float, float], str, dict[str, Any]]:
    ev = y
    expo = np.ones_like(y)
    if counts is not None:
        c = np.asarray(counts, dtype=float)
        expo = c[: y.size] if c.size >= y.size else np.concatenate([c, np.full(y.size - c.size, np.nan)])
        ev = y * expo  # a ratio times its denominator: events
    pre_ok = np.isfinite(ev[pre_start:d]) & np.isfinite(expo[pre_start:d])
    xb = float(np.sum(ev[pre_start:d][pre_ok]))
    tb = float(np.sum(expo[pre_start:d][pre_ok]))
    # overdispersion before the deploy (quasi-Poisson), never below 1
    pv = ev[pre_start:d][pre_ok]
    disp = 1.0
    if pv.size > 10 and xb > 0:
        mu = xb / tb * expo[pre_start:d][pre_ok]
        disp = max(1.0, float(np.sum((pv - mu) ** 2 / np.maximum(mu, 1e-12)) / (pv.size - 1)))
    a = d + skip
    rows = np.arange(a, post_end)
    ok = np.isfinite(ev[rows]) & np.isfinite(expo[rows])
    rows = rows[ok]
    x = np.cumsum(ev[rows])
    t = np.cumsum(expo[rows])
    unit = "per step" if counts is None else "per unit of exposure"
    return times_all[rows], (x, t, xb, tb, disp), unit, {"events_before": xb, "exposure_before": tb,
                                                          "dispersion": disp}
