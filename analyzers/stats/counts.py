"""The two ``verify_series`` paths that do not use the AR(1) level test: low counts
(Poisson rate test) and a history without any spread (a constant metric)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as sps

from analyzers.stats import baselines as bl
from analyzers.stats.reporting import Ctx, decide, fmt, fmt_change, rel
from analyzers.stats.result import Direction, SeriesResult
from analyzers.stats.tests_ import poisson_rate_test
from analyzers.text import format_values, p_equals

__all__ = ["verify_constant", "verify_counts"]


def verify_constant(pre_fin: np.ndarray, post_fin: np.ndarray, raw: np.ndarray, dw: int, kind: str,
                  level: float, baseline: str, alpha: float, expect: str, min_effect: float | None,
                  min_effect_rel: float | None, details: dict[str, Any], common: dict[str, Any],
                  ctx: Ctx, pre_start: int) -> SeriesResult:
    """No spread before the deploy: a constant metric (0 errors, a fixed gauge)."""
    c = float(np.median(pre_fin)) if pre_fin.size else float("nan")
    differs = np.abs(post_fin - c) > 1e-12 * max(1.0, abs(c))
    k = int(differs.sum())
    method = "exact test against a constant history"
    if k == 0:
        if kind in ("ratio", "rate", "count", "counter"):
            return SeriesResult("unchanged", f"Constant at {fmt(c, ctx.unit)} before and after the deploy.",
                                effect=0.0, effect_rel=0.0 if c else None, effect_ci=(0.0, 0.0), p_value=1.0,
                                baseline=baseline, method=method, details=details, **common)
        return SeriesResult("inconclusive", f"The series is constant at {fmt(c, ctx.unit)} before and after the "
                            "deploy: nothing varies, so no test can run; check the query.",
                            baseline=baseline, method=method, details=details, **common)
    # Chance that a post point leaves a constant that held for n_pre points (Laplace rule).
    p0 = 1.0 / (pre_fin.size + 2)
    p = float(sps.binom.sf(k - 1, post_fin.size, p0))
    effect = float(np.median(post_fin) - c) if np.median(post_fin) != c else float(np.mean(post_fin) - c)
    direction: Direction = "increase" if effect > 0 else "decrease"
    status, below = decide(significant=p <= alpha, effect=effect, level=level, direction=direction,
                            min_effect=min_effect, min_effect_rel=min_effect_rel, unit=ctx.unit)
    first = int(np.flatnonzero(np.isfinite(raw[dw:]) & (np.abs(raw[dw:] - c) > 0))[0]) + dw
    if status == "shifted":
        reason = (f"Constant at {fmt(c, ctx.unit)} before the deploy; {k} of {post_fin.size} points after it differ "
                  f"({direction} of {fmt_change(effect, ctx.unit, signed=False)}, {p_equals(p)}).")
    elif below:
        reason = f"Constant at {fmt(c, ctx.unit)} before; the change of {fmt_change(effect, ctx.unit)} after is {below}."
    else:
        reason = (f"Constant at {fmt(c, ctx.unit)} before; {k} of {post_fin.size} points after differ, "
                  f"not enough to call a change ({p_equals(p)}).")
    return SeriesResult(status, reason, direction=direction if status == "shifted" else None,
                        change_at=ctx.at(pre_start + first) if status == "shifted" else None,
                        effect=effect, effect_rel=rel(effect, level), effect_ci=None, p_value=p,
                        baseline=baseline, method=method,
                        change_kind="level" if status == "shifted" else None, details=details, **common)


def verify_counts(
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
    details: dict[str, Any],
    common: dict[str, Any],
    ctx: Ctx,
) -> SeriesResult:
    """Low counts: Poisson rate test on events before vs after (exposure = steps or ``counts``)."""
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
    direction: Direction | None = "increase" if effect > 0 else "decrease" if effect < 0 else None
    status, below = decide(significant=rt.p_value <= alpha and direction is not None, effect=effect,
                            level=level, direction=direction, min_effect=min_effect,
                            min_effect_rel=min_effect_rel, unit=ctx.unit)
    details = dict(details, rate_before=rt.rate_before, rate_after=rt.rate_after, dispersion=rt.dispersion,
                   events_before=float(ev_b.sum()), events_after=float(ev_a.sum()), rate_unit=unit_note)
    ev_txt = f"{ev_b.sum():.0f} events before, {ev_a.sum():.0f} after"
    if status == "shifted":
        before_txt, after_txt = _levels(level, level + effect, ctx.unit)
        reason = (f"Event rate {'rose' if effect > 0 else 'fell'} from {before_txt} to "
                  f"{after_txt} ({ev_txt}, {p_equals(rt.p_value)}).")
    elif below:
        reason = f"The rate change of {fmt_change(effect, ctx.unit)} is significant but {below}."
    else:
        reason = f"No change in event rate at the deploy ({ev_txt}, {p_equals(rt.p_value)})."
    first_after = d + int(np.flatnonzero(np.isfinite(ya))[0]) if np.isfinite(ya).any() else d
    return SeriesResult(
        status=status, reason=reason, direction=direction if status == "shifted" else None,
        change_at=ctx.at(first_after) if status == "shifted" else None, effect=effect,
        effect_rel=rel(effect, level), effect_ci=ci, p_value=rt.p_value, baseline=bl.PRE_WINDOW,
        method=rt.method, change_kind="rate" if status == "shifted" else None, details=details, **common)


def _levels(before: float, after: float, unit: str) -> tuple[str, str]:
    """Two levels of one sentence on one scale (with the unit when there is one)."""
    if unit:
        a, b = format_values([before, after], unit)
        return a, b
    return fmt(before), fmt(after)
