"""Deploy-level verification: resolve metrics, fetch them around a deploy, test, combine.

This is the IO edge of the statistics core: it renders catalog templates to PromQL
(escaped, :mod:`analyzers.prometheus.promql`), fetches through :class:`analyzers.prometheus.client.PrometheusClient`,
runs :func:`analyzers.stats.verify_series` per metric, controls the false-alarm rate across
the metrics of one deploy (Holm), and returns one :class:`~analyzers.model.DeployVerdict`.

How a metric outcome is read from a series result:

* declared ``increase``/``decrease``: shifted that way -> ``confirmed``; shifted the other way ->
  ``opposite``; no shift -> ``no_effect``.
* declared ``unchanged``: no shift -> ``confirmed``; a shift in the metric's bad direction
  -> ``opposite``; a shift in the good direction -> ``confirmed`` (noted in the reason).
* guard metrics (every deploy): a shift in the bad direction -> ``regressed``, else ``ok``.
* no data, too few points, warnings from the back end (partial data) or a failed query ->
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
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from analyzers.config import Config, MetricSpec, format_duration
from analyzers.errors import AnalyzerError, PrometheusError, PrometheusUnreachable
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from analyzers.text import ci_label, format_value

if TYPE_CHECKING:
    from analyzers.prometheus.client import PrometheusClient

_BAD_DIRECTION = {"decrease": "increase", "increase": "decrease"}


@dataclass(frozen=True)
class MetricPlan:
    """One metric to check on one deploy."""

    spec: MetricSpec
    role: str  # "expectation" | "guard"
    expect: str  # increase | decrease | unchanged | any
    min_effect: float | None


def plan_metrics(deploy: Deploy, config: Config) -> list[MetricPlan]:
    """Declared expectations first, then the service's guard metrics not already declared."""
    plans: list[MetricPlan] = []
    seen: set[str] = set()
    for exp in deploy.expectations:
        spec = config.metric(exp.metric)
        plans.append(MetricPlan(spec, "expectation", exp.expect, exp.min_effect))
        seen.add(exp.metric)
    for key in config.guards_for(deploy.service):
        if key in seen:
            continue
        spec = config.metric(key)
        plans.append(MetricPlan(spec, "guard", _BAD_DIRECTION.get(spec.good, "any"), None))
        seen.add(key)
    return plans


def rate_window(config: Config, step_s: float) -> str:
    """Rate window: at least 4 scrape intervals and at least the step (field-notes.md)."""
    return format_duration(max(4 * config.prometheus.scrape_interval_s, step_s))


def metric_query(config: Config, metric_key: str, deploy: Deploy, *, step_s: float | None = None) -> str:
    """The catalog template of ``metric_key`` rendered for ``deploy`` with escaped labels."""
    from analyzers.prometheus.promql import render

    spec = config.metric(metric_key)
    step = step_s if step_s is not None else config.verification.step_s
    return render(
        spec.query,
        window=rate_window(config, step),
        service=deploy.service,
        environment=deploy.environment,
        version=deploy.version,
    )


def analysis_window(deploy: Deploy, config: Config, now: datetime) -> tuple[datetime, datetime]:
    """[start, end] fetched for a deploy: history for seasonal baselines, then the after-window."""
    v = config.verification
    start = deploy.started_at - timedelta(seconds=max(v.history_s, v.window_before_s))
    end = min(now, deploy.started_at + timedelta(seconds=v.window_after_s + _ramp_s(deploy, config)))
    if end <= deploy.started_at:
        end = deploy.started_at
    return start, end


def _ramp_s(deploy: Deploy, config: Config) -> float:
    """How long the rollout may take to ramp in: its own duration if reported, else 30 minutes."""
    if deploy.finished_at is not None:
        d = (deploy.finished_at - deploy.started_at).total_seconds()
        return float(min(max(d, 0.0), 3600.0)) if d > 0 else 1800.0
    return 1800.0


class Fetcher(Protocol):
    """Gets one query's values on a regular grid; verification asks it instead of the client."""

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime, step_s: float) -> tuple[pd.Series, tuple[str, ...]]: ...


def series_from_result(result: Any, metric_key: str, start: datetime, end: datetime, step_s: float) -> pd.Series:
    """One regular-step series (NaN for gaps) from a :class:`QueryResult` that must hold <= 1 series."""
    real_step = result.step_s or step_s
    index = pd.date_range(
        start=pd.Timestamp(result.start).tz_convert("UTC") if result.start is not None else start,
        end=pd.Timestamp(result.end).tz_convert("UTC") if result.end is not None else end,
        freq=pd.Timedelta(seconds=real_step),
    )
    if len(result.series) == 0:
        return pd.Series(float("nan"), index=index, dtype=float)
    if len(result.series) > 1:
        labels = ", ".join(str(s.labels) for s in result.series[:3])
        raise AnalyzerError(
            f"metric {metric_key!r} returned {len(result.series)} series ({labels}...); "
            f"aggregate its query in the catalog (e.g. sum(...)) so it returns one series"
        )
    values = result.series[0].values.astype(float)
    if values.index.has_duplicates:
        values = values[~values.index.duplicated()]
    if len(values) == len(index) and values.index.equals(index):  # no gaps: nothing to align
        return pd.Series(values.to_numpy(), index=index, dtype=float)
    return values.reindex(index)


MAX_POINTS = 11_000


def align(t: float, step_s: float, *, up: bool) -> float:
    """Unix seconds aligned to a multiple of the step (down, or up)."""
    q = t / step_s
    n = math.floor(q) if not up else math.ceil(q)
    return n * step_s


def fetch_grid(
    client: PrometheusClient, query: str, metric_key: str, a: float, b: float, step_s: float
) -> tuple[list[pd.Series], list[tuple[float, float, tuple[str, ...]]], int, int]:
    """Fetch ``query`` on the step-aligned grid [a, b], split so no request exceeds the
    back end's 11,000-point cap (the step is never raised: every deploy sees the same grid).
    Returns (parts, warnings by span, queries issued, points fetched)."""
    parts: list[pd.Series] = []
    warns: list[tuple[float, float, tuple[str, ...]]] = []
    queries = points = 0
    # The client raises the step once an aligned range could exceed the cap (it allows one
    # extra step at each end for alignment), so stay three points under it.
    span = (MAX_POINTS - 3) * step_s
    t = a
    while t <= b:
        t_end = min(b, t + span)
        start = datetime.fromtimestamp(t, UTC)
        end = datetime.fromtimestamp(t_end, UTC)
        result = client.query_range(query, start, end, step_s)
        queries += 1
        points += sum(len(x.values) for x in result.series)
        if result.step_s is not None and abs(result.step_s - step_s) > 1e-9:
            raise AnalyzerError(
                f"the back end answered {metric_key!r} at a {result.step_s:g} s step instead of {step_s:g} s; "
                "lower verification.history or raise verification.step"
            )
        parts.append(series_from_result(result, metric_key, start, end, step_s))
        if result.warnings:
            warns.append((t, t_end, tuple(result.warnings)))
        t = t_end + step_s
    return parts, warns, queries, points


def grid_series(parts: list[pd.Series], a: float, b: float, step_s: float) -> pd.Series:
    index = pd.date_range(pd.Timestamp(a, unit="s", tz="UTC"), pd.Timestamp(b, unit="s", tz="UTC"), freq=pd.Timedelta(seconds=step_s))
    if not parts:
        return pd.Series(float("nan"), index=index, dtype=float)
    if len(parts) == 1:  # one chunk (the common case): it is on the grid already
        s = parts[0]
        if len(s) == len(index) and s.index.equals(index):
            return pd.Series(s.to_numpy(dtype=float), index=index, dtype=float)
    s = pd.concat(parts)
    s = s[~s.index.duplicated(keep="last")]
    return s.reindex(index)


class DirectFetcher:
    """The requests one deploy needs: its own window, on the step-aligned grid."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client
        self.queries = 0
        self.points = 0

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime, step_s: float) -> tuple[pd.Series, tuple[str, ...]]:
        a, b = align(start.timestamp(), step_s, up=False), align(end.timestamp(), step_s, up=True)
        parts, warns, q, n = fetch_grid(self.client, query, metric_key, a, b, step_s)
        self.queries += q
        self.points += n
        return grid_series(parts, a, b, step_s), tuple(w for _, _, ws in warns for w in ws)


def fetch_metric_series(
    client: PrometheusClient | None,
    config: Config,
    metric_key: str,
    deploy: Deploy,
    start: datetime,
    end: datetime,
    step_s: float | None = None,
    *,
    fetcher: Fetcher | None = None,
) -> tuple[str, pd.Series, tuple[str, ...]]:
    """Fetch one catalog metric for a deploy as one series (regular step, NaN for gaps).

    Raises :class:`PrometheusError` on back-end failures and :class:`AnalyzerError` when the
    template returns several series (the template must aggregate to one).
    """
    step = step_s if step_s is not None else config.verification.step_s
    query = metric_query(config, metric_key, deploy, step_s=step)
    if fetcher is None:
        if client is None:
            raise ValueError("fetch_metric_series needs a client or a fetcher")
        fetcher = DirectFetcher(client)
    series, warnings = fetcher.fetch(query, metric_key, start, end, step)
    return query, series, warnings


def window_levels(series: pd.Series, res: dict[str, Any]) -> dict[str, Any]:
    """Median level in the compared windows and the share of missing points in each.

    Reported next to the effect so a reader sees "12 ms -> 18 ms" and whether gaps (scrape
    failures, often right at the deploy) thinned the evidence.
    """
    out: dict[str, Any] = {}
    index = series.index
    sorted_index = isinstance(index, pd.DatetimeIndex) and index.is_monotonic_increasing
    values = series.to_numpy(dtype=float)
    for name in ("before", "after"):
        window = res.get(f"{name}_window")
        if not window or window[0] is None or window[1] is None:
            continue
        lo, hi = pd.Timestamp(window[0]), pd.Timestamp(window[1])
        if sorted_index:  # the usual grid: two binary searches instead of two full comparisons
            part = values[index.searchsorted(lo, side="left"): index.searchsorted(hi, side="right")]
        else:
            part = values[np.asarray((index >= lo) & (index <= hi))]
        finite = part[np.isfinite(part)]
        out[f"{name}_value"] = float(np.median(finite)) if len(finite) else None
        out[f"{name}_missing"] = round(1 - len(finite) / len(part), 4) if len(part) else None
    return out


def chart_points(series: pd.Series, deploy: Deploy, config: Config, max_points: int = 240) -> dict[str, list[Any]]:
    """The series from ``window_before`` before the deploy to the end, thinned to ``max_points``."""
    lo = pd.Timestamp(deploy.started_at - timedelta(seconds=config.verification.window_before_s))
    index = series.index
    if isinstance(index, pd.DatetimeIndex) and index.is_monotonic_increasing:
        part = series.iloc[index.searchsorted(lo, side="left"):]
    else:
        part = series[index >= lo]
    if len(part) > max_points:
        stride = -(-len(part) // max_points)
        part = part.iloc[::stride]
    if isinstance(part.index, pd.DatetimeIndex) and part.index.tz is not None:
        ts = (part.index.as_unit("us").asi8 // 1_000_000).tolist()  # whole seconds, as int(t.timestamp())
    else:
        ts = [int(t.timestamp()) for t in part.index]
    values = np.round(part.to_numpy(dtype=float), 9)  # display values: 9 decimals keep the JSON small
    vs = values.astype(object)
    vs[~np.isfinite(values)] = None
    return {"t": ts, "v": vs.tolist()}


def _outcome(plan: MetricPlan, status: str, direction: str | None) -> str:
    if status == "inconclusive":
        return "inconclusive"
    shifted = status == "shifted"
    bad = _BAD_DIRECTION.get(plan.spec.good)
    if plan.role == "guard":
        if shifted and bad is not None and direction == bad:
            return "regressed"
        return "ok"
    if plan.expect in ("increase", "decrease"):
        if not shifted:
            return "no_effect"
        return "confirmed" if direction == plan.expect else "opposite"
    # declared unchanged
    if not shifted:
        return "confirmed"
    if bad is not None and direction == bad:
        return "opposite"
    if bad is None:
        return "opposite"
    return "confirmed"


def _reason(plan: MetricPlan, outcome: str, res: dict[str, Any]) -> str:
    unit = plan.spec.unit
    key = plan.spec.key
    base = res.get("reason") or ""
    eff = res.get("effect")
    ci = res.get("effect_ci") or [None, None]
    rel = res.get("effect_rel")
    size = ""
    if eff is not None:
        size = f"{'+' if eff >= 0 else '-'}{format_value(abs(eff), unit)}"
        if rel is not None and math.isfinite(rel):
            size += f" ({rel * 100:+.0f}%)"
        if ci[0] is not None and ci[1] is not None:
            size += f", {ci_label(res)} {format_value(ci[0], unit)} to {format_value(ci[1], unit)}"
    text = {
        "confirmed": f"{key} moved as declared ({plan.expect})" if plan.expect != "unchanged" else f"{key} stayed unchanged as declared",
        "opposite": f"{key} moved the wrong way (declared {plan.expect})",
        "no_effect": f"{key} did not move (declared {plan.expect})",
        "regressed": f"guard {key} regressed",
        "ok": f"guard {key} shows no regression",
        "inconclusive": f"{key} is inconclusive",
    }.get(outcome, key)
    if size and outcome in ("confirmed", "opposite", "regressed"):
        text += f": {size}"
    if base:
        text += f". {base[0].upper()}{base[1:]}" if not base.endswith(".") else f". {base[0].upper()}{base[1:-1]}"
    return text + "."


def find_overlaps(deploy: Deploy, others: Iterable[Deploy], config: Config) -> list[Deploy]:
    """Other deploys close enough in time, on the same or a dependent service, to confound.

    Dependencies come from ``services.<name>.depends_on`` (either direction); unrelated
    services deploying at the same time are not blamed (at fleet scale every deploy has
    some), so declare the dependencies that matter.
    """
    window = timedelta(seconds=config.verification.overlap_s)
    related = {deploy.service}
    spec = config.services.get(deploy.service)
    if spec is not None:
        related.update(spec.depends_on)
    for name, s in config.services.items():
        if deploy.service in s.depends_on:
            related.add(name)
    out = []
    for o in others:
        if o.deploy_id == deploy.deploy_id:
            continue
        if abs(o.started_at - deploy.started_at) <= window and o.service in related:
            out.append(o)
    return sorted(out, key=lambda d: d.started_at)


def nearby_deploys(store: Any, deploy: Deploy, config: Config) -> list[Deploy]:
    """Deploys stored within the overlap window of ``deploy``: the candidates for ``others``."""
    window = timedelta(seconds=config.verification.overlap_s)
    return list(store.list_deploys(since=deploy.started_at - window, until=deploy.started_at + window, limit=1000))


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
    """
    from analyzers.stats import adjust_pvalues, verify_series

    if fetcher is None:
        fetcher = DirectFetcher(client)

    now = now or datetime.now(UTC)
    plans = plan_metrics(deploy, config)
    start, end = analysis_window(deploy, config, now)
    overlaps = find_overlaps(deploy, others, config)
    warnings: list[str] = []
    if overlaps:
        names = ", ".join(f"{o.service} {o.version} ({o.deploy_id})" for o in overlaps)
        warnings.append(
            f"Overlapping deploys within {format_duration(config.verification.overlap_s)}: {names}; "
            "a change cannot be attributed to one of them alone."
        )
    raw: list[tuple[MetricPlan, str, dict[str, Any] | None, str | None, str | None]] = []
    unreachable: str | None = None
    charts: dict[str, dict[str, list[Any]]] = {}
    for plan in plans:
        if progress:
            progress(plan.spec.key)
        query = ""
        if unreachable is not None:
            raw.append((plan, query, None, "error", unreachable))
            continue
        try:
            query, series, warns = fetch_metric_series(client, config, plan.spec.key, deploy, start, end, fetcher=fetcher)
        except PrometheusUnreachable as exc:
            unreachable = f"{exc}"
            raw.append((plan, query or _safe_query(config, plan, deploy), None, "error", unreachable))
            continue
        except PrometheusError as exc:
            raw.append((plan, query or _safe_query(config, plan, deploy), None, "error", f"query failed: {exc}"))
            continue
        except AnalyzerError as exc:
            raw.append((plan, query or _safe_query(config, plan, deploy), None, "error", str(exc)))
            continue
        min_effect = plan.min_effect if plan.min_effect is not None else plan.spec.min_effect
        try:
            tested_res = verify_series(
                series,
                deploy.started_at,
                # the declared (or, for guards, the bad) direction gets most of alpha; the other
                # direction is still tested, so a move the wrong way is reported too
                expect=plan.expect if plan.expect in ("increase", "decrease") else "any",
                min_effect=min_effect,
                min_effect_rel=plan.spec.min_effect_rel,
                alpha=config.verification.alpha,
                kind=plan.spec.kind,
                min_points=plan.spec.min_points,
                ramp_s=_ramp_s(deploy, config),
            ).to_dict()
        except AnalyzerError as exc:
            raw.append((plan, query, None, "inconclusive", str(exc)))
            continue
        if warns:
            quoted = "; ".join(warns)
            warnings.append(f"{plan.spec.key}: back end warned: {quoted}")
            raw.append((plan, query, tested_res, "inconclusive", f"the back end returned partial data ({quoted}); not judged"))
            continue
        if plan.spec.histogram and tested_res.get("status") == "shifted":
            tested_res["bucket_test"] = bucket_test(client, config, plan.spec, deploy, tested_res)
            tested_res = _with_buckets(tested_res, config.verification.alpha)
        charts[plan.spec.key] = chart_points(series, deploy, config)
        tested_res.update(window_levels(series, tested_res))
        tested_res["ci_level"] = 1.0 - config.verification.alpha  # effect_ci is a (1 - alpha) interval
        raw.append((plan, query, tested_res, None, None))

    # Family-wise error control across this deploy's tested metrics.
    tested = [i for i, r in enumerate(raw) if r[2] is not None and r[3] is None and r[2].get("p_value") is not None]
    pvalues = [float(raw[i][2]["p_value"]) for i in tested]  # type: ignore[index]
    adjusted = [float(p) for p in adjust_pvalues(pvalues, method="holm")] if tested else []
    p_adj: dict[int, float] = dict(zip(tested, adjusted, strict=True))
    alpha = config.verification.alpha

    metrics: list[MetricVerdict] = []
    for i, (plan, query, raw_res, forced, note) in enumerate(raw):
        res: dict[str, Any] | None = dict(raw_res) if raw_res is not None else None
        if forced is not None:
            outcome = forced
            reason = f"{plan.spec.key}: {note}"
            if not reason.endswith("."):
                reason += "."
        else:
            assert res is not None
            status = res.get("status", "inconclusive")
            if status == "shifted" and i in p_adj and p_adj[i] > alpha:
                status = "unchanged"
                res["reason"] = (
                    f"the shift (p={res.get('p_value'):.3g}) is not significant after Holm correction "
                    f"across {len(tested)} metrics (adjusted p={p_adj[i]:.3g})"
                )
            outcome = _outcome(plan, status, res.get("direction"))
            reason = _reason(plan, outcome, res)
        metrics.append(
            MetricVerdict(
                metric=plan.spec.key,
                role=plan.role,  # type: ignore[arg-type]
                expect=plan.expect,
                outcome=outcome,  # type: ignore[arg-type]
                reason=reason,
                unit=plan.spec.unit,
                query=query,
                result=res,
                window_start=start,
                window_end=end,
                p_adjusted=p_adj.get(i),
                chart=charts.get(plan.spec.key),
            )
        )
    overall, reason, retry = _combine(deploy, metrics, fail_on_no_effect)
    if overlaps and overall != "pass":
        reason += " Overlapping deploys may share the blame (see warnings)."
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
            f"Holm correction across {len(tested)} tested metrics at alpha={alpha:g}" if tested else ""
        ),
        retry_after_s=retry,
    )


#: Lag of a seasonal baseline, for comparing bucket counts with the same hours earlier.
_BASELINE_LAG_S = {"same time 1 day earlier": 86400, "same time 7 days earlier": 7 * 86400, "seasonal fit": 86400}


def bucket_test(client: PrometheusClient, config: Config, spec: MetricSpec, deploy: Deploy,
                res: dict[str, Any]) -> dict[str, Any]:
    """Compare the request counts per latency bucket of the after window with its baseline.

    A percentile line drawn by ``histogram_quantile`` is interpolated inside one bucket and, at
    low traffic, rests on a handful of slow requests a minute; the bucket counts are the
    evidence it is drawn from. One instant query (:func:`analyzers.prometheus.latency.windows_query`)
    fetches the after window and the series test's before window (the same hours a day or a
    week earlier when it used a seasonal baseline), and a G-test compares them
    (:func:`analyzers.prometheus.latency.compare_bucket_distributions`). Assumes requests are independent:
    with thousands of them, bursts and slow drifts make it reject easily, so it can confirm a
    shift the series test found but is never the only evidence for one. Returns the figures, or
    ``{"error": ...}`` when they could not be had.
    """
    from analyzers.prometheus import latency
    from analyzers.prometheus.promql import render

    aw = [datetime.fromisoformat(t) for t in res["after_window"]]
    lag = _BASELINE_LAG_S.get(str(res.get("baseline")))
    if lag:
        bw = [aw[0] - timedelta(seconds=lag), aw[1] - timedelta(seconds=lag)]
    else:
        bw = [datetime.fromisoformat(t) for t in res["before_window"]]
    windows = {"before": (int(bw[0].timestamp()), int(bw[1].timestamp())),
               "after": (int(aw[0].timestamp()), int(aw[1].timestamp()))}
    assert spec.histogram is not None
    selector = render(spec.label_selector, service=deploy.service, environment=deploy.environment,
                      version=deploy.version)
    try:
        query, at = latency.windows_query(spec.histogram, selector, windows)
        result = client.query(query, datetime.fromtimestamp(at, UTC))
        counts = {w: sorted((float(x.labels.get("le", "nan")), float(x.values.iloc[-1]))
                            for x in result.series if x.labels.get("window") == w and len(x.values))
                  for w in windows}
        les = [le for le, _ in counts["before"]]
        if not les or les != [le for le, _ in counts["after"]]:
            return {"query": query, "error": f"no {spec.histogram}_bucket series with the same buckets in both windows"}
        cmp = latency.compare_bucket_distributions(les, [c for _, c in counts["before"]], [c for _, c in counts["after"]])
    except (PrometheusError, AnalyzerError, ValueError) as exc:
        return {"error": str(exc)}
    return {"query": query, "method": cmp.method, "p_value": cmp.p_value, "n_before": cmp.n_before,
            "n_after": cmp.n_after, "max_cdf_diff": cmp.max_cdf_diff, "groups": len(cmp.pooled_les),
            "before_window": [t.isoformat() for t in bw]}


def _with_buckets(res: dict[str, Any], alpha: float) -> dict[str, Any]:
    """A shifted latency result once its bucket test is in: the line and the buckets must both
    show the change (an intersection-union test, so the p-value is the larger of the two)."""
    bt = res.get("bucket_test") or {}
    p = bt.get("p_value")
    if "error" in bt or p is None or not math.isfinite(p):
        why = bt.get("error") or "too few requests to compare"
        return dict(res, reason=f"{res.get('reason', '')} Bucket counts not compared: {why}.")
    counts = f"{bt['n_before']:,.0f} requests before, {bt['n_after']:,.0f} after"
    p_line = float(res["p_value"])
    p_txt = f"p={p:.2g}" if p > 0 else "p<1e-300"
    if p > alpha:
        return dict(res, status="unchanged", p_value=max(p_line, p), reason=(
            f"The percentile line moved (p={p_line:.2g}), but the requests per latency bucket did not "
            f"({bt['method']} {p_txt} on {counts}): the move is not in the requests' latencies"))
    return dict(res, p_value=max(p_line, p), reason=(
        f"{res.get('reason', '')} The requests per latency bucket differ too ({bt['method']} {p_txt} on "
        f"{counts}; largest gap between the bucket CDFs {bt['max_cdf_diff'] * 100:.1f} points)."))


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
        wait = f" Check again in about {math.ceil(retry / 60)} minutes." if retry else ""
        return "inconclusive", f"{what} is inconclusive for {names}: not enough data yet.{wait}", retry
    confirmed = [m for m in metrics if m.role == "expectation" and m.outcome == "confirmed"]
    parts = []
    if confirmed:
        parts.append("intended effect confirmed on " + ", ".join(m.metric for m in confirmed))
    if no_effect:
        parts.append("no effect seen on declared " + ", ".join(m.metric for m in no_effect))
    guards = [m for m in metrics if m.role == "guard"]
    if guards:
        parts.append("no guard metric regressed")
    return "pass", f"{what} passed: " + "; ".join(parts) + ".", None
