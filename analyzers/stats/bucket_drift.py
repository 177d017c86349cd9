"""Is a change of the latency bucket mix larger than the mix's own drift before the deploy?

The G-test of :func:`analyzers.stats.buckets.compare_bucket_distributions` assumes every request
is an independent draw from one distribution. Real traffic breaks that: garbage-collection bursts
slow many requests at once, and the mix moves with the hour (traffic falls in the evening, and
latency with it). On 10^4-10^5 requests the plain test then rejects for every window pair, no-op
deploys included (the demo: p < 1e-10 for a 3 h window against the next 30 minutes).

This test measures that extra variation where it happens, before the deploy, and judges the after
window against it (quasi-likelihood, as for overdispersed counts):

* the before window is cut into ``m`` consecutive blocks as long as the after window;
* the dispersion ``phi`` is the mean G statistic per degree of freedom between *adjacent* blocks
  (successive differences, so a smooth traffic trend moves it only as much as it moves in one
  block's time, and bursts that come and go raise it), never below 1;
* the after window is compared with the last block (adjacent to it, so it too is one block's
  time away), and ``(G / dof) / phi`` is referred to ``F(dof, (m - 1) dof)``.

Assumes the mix moves between the after window and the block before it no more than between
adjacent blocks before the deploy when nothing changes. With independent requests ``phi`` is
about 1 and the test is the G-test on adjacent windows. A real change of the tail (a wider
latency distribution after the deploy) stays far beyond ``phi``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import fdtrc

from analyzers.stats.buckets import bucket_increments, g_test, pool_groups

__all__ = ["DriftComparison", "MIN_BLOCKS", "drift_adjusted_comparison", "seasonal_comparison"]

#: Fewest before-blocks (one adjacent pair) for a dispersion estimate.
MIN_BLOCKS = 2


@dataclass(frozen=True)
class DriftComparison:
    """``p_value``: the after window against the last before-block, with the G statistic divided
    by ``dispersion`` (NaN when fewer than two bucket groups hold requests)."""

    p_value: float
    statistic: float
    dof: int
    dispersion: float
    blocks: int
    n_last: float
    n_after: float
    method: str = "G-test against the bucket mix's drift between adjacent windows before the deploy"


def _table(les: Sequence[float], rows: Sequence[Sequence[float]], cumulative: bool) -> np.ndarray:
    """The windows' bucket counts as one table (windows x buckets, buckets in ``le`` order),
    per-bucket counts when ``cumulative``; refuses a window without requests."""
    order = np.argsort(np.asarray(les, dtype="float64"))
    arrays = [np.asarray(r, dtype="float64")[order] for r in rows]
    if cumulative:
        arrays = [bucket_increments(r) for r in arrays]
    table = np.nan_to_num(np.clip(np.vstack(arrays), 0, None))
    if (table.sum(axis=1) <= 0).any():
        raise ValueError("every window needs requests to compare latency distributions (a window has 0)")
    return table


def drift_adjusted_comparison(
    les: Sequence[float],
    blocks: Sequence[Sequence[float]],
    after: Sequence[float],
    *,
    cumulative: bool = True,
    min_expected: float = 5.0,
) -> DriftComparison:
    """The after window's bucket counts against the drift of ``blocks`` (see the module doc).

    ``blocks``: counts per ``le`` of consecutive windows before the deploy, oldest first, each as
    long as the after window; cumulative per ``le`` unless ``cumulative=False``. Raises ValueError
    with fewer than :data:`MIN_BLOCKS` blocks or a window without requests.
    """
    if len(blocks) < MIN_BLOCKS:
        raise ValueError(f"need at least {MIN_BLOCKS} windows before the deploy to measure the mix's drift, got {len(blocks)}")
    table = _table(les, (*blocks, after), cumulative)
    groups = pool_groups(table, min_expected)
    m = len(blocks)
    if len(groups) < 2:
        return DriftComparison(math.nan, 0.0, 0, math.nan, m, float(table[-2].sum()), float(table[-1].sum()))
    pooled = np.column_stack([table[:, g].sum(axis=1) for g in groups])
    dof = len(groups) - 1
    pairs = np.array([g_test(pooled[j:j + 2])[0] for j in range(m - 1)])
    stat = g_test(pooled[-2:])[0]
    # never below 1: _scaled_dispersion is 1 + kappa n with kappa, n >= 0
    dispersion = max(float(np.mean(pairs)) / dof, _scaled_dispersion(pooled, pairs / dof))
    p = float(fdtrc(dof, (m - 1) * dof, stat / dof / dispersion))
    return DriftComparison(p, float(stat), dof, dispersion, m, float(pooled[-2].sum()), float(pooled[-1].sum()))


def _pair_size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The requests a pair of windows compares (harmonic: ``n_a n_b / (n_a + n_b)``)."""
    return a * b / np.maximum(a + b, 1e-300)


def _scaled_dispersion(pooled: np.ndarray, per_dof: np.ndarray) -> float:
    """The adjacent pairs' dispersion scaled to the tested pair's size. A mix that moves by a
    fixed amount between windows (a latency wander, GC bursts) adds to ``G / dof`` in proportion
    to the requests compared: ``G / dof = 1 + kappa n``. ``kappa`` is fitted on the pairs before
    the deploy (ratio of sums) and applied to the last block and the after window, so windows at
    night (few requests) do not set the dispersion for a morning's after window (many). At least
    1: ``kappa`` is floored at 0 and the pair size is of non-negative counts (every G is finite:
    each window holds requests), so the dispersion needs no floor of its own."""
    n = pooled.sum(axis=1)
    sizes = _pair_size(n[:-2], n[1:-1])
    if sizes.size == 0 or sizes.sum() <= 0:
        return 1.0
    kappa = max(0.0, float(np.sum(per_dof - 1.0)) / float(sizes.sum()))
    return 1.0 + kappa * float(_pair_size(n[-2], n[-1]))


def _no_interaction_fit(table: np.ndarray, rounds: int = 100) -> np.ndarray:
    """Expected counts of a 2 x 2 x k table (day x window x bucket) without the three-way
    interaction: iterative proportional fitting of the three two-way margins."""
    fit = np.ones_like(table)
    for _ in range(rounds):
        for axis in (2, 1, 0):
            fit = fit * (table.sum(axis=axis, keepdims=True) / np.maximum(fit.sum(axis=axis, keepdims=True), 1e-300))
    return fit


def seasonal_comparison(
    les: Sequence[float],
    last: Sequence[float],
    after: Sequence[float],
    last_earlier: Sequence[float],
    after_earlier: Sequence[float],
    dispersion: float,
    blocks: int,
    *,
    cumulative: bool = True,
    min_expected: float = 5.0,
) -> float:
    """Did the mix move from the last block to the after window *differently* from how it moved
    over the same hours a day earlier? The G statistic of the three-way interaction (day x window
    x bucket; ``dof`` = groups - 1), divided by the before window's ``dispersion`` and referred to
    ``F(dof, (blocks - 1) dof)``. A traffic ramp or fall that happens every day moves the mix the
    same way both days. Returns the p-value (NaN when fewer than two groups hold requests).
    """
    table = _table(les, (last, after, last_earlier, after_earlier), cumulative)
    groups = pool_groups(table, min_expected)
    if len(groups) < 2:
        return math.nan
    pooled = np.column_stack([table[:, g].sum(axis=1) for g in groups]).reshape(2, 2, len(groups))
    fit = _no_interaction_fit(pooled)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = float(2.0 * np.where(pooled > 0, pooled * np.log(pooled / fit), 0.0).sum())
    dof = len(groups) - 1
    return float(fdtrc(dof, max(1, blocks - 1) * dof, max(stat, 0.0) / dof / max(dispersion, 1.0)))
