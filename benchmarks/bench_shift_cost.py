"""What verifying a deploy asks of Prometheus, and what a later look asks (issue 12, ``latency_shift``).

One command::

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_shift_cost [--end 2026-12-07T11:00] [--looks 20]

Three parts, each counted at the client (a :class:`PrometheusClient` that counts its range queries
and the points they return):

1. **One verification** of each deploy of the demo scenario (seed 7, promtool-backfilled into a real
   Prometheus on loopback, the default catalog), at its final look, fetching the whole span:
   range queries, points (all, and ``latency_shift``'s bucket query alone), wall and CPU seconds.
2. **Looks every 30 s** (``verify --wait``'s poll) at three deploys (one per service) from 5 minutes
   after each deploy, side by side in one run, look by look: every look fetching the whole span (what
   main did) against the per-process cache (:mod:`analyzers.verify.span_cache`, its clock set to the
   look's time so the newest 5 minutes are asked for again as live). Every cached look's verdict is
   checked equal to the full fetch's (metric by metric, ``to_dict()``).
3. **``verify`` of every deploy at once** (the fleet path): ``latency_shift``'s bucket counts
   batched per service against fetched per deploy (main's plan), alternating rounds, verdicts equal.
4. **What the 8 days of history are for**: the demo scenario over 10 days, its deploys placed from
   8 days 4 hours in (so a full 8 days precede every window), served from the generator's arrays (:mod:`benchmarks.demo_arrays`), each deploy
   verified with ``verification.history`` 8 days and 2 days: the baseline ``latency_shift``'s
   statistics choose, and whether any verdict differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analyzers.config import Config, default_config
from analyzers.demo.promserver import PrometheusServer, backfill
from analyzers.demo.scenarios import demo_scenario
from analyzers.model import Deploy, to_utc
from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import DirectFetcher, verify_deploy
from analyzers.verify.plan import ramp_s
from analyzers.verify.span_cache import SpanCache
from benchmarks.bench_demo_truth import _wait


class CountingClient(PrometheusClient):
    """Counts range queries and returned points, the bucket query (``sum by (le) (increase(``) apart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts: Counter[str] = Counter()

    def query_range(self, query: str, start: Any, end: Any, step_s: float | None = None, **kw: Any) -> Any:
        result = super().query_range(query, start, end, step_s, **kw)
        n = sum(len(s.values) for s in result.series)
        kind = "buckets" if query.startswith("sum by (le) (increase(") else "lines"
        self.counts.update({"queries": 1, "points": n, f"{kind}_queries": 1, f"{kind}_points": n})
        return result


def _timed(fn: Any) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def _metrics(v: Any) -> list[dict[str, Any]]:
    return [m.to_dict() for m in v.metrics]


def one_verification(client: CountingClient, config: Config, deploys: list[Deploy]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for d in deploys:
        now = d.started_at + timedelta(seconds=config.verification.window_after_s + ramp_s(d, config) + 60)
        before = Counter(client.counts)
        _, wall, cpu = _timed(lambda d=d, now=now: verify_deploy(d, config, client, others=deploys, now=now,  # type: ignore[misc]
                                                                 fetcher=DirectFetcher(client, cache=None)))
        total.update(client.counts - before)
        total.update({"wall": wall, "cpu": cpu})  # type: ignore[dict-item]
    return {k: v / len(deploys) for k, v in total.items()}


def looks(client: CountingClient, config: Config, deploys: list[Deploy], picked: list[Deploy], n_looks: int) -> dict[str, Any]:
    """Looks every 30 s from 5 min after each picked deploy: the whole span each time vs the cache."""
    sides: dict[str, Counter[str]] = {"whole span": Counter(), "cache": Counter()}
    first: dict[str, Counter[str]] = {"whole span": Counter(), "cache": Counter()}
    differ = 0
    for d in picked:
        clock = {"t": 0.0}
        cached = DirectFetcher(client, cache=SpanCache(clock=lambda clock=clock: clock["t"]))  # type: ignore[misc]
        for k in range(n_looks):
            now = d.started_at + timedelta(minutes=5, seconds=30 * k)
            clock["t"] = now.timestamp()
            verdicts = {}
            for side in (("whole span", "cache") if k % 2 else ("cache", "whole span")):  # alternate: load hits both
                fetcher = cached if side == "cache" else DirectFetcher(client, cache=None)
                before = Counter(client.counts)
                v, wall, cpu = _timed(lambda fetcher=fetcher, now=now, d=d: verify_deploy(  # type: ignore[misc]
                    d, config, client, others=deploys, now=now, fetcher=fetcher))
                got = (client.counts - before) + Counter({"wall": wall, "cpu": cpu})  # type: ignore[dict-item]
                (first if k == 0 else sides)[side].update(got)
                verdicts[side] = v
            differ += _metrics(verdicts["cache"]) != _metrics(verdicts["whole span"])
    n = len(picked) * (n_looks - 1)
    return {"later": {s: {k: v / n for k, v in c.items()} for s, c in sides.items()},
            "first": {s: {k: v / len(picked) for k, v in c.items()} for s, c in first.items()},
            "differ": differ, "looks": len(picked) * n_looks}


def fleet(client: CountingClient, config: Config, deploys: list[Deploy], rounds: int) -> dict[str, dict[str, float]]:
    """``verify`` of every deploy at once (the fleet path), bucket counts batched per service vs per
    deploy (main's plan: :meth:`BatchedFetcher.prefetch_buckets` off), alternating, best round."""
    from analyzers.verify import fleet as fleet_mod

    now = max(d.started_at for d in deploys) + timedelta(hours=2)
    out: dict[str, dict[str, float]] = {}
    ref: dict[str, Any] = {}
    real = fleet_mod.BatchedFetcher.prefetch_buckets
    for r in range(rounds):
        for side in (("batched", "per deploy") if r % 2 == 0 else ("per deploy", "batched")):
            fleet_mod.BatchedFetcher.prefetch_buckets = real if side == "batched" else (lambda self, wanted: None)  # type: ignore[method-assign]
            try:
                before = Counter(client.counts)
                (verdicts, stats), wall, cpu = _timed(lambda: fleet_mod.verify_fleet(deploys, config, client, now=now,
                                                                                    prefetch_ahead=False))
            finally:
                fleet_mod.BatchedFetcher.prefetch_buckets = real  # type: ignore[method-assign]
            got = client.counts - before
            row = {"queries": float(got["queries"]), "points": float(got["points"]),
                   "buckets_queries": float(got["buckets_queries"]), "buckets_points": float(got["buckets_points"]),
                   "wall": wall, "cpu": cpu}
            if side in out:
                row["wall"], row["cpu"] = min(row["wall"], out[side]["wall"]), min(row["cpu"], out[side]["cpu"])
            out[side] = row
            dicts = {v.deploy_id: [m.to_dict() for m in v.metrics] for v in verdicts}
            ref.setdefault("first", dicts)
            out[side]["same"] = float(dicts == ref["first"])
    return out


def history_check(end: datetime) -> list[dict[str, Any]]:
    """Each deploy of a 10-day demo scenario with 8 and 2 days of history (arrays, no Prometheus)."""
    from analyzers.demo.scenarios import SERVICES, demo_cases, generate
    from benchmarks.demo_arrays import ScenarioBackend

    sc = generate(name="demo", seed=7, end=end, days=10, step_s=15, services=SERVICES, cases=demo_cases(),
                  utc_offset_h=0.0, cross_service_gap_s=2 * 3600, first_deploy_after_s=8 * 86400 + 4 * 3600)
    backend = ScenarioBackend(sc)
    deploys = [d.to_deploy() for d in sc.deploys]
    base = default_config()
    configs = {days: dataclasses.replace(base, verification=dataclasses.replace(base.verification, history_s=days * 86400.0))
               for days in (8, 2)}
    rows = []
    for sd, d in zip(sc.deploys, deploys, strict=True):
        now = sc.end + timedelta(hours=3)
        row: dict[str, Any] = {"deploy": f"{sd.case} {sd.service} {sd.started_at:%m-%d %H:%M}", "truth": sd.expected_overall}
        for days, cfg in configs.items():
            v = verify_deploy(d, cfg, backend, others=deploys, fetcher=backend, now=now)  # type: ignore[arg-type]
            m = next(m for m in v.metrics if m.metric == "latency_shift")
            info = (m.result or {}).get("request_latency") or {}
            ci = info.get("factor_ci") or [None, None]
            width = f"x{ci[0]:.3f}-x{ci[1]:.3f}" if None not in ci else "-"
            row[f"{days}d"] = (v.overall, m.outcome, (m.result or {}).get("baseline"), width)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--end", default="2026-12-07T11:00", help="the demo scenario's end, ISO UTC")
    ap.add_argument("--looks", type=int, default=20, help="looks 30 s apart per picked deploy")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the fleet pass (part 3), alternating")
    ap.add_argument("--skip-history", action="store_true", help="leave out part 4")
    ap.add_argument("--history-only", action="store_true", help="part 4 alone (no Prometheus)")
    a = ap.parse_args(argv)
    end = to_utc(a.end)
    if a.history_only:
        _print_history(history_check(end))
        return 0
    sc = demo_scenario(seed=7, end=end)
    deploys = [d.to_deploy() for d in sc.deploys]
    with tempfile.TemporaryDirectory(prefix="shift-cost-") as tmp:
        om = Path(tmp) / "scenario.om"
        sc.write_openmetrics(om)
        backfill(om, Path(tmp) / "tsdb")
        om.unlink()
        server = PrometheusServer(Path(tmp) / "tsdb").start()
        try:
            config = default_config().with_prometheus_url(server.url)
            client = CountingClient(config.prometheus)
            _wait(client, sc)
            client.counts.clear()
            one = one_verification(client, config, deploys)
            picked = [next(d for d in deploys if d.service == s) for s in sorted({d.service for d in deploys})]
            polls = looks(client, config, deploys, picked, a.looks)
            batched = fleet(client, config, deploys, a.rounds)
        finally:
            server.stop()
    print(f"demo scenario seed 7 ending {end:%Y-%m-%d %H:%M} UTC, real Prometheus, default catalog "
          f"(history 8 days, step 60 s)\n")
    print(f"1. One verification, whole span ({len(deploys)} deploys, mean per deploy): "
          f"{one['queries']:.1f} range queries, {one['points']:,.0f} points "
          f"(latency_shift's bucket query: {one.get('buckets_queries', 0):.1f} queries, {one.get('buckets_points', 0):,.0f} points), "
          f"wall {one['wall']:.2f} s, CPU {one['cpu']:.2f} s\n")
    print(f"2. Looks 30 s apart, {polls['looks']} looks at {len(picked)} deploys, side by side "
          f"(verdicts that differ: {polls['differ']})\n")
    print("| per look | range queries | points | of them bucket points | wall s | CPU s |\n|---|---:|---:|---:|---:|---:|")
    for when in ("first", "later"):
        for side in ("whole span", "cache"):
            r = polls[when][side]
            print(f"| {when} look, {side} | {r.get('queries', 0):.1f} | {r.get('points', 0):,.0f} | "
                  f"{r.get('buckets_points', 0):,.0f} | {r['wall']:.3f} | {r['cpu']:.3f} |")
    print(f"\n3. verify of all {len(deploys)} deploys at once (the fleet path), best of {a.rounds} alternating rounds\n")
    print("| bucket counts | range queries | points | of them bucket queries / points | wall s | CPU s | verdicts as the first pass |"
          "\n|---|---:|---:|---:|---:|---:|---|")
    for side in ("per deploy", "batched"):
        r = batched[side]
        print(f"| {side} | {r['queries']:.0f} | {r['points']:,.0f} | {r['buckets_queries']:.0f} / {r['buckets_points']:,.0f} | "
              f"{r['wall']:.2f} | {r['cpu']:.2f} | {'same' if r['same'] else 'DIFFERENT'} |")
    if not a.skip_history:
        _print_history(history_check(end))
    return 1 if polls["differ"] or not all(r["same"] for r in batched.values()) else 0


def _print_history(rows: list[dict[str, Any]]) -> None:
    print("\n4. 10-day demo scenario (arrays): history 8 days vs 2 days, latency_shift's baseline and the verdicts\n")
    print("| deploy | truth | 8 days: overall, latency_shift, baseline, its interval | 2 days: same |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['deploy']} | {r['truth']} | {', '.join(map(str, r['8d']))} | {', '.join(map(str, r['2d']))} |")
    print(f"\nverdicts that differ: {sum(r['8d'][:2] != r['2d'][:2] for r in rows)} of {len(rows)}; "
          f"baselines that differ: {sum(r['8d'][2] != r['2d'][2] for r in rows)}; "
          f"intervals that differ: {sum(r['8d'][3] != r['2d'][3] for r in rows)}")


if __name__ == "__main__":
    raise SystemExit(main())
