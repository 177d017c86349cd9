"""One day of history before the analysis window: the anchored 1-day shape baseline.

A service with a daily load cycle and only one day of history: with no lagged baseline, the level
before the deploy is the baseline, and the cycle bending inside the after-window reads as a shift
(a no-op deploy failed). With the day's own shape (smoothed, anchored on today's level) the bend
is expected; a real step on the same series is still a shift. Series without a daily cycle keep
the pre-window baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from analyzers.stats import verify_series
from analyzers.stats.baselines import DAY_SHAPE, PRE_WINDOW, choose_baseline
from analyzers.stats.sequential import sequential_path

STEP_S = 60
BEFORE = 180  # the 3 h window before the deploy
AFTER = 60
DAY = 1440
START = pd.Timestamp("2026-03-02T00:00:00Z")


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float = 0.8) -> np.ndarray:
    e = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
    e[0] = rng.normal(0.0, sd)
    return lfilter([1.0], [1.0, -phi], e)


def _cycle_series(seed: int, *, step: float = 0.0) -> tuple[pd.Series, pd.Timestamp]:
    """p99-like latency (s) of a quiet service: a daily load cycle (0.1 .. 1.0) x AR(0.8) log noise
    (sd 1 %); the deploy at the trough, where the cycle turns up; one day before the 3 h window."""
    n = DAY + BEFORE + AFTER
    d = DAY + BEFORE
    t = np.arange(n, dtype=float)
    load = 0.55 - 0.45 * np.cos(2 * np.pi * (t - d) / DAY)
    rng = np.random.default_rng(seed)
    y = 0.4 * (0.6 + 1.0 * load) * np.exp(_ar1(rng, n, 0.01))
    if step:
        y[d + 2 :] *= step
    idx = pd.date_range(START, periods=n, freq=f"{STEP_S}s")
    return pd.Series(y, index=idx), idx[d]


def _sequential_status(series: pd.Series, deploy: pd.Timestamp) -> str:
    path = sequential_path(series, deploy, "any", kind="latency", window_after_s=AFTER * STEP_S)
    return str(path.at(0.01)["status"])


def test_no_op_deploys_where_the_daily_cycle_turns_up_do_not_fail() -> None:
    # With the level before the deploy as the baseline, about half of these failed (single look
    # 0.55, any look 0.575 of 40 seeds); with the 1-day shape none of 40 did.
    failed = []
    for seed in range(10):
        y, deploy = _cycle_series(seed)
        base = choose_baseline(y.to_numpy(), DAY, DAY + BEFORE, DAY + BEFORE + AFTER, STEP_S)
        assert base.name == DAY_SHAPE
        res = verify_series(y, deploy, kind="latency", window_after_s=AFTER * STEP_S)
        assert res.baseline == DAY_SHAPE
        if res.status == "shifted" or _sequential_status(y, deploy) == "shifted":
            failed.append(seed)
    assert failed == []


@pytest.mark.parametrize("seed", range(4))
def test_a_real_step_on_the_same_series_still_fails(seed: int) -> None:
    y, deploy = _cycle_series(seed, step=1.3)
    res = verify_series(y, deploy, kind="latency", window_after_s=AFTER * STEP_S)
    assert res.baseline == DAY_SHAPE
    assert (res.status, res.direction) == ("shifted", "increase"), res.reason
    assert _sequential_status(y, deploy) == "shifted"


def test_the_shape_is_the_same_time_yesterday_smoothed_and_scaled_to_today() -> None:
    # A pure cycle, 20 % higher today than yesterday: the shape follows yesterday's cycle at the
    # window's times, scaled to today's level (within 1 % of the true curve).
    n = DAY + BEFORE + AFTER
    t = np.arange(n, dtype=float)
    cyc = 1.0 + 0.5 * np.sin(2 * np.pi * t / DAY)
    rng = np.random.default_rng(3)
    y = cyc * np.exp(rng.normal(0.0, 0.02, n))
    y[DAY:] *= 1.2
    base = choose_baseline(y, DAY, DAY + BEFORE, n, STEP_S)
    assert base.name == DAY_SHAPE
    assert np.allclose(base.values, 1.2 * cyc[DAY:], rtol=0.01)


@pytest.mark.parametrize("kind", ["ar08", "randomwalk", "wander"])
def test_series_without_a_daily_cycle_keep_the_pre_window_baseline(kind: str) -> None:
    n = DAY + BEFORE + AFTER
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng([seed, 7])
        if kind == "ar08":
            y = 10 + _ar1(rng, n, 1.0)
        elif kind == "randomwalk":
            y = 10 + np.cumsum(rng.normal(0.0, 0.1, n))
        else:  # a slow wander (AR 0.995) under white noise
            y = 10 + _ar1(rng, n, 1.0, 0.995) + rng.normal(0.0, 0.5, n)
        hits += choose_baseline(y, DAY, DAY + BEFORE, n, STEP_S).name != PRE_WINDOW
    assert hits <= {"ar08": 0, "randomwalk": 4, "wander": 4}[kind]


def _night_series(seed: int, step: float) -> tuple[pd.Series, pd.Timestamp]:
    """The demo's night-time ``latency_regression`` in small: a p99 with a strong daily cycle (0.15 ..
    1.05 s, AR(0.8) log noise of 3 %), the deploy at the trough. A day earlier, from 40 minutes after
    the deploy's time, a burst (x1.35, the wide-tail night p99 of a quiet service); 6 hours before the
    deploy an earlier deploy cut the level to 0.78 of yesterday's; the deploy multiplies it by ``step``."""
    after = 33
    n = DAY + BEFORE + after
    d = DAY + BEFORE
    t = np.arange(n, dtype=float)
    load = 0.55 - 0.45 * np.cos(2 * np.pi * (t - d) / DAY)
    rng = np.random.default_rng([seed, 12])
    y = 0.3 * (0.5 + 3.0 * load) * np.exp(_ar1(rng, n, 0.03))
    y[d - DAY + 40 : d - DAY + 180] *= 1.35
    y[d - 360 :] *= 0.78
    y[d + 2 :] *= step
    idx = pd.date_range(START, periods=n, freq=f"{STEP_S}s")
    return pd.Series(y, index=idx), idx[d]


def test_a_night_step_after_an_earlier_deploy_is_not_shrunk_by_yesterdays_shape() -> None:
    # The level moved by a factor 1.28 since yesterday (> SHAPE_MAX_FACTOR): with the 1-day shape,
    # yesterday's burst, scaled, was subtracted from the after-window and the x1.15 step came out
    # below a 10 % minimum effect on most seeds (the demo's seed 3 at 02:00: +42.0 ms against
    # 44.2 ms). The level before the deploy is the baseline again and the step is called, at
    # least 10 % of the level (the true step is 15 %), on 7 of 8 seeds or more.
    caught = 0
    for seed in range(8):
        y, deploy = _night_series(seed, 1.15)
        base = choose_baseline(y.to_numpy(), DAY, DAY + BEFORE, y.size, STEP_S)
        assert base.name == PRE_WINDOW
        seq = sequential_path(y, deploy, "any", kind="latency", window_after_s=33 * STEP_S).at(0.01)
        level = float(np.median(y.to_numpy()[DAY : DAY + BEFORE]))
        caught += seq["status"] == "shifted" and seq["estimate"] / level >= 0.10
    assert caught >= 7
