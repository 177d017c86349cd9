"""Scenario benchmark: false-positive rate per null family, power per effect family.

verify_series beside the naive Mann-Whitney and Welch tests of the hour before vs the
(30 min) after, all on the same seeded scenarios (analyzers.demo.seriesgen), with the
same alpha for every method. Location error: minutes between the reported change_at and
where the generated change begins. ms_per_case: CPU time of verify_series.
verify_expect: the same cases with the expectation declared (the true direction for
shifts, a seeded coin flip for no-op deploys), which gives that direction 80 % of alpha.

    .venv/bin/python -m benchmarks.bench_scenarios [--n 50] [--alpha 0.05]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, ttest_ind

from analyzers.demo.seriesgen import EFFECT_FAMILIES, NULL_FAMILIES, scenario
from analyzers.stats import verify_series


def naive(sc, alpha: float) -> tuple[bool, bool]:
    x = sc.series
    before = x[(x.index < sc.deploy_at) & (x.index >= sc.deploy_at - pd.Timedelta("60min"))].dropna()
    after = x[x.index >= sc.deploy_at].dropna()
    mw = mannwhitneyu(before, after).pvalue <= alpha
    we = ttest_ind(before, after, equal_var=False).pvalue <= alpha
    return bool(mw), bool(we)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--alpha", type=float, default=0.01)
    a = ap.parse_args()
    rows = []
    for fam in NULL_FAMILIES + EFFECT_FAMILIES:
        hits = mw = we = dir_ok = inc = hits_expect = 0
        loc: list[float] = []
        secs = 0.0
        for s in range(a.n):
            sc = scenario(fam, s)
            t = time.process_time()
            r = verify_series(sc.series, sc.deploy_at, alpha=a.alpha, **sc.options())
            secs += time.process_time() - t
            # The same deploy declaring its expectation: the true direction for shifts, a
            # seeded coin for no-op deploys (they declare one too).
            declared = sc.direction or ("increase" if np.random.default_rng(s).random() < 0.5 else "decrease")
            if fam == "variance":
                declared = "any"
            r2 = verify_series(sc.series, sc.deploy_at, declared, alpha=a.alpha, **sc.options())
            hits_expect += r2.status == "shifted"
            m, w = naive(sc, a.alpha)
            mw += m
            we += w
            inc += r.status == "inconclusive"
            if r.status == "shifted":
                hits += 1
                dir_ok += sc.direction is None or r.direction == sc.direction
                if sc.change_at is not None and r.change_at is not None:
                    loc.append(abs((r.change_at - sc.change_at).total_seconds()) / 60)
        rows.append(dict(family=fam, null=fam in NULL_FAMILIES, verify=hits / a.n,
                         verify_expect=hits_expect / a.n, mann_whitney=mw / a.n,
                         welch=we / a.n, inconclusive=inc / a.n, direction_ok=f"{dir_ok}/{hits}",
                         median_loc_err_min=float(np.median(loc)) if loc else float("nan"),
                         ms_per_case=1e3 * secs / a.n, dir_hits=dir_ok, hits=hits, loc=loc))
    df = pd.DataFrame(rows)
    nul = df[df.null]
    print(f"alpha={a.alpha}, n={a.n} seeded cases per family; rates are shares of cases flagged 'shifted'")
    print("\nNull families (false-positive rate):")
    print(nul[["family", "verify", "verify_expect", "mann_whitney", "welch", "inconclusive",
               "ms_per_case"]].to_string(
        index=False, float_format="%.2f"))
    print(f"\nAll null families together: verify {nul.verify.mean():.3f} (expectation declared: "
          f"{nul.verify_expect.mean():.3f}), "
          f"Mann-Whitney {nul.mann_whitney.mean():.3f}, Welch {nul.welch.mean():.3f}")
    eff = df[~df.null]
    big = eff[eff.family.isin(["step_up", "step_down", "step_ar08", "step_heavy", "step_seasonal", "ramp20",
                               "ramp30", "big4"])]
    locs = [x for fam_locs in eff[eff.family != "variance"]["loc"] for x in fam_locs]
    print(f"Worst null family: {nul.verify.max():.3f} ({nul.family[nul.verify.idxmax()]})")
    print(f"Power on shifts of 2 SD or more (steps, AR 0.8, heavy tails, ramp, seasonal): min "
          f"{big.verify.min():.2f} ({big.family[big.verify.idxmin()]}), mean {big.verify.mean():.2f}; "
          f"expectation declared: min {big.verify_expect.min():.2f}, mean {big.verify_expect.mean():.2f}")
    print(f"Direction right: {eff.dir_hits.sum()}/{eff.hits.sum()} detections; median location error "
          f"{np.median(locs):.1f} min over all detected shifts (variance family excluded)")
    print(f"CPU per case: median {df.ms_per_case.median():.1f} ms")
    print("\nEffect families (power):")
    print(eff[["family", "verify", "verify_expect", "mann_whitney", "welch", "direction_ok", "median_loc_err_min",
               "ms_per_case"]].to_string(index=False, float_format="%.2f"))


if __name__ == "__main__":
    main()
