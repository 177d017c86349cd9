"""changepoints: positions of new segments, robust to outliers, NaN and unknown scale."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from analyzers.stats import changepoints


def steps(seed: int = 0, scale: float = 1.0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, 200), rng.normal(4, 1, 150), rng.normal(-1, 1, 250)]) * scale
    return x, [200, 350]


def close(found: list[int], truth: list[int], tol: int = 3) -> bool:
    return len(found) == len(truth) and all(abs(a - b) <= tol for a, b in zip(found, truth, strict=True))


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_finds_steps_whatever_the_noise_level(scale: float) -> None:
    x, truth = steps(scale=scale)
    assert close(changepoints(x), truth)


def test_outliers_do_not_open_segments() -> None:
    # Known limit: an outlier within a few points of a real step can split off a short segment.
    x, truth = steps(1)
    rng = np.random.default_rng(2)
    away = np.array([i for i in range(x.size) if min(abs(i - t) for t in truth) > 8])
    x[rng.choice(away, 12, replace=False)] += rng.choice([-1, 1], 12) * 25
    assert close(changepoints(x), truth)


def test_nan_is_skipped_and_positions_refer_to_the_input() -> None:
    x, truth = steps(3)
    x[[10, 199, 200, 201, 400]] = np.nan
    x[50] = np.inf
    found = changepoints(x)
    assert len(found) == 2 and abs(found[0] - 200) <= 3 and abs(found[1] - 350) <= 3
    assert all(np.isfinite(x[p]) for p in found)


def test_variance_change_is_found() -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(0, 4, 300)])
    assert close(changepoints(x), [300], tol=10)


def test_pure_noise_and_heavy_tails_give_no_changes() -> None:
    rng = np.random.default_rng(5)
    assert changepoints(rng.normal(size=2000)) == []
    assert changepoints(rng.standard_t(3, size=2000)) == []


@pytest.mark.parametrize("values", [[], [1.0], [1.0] * 50, [np.nan] * 30, list(range(8))])
def test_degenerate_input_gives_no_changes(values) -> None:
    assert changepoints(values) == []


def test_returns_sorted_python_ints_never_zero_and_accepts_series() -> None:
    x, _ = steps(6)
    found = changepoints(pd.Series(x, index=pd.date_range("2026-01-01", periods=x.size, freq="1min")))
    assert found == sorted(found) and 0 not in found and all(type(p) is int for p in found)


def test_near_linear_speed() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=100_000)
    x[::10_000] += 5
    x[50_000:] += 2
    t = time.process_time()  # CPU time: other jobs on the machine do not inflate it
    found = changepoints(x)
    elapsed = time.process_time() - t
    assert any(abs(p - 50_000) <= 3 for p in found)
    assert elapsed < 0.5  # ~30 ms alone; generous for a shared machine


def test_a_bend_in_a_trend_is_found_where_it_bends() -> None:
    # Growth that slows at 300 (no jump): a mean model cuts the lines into steps; the
    # default ("auto") keeps the piecewise-linear segmentation, which has the lower BIC.
    rng = np.random.default_rng(21)
    t = np.arange(600, dtype=float)
    x = np.where(t < 300, 0.05 * t, 15 + 0.005 * (t - 300)) + rng.normal(0, 0.5, 600)
    found = changepoints(x)
    assert len(found) == 1 and abs(found[0] - 300) <= 10
    assert len(changepoints(x, model="mean")) != 1 or abs(changepoints(x, model="mean")[0] - 300) > 10


def smooth(shape: str, n: int, seed: int, noise: float = 0.02) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)
    y = np.exp(2.5 * t) if shape == "exp" else np.sin(np.pi * t)
    y = (y - y.min()) / (y.max() - y.min())
    return y + np.random.default_rng(seed).normal(0.0, noise, n)


@pytest.mark.parametrize(("shape", "n"), [("exp", 60), ("half sine", 150), ("half sine", 400)])
def test_a_smooth_curve_is_not_cut_at_its_bends(shape: str, n: int) -> None:
    # Growth that speeds up, or a rise and fall, with no abrupt change: two lines always fit
    # a bend better than one, so the piecewise-linear model alone cuts such a curve into 2-7
    # straight pieces; the default must find no change (one parabola explains each bend).
    for seed in range(8):
        x = smooth(shape, n, seed)
        assert changepoints(x) == [], (shape, n, seed)
        assert len(changepoints(x, model="linear")) >= 2  # what the abruptness test removes


def test_a_step_on_a_curve_and_a_sharp_kink_are_still_found() -> None:
    # The abruptness test must not hide a step on a daily-traffic-like ramp, nor a kink.
    n, c = 400, 200
    t = np.arange(n, dtype=float)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        step = np.sin(np.pi * t / (n - 1)) + rng.normal(0.0, 0.1, n)
        step[c:] += 0.4  # 4 noise sd on a rise of 10
        assert any(abs(k - c) <= 10 for k in changepoints(step)), seed
        kink = 0.002 * t + rng.normal(0.0, 0.1, n)
        kink[c:] += 0.02 * (t[c:] - c)  # the slope grows elevenfold
        found = changepoints(kink)
        # Kept as the piecewise-linear model finds it (a continuous kink is located within
        # about 15 points by lines that may jump).
        assert found == changepoints(kink, model="linear") and len(found) == 1 and abs(found[0] - c) <= 15, seed


def test_steps_keep_the_mean_model() -> None:
    x, truth = steps(4)
    assert changepoints(x) == changepoints(x, model="mean")
    assert close(changepoints(x), truth)


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        changepoints([1.0] * 20, model="quadratic")


def test_coarse_to_fine_search_finds_the_same_changes_as_the_exact_one(monkeypatch) -> None:
    import importlib

    cp = importlib.import_module("analyzers.stats.changepoints")
    rng = np.random.default_rng(22)
    x = rng.normal(size=50_000)
    for k in range(1, 8):
        x[k * 6_000 + int(rng.integers(-500, 500)) :] += rng.choice([-1.5, 1.5])
    fast = changepoints(x)
    monkeypatch.setattr(cp, "COARSE_MIN", 10**9)
    assert changepoints(x) == fast and len(fast) >= 7


def seasonal_step(seed: int, multiplicative: bool) -> np.ndarray:
    # Monthly-like data: a yearly cycle (period 12) three times the noise, a gentle trend,
    # and a level step of 3 noise SD at 150 of 240.
    rng = np.random.default_rng(seed)
    t = np.arange(240, dtype=float)
    cycle = 3.0 * np.sin(2 * np.pi * t / 12) + 1.5 * np.cos(4 * np.pi * t / 12)
    level = 100 + 0.02 * t + np.where(t >= 150, 3.0, 0.0)
    if multiplicative:  # the cycle grows with the level (passenger counts, sales)
        return level * (1 + cycle / 100) * np.exp(rng.normal(0, 0.01, t.size))
    return level + cycle + rng.normal(0, 1, t.size)


@pytest.mark.parametrize("multiplicative", [False, True])
def test_a_step_under_a_yearly_cycle_is_found_once(multiplicative: bool) -> None:
    from analyzers.stats.changepoints import seasonal_period

    x = seasonal_step(31, multiplicative)
    assert seasonal_period(x) == 12
    assert close(changepoints(x), [150])
    assert close(changepoints(x, period=12), [150])
    # Without the adjustment the cycle is read as changes (or hides the step).
    assert not close(changepoints(x, period=0), [150])


def test_no_period_is_detected_in_noise_memory_steps_or_trends() -> None:
    from analyzers.stats.changepoints import seasonal_period

    rng = np.random.default_rng(32)
    ar = np.zeros(3000)
    e = rng.normal(size=3000)
    for i in range(1, 3000):
        ar[i] = 0.8 * ar[i - 1] + e[i]
    x, _ = steps(33)
    for series in (rng.normal(size=3000), rng.standard_t(3, 3000), ar, np.cumsum(e), x,
                   0.01 * np.arange(500.0) ** 1.5 + rng.normal(size=500)):
        assert seasonal_period(series) == 0


def test_explicit_models_do_not_remove_seasonality_unless_asked() -> None:
    # verify_series relies on model="mean" segmenting the values as they are.
    x = seasonal_step(34, False)
    assert changepoints(x, model="mean") == changepoints(x, model="mean", period=0)
    assert changepoints(x, model="linear") == changepoints(x, model="linear", period=0)
    assert close(changepoints(x, model="linear", period=12), [150])


@pytest.mark.parametrize("period", [-1, 2.5, True, "12"])
def test_bad_period_is_a_clear_error(period) -> None:
    with pytest.raises(ValueError, match="period must be None or a whole number"):
        changepoints([1.0] * 20, period=period)


def test_gaps_do_not_shift_the_seasonal_phase() -> None:
    # 30 scattered missing points and a 7-point run: phases follow the original positions,
    # and the step is reported at its original index.
    x = seasonal_step(35, True)
    rng = np.random.default_rng(36)
    x[rng.choice(np.r_[0:140, 160:240], 30, replace=False)] = np.nan
    x[100:107] = np.nan
    found = changepoints(x)
    assert close(found, [150]) and all(np.isfinite(x[p]) for p in found)


def test_a_period_longer_than_half_the_series_is_a_clear_error() -> None:
    x = seasonal_step(37, False)
    with pytest.raises(ValueError, match="needs at least two whole cycles"):
        changepoints(x, period=121)
    changepoints(x, period=120)  # two whole cycles exactly: accepted, no error
