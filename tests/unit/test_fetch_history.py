"""The fetch plan reaches back far enough for the baselines the statistics can choose.

``verification.history`` is history *before the analysis window*: the seasonal baselines are
judged on the day just before the window against the same day earlier (a week earlier for the
weekly one), so the fetch must start ``history + window_before`` before the deploy. When it
started ``history`` before the deploy, the default 7 days could never hold the weekly baseline
and a 1-day history never held the day before the window's times.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from analyzers.config import Config
from analyzers.demo.seriesgen import null_scenario
from analyzers.model import Deploy
from analyzers.stats.baselines import WEEK, choose_baseline
from analyzers.verify.plan import analysis_window


def _deploy(at) -> Deploy:  # type: ignore[no-untyped-def]
    return Deploy(deploy_id="d1", service="checkout", environment="production", version="v2",
                  started_at=at.to_pydatetime())


def test_the_fetch_starts_history_before_the_analysis_window() -> None:
    config = Config()
    v = config.verification
    sc = null_scenario("weekly", 0)
    d = _deploy(sc.deploy_at)
    start, _ = analysis_window(d, config, d.started_at + timedelta(hours=2))
    assert d.started_at - start == timedelta(seconds=v.history_s + v.window_before_s)
    assert v.history_s >= 8 * 86400  # the weekly baseline is judged a day before the window, 7 days back


def test_the_default_fetch_lets_the_weekly_baseline_be_chosen_on_weekly_data() -> None:
    """Weekly test series (daily cycle, weekday amplitudes, lower weekends) hold 8 days before
    the window; cut where the default plan starts its fetch, most get the week-earlier baseline
    (with the old start, 7 days before the deploy, none could)."""
    config = Config()
    v = config.verification
    chosen = 0
    for seed in range(10):
        sc = null_scenario("weekly", seed)
        d = _deploy(sc.deploy_at)
        start, _ = analysis_window(d, config, d.started_at + timedelta(hours=2))
        y = sc.series[sc.series.index >= start]
        step = float((y.index[1] - y.index[0]).total_seconds())
        dep = int(np.searchsorted(y.index, sc.deploy_at))
        win = dep - int(round(v.window_before_s / step))
        base = choose_baseline(y.to_numpy(dtype=float), win, dep, y.size, step)
        chosen += base.name == WEEK
    assert chosen >= 7, f"week-earlier baseline chosen on {chosen} of 10 weekly series"
