"""One day of history: the anchored 1-day shape against the pre-window baseline.

A latency-like series with a daily load cycle (0.1 .. 1.0) times AR(0.8) log noise, one day of
history before the 3 h window, a 60-minute after-window, and a no-op deploy ``--offset`` minutes
after the cycle's trough (0: where it turns up). For each seed: the single-look verdict
(``verify_series``) and the any-look one (the confidence sequence at the horizon), once with the
baseline the verifier chooses and once with the lagged baselines switched off (the pre-window
level, as before the 1-day shape existed). ``--step 1.3`` makes it a real 1.3x step (power).
``--families`` also counts which baseline each null family of :mod:`analyzers.demo.seriesgen`
gets (100 seeds each; most have exactly one day before the window).

    .venv/bin/python -m benchmarks.bench_one_day [--n 40] [--noise 0.01] [--offset 0]
        [--kernel-s 3600] [--step 1.0] [--families]
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from analyzers.demo.seriesgen import EFFECT_FAMILIES, NULL_FAMILIES, TRANSIENT_FAMILIES, scenario
from analyzers.stats import baselines as bl
from analyzers.stats import verify_series
from analyzers.stats.sequential import sequential_path

DAY, BEFORE, AFTER = 1440, 180, 60
START = pd.Timestamp("2026-03-02T00:00:00Z")


def cycle_series(seed: int, noise: float, offset: int, step: float = 1.0) -> tuple[pd.Series, pd.Timestamp]:
    """The series of ``tests/unit/test_baseline_one_day.py`` (noise 0.01, offset 0 there)."""
    n, d = DAY + BEFORE + AFTER, DAY + BEFORE
    t = np.arange(n, dtype=float)
    load = 0.55 - 0.45 * np.cos(2 * np.pi * (t - (d - offset)) / DAY)
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, noise * np.sqrt(1 - 0.8**2), n)
    e[0] = rng.normal(0.0, noise)
    y = 0.4 * (0.6 + 1.0 * load) * np.exp(lfilter([1.0], [1.0, -0.8], e))
    if step != 1.0:
        y[d + 2 :] *= step
    idx = pd.date_range(START, periods=n, freq="60s")
    return pd.Series(y, index=idx), idx[d]


@contextmanager
def _setting(**values: float) -> Iterator[None]:
    old = {k: getattr(bl, k) for k in values}
    for k, v in values.items():
        setattr(bl, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(bl, k, v)


def rates(n: int, noise: float, offset: int, step: float) -> dict[str, float]:
    out: Counter[str] = Counter()
    for seed in range(n):
        y, dep = cycle_series(seed, noise, offset, step)
        for label, ratio in (("shape", bl.SEASONAL_RATIO), ("pre-window", 0.0)):
            with _setting(SEASONAL_RATIO=ratio):
                one = verify_series(y, dep, kind="latency", window_after_s=AFTER * 60)
                path = sequential_path(y, dep, "any", kind="latency", window_after_s=AFTER * 60)
            out[f"{label} single"] += one.status == "shifted"
            out[f"{label} any-look"] += path.at(0.01)["status"] == "shifted"
            out[f"{label} baseline is the 1-day shape"] += one.baseline == bl.DAY_SHAPE
    return {k: v / n for k, v in out.items()}


def families(n: int = 100) -> dict[str, Counter[str]]:
    out = {}
    for fam in NULL_FAMILIES + TRANSIENT_FAMILIES + EFFECT_FAMILIES:
        c: Counter[str] = Counter()
        for seed in range(n):
            sc = scenario(fam, seed)
            y = sc.series.to_numpy(dtype=float)
            d = int(np.searchsorted(sc.series.index, sc.deploy_at))
            c[bl.choose_baseline(y, d - BEFORE, d, min(y.size, d + 30), 60.0).name] += 1
        out[fam] = c
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40, help="seeds")
    ap.add_argument("--noise", type=float, default=0.01, help="SD of the AR(0.8) log noise")
    ap.add_argument("--offset", type=int, default=0, help="minutes from the trough to the deploy")
    ap.add_argument("--kernel-s", type=float, default=bl.SHAPE_SMOOTH_S, help="the shape's smoothing kernel SD (s)")
    ap.add_argument("--step", type=float, default=1.0, help="factor applied 2 min after the deploy (1: a no-op)")
    ap.add_argument("--families", action="store_true", help="also count the baseline of every seriesgen family")
    a = ap.parse_args(argv)
    with _setting(SHAPE_SMOOTH_S=a.kernel_s):
        r = rates(a.n, a.noise, a.offset, a.step)
        what = "power" if a.step != 1.0 else "false fail"
        print(f"{a.n} seeds, noise {a.noise:g}, deploy {a.offset} min after the trough, step x{a.step:g}, "
              f"kernel {a.kernel_s:g} s; share called shifted ({what}):")
        for k in sorted(r):
            print(f"  {k:40s} {r[k]:.3f}")
        if a.families:
            print("\nbaseline chosen per seriesgen family (100 seeds; families not listed: pre-window 100):")
            for fam, c in families().items():
                if c.get(bl.PRE_WINDOW, 0) != 100:
                    print(f"  {fam:14s} {dict(c)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
