"""verify_series CPU per call on a seeded corpus, side by side with an earlier revision, and a
check that every result is identical.

    .venv/bin/python -m benchmarks.bench_verify_speed [--before GIT_REV] [--fleet-only] [--rounds N]

The corpus (:func:`corpus`, seeded, no Prometheus needed):

* every scenario family of :mod:`analyzers.demo.seriesgen` (nulls, shifts, ramps, gaps,
  heavy tails, seasonal, low counts, ...) over several seeds, with the three ``expect``
  values, two alphas and a minimum effect in turn;
* the fleet shape: what the fleet benchmark sends ~15,000 times, built from
  :mod:`benchmarks.fleet_data`'s own generator: for each deploy of a small seeded fleet, the
  5 catalog metrics (error ratio, p99 and p50 latency gauges, request and CPU rates, rates
  over 5 minutes as the queries compute them) from 1 day before the deploy to 35 minutes after
  (the 30-minute after-window plus the 5-minute rollout as ramp),
  with the verifier's options (kind, min_effect, expect, ramp_s 300 s);
* a few edge cases (counters with resets, huge/tiny magnitudes, gaps at the deploy).

``--before REV`` loads ``analyzers/stats`` as it was at REV (``git show``) into a temporary
package and times both on the same corpus, alternating rounds (best round each), so load
hits both alike; the results of both are compared case by case (``to_dict()``, exact).
Without it, the current code alone is timed and the digest printed.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzers.demo.seriesgen import EFFECT_FAMILIES, NULL_FAMILIES, scenario
from analyzers.stats import verify_series

ROOT = Path(__file__).resolve().parents[1]

#: Fleet-shape options as ``analyzers.verify.deploy`` passes them (catalog of fleet_data.fleet_config).
FLEET_METRICS: dict[str, dict[str, Any]] = {
    "error_ratio": {"kind": "ratio", "min_effect": 0.005, "min_effect_rel": 0.25},
    "latency_p99": {"kind": "latency", "min_effect_rel": 0.10},
    "latency_p50": {"kind": "latency", "min_effect_rel": 0.10},
    "request_rate": {"kind": "rate", "min_effect_rel": 0.10},
    "cpu": {"kind": "rate", "min_effect_rel": 0.10},
}

#: What the verifier tests an undeclared guard for: its bad direction (none for request_rate).
GUARD_EXPECT = {"error_ratio": "increase", "latency_p99": "increase", "latency_p50": "increase",
                "request_rate": "any", "cpu": "increase"}


@dataclass(frozen=True)
class Case:
    """One ``verify_series`` call: ``run(f)`` calls ``f(series, deploy_at, expect, **options)``."""

    name: str
    series: pd.Series
    deploy_at: Any
    expect: str
    options: dict[str, Any]

    def run(self, f: Callable[..., Any]) -> Any:
        return f(self.series, self.deploy_at, self.expect, **self.options)


def scenario_cases(seeds: range) -> list[Case]:
    out: list[Case] = []
    expects = ("any", "increase", "decrease")
    for fam in NULL_FAMILIES + EFFECT_FAMILIES:
        for s in seeds:
            sc = scenario(fam, s)
            opts = sc.options()
            i = len(out)
            if i % 2:
                opts["alpha"] = 0.05
            if i % 5 == 0:
                opts["min_effect_rel"] = 0.1
            out.append(Case(f"{fam}/{s}", sc.series, sc.deploy_at, expects[i % 3], opts))
    return out


def _rate(cum: np.ndarray, window: int = 5, step_s: float = 60.0) -> np.ndarray:
    """Per-second rate over ``window`` steps, as ``rate(x[5m])`` on a 60 s grid (resets ignored)."""
    out = np.full(cum.size, np.nan)
    c = cum.astype(float)
    out[window:] = (c[window:] - c[:-window]) / (window * step_s)
    return out


def fleet_cases(services: int = 12, days: int = 6, seed: int = 11) -> list[Case]:
    """The fleet benchmark's series shape, from its own seeded generator (no Prometheus)."""
    from benchmarks.fleet_data import FleetParams, plan_fleet, service_series

    plan = plan_fleet(FleetParams(services=services, days=days, seed=seed),
                      end=datetime(2026, 3, 20, tzinfo=UTC))
    ts = plan.timestamps
    index = pd.DatetimeIndex(pd.to_datetime(ts, unit="s", utc=True))
    out: list[Case] = []
    for i, svc in enumerate(plan.services):
        raw = service_series(plan, i)
        req = _rate(raw["requests"])
        with np.errstate(invalid="ignore", divide="ignore"):
            err = _rate(raw["errors"]) / req
        values = {"error_ratio": err, "latency_p99": raw["p99"], "latency_p50": raw["p50"],
                  "request_rate": req, "cpu": _rate(raw["cpu"])}
        for f in plan.deploys:
            if f.deploy.service != svc.name:
                continue
            at = f.deploy.started_at
            lo = np.searchsorted(ts, (at - timedelta(days=1)).timestamp())
            hi = np.searchsorted(ts, (at + timedelta(minutes=35)).timestamp(), side="right")
            declared = {e.metric: e.expect for e in f.deploy.expectations}
            for key, opts in FLEET_METRICS.items():
                s = pd.Series(values[key][lo:hi], index=index[lo:hi])
                out.append(Case(f"fleet/{f.deploy.deploy_id}/{key}", s, at, declared.get(key, GUARD_EXPECT[key]),
                                {**opts, "alpha": 0.05, "ramp_s": 300.0, "min_points": 10}))
    return out


def edge_cases() -> list[Case]:
    rng = np.random.default_rng(5)
    idx = pd.date_range("2026-03-02", periods=1500, freq="60s", tz="UTC")
    d = idx[1440]
    out: list[Case] = []
    counter = np.cumsum(rng.poisson(40, 1500)).astype(float)
    counter[700:] -= counter[699]  # a reset
    out.append(Case("edge/counter", pd.Series(counter, index=idx), d, "any", {"kind": "counter"}))
    x = 5 + rng.standard_normal(1500)
    x[1440:] += 1.5
    out.append(Case("edge/huge", pd.Series(x * 1e250, index=idx), d, "increase", {}))
    out.append(Case("edge/tiny", pd.Series(x * 1e-250, index=idx), d, "any", {}))
    g = x.copy()
    g[1430:1452] = np.nan
    g[rng.random(1500) < 0.2] = np.nan
    out.append(Case("edge/gaps", pd.Series(g, index=idx), d, "any", {"ramp_s": 600}))
    jitter = idx + pd.to_timedelta(rng.integers(-5, 6, 1500), unit="s")
    out.append(Case("edge/jitter", pd.Series(x, index=jitter), d, "decrease", {}))
    out.append(Case("edge/flat", pd.Series(np.r_[np.full(1440, 3.0), np.full(60, 4.0)], index=idx), d, "any", {}))
    out.append(Case("edge/wait", pd.Series(x, index=idx), idx[1495], "any", {}))
    sparse = x.copy()
    sparse[1440::3] = np.nan
    sparse[1441::3] = np.nan
    out.append(Case("edge/sparse-after", pd.Series(sparse, index=idx), d, "any", {}))
    early = 5 + rng.standard_normal(1500)
    early[1430:] += 4.0  # a step 10 min before the deploy
    out.append(Case("edge/earlier", pd.Series(early, index=idx), d, "any", {}))
    return out


def corpus(seeds: range = range(12), fleet_services: int = 12) -> list[Case]:
    """The seeded corpus: scenarios x seeds, the fleet shape, edge cases (see the module doc)."""
    return scenario_cases(seeds) + fleet_cases(services=fleet_services) + edge_cases()


def result_json(res: Any) -> str:
    """Canonical JSON of ``res.to_dict()`` (floats with repr precision: identical means identical)."""
    return json.dumps(res.to_dict(), sort_keys=True, default=str)


def digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\n")
    return h.hexdigest()


def stats_at(rev: str) -> Callable[..., Any]:
    """``verify_series`` from ``analyzers/stats`` at git revision ``rev`` (a temporary package)."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", rev, "analyzers/stats/"],
                           check=True, capture_output=True, text=True).stdout.split()
    tmp = Path(tempfile.mkdtemp(prefix="stats_before_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    for f in files:
        if f.endswith(".py"):
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{f}"], check=True, capture_output=True,
                                 text=True).stdout
            # absolute imports of the package itself must resolve to the old copy, not today's
            (tmp / Path(f).name).write_text(re.sub(r"\banalyzers\.stats\b", "analyzers._stats_before", src))
    name = "analyzers._stats_before"  # inside analyzers, so ``analyzers.errors`` resolves
    spec = importlib.util.spec_from_file_location(name, tmp / "__init__.py", submodule_search_locations=[str(tmp)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod.verify_series  # type: ignore[no-any-return]


def cpu_round(f: Callable[..., Any], cases: list[Case]) -> tuple[float, list[str]]:
    t = time.process_time()
    res = [c.run(f) for c in cases]
    cpu = time.process_time() - t
    return cpu, [result_json(r) for r in res]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", metavar="GIT_REV", help="also time verify_series as it was at this revision")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (best of each is reported)")
    ap.add_argument("--fleet-only", action="store_true", help="time the fleet-shape cases only")
    ap.add_argument("--write-digest", metavar="FILE", help="write the canonical JSON lines of the results to FILE")
    a = ap.parse_args(argv)
    cases = fleet_cases() if a.fleet_only else corpus()
    fleet = [c for c in cases if c.name.startswith("fleet/")]
    impls: dict[str, Callable[..., Any]] = {"current": verify_series}
    if a.before:
        impls[f"at {a.before}"] = stats_at(a.before)
    for f in impls.values():  # warm-up (imports, caches of the seeded normals)
        for c in cases[:5] + fleet[:5]:
            c.run(f)
    best: dict[str, dict[str, float]] = {k: {"all": math.inf, "fleet": math.inf} for k in impls}
    texts: dict[str, list[str]] = {}
    for _ in range(a.rounds):
        for k, f in impls.items():
            cpu_all, texts[k] = cpu_round(f, cases)
            cpu_fleet, _ = cpu_round(f, fleet)
            best[k]["all"] = min(best[k]["all"], cpu_all)
            best[k]["fleet"] = min(best[k]["fleet"], cpu_fleet)
    load = os.getloadavg()
    print(f"corpus: {len(cases)} calls ({len(fleet)} fleet shape); load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; best of {a.rounds} alternating rounds, CPU time of this process")
    print("| code | corpus (ms CPU per call) | fleet shape (ms CPU per call) | results digest |")
    print("|---|---|---|---|")
    for k in impls:
        print(f"| {k} | {best[k]['all'] / len(cases) * 1e3:.2f} | {best[k]['fleet'] / max(1, len(fleet)) * 1e3:.2f} "
              f"| {digest(texts[k])[:16]} |")
    if a.write_digest:
        Path(a.write_digest).write_text("\n".join(f"{c.name}\t{t}" for c, t in zip(cases, texts["current"],
                                                                                    strict=True)) + "\n")
    if a.before:
        ref = texts[f"at {a.before}"]
        diff = [c.name for c, x, y in zip(cases, texts["current"], ref, strict=True) if x != y]
        k = f"at {a.before}"
        print(f"\nspeed-up: corpus {best[k]['all'] / best['current']['all']:.2f}x, fleet shape "
              f"{best[k]['fleet'] / best['current']['fleet']:.2f}x")
        print(f"results identical: {len(cases) - len(diff)}/{len(cases)}" + (f"; differ: {diff[:10]}" if diff else ""))
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
