"""Canary benchmark: our sequential canary judge vs Kayenta's Mann-Whitney judge, same data.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_canary --reps 200  # the documented table
    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_canary --reps 50   # quicker, noisier

Traffic (per minute, seeded): ``--rps`` requests/s in total (100 by default) on a daily cycle
(+-50%, random phase), split to the canary by its share (1%, 5%, 25%); 1% of requests fail;
latency is log-normal (median 80 ms, sigma 0.6) counted into the demo's histogram buckets
(5 ms .. 10 s). Cases:

* ``noop-daily``: the canary is the baseline (30 minutes on the daily cycle);
* ``noop-spike``: the same plus a load spike during the canary (minutes 8-13: traffic x4, error
  rate x5, latency x1.8 for *both* versions);
* ``noop-bursty``: each version has bad minutes of its own (error rate x Gamma with CV 0.5,
  latency x log-normal with sd 0.1, independent per version and minute): the counts tests'
  assumption broken on purpose;
* ``err1.1x``: errors x1.1, the old tolerance: how often a small rise fails now (15 minutes);
* ``err2x`` / ``err5x``: the canary's error rate x2 / x5 (15 minutes);
* ``p99+20%``: the canary's latency x1.2 (every percentile +20%, 10 minutes);
* ``p99+50%``: x1.5 (10 minutes).

Ours: :func:`analyzers.stats.canary.compare_rates` on errors and
:func:`~analyzers.stats.canary.compare_buckets` on latency buckets, alpha 0.01 per canary split
3:1 between them (``[canary] weights``' default; ``--error-weight``), tolerance 1.05 (``--tolerance``), a fail at the first minute either test fails, with the finite-horizon
boundary over ``--window`` minutes (15 by default, ``[canary].window``; looks after it reuse its
decision, and the no-op cases run 30 minutes, so every later look is counted too). The
"all-time" columns run the previous test (the mixture e-process, no horizon) on the same data.
Kayenta (its ``MannWhitneyClassifier``): per metric,
Mann-Whitney on the per-minute values (error ratio; p99 interpolated from the minute's
buckets) of canary vs baseline, a 98% interval of the Hodges-Lehmann shift, the metric "High"
when the interval's lower end exceeds 0.25 x |estimate| (its dead zone); score = share of
metrics not High; the canary fails below 75 (2 metrics: one High fails). No data passes (its
classifier's "Nodata" does not fail). Kayenta is judged every 5 minutes on all data so far
(a canary stage with a 5-minute interval), so its false-fail rate counts every look.

Columns: share of canaries failed by the horizon (false fail for no-op cases, power
otherwise) and the median minutes to the first fail.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from analyzers.config import CanarySettings
from analyzers.stats.canary import RATIO_WEIGHT, RateOptions, alpha_split, compare_buckets, compare_rates

LES = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf])
SHARES = (0.01, 0.05, 0.25)
#: The canary window (minutes): [canary].window's default.
WINDOW = 15


@dataclass(frozen=True)
class Case:
    name: str
    minutes: int
    err_mult: float = 1.0
    lat_mult: float = 1.0
    spike: bool = False
    burst_cv: float = 0.0  # each version's own bad minutes: error rate x Gamma(mean 1, this CV) per minute

    @property
    def noop(self) -> bool:
        return self.err_mult == 1.0 and self.lat_mult == 1.0


CASES = (
    Case("noop-daily", 30),
    Case("noop-spike", 30, spike=True),
    Case("noop-bursty", 30, burst_cv=0.5),
    Case("err2x", 15, err_mult=2.0),
    Case("err5x", 15, err_mult=5.0),
    Case("p99+20%", 10, lat_mult=1.2),
    Case("p99+50%", 10, lat_mult=1.5),
    Case("err1.1x", 15, err_mult=1.1),  # last: the other cases keep their random streams
)


def bucket_probs(scale: float, sigma: float = 0.6, median: float = 0.08) -> np.ndarray:
    cdf = sps.norm.cdf((np.log(LES[:-1]) - math.log(median * scale)) / sigma)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def simulate(case: Case, share: float, rng: np.random.Generator, rps: float) -> dict[str, np.ndarray]:
    t = np.arange(case.minutes)
    phase = rng.uniform(0, 2 * math.pi)
    load = 1 + 0.5 * np.sin(2 * math.pi * t / 1440.0 + phase)
    err = np.full(case.minutes, 0.01)
    lat = np.ones(case.minutes)
    if case.spike:
        s = (t >= 8) & (t < 13)
        load[s] *= 4
        err[s] *= 5
        lat[s] *= 1.8
    n = rng.poisson(rps * 60 * load)
    nc = rng.binomial(n, share)
    nb = n - nc
    gc = gb = lc = lb = np.ones(case.minutes)
    if case.burst_cv > 0:  # independent per version: breaks the test's assumption on purpose
        k = 1 / case.burst_cv**2
        gc, gb = rng.gamma(k, 1 / k, case.minutes), rng.gamma(k, 1 / k, case.minutes)
        lc, lb = np.exp(rng.normal(0, case.burst_cv / 5, (2, case.minutes)))
    xc = rng.binomial(nc, np.minimum(err * case.err_mult * gc, 1.0))
    xb = rng.binomial(nb, np.minimum(err * gb, 1.0))
    bc = np.stack([rng.multinomial(k, bucket_probs(m * case.lat_mult * f)) for k, m, f in zip(nc, lat, lc, strict=True)])
    bb = np.stack([rng.multinomial(k, bucket_probs(m * f)) for k, m, f in zip(nb, lat, lb, strict=True)])
    return {"nc": nc, "nb": nb, "xc": xc, "xb": xb, "cc": np.cumsum(bc, axis=1), "cb": np.cumsum(bb, axis=1)}


def ours(d: dict[str, np.ndarray], alpha: float = 0.01, prior: float = 1.0, window: int | None = WINDOW,
         tolerance: float = CanarySettings.tolerance, weights: tuple[float, float] = (RATIO_WEIGHT, 1.0)) -> int | None:
    """Minute (1-based) of the first fail, or None. ``window``: the canary window in minutes
    (the finite-horizon test; None: the all-time mixture test, as before the horizon);
    ``weights``: the error and latency metrics' shares of ``alpha`` (``[canary] weights``)."""
    a_err, a_lat = alpha_split(alpha, list(weights))
    opts: RateOptions = {"interval": False, "dispersion_prior": prior, "horizon": window, "tolerance": tolerance}
    e = compare_rates("error_ratio", d["xc"], d["xb"], d["nc"], d["nb"], **(opts | {"alpha": a_err}))
    lat = compare_buckets("latency_p99", LES, d["cc"], d["cb"], **(opts | {"alpha": a_lat}))
    hits = [c.detected_index for c in (e, lat) if c.status == "regressed" and c.detected_index is not None]
    return min(hits) + 1 if hits else None


def _p99(cum: np.ndarray) -> float:
    total = cum[-1]
    if total <= 0:
        return float("nan")
    rank = 0.99 * total
    j = int(np.searchsorted(cum, rank))
    if j >= len(LES) - 1:
        return float(LES[-2])
    lo = 0.0 if j == 0 else LES[j - 1]
    below = 0.0 if j == 0 else cum[j - 1]
    width = cum[j] - below
    return float(lo + (LES[j] - lo) * ((rank - below) / width if width > 0 else 0.0))


def _hl_interval(x: np.ndarray, y: np.ndarray, conf: float = 0.98) -> tuple[float, float, float]:
    """Hodges-Lehmann shift of x over y with its distribution-free interval (normal approximation of U)."""
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    m, n = x.size, y.size
    z = sps.norm.ppf(0.5 + conf / 2)
    k = int(math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12)))
    k = max(0, min(k, diffs.size - 1))
    return float(np.median(diffs)), float(diffs[k]), float(diffs[diffs.size - 1 - k])


def kayenta_metric_high(canary: np.ndarray, baseline: np.ndarray) -> bool:
    canary, baseline = canary[np.isfinite(canary)], baseline[np.isfinite(baseline)]
    if canary.size == 0 or baseline.size == 0:
        return False  # Nodata: not a failure
    if np.array_equal(canary, baseline):
        return False
    est, lo, _hi = _hl_interval(canary, baseline)
    return lo > 0.25 * abs(est)


def kayenta(d: dict[str, np.ndarray], every: int = 5) -> int | None:
    with np.errstate(invalid="ignore", divide="ignore"):
        ec = np.where(d["nc"] > 0, d["xc"] / d["nc"], np.nan)
        eb = np.where(d["nb"] > 0, d["xb"] / d["nb"], np.nan)
    pc = np.array([_p99(r) for r in d["cc"]])
    pb = np.array([_p99(r) for r in d["cb"]])
    for end in range(every, len(ec) + 1, every):
        high = [kayenta_metric_high(ec[:end], eb[:end]), kayenta_metric_high(pc[:end], pb[:end])]
        score = 100.0 * (1 - sum(high) / 2)
        if score < 75:
            return end
    return None


def run(reps: int, seed: int, rps: float, prior: float = 1.0, window: int = WINDOW,
        only: tuple[str, float] | None = None, **judge: float | tuple[float, float]) -> list[dict[str, object]]:
    """``judge``: ``tolerance`` / ``weights`` for :func:`ours` (defaults: the config's)."""
    rows = []
    for ci, case in enumerate(CASES):
        for si, share in enumerate(SHARES):
            if only is not None and (case.name, share) != only:
                continue
            rng = np.random.default_rng([seed, ci, si])
            o, a, k = [], [], []
            n = reps * (3 if case.noop else 1)  # more no-op runs: the false-fail rate is the tight target
            for _ in range(n):
                d = simulate(case, share, rng, rps)
                o.append(ours(d, prior=prior, window=window, **judge))  # type: ignore[arg-type]
                a.append(ours(d, prior=prior, window=None, **judge))  # type: ignore[arg-type]
                k.append(kayenta(d))
            rows.append({"case": case.name, "share": share, "minutes": case.minutes, "n": n,
                         "ours": sum(x is not None for x in o) / n, "ours_ttd": _median([x for x in o if x]),
                         "alltime": sum(x is not None for x in a) / n, "alltime_ttd": _median([x for x in a if x]),
                         "kayenta": sum(x is not None for x in k) / n, "kayenta_ttd": _median([x for x in k if x])})
    return rows


def _median(xs: list[int]) -> float | None:
    return float(np.median(xs)) if xs else None


def table(rows: list[dict[str, object]], window: int = WINDOW) -> str:
    out = [f"| case | share | horizon | runs | ours ({window}-min window): failed | median min | "
           "all-time test (before): failed | median min | Kayenta: failed | median min |",
           "|---|---|---|---|---|---|---|---|---|---|"]

    def ttd(v: object) -> str:
        return "-" if v is None else f"{v:.0f}"

    for r in rows:
        cells = [f"{float(r[k]) * 100:.1f}% | {ttd(r[k + '_ttd'])}" for k in ("ours", "alltime", "kayenta")]  # type: ignore[arg-type]
        out.append(f"| {r['case']} | {float(r['share']) * 100:g}% | {r['minutes']} min | {r['n']} | " + " | ".join(cells) + " |")  # type: ignore[arg-type]
    return "\n".join(out)


def targets(rows: list[dict[str, object]]) -> list[str]:
    def get(case: str, share: float) -> dict[str, object]:
        return next(r for r in rows if r["case"] == case and r["share"] == share)

    lines = []
    worst = max(float(r["ours"]) for r in rows if r["case"] in ("noop-daily", "noop-spike"))  # type: ignore[arg-type]
    lines.append(f"false fail over the no-op canaries (daily cycle, load spike), worst share: {worst * 100:.2f}% "
                 f"(target <= 1%) {'MET' if worst <= 0.01 else 'MISSED'}")
    bursty = [f"{float(r['ours']) * 100:.1f}% (all-time {float(r['alltime']) * 100:.1f}%, Kayenta "  # type: ignore[arg-type]
              f"{float(r['kayenta']) * 100:.1f}%)" for r in rows if r["case"] == "noop-bursty"]  # type: ignore[arg-type]
    lines.append("false fail when each version has bad minutes of its own (assumption broken), at "
                 + ", ".join(f"{s * 100:g}%: {b}" for s, b in zip(SHARES, bursty, strict=True)) + " (no target; see docs)")
    p = float(get("err2x", 0.05)["ours"])  # type: ignore[arg-type]
    lines.append(f"power, 2x error rate at 5% share within 15 min: {p * 100:.1f}% (target >= 95%) {'MET' if p >= 0.95 else 'MISSED'}")
    p = float(get("p99+20%", 0.25)["ours"])  # type: ignore[arg-type]
    lines.append(f"power, +20% p99 at 25% share within 10 min: {p * 100:.1f}% (target >= 95%) {'MET' if p >= 0.95 else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=300, help="runs per case and share (no-op cases: 3x)")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--rps", type=float, default=100.0, help="total requests per second (both versions)")
    ap.add_argument("--dispersion-prior", type=float, default=1.0, help="[canary].dispersion_prior for ours")
    ap.add_argument("--window", type=int, default=WINDOW, help="[canary].window in minutes: the fail test's horizon")
    ap.add_argument("--tolerance", type=float, default=CanarySettings.tolerance, help="[canary].tolerance (before: 1.1)")
    ap.add_argument("--error-weight", type=float, default=RATIO_WEIGHT,
                    help="the error metric's weight against latency's 1 ([canary] weights; before: 1)")
    ap.add_argument("--only", metavar="CASE:SHARE", help="one row, e.g. err2x:0.05 (with a large --reps: a tight power figure)")
    args = ap.parse_args(argv)
    only = None
    if args.only:
        name, _, share = args.only.partition(":")
        shares = [s for s in SHARES if share and abs(s - float(share)) < 1e-9]
        if name not in {c.name for c in CASES} or not shares:
            ap.error(f"--only {args.only}: cases are {', '.join(c.name for c in CASES)}; shares {SHARES}")
        only = (name, shares[0])
    t0, c0 = time.perf_counter(), time.process_time()
    rows = run(args.reps, args.seed, args.rps, args.dispersion_prior, args.window, only,
               tolerance=args.tolerance, weights=(args.error_weight, 1.0))
    print(table(rows, args.window))
    print()
    if only is None:
        for line in targets(rows):
            print(line)
    print(f"\n{time.perf_counter() - t0:.0f} s ({time.process_time() - c0:.0f} s CPU), seed {args.seed}, {args.rps:g} req/s, "
          f"window {args.window} min, dispersion prior {args.dispersion_prior:g}, tolerance {args.tolerance:g}, "
          f"alpha split errors:latency {args.error_weight:g}:1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
