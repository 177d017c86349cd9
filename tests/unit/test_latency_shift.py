"""The ``latency_shift`` guard: each minute's median read from its bucket counts (log-probit),
judged on log latency by the same confidence sequence as every metric, reported as a factor.

Small seeded bucket-count series (multinomial draws of log-normal latencies, 1 day 3 h of history,
one row a minute) served through ``verify_deploy``'s fetcher seam; the demo's own generator for
the live demo's ``latency+30%`` on checkout (which passed when the p99 line was the only latency
guard)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from analyzers.config import ConfigError, ServiceSpec, config_from_dict, default_config
from analyzers.model import Deploy
from analyzers.stats.step_quantiles import MIN_REQUESTS, step_log_quantiles
from analyzers.verify.deploy import verify_deploy
from analyzers.verify.fetch import BucketGrid, read_quantile_series
from tests.fixtures.series import BOUNDS, lognormal_buckets

B = np.asarray(BOUNDS)
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)


def _expected(mu: float, sigma: float, n: float = 1000.0) -> np.ndarray:
    cdf = ndtr((np.log(B[:-1]) - mu) / sigma)
    return np.concatenate([cdf, [1.0]]) * n


# --------------------------------------------------------------------------- the per-minute read


@pytest.mark.parametrize("median", [0.012, 0.099, 0.3, 0.97])
def test_a_lognormal_s_median_and_p99_read_back_exactly_wherever_they_sit(median: float) -> None:
    mu, sigma = math.log(median), 0.55
    counts = np.vstack([_expected(mu, sigma), _expected(mu + math.log(1.3), sigma)])
    med = step_log_quantiles(B, counts, 0.5)
    p99 = step_log_quantiles(B, counts, 0.99)
    assert med[0] == pytest.approx(mu, abs=1e-9)
    assert med[1] - med[0] == pytest.approx(math.log(1.3), abs=1e-9)  # every request x1.3 reads as log 1.3
    assert p99[0] == pytest.approx(mu + 2.3263478740 * sigma, abs=1e-6)


def test_thin_or_broken_minutes_are_missing_never_a_value() -> None:
    good = _expected(math.log(0.1), 0.5, 500.0)
    three = _expected(math.log(0.1), 0.5, 3.0)  # a minute with 3 requests
    one_bucket = np.where(B >= 0.25, 400.0, 0.0)  # every request in (0.1, 0.25]: no shape to read
    reset = good.copy()
    reset[:4] = -5.0  # negative counts: a counter reset the back end did not handle
    gap = np.full(B.size, np.nan)  # no sample at all
    out = step_log_quantiles(B, np.vstack([good, three, one_bucket, reset, gap]), 0.5)
    assert math.isfinite(out[0])
    assert np.isnan(out[1:]).all()
    assert three[-1] < MIN_REQUESTS <= good[-1]


def test_bounds_extrapolated_independently_are_made_monotone() -> None:
    c = _expected(math.log(0.1), 0.5, 600.0)
    bumped = c.copy()
    bumped[5] = c[6] + 3.0  # increase() extrapolated per series: a bound above its successor
    assert math.isfinite(step_log_quantiles(B, bumped[None, :], 0.5)[0])


def test_a_bimodal_mix_reads_between_its_modes_and_still_moves_with_every_request() -> None:
    # breaks the log-normal assumption: 70 % of requests around 40 ms, 30 % around 600 ms
    def mix(shift: float) -> np.ndarray:
        return 0.7 * _expected(math.log(0.04) + shift, 0.3) + 0.3 * _expected(math.log(0.6) + shift, 0.3)

    a, b = step_log_quantiles(B, np.vstack([mix(0.0), mix(math.log(1.3))]), 0.5)
    assert math.log(0.04) < a < math.log(0.6)
    assert b - a == pytest.approx(math.log(1.3), abs=0.12)  # not exact off a log-normal, same direction and size


def test_the_read_s_noise_is_the_median_s_sampling_noise() -> None:
    rng = np.random.default_rng(5)
    n = 1000
    rows = lognormal_buckets(rng, np.full(400, math.log(0.1)), 0.55, np.full(400, n))
    reads = step_log_quantiles(B, rows, 0.5)
    expected_sd = math.sqrt(math.pi / 2) * 0.55 / math.sqrt(n)  # the sample median of a normal
    assert np.std(reads) == pytest.approx(expected_sd, rel=0.25)
    assert abs(np.mean(reads) - math.log(0.1)) < 4 * expected_sd / math.sqrt(400) + 0.005


# --------------------------------------------------------------------------- the guard in verify_deploy


class GridFetcher:
    """Serves a seeded bucket grid as ``fetch_buckets`` (the only metric of the test config)."""

    def __init__(self, grid: BucketGrid) -> None:
        self.grid = grid

    def fetch(self, *args: object) -> None:
        raise AssertionError("only latency_shift is configured")

    def fetch_buckets(self, query: str, metric_key: str, start: datetime, end: datetime,
                      step_s: float) -> tuple[BucketGrid, tuple[str, ...]]:
        assert 'service="shop"' in query and "sum by (le) (increase(" in query
        keep = (self.grid.index >= start) & (self.grid.index <= end)
        return BucketGrid(self.grid.les, self.grid.counts[keep], self.grid.index[keep]), ()


def _grid(seed: int, *, factor: float = 1.0, sigma_after: float = 0.5, requests: float = 600.0,
          blip_min: int = 0, daily_rise: float = 0.0) -> BucketGrid:
    """A minute grid from 1 day 3 h before ``T0`` to 1 h after: median 100 ms wandering (AR(1),
    10-minute time constant, 5 % sd on log latency), ``factor`` on every request from ``T0`` on."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(T0 - timedelta(days=1, hours=3), T0 + timedelta(hours=1), freq="60s", tz="UTC")
    n = index.size
    phi = math.exp(-1 / 10)
    wander = np.zeros(n)
    e = rng.standard_normal(n) * 0.05 * math.sqrt(1 - phi * phi)
    for i in range(1, n):
        wander[i] = phi * wander[i - 1] + e[i]
    after = np.asarray(index >= pd.Timestamp(T0))
    mu = math.log(0.1) + wander + np.where(after, math.log(factor), 0.0)
    if blip_min:  # pods restart: every request x2 for a few minutes, then back
        at = int(np.argmax(after))
        mu[at:at + blip_min] += math.log(2.0)
    if daily_rise:  # load rises over the hour after T0's time of day, every day
        minute_of_day = (index.hour * 60 + index.minute).to_numpy()
        t = minute_of_day - (T0.hour * 60 + T0.minute)
        mu = mu + daily_rise * np.clip(t / 10.0, 0.0, 1.0) * (t > -60)
    sigma = np.where(after, sigma_after, 0.5)
    reqs = rng.poisson(requests, n)
    return BucketGrid(BOUNDS, lognormal_buckets(rng, mu, sigma, reqs), index)


def _config():  # type: ignore[no-untyped-def]
    cfg = default_config()
    return dataclasses.replace(cfg, services={"shop": ServiceSpec(name="shop", guards=("latency_shift",))},
                               verification=dataclasses.replace(cfg.verification, history_s=86400.0))


def _verify(grid: BucketGrid):  # type: ignore[no-untyped-def]
    d = Deploy(deploy_id="shop-v2", service="shop", environment="production", version="v2", started_at=T0,
               finished_at=T0 + timedelta(minutes=2))
    v = verify_deploy(d, _config(), None, fetcher=GridFetcher(grid), now=T0 + timedelta(hours=1))  # type: ignore[arg-type]
    (m,) = v.metrics
    return v, m


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_request_30_percent_slower_fails_with_the_factor_and_the_medians(seed: int) -> None:
    v, m = _verify(_grid(seed, factor=1.3))
    assert v.overall == "fail" and m.outcome == "regressed", m.reason
    rl = m.result["request_latency"]
    assert 1.15 < rl["factor"] < 1.45 and rl["factor_ci"][0] > 1.0
    assert rl["before_s"] == pytest.approx(0.1, rel=0.08) and rl["after_s"] == pytest.approx(0.13, rel=0.08)
    assert "requests x1." in m.reason and "slower" in m.reason and "median " in m.reason and " ms -> " in m.reason
    assert m.result["effect"] > 0 and m.unit == "s"  # the generic fields are in seconds
    assert m.result["day_before"]["status"] == "shifted"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_no_change_passes(seed: int) -> None:
    v, m = _verify(_grid(seed))
    assert v.overall == "pass" and m.outcome == "ok", m.reason


def test_faster_or_tighter_requests_are_not_a_regression() -> None:
    v, m = _verify(_grid(6, factor=0.7))
    assert v.overall == "pass" and m.outcome == "improved", m.reason
    assert "faster" in m.reason
    v, m = _verify(_grid(6, sigma_after=0.25))  # the same median, a narrower spread
    assert v.overall == "pass" and m.outcome == "ok", m.reason


def test_a_restart_blip_that_recovers_is_information_not_a_regression() -> None:
    v, m = _verify(_grid(7, blip_min=3))
    assert v.overall == "pass" and m.outcome == "ok", m.reason
    assert "transient at deploy, recovered" in m.reason


def test_a_rise_the_service_makes_every_day_at_this_hour_is_not_the_deploy_s() -> None:
    # the median follows load: +25 % over the 10 minutes after the deploy's time of day, every day
    v, m = _verify(_grid(8, daily_rise=math.log(1.25)))
    assert v.overall == "pass" and m.outcome == "ok", m.reason
    assert "a day earlier" in m.reason
    v, m = _verify(_grid(8, daily_rise=math.log(1.25), factor=1.4))  # the deploy's own x1.4 still fails
    assert m.outcome == "regressed", m.reason


def test_three_requests_a_minute_is_inconclusive_not_a_pass() -> None:
    v, m = _verify(_grid(9, requests=3.0, factor=1.3))
    assert v.overall == "inconclusive" and m.outcome == "inconclusive", m.reason
    assert "Too few requests" in m.reason and f"fewer than {MIN_REQUESTS:g}" in m.reason


def test_a_gap_after_the_deploy_thins_the_evidence_but_a_slowdown_still_fails() -> None:
    grid = _grid(10, factor=1.3)
    counts = grid.counts.copy()
    at = int(np.argmax(grid.index >= pd.Timestamp(T0)))
    counts[at + 8: at + 15] = np.nan  # 7 minutes without samples
    v, m = _verify(BucketGrid(grid.les, counts, grid.index))
    assert m.outcome == "regressed", m.reason
    counts[at:] = np.nan  # nothing after the deploy
    v, m = _verify(BucketGrid(grid.les, counts, grid.index))
    assert v.overall == "inconclusive", m.reason


def test_the_series_is_the_minute_s_median_in_seconds() -> None:
    grid = _grid(11)
    s = read_quantile_series(grid, 0.5)
    assert s.index.equals(grid.index)
    assert float(s.median()) == pytest.approx(0.1, rel=0.05)


def test_read_quantile_is_checked_in_the_config() -> None:
    with pytest.raises(ConfigError, match="read_quantile needs 'histogram'"):
        config_from_dict({"metrics": {"x": {"query": "sum by (le) (increase(h_bucket[1m]))", "read_quantile": 0.5}}})
    with pytest.raises(ConfigError, match="between 0 and 1"):
        config_from_dict({"metrics": {"x": {"query": "q", "histogram": "h", "read_quantile": 1.5}}})
    cfg = config_from_dict({"metrics": {"x": {"query": "sum by (le) (increase(h_bucket[1m]))", "histogram": "h",
                                                "read_quantile": 0.9}}})
    assert cfg.metrics["x"].read_quantile == 0.9
    assert "latency_shift" in default_config().guards_for("any")


# --------------------------------------------------------------------------- the live demo's gap


def test_latency_plus_30_percent_on_checkout_now_fails_where_the_p99_line_passes() -> None:
    """``demo deploy --service checkout --effect latency+30%``: the deploy declares nothing, the
    p99 line sits just under the 0.5 s bound and hardly moves; the median read fails it."""
    from analyzers.demo.livemodel import parse_effect
    from analyzers.demo.scenarios import SERVICES, CaseSpec, generate
    from benchmarks.demo_arrays import ScenarioBackend

    case = CaseSpec("live_latency", "checkout", "demo deploy --effect latency+30%", parse_effect("latency+30%"),
                    local_hour=9.0)
    sc = generate(name="demo", seed=1, end=datetime(2026, 12, 7, 6, tzinfo=UTC), days=2.5, step_s=15,
                  services=SERVICES[:1], cases=(case,), utc_offset_h=0.0)
    backend = ScenarioBackend(sc)
    (sd,) = sc.deploys
    assert sd.expected_overall == "fail"  # the truth: a 30 % slower typical request fails a deploy
    d = sd.to_deploy()
    v = verify_deploy(d, default_config(), backend, fetcher=backend, now=sc.end)  # type: ignore[arg-type]
    by = {m.metric: m for m in v.metrics}
    assert by["latency_p99"].outcome == "ok", by["latency_p99"].reason  # the line alone passed it
    assert v.overall == "fail" and by["latency_shift"].outcome == "regressed", v.reason
    assert by["latency_shift"].result["request_latency"]["factor_ci"][0] > 1.05
    assert "latency_shift (regressed)" in v.reason
