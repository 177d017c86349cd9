"""BubbleUp's contrast maths: figures on hand-computed tables, and error rates on simulated data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzers.stats.divergence import ALPHA, STANDS_OUT, contrast, rank_contrasts


def test_figures_on_a_hand_computed_table() -> None:
    # errors: /b 90, /a 10; good requests: /a 600, /b 300, /c 100
    c = contrast("endpoint", {"/a": 10, "/b": 90}, {"/a": 600, "/b": 300, "/c": 100})
    assert [v.value for v in c.values] == ["/b", "/c", "/a"]
    b = c.values[0]
    assert (b.bad_share, b.good_share) == (pytest.approx(0.9), pytest.approx(0.3))
    assert b.difference == pytest.approx(0.6) and b.bad_ratio == pytest.approx(90 / 390)
    # TVD = 0.5 * (|0.1-0.6| + |0.9-0.3| + |0-0.1|) = 0.6
    assert c.divergence == pytest.approx(0.6) and (c.n_bad, c.n_good) == (100, 1000)
    pooled = np.array([610, 390, 100]) / 1100
    noise = 0.5 * math.sqrt(2 / math.pi) * np.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 1000)).sum()
    assert c.noise == pytest.approx(noise) and c.score == pytest.approx(0.6 - noise)
    (ranked,) = rank_contrasts([c])
    assert ranked.p_adjusted == pytest.approx(ranked.p_value) and ranked.p_value < 1e-30 and ranked.stands_out


def test_no_bad_requests_or_one_side_empty_is_not_a_finding() -> None:
    c = contrast("pod", {}, {"a": 10, "b": 10})
    assert math.isnan(c.divergence) and math.isnan(c.p_value)
    (r,) = rank_contrasts([c])
    assert not r.stands_out


def test_negative_counts_from_extrapolation_count_zero() -> None:
    c = contrast("pod", {"a": -0.4, "b": 5}, {"a": 10, "b": 10})
    assert c.values[0].value == "b" and c.values[0].bad_share == 1.0


def test_ranking_prefers_the_label_that_separates_beyond_sampling_noise() -> None:
    rng = np.random.default_rng(3)
    # 30 errors spread at random over 200 pods look divergent (TVD near 0.9) by chance alone
    pods = {f"p{i}": float(rng.poisson(0.15)) for i in range(200)}
    noisy = contrast("pod", pods, {f"p{i}": 1000.0 for i in range(200)})
    real = contrast("version", {"v2": 25.0, "v1": 5.0}, {"v2": 100000.0, "v1": 100000.0})
    assert noisy.divergence > real.divergence  # raw divergence would rank the noise first
    first, second = rank_contrasts([noisy, real])
    assert first.label == "version" and first.stands_out and not second.stands_out


RUNS = 1000


@pytest.mark.parametrize(("n_values", "n_bad"), [(2, 20), (4, 200), (12, 50), (40, 30), (200, 400)])
def test_null_labels_stand_out_at_most_at_the_test_level(n_values: int, n_bad: int) -> None:
    """Errors independent of the label (a random sample of the traffic): the share of runs where
    the label "stands out" stays at ALPHA or below. Over 1,000 seeded runs the estimate's standard
    error at 1% is 0.3 pp: the bound allows ALPHA plus 1.6 of them."""
    rng = np.random.default_rng(20261207 + n_values)
    traffic = rng.dirichlet(np.full(n_values, 2.0))
    flagged = 0
    for _ in range(RUNS):
        bad = rng.multinomial(n_bad, traffic)
        good = rng.multinomial(50 * n_bad, traffic)
        c = rank_contrasts([contrast("x", {str(i): bad[i] for i in range(n_values)},
                                     {str(i): good[i] for i in range(n_values)})])[0]
        flagged += c.stands_out
    assert flagged / RUNS <= ALPHA + 0.005


@pytest.mark.parametrize(("n_values", "n_bad", "power"), [(2, 40, 0.95), (4, 200, 0.95), (12, 100, 0.95),
                                                          (40, 200, 0.95), (40, 100, 0.9)])
def test_a_value_holding_30pp_more_of_the_errors_is_found(n_values: int, n_bad: int, power: float) -> None:
    """Power: measured 96%, 100%, 97%, 99.5% and 93% (200 seeded runs each). Few errors over many
    values cost power: the sampling-noise correction is conservative there."""
    rng = np.random.default_rng(7 + n_values)
    traffic = np.full(n_values, 1.0 / n_values)
    shifted = traffic * (1 - traffic[0] - 0.3) / (1 - traffic[0])
    shifted[0] = traffic[0] + 0.3  # value "0" holds 30 pp more of the errors than of the traffic
    found = 0
    for _ in range(200):
        bad = rng.multinomial(n_bad, shifted)
        good = rng.multinomial(50 * n_bad, traffic)
        c = rank_contrasts([contrast("x", {str(i): bad[i] for i in range(n_values)},
                                     {str(i): good[i] for i in range(n_values)})])[0]
        found += c.stands_out and c.top is not None and c.top.value == "0"
    assert found / 200 >= power, (found, STANDS_OUT)
