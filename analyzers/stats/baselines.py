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
#: 7 days is used when its residual variance is below this multiple of the daily fit's.
WEEKLY_RATIO = 1.3
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
    the lagged copies. Everything is judged on the day of history just before the window
    (never on data after the deploy): a lagged baseline is used only when the best of
    ``y - y(1 day earlier)`` and ``y - y(7 days earlier)`` keeps less than
    ``SEASONAL_RATIO`` of the variance of ``y`` there (a cycle dominates the noise).
    Then 7 days is used when it is within ``WEEKLY_RATIO`` of the mean-of-earlier-days
    fit (pure noise would make it ~1.7 times worse: two noisy terms against 1 + 1/6), so
    weekday shapes and weekend levels are matched; otherwise the mean of the earlier days
    ("seasonal fit") when two or more are available, else the day before.
    """
    window = y[start:end]
    n = end - start
    pre = slice(0, deploy - start)
    best = Baseline(PRE_WINDOW, np.zeros(n), _line_scatter(window[pre]))
    day = int(round(86400.0 / step_s))
    if day < 60 or start - 2 * day < 0:
        return best
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
