"""Deploy-level truth: does the deploy verdict agree with what the generator did?

Users read the deploy's verdict, not a series' p-value. This runs the fleet scenario
(:mod:`benchmarks.fleet_data`: services with a daily cycle and AR(1) noise; deploys that do
nothing, regress one guard metric, or improve one declared metric) over several seeds x 24
generation hours (the whole timeline shifted by 0-23 h, so deploys meet every time of day),
through the real deploy-verification path (:func:`analyzers.verify.deploy.verify_deploy`:
catalog, guards, expectations, sequential decisions, Bonferroni, decision table, combination).
Prometheus-free: a fetcher serves each catalog query from the generator's own samples, computed
as the queries compute them (``rate`` over 4 scrape intervals). Each deploy is judged at the end
of its analysis window (the last look: with sequential decisions, certain at any earlier look).

Prints agreement with the truth per case type, fails on no-ops and on declared improvements
(target 0 for both) and overall agreement (target >= 99.5 %).

    .venv/bin/python -m benchmarks.bench_deploy_truth [--seeds 20] [--hours 24] [--services 6] [--days 3]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analyzers.config import Config
from analyzers.model import MetricVerdict
from analyzers.verify.decision import decide, evidence_from_result
from analyzers.verify.deploy import verify_deploy
from benchmarks.fleet_data import STEP_S, FleetParams, fleet_config, plan_fleet, service_series

BASE_END = datetime(2026, 3, 20, tzinfo=UTC)
#: A day of history before the analysis window (the fetch starts ``history_s`` before the window,
#: 27 h before the deploy): the window's own times one day earlier are in the data.
HISTORY_S = 86400.0
RATE_STEPS = 4  # rate(x[4m]) on the 60 s grid: 4 scrape intervals, as the verifier's rate window


def _rate(cum: np.ndarray) -> np.ndarray:
    out = np.full(cum.size, np.nan)
    c = cum.astype(float)
    out[RATE_STEPS:] = (c[RATE_STEPS:] - c[:-RATE_STEPS]) / (RATE_STEPS * STEP_S)
    return out


class ArrayFetcher:
    """Serves a catalog metric of one service from arrays (what Prometheus would answer)."""

    def __init__(self, index: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> None:
        self.index = index
        self.values = values

    def fetch(self, query: str, metric_key: str, start: datetime, end: datetime,
              step_s: float) -> tuple[pd.Series, tuple[str, ...]]:
        lo = self.index.searchsorted(pd.Timestamp(start), side="left")
        hi = self.index.searchsorted(pd.Timestamp(end), side="right")
        return pd.Series(self.values[metric_key][lo:hi], index=self.index[lo:hi]), ()


def _row(m: MetricVerdict, config: Config) -> int | str:
    """The row of the decision table (:data:`analyzers.verify.decision.RULES`) that gave ``m``'s outcome."""
    if m.result is None:
        return "-"
    spec = config.metrics[m.metric]
    ev = evidence_from_result(m.result, m.result.get("status", "inconclusive"), config.verification.alpha)
    return decide(m.role, m.expect, spec.good, spec.kind, ev).rule


def run(seeds: Sequence[int], hours: Sequence[int], services: int, days: int,
        history_s: float = HISTORY_S) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for h in hours:
            plan = plan_fleet(FleetParams(services=services, days=days, seed=seed), end=BASE_END + timedelta(hours=h))
            config = fleet_config(plan, history_s=history_s)
            v = config.verification
            index = pd.DatetimeIndex(pd.to_datetime(plan.timestamps, unit="s", utc=True))
            for i, svc in enumerate(plan.services):
                raw = service_series(plan, i)
                req = _rate(raw["requests"])
                with np.errstate(invalid="ignore", divide="ignore"):
                    err = _rate(raw["errors"]) / req
                fetcher = ArrayFetcher(index, {"error_ratio": err, "latency_p99": raw["p99"], "latency_p50": raw["p50"],
                                               "request_rate": req, "cpu": _rate(raw["cpu"])})
                for f in plan.deploys:
                    if f.deploy.service != svc.name:
                        continue
                    ramp = (f.deploy.finished_at - f.deploy.started_at).total_seconds() if f.deploy.finished_at else 1800.0
                    now = f.deploy.started_at + timedelta(seconds=v.window_after_s + ramp)
                    t = time.process_time()
                    verdict = verify_deploy(f.deploy, config, None, fetcher=fetcher, now=now)  # type: ignore[arg-type]
                    cpu = time.process_time() - t
                    declared = {e.metric for e in f.deploy.expectations}
                    rows.append({
                        "seed": seed, "hour": h, "deploy": f.deploy.deploy_id, "kind": f.truth.kind,
                        "metric": f.truth.metric, "truth": f.truth.expected_overall, "overall": verdict.overall,
                        "confirmed": any(m.metric in declared and m.outcome == "confirmed" for m in verdict.metrics),
                        "why": "; ".join(f"{m.metric}={m.outcome} (row {_row(m, config)})" for m in verdict.metrics
                                         if m.outcome not in ("ok", "confirmed")),
                        "cpu_ms": cpu * 1000,
                    })
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--services", type=int, default=6)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--history-h", type=float, default=HISTORY_S / 3600,
                    help="hours of history fetched before each 3 h analysis window (default: a day)")
    ap.add_argument("--only-seeds", default="", help="comma-separated seeds instead of range(--seeds)")
    ap.add_argument("--only-hours", default="", help="comma-separated generation hours instead of range(--hours)")
    ap.add_argument("--show", type=int, default=10, help="list this many disagreements")
    a = ap.parse_args(argv)
    seeds = [int(x) for x in a.only_seeds.split(",")] if a.only_seeds else list(range(a.seeds))
    hours = [int(x) for x in a.only_hours.split(",")] if a.only_hours else list(range(a.hours))
    df = run(seeds, hours, a.services, a.days, a.history_h * 3600.0)
    df["agree"] = df["overall"] == df["truth"]
    print(f"fleet scenario: {len(seeds)} seeds x {len(hours)} generation hours, {a.services} services x {a.days} days each, {a.history_h:g} h fetched before each deploy; "
          f"{len(df)} deploys through verify_deploy (Prometheus-free fetcher)\n")
    table = df.groupby("kind").agg(deploys=("agree", "size"), agree=("agree", "mean"),
                                   fail=("overall", lambda s: int((s == "fail").sum())),
                                   inconclusive=("overall", lambda s: int((s == "inconclusive").sum())))
    imp = df[df["kind"] == "improvement"]
    table.loc["improvement", "confirmed"] = imp["confirmed"].mean() if len(imp) else np.nan
    print(table.to_string(float_format=lambda x: f"{x:.4f}"))
    per_metric = df[df["kind"] != "noop"].groupby(["kind", "metric"])["agree"].agg(["size", "mean"])
    print("\nper changed metric:\n" + per_metric.to_string(float_format=lambda x: f"{x:.3f}"))
    fails_noop = int(((df["kind"] == "noop") & (df["overall"] == "fail")).sum())
    fails_imp = int(((df["kind"] == "improvement") & (df["overall"] == "fail")).sum())
    print(f"\nAgreement with truth: {df['agree'].mean():.4f} ({int(df['agree'].sum())}/{len(df)})   (target >= 0.995)")
    print(f"Fails on no-op deploys: {fails_noop}; on declared improvements: {fails_imp}   (target 0 and 0)")
    by_hour = df.groupby("hour")["agree"].mean()
    print(f"Agreement by generation hour: min {by_hour.min():.4f} (hour {int(by_hour.idxmin())}), max {by_hour.max():.4f}")
    print(f"CPU per deploy verdict: median {df['cpu_ms'].median():.1f} ms")
    wrong = df[~df["agree"]]
    if len(wrong) and a.show:
        print("\nDisagreements (first few):")
        for r in wrong.head(a.show).itertuples():
            print(f"  seed {r.seed} hour {r.hour} {r.deploy} {r.kind} {r.metric or ''}: truth {r.truth}, got {r.overall} [{r.why}]")
    print(f"\nTotal: {Counter(df['overall'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
