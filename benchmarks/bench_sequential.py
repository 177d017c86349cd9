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
        [--boundary linear|mixture] [--no-fixed]
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
    a = ap.parse_args(argv)
    fixed = not a.no_fixed
    rows = []
    nulls_all = NULL_FAMILIES + TRANSIENT_FAMILIES + HORIZON_NULLS
    for fam in nulls_all + SHIFTS_2SD + OTHER_SHIFTS:
        cases = [run_case(fam, s, a.alpha, a.transient, fixed, a.boundary, a.tilt, a.window) for s in range(a.n)]
        df = pd.DataFrame(cases)
        row = {"family": fam, "null": fam in nulls_all,
               "seq_any": df["seq_any"].mean(),
               "ttd_seq60": df["ttd60"].dropna().median() if df["ttd60"].notna().any() else np.nan,
               "ttd_seq15": df["ttd15"].dropna().median() if df["ttd15"].notna().any() else np.nan,
               "seq_dir_ok": f"{int(df['seq_dir_ok'].fillna(False).sum())}/{int(df['seq_any'].sum())}",
               "seq_ms": df["seq_ms"].median(),
               "guard_any": df["guard_any"].mean() if "guard_any" in df else np.nan}
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
    print("\nShift families (share detected by 30 min = power; ttd = median minutes to the first calling look):")
    print(shifts[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    p2 = res[res["family"].isin(SHIFTS_2SD)]
    print()
    print(f"Any-look false fail, all null families: sequential {nulls['seq_any'].mean():.4f}"
          + (f", repeated fixed test {nulls['fixed_any'].mean():.4f}" if fixed else "")
          + "   (target <= 0.01)")
    worst = nulls.loc[nulls["seq_any"].idxmax()]
    print(f"Worst null family: sequential {worst['seq_any']:.3f} ({worst['family']})"
          + (f"; repeated fixed test {nulls['fixed_any'].max():.3f} "
             f"({nulls.loc[nulls['fixed_any'].idxmax(), 'family']})" if fixed else "") + "   (target <= 0.03)")
    print(f"Power by 30 min on shifts >= 2 SD: sequential min {p2['seq_any'].min():.2f} "
          f"({p2.loc[p2['seq_any'].idxmin(), 'family']}), mean {p2['seq_any'].mean():.3f}"
          + (f"; repeated fixed test min {p2['fixed_any'].min():.2f}, mean {p2['fixed_any'].mean():.3f}" if fixed else "")
          + "   (target >= 0.95)")
    print(f"  the same with the shift's direction declared (a guard watching for it: 80 % of alpha): "
          f"min {p2['guard_any'].min():.2f} ({p2.loc[p2['guard_any'].idxmin(), 'family']}), mean {p2['guard_any'].mean():.3f}")
    ttd = [x for lst in p2["_ttd"] for x in lst]
    ttd15 = [x for lst in p2["_ttd15"] for x in lst]
    line = (f"Median time to detect a >= 2 SD shift: sequential {np.median(ttd):.1f} min (60-s looks), "
            f"{np.median(ttd15):.2f} min (15-s looks)")
    if fixed:
        ttd_f = [x for lst in p2["_ttd_fixed"] for x in lst]
        line += f"; repeated fixed test {np.median(ttd_f):.1f} min"
    print(line + "   (target <= 5)")
    n_cases = int(round(len(p2) * a.n))
    never = [math.inf] * (n_cases - len(ttd))
    print(f"  counting the shifts never detected by 30 min as never (median over all {n_cases} cases): "
          f"sequential {np.median(ttd + never):.1f} min"
          + (f"; repeated fixed test {np.median(ttd_f + [math.inf] * (n_cases - len(ttd_f))):.1f} min" if fixed else "")
          + "; only the steps that power does not limit (step_up, step_down, step_heavy, big4): "
          + f"{np.median(_all_ttd(p2, '_ttd', a.n, STEPS)):.1f} min"
          + (f" (fixed {np.median(_all_ttd(p2, '_ttd_fixed', a.n, STEPS)):.1f})" if fixed else ""))
    print(f"CPU per sequential path: median {res['seq_ms'].median():.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
