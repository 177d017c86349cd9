"""The level model of the sequential verdict (:mod:`analyzers.stats.sequential`): one nuisance
model's prewhitened design, its Huber-clipped score of the shift and its information, after every
row after the deploy, and the information the planned window would give at its horizon."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analyzers.stats.noise import HUBER_C, UNIT_ROOT_PHI, ar1_transform, robust_scale

#: Clip (robust scales) of the first after-row, where a jump at the deploy shows (see fit_model).
JUMP_C = 6.0


@dataclass(frozen=True)
class LevelModel:
    """One nuisance model's sequence: per after-row cumulative sums (see the module doc)."""

    s: np.ndarray  # score of the shift, nuisance (level, line) fitted on every row so far
    v: np.ndarray  # its information (intrinsic time): sum g_i^2 less what the nuisance fit takes
    sigma: float  # innovation sd (after memory)
    name: str
    v_max: float = math.inf  # information at the horizon if every planned row arrives (an upper bound)
    s_raw: np.ndarray | None = None  # the same score without clipping: s_raw / v estimates the mean shift
    #: The horizon's estimate as a contrast of the prewhitened rows at ``plan`` (positions in the
    #: window: the rows before the deploy that are there and every planned row after the first
    #: after-row), :func:`horizon_contrast`. Positions and ``phi`` only; :mod:`analyzers.stats.placebo`
    #: slides it over the history before the deploy.
    plan: np.ndarray | None = None
    weights: np.ndarray | None = None
    phi: float = 0.0
    n_pre: int = 0
    nuisance: np.ndarray | None = None  # the prewhitened nuisance columns at ``plan``
    #: Variance factor of the unclipped estimate from in-time placebos (>= 1; 1: the model's).
    wander: float = 1.0


def _design(tpos: np.ndarray, dloc: int, phi: float, trend: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prewhitened nuisance columns (level, line) and shift column at rows ``tpos``, and which
    rows fit the nuisance (before the deploy). Depends on the positions only, never on values."""
    xt = ar1_transform(tpos, _columns(tpos, dloc, trend), phi)
    gt = ar1_transform(tpos, (tpos >= dloc).astype(float), phi)
    pre = tpos < dloc
    if phi >= 1.0:  # random walk: the level column vanishes; keep the drift column only
        xt = xt[:, 1:] if xt.shape[1] > 1 else np.zeros((xt.shape[0], 0))
        pre = pre & (np.arange(tpos.size) > 0)
    return xt, gt, pre


def _columns(tpos: np.ndarray, dloc: int, trend: bool) -> np.ndarray:
    t = (tpos - dloc).astype(float) / max(1.0, float(dloc))
    return np.column_stack([np.ones_like(t), t]) if trend else np.ones((t.size, 1))


def _gap_predictions(w: np.ndarray, pre_pos: np.ndarray, x_raw: np.ndarray, coef: np.ndarray, phi: float,
                     gap: int) -> np.ndarray:
    """The prewhitened predictions across ``gap`` steps made before the deploy (in the first
    after-row's units): what the first after-row's spread really is, where AR(1) would say ``sigma``."""
    u = np.full(int(pre_pos[-1]) + 1 if pre_pos.size else 0, np.nan)
    if u.size <= gap + 10:
        return np.zeros(0)
    xr = x_raw[: pre_pos.size]
    full = np.concatenate([np.zeros(xr.shape[1] - coef.size), coef])  # random walk: no level column
    u[pre_pos] = w[pre_pos] - xr @ full
    if phi >= 1.0:
        r = (u[gap:] - u[:-gap]) / math.sqrt(gap)
    else:
        r = (u[gap:] - phi ** gap * u[:-gap]) / math.sqrt((1.0 - phi ** (2 * gap)) / (1.0 - phi * phi))
    r = r[np.isfinite(r)]
    if r.size < 10:
        return np.zeros(0)
    return r - np.median(r) if phi >= 1.0 else r  # a random walk's drift is not spread


def _rms(r: np.ndarray, clip: float) -> float:
    return float(np.sqrt(np.mean(np.clip(r, -clip, clip) ** 2))) if r.size else 0.0


def _information(xp: np.ndarray, xa: np.ndarray, ga: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The shift's information after each after-row, nuisance fitted on every row so far, and
    the solved cross terms the score needs (None without nuisance columns)."""
    gg = np.cumsum(ga * ga)
    if not xp.shape[1]:
        return gg, None
    xtx = xp.T @ xp + np.cumsum(xa[:, :, None] * xa[:, None, :], axis=0)
    c = np.cumsum(xa * ga[:, None], axis=0)
    inv_c = np.linalg.solve(xtx, c[:, :, None])[:, :, 0]
    return gg - np.einsum("ij,ij->i", c, inv_c), inv_c


def _final_information(xp: np.ndarray, xa: np.ndarray, ga: np.ndarray) -> float:
    """:func:`_information` after the last row only (no running sums)."""
    gg = float(ga @ ga)
    if not xp.shape[1]:
        return gg
    c = xa.T @ ga
    return gg - float(c @ np.linalg.solve(xp.T @ xp + xa.T @ xa, c))


def fit_model(w: np.ndarray, tpos: np.ndarray, dloc: int, phi: float, trend: bool, memory: float,
               n_rows: int) -> LevelModel | None:
    y = w[tpos]
    xt, gt, pre = _design(tpos, dloc, phi, trend)
    x_raw = _columns(tpos, dloc, trend)
    yt = ar1_transform(tpos, y, phi)
    xp, yp = xt[pre], yt[pre]
    if xp.shape[1]:
        xtx = xp.T @ xp
        if np.linalg.cond(xtx) > 1e12:
            return None
        coef = np.linalg.solve(xtx, xp.T @ yp)
        res = yp - xp @ coef
    else:
        coef = np.zeros(0)
        res = yp.copy()
        xtx = np.zeros((0, 0))
    s = robust_scale(res)
    if s <= 0:
        return None
    # Huber steps: move the coefficients by the least-squares fit of the clipped residuals
    for _ in range(2 if xp.shape[1] else 0):
        coef = coef + np.linalg.solve(xtx, xp.T @ np.clip(res, -HUBER_C * s, HUBER_C * s))
        res = yp - xp @ coef
    res_c = np.clip(res, -HUBER_C * s, HUBER_C * s)
    p = xp.shape[1]
    sigma = float(np.sqrt(np.sum(res_c ** 2) / max(1, res_c.size - p) * memory))
    post = tpos >= dloc
    xa, ya, ga = xt[post].copy(), yt[post].copy(), gt[post].copy()
    clip = np.full(ya.size, HUBER_C * s * math.sqrt(memory))
    w_first = 1.0
    if ya.size:
        # The first row after the deploy (or after the allowance) predicts across the gap: with phi
        # near 1 it carries the jump, the only evidence (later rows weigh 1 - phi), so it is clipped
        # at JUMP_C scales, not HUBER_C. Its weight makes its variance sigma^2 (weighted rows: still
        # a martingale): the spread of the rows before clipped there, and of the same-gap
        # predictions before the deploy, which catch memory AR(1) does not (smoothed rates).
        gap = int(tpos[post][0] - tpos[~post][-1])
        r_gap = _gap_predictions(w, tpos[~post], x_raw, coef, phi, gap)
        if phi > UNIT_ROOT_PHI:
            # clipped at JUMP_C of its own scale: the same-gap predictions' when they spread wider
            # than one step (a smoothed rate), so a near-random walk's swing is not a jump
            clip[0] = JUMP_C * max(s * math.sqrt(memory), robust_scale(r_gap) if r_gap.size else 0.0)
            spread = float(np.sqrt(np.sum(np.clip(res, -clip[0], clip[0]) ** 2) / max(1, res.size - p) * memory))
        else:
            spread = sigma
        spread = max(spread, _rms(r_gap, clip[0]))
        w_first = min(1.0, sigma / spread) if spread > 0 else 1.0
        xa[0], ya[0], ga[0] = xa[0] * w_first, ya[0] * w_first, ga[0] * w_first
        clip[0] *= w_first
        # later rows: three SDs of their distance from the running estimate (sigma / sqrt(memory):
        # the SD of one clipped row before the deploy; sigma^2 / V: the estimate's variance)
        clip[1:] = after_clip(ga, sigma / math.sqrt(memory), sigma)[1:]
    ra = ya - (xa @ coef if p else 0.0)
    # Huber-clipped rows, before (around the fit) and after (around the shift the earlier rows
    # suggest: predictable, so under no change the clipped rows stay martingale differences).
    ya_c = (xa @ coef if p else 0.0) + _clip_predictable(ra, ga, clip)
    yp_c = (xp @ coef if p else 0.0) + res_c
    # Invariant mixture (flat prior on the level/line, normal mixture on the shift): the shift's
    # GLS score and information with the nuisance fitted on every row so far.
    v, inv_c = _information(xp, xa, ga)
    z = _score(xp, yp_c, xa, ya_c, ga, inv_c)
    # Unclipped: not a test (heavy tails would break it) but the consistent estimate of the mean
    # shift, which clipping shrinks for a large or spiky jump (the minimum-effect check uses it).
    z_raw = _score(xp, yp, xa, ya, ga, inv_c)
    # The horizon's information: the same design with every planned row after the first one
    # present (fixed once the first after-row is in, which no decision precedes). A missing row
    # only removes information, so the real information never passes it (docs/statistics.md).
    v_max = math.inf
    plan = weights = nuisance = None
    if post.any():
        first = int(tpos[post][0])
        plan = np.concatenate([tpos[~post], np.arange(first, n_rows)])
        xt_p, gt_p, _ = _design(plan, dloc, phi, trend)
        keep = plan >= dloc
        xa_p, ga_p = xt_p[keep].copy(), gt_p[keep].copy()
        xa_p[0], ga_p[0] = xa_p[0] * w_first, ga_p[0] * w_first
        v_max = max(_final_information(xp, xa_p, ga_p), float(v[-1]))
        weights = horizon_contrast(plan, dloc, phi, trend, w_first)
        nuisance = nuisance_columns(plan, dloc, phi, trend)
    name = f"{'random walk' if phi >= 1 else f'AR(1) phi={phi:.2f}'}{' + line' if trend else ''}"
    return LevelModel(z, np.maximum(v, 0.0), sigma, name, v_max, z_raw, plan, weights, phi,
                      int((~post).sum()), nuisance)


def horizon_contrast(plan: np.ndarray, dloc: int, phi: float, trend: bool, w_first: float) -> np.ndarray | None:
    """``q`` with ``q @ u`` = the model's shift estimate at the horizon (every planned row
    present), ``u`` the prewhitened rows at ``plan``: ``W h / (h'h)``, ``W`` the first after-row's
    weight, ``h`` the prewhitened shift column less its projection on the nuisance columns fitted
    on every row (the GLS contrast). Clipped rows give the sequence's estimate, unclipped ones the
    mean shift. None when the design is singular."""
    xt, gt, _ = _design(plan, dloc, phi, trend)
    wrow = np.ones(plan.size)
    after = np.flatnonzero(plan >= dloc)
    if after.size:
        wrow[after[0]] = w_first
    if phi >= 1.0:
        wrow[0] = 0.0  # a random walk's first row carries nothing
    xt, gt = xt * wrow[:, None], gt * wrow
    if xt.shape[1]:
        xtx = xt.T @ xt
        if np.linalg.cond(xtx) > 1e12:
            return None
        h = gt - xt @ np.linalg.solve(xtx, xt.T @ gt)
    else:
        h = gt
    vv = float(h @ h)
    return wrow * h / vv if vv > 0 else None


def nuisance_columns(plan: np.ndarray, dloc: int, phi: float, trend: bool) -> np.ndarray:
    """The prewhitened nuisance columns (level, line; a random walk's drift) at ``plan``."""
    return _design(plan, dloc, phi, trend)[0]


def _score(xp: np.ndarray, yp: np.ndarray, xa: np.ndarray, ya: np.ndarray, ga: np.ndarray,
           inv_c: np.ndarray | None) -> np.ndarray:
    """The shift's GLS score after each after-row, nuisance fitted on every row so far."""
    gy = np.cumsum(ga * ya)
    if inv_c is None:
        return gy
    xty = xp.T @ yp + np.cumsum(xa * ya[:, None], axis=0)
    return gy - np.einsum("ij,ij->i", inv_c, xty)


def after_clip(g: np.ndarray, row_sd: float, sigma: float) -> np.ndarray:
    """The Huber clip of each after-row around its predictable centre (docs/statistics.md, "The
    Huber clip of the after-rows"): ``HUBER_C`` standard deviations of the row's distance from the
    centre under no change, ``sqrt(row_sd^2 + g_i^2 sigma^2 / V_(i-1))``: the row's own SD plus the
    variance of the centre, ``g_i`` times the shift estimated from ``V_(i-1) = sum_(j<i) g_j^2`` of
    information, which the sequence states as ``sigma^2 / V``. Wide while the centre rests on few
    rows, ``HUBER_C row_sd`` once it has settled. Positions and scales only, never values: the clip
    is predictable. Row 0 has no centre (the caller clips it)."""
    v_prev = np.cumsum(g * g) - g * g
    with np.errstate(divide="ignore", invalid="ignore"):
        var = row_sd * row_sd + np.where(v_prev > 0, g * g * sigma * sigma / v_prev, sigma * sigma)
    return HUBER_C * np.sqrt(var)


def _clip_predictable(r: np.ndarray, g: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Clip each residual at ``c`` around ``g_i`` times the shift estimated from the rows before it.

    The centre uses only earlier rows (predictable), so the clipped sum stays a martingale
    difference sequence under no change, and a real shift is not clipped away.
    """
    out = np.empty_like(r)
    s = v = 0.0
    for i in range(r.size):
        centre = g[i] * (s / v) if v > 0 else 0.0
        out[i] = min(max(r[i], centre - c[i]), centre + c[i])
        s += g[i] * out[i]
        v += g[i] * g[i]
    return out
