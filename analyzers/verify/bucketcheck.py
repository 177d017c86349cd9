"""A latency percentile drawn from a histogram, checked against the bucket counts behind it.

When the line test finds a shift, one instant query compares the requests per bucket of the
after window with the before window (or the same hours a day or a week earlier for a seasonal
baseline), G-test on pooled counts; the shift stands only if both show it (intersection-union:
the metric's p-value is the larger of the two). See ``docs/statistics.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd

from analyzers.config import Config, MetricSpec
from analyzers.errors import AnalyzerError, PrometheusError, is_outage, unreachable_from
from analyzers.model import Deploy
from analyzers.stats.sequential import SequentialPath
from analyzers.stats.tail_shift import implied_log_shift, lognormal_tail, shift_to_ratio
from analyzers.text import format_relative, format_value, p_equals, redact

if TYPE_CHECKING:
    from analyzers.prometheus.client import PrometheusClient


#: Lag of a seasonal baseline, for comparing bucket counts with the same hours earlier.
#: Most windows before the deploy the bucket mix's drift is measured on, and how far back they
#: reach: 6 h hold eleven 32-minute windows (GC bursts, a few an hour, show in enough pairs).
DRIFT_BLOCKS = 12
DRIFT_SPAN_S = 6 * 3600
DAY_S = 86400

#: The tail a bucket change's direction is read in: bounds with at least this share of the before
#: window's requests at or under them (its p90 and up).
TAIL_FROM = 0.9

_BASELINE_LAG_S = {"same time 1 day earlier": 86400, "same time 7 days earlier": 7 * 86400, "seasonal fit": 86400}


class BucketCounts(NamedTuple):
    """The bucket bounds (sorted, ``+Inf`` last) and the before window's cumulative counts."""

    les: tuple[float, ...]
    before: tuple[float, ...]


def bucket_test(client: PrometheusClient, config: Config, spec: MetricSpec, deploy: Deploy,
                res: dict[str, Any]) -> tuple[dict[str, Any], BucketCounts | None]:
    """Compare the request counts per latency bucket of the after window with its baseline.

    A percentile line drawn by ``histogram_quantile`` is interpolated inside one bucket and, at
    low traffic, rests on a handful of slow requests a minute; the bucket counts are the
    evidence it is drawn from. One instant query (:func:`analyzers.prometheus.latency.windows_query`)
    fetches the after window and the series test's before window (the same hours a day or a
    week earlier when it used a seasonal baseline), and a G-test compares them
    (:func:`analyzers.stats.buckets.compare_bucket_distributions`). Assumes requests are independent:
    with thousands of them, bursts and slow drifts make it reject easily, so it can confirm a
    shift the series test found but is never the only evidence for one. Returns the figures (or
    ``{"error": ...}`` when they could not be had) and the bounds with the before window's counts
    (None when no counts came).
    """
    from analyzers.prometheus.latency import window_counts, windows_query
    from analyzers.prometheus.promql import render
    from analyzers.stats.buckets import compare_bucket_distributions

    aw = [datetime.fromisoformat(t) for t in res["after_window"]]
    lag = _BASELINE_LAG_S.get(str(res.get("baseline")))
    if lag:
        bw = [aw[0] - timedelta(seconds=lag), aw[1] - timedelta(seconds=lag)]
    else:
        bw = [datetime.fromisoformat(t) for t in res["before_window"]]
    windows = {"before": (int(bw[0].timestamp()), int(bw[1].timestamp())),
               "after": (int(aw[0].timestamp()), int(aw[1].timestamp()))}
    blocks = drift_blocks(res)
    windows.update(blocks)
    assert spec.histogram is not None
    selector = render(spec.label_selector, service=deploy.service, environment=deploy.environment,
                      version=deploy.version)
    try:
        query, at = windows_query(spec.histogram, selector, windows)
        result = client.query(query, datetime.fromtimestamp(at, UTC))
        (les, before), (after_les, after) = window_counts(result, "before"), window_counts(result, "after")
        if not les or les != after_les:
            return {"query": query, "error": f"no {spec.histogram}_bucket series with the same buckets in both windows"}, None
        cmp = compare_bucket_distributions(les, before, after)
        drift = _drift(result, les, after, list(blocks))
    except (PrometheusError, AnalyzerError, ValueError) as exc:
        if isinstance(exc, PrometheusError) and is_outage(exc):  # could not check: no verdict at all
            raise unreachable_from(exc) from exc
        return {"error": redact(str(exc))}, None
    return ({"query": query, "method": cmp.method, "p_value": cmp.p_value, "n_before": cmp.n_before,
             "n_after": cmp.n_after, "max_cdf_diff": cmp.max_cdf_diff, "groups": len(cmp.pooled_les),
             "before_window": [t.isoformat() for t in bw], **drift, **tail_direction(les, before, after)},
            BucketCounts(tuple(les), tuple(before)))


def tail_direction(les: tuple[float, ...], before: tuple[float, ...], after: tuple[float, ...]) -> dict[str, Any]:
    """Which way the slow tail moved, from cumulative counts per bucket bound (sorted, ``+Inf`` last).

    Among the bounds in the before window's tail (at least :data:`TAIL_FROM` of its requests at or
    under them; ``+Inf`` excluded), the one where the share of requests *slower* than the bound
    changed most: ``"slower"`` if that share grew, ``"faster"`` if it shrank, with the bound and
    both shares. Empty when a window has no requests or no bound lies in the tail. A G-test says
    whether the mixes differ, not which way: a deploy that halves latency while its rollout widens
    the percentile line's spread moves the requests to faster buckets, and is not a worse tail.
    """
    if not before or not after or before[-1] <= 0 or after[-1] <= 0:
        return {}
    best: tuple[float, float, float, float] | None = None
    for le, b, a in zip(les, before, after, strict=True):
        if math.isinf(le) or b / before[-1] < TAIL_FROM:
            continue
        share_b, share_a = 1.0 - b / before[-1], 1.0 - a / after[-1]
        if best is None or abs(share_a - share_b) > abs(best[3] - best[2]):
            best = (le, share_a - share_b, share_b, share_a)
    if best is None or best[1] == 0:
        return {}
    return {"tail_direction": "slower" if best[1] > 0 else "faster", "tail_le": best[0],
            "tail_share_before": best[2], "tail_share_after": best[3]}


def drift_blocks(res: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Up to :data:`DRIFT_BLOCKS` consecutive windows as long as the after window, ending where
    the after window starts and reaching back at most :data:`DRIFT_SPAN_S` (oldest first), and
    the last of them and the after window a day earlier."""
    aw = [datetime.fromisoformat(t) for t in res["after_window"]]
    length = int((aw[1] - aw[0]).total_seconds())
    end = int(aw[0].timestamp())
    if length <= 0:
        return {}
    m = min(DRIFT_BLOCKS, int(DRIFT_SPAN_S // length))
    out = {f"block{j}": (end - (m - j) * length, end - (m - j - 1) * length) for j in range(m)}
    if m:  # the last block and the after window a day earlier: how the mix moved then
        out["day_last"] = (end - length - DAY_S, end - DAY_S)
        out["day_after"] = (end - DAY_S, int(aw[1].timestamp()) - DAY_S)
    return out


def _drift(result: Any, les: tuple[float, ...], after: tuple[float, ...], names: list[str]) -> dict[str, Any]:
    """The drift-adjusted comparison's figures, or nothing when it cannot be had (too few blocks,
    a block without the same buckets or without requests)."""
    from analyzers.prometheus.latency import window_counts
    from analyzers.stats.bucket_drift import MIN_BLOCKS, drift_adjusted_comparison, seasonal_comparison

    counts = [window_counts(result, n) for n in names if n.startswith("block")]
    while counts and counts[0][0] != les:  # the oldest windows may precede the data
        counts.pop(0)
    if len(counts) < MIN_BLOCKS or any(c[0] != les for c in counts):
        return {}
    try:
        d = drift_adjusted_comparison(les, [c[1] for c in counts], after)
    except ValueError:
        return {}
    out: dict[str, Any] = {"p_drift": d.p_value, "drift_dispersion": d.dispersion, "drift_blocks": d.blocks,
                           "drift_method": d.method}
    day = [window_counts(result, n) for n in ("day_last", "day_after")]
    if all(c[0] == les for c in day):  # the same hours a day earlier are in the data
        try:
            out["p_day"] = seasonal_comparison(les, counts[-1][1], after, day[0][1], day[1][1], d.dispersion, d.blocks)
        except ValueError:
            pass
    # Beyond drift: the mix moved more than between adjacent windows before the deploy AND
    # otherwise than over the same hours a day earlier (both must reject: the larger p-value).
    ps = [p for p in (out["p_drift"], out.get("p_day")) if p is not None and math.isfinite(p)]
    out["p_beyond_drift"] = max(ps) if ps else math.nan
    return out


def with_buckets(res: dict[str, Any], alpha: float) -> dict[str, Any]:
    """A shifted latency result once its bucket test is in: the line and the buckets must both
    show the change (an intersection-union test, so the p-value is the larger of the two).

    ``alpha`` (the metric's share of the deploy's budget) is kept with the bucket figures: the
    decision table reads the tail at the same level (:func:`analyzers.verify.decision.evidence_from_result`).
    A result that is not shifted (the counts were fetched to judge its spread) only gets that level."""
    bt = res.get("bucket_test") or {}
    if res.get("status") != "shifted":
        return dict(res, bucket_test=dict(bt, alpha=alpha)) if isinstance(res.get("bucket_test"), dict) else res
    p = bt.get("p_value")
    if "error" in bt or p is None or not math.isfinite(p):
        why = bt.get("error") or "too few requests to compare"
        return dict(res, reason=f"{res.get('reason', '')} Bucket counts not compared: {why}.")
    bt = dict(bt, alpha=alpha)
    res = dict(res, bucket_test=bt)
    counts = f"{bt['n_before']:,.0f} requests before, {bt['n_after']:,.0f} after"
    p_line = float(res["p_value"])
    p_txt = p_equals(p)
    if p > alpha:
        return dict(res, status="unchanged", p_value=max(p_line, p), reason=(
            f"The percentile line moved ({p_equals(p_line)}), but the requests per latency bucket did not "
            f"({bt['method']} {p_txt} on {counts}): the move is not in the requests' latencies"))
    pb = bt.get("p_beyond_drift")
    if pb is not None and math.isfinite(pb) and pb > alpha:
        return dict(res, status="unchanged", p_value=max(p_line, pb), reason=(
            f"The percentile line moved ({p_equals(p_line)}) and the requests per latency bucket differ "
            f"({bt['method']} {p_txt} on {counts}), but no more than {_drift_text(bt)}: "
            "the move follows the traffic, not the deploy"))
    text = (f"{res.get('reason', '')} The requests per latency bucket differ too ({bt['method']} {p_txt} on "
            f"{counts}; largest gap between the bucket CDFs {bt['max_cdf_diff'] * 100:.1f} pp)")
    if pb is not None and math.isfinite(pb):
        text += f", beyond {_drift_text(bt)}"
    if bt.get("tail_direction"):
        text += (f"; requests slower than {format_value(bt['tail_le'], 's')}: {bt['tail_share_before'] * 100:.2f}% "
                 f"before, {bt['tail_share_after'] * 100:.2f}% after")
    return dict(res, p_value=max(p_line, p), reason=text + ".")


def _drift_text(bt: dict[str, Any]) -> str:
    """How the bucket mix moves without a deploy, in a reason's words."""
    text = (f"the mix drifts between adjacent windows before the deploy ({bt['drift_blocks']} windows, "
            f"x{bt['drift_dispersion']:.1f} the variation of independent requests; {p_equals(bt['p_drift'])})")
    if bt.get("p_day") is not None and math.isfinite(bt["p_day"]):
        text += f" or moved over the same hours a day earlier ({p_equals(bt['p_day'])})"
    return text


def spread_in_line_units(client: PrometheusClient, config: Config, spec: MetricSpec, deploy: Deploy,
                         res: dict[str, Any], rerun: Callable[[tuple[float, ...]], dict[str, Any]]
                         ) -> tuple[dict[str, Any], BucketCounts | None]:
    """A spread-only change of a histogram percentile, judged again in the line's own noise units.

    The spread test assumes the line's noise keeps its scale when nothing changes. A percentile
    drawn by ``histogram_quantile`` breaks that: its noise scales with the width of the bucket
    holding it (:func:`analyzers.stats.buckets.line_noise_scale`), so a p99 that wanders across
    a bound (payments at 1 s: 0.5-1 s below, 1-2.5 s above) gets about 3x noisier with the same
    requests. With the bounds from the bucket test's query (fetched once here; the figures are
    kept in the result for the decision), ``rerun(bounds)`` repeats the series test with the
    spread compared in bucket widths. Unchanged (with the bucket figures) when no bounds came. The
    counts come back too (for :func:`in_latency_units`).
    """
    bt, counts = bucket_test(client, config, spec, deploy, res)
    if counts is None:
        return dict(res, bucket_test=bt), None
    new = rerun(counts.les)
    new["bucket_test"] = bt
    return new, counts


def histogram_quantile_of(query: str) -> float | None:
    """The ``q`` of a catalog query drawn by ``histogram_quantile(q, ...)``, else None."""
    m = _QUANTILE.search(query)
    if m is None:
        return None
    q = float(m.group(1))
    return q if 0.0 < q < 1.0 else None


_QUANTILE = re.compile(r"histogram_quantile\(\s*([0-9]*\.?[0-9]+)\s*,")


class LineCheck(NamedTuple):
    """What :func:`in_latency_units` needs besides the result: the percentile line and its bucket
    counts, how to run the metric's confidence sequence on another series, and at which level."""

    series: pd.Series  # the percentile line
    counts: BucketCounts | None  # bounds and the before window's counts (bucket test)
    quantile: float | None  # the line's q (histogram_quantile(q, ...))
    make_path: Callable[[pd.Series], SequentialPath | None]  # the metric's sequence on another series
    level_alpha: float  # the metric's share of the deploy's budget (alpha / k)
    until_s: float  # the look (Unix s)
    rerun: Callable[[pd.Series], dict[str, Any]] | None = None  # the one-look test on another series
    min_effect_rel: float | None = None
    #: log of the same quantile read from each step's bucket counts (log-probit;
    #: :func:`analyzers.stats.step_quantiles.step_log_quantiles`), when they were fetched
    step_reads: pd.Series | None = None


def _sequence_on(check: LineCheck, shift_series: pd.Series) -> dict[str, Any] | None:
    """The metric's sequence on a log-latency series: status, direction, p, size and interval as
    factors minus one (None when it cannot run)."""
    path = check.make_path(shift_series)
    if path is None or path.kind != "level":
        return None
    seq = path.at(check.level_alpha, check.until_s)
    p = path.pvalue(check.until_s)
    lo, hi = seq["interval"]
    est = seq.get("estimate")
    raw = seq.get("estimate_unclipped")
    if est is not None and raw is not None and math.isfinite(raw) and seq["direction"] in ("increase", "decrease"):
        est = max(est, raw) if seq["direction"] == "increase" else min(est, raw)
    return {"status": seq["status"], "direction": seq["direction"], "p_value": p,
            "estimate": shift_to_ratio(est), "interval": [shift_to_ratio(lo), shift_to_ratio(hi)]}


def in_latency_units(res: dict[str, Any], check: LineCheck) -> dict[str, Any]:
    """A level shift of a percentile line, which must also be certain as a shift of the requests' latency.

    The line is mapped point by point to the log-latency shift of the before window's log-normal
    tail that ``histogram_quantile`` would read as it (:mod:`analyzers.stats.tail_shift`), and the
    same confidence sequence (``check.make_path``: baseline, noise model, horizon, direction) runs
    on that series at the same level; with ``check.step_reads`` (the same quantile read from each
    step's bucket counts, log-probit), it runs on that series too. The shift stands only if every
    sequence is certain of it in the same direction (intersection-union: the p-value is the
    largest, and the error rate over every look is at most any one sequence's), and, with
    ``min_effect_rel``, only if the requests' latency moved by at least that much on every scale
    (the larger of the clipped and unclipped estimates in the decided direction, as
    :mod:`analyzers.verify.anytime` reads the line's). Otherwise the line's move is its
    interpolation inside a wide bucket, or a wander the line amplifies there: the metric is
    unchanged, and its interval is widened to hold zero, so interval and decision agree, and its
    spread is judged on the same scale (``rerun``: the one-look test on the shifts; the wander the
    line amplifies in a wide bucket also makes it noisier there).
    The figures are kept as ``latency_shift`` (and ``step_quantile``; docs/verdict-json.md).
    ``res`` unchanged when the tail cannot be fitted or the sequence not run.
    """
    counts, quantile = check.counts, check.quantile
    if (res.get("status") != "shifted" or res.get("change_kind", "level") != "level" or counts is None
            or quantile is None or res.get("p_value") is None):
        return res
    fit = lognormal_tail(counts.les, counts.before)
    if fit is None:
        return res
    shifts = implied_log_shift(check.series.to_numpy(dtype=float), counts.les, fit[0], fit[1], quantile)
    shift_series = pd.Series(shifts, index=check.series.index)
    info = _sequence_on(check, shift_series)
    if info is None:
        return res
    info.update(tail_mu=fit[0], tail_sigma=fit[1])
    out = dict(res, latency_shift=info, p_value=max(float(res["p_value"]), info["p_value"]))
    scales = [(info, shift_series)]
    if check.step_reads is not None:
        step = _sequence_on(check, check.step_reads)
        if step is not None:
            out["step_quantile"] = step
            out["p_value"] = max(out["p_value"], step["p_value"])
            scales.append((step, check.step_reads))
    failed = None
    for scale, series in scales:
        certain = scale["status"] == "shifted" and scale["direction"] == res.get("direction")
        size = scale["estimate"]
        small = certain and check.min_effect_rel is not None and size is not None and abs(size) < check.min_effect_rel
        if not certain or small:
            failed = (scale, series, small)
            break
    if failed is None:
        return out
    scale, series, small = failed
    size, p = scale["estimate"], scale["p_value"]
    read = ("read from each minute's bucket counts" if scale is not info
            else "the log-normal tail of the bucket counts before the deploy")
    why = (f"by {format_relative(size)}, certain at any look but below the minimum meaningful effect "
           f"({format_relative(check.min_effect_rel).lstrip('+')})" if small else
           f"the move is not certain at any look ({format_relative(scale['interval'][0])} to "
           f"{format_relative(scale['interval'][1])}, always-valid {p_equals(p)})")
    if check.rerun is not None:
        spread = {k: v for k, v in (check.rerun(series).get("details") or {}).items() if k in ("p_spread", "spread_ratio")}
        out["details"] = dict(out.get("details") or {}, **spread)
    elo, ehi = out.get("effect_ci") or [None, None]
    out.update(status="unchanged", direction=None, change_kind=None,
               effect_ci=[min(elo, 0.0) if elo is not None else None, max(ehi, 0.0) if ehi is not None else None],
               reason=(f"The percentile line moved ({p_equals(res['p_value'])}), but read as a shift of the requests' "
                       f"latency ({read}) {why}: the line's interpolation inside a wide bucket amplifies the move"))
    return out
