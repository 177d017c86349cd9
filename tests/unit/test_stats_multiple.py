"""adjust_pvalues against known Holm and Benjamini-Hochberg values."""

from __future__ import annotations

import math

import pytest

from analyzers.stats import adjust_pvalues

P = [0.01, 0.04, 0.03, 0.005, 0.2]


def test_holm_known_values() -> None:
    assert adjust_pvalues(P, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])


def test_bh_known_values() -> None:
    assert adjust_pvalues(P, "bh") == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.2])


def test_default_is_holm_and_values_are_capped_at_one() -> None:
    assert adjust_pvalues([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_missing_pvalues_are_left_out_of_the_family() -> None:
    out = adjust_pvalues([0.01, None, float("nan"), 0.04], "holm")
    assert out[0] == pytest.approx(0.02) and out[3] == pytest.approx(0.04)
    assert math.isnan(out[1]) and math.isnan(out[2])
    assert adjust_pvalues([]) == []


def test_bad_input_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="holm"):
        adjust_pvalues([0.1], "bonferroni-ish")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5])
