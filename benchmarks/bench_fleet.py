"""Fleet-scale verification benchmark: batched vs naive, on a real Prometheus.

One command (sizes are numbers of services; 30 days and ~15 deploys per service each)::

    .venv/bin/python -m benchmarks.bench_fleet --services 20 60 200 --days 30

For each size it generates (or reuses from ``benchmarks/.cache/``) a seeded fleet
(:mod:`benchmarks.fleet_data`), backfills it into a real Prometheus started on a free
loopback port, then verifies every deploy twice, each plan in its own subprocess so peak
memory and warm caches do not leak between them:

* ``batched``: :func:`analyzers.verify.fleet.verify_fleet` (one range query per service, metric and
  contiguous range, split only at the 11,000-point cap);
* ``naive``: :func:`analyzers.verify.deploy.verify_deploy` per deploy with ``DirectFetcher``
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
import shutil
import subprocess
import sys
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.fleet_data import CACHE_DIR, FleetParams, FleetPlan, ensure_fleet, fleet_config, plan_fleet

ROOT = Path(__file__).resolve().parent.parent

MAX_POINTS = 11_000
#: Points per chunk of a long range: ``analyzers.verify.deploy.fetch_grid`` stays 3 steps under
#: the cap (the client keeps one step of slack at each end for alignment).
CHUNK_POINTS = MAX_POINTS - 2
PLANS = ("batched", "naive")


# ---------------------------------------------------------------- worker (one plan, one process)


@dataclass
class _Clock:
    """Time inside ``query_range`` and ``verify_series``: wall (``*_s``) and the calling thread's CPU
    (``*_cpu_s``; fetching runs in a prefetch thread next to the statistics, so wall times overlap)."""

    query_s: float = 0.0
    query_cpu_s: float = 0.0
    server_s: float = 0.0
    stats_s: float = 0.0
    stats_cpu_s: float = 0.0
    stats_calls: int = 0

    def add(self, other: dict[str, Any]) -> None:
        for k, v in other.items():
            setattr(self, k, getattr(self, k) + v)


#: Forked workers write their clocks here at exit (``clock-<pid>.json``); the plan process adds them up.
CLOCK_DIR_ENV = "FLEET_BENCH_CLOCKS"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _dump_clock(clock: _Clock) -> None:
    folder = os.environ.get(CLOCK_DIR_ENV)
    if folder:
        Path(folder, f"clock-{os.getpid()}.json").write_text(json.dumps(clock.__dict__))


def _in_forked_worker(clock: _Clock) -> None:
    from multiprocessing import util

    clock.__dict__.update(_Clock().__dict__)  # count this worker's own time from zero
    util.Finalize(None, _dump_clock, args=(clock,), exitpriority=100)


def _instrument(client: Any, clock: _Clock) -> None:
    """Time ``query_range``, the server's answer and ``verify_series`` without changing them
    (in this process and in the workers ``verify_fleet`` forks)."""
    from multiprocessing import util

    import analyzers.stats as stats_pkg

    original_query = client.query_range

    def query_range(*args: Any, **kwargs: Any) -> Any:
        t, c = time.perf_counter(), time.thread_time()
        try:
            return original_query(*args, **kwargs)
        finally:
            clock.query_s += time.perf_counter() - t
            clock.query_cpu_s += time.thread_time() - c

    client.query_range = query_range

    def on_response(resp: Any, *args: Any, **kwargs: Any) -> Any:
        clock.server_s += resp.elapsed.total_seconds()
        return resp

    client._session.hooks["response"].append(on_response)
    original_verify = stats_pkg.verify_series

    def verify_series(*args: Any, **kwargs: Any) -> Any:
        t, c = time.perf_counter(), time.thread_time()
        try:
            return original_verify(*args, **kwargs)
        finally:
            clock.stats_s += time.perf_counter() - t
            clock.stats_cpu_s += time.thread_time() - c
            clock.stats_calls += 1

    stats_pkg.verify_series = verify_series  # verification imports it at call time
    util.register_after_fork(clock, _in_forked_worker)


class _TreeMemory:
    """Peak memory of this process and its workers together, sampled every 0.2 s from ``/proc``:
    the sum of RSS (counts pages shared after fork once per process) and of PSS (shares them out)."""

    def __init__(self) -> None:
        import threading

        self.peak_rss_mib = 0.0
        self.peak_pss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            for task in Path(f"/proc/{p}/task").glob("*"):
                try:
                    todo.extend(int(c) for c in (task / "children").read_text().split())
                except OSError:
                    pass
        return out

    def sample(self) -> None:
        rss = pss = 0.0
        for pid in self._tree(os.getpid()):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) / 1024.0
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) / 1024.0
            except OSError:
                continue
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        self.peak_pss_mib = max(self.peak_pss_mib, pss)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def __enter__(self) -> _TreeMemory:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


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
    dest = CACHE_DIR / f"lib-{os.getpid()}"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ROOT / "analyzers", dest / "analyzers", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _near(times: list[datetime], ordered: list[Any], at: datetime, overlap: timedelta) -> list[Any]:
    return ordered[bisect_left(times, at - overlap): bisect_right(times, at + overlap)]


_NAIVE: dict[str, Any] = {}


def _naive_init() -> None:
    _NAIVE["client"].reset_connections()  # forked: never share the parent's sockets


def _naive_task(group: list[Any]) -> tuple[dict[str, Any], int, int]:
    """The naive plan for some deploys in a forked worker: compact verdicts, queries, points."""
    from analyzers.verify.deploy import DirectFetcher, verify_deploy

    n = _NAIVE
    direct = DirectFetcher(n["client"], cache=None)  # the naive plan: every deploy fetches its whole window
    out = {}
    for d in group:
        v = verify_deploy(d, n["config"], n["client"], others=_near(n["times"], n["ordered"], d.started_at, n["overlap"]),
                          now=n["now"], fetcher=direct)
        out[v.deploy_id] = [v.overall, {m.metric: m.outcome for m in v.metrics}]
    return out, direct.queries, direct.points


def run_plan(name: str, params: FleetParams, end: datetime, url: str, now: datetime, profile: Path | None,
             history_s: float = 86400.0, fleet_max_points: int | None = None, workers: int = 1) -> dict[str, Any]:
    """Verify the whole fleet with one plan; returns timings, counts and every verdict.

    ``workers``: processes over services (both plans split the fleet by service the same way).
    ``fleet_max_points`` replaces the chunking cap (``MAX_POINTS`` of :mod:`analyzers.verify.deploy`,
    or of :mod:`analyzers.verify.fleet` in older versions) for this process: with 10,999 a full chunk
    stays at the verification step (with 11,000 the client raises a full chunk's step from 60 s
    to 61 s, and the 60 s grid is then mostly empty; see docs/scaling.md).
    """
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    import analyzers.verify.deploy
    import analyzers.verify.fetch
    import analyzers.verify.fleet
    from analyzers.verify.fleet import verify_fleet

    if fleet_max_points is not None:  # where the chunking lives depends on the library version
        for module in (analyzers.verify.fleet, analyzers.verify.fetch, analyzers.verify.deploy):
            if hasattr(module, "MAX_POINTS"):
                module.MAX_POINTS = fleet_max_points  # type: ignore[attr-defined]
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.deploy import DirectFetcher, verify_deploy

    rss_start = _rss_mib()
    plan = plan_fleet(params, end)
    config = fleet_config(plan, url, history_s=history_s)
    client = PrometheusClient(config.prometheus)
    clock = _Clock()
    clocks = Path(tempfile.mkdtemp(prefix="clocks-", dir=CACHE_DIR))
    os.environ[CLOCK_DIR_ENV] = str(clocks)
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
    with _TreeMemory() as memory:
        if name == "batched":
            fleet_verdicts, fstats = verify_fleet(deploys, config, client, now=now, context=deploys, workers=workers)
            verdicts = {v.deploy_id: [v.overall, {m.metric: m.outcome for m in v.metrics}] for v in fleet_verdicts}
            queries, points, fallback = fstats.queries, fstats.points, fstats.fallback_queries
        elif workers == 1:
            direct = DirectFetcher(client)
            verdicts = {}
            for d in deploys:
                v = verify_deploy(d, config, client, others=_near(times, ordered, d.started_at, overlap), now=now,
                                  fetcher=direct)
                verdicts[v.deploy_id] = [v.overall, {m.metric: m.outcome for m in v.metrics}]
            queries, points, fallback = direct.queries, direct.points, 0
        else:  # the same split as verify_fleet: services in order, a few per task
            _NAIVE.update(client=client, config=config, times=times, ordered=ordered, overlap=overlap, now=now)
            by_service: dict[str, list[Any]] = {}
            for d in deploys:
                by_service.setdefault(d.service, []).append(d)
            groups = [by_service[k] for k in sorted(by_service)]
            size = max(1, -(-len(groups) // (4 * workers)))
            tasks = [[d for g in groups[i: i + size] for d in g] for i in range(0, len(groups), size)]
            verdicts, queries, points, fallback = {}, 0, 0, 0
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_naive_init) as pool:
                for part, q, n in pool.map(_naive_task, tasks):
                    verdicts.update(part)
                    queries, points = queries + q, points + n
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, all joined by now
    cpu = time.process_time() - cpu0 + children.ru_utime + children.ru_stime
    for path in clocks.glob("clock-*.json"):
        clock.add(json.loads(path.read_text()))
    shutil.rmtree(clocks, ignore_errors=True)
    result: dict[str, Any] = {
        "plan": name,
        "workers": workers,
        "deploys": len(verdicts),
        "wall_s": wall,
        "cpu_s": cpu,
        "library": library_fingerprint(),
        "queries": queries,
        "fallback_queries": fallback,
        "points": points,
        **clock.__dict__,
        "rss_start_mib": rss_start,
        "rss_peak_mib": _rss_mib(),
        "worker_rss_peak_mib": children.ru_maxrss / 1024.0,
        "tree_rss_peak_mib": memory.peak_rss_mib,
        "tree_pss_peak_mib": memory.peak_pss_mib,
        "verdicts": verdicts,
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
    from analyzers.verify.deploy import DirectFetcher, verify_deploy

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
    counted from the deploys' analysis windows the way :mod:`analyzers.verify.fleet` merges them."""
    from analyzers.verify.deploy import analysis_window

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
             lib: Path | None = None, log: Any = print, workers: int = 1) -> dict[str, Any]:
    from analyzers.demo.promserver import PrometheusServer
    from analyzers.prometheus.client import PrometheusClient

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
                           "fleet_max_points": fleet_max_points, "workers": workers, "load_before": os.getloadavg(),
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
            cmd = [sys.executable, "-m", "benchmarks.bench_fleet", "--worker", name, "--services", str(params.services),
                   "--days", str(params.days), "--seed", str(params.seed), "--end", plan.end.isoformat(),
                   "--deploys-per-30d", str(params.deploys_per_30d), "--history-days", str(history_s / 86400),
                   "--url", prom.url, "--now", now.isoformat(), "--out", str(res_path), "--workers", str(workers)]
            if fleet_max_points is not None:
                cmd += ["--fleet-max-points", str(fleet_max_points)]
            if profile:
                cmd += ["--profile-out", str(CACHE_DIR / f"profile-{params.key}-{name}.txt")]
            t = time.perf_counter()
            # Workers import ``analyzers`` from the snapshot ``lib``, so both plans of a run measure
            # the same code even while the working tree changes under a long benchmark. ``-m`` puts
            # the working directory first on the path, so they run in ``lib`` (which has no
            # ``benchmarks``: that comes from ROOT, next on PYTHONPATH).
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib), str(ROOT)])} if lib else None
            subprocess.run(cmd, check=True, cwd=lib or ROOT, env=env)
            res = json.loads(res_path.read_text())
            res["process_s"] = time.perf_counter() - t
            res["prometheus_cpu_s"] = _proc_cpu_s(pid) - cpu0
            res["load_after"] = os.getloadavg()
            out[name] = res
            log(f"  {name}: {res['wall_s']:.1f} s (CPU {res['cpu_s']:.1f} s + Prometheus {res['prometheus_cpu_s']:.1f} s), "
                f"{res['queries']:,} queries, {res['points']:,} points, peak PSS {res['tree_pss_peak_mib']:.0f} MiB, "
                f"load {res['load_after'][0]:.1f}")
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
        "| services | deploys | plan | workers | wall s | verifier CPU s | fetch CPU s | stats CPU s (ms/call) | other CPU s "
        "| Prometheus CPU s | queries | points | server s | peak PSS MiB (RSS sum) | load |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name in PLANS:
            p = r[name]
            if "query_cpu_s" in p:
                fetch_cpu, stats_cpu = p["query_cpu_s"], p["stats_cpu_s"]
                per_call = 1000 * stats_cpu / max(1, p["stats_calls"])
                split = f"{fetch_cpu:.1f} | {stats_cpu:.1f} ({per_call:.1f}) | {p['cpu_s'] - fetch_cpu - stats_cpu:.1f}"
            else:  # results of older versions: no CPU split
                split = "| |"
            memory = (f"{p['tree_pss_peak_mib']:.0f} ({p['tree_rss_peak_mib']:.0f})" if "tree_pss_peak_mib" in p
                      else f"{p['rss_peak_mib']:.0f} (RSS)")
            load = f"{p['load_after'][0]:.1f}" if p.get("load_after") else ""
            rows.append(
                f"| {_label(r)} | {r['deploys']:,} | {name} | {p.get('workers', 1)} | {p['wall_s']:.1f} | {p['cpu_s']:.1f} "
                f"| {split} | {p['prometheus_cpu_s']:.1f} "
                f"| {p['queries']:,} | {p['points']:,} | {p['server_s']:.1f} | {memory} "
                f"| {load} |"
            )
        b, n = r["batched"], r["naive"]
        rows.append(
            f"| {_label(r)} | | naive/batched | | {n['wall_s'] / b['wall_s']:.2f}x | {n['cpu_s'] / b['cpu_s']:.2f}x "
            f"| {n.get('query_cpu_s', 0) / max(1e-9, b.get('query_cpu_s', 0)):.1f}x | | "
            f"| {n['prometheus_cpu_s'] / max(1e-9, b['prometheus_cpu_s']):.1f}x "
            f"| {n['queries'] / max(1, b['queries']):.1f}x | {n['points'] / max(1, b['points']):.1f}x | | | |"
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
                                fleet_max_points=args.fleet_max_points, lib=lib, workers=args.workers))
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
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes verifying services in parallel, in both plans (default: the CPU count)")
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
                       history_s=args.history_days * 86400, fleet_max_points=args.fleet_max_points,
                       workers=args.workers)
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
        shutil.rmtree(lib, ignore_errors=True)
    extra = (f" --seed {args.seed}" if args.seed != 7 else "") + (
        f" --deploys-per-30d {args.deploys_per_30d}" if args.deploys_per_30d != 15 else "") + (
        f" --history-days {args.history_days:g}" if args.history_days != 1 else "") + (
        f" --fleet-max-points {args.fleet_max_points}" if args.fleet_max_points is not None else "") + (
        f" --workers {args.workers}" if args.workers != (os.cpu_count() or 1) else "")
    print(f"Command: .venv/bin/python -m benchmarks.bench_fleet --services {' '.join(map(str, args.services))} "
          f"--days {args.days}{extra}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
