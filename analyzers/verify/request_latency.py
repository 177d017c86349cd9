"""The ``latency_shift`` guard: the typical request's latency, read minute by minute from the
bucket counts and judged as a factor.

A metric with ``read_quantile`` (:class:`analyzers.config.MetricSpec`) is fetched as one range
query of bucket increases per bound (:func:`analyzers.verify.fetch.fetch_buckets`), read as that
quantile of each step's requests with log-probit interpolation
(:mod:`analyzers.stats.step_quantiles`), and tested on its log: the same one-look test and the
same confidence sequence as every metric (alpha split over the deploy's tested metrics, AR noise
model, placebos, transient allowance), where a shift of every request by a factor ``r`` is
``log r`` whatever the bounds. Its minimum effect is ``log(1 + min_effect_rel)``. The figures are
then turned back into seconds (``effect``, ``effect_ci``, ``before_value``, ``after_value``) and the
factor is kept as ``request_latency`` (docs/verdict-json.md), so reports read "requests x1.30
slower (99% CI x1.21-x1.39), median 99.1 ms -> 128 ms".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analyzers.config import MetricSpec
from analyzers.stats.step_quantiles import MIN_REQUESTS
from analyzers.text import ci_label, format_number, format_value, human_duration, p_equals


def log_series(series: pd.Series) -> pd.Series:
    """``log`` of a latency series (seconds); values that are not positive are missing."""
    v = series.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(np.isfinite(v) & (v > 0), np.log(np.where(v > 0, v, 1.0)), np.nan)
    return pd.Series(out, index=series.index, dtype=float)


def log_min_effect(spec: MetricSpec, min_effect: float | None) -> float | None:
    """The minimum effect on log latency: ``log(1 + min_effect_rel)`` (an absolute ``min_effect``
    in seconds has no meaning on this scale; a declared one is read as a fraction too)."""
    rel = min_effect if min_effect is not None else spec.min_effect_rel
    return math.log1p(rel) if rel is not None and rel > -1 else None


def quantile_name(q: float) -> str:
    return "median" if abs(q - 0.5) < 1e-12 else f"p{q * 100:g}"


def _factor(x: float | None) -> float | None:
    return math.exp(x) if x is not None and math.isfinite(x) else None


def _seconds(base: float | None, x: float | None) -> float | None:
    return base * math.expm1(x) if base is not None and x is not None and math.isfinite(x) else None


def factor_text(f: float | None) -> str:
    """``x1.30``: a factor to two decimals (three significant digits from x10)."""
    if f is None:
        return "x?"
    return f"x{f:.2f}" if f < 10 else f"x{format_number(f, 3)}"


def as_factor(res: dict[str, Any], quantile: float) -> dict[str, Any]:
    """A result tested on log latency, turned back into seconds, with the factor and a reason."""
    out = dict(res)
    b_log, a_log = res.get("before_value"), res.get("after_value")
    before = _factor(b_log)
    after = _factor(a_log)
    eff = res.get("effect")
    lo, hi = (res.get("effect_ci") or [None, None])[:2]
    name = quantile_name(quantile)
    info: dict[str, Any] = {
        "quantile": quantile, "factor": _factor(eff), "factor_ci": [_factor(lo), _factor(hi)],
        "log_effect": eff, "log_ci": [lo, hi], "before_s": before, "after_s": after, "min_requests": MIN_REQUESTS,
    }
    out.update(before_value=before, after_value=after, effect=_seconds(before, eff),
               effect_ci=[_seconds(before, lo), _seconds(before, hi)],
               effect_rel=math.expm1(eff) if eff is not None and math.isfinite(eff) else None)
    seq = res.get("sequential")
    if isinstance(seq, dict) and seq.get("interval"):
        s_lo, s_hi = seq["interval"]
        out["sequential"] = dict(seq, interval=[_seconds(before, s_lo), _seconds(before, s_hi)], log_interval=[s_lo, s_hi])
    f = info["factor"]
    way = "slower" if f is not None and f > 1 else "faster"
    levels = (f"{name} {format_value(before, 's')} -> {format_value(after, 's')}"
              if before is not None and after is not None else "")
    ci = f"{ci_label(out)} {factor_text(info['factor_ci'][0])}-{factor_text(info['factor_ci'][1])}"
    info["text"] = f"requests {factor_text(f)} {way} ({ci})" + (f", {levels}" if levels else "")
    status = res.get("status")
    read = f"the {name} of each minute's requests (read from its bucket counts)"
    old = str(res.get("reason") or "")
    if res.get("_vetoed"):
        reason = f"{read[0].upper()}{read[1:]} moved: {info['text']}. {old.rstrip('.')}"
    elif status == "shifted" and res.get("change_kind", "level") == "level":
        reason = f"Judged on {read}: certain at any look (always-valid {p_equals(res.get('p_value'))})"
    elif status == "shifted":
        reason = f"Judged on {read}: its spread changed, its level did not"
    elif status == "unchanged" and (res.get("sequential") or {}).get("status") == "shifted":  # certain, but small
        rel = math.expm1(res["_min_log"]) if res.get("_min_log") is not None else None
        reason = (f"Judged on {read}: {factor_text(f)}, certain at any look but below the minimum meaningful "
                  f"effect ({factor_text(1 + rel) if rel is not None else 'set'})")
    elif status == "inconclusive":
        reason = old.rstrip(".")
        thin = res.get("thin_minutes")
        if thin:
            reason = (f"Too few requests to read the {name} minute by minute: {thin * 100:.0f}% of the minutes since "
                      f"the deploy have fewer than {MIN_REQUESTS:g} (or all in one bucket), and such a minute is "
                      f"left out, never read. {reason}. With this little traffic raise [verification] step (more "
                      "requests per step) or judge latency_p99 alone")
    else:
        reason = f"No change certain at any look in {read}: {info['text']}"
    tr = res.get("transient")
    if isinstance(tr, dict) and tr.get("recovered"):
        reason += f"; transient at deploy, recovered after {human_duration(tr['recovered_after_s'])}"
    out["reason"] = reason + "."
    out.pop("_min_log", None)
    out.pop("_vetoed", None)
    out["request_latency"] = info
    return out


#: The lag of the second reading: the same minutes a day earlier.
DAY_S = 86400.0


#: The day before is smoothed over this long (centred): its load shape stays (a linear ramp exactly),
#: its minute-to-minute wander mostly goes, so the difference is hardly noisier than the series.
SMOOTH_S = 3600.0


def day_differenced(series: pd.Series, step_s: float) -> pd.Series | None:
    """``series`` minus the same minutes a day earlier, smoothed over :data:`SMOOTH_S` (centred;
    NaN where the day before is missing), or None when the series is not on a regular grid that
    divides a day."""
    lag = DAY_S / step_s
    if len(series) < 2 or abs(lag - round(lag)) > 1e-9:
        return None
    width = int(round(SMOOTH_S / step_s)) | 1
    before = series.shift(int(round(lag))).rolling(width, center=True, min_periods=max(2, width // 3)).mean()
    return series - before


def against_day_before(res: dict[str, Any], diff: pd.Series | None, path_on: Any, level_alpha: float,
                       until_s: float, min_log: float | None) -> dict[str, Any]:
    """A level shift of the log quantile, which must also be certain against the same minutes a day
    earlier (intersection-union: the p-value is the larger, the error rate over every look at most
    either sequence's).

    The median of a service's requests follows its load: on a morning ramp it rises for an hour
    whether anything was deployed or not, and read minute by minute from thousands of requests it
    is precise enough for that rise to be certain. The same confidence sequence (``path_on``) runs
    on the series minus itself a day earlier (``diff``), where a move the service makes every day at
    this hour cancels; the shift stands only if that sequence is certain of it too, in the same
    direction, and by at least the minimum effect. Without a day of data before the window
    (``diff`` None or the sequence cannot run) the first reading stands, and ``day_before`` says so.
    """
    if res.get("status") != "shifted" or res.get("change_kind", "level") != "level":
        return res
    path = path_on(diff) if diff is not None and diff.notna().any() else None
    if path is None or path.kind != "level":
        return dict(res, day_before={"status": "not compared", "why": "no day of data before the window"})
    seq = path.at(level_alpha, until_s)
    p = path.pvalue(until_s)
    est = seq.get("estimate")
    raw = seq.get("estimate_unclipped")
    if est is not None and raw is not None and math.isfinite(raw) and seq["direction"] in ("increase", "decrease"):
        est = max(est, raw) if seq["direction"] == "increase" else min(est, raw)
    lo, hi = seq["interval"]
    info = {"status": seq["status"], "direction": seq["direction"], "p_value": p, "log_effect": est,
            "log_ci": [lo, hi], "factor": _factor(est), "factor_ci": [_factor(lo), _factor(hi)]}
    out = dict(res, day_before=info, p_value=max(float(res.get("p_value") or 0.0), p))
    certain = seq["status"] == "shifted" and seq["direction"] == res.get("direction")
    small = certain and min_log is not None and est is not None and abs(est) < min_log
    if certain and not small:
        return out
    elo, ehi = out.get("effect_ci") or [None, None]
    why = (f"by {factor_text(info['factor'])}, below the minimum meaningful effect" if small else
           f"not certain at any look ({factor_text(info['factor_ci'][0])} to {factor_text(info['factor_ci'][1])}, "
           f"always-valid {p_equals(p)})")
    out.update(status="unchanged", direction=None, change_kind=None,
               effect_ci=[min(elo, 0.0) if elo is not None else None, max(ehi, 0.0) if ehi is not None else None],
               reason=(f"Against the same minutes a day earlier the move is {why}: it follows the time of day "
                       "(the service's load), not the deploy"), _vetoed=True)
    return out


def thin_share(grid: Any, reads: pd.Series, since: Any) -> float:
    """Share of the steps from ``since`` on whose bucket counts came but could not be read."""
    after = np.asarray(grid.index >= pd.Timestamp(since))
    counted = after & np.isfinite(grid.counts).all(axis=1) if grid.les else np.zeros(len(after), dtype=bool)
    if not after.any():
        return 0.0
    unread = counted & ~np.isfinite(reads.to_numpy(dtype=float))
    return round(float(unread.sum() / after.sum()), 4)
