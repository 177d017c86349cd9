"""Seasonality for change-point search: find a repeating period, take each phase's pattern out.

Used by :func:`analyzers.stats.changepoints.changepoints` (``period=None`` detects, an
integer sets the period, ``0`` disables); ``verify_series`` handles seasonality with its
lagged baselines instead (:mod:`analyzers.stats.baselines`).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

#: Seasonality: autocorrelation of first differences a period must reach (and 4 / sqrt(n)).
SEASON_ACF_MIN = 0.3
#: ... and the number of whole cycles the data must cover.
SEASON_CYCLES = 3
#: Points searched for a period (the first ones): periods up to a third of this are found.
SEASON_WINDOW = 65_536


def seasonal_period(x: np.ndarray) -> int:
    """Period of a repeating pattern in ``x`` (finite values), or 0 when there is none.

    The first lag ``k >= 3`` at which the autocorrelation of the first differences is a
    local maximum above ``max(SEASON_ACF_MIN, 4 / sqrt(n))``, with at least
    ``SEASON_CYCLES`` cycles in the data. Differences remove trends and level shifts, which
    would otherwise make every lag look correlated. Computed by FFT on the first
    ``SEASON_WINDOW`` points (a few ms, whatever the length of the series).
    """
    d = np.diff(np.asarray(x[:SEASON_WINDOW], dtype=float))
    n = d.size
    max_lag = n // SEASON_CYCLES
    if max_lag < 4:
        return 0
    d = d - d.mean()
    den = float(d @ d)
    if den <= 0:
        return 0
    size = sp_fft.next_fast_len(2 * n, real=True)
    f = sp_fft.rfft(d.astype(np.float32), size)  # single precision: ample for a 0.3 threshold
    acf = sp_fft.irfft(f.real * f.real + f.imag * f.imag, size)[: max_lag + 1] / den
    k = np.arange(3, max_lag)
    peak = (acf[k] > max(SEASON_ACF_MIN, 4.0 / np.sqrt(n))) & (acf[k] >= acf[k - 1]) & (acf[k] >= acf[k + 1])
    hits = k[peak]
    return int(hits[0]) if hits.size else 0


def deseasonalise(x: np.ndarray, period: int, observed: np.ndarray | None = None) -> np.ndarray:
    """``x`` minus each phase's median deviation from a centred moving average of one period.

    ``x`` is on a regular grid (phase = position modulo ``period``); ``observed`` (boolean,
    optional) marks the points that were measured rather than filled in, and only those
    enter the medians. Multiplicative (on the log scale) when every value is positive,
    additive otherwise. The moving average (2 x ``period`` for an even period) follows
    trends and steps, so the per-phase medians estimate the cycle alone; they are centred
    to sum to zero.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    if period < 2 or n < period + 2:
        return x.copy()
    log = bool(np.all(x > 0))
    y = np.log(x) if log else x
    c = np.concatenate([[0.0], np.cumsum(y)])
    ma = (c[period:] - c[:-period]) / period  # ma[i]: mean of y[i : i + period]
    if period % 2 == 0:
        trend, start = 0.5 * (ma[:-1] + ma[1:]), period // 2
    else:
        trend, start = ma, (period - 1) // 2
    dev = np.full(-(-n // period) * period, np.nan)
    dev[start : start + trend.size] = y[start : start + trend.size] - trend
    if observed is not None:
        dev[: n][~np.asarray(observed, dtype=bool)] = np.nan
    profile = np.nanmedian(dev.reshape(-1, period), axis=0)
    profile -= profile.mean()
    out = y - np.resize(profile, n)
    return np.exp(out) if log else out
