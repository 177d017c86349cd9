"""A percentile line read back as a shift of the requests' latency (analyzers/stats/tail_shift.py,
`bucketcheck.in_latency_units`).

`histogram_quantile` interpolates linearly inside the bucket holding the rank, so where the p99
sits at a bound between a narrow bucket and one three times wider (the demo's payments at 1 s), a
few percent of latency wander moves the line by tens of percent, and the level sequence, whose
noise model was fitted where the line sat, calls it a shift (the demo's `fix` payments, seed 6,
docs/statistics.md "A percentile line read as a latency shift"). Read as the log-latency shift of
the before window's log-normal tail, the same wander is as large as anywhere else.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from analyzers.demo.scenarios import BUCKETS
from analyzers.stats.buckets import quantile_from_buckets
from analyzers.stats.sequential import sequential_path
from analyzers.stats.tail_shift import implied_log_shift, lognormal_tail
from analyzers.verify.bucketcheck import BucketCounts, LineCheck, histogram_quantile_of, in_latency_units

LES = BUCKETS + (math.inf,)
Z99 = 2.3263478740408408
BEFORE_ROWS, AFTER_ROWS = 480, 30  # 8 h of history, the verifier's 30-minute after window


def _expected_cum(mu: float, sigma: float) -> np.ndarray:
    return np.append(ndtr((np.log(BUCKETS) - mu) / sigma), 1.0)


def test_the_log_normal_tail_is_recovered_from_its_bucket_counts() -> None:
    mu, sigma = math.log(0.3), 0.55
    fit = lognormal_tail(LES, 1e6 * _expected_cum(mu, sigma))
    assert fit is not None
    assert fit[0] == pytest.approx(mu, abs=1e-6) and fit[1] == pytest.approx(sigma, abs=1e-6)  # probit near 1: float rounding
    assert lognormal_tail(LES, [0.0] * len(LES)) is None  # no requests: nothing to fit


@pytest.mark.parametrize("shift", [-0.3, -0.05, 0.0, 0.04, 0.07, 0.12, 0.47])
def test_a_shift_of_every_request_reads_back_as_itself_on_either_side_of_a_bound(shift: float) -> None:
    # p99 at 0.93 s: +12.7 % takes it past the 1 s bound into the 1-2.5 s bucket, where the line
    # reads it as more than +25 %; read back, every shift is itself (grid 0.002: within 0.003).
    sigma = 0.55
    mu = math.log(0.93) - Z99 * sigma
    line = quantile_from_buckets(LES, _expected_cum(mu + shift, sigma), 0.99).value
    assert implied_log_shift(np.array([line]), LES, mu, sigma, 0.99)[0] == pytest.approx(shift, abs=0.003)
    if shift == 0.12:
        assert line / 0.93 - 1 > 0.25  # what the line makes of +12.7 % (past the bound)


def test_the_quantile_is_read_from_the_catalog_query() -> None:
    assert histogram_quantile_of('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m])))') == 0.99
    assert histogram_quantile_of("sum(rate(x[5m]))") is None


def _line(seed: int, p99_before: float, sigma: float, move: float) -> tuple[pd.Series, pd.Timestamp, BucketCounts]:
    """The demo's p99 line, one point a minute of 2,500 log-normal requests whose median wanders
    (AR(1), 10-minute time constant, sd 7 % on log latency), every request ``exp(move)`` slower
    from the deploy on; with the before window's (3 h) cumulative bucket counts."""
    rng = np.random.default_rng(seed)
    phi = math.exp(-1 / 10)
    ar, vals, before = 0.0, [], np.zeros(len(LES))
    for i in range(BEFORE_ROWS + AFTER_ROWS):
        ar = phi * ar + rng.normal(0.0, 0.07 * math.sqrt(1 - phi * phi))
        mu = math.log(p99_before) - Z99 * sigma + ar + (move if i >= BEFORE_ROWS else 0.0)
        cum = np.cumsum(rng.multinomial(2500, np.diff(np.concatenate([[0.0], _expected_cum(mu, sigma)]))))
        if BEFORE_ROWS - 180 <= i < BEFORE_ROWS:
            before += cum
        vals.append(quantile_from_buckets(LES, cum, 0.99).value)
    idx = pd.date_range("2026-12-01T00:00Z", periods=len(vals), freq="60s")
    return pd.Series(vals, idx), idx[BEFORE_ROWS], BucketCounts(LES, tuple(before))


def _path(series: pd.Series, deploy: pd.Timestamp):  # as anytime.path_for: a guard that fails on increase
    return sequential_path(series, deploy, "increase", kind="latency", window_before_s=10800.0,
                           window_after_s=1800.0, step_s=60.0)


def _judged(seed: int, p99_before: float, sigma: float, move: float) -> tuple[bool, bool]:
    """(the line's sequence alone fails the guard: certain at alpha / k and >= 10 %; the rule does)."""
    series, deploy, counts = _line(seed, p99_before, sigma, move)
    path = _path(series, deploy)
    seq = path.at(0.005)
    before = float(np.median(series[:deploy].to_numpy()[-180:]))
    est = max(seq["estimate"] or 0.0, seq.get("estimate_unclipped") or 0.0)
    old = seq["status"] == "shifted" and seq["direction"] == "increase" and est >= 0.10 * before
    if not old:
        return False, False
    res = {"status": "shifted", "change_kind": "level", "direction": "increase", "p_value": path.pvalue(),
           "effect_ci": seq["interval"]}
    end = float(series.index[-1].timestamp())
    new = in_latency_units(res, LineCheck(series, counts, 0.99, lambda s: _path(s, deploy), 0.005, end, None, 0.10))
    return True, new["status"] == "shifted"


def test_a_wander_across_a_wide_bucket_bound_is_not_a_regression() -> None:
    # No deploy effect at all: the p99 at 0.97 s wanders (7 % sd on log latency) across the 1 s
    # bound into a bucket three times wider. The line's sequence alone calls a regression of 10 %
    # or more in 6 of 24 no-op series (the old rule; alpha / k is 0.5 %); read as a shift of the
    # requests' latency, 1 of 24 (a wander of +10 % or more, certain at any look): measured.
    got = [_judged(s, 0.97, 0.55, 0.0) for s in range(24)]
    assert sum(old for old, _ in got) >= 5
    assert sum(new for _, new in got) <= 2


def test_a_real_slowdown_of_the_same_shape_is_still_caught() -> None:
    # The demo's checkout regression: every request x1.6, p99 from 0.42 s across the 0.5 s bound
    # (the line reads it as +15 to +30 %): caught by both on every seed.
    got = [_judged(s, 0.42, 0.38, math.log(1.6)) for s in range(8)]
    assert all(old and new for old, new in got)


def test_a_vetoed_shift_reads_unchanged_with_an_interval_holding_zero() -> None:
    # Seed 4 above: the line's sequence is certain (interval clear of zero), the latency shift is not.
    series, deploy, counts = _line(4, 0.97, 0.55, 0.0)
    path = _path(series, deploy)
    seq = path.at(0.005)
    assert seq["status"] == "shifted" and seq["interval"][0] > 0
    res = {"status": "shifted", "change_kind": "level", "direction": "increase", "p_value": path.pvalue(),
           "effect_ci": seq["interval"], "reason": "line"}
    out = in_latency_units(res, LineCheck(series, counts, 0.99, lambda s: _path(s, deploy), 0.005,
                                          float(series.index[-1].timestamp()), None, 0.10))
    assert out["status"] == "unchanged" and out["direction"] is None
    assert out["effect_ci"][0] <= 0.0 <= out["effect_ci"][1]  # interval and decision agree
    assert out["effect_ci"][1] == pytest.approx(seq["interval"][1], rel=1e-12)
    assert out["p_value"] >= res["p_value"]
    assert out["latency_shift"]["interval"][0] is not None and "requests' latency" in out["reason"]
    assert in_latency_units(res, LineCheck(series, None, 0.99, lambda s: _path(s, deploy), 0.005, 0.0)) is res  # no counts
