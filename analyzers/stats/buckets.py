"""Bucket maths on latency histograms: quantiles with their bucket bounds, and the G-test.

Pure numpy/pandas (no IO, no Prometheus types): the inputs are bucket bounds and counts,
or native-histogram-like objects (anything with ``count`` and ``buckets`` of ``lower``,
``upper``, ``count``, as :class:`analyzers.prometheus.results.NativeHistogram`).

Caveat every reader of a histogram quantile must know: the value is *interpolated* linearly
inside the bucket that holds it, so its error can be as large as that bucket's width.
:func:`quantile_from_buckets` therefore returns the bucket bounds with the value, and
:func:`compare_bucket_distributions` compares whole bucket distributions, not just p99
(assumption: requests are independent draws; bursts and slow drifts make it reject easily,
so callers use it to confirm a shift, never as the only evidence for one).

A latency threshold inside a native bucket is interpolated linearly, as Prometheus 2.x's
``histogram_fraction`` does (:func:`native_fraction_at_or_below` says between which ratios
the truth lies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

import numpy as np
import pandas as pd
from scipy.special import chdtrc

__all__ = [
    "BreakdownRow",
    "BucketComparison",
    "NativeFraction",
    "QuantileEstimate",
    "bucket_increments",
    "compare_bucket_distributions",
    "g_test",
    "line_noise_scale",
    "native_at_or_below",
    "native_cumulative",
    "native_fraction_at_or_below",
    "quantile_from_buckets",
    "quantiles_frame",
    "rank_breakdown",
]


class BucketLike(Protocol):
    """One bucket of a native histogram: observations in ``(lower, upper]`` (boundary rules aside)."""

    @property
    def lower(self) -> float: ...
    @property
    def upper(self) -> float: ...
    @property
    def count(self) -> float: ...


class HistogramLike(Protocol):
    """A native histogram sample: its total ``count`` and its buckets."""

    @property
    def count(self) -> float: ...
    @property
    def buckets(self) -> Sequence[BucketLike]: ...

def _native_arrays(h: HistogramLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def native_at_or_below(h: HistogramLike, bounds: np.ndarray) -> np.ndarray:
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


def native_cumulative(histograms: Sequence[HistogramLike]) -> tuple[tuple[float, ...], np.ndarray]:
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
        counts[i] = native_at_or_below(h, les)
    return tuple(float(x) for x in les), counts


@dataclass(frozen=True)
class NativeFraction:
    """Share of requests at or below ``threshold`` per row of a native buckets frame.

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
    cumulative counts per bucket bound with ``inf`` (the total) last (:func:`analyzers.prometheus.native.native_buckets_frame`).

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

@overload
def bucket_increments(cumulative: np.ndarray) -> np.ndarray: ...
@overload
def bucket_increments(cumulative: pd.DataFrame) -> pd.DataFrame: ...
def bucket_increments(cumulative: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
    """Per-bucket (non-cumulative) counts: neighbouring cumulative buckets differenced.

    Negative differences (rate extrapolation makes cumulative counts wobble) become 0.
    Works on the last axis of an array or on the columns of a :func:`analyzers.prometheus.latency.buckets_frame`.
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
    """:func:`quantile_from_buckets` for each row of a :func:`analyzers.prometheus.latency.buckets_frame`: value, lower, upper.

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


def pool_groups(rows: np.ndarray, min_expected: float) -> list[list[int]]:
    """Neighbouring buckets grouped so each group's expected count is at least ``min_expected``
    in the smallest row of ``rows`` (windows x buckets); the same groups serve every pair of rows
    compared, so every G has one dof per group. Empty buckets before the first group are skipped;
    a short tail joins the last group."""
    tot = rows.sum(axis=0)
    n_min = float(rows.sum(axis=1).min())
    n = float(rows.sum())
    groups: list[list[int]] = []
    current: list[int] = []
    for i in range(rows.shape[1]):
        if tot[i] == 0 and not current:
            continue  # empty bucket: contributes nothing
        current.append(i)
        if tot[current].sum() * n_min / n >= min_expected:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def _pool(before: np.ndarray, after: np.ndarray, min_expected: float) -> list[list[int]]:
    """Group neighbouring buckets so every group's expected count (both rows) >= min_expected."""
    return pool_groups(np.vstack([before, after]), min_expected)


def g_test(table: np.ndarray) -> tuple[float, float, int]:
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
    statistic, p_value, dof = g_test(table)
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

def rank_breakdown(totals: Mapping[str, float], fast: Mapping[str, float]) -> tuple[BreakdownRow, ...]:
    """Rows from each value's request count and its count at or below the threshold, worst first
    (by excess share of the slow tail, then slow count, then value)."""
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


def line_noise_scale(values: np.ndarray, les: Sequence[float]) -> np.ndarray:
    """Per value of a histogram percentile line: the width of the bucket holding it.

    ``histogram_quantile`` interpolates linearly inside the bucket that holds the rank, so the
    line's error can be as large as that bucket's width, and at the request counts behind one
    point of a p99 (hundreds a minute, a percent of them in the tail) its noise does fill the
    bucket: it scales with the width, not with the finer delta-method figure (measured on the
    demo's payments p99, which sits at the 1 s bound: the line's noise grows x3.1-3.8 where it
    crosses from 0.5-1 s into 1-2.5 s, a width ratio of 3). A line that wanders from a narrow
    bucket into a wide one therefore gets noisier without any change in the requests. ``les``
    are sorted bounds (``+Inf`` allowed); a value lies in ``(le[b-1], le[b]]``, and a value at
    the highest finite bound (the rank in ``+Inf``) is given that bound's bucket. NaN where the
    value is not finite and positive or lies above the highest finite bound.
    """
    les_a = np.asarray(les, dtype=float)
    les_a = les_a[np.isfinite(les_a)]
    out = np.full(np.shape(values), np.nan)
    if les_a.size == 0:
        return out
    lower = np.concatenate([[0.0], les_a[:-1]])
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v) & (v > 0) & (v <= les_a[-1] * (1 + 1e-9))
    b = np.clip(np.searchsorted(les_a, np.where(ok, v, 0.0) * (1 - 1e-12), side="left"), 0, les_a.size - 1)
    out[ok] = (les_a[b] - lower[b])[ok]
    return out
