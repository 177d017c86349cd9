"""In-time placebos: how much the verifier's own shift estimate varies at times nothing happened.

The level sequence's variance comes from a model: AR(1) noise with the residual-memory factor
(:func:`analyzers.stats.noise.residual_memory`). A wander at the window's own scale that the
model misses (the demo's latency: a 10-minute AR(1) on log latency under white sampling noise,
which moves a 30-minute mean against a 3-hour mean by more than the model allows) is read as a
shift at the deploy. So the model's variance is checked against the data: the **exact
statistic** the verifier forms at the horizon (the unclipped GLS shift estimate: the weights
``c`` of :func:`analyzers.stats.sequential_fit.horizon_weights`, a linear form over the planned
rows: after-window mean against the before-window level, after the same prewhitening, nuisance
fit and first-row weight) is slid over the history before the deploy, one placebo "deploy" per
step. Their robust spread (``1.4826 * median |estimate|``: centred on zero, since an estimate
that is off in history is off at the deploy too, and robust, since an earlier deploy or incident
in history moves the placebos around it) is the placebo variance; the sequence's ``sigma`` is
scaled by ``sqrt(max(1, placebo variance / model variance))``, so every bound, the interval
shown and the decision move together.

Assumptions: the wander in the history is like the wander in the window (what this cannot see:
noise that grows only after the deploy); the baseline is the series' own level (``pre-window``:
the placebo residual is the raw series; for lagged or shape baselines the raw history still
holds the cycle the baseline takes out, so their placebos would measure the cycle, and the
model variance is kept). Overlapping placebos are dependent: two placebos whose after-blocks do
not overlap are nearly independent, so ``placebos / after-rows`` is taken as the effective number
of them, and with fewer than ``MIN_EFFECTIVE`` the model variance is kept.
"""

from __future__ import annotations

import math

import numpy as np

from analyzers.stats.baselines import smooth_local_linear
from analyzers.stats.noise import ar1_transform, robust_scales

#: Placebos come from at most this much history before the deploy (seconds): recent wander.
HISTORY_S = 86400.0
#: The history's slow part (a daily cycle's bend, which no line over the window follows) is taken
#: out first: a local-linear Gaussian smoother of this SD (seconds). Its residual keeps the wander
#: at the window's scale (periods under 2 hours pass almost whole).
SMOOTH_S = 3600.0
#: Fewer effective (after-block-disjoint) placebos than this: keep the model variance.
MIN_EFFECTIVE = 8
#: Placebos one ``n_after // STRIDE_DIV`` rows apart (closer ones add almost nothing: they share
#: nearly all their rows).
STRIDE_DIV = 3
#: Standard errors of the placebo variance by which it must exceed the model's to count.
SE_MARGIN = 1.0
#: Upper bound on the variance factor (a history full of incidents must not blind the test).
MAX_FACTOR = 16.0


def _whitened(x: np.ndarray, plan: np.ndarray, phi: float, n_pre: int,
              nuisance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``x`` (rows: ``plan``) prewhitened with ``phi`` (gaps bridged with ``phi**k``, as
    the verifier does), less the nuisance fit on the first ``n_pre`` rows; and each column's robust
    scale there (the local white-noise level the estimate is measured against)."""
    u = ar1_transform(plan, x, phi)
    first = 1 if phi >= 1.0 else 0  # a random walk's first row carries nothing
    xn = nuisance[: u.shape[0]]
    if xn.shape[1]:
        u = u - xn @ (np.linalg.pinv(xn[first:n_pre]) @ u[first:n_pre])
    ref = u[first:n_pre]
    return u, robust_scales(ref.T)


def placebo_estimates(history: np.ndarray, plan: np.ndarray, contrast: np.ndarray, phi: float, n_pre: int,
                      nuisance: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The horizon's unclipped estimate ``contrast @ u`` at placebo positions of ``history`` (every
    ``stride``-th position whose planned rows are all present), and each placebo's robust scale of
    its prewhitened rows before its "deploy" (see :func:`_whitened`)."""
    span = int(plan[-1] - plan[0]) + 1
    h = np.asarray(history, dtype=float)
    if h.size < span:
        return np.zeros(0), np.zeros(0)
    x = np.lib.stride_tricks.sliding_window_view(h, span)[::max(1, stride)][:, plan - plan[0]]
    x = x[np.isfinite(x).all(axis=1)]
    if not x.shape[0]:
        return np.zeros(0), np.zeros(0)
    u, scale = _whitened(x.T, plan, phi, n_pre, nuisance)
    return contrast @ u, scale


def _high_pass_share(plan: np.ndarray, contrast: np.ndarray, phi: float, step_s: float) -> float:
    """The share of the estimate's variance under the model's AR(1) noise that the high pass keeps
    (the smoother takes some of the after-window's mean with it): the placebo variance is divided
    by it. Computed with the smoother's equivalent kernel (a Gaussian) away from the edges."""
    span = int(plan[-1] - plan[0]) + 1
    c = np.zeros(span)
    c[plan - plan[0]] = _pull_back(plan, contrast, min(phi, 0.999))
    sd = SMOOTH_S / step_s
    half = int(math.ceil(3 * sd))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sd) ** 2)
    k /= k.sum()
    full = np.concatenate([np.zeros(half), c, np.zeros(half)])
    d = full - np.convolve(full, k, mode="same")
    r = min(phi, 0.999) ** np.arange(full.size)  # AR(1) autocorrelation by lag
    raw = _quadratic(full, r)
    return float(min(1.0, max(0.05, _quadratic(d, r) / raw))) if raw > 0 else 1.0


def _pull_back(plan: np.ndarray, q: np.ndarray, phi: float) -> np.ndarray:
    """``P' q``: the raw-domain weights of the contrast ``q`` on prewhitened rows (``P``: the
    AR(1) prewhitening of :func:`analyzers.stats.noise.ar1_transform`, gaps bridged with ``phi**k``)."""
    k = np.diff(plan).astype(float)
    a = phi ** k
    s = np.sqrt((1.0 - phi ** (2 * k)) / (1.0 - phi * phi))
    c = np.zeros(plan.size)
    c[0] = q[0] * math.sqrt(1.0 - phi * phi)
    c[1:] += q[1:] / s
    c[:-1] -= a * q[1:] / s
    return c


def _quadratic(x: np.ndarray, r: np.ndarray) -> float:
    """``x' R x`` for the Toeplitz matrix ``R`` with first row ``r``, from ``x``'s autocorrelation."""
    acf = np.correlate(x, x, mode="full")[x.size - 1:]
    return float(acf[0] * r[0] + 2.0 * np.dot(acf[1:], r[1:]))


def high_pass(history: np.ndarray, step_s: float) -> np.ndarray:
    """``history`` less its local-linear smooth (``SMOOTH_S``): what the placebos slide over."""
    h = np.asarray(history, dtype=float)
    if h.size < 10:
        return h
    return h - smooth_local_linear(h, SMOOTH_S / step_s)


def placebo_factor(history: np.ndarray, window_pre: np.ndarray, plan: np.ndarray | None,
                   contrast: np.ndarray | None, phi: float, n_pre: int, nuisance: np.ndarray | None,
                   model_var: float, n_after: int, step_s: float = 60.0) -> tuple[float, int]:
    """(variance factor >= 1, effective placebos) for one level model.

    ``history``: the residual series before the deploy (the placebos' rows all lie before it);
    ``window_pre``: the analysis window's rows before the deploy (``plan[:n_pre]``), whose local
    noise level the placebos' spread is scaled to (each placebo is measured in its own local scale
    first, so a day whose noise grows with its level, as a latency's does, is not read as wander);
    ``model_var``: the model's variance of the horizon estimate (``sigma**2 / V_max``);
    ``n_after``: planned rows after the deploy (the spacing that makes two placebos nearly
    independent). Factor 1 (the model) with fewer than ``MIN_EFFECTIVE`` effective placebos.
    """
    if plan is None or contrast is None or nuisance is None or plan.size < 2 or not np.isfinite(model_var) \
            or model_var <= 0 or not np.isfinite(window_pre).all():
        return 1.0, 0
    stride = max(1, n_after // STRIDE_DIV)
    est, scale = placebo_estimates(history, plan, contrast, phi, n_pre, nuisance, stride)
    ok = scale > 0
    est, scale = est[ok], scale[ok]
    n_eff = int(est.size * stride // max(1, n_after))
    if n_eff < MIN_EFFECTIVE:
        return 1.0, n_eff
    _, own = _whitened(np.asarray(window_pre, dtype=float)[:, None], plan[:n_pre], phi, n_pre, nuisance)
    sd = 1.4826 * float(np.median(np.abs(est / scale))) * float(own[0])
    sd = sd / math.sqrt(_high_pass_share(plan, contrast, phi, step_s))
    # Shrunk towards the model by one standard error of a MAD-based variance from n_eff placebos
    # (about 1.65 / sqrt(n_eff) relative): noise in the estimate alone must not cost power.
    f = sd * sd / model_var / (1.0 + SE_MARGIN * 1.65 / math.sqrt(n_eff))
    return float(min(max(1.0, f), MAX_FACTOR)), n_eff
