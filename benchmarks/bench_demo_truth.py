"""Demo truth at every generation hour: do the demo's verdicts agree with its own truth whatever
the hour it is generated?

``python -m analyzers demo`` (and ``tests/integration/test_demo.py``) generate the scenario ending
3 h before the current hour (:func:`analyzers.demo.scenarios.default_end`), so the deploys meet a
different time of day (traffic cycle, morning ramp) depending on when it runs. This generates the
scenario for each of ``--hours`` consecutive generation hours (ending 3 h before the current hour,
then 1 h earlier each time, so 24 hours cover every hour of the day), backfills it with promtool
into a real Prometheus on loopback and verifies every deploy through the real path
(:func:`analyzers.verify.deploy.verify_deploy` with the default catalog: range queries, sequential
decisions, the bucket test's instant query), exactly as the end-to-end test does.

Prints the agreement per generation hour and every disagreement (deploy, truth, verdict, the
metrics that decided). Needs the ``prometheus`` and ``promtool`` binaries (Debian package
``prometheus``). Wall time: about 10-30 s per hour for ``small``, 1-3 min for ``demo``.

``--no-prometheus`` serves the same queries from the generator's arrays
(:mod:`benchmarks.demo_arrays`, about 1 s CPU per hour) for volume: ``--seeds 20`` runs seeds
0-19, each over ``--hours`` generation hours, and prints agreement per case and per seed.

    .venv/bin/python -m benchmarks.bench_demo_truth [--scenario small|demo] [--hours 24] [--seed N]
        [--offset H] [--end YYYY-MM-DDTHH:MM] [--demo-config] [--reasons] [--no-prometheus [--seeds N]]

``--scenario slowdown``: the live demo's ``latency+30%`` (every request x1.3, nothing declared) on each
service (:func:`slowdown_scenario`): how often a 30 % slower typical request fails its deploy.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from analyzers.config import Config, VerificationSettings, default_config, load_config
from analyzers.demo.promserver import PrometheusServer, backfill
from analyzers.demo.scenarios import Scenario, default_end, demo_scenario, small_scenario
from analyzers.model import to_utc
from analyzers.prometheus.client import PrometheusClient
from analyzers.verify.deploy import verify_deploy
from analyzers.verify.fleet import verify_many

#: The seeds the demo command and the test fixtures use.
SEEDS = {"demo": 7, "small": 11, "slowdown": 7}


def slowdown_scenario(seed: int, end: datetime) -> Scenario:
    """The live demo's ``demo deploy --effect latency+30%`` (every request x1.3, nothing declared) on
    each service, placed as the demo places its deploys (2 h apart, 27 h of data before the first):
    truth ``fail`` (``latency_shift``). What the p99 line alone passed where it sits inside a bucket."""
    from analyzers.demo.livemodel import parse_effect
    from analyzers.demo.scenarios import SERVICES, CaseSpec, generate

    effect = parse_effect("latency+30%")
    cases = tuple(CaseSpec(f"latency+30% {s.name}", s.name, "demo deploy --effect latency+30%", effect) for s in SERVICES)
    return generate(name="slowdown", seed=seed, end=end, days=3, step_s=15, services=SERVICES, cases=cases,
                    utc_offset_h=0.0, cross_service_gap_s=2 * 3600)


def _scenario(name: str, seed: int, end: datetime) -> Scenario:
    if name == "slowdown":
        return slowdown_scenario(seed, end)
    return demo_scenario(seed=seed, end=end) if name == "demo" else small_scenario(seed=seed, end=end)


def _wait(client: PrometheusClient, scenario: Scenario, timeout_s: float = 60.0) -> None:
    """Until every service answers at the first and last deploy (blocks may open late)."""
    deadline = time.monotonic() + timeout_s
    times = [scenario.deploys[0].started_at, scenario.deploys[-1].finished_at]
    while time.monotonic() < deadline:
        try:
            if all({s.labels.get("service") for s in client.query("count by (service) (http_requests_total)", t).series}
                   == set(scenario.services) for t in times):
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.5)
    raise RuntimeError(f"backfilled data did not become queryable within {timeout_s:.0f} s")


def _demo_config(url: str, work: Path) -> Config:
    """The config ``python -m analyzers demo`` verifies its scenario with (its services' SLOs and
    dependency, the standard verification windows), pointed at ``url``."""
    from analyzers.demo.run import _write_demo_config

    path = _write_demo_config(work, url, f"sqlite:///{work / 'unused.db'}", 8501)
    return dataclasses.replace(load_config(path).with_prometheus_url(url), verification=VerificationSettings())


def run_hour(name: str, seed: int, end: datetime, work: Path, demo_config: bool = False) -> list[dict[str, str]]:
    """Every deploy of the scenario ending at ``end``: truth, verdict and the deciding metrics."""
    scenario = _scenario(name, seed, end)
    om = work / "scenario.om"
    scenario.write_openmetrics(om)
    tsdb = work / "tsdb"
    backfill(om, tsdb)
    om.unlink()
    server = PrometheusServer(tsdb).start()
    rows = []
    try:
        config = _demo_config(server.url, work) if demo_config else default_config().with_prometheus_url(server.url)
        client = PrometheusClient(config.prometheus)
        _wait(client, scenario)
        deploys = [d.to_deploy() for d in scenario.deploys]
        if demo_config:  # as the demo runner does: the fleet path over all deploys at once
            by_id = {v.deploy_id: v for v in verify_many(sorted(deploys, key=lambda d: d.started_at), config, client,
                                                          show_progress=False)}
            verdicts = [by_id[d.deploy_id] for d in deploys]
        else:
            verdicts = [verify_deploy(dep, config, client, others=deploys) for dep in deploys]
        for sd, dep, v in zip(scenario.deploys, deploys, verdicts, strict=True):
            rows.append({"case": sd.case, "service": sd.service, "version": dep.version,
                         "started": sd.started_at.strftime("%H:%M"), "truth": sd.expected_overall,
                         "overall": v.overall,
                         "why": "; ".join(f"{m.metric}={m.outcome}" for m in v.metrics if m.outcome not in ("ok", "confirmed")),
                         "reasons": " | ".join(m.reason for m in v.metrics if m.outcome not in ("ok", "confirmed"))})
    finally:
        server.stop()
    return rows


def run_hour_arrays(name: str, seed: int, end: datetime, config: Config) -> list[dict[str, str]]:
    """:func:`run_hour` without Prometheus: the catalog's answers computed from the scenario's
    arrays (:class:`benchmarks.demo_arrays.ScenarioBackend`), each deploy verified through
    :func:`verify_deploy` at its final look, as long after the data as the real run is."""
    from benchmarks.demo_arrays import ScenarioBackend

    scenario = _scenario(name, seed, end)
    backend = ScenarioBackend(scenario)
    deploys = [d.to_deploy() for d in scenario.deploys]
    now = scenario.end + timedelta(hours=3)
    rows = []
    for sd, dep in zip(scenario.deploys, deploys, strict=True):
        v = verify_deploy(dep, config, backend, others=deploys, fetcher=backend, now=now)  # type: ignore[arg-type]
        rows.append({"case": sd.case, "service": sd.service, "version": dep.version,
                     "started": sd.started_at.strftime("%H:%M"), "truth": sd.expected_overall, "overall": v.overall,
                     "why": "; ".join(f"{m.metric}={m.outcome}" for m in v.metrics if m.outcome not in ("ok", "confirmed")),
                     "reasons": " | ".join(m.reason for m in v.metrics if m.outcome not in ("ok", "confirmed"))})
    return rows


def main_arrays(a: argparse.Namespace, newest: datetime) -> int:
    """Seeds x generation hours without Prometheus: agreement per case, per seed, overall."""
    seeds = [a.seed] if a.seed is not None else list(range(a.seeds))
    with tempfile.TemporaryDirectory(prefix="demo-truth-") as tmp:
        config = (_demo_config("http://127.0.0.1:9", Path(tmp)) if a.demo_config
                  else default_config().with_prometheus_url("http://127.0.0.1:9"))
    print(f"{a.scenario} scenario, seeds {seeds[0]}-{seeds[-1]}, {a.hours} generation hours ending {newest:%Y-%m-%d %H:%M} UTC "
          f"and earlier; no Prometheus (answers from the generator's arrays), "
          f"{'the demo runner config' if a.demo_config else 'default catalog'}\n")
    by_case: dict[str, list[int]] = {}
    by_seed: dict[int, list[int]] = {}
    hours_all = 0
    cpu = time.process_time()
    for seed in seeds:
        for h in range(a.hours):
            end = newest - timedelta(hours=h + a.offset)
            rows = run_hour_arrays(a.scenario, seed, end, config)
            hours_all += all(r["overall"] == r["truth"] for r in rows)
            for r in rows:
                good = r["overall"] == r["truth"]
                by_case.setdefault(f"{r['case']} (truth {r['truth']})", []).append(good)
                by_seed.setdefault(seed, []).append(good)
                if not good:
                    print(f"    seed {seed} end {end:%H:%M}: {r['case']} {r['service']} {r['version']} at {r['started']} UTC: "
                          f"truth {r['truth']}, got {r['overall']} [{r['why']}]", flush=True)
                    if a.reasons:
                        print(f"      {r['reasons']}", flush=True)
        print(f"seed {seed}: {sum(by_seed[seed])}/{len(by_seed[seed])} agree", flush=True)
    print("\n| case | deploys | agree |\n|---|---|---|")
    for case, oks in by_case.items():
        print(f"| {case} | {len(oks)} | {sum(oks) / len(oks):.4f} |")
    total = sum(len(v) for v in by_seed.values())
    agree = sum(sum(v) for v in by_seed.values())
    print(f"\nAgreement: {agree}/{total} deploys ({agree / max(total, 1):.4f}); generation hours with every deploy "
          f"agreeing: {hours_all}/{len(seeds) * a.hours}; CPU {time.process_time() - cpu:.0f} s   (target: all)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=("small", "demo", "slowdown"), default="small")
    ap.add_argument("--hours", type=int, default=24, help="consecutive generation hours, newest first")
    ap.add_argument("--seed", type=int, default=None, help="scenario seed (default: the one the demo uses)")
    ap.add_argument("--offset", type=int, default=0, help="start this many hours before the newest generation hour")
    ap.add_argument("--demo-config", action="store_true",
                    help="verify as the demo runner does (its config file, the fleet path) instead of the default catalog")
    ap.add_argument("--reasons", action="store_true", help="print the deciding metrics' reasons for disagreements")
    ap.add_argument("--no-prometheus", action="store_true",
                    help="serve the queries from the generator's arrays instead of a real Prometheus (for volume)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="with --no-prometheus and no --seed: seeds 0..N-1 (default: the demo's own seed only)")
    ap.add_argument("--end", default=None,
                    help="newest generation hour's scenario end, ISO UTC (default: 3 h before the current hour, as the "
                         "demo); fix it to compare two runs made at different hours")
    a = ap.parse_args(argv)
    newest = default_end() if a.end is None else to_utc(a.end)
    if a.no_prometheus and (a.seeds > 1 or a.seed is not None):
        return main_arrays(a, newest)
    if a.no_prometheus:
        a.seed = SEEDS[a.scenario]
        return main_arrays(a, newest)
    seed = SEEDS[a.scenario] if a.seed is None else a.seed
    total = agree = 0
    print(f"{a.scenario} scenario (seed {seed}), {a.hours} generation hours ending {newest:%Y-%m-%d %H:%M} UTC "
          f"and earlier; real Prometheus per hour, {'the demo runner config (fleet path)' if a.demo_config else 'default catalog'}\n")
    for h in range(a.hours):
        end = newest - timedelta(hours=h + a.offset)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="demo-truth-") as tmp:
            rows = run_hour(a.scenario, seed, end, Path(tmp), a.demo_config)
        ok = [r["overall"] == r["truth"] for r in rows]
        total += len(rows)
        agree += sum(ok)
        print(f"end {end:%m-%d %H:%M} UTC: {sum(ok)}/{len(rows)} agree ({time.monotonic() - t0:.0f} s)", flush=True)
        for r, good in zip(rows, ok, strict=True):
            if not good:
                print(f"    {r['case']} {r['service']} {r['version']} at {r['started']} UTC: truth {r['truth']}, "
                      f"got {r['overall']} [{r['why']}]", flush=True)
                if a.reasons:
                    print(f"      {r['reasons']}", flush=True)
    print(f"\nAgreement over {a.hours} generation hours: {agree}/{total} deploys "
          f"({agree / max(total, 1):.4f})   (target: all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
