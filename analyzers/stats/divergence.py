"""Which label value explains the bad requests? Contrast a label's distribution inside the bad
requests (errors, or requests slower than a threshold) with the rest, as Honeycomb's BubbleUp does.

Pure (no IO). For each label the inputs are request counts per label value: ``bad`` (errors, or
slow requests) and ``good`` (the other requests over the same window). The figures:

- ``bad_share`` / ``good_share``: the value's share of the bad and of the good requests;
  ``difference`` = bad_share - good_share (a fraction; shown as percentage points). A value that
  holds 80% of the errors and 10% of the traffic (+70 pp) explains the errors; one that holds
  as much of both (+0 pp) does not, however many errors it has.
- ``divergence`` per label: the total variation distance between the two distributions,
  ``0.5 * sum |bad_share - good_share|`` (0 = the label says nothing, 1 = the label alone tells
  bad from good); an effect size that does not grow with traffic. Few bad requests spread over
  many values look divergent by chance, so labels are ranked by ``score`` = divergence minus
  ``noise``, the divergence sampling alone would give (normal approximation).
- ``p_value``: Pearson's chi-square test of homogeneity on the 2 x k table (values with an expected count below 5
  pooled into one "other" group), Holm-adjusted across the labels of one ranking. Assumes
  requests are independent; bursts and retries make the p-value too small, so it never ranks
  anything: a label *stands out* only when its score reaches :data:`STANDS_OUT` and the
  adjusted p-value is below :data:`ALPHA`.

:data:`STANDS_OUT` is the divergence below which the ranking says nothing stands out (errors
spread over a label's values as the traffic is; measured on null data in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc

from analyzers.stats.multiple import adjust_pvalues

__all__ = ["ALPHA", "STANDS_OUT", "LabelContrast", "ValueContrast", "contrast", "rank_contrasts"]

#: A divergence at least this large is reported as explaining the bad requests (10 pp of the
#: distribution moved between values). Null data (errors independent of the label) stays far below.
STANDS_OUT = 0.10
#: Level of the chi-square test a label must also pass to stand out.
ALPHA = 0.01


@dataclass(frozen=True)
class ValueContrast:
    """One label value inside the bad requests versus the rest (shares are fractions, 0..1)."""

    label: str
    value: str
    bad: float
    good: float
    bad_share: float
    good_share: float
    difference: float  # bad_share - good_share
    bad_ratio: float  # bad / (bad + good) of this value: its own error (or slow) ratio; NaN without requests


@dataclass(frozen=True)
class LabelContrast:
    """One label: its values ranked by ``difference`` (most over-represented in the bad first)."""

    label: str
    divergence: float
    p_value: float
    values: tuple[ValueContrast, ...]
    n_bad: float
    n_good: float
    #: Divergence expected from sampling alone if the label had nothing to do with it (a label with
    #: many values and few bad requests looks divergent by chance): 0.5 * sum over values of
    #: sqrt(2/pi) * sqrt(p (1 - p) (1/n_bad + 1/n_good)), p the value's share of all requests.
    noise: float = 0.0
    p_adjusted: float = math.nan

    @property
    def score(self) -> float:
        """What labels are ranked by: the divergence beyond what sampling alone gives."""
        return self.divergence - self.noise if math.isfinite(self.divergence) else math.nan

    @property
    def top(self) -> ValueContrast | None:
        return self.values[0] if self.values else None

    @property
    def stands_out(self) -> bool:
        """The label explains the bad requests: its score reaches :data:`STANDS_OUT` and the
        chi-square test (Holm-adjusted) is below :data:`ALPHA`."""
        return bool(self.score >= STANDS_OUT and self.p_adjusted < ALPHA)


def _pool(bad: np.ndarray, good: np.ndarray, min_expected: float) -> list[list[int]]:
    """Groups of value indices so that every group's expected count is at least ``min_expected``:
    values large enough stand alone; the small ones, taken from the smallest up, are merged into
    groups just large enough (a leftover joins the last group)."""
    total = bad + good
    n_bad, n_good = bad.sum(), good.sum()
    n = n_bad + n_good
    if n <= 0:
        return []
    expected_min = total * min(n_bad, n_good) / n
    groups = [[int(i)] for i in np.flatnonzero(expected_min >= min_expected)]
    current: list[int] = []
    pooled: list[list[int]] = []
    for i in np.argsort(total, kind="stable"):
        if expected_min[i] >= min_expected or total[i] <= 0:
            continue
        current.append(int(i))
        if expected_min[current].sum() >= min_expected:
            pooled.append(current)
            current = []
    if current:
        if pooled:
            pooled[-1].extend(current)
        elif groups:
            min(groups, key=lambda grp: float(total[grp].sum())).extend(current)
        else:
            pooled.append(current)
    return groups + pooled


def _pearson(table: np.ndarray) -> float:
    """Pearson's chi-square test of homogeneity on a 2 x k table: its p-value. Pearson rather than
    the G-test (used on bucket counts) because one row, the bad requests, is often small here, where
    the G statistic's chi-square approximation rejects too often (2% instead of 1% on 20 errors in
    the null tests)."""
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return float(chdtrc(dof, statistic))


def contrast(label: str, bad: Mapping[str, float], good: Mapping[str, float], *, min_expected: float = 5.0) -> LabelContrast:
    """Contrast ``label``'s values inside the bad requests with the good ones.

    ``bad`` and ``good`` map label value -> request count over one window (a value absent from one
    side counts 0 there; negative counts, which rate extrapolation can give, count 0).
    """
    values = sorted(set(bad) | set(good))
    b = np.array([max(float(bad.get(v, 0.0)), 0.0) for v in values])
    g = np.array([max(float(good.get(v, 0.0)), 0.0) for v in values])
    b, g = np.nan_to_num(b), np.nan_to_num(g)
    n_bad, n_good = float(b.sum()), float(g.sum())
    bs = b / n_bad if n_bad > 0 else np.zeros_like(b)
    gs = g / n_good if n_good > 0 else np.zeros_like(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(b + g > 0, b / (b + g), np.nan)
    rows = [
        ValueContrast(label, v, float(b[i]), float(g[i]), float(bs[i]), float(gs[i]), float(bs[i] - gs[i]), float(ratio[i]))
        for i, v in enumerate(values)
    ]
    rows.sort(key=lambda r: (-r.difference, -r.bad, r.value))
    divergence = float(0.5 * np.abs(bs - gs).sum()) if n_bad > 0 and n_good > 0 else math.nan
    noise = math.nan
    if n_bad > 0 and n_good > 0:
        pooled = (b + g) / (n_bad + n_good)
        noise = float(0.5 * np.sqrt(2 / np.pi) * np.sqrt(pooled * (1 - pooled) * (1 / n_bad + 1 / n_good)).sum())
    p_value = math.nan
    groups = _pool(b, g, min_expected) if n_bad > 0 and n_good > 0 else []
    if len(groups) >= 2:
        table = np.array([[b[grp].sum() for grp in groups], [g[grp].sum() for grp in groups]])
        p_value = _pearson(table)
    return LabelContrast(label, divergence, float(p_value), tuple(rows), n_bad, n_good, noise)


def rank_contrasts(contrasts: Sequence[LabelContrast]) -> tuple[LabelContrast, ...]:
    """Labels ranked by :attr:`LabelContrast.score` (largest first, NaN last), p-values
    Holm-adjusted across them."""
    tested = [c for c in contrasts if math.isfinite(c.p_value)]
    adjusted = dict(zip((c.label for c in tested), adjust_pvalues([c.p_value for c in tested], "holm"), strict=True))
    out = [
        LabelContrast(c.label, c.divergence, c.p_value, c.values, c.n_bad, c.n_good, c.noise,
                      float(adjusted.get(c.label, math.nan)))
        for c in contrasts
    ]
    return tuple(sorted(out, key=lambda c: (not math.isfinite(c.score), -(c.score if math.isfinite(c.score) else 0.0), c.label)))
