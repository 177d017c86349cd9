"""TCPD benchmark: F1 (margin 5) and segmentation cover of changepoints vs ruptures defaults.

Reads the data in place from /work/shared/data/tcpd (never copied). Scoring follows
TCPDBench (van den Burg and Williams 2020): index 0 counts as a change point in every
set, each true point matches at most one prediction within the margin, precision is
against the union of annotators, recall is averaged over annotators; cover is the
Jaccard-weighted segmentation covering, averaged over annotators. Series: the
univariate non-synthetic ones shipped there, uk_coal_employ excluded (25).

    .venv/bin/python benchmarks/bench_tcpd.py [--data /work/shared/data/tcpd] [--per-series]
        [--before GIT_REV]

``--before REV`` also scores ``analyzers/stats/changepoints.py`` as it was at git revision
REV (loaded from ``git show``, nothing checked out), side by side in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ruptures as rpt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analyzers.stats import changepoints  # noqa: E402


def true_positives(truth: set[int], pred: set[int], margin: int) -> set[int]:
    pred = set(pred)
    tp = set()
    for tau in sorted(truth):
        close = sorted((abs(tau - x), x) for x in pred if abs(tau - x) <= margin)
        if close:
            tp.add(tau)
            pred.remove(close[0][1])
    return tp


def f_measure(annotations: dict[str, list[int]], pred: list[int], margin: int = 5) -> float:
    tks = [set(v) | {0} for v in annotations.values()]
    x = set(pred) | {0}
    tstar = set().union(*tks)
    p = len(true_positives(tstar, x, margin)) / len(x)
    r = float(np.mean([len(true_positives(tk, x, margin)) / len(tk) for tk in tks]))
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _partition(cps: list[int], n: int) -> list[set[int]]:
    bounds = [0] + sorted(c for c in set(cps) if 0 < c < n) + [n]
    return [set(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def cover(annotations: dict[str, list[int]], pred: list[int], n: int) -> float:
    px = _partition(pred, n)
    out = []
    for cps in annotations.values():
        truth = _partition(cps, n)
        c = sum(len(r) * max(len(r & s) / len(r | s) for s in px) for r in truth) / n
        out.append(c)
    return float(np.mean(out))


def load(data: Path) -> list[tuple[str, np.ndarray, dict[str, list[int]]]]:
    ann = json.loads((data / "annotations.json").read_text())
    out = []
    for f in sorted((data / "datasets").glob("*.json")):
        d = json.loads(f.read_text())
        name = f.stem
        if len(d["series"]) != 1 or name.startswith("quality_control") or name == "uk_coal_employ":
            continue
        x = np.array([np.nan if v is None else v for v in d["series"][0]["raw"]], dtype=float)
        out.append((name, x, ann[name]))
    return out


def ruptures_default(algo: str, x: np.ndarray) -> list[int]:
    x = x.copy()
    x[~np.isfinite(x)] = np.nanmean(x)
    cls = rpt.Binseg if algo == "binseg" else rpt.Pelt
    pen = np.log(x.size) * float(np.var(x)) if np.var(x) > 0 else 1.0  # BIC-like with the series variance
    return [c for c in cls(model="l2").fit(x).predict(pen=pen) if c < x.size]


def changepoints_at(rev: str) -> Callable[..., list[int]]:
    """``changepoints`` from analyzers/stats/changepoints.py at git revision ``rev``."""
    root = Path(__file__).resolve().parents[1]
    try:
        code = subprocess.run(["git", "show", f"{rev}:analyzers/stats/changepoints.py"], cwd=root,
                              check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"--before {rev}: git could not show changepoints.py there: {e.stderr.strip()}") from e
    path = Path(tempfile.mkdtemp()) / f"changepoints_{rev}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(f"changepoints_{rev}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.changepoints  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/tcpd")
    ap.add_argument("--per-series", action="store_true", help="also print one row per series")
    ap.add_argument("--before", metavar="GIT_REV", help="also score changepoints as it was at this revision")
    a = ap.parse_args()
    series = load(Path(a.data))
    methods: dict[str, Callable[[np.ndarray], list[int]]] = {
        "changepoints (ours)": lambda x: changepoints(x),
        "ruptures binseg l2 (BIC pen)": lambda x: ruptures_default("binseg", x),
        "ruptures pelt l2 (BIC pen)": lambda x: ruptures_default("pelt", x),
        "zero": lambda x: [],
    }
    if a.before:
        methods[f"changepoints at {a.before}"] = changepoints_at(a.before)
    before = f"changepoints at {a.before}"
    scores: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    per_series = []
    for name, x, ann in series:
        for m, f in methods.items():
            pred = f(x)
            scores[m].append((f_measure(ann, pred), cover(ann, pred, x.size)))
        old = (len(methods[before](x)), *scores[before][-1]) if a.before else None
        per_series.append((name, x.size, len(methods["changepoints (ours)"](x)), scores["changepoints (ours)"][-1],
                           scores["zero"][-1], old))
    if a.per_series:
        extra = (" | changes before", " | F1 before", " | cover before") if a.before else ("", "", "")
        print(f"| series | n | changes found{extra[0]} | F1 ours{extra[1]} | F1 zero | cover ours{extra[2]} "
              "| cover zero |")
        print("|---|---|---|---|---|---|---|" + ("---|---|---|" if a.before else ""))
        for name, n, k, (f1, cv), (f0, c0), old in per_series:
            o = (f" | {old[0]}", f" | {old[1]:.2f}", f" | {old[2]:.2f}") if old else ("", "", "")
            print(f"| {name} | {n} | {k}{o[0]} | {f1:.2f}{o[1]} | {f0:.2f} | {cv:.2f}{o[2]} | {c0:.2f} |")
        print()
    print(f"{len(series)} series: {', '.join(n for n, _, _ in series)}\n")
    print("| method | F1 (margin 5) | cover |")
    print("|---|---|---|")
    for m, v in scores.items():
        arr = np.array(v)
        print(f"| {m} | {arr[:, 0].mean():.3f} | {arr[:, 1].mean():.3f} |")
    print("| published TCPDBench 'default' (R changepoint), same 25 series: binseg | 0.690 | n/a |")
    print("| published, same 25: pelt / bocpd / zero | 0.684 / 0.657 / 0.647 | n/a |")
    print("| published, all 32 univariate (cover): binseg / pelt / zero | 0.698 / 0.674 / 0.645 "
          "| 0.672 / 0.652 / 0.566 |")


if __name__ == "__main__":
    main()
