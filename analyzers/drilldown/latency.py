"""Latency drill-down pipelines: the percentile/heatmap panel, before/after distributions and
"who is slow". The dashboard caches and draws what these return; the CLI and reports call them
too, so every surface shows the same figures from the same queries.

Every function takes a :class:`analyzers.drilldown.base.Querier` (a PrometheusClient or the
dashboard's caching wrapper) and plain values (Unix seconds, label values), builds its PromQL
with :mod:`analyzers.prometheus.latency` / :mod:`analyzers.prometheus.native` (values escaped)
and does its maths with :mod:`analyzers.stats.buckets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from analyzers.config import parse_duration
from analyzers.drilldown.base import Querier
from analyzers.prometheus.latency import (
    breakdown_query,
    buckets_frame,
    latency_query,
    rate_window,
    slow_share_breakdown,
    split_latency_result,
    summary_quantiles,
    window_counts,
    windows_query,
)
from analyzers.prometheus.native import (
    native_breakdown_query,
    native_slow_share_breakdown,
    native_windows_query,
    split_native_windows,
)
from analyzers.prometheus.promql import matchers
from analyzers.stats.buckets import (
    BreakdownRow,
    QuantileEstimate,
    native_cumulative,
    quantile_from_buckets,
    quantiles_frame,
)
from analyzers.text import format_duration

__all__ = [
    "PERCENTILES",
    "Breakdown",
    "Distribution",
    "LatencyData",
    "breakdown",
    "distributions",
    "latency_panel",
    "service_selector",
]

#: Percentile choices offered on the Latency page: label -> quantile.
PERCENTILES: dict[str, float] = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p99.9": 0.999}


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def service_selector(service: str) -> str:
    """Label matchers (escaped) selecting one service's series."""
    return matchers(service=service)


@dataclass(frozen=True)
class LatencyData:
    """Bucket counts of one histogram for one service over a range, and percentiles from them.

    ``cumulative``: index time (UTC), one column per bucket upper bound ``le`` (seconds,
    ``inf`` last), values = requests counted over the trailing ``window`` (cumulative over
    buckets, as Prometheus stores them). ``quantiles``: label -> frame with ``value``,
    ``lower``, ``upper`` in seconds, where lower/upper are the bounds of the bucket the
    quantile falls in (interpolation can place it anywhere inside).
    """

    query: str
    les: tuple[float, ...]
    cumulative: pd.DataFrame
    quantiles: dict[str, pd.DataFrame]
    warnings: tuple[str, ...]
    step: int
    window: str
    window_s: float
    #: What answered: "histogram" (classic ``le`` buckets), "native histogram", "summary", or ""
    #: (nothing). For a summary ``cumulative`` is empty and each quantile frame's ``value`` is the
    #: highest instance's quantile, ``lower``/``upper`` the lowest/highest instance's.
    source: str = "histogram"
    instances: int = 0
    #: Percentiles asked for that the summary does not export.
    missing: tuple[str, ...] = ()


def latency_panel(
    client: Querier, histogram: str, service: str, start: int, end: int, step: int, percentiles: tuple[str, ...],
    *, scrape_interval_s: float,
) -> LatencyData:
    """One ``query_range`` (:func:`analyzers.prometheus.latency.latency_query`) answered by whichever
    the service exposes: classic buckets ``sum by (le) (increase(<histogram>_bucket[w]))``, a native
    histogram ``sum(increase(<histogram>[w]))`` (turned into the same cumulative counts), or a
    summary's per-instance quantile series.

    From buckets, percentiles use Prometheus's interpolation
    (:func:`analyzers.stats.buckets.quantiles_frame`); ``w`` is at least 4 scrape intervals and at
    least the step. Percentiles are scale-free, so the same counts serve the percentile lines and
    (divided by ``w``) the heatmap's req/s. A summary's quantiles cannot be aggregated across
    instances: the line is the highest instance's (an upper bound of the service-wide quantile,
    which lies between the instances' lowest and highest) and the band spans all instances.
    The query asks for every offered percentile, so picking others reuses a cached answer.
    """
    window = rate_window(step, scrape_interval_s)
    query = latency_query(histogram, service_selector(service), window, PERCENTILES.values())
    result = client.query_range(query, _dt(start), _dt(end), float(step))
    source, frame, summary = split_latency_result(result)
    quantiles: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    instances = 0
    if source == "summary":
        for label in percentiles:
            per = summary_quantiles(summary, PERCENTILES[label])
            if per.empty:
                missing.append(label)
                continue
            instances = max(instances, per.shape[1])
            quantiles[label] = pd.DataFrame({"value": per.max(axis=1), "lower": per.min(axis=1),
                                             "upper": per.max(axis=1)})
    else:
        quantiles = {label: quantiles_frame(frame, PERCENTILES[label]) for label in percentiles}
    return LatencyData(
        query=query, les=tuple(float(c) for c in frame.columns), cumulative=frame, quantiles=quantiles,
        warnings=tuple(result.warnings), step=step, window=window, window_s=parse_duration(window),
        source=source, instances=instances, missing=tuple(missing),
    )


@dataclass(frozen=True)
class Distribution:
    """Bucket counts of one window: cumulative counts per ``le`` over ``[start, end]``."""

    start: int
    end: int
    les: tuple[float, ...]
    cumulative: tuple[float, ...]
    query: str
    warnings: tuple[str, ...]
    #: "histogram" (classic ``le`` buckets) or "native histogram" (``les`` = every bound of both windows).
    source: str = "histogram"
    #: Native histogram: how many buckets the window's histogram has (classic: 0).
    native_buckets: int = 0


def distributions(
    client: Querier, histogram: str, service: str, windows: tuple[tuple[str, int, int], ...], *, native: bool = False
) -> tuple[Distribution, ...]:
    """Requests per bucket over each ``(name, start, end)`` window, in ONE instant query
    (:func:`analyzers.prometheus.latency.windows_query`: each window's ``increase(...[end-start])``
    shifted with ``offset`` to its end). A window without data gets empty ``les``.

    ``native=True`` (two windows, a native histogram): both windows' histograms come from
    :func:`analyzers.prometheus.native.native_windows_query` and are put on the same bounds (every
    bucket bound either window has, :func:`analyzers.stats.buckets.native_cumulative`)."""
    if native:
        return _native_distributions(client, histogram, service, windows)
    query, at = windows_query(histogram, service_selector(service), {n: (a, b) for n, a, b in windows})
    result = client.query(query, _dt(at))
    out = []
    for name, start, end in windows:
        les, counts = window_counts(result, name)
        out.append(Distribution(start, end, les, counts, query, tuple(result.warnings)))
    return tuple(out)


def _native_distributions(
    client: Querier, histogram: str, service: str, windows: tuple[tuple[str, int, int], ...]
) -> tuple[Distribution, ...]:
    (_, b0, b1), (_, a0, a1) = windows
    query, at = native_windows_query(histogram, service_selector(service), (b0, b1), (a0, a1), "service")
    result = client.query(query, _dt(at))
    first, second = split_native_windows(result, "service")
    present = [h for h in (first, second) if h is not None]
    les, counts = native_cumulative(present)
    out = []
    for h, (start, end) in ((first, (b0, b1)), (second, (a0, a1))):
        if h is None or h.count <= 0:
            out.append(Distribution(start, end, (), (), query, tuple(result.warnings), "native histogram", 0))
            continue
        row = counts[present.index(h)]
        out.append(Distribution(start, end, les, tuple(float(c) for c in row), query, tuple(result.warnings),
                                "native histogram", len(h.buckets)))
    return tuple(out)


@dataclass(frozen=True)
class Breakdown:
    """Who is slow: label values ranked by their excess share of the slow tail over one window."""

    label: str
    quantile: str
    threshold_le: float
    overall: QuantileEstimate  # the whole service over the window
    rows: tuple[BreakdownRow, ...]  # worst first
    query: str
    warnings: tuple[str, ...]


def breakdown(
    client: Querier, histogram: str, service: str, label: str, quantile: str, start: int, end: int,
    *, native: bool = False,
) -> Breakdown | None:
    """One instant query of every bucket by ``label`` over ``[start, end]``; the slow threshold is
    the lower bound of the bucket holding the service-wide ``quantile`` (so the slow set is the
    tail at and above that bucket). None when there were no requests.

    ``native=True``: one native histogram per label value
    (:func:`analyzers.prometheus.native.native_breakdown_query`), added up locally for the
    service-wide quantile; the threshold is again a bucket bound, so the slow counts are exact.
    """
    window = format_duration(end - start)
    if native:
        query = native_breakdown_query(histogram, service_selector(service), label, window)
    else:
        query = breakdown_query(histogram, service_selector(service), label, None, window)
    result = client.query(query, _dt(end))
    les: list[float] = []
    totals: list[float] = []  # the whole service's cumulative counts per bound
    if native:
        histograms = [s.histograms[-1][1] for s in result.series if s.histograms]
        if histograms:
            bounds, per_value = native_cumulative(histograms)
            les, totals = list(bounds), per_value.sum(axis=0).tolist()
    else:
        frame = buckets_frame(result)
        if not frame.empty:
            les, totals = [float(c) for c in frame.columns], frame.iloc[-1].to_numpy(dtype=float).tolist()
    if not totals:
        return None
    overall = quantile_from_buckets(les, totals, PERCENTILES[quantile])
    if overall.value != overall.value:  # NaN: no requests
        return None
    # Slow = above the lower bound of the bucket holding the quantile; when that is the zero bucket
    # (or below), above the first positive bound.
    positive = [b for b in les if 0 < b < float("inf")]
    threshold = overall.lower if overall.lower > 0 or not positive else positive[0]
    rank = native_slow_share_breakdown if native else slow_share_breakdown
    return Breakdown(label, quantile, threshold, overall, rank(result, label, threshold), query,
                     tuple(result.warnings))
