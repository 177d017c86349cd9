"""Speed: analyzers.changepoints beside ruptures Pelt and Binseg, and verify_series, same data.

    .venv/bin/python -m benchmarks.bench_changepoints [--before GIT_REV]

``--before REV`` adds a column: changepoints.py as it was at git revision REV, timed
interleaved with the current one (best of 5 each, alternating), so load affects both alike.

Signal: Gaussian noise with a mean step every 10 % of the length and 0.1 % outliers
(seed 0). ruptures runs with model "l2", min_size 5, jump 1 and a BIC-like penalty; its
Pelt and Binseg are pure Python loops, so they run at the smaller sizes only (say so in
the table). Times are CPU seconds of this process (best of 3 for ours), which the other
jobs sharing the machine do not inflate as much as wall-clock time.
verify_series: a 1-minute series of that many points, the deploy 100 points before the end.
Fleet shape: what the fleet benchmark sends ~15,000 times, from its own series generator (the 5
catalog metrics around each deploy, a day of history at 60 s steps plus 35 min after, ~1,476
points; see benchmarks/bench_verify_speed.py, which also compares against an earlier revision).
changepoints runs with its default model ("auto": piecewise-constant or -linear by BIC).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import ruptures as rpt

from analyzers.stats import changepoints, verify_series
from benchmarks.bench_tcpd import changepoints_at

RUPTURES_MAX = {"pelt": 1_000, "binseg": 10_000}


def signal(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    for k in range(1, 10):
        x[k * n // 10 :] += rng.choice([-2.0, 2.0])
    x[rng.choice(n, max(1, n // 1000), replace=False)] += 15
    return x


def cpu(f: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        f()
        best = min(best, time.process_time() - t)
    return best


def ruptures_fit(algo: Any, x: np.ndarray, pen: float) -> list[int]:
    return list(algo(model="l2", min_size=5, jump=1).fit(x).predict(pen=pen))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", metavar="GIT_REV", help="also time changepoints as it was at this revision")
    a = ap.parse_args()
    old = changepoints_at(a.before) if a.before else None
    extra = f" | changepoints at {a.before} (CPU s)" if a.before else ""
    print(f"| n | changepoints (CPU s){extra} | changes found (true 9) | ruptures Pelt l2 | ruptures Binseg l2 "
          "| verify_series (CPU ms) |")
    print("|---|---|---|---|---|---|" + ("---|" if a.before else ""))
    for n in (1_000, 10_000, 100_000, 1_000_000):
        x = signal(n)
        changepoints(x[:1000])  # warm-up
        if old is not None:
            old(x[:1000])
            t_ours, t_old = float("inf"), float("inf")
            for _ in range(5):  # alternate, so a burst of load hits both
                t_ours = min(t_ours, cpu(partial(changepoints, x)))
                t_old = min(t_old, cpu(partial(old, x)))
            col = f"{t_ours:.4f} | {t_old:.4f}"
        else:
            col = f"{cpu(partial(changepoints, x), repeat=3):.4f}"
        found = len(changepoints(x))
        pen = 3 * np.log(n) * float(np.var(np.diff(x)) / 2)
        cells = []
        for name, algo in (("pelt", rpt.Pelt), ("binseg", rpt.Binseg)):
            if n > RUPTURES_MAX[name]:
                cells.append("not run (pure Python, minutes)")
                continue
            t = cpu(partial(ruptures_fit, algo, x, pen))
            cells.append(f"{t:.3f} s")
        idx = pd.date_range("2026-01-01", periods=n, freq="1min", tz="UTC")
        s = pd.Series(x, index=idx)
        t_v = cpu(partial(verify_series, s, idx[-100]), repeat=3) * 1e3
        print(f"| {n:,} | {col} | {found} | {cells[0]} | {cells[1]} | {t_v:.1f} |")
    rng = np.random.default_rng(1)
    idx = pd.date_range("2026-01-01", periods=3000, freq="1min", tz="UTC")
    s = pd.Series(rng.normal(size=3000), index=idx)
    verify_series(s, idx[2900])
    t = cpu(lambda: [verify_series(s, idx[2900]) for _ in range(20)]) / 20 * 1e3
    print(f"\nverify_series on 3,000 points (iid, deploy 100 points before the end): {t:.1f} ms CPU per call")
    print(f"verify_series on the fleet shape (fleet_data's generator: the 5 catalog metrics around each deploy of a "
          f"12-service fleet, 1 day at 60 s + 35 min after, 180 calls): {fleet_shape_ms():.2f} ms CPU per call "
          "(benchmarks/bench_verify_speed.py --before REV compares revisions)")


def fleet_shape_ms() -> float:
    """CPU ms per ``verify_series`` call on the fleet shape (see ``bench_verify_speed.fleet_cases``)."""
    from benchmarks.bench_verify_speed import fleet_cases

    cases = fleet_cases()
    for c in cases[:3]:
        c.run(verify_series)
    t = cpu(lambda: [c.run(verify_series) for c in cases], repeat=3)
    return t / len(cases) * 1e3


if __name__ == "__main__":
    main()
