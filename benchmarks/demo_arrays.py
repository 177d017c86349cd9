"""A demo scenario served without Prometheus: what the catalog's queries would answer on its data.

For the bulk of ``bench_demo_truth`` (many seeds x 24 generation hours) a real Prometheus per
hour costs a promtool backfill each time. This computes the same answers from the generator's
per-step increments (:meth:`analyzers.demo.scenarios.Scenario.service_increments`):

* the range queries of the demo catalog (``error_ratio``, ``request_rate``, ``latency_p50``,
  ``latency_p99``): ``rate(x[w])`` is the window's increments over ``w`` (samples fall on the
  grid at both ends of each window, where Prometheus does not extrapolate), summed over pods;
  ``histogram_quantile`` interpolates linearly inside the bucket as Prometheus does (the
  ``+Inf`` bucket answers the highest finite bound, no requests give NaN);
* the bucket counts per bound of ``latency_shift`` (``sum by (le) (increase(h_bucket{...}[w]))``,
  :meth:`ScenarioBackend.fetch_buckets`): each step's increments over ``w`` per ``le``;
* the bucket test's one instant query (:func:`analyzers.prometheus.promql.window_increases`:
  ``label_replace(sum by (le) (increase(h_bucket{...}[D] offset O)), "window", NAME, ...)``
  parts), answered per window with cumulative counts per ``le``.

Differences from a real server: a pod's first sample (Prometheus has no earlier sample for it,
so it loses that step's increment and extrapolates) and left-open windows in Prometheus 3. The
real-Prometheus run of ``bench_demo_truth`` is the reference; this is for volume.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from analyzers.config import parse_duration
from analyzers.demo.scenarios import BUCKETS, LE_LABELS, Scenario
from analyzers.prometheus.results import PromSeries, QueryResult
from analyzers.verify.fetch import BucketGrid

_SERVICE = re.compile(r'service="([^"]+)"')
_WINDOW = re.compile(r'\[([0-9a-z]+)\]')
_PART = re.compile(r'increase\((\w+)_bucket\{([^}]*)\}\[([0-9a-z]+)\](?: offset ([0-9a-z]+))?\)\), "window", "([^"]+)"')


def histogram_quantile(q: float, cum: np.ndarray) -> np.ndarray:
    """Prometheus' ``histogram_quantile`` over rows of cumulative counts (columns: ``LE_LABELS``)."""
    total = cum[:, -1]
    rank = q * total
    bounds = np.asarray(BUCKETS + (np.inf,))
    b = np.argmax(cum >= rank[:, None], axis=1)  # first bucket holding the rank
    rows = np.arange(len(cum))
    below = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0.0)
    lo = np.where(b > 0, bounds[np.maximum(b - 1, 0)], 0.0)
    hi = bounds[b]
    inside = cum[rows, b] - below
    with np.errstate(invalid="ignore", divide="ignore"):
        out = lo + (hi - lo) * (rank - below) / inside
    out = np.where(b == len(bounds) - 1, BUCKETS[-1], out)  # in +Inf: the highest finite bound
    return np.where(total > 0, out, np.nan)


class ScenarioBackend:
    """Answers the demo catalog's range queries (as a verification ``Fetcher``) and the bucket
    test's instant query (as the ``client`` it is handed) from a scenario's arrays."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self._inc = {s: scenario.service_increments(s) for s in scenario.services}
        self._cum = {s: {"requests": np.concatenate([[0], np.cumsum(v["requests"])]),
                         "errors": np.concatenate([[0], np.cumsum(v["errors"])]),
                         "buckets": np.vstack([np.zeros((1, len(LE_LABELS)), dtype=np.int64),
                                               np.cumsum(np.cumsum(v["buckets"], axis=1), axis=0)])}
                     for s, v in self._inc.items()}
        self.t0 = int(scenario.start.timestamp())

    def _k(self, t: float) -> int:
        """Grid index of the sample at Unix time ``t`` (must be on the grid)."""
        k, rem = divmod(int(round(t)) - self.t0, self.sc.step_s)
        if rem:
            raise ValueError(f"{t} is off the scenario's {self.sc.step_s} s grid")
        return k

    def _ks(self, t: np.ndarray) -> np.ndarray:
        """:meth:`_k` of every time at once (rounded half to even, as ``round``)."""
        tt = np.rint(np.asarray(t, dtype=float)).astype(np.int64) - self.t0
        k, rem = np.divmod(tt, self.sc.step_s)
        if np.any(rem):
            raise ValueError(f"{t[int(np.flatnonzero(rem)[0])]} is off the scenario's {self.sc.step_s} s grid")
        return k

    def _increase(self, service: str, what: str, t: np.ndarray, window_s: float) -> np.ndarray:
        """Counts in (t - window, t] per time (+1: cumulative arrays start with a zero row)."""
        cum = self._cum[service][what]
        k = self._ks(t) + 1
        w = int(window_s // self.sc.step_s)
        lo = k - w
        ok = (lo >= 1) & (k < len(cum))  # the window must lie inside the data
        out = np.full((len(t),) + cum.shape[1:], np.nan)
        out[ok] = cum[k[ok]] - cum[lo[ok]]
        return out

    # -- Fetcher -------------------------------------------------------------------------
    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime,
              step_s: float) -> tuple[pd.Series, tuple[str, ...]]:
        service = _SERVICE.search(query)
        window = _WINDOW.search(query)
        if service is None or window is None:
            raise ValueError(f"cannot serve {query!r}")
        a = int(np.floor(start.timestamp() / step_s) * step_s)
        b = int(np.ceil(end.timestamp() / step_s) * step_s)
        t = np.arange(max(a, self.t0), min(b, int(self.sc.end.timestamp())) + 1, int(step_s), dtype=np.int64)
        w = parse_duration(window.group(1))
        svc = service.group(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if metric_key == "request_rate":
                v = self._increase(svc, "requests", t, w) / w
            elif metric_key == "error_ratio":
                v = self._increase(svc, "errors", t, w) / self._increase(svc, "requests", t, w)
            elif metric_key in ("latency_p99", "latency_p50"):
                cum = self._increase(svc, "buckets", t, w)
                v = np.full(len(t), np.nan)
                ok = np.isfinite(cum[:, -1])
                v[ok] = histogram_quantile(0.99 if metric_key == "latency_p99" else 0.5, cum[ok])
            else:
                raise ValueError(f"no array answer for metric {metric_key!r} ({query})")
        index = pd.DatetimeIndex(pd.to_datetime(t, unit="s", utc=True))
        return pd.Series(v, index=index, dtype=float), ()

    def fetch_buckets(self, query: str, metric_key: str, start: datetime, end: datetime,
                      step_s: float) -> tuple[BucketGrid, tuple[str, ...]]:
        """``sum by (le) (increase(h_bucket{...}[w]))`` on the grid: cumulative counts per bound."""
        service = _SERVICE.search(query)
        window = _WINDOW.search(query)
        if service is None or window is None or "sum by (le)" not in query:
            raise ValueError(f"cannot serve {query!r}")
        a = int(np.floor(start.timestamp() / step_s) * step_s)
        b = int(np.ceil(end.timestamp() / step_s) * step_s)
        grid = np.arange(a, b + 1, int(step_s), dtype=np.int64)
        t = grid[(grid >= self.t0) & (grid <= int(self.sc.end.timestamp()))]
        counts = np.full((len(grid), len(LE_LABELS)), np.nan)
        counts[np.searchsorted(grid, t)] = self._increase(service.group(1), "buckets", t, parse_duration(window.group(1)))
        index = pd.DatetimeIndex(pd.to_datetime(grid, unit="s", utc=True))
        return BucketGrid(tuple(BUCKETS) + (float("inf"),), counts, index), ()

    # -- the client's instant query (bucket test) -------------------------------------------
    def query(self, query: str, at: datetime, **_: Any) -> QueryResult:
        t_at = at.timestamp()
        series: list[PromSeries] = []
        for _name, selector, length, offset, window in _PART.findall(query):
            service = _SERVICE.search(selector)
            if service is None:
                raise ValueError(f"cannot serve {query!r}")
            end = t_at - (parse_duration(offset) if offset else 0.0)
            counts = self._increase(service.group(1), "buckets", np.array([end]), parse_duration(length))[0]
            if not np.all(np.isfinite(counts)):
                continue  # the window precedes the data: Prometheus has no series for it
            for le, c in zip(LE_LABELS, counts, strict=True):
                series.append(PromSeries({"le": le, "window": window},
                                         pd.Series([float(c)], index=pd.DatetimeIndex([pd.Timestamp(at)]))))
        if not series and "increase(" not in query:
            raise ValueError(f"cannot serve {query!r}")
        return QueryResult(query, tuple(series), (), None, at.astimezone(UTC), at.astimezone(UTC), "vector")
