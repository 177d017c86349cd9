"""Choosing what "before" means: the pre-deploy level, or the same time on earlier days.

A metric with a daily or weekly cycle (traffic, latency under load) keeps moving
through a deploy even when the deploy does nothing. When the series covers it, the
residual ``y(t) - y(t - lag)`` removes the cycle; the test then asks whether that
residual changed at the deploy.

Candidates, each scored on the pre-deploy window only (never on data after the
deploy, so the choice cannot chase the effect):

* ``"pre-window"``: the series itself (its level before the deploy is the baseline);
* ``"same time 1 day earlier"`` and ``"same time 7 days earlier"``: one lagged copy;
* ``"seasonal fit"``: the mean of the same time on every earlier day available
  (up to 6), which halves the baseline noise compared with a single day;
* ``"1-day shape, anchored"``: with exactly one day before the window, the same time a day
  earlier smoothed (local-linear, Gaussian kernel of ``SHAPE_SMOOTH_S``) and scaled to today's
  level before the deploy (positive series). A plain one-day lag would add that day's whole
  noise (the residual's SD x sqrt(2)); the smoother keeps the cycle (a 1-hour kernel keeps
  97 % of a daily sine, so 3 % of its bend is left in the residual) and leaves a slow remainder of
  the day's noise (about 0.2 of its marginal SD under AR(0.8)) that the test's level and line
  partly absorb. Not used when today's level before the deploy is more than ``SHAPE_MAX_FACTOR``
  away from yesterday's there (the service changed since yesterday).

Seasonality is judged on the day of history before the analysis window (see
:func:`choose_baseline`), so flat or merely autocorrelated metrics keep the simplest
baseline. Caveat: a lagged baseline inherits
whatever happened at that earlier time (for example a deploy exactly a day before).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PRE_WINDOW = "pre-window"
DAY = "same time 1 day earlier"
WEEK = "same time 7 days earlier"
SEASONAL = "seasonal fit"
DAY_SHAPE = "1-day shape, anchored"
#: Baselines whose residual keeps the series' own noise (nothing noisy is subtracted, at most a
#: smooth shape): the noise memory measured on the raw history describes it, so the residual-memory
#: factor and the earlier-change test's memory apply as with the level before the deploy. A lagged
#: day's residual is a difference of two days' noise, which that history does not show.
OWN_NOISE = frozenset({PRE_WINDOW, DAY_SHAPE})

#: A lagged baseline is used when it leaves less than this share of the variance of a day.
SEASONAL_RATIO = 0.5
#: 7 days is used when its residual variance is below this multiple of the daily fit's.
WEEKLY_RATIO = 1.3
#: Lagged values must be present for at least this share of the analysis window.
MIN_COVERAGE = 0.8
#: Half-width (one Gaussian SD) of the smoother that takes a single day's noise out of its shape.
SHAPE_SMOOTH_S = 3600.0
#: The anchoring factor (today's level before the deploy over yesterday's shape there) must lie within
#: this factor of 1. A larger move means the service changed since yesterday (an earlier deploy): its
#: noise and bends need not scale with its level, and yesterday's, bumps included, no longer describe today.
SHAPE_MAX_FACTOR = 1.25


@dataclass(frozen=True)
class Baseline:
    """``values`` is the baseline on the analysis window (zeros for the pre-window)."""

    name: str
    values: np.ndarray
    score: float


def _line_scatter(r: np.ndarray) -> float:
    ok = np.isfinite(r)
    if ok.sum() < 5:
        return np.inf
    t = np.flatnonzero(ok).astype(float)
    v = r[ok]
    coef = np.polyfit(t, v, 1)
    res = v - np.polyval(coef, t)
    q75, q25 = np.percentile(res, [75, 25])
    iqr = (q75 - q25) / 1.349
    return float(iqr) if iqr > 0 else float(np.std(res))


def _robust_var(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size < 10:
        return np.inf
    q75, q25 = np.percentile(x, [75, 25])
    return float(((q75 - q25) / 1.349) ** 2)


def choose_baseline(y: np.ndarray, start: int, deploy: int, end: int, step_s: float) -> Baseline:
    """Pick the baseline for the analysis window ``y[start:end]`` (deploy at index ``deploy``).

    ``y`` is the whole regular series (NaN for gaps); positions before ``start`` supply
    the lagged copies. Everything is judged on the day of history just before the window
    (never on data after the deploy): a lagged baseline is used only when the best of
    ``y - y(1 day earlier)`` and ``y - y(7 days earlier)`` keeps less than
    ``SEASONAL_RATIO`` of the variance of ``y`` there (a cycle dominates the noise).
    Then 7 days is used when it is within ``WEEKLY_RATIO`` of the mean-of-earlier-days
    fit (pure noise would make it ~1.7 times worse: two noisy terms against 1 + 1/6), so
    weekday shapes and weekend levels are matched; otherwise the mean of the earlier days
    ("seasonal fit") when two or more are available, else the day before.

    With one day before the window only (no second day to judge a lag on), see :func:`_one_day`.
    """
    window = y[start:end]
    n = end - start
    pre = slice(0, deploy - start)
    best = Baseline(PRE_WINDOW, np.zeros(n), _line_scatter(window[pre]))
    day = int(round(86400.0 / step_s))
    if day < 60 or start - day < 0:
        return best
    if start - 2 * day < 0:
        return _one_day(y, start, deploy, end, day, step_s, best)
    hist = y[start - day : start]

    def lag(k: int, lo: int, length: int) -> np.ndarray | None:
        if lo - k * day < 0:
            return None
        v = y[lo - k * day : lo - k * day + length]
        return v if np.isfinite(v).mean() >= MIN_COVERAGE else None

    v0 = _robust_var(hist)
    h1, h7 = lag(1, start - day, day), lag(7, start - day, day)
    v1 = _robust_var(hist - h1) if h1 is not None else np.inf
    v7 = _robust_var(hist - h7) if h7 is not None else np.inf
    if not min(v1, v7) < SEASONAL_RATIO * v0:
        return best
    lagged = {k: v for k in range(1, 8) if (v := lag(k, start, n)) is not None}
    daily = [lagged[k] for k in sorted(lagged) if k < 7]
    hist_daily = [v for k in range(1, 7) if (v := lag(k, start - day, day)) is not None]
    v_fit = np.inf
    if len(hist_daily) >= 2:
        with np.errstate(all="ignore"):
            v_fit = _robust_var(hist - np.nanmean(np.vstack(hist_daily), axis=0))
    if 7 in lagged and v7 < WEEKLY_RATIO * min(v_fit, v1):
        return Baseline(WEEK, lagged[7], _line_scatter(window[pre] - lagged[7][pre]))
    if len(daily) >= 2:
        with np.errstate(all="ignore"):
            mean = np.nanmean(np.vstack(daily), axis=0)
        return Baseline(SEASONAL, mean, _line_scatter(window[pre] - mean[pre]))
    if 1 in lagged:
        return Baseline(DAY, lagged[1], _line_scatter(window[pre] - lagged[1][pre]))
    return best


@lru_cache(maxsize=8)
def _kernels(sd: float, half: int, size: int) -> np.ndarray:
    """rfft of the reversed kernels ``k``, ``u k``, ``u^2 k`` (``u`` in ``-half..half``) zero-padded to ``size``."""
    u = np.arange(-half, half + 1, dtype=float)
    k = np.exp(-0.5 * (u / sd) ** 2)
    kern = np.vstack([k, u * k, u * u * k])[:, ::-1]  # reversed: the products below are correlations
    return np.fft.rfft(kern, n=size, axis=1)


def smooth_local_linear(v: np.ndarray, sd: float) -> np.ndarray:
    """Local-linear Gaussian smoother (kernel SD ``sd`` points), NaN-aware, no first-order edge bias.

    The five kernel sums (zeros beyond the ends) come from one batch of FFT products."""
    n = v.size
    w = np.isfinite(v).astype(float)
    yv = np.where(w > 0, v, 0.0)
    half = int(math.ceil(3 * sd))
    size = 1 << int(math.ceil(math.log2(n + 2 * half + 1)))
    kf = _kernels(float(sd), half, size)
    data = np.fft.rfft(np.vstack([w, yv]), n=size, axis=1)
    prod = np.vstack([data[0] * kf, data[1] * kf[:2]])  # s0, s1, s2, t0, t1
    s0, s1, s2, t0, t1 = np.fft.irfft(prod, n=size, axis=1)[:, half : half + n]
    det = s0 * s2 - s1 * s1
    with np.errstate(all="ignore"):
        out = (s2 * t0 - s1 * t1) / det
    out[~(det > 1e-9 * np.maximum(s0 * s2, 1e-300))] = np.nan
    return out


def _one_day(y: np.ndarray, start: int, deploy: int, end: int, day: int, step_s: float,
             best: Baseline) -> Baseline:
    """The anchored 1-day shape when exactly one day precedes the window (see the module doc).

    Judged before the deploy only, in two parts: the day's smooth shape keeps less than
    ``SEASONAL_RATIO`` of its variance (a slow shape dominates the noise), and today's 3 h
    before the deploy sit where yesterday's shape was at the same times: their mean squared
    difference is below ``SEASONAL_RATIO`` of the day's variance. The second part is what a
    cycle has and a random walk or a slow wander (which also look smooth within one day)
    mostly has not: they drift away within a day. Assumptions: the cycle repeats from one day
    to the next up to a factor (the anchoring), the shape bends slowly against the kernel, and
    nothing changed at the window's times a day earlier. Earlier-deploy steps in that day can
    make the levels disagree; the pre-window baseline is then kept. So it is when the anchoring
    factor lies beyond ``SHAPE_MAX_FACTOR`` (the service changed since yesterday by more than
    growth does, and its bends and noise bumps need not scale with its level).
    """
    hist = y[start - day : start]
    if np.isfinite(hist).mean() < MIN_COVERAGE:
        return best
    sd = SHAPE_SMOOTH_S / step_s
    smooth_hist = smooth_local_linear(hist, sd)
    v_day = _robust_var(hist - np.nanmedian(hist))
    if not _robust_var(hist - smooth_hist) < SEASONAL_RATIO * v_day:
        return best
    n = end - start
    shape = smooth_hist[:n] if n <= day else None
    if shape is None or np.isfinite(shape).mean() < MIN_COVERAGE:
        return best
    dw = deploy - start
    pre = y[start:deploy]
    fin = np.isfinite(pre) & np.isfinite(shape[:dw])
    if fin.sum() < 10:
        return best
    # Periodic, not merely slow: today's level before the deploy is yesterday's at the same time
    # (a random walk or a slow wander drifts away within a day; a cycle comes back).
    miss = float(np.mean((pre[fin] - shape[:dw][fin]) ** 2))
    if not miss < SEASONAL_RATIO * v_day:
        return best
    shape = shape.copy()
    if np.all(hist[np.isfinite(hist)] > 0) and np.all(pre[np.isfinite(pre)] > 0):
        ratio = float(np.median(pre[fin]) / np.median(shape[:dw][fin]))
        if not (np.isfinite(ratio) and 1.0 / SHAPE_MAX_FACTOR <= ratio <= SHAPE_MAX_FACTOR):
            return best
        shape *= ratio
    score = _line_scatter(pre - shape[:dw])
    return Baseline(DAY_SHAPE, shape, score)
