"""Dashboard at fleet scale (issue 7), in headless Chromium. Not part of the test run.

    .venv/bin/python -m benchmarks.bench_dashboard_fleet [--deploys 3000 --services 200]

The store holds the demo deploys (verified against the demo Prometheus) plus ``--deploys``
synthetic deploys of ``--services`` services over 30 days, each with a stored verdict. Measured:
the Deploys page over 30 days (timeline + table of every deploy) and the deploy page of the
demo's regression deploy (header, evidence and one chart per metric from Prometheus), cold
and warm, side by side with the same pages on the demo store alone (11 deploys) as the
baseline. "Rendered" = Streamlit's run finished and every Plotly chart is drawn.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from analyzers.config import default_config
from analyzers.demo.promserver import stop_process
from analyzers.events.store import open_store
from analyzers.model import Deploy, DeployVerdict, MetricVerdict
from benchmarks.bench_dashboard_speed import Timing, build_demo, chrome, fmt, start_dashboard, timed

ROOT = Path(__file__).resolve().parent.parent


def fill_fleet(store_url: str, n: int, services: int, seed: int = 7) -> None:
    """``n`` synthetic deploys with verdicts (seeded), spread over the last 30 days."""
    rng = random.Random(seed)
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    store = open_store(store_url)
    try:
        items = []
        verdicts = []
        for i in range(n):
            svc = f"svc-{rng.randrange(services):03d}"
            at = end - timedelta(seconds=rng.uniform(0, 29 * 86400))
            d = Deploy(deploy_id=f"fleet-{i:05d}", service=svc, environment="production", version=f"v1.{i}",
                       started_at=at, finished_at=at + timedelta(minutes=3), author="bench", received_at=end)
            items.append(("bench", f"fleet-{i}", {"bench": i}, d))
            overall = rng.choices(["pass", "fail", "inconclusive"], weights=[90, 6, 4])[0]
            mv = MetricVerdict(metric="error_ratio", role="guard", expect="increase",
                               outcome="regressed" if overall == "fail" else ("ok" if overall == "pass" else "inconclusive"),
                               reason="synthetic", unit="ratio", result={"effect": rng.gauss(0, 0.001), "effect_ci": [None, None]})
            verdicts.append(DeployVerdict(deploy_id=d.deploy_id, overall=overall, reason="synthetic verdict", metrics=(mv,),  # type: ignore[arg-type]
                                          checked_at=end, service=svc, version=d.version))
        for k in range(0, n, 500):
            store.record_events(items[k:k + 500])
        for v in verdicts:
            store.save_verdict(v)
    finally:
        store.close()


def verify_demo(store_url: str, prom_url: str) -> str:
    """Verify the demo deploys (real verdicts); returns the regression deploy's id."""
    from analyzers.prometheus.client import PrometheusClient
    from analyzers.verify.deploy import verify_deploy

    cfg = default_config().with_prometheus_url(prom_url)
    store = open_store(store_url)
    try:
        demo = [d for d in store.list_deploys(limit=100) if not d.deploy_id.startswith("fleet-")]
        client = PrometheusClient(cfg.prometheus)
        reg = ""
        for d in demo:
            v = verify_deploy(d, cfg, client, others=demo)
            store.save_verdict(v)
            if v.overall == "fail" and not reg:
                reg = d.deploy_id
        return reg
    finally:
        store.close()


def measure(store_url: str, prom_url: str, deploy_id: str, work: Path, tag: str, root: Path = ROOT
            ) -> list[tuple[str, Timing]]:
    """Timed in the page's own clock (see benchmarks/bench_dashboard_speed.py): a first visit ever (fresh
    browser profile, nothing cached), then a returning visitor (Streamlit's JS in the HTTP cache)
    with empty data caches ("cold") and again ("warm")."""
    proc, url = start_dashboard(store_url, prom_url, work / f"streamlit-{tag}.log", root)
    driver: Any = None
    out: list[tuple[str, Timing]] = []
    try:
        driver = chrome()
        out.append(("Deploys page, 30 days (first visit ever)",
                    timed(driver, lambda: driver.get(url + "/deploys?range=30d&env=production"), charts=1)))
        driver.get(url + "/latency")  # the session machinery and imports of another page
        time.sleep(2)
        for label in ("cold", "warm"):
            out.append((f"Deploys page, 30 days (returning, {label})",
                        timed(driver, lambda: driver.get(url + "/deploys?range=30d"), charts=1)))
        for label in ("cold", "warm"):
            out.append((f"deploy page of the regression (returning, {label})",
                        timed(driver, lambda: driver.get(f"{url}/deploy?deploy={deploy_id}"), charts=2)))
        driver.save_screenshot(str(work / f"deploys-{tag}.png"))
    finally:
        if driver is not None:
            driver.quit()
        stop_process(proc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploys", type=int, default=3000)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--baseline", type=Path, metavar="DIR", help="another checkout measured in the same run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dash-fleet-"))
    print("building the demo data (3 days, 3 services) ...", flush=True)
    prom_url, store_url, server = build_demo(work)
    try:
        reg = verify_demo(store_url, prom_url)
        base = measure(store_url, prom_url, reg, work, "demo")
        t0 = time.perf_counter()
        fill_fleet(store_url, args.deploys, args.services)
        print(f"added {args.deploys} deploys of {args.services} services with verdicts in {time.perf_counter() - t0:.1f} s")
        fleet = measure(store_url, prom_url, reg, work, "fleet")
        print(f"\nload average {os.getloadavg()[0]:.1f}")
        for (name, a), (_, b) in zip(base, fleet, strict=True):
            print(f"  {name}\n    {'11 deploys':<14} {fmt(a)}\n    {f'{args.deploys + 11} deploys':<14} {fmt(b)}")
        if args.baseline:
            try:
                for name, t in measure(store_url, prom_url, reg, work, "baseline", args.baseline.resolve()):
                    print(f"  baseline {args.baseline}: {name}, {args.deploys + 11} deploys\n    {'':<14} {fmt(t)}")
            except TimeoutError as exc:  # e.g. an older checkout that cannot read this store
                print(f"  baseline {args.baseline} did not render: {exc} (see {work}/streamlit-baseline.log)")
    finally:
        server.stop()
    print(f"screenshots: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
