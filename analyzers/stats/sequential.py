"""Always-valid sequential verification: one error budget per deploy, however often anyone looks.

``verify_series`` answers once; users look many times (scheduler checks, ``verify --wait`` polls,
re-verify from the dashboard, replay). :func:`sequential_path` gives, for every point after the
deploy, a **confidence sequence** for the level shift: intervals that hold *simultaneously at
every look* with probability ``1 - alpha``, so stopping at the first look that excludes zero
keeps the false-alarm rate at ``alpha`` whatever the poll interval. The decision is read off the
interval, so the two never disagree.

Method (every nuisance parameter comes from data before the deploy, so it is the same at every
look and a look recomputed from scratch equals the path evaluated at that time):

1. The baseline (pre-window level, same time a day or a week earlier, seasonal fit) and the
   earlier-change cut are chosen as in ``verify_series``; the AR(1) ``phi`` comes from the
   history (median of per-block estimates), and the residual-memory factor (long-run variance
   that prewhitening leaves) scales the innovation variance.
2. Level (+ line when the pre-deploy slope asks for one) is fitted on the prewhitened rows
   before the deploy, with one Huber step (clipped at ``HUBER_C`` robust scales).
3. After the deploy, each prewhitened row's residual ``r_i`` carries the shift ``delta`` with a
   known weight ``g_i`` (1 for the first row after the deploy, ``1 - phi**k`` later); its
   innovation is independent with variance ``sigma_w**2``. ``S_n = sum g_i r_i`` is a martingale
   with intrinsic time ``V_n = sum g_i**2``: the **information time**, the effective after-sample
   size. The default boundary is a **finite-horizon line** in ``V`` (``boundary="horizon"``,
   :func:`horizon_line`, Bachelier-Levy): crossed before the horizon's information ``V_max`` with
   probability alpha. The horizon is the end of the planned after-window, where every look stops
   (later looks see no later rows); ``V_max`` is the information of the planned design (every row
   after the first after-row present), an upper bound the real information never passes, so gaps
   only make it conservative. ``HORIZON_TILT`` sets how much of the boundary is slope. The
   all-time line (``linear``: crossed ever with probability ``exp(-2ab)``, :func:`line_offset`)
   and the one-sided normal mixture (``mixture``: Howard, Ramdas, McAuliffe, Sekhon 2021, eq. 14;
   Ville's inequality), ``rho`` tuned to ``RHO_TARGET_MIN`` minutes of after-data, hold past any
   horizon; both are measured in docs/statistics.md.
4. The fitted level's own uncertainty is inside ``V`` (the nuisance is refitted on every row so
   far: the invariant construction), so nothing is added per look. Alpha is split between
   directions (a declared direction gets ``EXPECT_WEIGHT``, as in the fixed test); the count
   sequence (7.) spends ``BEFORE_SHARE`` of it on the rate before. Union bound: alpha in all.
5. **Transients.** A restart blip, cold cache or JIT warm-up in the first ``transient_s``
   (default 5 min) after the deploy is not a shift: those rows are left out of the sequence
   (the prewhitening bridges the gap exactly, ``phi**k``) and reported as information
   ("transient at deploy, recovered after 4 min") when they stood out. A shift that persists
   past the allowance is caught; the price is that no regression is called before it ends.
6. When the slope before the deploy is ambiguous the shift must be certain both with and without
   the line, and when ``phi`` is near 1 also under a random walk; the interval is the hull of
   the models' intervals (valid if either model holds).
7. Low counts: a gamma-mixture Poisson confidence sequence for the after rate (events per
   exposure), against an exact (Garwood) interval for the rate before; overdispersion found
   before the deploy tempers the likelihood.
8. **In-time placebos** (:mod:`analyzers.stats.placebo`): the model's horizon estimate slid over
   the day before the deploy. Where it varies more there (relative to the local noise) than the
   model says, the unclipped estimate must also clear the boundary with ``sigma`` scaled by that
   factor; the interval is the hull of both, so interval and decision still agree.

Assumptions, and what breaks them: Gaussian-like innovations after clipping (heavy tails are
clipped; a skewed burst process shifts the clipped mean only if it changes at the deploy); noise
memory captured by AR(1) plus the residual-memory factor (a wander slower than the 3-hour blocks
is only partly captured); a baseline that stays valid for the 30 minutes after the deploy (a
drift is extrapolated by the line, with its own uncertainty); transients shorter than the
allowance. The benchmark (``benchmarks/bench_sequential.py``) runs families that break each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from analyzers.stats import baselines as bl
from analyzers.stats._fast import median as _median
from analyzers.stats.changepoints import changepoints, robust_noise_scale
from analyzers.stats.grid import coerce_arrays, coerce_time, counter_increases, seconds_since_first, to_grid
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
from analyzers.stats.placebo import HISTORY_S as PLACEBO_HISTORY_S
from analyzers.stats.placebo import high_pass, placebo_factor
from analyzers.stats.sequential_bounds import horizon_line, line_offset, one_sided_mixture_radius, rho_for
from analyzers.stats.sequential_counts import count_path, rate_bounds
from analyzers.stats.sequential_fit import LevelModel, fit_model

#: Rows after the deploy left out as a possible transient (seconds).
DEFAULT_TRANSIENT_S = 300.0
#: Share of alpha spent on the uncertainty of the level fitted before the deploy.
BEFORE_SHARE = 0.2
#: Share of the rest given to a declared direction (the opposite gets the remainder).
EXPECT_WEIGHT = 0.8
#: Minutes of after-data (past the transient allowance) where the boundary is tightest.
RHO_TARGET_MIN = 10.0
#: Boundaries of the level sequence: ``horizon`` (the default: a line that holds up to the end of
#: the after-window, where looks stop), ``linear`` (a line that holds over all time, tightest at half
#: the after-window's information) and ``mixture`` (one-sided normal mixture, ``rho`` tuned to
#: ``RHO_TARGET_MIN`` minutes of after-data at ``RHO_ALPHA``). Measured side by side in
#: ``benchmarks/bench_sequential.py`` (docs/statistics.md).
BOUNDARIES = ("horizon", "linear", "mixture")
RHO_ALPHA = 0.005
#: Tilt of the finite-horizon line (``horizon_line``): the share of the boundary at the horizon
#: that comes from its slope. A design constant chosen once on the benchmark (docs/statistics.md).
HORIZON_TILT = 0.6
#: A transient must stand out by this many noise SDs (2-point mean) to be reported.
TRANSIENT_Z = 3.0
MIN_STABLE_PRE = 20


@dataclass(frozen=True)
class SequentialPath:
    """The confidence sequence of one metric around one deploy, point by point after it.

    ``times`` are the after-rows entering the sequence (unix seconds); :meth:`at` gives the
    interval and decision at a level and a look time. Nothing here depends on when you look.
    """

    kind: str  # "level" | "rate" | "none"
    times: np.ndarray
    deploy_s: float
    expect: str
    models: tuple[LevelModel, ...] = ()
    counts: tuple[np.ndarray, np.ndarray, float, float, float] | None = None  # X_n, T_n, before events, exposure, dispersion
    unit: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    transient: dict[str, Any] | None = None
    reason: str = ""
    rho_v: float = 1.0
    boundary: str = "horizon"  # see BOUNDARIES
    rho_mix: float = 1.0
    tilt: float = 0.0  # the horizon line's tilt (HORIZON_TILT unless asked otherwise)

    def _bounds(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Lower/upper bound of the shift at every after-row, at family level ``alpha``."""
        a_rest = alpha
        if self.expect in ("increase", "decrease"):
            a_up = a_rest * (EXPECT_WEIGHT if self.expect == "increase" else 1.0 - EXPECT_WEIGHT)
        else:
            a_up = a_rest / 2.0
        a_down = a_rest - a_up
        if self.kind == "rate" and self.counts is not None:
            return rate_bounds(*self.counts, a_up * (1 - BEFORE_SHARE), a_down * (1 - BEFORE_SHARE),
                                alpha * BEFORE_SHARE)
        lo = np.full(self.times.size, -np.inf)
        hi = np.full(self.times.size, np.inf)
        first = True
        for m in self.models:
            l_m, h_m = self._model_bounds(m, m.s, m.sigma, a_up, a_down)
            if m.wander > 1.0 and m.s_raw is not None:
                # The wander the in-time placebos show: the unclipped estimate must clear the same
                # boundary with sigma scaled by its placebo factor (a second condition: it only
                # takes decisions away). The hull keeps interval and decision in agreement.
                l_w, h_w = self._model_bounds(m, m.s_raw, m.sigma * math.sqrt(m.wander), a_up, a_down)
                l_m, h_m = np.minimum(l_m, l_w), np.maximum(h_m, h_w)
            l_m = np.where(m.v > 0, l_m, -np.inf)
            h_m = np.where(m.v > 0, h_m, np.inf)
            # Hull over models: valid when either model holds; a decision needs all of them.
            lo, hi = (l_m, h_m) if first else (np.minimum(lo, l_m), np.maximum(hi, h_m))
            first = False
        return lo, hi

    def _model_bounds(self, m: LevelModel, score: np.ndarray, sigma: float, a_up: float,
                      a_down: float) -> tuple[np.ndarray, np.ndarray]:
        """The boundary (``self.boundary``) around ``score / m.v`` with noise ``sigma``: the clipped
        score with the model's sigma, or the unclipped one with the placebos' wider sigma."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.boundary == "horizon":
                return (score / m.v - sigma * _horizon_offset(m.v, a_up, m.v_max, self.tilt),
                        score / m.v + sigma * _horizon_offset(m.v, a_down, m.v_max, self.tilt))
            if self.boundary == "mixture":
                return ((score - sigma * one_sided_mixture_radius(m.v, a_up, self.rho_mix)) / m.v,
                        (score + sigma * one_sided_mixture_radius(m.v, a_down, self.rho_mix)) / m.v)
            return (score / m.v - sigma * line_offset(m.v, a_up, self.rho_v),
                    score / m.v + sigma * line_offset(m.v, a_down, self.rho_v))

    def at(self, alpha: float, until_s: float | None = None) -> dict[str, Any]:
        """Interval and decision with the data up to ``until_s`` (unix s; all when None).

        The interval is the running intersection of the sequence's intervals (itself a
        confidence sequence); ``shifted`` when it excludes zero, which, once true, stays true.
        ``decided_at`` is the first after-row at which it did.
        """
        n = self.times.size if until_s is None else int(np.searchsorted(self.times, until_s, side="right"))
        out: dict[str, Any] = {"alpha": alpha, "rows": n, "information": 0.0, "interval": [None, None],
                               "status": "unchanged", "direction": None, "decided_at": None}
        if n == 0 or self.kind == "none":
            out["status"] = "inconclusive" if self.kind == "none" else "unchanged"
            return out
        lo, hi = self._bounds(alpha)
        lo_run = np.maximum.accumulate(lo[:n])
        hi_run = np.minimum.accumulate(hi[:n])
        out["information"] = float(self.information[n - 1])
        out["estimate"] = self.estimate(n)
        out["estimate_unclipped"] = self.estimate(n, clipped=False)
        low, high = float(lo_run[-1]), float(hi_run[-1])
        if low > high:  # the running intersection emptied: the model is wrong somewhere; report the latest
            low, high = float(lo[n - 1]), float(hi[n - 1])
        out["interval"] = [low if math.isfinite(low) else None, high if math.isfinite(high) else None]
        up = np.flatnonzero(lo_run > 0)
        down = np.flatnonzero(hi_run < 0)
        if up.size or down.size:
            first_up = int(up[0]) if up.size else n
            first_down = int(down[0]) if down.size else n
            i = min(first_up, first_down)
            out.update(status="shifted", direction="increase" if first_up <= first_down else "decrease",
                       decided_at=float(self.times[i]))
        return out

    def estimate(self, n: int, *, clipped: bool = True) -> float | None:
        """Point estimate of the shift with the first ``n`` after-rows (the sequence's centre).

        ``clipped=False``: the same model's estimate from the unclipped rows, the mean shift
        (clipping shrinks a large or spiky jump); counts have no clipping."""
        if n <= 0:
            return None
        if self.kind == "rate" and self.counts is not None:
            x, t, xb, tb, _ = self.counts
            return float(x[n - 1] / t[n - 1] - xb / tb) if t[n - 1] > 0 and tb > 0 else None
        if not self.models or self.models[0].v[n - 1] <= 0:
            return None
        m = self.models[0]
        score = m.s if clipped or m.s_raw is None else m.s_raw
        return float(score[n - 1] / m.v[n - 1])

    @property
    def information(self) -> np.ndarray:
        if self.kind == "rate" and self.counts is not None:
            return self.counts[1]
        if not self.models:
            return np.zeros(self.times.size)
        m = self.models[0]
        return m.v * (self.details.get("noise_sd", m.sigma) / m.sigma) ** 2  # effective after points

    def pvalue(self, until_s: float | None = None) -> float:
        """Always-valid p-value: the smallest alpha at which the sequence excluded zero by ``until_s``."""
        if self.kind == "none":
            return 1.0
        if self.at(1.0, until_s)["status"] != "shifted":
            return 1.0
        lo, hi = 1e-12, 1.0
        if self.at(lo, until_s)["status"] == "shifted":
            return lo
        for _ in range(40):
            mid = math.sqrt(lo * hi)
            if self.at(mid, until_s)["status"] == "shifted":
                hi = mid
            else:
                lo = mid
            if hi / lo < 1.01:
                break
        return hi


def _horizon_offset(v: np.ndarray, alpha: float, v_max: float, tilt: float) -> np.ndarray:
    """Half-width of the finite-horizon line at information ``v`` (see :func:`horizon_line`)."""
    a, b = horizon_line(alpha, max(v_max, 1e-12), tilt)
    return a / v + b


def _prepare(series: Any, deploy_at: Any, kind: str, window_before_s: float, window_after_s: float,
             step_s: float | None) -> tuple[np.ndarray, int, int, int, float, float]:
    idx, vals = coerce_arrays(series)
    deploy = coerce_time(deploy_at)
    if len(idx) < 3:
        raise ValueError("too few points")
    secs = seconds_since_first(idx)
    if step_s is None:
        gaps = np.diff(secs)
        step_s = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 60.0
    t0, y = to_grid(idx, vals, step_s, secs)
    if kind == "counter":
        y = counter_increases(y)
    t0_s = t0.value / 1e9
    d = int(math.ceil((deploy.value / 1e9 - t0_s) / step_s - 1e-9))
    pre_start = int(max(0, d - int(round(window_before_s / step_s))))
    post_end = int(max(0, d + int(round(window_after_s / step_s))))
    if y.size < post_end:  # the window is planned, not what has arrived: every look sees one design
        y = np.concatenate([y, np.full(post_end - y.size, np.nan)])
    return y[:post_end], pre_start, d, post_end, step_s, t0_s


def sequential_path(series: Any, deploy_at: Any, expect: str = "any", *, kind: str = "gauge",
                    transient_s: float = DEFAULT_TRANSIENT_S, window_before_s: float = 10800.0,
                    window_after_s: float = 3600.0, step_s: float | None = None,
                    counts: Any = None, min_points: int = 10, boundary: str = "horizon",
                    tilt: float = HORIZON_TILT) -> SequentialPath:
    """The confidence sequence of ``series`` around ``deploy_at`` (see the module doc)."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {boundary!r}")
    if not 0.0 <= tilt < 1.0:
        raise ValueError(f"tilt must be in [0, 1), got {tilt}")
    y, pre_start, d, post_end, step_s, t0_s = _prepare(series, deploy_at, kind, window_before_s,
                                                      window_after_s, step_s)
    deploy_s = coerce_time(deploy_at).value / 1e9
    times_all = t0_s + np.arange(y.size) * step_s
    skip = int(math.ceil(transient_s / step_s - 1e-9))
    empty = SequentialPath("none", np.array([]), deploy_s, expect)
    if d <= pre_start or d >= y.size:
        return SequentialPath("none", np.array([]), deploy_s, expect, reason="no data before or after the deploy")
    pre = y[pre_start:d]
    if int(np.isfinite(pre).sum()) < min_points:
        return SequentialPath("none", np.array([]), deploy_s, expect,
                              reason=f"only {int(np.isfinite(pre).sum())} points before the deploy")
    window = y[pre_start:post_end]
    fin = window[np.isfinite(window)]
    integer_like = bool(fin.size and np.all(fin >= 0) and np.all(np.abs(fin - np.rint(fin)) < 1e-9))
    if counts is not None or (integer_like and (kind in ("count", "counter") or _median(fin) <= 3.0)):
        times, cnt, unit, details = count_path(y, counts, pre_start, d, post_end, skip, times_all)
        return SequentialPath("rate", times, deploy_s, expect, counts=cnt, unit=unit, details=details)
    path = _level_path(y, pre_start, d, post_end, skip, times_all, deploy_s, expect, step_s)
    if path is None:
        return empty
    return replace(path, boundary=boundary, tilt=tilt)


def _level_path(y: np.ndarray, pre_start: int, d: int, post_end: int, skip: int, times_all: np.ndarray,
                deploy_s: float, expect: str, step_s: float) -> SequentialPath | None:
    base = bl.choose_baseline(y, pre_start, d, post_end, step_s)
    r = y[pre_start:post_end] - base.values
    dw = d - pre_start
    pre = r[:dw]
    ok = np.isfinite(pre)
    scale = robust_noise_scale(pre[ok]) if ok.sum() > 5 else 0.0
    if scale <= 0 or np.ptp(pre[ok]) == 0:
        return None
    # Earlier changes before the deploy: the history before them is dropped (as verify_series).
    length = block_length(dw)
    hist = history_phi(y[max(0, d - PHI_MAX_BLOCKS * length):d], length)
    pre_lo = 0
    earlier: list[float] = []
    cps = [c for c in changepoints(np.where(ok, pre, np.nanmedian(pre)), model="mean") if 0 < c < dw]
    if cps:
        phi0 = estimate_phi_history(_detrend(pre), hist).phi
        nf = fit_null(pre, dw, False, phi0)
        nf_trend = fit_null(pre, dw, True, phi0)
        if nf is not None and nf_trend is not None:
            # A step, not a drift: significant alone and still clear of a straight line.
            sig = earlier_steps(nf, nf_trend, dw, cps, hist if base.name in bl.OWN_NOISE else None)
            if sig:
                pre_lo = max(sig)
                earlier = [float(times_all[pre_start + c]) for c in sig]
    if dw - pre_lo < MIN_STABLE_PRE:
        return None
    w = r[pre_lo:]
    dloc = dw - pre_lo
    phi_est = estimate_phi_history(_detrend(w[:dloc]), hist)
    phi = phi_est.phi
    n_after_window = w.size - dloc
    memory = residual_memory(hist, phi, n_after_window) if base.name in bl.OWN_NOISE else 1.0
    z_trend = slope_z(w, dloc, phi)
    trends = [True] if z_trend > TREND_Z else ([False] if z_trend < NO_TREND_Z else [False, True])
    # rows: finite, before the deploy or past the transient allowance
    pos = np.arange(w.size)
    use = np.isfinite(w) & ((pos < dloc) | (pos >= dloc + skip))
    tpos = pos[use]
    after_rows = tpos >= dloc
    if after_rows.sum() == 0 or (~after_rows).sum() < MIN_STABLE_PRE:
        return None
    models = []
    phis = [phi] + ([1.0] if phi > UNIT_ROOT_PHI else [])
    for ph in phis:
        for tr in trends:
            m = fit_model(w, tpos, dloc, ph, tr or ph >= 1.0, memory, w.size)
            if m is not None:
                models.append(m)
    if not models:
        return None
    models, placebo = _placebo_models(models, y, w, d, base.name, step_s, n_after_window)
    times = times_all[pre_start + pre_lo + tpos[after_rows]]  # rows present (the padding is NaN)
    transient = _transient(w, dloc, skip, models, phi, times_all[pre_start + pre_lo:], step_s, memory)
    sigma_marg = models[0].sigma / math.sqrt(max(1e-12, 1.0 - min(phi, 0.999) ** 2))
    # information time in units of the marginal SD: the effective number of after points
    rho_v = _planned_target(w.size - dloc, skip, phi)
    rho_mix = rho_for(2.0 * _planned_target(int(round(RHO_TARGET_MIN * 60.0 / step_s)) + skip, skip, phi), RHO_ALPHA)
    details = {"phi": phi, "phi_source": phi_est.source, "residual_memory": memory, "baseline": base.name,
               "trend": "both" if len(trends) == 2 else ("line" if trends[0] else "level"),
               "unit_root_check": phi > UNIT_ROOT_PHI, "earlier_changes": earlier,
               "noise_sd": sigma_marg, "models": [m.name for m in models], **placebo}
    return SequentialPath("level", times, deploy_s, expect, tuple(models), details=details, transient=transient,
                          rho_v=rho_v, rho_mix=rho_mix)


def _placebo_models(models: list[LevelModel], y: np.ndarray, w: np.ndarray, d: int, baseline: str, step_s: float,
                    n_after: int) -> tuple[list[LevelModel], dict[str, Any]]:
    """Each model with its in-time placebo factor (:mod:`analyzers.stats.placebo`): how much more
    its unclipped horizon estimate varies at times before the deploy than the model says."""
    if baseline not in bl.OWN_NOISE:  # a lagged day's residual: the raw history does not show its noise
        return models, {"placebo_factor": 1.0, "placebos": 0}
    hist = high_pass(y[max(0, d - int(round(PLACEBO_HISTORY_S / step_s))):d], step_s)
    out, factors, n_eff = [], [], 0
    for m in models:
        pre_rows = w[m.plan[:m.n_pre]] if m.plan is not None else np.zeros(0)
        f, n_eff = placebo_factor(hist, pre_rows, m.plan, m.weights, m.phi, m.n_pre, m.nuisance,
                                  m.sigma ** 2 / m.v_max, n_after, step_s)
        factors.append(f)
        out.append(replace(m, wander=f) if f > 1.0 and m.s_raw is not None else m)
    return out, {"placebo_factor": round(max(factors), 3), "placebos": n_eff}


def _planned_target(n_after: int, skip: int, phi: float) -> float:
    """Half the information the full after-window would give (every row present), from ``phi``
    alone: where the linear boundary is tightest. Fixed before any look."""
    n = max(1, n_after - skip)
    if phi <= 0:
        return 0.5 * n
    k = skip + 1
    first = (1.0 - phi * phi) / (1.0 - phi ** (2 * k)) if phi < 1 else 1.0 / k
    rest = (n - 1) * (1.0 - min(phi, 1.0)) ** 2
    return max(0.5 * (first + rest), 0.5)


def _transient(w: np.ndarray, dloc: int, skip: int, models: list[LevelModel], phi: float, times: np.ndarray,
               step_s: float, memory: float) -> dict[str, Any] | None:
    """Did the rows inside the allowance stand out, and when did they return to the level before?"""
    if skip <= 0:
        return None
    pre = w[:dloc]
    okp = np.isfinite(pre)
    if okp.sum() < 10:
        return None
    centre = float(np.median(pre[okp][-60:]))
    sd = models[0].sigma / math.sqrt(max(1e-12, 1.0 - min(phi, 0.999) ** 2))
    seg = w[dloc:dloc + skip]
    if seg.size == 0 or not np.isfinite(seg).any():
        return None
    z = (seg - centre) / sd
    z2 = np.convolve(np.nan_to_num(z), np.ones(2) / 2.0, mode="same")
    peak_i = int(np.nanargmax(np.abs(z)))
    if np.nanmax(np.abs(z2)) < TRANSIENT_Z:
        return None
    out_rows = np.flatnonzero(np.abs(np.nan_to_num(z)) > 2.0)
    recovered = int(out_rows[-1]) + 1 if out_rows.size else 0
    return {"peak": float(seg[peak_i] - centre), "peak_sd": float(z[peak_i]),
            "recovered_after_s": recovered * step_s, "allowance_s": skip * step_s,
            "recovered": recovered < skip}
