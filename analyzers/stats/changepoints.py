"""Offline change-point detection with one default configuration.

Algorithm: binary segmentation on cumulative sums with a Gaussian
mean-and-variance cost, applied to a robustly standardised and outlier-clipped
copy of the data, with a BIC-type penalty raised for the memory left in the
segments. Every candidate split of a segment is scored at once with numpy
(O(segment length)), so the whole search is O(n log n) in vectorised work: about
60 ms for 10^5 points and 0.4 s for 10^6 on one core (see
``benchmarks/bench_changepoints.py``; accuracy on real annotated series:
``benchmarks/bench_tcpd.py``).

Why these choices:

* **Unknown noise level.** The data are divided by a robust noise scale, the
  median absolute first difference (MAD of differences / sqrt 2), which is
  barely moved by level shifts and outliers. No noise parameter is needed.
* **Outliers.** Before the search each point is clipped to a band of
  ``CLIP_K`` noise scales around a running median of five points, so an
  isolated spike cannot open a one-point segment, while a real step (which
  the running median follows within two points) survives.
* **Mean and variance changes.** The segment cost is ``n * log(var)``, the
  Gaussian negative log-likelihood with the segment's own mean and variance;
  a variance floor keeps flat stretches from producing infinite gains.
* **Memory.** Noise that remembers (slow wander, a smooth trend cut into
  steps) makes every split look significant under an independent-noise cost.
  After the search, the lag-1 autocorrelation phi of the residuals inflates the
  penalty by the long-run variance factor ``(1 + phi) / (1 - phi)`` (phi capped
  at ``PHI_MAX``), and the same split tree is pruned again until phi settles.
* **Gaps.** NaN and infinite values are dropped for the search; positions are
  reported in the original indexing (the first valid point of each new
  segment).
* **Trends.** Real series often move in straight lines between changes (growth,
  decline, a recession bending a trend): a mean model cuts such a line into
  steps. ``model="auto"`` (the default) also segments with a piecewise-*linear*
  cost (``n * log`` of each segment's residual variance around its own line,
  penalty ``4 log n``: BIC with four parameters per change) and keeps whichever
  segmentation has the lower BIC (``3k + 2`` parameters for ``k`` mean changes,
  ``4k + 3`` for ``k`` linear ones). ``model="mean"`` or ``"linear"`` forces one.
* **Abrupt, not smooth.** A change point is an abrupt change: a jump or a kink. A curve
  that bends smoothly (growth speeding up, a level-off) is fitted better by two lines than by
  one, so with ``model="auto"`` the BIC first picks the description (levels or lines), and if
  it picks lines, each split must also beat one parabola over the same segment: either two
  lines beat it (3 more parameters) or the parabola plus a level jump at the split does (2
  more). Jumps, kinks and steps on a curve pass; smooth bends do not (seeded check:
  ``benchmarks/bench_tcpd.py --synthetic``). ``model="linear"`` does not apply this test.
* **Seasonality.** A repeating pattern (monthly data with a yearly cycle) looks
  like a change every few points, or, with the memory-aware penalty, hides real
  changes. With ``model="auto"`` the period is detected from the autocorrelation
  of the first differences (the first lag of at least 3 that is a local maximum
  above ``SEASON_ACF_MIN`` and ``4 / sqrt(n)``, with at least ``SEASON_CYCLES``
  whole cycles in the data) and each phase's median deviation from a centred
  moving average of one period is subtracted before the search (on the log
  scale when every value is positive, so a cycle that grows with the level is
  removed too). ``period=`` sets or (``0``) disables it; ``model="mean"`` and
  ``"linear"`` adjust only when a period is given.

Caveats: a random walk or AR(1) near 1 can still be cut into several segments
(the memory factor is capped and assumes AR(1)); a mild kink is harder to tell
from curvature than a jump. ``verify_series`` does not rely on this function for
significance, only to trim history that contains an earlier change (with
``model="mean"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from analyzers.stats._fast import median as _median
from analyzers.stats.seasonal import deseasonalise, seasonal_period

#: Clip band around the running median, in robust noise scales.
CLIP_K = 3.0
#: Penalty per change point, as a multiple of log(n) (BIC-like, 3 parameters per change).
PENALTY_LOG_N = 3.0
#: ... for the piecewise-linear model (intercept, slope, variance and location per change).
PENALTY_LOG_N_LINEAR = 4.0
#: A node of a binary-segmentation tree: parent index, gain, split, segment start and end.
Node = tuple[int, float, int, int, int]
#: Parameters two lines (with a location) add over one parabola (7 - 4), and a level jump (with
#: a location) adds to it (6 - 4): the abruptness tests of ``model="auto"``.
PARAMS_TWO_LINES_OVER_PARABOLA = 3.0
PARAMS_JUMP_OVER_PARABOLA = 2.0
MODELS = ("auto", "mean", "linear")
#: Segmentation passes (each re-estimates the within-segment memory).
PASSES = 10
#: Cap on the within-segment AR(1) estimate used to inflate the penalty.
PHI_MAX = 0.95
#: Segments shorter than this are never created.
MIN_SIZE = 5
#: Segments longer than this are searched coarse to fine, with about COARSE_N candidates first.
COARSE_MIN = 8192
COARSE_N = 2048
#: Variance floor, as a fraction of the robust noise variance.
VAR_FLOOR = 0.01


def _running_median5(x: np.ndarray) -> np.ndarray:
    """Centred running median of five points (edges padded), by a min/max network."""
    if x.size < 5:
        return np.full_like(x, np.median(x)) if x.size else x.copy()
    pad = np.concatenate([np.repeat(x[0], 2), x, np.repeat(x[-1], 2)])
    n = x.size
    a, b, c, d, e = (pad[i : i + n] for i in range(5))
    f = np.maximum(np.minimum(a, b), np.minimum(c, d))
    g = np.minimum(np.maximum(a, b), np.maximum(c, d))
    return np.maximum(np.minimum(e, f), np.minimum(np.maximum(e, f), g))


def robust_noise_scale(x: np.ndarray) -> float:
    """Noise standard deviation from the MAD of first differences (robust to shifts).

    Falls back to the MAD of the values, then to the standard deviation, when most
    differences are zero (quantised data); returns 0.0 only for a constant input.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return 0.0
    d = np.diff(x)
    s = 1.4826 * _median(np.abs(d - _median(d))) / np.sqrt(2.0)
    if s > 0:
        return s
    s = 1.4826 * _median(np.abs(x - _median(x)))
    if s > 0:
        return s
    mad_d = float(np.mean(np.abs(d))) / np.sqrt(2.0)
    if mad_d > 0:
        return mad_d
    return float(np.std(x))


def _prepare(values: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(values, dtype=float).ravel()
    keep = np.flatnonzero(np.isfinite(arr))
    return arr[keep], keep


def _clean(x: np.ndarray) -> np.ndarray:
    """Standardise by the robust noise scale and clip outliers around a running median."""
    scale = robust_noise_scale(x)
    if scale <= 0:
        return np.zeros_like(x)
    z = (x - _median(x)) / scale
    med = _running_median5(z)
    return np.clip(z, med - CLIP_K, med + CLIP_K)


def _best_split(s1: np.ndarray, s2: np.ndarray, a: int, b: int, min_size: int, floor: float) -> tuple[float, int]:
    """Best split k of [a, b) under the mean+variance Gaussian cost, and its gain."""
    return _coarse_to_fine(_split_costs_mean, (s1, s2, floor), a, b, min_size)


def _coarse_to_fine(costs: Any, args: tuple[Any, ...], a: int, b: int, min_size: int) -> tuple[float, int]:
    """Minimise ``costs(*args, a, b, lo, hi, step)`` over splits of [a, b); return (gain, split).

    Segments longer than ``COARSE_MIN`` are scanned on every ``step``-th split first
    (about ``COARSE_N`` candidates), then at every split within one step of the best: the
    cost curve of a long segment is smooth (cumulative sums), so this finds the same split
    in practice at a fraction of the work (series up to 8,192 points are scanned exactly).
    """
    lo, hi = a + min_size, b - min_size + 1
    if hi <= lo:
        return -np.inf, -1
    step = max(1, (hi - lo) // COARSE_N) if b - a > COARSE_MIN else 1
    total, cost = costs(*args, a, b, lo, hi, step)
    k = lo + step * int(np.argmin(cost))
    if step > 1:
        lo2, hi2 = max(lo, k - step + 1), min(hi, k + step)
        total, cost = costs(*args, a, b, lo2, hi2, 1)
        k = lo2 + int(np.argmin(cost))
    return float(total - float(np.min(cost))), k


def _split_costs_mean(s1: np.ndarray, s2: np.ndarray, floor: float, a: int, b: int, lo: int, hi: int,
                      step: int) -> tuple[float, np.ndarray]:
    n = b - a
    m_l = np.arange(lo - a, hi - a, step, dtype=float)
    m_r = n - m_l
    sl = s1[lo:hi:step] - s1[a]
    ql = s2[lo:hi:step] - s2[a]
    sr = s1[b] - s1[lo:hi:step]
    qr = s2[b] - s2[lo:hi:step]
    v_l = np.maximum(ql / m_l - (sl / m_l) ** 2, floor)
    v_r = np.maximum(qr / m_r - (sr / m_r) ** 2, floor)
    cost = m_l * np.log(v_l) + m_r * np.log(v_r)
    mean = (s1[b] - s1[a]) / n
    total = n * np.log(max((s2[b] - s2[a]) / n - mean * mean, floor))
    return float(total), cost


def changepoints(values: Sequence[float] | np.ndarray | Any, model: str = "auto",
                 period: int | None = None) -> list[int]:
    """Sorted 0-based positions where new segments start (never 0), one default setting.

    ``values`` is a 1-D array, list or pandas Series (its index is ignored). NaN and
    infinite values are skipped; a returned position always points at a finite value.
    Fewer than ``2 * MIN_SIZE`` finite points, or a constant series, give ``[]``.
    ``model``: ``"auto"`` (piecewise-constant or piecewise-linear, whichever has the
    lower BIC; with lines, only the abrupt changes, not smooth bends), ``"mean"`` (changes
    in mean and variance) or ``"linear"`` (changes in level, slope and variance). ``period``: length of a seasonal cycle in points to remove
    before the search; ``None`` (default) detects it with ``model="auto"`` and removes none
    otherwise, ``0`` removes none.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if period is not None and (isinstance(period, bool) or not isinstance(period, (int, np.integer))
                               or period < 0):
        raise ValueError(f"period must be None or a whole number of points >= 0, got {period!r}")
    x, keep = _prepare(values)
    n = x.size
    if n < 2 * MIN_SIZE:
        return []
    if (period is None and model == "auto") or (period is not None and period >= 2):
        # Gaps: the period is found and removed on the original positions (gaps filled by
        # linear interpolation for the moving average, left out of the phase medians).
        gap = keep.size < keep[-1] - keep[0] + 1
        grid = np.interp(np.arange(keep[0], keep[-1] + 1), keep, x) if gap else x
        if period is None:
            period = seasonal_period(grid)
        if period >= 2 and grid.size < 2 * period:
            raise ValueError(f"period={period} needs at least two whole cycles ({2 * period} points from the "
                             f"first to the last finite value), got {grid.size}; pass a shorter period or "
                             "period=0 to segment without seasonal adjustment")
        if period >= 2:
            if gap:
                observed = np.zeros(grid.size, dtype=bool)
                observed[keep - keep[0]] = True
                x = deseasonalise(grid, int(period), observed)[keep - keep[0]]
            else:
                x = deseasonalise(x, int(period))
    z = _clean(x)
    if not np.any(z):
        return []
    z = z - z.mean()
    s1 = np.concatenate([[0.0], np.cumsum(z)])
    s2 = np.concatenate([[0.0], np.cumsum(z * z)])
    if model == "linear":
        found = _memory_passes(z, *_linear_tree(z, s1, s2, _time_sums(z)), linear=True)
    else:
        found = _segment_mean(z, s1, s2)
        if model == "auto":
            st = _time_sums(z)
            nodes, pen = _linear_tree(z, s1, s2, st)
            lin = _memory_passes(z, nodes, pen, linear=True)
            logn = float(np.log(n))
            bic_mean = _total_cost(z, found, False) + (3 * len(found) + 2) * logn
            bic_lin = _total_cost(z, lin, True) + (4 * len(lin) + 3) * logn
            if bic_lin < bic_mean:
                # Lines describe the series better than levels; keep only the abrupt changes.
                abrupt = _abrupt(z, s1, s2, st, nodes)
                found = lin if abrupt == nodes else _memory_passes(z, abrupt, pen, linear=True)
    return sorted(int(keep[k]) for k in found)


def _segment_mean(z: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> list[int]:
    n = z.size
    pen = PENALTY_LOG_N * np.log(n)
    tree = _binseg_tree(n, pen, lambda a, b: _best_split(s1, s2, a, b, MIN_SIZE, VAR_FLOOR))
    return _memory_passes(z, tree, pen, linear=False)


def _memory_passes(z: np.ndarray, nodes: list[Node], pen: float, linear: bool) -> list[int]:
    """The splits of ``nodes`` kept at ``pen``, then at ``pen`` raised for the memory left.

    Memory left inside the segments (a smooth trend cut into steps, slow wander) inflates the
    evidence for a split by the long-run variance factor (1 + phi) / (1 - phi); raise the
    penalty by it and prune the same split tree (binary segmentation's splits do not depend
    on the penalty), until phi settles.
    """
    found = _prune(nodes, pen)
    phi_used = 0.0
    for _ in range(PASSES - 1):
        phi = _segment_phi(z, found, linear=linear)
        if phi <= phi_used + 1e-3:
            break
        phi_used = phi
        found = _prune(nodes, pen * (1 + phi) / (1 - phi))
    return found


def _time_sums(z: np.ndarray) -> np.ndarray:
    """Cumulative sums of t * z, t the position centred on the series (keeps the sums small)."""
    t = np.arange(z.size, dtype=float) - 0.5 * z.size
    return np.concatenate([[0.0], np.cumsum(t * z)])


def _linear_tree(z: np.ndarray, s1: np.ndarray, s2: np.ndarray, st: np.ndarray) -> tuple[list[Node], float]:
    """Piecewise-linear binary segmentation: the split tree and its base penalty."""
    n = z.size
    pen = PENALTY_LOG_N_LINEAR * np.log(n)
    return _binseg_tree(n, pen, lambda a, b: _best_split_linear(s1, s2, st, a, b, n)), pen


def _abrupt(z: np.ndarray, s1: np.ndarray, s2: np.ndarray, st: np.ndarray, nodes: list[Node]) -> list[Node]:
    """The linear split tree with each gain cut down to the evidence for an *abrupt* change.

    Besides one line over the segment (4 parameters fewer: level, slope, variance, location),
    a split must beat one parabola over it, either as two lines (3 parameters more than the
    parabola) or as the parabola plus a level jump at the split (2 more). The node's gain
    becomes the smaller of the line test and the better parabola test, each scaled to the line
    test's 4 parameters, so the memory passes raise every penalty alike. A node that fails is
    pruned with its subtree, as a split below the penalty always is.
    """
    if not nodes:
        return []
    _, gains, _, starts, ends = (np.array(col) for col in zip(*nodes, strict=True))
    # A node's gain is its one line's cost minus its two lines' cost.
    lens = (ends - starts).astype(float)
    one_line = lens * np.log(np.maximum(_linear_rss(s1, s2, st, starts, ends, z.size) / lens, VAR_FLOOR))
    two_lines = one_line - gains
    out = []
    for (parent, gain, k, a, b), lines in zip(nodes, two_lines.tolist(), strict=True):
        parabola, parabola_jump = _parabola_costs(z, s1, s2, a, b, k)
        per_param = max((parabola - lines) / PARAMS_TWO_LINES_OVER_PARABOLA,
                        (parabola - parabola_jump) / PARAMS_JUMP_OVER_PARABOLA)
        out.append((parent, min(gain, per_param * PENALTY_LOG_N_LINEAR), k, a, b))
    return out


def _parabola_costs(z: np.ndarray, s1: np.ndarray, s2: np.ndarray, a: int, b: int, k: int) -> tuple[float, float]:
    """``m log(variance)`` of ``z[a:b]`` around its least-squares parabola, and around the
    parabola plus a level jump at ``k`` (O(m), exact).

    Orthogonal polynomials on consecutive integers (1, u, u^2 - (m^2 - 1) / 12 with u the
    centred position) make the parabola's coefficients independent dot products; the jump's
    coefficient is then the regression of the parabola's residuals on the step's own residual
    (the step 1[u >= k] minus its parabola), all from sums.
    """
    y = z[a:b]
    m = b - a
    u = np.arange(m, dtype=float) - 0.5 * (m - 1)
    p2 = u * u - (m * m - 1.0) / 12.0
    vt, vp = m * (m * m - 1.0) / 12.0, float(p2 @ p2)
    sy, syy = s1[b] - s1[a], s2[b] - s2[a]
    cu, cp = float(u @ y), float(p2 @ y)
    rss = syy - sy * sy / m - cu * cu / vt - (cp * cp / vp if vp > 0 else 0.0)
    j = k - a
    after = float(m - j)
    tail_u, tail_p = float(u[j:].sum()), float(p2[j:].sum())
    step_ss = after - after * after / m - tail_u * tail_u / vt - (tail_p * tail_p / vp if vp > 0 else 0.0)
    # Product of the step's residual with y = the step's tail sum of the parabola's residuals.
    cross = (s1[b] - s1[k]) - sy / m * after - cu / vt * tail_u - (cp / vp * tail_p if vp > 0 else 0.0)
    rss_jump = rss - (cross * cross / step_ss if step_ss > 1e-12 else 0.0)
    return (m * float(np.log(max(rss / m, VAR_FLOOR))),
            m * float(np.log(max(rss_jump / m, VAR_FLOOR))))


def _linear_rss(s1: np.ndarray, s2: np.ndarray, st: np.ndarray, a: np.ndarray, b: np.ndarray,
                n: int) -> np.ndarray:
    """Residual sums of squares of straight-line fits on segments [a, b), from cumulative sums.

    The spread of the (integer, consecutive) positions is exact, m (m^2 - 1) / 12, so no
    large cumulative sums of t^2 are differenced.
    """
    m = (b - a).astype(float)
    sy = s1[b] - s1[a]
    cty = (st[b] - st[a]) - ((a + b - 1) * 0.5 - 0.5 * n) * sy
    vt = m * (m * m - 1.0) / 12.0
    rss = (s2[b] - s2[a]) - sy * sy / m - cty * cty / np.maximum(vt, 1e-12)
    return np.maximum(rss, 0.0)


def _best_split_linear(s1: np.ndarray, s2: np.ndarray, st: np.ndarray, a: int, b: int, n: int) -> tuple[float, int]:
    return _coarse_to_fine(_split_costs_linear, (s1, s2, st, n), a, b, MIN_SIZE)


def _split_costs_linear(s1: np.ndarray, s2: np.ndarray, st: np.ndarray, n: int, a: int, b: int, lo: int, hi: int,
                        step: int) -> tuple[float, np.ndarray]:
    k = np.arange(lo, hi, step, dtype=float)
    centre = 0.5 * n
    # Left segments [a, k) and right segments [k, b), on slices (no fancy indexing).
    m = k - a
    sy = s1[lo:hi:step] - s1[a]
    cty = (st[lo:hi:step] - st[a]) - ((a - 1 + k) * 0.5 - centre) * sy
    rss = (s2[lo:hi:step] - s2[a]) - sy * sy / m - cty * cty / (m * (m * m - 1.0) / 12.0)
    cost = m * np.log(np.maximum(rss / m, VAR_FLOOR))
    m = b - k
    sy = s1[b] - s1[lo:hi:step]
    cty = (st[b] - st[lo:hi:step]) - ((k + b - 1) * 0.5 - centre) * sy
    rss = (s2[b] - s2[lo:hi:step]) - sy * sy / m - cty * cty / (m * (m * m - 1.0) / 12.0)
    cost += m * np.log(np.maximum(rss / m, VAR_FLOOR))
    ends = np.array([a]), np.array([b])
    total = (b - a) * np.log(max(float(_linear_rss(s1, s2, st, *ends, n)[0]) / (b - a), VAR_FLOOR))
    return float(total), cost


def _bounds(cps: list[int], n: int) -> np.ndarray:
    return np.array([0, *sorted(cps), n], dtype=np.int64)


def _residuals(z: np.ndarray, cps: list[int], linear: bool) -> np.ndarray:
    """Residuals around each segment's mean (or its least-squares line), vectorised."""
    bnd = _bounds(cps, z.size)
    lens = np.diff(bnd)
    c1 = np.concatenate([[0.0], np.cumsum(z)])
    means = (c1[bnd[1:]] - c1[bnd[:-1]]) / lens
    resid = z - np.repeat(means, lens)
    if linear:
        pos = np.arange(z.size, dtype=float)
        centre = np.repeat((bnd[:-1] + bnd[1:] - 1) * 0.5, lens)
        tc = pos - centre
        ct = np.concatenate([[0.0], np.cumsum(tc * resid)])
        lf = lens.astype(float)
        vt = lf * (lf * lf - 1.0) / 12.0
        slopes = np.where(lens >= 3, (ct[bnd[1:]] - ct[bnd[:-1]]) / np.maximum(vt, 1e-12), 0.0)
        resid = resid - np.repeat(slopes, lens) * tc
    return resid


def _total_cost(z: np.ndarray, cps: list[int], linear: bool) -> float:
    """Gaussian -2 log-likelihood (up to constants): sum of n_i log(variance_i), floored."""
    resid = _residuals(z, cps, linear)
    bnd = _bounds(cps, z.size)
    c = np.concatenate([[0.0], np.cumsum(resid * resid)])
    lens = np.diff(bnd).astype(float)
    rss = c[bnd[1:]] - c[bnd[:-1]]
    return float(np.sum(lens * np.log(np.maximum(rss / lens, VAR_FLOOR))))


def _binseg_tree(n: int, pen: float, best_split: Callable[[int, int], tuple[float, int]]) -> list[Node]:
    """Binary segmentation down to ``pen``: nodes (parent index, gain, split, segment start, end).

    ``best_split(a, b)`` gives the best gain and split position of the segment ``[a, b)``
    (the mean+variance model or the piecewise-linear one). Parents come before children.
    """
    nodes: list[Node] = []
    stack = [(0, n, -1)]
    while stack:
        a, b, parent = stack.pop()
        if b - a < 2 * MIN_SIZE:
            continue
        gain, k = best_split(a, b)
        if gain > pen:
            nodes.append((parent, gain, k, a, b))
            me = len(nodes) - 1
            stack.append((a, k, me))
            stack.append((k, b, me))
    return nodes


def _prune(nodes: list[Node], pen: float) -> list[int]:
    """Splits kept at a higher penalty: gain above it, and every ancestor kept too."""
    kept = [False] * len(nodes)
    for i, (parent, gain, *_) in enumerate(nodes):  # parents come before children
        kept[i] = gain > pen and (parent < 0 or kept[parent])
    return [node[2] for node, ok in zip(nodes, kept, strict=True) if ok]


def _segment_phi(z: np.ndarray, cps: list[int], linear: bool = False) -> float:
    """Lag-1 autocorrelation of residuals around segment means (or lines), in [0, PHI_MAX]."""
    resid = _residuals(z, cps, linear)
    den = float(resid @ resid)
    if den <= 0:
        return 0.0
    same = np.ones(z.size - 1, dtype=bool)
    same[np.asarray(sorted(cps), dtype=int) - 1] = False  # no products across a change
    phi = float(np.sum((resid[1:] * resid[:-1])[same])) / den
    return min(max(phi, 0.0), PHI_MAX)
