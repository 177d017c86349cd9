"""Latency maths and PromQL builders, checked against hand-computed values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from analyzers.drilldown.slo import BURN_RATE_WINDOWS, burn_rate_queries
from analyzers.errors import ConfigError
from analyzers.prometheus.client import NativeBucket, NativeHistogram, PromSeries, QueryResult
from analyzers.prometheus.latency import (
    breakdown_query,
    buckets_frame,
    heatmap_query,
    le_matcher,
    native_buckets_frame,
    quantile_query,
    rate_window,
    slow_share_breakdown,
    summary_quantile_query,
    window_quantile_query,
)
from analyzers.prometheus.native import (
    native_breakdown_query,
    native_quantile_query,
    native_slow_share_breakdown,
    native_windows_query,
    split_native_windows,
)
from analyzers.prometheus.promql import matchers
from analyzers.prometheus.slo import native_burn_rate_query, native_good_ratio_query, slo_good_ratio_query
from analyzers.stats.buckets import (
    QuantileEstimate,
    bucket_increments,
    compare_bucket_distributions,
    native_cumulative,
    native_fraction_at_or_below,
    quantile_from_buckets,
    quantiles_frame,
)

H = "http_request_duration_seconds"
T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
INF = math.inf


def result_of(series: list[tuple[dict[str, str], list[float]]], times: int = 1) -> QueryResult:
    index = pd.date_range(T, periods=times, freq="60s", tz="UTC", name="time")
    built = tuple(PromSeries(labels, pd.Series(values, index=index[: len(values)], dtype="float64")) for labels, values in series)
    return QueryResult("q", built, (), None, T, T, "vector")


# --- builders --------------------------------------------------------------------------

def test_quantile_query_keeps_le_and_rates_before_summing() -> None:
    sel = matchers(service="checkout")
    assert quantile_query(H, sel, 0.99, "5m") == (
        'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{service="checkout"}[5m])))'
    )
    assert quantile_query(H + "_bucket", "{" + sel + "}", 0.999, 120, by=("endpoint", "le", "endpoint")) == (
        "histogram_quantile(0.999, sum by (le, endpoint) "
        '(rate(http_request_duration_seconds_bucket{service="checkout"}[2m])))'
    )


def test_native_quantile_query_has_no_bucket_suffix_or_le() -> None:
    assert native_quantile_query("rpc_seconds", 'job="a"', 0.99, "5m") == (
        'histogram_quantile(0.99, sum(rate(rpc_seconds{job="a"}[5m])))'
    )
    assert native_quantile_query("rpc_seconds", "", 0.5, "1m", by=("le", "pod")) == (
        "histogram_quantile(0.5, sum by (pod) (rate(rpc_seconds[1m])))"
    )


def test_builders_keep_hostile_values_inside_their_string() -> None:
    sel = matchers(service='x"} or up{job=~".+')
    q = heatmap_query(H, sel, "1m")
    assert q == 'sum by (le) (increase(http_request_duration_seconds_bucket{service="x\\"} or up{job=~\\".+"}[1m]))'


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: quantile_query(H, "", 1.5, "5m"), "between 0 and 1"),
        (lambda: quantile_query(H, "", 0.9, "5m]) or vector(1"), "window"),
        (lambda: quantile_query(H, "", 0.9, "5m", by=("bad-label",)), "label name"),
        (lambda: quantile_query("bad metric", "", 0.9, "5m"), "metric name"),
        (lambda: summary_quantile_query("rpc", "", 0.5, aggregate="avg"), "aggregate"),
    ],
)
def test_builders_refuse_bad_input_with_a_config_error(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_window_quantile_is_one_instant_query_over_increase() -> None:
    assert window_quantile_query(H, 'service="s"', 0.5, "30m") == (
        'histogram_quantile(0.5, sum by (le) (increase(http_request_duration_seconds_bucket{service="s"}[30m])))'
    )


def test_summary_quantile_query() -> None:
    assert summary_quantile_query("rpc_seconds", 'job="a"', 0.99) == 'rpc_seconds{job="a",quantile="0.99"}'
    assert summary_quantile_query("rpc_seconds", "", 0.5, aggregate="max") == 'max(rpc_seconds{quantile="0.5"})'


def test_le_matcher_accepts_go_and_python_spellings() -> None:
    assert le_matcher(1) == 'le=~"1\\\\.0|1"'
    assert le_matcher("0.25") == 'le=~"0\\\\.25"'
    assert le_matcher(INF) == 'le=~"\\\\+Inf"'


def test_breakdown_and_slo_queries() -> None:
    assert breakdown_query(H, 'service="s"', "version", 0.5, "1h") == (
        "sum by (le, version) (increase(http_request_duration_seconds_bucket"
        '{service="s",le=~"0\\\\.5|\\\\+Inf"}[1h]))'
    )
    assert breakdown_query(H, "", "pod", None, "1h") == (
        "sum by (le, pod) (increase(http_request_duration_seconds_bucket[1h]))"
    )
    assert slo_good_ratio_query(H, 'service="s"', 0.3, "5m") == (
        'sum(rate(http_request_duration_seconds_bucket{service="s",le=~"0\\\\.3"}[5m]))'
        ' / sum(rate(http_request_duration_seconds_count{service="s"}[5m]))'
    )


def test_burn_rate_pairs_are_the_standard_ones() -> None:
    assert [(w.long, w.short, w.factor) for w in BURN_RATE_WINDOWS] == [("1h", "5m", 14.4), ("6h", "30m", 6.0)]
    (pair, long_q, short_q), _ = burn_rate_queries(H, 'service="s"', 0.3, 0.999)
    assert pair.factor == 14.4
    assert long_q.endswith(") / 0.001") and "[1h]" in long_q and "[5m]" not in long_q
    assert "[5m]" in short_q


@pytest.mark.parametrize(
    "step, scrape, expected", [(60, 15, "1m"), (15, 15, "1m"), (300, 15, "5m"), (7.5, 1, "8s"), (3600, 30, "1h")]
)
def test_rate_window_is_at_least_four_scrapes_and_the_step(step: float, scrape: float, expected: str) -> None:
    assert rate_window(step, scrape) == expected


# --- quantiles from buckets ------------------------------------------------------------

LES = [0.1, 0.5, 1.0, INF]
CUM = [10, 60, 90, 100]


@pytest.mark.parametrize(
    "q, expected",
    [
        (0.05, QuantileEstimate(0.05, 0.0, 0.1)),  # lowest bucket interpolated from 0: 0.1 * 5/10
        (0.5, QuantileEstimate(0.42, 0.1, 0.5)),  # 0.1 + 0.4 * (50-10)/50
        (0.9, QuantileEstimate(1.0, 0.5, 1.0)),  # rank lands exactly on a bound
        (0.75, QuantileEstimate(0.75, 0.5, 1.0)),  # 0.5 + 0.5 * (75-60)/30
        (0.99, QuantileEstimate(1.0, 1.0, INF)),  # in +Inf: largest finite bound, as Prometheus
    ],
)
def test_quantile_from_buckets_matches_prometheus_interpolation(q: float, expected: QuantileEstimate) -> None:
    got = quantile_from_buckets(LES, CUM, q)
    assert got.value == pytest.approx(expected.value)
    assert (got.lower, got.upper) == (expected.lower, expected.upper)


def test_quantile_from_buckets_sorts_coalesces_and_forces_monotonic() -> None:
    # shuffled, one bound split in two series, one count dipping (rate extrapolation)
    got = quantile_from_buckets([1.0, INF, 0.1, 0.5, 0.1], [90, 100, 6, 8, 4], 0.5)
    # sorted: 0.1 -> 10, 0.5 -> 8 (raised to 10), 1 -> 90: rank 50 in (0.5, 1]: 0.5 + 0.5 * 40/80
    assert got == QuantileEstimate(0.75, 0.5, 1.0)


@pytest.mark.parametrize(
    "les, counts",
    [([0.1, 0.5], [1, 2]), ([INF], [5]), ([0.1, INF], [0, 0]), ([0.1, INF], [math.nan, 3])],
)
def test_quantile_without_inf_bucket_or_observations_is_nan(les: list[float], counts: list[float]) -> None:
    got = quantile_from_buckets(les, counts, 0.5)
    assert math.isnan(got.value) and math.isnan(got.lower) and math.isnan(got.upper)


def test_missing_bucket_is_skipped_like_an_absent_series() -> None:
    assert quantile_from_buckets([0.1, 0.5, INF], [math.nan, 5, 10], 0.5) == QuantileEstimate(0.5, 0.0, 0.5)


def test_quantile_with_non_positive_lowest_bound_returns_that_bound() -> None:
    assert quantile_from_buckets([0.0, 1.0, INF], [5, 10, 10], 0.2) == QuantileEstimate(0.0, -INF, 0.0)


def test_quantile_refuses_q_outside_0_1() -> None:
    with pytest.raises(ValueError):
        quantile_from_buckets(LES, CUM, 99)


# --- frames ----------------------------------------------------------------------------

def test_buckets_frame_sorts_le_as_floats_and_adds_up_shared_bounds() -> None:
    result = result_of(
        [
            ({"le": "+Inf"}, [100, 200]),
            ({"le": "0.5", "pod": "a"}, [30, 50]),
            ({"le": "0.5", "pod": "b"}, [30, 50]),
            ({"le": "0.1"}, [10, 20]),
            ({"le": "1.0"}, [90, 180]),
        ],
        times=2,
    )
    frame = buckets_frame(result)
    assert list(frame.columns) == [0.1, 0.5, 1.0, INF]
    assert frame.iloc[0].tolist() == [10, 60, 90, 100]
    assert frame.index.tz is not None
    incr = bucket_increments(frame)
    assert incr.iloc[1].tolist() == [20, 80, 80, 20]
    q = quantiles_frame(frame, 0.5)
    assert q.iloc[0].tolist() == pytest.approx([0.42, 0.1, 0.5])


def test_vectorised_quantiles_equal_the_row_by_row_ones() -> None:
    rng = np.random.default_rng(7)
    les = [0.0, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, INF]
    increments = rng.poisson(rng.uniform(0, 8, size=len(les)), size=(400, len(les))).astype(float)
    increments[rng.random(increments.shape) < 0.3] = 0.0  # sparse buckets, empty rows
    cumulative = np.cumsum(increments, axis=1)
    cumulative[rng.random(cumulative.shape) < 0.05] -= 1.5  # rate wobble: non-monotonic rows
    cumulative[rng.random(cumulative.shape) < 0.02] = np.nan  # missing bucket series
    cumulative[:5] = 0.0
    frame = pd.DataFrame(cumulative, columns=les)
    for q in (0.0, 0.3, 0.5, 0.9, 0.99, 1.0):
        fast = quantiles_frame(frame, q)
        slow = [quantile_from_buckets(les, row, q) for row in cumulative]
        np.testing.assert_array_equal(fast["value"].to_numpy(), [e.value for e in slow])
        np.testing.assert_array_equal(fast["lower"].to_numpy(), [e.lower for e in slow])
        np.testing.assert_array_equal(fast["upper"].to_numpy(), [e.upper for e in slow])


def test_buckets_frame_demands_the_le_label() -> None:
    with pytest.raises(ValueError, match="keep le"):
        buckets_frame(result_of([({"service": "s"}, [1.0])]))


def test_bucket_increments_never_negative() -> None:
    assert bucket_increments(np.array([1.0, 3.0, 2.9, 5.0])).tolist() == [1.0, 2.0, 0.0, 2.1]


# --- before/after ----------------------------------------------------------------------

def test_g_test_on_two_buckets_matches_the_hand_computation() -> None:
    # per-bucket before [50, 50], after [30, 70]; expected 40/60 in each row
    cmp = compare_bucket_distributions([0.1, INF], [50, 100], [30, 100])
    g = 2 * (50 * math.log(50 / 40) + 50 * math.log(50 / 60) + 30 * math.log(30 / 40) + 70 * math.log(70 / 60))
    assert cmp.statistic == pytest.approx(g) == pytest.approx(8.40237, abs=1e-5)
    assert cmp.p_value == pytest.approx(0.0037473, rel=1e-4)
    assert cmp.dof == 1 and cmp.method == "G-test"
    assert cmp.before_fraction == (0.5, 0.5) and cmp.after_fraction == (0.3, 0.7)
    assert cmp.max_cdf_diff == pytest.approx(0.2)
    assert (cmp.n_before, cmp.n_after) == (100, 100)


def test_identical_distributions_do_not_differ() -> None:
    cmp = compare_bucket_distributions(LES, CUM, [2 * c for c in CUM])
    assert cmp.statistic == pytest.approx(0.0, abs=1e-9) and cmp.p_value == pytest.approx(1.0)


def test_sparse_buckets_are_pooled_until_expected_counts_reach_five() -> None:
    les = [0.1, 0.25, 0.5, 1.0, 2.5, INF]
    before = [100, 1, 0, 1, 0, 0]  # per bucket
    after = [100, 0, 1, 2, 6, 0]
    cmp = compare_bucket_distributions(les, before, after, cumulative=False)
    # Expected count of the smaller row (102 of N=211) = group total * 102/211 must reach 5, i.e. a
    # group total >= 10.35: [0.1] has 200; 0.25..2.5 need pooling to reach 11; +Inf is empty.
    assert cmp.pooled_les == (0.1, 2.5)
    assert cmp.dof == 1
    table_g = 2 * sum(
        o * math.log(o / e)
        for o, e in [(100, 200 * 102 / 211), (2, 11 * 102 / 211), (100, 200 * 109 / 211), (9, 11 * 109 / 211)]
    )
    assert cmp.statistic == pytest.approx(table_g)
    # one count fewer in the tail and the pooled group is too small: everything merges, no test
    sparser = compare_bucket_distributions(les, before, [100, 0, 1, 2, 5, 0], cumulative=False)
    assert sparser.pooled_les == (INF,) and math.isnan(sparser.p_value)


def test_a_window_without_requests_cannot_be_compared() -> None:
    with pytest.raises(ValueError, match="need requests"):
        compare_bucket_distributions(LES, [0, 0, 0, 0], CUM)


def test_everything_in_one_bucket_gives_no_p_value() -> None:
    cmp = compare_bucket_distributions(LES, [0, 50, 50, 50], [0, 70, 70, 70])
    assert math.isnan(cmp.p_value) and cmp.pooled_les == (0.5,)


# --- breakdown -------------------------------------------------------------------------

def test_slow_share_breakdown_ranks_the_value_over_represented_in_the_tail_first() -> None:
    result = result_of(
        [
            ({"endpoint": "/a", "le": "+Inf"}, [900]),
            ({"endpoint": "/a", "le": "0.5"}, [890]),
            ({"endpoint": "/b", "le": "+Inf"}, [100]),
            ({"endpoint": "/b", "le": "0.5"}, [50]),
        ]
    )
    rows = slow_share_breakdown(result, "endpoint", 0.5)
    assert [r.value for r in rows] == ["/b", "/a"]
    b, a = rows
    assert (b.total, b.slow, b.total_share, b.slow_ratio) == (100, 50, 0.1, 0.5)
    assert b.slow_share == pytest.approx(50 / 60) and b.excess == pytest.approx(50 / 60 - 0.1)
    assert a.slow_share == pytest.approx(10 / 60) and a.excess == pytest.approx(10 / 60 - 0.9)


def test_slow_share_breakdown_needs_the_threshold_bucket() -> None:
    result = result_of([({"endpoint": "/a", "le": "+Inf"}, [900]), ({"endpoint": "/a", "le": "1"}, [800])])
    with pytest.raises(ValueError, match="no bucket le=0.5"):
        slow_share_breakdown(result, "endpoint", 0.5)


def test_g_test_equals_scipy_chi2_contingency_log_likelihood() -> None:
    """The local G-test (kept free of scipy.stats for the dashboard's import time) is scipy's."""
    from scipy import stats

    from analyzers.stats.buckets import g_test as _g_test

    rng = np.random.default_rng(3)
    for k in (2, 3, 7, 12):
        table = rng.uniform(0, 500, size=(2, k))
        table[0, 0] = 0.0  # an empty cell contributes nothing, as in scipy
        g, p, dof = _g_test(table)
        want = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
        assert (g, p, dof) == (pytest.approx(want[0], rel=1e-12), pytest.approx(want[1], rel=1e-9), want[2])


def test_windows_query_shifts_each_window_to_its_end_and_checks_names() -> None:
    from analyzers.prometheus.latency import windows_query

    q, at = windows_query("h", matchers(service='a"b'), {"before": (0, 3600), "after": (7200, 9000)})
    assert at == 9000
    assert q == (
        'label_replace(sum by (le) (increase(h_bucket{service="a\\"b"}[1h] offset 90m)), "window", "before", "", "")'
        ' or label_replace(sum by (le) (increase(h_bucket{service="a\\"b"}[30m])), "window", "after", "", "")'
    )
    with pytest.raises(ConfigError, match="must end after"):
        windows_query("h", "", {"x": (10, 10)})
    with pytest.raises(ConfigError, match="letters"):
        windows_query("h", "", {'x", "y': (0, 10)})


# --- native histograms: the maths done locally on hand-built histograms -----------------------

def nh(*buckets: tuple[float, float, float], count: float | None = None) -> NativeHistogram:
    """A native histogram from (lower, upper, count) buckets; the count defaults to their sum."""
    built = tuple(NativeBucket(0, lo, hi, c) for lo, hi, c in buckets)
    return NativeHistogram(count=sum(b.count for b in built) if count is None else count, sum=0.0, buckets=built)


def native_result(per_value: dict[str, NativeHistogram], label: str = "endpoint") -> QueryResult:
    built = tuple(
        PromSeries({label: v} if v else {}, pd.Series([], dtype="float64"), histograms=((pd.Timestamp(T), h),))
        for v, h in per_value.items()
    )
    return QueryResult("q", built, (), None, T, T, "vector")


def frame_of(les: list[float], rows: list[list[float]]) -> pd.DataFrame:
    index = pd.date_range(T, periods=len(rows), freq="60s", tz="UTC", name="time")
    return pd.DataFrame(rows, index=index, columns=pd.Index(les, name="le", dtype="float64"))


def test_native_builders_fetch_whole_histograms_and_escape_the_selector() -> None:
    sel = matchers(service='a"b')
    assert native_breakdown_query("rpc_seconds", sel, "endpoint", "1h") == (
        'sum by (endpoint) (increase(rpc_seconds{service="a\\"b"}[1h]))'
    )
    assert native_good_ratio_query("rpc_seconds", sel, 0.3, "5m") == (
        'histogram_fraction(-Inf, 0.3, sum(rate(rpc_seconds{service="a\\"b"}[5m])))'
    )
    assert native_burn_rate_query("rpc_seconds", sel, 0.25, 0.999, "1h") == (
        '(1 - (histogram_fraction(-Inf, 0.25, sum(rate(rpc_seconds{service="a\\"b"}[1h]))))) / 0.001'
    )
    (pair, long_q, short_q), _ = burn_rate_queries("rpc_seconds", sel, 0.25, 0.999, native=True)
    assert long_q.startswith("(1 - (histogram_fraction(-Inf, 0.25,") and "[1h]" in long_q and "[5m]" in short_q
    q, at = native_windows_query("rpc_seconds", sel, (0, 3600), (7200, 9000), "service")
    assert at == 9000
    assert q == (
        'sum (increase(rpc_seconds{service="a\\"b"}[1h] offset 90m))'
        ' or sum by (service) (increase(rpc_seconds{service="a\\"b"}[30m]))'
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: native_breakdown_query("h", "", 'le"}) or up{a="', "1h"), "label name"),
        (lambda: native_breakdown_query("h", "", "le", "1h"), "no 'le' label"),
        (lambda: native_good_ratio_query("h", "", 0, "5m"), "positive number of seconds"),
        (lambda: native_good_ratio_query("h", "", "nan", "5m"), "positive number of seconds"),
        (lambda: native_burn_rate_query("h", "", 0.3, 1.0, "5m"), "fraction such as 0.999"),
        (lambda: native_windows_query("h", 'service="a"', (0, 10), (20, 30), "pod"), "must be matched with ="),
        (lambda: native_windows_query("h", 'service="a"', (10, 10), (20, 30), "service"), "must end after"),
    ],
)
def test_native_builders_refuse_bad_input(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()


def test_split_native_windows_tells_the_windows_apart_by_the_tag_label() -> None:
    first, second = nh((0.1, 0.2, 3.0)), nh((0.2, 0.4, 5.0))
    assert split_native_windows(native_result({"": first, "x": second}, "service"), "service") == (first, second)
    assert split_native_windows(native_result({"x": second}, "service"), "service") == (None, second)
    assert split_native_windows(native_result({}, "service"), "service") == (None, None)


def test_good_ratio_inside_a_bucket_is_interpolated_linearly_and_bounded() -> None:
    frame = frame_of([0.1, 0.2, 0.4, INF], [[10, 30, 40, 40], [0, 0, 0, 0], [0, 20, 20, 20]])
    inside = native_fraction_at_or_below(frame, 0.15)
    assert (inside.lower, inside.upper, inside.width) == (0.1, 0.2, pytest.approx(0.1))
    # 10 requests below 0.1 s, and half of the 20 in (0.1, 0.2]: 20 of 40
    assert inside.ratio.iloc[0] == pytest.approx(0.5)
    assert (inside.ratio_lower.iloc[0], inside.ratio_upper.iloc[0]) == (0.25, 0.75)  # the truth lies in between
    assert math.isnan(inside.ratio.iloc[1])  # no requests: no ratio, never a pass
    assert inside.ratio.iloc[2] == pytest.approx(0.5)
    on_bound = native_fraction_at_or_below(frame, 0.2)
    assert on_bound.lower == on_bound.upper == 0.2 and on_bound.ratio.iloc[0] == 0.75  # exact
    assert native_fraction_at_or_below(frame, 0.05).ratio.iloc[0] == 0.0
    assert native_fraction_at_or_below(frame, 3.0).ratio.iloc[0] == 1.0
    with pytest.raises(ValueError, match="finite"):
        native_fraction_at_or_below(frame, math.nan)
    with pytest.raises(ValueError, match="inf column"):
        native_fraction_at_or_below(frame.iloc[:, :-1], 0.15)


def test_zero_bucket_is_interpolated_from_zero_unless_there_are_negative_observations() -> None:
    """Prometheus 2.x: with only positive buckets the zero bucket [-zt, zt] counts from 0."""
    zt = 1e-3
    positive = nh((-zt, zt, 4.0), (zt, 2 * zt, 4.0))
    les, counts = native_cumulative([positive])
    assert les == (-zt, zt, 2 * zt, INF)
    assert counts.tolist() == [[0.0, 4.0, 8.0, 8.0]]
    frame = native_buckets_frame(PromSeries({}, pd.Series([], dtype="float64"), histograms=((pd.Timestamp(T), positive),)))
    assert native_fraction_at_or_below(frame, zt / 2).ratio.iloc[0] == pytest.approx(2 / 8)  # half of [0, zt]
    rows = native_slow_share_breakdown(native_result({"/a": positive}), "endpoint", zt / 2)
    assert rows[0].slow == pytest.approx(6.0)
    with_negative = nh((-2 * zt, -zt, 2.0), (-zt, zt, 4.0), (zt, 2 * zt, 4.0))
    frame = native_buckets_frame(
        PromSeries({}, pd.Series([], dtype="float64"), histograms=((pd.Timestamp(T), with_negative),)))
    # 2 negative, then 3/4 of the zero bucket [-zt, zt] lies at or below zt/2
    assert native_fraction_at_or_below(frame, zt / 2).ratio.iloc[0] == pytest.approx(5 / 10)
    assert native_fraction_at_or_below(frame, -1.5 * zt).ratio.iloc[0] == pytest.approx(1 / 10)


def test_native_cumulative_puts_histograms_of_two_schemas_on_common_bounds() -> None:
    coarse = nh((0.5, 1.0, 4.0), (1.0, 2.0, 4.0))  # schema 0
    fine = nh((2**-0.5, 1.0, 2.0), (1.0, 2**0.5, 2.0))  # schema 1
    les, counts = native_cumulative([coarse, fine])
    assert les == (0.5, 2**-0.5, 1.0, 2**0.5, 2.0, INF)
    share = (2**-0.5 - 0.5) / 0.5  # the coarse (0.5, 1] bucket split linearly at the finer bound
    assert counts[0].tolist() == pytest.approx([0, 4 * share, 4, 4 + 4 * (2**0.5 - 1), 8, 8])
    assert counts[1].tolist() == [0, 0, 2, 4, 4, 4]
    assert native_cumulative([])[1].shape == (0, 1)
    empty = nh(count=0.0)
    assert native_cumulative([empty])[1].tolist() == [[0.0]]


def test_native_breakdown_ranks_like_the_classic_one_on_the_same_counts() -> None:
    """Same requests as test_slow_share_breakdown_...: the native rows equal the classic rows."""
    native = native_result({
        "/a": nh((0.25, 0.5, 890.0), (0.5, 1.0, 10.0)),
        "/b": nh((0.25, 0.5, 50.0), (0.5, 1.0, 50.0)),
    })
    classic = result_of([
        ({"endpoint": "/a", "le": "+Inf"}, [900]), ({"endpoint": "/a", "le": "0.5"}, [890]),
        ({"endpoint": "/b", "le": "+Inf"}, [100]), ({"endpoint": "/b", "le": "0.5"}, [50]),
    ])
    assert native_slow_share_breakdown(native, "endpoint", 0.5) == slow_share_breakdown(classic, "endpoint", 0.5)
    inside = native_slow_share_breakdown(native, "endpoint", 0.75)  # inside (0.5, 1]: half of it is slow
    assert {r.value: r.slow for r in inside} == {"/a": pytest.approx(5.0), "/b": pytest.approx(25.0)}
    assert native_slow_share_breakdown(native_result({}), "endpoint", 0.5) == ()


def test_native_windows_compare_with_pooled_buckets() -> None:
    """Many sparse exponential buckets: pooling keeps every tested group's expected count >= 5."""
    rng = np.random.default_rng(11)

    def hist(median: float, n: int) -> NativeHistogram:
        idx = np.ceil(np.log2(rng.lognormal(math.log(median), 0.5, n)) * 8).astype(int)
        values, counts = np.unique(idx, return_counts=True)
        return nh(*((2 ** ((i - 1) / 8), 2 ** (i / 8), float(c)) for i, c in zip(values, counts, strict=True)))

    before, same, slower = hist(0.08, 150), hist(0.08, 150), hist(0.12, 150)
    for other, differs in ((same, False), (slower, True)):
        les, counts = native_cumulative([before, other])
        cmp = compare_bucket_distributions(les, counts[0].tolist(), counts[1].tolist())
        b, a = bucket_increments(counts[0]), bucket_increments(counts[1])
        non_empty = int(np.count_nonzero(b + a))
        assert non_empty > 25 and 2 <= len(cmp.pooled_les) < non_empty  # sparse buckets were merged
        edges = [les.index(x) for x in cmp.pooled_les]
        groups = np.split(np.arange(len(les)), [e + 1 for e in edges[:-1]])
        assert sum(b[g].sum() + a[g].sum() for g in groups) == 300  # every request in exactly one group
        for g in groups:
            assert (b[g].sum() + a[g].sum()) * 150 / 300 >= 5.0
        assert (cmp.p_value < 0.001) == differs and (cmp.p_value > 0.01) == (not differs)
