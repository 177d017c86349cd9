"""Sequential verification (analyzers.stats.sequential): one error budget over every look."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyzers.demo.seriesgen import scenario
from analyzers.stats.sequential import line_offset, one_sided_mixture_radius, sequential_path

HORIZON_S = 1800.0


def _path(sc, series=None, **kw):  # type: ignore[no-untyped-def]
    return sequential_path(sc.series if series is None else series, sc.deploy_at, "any", kind=sc.kind,
                           window_after_s=HORIZON_S, **kw)


@pytest.mark.parametrize("fam", ["ar05", "step_up", "lowcount_up", "seasonal"])
def test_a_look_recomputed_from_its_own_data_equals_the_path_at_that_time(fam: str) -> None:
    # Every nuisance parameter comes from before the deploy and the window is planned, so a
    # look that only has the data up to its time gives the very answer the full path gives.
    sc = scenario(fam, 3)
    full = _path(sc)
    for minutes in (7, 12, 20, 30):
        look = sc.deploy_at + pd.Timedelta(minutes=minutes)
        part = _path(sc, sc.series[sc.series.index <= look])
        a, b = full.at(0.01, look.value / 1e9), part.at(0.01)
        assert (a["status"], a["direction"], a["rows"]) == (b["status"], b["direction"], b["rows"])
        for x, y in zip(a["interval"], b["interval"], strict=True):
            assert x == pytest.approx(y, rel=1e-9, abs=1e-12)


def test_the_interval_and_the_decision_never_disagree() -> None:
    for fam in ("step_up", "step_down", "ar08", "small1"):
        for seed in range(5):
            sc = scenario(fam, seed)
            p = _path(sc)
            for minutes in range(6, 31, 3):
                r = p.at(0.01, (sc.deploy_at + pd.Timedelta(minutes=minutes)).value / 1e9)
                lo, hi = r["interval"]
                if lo is None or hi is None:
                    continue
                assert (r["status"] == "shifted") == (lo > 0 or hi < 0), (fam, seed, minutes, r)
                if r["status"] == "shifted":
                    assert r["direction"] == ("increase" if lo > 0 else "decrease")


def test_once_certain_it_stays_certain_at_later_looks() -> None:
    sc = scenario("step_up", 1)
    p = _path(sc)
    calls = [p.at(0.01, (sc.deploy_at + pd.Timedelta(minutes=m)).value / 1e9)["status"] for m in range(5, 31)]
    first = calls.index("shifted")
    assert all(c == "shifted" for c in calls[first:])


@pytest.mark.parametrize("fam", ["iid", "ar08", "heavy", "seasonal", "drift", "earlier", "blip", "coldcache"])
def test_no_op_deploys_are_rarely_called_changed_at_any_look(fam: str) -> None:
    # Any look up to 30 min, alpha 0.01: the benchmark measures 0.6 % over every null family
    # (n=100 each); here 40 seeds per family may hold at most 2 (5 %, far above 1 % by chance).
    hits = sum(_path(scenario(fam, s)).at(0.01)["status"] == "shifted" for s in range(40))
    assert hits <= 2


def test_a_restart_blip_is_reported_as_a_transient_and_does_not_count() -> None:
    sc = scenario("ar05", 4)
    y = sc.series.copy()
    i = int(np.searchsorted(y.index, sc.deploy_at))
    y.iloc[i : i + 3] += 6.0  # three minutes far off the level, then back
    p = _path(sc, y)
    assert p.at(0.01)["status"] == "unchanged"
    assert p.transient is not None and p.transient["recovered"]
    assert p.transient["recovered_after_s"] == 180.0 and p.transient["peak_sd"] > 3
    # without the allowance the same blip is read as a shift: the allowance is what protects it
    assert _path(sc, y, transient_s=0).at(0.01)["status"] == "shifted"


def test_a_shift_that_persists_past_the_transient_is_caught_with_its_direction() -> None:
    sc = scenario("ar05", 4)
    y = sc.series.copy()
    i = int(np.searchsorted(y.index, sc.deploy_at))
    y.iloc[i:] += 3.0
    r = _path(sc, y).at(0.01)
    assert r["status"] == "shifted" and r["direction"] == "increase"
    lo, hi = r["interval"]
    assert lo > 0 and lo < 3.0 < hi


def test_the_linear_boundary_holds_its_level_on_brownian_paths() -> None:
    # P(a Brownian motion ever crosses a + bV) = exp(-2ab): simulated on a fine grid it is below.
    rng = np.random.default_rng(7)
    alpha, v_target = 0.01, 5.0
    dv = 0.01
    v = np.arange(1, 3001) * dv
    s = np.cumsum(rng.standard_normal((4000, v.size)) * np.sqrt(dv), axis=1)
    crossed = np.any(np.abs(s) / v > line_offset(v, alpha / 2, v_target), axis=1).mean()
    assert crossed <= alpha


def test_the_one_sided_mixture_boundary_holds_its_level_and_is_not_vacuous() -> None:
    # Howard et al. eq. 14: P(S ever exceeds the boundary) <= alpha. Simulated upward crossings on
    # a fine grid stay below alpha; the boundary is not so loose that nothing ever crosses at 20x alpha.
    rng = np.random.default_rng(11)
    dv = 0.01
    v = np.arange(1, 3001) * dv
    s = np.cumsum(rng.standard_normal((4000, v.size)) * np.sqrt(dv), axis=1)
    assert np.any(s > one_sided_mixture_radius(v, 0.01, 1.0), axis=1).mean() <= 0.01
    assert np.any(s > one_sided_mixture_radius(v, 0.2, 1.0), axis=1).mean() >= 0.02


def test_the_mixture_boundary_finds_a_clear_step_and_rejects_unknown_boundaries() -> None:
    sc = scenario("big4", 1)
    r = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=HORIZON_S, boundary="mixture").at(0.01)
    assert r["status"] == "shifted"
    with pytest.raises(ValueError, match="boundary"):
        sequential_path(sc.series, sc.deploy_at, "any", boundary="quadratic")


def test_a_jump_on_a_near_random_walk_is_caught_past_the_allowance() -> None:
    # A counter's rate over 4 scrape intervals (a 4-point moving average of AR(0.8) noise: phi
    # near 1 once smoothed) that jumps by 50 % at the deploy: the jump, inside the transient
    # allowance, is the only evidence; its row must not be clipped away (fleet cpu regressions).
    def smoothed(seed: int, after: float) -> tuple[pd.Series, pd.Timestamp]:
        rng = np.random.default_rng(seed)
        n, d = 240, 180
        e = np.zeros(n)
        for i in range(1, n):
            e[i] = 0.8 * e[i - 1] + 0.03 * rng.standard_normal()
        level = np.where(np.arange(n) >= d, after, 2.0) * (1 + e)
        y = pd.Series(level).rolling(4).mean().to_numpy()[3:]
        idx = pd.date_range("2026-03-01", periods=y.size, freq="60s", tz="UTC")
        return pd.Series(y, index=idx), idx[d - 3]

    path = sequential_path(*smoothed(3, 3.0), "any", window_after_s=1800)
    r = path.at(0.002)
    assert r["status"] == "shifted" and r["direction"] == "increase"
    assert path.details["phi"] > 0.9
    # the same series without the jump: never called changed (30 seeds, every look)
    calls = [sequential_path(*smoothed(s, 2.0), "any", window_after_s=1800).at(0.01)["status"] for s in range(30)]
    assert calls.count("shifted") == 0


def test_a_smoothed_rate_s_jump_is_clipped_at_its_own_scale_not_the_one_step_one() -> None:
    # A cpu counter's rate over 4 scrape intervals on the steep part of a daily cycle (as the
    # fleet's): its 6-step predictions spread several times wider than its one-step ones, so a
    # jump row clipped at 6 one-step scales kept a fraction of a +60 % step (16 of 20 caught,
    # interval's lower bound 0.04 cores in the median case). Clipped at 6 of its own scale:
    def rate_of_cpu(seed: int, jump: float) -> tuple[pd.Series, pd.Timestamp]:
        rng = np.random.default_rng([seed, 7])
        n_before = 27 * 60
        n = n_before + 35
        e = np.zeros(n)
        for i in range(1, n):
            e[i] = 0.8 * e[i - 1] + 0.03 * rng.standard_normal()
        t = np.arange(n)
        load = 0.55 + 0.45 * np.sin(2 * np.pi * (t - n_before) / 1440.0)
        cores = 3.0 * (0.3 + 0.7 * load) * np.exp(e) * np.where(t >= n_before + 2, jump, 1.0)
        y = pd.Series(cores).rolling(4).mean().to_numpy()[3:]
        idx = pd.date_range("2026-03-01", periods=y.size, freq="60s", tz="UTC")
        return pd.Series(y, index=idx), idx[n_before - 3]

    found = [sequential_path(*rate_of_cpu(s, 1.6), "any", window_after_s=1800).at(0.002) for s in range(20)]
    assert sum(r["status"] == "shifted" and r["direction"] == "increase" for r in found) >= 19
    assert float(np.median([r["interval"][0] for r in found])) > 0.1  # cores; the step is +1.2
    # and the same series without the jump is never called changed (20 seeds, every look)
    calls = [sequential_path(*rate_of_cpu(s, 1.0), "any", window_after_s=1800).at(0.01)["status"] for s in range(20)]
    assert calls.count("shifted") == 0


def test_a_declared_direction_gets_most_of_alpha() -> None:
    sc = scenario("step_up", 2)
    p_any = sequential_path(sc.series, sc.deploy_at, "any", window_after_s=HORIZON_S)
    p_inc = sequential_path(sc.series, sc.deploy_at, "increase", window_after_s=HORIZON_S)
    assert p_inc.at(0.01)["interval"][0] > p_any.at(0.01)["interval"][0]
    assert p_inc.pvalue() < p_any.pvalue()


def test_low_counts_use_the_poisson_sequence() -> None:
    sc = scenario("lowcount_up", 0)
    p = _path(sc)
    assert p.kind == "rate"
    r = p.at(0.01)
    assert r["status"] == "shifted" and r["direction"] == "increase"
    assert _path(scenario("lowcount", 0)).at(0.01)["status"] == "unchanged"
