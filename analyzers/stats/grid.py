"""Input handling of ``verify_series``: a pandas Series (or one-column DataFrame) checked,
cleaned (UTC, sorted, unique times; non-finite values as gaps) and put on a regular grid;
raw counters turned into increases. Clear errors (:class:`~analyzers.stats.result.NotASeries`)
say how to build what is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzers.stats.result import NotASeries

_NAT = np.iinfo(np.int64).min  # NaT in DatetimeIndex.asi8


def coerce_series(series: Any) -> pd.Series:
    idx, v = coerce_arrays(series)
    return pd.Series(v, index=idx)


def coerce_arrays(series: Any) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The UTC times (sorted, unique, no NaT) and float values (NaN for non-finite) of ``series``."""
    if isinstance(series, pd.DataFrame):
        if series.shape[1] != 1:
            raise NotASeries(
                f"verify_series takes one series, got a DataFrame with {series.shape[1]} columns: pick one"
            )
        series = series.iloc[:, 0]
    if not isinstance(series, pd.Series):
        raise NotASeries(
            f"verify_series needs a pandas Series on a DatetimeIndex, got {type(series).__name__}: "
            "build one with pandas.Series(values, index=pandas.DatetimeIndex(times, tz='UTC'))"
        )
    if not isinstance(series.index, pd.DatetimeIndex):
        raise NotASeries(
            f"the series index must be a DatetimeIndex, got {type(series.index).__name__}: "
            "convert with series.index = pandas.to_datetime(series.index, utc=True)"
        )
    if series.dtype == np.float64:  # already numeric: to_numeric would return it unchanged
        v = series.to_numpy(dtype=float, copy=True)
    else:
        try:
            values = pd.to_numeric(series, errors="raise").astype(float)
        except (TypeError, ValueError) as exc:
            raise NotASeries(f"the series values must be numeric: {exc}") from exc
        v = values.to_numpy(dtype=float, copy=True)
    idx = series.index
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    v[~np.isfinite(v)] = np.nan
    i8 = idx.asi8
    if i8.size == 0 or (i8[0] != _NAT and bool(np.all(i8[1:] > i8[:-1]))):
        return idx, v  # the usual case: strictly increasing times, nothing to clean
    out = pd.Series(v, index=idx)
    if idx.hasnans:
        out = out[~out.index.isna()]
    if not out.index.is_monotonic_increasing:
        out = out.sort_index()
    if not out.index.is_unique:
        out = out.groupby(level=0).mean()
    return out.index, out.to_numpy(dtype=float)


def coerce_time(ts: Any) -> pd.Timestamp:
    try:
        t = pd.Timestamp(ts)
    except (TypeError, ValueError) as exc:
        raise NotASeries(f"deploy_at must be a timestamp (datetime or RFC 3339 string), got {ts!r}") from exc
    if t is pd.NaT or pd.isna(t):
        raise NotASeries("deploy_at is missing (NaT): pass the deploy's start time")
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def seconds_since_first(idx: pd.DatetimeIndex) -> np.ndarray:
    """Seconds of each sample since the first one (exact whole seconds without pandas' overhead)."""
    per_s = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}.get(str(idx.unit))
    if per_s is not None:
        d = idx.asi8 - idx.asi8[0]
        whole, frac = np.divmod(d, per_s)
        if not frac.any() and (d.size == 0 or d[-1] < 2**53):
            return whole.astype(float)
    return np.asarray((idx - idx[0]).total_seconds(), dtype=float)


def to_grid(idx: pd.DatetimeIndex, vals: np.ndarray, step_s: float,
          secs: np.ndarray | None = None) -> tuple[pd.Timestamp, np.ndarray]:
    t0 = idx[0]
    pos = np.rint((seconds_since_first(idx) if secs is None else secs) / step_s).astype(np.int64)
    n = int(pos[-1]) + 1
    ok = np.isfinite(vals)
    sums = np.bincount(pos[ok], weights=vals[ok], minlength=n)
    cnt = np.bincount(pos[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    return t0, y


def counter_increases(y: np.ndarray) -> np.ndarray:
    out = np.full_like(y, np.nan)
    ok = np.flatnonzero(np.isfinite(y))
    if ok.size < 2:
        return out
    v = y[ok]
    inc = np.diff(v)
    inc = np.where(inc < 0, v[1:], inc)  # a drop is a reset: the new value counts from 0
    out[ok[1:]] = inc
    return out
