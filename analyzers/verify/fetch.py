"""Fetching a catalog metric around a deploy as one regular-step series (NaN for gaps).

Requests never exceed the back end's 11,000-point cap (split on the step-aligned grid, the step
is never raised, so every deploy sees the same grid); :class:`DirectFetcher` asks for one
deploy's window, :mod:`analyzers.verify.fleet` batches many deploys of one service. Also the
small views of a series a verdict carries (levels in the compared windows, chart points).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from analyzers.config import Config
from analyzers.errors import AnalyzerError
from analyzers.model import Deploy
from analyzers.verify.plan import metric_query
from analyzers.verify.span_cache import SHARED, SpanCache, server_key

if TYPE_CHECKING:
    from analyzers.prometheus.client import PrometheusClient


class Fetcher(Protocol):
    """Gets one query's values on a regular grid; verification asks it instead of the client.

    A fetcher may also have ``fetch_buckets(query, metric_key, start, end, step_s)`` returning
    :class:`BucketGrid` and warnings for a ``sum by (le) (...)`` query (one series per bound);
    without it, :func:`fetch_bucket_grid` asks the client."""

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime, step_s: float) -> tuple[pd.Series, tuple[str, ...]]: ...


class BucketGrid(NamedTuple):
    """Counts per bucket bound on a regular grid: ``les`` sorted (``+Inf`` last), ``counts`` one
    row per time of ``index`` (cumulative over the bounds; NaN rows where the back end had none)."""

    les: tuple[float, ...]
    counts: np.ndarray
    index: pd.DatetimeIndex


def series_from_result(result: Any, metric_key: str, start: datetime, end: datetime, step_s: float) -> pd.Series:
    """One regular-step series (NaN for gaps) from a :class:`QueryResult` that must hold <= 1 series."""
    real_step = result.step_s or step_s
    index = pd.date_range(
        start=pd.Timestamp(result.start).tz_convert("UTC") if result.start is not None else start,
        end=pd.Timestamp(result.end).tz_convert("UTC") if result.end is not None else end,
        freq=pd.Timedelta(seconds=real_step),
    )
    if len(result.series) == 0:
        return pd.Series(float("nan"), index=index, dtype=float)
    if len(result.series) > 1:
        labels = ", ".join(str(s.labels) for s in result.series[:3])
        raise AnalyzerError(
            f"metric {metric_key!r} returned {len(result.series)} series ({labels}...); "
            f"aggregate its query in the catalog (e.g. sum(...)) so it returns one series"
        )
    values = result.series[0].values.astype(float)
    if values.index.has_duplicates:
        values = values[~values.index.duplicated()]
    if len(values) == len(index) and values.index.equals(index):  # no gaps: nothing to align
        return pd.Series(values.to_numpy(), index=index, dtype=float)
    return values.reindex(index)


MAX_POINTS = 11_000


def align(t: float, step_s: float, *, up: bool) -> float:
    """Unix seconds aligned to a multiple of the step (down, or up)."""
    q = t / step_s
    n = math.floor(q) if not up else math.ceil(q)
    return n * step_s


def fetch_grid(
    client: PrometheusClient, query: str, metric_key: str, a: float, b: float, step_s: float
) -> tuple[list[pd.Series], list[tuple[float, float, tuple[str, ...]]], int, int]:
    """Fetch ``query`` on the step-aligned grid [a, b], split so no request exceeds the
    back end's 11,000-point cap (the step is never raised: every deploy sees the same grid).
    Returns (parts, warnings by span, queries issued, points fetched)."""
    parts: list[pd.Series] = []
    warns: list[tuple[float, float, tuple[str, ...]]] = []
    queries = points = 0
    # The client raises the step once an aligned range could exceed the cap (it allows one
    # extra step at each end for alignment), so stay three points under it.
    span = (MAX_POINTS - 3) * step_s
    t = a
    while t <= b:
        t_end = min(b, t + span)
        start = datetime.fromtimestamp(t, UTC)
        end = datetime.fromtimestamp(t_end, UTC)
        result = client.query_range(query, start, end, step_s)
        queries += 1
        points += sum(len(x.values) for x in result.series)
        if result.step_s is not None and abs(result.step_s - step_s) > 1e-9:
            raise AnalyzerError(
                f"the back end answered {metric_key!r} at a {result.step_s:g} s step instead of {step_s:g} s; "
                "lower verification.history or raise verification.step"
            )
        parts.append(series_from_result(result, metric_key, start, end, step_s))
        if result.warnings:
            warns.append((t, t_end, tuple(result.warnings)))
        t = t_end + step_s
    return parts, warns, queries, points


def grid_series(parts: list[pd.Series], a: float, b: float, step_s: float) -> pd.Series:
    index = pd.date_range(pd.Timestamp(a, unit="s", tz="UTC"), pd.Timestamp(b, unit="s", tz="UTC"), freq=pd.Timedelta(seconds=step_s))
    if not parts:
        return pd.Series(float("nan"), index=index, dtype=float)
    if len(parts) == 1:  # one chunk (the common case): it is on the grid already
        s = parts[0]
        if len(s) == len(index) and s.index.equals(index):
            return pd.Series(s.to_numpy(dtype=float), index=index, dtype=float)
    s = pd.concat(parts)
    s = s[~s.index.duplicated(keep="last")]
    return s.reindex(index)


class DirectFetcher:
    """The requests one deploy needs: its own window, on the step-aligned grid.

    Answers are kept in ``cache`` (default: the process's :data:`analyzers.verify.span_cache.SHARED`;
    None: always the whole span), so a later look at the same deploy (``verify --wait`` polls, the
    scheduler's checks, a dashboard re-verify) asks only for the steps after what is held."""

    def __init__(self, client: PrometheusClient, cache: SpanCache | None = SHARED) -> None:
        self.client = client
        self.cache = cache
        self.queries = 0
        self.points = 0

    def _key(self, kind: str, query: str, step_s: float, a: float) -> tuple[Any, ...] | None:
        server = server_key(self.client) if self.cache is not None else None
        return None if server is None else (server, kind, query, float(step_s), float(a))

    def fetch_buckets(self, query: str, metric_key: str, start: datetime, end: datetime,
                      step_s: float) -> tuple[BucketGrid, tuple[str, ...]]:
        a, b = align(start.timestamp(), step_s, up=False), align(end.timestamp(), step_s, up=True)
        key = self._key("buckets", query, step_s, a)
        if key is None or self.cache is None:
            grid, warns, q, n = bucket_grid_span(self.client, query, metric_key, a, b, step_s)
        else:
            def get(lo: float, hi: float) -> tuple[tuple[Any, ...], np.ndarray, tuple[str, ...], int, int]:
                g, w, q, n = bucket_grid_span(self.client, query, metric_key, lo, hi, step_s)
                return g.les, g.counts, w, q, n

            les, counts, warns, q, n = self.cache.get_span(key, a, b, step_s, get)
            grid = BucketGrid(tuple(float(x) for x in les), counts, _grid_index(a, b, step_s))  # type: ignore[arg-type]
        self.queries += q
        self.points += n
        return grid, warns

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime, step_s: float) -> tuple[pd.Series, tuple[str, ...]]:
        a, b = align(start.timestamp(), step_s, up=False), align(end.timestamp(), step_s, up=True)

        def get(lo: float, hi: float) -> tuple[tuple[Any, ...], np.ndarray, tuple[str, ...], int, int]:
            parts, warns, q, n = fetch_grid(self.client, query, metric_key, lo, hi, step_s)
            values = grid_series(parts, lo, hi, step_s).to_numpy(dtype=float)
            return ("value",), values[:, None], tuple(w for _, _, ws in warns for w in ws), q, n

        key = self._key("series", query, step_s, a)
        if key is None or self.cache is None:
            _, values, warns, q, n = get(a, b)
        else:
            _, values, warns, q, n = self.cache.get_span(key, a, b, step_s, get)
        self.queries += q
        self.points += n
        return pd.Series(values[:, 0], index=_grid_index(a, b, step_s), dtype=float), warns


def _grid_index(a: float, b: float, step_s: float) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(a, unit="s", tz="UTC"), pd.Timestamp(b, unit="s", tz="UTC"),
                         freq=pd.Timedelta(seconds=step_s))


def bucket_grid_from(parts: list[pd.DataFrame], a: float, b: float, step_s: float) -> BucketGrid:
    """One :class:`BucketGrid` on the grid [a, b] from frames of ``buckets_frame`` (columns: bounds)."""
    index = pd.date_range(pd.Timestamp(a, unit="s", tz="UTC"), pd.Timestamp(b, unit="s", tz="UTC"), freq=pd.Timedelta(seconds=step_s))
    parts = [p for p in parts if len(p.columns)]
    if not parts:
        return BucketGrid((), np.empty((len(index), 0)), index)
    frame = pd.concat(parts)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index(axis=1)
    frame.index = pd.DatetimeIndex(frame.index).tz_convert("UTC")
    frame = frame.reindex(index)
    return BucketGrid(tuple(float(c) for c in frame.columns), frame.to_numpy(dtype=float), index)


def fetch_bucket_grid(client: PrometheusClient, query: str, metric_key: str, start: datetime, end: datetime,
                      step_s: float) -> tuple[BucketGrid, tuple[str, ...], int, int]:
    """A ``sum by (le) (increase(h_bucket{...}[w]))`` range query on the step-aligned grid, split
    as :func:`fetch_grid` splits (the cap is per series). Returns the grid, the back end's warnings,
    queries issued and points fetched. Counter resets are the back end's to handle (``increase``)."""
    a, b = align(start.timestamp(), step_s, up=False), align(end.timestamp(), step_s, up=True)
    return bucket_grid_span(client, query, metric_key, a, b, step_s)


def bucket_grid_span(client: PrometheusClient, query: str, metric_key: str, a: float, b: float,
                     step_s: float) -> tuple[BucketGrid, tuple[str, ...], int, int]:
    """:func:`fetch_bucket_grid` on the aligned grid [a, b] (Unix seconds)."""
    from analyzers.prometheus.latency import buckets_frame

    parts: list[pd.DataFrame] = []
    warns: list[str] = []
    queries = points = 0
    span = (MAX_POINTS - 3) * step_s
    t = a
    while t <= b:
        t_end = min(b, t + span)
        result = client.query_range(query, datetime.fromtimestamp(t, UTC), datetime.fromtimestamp(t_end, UTC), step_s)
        queries += 1
        points += sum(len(x.values) for x in result.series)
        if result.step_s is not None and abs(result.step_s - step_s) > 1e-9:
            raise AnalyzerError(f"the back end answered {metric_key!r} at a {result.step_s:g} s step instead of {step_s:g} s; "
                                "lower verification.history or raise verification.step")
        try:
            parts.append(buckets_frame(result))
        except ValueError as exc:
            raise AnalyzerError(f"metric {metric_key!r}: {exc}") from exc
        warns.extend(result.warnings)
        t = t_end + step_s
    return bucket_grid_from(parts, a, b, step_s), tuple(warns), queries, points


def read_quantile_series(grid: BucketGrid, q: float) -> pd.Series:
    """Quantile ``q`` of each step's requests (seconds), read from its bucket counts
    (:func:`analyzers.stats.step_quantiles.step_log_quantiles`; NaN where it cannot be read)."""
    from analyzers.stats.step_quantiles import step_log_quantiles

    if not grid.les:
        return pd.Series(np.nan, index=grid.index, dtype=float)
    return pd.Series(np.exp(step_log_quantiles(grid.les, grid.counts, q)), index=grid.index, dtype=float)


def fetch_buckets(client: PrometheusClient | None, fetcher: Fetcher | None, query: str, metric_key: str,
                  start: datetime, end: datetime, step_s: float) -> tuple[BucketGrid, tuple[str, ...]]:
    """The bucket counts of ``query`` through ``fetcher.fetch_buckets`` when it has one, else the client."""
    own = getattr(fetcher, "fetch_buckets", None)
    if own is not None:
        return own(query, metric_key, start, end, step_s)  # type: ignore[no-any-return]
    if client is None:
        raise AnalyzerError(f"metric {metric_key!r} reads bucket counts per bound: it needs a Prometheus client "
                            "or a fetcher with fetch_buckets")
    grid, warns, _, _ = fetch_bucket_grid(client, query, metric_key, start, end, step_s)
    return grid, warns


def fetch_metric_series(
    client: PrometheusClient | None,
    config: Config,
    metric_key: str,
    deploy: Deploy,
    start: datetime,
    end: datetime,
    step_s: float | None = None,
    *,
    fetcher: Fetcher | None = None,
) -> tuple[str, pd.Series, tuple[str, ...]]:
    """Fetch one catalog metric for a deploy as one series (regular step, NaN for gaps).

    A metric with ``read_quantile`` (``latency_shift``) is that quantile of each step's requests
    in seconds, read from the step's bucket counts (:func:`read_quantile_series`).

    Raises :class:`PrometheusError` on back-end failures and :class:`AnalyzerError` when the
    template returns several series (the template must aggregate to one).
    """
    step = step_s if step_s is not None else config.verification.step_s
    query = metric_query(config, metric_key, deploy, step_s=step)
    spec = config.metric(metric_key)
    if spec.read_quantile is not None:
        grid, warns = fetch_buckets(client, fetcher, query, metric_key, start, end, step)
        return query, read_quantile_series(grid, spec.read_quantile), warns
    if fetcher is None:
        if client is None:
            raise ValueError("fetch_metric_series needs a client or a fetcher")
        fetcher = DirectFetcher(client)
    series, warnings = fetcher.fetch(query, metric_key, start, end, step)
    return query, series, warnings


def window_levels(series: pd.Series, res: dict[str, Any]) -> dict[str, Any]:
    """Median level in the compared windows and the share of missing points in each.

    Reported next to the effect so a reader sees "12 ms -> 18 ms" and whether gaps (scrape
    failures, often right at the deploy) thinned the evidence.
    """
    out: dict[str, Any] = {}
    index = series.index
    sorted_index = isinstance(index, pd.DatetimeIndex) and index.is_monotonic_increasing
    values = series.to_numpy(dtype=float)
    for name in ("before", "after"):
        window = res.get(f"{name}_window")
        if not window or window[0] is None or window[1] is None:
            continue
        lo, hi = pd.Timestamp(window[0]), pd.Timestamp(window[1])
        if sorted_index:  # the usual grid: two binary searches instead of two full comparisons
            part = values[index.searchsorted(lo, side="left"): index.searchsorted(hi, side="right")]
        else:
            part = values[np.asarray((index >= lo) & (index <= hi))]
        finite = part[np.isfinite(part)]
        out[f"{name}_value"] = float(np.median(finite)) if len(finite) else None
        out[f"{name}_missing"] = round(1 - len(finite) / len(part), 4) if len(part) else None
    return out


def chart_points(series: pd.Series, deploy: Deploy, config: Config, max_points: int = 240) -> dict[str, list[Any]]:
    """The series from ``window_before`` before the deploy to the end, thinned to ``max_points``."""
    lo = pd.Timestamp(deploy.started_at - timedelta(seconds=config.verification.window_before_s))
    index = series.index
    if isinstance(index, pd.DatetimeIndex) and index.is_monotonic_increasing:
        part = series.iloc[index.searchsorted(lo, side="left"):]
    else:
        part = series[index >= lo]
    if len(part) > max_points:
        stride = -(-len(part) // max_points)
        part = part.iloc[::stride]
    if isinstance(part.index, pd.DatetimeIndex) and part.index.tz is not None:
        ts = (part.index.as_unit("us").asi8 // 1_000_000).tolist()  # whole seconds, as int(t.timestamp())
    else:
        ts = [int(t.timestamp()) for t in part.index]
    values = np.round(part.to_numpy(dtype=float), 9)  # display values: 9 decimals keep the JSON small
    vs = values.astype(object)
    vs[~np.isfinite(values)] = None
    return {"t": ts, "v": vs.tolist()}
