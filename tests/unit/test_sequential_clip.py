"""The level sequence's Huber clip of the after-rows (docs/statistics.md, "The Huber clip of the
after-rows").

Each after-row is clipped at ``HUBER_C`` standard deviations of its distance from the running
shift estimate under no change: ``sqrt(sd^2 + g_i^2 sigma^2 / V_(i-1))``, the row's own SD (``sd``:
one clipped row before the deploy, ``sigma / sqrt(memory)``) plus the estimate's variance, about
``HUBER_C sd sqrt(1 + memory / k)`` with ``k`` rows behind the estimate. The clip used to be
``HUBER_C s sqrt(memory)`` at every row: a spike late in the window counted for ``sqrt(memory)``
times more exactly where the noise is least trustworthy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzers.stats.noise import HUBER_C, robust_scale
from analyzers.stats.sequential_fit import fit_model

N_PRE, N_POST = 240, 30
MEMORY = 9.0


def _series(seed: int, spike_sd: float = 0.0, at: int = 20, shift_sd: float = 0.0) -> np.ndarray:
    """White noise (SD 1), a shift of ``shift_sd`` from the deploy on, one spike ``at`` rows after it."""
    w = np.random.default_rng(seed).normal(size=N_PRE + N_POST)
    w[N_PRE:] += shift_sd
    w[N_PRE + at] += spike_sd
    return w


def _fit(w: np.ndarray, memory: float):  # type: ignore[no-untyped-def]
    m = fit_model(w, np.arange(w.size), N_PRE, 0.0, False, memory, w.size)
    assert m is not None and m.s_raw is not None
    return m


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_late_spike_is_clipped_at_three_sds_of_its_distance_from_the_estimate(seed: int) -> None:
    """20 rows after the deploy the estimate has settled: a 25-SD spike there counts for about
    ``HUBER_C sqrt(1 + memory / 20)`` = 3.6 scales (memory 9), not ``HUBER_C sqrt(memory)`` = 9
    (the old clip, which fails this), and not 25 (unclipped)."""
    w, clean = _series(seed, spike_sd=25.0), _series(seed)
    s = robust_scale(w[:N_PRE] - np.median(w[:N_PRE]))
    m, m0 = _fit(w, MEMORY), _fit(clean, MEMORY)
    # the estimate after every row of the window moves by (row's change) / N_POST (level model,
    # phi 0): the spike's clipped row, in robust scales, against the clean row
    pull = (m.s[-1] / m.v[-1] - m0.s[-1] / m0.v[-1]) * N_POST / s
    derived = HUBER_C * math.sqrt(1.0 + MEMORY / 20.0)
    # tolerance 2 scales: the clean row's own value there and the estimate's (centre) noise
    assert derived - 2.0 < pull < derived + 2.0
    assert pull < HUBER_C * math.sqrt(MEMORY) - 3.0
    raw = (m.s_raw[-1] / m.v[-1] - m0.s_raw[-1] / m0.v[-1]) * N_POST
    assert raw == pytest.approx(25.0, rel=1e-6)


@pytest.mark.parametrize("memory", [1.0, MEMORY])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_persistent_shift_is_not_clipped_away_the_estimate_follows_it(seed: int, memory: float) -> None:
    """A 12-SD step at the deploy: the first rows are clipped around a centre that has not yet
    seen it, but the centre follows and the clip is widest while it rests on few rows, so after
    the window the clipped estimate is within 1.5 SD of the step (a fixed 3-SD clip around the
    level before would give 3)."""
    w = _series(seed, shift_sd=12.0)
    m = _fit(w, memory)
    assert m.s[-1] / m.v[-1] > 12.0 - 1.5
    assert m.s_raw[-1] / m.v[-1] == pytest.approx(12.0, abs=1.0)
    # the clipped estimate never runs ahead of the data: under the unclipped one at every row
    assert np.all(m.s / m.v <= m.s_raw / m.v + 1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_under_no_change_memory_widens_sigma_and_barely_moves_the_clipped_estimate(seed: int) -> None:
    """The memory factor is the level's low-frequency variance: it widens ``sigma`` (x3 for
    memory 9) and enters the clip only through the estimate's variance, so on white noise with
    no spike the clipped estimate moves by less than 0.05 SD when memory goes 1 -> 9."""
    w = _series(seed)
    m1, m9 = _fit(w, 1.0), _fit(w, MEMORY)
    assert m9.sigma == pytest.approx(3.0 * m1.sigma, rel=1e-9)
    assert abs(m9.s[-1] / m9.v[-1] - m1.s[-1] / m1.v[-1]) < 0.05
