"""The canary's finite-horizon fail test: level over every look of the window, exact small counts,
where its information-time assumption breaks (falling traffic, a share going 10% -> 50%), frozen
after the horizon, and the power it buys over the all-time test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzers.stats.canary import compare_rates
from analyzers.stats.canary_horizon import dispersion, horizon_test


def _fails(x: np.ndarray, y: np.ndarray, nc: np.ndarray, nb: np.ndarray, horizon: int, alpha: float,
           tolerance: float = 1.0, prior: float = 1.0) -> bool:
    ok = (nc > 0) & (nb > 0)
    s = nc[ok] / (nc[ok] + nb[ok])
    r = horizon_test(x[ok].astype(float), y[ok].astype(float), s, np.nonzero(ok)[0], horizon=horizon, alpha=alpha,
                     theta0=math.log(tolerance), dispersion_prior=prior)
    return r.detected is not None


def _limit(alpha: float, runs: int) -> float:
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)  # 2 binomial SDs above alpha


@pytest.mark.parametrize(("share", "rps", "horizon"), [(0.25, 100, 15), (0.05, 100, 30), (0.5, 20, 5)])
def test_no_op_false_fail_within_alpha_over_every_look_of_the_window(share: float, rps: float, horizon: int) -> None:
    # daily cycle and a shared error spike: both versions see them, so they cancel
    rng = np.random.default_rng([21, horizon])
    alpha, runs, fails = 0.05, 1500, 0
    t = np.arange(horizon)
    for _ in range(runs):
        n = rng.poisson(rps * 60 * (1 + 0.5 * np.sin(2 * np.pi * t / 1440 + rng.uniform(0, 6.3))))
        nc = rng.binomial(n, share)
        err = 0.01 * np.where((t >= horizon // 3) & (t < horizon // 3 + 3), 5.0, 1.0)
        fails += _fails(rng.binomial(nc, err), rng.binomial(n - nc, err), nc, n - nc, horizon, alpha)
    assert fails / runs <= _limit(alpha, runs)
    assert fails / runs >= alpha / 3  # calibrated for one look per interval, not needlessly conservative


@pytest.mark.parametrize(("rps", "err"), [(1, 0.01), (10, 0.01), (3, 0.03)])
def test_small_counts_stay_within_alpha(rps: float, err: float) -> None:
    # a 1% canary at a few requests/s: a handful of errors in the window, skewed far from normal
    rng = np.random.default_rng([22, rps])
    alpha, runs, fails = 0.05, 2000, 0
    for _ in range(runs):
        n = rng.poisson(rps * 60, 10)
        nc = rng.binomial(n, 0.01)
        fails += _fails(rng.binomial(nc, err), rng.binomial(n - nc, err), nc, n - nc, 10, alpha)
    assert fails / runs <= _limit(alpha, runs)


def test_three_errors_in_ten_minutes_is_not_certain_twelve_are() -> None:
    # canary 60 requests in 10 minutes at a 1% share, baseline fails 1%: 3 errors are 5x its rate
    # but only 3 events (exact tail 0.03 > alpha); a normal approximation would call it at z 2.9
    x = np.zeros(10)
    x[[2, 5, 8]] = 1
    r = compare_rates("error_ratio", x, np.full(10, 6.0), np.full(10, 6.0), np.full(10, 600.0), alpha=0.01, horizon=10)
    assert r.status != "regressed"
    assert r.details["z"] > r.details["z_needed"]  # the line alone would have failed it: the exact tail did not
    x12 = np.zeros(10)
    x12[[1, 2, 3, 4, 5, 6]] = 2
    r = compare_rates("error_ratio", x12, np.full(10, 6.0), np.full(10, 6.0), np.full(10, 600.0), alpha=0.01, horizon=10)
    assert r.status == "regressed"
    assert "finite-horizon" in r.method and r.details["horizon_intervals"] == 10


def _falling(rng: np.random.Generator, share_of: np.ndarray, load: np.ndarray, mult: float) -> tuple[np.ndarray, ...]:
    n = rng.poisson(6000 * load)
    nc = rng.binomial(n, share_of)
    return rng.binomial(nc, 0.01 * mult), rng.binomial(n - nc, 0.01), nc, n - nc


@pytest.mark.parametrize("shape", ["traffic falls to a quarter", "share 10% -> 50%"])
def test_where_the_information_assumption_breaks_the_level_holds(shape: str) -> None:
    # information is counted in intervals, each standardized by its own binomial SD: when the
    # information per interval changes inside the window the test loses power, never its level
    rng = np.random.default_rng([23, len(shape)])
    t = np.arange(15)
    load = np.where(t < 5, 1.0, np.where(t < 10, 0.5, 0.25)) if shape.startswith("traffic") else np.ones(15)
    share = np.full(15, 0.25) if shape.startswith("traffic") else np.where(t < 5, 0.10, 0.50)
    alpha, runs = 0.05, 1500
    fails = sum(_fails(*_falling(rng, share, load, 1.0), 15, alpha) for _ in range(runs))
    assert fails / runs <= _limit(alpha, runs)
    caught = sum(_fails(*_falling(rng, share, load, 1.5), 15, 0.005) for _ in range(200))
    assert caught / 200 >= 0.9  # a 1.5x error rate is still caught within the window


def test_decision_frozen_after_the_horizon_and_the_same_at_every_look() -> None:
    rng = np.random.default_rng(24)
    n = rng.poisson(6000, 40)
    nc = rng.binomial(n, 0.05)
    x, y = rng.binomial(nc, 0.01).astype(float), rng.binomial(n - nc, 0.01).astype(float)
    x[20:] = nc[20:] * 0.2  # a 20x regression after the 15-interval window: not this test's to see
    full = compare_rates("error_ratio", x, y, nc, n - nc, alpha=0.005, horizon=15, interval=False)
    at_horizon = compare_rates("error_ratio", x[:15], y[:15], nc[:15], (n - nc)[:15], alpha=0.005, horizon=15, interval=False)
    assert full.status == at_horizon.status != "regressed"
    assert full.details["frozen"] and full.details["last_interval"] == 14
    assert full.details["z"] == pytest.approx(at_horizon.details["z"], rel=1e-12)
    # a regression inside the window fails at the same interval whoever looks later
    x2 = x.copy()
    x2[6:] = nc[6:] * 0.03
    first = compare_rates("error_ratio", x2, y, nc, n - nc, alpha=0.005, horizon=15, interval=False).detected_index
    assert first is not None and 6 <= first < 15
    for k in range(first + 1, 40, 7):
        assert compare_rates("error_ratio", x2[:k], y[:k], nc[:k], (n - nc)[:k], alpha=0.005, horizon=15,
                             interval=False).detected_index == first


def test_horizon_beats_the_all_time_test_on_a_doubling_at_five_percent() -> None:
    # 100 req/s, 1% errors, 5% canary failing 2x, 15 minutes: the benchmark's hard case
    rng = np.random.default_rng(25)
    horizon_hits = all_time_hits = 0
    for _ in range(150):
        n = rng.poisson(6000 * (1 + 0.5 * math.sin(rng.uniform(0, 6.3))), 15)
        nc = rng.binomial(n, 0.05)
        x, y = rng.binomial(nc, 0.02), rng.binomial(n - nc, 0.01)
        horizon_hits += compare_rates("e", x, y, nc, n - nc, alpha=0.005, horizon=15, interval=False).status == "regressed"
        all_time_hits += compare_rates("e", x, y, nc, n - nc, alpha=0.005, interval=False).status == "regressed"
    assert horizon_hits >= all_time_hits + 10
    assert horizon_hits / 150 >= 0.9


def test_bursts_of_one_versions_own_are_measured_and_scaled_down() -> None:
    # each version's error rate x Gamma (CV 0.5) per minute, independently: extra-binomial spread
    rng = np.random.default_rng(26)
    fails, last_phi = 0, []
    for _ in range(300):
        n = rng.poisson(6000, 15)
        nc = rng.binomial(n, 0.25)
        x = rng.binomial(nc, np.minimum(0.01 * rng.gamma(4, 0.25, 15), 1))
        y = rng.binomial(n - nc, np.minimum(0.01 * rng.gamma(4, 0.25, 15), 1))
        phi = dispersion(x.astype(float), y.astype(float), nc / n)
        assert phi.min() >= 1.0
        last_phi.append(phi[-1])
        fails += _fails(x, y, nc, n - nc, 15, 0.005)
    # the split varies about 4x more than a binomial here (15 + 0.25 * 15^2 over 15 canary errors)
    assert 2.5 <= float(np.median(last_phi)) <= 6.0
    assert fails / 300 <= 0.08  # not alpha (the binomial is broken on purpose), but scaled down to a few %


def test_dispersion_of_a_binomial_split_stays_near_one() -> None:
    rng = np.random.default_rng(27)
    n = rng.poisson(6000, (200, 15))
    nc = rng.binomial(n, 0.25)
    phis = [dispersion(rng.binomial(a, 0.01).astype(float), rng.binomial(n_ - a, 0.01).astype(float), a / n_)[-1]
            for a, n_ in zip(nc, n, strict=True)]
    assert float(np.median(phis)) == pytest.approx(1.0, abs=0.15)


def test_window_setting_sets_the_horizon_and_refuses_less_than_one_interval() -> None:
    from analyzers.config import config_from_dict, default_config
    from analyzers.errors import ConfigError

    assert default_config().canary.window_s == 15 * 60  # Argo's count 15 x interval 1m in the docs' template
    assert config_from_dict({"canary": {"window": "10m"}}).canary.window_s == 600
    with pytest.raises(ConfigError, match="at least one canary.interval"):
        config_from_dict({"canary": {"window": "30s", "interval": "1m"}})
