"""Sequential benchmark: false fails over every look, power and time to detect, side by side with
today's repeated fixed test.

Users look many times: the scheduler's first/finished/final checks, ``verify --wait`` polls, a
re-verify from the dashboard, a replay. For each seeded case of every null family (restart blips
and cold caches included) and every shift family (:mod:`analyzers.demo.seriesgen`), a deploy is
looked at every 60 s and every 15 s from the first possible look to 30 minutes after it:

* ``sequential``: the confidence sequence (:func:`analyzers.stats.sequential.sequential_path`),
  one path per case, read at each look (a look sees the rows up to its time);
* ``fixed``: today's ``verify_series`` called on the data up to each look (one look a minute
  from 5 minutes on, ``min_points=5``, as the issue's replay), failing at the first "shifted".

Columns: ``*_any``: share of cases called changed at any look by 30 min (a false fail for null
families, power for shifts); ``guard_any``: the same with the shift's own direction declared, as
a guard watching for it tests it (80 % of alpha to that direction); ``fixed_30``: the fixed test at the 30-minute look alone;
``ttd_*``: median minutes from the deploy to the first look that calls it. The series hold one
point a minute, so a 15-s look sees new data only once a minute: its false-fail rate is the
60-s one, and its time to detect is earlier by at most 45 s. Seeded; CPU time only.

    .venv/bin/python -m benchmarks.bench_sequential [--n 100] [--alpha 0.01] [--transient 300]
        [--boundary linear|mixture] [--no-fixed] [--families iid,blip,step_up,...]
"""

from __future__ import annotations

import argparse
import math
import time
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd

from analyzers.demo.seriesgen import NULL_FAMILIES, TRANSIENT_FAMILIES, Scenario, scenario
from analyzers.stats import verify_series
from analyzers.stats.sequential import BOUNDARIES, HORIZON_TILT, sequential_path

#: Shift families of 2 SD or more (the power and time-to-detect targets), then the rest.
SHIFTS_2SD = ("step_up", "step_down", "step_ar08", "step_heavy", "step_seasonal", "ramp20", "ramp30", "big4",
              "lowcount_up")
OTHER_SHIFTS = ("small1", "variance")
#: No-op families that break the horizon's information assumption (built here on ``ar05``/seeded
#: counts): ``gaps_after`` (a 5-15 min scrape outage 5-20 min after the deploy and 10 % of the other
#: rows after it missing: less information arrives than planned), ``traffic_fall`` (requests fall
#: to half over the window, so a latency mean gets noisier: sd x1.4 at the end, level unchanged),
#: ``ratio_fall`` (an error ratio with its request counts; requests fall to half after the deploy,
#: the ratio does not change: less exposure than before).
HORIZON_NULLS = ("gaps_after", "traffic_fall", "ratio_fall")
HORIZON_S = 1800.0
FIXED_FIRST_S = 300.0
#: The targets' premise: a shift of at least this many SD (the marginal SD of the series' noise
#: before the deploy, :func:`noise_sd`), fully in place by ``PREMISE_BY_S`` after the deploy and
#: held to the 30-minute look.
PREMISE_SD = 2.0
PREMISE_BY_S = 300.0
#: Each shift family's size at full effect (in the generator's units; ``lowcount_up``: 2x the rate
#: before, read off the day before the deploy) and the latest minute after the deploy at which it
#: is fully in place (lag 0-5 min, plus the rollout for ramps: :mod:`analyzers.demo.seriesgen`).
NOMINAL: dict[str, tuple[float, float]] = {
    "step_up": (2.0, 5), "step_down": (2.0, 5), "step_ar08": (2.0, 5), "step_heavy": (2.0, 5),
    "step_seasonal": (2.0, 5), "ramp20": (2.0, 25), "ramp30": (2.0, 35), "big4": (4.0, 5),
    "lowcount_up": (math.nan, 5), "small1": (1.0, 5), "variance": (0.0, 5)}


def noise_sd(sc: Scenario) -> tuple[float, float]:
    """The marginal SD of the series' noise over the day before the deploy, as a user means "SD":
    the spread of the values around their usual level (around the daily cycle, fitted by least
    squares, for the seasonal families), not the innovation SD the tests work with. Also the
    mean before the deploy (a count's rate)."""
    pre = sc.series[(sc.series.index < sc.deploy_at)
                    & (sc.series.index >= sc.deploy_at - pd.Timedelta(days=1))].dropna()
    y = pre.to_numpy(dtype=float)
    if "seasonal" in sc.family:
        t = (pre.index - sc.deploy_at).total_seconds().to_numpy() / 86400.0
        x = np.column_stack([np.ones_like(t), np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])
        y = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return float(np.std(y)), float(np.mean(pre.to_numpy(dtype=float)))


#: The SD is estimated from one day of noise per case (a few % off on AR(0.8)); a family's effect is
#: its median size over its pooled SD and meets the premise when within this share of ``PREMISE_SD``.
PREMISE_TOL = 0.03


def size_and_sd(fam: str, sc: Scenario) -> tuple[float, float]:
    """The case's shift at full effect and the SD of its noise before the deploy (:func:`noise_sd`)."""
    sd, mean = noise_sd(sc)
    return (2.0 * mean if fam == "lowcount_up" else abs(NOMINAL[fam][0])), sd


def family_effect(df: pd.DataFrame) -> float:
    """A family's shift in SD: the median size over the pooled SD of its cases."""
    return float(df["size"].median() / math.sqrt(float((df["sd"] ** 2).mean())))


def meets_premise(fam: str, effect: float) -> bool:
    """Is the family a ">= 2 SD" shift for the whole window (see ``PREMISE_SD``)?"""
    return effect >= PREMISE_SD * (1.0 - PREMISE_TOL) and NOMINAL[fam][1] * 60.0 <= PREMISE_BY_S


def horizon_null(family: str, seed: int) -> Scenario:
    """A no-op deploy whose information does not arrive as planned (see ``HORIZON_NULLS``)."""
    sc = scenario("ar05", seed)
    rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
    y = sc.series.to_numpy().copy()
    d = int(np.searchsorted(sc.series.index, sc.deploy_at))
    after = np.arange(y.size) >= d
    if family == "gaps_after":
        start = d + int(rng.integers(5, 21))
        y[start:start + int(rng.integers(5, 16))] = np.nan
        y[after & (rng.random(y.size) < 0.1)] = np.nan
        return replace(sc, family=family, series=pd.Series(y, index=sc.series.index, name=family))
    minutes = np.clip(np.arange(y.size) - d, 0, None).astype(float)
    traffic = 1.0 - 0.5 * np.clip(minutes / 30.0, 0.0, 1.0)  # 1 before the deploy, 0.5 at 30 min
    if family == "traffic_fall":
        y = 10.0 + (y - 10.0) / np.sqrt(traffic)
        return replace(sc, family=family, series=pd.Series(y, index=sc.series.index, name=family))
    if family == "ratio_fall":
        requests = rng.poisson(200.0 * np.where(after, 0.5, 1.0)).astype(float)
        errors = rng.poisson(requests * 0.004).astype(float)
        ratio = np.where(requests > 0, errors / np.maximum(requests, 1.0), np.nan)
        idx = sc.series.index
        return replace(sc, family=family, series=pd.Series(ratio, index=idx, name=family),
                       counts=pd.Series(requests, index=idx), kind="ratio")
    raise ValueError(f"unknown family {family!r}")


def _scenario(fam: str, seed: int) -> Scenario:
    return horizon_null(fam, seed) if fam in HORIZON_NULLS else scenario(fam, seed)


def _looks(deploy_s: float, every_s: float, first_s: float) -> np.ndarray:
    return deploy_s + np.arange(first_s, HORIZON_S + 1e-9, every_s)


def run_case(fam: str, seed: int, alpha: float, transient_s: float, fixed: bool,
             boundary: str = "horizon", tilt: float = HORIZON_TILT,
             window_s: float = HORIZON_S) -> dict[str, float | bool | None]:
    sc = _scenario(fam, seed)
    deploy_s = sc.deploy_at.value / 1e9
    series = sc.series[sc.series.index <= sc.deploy_at + pd.Timedelta(seconds=HORIZON_S)]
    t = time.process_time()
    counts = None if sc.counts is None else sc.counts[sc.counts.index <= series.index[-1]]
    path = sequential_path(series, sc.deploy_at, "any", kind=sc.kind, window_after_s=window_s, counts=counts,
                           transient_s=transient_s, boundary=boundary, tilt=tilt)
    res = path.at(alpha)
    seq_ms = (time.process_time() - t) * 1000
    out: dict[str, float | bool | None] = {"seq_ms": seq_ms, "seq_any": res["status"] == "shifted",
                                           "seq_dir_ok": None, "ttd60": None, "ttd15": None}
    if fam in NOMINAL:
        out["size"], out["sd"] = size_and_sd(fam, sc)
    if res["status"] == "shifted":
        at = float(res["decided_at"])
        out["ttd60"] = (math.ceil((at - deploy_s) / 60.0 - 1e-9) * 60.0) / 60.0
        out["ttd15"] = (math.ceil((at - deploy_s) / 15.0 - 1e-9) * 15.0) / 60.0
        out["seq_dir_ok"] = sc.direction is None or res["direction"] == sc.direction
    # A guard watching for this shift's direction (its bad direction) gives it 80 % of alpha.
    if sc.direction is not None:
        guard = sequential_path(series, sc.deploy_at, sc.direction, kind=sc.kind, window_after_s=window_s,
                                counts=counts, transient_s=transient_s, boundary=boundary, tilt=tilt).at(alpha)
        out["guard_any"] = guard["status"] == "shifted" and guard["direction"] == sc.direction
    if not fixed:
        return out
    first_hit = None
    last = None
    for look in _looks(deploy_s, 60.0, FIXED_FIRST_S):
        part = series[series.index <= pd.Timestamp(look, unit="s", tz="UTC")]
        opts = sc.options()
        if counts is not None:
            opts["counts"] = counts[counts.index <= part.index[-1]]
        r = verify_series(part, sc.deploy_at, alpha=alpha, min_points=5, **opts)
        last = r.status
        if r.status == "shifted" and first_hit is None:
            first_hit = (look - deploy_s) / 60.0
    out["fixed_any"] = first_hit is not None
    out["fixed_ttd"] = first_hit
    out["fixed_30"] = last == "shifted"
    return out


#: Shift families every method detects (power ~1): their time to detect is not confounded by power.
STEPS = ("step_up", "step_down", "step_heavy", "big4")


def _all_ttd(rows: pd.DataFrame, col: str, n: int, families: tuple[str, ...]) -> list[float]:
    """Minutes to detect over every case of ``families``, the undetected counted as never."""
    out: list[float] = []
    for _, r in rows[rows["family"].isin(families)].iterrows():
        out += list(r[col]) + [math.inf] * (n - len(r[col]))
    return out


def _power_lines(p2: pd.DataFrame, n: int, fixed: bool, target: str) -> None:
    """Power by 30 min and time to detect over the families in ``p2``."""
    if p2.empty:
        print("  (none)")
        return
    print(f"  power by 30 min: sequential min {p2['seq_any'].min():.2f} "
          f"({p2.loc[p2['seq_any'].idxmin(), 'family']}), mean {p2['seq_any'].mean():.3f}"
          + (f"; repeated fixed test min {p2['fixed_any'].min():.2f}, mean {p2['fixed_any'].mean():.3f}" if fixed else "")
          + f"; direction declared (a guard: 80 % of alpha) min {p2['guard_any'].min():.2f}, "
            f"mean {p2['guard_any'].mean():.3f}")
    ttd = [x for lst in p2["_ttd"] for x in lst]
    ttd15 = [x for lst in p2["_ttd15"] for x in lst]
    n_cases = len(p2) * n
    line = (f"  median time to detect: sequential {np.median(ttd):.1f} min (60-s looks), {np.median(ttd15):.2f} min "
            f"(15-s looks), {np.median(ttd + [math.inf] * (n_cases - len(ttd))):.1f} min counting the undetected as never")
    if fixed:
        ttd_f = [x for lst in p2["_ttd_fixed"] for x in lst]
        line += f"; repeated fixed test {np.median(ttd_f):.1f} min"
    print(line + (f"   {target}" if target else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="seeded cases per family")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--transient", type=float, default=300.0, help="transient allowance after the deploy (s)")
    ap.add_argument("--boundary", choices=BOUNDARIES, default="horizon",
                    help="the level sequence's boundary (horizon: the default, finite-horizon line; linear: "
                         "all-time line; mixture: one-sided normal mixture)")
    ap.add_argument("--tilt", type=float, default=HORIZON_TILT, help="tilt of the horizon line (design constant)")
    ap.add_argument("--window", type=float, default=HORIZON_S,
                    help="after-window = horizon of the sequence (s); the verifier's is window_after + ramp")
    ap.add_argument("--no-fixed", action="store_true", help="skip today's repeated fixed test (fast)")
    ap.add_argument("--families", default="", help="comma-separated subset of the families (default: all)")
    a = ap.parse_args(argv)
    fixed = not a.no_fixed
    rows = []
    nulls_all = NULL_FAMILIES + TRANSIENT_FAMILIES + HORIZON_NULLS
    families = nulls_all + SHIFTS_2SD + OTHER_SHIFTS
    if a.families:
        wanted = a.families.split(",")
        unknown = sorted(set(wanted) - set(families))
        if unknown:
            ap.error(f"unknown families: {', '.join(unknown)}; known: {', '.join(families)}")
        families = tuple(f for f in families if f in wanted)
    for fam in families:
        cases = [run_case(fam, s, a.alpha, a.transient, fixed, a.boundary, a.tilt, a.window) for s in range(a.n)]
        df = pd.DataFrame(cases)
        row = {"family": fam, "null": fam in nulls_all,
               "seq_any": df["seq_any"].mean(),
               "ttd_seq60": df["ttd60"].dropna().median() if df["ttd60"].notna().any() else np.nan,
               "ttd_seq15": df["ttd15"].dropna().median() if df["ttd15"].notna().any() else np.nan,
               "seq_dir_ok": f"{int(df['seq_dir_ok'].fillna(False).sum())}/{int(df['seq_any'].sum())}",
               "seq_ms": df["seq_ms"].median(),
               "guard_any": df["guard_any"].mean() if "guard_any" in df else np.nan,
               "effect_sd": family_effect(df) if fam in NOMINAL else np.nan,
               "full_by": NOMINAL[fam][1] if fam in NOMINAL else np.nan}
        row["premise"] = fam in NOMINAL and meets_premise(fam, row["effect_sd"])
        if fixed:
            row.update(fixed_any=df["fixed_any"].mean(), fixed_30=df["fixed_30"].mean(),
                       ttd_fixed=df["fixed_ttd"].dropna().median() if df["fixed_ttd"].notna().any() else np.nan)
        rows.append(row)
        row["_ttd"] = df["ttd60"].dropna().tolist()
        row["_ttd15"] = df["ttd15"].dropna().tolist()
        if fixed:
            row["_ttd_fixed"] = df["fixed_ttd"].dropna().tolist()
    res = pd.DataFrame(rows)
    cols = ["family", "seq_any", "guard_any"] + (["fixed_any", "fixed_30"] if fixed else []) + ["ttd_seq60", "ttd_seq15"] + \
        (["ttd_fixed"] if fixed else []) + ["seq_dir_ok", "seq_ms"]
    pd.set_option("display.width", 200)
    print(f"alpha={a.alpha}, n={a.n} seeded cases per family, looks every 60 s and every 15 s up to 30 min, "
          f"transient allowance {a.transient:.0f} s, {a.boundary} boundary"
          + (f" (tilt {a.tilt}, horizon {a.window / 60:.0f} min)" if a.boundary == "horizon" else "") + "\n")
    nulls, shifts = res[res["null"]], res[~res["null"]]
    print("Null families (share of no-op deploys called changed at any look = false fail):")
    print(nulls[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("\nShift families (share detected by 30 min = power; ttd = median minutes to the first calling look; "
          "effect_sd = full shift in SD of the noise before the deploy; full_by = latest minute it is fully in place):")
    print(shifts[cols[:1] + ["effect_sd", "full_by", "premise"] + cols[1:]].to_string(
        index=False, float_format=lambda x: f"{x:.3f}"))
    print()
    if len(nulls):
        print(f"Any-look false fail, all null families: sequential {nulls['seq_any'].mean():.4f}"
              + (f", repeated fixed test {nulls['fixed_any'].mean():.4f}" if fixed else "")
              + "   (target <= 0.01)")
        worst = nulls.loc[nulls["seq_any"].idxmax()]
        print(f"Worst null family: sequential {worst['seq_any']:.3f} ({worst['family']})"
              + (f"; repeated fixed test {nulls['fixed_any'].max():.3f} "
                 f"({nulls.loc[nulls['fixed_any'].idxmax(), 'family']})" if fixed else "") + "   (target <= 0.03)")
    if shifts.empty:
        return 0
    premise = shifts[shifts["premise"].astype(bool)]
    apart = res[res["family"].isin(SHIFTS_2SD) & ~res["family"].isin(premise["family"])]
    print(f"\nTargets' premise: a shift >= {PREMISE_SD:g} SD of the noise before the deploy (within "
          f"{PREMISE_TOL:.0%}), fully in place by {PREMISE_BY_S / 60:.0f} min and held to 30 min: "
          + ", ".join(premise["family"]))
    _power_lines(premise, a.n, fixed, "(target >= 0.95; median time to detect <= 5)")
    print("\nApart: families labelled >= 2 SD that do not meet the premise: "
          + ", ".join(f"{r.family} ({r.effect_sd:.2f} SD, full by {r.full_by:.0f} min)" for r in apart.itertuples()))
    _power_lines(apart, a.n, fixed, "")
    print("\nAll nine families labelled >= 2 SD (the previous tables' set):")
    _power_lines(res[res["family"].isin(SHIFTS_2SD)], a.n, fixed, "")
    if res["family"].isin(STEPS).any():
        print(f"  only the steps that power does not limit (step_up, step_down, step_heavy, big4): "
              f"{np.median(_all_ttd(res, '_ttd', a.n, STEPS)):.1f} min"
              + (f" (fixed {np.median(_all_ttd(res, '_ttd_fixed', a.n, STEPS)):.1f})" if fixed else ""))
    print(f"CPU per sequential path: median {res['seq_ms'].median():.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
