"""In-time placebos (analyzers.stats.placebo): the level sequence's variance checked against how its
own horizon estimate varies at times before the deploy when nothing happened."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analyzers.stats import sequential as sq
from analyzers.stats.noise import ar1_transform
from analyzers.stats.placebo import MIN_EFFECTIVE
from analyzers.stats.sequential import sequential_path

ALPHA = 0.01


def latency(seed: int, *, history_min: int = 1440, noise: float = 0.03, wander_sd: float = 0.07,
            step: float = 0.0, wander_after_only: bool = False) -> tuple[pd.Series, pd.Timestamp]:
    """A latency-like gauge a minute apart: 0.5 s x exp(AR(1) wander, 10-minute time constant,
    sd ``wander_sd`` on log latency) x (1 + white sampling noise), the demo's p99 noise; ``step``
    multiplies everything after the deploy. 3 h before and 35 min after the deploy, and
    ``history_min`` minutes of history before that."""
    rng = np.random.default_rng(seed)
    d = history_min + 180
    n = d + 35
    phi = math.exp(-1.0 / 10.0)
    z = rng.standard_normal(n) * wander_sd * math.sqrt(1.0 - phi * phi)
    a = np.zeros(n)
    a[0] = rng.standard_normal() * wander_sd
    for i in range(1, n):
        a[i] = phi * a[i - 1] + z[i]
    if wander_after_only:
        a[:d] *= 0.2
    y = 0.5 * np.exp(a) * (1.0 + noise * rng.standard_normal(n))
    y[d:] *= 1.0 + step
    idx = pd.date_range("2026-03-02", periods=n, freq="60s", tz="UTC")
    return pd.Series(y, idx), idx[d]


def called(seeds: range, *, placebos: bool, monkeypatch: pytest.MonkeyPatch, **kw: object) -> tuple[int, list[float]]:
    """How many of the seeded series the sequence calls shifted by 30 minutes, and their factors."""
    with monkeypatch.context() as m:
        if not placebos:
            m.setattr(sq, "placebo_factor", lambda *a, **k: (1.0, 0))
        n, factors = 0, []
        for s in seeds:
            series, deploy = latency(s, **kw)  # type: ignore[arg-type]
            p = sequential_path(series, deploy, window_before_s=10800.0, window_after_s=1800.0)
            n += p.at(ALPHA)["status"] == "shifted"
            factors.append(float(p.details.get("placebo_factor", 1.0)))
    return n, factors


def test_the_contrast_is_the_sequences_unclipped_horizon_estimate() -> None:
    series, deploy = latency(3, step=0.1)
    p = sequential_path(series, deploy, window_before_s=10800.0, window_after_s=1800.0)
    y = series.to_numpy()
    d = int(np.searchsorted(series.index, deploy))
    w = y[d - 180:]
    for m in p.models:
        assert m.plan is not None and m.weights is not None and m.s_raw is not None
        u = ar1_transform(m.plan, w[m.plan], m.phi)
        assert float(m.weights @ u) == pytest.approx(float(m.s_raw[-1] / m.v[-1]), rel=1e-9, abs=1e-12)


def test_a_wander_the_model_misses_no_longer_fails_no_op_deploys(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 hours of history: too little for the residual-memory factor (it needs 4 blocks of the
    window's length), enough for 14 effective placebos. The model then under-states the wander and
    fails 7 of 60 no-op deploys; the placebos see it (variance x1.5 to x2.5) and keep 3."""
    before, _ = called(range(60), placebos=False, monkeypatch=monkeypatch, history_min=480, noise=0.05)
    after, factors = called(range(60), placebos=True, monkeypatch=monkeypatch, history_min=480, noise=0.05)
    assert before >= 6
    assert after <= 3
    assert float(np.median(factors)) > 1.3


def test_a_2_sd_step_on_a_wandering_series_is_still_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """+15 % (2 SD of the log series) with a day of history, where the model's variance is right:
    the placebos leave the power where it was (15-16 of 40 within 30 minutes at alpha 0.01)."""
    before, _ = called(range(40), placebos=False, monkeypatch=monkeypatch, step=0.15)
    after, factors = called(range(40), placebos=True, monkeypatch=monkeypatch, step=0.15)
    assert before >= 12
    assert after >= before - 2
    assert float(np.median(factors)) == pytest.approx(1.0, abs=0.05)


def test_a_wander_that_starts_at_the_deploy_is_not_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The assumption broken: the history is calm (wander x0.2) and the wander starts at the deploy.
    The placebos cannot see what the history does not hold: factor about 1, and the false fails stay
    (half of the series: as with any noise that grows at the deploy, docs/statistics.md)."""
    n, factors = called(range(20), placebos=True, monkeypatch=monkeypatch, wander_after_only=True)
    assert float(np.median(factors)) < 1.2
    assert n >= 5


def test_short_history_keeps_the_model_variance() -> None:
    series, deploy = latency(1, history_min=200)
    p = sequential_path(series, deploy, window_before_s=10800.0, window_after_s=1800.0)
    assert p.details["placebos"] < MIN_EFFECTIVE
    assert p.details["placebo_factor"] == 1.0
    assert all(m.wander == 1.0 for m in p.models)


def test_a_daily_cycle_is_not_read_as_wander() -> None:
    """A daily cycle 3x the noise in the history: the high pass takes the cycle's bend out, so the
    placebos of white noise stay at the model's variance."""
    rng = np.random.default_rng(5)
    n = 1440 + 180 + 35
    t = np.arange(n)
    y = 10.0 + 3.0 * np.sin(2 * np.pi * t / 1440.0) + rng.standard_normal(n)
    idx = pd.date_range("2026-03-02", periods=n, freq="60s", tz="UTC")
    p = sequential_path(pd.Series(y, idx), idx[1440 + 180], window_before_s=10800.0, window_after_s=1800.0)
    assert p.details["placebos"] >= MIN_EFFECTIVE
    assert p.details["placebo_factor"] < 1.3
