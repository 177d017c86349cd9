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
  (up to 6), which halves the baseline noise compared with a single day.

Seasonality is judged on the day of history before the analysis window (see
:func:`choose_baseline`), so flat or merely autocorrelated metrics keep the simplest
baseline. Caveat: a lagged baseline inherits
whatever happened at that earlier time (for example a deploy exactly a day before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRE_WINDOW = "pre-window"
DAY = "same time 1 day earlier"
WEEK = "same time 7 days earlier"
SEASONAL = "seasonal fit"

#: A lagged baseline is used when it leaves less than this share of the variance of a day.
SEASONAL_RATIO = 0.5
#: 7 days is preferred over 1 day when it leaves less than this share of the 1-day variance.
WEEKLY_RATIO = 0.8
#: Lagged values must be present for at least this share of the analysis window.
MIN_COVERAGE = 0.8


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
    the lagged copies. Seasonality is judged on the day before the window: a lagged
    baseline is used only when ``y - y(1 day earlier)`` has less than ``SEASONAL_RATIO``
    of the variance of ``y`` there (a cycle dominates the noise); 7 days is used instead
    of 1 day when it explains clearly more (a weekday pattern); otherwise the mean of
    the earlier days ("seasonal fit") when two or more are available.
    """
    window = y[start:end]
    n = end - start
    pre = slice(0, deploy - start)
    best = Baseline(PRE_WINDOW, np.zeros(n), _line_scatter(window[pre]))
    day = int(round(86400.0 / step_s))
    if day < 60 or start - 2 * day < 0:
        return best
    hist = slice(start - day, start)
    v0 = _robust_var(y[hist])
    v1 = _robust_var(y[hist] - y[start - 2 * day : start - day])
    if not (v1 < SEASONAL_RATIO * v0):
        return best
    lagged: dict[int, np.ndarray] = {}
    for k in range(1, 8):
        lo = start - k * day
        if lo < 0:
            break
        lag = y[lo : lo + n]
        if np.isfinite(lag).mean() >= MIN_COVERAGE:
            lagged[k] = lag
    if 1 not in lagged:
        return best
    if 7 in lagged and start - 8 * day >= 0:
        v7 = _robust_var(y[hist] - y[start - 8 * day : start - 7 * day])
        if v7 < WEEKLY_RATIO * v1:
            return Baseline(WEEK, lagged[7], _line_scatter(window[pre] - lagged[7][pre]))
    daily = [lagged[k] for k in sorted(lagged) if k < 7]
    if len(daily) >= 2:
        with np.errstate(all="ignore"):
            mean = np.nanmean(np.vstack(daily), axis=0)
        return Baseline(SEASONAL, mean, _line_scatter(window[pre] - mean[pre]))
    return Baseline(DAY, lagged[1], _line_scatter(window[pre] - lagged[1][pre]))
