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
   (steps at 0-25 min lags, linear ramps up to ``ramp_s``) plus a spread test
   (:mod:`.tests_`); ``change_at`` is refined on every step of the ramp window.
7. Effect: Hodges-Lehmann shift with an AR-aware, block-bootstrap interval
   (:mod:`.effects`); a significant shift below ``min_effect``/``min_effect_rel`` is
   reported ``unchanged`` with that reason.

"Shifted" therefore means: changed at the deploy or during its ramp, beyond what a
level (+ linear drift) with AR(1) noise would produce, in the chosen baseline.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from . import baselines as bl
from .changepoints import _running_median5, changepoints, robust_noise_scale
from .effects import shift_with_ci
from .result import NotASeries, SeriesResult
from .tests_ import (
    NO_TREND_Z,
    TREND_Z,
    UNIT_ROOT_PHI,
    ar1_transform,
    directional_pvalue,
    estimate_phi,
    fit_null,
    poisson_rate_test,
    slope_z,
    spread_test,
)

__all__ = ["verify_series"]

KINDS = ("gauge", "ratio", "rate", "latency", "count", "counter")
EXPECTS = ("increase", "decrease", "any", "unchanged")
#: Share of alpha spent on the level test; the rest goes to the spread test.
LEVEL_WEIGHT = 0.8
#: Step lags (minutes after the deploy) and ramp lengths (minutes) scanned as change shapes.
STEP_LAGS_MIN = (0, 1, 2, 3, 4, 5, 6, 7, 10, 15)
RAMP_LEN_MIN = (5, 10, 20, 30)
RAMP_LAGS_MIN = (0,)
#: An earlier change point is cut off when its own step z-score exceeds this.
EARLIER_CHANGE_Z = 4.5
#: At most this many change starts are scored in one pass of the change_at refinement.
REFINE_STARTS = 40
#: Squared-z tolerance within which the earliest change start is preferred.
LOCATION_TIE = 2.0
#: ... and its z-score once a straight-line trend is allowed must exceed this.
EARLIER_CHANGE_TREND_Z = 3.0
#: Clip band for outliers, in robust noise scales around a running median of 5.
CLIP_K = 5.0
#: The effect compares the settled level after the change with this much history before it.
EFFECT_BEFORE_S = 3600.0
#: At least this many points of stable history are wanted after an earlier change.
MIN_STABLE_PRE = 20


def _coerce_series(series: Any) -> pd.Series:
    if isinstance(series, pd.DataFrame):
        if series.shape[1] != 1:
            raise NotASeries(
                f"verify_series takes one series, got a DataFrame with {series.shape[1]} columns: pick one"
            )
        series = series.iloc[:, 0]
    if not isinstance(series, pd.Series):
        raise NotASeries(
            f"verify_series needs a pandas Series on a DatetimeIndex, got {type(series).__name__}: "
            "build one with pandas.Series(values, index=pandas.DatetimeIndex(times, tz='UTC'))"
        )
    if not isinstance(series.index, pd.DatetimeIndex):
        raise NotASeries(
            f"the series index must be a DatetimeIndex, got {type(series.index).__name__}: "
            "convert with series.index = pandas.to_datetime(series.index, utc=True)"
        )
    try:
        values = pd.to_numeric(series, errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise NotASeries(f"the series values must be numeric: {exc}") from exc
    idx = series.index
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    v = values.to_numpy(dtype=float, copy=True)
    v[~np.isfinite(v)] = np.nan
    out = pd.Series(v, index=idx)
    if idx.hasnans:
        out = out[~out.index.isna()]
    if not out.index.is_monotonic_increasing:
        out = out.sort_index()
    if not out.index.is_unique:
        out = out.groupby(level=0).mean()
    return out


def _coerce_time(ts: Any) -> pd.Timestamp:
    try:
        t = pd.Timestamp(ts)
    except (TypeError, ValueError) as exc:
        raise NotASeries(f"deploy_at must be a timestamp (datetime or RFC 3339 string), got {ts!r}") from exc
    if t is pd.NaT or pd.isna(t):
        raise NotASeries("deploy_at is missing (NaT): pass the deploy's start time")
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _grid(s: pd.Series, step_s: float) -> tuple[pd.Timestamp, np.ndarray]:
    t0 = s.index[0]
    pos = np.rint((s.index - t0).total_seconds().to_numpy() / step_s).astype(np.int64)
    n = int(pos[-1]) + 1
    vals = s.to_numpy(dtype=float)
    ok = np.isfinite(vals)
    sums = np.bincount(pos[ok], weights=vals[ok], minlength=n)
    cnt = np.bincount(pos[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    return t0, y


def _counter_increases(y: np.ndarray) -> np.ndarray:
    out = np.full_like(y, np.nan)
    ok = np.flatnonzero(np.isfinite(y))
    if ok.size < 2:
        return out
    v = y[ok]
    inc = np.diff(v)
    inc = np.where(inc < 0, v[1:], inc)  # a drop is a reset: the new value counts from 0
    out[ok[1:]] = inc
    return out


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    s = f"{x:.3g}" if (ax >= 1e-3 or ax == 0) and ax < 1e5 else f"{x:.2e}"
    return s + unit


def _minutes(seconds: float) -> str:
    m = seconds / 60.0
    return f"{m:.0f} min" if m >= 1.5 else f"{seconds:.0f} s"


class _Ctx:
    """Shared state of one verification (kept small; not part of the API)."""

    def __init__(self, t0: pd.Timestamp, step_s: float) -> None:
        self.t0 = t0
        self.step_s = step_s

    def at(self, pos: int) -> datetime:
        return (self.t0 + pd.Timedelta(seconds=pos * self.step_s)).to_pydatetime()


def verify_series(series: Any, deploy_at: Any, expect: str = "any", **options: Any) -> SeriesResult:
    """Test whether ``series`` changed at ``deploy_at`` (see the module docstring for the method).

    ``expect``: ``"any"`` (or ``"unchanged"``, a deploy that declares no effect) tests
    both directions alike; ``"increase"``/``"decrease"`` gives
    80 % of the level test's alpha to the declared direction and 20 % to the opposite one
    (more power for the announced change; a move the other way is still reported, as
    ``direction``). ``status`` never depends on whether the direction matches: compare
    ``direction`` with the expectation to tell "confirmed" from "opposite".

    Options: ``min_effect`` (absolute, metric units), ``min_effect_rel`` (fraction of the
    level before), ``alpha`` (0.05), ``kind`` (gauge, ratio, rate, latency, count, or
    counter for a raw cumulative counter), ``min_points`` (10, per side), ``ramp_s``
    (1800: how long a rollout may take to reach full effect; ``ramp`` is an alias),
    ``counts`` (a Series on the same times: for ``kind="ratio"`` the denominators, e.g.
    requests per step; otherwise the event counts behind each point; selects the
    Poisson rate test), ``seed`` (0), ``window_before_s`` (10800), ``window_after_s``
    (3600), ``max_gap_frac`` (0.5: share of missing points after the deploy that makes
    the answer inconclusive).

    Raises :class:`NotASeries` when the input is not a time series at all and
    ``ValueError`` for an unknown ``expect``/``kind``; everything else (no data, too few
    points, constant series) is an ``inconclusive`` result with a reason.
    """
    opts = dict(options)
    min_effect = opts.pop("min_effect", None)
    min_effect_rel = opts.pop("min_effect_rel", None)
    alpha = float(opts.pop("alpha", 0.05))
    kind = str(opts.pop("kind", "gauge") or "gauge")
    min_points = int(opts.pop("min_points", 10) or 10)
    ramp_s = float(opts.pop("ramp_s", opts.pop("ramp", 1800.0)) or 0.0)
    opts.pop("ramp", None)
    counts = opts.pop("counts", None)
    seed = int(opts.pop("seed", 0) or 0)
    window_before_s = float(opts.pop("window_before_s", 3 * 3600.0))
    window_after_s = float(opts.pop("window_after_s", 3600.0))
    max_gap_frac = float(opts.pop("max_gap_frac", 0.5))
    ignored = sorted(opts)
    if expect not in EXPECTS:
        raise ValueError(f"expect must be one of {EXPECTS}, got {expect!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")

    s = _coerce_series(series)
    deploy = _coerce_time(deploy_at)
    base_details: dict[str, Any] = {"kind": kind, "expect": expect}
    if ignored:
        base_details["ignored_options"] = ignored
    finite = s.dropna()
    if finite.empty:
        return SeriesResult("inconclusive", "No data: the series is empty or all NaN around the deploy; "
                            "check the query and that the metric is scraped.", method="none",
                            details=base_details)
    if len(s) < 2:
        return SeriesResult("inconclusive", "Only one sample: cannot tell the step or compare before and after.",
                            method="none", n_before=int(finite.index[0] < deploy),
                            n_after=int(finite.index[0] >= deploy), details=base_details)
    diffs = np.diff((s.index - s.index[0]).total_seconds().to_numpy())
    step_s = float(np.median(diffs[diffs > 0])) if np.any(diffs > 0) else 60.0
    t0, y = _grid(s, step_s)
    if kind == "counter":
        y = _counter_increases(y)
    ctx = _Ctx(t0, step_s)
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
                                f"wait about {_minutes(needed)} more.", method="none",
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
        c = _coerce_series(counts)
        c = c.reindex(s.index) if not c.index.equals(s.index) else c
        _, cnt_arr = _grid(c, step_s) if len(c) else (t0, None)
        if cnt_arr is not None and cnt_arr.size < n:
            cnt_arr = np.concatenate([cnt_arr, np.full(n - cnt_arr.size, np.nan)])
    window = y[pre_start:post_end]
    fin = window[np.isfinite(window)]
    integer_like = bool(np.all(fin >= 0) and np.all(np.abs(fin - np.rint(fin)) < 1e-9))
    use_poisson = cnt_arr is not None or (
        integer_like and (kind == "count" or (kind != "counter" and float(np.median(fin)) <= 3.0))
    )
    if kind == "counter" and integer_like and float(np.median(fin)) <= 20:
        use_poisson = True
    args = dict(alpha=alpha, expect=expect, min_effect=min_effect, min_effect_rel=min_effect_rel,
                seed=seed, ramp_s=ramp_s, details=base_details, common=common, ctx=ctx)
    if use_poisson:
        return _verify_counts(y, cnt_arr, kind, pre_start, d, post_end, **args)
    return _verify_level(y, pre_start, d, post_end, kind, **args)


def _decide(
    *,
    significant: bool,
    effect: float,
    level: float,
    direction: str | None,
    min_effect: float | None,
    min_effect_rel: float | None,
) -> tuple[str, str | None]:
    """Apply the minimum meaningful effect. Returns (status, why-not note or None)."""
    if not significant:
        return "unchanged", None
    if min_effect is not None and math.isfinite(effect) and abs(effect) < float(min_effect):
        return "unchanged", f"below the minimum meaningful effect of {_fmt(float(min_effect))}"
    if min_effect_rel is not None and math.isfinite(effect) and level != 0 and math.isfinite(level):
        if abs(effect) / abs(level) < float(min_effect_rel):
            return "unchanged", f"below the minimum meaningful effect of {float(min_effect_rel):.0%}"
    return "shifted", None


def _meaningful(min_effect: float | None, min_effect_rel: float | None, level: float) -> float | None:
    """The smallest change that matters, in metric units (the larger of the two floors)."""
    floors = []
    if min_effect is not None:
        floors.append(abs(float(min_effect)))
    if min_effect_rel is not None and math.isfinite(level) and level != 0:
        floors.append(abs(float(min_effect_rel) * level))
    return max(floors) if floors else None


def _unit_scale(x: np.ndarray) -> float:
    """A power of two bringing extreme magnitudes (beyond 1e+-100) near 1; else 1.0 (exact)."""
    fin = np.abs(x[np.isfinite(x)])
    m = float(fin.max()) if fin.size else 0.0
    if m == 0.0 or 1e-100 <= m <= 1e100:
        return 1.0
    return float(2.0 ** round(math.log2(m)))


def _rel(effect: float, level: float) -> float | None:
    if not (math.isfinite(effect) and math.isfinite(level)) or abs(level) < 1e-12:
        return None
    return effect / abs(level)


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
    ctx: _Ctx,
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
    level = float(np.nanmedian(raw[:dw])) * unit
    if scale <= 0 or np.ptp(pre_fin) == 0:
        return _constant_pre(pre_fin * unit, post_fin * unit, raw * unit, dw, kind, level, base.name, alpha,
                             expect, min_effect, min_effect_rel, details, common, ctx, pre_start)
    # Clip outliers around a running median of the finite points.
    rc = r.copy()
    med = _running_median5(r[ok])
    rc[ok] = np.clip(r[ok], med - CLIP_K * scale, med + CLIP_K * scale)
    n_clipped = int(np.sum(rc[ok] != r[ok]))

    # Drop history before a significant earlier change.
    pre_lo = 0
    earlier: list[str] = []
    cps = [c for c in changepoints(rc[:dw]) if 0 < c < dw]
    if cps:
        phi0 = estimate_phi(_detrend(rc[:dw]))
        nf = fit_null(rc[:dw], dw, False, phi0)
        nf_trend = fit_null(rc[:dw], dw, True, phi0)
        if nf is not None and nf_trend is not None:
            shapes = np.zeros((dw, len(cps)))
            for j, c in enumerate(cps):
                shapes[c:, j] = 1.0
            tz, _ = nf.scores(shapes)
            tz_trend, _ = nf_trend.scores(shapes)
            # A step, not a drift: significant alone and still clear of a straight line.
            sig = [c for c, z, zt in zip(cps, tz, tz_trend, strict=True)
                   if abs(z) > EARLIER_CHANGE_Z and abs(zt) > EARLIER_CHANGE_TREND_Z]
            if sig:
                pre_lo = max(sig)
                earlier = [_iso_str(ctx.at(pre_start + c)) for c in sig]
    if dw - pre_lo < MIN_STABLE_PRE and int(np.isfinite(rc[pre_lo:dw]).sum()) < MIN_STABLE_PRE:
        when = ctx.at(pre_start + pre_lo)
        mins = (dw - pre_lo) * step_s
        return SeriesResult(
            "inconclusive",
            f"The series changed at {_iso_str(when)}, {_minutes(mins)} before the deploy, leaving too little "
            "stable history to judge the deploy; look at what changed then, or rerun later.",
            change_at=None, baseline=base.name, method="change-point attribution",
            details=dict(details, earlier_changes=earlier), **common)
    w = rc[pre_lo:]
    dloc = dw - pre_lo
    phi = estimate_phi(_detrend(w[:dloc]))
    z_trend = slope_z(w, dloc, phi)
    fit = fit_null(w, dloc, z_trend > TREND_Z, phi)
    if fit is None:
        return _constant_pre(pre_fin * unit, post_fin * unit, raw * unit, dw, kind, level, base.name, alpha,
                             expect, min_effect, min_effect_rel, details, common, ctx, pre_start)
    nw = w.size
    shapes, labels = _candidate_shapes(nw, dloc, step_s, ramp_s, fit.tpos)
    tstat, hn = fit.scores(shapes)
    p_mean, sign = directional_pvalue(tstat, hn, seed, expect)
    if NO_TREND_Z < z_trend <= TREND_Z:
        # A slope that may or may not be there: the change must stand with it too.
        alt = fit_null(w, dloc, True, phi)
        if alt is not None:
            p_mean = max(p_mean, directional_pvalue(*alt.scores(shapes), seed, expect)[0])
    # Spread: prewhitened residuals after vs before, each side around its own median.
    post_rows = fit.tpos >= dloc
    p_var, spread_ratio = spread_test(fit.resid[fit.pre_rows], fit.resid[post_rows])
    if p_var / (1.0 - LEVEL_WEIGHT) <= alpha and spread_ratio > 1.3:
        # The spread grew: weight rows after the deploy down so noise is not read as a level shift.
        wfit = fit_null(w, dloc, fit.trend, phi, post_scale=spread_ratio)
        if wfit is not None:
            fit = wfit
            tstat, hn = fit.scores(shapes)
            p_mean, sign = directional_pvalue(tstat, hn, seed, expect)
    unit_root = phi >= UNIT_ROOT_PHI
    if unit_root:
        # Near a unit root the AR(1) fit may be too kind: also require rejection as a random walk.
        rw = fit_null(w, dloc, True, 1.0)
        if rw is not None:
            p_mean = max(p_mean, directional_pvalue(*rw.scores(shapes), seed, expect)[0])
    # Refine where the change begins: every start within the ramp window, steps and ramps.
    tau, length_best = _refine_start(fit, nw, dloc, step_s, ramp_s, sign)
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
    sigma = fit.scale * math.sqrt(fit.epsi2) / math.sqrt(max(1e-6, 1 - phi * phi))
    bi = before_idx[np.isfinite(v[before_idx])]
    ai = after_idx[np.isfinite(v[after_idx])]
    effect, ci = shift_with_ci(v[bi], v[ai], bi, ai, sigma, phi, alpha, seed)
    effect, ci = effect * unit, (ci[0] * unit, ci[1] * unit)

    p_level = min(1.0, p_mean / LEVEL_WEIGHT)
    p_spread = min(1.0, p_var / (1.0 - LEVEL_WEIGHT))
    p_value = min(p_level, p_spread)
    method = (f"AR(1)-prewhitened robust max-score test over {len(labels)} change shapes"
              f"{' with linear trend' if fit.trend else ''} (phi={phi:.2f})"
              f"{', also as a random walk' if unit_root else ''} + spread test")
    change_kind = None
    direction: str | None = None
    significant = False
    if p_level <= alpha:
        significant, change_kind = True, "level"
        direction = "increase" if sign > 0 else "decrease"
    elif p_spread <= alpha:
        significant, change_kind = True, "variance"
    status, below = _decide(significant=significant, effect=effect if change_kind == "level" else math.inf,
                            level=level, direction=direction, min_effect=min_effect,
                            min_effect_rel=min_effect_rel)
    change_at = ctx.at(pre_start + pre_lo + tau)
    details = dict(details, phi=phi, trend=fit.trend, clipped=n_clipped, earlier_changes=earlier,
                   shape=kind_best if kind_best == "step" else f"ramp {length_best * step_s / 60:.0f} min",
                   p_level=p_level, p_spread=p_spread, spread_ratio=spread_ratio,
                   pre_used_from=_iso_str(ctx.at(pre_start + pre_lo)))
    eff_rel = _rel(effect, level)
    base_txt = "" if base.name == bl.PRE_WINDOW else f" against the {base.name} baseline"
    if status == "shifted" and change_kind == "level":
        reason = (f"{direction.capitalize() if direction else 'Change'} of {_fmt(effect)}"
                  f"{'' if eff_rel is None else f' ({eff_rel:+.0%})'} starting {_iso_str(change_at)}"
                  f"{base_txt} (p={p_value:.2g}).")
    elif status == "shifted":
        reason = (f"The spread changed by a factor of {_fmt(spread_ratio)} at the deploy{base_txt} "
                  f"while the level did not move significantly (p={p_value:.2g}).")
    elif below:
        reason = f"A change of {_fmt(effect)} at the deploy is significant but {below}."
        change_kind = change_kind or "level"
    else:
        reason = (f"No change at the deploy{base_txt}: shift {_fmt(effect)} "
                  f"(CI {_fmt(ci[0])} to {_fmt(ci[1])}), p={p_value:.2g}.")
        if earlier:
            reason = reason[:-1] + f"; an earlier change at {earlier[-1]} is not attributed to the deploy."
        floor = _meaningful(min_effect, min_effect_rel, level)
        if floor is not None and max(abs(ci[0]), abs(ci[1])) >= floor:
            reason = reason[:-1] + (f"; a change of {_fmt(floor)} (the minimum meaningful effect) cannot "
                                    "be ruled out yet: more data after the deploy would narrow it.")
    return SeriesResult(
        status=status, reason=reason, direction=direction if status == "shifted" else None,
        change_at=change_at if status == "shifted" else None, effect=effect, effect_rel=eff_rel,
        effect_ci=ci, p_value=p_value, baseline=base.name, method=method,
        change_kind=change_kind if status == "shifted" else None, details=details, **common)


def _residual_with(fit: Any, shape: np.ndarray) -> np.ndarray:
    """Prewhitened residuals once a level change of the given shape is fitted too."""
    gt = ar1_transform(fit.tpos, shape[fit.tpos], fit.phi) * fit.weights
    h = gt - fit.q @ (fit.q.T @ gt)
    hh = float(h @ h)
    beta = float(h @ fit.resid) / hh if hh > 0 else 0.0
    return fit.resid - beta * h


def _iso_str(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _detrend(x: np.ndarray) -> np.ndarray:
    ok = np.isfinite(x)
    out = np.full_like(x, np.nan)
    if ok.sum() < 3:
        return out
    t = np.flatnonzero(ok).astype(float)
    coef = np.polyfit(t, x[ok], 1)
    out[ok] = x[ok] - np.polyval(coef, t)
    return out


def _trend_line(x: np.ndarray, dloc: int) -> np.ndarray:
    """Straight line fitted to the pre-deploy part, evaluated over the whole window."""
    pre = x[:dloc]
    ok = np.isfinite(pre)
    t = np.flatnonzero(ok).astype(float)
    coef = np.polyfit(t, pre[ok], 1)
    line = np.polyval(coef, np.arange(x.size, dtype=float))
    return line - np.polyval(coef, float(dloc))


def _shape(n: int, start: int, length: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    if length <= 0:
        return (t >= start).astype(float)
    return np.clip((t - start + 1) / (length + 1), 0.0, 1.0)


def _candidate_shapes(
    n: int, dloc: int, step_s: float, ramp_s: float, tpos: np.ndarray
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    last = int(tpos[-1])
    cols: list[np.ndarray] = []
    labels: list[tuple[str, int]] = []
    seen: set[tuple[str, int] | tuple[str, int, int]] = set()
    max_lag = max(0.0, ramp_s)
    for m in STEP_LAGS_MIN:
        if m * 60 > max_lag and m > 0:
            continue
        lag = int(round(m * 60 / step_s))
        start = dloc + lag
        if start > last - 2 or ("step", start) in seen:
            continue
        seen.add(("step", start))
        cols.append(_shape(n, start, 0))
        labels.append(("step", 0))
    for m in RAMP_LEN_MIN:
        if m * 60 > max(ramp_s, 0.0):
            continue
        length = int(round(m * 60 / step_s))
        for lag_m in RAMP_LAGS_MIN:
            start = dloc + int(round(lag_m * 60 / step_s))
            if length < 2 or ("ramp", length, start) in seen or start > last - 2:
                continue
            seen.add(("ramp", length, start))
            cols.append(_shape(n, start, length))
            labels.append(("ramp", length))
    return np.column_stack(cols), labels


def _shapes(n: int, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Columns of step (length 0) or ramp shapes, vectorised: rows are window positions."""
    t = np.arange(n, dtype=float)[:, None] - starts[None, :] + 1.0
    return np.clip(t / (lengths[None, :] + 1.0), 0.0, 1.0) * (t > 0)


def _refine_start(fit: Any, n: int, dloc: int, step_s: float, ramp_s: float, sign: float) -> tuple[int, int]:
    """Best (start, ramp length) over the starts in the ramp window: steps and ramps.

    Fine series (1 s steps: 1,800 starts) are scanned coarse to fine: every
    ``stride``-th start first, then a finer grid around the best one, down to every start.
    """
    hi = min(int(fit.tpos[-1]) - 1, dloc + int(round(ramp_s / step_s)))
    starts = np.arange(dloc, max(dloc, hi) + 1)
    lengths = [0] + [
        int(round(m * 60 / step_s)) for m in RAMP_LEN_MIN if m * 60 <= ramp_s and int(round(m * 60 / step_s)) >= 2
    ]
    while True:
        stride = max(1, -(-starts.size // REFINE_STARTS))
        best = _best_start(fit, n, starts[::stride], lengths, hi, sign)
        if stride == 1:
            return best
        starts = starts[(starts >= best[0] - stride) & (starts <= best[0] + stride)]


def _best_start(fit: Any, n: int, starts: np.ndarray, lengths: list[int], hi: int, sign: float) -> tuple[int, int]:
    cs, cl = [], []
    for length in lengths:
        ok = starts if length == 0 else starts[starts + length <= hi + length // 2]
        cs.append(ok)
        cl.append(np.full(ok.size, float(length)))
    all_s, all_l = np.concatenate(cs), np.concatenate(cl)
    t = sign * fit.scores(_shapes(n, all_s, all_l))[0]
    # Near-ties (within LOCATION_TIE in squared z, about one log-likelihood unit): the change
    # begins at the earliest start that explains the data about as well.
    tmax = float(np.max(t))
    ok = np.flatnonzero((t > 0) & (t**2 >= tmax**2 - LOCATION_TIE))
    if ok.size == 0:
        ok = np.array([int(np.argmax(t))])
    first = ok[all_s[ok] == all_s[ok].min()]
    i = int(first[np.argmax(t[first])])
    return int(all_s[i]), int(all_l[i])


def _constant_pre(pre_fin: np.ndarray, post_fin: np.ndarray, raw: np.ndarray, dw: int, kind: str,
                  level: float, baseline: str, alpha: float, expect: str, min_effect: float | None,
                  min_effect_rel: float | None, details: dict[str, Any], common: dict[str, Any],
                  ctx: _Ctx, pre_start: int) -> SeriesResult:
    """No spread before the deploy: a constant metric (0 errors, a fixed gauge)."""
    c = float(np.median(pre_fin)) if pre_fin.size else float("nan")
    differs = np.abs(post_fin - c) > 1e-12 * max(1.0, abs(c))
    k = int(differs.sum())
    method = "exact test against a constant history"
    if k == 0:
        if kind in ("ratio", "rate", "count", "counter"):
            return SeriesResult("unchanged", f"Constant at {_fmt(c)} before and after the deploy.",
                                effect=0.0, effect_rel=0.0 if c else None, effect_ci=(0.0, 0.0), p_value=1.0,
                                baseline=baseline, method=method, details=details, **common)
        return SeriesResult("inconclusive", f"The series is constant at {_fmt(c)} before and after the "
                            "deploy: nothing varies, so no test can run; check the query.",
                            baseline=baseline, method=method, details=details, **common)
    # Chance that a post point leaves a constant that held for n_pre points (Laplace rule).
    from scipy import stats as sps

    p0 = 1.0 / (pre_fin.size + 2)
    p = float(sps.binom.sf(k - 1, post_fin.size, p0))
    effect = float(np.median(post_fin) - c) if np.median(post_fin) != c else float(np.mean(post_fin) - c)
    direction = "increase" if effect > 0 else "decrease"
    status, below = _decide(significant=p <= alpha, effect=effect, level=level, direction=direction,
                            min_effect=min_effect, min_effect_rel=min_effect_rel)
    first = int(np.flatnonzero(np.isfinite(raw[dw:]) & (np.abs(raw[dw:] - c) > 0))[0]) + dw
    if status == "shifted":
        reason = (f"Constant at {_fmt(c)} before the deploy; {k} of {post_fin.size} points after it differ "
                  f"({direction} of {_fmt(effect)}, p={p:.2g}).")
    elif below:
        reason = f"Constant at {_fmt(c)} before; the change of {_fmt(effect)} after is {below}."
    else:
        reason = (f"Constant at {_fmt(c)} before; {k} of {post_fin.size} points after differ, "
                  f"not enough to call a change (p={p:.2g}).")
    return SeriesResult(status, reason, direction=direction if status == "shifted" else None,
                        change_at=ctx.at(pre_start + first) if status == "shifted" else None,
                        effect=effect, effect_rel=_rel(effect, level), effect_ci=None, p_value=p,
                        baseline=baseline, method=method,
                        change_kind="level" if status == "shifted" else None, details=details, **common)


def _verify_counts(
    y: np.ndarray,
    cnt: np.ndarray | None,
    kind: str,
    pre_start: int,
    d: int,
    post_end: int,
    *,
    alpha: float,
    expect: str,
    min_effect: float | None,
    min_effect_rel: float | None,
    seed: int,
    ramp_s: float,
    details: dict[str, Any],
    common: dict[str, Any],
    ctx: _Ctx,
) -> SeriesResult:
    """Low counts: Poisson rate test on events before vs after (exposure = steps or ``counts``)."""
    del seed, ramp_s
    yb, ya = y[pre_start:d], y[d:post_end]
    if cnt is None:
        ok_b, ok_a = np.isfinite(yb), np.isfinite(ya)
        ev_b, ev_a = yb[ok_b], ya[ok_a]
        ex_b, ex_a = np.ones(ev_b.size), np.ones(ev_a.size)
        unit_note = "per step"
    else:
        cb, ca = cnt[pre_start:d], cnt[d:post_end]
        ok_b = np.isfinite(yb) & np.isfinite(cb) & (cb >= 0)
        ok_a = np.isfinite(ya) & np.isfinite(ca) & (ca >= 0)
        if kind == "ratio":
            ev_b, ev_a = yb[ok_b] * cb[ok_b], ya[ok_a] * ca[ok_a]
            ex_b, ex_a = cb[ok_b], ca[ok_a]
            unit_note = "per unit of the denominator"
        else:
            ev_b, ev_a = cb[ok_b], ca[ok_a]
            ex_b, ex_a = np.ones(ev_b.size), np.ones(ev_a.size)
            unit_note = "events per step"
    if ex_b.sum() <= 0 or ex_a.sum() <= 0:
        return SeriesResult("inconclusive", "No exposure (zero denominators) before or after the deploy.",
                            method="Poisson rate test", baseline=bl.PRE_WINDOW, details=details, **common)
    rt = poisson_rate_test(ev_b, ev_a, ex_b, ex_a, alpha, expect)
    if cnt is None or kind == "ratio":
        scale_units = 1.0
    else:  # express the change in the series' own units
        mb, me = float(np.nanmean(yb[ok_b])), float(np.mean(ev_b)) if ev_b.size else 0.0
        scale_units = mb / me if me > 0 else 1.0
    level = rt.rate_before * scale_units
    effect = (rt.rate_after - rt.rate_before) * scale_units
    ci = (level * (rt.ratio_ci[0] - 1.0), level * (rt.ratio_ci[1] - 1.0))
    if level == 0:
        ci = (0.0, float(rt.rate_after * scale_units * 2))
    direction = "increase" if effect > 0 else "decrease" if effect < 0 else None
    status, below = _decide(significant=rt.p_value <= alpha and direction is not None, effect=effect,
                            level=level, direction=direction, min_effect=min_effect,
                            min_effect_rel=min_effect_rel)
    details = dict(details, rate_before=rt.rate_before, rate_after=rt.rate_after, dispersion=rt.dispersion,
                   events_before=float(ev_b.sum()), events_after=float(ev_a.sum()), rate_unit=unit_note)
    ev_txt = f"{ev_b.sum():.0f} events before, {ev_a.sum():.0f} after"
    if status == "shifted":
        reason = (f"Event rate {'rose' if effect > 0 else 'fell'} from {_fmt(level)} to "
                  f"{_fmt(level + effect)} ({ev_txt}, p={rt.p_value:.2g}).")
    elif below:
        reason = f"The rate change of {_fmt(effect)} is significant but {below}."
    else:
        reason = f"No change in event rate at the deploy ({ev_txt}, p={rt.p_value:.2g})."
    first_after = d + int(np.flatnonzero(np.isfinite(ya))[0]) if np.isfinite(ya).any() else d
    return SeriesResult(
        status=status, reason=reason, direction=direction if status == "shifted" else None,
        change_at=ctx.at(first_after) if status == "shifted" else None, effect=effect,
        effect_rel=_rel(effect, level), effect_ci=ci, p_value=rt.p_value, baseline=bl.PRE_WINDOW,
        method=rt.method, change_kind="rate" if status == "shifted" else None, details=details, **common)
