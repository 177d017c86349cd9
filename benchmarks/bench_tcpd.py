"""TCPD benchmark: F1 (margin 5) and segmentation cover of changepoints vs ruptures defaults.

Reads the data in place from /work/shared/data/tcpd (never copied). Scoring follows
TCPDBench (van den Burg and Williams 2020): index 0 counts as a change point in every
set, each true point matches at most one prediction within the margin, precision is
against the union of annotators, recall is averaged over annotators; cover is the
Jaccard-weighted segmentation covering, averaged over annotators. Series: the
univariate non-synthetic ones shipped there, uk_coal_employ excluded (25).

    .venv/bin/python -m benchmarks.bench_tcpd [--data /work/shared/data/tcpd] [--per-series]
        [--before GIT_REV] [--variant DIFF] [--synthetic]

``--synthetic`` adds a seeded check that TCPD cannot overfit: smooth curves without any
change (exponential, logistic, square root, half sine; 150-1,000 points; noise 2-10 % of the
range) should get no change points, and jumps and kinks in a line should be found.

``--before REV`` also scores ``analyzers/stats/changepoints.py`` as it was at git revision
REV (loaded from ``git show``, nothing checked out), side by side in the same run.
``--variant DIFF`` scores ``changepoints.py`` with a unified diff applied, to the ``--before``
revision if one is given, else to today's file (the rejected variants in
``benchmarks/variants/`` are diffs against 86f7684), also side by side.
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

from analyzers.stats import changepoints


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


def _load(code: str, tag: str) -> Callable[..., list[int]]:
    """``changepoints`` from the source ``code``, imported inside ``analyzers.stats`` (it imports
    its siblings relatively)."""
    safe = "".join(c if c.isalnum() else "_" for c in tag)
    path = Path(tempfile.mkdtemp()) / f"changepoints_{safe}.py"
    path.write_text(code)
    name = f"analyzers.stats._changepoints_{safe}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "analyzers.stats"
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod.changepoints  # type: ignore[no-any-return]


def _source_at(rev: str) -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", "show", f"{rev}:analyzers/stats/changepoints.py"], cwd=root,
                              check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"--before {rev}: git could not show changepoints.py there: {e.stderr.strip()}") from e


def changepoints_at(rev: str) -> Callable[..., list[int]]:
    """``changepoints`` from analyzers/stats/changepoints.py at git revision ``rev``."""
    return _load(_source_at(rev), rev)


def changepoints_patched(diff: Path, rev: str | None) -> Callable[..., list[int]]:
    """``changepoints`` with the unified diff applied to changepoints.py at ``rev`` (or today's)."""
    src = Path(__file__).resolve().parents[1] / "analyzers" / "stats" / "changepoints.py"
    work = Path(tempfile.mkdtemp()) / "changepoints.py"
    work.write_text(_source_at(rev) if rev else src.read_text())
    try:
        subprocess.run(["patch", "--quiet", "--forward", str(work), str(diff.resolve())], check=True,
                       capture_output=True, text=True)
    except FileNotFoundError:
        raise SystemExit("--variant needs the 'patch' program (apt-get install patch)") from None
    except subprocess.CalledProcessError as e:
        base = f"changepoints.py at {rev}" if rev else "today's changepoints.py"
        raise SystemExit(f"--variant {diff}: the diff does not apply to {base} (pass the --before "
                         f"revision it was made against): {(e.stdout + e.stderr).strip()}") from e
    return _load(work.read_text(), diff.stem)


SMOOTH = {
    "exp": lambda t: np.exp(2.5 * t),
    "logistic": lambda t: 1 / (1 + np.exp(-8 * (t - 0.5))),
    "sqrt": lambda t: np.sqrt(t + 0.05),
    "half sine": lambda t: np.sin(np.pi * t),
}


def synthetic(f: Callable[[np.ndarray], list[int]], seeds: int = 10) -> dict[str, str]:
    """Seeded sanity check beside TCPD: cuts on smooth curves, and abrupt changes found.

    Smooth: each curve of SMOOTH scaled to [0, 1] plus Gaussian noise (sd 0.02, 0.05, 0.1) at
    150, 400 and 1,000 points; reported as the mean number of change points (truth: 0) and the
    share of series with none. Abrupt (60, 150, 400 and 1,000 points): a line (slope ~N(0, 0.01)) with noise sd 0.1 and, at the
    middle, a jump of 0.5 (5 noise sd) or a kink (slope change 0.02 a point); and a jump of 3
    noise sd at the middle of a rising half sine of 10 noise sd (a step on a daily traffic ramp);
    found if a change point lies within 5 points.
    """
    cuts = []
    for noise in (0.02, 0.05, 0.1):
        for n in (150, 400, 1000):
            t = np.linspace(0.0, 1.0, n)
            for shape in SMOOTH.values():
                y = shape(t)
                y = (y - y.min()) / (y.max() - y.min())
                for seed in range(seeds):
                    cuts.append(len(f(y + np.random.default_rng(seed).normal(0.0, noise, n))))
    found = {}
    for kind in ("jump", "kink", "step on curve"):
        hits = 0
        for seed in range(4 * seeds):
            rng = np.random.default_rng(1000 + seed)
            n = (60, 150, 400, 1000)[seed % 4]
            c, t = n // 2, np.arange(n, dtype=float)
            if kind == "step on curve":
                y = np.sin(np.pi * t / (n - 1)) + rng.normal(0.0, 0.1, n)
                y[c:] += 0.3
            else:
                y = rng.normal(0.0, 0.01) * t + rng.normal(0.0, 0.1, n)
                y[c:] += 0.5 if kind == "jump" else 0.02 * (t[c:] - c)
            hits += any(abs(k - c) <= 5 for k in f(y))
        found[kind] = f"{hits}/{4 * seeds}"
    arr = np.array(cuts)
    return {"smooth: mean cuts": f"{arr.mean():.1f}", "smooth: none": f"{np.mean(arr == 0):.0%}",
            "jump found": found["jump"], "kink found": found["kink"], "step on curve found": found["step on curve"]}


SCENARIO_FAMILIES = ("seasonal", "drift", "earlier", "step_up", "step_seasonal", "step_ar08", "ramp20", "small1")


def scenario_check(f: Callable[[np.ndarray], list[int]], seeds: int = 25) -> dict[str, str]:
    """``f`` on the deploy scenarios the verifier is tested on (analyzers.demo.seriesgen):
    the 3 h before the deploy and the hour after, 1-minute points. Null families: mean number
    of change points; shift families: how often one lies within 5 minutes of the change."""
    from analyzers.demo.seriesgen import scenario

    out = {}
    for fam in SCENARIO_FAMILIES:
        cuts = hits = 0
        for seed in range(seeds):
            sc = scenario(fam, seed)
            w = sc.series[sc.series.index >= sc.deploy_at - np.timedelta64(3, "h")]
            found = f(w.to_numpy())
            cuts += len(found)
            if sc.shifted:
                at = int(np.searchsorted(w.index, sc.change_at if sc.change_at is not None else sc.deploy_at))
                hits += any(abs(k - at) <= 5 for k in found)
        out[fam] = f"{hits}/{seeds}" if scenario(fam, 0).shifted else f"{cuts / seeds:.1f} cuts"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data/tcpd")
    ap.add_argument("--per-series", action="store_true", help="also print one row per series")
    ap.add_argument("--before", metavar="GIT_REV", help="also score changepoints as it was at this revision")
    ap.add_argument("--variant", metavar="DIFF", type=Path,
                    help="also score changepoints.py (at --before, else today's) with this unified diff applied")
    ap.add_argument("--synthetic", action="store_true",
                    help="also run the seeded smooth-curve and abrupt-change check (about a minute)")
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
    variant = f"changepoints{' at ' + a.before if a.before else ''} + {a.variant.name}" if a.variant else ""
    if a.variant:
        methods[variant] = changepoints_patched(a.variant, a.before)
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
    if a.synthetic:
        print("\nSeeded synthetic check (smooth curves have no change; jumps and kinks should be found):\n")
        rows = {m: synthetic(f) for m, f in methods.items() if m in ("changepoints (ours)", before, variant)}
        cols = list(next(iter(rows.values())))
        print("| method | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for m, r in rows.items():
            print(f"| {m} | " + " | ".join(r[c] for c in cols) + " |")
        print("\nDeploy scenarios (3 h before + 1 h after, 25 seeds; null: change points found, "
              "shift: found within 5 min):\n")
        rows = {m: scenario_check(f) for m, f in methods.items() if m in ("changepoints (ours)", before, variant)}
        print("| method | " + " | ".join(SCENARIO_FAMILIES) + " |")
        print("|---|" + "---|" * len(SCENARIO_FAMILIES))
        for m, r in rows.items():
            print(f"| {m} | " + " | ".join(r[c] for c in SCENARIO_FAMILIES) + " |")


if __name__ == "__main__":
    main()
