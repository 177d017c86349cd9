"""Canary vs baseline statistics: exact low-count rates, buckets, paired levels, one budget per canary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzers.stats.canary import (
    alpha_split,
    compare_buckets,
    compare_levels,
    compare_rates,
    judge,
    rate_evidence,
    tail_bounds,
)

LES = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf])


def _buckets(rng: np.random.Generator, n: np.ndarray, scale: float) -> np.ndarray:
    from scipy import stats as sps

    cdf = sps.norm.cdf((np.log(LES[:-1]) - math.log(0.08 * scale)) / 0.6)
    p = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
    return np.cumsum(np.stack([rng.multinomial(k, p) for k in n]), axis=1)


def test_no_requests_is_inconclusive_never_a_pass() -> None:
    z = np.zeros(10)
    r = compare_rates("error_ratio", z, z, z, np.full(10, 1000.0))
    assert r.status == "inconclusive"
    assert "No canary requests" in r.reason
    r = compare_rates("error_ratio", [], [], [], [])
    assert r.status == "inconclusive"


def test_too_little_canary_traffic_is_inconclusive() -> None:
    # 1% share for 10 minutes at 1 req/s: 6 canary requests, 0 errors; no pass on that
    r = compare_rates("error_ratio", np.zeros(10), np.full(10, 1.0), np.full(10, 0.6), np.full(10, 59.4),
                      min_exposure=100)
    assert r.status == "inconclusive"
    assert "Too little canary traffic" in r.reason


def test_three_errors_at_one_percent_share_judged_exactly() -> None:
    # 10 minutes, canary 60 requests, baseline 6000 requests and 60 errors (1%): 3 canary errors is
    # 5x the baseline rate but only 3 events; the exact test must not call that certain at alpha 0.01 ...
    x = np.zeros(10)
    x[[2, 5, 8]] = 1
    r = compare_rates("error_ratio", x, np.full(10, 6.0), np.full(10, 6.0), np.full(10, 600.0), alpha=0.01)
    assert r.status != "regressed"
    assert r.ratio == pytest.approx(5.0, rel=1e-9)
    assert r.ratio_ci is not None and r.ratio_ci[0] < 1.0 < r.ratio_ci[1]
    # ... while 12 errors in those 60 requests (20x) is
    x12 = np.zeros(10)
    x12[[1, 2, 3, 4, 5, 6]] = 2
    r = compare_rates("error_ratio", x12, np.full(10, 6.0), np.full(10, 6.0), np.full(10, 600.0), alpha=0.01)
    assert r.status == "regressed"
    assert r.ratio_ci is not None and r.ratio_ci[0] > 1.1


def test_evidence_is_the_same_whoever_looks_and_how_often() -> None:
    rng = np.random.default_rng(3)
    n = rng.poisson(3000, 30)
    nc = rng.binomial(n, 0.05)
    x, y = rng.binomial(nc, 0.02), rng.binomial(n - nc, 0.01)
    full = rate_evidence(x, y, nc, n - nc)
    for k in (5, 12, 29):  # an earlier look sees exactly the prefix of the same process
        np.testing.assert_allclose(rate_evidence(x[:k], y[:k], nc[:k], (n - nc)[:k]), full[:k], rtol=1e-12)


@pytest.mark.parametrize("share", [0.01, 0.05, 0.25])
def test_no_op_canary_false_fail_rate_within_alpha_over_every_look(share: float) -> None:
    rng = np.random.default_rng([7, int(share * 100)])
    alpha, runs, fails = 0.05, 400, 0
    for _ in range(runs):
        n = rng.poisson(60 * 50 * (1 + 0.5 * np.sin(np.arange(30) / 5 + rng.uniform(0, 6))))
        nc = rng.binomial(n, share)
        err = 0.01 * np.where((np.arange(30) >= 10) & (np.arange(30) < 14), 6.0, 1.0)  # a shared error spike
        x, y = rng.binomial(nc, err), rng.binomial(n - nc, err)
        e = rate_evidence(x, y, nc, n - nc, tolerance=1.0)
        fails += bool(e.max() >= math.log(1 / alpha))  # ever crossed, at any of the 30 looks
    # Ville's bound: <= alpha; 400 runs: allow 2 binomial sd above it
    assert fails / runs <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


def test_doubled_error_rate_at_five_percent_is_caught() -> None:
    # 200 req/s in total, 1% errors: the 5% canary sees about 9000 requests in 15 minutes
    rng = np.random.default_rng(11)
    caught = 0
    for _ in range(60):
        n = rng.poisson(12000, 15)
        nc = rng.binomial(n, 0.05)
        r = compare_rates("error_ratio", rng.binomial(nc, 0.02), rng.binomial(n - nc, 0.01), nc, n - nc,
                          alpha=0.005, interval=False)
        caught += r.status == "regressed"
    assert caught >= 55


def test_pass_needs_the_interval_to_rule_out_a_doubling() -> None:
    rng = np.random.default_rng(5)
    n = np.full(30, 12000)
    nc = rng.binomial(n, 0.25)
    r = compare_rates("error_ratio", rng.binomial(nc, 0.01), rng.binomial(n - nc, 0.01), nc, n - nc, alpha=0.005)
    assert r.status == "ok"
    assert r.ratio_ci is not None and r.ratio_ci[0] < 1.0 < r.ratio_ci[1] <= 2.0


def test_tail_bounds_fixed_from_combined_counts() -> None:
    rng = np.random.default_rng(1)
    c = _buckets(rng, np.full(20, 500), 1.0)
    bounds = tail_bounds(LES, c)
    assert bounds and all(b in LES for b in bounds)
    # the first intervals decide: appending later data (or a different split) keeps them
    assert tail_bounds(LES, np.vstack([c, _buckets(rng, np.full(20, 500), 3.0)])) == bounds


def test_latency_shift_in_buckets_is_caught_and_noop_passes() -> None:
    rng = np.random.default_rng(2)
    n = rng.poisson(6000, 10)
    nc = rng.binomial(n, 0.25)
    slow = compare_buckets("latency_p99", LES, _buckets(rng, nc, 1.2), _buckets(rng, n - nc, 1.0), alpha=0.005)
    assert slow.status == "regressed"
    assert "requests over" in slow.reason
    n = rng.poisson(6000, 30)
    nc = rng.binomial(n, 0.25)
    same = compare_buckets("latency_p99", LES, _buckets(rng, nc, 1.0), _buckets(rng, n - nc, 1.0), alpha=0.005)
    assert same.status == "ok"
    assert len(same.details["per_bound"]) == len(same.details["bounds"])


def test_buckets_without_data_are_inconclusive() -> None:
    r = compare_buckets("latency_p99", LES, np.zeros((5, 12)), np.zeros((5, 12)))
    assert r.status == "inconclusive"
    assert "Too few requests" in r.reason
    r = compare_buckets("latency_p99", LES, np.zeros((0, 12)), np.zeros((0, 12)))
    assert r.status == "inconclusive"


def test_levels_paired_difference_cancels_a_shared_cycle() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(60)
    shared = 50 + 30 * np.sin(t / 6) + np.cumsum(rng.normal(0, 1, 60))  # cycle and wander both see
    ar = np.zeros(60)
    for i in range(1, 60):
        ar[i] = 0.6 * ar[i - 1] + rng.normal(0, 1)
    same = compare_levels("cpu", shared + ar, shared + rng.normal(0, 1, 60), alpha=0.01, tolerance=0.5)
    assert same.status != "regressed"
    worse = compare_levels("cpu", shared + ar + 5, shared, alpha=0.01)
    assert worse.status == "regressed"
    assert worse.ratio == pytest.approx(5 + ar.mean(), abs=1e-9)
    few = compare_levels("cpu", [1.0, np.nan], [1.0, 2.0], min_points=10)
    assert few.status == "inconclusive"


def test_levels_false_fail_under_autocorrelation() -> None:
    rng = np.random.default_rng(8)
    fails = 0
    for _ in range(300):
        e = np.zeros(60)
        for i in range(1, 60):
            e[i] = 0.7 * e[i - 1] + rng.normal()
        fails += compare_levels("cpu", e, np.zeros(60), alpha=0.05).status == "regressed"
    assert fails / 300 <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 300)


def test_judge_one_budget_and_dry_run_never_fails() -> None:
    assert alpha_split(0.01, [1.0] * 4) == pytest.approx([0.0025] * 4)
    z = np.zeros(10)
    bad = compare_rates("error_ratio", np.full(10, 30.0), np.full(10, 10.0), np.full(10, 100.0), np.full(10, 1000.0),
                        alpha=0.005, dry_run=True)
    assert bad.status == "regressed"
    nodata = compare_rates("x", z, z, z, z)
    j = judge([bad])
    assert j.overall == "inconclusive"  # nothing enforced
    assert j.enforced_overall == "fail"
    assert "Dry-run" in j.reason and "error_ratio would fail" in j.reason
    j = judge([bad, nodata])
    assert j.overall == "inconclusive"
    enforced = compare_rates("error_ratio", np.full(10, 30.0), np.full(10, 10.0), np.full(10, 100.0), np.full(10, 1000.0),
                             alpha=0.005)
    assert judge([enforced, nodata]).overall == "fail"
    assert judge([]).overall == "inconclusive"


def test_levels_direction_follows_the_metric() -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(0, 1, 60)
    lower = base - 5
    assert compare_levels("throughput", lower, base, good="increase").status == "regressed"
    assert compare_levels("latency_line", lower, base, good="decrease").status == "ok"  # faster is fine
    moved = compare_levels("gauge", lower, base, good="none")
    assert moved.status == "regressed" and "differs from" in moved.reason
    assert compare_levels("gauge", base + rng.normal(0, 0.1, 60), base, good="none", tolerance=1.0).status == "ok"
