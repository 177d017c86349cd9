"""Canary against baseline while both serve: always-valid tests on counts, buckets and lines.

Pure numpy/scipy, no IO. The inputs are per-interval aggregates of the two versions over the
*same* minutes (one row per interval, typically 60 s), so whatever the traffic did in a minute
(a daily cycle, a load spike, a dependency's bad minute) reaches both versions and cancels.

Three comparisons, each a sequential test whose error budget covers every look:

* :func:`compare_rates` - events against exposure (errors against requests, or requests slower
  than a bucket bound against all requests). Model: in each interval, each version's events are
  Poisson with its exposure times its rate. Given the interval's total events, the canary's
  events are then *exactly* binomial with success probability ``s r / (s r + 1 - s)``, where
  ``s`` is the canary's share of the exposure and ``r`` the rate ratio. No normal approximation:
  3 errors out of 10 minutes at a 1% share are judged by this binomial. The statistic is a
  mixture likelihood ratio (a discrete prior on ``log r`` above the tolerance) multiplied over
  intervals: a nonnegative supermartingale under every ``r <= tolerance``, so by Ville's
  inequality the chance that it *ever* reaches ``1/alpha`` is at most ``alpha``, however often
  anyone looks (Argo polling every 30 s or Flagger every minute: the same budget).
  Assumption: given both versions' exposure, events in an interval are independent across
  requests (the split of one interval's errors between versions is binomial). Bursts shared
  by both versions are harmless (the test conditions on each interval's total); a burst that
  hits one version only is a real difference between the versions (one bad pod is one).
* :func:`compare_buckets` - latency histograms: the same rate test on the requests above a few
  bucket bounds (bounds chosen once from the first intervals' *combined* counts, which carry
  no information about the split, so the choice does not spend error budget). A heavy tail
  needs no variance: only counts above a bound enter.
* :func:`compare_levels` - any other per-version series (CPU, a gauge): the paired difference
  ``canary - baseline`` per timestamp removes the shared cycle and spikes; its long-run
  variance (Newey-West, Bartlett kernel) carries the autocorrelation that remains, and a
  two-sided normal-mixture confidence sequence (Robbins; Howard et al. 2021) on its running
  sum is valid at every look (asymptotically, with the variance estimated).

A ``pass`` needs more than "no fail yet": the always-valid interval of the ratio must rule out
a large regression (upper bound at most ``pass_ratio``). Too few requests or no data leave a
metric ``inconclusive``, never ``ok``. One alpha is split over all metrics by weight
(:func:`alpha_split`); dry-run metrics take their share too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
from scipy.special import logsumexp

from analyzers.stats.canary_horizon import horizon_test

Status = Literal["regressed", "ok", "inconclusive"]

#: Alternatives of the mixture: log rate ratios above the tolerance (0.05 .. 3.0, i.e. up to 20x) ...
_DELTAS = np.linspace(0.05, 3.0, 60)
#: ... weighted by a half-normal of this scale: most weight on 1.3x-3x, where regressions matter.
_PRIOR_SCALE = 0.8
#: Log rate ratios at which the always-valid interval is evaluated (1/50x .. 50x).
_GRID = np.linspace(-math.log(50.0), math.log(50.0), 161)
#: Upper-tail shares (of the combined requests) that pick the bucket bounds: p50, p90, p99.
TAIL_SHARES = (0.5, 0.1, 0.01)
#: Pseudo-intervals of dispersion 1 that the split's dispersion estimate is shrunk with.
_PHI_PRIOR_INTERVALS = 5
#: Combined requests needed before the bucket bounds are fixed.
BOUND_MIN_REQUESTS = 200


@dataclass(frozen=True)
class Comparison:
    """One metric's canary-vs-baseline judgement at the latest look.

    ``ratio`` is canary rate / baseline rate (``compare_levels``: canary - baseline, in the
    metric's unit), with ``ratio_ci`` valid at every look at level ``1 - alpha``; ``evidence``
    the largest e-value reached (fails at ``1 / alpha``); ``detected_index`` the interval at
    which it first did.
    """

    metric: str
    method: str
    status: Status
    reason: str
    alpha: float
    ratio: float | None = None
    ratio_ci: tuple[float, float] | None = None
    evidence: float = 1.0
    detected_index: int | None = None
    canary_exposure: float = 0.0
    baseline_exposure: float = 0.0
    canary_events: float = 0.0
    baseline_events: float = 0.0
    intervals: int = 0
    dry_run: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "metric": self.metric,
            "method": self.method,
            "status": self.status,
            "reason": self.reason,
            "alpha": self.alpha,
            "ratio": num(self.ratio),
            "ratio_ci": None if self.ratio_ci is None else [num(self.ratio_ci[0]), num(self.ratio_ci[1])],
            "evidence": num(min(self.evidence, 1e300)),
            "detected_index": self.detected_index,
            "canary_exposure": self.canary_exposure,
            "baseline_exposure": self.baseline_exposure,
            "canary_events": self.canary_events,
            "baseline_events": self.baseline_events,
            "intervals": self.intervals,
            "dry_run": self.dry_run,
            "details": self.details,
        }


def _clean(*arrays: Any) -> list[np.ndarray]:
    out = [np.nan_to_num(np.asarray(a, dtype=float), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0.0) for a in arrays]
    n = {a.shape for a in out}
    if len(n) != 1:
        raise ValueError(f"canary inputs must have one row per interval each, got shapes {sorted(n)}")
    return out


def _steps(x: np.ndarray, y: np.ndarray, s: np.ndarray, theta: np.ndarray, theta0: float) -> np.ndarray:
    """Log likelihood ratio of each interval (columns), alternatives ``theta`` (rows) vs ``theta0``."""
    logit_s = np.log(s) - np.log1p(-s)
    a = logit_s[None, :] + theta[:, None]
    a0 = logit_s + theta0
    # log p(theta) = -log(1 + e^-a), log(1 - p(theta)) = -log(1 + e^a)
    lp, lq = -np.logaddexp(0.0, -a), -np.logaddexp(0.0, a)
    lp0, lq0 = -np.logaddexp(0.0, -a0), -np.logaddexp(0.0, a0)
    return x[None, :] * (lp - lp0[None, :]) + y[None, :] * (lq - lq0[None, :])


def split_weights(x: np.ndarray, y: np.ndarray, nx: np.ndarray, ny: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """Predictable tempering: interval ``i``'s log likelihood ratio is multiplied by ``1 / phi``.

    ``phi`` is the extra-binomial dispersion of the split of events between the versions seen
    in the intervals *before* ``i`` (Pearson statistic around the rate ratio fitted on them,
    shrunk towards ``prior`` by ``_PHI_PRIOR_INTERVALS`` pseudo-intervals), at least 1. A weight in
    (0, 1] fixed before the interval is seen keeps the product a supermartingale under the
    binomial null (Jensen: E[LR^w] <= E[LR]^w = 1), and when one version's events come in bursts
    of their own (one bad pod-minute) it scales the evidence down as a quasi-likelihood would.
    """
    n = x.size
    w = np.full(n, 1.0 / max(1.0, prior))
    s = nx / (nx + ny)
    t = x + y
    for i in range(1, n):
        r = ((x[:i].sum() + 0.5) / nx[:i].sum()) / ((y[:i].sum() + 0.5) / ny[:i].sum())
        p = s[:i] * r / (s[:i] * r + 1 - s[:i])
        m = t[:i] > 0
        pearson = float((((x[:i] - t[:i] * p) ** 2)[m] / (t[:i] * p * (1 - p))[m]).sum())
        phi = (_PHI_PRIOR_INTERVALS * prior + pearson) / (_PHI_PRIOR_INTERVALS + int(m.sum()))
        w[i] = 1.0 / max(1.0, phi)
    return w


def _log_lr(x: np.ndarray, y: np.ndarray, s: np.ndarray, theta: np.ndarray, theta0: float,
            w: np.ndarray | None = None) -> np.ndarray:
    """Cumulative (tempered) log likelihood ratio per interval, alternatives ``theta`` (rows) vs ``theta0``."""
    st = _steps(x, y, s, theta, theta0)
    return np.cumsum(st if w is None else st * w[None, :], axis=1)


def _mixture(steps: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    w = np.exp(-0.5 * (deltas / _PRIOR_SCALE) ** 2)
    logw = np.log(w / w.sum())
    return logsumexp(steps + logw[:, None], axis=0)


def rate_evidence(x: Any, y: Any, nx: Any, ny: Any, *, tolerance: float = 1.0, temper: bool = True,
                  dispersion_prior: float = 1.0) -> np.ndarray:
    """Log e-process per interval against "canary rate <= tolerance x baseline rate".

    ``x``/``y``: events of canary/baseline per interval; ``nx``/``ny``: their exposure (requests).
    Intervals where either version has no exposure add nothing. ``temper``: scale each
    interval by :func:`split_weights` (bursts of one version's own).
    """
    x, y, nx, ny = _clean(x, y, nx, ny)
    ok = (nx > 0) & (ny > 0)
    x, y, nx, ny = x[ok], y[ok], nx[ok], ny[ok]
    theta0 = math.log(tolerance)
    out = np.zeros(ok.size)
    if x.size == 0:
        return out
    s = nx / (nx + ny)
    w = split_weights(x, y, nx, ny, dispersion_prior) if temper else None
    e = _mixture(_log_lr(x, y, s, theta0 + _DELTAS, theta0, w), _DELTAS)
    out[ok] = e
    return _fill_forward(out, ok)


def _fill_forward(e: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Intervals without both versions carry the previous value (0 before the first)."""
    idx = np.where(ok, np.arange(ok.size), -1)
    idx = np.maximum.accumulate(idx)
    return np.where(idx >= 0, e[np.clip(idx, 0, None)], 0.0)


def _rate_ci(x: np.ndarray, y: np.ndarray, s: np.ndarray, alpha: float, w: np.ndarray | None = None) -> tuple[float, float]:
    """Always-valid interval of the rate ratio: ratios no two-sided mixture e-process ever rejected."""
    deltas = np.concatenate([-_DELTAS[::-1], _DELTAS])
    keep = []
    for theta0 in _GRID:
        e = _mixture(_log_lr(x, y, s, theta0 + deltas, theta0, w), deltas)
        keep.append(bool(e.size == 0 or e.max() < math.log(1.0 / alpha)))
    kept = _GRID[np.array(keep)]
    if kept.size == 0:  # every ratio rejected at some look (a sharp change mid-canary): report the estimate
        est = math.log(max(float(x.sum()), 0.5) / max(float(y.sum()), 0.5) * max(1 - float(s.mean()), 1e-9) / max(float(s.mean()), 1e-9))
        return (math.exp(est), math.exp(est))
    lo = -math.inf if kept[0] == _GRID[0] else float(kept[0])
    hi = math.inf if kept[-1] == _GRID[-1] else float(kept[-1])
    return (math.exp(lo), math.exp(hi))


class RateOptions(TypedDict, total=False):
    """Keyword options shared by :func:`compare_rates` and :func:`compare_buckets`.

    ``alpha``: the metric's error budget; ``tolerance``: the accepted rate ratio; ``pass_ratio``:
    a pass needs the always-valid interval to rule this ratio out; ``min_exposure``: canary
    requests before a pass; ``horizon``: intervals until the canary window ends (the
    finite-horizon test, :mod:`analyzers.stats.canary_horizon`; ``None``: the all-time mixture
    test); ``interval=False`` skips the always-valid interval (benchmarks; never ``ok`` then);
    ``dispersion_prior``: the tempering's prior (``split_weights``).
    """

    alpha: float
    tolerance: float
    pass_ratio: float
    min_exposure: float
    horizon: int | None
    dry_run: bool
    interval: bool
    dispersion_prior: float


def compare_rates(metric: str, canary_events: Any, baseline_events: Any, canary_exposure: Any, baseline_exposure: Any,
                  *, what: str = "errors", **options: Unpack[RateOptions]) -> Comparison:
    """Sequential exact test that the canary's event rate exceeds ``tolerance`` x the baseline's.

    ``regressed`` once the test failed at some look (the finite-horizon boundary when
    ``horizon`` is set, else the mixture e-process reaching ``1/alpha``); ``ok`` when the
    always-valid interval's upper bound is at most ``pass_ratio`` (a doubling ruled out by
    default) and the canary served at least ``min_exposure``; else ``inconclusive`` with what
    is missing. Options: :class:`RateOptions` (defaults alpha 0.01, tolerance 1.05, pass_ratio 2,
    min_exposure 100, no horizon).
    """
    alpha, tolerance = options.get("alpha", 0.01), options.get("tolerance", 1.05)
    pass_ratio, min_exposure = options.get("pass_ratio", 2.0), options.get("min_exposure", 100.0)
    prior, horizon = options.get("dispersion_prior", 1.0), options.get("horizon")
    x, y, nx, ny = _clean(canary_events, baseline_events, canary_exposure, baseline_exposure)
    ok = (nx > 0) & (ny > 0)
    tx, ty, tnx, tny = float(x[ok].sum()), float(y[ok].sum()), float(nx[ok].sum()), float(ny[ok].sum())
    base: dict[str, Any] = dict(metric=metric, alpha=alpha, canary_exposure=tnx, baseline_exposure=tny, canary_events=tx,
                baseline_events=ty, intervals=int(ok.sum()), dry_run=options.get("dry_run", False))
    method = "sequential exact rate-ratio test (conditional binomial, " + (
        "finite-horizon boundary)" if horizon else "mixture martingale)")
    if not ok.any():
        missing = "canary" if not (nx > 0).any() else "baseline"
        return Comparison(method=method, status="inconclusive", reason=f"No {missing} requests in the window yet: cannot compare {what}.", **base)
    idx = np.nonzero(ok)[0]
    x, y, nx, ny = x[ok], y[ok], nx[ok], ny[ok]
    s = nx / (nx + ny)
    w = split_weights(x, y, nx, ny, prior)
    e = rate_evidence(x, y, nx, ny, tolerance=tolerance, dispersion_prior=prior)
    details: dict[str, Any] = {}
    if horizon:
        ht = horizon_test(x, y, s, idx, horizon=horizon, alpha=alpha, theta0=math.log(tolerance), dispersion_prior=prior)
        details = {"horizon_intervals": horizon, **ht.to_dict()}
        hit = ht.detected
    else:
        crossed = np.nonzero(e >= math.log(1.0 / alpha))[0]
        hit = int(crossed[0]) if crossed.size else None
    ratio = (tx / tnx) / (ty / tny) if ty > 0 else (math.inf if tx > 0 else float("nan"))
    ci = _rate_ci(x, y, s, alpha, w) if options.get("interval", True) else (0.0, math.inf)
    base |= dict(method=method, ratio=ratio, ratio_ci=ci, evidence=float(np.exp(min(e.max(), 700.0))), details=details)
    rates = f"canary {tx:.0f} {what} in {tnx:.0f} requests vs baseline {ty:.0f} in {tny:.0f}"
    ci_text = f"rate ratio {_fmt_ratio(ratio)} (always-valid {100 * (1 - alpha):g}% interval {_fmt_ratio(ci[0])}-{_fmt_ratio(ci[1])})"
    if hit is not None:
        return Comparison(status="regressed", detected_index=int(idx[hit]),
                          reason=f"Canary rate of {what} above {tolerance:g}x the baseline's: {rates}; {ci_text}.", **base)
    if tnx < min_exposure:
        return Comparison(status="inconclusive",
                          reason=f"Too little canary traffic to judge {what}: {tnx:.0f} requests, need {min_exposure:.0f}; {rates}.", **base)
    if ci[1] > pass_ratio:
        return Comparison(status="inconclusive",
                          reason=f"No regression yet, but a {pass_ratio:g}x rise in {what} is not ruled out: {rates}; {ci_text}.", **base)
    return Comparison(status="ok", reason=f"Canary {what} within {pass_ratio:g}x of the baseline's: {rates}; {ci_text}.", **base)


def _fmt_ratio(r: float) -> str:
    if r is None or not math.isfinite(r):
        return "inf" if r == math.inf else "0" if r == 0 else "n/a"
    return f"{r:.2f}x"


def tail_bounds(les: Any, combined: Any, shares: tuple[float, ...] = TAIL_SHARES, min_requests: float = BOUND_MIN_REQUESTS) -> list[float]:
    """Bucket bounds whose combined upper-tail share is closest to each of ``shares``.

    ``combined``: cumulative bucket counts per interval (rows) of both versions together, columns
    in the order of ``les`` (ascending, ``+Inf`` last). Fixed from the first intervals reaching
    ``min_requests`` requests, so every later look tests the same bounds.
    """
    les = np.asarray(les, dtype=float)
    c = np.nan_to_num(np.asarray(combined, dtype=float)).clip(min=0.0)
    if c.ndim != 2 or c.shape[0] == 0 or les.size < 2:
        return []
    run = np.cumsum(c, axis=0)
    reached = np.nonzero(run[:, -1] >= min_requests)[0]
    if reached.size == 0:
        return []
    cum = run[reached[0]]
    above = 1.0 - cum[:-1] / cum[-1]  # share above each finite bound
    out: list[float] = []
    for target in shares:
        cand = np.nonzero(above > 0)[0]
        if cand.size == 0:
            continue
        j = int(cand[np.argmin(np.abs(np.log(above[cand]) - math.log(target)))])
        if les[j] not in out:
            out.append(float(les[j]))
    return out


def compare_buckets(metric: str, les: Any, canary_cum: Any, baseline_cum: Any, *, bounds: list[float] | None = None,
                    **options: Unpack[RateOptions]) -> Comparison:
    """Latency from histogram buckets: the rate test on requests slower than each chosen bound.

    ``canary_cum``/``baseline_cum``: cumulative bucket counts per interval (rows) and bound
    (columns, ``les`` ascending with ``+Inf`` last). ``alpha`` is split over the bounds; the
    metric regresses if any bound's slow share regressed, passes only if all pass. Options as
    :func:`compare_rates`.
    """
    alpha, dry_run = options.get("alpha", 0.01), options.get("dry_run", False)
    les_a = np.asarray(les, dtype=float)
    c, b = (np.nan_to_num(np.asarray(v, dtype=float)).clip(min=0.0) for v in (canary_cum, baseline_cum))
    method = "sequential exact test on requests above bucket bounds"
    if c.ndim != 2 or b.shape != c.shape or c.shape[0] == 0:
        return Comparison(metric=metric, method=method, status="inconclusive", alpha=alpha, dry_run=dry_run,
                          reason="No histogram buckets for one of the versions yet: cannot compare latency.")
    chosen = bounds if bounds is not None else tail_bounds(les_a, c + b)
    if not chosen:
        return Comparison(metric=metric, method=method, status="inconclusive", alpha=alpha, dry_run=dry_run,
                          canary_exposure=float(c[:, -1].sum()), baseline_exposure=float(b[:, -1].sum()),
                          intervals=int(c.shape[0]),
                          reason=f"Too few requests to choose latency bounds: {float((c + b)[:, -1].sum()):.0f}, need {BOUND_MIN_REQUESTS}.")
    parts = []
    for bound in chosen:
        j = int(np.argmin(np.abs(les_a - bound)))
        parts.append(compare_rates(metric, c[:, -1] - c[:, j], b[:, -1] - b[:, j], c[:, -1], b[:, -1],
                                   what=f"requests over {_fmt_bound(bound)}", **(options | {"alpha": alpha / len(chosen)})))
    worst = next((p for p in parts if p.status == "regressed"), None)
    if worst is None:
        worst = next((p for p in parts if p.status == "inconclusive"), parts[-1])
    details = {"bounds": [float(x) for x in chosen], "per_bound": [p.to_dict() for p in parts]}
    return replace(worst, method=method, alpha=alpha, evidence=max(p.evidence for p in parts), details=details,
                   detected_index=min((p.detected_index for p in parts if p.detected_index is not None), default=None))


def _fmt_bound(le: float) -> str:
    return f"{le * 1000:g} ms" if le < 1 else f"{le:g} s"


def long_run_variance(d: np.ndarray) -> float:
    """Newey-West long-run variance of a series (Bartlett kernel, bandwidth ``4 (n/100)^(2/9)``)."""
    d = d - d.mean()
    n = d.size
    if n < 2:
        return float("nan")
    lag = int(math.floor(4 * (n / 100.0) ** (2.0 / 9.0)))
    v = float(d @ d) / n
    for k in range(1, min(lag, n - 1) + 1):
        v += 2 * (1 - k / (lag + 1)) * float(d[k:] @ d[:-k]) / n
    return max(v, float(d @ d) / n * 0.25)


def normal_mixture_radius(v: float, alpha: float, rho: float) -> float:
    """Two-sided normal-mixture boundary on a sum with intrinsic time ``v`` (Howard et al. 2021)."""
    return math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha**2)))


def compare_levels(
    metric: str,
    canary: Any,
    baseline: Any,
    *,
    alpha: float = 0.01,
    good: str = "decrease",
    tolerance: float = 0.0,
    min_points: int = 10,
    unit: str = "",
    dry_run: bool = False,
) -> Comparison:
    """Paired comparison of two per-version series on the same timestamps.

    ``tolerance`` (metric units): differences this small in the bad direction are accepted.
    ``regressed`` when the always-valid interval of the mean difference lies beyond the
    tolerance in the bad direction (``good`` is the metric's good direction; ``none``: either
    way is bad); ``ok`` when it excludes the bad side(s) beyond the tolerance; ``inconclusive`` otherwise or with fewer than
    ``min_points`` paired points.
    """
    c, b = (np.asarray(v, dtype=float) for v in (canary, baseline))
    method = "paired difference, Newey-West long-run variance, normal-mixture confidence sequence"
    both = np.isfinite(c) & np.isfinite(b)
    d = (c - b)[both]
    base: dict[str, Any] = dict(metric=metric, method=method, alpha=alpha, intervals=int(d.size), dry_run=dry_run)
    if d.size < min_points:
        return Comparison(status="inconclusive", reason=f"{d.size} paired points where both versions report, need {min_points}.", **base)
    # One variance (from all points so far) for every look's radius: the plug-in is what makes
    # this asymptotic; rho tuned for about min_points..4x min_points points (Howard et al. eq. 14).
    # a difference that never varies (identical exporters, a constant offset) is known exactly:
    # a tiny floor keeps the boundary finite
    lrv = max(long_run_variance(d), (1e-9 * max(1.0, float(np.abs(d).max()))) ** 2)
    rho = lrv * min_points * 2
    sums = np.cumsum(d)
    t = np.arange(1, d.size + 1)
    radius = np.array([normal_mixture_radius(lrv * k, alpha, rho) for k in t])
    lo_t, hi_t = (sums - radius) / t, (sums + radius) / t
    lo, hi = float(lo_t.max()), float(hi_t.min())  # running intersection: valid at every look
    mean = float(d.mean())
    up, down = good in ("decrease", "none"), good in ("increase", "none")  # which moves are bad
    crossed = ((lo_t > tolerance) & up) | ((hi_t < -tolerance) & down)
    hits = np.nonzero(crossed)[0]
    text = f"canary - baseline {mean:.4g} {unit} (always-valid {100 * (1 - alpha):g}% interval {lo:.4g} to {hi:.4g})".replace("  ", " ")
    if hits.size:
        idx = np.nonzero(both)[0][hits[0]]
        what = "differs from" if good == "none" else "worse than"
        return Comparison(status="regressed", ratio=mean, ratio_ci=(lo, hi), detected_index=int(idx),
                          reason=f"Canary {what} the baseline: {text}.", **base)
    ok = (not up or hi <= tolerance) and (not down or lo >= -tolerance)
    if ok:
        return Comparison(status="ok", ratio=mean, ratio_ci=(lo, hi), reason=f"Canary no worse than the baseline: {text}.", **base)
    return Comparison(status="inconclusive", ratio=mean, ratio_ci=(lo, hi), reason=f"Not decided yet: {text}.", **base)


@dataclass(frozen=True)
class CanaryJudgement:
    """The canary's verdict over its metrics: ``fail`` / ``pass`` / ``inconclusive``.

    Dry-run metrics are judged and reported but never change ``overall``; ``enforced_overall``
    is what the verdict would be if they were enforced (what ``replay`` shows).
    """

    overall: Literal["pass", "fail", "inconclusive"]
    reason: str
    comparisons: tuple[Comparison, ...]
    enforced_overall: Literal["pass", "fail", "inconclusive"]

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "reason": self.reason, "enforced_overall": self.enforced_overall,
                "metrics": [c.to_dict() for c in self.comparisons]}


#: Default weight of a count (ratio) metric in :func:`alpha_split`; other metrics weigh 1.
RATIO_WEIGHT = 3.0


def alpha_split(alpha: float, weights: list[float] | tuple[float, ...]) -> list[float]:
    """One budget per canary split by weight, ``alpha w_m / sum(w)``: the shares add up to ``alpha``,
    so (union bound) a no-op canary fails at most ``alpha``, under any dependence and stopping."""
    if any(not w > 0 for w in weights):
        raise ValueError(f"alpha weights must be positive, got {list(weights)}")
    return [alpha * w / float(sum(weights)) for w in weights]


def _overall(comps: list[Comparison]) -> Literal["pass", "fail", "inconclusive"]:
    if not comps:
        return "inconclusive"
    if any(c.status == "regressed" for c in comps):
        return "fail"
    if all(c.status == "ok" for c in comps):
        return "pass"
    return "inconclusive"


def judge(comparisons: list[Comparison] | tuple[Comparison, ...]) -> CanaryJudgement:
    """Combine per-metric comparisons (each already at its :func:`alpha_split` share) into a verdict."""
    comps = list(comparisons)
    enforced = [c for c in comps if not c.dry_run]
    overall = _overall(enforced)
    if not enforced:
        reason = "No enforced metric to judge the canary on."
    elif overall == "fail":
        reason = "; ".join(f"{c.metric}: {c.reason}" for c in enforced if c.status == "regressed")
    elif overall == "pass":
        reason = f"Canary no worse than the baseline on {len(enforced)} metric(s)."
    else:
        reason = "; ".join(f"{c.metric}: {c.reason}" for c in enforced if c.status == "inconclusive")
    shadow = [c for c in comps if c.dry_run and c.status == "regressed"]
    if shadow:
        reason += " Dry-run (not enforced): " + "; ".join(f"{c.metric} would fail" for c in shadow) + "."
    return CanaryJudgement(overall=overall, reason=reason, comparisons=tuple(comps), enforced_overall=_overall(comps))
