"""The noise model of ``verify_series``: AR(1) around a level (+ line), and its estimation.

Model and assumption (state it, test it): around the deploy, the (baseline-adjusted)
series is a level ``a`` (optionally plus a linear trend ``b t``) plus noise that is a
stationary **AR(1)** process, ``e_t = phi e_(t-1) + w_t``, with ``w_t`` independent
and possibly heavy-tailed. Every row is prewhitened with ``phi`` (handling gaps of
``k`` steps exactly, with ``phi**k``, :func:`ar1_transform`) and :func:`fit_null` fits the
level (+ line) by generalised least squares, leaving robust (Huber) residuals whose scores
:mod:`analyzers.stats.tests_` turns into p-values.

``phi`` is estimated on the days of history before the deploy when the caller passes
them (median of per-block estimates, see :func:`estimate_phi_history`; the verifier
passes 1-8 days), else on the pre-deploy window; either way bias-corrected (Kendall:
``+ (1 + 3 phi) / n``), raised by one standard error of that estimate (conservative)
and capped at ``PHI_MAX``. Where the assumption breaks (a random walk, long memory,
oscillating noise) the estimate tends towards the cap; above ``UNIT_ROOT_PHI`` the verifier
also runs the test under a random-walk model. Memory the AR(1) model misses (white noise on
a slow wander) is measured by :func:`residual_memory` on the same history blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from analyzers.stats._fast import median as _median
from analyzers.stats._fast import median_rows as _median_rows
from analyzers.stats._fast import nanmedian as _nanmedian

#: Upper cap on the AR(1) coefficient (0.99 ~ a 100-step memory).
PHI_MAX = 0.99
#: Standard errors added to the bias-corrected AR(1) estimate (conservative margin).
PHI_SE_MARGIN = 1.0
#: phi from history: blocks as long as the pre-deploy window, within these bounds (points) ...
PHI_BLOCK_MIN = 60
PHI_BLOCK_MAX = 360
#: ... at least this many usable blocks (else the window's own estimate), at most this many.
MIN_PHI_BLOCKS = 4
PHI_MAX_BLOCKS = 16
#: Above this AR(1) estimate, the level test must also reject under a random walk.
UNIT_ROOT_PHI = 0.9
#: Trend kept above this |z| (pre-deploy slope), dropped below NO_TREND_Z; both tried between.
TREND_Z = 2.5
NO_TREND_Z = 1.5
#: Huber clipping constant for prewhitened residuals, in robust scales.
HUBER_C = 3.0

#: 1.4826 * MAD estimates the standard deviation of Gaussian data.
MAD_SD = 1.4826


def robust_scales(x: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Each row's robust scale: ``1.4826 * median |x - centre|`` (``centre``: the row's median unless
    given), NaN ignored, the row's standard deviation where that is 0; a 1-D ``x`` is one row (a
    0-d result). The package's one MAD-based scale (:func:`robust_scale`, :func:`history_phi`, the
    placebos' local scales)."""
    if x.ndim == 1:  # one row: scalar reductions, a third of the row-wise ones' cost
        x = x[~np.isnan(x)]
        c1 = _median(x) if centre is None else float(centre)
        s1 = MAD_SD * _median(np.abs(x - c1))
        return np.asarray(s1 if s1 > 0 else np.std(x))
    full = not np.isnan(x).any()  # no NaN: the faster reductions give the same numbers
    med = _median_rows if full else (lambda a: np.nanmedian(a, axis=1))
    c = med(x) if centre is None else centre
    s = MAD_SD * med(np.abs(x - c[:, None]))
    zero = ~(s > 0)
    return np.where(zero, (np.std if full else np.nanstd)(x, axis=1), s) if zero.any() else s


def robust_scale(x: np.ndarray) -> float:
    """:func:`robust_scales` of the finite values of a 1-D array (0.0 with fewer than two)."""
    x = x[np.isfinite(x)]
    if x.size < 2:
        return 0.0
    return float(robust_scales(x))


def _phi_raw(e: np.ndarray) -> tuple[float, int]:
    """(Kendall bias-corrected lag-1 autocorrelation, number of lag pairs); (0, 0) if undefined."""
    e = np.asarray(e, dtype=float)
    s = robust_scale(e)
    if s <= 0:
        return 0.0, 0
    c = _nanmedian(e)
    z = np.clip(e - c, -3.5 * s, 3.5 * s)
    z = z - np.nanmean(z)
    ok = np.isfinite(z[1:]) & np.isfinite(z[:-1])
    n = int(ok.sum())
    if n < 5:
        return 0.0, 0
    num = float(np.sum(z[1:][ok] * z[:-1][ok]))
    den = float(np.nansum(z * z))
    if den <= 0:
        return 0.0, 0
    phi = num / den
    return phi + (1.0 + 3.0 * phi) / n, n


def _phi_se(phi: float, n: float) -> float:
    return float(np.sqrt(max(0.0, 1.0 - min(phi, 1.0) ** 2) / max(n, 1.0)))


def estimate_phi(e: np.ndarray) -> float:
    """Bias-corrected lag-1 autocorrelation of residuals ``e`` (NaN allowed), in [0, PHI_MAX].

    Values are winsorised at 3.5 robust scales first so a burst does not fake memory.
    Negative estimates are set to 0, which is conservative for tests of a mean.
    """
    phi, n = _phi_raw(e)
    if n == 0:
        return 0.0
    # Add one standard error: under-estimating memory is what makes such tests cry wolf.
    phi = phi + PHI_SE_MARGIN * _phi_se(phi, n)
    return float(min(max(phi, 0.0), PHI_MAX))


def _detrend(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    out = np.full_like(x, np.nan)
    if ok.sum() < 3:
        return out
    t = np.flatnonzero(ok).astype(float)
    coef = np.polyfit(t, x[ok], 1)
    out[ok] = x[ok] - np.polyval(coef, t)
    return out


@dataclass(frozen=True)
class PhiEstimate:
    """The AR(1) coefficient used by the level test and where it came from."""

    phi: float
    source: str  # "history" (median over blocks of the days before) or "window"
    blocks: int  # history blocks used (0 for "window")
    window_phi: float  # bias-corrected estimate on the pre-deploy window alone (no margin)


@dataclass(frozen=True)
class HistoryPhi:
    """Median of the per-block phi estimates over the history, and how many blocks."""

    median: float
    blocks: int
    length: int  # points per block
    #: The blocks de-trended by their lines and winsorised (NaN for gaps), for :func:`residual_memory`.
    resid: np.ndarray | None = field(default=None, compare=False, repr=False)


def block_length(window_points: int) -> int:
    """History blocks are as long as the pre-deploy window, within the configured bounds."""
    return int(min(max(window_points, PHI_BLOCK_MIN), PHI_BLOCK_MAX))  # scalar: np.clip costs ~20 us


def history_phi(history: np.ndarray, length: int) -> HistoryPhi | None:
    """Per-block phi on the history (vectorised over blocks); None with too few usable blocks.

    Each block of ``length`` points (the most recent ``PHI_MAX_BLOCKS`` usable ones) is
    de-trended by its own least-squares line, winsorised at 3.5 robust scales, and its
    lag-1 autocorrelation bias-corrected (Kendall ``(1 + 3 phi) / n``, plus
    ``(1 + 2 phi) / n`` for the fitted line). Blocks with under 60 % of their points are skipped.
    """
    h = np.asarray(history, dtype=float)
    k = h.size // length
    if k < MIN_PHI_BLOCKS:
        return None
    b = h[h.size - k * length :].reshape(k, length)
    w = np.isfinite(b)
    cnt = w.sum(axis=1)
    good = cnt >= 0.6 * length
    if good.sum() < MIN_PHI_BLOCKS:
        return None
    b, w, cnt = b[good], w[good], cnt[good].astype(float)
    t = np.arange(length, dtype=float)
    bz = np.where(w, b, 0.0)
    st, stt = w @ t, w @ (t * t)
    sy, sty = bz.sum(axis=1), bz @ t
    den_t = cnt * stt - st * st
    slope = np.where(den_t > 0, (cnt * sty - st * sy) / np.where(den_t > 0, den_t, 1.0), 0.0)
    icpt = (sy - slope * st) / cnt
    e = np.where(w, b - icpt[:, None] - slope[:, None] * t, np.nan)
    full = bool(w.all())  # no gaps: the plain (faster) reductions give the same numbers
    mean = np.mean if full else np.nanmean

    c = _median_rows(e) if full else np.nanmedian(e, axis=1)
    s = robust_scales(e, c)
    z = np.clip(e - c[:, None], -3.5 * s[:, None], 3.5 * s[:, None])
    z = z - mean(z, axis=1)[:, None]
    ok = np.isfinite(z[:, 1:]) & np.isfinite(z[:, :-1])
    n = ok.sum(axis=1).astype(float)
    num = np.where(ok, z[:, 1:] * z[:, :-1], 0.0).sum(axis=1)
    den = (np.sum if full else np.nansum)(z * z, axis=1)  # no NaN when full: the same sum
    use = (s > 0) & (den > 0) & (n >= 0.5 * length)
    if use.sum() < MIN_PHI_BLOCKS:
        return None
    phi = num[use] / den[use]
    n = n[use]
    phi = phi + (1.0 + 3.0 * phi) / n
    # Kendall's correction assumes a known slope; a fitted line costs about (1 + 2 phi) / n more.
    phi = phi + (1.0 + 2.0 * np.maximum(phi, 0.0)) / n
    phi = phi[-PHI_MAX_BLOCKS:]  # the most recent blocks
    return HistoryPhi(_median(phi), int(phi.size), length, z[use][-PHI_MAX_BLOCKS:])


#: residual_memory: sub-blocks needed in all, and the cap on the factor.
MEMORY_MIN_SUBBLOCKS = 16
MEMORY_MAX = 25.0
#: ... sub-blocks are at most this fraction of a block, and the factor is raised by this many
#: standard errors of its estimate (conservative, as phi is).
MEMORY_SUBBLOCK_DIV = 4
MEMORY_SE_MARGIN = 0.0


def residual_memory(hist: HistoryPhi | None, phi: float, span: int) -> float:
    """How much more a sum of ``span`` prewhitened residuals varies than white noise would (>= 1).

    The level test prewhitens with one AR(1) coefficient. Real noise is often white
    measurement noise on top of a slow wander (an ARMA(1,1)): lag 1 then shows a small phi,
    the wander survives the prewhitening, and the test, blind to it, cries wolf (7-24 % of
    such no-op series at alpha 0.01, the ``wander`` null family). This is the prewhitened
    long-run-variance correction of Andrews and Monahan (1992) in block form: each history
    block is centred on its own mean (not de-trended: a line would absorb the wander),
    winsorised, prewhitened with the same phi and cut into sub-blocks of ``span`` points (at
    most a quarter of a block); the factor is the sum of the squared sub-block sums over the
    sum of the squared residuals, 1 for white residuals, raised by ``MEMORY_SE_MARGIN``
    standard errors of that ratio as phi is. The level scores are divided by its square root
    and the effect interval widened by it. 1.0 without enough history.
    """
    if hist is None or hist.resid is None or phi >= 1.0:
        return 1.0
    z = hist.resid  # each block less its own line (a daily ramp is not memory), winsorised
    w = z[:, 1:] - phi * z[:, :-1]
    length = w.shape[1]
    size = max(2, min(int(span), length // MEMORY_SUBBLOCK_DIV))
    k = length // size
    if k * w.shape[0] < MEMORY_MIN_SUBBLOCKS:
        return 1.0
    lo = length - k * size
    sub = w[:, lo:].reshape(w.shape[0], k, size)
    ok = np.isfinite(sub)
    sums = np.where(ok, sub, 0.0).sum(axis=2)
    den_b = np.sum(np.where(ok, sub * sub, 0.0), axis=(1, 2))
    use = den_b > 0
    if not use.any():
        return 1.0
    # Pooled sums (efficient when the noise level is the same in every block) and the mean of the
    # blocks' own ratios (when it is not: a p99 in a wide bucket is several times noisier, and the
    # pooled sums let the noisiest blocks set the ratio); the larger: it only takes decisions away.
    ss = np.sum(sums * sums, axis=1)
    f = max(float(np.sum(ss)) / float(np.sum(den_b)), float(np.mean(ss[use] / den_b[use]))) / _white_after_line(length, size)
    f *= 1.0 + MEMORY_SE_MARGIN * math.sqrt(2.0 / sums.size)
    return float(min(max(f, 1.0), MEMORY_MAX))


@lru_cache(maxsize=32)
def _white_after_line(length: int, size: int) -> float:
    """What taking a block's least-squares line out leaves of white residuals in sub-block sums,
    relative to single points (a line spans few sub-blocks, so they lose more):
    :func:`residual_memory` divides by it."""
    t = np.arange(length, dtype=float)
    x = np.stack([np.ones(length), t - t.mean()], axis=1)
    proj = np.eye(length) - x @ np.linalg.solve(x.T @ x, x.T)
    k = length // size
    lo = length - k * size
    agg = np.zeros((k, length))
    for j in range(k):
        agg[j, lo + j * size : lo + (j + 1) * size] = 1.0
    return float(np.trace(agg @ proj @ agg.T)) / float(np.trace(proj[lo:, lo:]))


def estimate_phi_history(window_pre: np.ndarray, hist: HistoryPhi | None) -> PhiEstimate:
    """phi for the level test, from the history before the window when there is enough of it.

    ``window_pre`` is the (baseline-adjusted, de-trended) pre-deploy window; ``hist`` the
    result of :func:`history_phi` on the raw series before the deploy (NaN for gaps), as
    long as the caller passed (the verifier passes 1-8 days). The history is cut into
    blocks as long as the window, each de-trended by a straight line (the test's own
    nuisance model, so slow cycles and drift do not read as memory); phi is the
    **median** of the per-block bias-corrected estimates (a block holding a step or an
    incident cannot drag it), raised by one standard error of that median
    (``1.25 * SE / sqrt(blocks)``, a third of the window's own SE with 9 blocks).
    Assumption: the noise memory is stable over the history; when the window's own
    estimate exceeds that by more than two of its standard errors, the window is trusted
    instead (memory changed; the old conservative window estimate). With fewer than
    ``MIN_PHI_BLOCKS`` usable blocks the window estimate is used. The ACF of
    ``y(t) - y(t - day)`` equals that of ``y`` when the memory is much shorter than a
    day, so the raw history also serves lagged (seasonal) baselines.
    """
    w_phi, w_n = _phi_raw(window_pre)
    win = float(min(max(w_phi + PHI_SE_MARGIN * _phi_se(w_phi, w_n), 0.0), PHI_MAX)) if w_n else 0.0
    if hist is None or w_n == 0:
        return PhiEstimate(win, "window", 0, float(max(w_phi, 0.0)))
    med = hist.median
    phi = med + PHI_SE_MARGIN * 1.2533 * _phi_se(med, hist.length) / np.sqrt(hist.blocks)
    phi = float(min(max(phi, 0.0), PHI_MAX))
    if w_phi > phi + 2.0 * _phi_se(w_phi, w_n):
        return PhiEstimate(max(win, phi), "window", 0, float(max(w_phi, 0.0)))
    return PhiEstimate(phi, "history", hist.blocks, float(max(w_phi, 0.0)))


_GAP_LAST: tuple[np.ndarray, float, np.ndarray, np.ndarray] | None = None


def _ar1_gap_factors(tpos: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """``phi**k`` and ``sqrt((1 - phi**(2k)) / (1 - phi**2))`` for the gaps ``k`` of ``tpos``.

    One verification prewhitens many designs on the same rows with the same phi: the last
    answer is kept (for the very same ``tpos`` array, which the cache holds alive, so an
    identity check is safe; one tuple read once, so threads cannot mix entries). The powers
    come from tables indexed by the gap, the same numbers as ``phi ** k`` elementwise.
    """
    global _GAP_LAST
    last = _GAP_LAST
    if last is not None and last[0] is tpos and last[1] == phi:
        return last[2], last[3]
    gaps = np.diff(tpos)
    if gaps.size and np.issubdtype(gaps.dtype, np.integer) and gaps.min() >= 0:
        kmax = int(gaps.max())
        a = (phi ** np.arange(kmax + 1, dtype=float))[gaps]
        p2 = (phi ** (2 * np.arange(kmax + 1, dtype=float)))[gaps]
    else:
        k = gaps.astype(float)
        a, p2 = phi**k, phi ** (2 * k)
    s = np.sqrt((1.0 - p2) / (1.0 - phi * phi))
    _GAP_LAST = (tpos, phi, a, s)
    return a, s


def ar1_transform(tpos: np.ndarray, m: np.ndarray, phi: float) -> np.ndarray:
    """Prewhiten rows observed at integer positions ``tpos`` (gaps allowed).

    Row i becomes ``(m_i - phi**k m_(i-1)) / sqrt((1 - phi**(2k)) / (1 - phi**2))`` for a
    gap of k steps; the first row is scaled by ``sqrt(1 - phi**2)``. Under AR(1) noise
    every output row has the innovation variance and rows are independent.
    """
    m = np.asarray(m, dtype=float)
    out = np.empty_like(m)
    if phi <= 0:
        return m.copy()
    if phi >= 1.0:  # random walk: differences scaled by the gap, first row carries nothing
        k = np.diff(tpos).astype(float)
        out[0] = 0.0
        if m.ndim == 1:
            out[1:] = (m[1:] - m[:-1]) / np.sqrt(k)
        else:
            out[1:] = (m[1:] - m[:-1]) / np.sqrt(k)[:, None]
        return out
    a, s = _ar1_gap_factors(tpos, phi)
    out[0] = m[0] * np.sqrt(1.0 - phi * phi)
    if m.ndim == 1:
        out[1:] = (m[1:] - a * m[:-1]) / s
    else:
        out[1:] = (m[1:] - a[:, None] * m[:-1]) / s[:, None]
    return out


@dataclass(frozen=True)
class NullFit:
    """The no-change model fitted on one window, ready to score candidate shapes."""

    tpos: np.ndarray  # positions (within the window) of the finite observations
    phi: float
    q: np.ndarray  # orthonormal basis of the prewhitened nuisance design
    psi: np.ndarray  # Huber psi of the prewhitened residuals (centred on the pre part)
    epsi2: float  # E[psi^2], estimated on the pre-deploy rows
    scale: float  # robust innovation scale
    resid: np.ndarray  # prewhitened residuals
    pre_rows: np.ndarray  # boolean mask of rows before the deploy
    trend: bool
    weights: np.ndarray  # row weights after prewhitening (1, or 1/spread ratio after the deploy)

    def scores(self, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Robust score z-statistics for each column of ``shapes`` (rows = window positions).

        Returns the statistics and the normalised residualised regressors (for correlations).
        """
        g = ar1_transform(self.tpos, shapes[self.tpos], self.phi) * self.weights[:, None]
        h = g - self.q @ (self.q.T @ g)
        norm = np.sqrt(np.sum(h * h, axis=0))
        norm = np.where(norm > 0, norm, np.inf)
        t = (h.T @ self.psi) / (np.sqrt(self.epsi2) * norm)
        return t, h / norm


def fit_null(
    r: np.ndarray, deploy: int, trend: bool | None, phi: float, post_scale: float = 1.0
) -> NullFit | None:
    """Fit level (+ trend) under AR(1) noise on window ``r``; ``deploy`` indexes its first post point.

    ``trend=None`` decides by a robust score test of a slope on the pre-deploy rows
    (kept when |z| > ``TREND_Z``); see :func:`slope_z` for the ambiguous middle. ``phi >= 1`` fits a random walk (differences, with a drift).
    ``post_scale`` down-weights rows after the deploy when their spread grew (a weighted
    test, so a pure spread change is not read as a level change). Returns None when the
    pre part has no spread at all.
    """
    tpos = np.flatnonzero(np.isfinite(r))
    y = r[tpos]
    pre_rows = tpos < deploy
    t = (tpos - deploy).astype(float) / max(1.0, float(deploy))
    x = np.column_stack([np.ones_like(t), t])
    w = np.where(pre_rows, 1.0, 1.0 / max(post_scale, 1e-9))
    xt = ar1_transform(tpos, x, phi) * w[:, None]
    yt = ar1_transform(tpos, y, phi) * w
    if phi >= 1.0:
        trend = True
        cols = xt[:, 1:2]
    else:
        if trend is None:
            trend = _slope_z(xt[pre_rows], yt[pre_rows]) > TREND_Z
        cols = xt if trend else xt[:, :1]
    q, _ = np.linalg.qr(cols)
    resid = yt - q @ (q.T @ yt)
    pre_res = resid[pre_rows]
    scale = robust_scale(pre_res)
    if scale <= 0:
        return None
    centre = _median(pre_res)
    psi = np.clip((resid - centre) / scale, -HUBER_C, HUBER_C)
    psi = psi - float(np.mean(psi[pre_rows]))
    epsi2 = float(np.mean(psi[pre_rows] ** 2))
    if epsi2 <= 0:
        return None
    return NullFit(tpos, phi, q, psi, epsi2, scale, resid, pre_rows, bool(trend), w)


def slope_z(r: np.ndarray, deploy: int, phi: float) -> float:
    """|z| of a linear trend on the pre-deploy part of ``r`` under AR(1) noise.

    ``verify_series`` keeps a trend above ``TREND_Z``, drops it below ``NO_TREND_Z``, and
    in between requires the change to be significant both with and without it.
    """
    pre = r[:deploy]
    tpos = np.flatnonzero(np.isfinite(pre))
    if tpos.size < 6:
        return 0.0
    t = (tpos - deploy).astype(float) / max(1.0, float(deploy))
    x = np.column_stack([np.ones_like(t), t])
    return _slope_z(ar1_transform(tpos, x, phi), ar1_transform(tpos, pre[tpos], phi))


def _slope_z(xt: np.ndarray, yt: np.ndarray) -> float:
    if xt.shape[0] < 6:
        return 0.0
    q, _ = np.linalg.qr(xt[:, :1])
    res = yt - q @ (q.T @ yt)
    h = xt[:, 1] - q @ (q.T @ xt[:, 1])
    s = robust_scale(res)
    hn = float(np.sqrt(h @ h))
    if s <= 0 or hn <= 0:
        return 0.0
    psi = np.clip((res - _median(res)) / s, -HUBER_C, HUBER_C)
    e2 = float(np.mean(psi * psi))
    return abs(float(h @ psi)) / (np.sqrt(e2) * hn) if e2 > 0 else 0.0


#: An earlier change point is cut off when its own step z-score exceeds this ...
EARLIER_CHANGE_Z = 4.5
#: ... and its z-score once a straight-line trend is allowed must exceed this.
EARLIER_CHANGE_TREND_Z = 3.0


def earlier_steps(nf: NullFit, nf_trend: NullFit, n: int, cps: list[int], hist: HistoryPhi | None = None) -> list[int]:
    """The change points among ``cps`` (positions in a window of ``n`` rows) that are steps,
    not drift: significant alone and still clear of a straight line (``verify_series`` and the
    sequential path cut the history after the last of them).

    ``hist`` (the history's blocks, pass it when the window's baseline is its own level): each
    score is divided by the square root of :func:`residual_memory` over the rows after its
    change point, as the deploy's own level test is. Without it, a slow wander the deploy test
    rightly leaves alone (white noise on a 10-minute AR(1) latency wander: a p99 line up 20 % for
    the last quarter hour) reads as a step minutes before the deploy, and the deploy comes out
    inconclusive for want of stable history.
    """
    shapes = np.zeros((n, len(cps)))
    for j, c in enumerate(cps):
        shapes[c:, j] = 1.0
    tz, _ = nf.scores(shapes)
    tz_trend, _ = nf_trend.scores(shapes)
    root = np.sqrt([residual_memory(hist, nf.phi, n - c) for c in cps]) if hist is not None else np.ones(len(cps))
    return [c for c, z, zt, m in zip(cps, tz, tz_trend, root, strict=True)
            if abs(z) / m > EARLIER_CHANGE_Z and abs(zt) / m > EARLIER_CHANGE_TREND_Z]
