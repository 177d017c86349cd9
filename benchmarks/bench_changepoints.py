"""Speed of analyzers.changepoints beside ruptures Pelt and Binseg on the same data.

    .venv/bin/python benchmarks/bench_changepoints.py

Signal: Gaussian noise with a mean step every 10 % of the length and 0.1 % outliers
(seed 0). ruptures runs with its usual settings (model "l2", penalty 3 log n * var);
Pelt is O(n^2) worst case in pure Python, so it runs at the smaller sizes only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import ruptures as rpt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analyzers.stats import changepoints  # noqa: E402

RUPTURES_MAX = {"pelt": 1_000, "binseg": 10_000}


def signal(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    for k in range(1, 10):
        x[k * n // 10 :] += rng.choice([-2.0, 2.0])
    x[rng.choice(n, max(1, n // 1000), replace=False)] += 15
    return x


def timed(f) -> tuple[float, object]:
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main() -> None:
    print("| n | changepoints (s) | found | ruptures Pelt l2 (s) | ruptures Binseg l2 (s) |")
    print("|---|---|---|---|---|")
    for n in (1_000, 10_000, 100_000, 1_000_000):
        x = signal(n)
        changepoints(x[:1000])  # warm-up
        t_ours, cps = min((timed(lambda: changepoints(x)) for _ in range(3)), key=lambda r: r[0])
        pen = 3 * np.log(n) * float(np.var(np.diff(x)) / 2)
        cells = []
        for name, algo in (("pelt", rpt.Pelt), ("binseg", rpt.Binseg)):
            if n > RUPTURES_MAX[name]:
                cells.append("skipped (too slow)")
                continue
            t, _ = timed(lambda algo=algo: algo(model="l2", min_size=5, jump=1).fit(x).predict(pen=pen))
            cells.append(f"{t:.3f}")
        print(f"| {n:,} | {t_ours:.4f} | {len(cps)} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
