"""Fleet-scale verification benchmark: batched vs naive, on a real Prometheus.

One command (sizes are numbers of services; 30 days and ~15 deploys per service each)::

    .venv/bin/python benchmarks/bench_fleet.py --services 20 60 200 --days 30

For each size it generates (or reuses from ``benchmarks/.cache/``) a seeded fleet
(:mod:`benchmarks.fleet_data`), backfills it into a real Prometheus started on a free
loopback port, then verifies every deploy twice, each plan in its own subprocess so peak
memory and warm caches do not leak between them:

* ``batched``: :func:`analyzers.fleet.verify_fleet` (one range query per service, metric and
  contiguous range, split only at the 11,000-point cap);
* ``naive``: :func:`analyzers.verification.verify_deploy` per deploy with ``DirectFetcher``
  (one query per deploy and metric).

Reported per plan: wall time, queries, points fetched, time in ``query_range`` (of which
waiting for the server's answer, from ``requests``' ``elapsed``), time in the statistics
core (``analyzers.stats.verify_series``), the rest (Python orchestration), Prometheus CPU
seconds (from ``/proc``), and peak RSS of the plan's process (``ru_maxrss``, which includes
the ~150 MiB of imported numpy/pandas/scipy). Then: verdict agreement between the plans and
against the generator's truth, and the cost of verifying one new deploy on the verified fleet.
Results go to stdout (Markdown) and ``benchmarks/.cache/results-<sizes>.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import resource
import subprocess
import sys
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
#: Workers import ``analyzers`` from this snapshot (set by the driver), so both plans of a run
#: measure the same code even while the working tree changes under a long benchmark.
LIB_ENV = "FLEET_BENCH_LIB"
if os.environ.get(LIB_ENV):
    sys.path.insert(0, os.environ[LIB_ENV])

from benchmarks.fleet_data import CACHE_DIR, FleetParams, FleetPlan, ensure_fleet, fleet_config, plan_fleet  # noqa: E402

MAX_POINTS = 11_000
#: Points per chunk of a long range: ``analyzers.verification.fetch_grid`` stays 3 steps under
#: the cap (the client keeps one step of slack at each end for alignment).
CHUNK_POINTS = MAX_POINTS - 2
PLANS = ("batched", "naive")


# ---------------------------------------------------------------- worker (one plan, one process)


@dataclass
class _Clock:
    query_s: float = 0.0
    server_s: float = 0.0
    stats_s: float = 0.0
    stats_calls: int = 0


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _instrument(client: Any, clock: _Clock) -> None:
    """Time ``query_range``, the server's answer and ``verify_series`` without changing them."""
    import analyzers.stats as stats_pkg

    original_query = client.query_range

    def query_range(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original_query(*args, **kwargs)
        finally:
            clock.query_s += time.perf_counter() - t

    client.query_range = query_range

    def on_response(resp: Any, *args: Any, **kwargs: Any) -> Any:
        clock.server_s += resp.elapsed.total_seconds()
        return resp

    client._session.hooks["response"].append(on_response)
    original_verify = stats_pkg.verify_series

    def verify_series(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return original_verify(*args, **kwargs)
        finally:
            clock.stats_s += time.perf_counter() - t
            clock.stats_calls += 1

    stats_pkg.verify_series = verify_series  # verification imports it at call time


def library_fingerprint() -> str:
    """Short hash of the analyzers sources a plan ran (the statistics core may change between runs)."""
    import hashlib

    import analyzers

    h = hashlib.sha1()
    for path in sorted(Path(analyzers.__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:10]


def snapshot_library() -> Path:
    """Copy ``analyzers/`` once per run under ``benchmarks/.cache/lib-<pid>/`` for the workers."""
    import shutil

    dest = CACHE_DIR / f"lib-{os.getpid()}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ROOT / "analyzers", dest / "analyzers", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _near(times: list[datetime], ordered: list[Any], at: datetime, overlap: timedelta) -> list[Any]:
    return ordered[bisect_left(times, at - overlap): bisect_right(times, at + overlap)]


def run_plan(name: str, params: FleetParams, end: datetime, url: str, now: datetime, profile: Path | None,
             history_s: float = 86400.0, fleet_max_points: int | None = None) -> dict[str, Any]:
    """Verify the whole fleet with one plan; returns timings, counts and every verdict.

    ``fleet_max_points`` replaces the chunking cap (``MAX_POINTS`` of :mod:`analyzers.verification`,
    or of :mod:`analyzers.fleet` in older versions) for this process: with 10,999 a full chunk
    stays at the verification step (with 11,000 the client raises a full chunk's step from 60 s
    to 61 s, and the 60 s grid is then mostly empty; see docs/scaling.md).
    """
    import analyzers.fleet
    import analyzers.verification
    from analyzers.fleet import verify_fleet

    if fleet_max_points is not None:  # where the chunking lives depends on the library version
        for module in (analyzers.fleet, analyzers.verification):
            if hasattr(module, "MAX_POINTS"):
                module.MAX_POINTS = fleet_max_points  # type: ignore[attr-defined]
    from analyzers.prom import PrometheusClient
    from analyzers.verification import DirectFetcher, verify_deploy

    rss_start = _rss_mib()
    plan = plan_fleet(params, end)
    config = fleet_config(plan, url, history_s=history_s)
    client = PrometheusClient(config.prometheus)
    clock = _Clock()
    _instrument(client, clock)
    deploys = [f.deploy for f in plan.fleet]
    ordered = sorted(deploys, key=lambda d: d.started_at)
    times = [d.started_at for d in ordered]
    overlap = timedelta(seconds=config.verification.overlap_s)
    prof = cProfile.Profile() if profile else None
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    if name == "batched":
        verdicts, fstats = verify_fleet(deploys, config, client, now=now, context=deploys)
        queries, points, fallback = fstats.queries, fstats.points, fstats.fallback_queries
    else:
        direct = DirectFetcher(client)
        verdicts = [
            verify_deploy(d, config, client, others=_near(times, ordered, d.started_at, overlap), now=now, fetcher=direct)
            for d in deploys
        ]
        queries, points, fallback = direct.queries, direct.points, 0
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    result: dict[str, Any] = {
        "plan": name,
        "deploys": len(verdicts),
        "wall_s": wall,
        "cpu_s": cpu,
        "library": library_fingerprint(),
        "queries": queries,
        "fallback_queries": fallback,
        "points": points,
        "query_s": clock.query_s,
        "server_s": clock.server_s,
        "stats_s": clock.stats_s,
        "stats_calls": clock.stats_calls,
        "rss_start_mib": rss_start,
        "rss_peak_mib": _rss_mib(),
        "verdicts": {v.deploy_id: [v.overall, {m.metric: m.outcome for m in v.metrics}] for v in verdicts},
    }
    if prof and profile:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        profile.write_text(buf.getvalue())
    if name == "batched":
        result["incremental"] = _incremental(plan, config, client, ordered, times, overlap, now)
    return result


def _incremental(plan: FleetPlan, config: Any, client: Any, ordered: list[Any], times: list[datetime],
                 overlap: timedelta, now: datetime) -> dict[str, Any]:
    """One new deploy on the verified fleet: its own queries only (three timed runs)."""
    from analyzers.verification import DirectFetcher, verify_deploy

    new = plan.held_out.deploy
    runs: list[float] = []
    queries = 0
    overall = ""
    for _ in range(3):
        direct = DirectFetcher(client)
        t = time.perf_counter()
        v = verify_deploy(new, config, client, others=_near(times, ordered, new.started_at, overlap), now=now, fetcher=direct)
        runs.append(time.perf_counter() - t)
        queries, overall = direct.queries, v.overall
    return {"deploy_id": new.deploy_id, "runs_s": runs, "queries": queries, "overall": overall,
            "truth": plan.held_out.truth.expected_overall}


# ---------------------------------------------------------------- driver


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def expected_ranges(plan: FleetPlan, merge_gap_s: float = 6 * 3600.0, history_s: float = 86400.0) -> tuple[int, int]:
    """(contiguous ranges, range queries at the point cap) the batched plan should need,
    counted from the deploys' analysis windows the way :mod:`analyzers.fleet` merges them."""
    from analyzers.verification import analysis_window

    config = fleet_config(plan, history_s=history_s)
    step = config.verification.step_s
    now = datetime.now(UTC)
    by_service: dict[str, list[tuple[float, float]]] = {}
    for f in plan.fleet:
        a, b = analysis_window(f.deploy, config, now)
        by_service.setdefault(f.deploy.service, []).append(
            (math.floor(a.timestamp() / step) * step, math.ceil(b.timestamp() / step) * step))
    ranges = chunks = 0
    for windows in by_service.values():
        merged: list[list[float]] = []
        for s, e in sorted(windows):
            if merged and s <= merged[-1][1] + merge_gap_s:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        ranges += len(merged)
        chunks += sum(math.ceil(((e - s) / step + 1) / CHUNK_POINTS) for s, e in merged)
    n_metrics = len(config.metrics)
    return ranges * n_metrics, chunks * n_metrics


def compare(plan: FleetPlan, batched: dict[str, Any], naive: dict[str, Any]) -> dict[str, Any]:
    """Agreement between the plans, and of the batched verdicts with the generator's truth."""
    vb, vn = batched["verdicts"], naive["verdicts"]
    same_overall = sum(vb[k][0] == vn[k][0] for k in vb)
    same_metrics = sum(vb[k][1] == vn[k][1] for k in vb)
    confusion: Counter[str] = Counter()
    declared_confirmed = declared = regress_caught_on_metric = regressions = 0
    for f in plan.fleet:
        overall, outcomes = vb[f.deploy.deploy_id]
        confusion[f"{f.truth.kind}->{overall}"] += 1
        if f.truth.kind == "improvement" and f.truth.metric:
            declared += 1
            declared_confirmed += outcomes.get(f.truth.metric) == "confirmed"
        if f.truth.kind == "regression" and f.truth.metric:
            regressions += 1
            regress_caught_on_metric += outcomes.get(f.truth.metric) == "regressed"
    matches = sum(vb[f.deploy.deploy_id][0] == f.truth.expected_overall for f in plan.fleet)
    return {
        "deploys": len(vb),
        "same_overall": same_overall,
        "same_metric_outcomes": same_metrics,
        "truth_matches": matches,
        "confusion": dict(sorted(confusion.items())),
        "improvements_confirmed": [declared_confirmed, declared],
        "regressions_on_right_metric": [regress_caught_on_metric, regressions],
    }


def run_size(params: FleetParams, *, profile: bool, history_s: float = 86400.0, fleet_max_points: int | None = None,
             lib: Path | None = None, log: Any = print) -> dict[str, Any]:
    from analyzers.prom import PrometheusClient
    from analyzers.promserver import PrometheusServer

    log(f"== {params.services} services x {params.days} days, {params.deploys_per_30d} deploys/30 d, "
        f"history {history_s / 86400:g} d ({params.key})")
    t = time.perf_counter()
    data = ensure_fleet(params)
    log(f"  data ready in {time.perf_counter() - t:.1f} s "
        f"({'generated' if data.generated_s else 'cached'}; {data.samples:,} samples)")
    plan = data.plan
    now = datetime.now(UTC)
    out: dict[str, Any] = {"services": params.services, "days": params.days, "deploys": len(plan.fleet),
                           "deploys_per_30d": params.deploys_per_30d, "history_days": history_s / 86400,
                           "fleet_max_points": fleet_max_points,
                           "samples": data.samples, "generated_s": data.generated_s, "now": now.isoformat()}
    ranges, capped = expected_ranges(plan, history_s=history_s)
    out["expected_ranges"], out["expected_capped_queries"] = ranges, capped
    with PrometheusServer(data.tsdb_dir, port=0, retention="60d", ready_timeout_s=600) as prom:
        assert prom._proc is not None
        pid = prom._proc.pid
        client = PrometheusClient(fleet_config(plan, prom.url).prometheus)
        warm = time.perf_counter()  # read every chunk once so neither plan pays the cold page cache
        for sample in ("fleet_requests_total", "fleet_errors_total", "fleet_latency_p99_seconds",
                       "fleet_latency_p50_seconds", "fleet_cpu_seconds_total"):
            client.query(f"sum(count_over_time({sample}[{params.days + 1}d]))", now)
        log(f"  Prometheus ready at {prom.url}; warm-up query {time.perf_counter() - warm:.1f} s")
        for name in PLANS:
            cpu0 = _proc_cpu_s(pid)
            fix = "" if fleet_max_points is None else f"-cap{fleet_max_points}"
            res_path = CACHE_DIR / f"plan-{params.key}-h{history_s / 86400:g}{fix}-{name}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--services", str(params.services),
                   "--days", str(params.days), "--seed", str(params.seed), "--end", plan.end.isoformat(),
                   "--deploys-per-30d", str(params.deploys_per_30d), "--history-days", str(history_s / 86400),
                   "--url", prom.url, "--now", now.isoformat(), "--out", str(res_path)]
            if fleet_max_points is not None:
                cmd += ["--fleet-max-points", str(fleet_max_points)]
            if profile:
                cmd += ["--profile-out", str(CACHE_DIR / f"profile-{params.key}-{name}.txt")]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, env={**os.environ, LIB_ENV: str(lib)} if lib else None)
            res = json.loads(res_path.read_text())
            res["process_s"] = time.perf_counter() - t
            res["prometheus_cpu_s"] = _proc_cpu_s(pid) - cpu0
            out[name] = res
            log(f"  {name}: {res['wall_s']:.1f} s (CPU {res['cpu_s']:.1f} s), {res['queries']:,} queries, {res['points']:,} points, "
                f"peak RSS {res['rss_peak_mib']:.0f} MiB")
    out["agreement"] = compare(plan, out["batched"], out["naive"])
    for name in PLANS:
        out[name].pop("verdicts")
    return out


def _label(r: dict[str, Any]) -> str:
    """``200`` for the default fleet shape, ``20, 60/30d, 7d hist`` when deploys or history differ."""
    text = str(r["services"])
    if r.get("deploys_per_30d", 15) != 15:
        text += f", {r['deploys_per_30d']}/30d"
    if r.get("history_days", 1.0) != 1.0:
        text += f", {r['history_days']:g}d hist"
    if r.get("fleet_max_points"):
        text += ", cap fix"
    return text


def markdown(results: list[dict[str, Any]]) -> str:
    rows = [
        "| services | deploys | plan | wall s | CPU s | queries | points | query s (server) | stats s | other s "
        "| Prometheus CPU s | peak RSS MiB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name in PLANS:
            p = r[name]
            other = p["wall_s"] - p["query_s"] - p["stats_s"]
            rows.append(
                f"| {_label(r)} | {r['deploys']:,} | {name} | {p['wall_s']:.1f} | {p['cpu_s']:.1f} | {p['queries']:,} "
                f"| {p['points']:,} "
                f"| {p['query_s']:.1f} ({p['server_s']:.1f}) | {p['stats_s']:.1f} | {other:.1f} "
                f"| {p['prometheus_cpu_s']:.1f} | {p['rss_peak_mib']:.0f} |"
            )
        b, n = r["batched"], r["naive"]
        rows.append(
            f"| {_label(r)} | | naive/batched | {n['wall_s'] / b['wall_s']:.2f}x | {n['cpu_s'] / b['cpu_s']:.2f}x "
            f"| {n['queries'] / max(1, b['queries']):.1f}x "
            f"| {n['points'] / max(1, b['points']):.1f}x | {n['query_s'] / max(1e-9, b['query_s']):.1f}x | | | "
            f"{n['prometheus_cpu_s'] / max(1e-9, b['prometheus_cpu_s']):.1f}x | |"
        )
    lines = ["\n".join(rows), ""]
    lines.append("| services | batched queries | contiguous (service, metric) ranges | at the 11,000-point cap "
                 "| fallback queries | plans agree (overall / every metric) | truth matches | improvements confirmed "
                 "| regressions on the right metric | one new deploy (median of 3) |")
    lines.append("|---:|---:|---:|---:|---:|---|---|---|---|---|")
    for r in results:
        a, b = r["agreement"], r["batched"]
        inc = b["incremental"]
        med = sorted(inc["runs_s"])[1]
        lines.append(
            f"| {_label(r)} | {b['queries']:,} | {r['expected_ranges']:,} | {r['expected_capped_queries']:,} "
            f"| {b['fallback_queries']} | {a['same_overall']}/{a['deploys']} / {a['same_metric_outcomes']}/{a['deploys']} "
            f"| {a['truth_matches']}/{a['deploys']} | {a['improvements_confirmed'][0]}/{a['improvements_confirmed'][1]} "
            f"| {a['regressions_on_right_metric'][0]}/{a['regressions_on_right_metric'][1]} "
            f"| {med * 1000:.0f} ms, {inc['queries']} queries, {inc['overall']} |"
        )
    libs = sorted({r[p].get("library", "?") for r in results for p in PLANS})
    lines.append("")
    lines.append(f"analyzers sources (sha1 prefix): {', '.join(libs)}")
    lines.append("")
    lines.append("Truth vs batched verdict (deploy kind -> overall):")
    for r in results:
        lines.append(f"- {_label(r)}: " + ", ".join(f"{k} {v}" for k, v in r["agreement"]["confusion"].items()))
    return "\n".join(lines)


def _run_sizes(args: argparse.Namespace, lib: Path) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for n in args.services:
        params = FleetParams(services=n, days=args.days, seed=args.seed, deploys_per_30d=args.deploys_per_30d)
        results.append(run_size(params, profile=args.profile, history_s=args.history_days * 86400,
                                fleet_max_points=args.fleet_max_points, lib=lib))
        tag = "-".join(str(r["services"]) for r in results)
        fix = "" if args.fleet_max_points is None else f"-cap{args.fleet_max_points}"
        name = f"results-{tag}-d{args.days}-k{args.deploys_per_30d}-h{args.history_days:g}{fix}.json"
        (CACHE_DIR / name).write_text(json.dumps(results, indent=1))
    print()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, nargs="+", default=[200], help="fleet sizes to measure (default: 200)")
    ap.add_argument("--days", type=int, default=30, help="days of data (default 30)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--deploys-per-30d", type=int, default=15, help="deploys per service per 30 days (default 15)")
    ap.add_argument("--history-days", type=float, default=1.0,
                    help="verification history fetched per deploy, in days (default 1)")
    ap.add_argument("--profile", action="store_true", help="cProfile each plan (slower); top 25 under benchmarks/.cache/")
    ap.add_argument("--fleet-max-points", type=int,
                    help="override the range-chunking cap (10999 simulates the chunk-step fix, see docs/scaling.md)")
    ap.add_argument("--report", nargs="+", metavar="JSON", help="only print the tables of saved results files")
    ap.add_argument("--worker", choices=PLANS, help=argparse.SUPPRESS)
    ap.add_argument("--end", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--now", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        params = FleetParams(services=args.services[0], days=args.days, seed=args.seed,
                             deploys_per_30d=args.deploys_per_30d)
        res = run_plan(args.worker, params, datetime.fromisoformat(args.end), args.url,
                       datetime.fromisoformat(args.now), Path(args.profile_out) if args.profile_out else None,
                       history_s=args.history_days * 86400, fleet_max_points=args.fleet_max_points)
        Path(args.out).write_text(json.dumps(res))
        return 0
    if args.report:
        print(markdown([r for path in args.report for r in json.loads(Path(path).read_text())]))
        return 0
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    lib = snapshot_library()
    try:
        results = _run_sizes(args, lib)
    finally:
        import shutil

        shutil.rmtree(lib, ignore_errors=True)
    extra = (f" --seed {args.seed}" if args.seed != 7 else "") + (
        f" --deploys-per-30d {args.deploys_per_30d}" if args.deploys_per_30d != 15 else "") + (
        f" --history-days {args.history_days:g}" if args.history_days != 1 else "") + (
        f" --fleet-max-points {args.fleet_max_points}" if args.fleet_max_points is not None else "")
    print(f"Command: .venv/bin/python benchmarks/bench_fleet.py --services {' '.join(map(str, args.services))} "
          f"--days {args.days}{extra}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
