"""Latency maths against a real Prometheus holding histograms whose true quantiles are known.

The module backfills its own small data set (2 hours, 15 s scrapes, seeded): request
latencies are drawn from log-normal distributions, so the true quantiles are analytic.

- service ``lat-a``: endpoint ``/fast`` (median 50 ms) all along; endpoint ``/slow`` median
  50 ms for the first hour, then 250 ms (the regression at ``T_MID``).
- service ``lat-b``: one endpoint, median 50 ms all along (a deploy at ``T_MID`` changed nothing).
- service ``lat-s`` exposes a *summary* ``rpc_duration_seconds`` (no histogram) from two pods:
  pod ``a`` reports the exact quantiles of a log-normal with median 50 ms, pod ``b`` of one with
  median 50 ms, then 250 ms from ``T_MID``.

Native histograms cannot be backfilled by promtool; a second Prometheus
(``--enable-feature=native-histograms``) gets them over remote write (``native`` fixture).

Every lognormal has sigma 0.5 and 20 requests per scrape per series.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from analyzers.config import PrometheusSettings
from analyzers.demo.openmetrics import write_family_header, write_histogram_series
from analyzers.demo.promserver import PrometheusServer, backfill
from analyzers.prometheus.client import PrometheusClient
from analyzers.prometheus.latency import (
    breakdown_query,
    buckets_frame,
    heatmap_query,
    latency_query,
    native_buckets_frame,
    quantile_query,
    slow_share_breakdown,
    split_latency_result,
    summary_quantiles,
    window_quantile_query,
    windows_query,
)
from analyzers.prometheus.native import (
    native_breakdown_query,
    native_slow_share_breakdown,
    native_windows_query,
    split_native_windows,
)
from analyzers.prometheus.promql import matchers
from analyzers.prometheus.slo import native_burn_rate_query, native_good_ratio_query, slo_good_ratio_query
from analyzers.stats.buckets import (
    compare_bucket_distributions,
    native_cumulative,
    native_fraction_at_or_below,
    quantile_from_buckets,
    quantiles_frame,
)

pytestmark = pytest.mark.integration

H = "http_request_duration_seconds"
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LE_LABELS = tuple(f"{b:g}" for b in BOUNDS) + ("+Inf",)
SIGMA = 0.5
PER_SCRAPE = 20
STEP = 15
SEED = 20261127


@dataclass(frozen=True)
class Truth:
    url: str
    start: datetime
    mid: datetime
    end: datetime


def _lognormal_quantile(median: float, q: float) -> float:
    return median * math.exp(SIGMA * stats.norm.ppf(q))


def _mixture_quantile(medians: list[float], q: float) -> float:
    """Quantile of an equal-weight mixture of log-normals with SIGMA (solved numerically)."""

    def cdf(x: float) -> float:
        return float(np.mean([stats.norm.cdf((math.log(x) - math.log(m)) / SIGMA) for m in medians])) - q

    return float(optimize.brentq(cdf, 1e-6, 100.0))


def _bucket_of(x: float) -> tuple[float, float]:
    lower = max([0.0, *[b for b in BOUNDS if b < x]])
    upper = min([math.inf, *[b for b in BOUNDS if b >= x]])
    return lower, upper


def _write(path: Path, start_s: int, n: int, mid_idx: int) -> None:
    rng = np.random.default_rng(SEED)
    timestamps = [str(start_s + i * STEP) for i in range(n)]
    plan = [
        ({"service": "lat-a", "endpoint": "/fast"}, lambda i: 0.05),
        ({"service": "lat-a", "endpoint": "/slow"}, lambda i: 0.05 if i < mid_idx else 0.25),
        ({"service": "lat-b", "endpoint": "/only"}, lambda i: 0.05),
    ]
    edges = np.array(BOUNDS)
    with path.open("w", encoding="utf-8") as out:
        write_family_header(out, H, "histogram", "Request latency in seconds.", unit="seconds")
        for labels, median in plan:
            per_bucket = np.zeros((n, len(LE_LABELS)), dtype=np.int64)
            sums = np.zeros(n)
            for i in range(n):
                x = rng.lognormal(math.log(median(i)), SIGMA, PER_SCRAPE)
                per_bucket[i] = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(LE_LABELS))
                sums[i] = x.sum()
            cumulative = np.cumsum(np.cumsum(per_bucket, axis=1), axis=0)
            write_histogram_series(out, H, labels, LE_LABELS, cumulative, np.cumsum(sums), timestamps)
        _write_summary(out, timestamps, mid_idx)
        out.write("# EOF\n")


SUMMARY = "rpc_duration_seconds"
SUMMARY_QS = (0.5, 0.9, 0.99)


def _summary_median(pod: str, i: int, mid_idx: int) -> float:
    return 0.25 if pod == "b" and i >= mid_idx else 0.05


def _write_summary(out: Any, timestamps: list[str], mid_idx: int) -> None:
    """Two pods' summaries: each reports its own exact log-normal quantiles (what a client computes)."""
    out.write(f"# TYPE {SUMMARY} summary\n# HELP {SUMMARY} RPC latency in seconds (a summary).\n")
    for pod in ("a", "b"):
        for i, ts in enumerate(timestamps):
            median = _summary_median(pod, i, mid_idx)
            for q in SUMMARY_QS:
                out.write(f'{SUMMARY}{{service="lat-s",pod="{pod}",quantile="{q:g}"}} '
                          f"{_lognormal_quantile(median, q)!r} {ts}\n")
            out.write(f'{SUMMARY}_sum{{service="lat-s",pod="{pod}"}} {0.06 * PER_SCRAPE * (i + 1)!r} {ts}\n')
            out.write(f'{SUMMARY}_count{{service="lat-s",pod="{pod}"}} {PER_SCRAPE * (i + 1)} {ts}\n')


def _wait_for_data(url: str, at: datetime, timeout_s: float = 60.0) -> None:
    """Blocks found just after start-up may answer empty for a moment: poll until all 3 series do."""
    client = PrometheusClient(PrometheusSettings(url=url, timeout_s=10.0))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(client.query(f"{H}_count", at).series) == 3:
            return
        time.sleep(0.2)
    raise RuntimeError(f"backfilled histograms did not become queryable at {url} within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Truth]:
    base = tmp_path_factory.mktemp("latency-truth")
    # whole hours, 4-6 h ago: older than the head block, well inside retention
    end_s = (int(datetime.now(UTC).timestamp()) // 3600 - 4) * 3600
    start_s = end_s - 2 * 3600
    n = 2 * 3600 // STEP + 1
    _write(base / "data.om", start_s, n, mid_idx=n // 2)
    backfill(base / "data.om", base / "tsdb")
    server = PrometheusServer(base / "tsdb").start()
    try:
        _wait_for_data(server.url, datetime.fromtimestamp(end_s, UTC))
        yield Truth(
            server.url,
            datetime.fromtimestamp(start_s, UTC),
            datetime.fromtimestamp(start_s + (n // 2) * STEP, UTC),
            datetime.fromtimestamp(end_s, UTC),
        )
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(truth: Truth) -> PrometheusClient:
    return PrometheusClient(PrometheusSettings(url=truth.url, timeout_s=20.0))


def test_window_p99_lies_in_the_bucket_holding_the_true_p99(client: PrometheusClient, truth: Truth) -> None:
    cases = [
        (matchers(service="lat-a", endpoint="/slow"), _lognormal_quantile(0.25, 0.99)),  # 0.80 s
        (matchers(service="lat-a"), _mixture_quantile([0.05, 0.25], 0.99)),  # 0.70 s
        (matchers(service="lat-b"), _lognormal_quantile(0.05, 0.99)),  # 0.16 s
    ]
    window = "55m"  # the last 55 minutes: after the regression, clear of its first minutes
    for sel, true_p99 in cases:
        lower, upper = _bucket_of(true_p99)
        server = client.query(window_quantile_query(H, sel, 0.99, window), truth.end)
        (series,) = server.series
        server_p99 = float(series.values.iloc[0])
        assert lower < server_p99 <= upper, (sel, true_p99, server_p99)

        counts = buckets_frame(client.query(heatmap_query(H, sel, window), truth.end))
        local = quantile_from_buckets(list(counts.columns), counts.iloc[0].tolist(), 0.99)
        assert local.value == pytest.approx(server_p99, rel=1e-9)  # same interpolation as Prometheus
        assert (local.lower, local.upper) == (lower, upper)
        assert local.lower <= true_p99 <= local.upper


def test_per_step_quantiles_match_prometheus_histogram_quantile(client: PrometheusClient, truth: Truth) -> None:
    sel = matchers(service="lat-a")
    start, end = truth.mid - timedelta(minutes=30), truth.mid + timedelta(minutes=30)
    server = client.query_range(quantile_query(H, sel, 0.9, "5m"), start, end, step_s=60)
    rates = client.query_range(f"sum by (le) (rate({H}_bucket{{{sel}}}[5m]))", start, end, step_s=60)
    (p90,) = server.series
    local = quantiles_frame(buckets_frame(rates), 0.9)
    assert len(p90.values) == 61
    np.testing.assert_allclose(local["value"].reindex(p90.values.index), p90.values, rtol=1e-9)
    # and the regression shows: the p90 an hour later is far above the p90 before it
    assert p90.values.iloc[-1] > 2 * p90.values.iloc[0]


def test_breakdown_ranks_the_endpoint_made_slow_first(client: PrometheusClient, truth: Truth) -> None:
    sel = matchers(service="lat-a")
    window = "55m"
    overall = buckets_frame(client.query(heatmap_query(H, sel, window), truth.end))
    threshold = quantile_from_buckets(list(overall.columns), overall.iloc[0].tolist(), 0.99).lower
    result = client.query(breakdown_query(H, sel, "endpoint", threshold, window), truth.end)
    rows = slow_share_breakdown(result, "endpoint", threshold)
    assert [r.value for r in rows] == ["/slow", "/fast"]
    assert rows[0].slow_share > 0.95 and rows[0].total_share == pytest.approx(0.5, abs=0.01)


def test_before_after_test_flags_the_regression_and_not_the_no_op(client: PrometheusClient, truth: Truth) -> None:
    def compare(service: str):
        sel = matchers(service=service)
        before = buckets_frame(client.query(heatmap_query(H, sel, "30m"), truth.mid - timedelta(minutes=1)))
        after = buckets_frame(client.query(heatmap_query(H, sel, "30m"), truth.mid + timedelta(minutes=31)))
        return compare_bucket_distributions(list(before.columns), before.iloc[0].tolist(), after.iloc[0].tolist())

    regression, no_op = compare("lat-a"), compare("lat-b")
    assert regression.p_value < 1e-6 and regression.max_cdf_diff > 0.2
    assert no_op.p_value > 0.01 and no_op.max_cdf_diff < 0.05


def test_slo_good_ratio_matches_the_true_share(client: PrometheusClient, truth: Truth) -> None:
    result = client.query(slo_good_ratio_query(H, matchers(service="lat-b"), 0.25, "1h"), truth.end)
    true_good = stats.norm.cdf((math.log(0.25) - math.log(0.05)) / SIGMA)  # 0.99936
    assert float(result.series[0].values.iloc[0]) == pytest.approx(true_good, abs=0.002)


def test_summary_quantiles_answer_the_latency_query_per_instance(client: PrometheusClient, truth: Truth) -> None:
    """A service with only a summary: the panel's one query returns each pod's own quantiles."""
    start, end = truth.mid - timedelta(minutes=10), truth.mid + timedelta(minutes=10)
    query = latency_query(SUMMARY, matchers(service="lat-s"), "1m", [0.5, 0.99, 0.999])
    result = client.query_range(query, start, end, step_s=60)
    kind, frame, series = split_latency_result(result)
    assert kind == "summary" and frame.empty
    assert {s.labels["quantile"] for s in series} == {"0.5", "0.99"}  # 0.999 is not exported: absent
    p99 = summary_quantiles(series, 0.99)
    assert list(p99.columns) == ["pod=a, service=lat-s", "pod=b, service=lat-s"]
    before, after = p99.loc[:truth.mid - timedelta(minutes=1)], p99.loc[truth.mid + timedelta(minutes=1):]
    np.testing.assert_allclose(before.to_numpy(), _lognormal_quantile(0.05, 0.99), rtol=1e-12)
    np.testing.assert_allclose(after["pod=a, service=lat-s"], _lognormal_quantile(0.05, 0.99), rtol=1e-12)
    np.testing.assert_allclose(after["pod=b, service=lat-s"], _lognormal_quantile(0.25, 0.99), rtol=1e-12)
    assert summary_quantiles(series, 0.999).empty


def test_histogram_services_still_answer_with_buckets(client: PrometheusClient, truth: Truth) -> None:
    """The combined query changes nothing for a classic histogram: the same frame as heatmap_query."""
    sel = matchers(service="lat-a")
    start, end = truth.mid - timedelta(minutes=10), truth.mid + timedelta(minutes=10)
    kind, frame, series = split_latency_result(client.query_range(latency_query(H, sel, "1m", [0.99]), start, end, 60))
    expected = buckets_frame(client.query_range(heatmap_query(H, sel, "1m"), start, end, 60))
    assert kind == "histogram" and not series
    pd.testing.assert_frame_equal(frame, expected)


# --- native histograms (remote write into a Prometheus with the feature on) ---------------------

NATIVE_SCHEMA = 3  # 8 buckets per power of two, bucket bounds 2**(i/8)


NATIVE_MINUTES = 60


@dataclass(frozen=True)
class Native:
    url: str
    end: datetime
    #: the change: ``natd``'s /slow endpoint goes from a 50 ms to a 250 ms median (the "deploy")
    mid: datetime
    #: every generated observation: (service, endpoint) -> [(scrape time s, latencies s)]
    observations: dict[tuple[str, str], list[tuple[int, np.ndarray]]]

    def true_share_at_or_below(self, service: str, threshold: float, start: datetime, end: datetime) -> float:
        """Share of the observations scraped in (start, end] at most ``threshold`` (what increase() counts)."""
        t0, t1 = start.timestamp(), end.timestamp()
        xs = [x for (svc, _), per in self.observations.items() if svc == service for ts, x in per if t0 < ts <= t1]
        return float(np.mean(np.concatenate(xs) <= threshold))


def _native_series(
    rng: np.random.Generator, end_s: int, per_scrape: int, median: Any, labels: dict[str, str],
    observations: dict[tuple[str, str], list[tuple[int, np.ndarray]]],
) -> tuple[dict[str, str], list[Any]]:
    from tests.integration.remote_write import NativeSample, bucket_index

    counts: dict[int, int] = {}
    total = 0.0
    samples = []
    for k in range(NATIVE_MINUTES * 60 // STEP, -1, -1):
        ts = end_s - k * STEP
        x = rng.lognormal(math.log(median(ts)), SIGMA, per_scrape)
        observations.setdefault((labels["service"], labels.get("endpoint", "")), []).append((ts, x))
        for i in (bucket_index(NATIVE_SCHEMA, v) for v in x):
            counts[i] = counts.get(i, 0) + 1
        total += float(x.sum())
        samples.append(NativeSample(ts * 1000, NATIVE_SCHEMA, dict(counts), total))
    return labels, samples


@pytest.fixture(scope="module")
def native(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Native]:
    """The last hour at 15 s of a native histogram ``rpc_native_seconds``, seeded, log-normal
    latencies with sigma 0.5:

    - ``service="nat"``: 40 requests per scrape, median 80 ms;
    - ``service="natd"``: endpoints ``/fast`` and ``/slow``, 20 requests each per scrape, median
      50 ms; ``/slow`` goes to 250 ms from ``mid`` (30 minutes ago), the regression deploy;
    - ``service="natn"``: 20 requests per scrape, median 50 ms all along (the no-op).

    Written in one remote-write request (the receiver refuses samples about an hour older than
    the head once it holds "now")."""
    from tests.integration.remote_write import remote_write

    base = tmp_path_factory.mktemp("native")
    server = PrometheusServer(base / "tsdb", extra_args=["--enable-feature=native-histograms"], remote_write=True).start()
    try:
        end_s = int(time.time()) // STEP * STEP
        mid_s = end_s - NATIVE_MINUTES * 60 // 2
        rng = np.random.default_rng(SEED)
        observations: dict[tuple[str, str], list[tuple[int, np.ndarray]]] = {}
        name = {"__name__": "rpc_native_seconds"}
        series = [
            _native_series(rng, end_s, 40, lambda ts: 0.08, {**name, "service": "nat"}, observations),
            _native_series(rng, end_s, 20, lambda ts: 0.05, {**name, "service": "natd", "endpoint": "/fast"},
                           observations),
            _native_series(rng, end_s, 20, lambda ts: 0.05 if ts < mid_s else 0.25,
                           {**name, "service": "natd", "endpoint": "/slow"}, observations),
            _native_series(rng, end_s, 20, lambda ts: 0.05, {**name, "service": "natn", "endpoint": "/only"},
                           observations),
        ]
        remote_write(server.url, series)
        yield Native(server.url, datetime.fromtimestamp(end_s, UTC), datetime.fromtimestamp(mid_s, UTC),
                     observations)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def native_client(native: Native) -> PrometheusClient:
    return PrometheusClient(PrometheusSettings(url=native.url, timeout_s=20.0))


def test_native_histograms_feed_percentiles_and_heatmap(native: Native, native_client: PrometheusClient) -> None:
    client = native_client
    sel = matchers(service="nat")
    start = native.end - timedelta(minutes=50)
    result = client.query_range(latency_query("rpc_native_seconds", sel, "5m", [0.99]), start, native.end, 60)
    kind, frame, series = split_latency_result(result)
    assert kind == "native histogram" and not series
    assert len(frame) >= 50 and frame.columns[-1] == math.inf  # one row per step of the 50 minutes
    finite = [float(c) for c in frame.columns[:-1]]
    assert finite == sorted(finite) and len(finite) > 12  # exponential buckets: finer than the classic 11
    # every bound is a schema-3 bucket bound 2**(i/8)
    assert all(abs(math.log2(b) * 8 - round(math.log2(b) * 8)) < 1e-9 for b in finite)
    for q in (0.5, 0.99):
        ours = quantiles_frame(frame, q)
        server = client.query_range(f"histogram_quantile({q}, sum(increase(rpc_native_seconds{{{sel}}}[5m])))",
                                    start, native.end, 60)
        (line,) = server.series
        np.testing.assert_allclose(ours["value"].reindex(line.values.index), line.values, rtol=1e-9)
        assert (ours["lower"] <= ours["value"]).all() and (ours["value"] <= ours["upper"]).all()
        true_q = _lognormal_quantile(0.08, q)
        # each bucket spans a factor 2**(1/8) = 1.09: the estimate is within a few % of the truth
        assert ours["value"].median() == pytest.approx(true_q, rel=0.1)


NATIVE = "rpc_native_seconds"


def test_native_breakdown_ranks_the_endpoint_made_slow_first(native: Native, native_client: PrometheusClient) -> None:
    """One instant query, one histogram per endpoint; ranked locally as the classic breakdown is."""
    sel = matchers(service="natd")
    window = "25m"  # after the regression, clear of its first minutes
    result = native_client.query(native_breakdown_query(NATIVE, sel, "endpoint", window), native.end)
    assert {s.labels["endpoint"] for s in result.series} == {"/fast", "/slow"}
    assert all(s.histograms for s in result.series)
    les, counts = native_cumulative([s.histograms[-1][1] for s in result.series])
    overall = quantile_from_buckets(les, counts.sum(axis=0).tolist(), 0.99)
    server_p99 = native_client.query(f"histogram_quantile(0.99, sum(increase({NATIVE}{{{sel}}}[{window}])))",
                                     native.end)
    assert overall.value == pytest.approx(float(server_p99.series[0].values.iloc[0]), rel=1e-9)  # Prometheus's own
    assert overall.lower < _mixture_quantile([0.05, 0.25], 0.99) * 1.1 and overall.upper / overall.lower < 1.1
    rows = native_slow_share_breakdown(result, "endpoint", overall.lower)
    assert [r.value for r in rows] == ["/slow", "/fast"]
    assert rows[0].slow_share > 0.95 and rows[0].total_share == pytest.approx(0.5, abs=0.01)
    assert sum(r.total for r in rows) == pytest.approx(counts[:, -1].sum())


def _native_compare(native: Native, client: PrometheusClient, service: str) -> tuple[Any, int]:
    mid = int(native.mid.timestamp())
    first, second = (mid - 25 * 60, mid), (mid + 2 * 60, mid + 27 * 60)
    query, at = native_windows_query(NATIVE, matchers(service=service), first, second, "service")
    before, after = split_native_windows(client.query(query, datetime.fromtimestamp(at, UTC)), "service")
    assert before is not None and after is not None, query
    for h, (start, end) in ((before, first), (after, second)):  # each equals a query of its own
        alone = client.query(f"sum(increase({NATIVE}{{{matchers(service=service)}}}[{(end - start) // 60}m]))",
                             datetime.fromtimestamp(end, UTC))
        assert alone.series[0].histograms[-1][1] == h
    les, counts = native_cumulative([before, after])
    cmp = compare_bucket_distributions(les, counts[0].tolist(), counts[1].tolist())
    non_empty = int(np.count_nonzero(np.diff(counts[0], prepend=0.0) + np.diff(counts[1], prepend=0.0) > 0))
    return cmp, non_empty


def test_native_before_after_flags_the_regression_and_not_the_no_op(
    native: Native, native_client: PrometheusClient
) -> None:
    regression, buckets = _native_compare(native, native_client, "natd")
    no_op, _ = _native_compare(native, native_client, "natn")
    assert regression.p_value < 1e-6 and regression.max_cdf_diff > 0.2
    assert no_op.p_value > 0.01 and no_op.max_cdf_diff < 0.05
    # the exponential buckets are many; pooling merged the sparse ones before the test
    assert buckets > 30 and 2 <= len(regression.pooled_les) < buckets


def test_native_slo_good_ratio_matches_the_true_share(native: Native, native_client: PrometheusClient) -> None:
    """0.1 s is no schema-3 bound (2**(i/8)): the ratio is interpolated inside its bucket, equals
    Prometheus's histogram_fraction, and the generated observations' true share lies within the
    bucket's bounds that the panel states."""
    sel = matchers(service="natn")
    threshold = 0.1
    assert abs(math.log2(threshold) * 2**NATIVE_SCHEMA - round(math.log2(threshold) * 2**NATIVE_SCHEMA)) > 0.1
    server = native_client.query(native_good_ratio_query(NATIVE, sel, threshold, "30m"), native.end)
    server_ratio = float(server.series[0].values.iloc[0])
    result = native_client.query(f"sum(increase({NATIVE}{{{sel}}}[30m]))", native.end)
    frame = native_buckets_frame(result.series[0])
    frac = native_fraction_at_or_below(frame, threshold)
    assert frac.ratio.iloc[0] == pytest.approx(server_ratio, rel=1e-9)
    assert frac.lower < threshold < frac.upper and frac.upper / frac.lower == pytest.approx(2 ** (1 / 8))
    true = native.true_share_at_or_below("natn", threshold, native.end - timedelta(minutes=30), native.end)
    assert frac.ratio_lower.iloc[0] <= true <= frac.ratio_upper.iloc[0]  # the stated interpolation error
    assert abs(frac.ratio.iloc[0] - true) <= frac.ratio_upper.iloc[0] - frac.ratio_lower.iloc[0]
    assert 0.9 < true < 0.95  # log-normal, median 50 ms: P(x <= 100 ms) = 0.917
    burn = native_client.query(native_burn_rate_query(NATIVE, sel, threshold, 0.99, "30m"), native.end)
    assert float(burn.series[0].values.iloc[0]) == pytest.approx((1 - server_ratio) / 0.01, rel=1e-9)


def test_native_good_ratio_line_equals_histogram_fraction_per_step(
    native: Native, native_client: PrometheusClient
) -> None:
    """The SLO chart's line comes from the percentile panel's frame: the same as Prometheus per step."""
    sel = matchers(service="natd")
    start = native.end - timedelta(minutes=50)
    result = native_client.query_range(latency_query(NATIVE, sel, "5m", [0.99]), start, native.end, 60)
    kind, frame, _ = split_latency_result(result)
    assert kind == "native histogram"
    ours = native_fraction_at_or_below(frame, 0.3).ratio
    server = native_client.query_range(native_good_ratio_query(NATIVE, sel, 0.3, "5m"), start, native.end, 60)
    (line,) = server.series
    assert len(line.values) >= 50
    np.testing.assert_allclose(ours.reindex(line.values.index), line.values, rtol=1e-9)
    assert ours.loc[: native.mid - timedelta(minutes=6)].min() > 0.99  # before the regression: nearly all fast
    assert ours.loc[native.mid + timedelta(minutes=6):].max() < 0.85  # after: /slow's median is 250 ms


def test_two_windows_in_one_query_equal_one_query_per_window(client: PrometheusClient, truth: Truth) -> None:
    """The before/after panel's single query (``offset``) counts exactly what two queries did."""
    sel = matchers(service="lat-a")
    mid = int(truth.mid.timestamp())
    windows = {"before": (mid - 1800, mid), "after": (mid + 600, mid + 2400)}
    query, at = windows_query(H, sel, windows)
    combined = client.query(query, datetime.fromtimestamp(at, UTC))
    assert {s.labels["window"] for s in combined.series} == {"before", "after"}
    for name, (start, end) in windows.items():
        alone = buckets_frame(client.query(heatmap_query(H, sel, end - start), datetime.fromtimestamp(end, UTC)))
        mine = [s for s in combined.series if s.labels["window"] == name]
        got = {float(s.labels["le"]): float(s.values.iloc[-1]) for s in mine}
        assert got == pytest.approx(dict(zip(alone.columns, alone.iloc[-1], strict=True)), rel=1e-12)


def test_latency_page_queries_work_on_victoriametrics(victoria: Any) -> None:
    """The page's combined query (``or``, ``quantile=""``) and the two-window query (``offset``,
    ``label_replace``) mean the same on VictoriaMetrics: same frame as the plain bucket query,
    and each window counts what a query of its own does."""
    sd = victoria.scenario.deploy("regression")
    client = PrometheusClient(victoria.config.prometheus)
    sel = matchers(service=sd.service)
    start, end = sd.started_at - timedelta(hours=2), sd.started_at + timedelta(minutes=30)
    kind, frame, series = split_latency_result(client.query_range(latency_query(H, sel, "2m", [0.99]), start, end, 60))
    plain = buckets_frame(client.query_range(heatmap_query(H, sel, "2m"), start, end, 60))
    assert kind == "histogram" and not series and len(frame) > 100
    pd.testing.assert_frame_equal(frame, plain)
    t0 = int(sd.started_at.timestamp()) // 60 * 60
    windows = {"before": (t0 - 1800, t0), "after": (t0 + 300, t0 + 1500)}
    query, at = windows_query(H, sel, windows)
    combined = client.query(query, datetime.fromtimestamp(at, UTC))
    for name, (w0, w1) in windows.items():
        alone = buckets_frame(client.query(heatmap_query(H, sel, w1 - w0), datetime.fromtimestamp(w1, UTC)))
        got = {float(s.labels["le"]): float(s.values.iloc[-1]) for s in combined.series if s.labels["window"] == name}
        assert got and got == pytest.approx(dict(zip(alone.columns, alone.iloc[-1], strict=True)), rel=1e-9)
