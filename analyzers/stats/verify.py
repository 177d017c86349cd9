"""``verify_series``: did this metric change at this deploy?

Pipeline (pure numpy/pandas, no IO):

1. Coerce the input to a regular UTC grid (NaN for gaps, infinities dropped);
   ``kind="counter"`` turns a raw cumulative counter into per-step increases,
   treating drops as resets.
2. Windows: up to ``window_before_s`` before the deploy (default 3 h) and up to
   ``window_after_s`` after it (default 1 h). Too little data gives
   ``inconclusive`` with the reason (and ``needed_more_s`` when waiting helps).
3. Low counts (``kind="count"`` with integer values, small integer series, or
   ``counts=`` given) go to a Poisson rate test. Everything else:
4. Baseline (:mod:`.baselines`): the pre-deploy level, or the same time 1 or 7 days
   earlier / a seasonal mean, whichever explains the pre-deploy window best.
5. Outliers are clipped around a running median; history before a significant
   earlier change point is dropped, so a change hours before the deploy is not
   compared against the deploy.
6. AR(1)-aware robust max-score test over change shapes that start at the deploy
   (steps at 0-15 min lags, linear ramps up to ``ramp_s``) plus a spread test
   (:mod:`.tests_`); ``change_at`` is refined on every step of the ramp window. phi
   (the noise memory) comes from the days of history before the deploy when given
   (median over 3 h blocks), else from the window. A linear trend suggested by the
   pre-deploy slope must not create the change alone: the change must stand both with
   and without it.
7. Effect: Hodges-Lehmann shift with an AR-aware, block-bootstrap interval
   (:mod:`.effects`); a significant shift below ``min_effect``/``min_effect_rel`` is
   reported ``unchanged`` with that reason.

"Shifted" therefore means: changed at the deploy or during its ramp, beyond what a
level (+ linear drift) with AR(1) noise would produce, in the chosen baseline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyzers.stats import baselines as bl
from analyzers.stats._fast import median as _median
from analyzers.stats._fast import nanmedian as _nanmedian
from analyzers.stats.buckets import line_noise_scale
from analyzers.stats.changepoints import _running_median5, changepoints, robust_noise_scale
from analyzers.stats.counts import verify_constant, verify_counts
from analyzers.stats.effects import shift_with_ci
from analyzers.stats.grid import (
    coerce_arrays,
    coerce_series,
    coerce_time,
    counter_increases,
    seconds_since_first,
    to_grid,
)
from analyzers.stats.noise import (
    NO_TREND_Z,
    PHI_MAX_BLOCKS,
    TREND_Z,
    UNIT_ROOT_PHI,
    _detrend,
    block_length,
    earlier_steps,
    estimate_phi_history,
    fit_null,
    history_phi,
    residual_memory,
    slope_z,
)
from analyzers.stats.reporting import (
    Ctx,
    decide,
    fmt,
    fmt_change,
    fmt_interval,
    iso_str,
    meaningful,
    minutes,
    rel,
)
from analyzers.stats.result import ChangeKind, Direction, SeriesResult
from analyzers.stats.shapes import candidate_shapes, refine_start
from analyzers.stats.tests_ import directional_pvalue, spread_test
from analyzers.text import format_relative, p_equals

__all__ = ["verify_series"]

KINDS = ("gauge", "ratio", "rate", "latency", "count", "counter")
EXPECTS = ("increase", "decrease", "any", "unchanged")
#: Default significance level per metric (see benchmarks/README_stats.md: at 0.01 the false
#: alarms stay under 1 % over the null families while 2 SD shifts are found >= 95 %).
DEFAULT_ALPHA = 0.01
#: Share of alpha spent on the level test; the rest goes to the spread test.
LEVEL_WEIGHT = 0.8
#: Clip band for outliers, in robust noise scales around a running median of 5.
CLIP_K = 5.0
#: The effect compares the settled level after the change with this much history before it.
EFFECT_BEFORE_S = 3600.0
#: At least this many points of stable history are wanted after an earlier change.
MIN_STABLE_PRE = 20


def verify_series(series: Any, deploy_at: Any, expect: str = "any", **options: Any) -> SeriesResult:
    """Test whether ``series`` changed at ``deploy_at`` (see the module docstring for the method).

    ``expect``: ``"any"`` (or ``"unchanged"``, a deploy that declares no effect) tests
    both directions alike; ``"increase"``/``"decrease"`` gives
    80 % of the level test's alpha to the declared direction and 20 % to the opposite one
    (more power for the announced change; a move the other way is still reported, as
    ``direction``). ``status`` never depends on whether the direction matches: compare
    ``direction`` with the expectation to tell "confirmed" from "opposite".

    Options: ``min_effect`` (absolute, metric units), ``min_effect_rel`` (fraction of the
    level before), ``alpha`` (0.01), ``kind`` (gauge, ratio, rate, latency, count, or
    counter for a raw cumulative counter), ``min_points`` (10, per side), ``ramp_s``
    (1800: how long a rollout may take to reach full effect; ``ramp`` is an alias),
    ``counts`` (a Series on the same times: for ``kind="ratio"`` the denominators, e.g.
    requests per step; otherwise the event counts behind each point; selects the
    Poisson rate test), ``seed`` (0), ``window_before_s`` (10800), ``window_after_s``
    (3600), ``max_gap_frac`` (0.5: share of missing points after the deploy that makes
    the answer inconclusive), ``unit`` ("": the metric's unit, e.g. ``s``, ``ratio``, ``req/s``,
    only for the reason text, which then writes ``60.9 ms`` or ``3.93 pp``; results are the same),
    ``histogram`` (the bucket bounds of the histogram a percentile line is drawn from: the spread
    test then compares residuals in units of the width of the bucket holding each point,
    :func:`analyzers.stats.buckets.line_noise_scale`).

    Raises :class:`NotASeries` when the input is not a time series at all and
    ``ValueError`` for an unknown ``expect``/``kind``; everything else (no data, too few
    points, constant series) is an ``inconclusive`` result with a reason.
    """
    opts = dict(options)
    min_effect = opts.pop("min_effect", None)
    min_effect_rel = opts.pop("min_effect_rel", None)
    alpha = float(opts.pop("alpha", DEFAULT_ALPHA))
    kind = str(opts.pop("kind", "gauge") or "gauge")
    min_points = int(opts.pop("min_points", 10) or 10)
    ramp_s = float(opts.pop("ramp_s", opts.pop("ramp", 1800.0)) or 0.0)
    opts.pop("ramp", None)
    counts = opts.pop("counts", None)
    seed = int(opts.pop("seed", 0) or 0)
    window_before_s = float(opts.pop("window_before_s", 3 * 3600.0))
    window_after_s = float(opts.pop("window_after_s", 3600.0))
    max_gap_frac = float(opts.pop("max_gap_frac", 0.5))
    unit = str(opts.pop("unit", "") or "")
    histogram = opts.pop("histogram", None)
    ignored = sorted(opts)
    if expect not in EXPECTS:
        raise ValueError(f"expect must be one of {EXPECTS}, got {expect!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")

    s_idx, s_val = coerce_arrays(series)
    deploy = coerce_time(deploy_at)
    base_details: dict[str, Any] = {"kind": kind, "expect": expect}
    if ignored:
        base_details["ignored_options"] = ignored
    finite_mask = np.isfinite(s_val)
    if not finite_mask.any():
        return SeriesResult("inconclusive", "No data: the series is empty or all NaN around the deploy; "
                            "check the query and that the metric is scraped.", method="none",
                            details=base_details)
    if s_val.size < 2:
        first = s_idx[int(np.argmax(finite_mask))]
        return SeriesResult("inconclusive", "Only one sample: cannot tell the step or compare before and after.",
                            method="none", n_before=int(first < deploy),
                            n_after=int(first >= deploy), details=base_details)
    secs = seconds_since_first(s_idx)
    diffs = np.diff(secs)
    step_s = _median(diffs[diffs > 0]) if np.any(diffs > 0) else 60.0
    t0, y = to_grid(s_idx, s_val, step_s, secs)
    if kind == "counter":
        y = counter_increases(y)
    ctx = Ctx(t0, step_s, unit)
    base_details["step_s"] = step_s
    d = int(math.ceil((deploy - t0).total_seconds() / step_s - 1e-9))
    n = y.size
    pre_start = max(0, d - int(round(window_before_s / step_s)))
    post_end = max(0, min(n, d + int(round(window_after_s / step_s))))
    pre_vals = y[pre_start:max(d, 0)] if d > 0 else np.array([])
    post_vals = y[max(d, 0):post_end] if d < n else np.array([])
    n_before = int(np.isfinite(pre_vals).sum())
    n_after = int(np.isfinite(post_vals).sum())
    bw = (ctx.at(pre_start), ctx.at(max(d, 0))) if d > 0 else None
    aw = (ctx.at(max(d, 0)), ctx.at(max(post_end - 1, d))) if d < n else None
    common: dict[str, Any] = dict(n_before=n_before, n_after=n_after, before_window=bw, after_window=aw)

    if n_before + n_after == 0:
        return SeriesResult("inconclusive", "No data in the window around the deploy: the series has "
                            "samples, but none within the analysis window.", method="none",
                            details=base_details, **common)
    if n_before < min_points:
        return SeriesResult("inconclusive", f"Only {n_before} points before the deploy (need {min_points}): "
                            "fetch more history or check when the metric started.", method="none",
                            details=base_details, **common)
    if n_after < min_points:
        span = post_end - d if d < n else 0
        data_ends = post_end >= n and span < int(round(window_after_s / step_s))
        if data_ends or d >= n:
            frac = n_after / span if span > 0 and n_after > 0 else 1.0
            needed = (min_points - n_after) * step_s / max(frac, 0.5)
            return SeriesResult("inconclusive", f"Only {n_after} points after the deploy (need {min_points}): "
                                f"wait about {minutes(needed)} more.", method="none",
                                needed_more_s=float(needed), details=base_details, **common)
        return SeriesResult("inconclusive", f"Too many gaps after the deploy: {n_after} of {span} points "
                            f"present (need {min_points}); check scraping of this metric.", method="none",
                            details=base_details, **common)
    span = post_end - d
    if span > 0 and 1.0 - n_after / span > max_gap_frac:
        return SeriesResult("inconclusive", f"Too many gaps after the deploy: {span - n_after} of {span} "
                            "points missing; check scraping and rerun.", method="none",
                            details=base_details, **common)

    cnt_arr = None
    if counts is not None:
        c = coerce_series(counts)
        c = c.reindex(s_idx) if not c.index.equals(s_idx) else c
        _, cnt_arr = to_grid(c.index, c.to_numpy(dtype=float), step_s) if len(c) else (t0, None)
        if cnt_arr is not None and cnt_arr.size < n:
            cnt_arr = np.concatenate([cnt_arr, np.full(n - cnt_arr.size, np.nan)])
    window = y[pre_start:post_end]
    fin = window[np.isfinite(window)]
    integer_like = bool(np.all(fin >= 0) and np.all(np.abs(fin - np.rint(fin)) < 1e-9))
    use_poisson = cnt_arr is not None or (
        integer_like and (kind == "count" or (kind != "counter" and _median(fin) <= 3.0))
    )
    if kind == "counter" and integer_like and _median(fin) <= 20:
        use_poisson = True
    args = dict(alpha=alpha, expect=expect, min_effect=min_effect, min_effect_rel=min_effect_rel,
                details=base_details, common=common, ctx=ctx)
    if use_poisson:
        return verify_counts(y, cnt_arr, kind, pre_start, d, post_end, **args)
    return _verify_level(y, pre_start, d, post_end, kind, seed=seed, ramp_s=ramp_s, histogram=histogram, **args)


def _unit_scale(x: np.ndarray) -> float:
    """A power of two bringing extreme magnitudes (beyond 1e+-100) near 1; else 1.0 (exact)."""
    fin = np.abs(x[np.isfinite(x)])
    m = float(fin.max()) if fin.size else 0.0
    if m == 0.0 or 1e-100 <= m <= 1e100:
        return 1.0
    return float(2.0 ** round(math.log2(m)))


def _verify_level(
    y: np.ndarray,
    pre_start: int,
    d: int,
    post_end: int,
    kind: str,
    *,
    alpha: float,
    expect: str,
    min_effect: float | None,
    min_effect_rel: float | None,
    seed: int,
    ramp_s: float,
    details: dict[str, Any],
    common: dict[str, Any],
    ctx: Ctx,
    histogram: Any = None,
) -> SeriesResult:
    step_s = ctx.step_s
    unit = _unit_scale(y[pre_start:post_end])
    if unit != 1.0:  # keep 1e300 or 1e-300 metrics away from overflow and underflow
        y = y / unit
    base = bl.choose_baseline(y, pre_start, d, post_end, step_s)
    raw = y[pre_start:post_end]
    r = raw - base.values
    dw = d - pre_start
    details = dict(details, baseline_score=base.score * unit)

    ok = np.flatnonzero(np.isfinite(r))
    scale = robust_noise_scale(r[ok])
    pre_fin = r[:dw][np.isfinite(r[:dw])]
    post_fin = r[dw:][np.isfinite(r[dw:])]
    level = _nanmedian(raw[:dw]) * unit
    if scale <= 0 or np.ptp(pre_fin) == 0:
        return verify_constant(pre_fin * unit, post_fin * unit, raw * unit, dw, kind, level, base.name, alpha,
                             expect, min_effect, min_effect_rel, details, common, ctx, pre_start)
    # Clip outliers around a running median of the finite points.
    rc = r.copy()
    med = _running_median5(r[ok])
    rc[ok] = np.clip(r[ok], med - CLIP_K * scale, med + CLIP_K * scale)
    n_clipped = int(np.sum(rc[ok] != r[ok]))

    # Drop history before a significant earlier change.
    pre_lo = 0
    earlier: list[str] = []
    length = block_length(dw)
    hist = history_phi(y[max(0, d - PHI_MAX_BLOCKS * length):d], length)
    cps = [c for c in changepoints(rc[:dw], model="mean") if 0 < c < dw]
    if cps:
        phi0 = estimate_phi_history(_detrend(rc[:dw]), hist).phi
        nf = fit_null(rc[:dw], dw, False, phi0)
        nf_trend = fit_null(rc[:dw], dw, True, phi0)
        if nf is not None and nf_trend is not None:
            # A step, not a drift: significant alone and still clear of a straight line.
            sig = earlier_steps(nf, nf_trend, dw, cps, hist if base.name in bl.OWN_NOISE else None)
            if sig:
                pre_lo = max(sig)
                earlier = [iso_str(ctx.at(pre_start + c)) for c in sig]
    if dw - pre_lo < MIN_STABLE_PRE and int(np.isfinite(rc[pre_lo:dw]).sum()) < MIN_STABLE_PRE:
        when = ctx.at(pre_start + pre_lo)
        mins = (dw - pre_lo) * step_s
        return SeriesResult(
            "inconclusive",
            f"The series changed at {iso_str(when)}, {minutes(mins)} before the deploy, leaving too little "
            "stable history to judge the deploy; look at what changed then, or rerun later.",
            change_at=None, baseline=base.name, method="change-point attribution",
            details=dict(details, earlier_changes=earlier), **common)
    w = rc[pre_lo:]
    dloc = dw - pre_lo
    # phi from the days of history before the deploy when there are enough (a far more
    # precise estimate than the 3 h window alone), else from the window (see estimate_phi_history).
    phi_est = estimate_phi_history(_detrend(w[:dloc]), hist)
    phi = phi_est.phi
    z_trend = slope_z(w, dloc, phi)
    fit = fit_null(w, dloc, z_trend > TREND_Z, phi)
    if fit is None:
        return verify_constant(pre_fin * unit, post_fin * unit, raw * unit, dw, kind, level, base.name, alpha,
                             expect, min_effect, min_effect_rel, details, common, ctx, pre_start)
    nw = w.size
    # Memory the AR(1) prewhitening leaves (white noise on a slow wander): scores are divided by
    # the square root of its long-run variance factor over the after window (residual_memory).
    memory = residual_memory(hist, phi, nw - dloc) if base.name in bl.OWN_NOISE else 1.0
    root = math.sqrt(memory)

    def level_p(scored: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
        return directional_pvalue(scored[0] / root, scored[1], seed, expect)

    shapes, labels = candidate_shapes(nw, dloc, step_s, ramp_s, fit.tpos)
    tstat, hn = fit.scores(shapes)
    p_mean, sign = level_p((tstat, hn))
    # Spread: prewhitened residuals after vs before, each side around its own median, once
    # the best-fitting change shape is taken out (a level shift under memory leaves a burst
    # of large prewhitened residuals at the change, which is not a change of spread).
    post_rows = fit.tpos >= dloc
    h_best = hn[:, int(np.argmax(np.abs(tstat)))]
    res_alt = fit.resid - h_best * float(h_best @ fit.resid)
    if histogram is not None:
        # A histogram percentile's noise is set by the bucket holding it (line_noise_scale):
        # compare the spread in those units, so a line that crossed into a wider, sparser
        # bucket is not read as a wider spread of the requests' latencies.
        res_alt = res_alt / line_noise_scale(raw[pre_lo:][fit.tpos] * unit, histogram)
        details = dict(details, spread_units="bucket widths")
    p_var, spread_ratio = spread_test(res_alt[fit.pre_rows], res_alt[post_rows])
    post_scale = 1.0
    if p_var / (1.0 - LEVEL_WEIGHT) <= alpha and spread_ratio > 1.3:
        # The spread grew: weight rows after the deploy down so noise is not read as a level shift.
        wfit = fit_null(w, dloc, fit.trend, phi, post_scale=spread_ratio)
        if wfit is not None:
            fit, post_scale = wfit, spread_ratio
            tstat, hn = fit.scores(shapes)
            p_mean, sign = level_p((tstat, hn))
    if z_trend > NO_TREND_Z:
        # A pre-deploy slope, real or a chance tilt (which is what selected the trend): the
        # change must stand both with and without it, else a chance slope extrapolated past
        # the deploy reads as a change (measured: most false alarms on iid noise came from it).
        alt = fit_null(w, dloc, not fit.trend, phi, post_scale=post_scale)
        if alt is not None:
            p_mean = max(p_mean, level_p(alt.scores(shapes))[0])
    unit_root = phi >= UNIT_ROOT_PHI
    if unit_root:
        # Near a unit root the AR(1) fit may be too kind: also require rejection as a random walk.
        rw = fit_null(w, dloc, True, 1.0)
        if rw is not None:
            p_mean = max(p_mean, level_p(rw.scores(shapes))[0])
    # Refine where the change begins: every start within the ramp window, steps and ramps.
    tau, length_best = refine_start(fit, nw, dloc, step_s, ramp_s, sign)
    kind_best = "ramp" if length_best else "step"
    # Effect on the (de-trended) baseline-adjusted series, original (unclipped) values.
    v = r[pre_lo:].copy()
    if fit.trend:
        v = v - _trend_line(rc[pre_lo:], dloc)
    # A level change: its settled part (after the ramp). No level change: everything after
    # the deploy (the best-fitting shape of noise says nothing about where to look).
    level_found = p_mean / LEVEL_WEIGHT <= alpha
    settle = tau + (length_best if kind_best == "ramp" else 0) if level_found else dloc
    after_idx = np.arange(settle, nw)
    if np.isfinite(v[after_idx]).sum() < 3:
        after_idx = np.arange(tau if level_found else dloc, nw)
    before_idx = np.arange(max(0, dloc - int(round(EFFECT_BEFORE_S / step_s))), dloc)
    sigma = fit.scale * math.sqrt(fit.epsi2 * memory) / math.sqrt(max(1e-6, 1 - phi * phi))
    bi = before_idx[np.isfinite(v[before_idx])]
    ai = after_idx[np.isfinite(v[after_idx])]
    effect, ci = shift_with_ci(v[bi], v[ai], bi, ai, sigma, phi, alpha, seed)
    effect, ci = effect * unit, (ci[0] * unit, ci[1] * unit)

    p_level = min(1.0, p_mean / LEVEL_WEIGHT)
    p_spread = min(1.0, p_var / (1.0 - LEVEL_WEIGHT))
    p_value = min(p_level, p_spread)
    method = (f"AR(1)-prewhitened robust max-score test over {len(labels)} change shapes"
              f"{' with linear trend' if fit.trend else ''} (phi={phi:.2f}"
              f"{f', residual memory x{memory:.2g}' if memory > 1.05 else ''})"
              f"{', also as a random walk' if unit_root else ''} + spread test")
    change_kind: ChangeKind | None = None
    direction: Direction | None = None
    significant = False
    if p_level <= alpha:
        significant, change_kind = True, "level"
        direction = "increase" if sign > 0 else "decrease"
    elif p_spread <= alpha:
        significant, change_kind = True, "variance"
    status, below = decide(significant=significant, effect=effect if change_kind == "level" else math.inf,
                            level=level, direction=direction, min_effect=min_effect,
                            min_effect_rel=min_effect_rel, unit=ctx.unit)
    change_at = ctx.at(pre_start + pre_lo + tau)
    details = dict(details, phi=phi, residual_memory=memory, phi_source=phi_est.source, phi_window=phi_est.window_phi,
                   phi_blocks=phi_est.blocks, trend=fit.trend, clipped=n_clipped, earlier_changes=earlier,
                   shape=kind_best if kind_best == "step" else f"ramp {length_best * step_s / 60:.0f} min",
                   p_level=p_level, p_spread=p_spread, spread_ratio=spread_ratio,
                   pre_used_from=iso_str(ctx.at(pre_start + pre_lo)))
    eff_rel = rel(effect, level)
    base_txt = "" if base.name == bl.PRE_WINDOW else f" against the {base.name} baseline"
    if status == "shifted" and change_kind == "level":
        reason = (f"{direction.capitalize() if direction else 'Change'} of {fmt_change(effect, ctx.unit, signed=False)}"
                  f"{'' if eff_rel is None else f' ({format_relative(eff_rel)})'} starting {iso_str(change_at)}"
                  f"{base_txt} ({p_equals(p_value)}).")
    elif status == "shifted":
        reason = (f"The spread changed by a factor of {fmt(spread_ratio)} at the deploy{base_txt} "
                  f"while the level did not move significantly ({p_equals(p_value)}).")
    elif below:
        reason = f"A change of {fmt_change(effect, ctx.unit)} at the deploy is significant but {below}."
        change_kind = change_kind or "level"
    else:
        reason = (f"No change at the deploy{base_txt}: shift {fmt_change(effect, ctx.unit)} "
                  f"({fmt_interval(ci[0], ci[1], ctx.unit)}), {p_equals(p_value)}.")
        if earlier:
            reason = reason[:-1] + f"; an earlier change at {earlier[-1]} is not attributed to the deploy."
        floor = meaningful(min_effect, min_effect_rel, level)
        if floor is not None and max(abs(ci[0]), abs(ci[1])) >= floor:
            reason = reason[:-1] + (f"; a change of {fmt_change(floor, ctx.unit, signed=False)} (the minimum meaningful effect) cannot "
                                    "be ruled out yet: more data after the deploy would narrow it.")
    return SeriesResult(
        status=status, reason=reason, direction=direction if status == "shifted" else None,
        change_at=change_at if status == "shifted" else None, effect=effect, effect_rel=eff_rel,
        effect_ci=ci, p_value=p_value, baseline=base.name, method=method,
        change_kind=change_kind if status == "shifted" else None, details=details, **common)


def _trend_line(x: np.ndarray, dloc: int) -> np.ndarray:
    """Straight line fitted to the pre-deploy part, evaluated over the whole window."""
    pre = x[:dloc]
    ok = np.isfinite(pre)
    t = np.flatnonzero(ok).astype(float)
    coef = np.polyfit(t, pre[ok], 1)
    line = np.polyval(coef, np.arange(x.size, dtype=float))
    return line - np.polyval(coef, float(dloc))
