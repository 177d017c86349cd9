"""Latency maths: PromQL builders for classic and native histograms and the same maths done locally.

Builders follow the idioms that keep percentiles honest (field-notes.md "PromQL for
latency"): ``rate`` before ``sum``, ``le`` always kept in ``by()``, a rate window of at least
4 scrape intervals and at least the step, one instant ``increase(...[window])`` query for a
whole before/after window (never an average of per-step percentiles).

Caveat every reader of a histogram quantile must know: the value is *interpolated* linearly
inside the bucket that holds it, so its error can be as large as that bucket's width.
:func:`quantile_from_buckets` therefore returns the bucket bounds with the value, and
:func:`compare_bucket_distributions` compares whole bucket distributions, not just p99.

Native histograms (no ``_bucket`` series; exponential buckets inside each sample) get the same
panels: the builders fetch whole histograms (``sum by (label) (increase(h[w]))``) and
:func:`native_cumulative` / :func:`native_buckets_frame` turn them into cumulative counts, so the
quantile, the G-test and the slow-share ranking are the classic code. A latency threshold inside
a native bucket is interpolated linearly, as Prometheus 2.x's ``histogram_fraction`` does
(:func:`native_fraction_at_or_below` says between which ratios the truth lies).

``selector`` arguments are label matchers as PromQL text, with or without braces
(``service="checkout"``); build them with :func:`analyzers.prometheus.promql.matchers` or
:func:`analyzers.prometheus.promql.render` so values are escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import pandas as pd
from scipy.special import chdtrc

from analyzers.config import format_duration
from analyzers.errors import ConfigError
from analyzers.prometheus.client import NativeHistogram, PromSeries, QueryResult
from analyzers.prometheus.promql import (
    escape_regex_value,
    is_duration,
    validate_label_name,
    validate_metric_name,
)

__all__ = [
    "BURN_RATE_WINDOWS",
    "BreakdownRow",
    "BucketComparison",
    "BurnRateWindow",
    "NativeFraction",
    "QuantileEstimate",
    "breakdown_query",
    "bucket_increments",
    "buckets_frame",
    "burn_rate_queries",
    "burn_rate_query",
    "compare_bucket_distributions",
    "heatmap_query",
    "latency_query",
    "le_matcher",
    "native_breakdown_query",
    "native_buckets_frame",
    "native_burn_rate_query",
    "native_cumulative",
    "native_fraction_at_or_below",
    "native_good_ratio_query",
    "native_quantile_query",
    "native_slow_share_breakdown",
    "native_windows_query",
    "quantile_from_buckets",
    "quantile_matcher",
    "quantile_query",
    "quantiles_frame",
    "rate_window",
    "slo_good_ratio_query",
    "slow_share_breakdown",
    "split_latency_result",
    "split_native_windows",
    "summary_quantiles",
    "summary_quantile_query",
    "window_quantile_query",
    "windows_query",
]


# --- PromQL builders -------------------------------------------------------------------

def _base(histogram: str) -> str:
    name = histogram.removesuffix("_bucket")
    return validate_metric_name(name)


def _sel(selector: str, *extra: str) -> str:
    inner = selector.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    parts = [p for p in (inner, *extra) if p]
    return "{" + ",".join(parts) + "}" if parts else ""


def _window(window: str | float) -> str:
    if isinstance(window, (int, float)):
        return format_duration(math.ceil(window))
    if not is_duration(window):
        raise ConfigError(f"window must be a PromQL duration such as '5m', got {window!r}")
    return window


def _q(q: float) -> str:
    if not 0.0 <= q <= 1.0:
        raise ConfigError(f"quantile must be between 0 and 1 (0.99 for p99), got {q}")
    return format(q, "g")


def _by(by: Iterable[str], *, keep_le: bool) -> str:
    labels = [validate_label_name(b) for b in by if b != "le"]
    labels = list(dict.fromkeys(labels))
    if keep_le:
        labels.insert(0, "le")
    return ", ".join(labels)


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
        f"histogram_quantile({_q(q)}, sum by ({_by(by, keep_le=True)}) "
        f"(rate({_base(histogram)}_bucket{_sel(selector)}[{_window(window)}])))"
    )


def native_quantile_query(histogram: str, selector: str, q: float, window: str | float, by: Sequence[str] = ()) -> str:
    """``histogram_quantile(q, sum by (...) (rate(h{sel}[window])))`` for a *native* histogram.

    Native histograms have no ``_bucket`` series and no ``le`` label (the buckets travel inside
    each sample), so nothing is kept in ``by()`` but the breakdown labels. Their exponential
    buckets are much finer, so the interpolation error is far smaller than with classic ones.
    """
    labels = _by(by, keep_le=False)
    grouping = f" by ({labels}) " if labels else ""
    return (
        f"histogram_quantile({_q(q)}, sum{grouping}"
        f"(rate({validate_metric_name(histogram)}{_sel(selector)}[{_window(window)}])))"
    )


def heatmap_query(histogram: str, selector: str, window: str | float) -> str:
    """``sum by (le) (increase(h_bucket{sel}[window]))``: cumulative counts per bucket and step.

    Use ``window`` = the step so each cell counts the requests of its step; difference
    neighbouring buckets with :func:`bucket_increments` for the heatmap cells. The same query as
    an instant query over a whole window gives that window's bucket counts.
    """
    return f"sum by (le) (increase({_base(histogram)}_bucket{_sel(selector)}[{_window(window)}]))"


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
    at = max(end for _, end in windows.values())
    base, sel = _base(histogram), _sel(selector)
    parts = []
    for name, (start, end) in windows.items():
        if end <= start:
            raise ConfigError(f"window {name!r} must end after it starts (got {start}..{end})")
        if not re.fullmatch(r"[A-Za-z0-9_ -]+", name):
            raise ConfigError(f"window name {name!r}: letters, digits, spaces, '-' and '_' only")
        offset = f" offset {format_duration(at - end)}" if at > end else ""
        inner = f"sum by (le) (increase({base}_bucket{sel}[{format_duration(end - start)}]{offset}))"
        parts.append(f'label_replace({inner}, "window", "{name}", "", "")')
    return " or ".join(parts), at


def window_quantile_query(histogram: str, selector: str, q: float, window: str | float) -> str:
    """One quantile for a whole window, as an *instant* query evaluated at the window's end.

    ``histogram_quantile(q, sum by (le) (increase(h_bucket{sel}[window])))``: the quantile of
    all requests in the window, which an average of per-step quantiles is not.
    """
    return (
        f"histogram_quantile({_q(q)}, sum by (le) "
        f"(increase({_base(histogram)}_bucket{_sel(selector)}[{_window(window)}])))"
    )


def summary_quantile_query(metric: str, selector: str, q: float, *, aggregate: str = "none") -> str:
    """A summary's precomputed quantile series: ``metric{sel, quantile="q"}``.

    Summary quantiles cannot be combined across instances. ``aggregate="none"`` returns one
    series per instance; ``"max"`` returns ``max(...)``, an upper bound of the combined
    quantile (the quantile of a mixture lies between its parts' smallest and largest).
    """
    matcher = f'quantile="{_q(q)}"'
    inner = f"{validate_metric_name(metric)}{_sel(selector, matcher)}"
    if aggregate == "none":
        return inner
    if aggregate == "max":
        return f"max({inner})"
    raise ConfigError(f"aggregate must be 'none' or 'max', got {aggregate!r}")


def quantile_matcher(quantiles: Iterable[float]) -> str:
    """``quantile=~"0.5|0.99"`` matching a summary's quantile label however a client spells it."""
    spellings: list[str] = []
    for q in quantiles:
        spellings += [_q(q), repr(float(q))]
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
    base, w, sel = _base(histogram), _window(window), _sel(selector)
    no_quantile = _sel(selector, 'quantile=""')
    return (
        f"sum by (le) (increase({base}_bucket{sel}[{w}]))"
        f" or sum(increase({base}{no_quantile}[{w}]))"
        f" or {base}{_sel(selector, quantile_matcher(quantiles))}"
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
        f"sum by ({_by([label], keep_le=True)}) "
        f"(increase({_base(histogram)}_bucket{_sel(selector, *extra)}[{_window(window)}]))"
    )


def slo_good_ratio_query(histogram: str, selector: str, threshold_le: float | str, window: str | float) -> str:
    """Share of requests at most ``threshold_le`` seconds: good bucket rate over all requests.

    ``threshold_le`` must be one of the histogram's bucket bounds (the SLO threshold).
    """
    w, base = _window(window), _base(histogram)
    return (
        f"sum(rate({base}_bucket{_sel(selector, le_matcher(threshold_le))}[{w}]))"
        f" / sum(rate({base}_count{_sel(selector)}[{w}]))"
    )


@dataclass(frozen=True)
class BurnRateWindow:
    """A multi-window burn-rate alert: fire when both windows burn faster than ``factor``."""

    long: str
    short: str
    factor: float


# Google SRE workbook: 2% of a 30-day budget in 1 h (page), 5% in 6 h (page/ticket).
BURN_RATE_WINDOWS = (BurnRateWindow("1h", "5m", 14.4), BurnRateWindow("6h", "30m", 6.0))


def burn_rate_query(
    histogram: str, selector: str, threshold_le: float | str, objective: float, window: str | float,
    *, native: bool = False,
) -> str:
    """Error-budget burn rate: ``(1 - good ratio) / (1 - objective)``; 1 spends it exactly on time.

    ``native=True``: the good ratio of a native histogram (:func:`native_good_ratio_query`),
    where the threshold may fall inside a bucket.
    """
    if not 0.0 < objective < 1.0:
        raise ConfigError(f"SLO objective must be a fraction such as 0.999, got {objective}")
    good = (native_good_ratio_query if native else slo_good_ratio_query)(histogram, selector, threshold_le, window)
    return f"(1 - ({good})) / {format(1.0 - objective, '.12g')}"


def burn_rate_queries(
    histogram: str, selector: str, threshold_le: float | str, objective: float, *, native: bool = False
) -> tuple[tuple[BurnRateWindow, str, str], ...]:
    """For each standard window pair: (pair, long-window query, short-window query).

    ``native=True`` builds them for a native histogram (:func:`native_burn_rate_query`), where
    the threshold may fall inside a bucket.
    """
    return tuple(
        (
            w,
            burn_rate_query(histogram, selector, threshold_le, objective, w.long, native=native),
            burn_rate_query(histogram, selector, threshold_le, objective, w.short, native=native),
        )
        for w in BURN_RATE_WINDOWS
    )


# --- PromQL builders for native histograms ---------------------------------------------
#
# A native histogram has no ``_bucket`` series and no ``le`` label: every sample carries its own
# (exponential) buckets, and Prometheus 2.42 offers ``histogram_quantile``, ``histogram_fraction``,
# ``histogram_count`` and ``histogram_sum`` on them. Two limits of 2.42 shape what follows:
# ``label_replace`` turns a histogram sample into the float 0 (so two windows cannot be tagged
# with a label, see :func:`native_windows_query`), and a histogram cannot be joined to a float
# vector (``* on() group_left`` answers nothing). Buckets are therefore fetched whole and the
# bucket maths (slow share, G-test, good ratio) is done locally on :func:`native_cumulative`.

def _threshold(threshold_s: float | str) -> str:
    value = float(threshold_s)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"latency threshold must be a positive number of seconds such as 0.3, got {threshold_s!r}")
    return repr(value)


def native_breakdown_query(histogram: str, selector: str, label: str, window: str | float) -> str:
    """``sum by (label) (increase(h{sel}[window]))``: one native histogram per value of ``label``.

    Feed the instant answer to :func:`native_slow_share_breakdown`. ``label`` is user-typed: it is
    validated as a label name, and ``le`` (which a native histogram does not have) is refused.
    """
    name = validate_label_name(label)
    if name == "le":
        raise ConfigError("a native histogram has no 'le' label (its buckets travel inside each sample): "
                          "break down by endpoint, version, pod or another label of the series")
    return f"sum by ({name}) (increase({_base(histogram)}{_sel(selector)}[{_window(window)}]))"


def native_windows_query(
    histogram: str, selector: str, first: tuple[int, int], second: tuple[int, int], tag_label: str
) -> tuple[str, int]:
    """Two windows' native histograms in ONE instant query: ``(query, evaluation time)``.

    ``sum(increase(h{sel}[d1] offset o1)) or sum by (tag_label) (increase(h{sel}[d2] offset o2))``
    evaluated at the later end. Prometheus 2.42's ``label_replace`` drops histogram samples (it
    answers the float 0), so the windows are told apart by their label sets instead: the first is
    summed to no labels, the second keeps ``tag_label``. ``tag_label`` must be a label every selected
    series carries with one value (the selector's own equality matcher, e.g. ``service``); split
    the answer with :func:`split_native_windows`.
    """
    tag = validate_label_name(tag_label)
    if not re.search(rf'(^|[{{,\s]){re.escape(tag)}\s*="', selector):
        raise ConfigError(f"tag label {tag!r} must be matched with = in the selector {selector!r}")
    at = max(first[1], second[1])
    base, sel = _base(histogram), _sel(selector)
    parts = []
    for grouping, (start, end) in (("", first), (f" by ({tag})", second)):
        if end <= start:
            raise ConfigError(f"a window must end after it starts (got {start}..{end})")
        offset = f" offset {format_duration(at - end)}" if at > end else ""
        parts.append(f"sum{grouping} (increase({base}{sel}[{format_duration(end - start)}]{offset}))")
    return " or ".join(parts), at


def split_native_windows(result: QueryResult, tag_label: str) -> tuple[NativeHistogram | None, NativeHistogram | None]:
    """The answer of :func:`native_windows_query` as (first window, second window); None = no data."""
    first: NativeHistogram | None = None
    second: NativeHistogram | None = None
    for s in result.series:
        if not s.histograms:
            continue
        if s.labels.get(tag_label):
            second = s.histograms[-1][1]
        else:
            first = s.histograms[-1][1]
    return first, second


def native_good_ratio_query(histogram: str, selector: str, threshold_s: float | str, window: str | float) -> str:
    """``histogram_fraction(-Inf, t, sum(rate(h{sel}[window])))``: share of requests at most ``t`` s.

    ``t`` need not be a bucket bound: Prometheus 2.x interpolates linearly inside the bucket
    holding it (:func:`native_fraction_at_or_below` does the same locally).
    """
    return (
        f"histogram_fraction(-Inf, {_threshold(threshold_s)}, "
        f"sum(rate({_base(histogram)}{_sel(selector)}[{_window(window)}])))"
    )


def native_burn_rate_query(
    histogram: str, selector: str, threshold_s: float | str, objective: float, window: str | float
) -> str:
    """:func:`burn_rate_query` for a native histogram: ``(1 - (histogram_fraction(...))) / (1 - objective)``."""
    return burn_rate_query(histogram, selector, threshold_s, objective, window, native=True)


# --- local maths on bucket counts ------------------------------------------------------

def _le(value: str) -> float:
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
        le = _le(s.labels["le"])
        columns[le] = columns[le].add(s.values, fill_value=0.0) if le in columns else s.values
    if not columns:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"), dtype="float64")
    frame = pd.DataFrame({k: columns[k] for k in sorted(columns)})
    frame.columns = pd.Index([float(c) for c in frame.columns], name="le")
    frame.index.name = "time"
    return frame


def native_buckets_frame(series: PromSeries) -> pd.DataFrame:
    """A native histogram series as a :func:`buckets_frame`: cumulative counts per upper bound.

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


def _native_arrays(h: NativeHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A native histogram's buckets as (lower, upper, count) arrays, the zero bucket's bounds
    adjusted as Prometheus 2.x does for interpolation: ``[0, zt]`` when there are only positive
    buckets, ``[-zt, 0]`` when there are only negative ones."""
    lower = np.array([b.lower for b in h.buckets], dtype="float64")
    upper = np.array([b.upper for b in h.buckets], dtype="float64")
    count = np.array([b.count for b in h.buckets], dtype="float64")
    zero = (lower < 0) & (upper > 0)
    if zero.any():
        negative, positive = bool((upper[~zero] <= 0).any()), bool((lower[~zero] >= 0).any())
        if positive and not negative:
            lower[zero] = 0.0
        elif negative and not positive:
            upper[zero] = 0.0
    return lower, upper, count


def _native_at_or_below(h: NativeHistogram, bounds: np.ndarray) -> np.ndarray:
    """Observations of ``h`` at or below each bound, as Prometheus 2.x's ``histogram_fraction``
    counts them: whole buckets below the bound, plus the share of the bucket holding it found by
    linear interpolation; at or above the highest bucket, the histogram's whole count."""
    lower, upper, count = _native_arrays(h)
    if not len(count):
        return np.where(np.isfinite(bounds), 0.0, h.count)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(
            width[None, :] > 0,
            np.clip((bounds[:, None] - lower[None, :]) / width[None, :], 0.0, 1.0),
            (bounds[:, None] >= upper[None, :]).astype("float64"),
        )
    out = share @ count
    return np.where(bounds >= upper.max(), h.count, out)


def native_cumulative(histograms: Sequence[NativeHistogram]) -> tuple[tuple[float, ...], np.ndarray]:
    """Several native histograms on common bounds: ``(les, counts)``, ``counts[i, j]`` the
    observations of histogram ``i`` at or below ``les[j]``; ``les`` are every finite bucket bound
    (lower and upper) of any of them, sorted, then ``inf`` (each histogram's total count).

    Histograms of one schema share their bounds, so each count is exact; a bucket of a coarser
    schema that straddles a finer bound is split linearly, as Prometheus interpolates. The result
    is what :func:`quantile_from_buckets` and :func:`compare_bucket_distributions` take.
    """
    finite = sorted({x for h in histograms for b in h.buckets for x in (b.lower, b.upper) if math.isfinite(x)})
    les = np.array([*finite, math.inf], dtype="float64")
    counts = np.zeros((len(histograms), len(les)))
    for i, h in enumerate(histograms):
        counts[i] = _native_at_or_below(h, les)
    return tuple(float(x) for x in les), counts


@dataclass(frozen=True)
class NativeFraction:
    """Share of requests at or below ``threshold`` per row of a native :func:`buckets_frame`.

    ``ratio`` is interpolated linearly inside the bucket ``(lower, upper]`` holding the threshold
    (Prometheus 2.x's ``histogram_fraction``); the true share lies between ``ratio_lower`` (no
    request of that bucket at or below the threshold) and ``ratio_upper`` (all of them). When the
    threshold is a bucket bound, ``lower == upper == threshold`` and the three agree.
    """

    threshold: float
    lower: float
    upper: float
    ratio: pd.Series
    ratio_lower: pd.Series
    ratio_upper: pd.Series

    @property
    def width(self) -> float:
        return self.upper - self.lower


def native_fraction_at_or_below(cumulative: pd.DataFrame, threshold: float) -> NativeFraction:
    """:class:`NativeFraction` of ``threshold`` (seconds) for each row of ``cumulative``, a frame of
    cumulative counts per bucket bound with ``inf`` (the total) last (:func:`native_buckets_frame`).

    Rows without requests are NaN. Between two neighbouring bounds of the frame there is one
    bucket (or an empty gap), so linear interpolation between the two columns is Prometheus's;
    a zero bucket straddling 0 is interpolated from 0 when the row has no negative observations.
    """
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number of seconds, got {threshold!r}")
    les = np.array([float(c) for c in cumulative.columns])
    if not len(les) or not math.isinf(les[-1]):
        raise ValueError("the frame needs its total count in an inf column last (a native buckets frame)")
    values = np.maximum.accumulate(np.nan_to_num(cumulative.to_numpy(dtype="float64")), axis=1)
    total = values[:, -1]
    finite = les[:-1]
    j = int(np.searchsorted(finite, t, side="left"))  # first bound >= t
    if j < len(finite) and finite[j] == t:
        at = lo_c = hi_c = values[:, j]
        lower = upper = t
    elif j == 0:  # below every bucket
        at = lo_c = hi_c = np.zeros(len(values))
        lower, upper = -math.inf, (float(finite[0]) if len(finite) else math.inf)
    elif j == len(finite):  # above every bucket: everything (Prometheus answers the whole count)
        at = lo_c = hi_c = total
        lower, upper = float(finite[-1]), math.inf
    else:
        lower, upper = float(finite[j - 1]), float(finite[j])
        lo_c, hi_c = values[:, j - 1], values[:, j]
        start = np.full(len(values), lower)
        if lower < 0 < upper:  # the zero bucket: from 0 when nothing is below it (Prometheus 2.x)
            start = np.where(lo_c <= 0, 0.0, lower)
        share = np.clip((t - start) / (upper - start), 0.0, 1.0)
        at = lo_c + (hi_c - lo_c) * share
    with np.errstate(divide="ignore", invalid="ignore"):
        def ratio(x: np.ndarray) -> pd.Series:
            return pd.Series(np.where(total > 0, x / total, np.nan), index=cumulative.index, dtype="float64")

        return NativeFraction(t, lower, upper, ratio(at), ratio(lo_c), ratio(hi_c))


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


@overload
def bucket_increments(cumulative: np.ndarray) -> np.ndarray: ...
@overload
def bucket_increments(cumulative: pd.DataFrame) -> pd.DataFrame: ...
def bucket_increments(cumulative: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
    """Per-bucket (non-cumulative) counts: neighbouring cumulative buckets differenced.

    Negative differences (rate extrapolation makes cumulative counts wobble) become 0.
    Works on the last axis of an array or on the columns of a :func:`buckets_frame`.
    """
    if isinstance(cumulative, pd.DataFrame):
        values = bucket_increments(cumulative.to_numpy(dtype="float64"))
        return pd.DataFrame(values, index=cumulative.index, columns=cumulative.columns)
    arr = np.asarray(cumulative, dtype="float64")
    diffs = np.diff(arr, axis=-1, prepend=0.0)
    return np.where(np.isnan(diffs), np.nan, np.clip(diffs, 0.0, None))


@dataclass(frozen=True)
class QuantileEstimate:
    """An interpolated quantile and the bucket bounds holding it (the true value is inside).

    ``upper`` is ``inf`` when the quantile falls in the ``+Inf`` bucket (``value`` is then the
    largest finite bound, as Prometheus returns). All NaN when there are no observations.
    """

    value: float
    lower: float
    upper: float

    @property
    def width(self) -> float:
        return self.upper - self.lower


_NAN_ESTIMATE = QuantileEstimate(math.nan, math.nan, math.nan)


def quantile_from_buckets(les: Sequence[float], cumulative_counts: Sequence[float], q: float) -> QuantileEstimate:
    """Prometheus's ``histogram_quantile`` (classic buckets) on local counts, with bounds.

    Same rules as Prometheus 2.x: buckets sorted by ``le``, counts forced monotonic, the
    lowest bucket interpolated from 0 (when its bound is positive), a quantile in the ``+Inf``
    bucket reported as the largest finite bound. NaN counts are missing buckets (skipped).
    NaN when there is no ``+Inf`` bucket, fewer than two buckets or no observations.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be between 0 and 1, got {q}")
    pairs: dict[float, float] = {}
    for le, c in zip(les, cumulative_counts, strict=True):
        if math.isnan(float(c)):
            continue  # a bucket series absent at this step (a gap in a frame): Prometheus skips it too
        pairs[float(le)] = pairs.get(float(le), 0.0) + float(c)  # coalesce duplicate bounds
    bounds = sorted(pairs)
    if len(bounds) < 2 or not math.isinf(bounds[-1]):
        return _NAN_ESTIMATE
    counts = np.maximum.accumulate(np.array([pairs[b] for b in bounds]))
    total = counts[-1]
    if total <= 0:
        return _NAN_ESTIMATE
    rank = q * total
    # first bucket (excluding +Inf) whose cumulative count reaches the rank
    b = int(np.searchsorted(counts[:-1], rank, side="left"))
    if b == len(bounds) - 1:
        return QuantileEstimate(bounds[-2], bounds[-2], math.inf)
    if b == 0 and bounds[0] <= 0:
        return QuantileEstimate(bounds[0], -math.inf, bounds[0])
    start = bounds[b - 1] if b > 0 else 0.0
    end = bounds[b]
    count = counts[b] - (counts[b - 1] if b > 0 else 0.0)
    below = counts[b - 1] if b > 0 else 0.0
    # Prometheus divides 0/0 here (only possible for q=0 with an empty first bucket): NaN.
    value = start + (end - start) * ((rank - below) / count) if count > 0 else math.nan
    return QuantileEstimate(float(value), float(start), float(end))


def quantiles_frame(frame: pd.DataFrame, q: float) -> pd.DataFrame:
    """:func:`quantile_from_buckets` for each row of a :func:`buckets_frame`: value, lower, upper.

    Vectorised over rows (a 24-hour chart is ~1,200 rows per percentile); rows with a missing
    bucket (NaN) take the row-by-row path, which skips that bucket as Prometheus does.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be between 0 and 1, got {q}")
    les = np.array([float(c) for c in frame.columns])
    counts = frame.to_numpy(dtype="float64")
    n, k = counts.shape
    value = np.full(n, np.nan)
    lower = np.full(n, np.nan)
    upper = np.full(n, np.nan)
    if k >= 2 and np.all(np.diff(les) > 0) and math.isinf(les[-1]):
        gaps = np.isnan(counts).any(axis=1)
        ok = ~gaps
        c = np.maximum.accumulate(counts[ok], axis=1)
        total = c[:, -1]
        rank = q * total
        reached = c[:, :-1] >= rank[:, None]
        b = np.where(reached.any(axis=1), reached.argmax(axis=1), k - 1)
        rows = np.arange(len(b))
        prev = np.maximum(b - 1, 0)
        below = np.where(b > 0, c[rows, prev], 0.0)
        start = np.where(b > 0, les[prev], 0.0)
        end = les[np.minimum(b, k - 2)]
        count = c[rows, np.minimum(b, k - 2)] - below
        with np.errstate(invalid="ignore", divide="ignore"):
            v = np.where(count > 0, start + (end - start) * ((rank - below) / count), np.nan)
        lo, hi = start.copy(), end.copy()
        in_inf = b == k - 1
        v[in_inf], lo[in_inf], hi[in_inf] = les[k - 2], les[k - 2], np.inf
        non_pos = (b == 0) & (les[0] <= 0)
        v[non_pos], lo[non_pos], hi[non_pos] = les[0], -np.inf, les[0]
        empty = ~(total > 0)
        v[empty], lo[empty], hi[empty] = np.nan, np.nan, np.nan
        value[ok], lower[ok], upper[ok] = v, lo, hi
        slow_rows = np.flatnonzero(gaps)
    else:  # unsorted or duplicate bounds: let the scalar path sort and coalesce
        slow_rows = np.arange(n)
    for i in slow_rows:
        est = quantile_from_buckets(les.tolist(), counts[i].tolist(), q)
        value[i], lower[i], upper[i] = est.value, est.lower, est.upper
    return pd.DataFrame({"value": value, "lower": lower, "upper": upper}, index=frame.index)


# --- comparing two windows -------------------------------------------------------------

@dataclass(frozen=True)
class BucketComparison:
    """Do two windows' latency distributions differ? A G-test on (pooled) bucket counts.

    ``before_fraction``/``after_fraction`` are per-bucket shares aligned with ``les`` (for
    plotting). ``max_cdf_diff`` is the largest gap between the two bucket CDFs, an effect size
    to read next to ``p_value``: with millions of requests tiny differences are significant.
    ``pooled_les`` are the upper bounds of the groups actually tested (sparse buckets merged so
    every expected count is at least ``min_expected``). ``p_value`` is NaN when fewer than two
    groups remain (nothing to compare).
    """

    statistic: float
    p_value: float
    dof: int
    les: tuple[float, ...]
    before_fraction: tuple[float, ...]
    after_fraction: tuple[float, ...]
    n_before: float
    n_after: float
    max_cdf_diff: float
    pooled_les: tuple[float, ...]
    method: str = "G-test"


def _pool(before: np.ndarray, after: np.ndarray, min_expected: float) -> list[list[int]]:
    """Group neighbouring buckets so every group's expected count (both rows) >= min_expected."""
    n_b, n_a = before.sum(), after.sum()
    n = n_b + n_a
    groups: list[list[int]] = []
    current: list[int] = []
    for i in range(len(before)):
        if before[i] + after[i] == 0 and not current:
            continue  # empty bucket: contributes nothing
        current.append(i)
        tot = before[current].sum() + after[current].sum()
        if tot * min(n_b, n_a) / n >= min_expected:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def _g_test(table: np.ndarray) -> tuple[float, float, int]:
    """G-test of independence on a 2 x k table: ``scipy.stats.chi2_contingency(table,
    correction=False, lambda_="log-likelihood")`` without importing scipy.stats, whose import
    costs the dashboard's first Latency page ~0.5-1 s (only scipy.special is needed here).
    """
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, table * np.log(table / expected), 0.0)
    statistic = float(2.0 * terms.sum())
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return statistic, float(chdtrc(dof, statistic)), int(dof)


def compare_bucket_distributions(
    les: Sequence[float],
    before_counts: Sequence[float],
    after_counts: Sequence[float],
    *,
    cumulative: bool = True,
    min_expected: float = 5.0,
) -> BucketComparison:
    """G-test of homogeneity between two windows' bucket counts.

    Counts are cumulative per ``le`` (as ``increase(h_bucket[window])`` returns them) unless
    ``cumulative=False``. They may be fractional (Prometheus extrapolates ``increase``), which
    the test tolerates but which makes p-values approximate. Raises ValueError when a window
    has no requests.
    """
    order = np.argsort(np.asarray(les, dtype="float64"))
    bounds = np.asarray(les, dtype="float64")[order]
    b = np.asarray(before_counts, dtype="float64")[order]
    a = np.asarray(after_counts, dtype="float64")[order]
    if cumulative:
        b, a = bucket_increments(b), bucket_increments(a)
    b, a = np.nan_to_num(np.clip(b, 0, None)), np.nan_to_num(np.clip(a, 0, None))
    n_b, n_a = float(b.sum()), float(a.sum())
    if n_b <= 0 or n_a <= 0:
        raise ValueError("both windows need requests to compare latency distributions (a window has 0)")
    fb, fa = b / n_b, a / n_a
    max_cdf_diff = float(np.max(np.abs(np.cumsum(fb) - np.cumsum(fa))))
    groups = _pool(b, a, min_expected)
    pooled_les = tuple(float(bounds[g[-1]]) for g in groups)
    if len(groups) < 2:
        return BucketComparison(
            0.0, math.nan, 0, tuple(map(float, bounds)), tuple(map(float, fb)), tuple(map(float, fa)),
            n_b, n_a, max_cdf_diff, pooled_les,
        )
    table = np.array([[b[g].sum() for g in groups], [a[g].sum() for g in groups]])
    statistic, p_value, dof = _g_test(table)
    return BucketComparison(
        float(statistic), float(p_value), int(dof), tuple(map(float, bounds)),
        tuple(map(float, fb)), tuple(map(float, fa)), n_b, n_a, max_cdf_diff, pooled_les,
    )


# --- who is slow? ----------------------------------------------------------------------

@dataclass(frozen=True)
class BreakdownRow:
    """One label value's part in the slow tail.

    ``slow_share`` is its share of all slow requests (above the threshold), ``total_share`` its
    share of all requests; ``excess`` = slow_share - total_share, positive when it is slower
    than its traffic explains (rows are ranked by it). ``slow_ratio`` is the fraction of its
    own requests that were slow.
    """

    value: str
    total: float
    slow: float
    total_share: float
    slow_share: float
    excess: float
    slow_ratio: float


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
        le = _le(s.labels.get("le", "nan"))
        count = float(np.nansum(s.values.to_numpy()[-1:]))
        if math.isinf(le):
            totals[value] = totals.get(value, 0.0) + count
        elif math.isclose(le, float(threshold_le), rel_tol=1e-9):
            fast[value] = fast.get(value, 0.0) + count
            seen_threshold = True
    if totals and not seen_threshold:
        raise ValueError(f"no bucket le={threshold_le} in the result: pick one of the histogram's bucket bounds")
    return _rank_breakdown(totals, fast)


def _rank_breakdown(totals: Mapping[str, float], fast: Mapping[str, float]) -> tuple[BreakdownRow, ...]:
    """Rows from each value's request count and its count at or below the threshold, worst first."""
    slow = {v: max(totals[v] - fast.get(v, 0.0), 0.0) for v in totals}
    all_total, all_slow = sum(totals.values()), sum(slow.values())
    rows = []
    for v in totals:
        total_share = totals[v] / all_total if all_total > 0 else 0.0
        slow_share = slow[v] / all_slow if all_slow > 0 else 0.0
        rows.append(
            BreakdownRow(
                value=v,
                total=totals[v],
                slow=slow[v],
                total_share=total_share,
                slow_share=slow_share,
                excess=slow_share - total_share,
                slow_ratio=slow[v] / totals[v] if totals[v] > 0 else 0.0,
            )
        )
    return tuple(sorted(rows, key=lambda r: (-r.excess, -r.slow, r.value)))


def native_slow_share_breakdown(result: QueryResult, label: str, threshold: float) -> tuple[BreakdownRow, ...]:
    """:func:`slow_share_breakdown` for a native histogram: ``result`` is the instant answer to
    :func:`native_breakdown_query` (one histogram per value of ``label``).

    Requests above ``threshold`` seconds are slow. Pick a bucket bound (the lower bound of the bucket
    holding the service-wide quantile, from :func:`native_cumulative`) and the counts are exact;
    a threshold inside a bucket is interpolated linearly, as ``histogram_fraction`` does.
    """
    totals: dict[str, float] = {}
    fast: dict[str, float] = {}
    bound = np.array([float(threshold)])
    for s in result.series:
        if not s.histograms:
            continue
        h = s.histograms[-1][1]
        value = s.labels.get(label, "")
        totals[value] = totals.get(value, 0.0) + float(h.count)
        fast[value] = fast.get(value, 0.0) + float(_native_at_or_below(h, bound)[0])
    return _rank_breakdown(totals, fast)
