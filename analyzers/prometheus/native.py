"""Native histograms: PromQL builders and parsing (no ``_bucket`` series, no ``le`` label).

Every latency panel works on them too: the builders fetch whole histograms
(``sum by (label) (increase(h[w]))``) and :func:`analyzers.stats.buckets.native_cumulative` /
:func:`native_buckets_frame` turn them into cumulative counts, so the quantile, the G-test and
the slow-share ranking are the classic code.

A native histogram has no ``_bucket`` series and no ``le`` label: every sample carries its own
(exponential) buckets, and Prometheus 2.42 offers ``histogram_quantile``, ``histogram_fraction``,
``histogram_count`` and ``histogram_sum`` on them. Two limits of 2.42 shape what follows:
``label_replace`` turns a histogram sample into the float 0 (so two windows cannot be tagged
with a label, see :func:`native_windows_query`), and a histogram cannot be joined to a float
vector (``* on() group_left`` answers nothing). Buckets are therefore fetched whole and the
bucket maths (slow share, G-test, good ratio) is done locally.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from analyzers.errors import ConfigError
from analyzers.prometheus.promql import (
    by_clause,
    histogram_base,
    quantile_text,
    validate_label_name,
    validate_metric_name,
    window_increases,
    window_text,
    with_matchers,
)
from analyzers.prometheus.results import NativeHistogram, QueryResult
from analyzers.stats.buckets import BreakdownRow, native_at_or_below, rank_breakdown

__all__ = [
    "native_breakdown_query",
    "native_quantile_query",
    "native_slow_share_breakdown",
    "native_windows_query",
    "split_native_windows",
]


def native_quantile_query(histogram: str, selector: str, q: float, window: str | float, by: Sequence[str] = ()) -> str:
    """``histogram_quantile(q, sum by (...) (rate(h{sel}[window])))`` for a *native* histogram.

    Native histograms have no ``_bucket`` series and no ``le`` label (the buckets travel inside
    each sample), so nothing is kept in ``by()`` but the breakdown labels. Their exponential
    buckets are much finer, so the interpolation error is far smaller than with classic ones.
    """
    labels = by_clause(by, keep_le=False)
    grouping = f" by ({labels}) " if labels else ""
    return (
        f"histogram_quantile({quantile_text(q)}, sum{grouping}"
        f"(rate({validate_metric_name(histogram)}{with_matchers(selector)}[{window_text(window)}])))"
    )


def native_breakdown_query(histogram: str, selector: str, label: str, window: str | float) -> str:
    """``sum by (label) (increase(h{sel}[window]))``: one native histogram per value of ``label``.

    Feed the instant answer to :func:`native_slow_share_breakdown`. ``label`` is user-typed: it is
    validated as a label name, and ``le`` (which a native histogram does not have) is refused.
    """
    name = validate_label_name(label)
    if name == "le":
        raise ConfigError("a native histogram has no 'le' label (its buckets travel inside each sample): "
                          "break down by endpoint, version, pod or another label of the series")
    return f"sum by ({name}) (increase({histogram_base(histogram)}{with_matchers(selector)}[{window_text(window)}]))"


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
    at, (one, two) = window_increases(f"{histogram_base(histogram)}{with_matchers(selector)}", (first, second))
    parts = [f"sum ({one})", f"sum by ({tag}) ({two})"]
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


def native_slow_share_breakdown(result: QueryResult, label: str, threshold: float) -> tuple[BreakdownRow, ...]:
    """:func:`analyzers.prometheus.latency.slow_share_breakdown` for a native histogram: ``result`` is the instant answer to
    :func:`native_breakdown_query` (one histogram per value of ``label``).

    Requests above ``threshold`` seconds are slow. Pick a bucket bound (the lower bound of the bucket
    holding the service-wide quantile, from :func:`analyzers.stats.buckets.native_cumulative`) and the counts are exact;
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
        fast[value] = fast.get(value, 0.0) + float(native_at_or_below(h, bound)[0])
    return rank_breakdown(totals, fast)
