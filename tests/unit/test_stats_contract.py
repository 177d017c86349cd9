"""verify_series contract: result shape, JSON-readiness, inconclusive answers, domain errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

import analyzers
from analyzers.errors import AnalyzerError
from analyzers.stats import NotASeries, SeriesResult, verify_series

KEYS = {
    "status", "direction", "change_at", "effect", "effect_ci", "p_value", "baseline", "reason",
    "effect_rel", "n_before", "n_after", "method", "needed_more_s", "before_window", "after_window",
}
DEPLOY = pd.Timestamp("2026-03-02T12:00:00Z")


def series(before: int = 180, after: int = 30, shift: float = 0.0, seed: int = 0, step: str = "1min") -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(DEPLOY - pd.Timedelta(step) * before, periods=before + after, freq=step)
    v = 100 + rng.normal(0, 1, idx.size)
    v[before:] += shift
    return pd.Series(v, index=idx)


def test_package_reexports_the_public_api() -> None:
    assert analyzers.verify_series is verify_series
    assert callable(analyzers.changepoints)


def test_to_dict_has_every_contract_key_and_is_json_ready() -> None:
    res = verify_series(series(shift=5.0), DEPLOY, expect="increase")
    d = res.to_dict()
    assert KEYS <= set(d)
    text = json.dumps(d, allow_nan=False)  # no NaN, no numpy types
    assert "numpy" not in text
    assert d["status"] == "shifted" and d["direction"] == "increase"
    assert d["change_at"].endswith("Z") and d["change_at"].startswith("2026-03-02T12:0")
    lo, hi = d["effect_ci"]
    assert lo <= d["effect"] <= hi and lo > 0
    assert 0 <= d["p_value"] < 0.001
    assert d["baseline"] == "pre-window"
    assert d["n_before"] == 180 and d["n_after"] == 30
    assert d["before_window"][1] == d["after_window"][0] == "2026-03-02T12:00:00Z"
    assert isinstance(d["reason"], str) and d["reason"].endswith(".")
    assert d["effect_rel"] == pytest.approx(d["effect"] / 100, rel=0.05)


def test_result_is_frozen() -> None:
    res = verify_series(series(), DEPLOY)
    assert isinstance(res, SeriesResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.status = "shifted"  # type: ignore[misc]


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float), "No data"),
        (lambda: series().where(lambda s: s < -1e9), "No data"),  # all NaN
        (lambda: series().iloc[178:181], "points before"),  # 3 points
        (lambda: series().replace(series().values, np.inf), "No data"),  # infinities only
        (lambda: series(before=5), "points before"),
    ],
)
def test_degenerate_input_is_inconclusive_with_a_reason(make, words: str) -> None:
    res = verify_series(make(), DEPLOY)
    assert res.status == "inconclusive"
    assert words in res.reason
    json.dumps(res.to_dict(), allow_nan=False)


def test_too_few_points_after_says_how_long_to_wait() -> None:
    res = verify_series(series(after=4), DEPLOY, min_points=10)
    assert res.status == "inconclusive"
    assert res.needed_more_s == pytest.approx(6 * 60)
    assert "6 min" in res.reason


def test_deploy_after_the_last_sample_waits_for_min_points() -> None:
    res = verify_series(series(after=0), DEPLOY + pd.Timedelta("5min"), min_points=12)
    assert res.status == "inconclusive" and res.needed_more_s is not None and res.needed_more_s >= 12 * 60


def test_mostly_missing_after_the_deploy_is_inconclusive() -> None:
    s = series(after=60)
    v = s.to_numpy().copy()
    v[180:][np.arange(60) % 3 != 0] = np.nan
    s = pd.Series(v, index=s.index)
    res = verify_series(s, DEPLOY)
    assert res.status == "inconclusive" and "gaps" in res.reason


def test_constant_gauge_is_inconclusive_but_zero_errors_are_unchanged() -> None:
    s = series() * 0 + 3.25
    assert verify_series(s, DEPLOY).status == "inconclusive"
    zeros = series() * 0
    res = verify_series(zeros, DEPLOY, kind="ratio")
    assert res.status == "unchanged" and res.p_value == 1.0


def test_constant_before_then_different_after_is_shifted() -> None:
    s = series() * 0 + 3.25
    s.iloc[180:] = 4.0
    res = verify_series(s, DEPLOY)
    assert res.status == "shifted" and res.direction == "increase"


@pytest.mark.parametrize("bad", [[1.0, 2.0, 3.0], np.arange(5.0), pd.Series([1.0, 2.0]), "x"])
def test_not_a_time_series_raises_a_domain_error(bad) -> None:
    with pytest.raises(NotASeries) as err:
        verify_series(bad, DEPLOY)
    assert isinstance(err.value, AnalyzerError)
    assert "DatetimeIndex" in str(err.value)


def test_bad_options_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="expect"):
        verify_series(series(), DEPLOY, expect="up")
    with pytest.raises(ValueError, match="kind"):
        verify_series(series(), DEPLOY, kind="histogram")
    with pytest.raises(NotASeries, match="deploy_at"):
        verify_series(series(), "not a time")


def test_naive_timestamps_are_taken_as_utc_and_strings_accepted() -> None:
    s = series(shift=5.0)
    naive = s.copy()
    naive.index = naive.index.tz_localize(None)
    a = verify_series(naive, "2026-03-02T12:00:00").to_dict()
    b = verify_series(s, "2026-03-02T12:00:00Z").to_dict()
    assert a == b


def test_same_seed_same_answer() -> None:
    s = series(shift=0.8, seed=3)
    assert verify_series(s, DEPLOY, seed=5).to_dict() == verify_series(s, DEPLOY, seed=5).to_dict()


def test_unknown_options_are_reported_not_silently_used() -> None:
    res = verify_series(series(), DEPLOY, colour="blue")
    assert res.to_dict()["details"]["ignored_options"] == ["colour"]


def test_min_effect_turns_a_tiny_significant_shift_into_unchanged() -> None:
    s = series(shift=1.5, before=600, after=120)
    assert verify_series(s, DEPLOY).status == "shifted"
    res = verify_series(s, DEPLOY, min_effect=5.0)
    assert res.status == "unchanged" and "minimum meaningful effect" in res.reason
    res = verify_series(s, DEPLOY, min_effect_rel=0.05)
    assert res.status == "unchanged" and "minimum meaningful effect" in res.reason


def test_irregular_timestamps_and_duplicates_are_tolerated() -> None:
    s = series(shift=6.0)
    jitter = pd.to_timedelta(np.random.default_rng(1).integers(-3, 4, s.size), unit="s")
    s.index = s.index + jitter
    s = pd.concat([s, s.iloc[:5]])
    res = verify_series(s, DEPLOY)
    assert res.status == "shifted" and res.direction == "increase"


def test_counter_resets_do_not_look_like_a_change() -> None:
    rng = np.random.default_rng(4)
    inc = rng.poisson(50, 210).astype(float)
    total = np.cumsum(inc)
    total[100:] -= total[99]  # process restart: counter back near zero
    idx = pd.date_range(DEPLOY - pd.Timedelta("180min"), periods=210, freq="1min")
    res = verify_series(pd.Series(total, index=idx), DEPLOY, kind="counter")
    assert res.status == "unchanged"


def test_unchanged_with_a_wide_interval_says_a_meaningful_change_is_not_ruled_out() -> None:
    s = series(before=60, after=12, seed=8)
    res = verify_series(s, DEPLOY, min_effect=1.0)
    assert res.status == "unchanged"
    assert "cannot be ruled out" in res.reason
    tight = verify_series(series(before=600, after=240, seed=0), DEPLOY, min_effect=1.0)
    assert tight.status == "unchanged" and "ruled out" not in tight.reason


@pytest.mark.parametrize("unit", [1e-250, 1e250])
def test_extreme_magnitudes_give_the_same_verdict_in_their_units(unit: float) -> None:
    s = series(shift=3.0) - 100
    ref = verify_series(s, DEPLOY)
    with np.errstate(all="raise"):
        res = verify_series(s * unit, DEPLOY)
    assert res.status == ref.status == "shifted" and res.direction == ref.direction
    assert res.effect == pytest.approx(ref.effect * unit, rel=1e-9)
    assert res.p_value == pytest.approx(ref.p_value, rel=1e-6)


def test_expect_unchanged_is_a_two_sided_test() -> None:
    s = series(shift=-4.0)
    res = verify_series(s, DEPLOY, expect="unchanged")
    assert res.status == "shifted" and res.direction == "decrease"
    assert res.p_value == verify_series(s, DEPLOY, expect="any").p_value
