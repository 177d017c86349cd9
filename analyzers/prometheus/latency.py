"""Latency PromQL builders (classic histograms and summaries) and parsing of their answers.

Builders follow the idioms that keep percentiles honest (``docs/prometheus.md``): ``rate``
before ``sum``, ``le`` always kept in ``by()``, a rate window of at least 4 scrape intervals
and at least the step, one instant ``increase(...[window])`` query for a whole before/after
window (never an average of per-step percentiles).

The maths on the parsed counts (quantiles with their bucket bounds, the G-test, the slow-share
ranking) is pure and lives in :mod:`analyzers.stats.buckets`; native histograms' builders and
parsing in :mod:`analyzers.prometheus.native`; the panels that combine them (and the burn-rate
policy) in :mod:`analyzers.drilldown`.

``selector`` arguments are label matchers as PromQL text, with or without braces
(``service="checkout"``); build them with :func:`analyzers.prometheus.promql.matchers` or
:func:`analyzers.prometheus.promql.render` so values are escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from analyzers.errors import ConfigError
from analyzers.prometheus.promql import (
    by_clause,
    escape_regex_value,
    histogram_base,
    quantile_text,
    validate_label_name,
    validate_metric_name,
    window_increases,
    window_text,
    with_matchers,
)
from analyzers.prometheus.results import PromSeries, QueryResult
from analyzers.stats.buckets import BreakdownRow, rank_breakdown
from analyzers.text import format_duration

__all__ = [
    "breakdown_query",
    "buckets_frame",
    "heatmap_query",
    "latency_query",
    "le_matcher",
    "parse_le",
    "quantile_matcher",
    "quantile_query",
    "rate_window",
    "slow_share_breakdown",
    "native_buckets_frame",
    "split_latency_result",
    "summary_quantile_query",
    "summary_quantiles",
    "window_counts",
    "window_quantile_query",
    "windows_query",
]


# --- PromQL builders -------------------------------------------------------------------

def rate_window(step_s: float, scrape_interval_s: float) -> str:
    """The rate window for a step: ``max(4 x scrape interval, step)`` as a PromQL duration.

    Shorter windows hold too few samples per bucket and pin quantiles to bucket bounds;
    a window shorter than the step would skip samples between steps.
    """
    return format_duration(math.ceil(max(4.0 * scrape_interval_s, step_s)))


def quantile_query(histogram: str, selector: str, q: float, window: str | float, by: Sequence[str] = ()) -> str:
    """``histogram_quantile(q, sum by (le, ...) (rate(h_bucket{sel}[window])))``.

    ``histogram`` is the base name (``http_request_duration_seconds``; a ``_bucket`` suffix is
    accepted). ``le`` is always kept; ``by`` adds breakdown labels. Per-step values: plot them,
    but never average them over a window (use :func:`window_quantile_query`).
    """
    return (
        f"histogram_quantile({quantile_text(q)}, sum by ({by_clause(by, keep_le=True)}) "
        f"(rate({histogram_base(histogram)}_bucket{with_matchers(selector)}[{window_text(window)}])))"
    )


def heatmap_query(histogram: str, selector: str, window: str | float) -> str:
    """``sum by (le) (increase(h_bucket{sel}[window]))``: cumulative counts per bucket and step.

    Use ``window`` = the step so each cell counts the requests of its step; difference
    neighbouring buckets with :func:`bucket_increments` for the heatmap cells. The same query as
    an instant query over a whole window gives that window's bucket counts.
    """
    return f"sum by (le) (increase({histogram_base(histogram)}_bucket{with_matchers(selector)}[{window_text(window)}]))"


def windows_query(histogram: str, selector: str, windows: Mapping[str, tuple[int, int]]) -> tuple[str, int]:
    """Bucket counts of several windows in ONE instant query: ``(query, evaluation time)``.

    Each window ``name: (start, end)`` (Unix seconds) becomes
    ``label_replace(sum by (le) (increase(h_bucket{sel}[end-start] offset (at-end))), "window", name, "", "")``
    and the parts are joined with ``or``; evaluated at ``at`` = the latest end, each part counts
    exactly its own window (the same numbers as one instant query per window at its end).
    Split the answer by the ``window`` label.
    """
    if not windows:
        raise ConfigError("windows_query needs at least one window")
    for name in windows:
        if not re.fullmatch(r"[A-Za-z0-9_ -]+", name):
            raise ConfigError(f"window name {name!r}: letters, digits, spaces, '-' and '_' only")
    series = f"{histogram_base(histogram)}_bucket{with_matchers(selector)}"
    at, increases = window_increases(series, windows.values())
    parts = [f'label_replace(sum by (le) ({inc}), "window", "{name}", "", "")'
             for name, inc in zip(windows, increases, strict=True)]
    return " or ".join(parts), at


def window_quantile_query(histogram: str, selector: str, q: float, window: str | float) -> str:
    """One quantile for a whole window, as an *instant* query evaluated at the window's end.

    ``histogram_quantile(q, sum by (le) (increase(h_bucket{sel}[window])))``: the quantile of
    all requests in the window, which an average of per-step quantiles is not.
    """
    return (
        f"histogram_quantile({quantile_text(q)}, sum by (le) "
        f"(increase({histogram_base(histogram)}_bucket{with_matchers(selector)}[{window_text(window)}])))"
    )


def summary_quantile_query(metric: str, selector: str, q: float, *, aggregate: str = "none") -> str:
    """A summary's precomputed quantile series: ``metric{sel, quantile="q"}``.

    Summary quantiles cannot be combined across instances. ``aggregate="none"`` returns one
    series per instance; ``"max"`` returns ``max(...)``, an upper bound of the combined
    quantile (the quantile of a mixture lies between its parts' smallest and largest).
    """
    matcher = f'quantile="{quantile_text(q)}"'
    inner = f"{validate_metric_name(metric)}{with_matchers(selector, matcher)}"
    if aggregate == "none":
        return inner
    if aggregate == "max":
        return f"max({inner})"
    raise ConfigError(f"aggregate must be 'none' or 'max', got {aggregate!r}")


def quantile_matcher(quantiles: Iterable[float]) -> str:
    """``quantile=~"0.5|0.99"`` matching a summary's quantile label however a client spells it."""
    spellings: list[str] = []
    for q in quantiles:
        spellings += [quantile_text(q), repr(float(q))]
    unique = list(dict.fromkeys(spellings))
    if not unique:
        raise ConfigError("pick at least one quantile")
    return 'quantile=~"' + "|".join(escape_regex_value(s) for s in unique) + '"'


def latency_query(histogram: str, selector: str, window: str | float, quantiles: Iterable[float]) -> str:
    """The percentile/heatmap panel's one query, whatever the service exposes.

    ``sum by (le) (increase(h_bucket{sel}[w]))`` (classic histogram) ``or``
    ``sum(increase(h{sel, quantile=""}[w]))`` (native histogram: the server returns histogram
    samples) ``or`` ``h{sel, quantile=~"..."}`` (summary: precomputed per-instance quantiles).
    A name is only ever one of the three, so exactly one part answers; split the answer with
    :func:`split_latency_result`.
    """
    base, w, sel = histogram_base(histogram), window_text(window), with_matchers(selector)
    no_quantile = with_matchers(selector, 'quantile=""')
    return (
        f"sum by (le) (increase({base}_bucket{sel}[{w}]))"
        f" or sum(increase({base}{no_quantile}[{w}]))"
        f" or {base}{with_matchers(selector, quantile_matcher(quantiles))}"
    )


def le_matcher(threshold_le: float | str) -> str:
    """``le=~"0.5|0\\\\.5|5e-01"`` matching the ways client libraries spell a bucket bound.

    The Go client writes ``1`` where the Python client writes ``1.0``; an exact ``le="1"`` would
    silently match nothing for half the fleet.
    """
    value = float(threshold_le)
    if math.isinf(value):
        spellings = ["+Inf"]
    else:
        spellings = [repr(value), format(value, "g"), str(threshold_le).strip()]
        if value.is_integer():
            spellings.append(str(int(value)))
    unique = list(dict.fromkeys(spellings))
    return 'le=~"' + "|".join(escape_regex_value(s) for s in unique) + '"'


def breakdown_query(
    histogram: str, selector: str, label: str, threshold_le: float | str | None, window: str | float
) -> str:
    """Per value of ``label``: the ``threshold_le`` and ``+Inf`` bucket counts over ``window``.

    ``sum by (label, le) (increase(h_bucket{sel, le=~"<threshold>|+Inf"}[window]))`` as an
    instant query; feed the result to :func:`slow_share_breakdown`. With ``threshold_le=None``
    every bucket comes back, so the threshold can be chosen afterwards.
    """
    validate_label_name(label)
    extra = []
    if threshold_le is not None:
        extra.append(le_matcher(threshold_le)[:-1] + "|" + escape_regex_value("+Inf") + '"')
    return (
        f"sum by ({by_clause([label], keep_le=True)}) "
        f"(increase({histogram_base(histogram)}_bucket{with_matchers(selector, *extra)}[{window_text(window)}]))"
    )


# --- parsing answers -------------------------------------------------------------------

def parse_le(value: str) -> float:
    try:
        return float(value)  # "+Inf" -> inf
    except ValueError:
        raise ValueError(f"bucket label le={value!r} is not a number") from None


def buckets_frame(result: QueryResult) -> pd.DataFrame:
    """Cumulative bucket counts (or rates): index time, one column per ``le`` (float, sorted).

    Series that share an ``le`` (the query kept other labels) are added up. ``+Inf`` is
    ``math.inf``. Raises ValueError when a series has no ``le`` label (``le`` missing from
    ``by()``).
    """
    return _buckets_frame(result.series)


def _buckets_frame(series: Iterable[PromSeries]) -> pd.DataFrame:
    columns: dict[float, pd.Series] = {}
    for s in series:
        if "le" not in s.labels:
            raise ValueError(
                f"series {s.name} has no 'le' label: keep le in the query's by() (sum by (le) (...))"
            )
        le = parse_le(s.labels["le"])
        columns[le] = columns[le].add(s.values, fill_value=0.0) if le in columns else s.values
    if not columns:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype="float64")
    frame = pd.DataFrame({k: columns[k] for k in sorted(columns)})
    frame.columns = pd.Index([float(c) for c in frame.columns], name="le")
    frame.index.name = "time"
    return frame


def _instance(labels: dict[str, str]) -> str:
    rest = {k: v for k, v in labels.items() if k not in ("__name__", "quantile")}
    return ", ".join(f"{k}={v}" for k, v in sorted(rest.items())) or "(one series)"


def summary_quantiles(series: Iterable[PromSeries], q: float) -> pd.DataFrame:
    """A summary's ``q`` quantile per instance: index time, one column per instance (label set)."""
    cols = {
        _instance(s.labels): s.values
        for s in series
        if "quantile" in s.labels and math.isclose(float(s.labels["quantile"]), q, rel_tol=1e-9)
    }
    if not cols:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype="float64")
    frame = pd.DataFrame(cols).sort_index(axis=1)
    frame.index.name = "time"
    return frame


def native_buckets_frame(series: PromSeries) -> pd.DataFrame:
    """A native histogram series as a :func:`analyzers.prometheus.latency.buckets_frame`: cumulative counts per upper bound.

    Columns are every bucket bound seen in the range (exponential, so much finer than classic
    buckets) plus ``inf`` holding each sample's total count; a bucket absent from a sample counts
    0. The same quantile code then gives Prometheus 2.x's native ``histogram_quantile`` (linear
    interpolation inside the bucket), and the heatmap code draws the fine buckets.
    """
    samples = series.histograms
    if not samples:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype="float64")
    # Lower bounds too: a sparse histogram skips empty buckets, and a quantile must be interpolated
    # from its own bucket's lower bound (as Prometheus does), not from the previous populated one.
    bounds = sorted({x for _, h in samples for b in h.buckets for x in (b.lower, b.upper) if math.isfinite(x)})
    col = {u: i for i, u in enumerate(bounds)}
    per = np.zeros((len(samples), len(bounds) + 1))
    for i, (_, h) in enumerate(samples):
        for b in h.buckets:
            per[i, col[b.upper] if math.isfinite(b.upper) else len(bounds)] += b.count
    cumulative = np.cumsum(per, axis=1)
    cumulative[:, -1] = [h.count for _, h in samples]
    index = pd.DatetimeIndex([t for t, _ in samples], name="time")
    return pd.DataFrame(cumulative, index=index, columns=pd.Index([*bounds, math.inf], name="le", dtype="float64"))


def split_latency_result(result: QueryResult) -> tuple[str, pd.DataFrame, list[PromSeries]]:
    """Which part of :func:`latency_query` answered: ``(kind, cumulative frame, summary series)``.

    ``kind`` is ``"histogram"`` (classic ``le`` buckets), ``"native histogram"`` (turned into the
    same cumulative frame by :func:`native_buckets_frame`), ``"summary"`` (the frame is empty; the
    per-instance quantile series are returned) or ``""`` when nothing answered.
    """
    classic = [s for s in result.series if "le" in s.labels]
    if classic:
        return "histogram", _buckets_frame(classic), []
    native = [s for s in result.series if s.histograms]
    if native:
        return "native histogram", native_buckets_frame(native[0]), []
    summary = [s for s in result.series if "quantile" in s.labels]
    return ("summary" if summary else ""), _buckets_frame(()), summary

def slow_share_breakdown(result: QueryResult, label: str, threshold_le: float) -> tuple[BreakdownRow, ...]:
    """Rank ``label``'s values by how much more of the slow tail they hold than of the traffic.

    ``result`` is the answer to :func:`breakdown_query` (instant, by ``label`` and ``le``);
    ``threshold_le`` must be one of its bucket bounds. Requests above that bound are slow.
    """
    totals: dict[str, float] = {}
    fast: dict[str, float] = {}
    seen_threshold = False
    for s in result.series:
        if s.values.empty:
            continue
        value = s.labels.get(label, "")
        le = parse_le(s.labels.get("le", "nan"))
        count = float(np.nansum(s.values.to_numpy()[-1:]))
        if math.isinf(le):
            totals[value] = totals.get(value, 0.0) + count
        elif math.isclose(le, float(threshold_le), rel_tol=1e-9):
            fast[value] = fast.get(value, 0.0) + count
            seen_threshold = True
    if totals and not seen_threshold:
        raise ValueError(f"no bucket le={threshold_le} in the result: pick one of the histogram's bucket bounds")
    return rank_breakdown(totals, fast)



def window_counts(result: QueryResult, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """One window's ``(les, cumulative counts)`` from the answer to :func:`windows_query`, sorted
    by bound; empty tuples when the window had no bucket series."""
    pairs = sorted(
        (parse_le(s.labels.get("le", "nan")), float(s.values.iloc[-1]))
        for s in result.series
        if s.labels.get("window") == name and len(s.values)
    )
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

