"""The finite-horizon boundary: looks stop at the end of the after-window, every later look
(re-verify, replay, dashboard) gives the horizon's decision, and information that arrives slower
than planned (gaps) only makes the boundary conservative."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from analyzers.demo.seriesgen import scenario
from analyzers.stats.sequential import HORIZON_TILT, sequential_path
from tests.fixtures.series import CatalogSeries

WINDOW_S = 1800.0


def _same(a: dict, b: dict) -> None:  # type: ignore[type-arg]
    assert (a["status"], a["direction"], a["rows"], a["decided_at"]) == (b["status"], b["direction"], b["rows"], b["decided_at"])
    for x, y in zip(a["interval"], b["interval"], strict=True):
        assert (x is None and y is None) or x == pytest.approx(y, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("fam", ["ar05", "step_up", "step_ar08", "lowcount_up"])
def test_a_look_after_the_horizon_gives_the_decision_of_the_look_at_the_horizon(fam: str) -> None:
    sc = scenario(fam, 5)
    horizon = sc.deploy_at + pd.Timedelta(seconds=WINDOW_S)
    y = sc.series.copy()
    late = y.index > horizon
    y[late] = y[late] + 8.0 * float(np.nanstd(y.to_numpy()))  # a huge move after the horizon: never seen
    at_horizon = sequential_path(sc.series[sc.series.index <= horizon], sc.deploy_at, "any", kind=sc.kind,
                                 window_after_s=WINDOW_S).at(0.01)
    path = sequential_path(y, sc.deploy_at, "any", kind=sc.kind, window_after_s=WINDOW_S)
    for after in (0, 60, 1800, 86400):
        _same(path.at(0.01, (horizon + pd.Timedelta(seconds=after)).value / 1e9), at_horizon)
    _same(path.at(0.01), at_horizon)
    assert path.pvalue() == pytest.approx(path.pvalue(horizon.value / 1e9), rel=1e-12)


def test_every_planned_row_present_puts_the_information_exactly_at_the_horizon() -> None:
    sc = scenario("ar05", 2)
    p = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=WINDOW_S)
    for m in p.models:
        assert m.v[-1] == pytest.approx(m.v_max, rel=1e-9)
        assert np.all(np.diff(m.v) >= -1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_rows_missing_after_the_deploy_only_lower_the_information(seed: int) -> None:
    # The horizon's information is planned as if every row arrives; a scrape outage after the
    # deploy leaves the real information below it (a conservative boundary), never above.
    sc = scenario("ar08", seed)
    y = sc.series.copy()
    d = int(np.searchsorted(y.index, sc.deploy_at))
    y.iloc[d + 12 : d + 20] = np.nan
    y.iloc[d + 25] = np.nan
    full = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=WINDOW_S)
    gappy = sequential_path(y, sc.deploy_at, "any", window_after_s=WINDOW_S)
    for mf, mg in zip(full.models, gappy.models, strict=True):
        assert mg.v_max == pytest.approx(mf.v_max, rel=1e-9)  # planned before any look: the same design
        assert mg.v[-1] < mg.v_max


def test_the_horizon_line_is_tighter_at_the_horizon_than_the_all_time_line() -> None:
    sc = scenario("step_up", 4)
    horizon = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=WINDOW_S).at(0.01)
    all_time = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=WINDOW_S, boundary="linear").at(0.01)
    width = horizon["interval"][1] - horizon["interval"][0]
    assert width < all_time["interval"][1] - all_time["interval"][0]


def test_the_tilt_is_one_design_constant_and_checked() -> None:
    sc = scenario("ar05", 1)
    p = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=WINDOW_S)
    assert p.tilt == HORIZON_TILT and p.boundary == "horizon"
    with pytest.raises(ValueError, match="tilt"):
        sequential_path(sc.series, sc.deploy_at, "any", tilt=1.0)
    # a larger tilt lowers the boundary early and raises it at the horizon
    early = sc.deploy_at + pd.Timedelta(minutes=8)
    lo_flat = replace(p, tilt=0.0).at(0.01, early.value / 1e9)["interval"]
    lo_steep = replace(p, tilt=0.8).at(0.01, early.value / 1e9)["interval"]
    assert lo_steep[1] - lo_steep[0] < lo_flat[1] - lo_flat[0]
    end_flat = replace(p, tilt=0.0)._bounds(0.01)
    end_steep = replace(p, tilt=0.8)._bounds(0.01)
    assert end_steep[1][-1] - end_steep[0][-1] > end_flat[1][-1] - end_flat[0][-1]


def test_re_verify_and_replay_after_the_horizon_give_the_final_check_s_verdict() -> None:
    # verify_deploy is what the scheduler, verify --wait, the dashboard's re-verify and replay call:
    # a look after the horizon (window_after + the rollout's ramp) uses data only up to it.
    from analyzers.config import default_config
    from analyzers.model import Deploy
    from analyzers.verify.deploy import verify_deploy

    cfg = default_config()
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    deploy = Deploy(deploy_id="d1", service="checkout", environment="production", version="v2", started_at=t0,
                    finished_at=t0 + timedelta(minutes=5))
    horizon = t0 + timedelta(seconds=cfg.verification.window_after_s + 300)
    # seeded no-op series for every catalog metric, latency_p99 jumping long after the window
    fetcher = CatalogSeries(t0, after=timedelta(hours=3), seed=8, p99_step=(horizon + timedelta(minutes=10), 0.2))
    final = verify_deploy(deploy, cfg, None, now=horizon, fetcher=fetcher)  # type: ignore[arg-type]
    assert sum(bool((m.result or {}).get("sequential")) for m in final.metrics) >= 2
    for later in (timedelta(minutes=15), timedelta(hours=2)):
        again = verify_deploy(deploy, cfg, None, now=horizon + later, fetcher=fetcher)  # type: ignore[arg-type]
        assert again.overall == final.overall == "pass", again.reason
        for a, b in zip(final.metrics, again.metrics, strict=True):
            assert (a.metric, a.outcome) == (b.metric, b.outcome)
            sa, sb = (a.result or {}).get("sequential"), (b.result or {}).get("sequential")
            assert sa == sb
