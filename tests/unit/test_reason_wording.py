"""How a metric's verdict sentence reads (analyzers.verify.deploy._reason): units on one scale,
a ratio's change in pp, what a guard fails on, and no direction for a spread-only change."""

from __future__ import annotations

from analyzers.config import default_config
from analyzers.verify.deploy import _reason
from analyzers.verify.plan import MetricPlan

CFG = default_config()


def _plan(key: str, role: str, expect: str) -> MetricPlan:
    return MetricPlan(CFG.metric(key), role, expect, None)


def test_a_guard_says_what_it_fails_on_with_units_and_pp() -> None:
    res = {"status": "shifted", "direction": "increase", "effect": 0.0339, "effect_rel": 5.49,
           "effect_ci": [0.021, 0.047], "ci_level": 0.99, "reason": "Increase at the deploy."}
    text = _reason(_plan("error_ratio", "guard", "increase"), "regressed", res)
    assert text.startswith("guard error_ratio (fails on increase) regressed: +3.39 pp (x6.5), "
                           "99% CI +2.10 pp to +4.70 pp.")
    ok = _reason(_plan("error_ratio", "guard", "increase"), "ok", {"reason": "No change."})
    assert ok.startswith("guard error_ratio (fails on increase) shows no regression")
    assert "expected" not in text + ok


def test_an_interval_that_crosses_one_second_stays_on_one_scale() -> None:
    res = {"status": "shifted", "direction": "increase", "effect": 0.7, "effect_rel": 0.5,
           "effect_ci": [0.4, 1.1], "ci_level": 0.99, "reason": ""}
    text = _reason(_plan("latency_p99", "guard", "increase"), "regressed", res)
    assert "+0.700 s (+50%), 99% CI +0.400 s to +1.100 s" in text


def test_a_spread_only_change_is_described_without_a_direction() -> None:
    # checkout v1.14.1 in the demo: a tighter spread, the level did not move.
    res = {"status": "shifted", "direction": None, "change_kind": "variance", "effect": -0.1069, "effect_rel": -0.16,
           "effect_ci": [-0.2, 0.01], "details": {"spread_ratio": 0.0953}, "reason": "The spread changed."}
    text = _reason(_plan("latency_p99", "expectation", "decrease"), "confirmed", res)
    assert "spread x0.095, no level change" in text
    assert "-106.9 ms" not in text and "-16%" not in text


def _step(before: float, after: float, sd: float) -> object:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)  # seeded: the same series on every machine
    idx = pd.date_range("2026-11-20 07:00", periods=240, freq="1min", tz="UTC")
    values = np.where(np.arange(240) < 180, before, after) + rng.normal(0, sd, 240)
    return pd.Series(values, index=idx)


def test_verify_series_writes_its_reason_in_the_unit_it_is_given() -> None:
    import re

    from analyzers.stats import verify_series

    deploy_at = "2026-11-20T10:00:00Z"
    res = verify_series(_step(0.200, 0.260, 0.005), deploy_at, expect="increase", unit="s")
    assert res.status == "shifted"
    assert re.search(r"Increase of 6\d\.\d ms \(\+\d\d%\) starting .* \(p < 0\.0001\)\.$", res.reason), res.reason
    ratio = verify_series(_step(0.005, 0.040, 0.001), deploy_at, expect="increase", unit="ratio")
    assert re.search(r"Increase of 3\.\d\d pp \(x\d", ratio.reason), ratio.reason
    bare = verify_series(_step(0.200, 0.260, 0.005), deploy_at, expect="increase")
    assert re.search(r"Increase of 0\.06\d+ \(", bare.reason) and "ms" not in bare.reason  # no unit named: plain numbers
