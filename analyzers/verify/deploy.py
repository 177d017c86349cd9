"""Deploy-level verification: resolve metrics, fetch them around a deploy, test, combine.

This is the IO edge of the statistics core: it renders catalog templates to PromQL
(escaped, :mod:`analyzers.prometheus.promql`), fetches through :class:`analyzers.prometheus.client.PrometheusClient`,
runs :func:`analyzers.stats.verify_series` per metric, controls the false-alarm rate across
the metrics of one deploy (Bonferroni: each confidence sequence at alpha / k, p x k), and returns one :class:`~analyzers.model.DeployVerdict`.

How a metric outcome is read from a series result: the decision table of
:mod:`analyzers.verify.decision` (level shift and its direction, spread change, bucket counts,
role, metric kind -> confirmed / no_effect / opposite / regressed / improved / ok), after Bonferroni across the metrics.
No data, too few points, warnings from the back end (partial data) or a failed query give
``inconclusive``/``error``, never a pass.

Overall: any ``opposite``/``regressed`` fails the deploy; otherwise anything inconclusive makes
it inconclusive (with how long to wait when that is known); otherwise it passes. A declared
improvement that did not show up (``no_effect``) is reported, and fails the deploy only with
``fail_on_no_effect=True``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from analyzers.config import Config, MetricSpec
from analyzers.errors import AnalyzerError, PrometheusError, is_outage, unreachable_from
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from analyzers.stats.sequential import SequentialPath
from analyzers.text import ci_label, format_effect, format_number, human_duration, p_equals, redact
from analyzers.verify import anytime
from analyzers.verify.bucketcheck import (
    BucketCounts,
    LineCheck,
    bucket_test,
    histogram_quantile_of,
    in_latency_units,
    spread_in_line_units,
    with_buckets,
)
from analyzers.verify.decision import Decision, decide, evidence_from_result, watch_text
from analyzers.verify.fetch import (
    BucketGrid,
    DirectFetcher,
    Fetcher,
    align,
    chart_points,
    fetch_buckets,
    fetch_grid,
    fetch_metric_series,
    grid_series,
    read_quantile_series,
    series_from_result,
    window_levels,
)
from analyzers.verify.plan import (
    MetricPlan,
    analysis_window,
    find_overlaps,
    metric_query,
    nearby_deploys,
    plan_metrics,
    ramp_s,
    rate_window,
)
from analyzers.verify.request_latency import (
    against_day_before,
    as_factor,
    day_differenced,
    log_min_effect,
    log_series,
    thin_share,
)

#: Re-exported: callers (CLI, worker, fleet, dashboard) import these from here.
__all__ = [
    "DirectFetcher", "Fetcher", "MetricPlan", "MetricRun", "align", "analysis_window", "bucket_test", "chart_points",
    "fetch_grid", "fetch_metric_series", "find_overlaps", "grid_series", "metric_query", "nearby_deploys",
    "plan_metrics", "rate_window", "series_from_result", "verify_deploy", "window_levels",
]

if TYPE_CHECKING:
    import pandas as pd

    from analyzers.prometheus.client import PrometheusClient




@dataclass(frozen=True)
class MetricRun:
    """What fetching and testing one metric gave, before Bonferroni and the outcome are applied.

    Either the test ran (``result`` is ``verify_series(...).to_dict()`` plus the window levels)
    and ``forced`` is None, or the outcome is forced (``"error"``: the query failed, e.g. bad
    PromQL (an unreachable back end raises instead); ``"inconclusive"``: the series could not be judged) with ``note``
    saying why (``result`` may still hold the test's figures, e.g. on partial data).
    """

    plan: MetricPlan
    query: str
    result: dict[str, Any] | None = None
    forced: Literal["error", "inconclusive"] | None = None
    note: str | None = None

    @classmethod
    def failed(cls, plan: MetricPlan, query: str, forced: Literal["error", "inconclusive"], note: str,
               result: dict[str, Any] | None = None) -> MetricRun:
        return cls(plan, query, result, forced, note)

    @property
    def tested_p(self) -> float | None:
        """The p-value that enters Bonferroni (p x k): only for tests that ran and were not overruled."""
        if self.forced is not None or self.result is None or self.result.get("p_value") is None:
            return None
        return float(self.result["p_value"])


def _outcome(plan: MetricPlan, status: str, direction: str | None, res: dict[str, Any] | None = None,
             alpha: float = 0.01) -> str:
    """The metric's outcome from the decision table (:mod:`analyzers.verify.decision`)."""
    if res is None:
        res = {"status": status, "direction": direction, "change_kind": "level" if direction else None}
    return metric_decision(plan, status, res, alpha).outcome


def metric_decision(plan: MetricPlan, status: str, res: dict[str, Any] | None, alpha: float) -> Decision:
    """Evidence of one metric's result (``status`` after Bonferroni) through the decision table."""
    ev = evidence_from_result(res, status, alpha)
    return decide(plan.role, plan.expect, plan.spec.good, plan.spec.kind, ev)


def _reason(plan: MetricPlan, outcome: str, res: dict[str, Any]) -> str:
    unit = plan.spec.unit
    key = plan.spec.key
    base = res.get("reason") or ""
    eff = res.get("effect")
    ci = res.get("effect_ci") or [None, None]
    rel = res.get("effect_rel")
    size = ""
    if res.get("change_kind") == "variance":  # a spread-only change has no direction: no sign
        ratio = (res.get("details") or {}).get("spread_ratio")
        size = f"spread x{format_number(ratio, 2)}, no level change" if ratio is not None else "spread changed"
    elif (res.get("request_latency") or {}).get("text"):  # a quantile read from bucket counts: as a factor
        size = res["request_latency"]["text"]
    elif eff is not None:
        size = format_effect(eff, unit, rel=rel, ci=ci, label=ci_label(res))
    # What the metric is checked for: a guard fails on its bad direction, never "expected increase".
    watch = watch_text(plan.role, plan.expect, plan.spec.good)
    text = {
        "confirmed": f"{key} moved as declared ({plan.expect})" if plan.expect != "unchanged" else f"{key} stayed unchanged as declared",
        "opposite": (f"{key} moved the wrong way (declared {plan.expect})" if plan.expect != "unchanged"
                     else f"{key} moved although declared unchanged ({watch})"),
        "no_effect": f"{key} did not move (declared {plan.expect})",
        "regressed": f"guard {key} ({watch}) regressed",
        "improved": (f"guard {key} ({watch}) improved" if plan.role == "guard"
                     else f"{key} improved (declared unchanged)"),
        "ok": f"guard {key} ({watch}) shows no regression",
        "inconclusive": f"{key} is inconclusive",
    }.get(outcome, key)
    if size and outcome in ("confirmed", "opposite", "regressed", "improved"):
        text += f": {size}"
    if base:
        text += f". {base[0].upper()}{base[1:]}" if not base.endswith(".") else f". {base[0].upper()}{base[1:-1]}"
    return text + "."


def verify_deploy(
    deploy: Deploy,
    config: Config,
    client: PrometheusClient,
    *,
    others: Iterable[Deploy] = (),
    now: datetime | None = None,
    fail_on_no_effect: bool = False,
    progress: Callable[[str], None] | None = None,
    fetcher: Fetcher | None = None,
) -> DeployVerdict:
    """Verify one deploy against its declared expectations and the guard metrics.

    ``fetcher`` replaces the one-query-per-metric default (see :mod:`analyzers.verify.fleet` for the
    batched fetcher that serves many deploys of one service from one range query).

    Raises :class:`~analyzers.errors.PrometheusUnreachable` when Prometheus cannot be reached
    or fails on its side (5xx, its own timeout) for any query: that is "could not check", not
    a verdict. A query the user got wrong (bad PromQL) stays that metric's "error" outcome.
    """
    from analyzers.stats import verify_series

    if fetcher is None:
        fetcher = DirectFetcher(client)

    now = now or datetime.now(UTC)
    alpha = config.verification.alpha  # the deploy's error budget: every test and the table use it
    plans = plan_metrics(deploy, config)
    start, end = analysis_window(deploy, config, now)
    overlaps = find_overlaps(deploy, others, config)
    warnings: list[str] = []
    if overlaps:
        names = ", ".join(f"{o.service} {o.version} ({o.deploy_id})" for o in overlaps)
        warnings.append(
            f"Overlapping deploys within {human_duration(config.verification.overlap_s)}: {names}; "
            "a change cannot be attributed to one of them alone."
        )
    raw: list[MetricRun] = []
    pending: dict[int, _Pending] = {}  # per tested metric (index in raw): what its sequence needs
    counts: dict[int, BucketCounts | None] = {}  # bucket counts fetched to judge a spread, per metric
    grids: dict[tuple[str, str], BucketGrid] = {}  # bucket counts per minute, per (histogram, selector)
    charts: dict[str, dict[str, list[Any]]] = {}
    for plan in plans:
        if progress:
            progress(plan.spec.key)
        query = ""
        try:
            if plan.spec.read_quantile is not None:
                query, series, warns, grids[_grid_key(plan.spec)] = _fetch_read(client, config, plan, deploy, start, end, fetcher)
            else:
                query, series, warns = fetch_metric_series(client, config, plan.spec.key, deploy, start, end, fetcher=fetcher)
        except PrometheusError as exc:
            if is_outage(exc):  # "could not check" is no verdict: the caller retries (worker) or exits 3 (CLI)
                raise unreachable_from(exc) from exc
            raw.append(MetricRun.failed(plan, query or _safe_query(config, plan, deploy), "error", f"query failed: {exc}"))
            continue
        except AnalyzerError as exc:
            raw.append(MetricRun.failed(plan, query or _safe_query(config, plan, deploy), "error", str(exc)))
            continue
        on_log = plan.spec.read_quantile is not None  # judged on log latency, reported as a factor
        chart_series = series
        if on_log:
            series = log_series(series)
            min_effect, min_rel = log_min_effect(plan.spec, plan.min_effect), None
        else:
            min_effect = plan.min_effect if plan.min_effect is not None else plan.spec.min_effect
            min_rel = plan.spec.min_effect_rel

        def run_test(histogram: tuple[float, ...] | None = None, plan: MetricPlan = plan, series: Any = series,
                     min_effect: float | None = min_effect, min_rel: float | None = min_rel,
                     unit: str = "" if on_log else plan.spec.unit) -> dict[str, Any]:
            return verify_series(
                series,
                deploy.started_at,
                # the declared (or, for guards, the bad) direction gets most of alpha; the other
                # direction is still tested, so a move the wrong way is reported too
                expect=plan.expect if plan.expect in ("increase", "decrease") else "any",
                min_effect=min_effect,
                min_effect_rel=min_rel,
                alpha=alpha,
                kind=plan.spec.kind,
                min_points=plan.spec.min_points,
                ramp_s=ramp_s(deploy, config),
                unit=unit,  # numbers in the reason carry the metric's unit
                histogram=histogram,
            ).to_dict()

        try:
            tested_res = run_test()
        except AnalyzerError as exc:
            raw.append(MetricRun.failed(plan, query, "inconclusive", str(exc)))
            continue
        line = plan.spec.histogram is not None and not on_log  # a percentile line drawn from a histogram
        if line and tested_res.get("status") == "shifted" and tested_res.get("change_kind") == "variance":
            # a spread-only change of a percentile line: judged again in the line's noise units
            # (an outage while fetching the bucket counts raises: no verdict at all)
            tested_res, counts[len(raw)] = spread_in_line_units(client, config, plan.spec, deploy, tested_res, run_test)
        if warns:
            quoted = "; ".join(warns)
            warnings.append(f"{plan.spec.key}: back end warned: {quoted}")
            raw.append(MetricRun.failed(plan, query, "inconclusive", f"the back end returned partial data ({quoted}); not judged",
                                        tested_res))
            continue
        charts[plan.spec.key] = chart_points(chart_series, deploy, config)
        tested_res.update(window_levels(series, tested_res))
        tested_res["ci_level"] = 1.0 - alpha  # effect_ci is a (1 - alpha) interval
        if tested_res.get("status") != "inconclusive":
            path = anytime.path_for(series, deploy, plan, config, ramp_s(deploy, config))
            if path is not None and path.kind != "none":
                pending[len(raw)] = _Pending(path, series, run_test, min_effect, min_rel, on_log, line)
        if on_log:  # minutes with counts that could not be read (too few requests, one bucket)
            tested_res["thin_minutes"] = thin_share(grids[_grid_key(plan.spec)], series, deploy.started_at)
        if on_log and len(raw) not in pending:
            tested_res = as_factor(tested_res, float(plan.spec.read_quantile))  # type: ignore[arg-type]
        raw.append(MetricRun(plan, query, tested_res))

    # One error budget over every look: each tested metric's level decision comes from its
    # confidence sequence at alpha / k (Bonferroni), p-values are always-valid ones.
    k = len(pending)
    for i, pm in pending.items():
        run = raw[i]
        plan = run.plan
        seq_res = anytime.apply(run.result or {}, pm.path, k, alpha, now, pm.min_effect, pm.min_rel,
                                unit="" if pm.on_log else plan.spec.unit)
        if pm.on_log:  # also certain against the same minutes a day earlier (load follows the hour)
            seq_res = against_day_before(seq_res, day_differenced(pm.series, config.verification.step_s),
                                         lambda s, plan=plan: anytime.path_for(s, deploy, plan, config, ramp_s(deploy, config)),
                                         alpha / k, now.timestamp(), pm.min_effect)
            seq_res = as_factor(dict(seq_res, _min_log=pm.min_effect), float(plan.spec.read_quantile))  # type: ignore[arg-type]
            raw[i] = MetricRun(plan, run.query, seq_res)
            continue
        if pm.line and seq_res.get("status") == "shifted" and "bucket_test" not in seq_res:
            seq_res["bucket_test"], counts[i] = bucket_test(client, config, plan.spec, deploy, seq_res)  # not fetched for the spread
        if "bucket_test" in seq_res:  # judged, and its tail read by the table, at alpha / k (also when fetched for the spread)
            seq_res = with_buckets(seq_res, alpha / k)
        if pm.line and pm.path.kind == "level":  # the line's shift, certain as a shift of the requests too

            def make_path(s: pd.Series, plan: MetricPlan = plan) -> SequentialPath | None:
                return anytime.path_for(s, deploy, plan, config, ramp_s(deploy, config))

            q = histogram_quantile_of(plan.spec.query)
            reads = None
            if STEP_READS and q is not None and seq_res.get("status") == "shifted":
                reads = _step_reads(client, config, plan, deploy, start, end, fetcher, grids, q)
            seq_res = in_latency_units(seq_res, LineCheck(pm.series, counts.get(i), q, make_path, alpha / k,
                                                          now.timestamp(), pm.rerun, plan.spec.min_effect_rel, reads))
        raw[i] = MetricRun(plan, run.query, seq_res)
    tested = [i for i, r in enumerate(raw) if r.tested_p is not None]
    p_adj: dict[int, float] = {i: min(1.0, float(raw[i].tested_p) * (k if i in pending else len(tested)))  # type: ignore[arg-type]
                               for i in tested}

    metrics: list[MetricVerdict] = []
    for i, run in enumerate(raw):
        plan, query = run.plan, run.query
        res: dict[str, Any] | None = dict(run.result) if run.result is not None else None
        outcome: str
        if run.forced is not None:
            outcome = run.forced
            reason = f"{plan.spec.key}: {redact(run.note)}"  # error text: no tokens or credentials
            if not reason.endswith("."):
                reason += "."
        else:
            assert res is not None
            status = res.get("status", "inconclusive")
            if status == "shifted" and i not in pending and i in p_adj and p_adj[i] > alpha:
                status = "unchanged"
                res["reason"] = (
                    f"the shift ({p_equals(res.get('p_value'))}) is not significant after Bonferroni correction "
                    f"across {len(tested)} metrics (adjusted {p_equals(p_adj[i])})"
                )
            outcome = metric_decision(plan, status, res, alpha).outcome
            reason = _reason(plan, outcome, res)
        dry = config.dry_run_for(deploy.service, plan.spec.key)  # judged, shown, never fails (docs/progressive-delivery.md)
        metrics.append(
            MetricVerdict(
                metric=plan.spec.key,
                role=plan.role,  # type: ignore[arg-type]
                expect=plan.expect,
                outcome=outcome,  # type: ignore[arg-type]
                reason=("[dry-run] " if dry else "") + reason,
                dry_run=dry,
                unit=plan.spec.unit,
                query=query,
                result=res,
                window_start=start,
                window_end=end,
                p_adjusted=p_adj.get(i),
                chart=charts.get(plan.spec.key),
            )
        )
    # A declared effect not seen yet is final only once the window is over: before that a later
    # look may still see it, so --fail-on-no-effect cannot fail an early poll of verify --wait.
    window_over = now >= deploy.started_at + timedelta(seconds=config.verification.window_after_s + ramp_s(deploy, config))
    overall, reason, retry = _combine(deploy, [m for m in metrics if not m.dry_run], fail_on_no_effect and window_over)
    shadow = [m.metric for m in metrics if m.dry_run and m.outcome in ("opposite", "regressed")]
    if shadow:
        warnings.append(f"Dry-run metrics would fail this deploy if enforced: {', '.join(shadow)}.")
    if overlaps and overall != "pass":
        named = ", ".join(o.deploy_id for o in overlaps[:3]) + (f" and {len(overlaps) - 3} more" if len(overlaps) > 3 else "")
        reason += f" Overlapping deploys may share the blame: {named}."
    return DeployVerdict(
        deploy_id=deploy.deploy_id,
        overall=overall,  # type: ignore[arg-type]
        reason=reason,
        metrics=tuple(metrics),
        checked_at=now,
        service=deploy.service,
        version=deploy.version,
        warnings=tuple(warnings),
        overlapping=tuple(o.deploy_id for o in overlaps),
        multiple_testing=(
            f"Bonferroni across {len(tested)} tested metric{'s' if len(tested) != 1 else ''} at alpha={alpha:g}, each a confidence sequence "
            "valid at every look" if tested else ""
        ),
        retry_after_s=retry,
    )


@dataclass(frozen=True)
class _Pending:
    """One tested metric between its one-look test and its sequential decision."""

    path: SequentialPath
    series: pd.Series  # the series tested (log latency for a read quantile)
    rerun: Callable[..., dict[str, Any]]  # the one-look test again, on another series
    min_effect: float | None
    min_rel: float | None
    on_log: bool  # a per-step quantile read from bucket counts, judged as a factor
    line: bool  # a percentile line drawn from a histogram (bucket test, latency units)


#: Confirm a percentile line's shift on the same quantile read from each minute's bucket counts
#: too (docs/statistics.md, "The typical request got slower").
STEP_READS = True


def _grid_key(spec: MetricSpec) -> tuple[str, str]:
    return (str(spec.histogram), spec.label_selector)


def _fetch_read(client: PrometheusClient, config: Config, plan: MetricPlan, deploy: Deploy, start: datetime,
                end: datetime, fetcher: Fetcher) -> tuple[str, pd.Series, tuple[str, ...], BucketGrid]:
    """A ``read_quantile`` metric: its bucket counts per step and the quantile read from them."""
    query = metric_query(config, plan.spec.key, deploy)
    grid, warns = fetch_buckets(client, fetcher, query, plan.spec.key, start, end, config.verification.step_s)
    return query, read_quantile_series(grid, float(plan.spec.read_quantile)), warns, grid  # type: ignore[arg-type]


def _step_reads(client: PrometheusClient, config: Config, plan: MetricPlan, deploy: Deploy, start: datetime,
                end: datetime, fetcher: Fetcher, grids: dict[tuple[str, str], BucketGrid], q: float) -> pd.Series | None:
    """Log of quantile ``q`` read from each minute's bucket counts of the line's histogram (the grid
    ``latency_shift`` fetched, else one range query now); None when they cannot be had."""
    from analyzers.prometheus.latency import heatmap_query
    from analyzers.prometheus.promql import render

    grid = grids.get(_grid_key(plan.spec))
    if grid is None:
        selector = render(plan.spec.label_selector, service=deploy.service, environment=deploy.environment,
                          version=deploy.version)
        query = heatmap_query(str(plan.spec.histogram), selector, rate_window(config, config.verification.step_s))
        try:
            grid, _ = fetch_buckets(client, fetcher, query, plan.spec.key, start, end, config.verification.step_s)
        except PrometheusError as exc:
            if is_outage(exc):
                raise unreachable_from(exc) from exc
            return None
        except AnalyzerError:
            return None
        grids[_grid_key(plan.spec)] = grid
    if not grid.les:
        return None
    return log_series(read_quantile_series(grid, q))


def _safe_query(config: Config, plan: MetricPlan, deploy: Deploy) -> str:
    try:
        return metric_query(config, plan.spec.key, deploy)
    except AnalyzerError:
        return plan.spec.query


def _combine(deploy: Deploy, metrics: Sequence[MetricVerdict], fail_on_no_effect: bool) -> tuple[str, str, float | None]:
    failed = [m for m in metrics if m.failed or (fail_on_no_effect and m.outcome == "no_effect")]
    unsure = [m for m in metrics if m.outcome in ("inconclusive", "error")]
    no_effect = [m for m in metrics if m.outcome == "no_effect"]
    waits = [
        float(m.result["needed_more_s"])
        for m in unsure
        if m.result is not None and m.result.get("needed_more_s") is not None
    ]
    retry = max(waits) if waits else None
    what = f"{deploy.service} {deploy.version}"
    if not metrics:
        return "inconclusive", f"{what}: no metrics to check; declare expectations or configure guard metrics.", None
    if failed:
        names = ", ".join(f"{m.metric} ({m.outcome.replace('_', ' ')})" for m in failed)
        return "fail", f"{what} failed verification: {names}.", None
    if unsure:
        names = ", ".join(m.metric for m in unsure)
        if any(m.outcome == "error" for m in unsure):
            first = next(m for m in unsure if m.outcome == "error")
            return "inconclusive", f"{what} could not be verified: {first.reason}", retry
        if retry:
            return ("inconclusive", f"{what} is inconclusive for {names}: not enough data yet. "
                    f"Check again in about {math.ceil(retry / 60)} minutes.", retry)
        # waiting does not help (no data at all, gaps, too little history): say what does
        return "inconclusive", f"{what} is inconclusive for {names}: {unsure[0].reason}", None
    confirmed = [m for m in metrics if m.role == "expectation" and m.outcome == "confirmed"]
    improved = [m for m in metrics if m.outcome == "improved"]
    parts = []
    if confirmed:
        parts.append("intended effect confirmed on " + ", ".join(m.metric for m in confirmed))
    if improved:
        parts.append("improved: " + ", ".join(m.metric for m in improved))
    if no_effect:
        parts.append("no effect seen on declared " + ", ".join(m.metric for m in no_effect))
    guards = [m for m in metrics if m.role == "guard"]
    if guards:
        parts.append("no guard metric regressed")
    return "pass", f"{what} passed: " + "; ".join(parts) + ".", None
