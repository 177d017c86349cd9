"""The deploy verdict's level decisions at any look: confidence sequences per metric.

``verify_series`` gives the figures a reader wants (effect, baseline, spread, reasons) from one
fixed test. Called again at every poll, that test would spend its alpha again at every look.
So the *decision* on a level shift is taken from the metric's confidence sequence
(:func:`analyzers.stats.sequential.sequential_path`): with ``k`` tested metrics, each sequence
runs at ``alpha / k`` (Bonferroni), so the chance that a no-op deploy is *ever* called changed,
over every look anyone takes (scheduler checks, ``verify --wait`` polls, dashboard re-verify,
replay), stays at most ``alpha``. The reported interval is the sequence's interval at that
level, so interval and decision never disagree, and the p-value is the always-valid one.

The sequence's boundary is the finite-horizon line: its horizon is the end of the after-window
(``window_after_s`` + the rollout's ramp), which is also where every look stops: the fetch ends
there (``analysis_window``) and the path ignores later rows, so a re-verify, a replay or a
dashboard look after the horizon gives the final check's decision and spends nothing more.

A transient at the deploy (restart blip, cold cache) inside the allowance
(``verification.transient_s``, default 300 s) is reported, never judged.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from analyzers.stats.reporting import fmt_change, fmt_interval, meaningful
from analyzers.stats.sequential import DEFAULT_TRANSIENT_S, SequentialPath, sequential_path
from analyzers.text import human_duration, p_equals

if TYPE_CHECKING:
    from analyzers.config import Config
    from analyzers.model import Deploy
    from analyzers.verify.plan import MetricPlan


def transient_s(config: Config) -> float:
    """The transient allowance: ``verification.transient_s`` when the config has it."""
    return float(getattr(config.verification, "transient_s", DEFAULT_TRANSIENT_S))


def path_for(series: pd.Series, deploy: Deploy, plan: MetricPlan, config: Config, ramp: float) -> SequentialPath | None:
    """The metric's confidence sequence over the verifier's after-window (None if it cannot run)."""
    v = config.verification
    try:
        return sequential_path(series, deploy.started_at, plan.expect if plan.expect in ("increase", "decrease") else "any",
                               kind=plan.spec.kind, transient_s=transient_s(config),
                               window_before_s=v.window_before_s, window_after_s=v.window_after_s + ramp,
                               step_s=v.step_s, min_points=plan.spec.min_points)
    except (ValueError, ArithmeticError):
        return None


def _mins(s: float) -> str:
    return human_duration(s)


def apply(res: dict[str, Any], path: SequentialPath, k: int, alpha: float, now: datetime,
          min_effect: float | None, min_effect_rel: float | None, *, unit: str = "") -> dict[str, Any]:
    """``res`` with its level decision, p-value and interval taken from the sequence at ``alpha / k``.

    ``unit`` (the metric's) is written after every number of the reason (:mod:`analyzers.text`)."""
    level_alpha = alpha / max(k, 1)
    until = now.timestamp()
    seq = path.at(level_alpha, until)
    p_any = path.pvalue(until)
    out = dict(res)
    info = {"alpha": level_alpha, "interval": seq["interval"], "information": round(seq["information"], 3),
            "rows": seq["rows"], "p_value": p_any, "status": seq["status"], "direction": seq["direction"],
            "method": _method(path)}
    if seq["decided_at"] is not None:
        info["decided_at"] = pd.Timestamp(seq["decided_at"], unit="s", tz="UTC").isoformat().replace("+00:00", "Z")
    out["sequential"] = info
    out["p_value"] = p_any
    lo, hi = seq["interval"]
    if path.kind == "level" or path.kind == "rate":
        # effect and interval from the same sequence (its estimate, kept inside its interval)
        est = seq.get("estimate")
        if est is not None and lo is not None and hi is not None:
            est = min(max(est, lo), hi)
        if est is not None:
            out["effect"] = est
            level = res.get("before_value")
            out["effect_rel"] = est / level if level not in (None, 0) and math.isfinite(level) else None
        out["effect_ci"] = [lo, hi]
        out["ci_level"] = 1.0 - level_alpha
        out["ci_kind"] = "confidence sequence"
    tr = path.transient
    shifted_before = res.get("status") == "shifted" and res.get("change_kind", "level") == "level"
    if seq["status"] == "shifted":
        effect = out.get("effect")
        level = res.get("before_value")
        floor = meaningful(min_effect, min_effect_rel, float(level) if level is not None else float("nan"))
        widened = _unclipped(out, seq, effect)
        out.update(widened)
        effect = widened.get("effect", effect)
        if floor is not None and effect is not None and abs(effect) < floor:
            out.update(status="unchanged", direction=None, change_kind="level",
                       reason=f"A change of {fmt_change(effect, unit)} is certain at any look but below the minimum "
                              f"meaningful effect ({fmt_change(floor, unit, signed=False)}).")
        else:
            out.update(status="shifted", change_kind="level", direction=seq["direction"])
            if not shifted_before:
                shown = out.get("effect_ci", [lo, hi])
                out["reason"] = (f"{str(seq['direction']).capitalize()} at the deploy, certain at any look "
                                 f"(always-valid {p_equals(p_any)}); interval {_interval(shown[0], shown[1], unit)}.")
    elif shifted_before:
        out.update(status="unchanged", direction=None, change_kind=None,
                   reason=(f"Not certain at any look yet: the one-look test sees a move ({p_equals(res.get('p_value'))}), "
                           f"but the confidence sequence over every look still holds zero "
                           f"({_interval(lo, hi, unit)}); it narrows as data arrives."))
    elif res.get("status") == "unchanged" and out.get("ci_kind"):
        out["reason"] = _restated(res, out, unit)
    if tr and tr.get("recovered") and out.get("status") != "shifted":
        text = (f"transient at deploy, recovered after {_mins(tr['recovered_after_s'])} "
                f"(peak {fmt_change(tr['peak'], unit)}, {tr['peak_sd']:+.1f} SD)")
        out["transient"] = dict(tr, text=text)
        out["reason"] = f"{out.get('reason', '').rstrip('.')}; {text}."
    elif tr:
        out["transient"] = dict(tr, text=f"off the level within the first {_mins(tr['allowance_s'])} (not judged)")
    return out


def _restated(res: dict[str, Any], out: dict[str, Any], unit: str) -> str:
    """A "No change" reason with the sequence's shift, interval and p-value, the figures the verdict
    reports beside it (the one-look test's figures there read as a second, different estimate)."""
    reason = str(res.get("reason", ""))
    ci = res.get("effect_ci") or [None, None]
    old = f"shift {fmt_change(res.get('effect'), unit)} ({fmt_interval(ci[0], ci[1], unit)}), {p_equals(res.get('p_value'))}"
    lo, hi = out["effect_ci"]
    new = (f"shift {fmt_change(out.get('effect'), unit)} (any-look interval {_interval(lo, hi, unit)}), "
           f"always-valid {p_equals(out.get('p_value'))}")
    return reason.replace(old, new, 1)


def _unclipped(out: dict[str, Any], seq: dict[str, Any], effect: float | None) -> dict[str, Any]:
    """Updates to ``out`` for the minimum-effect check (empty when none): the unclipped (mean-shift)
    estimate, when it lies further in the decided direction than the clipped one (clipping shrinks
    a large or spiky jump), becomes the reported effect, and the interval's bound on its side is
    widened to hold it (zero stays excluded: the decision is unchanged). Pure: ``out`` is read only."""
    raw = seq.get("estimate_unclipped")
    if effect is None or raw is None or not math.isfinite(raw):
        return {}
    sign = 1.0 if seq["direction"] == "increase" else -1.0
    if sign * raw <= sign * effect:
        return {}
    level = out.get("before_value")
    lo, hi = out.get("effect_ci", seq["interval"])
    if sign > 0 and hi is not None:
        hi = max(hi, raw)
    elif sign < 0 and lo is not None:
        lo = min(lo, raw)
    return {"effect": raw, "effect_rel": raw / level if level not in (None, 0) and math.isfinite(level) else None,
            "effect_ci": [lo, hi]}


def _interval(lo: float | None, hi: float | None, unit: str) -> str:
    """``-225.0 ms to +29.6 ms`` (one scale) with a unit, else ``-0.225 to 0.0296``."""
    return fmt_interval(lo, hi, unit).removeprefix("CI ")


def _method(path: SequentialPath) -> str:
    if path.kind == "rate":
        return "confidence sequence for the event rate (gamma-mixture Poisson) against an exact interval before"
    models = ", ".join(path.details.get("models", []))
    boundary = {"horizon": "line over information time up to the window's end, the final look",
                "linear": "all-time line over information time",
                "mixture": "normal mixture over information time"}.get(path.boundary, path.boundary)
    f = float(path.details.get("placebo_factor", 1.0))
    wander = (f"; the unclipped shift must also clear it with the variance x{f:.2f} that "
              f"{path.details.get('placebos', 0)} in-time placebos before the deploy show" if f > 1.0 else "")
    return f"confidence sequence for the level shift ({boundary}; {models}{wander})"
