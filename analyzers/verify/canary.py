"""Canary vs baseline from Prometheus: both versions over the same minutes, per metric.

While two versions serve, they are told apart by a label (``[canary].label``, ``version`` by
default, or ``version_label`` on a metric). The canary is the deploy's ``version`` (or the
label values matching ``[canary].canary_match``, e.g. pods by name); every other value of the
label is the baseline (summed). Per metric, one range query at the canary
interval (60 s by default) from the deploy's start to now:

* ``kind="ratio"`` with ``events`` and ``exposure`` counters (``error_ratio``):
  ``sum by (version) (increase(<events>[1m]))`` and the same for ``<exposure>``, judged by
  :func:`analyzers.stats.canary.compare_rates` (exact, sequential);
* a metric with ``histogram`` (latency percentiles): ``sum by (le, version)
  (increase(<histogram>_bucket{<label_selector>}[1m]))``, judged on bucket counts by
  :func:`analyzers.stats.canary.compare_buckets`.

Metrics of other kinds are not compared (said in the verdict). Every query is recomputed from
the deploy's start at each look, and the tests' running maxima make the answer the same
whoever polls and how often: one error budget (``[canary].alpha``, split over the metrics by
:func:`metric_weight`, a weighted Bonferroni) per canary.

:func:`canary_verdict` turns the judgement into a :class:`~analyzers.model.DeployVerdict`
(``check_kind="canary"``, metric ``role="canary"``), and :func:`analyzers.events.combined.combine` merges it with the
before/after verdict: either failing fails; otherwise the canary decides while it runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analyzers.config import CanarySettings, Config, MetricSpec, long_window_warning
from analyzers.errors import AnalyzerError, ConfigError, PrometheusError, PrometheusUnreachable
from analyzers.events.combined import ROLLED_OUT, canary_serving, combined_verdict
from analyzers.model import Deploy, DeployVerdict, MetricVerdict, Outcome
from analyzers.stats.canary import (
    RATIO_WEIGHT,
    CanaryJudgement,
    Comparison,
    alpha_split,
    compare_buckets,
    compare_levels,
    compare_rates,
    judge,
)
from analyzers.text import format_duration

if TYPE_CHECKING:
    from analyzers.prometheus.client import PrometheusClient

_OUTCOME: dict[str, Outcome] = {"regressed": "regressed", "ok": "ok", "inconclusive": "inconclusive"}


@dataclass(frozen=True)
class CanaryReport:
    """A judgement plus what was asked of Prometheus (queries, window, warnings)."""

    judgement: CanaryJudgement
    start: datetime
    end: datetime
    queries: dict[str, list[str]]
    warnings: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def canary_metrics(config: Config, service: str) -> list[str]:
    """Metrics compared between versions: ``[canary].metrics`` or the service's comparable guards
    (without a per-step quantile read, ``latency_shift``: its histogram is compared already)."""
    if config.canary.metrics is not None:
        return list(config.canary.metrics)
    return [k for k in config.guards_for(service) if config.metric(k).read_quantile is None]


def comparable(spec: MetricSpec) -> bool:
    return _is_count(spec) or bool(spec.histogram or spec.per_version)


def _is_count(spec: MetricSpec) -> bool:
    """An events/exposure ratio: compared on its counts."""
    return bool(spec.kind == "ratio" and spec.events and spec.exposure)


def metric_weight(settings: CanarySettings, spec: MetricSpec) -> float:
    """The metric's share of ``[canary] alpha``: ``[canary] weights``, else
    :data:`~analyzers.stats.canary.RATIO_WEIGHT` for an events/exposure count (its counts are the
    scarce information: a 5% canary sees a few dozen errors in 15 minutes), else 1."""
    given = dict(settings.weights)
    if spec.key in given:
        return given[spec.key]
    return RATIO_WEIGHT if _is_count(spec) else 1.0


def canary_warnings(settings: CanarySettings, step_s: float | None = None) -> list[str]:
    """Settings that work but likely do not match the rollout (the long window is also logged
    whenever a config is loaded). ``step_s``: how long the controller holds each canary weight,
    when known (``demo deploy --canary-step``)."""
    out = long_window_warning(settings.window_s)
    if step_s is not None and step_s < settings.window_s:
        out.append(f"the canary step ({format_duration(step_s)}) is shorter than [canary] window = "
                   f'"{format_duration(settings.window_s)}": a regression may be judged only at a later step; '
                   "set window to the step")
    return out


def level_query(config: Config, spec: MetricSpec, deploy: Deploy) -> str:
    """``per_version`` rendered (escaped labels, ``$window`` = the canary interval or 4 scrapes)."""
    from analyzers.prometheus.promql import render

    window = format_duration(max(config.canary.interval_s, 4 * config.prometheus.scrape_interval_s))
    return render(str(spec.per_version), window=window, service=deploy.service, environment=deploy.environment,
                  version=deploy.version)


def _levels(spec: MetricSpec, result: Any, label: str, is_canary: Callable[[str], bool],
            grid: pd.DatetimeIndex) -> tuple[pd.Series, pd.Series, set[str]]:
    """Canary and baseline lines; several baseline values (old versions, pods) are averaged."""
    c: list[pd.Series] = []
    b: list[pd.Series] = []
    seen: set[str] = set()
    for s in result.series:
        who = s.labels.get(label, "")
        seen.add(who)
        if who:
            (c if is_canary(who) else b).append(s.values.reindex(grid))

    def mean(xs: list[pd.Series]) -> pd.Series:
        return pd.concat(xs, axis=1).mean(axis=1) if xs else pd.Series(np.nan, index=grid)

    return mean(c), mean(b), seen


def _label(config: Config, spec: MetricSpec) -> str:
    from analyzers.prometheus.promql import validate_label_name

    return validate_label_name(spec.version_label or config.canary.label)


def _with_selector(expr: str, extra: str) -> str:
    """Add fixed matchers (``[canary].selector``, e.g. ``pod=~"web-.*"``) to a selector template."""
    if not extra:
        return expr
    if expr.endswith("}"):
        inner = expr[expr.index("{") + 1:-1].strip()
        return expr[: expr.index("{")] + "{" + (inner + "," if inner else "") + extra + "}"
    return expr + "{" + extra + "}"


def rate_queries(config: Config, spec: MetricSpec, deploy: Deploy) -> tuple[str, str]:
    from analyzers.prometheus.promql import render

    label, w = _label(config, spec), format_duration(config.canary.interval_s)
    out = []
    for tmpl in (spec.events, spec.exposure):
        sel = render(_with_selector(str(tmpl), config.canary.selector), service=deploy.service,
                     environment=deploy.environment, version=deploy.version)
        out.append(f"sum by ({label}) (increase({sel}[{w}]))")
    return out[0], out[1]


def bucket_query(config: Config, spec: MetricSpec, deploy: Deploy) -> str:
    from analyzers.prometheus.promql import render, validate_metric_name

    label, w = _label(config, spec), format_duration(config.canary.interval_s)
    hist = validate_metric_name(f"{spec.histogram}_bucket")
    sel = render(_with_selector("{" + spec.label_selector + "}", config.canary.selector),
                 service=deploy.service, environment=deploy.environment, version=deploy.version)
    return f"sum by (le, {label}) (increase({hist}{sel}[{w}]))"


def _grid(start: datetime, end: datetime, step_s: float) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq=pd.Timedelta(seconds=step_s), tz=UTC)


def canary_matcher(config: Config, deploy: Deploy) -> Callable[[str], bool]:
    """Which label values are the canary: the deploy's version, or ``[canary].canary_match``."""
    pattern = config.canary.canary_match
    if not pattern:
        return lambda v: v == deploy.version
    text = pattern.replace("${service}", re.escape(deploy.service)).replace("$service", re.escape(deploy.service))
    text = text.replace("${version}", re.escape(deploy.version)).replace("$version", re.escape(deploy.version))
    try:
        rx = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"canary.canary_match is not a valid regex ({exc}): {pattern!r}") from None
    return lambda v: rx.fullmatch(v) is not None


def split_versions(result: Any, label: str, canary: str | Callable[[str], bool], grid: pd.DatetimeIndex) -> tuple[pd.Series, pd.Series, set[str]]:
    """Canary and baseline (every other value, summed) per grid time; NaN where nothing came."""
    is_canary = canary if callable(canary) else (lambda v: v == canary)
    c = pd.Series(np.nan, index=grid)
    b = pd.Series(np.nan, index=grid)
    seen: set[str] = set()
    for s in result.series:
        v = s.values.reindex(grid)
        who = s.labels.get(label, "")
        seen.add(who)
        if who and is_canary(who):
            c = c.add(v, fill_value=0.0) if c.notna().any() else v
        elif who:
            b = b.add(v, fill_value=0.0) if b.notna().any() else v
    return c, b, seen


def _bucket_frames(result: Any, label: str, is_canary: Callable[[str], bool], grid: pd.DatetimeIndex) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    from analyzers.prometheus.latency import parse_le  # the one parser of le values

    frames: dict[str, dict[float, pd.Series]] = {"c": {}, "b": {}}
    seen: set[str] = set()
    for s in result.series:
        who = s.labels.get(label, "")
        seen.add(who)
        if not who or "le" not in s.labels:
            continue
        key = "c" if is_canary(who) else "b"
        le = parse_le(s.labels["le"])
        v = s.values.reindex(grid)
        cols = frames[key]
        cols[le] = cols[le].add(v, fill_value=0.0) if le in cols else v
    out = []
    for key in ("c", "b"):
        cols = frames[key]
        out.append(pd.DataFrame({k: cols[k] for k in sorted(cols)}, index=grid))
    return out[0], out[1], seen


def _missing_version(metric: str, label: str, canary: str, is_canary: Callable[[str], bool], seen: set[str],
                     alpha: float, dry_run: bool) -> Comparison:
    others = sorted(v for v in seen if v and not is_canary(v))
    if not any(is_canary(v) for v in seen if v):
        why = (f"No series with {label}=\"{canary}\" yet (versions seen: {', '.join(others) or 'none'}): "
               f"is the canary serving, and does it export the {label} label?")
    else:
        why = f"Only {label}=\"{canary}\" serves: no baseline version to compare with (promoted already?)."
    return Comparison(metric=metric, method="canary vs baseline", status="inconclusive", reason=why, alpha=alpha, dry_run=dry_run)


def judge_canary(deploy: Deploy, config: Config, client: PrometheusClient, *, now: datetime | None = None,
                 raise_unreachable: bool = False) -> CanaryReport:
    """Compare the deploy's version with the others over the minutes since it started.

    A failed query makes its metric inconclusive; with ``raise_unreachable`` an unreachable
    Prometheus raises :class:`~analyzers.errors.PrometheusUnreachable` instead (the worker's
    outage contract: retry, store nothing)."""
    cs = config.canary
    now = now or datetime.now(UTC)
    step = cs.interval_s
    start = pd.Timestamp(deploy.started_at).ceil(f"{int(step)}s").to_pydatetime() + timedelta(seconds=step)
    end = pd.Timestamp(min(now, deploy.started_at + timedelta(seconds=config.verification.observation_s))).floor(
        f"{int(step)}s").to_pydatetime()
    keys = canary_metrics(config, deploy.service)
    specs = [config.metric(k) for k in keys]
    usable = [s for s in specs if comparable(s)]
    skipped = tuple(s.key for s in specs if not comparable(s))
    alphas = dict(zip((s.key for s in usable), alpha_split(cs.alpha, [metric_weight(cs, s) for s in usable]), strict=True))
    horizon = max(1, math.ceil(cs.window_s / step - 1e-9))  # the fail test's horizon, in intervals
    is_canary = canary_matcher(config, deploy)
    comps: list[Comparison] = []
    queries: dict[str, list[str]] = {}
    warnings: list[str] = []
    for spec in usable:
        dry, alpha = config.dry_run_for(deploy.service, spec.key), alphas[spec.key]
        label = _label(config, spec)
        if end < start:
            comps.append(Comparison(metric=spec.key, method="canary vs baseline", status="inconclusive", alpha=alpha, dry_run=dry,
                                    reason=f"The canary started under {format_duration(2 * step)} ago: wait for the first full interval."))
            continue
        grid = _grid(start, end, step)
        try:
            if spec.kind == "ratio" and spec.events and spec.exposure:
                qe, qn = rate_queries(config, spec, deploy)
                queries[spec.key] = [qe, qn]
                re_, rn = client.query_range(qe, start, end, step), client.query_range(qn, start, end, step)
                warnings += [*re_.warnings, *rn.warnings]
                xc, xb, _ = split_versions(re_, label, is_canary, grid)
                nc, nb, seen = split_versions(rn, label, is_canary, grid)
                if nc.isna().all() or nb.isna().all():
                    comps.append(_missing_version(spec.key, label, deploy.version, is_canary, seen, alpha, dry))
                    continue
                comps.append(compare_rates(
                    spec.key, np.rint(xc.fillna(0.0).to_numpy()), np.rint(xb.fillna(0.0).to_numpy()),
                    np.rint(nc.fillna(0.0).to_numpy()), np.rint(nb.fillna(0.0).to_numpy()), alpha=alpha,
                    tolerance=cs.tolerance, pass_ratio=cs.pass_ratio, min_exposure=cs.min_requests, dry_run=dry,
                    dispersion_prior=cs.dispersion_prior, horizon=horizon))
            elif spec.per_version and not spec.histogram and not (spec.kind == "ratio" and spec.events):
                q = level_query(config, spec, deploy)
                queries[spec.key] = [q]
                res = client.query_range(q, start, end, step)
                warnings += list(res.warnings)
                lc, lb, seen = _levels(spec, res, label, is_canary, grid)
                if lc.isna().all() or lb.isna().all():
                    comps.append(_missing_version(spec.key, label, deploy.version, is_canary, seen, alpha, dry))
                    continue
                base_level = float(np.nanmedian(lb.to_numpy()))
                tol = max(spec.min_effect or 0.0, (spec.min_effect_rel or 0.0) * abs(base_level))
                comps.append(compare_levels(spec.key, lc.to_numpy(), lb.to_numpy(), alpha=alpha, good=spec.good,
                                            tolerance=tol, min_points=spec.min_points, unit=spec.unit, dry_run=dry))
            else:
                q = bucket_query(config, spec, deploy)
                queries[spec.key] = [q]
                res = client.query_range(q, start, end, step)
                warnings += list(res.warnings)
                fc, fb, seen = _bucket_frames(res, label, is_canary, grid)
                if fc.empty or fb.empty:
                    comps.append(_missing_version(spec.key, label, deploy.version, is_canary, seen, alpha, dry))
                    continue
                les = sorted(set(fc.columns) & set(fb.columns))
                if not les or not math.isinf(les[-1]):
                    comps.append(Comparison(metric=spec.key, method="canary vs baseline", status="inconclusive", alpha=alpha, dry_run=dry,
                                            reason="The two versions' histograms share no +Inf bucket: are they the same histogram?"))
                    continue
                c = np.rint(fc[les].fillna(0.0).to_numpy())
                b = np.rint(fb[les].fillna(0.0).to_numpy())
                comps.append(compare_buckets(spec.key, les, c, b, alpha=alpha, tolerance=cs.tolerance,
                                             pass_ratio=cs.pass_ratio, min_exposure=cs.min_requests, dry_run=dry,
                                             dispersion_prior=cs.dispersion_prior, horizon=horizon))
        except PrometheusError as exc:
            if raise_unreachable and isinstance(exc, PrometheusUnreachable):
                raise
            comps.append(Comparison(metric=spec.key, method="canary vs baseline", status="inconclusive", alpha=alpha, dry_run=dry,
                                    reason=f"Query failed: {exc}", details={"error": str(exc)}))
    if warnings:
        comps = [replace(c, status="inconclusive", reason=c.reason + " The back end warned (partial data?): "
                         + "; ".join(sorted(set(warnings))))
                 if c.status == "ok" else c for c in comps]
    if not usable:
        why = ", ".join(skipped) if skipped else "none configured"
        comps.append(Comparison(metric="(none)", method="canary vs baseline", status="inconclusive", alpha=cs.alpha,
                                reason=f"No metric can be compared between versions ({why}): give ratio metrics "
                                       "'events' and 'exposure' counters, latency metrics a 'histogram'."))
    # Until the minimum duration has passed, a pass waits (a fail does not).
    j = judge(comps)
    if j.overall == "pass" and now - deploy.started_at < timedelta(seconds=cs.min_duration_s):
        wait = cs.min_duration_s - (now - deploy.started_at).total_seconds()
        j = replace(j, overall="inconclusive",
                    reason=f"No regression so far; a pass needs {format_duration(cs.min_duration_s)} of canary "
                           f"traffic ({format_duration(max(wait, 1))} to go).")
    return CanaryReport(judgement=j, start=start, end=end, queries=queries, warnings=tuple(sorted(set(warnings))),
                        skipped=skipped)


def canary_verdict(deploy: Deploy, report: CanaryReport, *, now: datetime | None = None) -> DeployVerdict:
    """The judgement as a stored verdict: ``check_kind="canary"``, one ``role="canary"`` metric each."""
    metrics = []
    for c in report.judgement.comparisons:
        reason = ("[dry-run] " if c.dry_run else "") + c.reason
        metrics.append(MetricVerdict(
            metric=c.metric, role="canary", expect="no worse than baseline",  # type: ignore[arg-type]
            outcome=_OUTCOME[c.status], reason=reason, unit="ratio" if c.method.startswith("sequential") else "",
            query="\n".join(report.queries.get(c.metric, [])), result=c.to_dict(),
            window_start=report.start, window_end=report.end, dry_run=c.dry_run))
    j = report.judgement
    warnings = list(report.warnings)
    if j.enforced_overall != j.overall:
        warnings.append(f"Dry-run metrics would make this canary {j.enforced_overall} if enforced.")
    if report.skipped:
        warnings.append("Not compared between versions (no events/exposure counters or histogram): " + ", ".join(report.skipped))
    return DeployVerdict(
        deploy_id=deploy.deploy_id, overall=j.overall, reason="Canary vs baseline: " + j.reason, metrics=tuple(metrics),
        checked_at=now or datetime.now(UTC), service=deploy.service, version=deploy.version,
        warnings=tuple(warnings), multiple_testing=f"Weighted Bonferroni over {len(metrics)} canary metric(s) (alpha "
                         + ", ".join(f"{c.metric} {c.alpha:.2g}" for c in report.judgement.comparisons)
                         + "), always-valid over every look",
        check_kind="canary")


def safe_judge(deploy: Deploy, config: Config, client: PrometheusClient | None, *, now: datetime | None = None) -> DeployVerdict | None:
    """:func:`judge_canary` as a verdict, or an inconclusive verdict saying why it could not run."""
    if client is None:
        return None
    now = now or datetime.now(UTC)
    try:
        return canary_verdict(deploy, judge_canary(deploy, config, client, now=now), now=now)
    except AnalyzerError as exc:
        return DeployVerdict(deploy_id=deploy.deploy_id, overall="inconclusive", reason=f"Canary check could not run: {exc}",
                             metrics=(), checked_at=now, service=deploy.service, version=deploy.version, check_kind="canary")


def current_canary(deploy: Deploy, config: Config, client: PrometheusClient | None, store: Any, *, now: datetime,
                   save: bool = True) -> DeployVerdict | None:
    """The canary verdict a deploy's answer uses now: judged afresh while the deploy is in its
    observation window and both versions serve (stored when its outcome changed, as the gate
    does), else the latest stored one (the canary period's evidence), else None."""
    last = next((v for v in reversed(store.verdict_history(deploy.deploy_id)) if v.check_kind == "canary"), None)
    if now - deploy.started_at > timedelta(seconds=config.verification.observation_s):
        return last
    fresh = safe_judge(deploy, config, client, now=now)
    if fresh is None or not canary_serving(fresh):
        return last
    if save and (last is None or last.overall != fresh.overall):
        store.save_verdict(fresh)
    return fresh


def with_canaries(deploys: list[Deploy], verdicts: list[DeployVerdict], config: Config, client: PrometheusClient | None,
                  store: Any, *, now: datetime, save: bool = True) -> list[tuple[DeployVerdict, DeployVerdict | None]]:
    """Each deploy's combined answer (:func:`~analyzers.events.combined.combined_verdict`) and the
    canary verdict it used: what ``verify`` exits with and reports side by side."""
    out = []
    for d, v in zip(deploys, verdicts, strict=True):
        canary = current_canary(d, config, client, store, now=now, save=save)
        out.append((combined_verdict(canary, v, rolled_out=d.status in ROLLED_OUT) or v, canary))
    return out
